//! The federation's PKI, kept as plain files in one directory.
//!
//! Layout of a federation directory (created by [`init`]):
//!
//! | file | content |
//! |---|---|
//! | `ca.pem`, `ca.key` | the federation CA (ECDSA P-256); the key is mode 0600 |
//! | `coordinator.pem`, `coordinator.key` | the coordinator's TLS server certificate |
//! | `roster.json` | every issued client certificate: see [`Roster`] |
//! | `<name>.pem`, `<name>.key` | a participant's or operator's certificate and Ed25519 key |
//!
//! Client keys are **Ed25519** on purpose: the key a participant proves possession of in
//! the mTLS handshake is also its secagg identity (signing) key, so secagg signatures are
//! bound to the authenticated certificate with no extra key distribution. The coordinator
//! gets the verifying key from the certificate with [`verifying_key_from_cert_der`].
//!
//! The roster, not the CA signature alone, is what authorises a peer: a certificate must
//! chain to the CA **and** have its SHA-256 fingerprint listed, not revoked and not expired.
//! Revocation is therefore a roster edit ([`revoke`]); no CRL distribution is needed
//! because the coordinator is the only relying party.
//!
//! The `certs` commands are meant to be run one at a time by an administrator: the roster
//! update is atomic (write, fsync, rename) but two concurrent `issue` calls could lose one
//! entry.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_ED25519, SerialNumber,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use zeroize::Zeroizing;

/// File name of the CA certificate.
pub const CA_CERT: &str = "ca.pem";
/// File name of the CA private key.
pub const CA_KEY: &str = "ca.key";
/// File name of the coordinator's server certificate.
pub const SERVER_CERT: &str = "coordinator.pem";
/// File name of the coordinator's server key.
pub const SERVER_KEY: &str = "coordinator.key";
/// File name of the roster.
pub const ROSTER: &str = "roster.json";

/// Names that would make a client's files collide with the federation's own files.
const RESERVED_NAMES: &[&str] = &["ca", "coordinator", "roster"];

/// Errors of the PKI functions; file errors name the file.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A certificate name outside `[a-z0-9_-]{1,64}` or a reserved one.
    #[error(
        "invalid certificate name {0:?}: use 1 to 64 characters from a-z, 0-9, '_' and '-' (not ca, coordinator or roster)"
    )]
    InvalidName(String),
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// `init` on a directory that already holds a CA.
    #[error("{}: a federation CA already exists here; refusing to overwrite it", path.display())]
    AlreadyInitialised {
        /// The existing CA key.
        path: PathBuf,
    },
    /// The roster file is not valid.
    #[error("{}: invalid roster: {source}", path.display())]
    Roster {
        /// The roster file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// A PEM or key file could not be used.
    #[error("{}: {reason}", path.display())]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// rcgen refused to build a certificate.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// `issue` for a name that still has a valid, unrevoked certificate.
    #[error("{name} already has an active certificate (serial {serial}); revoke it first")]
    AlreadyIssued {
        /// The name.
        name: String,
        /// Serial of the active certificate.
        serial: String,
    },
    /// `revoke` of a name that has no active certificate.
    #[error("no active certificate named {0} in the roster")]
    UnknownName(String),
    /// A certificate's DER could not be parsed or holds no Ed25519 key.
    #[error("certificate: {0}")]
    Certificate(String),
    /// A validity window that ends before it starts, or a date out of range.
    #[error("invalid validity: {0}")]
    Validity(String),
}

/// What a certificate holder may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A bank agent: calls the Participant service.
    Participant,
    /// A platform operator: calls the Operator service.
    Operator,
}

impl Role {
    /// Lower-case name, as in the roster and in the certificate's OU.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Participant => "participant",
            Role::Operator => "operator",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One issued client certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RosterEntry {
    /// Stable index, never reused: the participant id on the wire and in secagg.
    pub id: u32,
    /// Certificate CN and file stem.
    pub name: String,
    /// What the holder may do.
    pub role: Role,
    /// Certificate serial number, hex.
    pub serial: String,
    /// SHA-256 of the certificate DER, lower-case hex: the lookup key at the handshake.
    pub fingerprint: String,
    /// Raw Ed25519 public key (32 bytes), hex: the holder's secagg identity.
    pub public_key: String,
    /// Validity start, Unix seconds.
    pub not_before: i64,
    /// Validity end, Unix seconds.
    pub not_after: i64,
    /// Whether the certificate was revoked.
    pub revoked: bool,
    /// When it was revoked, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
}

impl RosterEntry {
    /// Whether `now` (Unix seconds) lies inside the validity window.
    pub fn is_valid_at(&self, now: i64) -> bool {
        self.not_before <= now && now <= self.not_after
    }
}

/// The list of client certificates the coordinator accepts, in `roster.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Roster {
    /// Federation name given at `init`; sent to participants as the federation id.
    pub federation: String,
    /// Every certificate ever issued, revoked ones included (ids are never reused).
    pub entries: Vec<RosterEntry>,
}

impl Roster {
    /// Reads a roster file.
    pub fn load(path: &Path) -> Result<Self, PkiError> {
        let text = fs::read_to_string(path).map_err(|source| io_err(path, source))?;
        serde_json::from_str(&text).map_err(|source| PkiError::Roster {
            path: path.to_owned(),
            source,
        })
    }

    /// Writes the roster atomically, so a coordinator reloading it never sees half a file.
    pub fn save(&self, path: &Path) -> Result<(), PkiError> {
        let text = serde_json::to_string_pretty(self).map_err(|source| PkiError::Roster {
            path: path.to_owned(),
            source,
        })?;
        write_atomic(path, text.as_bytes(), 0o644)
    }

    /// The entry whose certificate has this fingerprint (revoked or not).
    pub fn by_fingerprint(&self, fingerprint: &str) -> Option<&RosterEntry> {
        self.entries.iter().find(|e| e.fingerprint == fingerprint)
    }

    /// The unrevoked entry with this name, if any.
    pub fn active_by_name(&self, name: &str) -> Option<&RosterEntry> {
        self.entries.iter().find(|e| e.name == name && !e.revoked)
    }

    /// The entry with this id.
    pub fn by_id(&self, id: u32) -> Option<&RosterEntry> {
        self.entries.iter().find(|e| e.id == id)
    }

    fn next_id(&self) -> u32 {
        self.entries.iter().map(|e| e.id + 1).max().unwrap_or(1)
    }
}

/// Settings of [`init_with`].
#[derive(Clone, Debug)]
pub struct InitOptions {
    /// Federation name: goes into the CA's subject and the roster.
    pub federation_name: String,
    /// Extra DNS names or IP addresses for the coordinator's certificate, on top of
    /// `localhost` and `127.0.0.1`.
    pub server_names: Vec<String>,
    /// CA lifetime.
    pub ca_validity_days: u32,
    /// Coordinator certificate lifetime.
    pub server_validity_days: u32,
}

impl InitOptions {
    /// Defaults: 10-year CA, 2-year server certificate, loopback names only.
    pub fn new(federation_name: &str) -> Self {
        Self {
            federation_name: federation_name.to_owned(),
            server_names: Vec::new(),
            ca_validity_days: 3650,
            server_validity_days: 730,
        }
    }
}

/// Paths inside a federation directory.
#[derive(Clone, Debug)]
pub struct PkiDir {
    dir: PathBuf,
}

impl PkiDir {
    /// Wraps a directory path (nothing is read).
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
        }
    }
    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// `ca.pem`.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join(CA_CERT)
    }
    /// `ca.key`.
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join(CA_KEY)
    }
    /// `coordinator.pem`.
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join(SERVER_CERT)
    }
    /// `coordinator.key`.
    pub fn server_key(&self) -> PathBuf {
        self.dir.join(SERVER_KEY)
    }
    /// `roster.json`.
    pub fn roster(&self) -> PathBuf {
        self.dir.join(ROSTER)
    }
    /// `<name>.pem`; the name must have been validated.
    pub fn cert(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.pem"))
    }
    /// `<name>.key`; the name must have been validated.
    pub fn key(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.key"))
    }
}

/// Checks a certificate name: it becomes a file name, so no path separators or dots.
pub fn validate_name(name: &str) -> Result<(), PkiError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        && !RESERVED_NAMES.contains(&name);
    if ok {
        Ok(())
    } else {
        Err(PkiError::InvalidName(name.to_owned()))
    }
}

/// SHA-256 of a certificate's DER, lower-case hex.
pub fn fingerprint(cert_der: &[u8]) -> String {
    hex::encode(Sha256::digest(cert_der))
}

/// Creates a federation with default settings: see [`init_with`].
pub fn init(dir: &Path, federation_name: &str) -> Result<Roster, PkiError> {
    init_with(dir, &InitOptions::new(federation_name))
}

/// Creates a federation CA, the coordinator's server certificate and an empty roster.
///
/// Refuses to run where a CA key exists: overwriting it would orphan every issued
/// certificate.
pub fn init_with(dir: &Path, options: &InitOptions) -> Result<Roster, PkiError> {
    let paths = PkiDir::new(dir);
    if paths.ca_key().exists() {
        return Err(PkiError::AlreadyInitialised {
            path: paths.ca_key(),
        });
    }
    if !dir.exists() {
        fs::create_dir_all(dir).map_err(|source| io_err(dir, source))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|source| io_err(dir, source))?;
    }
    let now = OffsetDateTime::now_utc();

    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name = rcgen::DistinguishedName::new();
    ca_params.distinguished_name.push(
        DnType::CommonName,
        format!("{} federation CA", options.federation_name),
    );
    ca_params
        .distinguished_name
        .push(DnType::OrganizationName, options.federation_name.clone());
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params.not_before = now - time::Duration::minutes(5);
    ca_params.not_after = now + days(options.ca_validity_days);
    ca_params.serial_number = Some(serial_for(ca_key.public_key_raw(), now));
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let ca_key_pem = Zeroizing::new(ca_key.serialize_pem());

    let server_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    for n in &options.server_names {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    let mut server_params = CertificateParams::new(names)?;
    server_params.distinguished_name = rcgen::DistinguishedName::new();
    server_params
        .distinguished_name
        .push(DnType::CommonName, "fedrisk coordinator");
    server_params
        .distinguished_name
        .push(DnType::OrganizationName, options.federation_name.clone());
    server_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server_params.use_authority_key_identifier_extension = true;
    server_params.not_before = now - time::Duration::minutes(5);
    server_params.not_after = now + days(options.server_validity_days);
    server_params.serial_number = Some(serial_for(server_key.public_key_raw(), now));
    let issuer = Issuer::new(ca_params, ca_key);
    let server_cert = server_params.signed_by(&server_key, &issuer)?;
    let server_key_pem = Zeroizing::new(server_key.serialize_pem());

    // Keys first: a crash leaves no certificate without its key.
    write_atomic(&paths.ca_key(), ca_key_pem.as_bytes(), 0o600)?;
    write_atomic(&paths.ca_cert(), ca_cert.pem().as_bytes(), 0o644)?;
    write_atomic(&paths.server_key(), server_key_pem.as_bytes(), 0o600)?;
    write_atomic(&paths.server_cert(), server_cert.pem().as_bytes(), 0o644)?;
    let roster = Roster {
        federation: options.federation_name.clone(),
        entries: Vec::new(),
    };
    roster.save(&paths.roster())?;
    Ok(roster)
}

/// Issues a client certificate valid from now for `validity_days`: see
/// [`issue_with_validity`].
pub fn issue(
    dir: &Path,
    name: &str,
    role: Role,
    validity_days: u32,
) -> Result<RosterEntry, PkiError> {
    let now = OffsetDateTime::now_utc();
    issue_with_validity(
        dir,
        name,
        role,
        now - time::Duration::minutes(5),
        now + days(validity_days),
    )
}

/// Issues a client certificate with an explicit validity window (useful to back-date one
/// in tests of expiry), writes `<name>.pem` and `<name>.key` (PKCS#8, 0600) and adds it to
/// the roster.
///
/// A name can be issued again only after its previous certificate was revoked; the new
/// certificate gets a new id, because secagg state and stored rounds refer to ids.
pub fn issue_with_validity(
    dir: &Path,
    name: &str,
    role: Role,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<RosterEntry, PkiError> {
    validate_name(name)?;
    if not_after <= not_before {
        return Err(PkiError::Validity(format!(
            "not_after {not_after} is not after not_before {not_before}"
        )));
    }
    let paths = PkiDir::new(dir);
    let roster_path = paths.roster();
    let mut roster = Roster::load(&roster_path)?;
    if let Some(existing) = roster.active_by_name(name) {
        return Err(PkiError::AlreadyIssued {
            name: name.to_owned(),
            serial: existing.serial.clone(),
        });
    }

    let ca_pem = read_text(&paths.ca_cert())?;
    let ca_key_pem = Zeroizing::new(read_text(&paths.ca_key())?);
    let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(|e| PkiError::BadFile {
        path: paths.ca_key(),
        reason: format!("not a usable private key: {e}"),
    })?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).map_err(|e| PkiError::BadFile {
        path: paths.ca_cert(),
        reason: format!("not a usable CA certificate: {e}"),
    })?;

    let key = KeyPair::generate_for(&PKCS_ED25519)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params
        .distinguished_name
        .push(DnType::OrganizationalUnitName, role.as_str());
    params
        .distinguished_name
        .push(DnType::OrganizationName, roster.federation.clone());
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = not_before;
    params.not_after = not_after;
    let serial = serial_for(key.public_key_raw(), OffsetDateTime::now_utc());
    let serial_hex = hex::encode(serial.to_bytes());
    params.serial_number = Some(serial);
    let cert = params.signed_by(&key, &issuer)?;
    let key_pem = Zeroizing::new(key.serialize_pem());

    let entry = RosterEntry {
        id: roster.next_id(),
        name: name.to_owned(),
        role,
        serial: serial_hex,
        fingerprint: fingerprint(cert.der()),
        public_key: hex::encode(key.public_key_raw()),
        not_before: not_before.unix_timestamp(),
        not_after: not_after.unix_timestamp(),
        revoked: false,
        revoked_at: None,
    };
    write_atomic(&paths.key(name), key_pem.as_bytes(), 0o600)?;
    write_atomic(&paths.cert(name), cert.pem().as_bytes(), 0o644)?;
    // The roster last: the certificate is authorised only once its files exist.
    roster.entries.push(entry.clone());
    roster.save(&roster_path)?;
    Ok(entry)
}

/// Marks the active certificate of `name` revoked. A running coordinator refuses it from
/// its next handshake and its next RPC on (the roster file is re-read when it changes).
pub fn revoke(dir: &Path, name: &str) -> Result<RosterEntry, PkiError> {
    validate_name(name)?;
    let roster_path = PkiDir::new(dir).roster();
    let mut roster = Roster::load(&roster_path)?;
    let entry = roster
        .entries
        .iter_mut()
        .find(|e| e.name == name && !e.revoked)
        .ok_or_else(|| PkiError::UnknownName(name.to_owned()))?;
    entry.revoked = true;
    entry.revoked_at = Some(OffsetDateTime::now_utc().unix_timestamp());
    let revoked = entry.clone();
    roster.save(&roster_path)?;
    Ok(revoked)
}

/// The Ed25519 verifying key in a certificate's SubjectPublicKeyInfo: the holder's secagg
/// identity key, bound to its TLS identity.
pub fn verifying_key_from_cert_der(cert_der: &[u8]) -> Result<VerifyingKey, PkiError> {
    crate::client::certificate_identity_key(cert_der).map_err(PkiError::Certificate)
}

/// The subject of a certificate (`CN=bank_a, OU=participant, O=...`), for log lines about
/// certificates that have no roster entry. `None` if the DER does not parse.
pub fn subject_of(cert_der: &[u8]) -> Option<String> {
    x509_parser::parse_x509_certificate(cert_der)
        .ok()
        .map(|(_, c)| c.subject().to_string())
}

fn days(n: u32) -> time::Duration {
    time::Duration::days(i64::from(n))
}

/// A positive 128-bit serial derived from a fresh public key and the time: unique because
/// the key is random, and needs no separate RNG.
fn serial_for(public_key: &[u8], now: OffsetDateTime) -> SerialNumber {
    let mut h = Sha256::new();
    h.update(public_key);
    h.update(now.unix_timestamp_nanos().to_be_bytes());
    let digest = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01; // no leading zero byte, so the DER encoding keeps all 16 bytes
    SerialNumber::from_slice(&bytes)
}

fn io_err(path: &Path, source: std::io::Error) -> PkiError {
    PkiError::Io {
        path: path.to_owned(),
        source,
    }
}

fn read_text(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|source| io_err(path, source))
}

/// Writes `bytes` to a temporary sibling with `mode`, fsyncs, then renames over `path`, so
/// readers see the old or the new file, never a torn one, and secrets are never briefly
/// world-readable.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), PkiError> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.tmp"));
    let _ = fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|source| io_err(&tmp, source))?;
    f.write_all(bytes).map_err(|source| io_err(&tmp, source))?;
    f.sync_all().map_err(|source| io_err(&tmp, source))?;
    drop(f);
    fs::rename(&tmp, path).map_err(|source| io_err(path, source))?;
    if let Some(parent) = path.parent()
        && let Ok(d) = fs::File::open(parent)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        for ok in ["bank_a", "b", "bank-2", &"a".repeat(64)] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Bank",
            "../x",
            "a/b",
            "a.b",
            "ca",
            "coordinator",
            "roster",
            &"a".repeat(65),
        ] {
            assert!(
                matches!(validate_name(bad), Err(PkiError::InvalidName(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn init_issue_revoke() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("fed");
        init(&dir, "testfed").expect("init");
        assert!(matches!(
            init(&dir, "testfed"),
            Err(PkiError::AlreadyInitialised { .. })
        ));
        let mode = fs::metadata(dir.join(CA_KEY))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        let a = issue(&dir, "bank_a", Role::Participant, 30).expect("issue");
        let b = issue(&dir, "bank_b", Role::Participant, 30).expect("issue");
        let op = issue(&dir, "ops", Role::Operator, 30).expect("issue");
        assert_eq!((a.id, b.id, op.id), (1, 2, 3));
        assert!(matches!(
            issue(&dir, "bank_a", Role::Participant, 30),
            Err(PkiError::AlreadyIssued { .. })
        ));
        let key_mode = fs::metadata(dir.join("bank_a.key"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(key_mode & 0o777, 0o600);

        // The certificate's key is the identity key recorded in the roster.
        let pem = fs::read_to_string(dir.join("bank_a.pem")).expect("pem");
        let der = pem_to_der(&pem);
        assert_eq!(fingerprint(&der), a.fingerprint);
        let vk = verifying_key_from_cert_der(&der).expect("vk");
        assert_eq!(hex::encode(vk.as_bytes()), a.public_key);
        let subject = subject_of(&der).expect("subject");
        assert!(subject.contains("CN=bank_a"), "{subject}");
        assert!(subject.contains("OU=participant"), "{subject}");

        // The server certificate holds an ECDSA key, not an Ed25519 identity.
        let server = pem_to_der(&fs::read_to_string(dir.join(SERVER_CERT)).expect("pem"));
        assert!(verifying_key_from_cert_der(&server).is_err());

        let r = revoke(&dir, "bank_a").expect("revoke");
        assert!(r.revoked);
        assert!(matches!(
            revoke(&dir, "bank_a"),
            Err(PkiError::UnknownName(_))
        ));
        let roster = Roster::load(&dir.join(ROSTER)).expect("roster");
        assert!(
            roster
                .by_fingerprint(&a.fingerprint)
                .expect("entry")
                .revoked
        );
        // Re-issue after revocation gets a fresh id.
        let a2 = issue(&dir, "bank_a", Role::Participant, 30).expect("reissue");
        assert_eq!(a2.id, 4);
        assert_ne!(a2.fingerprint, a.fingerprint);
    }

    #[test]
    fn errors_name_the_file() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let err = issue(tmp.path(), "bank_a", Role::Participant, 1).expect_err("no roster");
        assert!(err.to_string().contains("roster.json"), "{err}");
        assert!(matches!(
            issue(tmp.path(), "../evil", Role::Participant, 1),
            Err(PkiError::InvalidName(_))
        ));
    }

    pub(crate) fn pem_to_der(pem: &str) -> Vec<u8> {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        CertificateDer::from_pem_slice(pem.as_bytes())
            .expect("pem")
            .to_vec()
    }
}

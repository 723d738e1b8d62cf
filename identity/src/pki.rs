//! The federation's PKI, kept as plain files in two folders.
//!
//! A federation made by [`init_separate`] keeps its CA apart from what the coordinator
//! serves:
//!
//! | folder | file | content |
//! |---|---|---|
//! | CA (offline) | `ca.pem`, `ca.key` | the federation CA (ECDSA P-256); the key is mode 0600 |
//! | served | `ca.pem` | the same CA certificate |
//! | served | `coordinator.pem`, `coordinator.key` | the coordinator's TLS server certificate |
//! | served | `roster.json` | every issued client certificate: see [`Roster`] |
//! | served | `<name>.pem` | a certificate signed from a request ([`sign_request`]) |
//!
//! Every institution makes its own Ed25519 key and a certificate signing request where the
//! key will live ([`generate_request`], `fedrisk-participant keygen`); the operator signs the
//! request with the CA ([`sign_request`]), so no institution's key is ever on the CA's or the
//! coordinator's machine. The coordinator's `serve` refuses a folder holding `ca.key` or a
//! member's key ([`check_serving_dir`]). [`issue`] still makes a key and its certificate in
//! one step: for the operator's own client identity, and for the lab's simulated federations,
//! which keep everything in one folder ([`init_with`], [`Authority::single`]).
//!
//! Client keys are **Ed25519** on purpose: the key a participant proves possession of in
//! the mTLS handshake is also its secagg identity (signing) key, so secagg signatures are
//! bound to the authenticated certificate with no extra key distribution. The coordinator
//! gets the verifying key from the certificate with [`verifying_key_from_cert_der`].
//!
//! The roster, not the CA signature alone, is what authorises a peer: a certificate must
//! chain to the CA **and** have its SHA-256 fingerprint listed, not revoked and not expired.
//! Revocation is therefore a roster edit ([`revoke`]) that needs no CA key; no CRL
//! distribution is needed because the coordinator is the only relying party.
//!
//! The `certs` commands are meant to be run one at a time by an administrator: the roster
//! update is atomic (write, fsync, rename) but two concurrent `sign` calls could lose one
//! entry.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
    PKCS_ED25519, PublicKeyData, SerialNumber,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use zeroize::Zeroizing;

/// File name of the CA certificate.
pub const CA_CERT: &str = "ca.pem";
/// File name of the CA private key.
pub const CA_KEY: &str = "ca.key";
/// File name of the CA-signed revocation list the coordinator relays to agents.
pub const CRL: &str = "revoked.crl";
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
    /// `init` where a CA key or a roster exists.
    #[error(
        "{}: a federation already exists here; refusing to overwrite it (that would orphan every issued certificate)",
        path.display()
    )]
    AlreadyInitialised {
        /// The existing CA key or roster.
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
    /// A certificate signing request that cannot be signed.
    #[error("{}: {problem}", path.display())]
    BadRequest {
        /// The request file.
        path: PathBuf,
        /// What is wrong with it.
        problem: RequestProblem,
    },
    /// The federation folder's `ca.pem` is not the CA that signs.
    #[error(
        "{}: not the CA certificate in {}; this federation folder belongs to another CA",
        served.display(),
        ca.display()
    )]
    CaMismatch {
        /// The CA's certificate (next to `ca.key`).
        ca: PathBuf,
        /// The federation folder's copy.
        served: PathBuf,
    },
    /// The CA key in a folder the coordinator is to serve.
    #[error(
        "{}: the federation CA's private key is in the coordinator's PKI folder; move it offline \
         (whoever holds it can mint identities; the coordinator needs only ca.pem, \
         coordinator.pem, coordinator.key and roster.json)",
        path.display()
    )]
    CaKeyInServingDir {
        /// The key file.
        path: PathBuf,
    },
    /// A member's private key in a folder the coordinator is to serve.
    #[error(
        "{}: the private key of `{name}` is in the coordinator's PKI folder; move it to the \
         institution that owns it (it is its TLS and secure-aggregation signing key) and delete \
         it here; institutions make their own keys with `fedrisk-participant keygen`",
        path.display()
    )]
    MemberKeyInServingDir {
        /// The key file.
        path: PathBuf,
        /// Its file stem.
        name: String,
    },
}

/// Why a certificate signing request is refused (see [`sign_request`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestProblem {
    /// The file holds a private key: it should never have left its holder.
    #[error(
        "it holds a private key, not only a request: a private key must never leave the institution; \
         destroy this copy and have the institution make a new key with `fedrisk-participant keygen` \
         and send only NAME.csr"
    )]
    PrivateKey,
    /// No `CERTIFICATE REQUEST` PEM block.
    #[error("no PEM certificate signing request (-----BEGIN CERTIFICATE REQUEST-----) in it")]
    NotPem,
    /// The DER does not parse as a PKCS#10 request.
    #[error("not a valid certificate signing request: {0}")]
    Unparsable(String),
    /// The self-signature does not verify: altered after it was made.
    #[error(
        "its signature does not verify: the request was altered after it was made, or not signed by its key"
    )]
    BadSignature,
    /// The key is not Ed25519.
    #[error(
        "its key is {0}, not Ed25519: a fedrisk identity key is Ed25519 (make one with `fedrisk-participant keygen`)"
    )]
    NotEd25519(String),
    /// The request asks for an extension this CA does not sign.
    #[error("it requests an extension fedrisk does not sign: {0}")]
    UnsupportedExtension(String),
    /// The subject has no common name, or more than one.
    #[error("its subject must have exactly one common name (CN), the institution's name")]
    CommonName,
    /// The common name is not a valid certificate name.
    #[error(
        "its common name {0:?} is not a valid certificate name: use 1 to 64 characters from a-z, 0-9, '_' and '-' (not ca, coordinator or roster)"
    )]
    InvalidName(String),
    /// The key already has (or had) a certificate.
    #[error(
        "its key was already certified as {name} (id {id}); a key is certified once: the institution makes a new one with `fedrisk-participant keygen`"
    )]
    KeyReused {
        /// The name of the certificate with this key.
        name: String,
        /// Its roster id.
        id: u32,
    },
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
    /// Number of the latest revocation list signed (agents refuse an older one).
    #[serde(default)]
    pub crl_number: u64,
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
    /// The CA-signed revocation list (`revoked.crl`, PEM).
    pub fn crl(&self) -> PathBuf {
        self.dir.join(CRL)
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

/// The folders certificates are signed and recorded with: the CA's (`ca.pem`, `ca.key`) and
/// the federation folder the coordinator serves (`ca.pem`, `roster.json`, and the
/// `<name>.pem` certificates signed from requests).
#[derive(Clone, Debug)]
pub struct Authority {
    ca: PkiDir,
    served: PkiDir,
}

impl Authority {
    /// The CA in `ca_dir`, recording in the federation folder `dir` (as made by
    /// [`init_separate`]).
    pub fn new(ca_dir: &Path, dir: &Path) -> Self {
        Self {
            ca: PkiDir::new(ca_dir),
            served: PkiDir::new(dir),
        }
    }

    /// CA and federation in one folder (made by [`init_with`]): the lab's simulated
    /// federations. `fedrisk-coordinator serve` refuses such a folder.
    pub fn single(dir: &Path) -> Self {
        Self::new(dir, dir)
    }

    /// The CA's folder.
    pub fn ca_dir(&self) -> &Path {
        self.ca.dir()
    }

    /// The federation folder (roster and certificates).
    pub fn dir(&self) -> &Path {
        self.served.dir()
    }
}

/// Creates a federation with default settings in one folder: see [`init_with`].
pub fn init(dir: &Path, federation_name: &str) -> Result<Roster, PkiError> {
    init_with(dir, &InitOptions::new(federation_name))
}

/// Creates a federation CA, the coordinator's server certificate and an empty roster, all
/// in `dir` (the lab's layout: a coordinator started by `fedrisk-coordinator serve` refuses
/// a folder holding `ca.key`; see [`init_separate`]).
pub fn init_with(dir: &Path, options: &InitOptions) -> Result<Roster, PkiError> {
    init_separate(dir, dir, options)
}

/// Creates a federation with its CA apart: `ca.pem` and `ca.key` in `ca_dir` (to be kept
/// offline), and in `dir` what the coordinator serves: `ca.pem`, `coordinator.pem`,
/// `coordinator.key` and an empty `roster.json`.
///
/// Refuses to run where a CA key or a roster exists: overwriting either would orphan every
/// issued certificate.
pub fn init_separate(ca_dir: &Path, dir: &Path, options: &InitOptions) -> Result<Roster, PkiError> {
    let ca_paths = PkiDir::new(ca_dir);
    let paths = PkiDir::new(dir);
    for existing in [ca_paths.ca_key(), paths.roster()] {
        if existing.exists() {
            return Err(PkiError::AlreadyInitialised { path: existing });
        }
    }
    for d in [ca_dir, dir] {
        if !d.exists() {
            fs::create_dir_all(d).map_err(|source| io_err(d, source))?;
            fs::set_permissions(d, fs::Permissions::from_mode(0o700))
                .map_err(|source| io_err(d, source))?;
        }
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
    write_atomic(&ca_paths.ca_key(), ca_key_pem.as_bytes(), 0o600)?;
    write_atomic(&ca_paths.ca_cert(), ca_cert.pem().as_bytes(), 0o644)?;
    if paths.ca_cert() != ca_paths.ca_cert() {
        write_atomic(&paths.ca_cert(), ca_cert.pem().as_bytes(), 0o644)?;
    }
    write_atomic(&paths.server_key(), server_key_pem.as_bytes(), 0o600)?;
    write_atomic(&paths.server_cert(), server_cert.pem().as_bytes(), 0o644)?;
    let roster = Roster {
        federation: options.federation_name.clone(),
        entries: Vec::new(),
        crl_number: 0,
    };
    roster.save(&paths.roster())?;
    write_crl(&Authority::new(ca_dir, dir))
}

/// Signs a revocation list of every revoked certificate on the roster with the CA, numbered
/// one above the last, into the federation folder (`revoked.crl`). The coordinator relays it
/// with every session; agents check peers against it and refuse an older list than one they
/// have seen, so a coordinator cannot hide a revocation from them.
pub fn write_crl(authority: &Authority) -> Result<Roster, PkiError> {
    let issuer = load_issuer(authority)?;
    let roster_path = authority.served.roster();
    let mut roster = Roster::load(&roster_path)?;
    roster.crl_number += 1;
    let now = OffsetDateTime::now_utc();
    let revoked_certs = roster
        .entries
        .iter()
        .filter(|e| e.revoked)
        .filter_map(|e| {
            Some(rcgen::RevokedCertParams {
                serial_number: SerialNumber::from_slice(&hex::decode(&e.serial).ok()?),
                revocation_time: e
                    .revoked_at
                    .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
                    .unwrap_or(now),
                reason_code: None,
                invalidity_date: None,
            })
        })
        .collect();
    let params = rcgen::CertificateRevocationListParams {
        this_update: now,
        next_update: now + time::Duration::days(3650),
        crl_number: SerialNumber::from(roster.crl_number),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    };
    let crl = params.signed_by(&issuer)?;
    write_atomic(&authority.served.crl(), crl.pem()?.as_bytes(), 0o644)?;
    // The roster's number last: a list on disk is never numbered below the roster's.
    roster.save(&roster_path)?;
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
    let (not_before, not_after) = window_from_now(validity_days);
    issue_with_validity(dir, name, role, not_before, not_after)
}

/// Issues a client certificate with an explicit validity window (useful to back-date one
/// in tests of expiry) in a single-folder federation ([`init_with`]): writes `<name>.pem`
/// and `<name>.key` (PKCS#8, 0600) in `dir` and adds it to the roster.
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
    issue_in(
        &Authority::single(dir),
        dir,
        name,
        role,
        not_before,
        not_after,
    )
}

/// Generates an Ed25519 key on this machine and issues its certificate, valid from now for
/// `validity_days`: writes `<out>/<name>.key` (PKCS#8, 0600) and `<out>/<name>.pem` and adds
/// the certificate to the roster of `authority`. For an identity whose holder is the one
/// running this (the operator's own client key); an institution makes its own key and sends
/// a request ([`sign_request`]).
pub fn issue_to(
    authority: &Authority,
    out: &Path,
    name: &str,
    role: Role,
    validity_days: u32,
) -> Result<RosterEntry, PkiError> {
    let (not_before, not_after) = window_from_now(validity_days);
    issue_in(authority, out, name, role, not_before, not_after)
}

/// What [`issue_to`] and [`issue_with_validity`] do.
fn issue_in(
    authority: &Authority,
    out: &Path,
    name: &str,
    role: Role,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<RosterEntry, PkiError> {
    validate_name(name)?;
    let key = KeyPair::generate_for(&PKCS_ED25519)?;
    let key_pem = Zeroizing::new(key.serialize_pem());
    let out = PkiDir::new(out);
    certify(
        authority,
        &Subject {
            name,
            role,
            key: &key,
            not_before,
            not_after,
        },
        &out.cert(name),
        // Keys first: a crash leaves no certificate without its key.
        || write_atomic(&out.key(name), key_pem.as_bytes(), 0o600),
    )
}

/// Signs an institution's certificate signing request (PKCS#10 PEM, as made by
/// `fedrisk-participant keygen`) with the CA, valid from now for `validity_days`: writes
/// `<name>.pem` in the federation folder and adds it to the roster, as [`issue_to`] does,
/// except that no key is made or written: the key stays with the institution.
///
/// The request must carry a valid self-signature (proof that its sender holds the key), an
/// Ed25519 key never certified before, and one common name that is a valid certificate
/// name ([`validate_name`]) with no active certificate. Only the key and the name are taken
/// from it: role, organisation, usages and validity are this CA's, and extensions the
/// request asks for (CA status, alternative names) are ignored.
pub fn sign_request(
    authority: &Authority,
    csr: &Path,
    role: Role,
    validity_days: u32,
) -> Result<RosterEntry, PkiError> {
    let (not_before, not_after) = window_from_now(validity_days);
    sign_request_with_validity(authority, csr, role, not_before, not_after)
}

/// [`sign_request`] with an explicit validity window.
pub fn sign_request_with_validity(
    authority: &Authority,
    csr: &Path,
    role: Role,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<RosterEntry, PkiError> {
    let bad = |problem| PkiError::BadRequest {
        path: csr.to_owned(),
        problem,
    };
    let pem = read_text(csr)?;
    let request = parse_request(&pem).map_err(bad)?;
    let roster = Roster::load(&authority.served.roster())?;
    let public_key = hex::encode(request.public_key.der_bytes());
    if let Some(e) = roster.entries.iter().find(|e| e.public_key == public_key) {
        return Err(bad(RequestProblem::KeyReused {
            name: e.name.clone(),
            id: e.id,
        }));
    }
    certify(
        authority,
        &Subject {
            name: &request.name,
            role,
            key: &request.public_key,
            not_before,
            not_after,
        },
        &authority.served.cert(&request.name),
        || Ok(()),
    )
}

/// A request that passed every check of its own (the roster's come later).
struct ParsedRequest {
    name: String,
    /// The Ed25519 key the self-signature verified with.
    public_key: rcgen::PublicKey,
}

/// Parses and checks a PEM certificate signing request: one `CERTIFICATE REQUEST` block,
/// a valid self-signature, an Ed25519 key and one valid common name.
fn parse_request(pem: &str) -> Result<ParsedRequest, RequestProblem> {
    use rustls_pki_types::CertificateSigningRequestDer;
    use rustls_pki_types::pem::PemObject;
    use x509_parser::prelude::FromDer;

    if pem.contains("PRIVATE KEY-----") {
        return Err(RequestProblem::PrivateKey);
    }
    let der = CertificateSigningRequestDer::from_pem_slice(pem.as_bytes())
        .map_err(|_| RequestProblem::NotPem)?;
    let (_, parsed) =
        x509_parser::certification_request::X509CertificationRequest::from_der(der.as_ref())
            .map_err(|e| RequestProblem::Unparsable(e.to_string()))?;
    // The self-signature first: nothing of an altered request is worth looking at.
    let verified = CertificateSigningRequestParams::from_der(&der).map_err(|e| match e {
        rcgen::Error::InvalidCertificationRequestSignature => RequestProblem::BadSignature,
        rcgen::Error::UnsupportedSignatureAlgorithm => {
            RequestProblem::NotEd25519(key_algorithm(&parsed))
        }
        rcgen::Error::UnsupportedExtension => RequestProblem::UnsupportedExtension(
            parsed
                .requested_extensions()
                .into_iter()
                .flatten()
                .map(|ext| format!("{ext:?}"))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        other => RequestProblem::Unparsable(other.to_string()),
    })?;
    let info = &parsed.certification_request_info;
    if info.subject_pki.algorithm.algorithm != x509_parser::oid_registry::OID_SIG_ED25519
        || verified.public_key.algorithm() != &PKCS_ED25519
    {
        return Err(RequestProblem::NotEd25519(key_algorithm(&parsed)));
    }
    let mut names = info.subject.iter_common_name();
    let name = match (names.next(), names.next()) {
        (Some(cn), None) => cn
            .as_str()
            .map_err(|_| RequestProblem::CommonName)?
            .to_owned(),
        _ => return Err(RequestProblem::CommonName),
    };
    validate_name(&name).map_err(|_| RequestProblem::InvalidName(name.clone()))?;
    if verified.public_key.der_bytes().len() != ed25519_dalek::PUBLIC_KEY_LENGTH {
        return Err(RequestProblem::Unparsable(
            "an Ed25519 key of the wrong length".into(),
        ));
    }
    Ok(ParsedRequest {
        name,
        public_key: verified.public_key,
    })
}

/// A readable name of a request's key algorithm, for refusals.
fn key_algorithm(request: &x509_parser::certification_request::X509CertificationRequest) -> String {
    use x509_parser::oid_registry as oids;
    let oid = &request
        .certification_request_info
        .subject_pki
        .algorithm
        .algorithm;
    if *oid == oids::OID_KEY_TYPE_EC_PUBLIC_KEY {
        "ECDSA".into()
    } else if *oid == oids::OID_PKCS1_RSAENCRYPTION {
        "RSA".into()
    } else if *oid == oids::OID_SIG_ED448 {
        "Ed448".into()
    } else {
        format!("of algorithm {oid}")
    }
}

/// What a new client certificate certifies.
struct Subject<'a, K: PublicKeyData> {
    name: &'a str,
    role: Role,
    key: &'a K,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
}

/// What [`issue_to`] and [`sign_request`] share: checks the name against the roster, signs
/// a client certificate for `subject` with the CA, runs `before_cert` (writing the key, if
/// this machine made it), writes the certificate to `cert_path`, and adds the roster entry.
fn certify<K: PublicKeyData>(
    authority: &Authority,
    subject: &Subject<'_, K>,
    cert_path: &Path,
    before_cert: impl FnOnce() -> Result<(), PkiError>,
) -> Result<RosterEntry, PkiError> {
    let Subject {
        name,
        role,
        key,
        not_before,
        not_after,
    } = *subject;
    validate_name(name)?;
    if not_after <= not_before {
        return Err(PkiError::Validity(format!(
            "not_after {not_after} is not after not_before {not_before}"
        )));
    }
    let roster_path = authority.served.roster();
    let mut roster = Roster::load(&roster_path)?;
    if let Some(existing) = roster.active_by_name(name) {
        return Err(PkiError::AlreadyIssued {
            name: name.to_owned(),
            serial: existing.serial.clone(),
        });
    }
    let issuer = load_issuer(authority)?;

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
    let serial = serial_for(key.der_bytes(), OffsetDateTime::now_utc());
    let serial_hex = hex::encode(serial.to_bytes());
    params.serial_number = Some(serial);
    let cert: Certificate = params.signed_by(key, &issuer)?;
    // The identity key as the certificate carries it (and proof that it is Ed25519).
    let identity = verifying_key_from_cert_der(cert.der())?;

    let entry = RosterEntry {
        id: roster.next_id(),
        name: name.to_owned(),
        role,
        serial: serial_hex,
        fingerprint: fingerprint(cert.der()),
        public_key: hex::encode(identity.as_bytes()),
        not_before: not_before.unix_timestamp(),
        not_after: not_after.unix_timestamp(),
        revoked: false,
        revoked_at: None,
    };
    before_cert()?;
    write_atomic(cert_path, cert.pem().as_bytes(), 0o644)?;
    // The roster last: the certificate is authorised only once its files exist.
    roster.entries.push(entry.clone());
    roster.save(&roster_path)?;
    Ok(entry)
}

/// The CA as an rcgen issuer, after checking that the federation folder trusts the same CA.
fn load_issuer(authority: &Authority) -> Result<Issuer<'static, KeyPair>, PkiError> {
    let ca = &authority.ca;
    let ca_pem = read_text(&ca.ca_cert())?;
    if authority.served.ca_cert() != ca.ca_cert() {
        let served_pem = read_text(&authority.served.ca_cert())?;
        if pem_der(&served_pem) != pem_der(&ca_pem) {
            return Err(PkiError::CaMismatch {
                ca: ca.ca_cert(),
                served: authority.served.ca_cert(),
            });
        }
    }
    let ca_key_pem = Zeroizing::new(read_text(&ca.ca_key())?);
    let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(|e| PkiError::BadFile {
        path: ca.ca_key(),
        reason: format!("not a usable private key: {e}"),
    })?;
    Issuer::from_ca_cert_pem(&ca_pem, ca_key).map_err(|e| PkiError::BadFile {
        path: ca.ca_cert(),
        reason: format!("not a usable CA certificate: {e}"),
    })
}

/// The DER of a PEM certificate, `None` if it does not parse.
fn pem_der(pem: &str) -> Option<Vec<u8>> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .ok()
        .map(|d| d.to_vec())
}

/// A new Ed25519 identity key and the certificate signing request for it (see
/// [`generate_request`]). The key is zeroized on drop and never printed.
pub struct KeyRequest {
    /// The private key, PKCS#8 PEM.
    pub key_pem: Zeroizing<String>,
    /// The PKCS#10 request, PEM: subject CN = the name, signed by the key.
    pub csr_pem: String,
    /// The raw Ed25519 public key, hex: what the roster records, for the institution and the
    /// operator to compare over another channel.
    pub public_key: String,
}

impl std::fmt::Debug for KeyRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRequest")
            .field("key_pem", &"<redacted>")
            .field("public_key", &self.public_key)
            .finish_non_exhaustive()
    }
}

/// Makes an institution's Ed25519 identity key and a certificate signing request for `name`,
/// on the machine where the key will live; the operator signs the request with
/// [`sign_request`].
pub fn generate_request(name: &str) -> Result<KeyRequest, PkiError> {
    validate_name(name)?;
    let key = KeyPair::generate_for(&PKCS_ED25519)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    let csr = params.serialize_request(&key)?;
    Ok(KeyRequest {
        key_pem: Zeroizing::new(key.serialize_pem()),
        csr_pem: csr.pem()?,
        public_key: hex::encode(key.public_key_raw()),
    })
}

/// Checks that a folder the coordinator is to serve holds no private key but its own: no
/// `ca.key` (it belongs offline) and no other `*.key` (an institution's or an operator's key
/// belongs to its holder). The coordinator needs `ca.pem`, `coordinator.pem`,
/// `coordinator.key` and `roster.json`.
pub fn check_serving_dir(dir: &Path) -> Result<(), PkiError> {
    let mut keys = Vec::new();
    for entry in fs::read_dir(dir).map_err(|source| io_err(dir, source))? {
        let entry = entry.map_err(|source| io_err(dir, source))?;
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if !is_dir && file_name.to_ascii_lowercase().ends_with(".key") && file_name != SERVER_KEY {
            keys.push(file_name);
        }
    }
    // The CA key first, then the others in name order: the same report every time.
    keys.sort_by_key(|n| (n != CA_KEY, n.clone()));
    match keys.first() {
        None => Ok(()),
        Some(n) if n == CA_KEY => Err(PkiError::CaKeyInServingDir { path: dir.join(n) }),
        Some(n) => Err(PkiError::MemberKeyInServingDir {
            path: dir.join(n),
            name: n[..n.len() - ".key".len()].to_owned(),
        }),
    }
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
    crate::client::certificate_identity_key(cert_der)
        .map_err(|e| PkiError::Certificate(e.to_string()))
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

/// From five minutes ago (clock skew) to `validity_days` from now.
fn window_from_now(validity_days: u32) -> (OffsetDateTime, OffsetDateTime) {
    let now = OffsetDateTime::now_utc();
    (now - time::Duration::minutes(5), now + days(validity_days))
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

    /// A CA in `ca/` apart from the served folder `pki/`.
    fn separate(tmp: &Path) -> Authority {
        let (ca, dir) = (tmp.join("ca"), tmp.join("pki"));
        init_separate(&ca, &dir, &InitOptions::new("testfed")).expect("init");
        Authority::new(&ca, &dir)
    }

    fn write_csr(dir: &Path, file: &str, pem: &str) -> PathBuf {
        let path = dir.join(file);
        fs::write(&path, pem).expect("write csr");
        path
    }

    /// A request for `name` made with `params`'s extras and `key`.
    fn request_with(name: &str, key: &KeyPair, mut params: CertificateParams) -> String {
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params
            .serialize_request(key)
            .expect("csr")
            .pem()
            .expect("pem")
    }

    fn problem(err: PkiError) -> RequestProblem {
        match err {
            PkiError::BadRequest { problem, .. } => problem,
            other => panic!("expected a refused request, got {other}"),
        }
    }

    #[test]
    fn init_separate_keeps_the_ca_key_out_of_the_served_folder() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let auth = separate(tmp.path());
        let mut served: Vec<String> = fs::read_dir(auth.dir())
            .expect("read")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        served.sort();
        assert_eq!(
            served,
            [CA_CERT, SERVER_KEY, SERVER_CERT, CRL, ROSTER]
                .map(String::from)
                .to_vec()
        );
        assert!(auth.ca_dir().join(CA_KEY).exists());
        assert!(!auth.ca_dir().join(ROSTER).exists());
        check_serving_dir(auth.dir()).expect("a servable folder");
        // Neither folder is initialised twice.
        assert!(matches!(
            init_separate(
                auth.ca_dir(),
                &tmp.path().join("other"),
                &InitOptions::new("t")
            ),
            Err(PkiError::AlreadyInitialised { .. })
        ));
        assert!(matches!(
            init_separate(&tmp.path().join("ca2"), auth.dir(), &InitOptions::new("t")),
            Err(PkiError::AlreadyInitialised { .. })
        ));
    }

    #[test]
    fn a_signed_request_chains_to_the_ca_with_the_requests_key() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let auth = separate(tmp.path());
        let request = generate_request("bank_a").expect("request");
        assert!(!format!("{request:?}").contains("PRIVATE"), "{request:?}");
        let csr = write_csr(tmp.path(), "bank_a.csr", &request.csr_pem);
        let entry = sign_request(&auth, &csr, Role::Participant, 30).expect("sign");
        assert_eq!((entry.id, entry.name.as_str()), (1, "bank_a"));
        assert_eq!(entry.role, Role::Participant);
        assert_eq!(entry.public_key, request.public_key);
        // The certificate is in the served folder and no key was written anywhere.
        let pem = fs::read_to_string(auth.dir().join("bank_a.pem")).expect("pem");
        for dir in [auth.dir(), auth.ca_dir()] {
            assert!(!dir.join("bank_a.key").exists());
        }
        check_serving_dir(auth.dir()).expect("still servable");
        let der = pem_to_der(&pem);
        assert_eq!(fingerprint(&der), entry.fingerprint);
        let ca_pem = fs::read_to_string(auth.dir().join(CA_CERT)).expect("ca");
        let vk = crate::client::verify_peer_certificate(&ca_pem, &der).expect("chains to the CA");
        assert_eq!(hex::encode(vk.as_bytes()), request.public_key);
        let subject = subject_of(&der).expect("subject");
        for part in ["CN=bank_a", "OU=participant", "O=testfed"] {
            assert!(subject.contains(part), "{subject}");
        }
        let roster = Roster::load(&auth.dir().join(ROSTER)).expect("roster");
        assert_eq!(roster.by_fingerprint(&entry.fingerprint), Some(&entry));

        // The key and the request's certificate work together as a TLS identity.
        let inst = tmp.path().join("bank_a");
        fs::create_dir_all(&inst).expect("mkdir");
        fs::write(inst.join("ca.pem"), &ca_pem).expect("ca");
        fs::write(inst.join("bank_a.pem"), &pem).expect("cert");
        fs::write(inst.join("bank_a.key"), request.key_pem.as_bytes()).expect("key");
        crate::client::ClientIdentity::from_dir(&inst, "bank_a").expect("a usable identity");

        // An operator's request gets the operator role.
        let ops = generate_request("ops").expect("request");
        let csr = write_csr(tmp.path(), "ops.csr", &ops.csr_pem);
        let e = sign_request(&auth, &csr, Role::Operator, 30).expect("sign");
        assert_eq!((e.id, e.role), (2, Role::Operator));
    }

    #[test]
    fn only_the_key_and_the_name_are_taken_from_a_request() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let auth = separate(tmp.path());
        let key = KeyPair::generate_for(&PKCS_ED25519).expect("key");
        let mut params = CertificateParams::new(vec!["evil.example".to_owned()]).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let csr = write_csr(tmp.path(), "r.csr", &request_with("bank_c", &key, params));
        sign_request(&auth, &csr, Role::Participant, 30).expect("sign");
        let der = pem_to_der(&fs::read_to_string(auth.dir().join("bank_c.pem")).expect("pem"));
        let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("parse");
        assert!(!cert.is_ca());
        assert!(cert.subject_alternative_name().expect("san").is_none());
        let eku = cert
            .extended_key_usage()
            .expect("eku")
            .expect("has an EKU")
            .value;
        assert!(eku.client_auth && !eku.server_auth);
        let ku = cert.key_usage().expect("ku").expect("has a KU").value;
        assert!(ku.digital_signature() && !ku.key_cert_sign());
    }

    #[test]
    fn bad_requests_are_refused_naming_the_file() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let auth = separate(tmp.path());
        let good = generate_request("bank_a").expect("request");

        // Altered after signing: the name changed in the DER (same length, so it still parses).
        let der = {
            use rustls_pki_types::CertificateSigningRequestDer;
            use rustls_pki_types::pem::PemObject;
            CertificateSigningRequestDer::from_pem_slice(good.csr_pem.as_bytes())
                .expect("der")
                .as_ref()
                .to_vec()
        };
        let at = der
            .windows(6)
            .position(|w| w == b"bank_a")
            .expect("the name in the DER");
        let mut altered = der.clone();
        altered[at + 5] = b'z';
        let path = write_csr(tmp.path(), "tampered.csr", &csr_pem(&altered));
        let err = sign_request(&auth, &path, Role::Participant, 30).expect_err("tampered");
        assert!(err.to_string().contains("tampered.csr"), "{err}");
        assert_eq!(problem(err), RequestProblem::BadSignature);

        // A flipped signature bit.
        let mut flipped = der.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        let path = write_csr(tmp.path(), "flipped.csr", &csr_pem(&flipped));
        let err = sign_request(&auth, &path, Role::Participant, 30).expect_err("flipped");
        assert_eq!(problem(err), RequestProblem::BadSignature);

        // An ECDSA key.
        let ec = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
        let path = write_csr(
            tmp.path(),
            "ecdsa.csr",
            &request_with("bank_e", &ec, CertificateParams::default()),
        );
        let err = sign_request(&auth, &path, Role::Participant, 30).expect_err("ecdsa");
        assert!(err.to_string().contains("ecdsa.csr"), "{err}");
        assert_eq!(problem(err), RequestProblem::NotEd25519("ECDSA".into()));

        // Invalid names, and no name.
        let ed = KeyPair::generate_for(&PKCS_ED25519).expect("key");
        for (file, name) in [
            ("upper.csr", "Bank A"),
            ("ca.csr", "ca"),
            ("dots.csr", "../x"),
        ] {
            let path = write_csr(
                tmp.path(),
                file,
                &request_with(name, &ed, CertificateParams::default()),
            );
            let err = sign_request(&auth, &path, Role::Participant, 30).expect_err(name);
            assert!(err.to_string().contains(file), "{err}");
            assert_eq!(problem(err), RequestProblem::InvalidName(name.into()));
        }
        let mut nameless = CertificateParams::default();
        nameless.distinguished_name = rcgen::DistinguishedName::new();
        let pem = nameless
            .serialize_request(&ed)
            .expect("csr")
            .pem()
            .expect("pem");
        let path = write_csr(tmp.path(), "nameless.csr", &pem);
        let err = sign_request(&auth, &path, Role::Participant, 30).expect_err("no CN");
        assert_eq!(problem(err), RequestProblem::CommonName);

        // Not a request at all (a certificate), and garbage.
        let path = tmp.path().join("pki").join(CA_CERT);
        let err = sign_request(&auth, &path, Role::Participant, 30).expect_err("a certificate");
        assert_eq!(problem(err), RequestProblem::NotPem);
        let with_key = format!("{}{}", good.csr_pem, good.key_pem.as_str());
        let path = write_csr(tmp.path(), "with_key.csr", &with_key);
        let err = sign_request(&auth, &path, Role::Participant, 30).expect_err("a key");
        assert!(!err.to_string().contains(good.key_pem.as_str()), "{err}");
        assert_eq!(problem(err), RequestProblem::PrivateKey);
        let path = write_csr(tmp.path(), "junk.csr", "hello");
        let err = sign_request(&auth, &path, Role::Participant, 30).expect_err("junk");
        assert_eq!(problem(err), RequestProblem::NotPem);
        let err = sign_request(&auth, &tmp.path().join("absent.csr"), Role::Participant, 30)
            .expect_err("absent");
        assert!(err.to_string().contains("absent.csr"), "{err}");

        // Nothing refused reached the roster or the folder.
        let roster = Roster::load(&auth.dir().join(ROSTER)).expect("roster");
        assert!(roster.entries.is_empty(), "{roster:?}");
        let good_path = write_csr(tmp.path(), "bank_a.csr", &good.csr_pem);
        sign_request(&auth, &good_path, Role::Participant, 30).expect("the good one signs");
    }

    #[test]
    fn a_name_is_active_once_and_a_key_is_certified_once() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let auth = separate(tmp.path());
        let first = generate_request("bank_a").expect("request");
        let first_csr = write_csr(tmp.path(), "a1.csr", &first.csr_pem);
        let a = sign_request(&auth, &first_csr, Role::Participant, 30).expect("sign");
        // Another key under an active name: refused, and the first certificate stays.
        let second = generate_request("bank_a").expect("request");
        let second_csr = write_csr(tmp.path(), "a2.csr", &second.csr_pem);
        assert!(matches!(
            sign_request(&auth, &second_csr, Role::Participant, 30),
            Err(PkiError::AlreadyIssued { ref name, .. }) if name == "bank_a"
        ));
        let pem = fs::read_to_string(auth.dir().join("bank_a.pem")).expect("pem");
        assert_eq!(fingerprint(&pem_to_der(&pem)), a.fingerprint);
        // After revocation the name can be certified again, but not with the same key.
        revoke(auth.dir(), "bank_a").expect("revoke");
        let err = sign_request(&auth, &first_csr, Role::Participant, 30).expect_err("reuse");
        assert_eq!(
            problem(err),
            RequestProblem::KeyReused {
                name: "bank_a".into(),
                id: 1
            }
        );
        let again = sign_request(&auth, &second_csr, Role::Participant, 30).expect("new key");
        assert_eq!(again.id, 2);
    }

    #[test]
    fn a_federation_folder_of_another_ca_is_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let ours = separate(&tmp.path().join("ours"));
        let theirs = separate(&tmp.path().join("theirs"));
        let mixed = Authority::new(theirs.ca_dir(), ours.dir());
        let csr = write_csr(
            tmp.path(),
            "bank_a.csr",
            &generate_request("bank_a").expect("request").csr_pem,
        );
        let err = sign_request(&mixed, &csr, Role::Participant, 30).expect_err("mismatch");
        assert!(matches!(err, PkiError::CaMismatch { .. }), "{err}");
        assert!(!ours.dir().join("bank_a.pem").exists());
    }

    #[test]
    fn the_served_folder_holds_no_private_key_but_the_coordinators() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let auth = separate(tmp.path());
        let dir = auth.dir();
        check_serving_dir(dir).expect("clean");
        // A member's key (here the operator's, made by issue_to into the served folder).
        issue_to(&auth, dir, "ops", Role::Operator, 30).expect("issue");
        let err = check_serving_dir(dir).expect_err("a member's key");
        assert!(
            matches!(&err, PkiError::MemberKeyInServingDir { name, .. } if name == "ops"),
            "{err}"
        );
        assert!(err.to_string().contains("ops.key"), "{err}");
        // The CA key is reported first, whatever else is there.
        fs::copy(auth.ca_dir().join(CA_KEY), dir.join(CA_KEY)).expect("copy");
        let err = check_serving_dir(dir).expect_err("the CA key");
        assert!(matches!(err, PkiError::CaKeyInServingDir { .. }), "{err}");
        assert!(err.to_string().contains("ca.key"), "{err}");
        assert!(err.to_string().contains("offline"), "{err}");
        // A single-folder federation (the lab's) is not servable.
        let single = tmp.path().join("single");
        init(&single, "lab").expect("init");
        assert!(matches!(
            check_serving_dir(&single),
            Err(PkiError::CaKeyInServingDir { .. })
        ));
        assert!(check_serving_dir(&tmp.path().join("absent")).is_err());
    }

    #[test]
    fn generated_requests_are_fresh_and_named() {
        let a = generate_request("bank_a").expect("a");
        let b = generate_request("bank_a").expect("b");
        assert_ne!(a.public_key, b.public_key);
        assert!(a.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(a.csr_pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
        let parsed = parse_request(&a.csr_pem).expect("parses");
        assert_eq!(parsed.name, "bank_a");
        assert_eq!(hex::encode(parsed.public_key.der_bytes()), a.public_key);
        assert!(matches!(
            generate_request("Bank A"),
            Err(PkiError::InvalidName(_))
        ));
    }

    /// PEM of a request's DER (base64 in 64-character lines).
    fn csr_pem(der: &[u8]) -> String {
        let b64 = base64(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|l| std::str::from_utf8(l).expect("ascii"))
            .collect();
        format!(
            "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
            lines.join("\n")
        )
    }

    fn base64(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    pub(crate) fn pem_to_der(pem: &str) -> Vec<u8> {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        CertificateDer::from_pem_slice(pem.as_bytes())
            .expect("pem")
            .to_vec()
    }
}

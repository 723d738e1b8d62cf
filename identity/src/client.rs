//! Client side of the federation's mutual TLS, and the participant's secagg identity key.
//!
//! The participant's certificate key is Ed25519 and doubles as its secagg signing key
//! (see the coordinator's `pki` module), so the key file is read once here into
//! [`ClientIdentity`], kept in zeroizing memory, and used both for the TLS identity and,
//! through [`ClientIdentity::signing_key`], for secagg signatures.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::DecodePrivateKey;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use zeroize::Zeroizing;

/// Default limit for TCP connect plus TLS handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors of the client TLS set-up; file errors name the file.
#[derive(Debug, thiserror::Error)]
pub enum ClientTlsError {
    /// Reading a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The key is not a PKCS#8 Ed25519 private key.
    #[error("{what}: not a PKCS#8 Ed25519 private key: {reason}")]
    Key {
        /// Which key (file name or "identity key").
        what: String,
        /// The cause (never the key material).
        reason: String,
    },
    /// The coordinator URL or TLS settings were refused.
    #[error("endpoint {url}")]
    Endpoint {
        /// The URL.
        url: String,
        /// The cause.
        source: tonic::transport::Error,
    },
    /// Connecting (TCP or TLS handshake) failed.
    #[error("connecting to {url}")]
    Connect {
        /// The URL.
        url: String,
        /// The cause.
        source: tonic::transport::Error,
    },
    /// The coordinator URL is not `https://`.
    #[error("coordinator URL `{0}`: the coordinator speaks only TLS; use https://HOST:PORT")]
    NotHttps(String),
    /// The key file's key is not the certificate's.
    #[error(
        "{key} does not match the certificate {cert}: give the key that was generated with this certificate"
    )]
    KeyMismatch {
        /// The key file.
        key: String,
        /// The certificate file.
        cert: String,
    },
    /// The certificate was not issued by the CA given.
    #[error("{cert} was not issued by the federation CA in {ca}: {reason}")]
    NotIssuedByCa {
        /// The certificate file.
        cert: String,
        /// The CA file.
        ca: String,
        /// What the check found.
        reason: String,
    },
}

/// Why a TLS connection was refused for good: each needs a person to act (a new
/// certificate, the right CA file), so an agent stops with this message instead of retrying.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsRefusal {
    /// The coordinator refused the certificate as revoked.
    #[error(
        "the coordinator refused this certificate: it is revoked (ask the federation's operator for a new one)"
    )]
    Revoked,
    /// The coordinator refused the certificate as expired.
    #[error("the coordinator refused this certificate: it has expired or is not yet valid")]
    Expired,
    /// The coordinator does not know the certificate or its issuer.
    #[error(
        "the coordinator does not accept this certificate (issued by another CA, or not on the federation's roster): check --cert, --key and --ca"
    )]
    Unknown,
    /// The coordinator's own certificate does not chain to the agent's CA.
    #[error(
        "the coordinator's certificate is not signed by the CA in --ca (another federation's CA?): {0}"
    )]
    ServerNotTrusted(String),
    /// The coordinator's certificate does not name the host connected to.
    #[error(
        "the coordinator's certificate does not name the host in the URL: set --domain to a name it carries ({0})"
    )]
    WrongName(String),
}

/// Finds a refusal of the TLS handshake in an error's chain (a connect error, or the
/// status of the first call, where TLS 1.3 reports the server's verdict). `None` for
/// errors worth retrying (the coordinator is down, the network is cut).
pub fn tls_refusal(err: &(dyn std::error::Error + 'static)) -> Option<TlsRefusal> {
    use rustls::{AlertDescription as A, CertificateError as C, Error as E};
    let map = |e: &E| -> Option<TlsRefusal> {
        Some(match e {
            E::AlertReceived(A::CertificateRevoked) => TlsRefusal::Revoked,
            E::AlertReceived(A::CertificateExpired) => TlsRefusal::Expired,
            E::AlertReceived(
                A::UnknownCA
                | A::BadCertificate
                | A::CertificateUnknown
                | A::AccessDenied
                | A::UnsupportedCertificate
                | A::DecryptError,
            ) => TlsRefusal::Unknown,
            E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
                TlsRefusal::WrongName(e.to_string())
            }
            E::InvalidCertificate(_) => TlsRefusal::ServerNotTrusted(e.to_string()),
            _ => return None,
        })
    };
    // tokio-rustls hands the TLS error up as the text of an io::Error, so the alert is
    // recognised by its text where the typed error is gone.
    let by_text = |text: &str| -> Option<TlsRefusal> {
        let alert = text.split("received fatal alert: ").nth(1)?;
        let name = alert.split(|c: char| !c.is_ascii_alphanumeric()).next()?;
        Some(match name {
            "CertificateRevoked" => TlsRefusal::Revoked,
            "CertificateExpired" => TlsRefusal::Expired,
            "UnknownCA"
            | "BadCertificate"
            | "CertificateUnknown"
            | "AccessDenied"
            | "UnsupportedCertificate"
            | "DecryptError" => TlsRefusal::Unknown,
            _ => return None,
        })
    };
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = next {
        if let Some(r) = e.downcast_ref::<E>().and_then(map) {
            return Some(r);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
        {
            if let Some(r) = inner.downcast_ref::<E>().and_then(map) {
                return Some(r);
            }
            if let Some(r) = by_text(&inner.to_string()) {
                return Some(r);
            }
        }
        if let Some(r) = by_text(&e.to_string()) {
            return Some(r);
        }
        next = e.source();
    }
    None
}

/// An error and its causes on one line, each cause once: wrappers that repeat their
/// source's text (tonic's "transport error", io errors quoted by their context) are not
/// printed twice.
pub fn describe_error(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = String::new();
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = next {
        // A gRPC status prints its source's debug form; its message is what it says.
        let text = match e.downcast_ref::<tonic::Status>() {
            Some(status) => status.message().to_string(),
            None => e.to_string(),
        };
        if !text.is_empty() && !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        next = e.source();
    }
    out
}

/// The participant's TLS material: federation CA, own certificate and key.
pub struct ClientIdentity {
    /// The federation CA certificate, PEM.
    pub ca_pem: String,
    /// Own certificate, PEM.
    pub cert_pem: String,
    key_pem: Zeroizing<String>,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

fn read(path: &Path) -> Result<String, ClientTlsError> {
    std::fs::read_to_string(path).map_err(|source| ClientTlsError::Io {
        path: path.to_owned(),
        source,
    })
}

impl ClientIdentity {
    /// Reads the three PEM files and checks that the key is an Ed25519 PKCS#8 key.
    ///
    /// Also checks, before any connection, what would otherwise surface as an anonymous
    /// handshake failure: the key is the certificate's, and the certificate was issued by
    /// the CA given.
    pub fn from_files(ca: &Path, cert: &Path, key: &Path) -> Result<Self, ClientTlsError> {
        let key_pem = Zeroizing::new(read(key)?);
        let signing = identity_signing_key_from_pkcs8_pem(&key_pem).map_err(|e| match e {
            ClientTlsError::Key { reason, .. } => ClientTlsError::Key {
                what: key.display().to_string(),
                reason,
            },
            other => other,
        })?;
        let ca_pem = read(ca)?;
        let cert_pem = read(cert)?;
        let cert_der = {
            use rustls::pki_types::{CertificateDer, pem::PemObject};
            CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| {
                ClientTlsError::NotIssuedByCa {
                    cert: cert.display().to_string(),
                    ca: ca.display().to_string(),
                    reason: format!("not a PEM certificate: {e}"),
                }
            })?
        };
        let public = verify_peer_certificate(&ca_pem, &cert_der).map_err(|e| {
            ClientTlsError::NotIssuedByCa {
                cert: cert.display().to_string(),
                ca: ca.display().to_string(),
                reason: e.to_string(),
            }
        })?;
        if public != signing.verifying_key() {
            return Err(ClientTlsError::KeyMismatch {
                key: key.display().to_string(),
                cert: cert.display().to_string(),
            });
        }
        Ok(Self {
            ca_pem,
            cert_pem,
            key_pem,
        })
    }

    /// Reads the three PEM files with only the key's format checked: for tests of what
    /// the coordinator refuses (an expired certificate, another CA's), which
    /// [`ClientIdentity::from_files`] would stop before any connection.
    pub fn from_files_unchecked(
        ca: &Path,
        cert: &Path,
        key: &Path,
    ) -> Result<Self, ClientTlsError> {
        let key_pem = Zeroizing::new(read(key)?);
        identity_signing_key_from_pkcs8_pem(&key_pem)?;
        Ok(Self {
            ca_pem: read(ca)?,
            cert_pem: read(cert)?,
            key_pem,
        })
    }

    /// Reads `ca.pem`, `<name>.pem` and `<name>.key` from a directory laid out by
    /// `fedrisk-coordinator certs`.
    pub fn from_dir(dir: &Path, name: &str) -> Result<Self, ClientTlsError> {
        Self::from_files(
            &dir.join("ca.pem"),
            &dir.join(format!("{name}.pem")),
            &dir.join(format!("{name}.key")),
        )
    }

    /// The secagg identity (signing) key: the certificate's own key.
    pub fn signing_key(&self) -> Result<SigningKey, ClientTlsError> {
        identity_signing_key_from_pkcs8_pem(&self.key_pem)
    }

    /// tonic's TLS settings: trust only the federation CA, present this identity.
    ///
    /// tonic copies the key into its own buffers, which are not zeroized; the copy lives
    /// as long as the channel.
    pub fn tls_config(&self, domain: &str) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .domain_name(domain)
            .identity(Identity::from_pem(&self.cert_pem, self.key_pem.as_bytes()))
    }
}

/// Parses the participant's PKCS#8 PEM key (as written by `fedrisk-participant keygen`) into its Ed25519
/// signing key. The PEM is the caller's to wipe; the returned key zeroizes itself on drop.
pub fn identity_signing_key_from_pkcs8_pem(pem: &str) -> Result<SigningKey, ClientTlsError> {
    SigningKey::from_pkcs8_pem(pem).map_err(|e| ClientTlsError::Key {
        what: "identity key".into(),
        reason: e.to_string(),
    })
}

/// An endpoint for `url` (e.g. `https://127.0.0.1:7443`) with mutual TLS, expecting the
/// coordinator's certificate to name `domain` (`localhost` or `127.0.0.1` by default).
pub fn endpoint(
    url: &str,
    domain: &str,
    identity: &ClientIdentity,
    connect_timeout: Duration,
) -> Result<Endpoint, ClientTlsError> {
    if !url.starts_with("https://") {
        return Err(ClientTlsError::NotHttps(url.to_owned()));
    }
    let err = |source| ClientTlsError::Endpoint {
        url: url.to_owned(),
        source,
    };
    Endpoint::from_shared(url.to_owned())
        .map_err(err)?
        .tls_config(identity.tls_config(domain))
        .map_err(err)
        .map(|e| {
            e.connect_timeout(connect_timeout)
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(30))
                .keep_alive_while_idle(true)
        })
}

/// Connects now (TCP and TLS). Wrap the channel with `fedrisk_proto::participant_client`
/// so the message size limits are set.
///
/// Under TLS 1.3 the coordinator's verdict on the client certificate arrives after the
/// client considers the handshake done, so a refused certificate typically surfaces as an
/// error of the first RPC, not of this call.
pub async fn connect(
    url: &str,
    domain: &str,
    identity: &ClientIdentity,
    connect_timeout: Duration,
) -> Result<Channel, ClientTlsError> {
    endpoint(url, domain, identity, connect_timeout)?
        .connect()
        .await
        .map_err(|source| ClientTlsError::Connect {
            url: url.to_owned(),
            source,
        })
}

/// Why a peer's certificate was not accepted as a secure-aggregation identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerCertError {
    /// The agent's own CA file is unusable.
    #[error("federation CA: {0}")]
    Ca(String),
    /// The certificate fails the chain, validity or client-auth check.
    #[error("refused by the federation CA check: {0}")]
    Chain(String),
    /// The certificate does not parse.
    #[error("unparsable certificate: {0}")]
    Unparsable(String),
    /// Its key is not Ed25519 (not a fedrisk identity).
    #[error("no Ed25519 public key: {0}")]
    NotEd25519(String),
    /// The certificate is not a participant's (an operator's, say): it cannot be a peer.
    #[error("participant {id}'s certificate is a `{role}` certificate, not a participant's")]
    NotParticipant {
        /// The roster id it was offered as.
        id: u32,
        /// The role its certificate names.
        role: String,
    },
    /// The revocation list does not parse or carries no number.
    #[error("revocation list: {0}")]
    Crl(String),
    /// One id listed twice.
    #[error("participant {0} is listed twice")]
    DuplicateId(u32),
    /// Two ids with one certificate or one key: one institution posing as several.
    #[error("participants {0} and {1} share one identity (certificate or key)")]
    SharedIdentity(u32, u32),
    /// A peer's certificate failed a check.
    #[error("participant {id}: {source}")]
    Peer {
        /// The roster id.
        id: u32,
        /// What failed.
        #[source]
        source: Box<PeerCertError>,
    },
}

/// What a fedrisk certificate says of its holder, read in one parse: its Ed25519 identity
/// key, its institution (the subject's CN) and its role (the subject's OU).
#[derive(Clone)]
struct Holder {
    key: ed25519_dalek::VerifyingKey,
    name: String,
    role: String,
}

fn holder(cert_der: &[u8]) -> Result<Holder, PeerCertError> {
    use ed25519_dalek::pkcs8::DecodePublicKey;
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| PeerCertError::Unparsable(e.to_string()))?;
    let key = ed25519_dalek::VerifyingKey::from_public_key_der(cert.public_key().raw)
        .map_err(|e| PeerCertError::NotEd25519(e.to_string()))?;
    Ok(Holder {
        key,
        name: first_text(cert.subject().iter_common_name()),
        role: first_text(cert.subject().iter_organizational_unit()),
    })
}

fn first_text<'a>(
    mut attributes: impl Iterator<Item = &'a x509_parser::x509::AttributeTypeAndValue<'a>>,
) -> String {
    attributes
        .next()
        .and_then(|a| a.as_str().ok())
        .map(str::to_string)
        .unwrap_or_default()
}

/// Checks every peer a session names: each certificate chains to the federation CA, is a
/// participant's (not an operator's), and belongs to one id only; no two ids share a
/// certificate or an Ed25519 key (compared in canonical encoding). Returns the peers' keys.
/// This is what keeps a coordinator from filling a session with identities it controls
/// beyond the institutions the CA certified.
pub fn verify_session_peers(
    ca_pem: &str,
    crl_der: &[u8],
    peers: &[(u32, &[u8])],
) -> Result<SessionPeers, PeerCertError> {
    verify_session_peers_cached(ca_pem, crl_der, peers, &mut PeerCache::default())
}

/// Peer certificates already checked, so that the sessions of a job (two or more per round,
/// with the same peers) do not check every certificate again: at scale that was a large share
/// of an agent's work per round. An entry holds for the CA and revocation list it was checked
/// under and for [`PeerCache::MAX_AGE`] (validity dates move on).
#[derive(Default)]
pub struct PeerCache {
    /// SHA-256 over the CA and the revocation list the entries were checked under.
    context: [u8; 32],
    checked: std::collections::HashMap<[u8; 32], (Holder, std::time::Instant)>,
}

impl PeerCache {
    /// How long a checked certificate is trusted without checking it again.
    pub const MAX_AGE: Duration = Duration::from_secs(600);

    /// How many certificates are held.
    pub fn len(&self) -> usize {
        self.checked.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.checked.is_empty()
    }

    /// Makes this the cache of checks under `ca_pem` and `crl_der`, and takes every entry
    /// `checked` holds under the same CA and list. Entries keep the time they were checked,
    /// so [`Self::MAX_AGE`] still counts from the check. Saves checking each peer twice, once
    /// for the session and once for the lineage record that names it (at n = 200, 200 P-256
    /// signatures per agent).
    pub fn adopt(&mut self, ca_pem: &str, crl_der: &[u8], checked: &PeerCache) {
        self.enter(ca_pem, crl_der);
        if checked.context != self.context {
            return;
        }
        for (fingerprint, entry) in &checked.checked {
            self.checked
                .entry(*fingerprint)
                .or_insert_with(|| entry.clone());
        }
    }

    /// Holds checks under `ca_pem` and `crl_der` from now on: entries of another CA or list
    /// are dropped.
    fn enter(&mut self, ca_pem: &str, crl_der: &[u8]) {
        let context = sha256(&[ca_pem.as_bytes(), crl_der]);
        if self.context != context {
            self.context = context;
            self.checked.clear();
        }
    }
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().into()
}

/// [`verify_session_peers`] with the certificates already checked under the same CA and
/// revocation list taken from `cache`. The checks across peers (one id, key and name each)
/// are made for every session.
pub fn verify_session_peers_cached(
    ca_pem: &str,
    crl_der: &[u8],
    peers: &[(u32, &[u8])],
    cache: &mut PeerCache,
) -> Result<SessionPeers, PeerCertError> {
    let crl_number = if crl_der.is_empty() {
        None
    } else {
        Some(crl_number(crl_der)?)
    };
    cache.enter(ca_pem, crl_der);
    let mut verifier = None;
    let mut seen_ids = std::collections::BTreeSet::new();
    let mut by_key: std::collections::BTreeMap<[u8; 32], u32> = Default::default();
    let mut by_name: std::collections::BTreeMap<String, u32> = Default::default();
    let mut out = Vec::with_capacity(peers.len());
    for &(id, der) in peers {
        if !seen_ids.insert(id) {
            return Err(PeerCertError::DuplicateId(id));
        }
        let peer_err = |e| PeerCertError::Peer {
            id,
            source: Box::new(e),
        };
        let fingerprint = sha256(&[der]);
        let holder = match cache.checked.get(&fingerprint) {
            Some((h, at)) if at.elapsed() < PeerCache::MAX_AGE => h.clone(),
            _ => {
                let v = match &verifier {
                    Some(v) => v,
                    None => verifier.insert(client_verifier(
                        ca_pem,
                        (!crl_der.is_empty()).then_some(crl_der),
                    )?),
                };
                check_chain(v, der).map_err(peer_err)?;
                let h = holder(der).map_err(peer_err)?;
                cache
                    .checked
                    .insert(fingerprint, (h.clone(), std::time::Instant::now()));
                h
            }
        };
        let Holder { key, name, role } = holder;
        if role != "participant" {
            return Err(PeerCertError::NotParticipant { id, role });
        }
        // One certificate under two ids carries one key. One institution with a reissued
        // certificate (a new one after a revocation, the old key kept) carries one name.
        if let Some(&other) = by_key.get(&key.to_bytes()).or_else(|| by_name.get(&name)) {
            return Err(PeerCertError::SharedIdentity(other, id));
        }
        by_name.insert(name, id);
        by_key.insert(key.to_bytes(), id);
        out.push((id, key));
    }
    Ok(SessionPeers {
        keys: out,
        crl_number,
    })
}

/// The peers of a session, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionPeers {
    /// Each peer's id and Ed25519 identity key.
    pub keys: Vec<(u32, ed25519_dalek::VerifyingKey)>,
    /// The number of the revocation list they were checked against (`None`: none came).
    pub crl_number: Option<u64>,
}

/// The CRL number of a DER revocation list (it must carry one).
fn crl_number(der: &[u8]) -> Result<u64, PeerCertError> {
    use x509_parser::prelude::FromDer;
    let (_, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(der)
        .map_err(|e| PeerCertError::Crl(e.to_string()))?;
    let n = crl
        .crl_number()
        .ok_or_else(|| PeerCertError::Crl("the revocation list has no number".into()))?;
    let bytes = n.to_bytes_be();
    if bytes.len() > 8 {
        return Err(PeerCertError::Crl(
            "revocation list number too large".into(),
        ));
    }
    Ok(bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
}

/// The federation CA's client-certificate verifier, with a revocation list if given (then
/// every end-entity certificate's status must be known from it).
fn client_verifier(
    ca_pem: &str,
    crl_der: Option<&[u8]>,
) -> Result<std::sync::Arc<dyn rustls::server::danger::ClientCertVerifier>, PeerCertError> {
    use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, pem::PemObject};
    let ca_err = |e: &dyn std::fmt::Display| PeerCertError::Ca(e.to_string());
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let ca = ca.map_err(|e| ca_err(&e))?;
        roots.add(ca).map_err(|e| ca_err(&e))?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut builder = rustls::server::WebPkiClientVerifier::builder_with_provider(
        std::sync::Arc::new(roots),
        provider,
    );
    if let Some(der) = crl_der {
        builder = builder
            .with_crls([CertificateRevocationListDer::from(der.to_vec())])
            .only_check_end_entity_revocation();
    }
    builder.build().map_err(|e| ca_err(&e))
}

fn check_chain(
    verifier: &std::sync::Arc<dyn rustls::server::danger::ClientCertVerifier>,
    cert_der: &[u8],
) -> Result<(), PeerCertError> {
    use rustls::pki_types::{CertificateDer, UnixTime};
    verifier
        .verify_client_cert(&CertificateDer::from(cert_der), &[], UnixTime::now())
        .map(|_| ())
        .map_err(|e| PeerCertError::Chain(e.to_string()))
}

/// Checks a peer's certificate against the federation CA (chain, validity, client-auth usage)
/// and returns its Ed25519 identity key. The coordinator relays peers' certificates; this
/// check is what keeps it from substituting keys of its own.
pub fn verify_peer_certificate(
    ca_pem: &str,
    cert_der: &[u8],
) -> Result<ed25519_dalek::VerifyingKey, PeerCertError> {
    check_chain(&client_verifier(ca_pem, None)?, cert_der)?;
    certificate_identity_key(cert_der)
}

/// The Ed25519 key in a certificate's SubjectPublicKeyInfo: the holder's secagg identity
/// key, bound to its TLS identity. Checks nothing else (see [`verify_peer_certificate`]).
pub fn certificate_identity_key(
    cert_der: &[u8],
) -> Result<ed25519_dalek::VerifyingKey, PeerCertError> {
    holder(cert_der).map(|h| h.key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_found_in_typed_and_text_forms_and_transient_errors_are_not() {
        let typed = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRevoked),
        );
        assert_eq!(tls_refusal(&typed), Some(TlsRefusal::Revoked));
        let text = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "received fatal alert: UnknownCA",
        );
        assert_eq!(tls_refusal(&text), Some(TlsRefusal::Unknown));
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(tls_refusal(&refused), None);
    }

    #[test]
    fn a_cause_quoted_by_its_context_is_printed_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("reading x.csv: {source}")]
        struct Outer {
            source: std::io::Error,
        }
        let e = Outer {
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "No such file"),
        };
        assert_eq!(describe_error(&e), "reading x.csv: No such file");
        let status = tonic::Status::unavailable("coordinator down");
        assert_eq!(describe_error(&status), "coordinator down");
    }
}

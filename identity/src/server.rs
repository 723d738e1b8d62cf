//! Server side of the federation's mutual TLS.
//!
//! tonic's `ServerTlsConfig` only checks that a client certificate chains to a CA; fedrisk
//! also needs the roster (unknown, revoked and expired certificates refused), so TLS is
//! accepted here with tokio-rustls and a [`RosterVerifier`], and tonic serves the
//! resulting streams through `serve_with_incoming`. tonic implements `Connected` for
//! `tokio_rustls::server::TlsStream<TcpStream>`, so handlers still get the client
//! certificate from `Request::peer_certs()`; [`Authenticated::from_request`] maps it to the
//! roster entry.
//!
//! ```no_run
//! # async fn run(pki_dir: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
//! use fedrisk_identity::{pki::PkiDir, server as tls};
//! tls::install_crypto_provider();
//! let pki = PkiDir::new(pki_dir);
//! let roster = tls::RosterHandle::load(&pki.roster())?;
//! let config = tls::server_config(&pki, roster.clone())?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:7443").await?;
//! let incoming = tls::tls_incoming(listener, config, tls::HANDSHAKE_TIMEOUT);
//! # struct Svc;
//! # #[tonic::async_trait]
//! # impl fedrisk_proto::Participant for Svc {
//! #   async fn join(&self, _: tonic::Request<fedrisk_proto::v1::JoinRequest>) -> Result<tonic::Response<fedrisk_proto::v1::JoinResponse>, tonic::Status> { Err(tonic::Status::unimplemented("example")) }
//! #   type TasksStream = tokio_stream::wrappers::ReceiverStream<Result<fedrisk_proto::v1::Task, tonic::Status>>;
//! #   async fn tasks(&self, _: tonic::Request<fedrisk_proto::v1::TaskStreamRequest>) -> Result<tonic::Response<Self::TasksStream>, tonic::Status> { Err(tonic::Status::unimplemented("example")) }
//! #   async fn send_sec_agg(&self, _: tonic::Request<fedrisk_proto::v1::SecAggUpload>) -> Result<tonic::Response<fedrisk_proto::v1::Ack>, tonic::Status> { Err(tonic::Status::unimplemented("example")) }
//! #   async fn fetch_content(&self, _: tonic::Request<fedrisk_proto::v1::ContentRequest>) -> Result<tonic::Response<fedrisk_proto::v1::Content>, tonic::Status> { Err(tonic::Status::unimplemented("example")) }
//! #   async fn refuse(&self, _: tonic::Request<fedrisk_proto::v1::Refusal>) -> Result<tonic::Response<fedrisk_proto::v1::Ack>, tonic::Status> { Err(tonic::Status::unimplemented("example")) }
//! #   async fn heartbeat(&self, _: tonic::Request<fedrisk_proto::v1::HeartbeatRequest>) -> Result<tonic::Response<fedrisk_proto::v1::HeartbeatResponse>, tonic::Status> { Err(tonic::Status::unimplemented("example")) }
//! # }
//! # let service = Svc;
//! tonic::transport::Server::builder()
//!     .add_service(fedrisk_proto::participant_server(service))
//!     .serve_with_incoming(incoming)
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! Revocation: the roster file is re-read whenever it changes on disk (checked at every
//! handshake and every [`Authenticated::from_request`]), so a revoked certificate can
//! open no new connection and make no new RPC. A server stream already open (`Tasks`)
//! is not cut by this module: the round engine should drop streams of revoked peers.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ed25519_dalek::VerifyingKey;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Status};
use tracing::{debug, info, warn};
use zeroize::Zeroizing;

use crate::pki::{self, PkiDir, PkiError, Role, Roster};

/// How long a client may take to complete the TLS handshake before it is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// At most this many handshakes run at once, so a flood of idle TCP connections cannot
/// exhaust memory; further connections wait in the kernel's accept queue.
const MAX_CONCURRENT_HANDSHAKES: usize = 256;

/// Errors building the server's TLS configuration; file errors name the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Reading a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A PEM file holds nothing usable.
    #[error("{}: {reason}", path.display())]
    BadPem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The roster could not be loaded.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client verifier could not be built (e.g. an empty CA file).
    #[error("client verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// Installs ring as the process-wide rustls crypto provider. Idempotent; call it at
/// start-up so that no code path falls back to auto-detection (which panics if two
/// providers are compiled in).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Identity of a file version: a rename (how the roster is written) changes the inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStamp {
    ino: u64,
    mtime_ns: i64,
    len: u64,
}

fn stamp(path: &Path) -> Option<FileStamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        ino: m.ino(),
        mtime_ns: m.mtime().saturating_mul(1_000_000_000) + m.mtime_nsec(),
        len: m.len(),
    })
}

/// A shared, self-refreshing view of `roster.json`.
///
/// [`RosterHandle::current`] re-reads the file when its inode, size or mtime changed. A
/// file that fails to parse keeps the previous roster in force (logged as an error): the
/// PKI writes the roster atomically, so this only happens on manual damage, and refusing
/// every participant then would stop the federation for an operator typo.
#[derive(Clone, Debug)]
pub struct RosterHandle {
    inner: Arc<RosterInner>,
}

#[derive(Debug)]
struct RosterInner {
    path: PathBuf,
    state: Mutex<(Option<FileStamp>, Arc<Roster>)>,
}

impl RosterHandle {
    /// Loads the roster file; fails if it is missing or invalid.
    pub fn load(path: &Path) -> Result<Self, TlsError> {
        let s = stamp(path);
        let roster = Roster::load(path)?;
        Ok(Self {
            inner: Arc::new(RosterInner {
                path: path.to_owned(),
                state: Mutex::new((s, Arc::new(roster))),
            }),
        })
    }

    /// The roster file this handle follows.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The roster in force, re-read first if the file changed.
    pub fn current(&self) -> Arc<Roster> {
        let mut state = self
            .inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = stamp(&self.inner.path);
        if now.is_some() && now != state.0 {
            match Roster::load(&self.inner.path) {
                Ok(r) => {
                    info!(path = %self.inner.path.display(), entries = r.entries.len(), "roster reloaded");
                    *state = (now, Arc::new(r));
                }
                Err(e) => {
                    tracing::error!(error = %e, "roster changed but cannot be read; keeping the previous one");
                    state.0 = now;
                }
            }
        }
        Arc::clone(&state.1)
    }
}

/// Why a roster check refused a certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Chains to the CA but its fingerprint is not on the roster.
    NotOnRoster,
    /// On the roster, marked revoked.
    Revoked,
    /// On the roster, outside its validity window.
    Expired,
}

impl Refusal {
    /// The refusal in words.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::NotOnRoster => "not on the roster",
            Refusal::Revoked => "revoked",
            Refusal::Expired => "expired or not yet valid",
        }
    }
}

/// The roster entry of a certificate if it is authorised at `now` (Unix seconds).
pub fn check_roster(
    roster: &Roster,
    cert_der: &[u8],
    now: i64,
) -> Result<pki::RosterEntry, Refusal> {
    let fp = pki::fingerprint(cert_der);
    let entry = roster.by_fingerprint(&fp).ok_or(Refusal::NotOnRoster)?;
    if entry.revoked {
        return Err(Refusal::Revoked);
    }
    if !entry.is_valid_at(now) {
        return Err(Refusal::Expired);
    }
    Ok(entry.clone())
}

/// Client certificate verifier: the CA chain check of webpki (signature, validity dates,
/// client-auth EKU), then the roster. Every refusal is logged at WARN with the
/// certificate's subject, fingerprint and the reason.
#[derive(Debug)]
pub struct RosterVerifier {
    webpki: Arc<dyn ClientCertVerifier>,
    roster: RosterHandle,
}

impl RosterVerifier {
    /// A verifier trusting `roots` for the chain and `roster` for authorisation.
    pub fn new(roots: RootCertStore, roster: RosterHandle) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let webpki =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build()?;
        Ok(Self { webpki, roster })
    }
}

impl ClientCertVerifier for RosterVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.webpki.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Only for refusal logs: the accepted path hashes the certificate once, in
        // `check_roster`.
        let fingerprint = || pki::fingerprint(end_entity);
        let subject = || pki::subject_of(end_entity).unwrap_or_else(|| "<unparsable>".into());
        if let Err(e) = self
            .webpki
            .verify_client_cert(end_entity, intermediates, now)
        {
            warn!(
                subject = %subject(),
                fingerprint = %fingerprint(),
                "refusing client certificate: failed the federation CA check: {e}"
            );
            return Err(e);
        }
        let now_s = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        match check_roster(&self.roster.current(), end_entity, now_s) {
            Ok(entry) => {
                debug!(name = %entry.name, id = entry.id, role = %entry.role, "client certificate accepted");
                Ok(ClientCertVerified::assertion())
            }
            Err(refusal) => {
                warn!(
                    subject = %subject(),
                    fingerprint = %fingerprint(),
                    reason = refusal.as_str(),
                    "refusing client certificate: {}", refusal.as_str()
                );
                Err(rustls::Error::InvalidCertificate(match refusal {
                    Refusal::NotOnRoster => CertificateError::ApplicationVerificationFailure,
                    Refusal::Revoked => CertificateError::Revoked,
                    Refusal::Expired => CertificateError::Expired,
                }))
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// Reads every certificate of a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Io {
        path: path.to_owned(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadPem {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::BadPem {
            path: path.to_owned(),
            reason: "no certificate found".into(),
        });
    }
    Ok(certs)
}

/// Reads a PEM private key; the file's bytes are wiped from memory after parsing.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|source| TlsError::Io {
        path: path.to_owned(),
        source,
    })?);
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError::BadPem {
        path: path.to_owned(),
        reason: format!("no usable private key: {e}"),
    })
}

/// The coordinator's rustls configuration from a federation directory: its server
/// certificate, client certificates required and checked by a [`RosterVerifier`],
/// TLS 1.3 only (every peer is a fedrisk build) and ALPN `h2` (tonic's client insists).
pub fn server_config(pki: &PkiDir, roster: RosterHandle) -> Result<Arc<ServerConfig>, TlsError> {
    let ca = load_certs(&pki.ca_cert())?;
    let mut roots = RootCertStore::empty();
    for cert in ca {
        roots.add(cert)?;
    }
    let chain = load_certs(&pki.server_cert())?;
    let key = load_key(&pki.server_key())?;
    server_config_from(roots, chain, key, roster)
}

/// [`server_config`] from already loaded parts.
pub fn server_config_from(
    roots: RootCertStore,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    roster: RosterHandle,
) -> Result<Arc<ServerConfig>, TlsError> {
    let verifier = Arc::new(RosterVerifier::new(roots, roster)?);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts TCP connections and performs TLS handshakes, yielding only the streams whose
/// handshake (including the client certificate checks) succeeded, for
/// `tonic::transport::Server::serve_with_incoming`.
///
/// Each handshake runs in its own task with `handshake_timeout`, so a slow, refused or
/// malicious client never stalls the accept loop or other clients. Refusals are logged
/// and never reach tonic. The loop ends when the returned stream is dropped.
pub fn tls_incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    handshake_timeout: Duration,
) -> ReceiverStream<Result<TlsStream<TcpStream>, io::Error>> {
    let (tx, rx) = mpsc::channel(64);
    let acceptor = TlsAcceptor::from(config);
    let permits = Arc::new(Semaphore::new(MAX_CONCURRENT_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = tx.closed() => break,
                a = listener.accept() => a,
            };
            let (tcp, peer) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                break;
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let _permit = permit;
                match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp).into_fallible())
                    .await
                {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Ok(Err((e, tcp))) => {
                        warn!(%peer, error = %e, "TLS handshake failed");
                        drain_then_close(tcp).await;
                    }
                    Err(_) => warn!(%peer, "TLS handshake timed out"),
                }
            });
        }
        debug!("TLS accept loop stopped");
    });
    ReceiverStream::new(rx)
}

/// After a refused handshake the alert is on its way to the client; under TLS 1.3 the
/// client has already sent its first request. Closing a socket with unread input makes the
/// kernel reset the connection, and a reset can discard the alert before the client reads
/// it, leaving it "connection closed" instead of "certificate revoked". So the input is read
/// and dropped for a moment, then the connection is closed in order.
async fn drain_then_close(mut tcp: TcpStream) {
    use tokio::io::AsyncReadExt;
    let mut sink = [0u8; 4096];
    let drain = async {
        while let Ok(n) = tcp.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(250), drain).await;
    let _ = tokio::io::AsyncWriteExt::shutdown(&mut tcp).await;
}

/// The roster identity behind a request, taken from its TLS client certificate.
#[derive(Clone, Debug)]
pub struct Authenticated {
    /// Roster id (participant index).
    pub id: u32,
    /// Certificate name.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// SHA-256 of its certificate, hex.
    pub fingerprint: String,
    /// Its Ed25519 identity key (from the certificate): verifies its secagg signatures.
    pub verifying_key: VerifyingKey,
}

impl Authenticated {
    /// Looks the request's client certificate up in the current roster.
    ///
    /// The handshake already checked it, but the roster may have changed since the
    /// connection opened (a revocation), so it is checked again per request.
    pub fn from_request<T>(request: &Request<T>, roster: &RosterHandle) -> Result<Self, Status> {
        let certs = request
            .peer_certs()
            .ok_or_else(|| Status::unauthenticated("no TLS client certificate"))?;
        let leaf = certs
            .first()
            .ok_or_else(|| Status::unauthenticated("no TLS client certificate"))?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        let entry = check_roster(&roster.current(), leaf, now).map_err(|refusal| {
            warn!(
                fingerprint = %pki::fingerprint(leaf),
                reason = refusal.as_str(),
                "refusing request: client certificate {}", refusal.as_str()
            );
            Status::unauthenticated(format!("client certificate {}", refusal.as_str()))
        })?;
        let verifying_key = pki::verifying_key_from_cert_der(leaf)
            .map_err(|_| Status::unauthenticated("client certificate has no Ed25519 key"))?;
        Ok(Self {
            id: entry.id,
            name: entry.name,
            role: entry.role,
            fingerprint: entry.fingerprint,
            verifying_key,
        })
    }

    /// Fails with `permission_denied` unless the peer has `role`.
    pub fn require(self, role: Role) -> Result<Self, Status> {
        if self.role == role {
            Ok(self)
        } else {
            Err(Status::permission_denied(format!(
                "{} is a {}, this call needs a {role}",
                self.name, self.role
            )))
        }
    }
}

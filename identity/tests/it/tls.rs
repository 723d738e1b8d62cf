//! Real gRPC over loopback with real certificates: who gets in and who is refused.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fedrisk_identity::pki::{self, PkiDir, Role};
use fedrisk_identity::server::{self as tls, Authenticated, RosterHandle};
use fedrisk_proto::v1::{
    Ack, HeartbeatRequest, HeartbeatResponse, JoinRequest, JoinResponse, SecAggUpload, Task,
    TaskStreamRequest,
};
use fedrisk_proto::{PROTOCOL_VERSION, Participant};
use tokio::io::AsyncWriteExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::participant_tls::{self, ClientIdentity};

// ---------------------------------------------------------------- log capture

#[derive(Clone, Default)]
struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every test shares one global subscriber (the server logs from runtime worker threads);
/// tests find their own lines by the unique fingerprint of their certificate.
fn logs() -> &'static LogBuf {
    static LOGS: OnceLock<LogBuf> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = LogBuf::default();
        let writer = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || writer.clone())
            .try_init();
        buf
    })
}

fn log_lines_with(needle: &str) -> Vec<String> {
    let bytes = logs().0.lock().unwrap_or_else(|p| p.into_inner()).clone();
    String::from_utf8_lossy(&bytes)
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

/// The verifier logs from the handshake task; give it a moment to land.
async fn wait_for_log(needle: &str, also: &str) -> String {
    for _ in 0..100 {
        if let Some(l) = log_lines_with(needle)
            .into_iter()
            .find(|l| l.contains(also))
        {
            return l;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "no log line containing {needle:?} and {also:?}; lines with the first: {:#?}",
        log_lines_with(needle)
    );
}

// ---------------------------------------------------------------- a trivial service

struct Svc {
    roster: RosterHandle,
}

#[tonic::async_trait]
impl Participant for Svc {
    async fn join(&self, req: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        let who = Authenticated::from_request(&req, &self.roster)?.require(Role::Participant)?;
        Ok(Response::new(JoinResponse {
            participant_id: who.id,
            name: who.name,
            federation_id: self.roster.current().federation.clone(),
            protocol_version: PROTOCOL_VERSION,
            max_message_bytes: fedrisk_proto::MAX_MESSAGE_BYTES as u64,
        }))
    }

    type TasksStream = ReceiverStream<Result<Task, Status>>;

    async fn tasks(
        &self,
        _: Request<TaskStreamRequest>,
    ) -> Result<Response<Self::TasksStream>, Status> {
        Err(Status::unimplemented("tasks"))
    }

    async fn send_sec_agg(&self, _: Request<SecAggUpload>) -> Result<Response<Ack>, Status> {
        Err(Status::unimplemented("send_sec_agg"))
    }

    async fn fetch_content(
        &self,
        _: Request<fedrisk_proto::v1::ContentRequest>,
    ) -> Result<Response<fedrisk_proto::v1::Content>, Status> {
        Err(Status::unimplemented("fetch_content"))
    }

    async fn refuse(
        &self,
        _: Request<fedrisk_proto::v1::Refusal>,
    ) -> Result<Response<Ack>, Status> {
        Err(Status::unimplemented("refuse"))
    }

    async fn heartbeat(
        &self,
        req: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        Authenticated::from_request(&req, &self.roster)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let r = req.into_inner();
        Ok(Response::new(HeartbeatResponse {
            server_time_unix_ms: now,
            job_id: r.job_id,
            round: r.round,
            session_id: r.session_id,
        }))
    }
}

// ---------------------------------------------------------------- fixture

struct Fed {
    _tmp: tempfile::TempDir,
    dir: std::path::PathBuf,
    addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Fed {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A federation with `bank_a` (participant) and `ops` (operator), served on 127.0.0.1:0.
async fn federation() -> Fed {
    logs();
    tls::install_crypto_provider();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("fed");
    pki::init(&dir, "testfed").expect("init");
    pki::issue(&dir, "bank_a", Role::Participant, 30).expect("issue");
    pki::issue(&dir, "ops", Role::Operator, 30).expect("issue");
    let pkid = PkiDir::new(&dir);
    let roster = RosterHandle::load(&pkid.roster()).expect("roster");
    let config = tls::server_config(&pkid, roster.clone()).expect("config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let incoming = tls::tls_incoming(listener, config, Duration::from_secs(2));
    let server = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(fedrisk_proto::participant_server(Svc { roster }))
            .serve_with_incoming(incoming)
            .await;
    });
    Fed {
        _tmp: tmp,
        dir,
        addr,
        server,
    }
}

fn identity(trust: &Path, holder: &Path, name: &str) -> ClientIdentity {
    ClientIdentity::from_files_unchecked(
        &trust.join("ca.pem"),
        &holder.join(format!("{name}.pem")),
        &holder.join(format!("{name}.key")),
    )
    .expect("identity")
}

/// Connects and joins; any failure (connect or RPC) is an `Err` with its message.
async fn join(addr: SocketAddr, id: &ClientIdentity) -> Result<JoinResponse, String> {
    let url = format!("https://127.0.0.1:{}", addr.port());
    let fut = async {
        let channel = participant_tls::connect(&url, "localhost", id, Duration::from_secs(5))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let mut client = fedrisk_proto::participant_client(channel);
        client
            .join(JoinRequest {
                protocol_version: PROTOCOL_VERSION,
                schema_hash: String::new(),
                agent_version: "test".into(),
            })
            .await
            .map(Response::into_inner)
            .map_err(|s| format!("rpc: {s}"))
    };
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .map_err(|_| "timed out".to_owned())?
}

async fn assert_still_serving(fed: &Fed) {
    let ok = join(fed.addr, &identity(&fed.dir, &fed.dir, "bank_a"))
        .await
        .expect("a rostered participant must still get in");
    assert_eq!(ok.name, "bank_a");
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn rostered_participant_gets_in_with_its_identity_key() {
    let fed = federation().await;
    let id = identity(&fed.dir, &fed.dir, "bank_a");
    let resp = join(fed.addr, &id).await.expect("join");
    assert_eq!(resp.participant_id, 1);
    assert_eq!(resp.name, "bank_a");
    assert_eq!(resp.federation_id, "testfed");

    // The TLS key is the secagg identity key recorded in the roster and the certificate.
    let roster = pki::Roster::load(&fed.dir.join(pki::ROSTER)).expect("roster");
    let entry = roster.active_by_name("bank_a").expect("entry");
    let sk = id.signing_key().expect("signing key");
    assert_eq!(hex::encode(sk.verifying_key().as_bytes()), entry.public_key);

    // An operator certificate gets through TLS but not into the participant service.
    let err = join(fed.addr, &identity(&fed.dir, &fed.dir, "ops"))
        .await
        .expect_err("operator must not join");
    assert!(
        err.contains("PermissionDenied") || err.contains("permission"),
        "{err}"
    );
}

#[tokio::test]
async fn certificate_from_another_ca_is_refused() {
    let fed = federation().await;
    let other = tempfile::tempdir().expect("tempdir");
    pki::init(other.path(), "otherfed").expect("init");
    let stranger = pki::issue(other.path(), "bank_a", Role::Participant, 30).expect("issue");
    // Trusts the right CA (so the client accepts the server) but holds a foreign cert.
    let id = identity(&fed.dir, other.path(), "bank_a");
    let err = join(fed.addr, &id).await.expect_err("foreign cert");
    assert!(!err.is_empty());
    let line = wait_for_log(&stranger.fingerprint, "refusing client certificate").await;
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("failed the federation CA check"), "{line}");
    assert!(line.contains("UnknownIssuer"), "{line}");
    assert!(line.contains("CN=bank_a"), "{line}");
    assert_still_serving(&fed).await;
}

#[tokio::test]
async fn revoked_certificate_is_refused_on_new_connections_and_rpcs() {
    let fed = federation().await;
    let entry = pki::issue(&fed.dir, "bank_r", Role::Participant, 30).expect("issue");
    let id = identity(&fed.dir, &fed.dir, "bank_r");

    // Connected before the revocation...
    let url = format!("https://127.0.0.1:{}", fed.addr.port());
    let channel = participant_tls::connect(&url, "localhost", &id, Duration::from_secs(5))
        .await
        .expect("connect");
    let mut client = fedrisk_proto::participant_client(channel);
    client
        .heartbeat(HeartbeatRequest::default())
        .await
        .expect("heartbeat before revocation");

    pki::revoke(&fed.dir, "bank_r").expect("revoke");

    // ...the open connection's next RPC is refused by the per-request roster check...
    let status = client
        .heartbeat(HeartbeatRequest::default())
        .await
        .expect_err("heartbeat after revocation");
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status}");
    assert!(status.message().contains("revoked"), "{status}");

    // ...and a new connection is refused at the handshake.
    join(fed.addr, &id).await.expect_err("revoked cert");
    let line = wait_for_log(&entry.fingerprint, "refusing client certificate: revoked").await;
    assert!(
        line.contains("WARN") && line.contains("CN=bank_r"),
        "{line}"
    );
    assert_still_serving(&fed).await;
}

#[tokio::test]
async fn expired_certificate_is_refused() {
    let fed = federation().await;
    let now = time::OffsetDateTime::now_utc();
    let entry = pki::issue_with_validity(
        &fed.dir,
        "bank_old",
        Role::Participant,
        now - time::Duration::days(30),
        now - time::Duration::days(1),
    )
    .expect("issue");
    let err = join(fed.addr, &identity(&fed.dir, &fed.dir, "bank_old"))
        .await
        .expect_err("expired cert");
    assert!(!err.is_empty());
    let line = wait_for_log(&entry.fingerprint, "refusing client certificate").await;
    assert!(line.contains("certificate expired"), "{line}");
    assert!(line.contains("CN=bank_old"), "{line}");
    assert_still_serving(&fed).await;
}

#[tokio::test]
async fn ca_signed_certificate_not_on_roster_is_refused() {
    let fed = federation().await;
    let entry = pki::issue(&fed.dir, "bank_x", Role::Participant, 30).expect("issue");
    // Take it off the roster: a certificate the CA signed but the federation never listed
    // (or one whose roster entry was removed).
    let path = fed.dir.join(pki::ROSTER);
    let mut roster = pki::Roster::load(&path).expect("roster");
    roster.entries.retain(|e| e.name != "bank_x");
    roster.save(&path).expect("save");

    let err = join(fed.addr, &identity(&fed.dir, &fed.dir, "bank_x"))
        .await
        .expect_err("unlisted cert");
    assert!(!err.is_empty());
    let line = wait_for_log(
        &entry.fingerprint,
        "refusing client certificate: not on the roster",
    )
    .await;
    assert!(line.contains("CN=bank_x"), "{line}");
    assert_still_serving(&fed).await;
}

#[tokio::test]
async fn client_without_certificate_is_refused() {
    let fed = federation().await;
    let ca = std::fs::read_to_string(fed.dir.join("ca.pem")).expect("ca");
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca))
        .domain_name("localhost");
    let url = format!("https://127.0.0.1:{}", fed.addr.port());
    let result = tokio::time::timeout(Duration::from_secs(20), async {
        let channel = tonic::transport::Endpoint::from_shared(url)
            .map_err(|e| e.to_string())?
            .tls_config(tls)
            .map_err(|e| e.to_string())?
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        fedrisk_proto::participant_client(channel)
            .heartbeat(HeartbeatRequest::default())
            .await
            .map_err(|e| e.to_string())
    })
    .await
    .expect("no hang");
    assert!(
        result.is_err(),
        "a client without certificate got an answer"
    );
    assert_still_serving(&fed).await;
}

#[tokio::test]
async fn stalled_and_garbage_connections_do_not_block_others() {
    let fed = federation().await;
    // One connection that never speaks, one that sends garbage.
    let _idle = tokio::net::TcpStream::connect(fed.addr)
        .await
        .expect("idle");
    let mut junk = tokio::net::TcpStream::connect(fed.addr)
        .await
        .expect("junk");
    junk.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    assert_still_serving(&fed).await;
    // The idle one is dropped after the (2 s in this fixture) handshake timeout.
    wait_for_log("TLS handshake timed out", "").await;
    assert_still_serving(&fed).await;
}

#[test]
fn key_files_parse_to_the_certified_identity() {
    let tmp = tempfile::tempdir().expect("tempdir");
    pki::init(tmp.path(), "f").expect("init");
    let entry = pki::issue(tmp.path(), "bank_k", Role::Participant, 1).expect("issue");
    let pem = std::fs::read_to_string(tmp.path().join("bank_k.key")).expect("key");
    let sk = participant_tls::identity_signing_key_from_pkcs8_pem(&pem).expect("parse");
    let cert_pem = std::fs::read(tmp.path().join("bank_k.pem")).expect("cert");
    let der = {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        CertificateDer::from_pem_slice(&cert_pem).expect("pem")
    };
    let vk = pki::verifying_key_from_cert_der(&der).expect("vk");
    assert_eq!(sk.verifying_key(), vk);
    assert_eq!(hex::encode(vk.as_bytes()), entry.public_key);
    // A secagg signature made with the TLS key verifies with the certificate's key.
    use ed25519_dalek::{Signer, Verifier};
    let sig = sk.sign(b"round 3 session x");
    vk.verify(b"round 3 session x", &sig).expect("verify");

    let err = participant_tls::identity_signing_key_from_pkcs8_pem("not a key").expect_err("bad");
    assert!(!err.to_string().contains("not a key"));
    let server_key = std::fs::read_to_string(tmp.path().join("coordinator.key")).expect("key");
    assert!(participant_tls::identity_signing_key_from_pkcs8_pem(&server_key).is_err());
    let err = ClientIdentity::from_dir(tmp.path(), "nobody").expect_err("missing");
    assert!(err.to_string().contains("nobody.key"), "{err}");
}

#[test]
fn an_identity_whose_key_or_ca_does_not_fit_is_refused_before_connecting() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    pki::init(&a, "fed-a").expect("ca a");
    pki::init(&b, "fed-b").expect("ca b");
    pki::issue(&a, "bank_a", Role::Participant, 30).expect("issue");
    pki::issue(&a, "bank_b", Role::Participant, 30).expect("issue");
    pki::issue(&b, "bank_x", Role::Participant, 30).expect("issue");
    // The right files.
    ClientIdentity::from_dir(&a, "bank_a").expect("fits");
    // bank_b's key with bank_a's certificate.
    let e = ClientIdentity::from_files(
        &a.join("ca.pem"),
        &a.join("bank_a.pem"),
        &a.join("bank_b.key"),
    )
    .unwrap_err();
    assert!(
        matches!(e, participant_tls::ClientTlsError::KeyMismatch { .. }),
        "{e}"
    );
    assert!(
        e.to_string().contains("does not match the certificate"),
        "{e}"
    );
    // Another federation's certificate with this federation's CA.
    let e = ClientIdentity::from_files(
        &a.join("ca.pem"),
        &b.join("bank_x.pem"),
        &b.join("bank_x.key"),
    )
    .unwrap_err();
    assert!(
        matches!(e, participant_tls::ClientTlsError::NotIssuedByCa { .. }),
        "{e}"
    );
}

//! Starts a coordinator: store, roster, mutual-TLS listener, services and the job scheduler.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::Server;
use tracing::{error, info};

use fedrisk_identity::pki::PkiDir;
use fedrisk_identity::server::{self as tls, RosterHandle};

use fedrisk_identity::pki::Roster;
use fedrisk_identity::signer::{Signer, SignerError};

use crate::audit::AuditLog;
use crate::engine::Engine;
use crate::events::{Event, EventSink, LogSink, RosterMember};
use crate::hub::Hub;
use crate::live::Live;
use crate::metrics::Metrics;
use crate::scheduler::Scheduler;
use crate::service::{OperatorService, ParticipantService};
use crate::store::Store;

/// Requests one connection may have in flight.
const MAX_REQUESTS_PER_CONNECTION: usize = 16;

/// Bytes a client may send on one request stream before the server reads them (HTTP/2
/// flow control): 256 KiB keeps a large upload at several MB/s on a 50 ms link.
const STREAM_WINDOW: u32 = 256 * 1024;

/// How often the roster file is checked for revocations of connected participants.
const REVOCATION_CHECK: std::time::Duration = std::time::Duration::from_millis(500);

#[derive(Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub pki_dir: PathBuf,
    pub database: PathBuf,
    /// Defaults to the federation name in the roster.
    pub federation_id: Option<String>,
    /// Where the engine's events go besides the log, the audit chain, the live status and
    /// the metrics (tests).
    pub events: Option<Arc<dyn EventSink>>,
    /// Where to serve Prometheus metrics and `/healthz` over plain HTTP (none: no endpoint).
    pub metrics: Option<SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Tls(#[from] tls::TlsError),
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
    #[error("the coordinator's signing key (audit chain): {0}")]
    Signer(#[from] SignerError),
    #[error("cannot listen on {addr} (metrics): {source}")]
    BindMetrics {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running coordinator.
pub struct Running {
    pub addr: SocketAddr,
    pub scheduler: Arc<Scheduler>,
    pub store: Arc<Store>,
    pub hub: Arc<Hub>,
    pub federation_id: String,
    /// Where `/metrics` and `/healthz` are served, if they are.
    pub metrics_addr: Option<SocketAddr>,
    shutdown: Option<oneshot::Sender<()>>,
    metrics_task: Option<tokio::task::JoinHandle<()>>,
    server: tokio::task::JoinHandle<()>,
    jobs: tokio::task::JoinHandle<()>,
    revocations: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops accepting connections and stops the scheduler (a running job resumes at the
    /// next start from its last completed round).
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.jobs.abort();
        self.revocations.abort();
        if let Some(t) = &self.metrics_task {
            t.abort();
        }
        let _ = (&mut self.server).await;
    }
}

pub async fn start(opts: ServeOptions) -> Result<Running, ServeError> {
    tls::install_crypto_provider();
    let pki = PkiDir::new(&opts.pki_dir);
    let roster = RosterHandle::load(&pki.roster())?;
    let federation_id = opts
        .federation_id
        .clone()
        .unwrap_or_else(|| roster.current().federation.clone());
    let store = Arc::new(Store::open(&opts.database)?);
    let config = tls::server_config(&pki, roster.clone())?;
    let listener = TcpListener::bind(opts.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: opts.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: opts.listen,
        source,
    })?;
    let metrics_listener = match opts.metrics {
        Some(addr) => {
            let l = TcpListener::bind(addr)
                .await
                .map_err(|source| ServeError::BindMetrics { addr, source })?;
            let bound = l
                .local_addr()
                .map_err(|source| ServeError::BindMetrics { addr, source })?;
            Some((l, bound))
        }
        None => None,
    };
    let hub = Hub::new();
    let live = Arc::new(Live::default());
    let metrics = Arc::new(Metrics::new());
    // One key signs the audit records and the model files.
    let model_signer = Arc::new(Signer::load(&pki.server_key())?);
    let audit: Arc<dyn EventSink> = Arc::new(AuditLog::new(store.clone(), model_signer.clone()));
    let mut sinks: Vec<Arc<dyn EventSink>> =
        vec![Arc::new(LogSink), audit, live.clone(), metrics.clone()];
    sinks.extend(opts.events.clone());
    let events: Arc<dyn EventSink> = Arc::new(crate::events::Sinks(sinks));
    events.emit(&roster_event(&roster.current()));
    let engine = Arc::new(Engine {
        hub: hub.clone(),
        store: store.clone(),
        federation_id: federation_id.clone(),
        events: events.clone(),
        crl: Some(pki.crl()),
        signer: Some(model_signer),
        live: live.clone(),
    });
    let scheduler = Scheduler::new(engine, store.clone());
    for r in store.interrupted_rounds()? {
        info!(
            job = r.job_id,
            round = r.round,
            attempt = r.attempt,
            "round was interrupted; it restarts with fresh secagg keys"
        );
    }
    let participant = ParticipantService {
        hub: hub.clone(),
        store: store.clone(),
        roster: roster.clone(),
        federation_id: federation_id.clone(),
    };
    let operator = OperatorService {
        store: store.clone(),
        roster: roster.clone(),
        scheduler: scheduler.clone(),
        hub: hub.clone(),
        events: events.clone(),
        live,
    };
    let revocations = tokio::spawn(watch_revocations(hub.clone(), roster, events));
    let incoming = tls::tls_incoming(listener, config, tls::HANDSHAKE_TIMEOUT);
    let (tx, rx) = oneshot::channel::<()>();
    let serving = Arc::new(AtomicBool::new(true));
    let serving_flag = serving.clone();
    let server = tokio::spawn(async move {
        // Bounded work per connection: an authenticated client cannot have more than this
        // many requests (each at most `MAX_MESSAGE_BYTES`) in flight at once. An agent needs
        // at most five (its task stream, an upload, a heartbeat, a fetch, a refusal).
        // And bounded bytes: request bodies are read only while their client and the
        // server as a whole have budget left (`budget`).
        // The connection's HTTP/2 window exceeds what all its streams' windows can hold
        // unread: streams waiting for budget must not take the window the streams being
        // read need (else one client's flood would stall its own connection for good).
        let result = Server::builder()
            .concurrency_limit_per_connection(MAX_REQUESTS_PER_CONNECTION)
            .max_concurrent_streams(Some(MAX_REQUESTS_PER_CONNECTION as u32))
            .initial_stream_window_size(Some(STREAM_WINDOW))
            .initial_connection_window_size(Some(
                STREAM_WINDOW * (MAX_REQUESTS_PER_CONNECTION as u32 + 4),
            ))
            .layer(crate::budget::BudgetLayer(crate::budget::BodyBudget::new(
                crate::budget::PER_CLIENT_BYTES,
                crate::budget::TOTAL_BYTES,
            )))
            .add_service(fedrisk_proto::participant_server(participant))
            .add_service(fedrisk_proto::operator_server(operator))
            .serve_with_incoming_shutdown(incoming, async {
                let _ = rx.await;
            })
            .await;
        serving_flag.store(false, Ordering::SeqCst);
        if let Err(e) = result {
            error!(error = %e, "gRPC server stopped");
        }
    });
    let (metrics_addr, metrics_task) = match metrics_listener {
        Some((listener, bound)) => {
            let endpoint = Arc::new(crate::metrics::Endpoint {
                metrics,
                hub: hub.clone(),
                store: store.clone(),
                serving,
            });
            info!(addr = %bound, "metrics and health over plain HTTP: /metrics, /healthz");
            (
                Some(bound),
                Some(tokio::spawn(crate::metrics::serve(listener, endpoint))),
            )
        }
        None => (None, None),
    };
    let jobs = tokio::spawn(scheduler.clone().run());
    info!(%addr, federation = %federation_id, "coordinator listening (mutual TLS)");
    Ok(Running {
        addr,
        scheduler,
        store,
        hub,
        federation_id,
        metrics_addr,
        shutdown: Some(tx),
        metrics_task,
        server,
        jobs,
        revocations,
    })
}

/// The roster as the audit chain records it.
fn roster_event(roster: &Roster) -> Event {
    Event::RosterChanged {
        members: roster
            .entries
            .iter()
            .map(|e| RosterMember {
                id: e.id,
                name: e.name.clone(),
                role: e.role.as_str().to_owned(),
                fingerprint: e.fingerprint.clone(),
                revoked: e.revoked,
            })
            .collect(),
    }
}

/// Drops the task stream of every connected participant whose certificate the roster no
/// longer accepts (revoked, expired, removed), so it is invited to no further session;
/// records each change of the roster (a certificate signed or revoked) in the audit chain.
async fn watch_revocations(hub: Arc<Hub>, roster: RosterHandle, events: Arc<dyn EventSink>) {
    let mut last = roster.current();
    loop {
        tokio::time::sleep(REVOCATION_CHECK).await;
        let current = roster.current();
        if current.entries != last.entries {
            events.emit(&roster_event(&current));
            last = current;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        let current = roster.current();
        for peer in hub.connected() {
            if let Err(refusal) = tls::check_roster(&current, &peer.cert_der, now) {
                hub.disconnect(
                    peer.id,
                    &format!("the certificate of {} is {}", peer.name, refusal.as_str()),
                );
            }
        }
    }
}

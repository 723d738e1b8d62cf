//! Starts a coordinator: store, roster, mutual-TLS listener, services and the job scheduler.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::Server;
use tracing::{error, info};

use crate::engine::Engine;
use crate::hub::Hub;
use crate::pki::PkiDir;
use crate::scheduler::Scheduler;
use crate::service::{OperatorService, ParticipantService};
use crate::store::Store;
use crate::tls::{self, RosterHandle};

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub pki_dir: PathBuf,
    pub database: PathBuf,
    /// Defaults to the federation name in the roster.
    pub federation_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Tls(#[from] tls::TlsError),
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
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
    shutdown: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
    jobs: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops accepting connections and stops the scheduler (a running job resumes at the
    /// next start from its last completed round).
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.jobs.abort();
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
    let hub = Hub::new();
    let engine = Arc::new(Engine {
        hub: hub.clone(),
        store: store.clone(),
        federation_id: federation_id.clone(),
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
        roster,
        scheduler: scheduler.clone(),
    };
    let incoming = tls::tls_incoming(listener, config, tls::HANDSHAKE_TIMEOUT);
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let result = Server::builder()
            .add_service(fedrisk_proto::participant_server(participant))
            .add_service(fedrisk_proto::operator_server(operator))
            .serve_with_incoming_shutdown(incoming, async {
                let _ = rx.await;
            })
            .await;
        if let Err(e) = result {
            error!(error = %e, "gRPC server stopped");
        }
    });
    let jobs = tokio::spawn(scheduler.clone().run());
    info!(%addr, federation = %federation_id, "coordinator listening (mutual TLS)");
    Ok(Running {
        addr,
        scheduler,
        store,
        hub,
        federation_id,
        shutdown: Some(tx),
        server,
        jobs,
    })
}

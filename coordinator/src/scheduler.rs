//! Runs submitted jobs one at a time (the federation's participants serve one session at a
//! time), resuming a job that was running when the coordinator stopped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, watch};
use tracing::{error, info};

use fedrisk_rounds::{JobSpec, SpecError};

use crate::engine::Engine;
use crate::store::{JobId, JobState, Store, StoreError};

/// Why a job was not queued.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The job cannot run as specified (names the field).
    #[error("invalid job: {0}")]
    Invalid(#[from] SpecError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Scheduler {
    pub engine: Arc<Engine>,
    pub store: Arc<Store>,
    cancels: Mutex<HashMap<JobId, watch::Sender<bool>>>,
    wake: Notify,
}

impl Scheduler {
    pub fn new(engine: Arc<Engine>, store: Arc<Store>) -> Arc<Self> {
        Arc::new(Self {
            engine,
            store,
            cancels: Mutex::new(HashMap::new()),
            wake: Notify::new(),
        })
    }

    /// Validates and queues a job.
    pub fn submit(&self, spec: &JobSpec) -> Result<JobId, SubmitError> {
        spec.validate()?;
        let id = self.store.create_job(&spec.name, &spec.to_json())?;
        info!(job = id, name = %spec.name, rounds = spec.rounds, algorithm = %spec.settings.algorithm, "job submitted");
        self.wake.notify_one();
        Ok(id)
    }

    /// Cancels a pending or running job.
    pub fn cancel(&self, id: JobId) -> Result<(), StoreError> {
        let job = self.store.job(id)?;
        let running = self
            .cancels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .map(|tx| tx.send(true));
        if running.is_none() && !job.state.is_terminal() {
            self.store
                .set_job_state(id, JobState::Cancelled, "cancelled by operator")?;
        }
        Ok(())
    }

    fn next_job(&self) -> Result<Option<(JobId, JobSpec)>, StoreError> {
        for state in [JobState::Running, JobState::Pending] {
            for job in self.store.list_jobs(Some(state))? {
                match JobSpec::from_json(&job.spec_json) {
                    Ok(spec) => return Ok(Some((job.id, spec))),
                    Err(e) => {
                        self.store.set_job_state(
                            job.id,
                            JobState::Failed,
                            &format!("stored job spec unreadable: {e}"),
                        )?;
                    }
                }
            }
        }
        Ok(None)
    }

    /// Runs queued jobs until the process ends.
    pub async fn run(self: Arc<Self>) {
        loop {
            let next = match self.next_job() {
                Ok(n) => n,
                Err(e) => {
                    error!(error = %e, "cannot read the job queue");
                    None
                }
            };
            let Some((id, spec)) = next else {
                tokio::select! {
                    () = self.wake.notified() => {}
                    () = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
                }
                continue;
            };
            let (tx, rx) = watch::channel(false);
            self.cancels
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id, tx);
            if let Err(e) = self.engine.run_job(id, &spec, rx).await {
                error!(job = id, error = %e, "job did not complete");
                // A store failure inside run_job leaves the state as it was; do not spin on it.
                if self.store.job(id).is_ok_and(|j| !j.state.is_terminal()) {
                    let _ = self
                        .store
                        .set_job_state(id, JobState::Failed, &e.to_string());
                }
            }
            self.cancels
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
        }
    }
}

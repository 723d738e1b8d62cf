//! The round engine: runs a job's rounds as secure-aggregation sessions, applies the
//! aggregated results, and makes every completed round durable before starting the next.
//!
//! A round is one or two sessions (statistics: magnitudes then sums; training: the update,
//! then the evaluation of the new model). The engine only ever sees decoded *sums*; the
//! model arithmetic lives in `fedrisk-models`, the protocol in `fedrisk-secagg`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fedrisk_models::federated::{
    self, Algorithm, FederatedEval, eval_len, magnitude_len, newton_len, stats_len,
};
use fedrisk_models::logistic::{Penalty, newton_step};
use fedrisk_models::{FeatureStats, ModelFile, PreprocessOptions, Preprocessor, Provenance};
use fedrisk_proto::v1::{self, task};
use fedrisk_secagg::{
    CoordinatorSession, FixedPointParams, Message, Outgoing, SecurityMode, SessionBinding,
    SessionConfig, SessionParams, Step, decode_sum, recommended_graph,
};
use rand::RngExt;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::hub::{Hub, Peer, Upload};
use crate::job::JobSpec;
use crate::store::{JobId, JobState, NewModel, RoundCompletion, RoundKind, RoundMetrics, Store};

/// Weights (row counts) up to 2^24 per institution.
pub const WEIGHT_BITS: u8 = 24;
/// Clip bound of training vectors (per-row gradient and Hessian terms, FedAvg parameters).
pub const TRAIN_CLIP: f64 = 4096.0;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("round {round} failed after {attempts} attempt(s): {reason}")]
    RoundFailed {
        round: u32,
        attempts: u32,
        reason: String,
    },
    #[error("cancelled")]
    Cancelled,
    #[error("invalid job: {0}")]
    Invalid(String),
}

/// Why one attempt of a round did not complete; the engine retries it with fresh keys.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error("{0}")]
    Retry(String),
    #[error("cancelled")]
    Cancelled,
    #[error(transparent)]
    Fatal(#[from] EngineError),
}

/// What the engine keeps between rounds (and in the store's checkpoint).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Checkpoint {
    stats: FeatureStats,
    preprocessor: Preprocessor,
    theta: Vec<f64>,
}

/// One session's decoded output and traffic.
struct SessionResult {
    total_weight: u64,
    sums: Vec<f64>,
    survivors: Vec<u32>,
    bytes_up: u64,
    bytes_down: u64,
}

/// What the engine asks of one session.
struct SessionPlan<'a> {
    job_id: JobId,
    round: u32,
    label: &'static str,
    /// Hash of everything the task tells participants (they recompute it).
    binding_hash: [u8; 32],
    vector_len: usize,
    clip: f64,
    /// The job's first session waits for `expected_participants`, not just the minimum.
    first_of_job: bool,
    make_kind: &'a (dyn Fn(v1::SecAggParams) -> task::Kind + Sync),
}

pub struct Engine {
    pub hub: Arc<Hub>,
    pub store: Arc<Store>,
    pub federation_id: String,
}

fn ceil_log2(n: usize) -> u32 {
    if n <= 1 {
        0
    } else {
        usize::BITS - (n - 1).leading_zeros()
    }
}

/// Fixed-point parameters for `n` participants and a clip bound: as many fractional bits as
/// the overflow rule (`log2 n + weight bits + clip bits + f <= 62`) allows, at most 40.
pub fn fixed_point_for(n: usize, clip: f64) -> FixedPointParams {
    let clip_bits = if clip <= 1.0 {
        0
    } else {
        clip.log2().ceil() as u32
    };
    let used = ceil_log2(n).max(1) + u32::from(WEIGHT_BITS) + clip_bits;
    FixedPointParams {
        frac_bits: 62u32.saturating_sub(used).min(40) as u8,
        clip,
        max_weight_bits: WEIGHT_BITS,
    }
}

impl Engine {
    /// Runs (or resumes) a job to its end, recording its final state.
    pub async fn run_job(
        &self,
        job_id: JobId,
        spec: &JobSpec,
        cancel: watch::Receiver<bool>,
    ) -> Result<(), EngineError> {
        spec.validate().map_err(EngineError::Invalid)?;
        self.store
            .set_job_state(job_id, JobState::Running, "running")?;
        let result = self.run_rounds(job_id, spec, &cancel).await;
        let (state, message, finished) = match &result {
            Ok(()) => (
                JobState::Completed,
                "completed".to_string(),
                v1::JobState::Completed,
            ),
            Err(EngineError::Cancelled) => (
                JobState::Cancelled,
                "cancelled by operator".into(),
                v1::JobState::Cancelled,
            ),
            Err(e) => (JobState::Failed, e.to_string(), v1::JobState::Failed),
        };
        self.store.set_job_state(job_id, state, &message)?;
        for peer in self.hub.connected() {
            self.hub.send(
                peer.id,
                job_id,
                0,
                &[],
                task::Kind::Finished(v1::JobFinished {
                    state: finished as i32,
                    message: message.clone(),
                }),
            );
        }
        info!(job = job_id, %state, %message, "job ended");
        result
    }

    async fn run_rounds(
        &self,
        job_id: JobId,
        spec: &JobSpec,
        cancel: &watch::Receiver<bool>,
    ) -> Result<(), EngineError> {
        let stored = self.store.checkpoint(job_id, "state")?;
        let last = self.store.last_completed_round(job_id)?;
        if let Some(r) = last {
            info!(
                job = job_id,
                round = r,
                "resuming after the last completed round"
            );
        }
        let mut cp: Checkpoint = match stored {
            Some(blob) => serde_json::from_slice(&blob)
                .map_err(|e| EngineError::Invalid(format!("stored checkpoint: {e}")))?,
            None => {
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    match self.stats_round(job_id, spec, cancel.clone()).await {
                        Ok(cp) => break cp,
                        Err(e) => retry_or_fail(e, spec, 0, attempt)?,
                    }
                }
            }
        };
        let first = last.map_or(1, |r| r + 1).max(1);
        for round in first..=spec.rounds {
            let mut attempt = 0;
            cp = loop {
                attempt += 1;
                if *cancel.borrow() {
                    return Err(EngineError::Cancelled);
                }
                match self
                    .train_round(job_id, spec, round, cp.clone(), cancel.clone())
                    .await
                {
                    Ok(next) => break next,
                    Err(e) => retry_or_fail(e, spec, round, attempt)?,
                }
            };
        }
        Ok(())
    }

    /// Round 0: magnitudes, then scaled sums, counts and level counts.
    async fn stats_round(
        &self,
        job_id: JobId,
        spec: &JobSpec,
        cancel: watch::Receiver<bool>,
    ) -> Result<Checkpoint, AttemptError> {
        let started = Instant::now();
        let schema_json =
            serde_json::to_string(&spec.schema).map_err(|e| EngineError::Invalid(e.to_string()))?;
        let settings_json = serde_json::to_string(&spec.settings)
            .map_err(|e| EngineError::Invalid(e.to_string()))?;
        let bind1 = federated::binding_stats(1, &schema_json, &settings_json, &[]);
        let kind1 = |secagg| {
            task::Kind::Stats(v1::StatsTask {
                schema_json: schema_json.clone(),
                secagg: Some(secagg),
                phase: 1,
                scales: vec![],
                settings_json: settings_json.clone(),
            })
        };
        let session_id = self.begin_round(job_id, 0, RoundKind::Stats)?;
        let mags = self
            .run_session(
                spec,
                SessionPlan {
                    job_id,
                    round: 0,
                    label: "magnitudes",
                    binding_hash: bind1,
                    vector_len: magnitude_len(&spec.schema),
                    clip: 1.0,
                    first_of_job: true,
                    make_kind: &kind1,
                },
                cancel.clone(),
            )
            .await?;
        let scales = federated::scales_from_magnitudes(&spec.schema, &mags.sums)
            .map_err(|e| AttemptError::Retry(e.to_string()))?;
        let bind2 = federated::binding_stats(2, &schema_json, &settings_json, &scales);
        let kind2 = |secagg| {
            task::Kind::Stats(v1::StatsTask {
                schema_json: schema_json.clone(),
                secagg: Some(secagg),
                phase: 2,
                scales: scales.clone(),
                settings_json: settings_json.clone(),
            })
        };
        let sums = self
            .run_session(
                spec,
                SessionPlan {
                    job_id,
                    round: 0,
                    label: "statistics",
                    binding_hash: bind2,
                    vector_len: stats_len(&spec.schema),
                    clip: 1.0,
                    first_of_job: false,
                    make_kind: &kind2,
                },
                cancel,
            )
            .await?;
        let stats = federated::stats_from_sum(&spec.schema, &sums.sums, &scales)
            .map_err(|e| AttemptError::Retry(e.to_string()))?;
        let preprocessor = Preprocessor::fit(
            &spec.schema,
            &stats,
            PreprocessOptions {
                missing_indicators: spec.settings.missing_indicators,
            },
        );
        let cp = Checkpoint {
            theta: vec![0.0; preprocessor.width() + 1],
            stats,
            preprocessor,
        };
        let metrics = RoundMetrics {
            survivors: Some(sums.survivors.len() as u32),
            bytes_up: mags.bytes_up + sums.bytes_up,
            bytes_down: mags.bytes_down + sums.bytes_down,
            seconds: Some(started.elapsed().as_secs_f64()),
            ..RoundMetrics::default()
        };
        self.finish_round(job_id, 0, &session_id, metrics, &cp, None)?;
        info!(
            job = job_id,
            rows = cp.stats.rows,
            participants = sums.survivors.len(),
            "statistics round complete"
        );
        Ok(cp)
    }

    /// A training round: the update session, then the evaluation of the new model.
    async fn train_round(
        &self,
        job_id: JobId,
        spec: &JobSpec,
        round: u32,
        cp: Checkpoint,
        cancel: watch::Receiver<bool>,
    ) -> Result<Checkpoint, AttemptError> {
        let started = Instant::now();
        let mut settings = spec.settings.clone();
        settings.total_rows = cp.stats.rows;
        let settings_json =
            serde_json::to_string(&settings).map_err(|e| EngineError::Invalid(e.to_string()))?;
        let pre_json = serde_json::to_string(&cp.preprocessor)
            .map_err(|e| EngineError::Invalid(e.to_string()))?;
        let k = cp.theta.len();
        let model = |theta: &[f64]| v1::GlobalModel {
            coefficients: theta[..k - 1].to_vec(),
            intercept: theta[k - 1],
            preprocessing_json: pre_json.clone(),
            content_hash: hex::encode(federated::model_hash(&pre_json, theta)),
        };
        let train_model = model(&cp.theta);
        let bind = federated::binding_train(&settings_json, &pre_json, &cp.theta);
        let algorithm = settings.algorithm;
        let kind = |secagg| {
            task::Kind::Train(v1::TrainTask {
                algorithm: algorithm.to_string(),
                model: Some(train_model.clone()),
                hyper_params_json: settings_json.clone(),
                secagg: Some(secagg),
            })
        };
        let session_id = self.begin_round(job_id, round, RoundKind::Train)?;
        let vector_len = match algorithm {
            Algorithm::Newton => newton_len(k),
            Algorithm::FedAvg | Algorithm::FedProx => k,
        };
        let update = self
            .run_session(
                spec,
                SessionPlan {
                    job_id,
                    round,
                    label: "update",
                    binding_hash: bind,
                    vector_len,
                    clip: TRAIN_CLIP,
                    first_of_job: false,
                    make_kind: &kind,
                },
                cancel.clone(),
            )
            .await?;
        let theta = match algorithm {
            Algorithm::Newton => {
                let c = federated::newton_from_sum(&update.sums, k)
                    .map_err(|e| AttemptError::Retry(e.to_string()))?;
                newton_step(&cp.theta, &c.grad, &c.hess, &Penalty::sklearn(settings.c))
                    .map_err(|e| AttemptError::Retry(e.to_string()))?
            }
            Algorithm::FedAvg | Algorithm::FedProx => {
                if update.total_weight == 0 {
                    return Err(AttemptError::Retry("total weight is zero".into()));
                }
                update
                    .sums
                    .iter()
                    .map(|s| s / update.total_weight as f64)
                    .collect()
            }
        };
        if theta.iter().any(|v| !v.is_finite()) {
            return Err(AttemptError::Retry("the update is not finite".into()));
        }
        let eval_model = model(&theta);
        let bins = settings.histogram_bins;
        let eval_bind = federated::binding_eval(&pre_json, &theta, bins as u32);
        let eval_kind = |secagg| {
            task::Kind::Eval(v1::EvalTask {
                model: Some(eval_model.clone()),
                histogram_bins: bins as u32,
                secagg: Some(secagg),
            })
        };
        let eval = self
            .run_session(
                spec,
                SessionPlan {
                    job_id,
                    round,
                    label: "evaluation",
                    binding_hash: eval_bind,
                    vector_len: eval_len(bins),
                    clip: 1.0,
                    first_of_job: false,
                    make_kind: &eval_kind,
                },
                cancel,
            )
            .await?;
        let e: FederatedEval = federated::eval_from_sum(&eval.sums, bins)
            .map_err(|e| AttemptError::Retry(e.to_string()))?;
        let next = Checkpoint { theta, ..cp };
        let metrics = RoundMetrics {
            survivors: Some(update.survivors.len() as u32),
            bytes_up: update.bytes_up + eval.bytes_up,
            bytes_down: update.bytes_down + eval.bytes_down,
            seconds: Some(started.elapsed().as_secs_f64()),
            auc: e.auc.is_finite().then_some(e.auc),
            ks: e.ks.is_finite().then_some(e.ks),
            log_loss: e.log_loss.is_finite().then_some(e.log_loss),
        };
        let model_file = ModelFile::new(
            spec.schema.clone(),
            next.preprocessor.clone(),
            &next.theta,
            Provenance {
                trainer: format!("federated-{algorithm}"),
                rounds: round,
                participants: update.survivors.len() as u32,
                schema_hash: spec.schema.hash(),
                l2_c: Some(settings.c),
                notes: vec![
                    format!("federation {}", self.federation_id),
                    format!("job {job_id}"),
                ],
            },
        )
        .map_err(|e| AttemptError::Retry(e.to_string()))?;
        self.finish_round(
            job_id,
            round,
            &session_id,
            metrics,
            &next,
            Some(&model_file),
        )?;
        info!(
            job = job_id,
            round,
            auc = e.auc,
            ks = e.ks,
            survivors = update.survivors.len(),
            seconds = started.elapsed().as_secs_f64(),
            "training round complete"
        );
        Ok(next)
    }

    /// Records a new attempt of a round under a fresh random attempt id (the store's
    /// `session_id` column); every secagg session inside it has its own session id.
    fn begin_round(
        &self,
        job_id: JobId,
        round: u32,
        kind: RoundKind,
    ) -> Result<Vec<u8>, AttemptError> {
        let session_id: [u8; 32] = rand::rng().random();
        self.store
            .start_round(job_id, round, kind, &session_id)
            .map_err(EngineError::from)?;
        Ok(session_id.to_vec())
    }

    fn finish_round(
        &self,
        job_id: JobId,
        round: u32,
        session_id: &[u8],
        metrics: RoundMetrics,
        cp: &Checkpoint,
        model: Option<&ModelFile>,
    ) -> Result<(), AttemptError> {
        let blob = serde_json::to_vec(cp).map_err(|e| EngineError::Invalid(e.to_string()))?;
        let model = match model {
            Some(m) => Some(NewModel {
                content_hash: m.content_hash.clone(),
                model_json: serde_json::to_string_pretty(m)
                    .map_err(|e| EngineError::Invalid(e.to_string()))?,
            }),
            None => None,
        };
        self.store
            .complete_round(
                job_id,
                round,
                session_id,
                &RoundCompletion {
                    metrics,
                    result: None,
                    model,
                    checkpoint: vec![("state".into(), blob)],
                },
            )
            .map_err(EngineError::from)?;
        Ok(())
    }

    /// Waits until at least `min_participants` are connected (for the job's first session:
    /// `expected_participants`, or at the deadline at least `min_participants`).
    async fn wait_for_participants(
        &self,
        spec: &JobSpec,
        first: bool,
        cancel: &mut watch::Receiver<bool>,
    ) -> Result<Vec<Peer>, AttemptError> {
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(spec.wait_for_participants_ms);
        let want = if first {
            spec.expected_participants.unwrap_or(spec.min_participants)
        } else {
            spec.min_participants
        };
        loop {
            let peers = self.hub.connected();
            if peers.len() >= want as usize {
                return Ok(peers);
            }
            tokio::select! {
                () = self.hub.changed() => {}
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
                () = tokio::time::sleep_until(deadline) => {
                    let peers = self.hub.connected();
                    if peers.len() >= spec.min_participants as usize {
                        return Ok(peers);
                    }
                    return Err(AttemptError::Retry(format!(
                        "only {} of the {} participants needed are connected", peers.len(), spec.min_participants
                    )));
                }
                _ = cancel.changed() => if *cancel.borrow() { return Err(AttemptError::Cancelled) },
            }
        }
    }

    /// Runs one secagg session among the connected participants.
    async fn run_session(
        &self,
        spec: &JobSpec,
        plan: SessionPlan<'_>,
        mut cancel: watch::Receiver<bool>,
    ) -> Result<SessionResult, AttemptError> {
        let peers = self
            .wait_for_participants(spec, plan.first_of_job, &mut cancel)
            .await?;
        let n = peers.len();
        let threshold = spec.threshold_for(n);
        let max_colluders = (2 * threshold)
            .saturating_sub(n as u32 + 1)
            .min(threshold.saturating_sub(1));
        let dropout_fraction = f64::from(n as u32 - threshold.min(n as u32)) / n as f64;
        let params = SessionParams {
            participants: peers.iter().map(|p| p.id).collect(),
            threshold,
            vector_len: plan.vector_len as u32,
            fixed_point: fixed_point_for(n, plan.clip),
            graph: recommended_graph(n, dropout_fraction, 0.0),
            security: SecurityMode::Active { max_colluders },
            dp_sigma: None,
        };
        let binding = SessionBinding {
            federation_id: self.federation_id.as_bytes().to_vec(),
            round: u64::from(plan.round),
            model_hash: plan.binding_hash,
        };
        let nonce: [u8; 32] = rand::rng().random();
        let config = SessionConfig::new(&binding, nonce, params)
            .map_err(|e| AttemptError::Retry(format!("session configuration: {e}")))?;
        let fixed = config.params.fixed_point;
        let mut coord = CoordinatorSession::new(
            config.clone(),
            fedrisk_secagg::Roster::new(peers.iter().map(|p| (p.id, p.verifying_key))),
        )
        .map_err(|e| AttemptError::Retry(format!("session: {e}")))?;
        let sid = config.session_id;
        let mut inbox = self.hub.open_session(plan.job_id, plan.round, &sid);
        let secagg = v1::SecAggParams {
            participant_ids: config.params.participants.clone(),
            threshold,
            vector_len: plan.vector_len as u32,
            config: config.encode(),
            peers: peers
                .iter()
                .map(|p| v1::PeerIdentity {
                    participant_id: p.id,
                    certificate_der: p.cert_der.clone(),
                })
                .collect(),
        };
        let kind = (plan.make_kind)(secagg);
        let mut traffic = Traffic::default();
        let task_bytes = prost::Message::encoded_len(&v1::Task {
            kind: Some(kind.clone()),
            ..v1::Task::default()
        }) as u64;
        for p in &peers {
            if self
                .hub
                .send(p.id, plan.job_id, plan.round, &sid, kind.clone())
            {
                traffic.down += task_bytes;
            }
        }
        info!(
            job = plan.job_id,
            round = plan.round,
            session = plan.label,
            participants = n,
            threshold,
            "secagg session started"
        );
        let result = self
            .drive(
                spec,
                &plan,
                &mut coord,
                &mut inbox,
                &mut traffic,
                &mut cancel,
            )
            .await;
        self.hub.close_session(&sid);
        match result {
            Ok(output) => {
                let (total_weight, sums) = decode_sum(&output.sum, &fixed)
                    .map_err(|e| AttemptError::Retry(format!("decoding the sum: {e}")))?;
                Ok(SessionResult {
                    total_weight,
                    sums,
                    survivors: output.survivors,
                    bytes_up: traffic.up,
                    bytes_down: traffic.down,
                })
            }
            Err(e) => {
                for p in &config.params.participants {
                    self.hub.send(
                        *p,
                        plan.job_id,
                        plan.round,
                        &sid,
                        task::Kind::Aborted(v1::RoundAborted {
                            reason: e.to_string(),
                        }),
                    );
                }
                Err(e)
            }
        }
    }

    /// Feeds uploads into the coordinator state machine, stage by stage, until it outputs.
    async fn drive(
        &self,
        spec: &JobSpec,
        plan: &SessionPlan<'_>,
        coord: &mut CoordinatorSession,
        inbox: &mut tokio::sync::mpsc::Receiver<Upload>,
        traffic: &mut Traffic,
        cancel: &mut watch::Receiver<bool>,
    ) -> Result<fedrisk_secagg::Output, AttemptError> {
        let sid = coord.config().session_id;
        let mut first = true;
        loop {
            let wait = if first {
                spec.round_deadline_ms
            } else {
                spec.stage_deadline_ms
            };
            first = false;
            let deadline = tokio::time::Instant::now() + Duration::from_millis(wait);
            let stage = coord.stage();
            loop {
                let awaiting = coord.awaiting();
                if awaiting.is_empty() || awaiting.iter().all(|id| !self.hub.is_connected(*id)) {
                    break;
                }
                tokio::select! {
                    up = inbox.recv() => {
                        let Some(up) = up else { break };
                        traffic.up += up.payload.len() as u64;
                        let verdict = accept(coord, &up);
                        if let Err(reason) = &verdict {
                            warn!(participant = up.from, session = plan.label, ?stage, %reason, "secagg message rejected");
                        }
                        let _ = up.reply.send(verdict);
                    }
                    () = tokio::time::sleep_until(deadline) => {
                        warn!(session = plan.label, ?stage, missing = ?coord.awaiting(), "stage deadline passed");
                        break;
                    }
                    () = self.hub.changed() => {}
                    _ = cancel.changed() => if *cancel.borrow() {
                        coord.abort();
                        return Err(AttemptError::Cancelled);
                    },
                }
            }
            match coord.close_stage() {
                Ok(Step::Send(out)) => {
                    for o in out {
                        let (recipients, message) = match o {
                            Outgoing::Broadcast {
                                recipients,
                                message,
                            } => (recipients, message),
                            Outgoing::Unicast { recipient, message } => (vec![recipient], message),
                        };
                        let payload = message.encode();
                        let stage = v1::SecAggStage::from(message.stage());
                        for r in recipients {
                            let kind = task::Kind::Secagg(v1::SecAggDelivery {
                                stage: stage as i32,
                                payload: payload.clone(),
                            });
                            if self.hub.send(r, plan.job_id, plan.round, &sid, kind) {
                                traffic.down += payload.len() as u64;
                            }
                        }
                    }
                }
                Ok(Step::Finished(output)) => return Ok(output),
                Err(e) => {
                    return Err(AttemptError::Retry(format!(
                        "{} session aborted: {e}",
                        plan.label
                    )));
                }
            }
        }
    }
}

/// Decides, after a failed attempt, whether to try the round again.
fn retry_or_fail(
    e: AttemptError,
    spec: &JobSpec,
    round: u32,
    attempt: u32,
) -> Result<(), EngineError> {
    match e {
        AttemptError::Cancelled => Err(EngineError::Cancelled),
        AttemptError::Fatal(e) => Err(e),
        AttemptError::Retry(reason) if attempt >= spec.max_attempts => {
            Err(EngineError::RoundFailed {
                round,
                attempts: attempt,
                reason,
            })
        }
        AttemptError::Retry(reason) => {
            warn!(round, attempt, %reason, "round attempt failed; retrying with fresh keys");
            Ok(())
        }
    }
}

/// Decodes an upload for the session and hands it to the state machine.
fn accept(coord: &mut CoordinatorSession, up: &Upload) -> Result<(), String> {
    let msg = Message::decode_for(&up.payload, coord.config()).map_err(|e| e.to_string())?;
    let r = match &msg {
        Message::Advertise(m) => coord.on_advertise(up.from, m),
        Message::ShareKeys(m) => coord.on_share_keys(up.from, m),
        Message::MaskedInput(m) => coord.on_masked_input(up.from, m),
        Message::ConsistencySignature(m) => coord.on_consistency(up.from, m),
        Message::UnmaskResponse(m) => coord.on_unmask(up.from, m),
        _ => {
            return Err(format!(
                "a participant cannot send a {:?} message",
                msg.stage()
            ));
        }
    };
    r.map_err(|e| e.to_string())
}

/// Bytes the coordinator received and sent in one session.
#[derive(Default)]
struct Traffic {
    up: u64,
    down: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_point_uses_every_bit_the_overflow_rule_allows() {
        for (n, clip) in [
            (2usize, 1.0),
            (5, TRAIN_CLIP),
            (50, TRAIN_CLIP),
            (1000, 1.0),
        ] {
            let fp = fixed_point_for(n, clip);
            let used = ceil_log2(n).max(1)
                + u32::from(WEIGHT_BITS)
                + fp.clip_bits()
                + u32::from(fp.frac_bits);
            assert!(used <= 62, "n {n}: {used} bits");
            assert!(used == 62 || fp.frac_bits == 40, "n {n}: bits left unused");
        }
        assert_eq!(fixed_point_for(5, TRAIN_CLIP).frac_bits, 62 - 3 - 24 - 12);
    }
}

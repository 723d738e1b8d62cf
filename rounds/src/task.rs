//! The task an agent receives for one secure-aggregation session.
//!
//! Self-contained: it names the job's schema and settings and, after the statistics round,
//! the frozen preprocessing and the model, so an agent that restarted mid-job takes part
//! in the next session with nothing cached (its cache only saves reloading its rows).
//! Both ends bind the session to [`binding`] of the exact bytes that travelled.

use fedrisk_models::federated::RoundSettings;
use fedrisk_models::{Preprocessor, Schema};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::RoundError;
use crate::kind::RoundKind;
use crate::kinds::{Evaluation, Magnitudes, Statistics, Update};

/// What every session of a job shares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobContext {
    /// The feature layout of every institution's rows.
    pub schema: Schema,
    /// Algorithm and hyper-parameters (with the federation's row total once known).
    pub settings: RoundSettings,
}

/// The global model a task carries: public to the federation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalModel {
    /// Frozen after the statistics round.
    pub preprocessor: Preprocessor,
    /// Coefficients on the preprocessed columns, then the intercept.
    pub theta: Vec<f64>,
}

/// The kind of a session and its own parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TaskParams {
    /// Round 0, first session: each numeric feature's magnitude octave.
    Magnitudes(Magnitudes),
    /// Round 0, second session: scaled sums, squares, missing and level counts.
    Statistics(Statistics),
    /// A training round's update (Newton terms or locally trained parameters).
    Update(Update),
    /// The federated evaluation of a model (score histograms by label).
    Evaluation(Evaluation),
}

impl TaskParams {
    /// The round kind behind these parameters.
    pub fn kind(&self) -> &dyn RoundKind {
        match self {
            TaskParams::Magnitudes(k) => k,
            TaskParams::Statistics(k) => k,
            TaskParams::Update(k) => k,
            TaskParams::Evaluation(k) => k,
        }
    }
}

/// One session's work, as the coordinator sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Task {
    /// The job; must equal the envelope's.
    pub job_id: u64,
    /// The round; must equal the envelope's.
    pub round: u32,
    /// The job's schema and settings.
    pub job: JobContext,
    /// The session's kind and parameters.
    pub params: TaskParams,
}

impl Task {
    /// The bytes that travel (and are bound).
    pub fn encode(&self) -> Vec<u8> {
        // Schemas, settings and finite parameters always serialise.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a task and checks it against the envelope it came in.
    pub fn decode(bytes: &[u8], job_id: u64, round: u32) -> Result<Self, RoundError> {
        let task: Task =
            serde_json::from_slice(bytes).map_err(|e| RoundError::Task(e.to_string()))?;
        if task.job_id != job_id || task.round != round {
            return Err(RoundError::Task(format!(
                "the task names job {} round {} but came for job {job_id} round {round}",
                task.job_id, task.round
            )));
        }
        task.job
            .schema
            .validate()
            .map_err(|e| RoundError::Schema(e.to_string()))?;
        Ok(task)
    }
}

/// The hash a session is bound to: SHA-256 over a domain label and the task's bytes. The
/// coordinator hashes what it sent, every agent what it received, so a session cannot
/// complete among participants who were told different things.
pub fn binding(task_bytes: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"fedrisk/task-binding/v2\0");
    h.update((task_bytes.len() as u64).to_le_bytes());
    h.update(task_bytes);
    h.finalize().into()
}

/// A model's content hash as operators see it in status lines.
pub fn model_hash(model: &GlobalModel) -> String {
    let mut h = Sha256::new();
    h.update(b"fedrisk/global-model/v1\0");
    h.update(serde_json::to_vec(model).unwrap_or_default());
    hex::encode(h.finalize())
}

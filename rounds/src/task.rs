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
use crate::kinds::{BinCounts, Evaluation, Magnitudes, Statistics, Update, UpdateEval};

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
    /// Round 0, third session of a binned job: good/bad counts over the agreed grid.
    BinCounts(BinCounts),
    /// A training round's update (Newton terms or locally trained parameters).
    Update(Update),
    /// The federated evaluation of a model (score histograms by label).
    Evaluation(Evaluation),
    /// A training round's update and the evaluation of the model it starts from, in one
    /// session.
    UpdateEval(UpdateEval),
}

impl TaskParams {
    /// The round kind behind these parameters.
    pub fn kind(&self) -> &dyn RoundKind {
        match self {
            TaskParams::Magnitudes(k) => k,
            TaskParams::Statistics(k) => k,
            TaskParams::BinCounts(k) => k,
            TaskParams::Update(k) => k,
            TaskParams::Evaluation(k) => k,
            TaskParams::UpdateEval(k) => k,
        }
    }

    /// The model the task carries, if any.
    pub fn model(&self) -> Option<&GlobalModel> {
        match self {
            TaskParams::Update(u) => Some(&u.model),
            TaskParams::Evaluation(e) => Some(&e.model),
            TaskParams::UpdateEval(u) => Some(&u.model),
            _ => None,
        }
    }

    /// Score histogram bins per label, if the task evaluates a model.
    pub fn histogram_bins(&self) -> Option<u32> {
        match self {
            TaskParams::Evaluation(e) => Some(e.bins),
            TaskParams::UpdateEval(u) => Some(u.bins),
            _ => None,
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

/// A task as it travels: its bytes, in which the parts that stay the same for a whole job
/// (the job context, the frozen preprocessing) are replaced by the SHA-256 of their content,
/// and that content, which an agent fetches once per job and checks against the hash.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedTask {
    /// The bytes sent with every session (and bound).
    pub bytes: Vec<u8>,
    /// `(hex SHA-256, content)` of every part the bytes refer to.
    pub contents: Vec<(String, Vec<u8>)>,
}

/// The JSON paths of a task that are sent by reference.
const BY_REFERENCE: &[&[&str]] = &[&["job"], &["params", "model", "preprocessor"]];
/// The key of a reference in place of a part.
const REF_KEY: &str = "$sha256";

/// Hex SHA-256 of a content part.
pub fn content_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn at_path<'a>(v: &'a mut serde_json::Value, path: &[&str]) -> Option<&'a mut serde_json::Value> {
    path.iter().try_fold(v, |v, k| v.get_mut(*k))
}

impl Task {
    /// The bytes that travel with every session, and the contents they refer to.
    pub fn encode(&self) -> EncodedTask {
        // Schemas, settings and finite parameters always serialise.
        let mut v = serde_json::to_value(self).unwrap_or_default();
        let mut contents = Vec::new();
        for path in BY_REFERENCE {
            if let Some(part) = at_path(&mut v, path) {
                let bytes = serde_json::to_vec(part).unwrap_or_default();
                let hash = content_hash(&bytes);
                *part = serde_json::json!({ REF_KEY: hash });
                contents.push((hash, bytes));
            }
        }
        EncodedTask {
            bytes: serde_json::to_vec(&v).unwrap_or_default(),
            contents,
        }
    }

    /// The content hashes a task's bytes refer to.
    pub fn references(bytes: &[u8]) -> Result<Vec<String>, RoundError> {
        let v: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| RoundError::Task(e.to_string()))?;
        Ok(BY_REFERENCE
            .iter()
            .filter_map(|p| p.iter().try_fold(&v, |v, k| v.get(*k)))
            .filter_map(|part| part.get(REF_KEY)?.as_str().map(str::to_string))
            .collect())
    }

    /// Reads a task, taking each referenced part from `content` (which must hash to the
    /// reference), and checks it against the envelope it came in.
    pub fn decode_with(
        bytes: &[u8],
        job_id: u64,
        round: u32,
        content: &dyn Fn(&str) -> Option<Vec<u8>>,
    ) -> Result<Self, RoundError> {
        let mut v: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| RoundError::Task(e.to_string()))?;
        for path in BY_REFERENCE {
            let Some(part) = at_path(&mut v, path) else {
                continue;
            };
            let Some(hash) = part
                .get(REF_KEY)
                .and_then(|h| h.as_str())
                .map(str::to_string)
            else {
                continue;
            };
            let bytes = content(&hash).ok_or_else(|| {
                RoundError::Task(format!(
                    "content {} is not available",
                    &hash[..16.min(hash.len())]
                ))
            })?;
            if content_hash(&bytes) != hash {
                return Err(RoundError::Task(format!(
                    "content {} does not match its hash",
                    &hash[..16.min(hash.len())]
                )));
            }
            *part = serde_json::from_slice(&bytes).map_err(|e| RoundError::Task(e.to_string()))?;
        }
        let task: Task = serde_json::from_value(v).map_err(|e| RoundError::Task(e.to_string()))?;
        task.check_envelope(job_id, round)
    }

    /// Reads a task whose parts are all in its bytes or in `encoded.contents`.
    pub fn decode(encoded: &EncodedTask, job_id: u64, round: u32) -> Result<Self, RoundError> {
        let lookup = |h: &str| {
            encoded
                .contents
                .iter()
                .find(|(k, _)| k == h)
                .map(|(_, c)| c.clone())
        };
        Self::decode_with(&encoded.bytes, job_id, round, &lookup)
    }

    fn check_envelope(self, job_id: u64, round: u32) -> Result<Self, RoundError> {
        let task = self;
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

/// What an agent accepts before it computes anything for a task: the coordinator chooses
/// a task's shape, so its size is bounded first (an unbounded histogram could exhaust the
/// agent's memory before any other check), and a job's preprocessing may not change once
/// the statistics round fixed it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskLimits {
    /// Largest aggregated vector.
    pub max_vector_len: usize,
    /// Largest score histogram (bins per label).
    pub max_histogram_bins: u32,
}

impl Default for TaskLimits {
    fn default() -> Self {
        Self {
            max_vector_len: 1 << 20,
            max_histogram_bins: 10_000,
        }
    }
}

impl Task {
    /// Checks the task's size against `limits` without computing anything.
    pub fn check_limits(&self, limits: &TaskLimits) -> Result<(), RoundError> {
        if let Some(bins) = self.params.histogram_bins()
            && bins > limits.max_histogram_bins
        {
            return Err(RoundError::Task(format!(
                "a histogram of {} bins exceeds this agent's limit of {}",
                bins, limits.max_histogram_bins
            )));
        }
        // The design matrix is rows x the preprocessing's width: the model must fit it, so
        // the vector-length bound also bounds that allocation.
        if let Some(m) = self.params.model()
            && m.preprocessor.width() + 1 != m.theta.len()
        {
            return Err(RoundError::Task(format!(
                "the model has {} parameters for {} preprocessed columns",
                m.theta.len(),
                m.preprocessor.width()
            )));
        }
        let len = self.params.kind().vector_len(&self.job);
        if len > limits.max_vector_len {
            return Err(RoundError::Task(format!(
                "a vector of {len} values exceeds this agent's limit of {}",
                limits.max_vector_len
            )));
        }
        Ok(())
    }

    /// The hash of the preprocessing the task's model uses, if it carries a model.
    pub fn preprocessing_hash(&self) -> Option<String> {
        let pre = &self.params.model()?.preprocessor;
        Some(hex::encode(binding(
            &serde_json::to_vec(pre).unwrap_or_default(),
        )))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::Magnitudes;

    fn task() -> Task {
        Task {
            job_id: 3,
            round: 0,
            job: JobContext {
                schema: fedrisk_models::synth::SynthConfig::schema(),
                settings: fedrisk_models::federated::RoundSettings::default(),
            },
            params: TaskParams::Magnitudes(Magnitudes {}),
        }
    }

    #[test]
    fn job_wide_parts_travel_by_hash_and_are_checked_against_it() {
        let t = task();
        let enc = t.encode();
        assert_eq!(
            enc.contents.len(),
            1,
            "the job context travels by reference"
        );
        assert!(enc.bytes.len() < 200, "{} bytes", enc.bytes.len());
        assert_eq!(
            Task::references(&enc.bytes).expect("refs"),
            vec![enc.contents[0].0.clone()]
        );
        assert_eq!(Task::decode(&enc, 3, 0).expect("decode"), t);
        // Missing content, or content that does not match its hash, is refused.
        let none = |_: &str| None;
        assert!(matches!(
            Task::decode_with(&enc.bytes, 3, 0, &none),
            Err(RoundError::Task(_))
        ));
        let mut other = t.clone();
        other.job.settings.c = 0.5;
        let forged = serde_json::to_vec(&other.job).expect("json");
        let swap = |_: &str| Some(forged.clone());
        let e = Task::decode_with(&enc.bytes, 3, 0, &swap).unwrap_err();
        assert!(e.to_string().contains("does not match its hash"), "{e}");
        // A task for another envelope is refused.
        assert!(Task::decode(&enc, 4, 0).is_err());
    }
}

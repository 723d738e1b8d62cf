//! Why a round could not be computed (participant side) or absorbed (coordinator side).

use fedrisk_models::FitError;

/// A round kind's error. [`RoundError::is_deterministic`] tells the plan whether trying
/// again with fresh keys can help.
#[derive(Debug, thiserror::Error)]
pub enum RoundError {
    /// The task's bytes do not decode, or contradict their envelope.
    #[error("malformed task: {0}")]
    Task(String),
    /// The job's schema is not the one this agent was started with.
    #[error(
        "the job's schema (hash {job}) differs from the one this agent was started with (hash {pinned})"
    )]
    SchemaMismatch {
        /// Hash prefix of the job's schema.
        job: String,
        /// Hash prefix of the agent's schema.
        pinned: String,
    },
    /// The job's schema itself is invalid.
    #[error("the job's schema is invalid: {0}")]
    Schema(String),
    /// The institution's data does not load under the job's schema.
    #[error("{0}")]
    Data(String),
    /// Model arithmetic failed (dimensions, a singular Hessian, no rows).
    #[error(transparent)]
    Fit(#[from] FitError),
    /// An aggregated result that cannot be used (not finite, zero weight).
    #[error("{0}")]
    Result(String),
}

impl RoundError {
    /// Whether the same inputs would fail the same way: such errors fail the job at once
    /// instead of being retried with fresh keys.
    pub fn is_deterministic(&self) -> bool {
        matches!(
            self,
            RoundError::Task(_) | RoundError::Schema(_) | RoundError::SchemaMismatch { .. }
        )
    }
}

/// Why one session of a round did not give a usable result, as the plan sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Dropouts, deadlines, too few participants, an aggregate that did not decode: a new
    /// session with fresh keys may succeed.
    Transient(String),
    /// A configuration error that would recur: the job fails without another attempt.
    Deterministic(String),
}

impl Failure {
    /// The reason in words.
    pub fn reason(&self) -> &str {
        match self {
            Failure::Transient(r) | Failure::Deterministic(r) => r,
        }
    }
}

impl From<RoundError> for Failure {
    fn from(e: RoundError) -> Self {
        if e.is_deterministic() {
            Failure::Deterministic(e.to_string())
        } else {
            Failure::Transient(e.to_string())
        }
    }
}

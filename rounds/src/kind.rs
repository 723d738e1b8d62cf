//! The one trait every round kind implements.

use fedrisk_models::FeatureStats;
use fedrisk_models::federated::{Contribution, FederatedEval};

use crate::error::RoundError;
use crate::local::Rows;
use crate::task::JobContext;

/// A session's decoded output, as the driver hands it to the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionSum {
    /// Sum of the participants' weights (row counts, or 1 each for unweighted kinds).
    pub total_weight: u64,
    /// Sum of weight x value, element by element.
    pub sums: Vec<f64>,
    /// Who the sum is over.
    pub survivors: Vec<u32>,
    /// Bytes the coordinator received in the session.
    pub bytes_up: u64,
    /// Bytes the coordinator sent in the session.
    pub bytes_down: u64,
}

/// What the coordinator learnt from a session's sum.
#[derive(Debug, Clone, PartialEq)]
pub enum Absorbed {
    /// Per-numeric-feature scales (magnitudes).
    Scales(Vec<f64>),
    /// The federation's feature statistics.
    Stats(FeatureStats),
    /// The next global parameters.
    Theta(Vec<f64>),
    /// Federation-wide evaluation of a model.
    Eval(FederatedEval),
    /// The federation's good/bad counts per feature and bin-count slot.
    BinCounts(Vec<Vec<fedrisk_models::binning::Counts>>),
}

/// One kind of federated round. Adding a kind is one implementation of this trait plus
/// its variant in [`crate::TaskParams`] and its place in [`crate::JobPlan`].
pub trait RoundKind {
    /// Short name for logs and status.
    fn label(&self) -> &'static str;
    /// Length of the aggregated vector.
    fn vector_len(&self, job: &JobContext) -> usize;
    /// Largest |value| the fixed-point encoding must represent.
    fn clip(&self) -> f64;
    /// The participant's vector from its own rows (runs on the agent).
    fn contribute(
        &self,
        job: &JobContext,
        round: u32,
        rows: &mut dyn Rows,
    ) -> Result<Contribution, RoundError>;
    /// What the coordinator learns from the decoded sum.
    fn absorb(&self, job: &JobContext, sum: &SessionSum) -> Result<Absorbed, RoundError>;
}

//! The one trait every round kind implements.

use fedrisk_models::FeatureStats;
use fedrisk_models::federated::{Contribution, FederatedEval};

use crate::error::RoundError;
use crate::local::Rows;
use crate::task::JobContext;

/// A session's decoded output, as the driver hands it to the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionSum {
    /// How many inputs the sum is over (slot 0 of every input is 1; row counts are never
    /// summed on their own).
    pub contributors: u64,
    /// Sum of row count x per-row value, element by element.
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
    /// The next global parameters and the evaluation of the model they were stepped
    /// from (`None` when the sum held only the update part, or its histograms could not
    /// be read).
    UpdateEval {
        /// The next parameters.
        theta: Vec<f64>,
        /// The evaluation of the model the update started from.
        eval: Option<FederatedEval>,
    },
}

/// One part of what an agent adds to a session: the contribution one kind makes for the
/// model of one round. A session's input is its parts one after the other, each its own
/// sums ([`crate::fixed::encode_parts`]); the agent's ledger knows each part
/// on its own, by kind, round and figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    /// The label of the kind whose contribution this is.
    pub label: &'static str,
    /// The round of the model (or, for round 0's kinds, of the job) it is about.
    pub round: u32,
    /// The figures.
    pub contribution: Contribution,
}

impl Part {
    /// The whole input of a one-part kind.
    pub fn whole(kind: &dyn RoundKind, round: u32, contribution: Contribution) -> Vec<Part> {
        vec![Part {
            label: kind.label(),
            round,
            contribution,
        }]
    }
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
    /// The participant's vector from its own rows, as its parts (runs on the agent).
    fn contribute(
        &self,
        job: &JobContext,
        round: u32,
        rows: &mut dyn Rows,
    ) -> Result<Vec<Part>, RoundError>;
    /// What the coordinator learns from the decoded sum.
    fn absorb(&self, job: &JobContext, sum: &SessionSum) -> Result<Absorbed, RoundError>;
    /// Counts that this kind's sum reveals and that are the same in every session that
    /// reads the same rows (how many rows, how many defaults), one list per set of rows
    /// (empty when none). Whatever else a session's vector holds, two sums carrying the
    /// same counts over survivor sets that differ by one institution give that
    /// institution's counts: the agent lets each list be summed over one survivor set
    /// only (runs on the agent). A kind that reveals the counts of part of the rows also
    /// names all rows' counts ([`split_constants`]): the parts of two jobs split another
    /// way add up to them.
    fn constants(
        &self,
        _job: &JobContext,
        _rows: &mut dyn Rows,
    ) -> Result<Vec<Vec<u64>>, RoundError> {
        Ok(Vec::new())
    }
    /// Whether a job asks this kind once, whatever the round: it describes the job's rows
    /// (magnitudes, statistics, bin counts), not a model. The agent answers it once per job,
    /// so a coordinator cannot re-ask it in a later round in another form (other scales).
    fn once_per_job(&self) -> bool {
        false
    }
    /// Whether later tasks are derived from this kind's sum (scales, statistics, bins, the
    /// next model). Those sessions carry commitments so that agents can check the sum
    /// before they take part in what follows (`crate::lineage`); a sum nothing depends on
    /// (an evaluation's) needs none.
    fn feeds_the_plan(&self) -> bool {
        true
    }
    /// How many values (after slot 0) each input commits to: all of them for a kind
    /// whose sum feeds the plan, none otherwise; a kind whose vector holds more than what
    /// later tasks derive from commits to that leading part only.
    fn committed_len(&self, job: &JobContext) -> Option<usize> {
        self.feeds_the_plan().then(|| self.vector_len(job))
    }
}

/// Which of a job's rows a sum's counts are about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowsCounted {
    /// The training rows (statistics, bin counts, updates).
    Train,
    /// The rows evaluations score (the held-out rows, else the training rows).
    Eval,
    /// All rows (only all rows' counts).
    All,
}

/// The row and default counts of the rows `which` names, and of all the institution's
/// rows when those differ, as [`RoundKind::constants`] gives them. Training and held-out
/// counts of one split add up to all rows' counts, and so do those of a job split with
/// another validation share or seed: all rows' counts are tied to one survivor set too,
/// so that no two jobs' sums over different sets can be differenced into them.
pub fn split_constants(
    job: &JobContext,
    rows: &mut dyn Rows,
    which: RowsCounted,
) -> Result<Vec<Vec<u64>>, RoundError> {
    let split = rows.split(job)?;
    let train = split.train.labels.as_deref().unwrap_or_default();
    let held_out = split
        .held_out
        .as_ref()
        .and_then(|d| d.labels.as_deref())
        .unwrap_or_default();
    let counted = match which {
        RowsCounted::Eval if !held_out.is_empty() => row_constants(held_out.iter()),
        RowsCounted::All => Vec::new(),
        _ => row_constants(train.iter()),
    };
    Ok(union_constants(
        counted,
        row_constants(train.iter().chain(held_out)),
    ))
}

/// `a` followed by the lists of `b` it does not already hold: one entry per count, however
/// many parts of a session name it.
pub fn union_constants(mut a: Vec<Vec<u64>>, b: Vec<Vec<u64>>) -> Vec<Vec<u64>> {
    for c in b {
        if !a.contains(&c) {
            a.push(c);
        }
    }
    a
}

/// The counts a sum over a set of labelled rows carries, as [`RoundKind::constants`] gives
/// them: the row count on its own, and the defaults and non-defaults as a pair in either
/// order. A sum reveals each count by itself, and a job whose label reads the other way
/// round (or names another 0/1 column) has other default counts over the same rows: tying
/// `[rows, defaults]` as one figure would let such a job run over another set.
pub fn row_constants<'a>(labels: impl Iterator<Item = &'a u8>) -> Vec<Vec<u64>> {
    let (mut rows, mut defaults) = (0u64, 0u64);
    for &y in labels {
        rows += 1;
        defaults += u64::from(y > 0);
    }
    let others = rows - defaults;
    vec![vec![rows], vec![defaults.min(others), defaults.max(others)]]
}

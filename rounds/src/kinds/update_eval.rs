//! A training round's update together with the evaluation of the model it starts from:
//! one secure session where there were two. The update of round `r` is taken at the model
//! round `r - 1` produced, which is also the model whose evaluation was still owed, so the
//! same task carries both and each agent reads its rows once.
//!
//! The two parts keep their own meaning: each is the contribution its own kind would make
//! (so the agent's ledger knows each part by the same fingerprint, and the evaluation part
//! under the round of the model it scores), each its own sums inside the masked vector. Only the update part is committed to: later tasks derive from it, while
//! nothing derives from the evaluation's histograms, and committing to their thousands of
//! words would cost a term of the multi-scalar multiplication each.
//!
//! The evaluation part carries the evaluation rows' row and default counts, which are the
//! same in every evaluation of the job, so the session runs over the statistics session's
//! participants only (see [`crate::Checkpoint::constants_survivors`]). When that set is
//! not available the plan runs the update on its own instead, and the previous model stays
//! unevaluated.

use fedrisk_models::federated::{self, FederatedEval};
use serde::{Deserialize, Serialize};

use crate::error::RoundError;
use crate::fixed::TRAIN_CLIP;
use crate::kind::{Absorbed, Part, RoundKind, SessionSum, union_constants};
use crate::kinds::{Evaluation, Update};
use crate::local::Rows;
use crate::task::{GlobalModel, JobContext};

/// The update of `model` and the evaluation of `model` into `bins` score bins per label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateEval {
    /// The model the update starts from and the evaluation scores.
    pub model: GlobalModel,
    /// Score histogram bins per label.
    pub bins: u32,
}

impl UpdateEval {
    fn update(&self) -> Update {
        Update {
            model: self.model.clone(),
        }
    }

    fn evaluation(&self) -> Evaluation {
        Evaluation {
            model: self.model.clone(),
            bins: self.bins,
        }
    }

    fn update_len(&self, job: &JobContext) -> usize {
        self.update().vector_len(job)
    }
}

impl RoundKind for UpdateEval {
    fn label(&self) -> &'static str {
        "update_eval"
    }

    fn vector_len(&self, job: &JobContext) -> usize {
        self.update_len(job) + federated::eval_len(self.bins as usize)
    }

    fn clip(&self) -> f64 {
        TRAIN_CLIP.max(self.evaluation().clip())
    }

    fn committed_len(&self, job: &JobContext) -> Option<usize> {
        Some(self.update_len(job))
    }

    fn contribute(
        &self,
        job: &JobContext,
        round: u32,
        rows: &mut dyn Rows,
    ) -> Result<Vec<Part>, RoundError> {
        let mut parts = self.update().contribute(job, round, rows)?;
        // The evaluation scores the model round - 1 produced: the ledger knows it there,
        // where an evaluation session of that model would have been.
        let scored = round.saturating_sub(1);
        parts.extend(self.evaluation().contribute(job, scored, rows)?);
        Ok(parts)
    }

    fn constants(
        &self,
        job: &JobContext,
        rows: &mut dyn Rows,
    ) -> Result<Vec<Vec<u64>>, RoundError> {
        Ok(union_constants(
            self.evaluation().constants(job, rows)?,
            self.update().constants(job, rows)?,
        ))
    }

    /// A sum of the update part alone (what a lineage record carries: the committed
    /// words) gives the next parameters without the evaluation.
    fn absorb(&self, job: &JobContext, sum: &SessionSum) -> Result<Absorbed, RoundError> {
        let k = self.update_len(job);
        let e = federated::eval_len(self.bins as usize);
        let n = sum.sums.len();
        if n != k && n != k + e {
            return Err(RoundError::Result(format!(
                "an update with evaluation has {n} values, not {k} or {}",
                k + e
            )));
        }
        let part = |range: std::ops::Range<usize>| SessionSum {
            sums: sum.sums[range].to_vec(),
            ..sum.clone()
        };
        let Absorbed::Theta(theta) = self.update().absorb(job, &part(0..k))? else {
            return Err(RoundError::Result(
                "the update part gave no parameters".into(),
            ));
        };
        // The evaluation is information about the previous model, not part of the next:
        // histograms that cannot be read leave it unevaluated and the update stands.
        let eval: Option<FederatedEval> = (n == k + e)
            .then(|| federated::eval_from_sum(&sum.sums[k..], self.bins as usize).ok())
            .flatten();
        Ok(Absorbed::UpdateEval { theta, eval })
    }
}

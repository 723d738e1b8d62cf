//! The federated evaluation of a model: per-label score histograms, the log-loss sum and
//! the row count on each institution's evaluation rows, so AUC, KS and log loss come from
//! sums alone.

use fedrisk_models::federated::{self, Contribution};
use serde::{Deserialize, Serialize};

use crate::error::RoundError;
use crate::kind::{Absorbed, Part, RoundKind, RowsCounted, SessionSum, split_constants};
use crate::local::Rows;
use crate::task::{GlobalModel, JobContext};

/// Evaluation of `model` into `bins` score bins per label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evaluation {
    /// The model to score.
    pub model: GlobalModel,
    /// Score histogram bins per label.
    pub bins: u32,
}

impl RoundKind for Evaluation {
    fn label(&self) -> &'static str {
        "evaluation"
    }

    fn feeds_the_plan(&self) -> bool {
        false
    }

    fn vector_len(&self, _job: &JobContext) -> usize {
        federated::eval_len(self.bins as usize)
    }

    fn clip(&self) -> f64 {
        1.0
    }

    fn contribute(
        &self,
        job: &JobContext,
        round: u32,
        rows: &mut dyn Rows,
    ) -> Result<Vec<Part>, RoundError> {
        let d = rows.design(job, &self.model.preprocessor)?;
        let x = d.eval_x();
        let n = x.nrows();
        let values = federated::eval_contribution(
            x.view(),
            &d.eval_labels,
            &self.model.theta,
            self.bins as usize,
        )?;
        let c = Contribution {
            weight: n as u64,
            values,
        };
        Ok(Part::whole(self, round, c))
    }

    fn constants(
        &self,
        job: &JobContext,
        rows: &mut dyn Rows,
    ) -> Result<Vec<Vec<u64>>, RoundError> {
        split_constants(job, rows, RowsCounted::Eval)
    }

    fn absorb(&self, _job: &JobContext, sum: &SessionSum) -> Result<Absorbed, RoundError> {
        Ok(Absorbed::Eval(federated::eval_from_sum(
            &sum.sums,
            self.bins as usize,
        )?))
    }
}

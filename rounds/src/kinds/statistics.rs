//! Round 0, second session: sums (divided by the agreed scales), squares, missing and level
//! counts over each institution's rows: the federation's [`FeatureStats`].
//!
//! [`FeatureStats`]: fedrisk_models::FeatureStats

use fedrisk_models::federated;
use serde::{Deserialize, Serialize};

use crate::error::RoundError;
use crate::kind::{Absorbed, Part, RoundKind, RowsCounted, SessionSum, split_constants};
use crate::local::Rows;
use crate::task::JobContext;

/// Feature statistics under agreed scales.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statistics {
    /// One power of two per numeric feature, from the magnitudes session.
    pub scales: Vec<f64>,
}

impl RoundKind for Statistics {
    fn label(&self) -> &'static str {
        "statistics"
    }

    fn once_per_job(&self) -> bool {
        true
    }

    fn vector_len(&self, job: &JobContext) -> usize {
        federated::stats_len(&job.schema)
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
        let split = rows.split(job)?;
        let c = federated::stats_contribution(&job.schema, &split.train, &self.scales)?;
        Ok(Part::whole(self, round, c))
    }

    fn constants(
        &self,
        job: &JobContext,
        rows: &mut dyn Rows,
    ) -> Result<Vec<Vec<u64>>, RoundError> {
        split_constants(job, rows, RowsCounted::Train)
    }

    fn absorb(&self, job: &JobContext, sum: &SessionSum) -> Result<Absorbed, RoundError> {
        Ok(Absorbed::Stats(federated::stats_from_sum(
            &job.schema,
            &sum.sums,
            &self.scales,
        )?))
    }
}

//! Round 0, third session of a job with `binning = "woe"`: each institution's good and bad
//! counts per feature over a fine grid agreed before counting (a pure function of the schema
//! and the scales the magnitudes session agreed), per missing value, per declared special
//! code and per categorical level. The secure sum is the federation's counts, exact
//! integers, from which the coordinator bins every feature (`fedrisk_models::binning`).

use fedrisk_models::binning::{CountGrid, Counts};
use fedrisk_models::federated::Contribution;
use serde::{Deserialize, Serialize};

use crate::error::RoundError;
use crate::kind::{Absorbed, Part, RoundKind, RowsCounted, SessionSum, split_constants};
use crate::local::Rows;
use crate::task::JobContext;

/// Good/bad counts over the grid of `scales`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BinCounts {
    /// One power of two per numeric feature, from the magnitudes session.
    pub scales: Vec<f64>,
}

impl BinCounts {
    fn grid(&self, job: &JobContext) -> Result<CountGrid, RoundError> {
        Ok(CountGrid::new(&job.schema, &self.scales)?)
    }
}

impl RoundKind for BinCounts {
    fn label(&self) -> &'static str {
        "bin_counts"
    }

    fn once_per_job(&self) -> bool {
        true
    }

    fn vector_len(&self, job: &JobContext) -> usize {
        self.grid(job).map_or(0, |g| g.vector_len())
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
        let grid = self.grid(job)?;
        let train = &rows.split(job)?.train;
        let counts = grid.count(train)?;
        // The counts themselves, weight n: the secure sum is the federation's counts.
        let c = Contribution {
            weight: train.rows() as u64,
            values: CountGrid::to_vector(&counts),
        };
        Ok(Part::whole(self, round, c))
    }

    fn constants(
        &self,
        job: &JobContext,
        rows: &mut dyn Rows,
    ) -> Result<Vec<Vec<u64>>, RoundError> {
        // The counts sum to the training rows' row and default counts, as the statistics
        // sum does: one survivor set for both.
        split_constants(job, rows, RowsCounted::Train)
    }

    fn absorb(&self, job: &JobContext, sum: &SessionSum) -> Result<Absorbed, RoundError> {
        let counts: Vec<Vec<Counts>> = self.grid(job)?.from_vector(&sum.sums)?;
        Ok(Absorbed::BinCounts(counts))
    }
}

//! Round 0, first session: which octave each numeric feature's largest |value| falls in
//! (a one-hot per feature, weight 1), so the statistics session can scale into [-1, 1].

use fedrisk_models::federated;
use serde::{Deserialize, Serialize};

use crate::error::RoundError;
use crate::kind::{Absorbed, Part, RoundKind, SessionSum};
use crate::local::Rows;
use crate::task::JobContext;

/// Magnitude octaves of every numeric feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Magnitudes {}

impl RoundKind for Magnitudes {
    fn label(&self) -> &'static str {
        "magnitudes"
    }

    fn once_per_job(&self) -> bool {
        true
    }

    fn vector_len(&self, job: &JobContext) -> usize {
        federated::magnitude_len(&job.schema)
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
        // All rows, not the training rows: the input is then the same in every job over
        // these rows whatever its validation share or seed, so the ledger ties it to one
        // set across jobs (a split-dependent maximum could be differenced between two jobs).
        let split = rows.split(job)?;
        let mut parts = vec![&split.train];
        parts.extend(split.held_out.as_ref());
        let c = federated::magnitude_contribution_of(&parts);
        Ok(Part::whole(self, round, c))
    }

    fn absorb(&self, job: &JobContext, sum: &SessionSum) -> Result<Absorbed, RoundError> {
        Ok(Absorbed::Scales(federated::scales_from_magnitudes(
            &job.schema,
            &sum.sums,
        )?))
    }
}

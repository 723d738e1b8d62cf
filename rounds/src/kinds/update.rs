//! A training round's update. Newton: the gradient, Hessian (upper triangle) and loss sums
//! at the global model, from which the coordinator takes one Newton step on the pooled
//! objective. FedAvg / FedProx: each institution's step after local epochs, scaled by its
//! share of the federation's rows (`n_k / N`, `N` from the statistics session), summed and
//! added to the global model. With every institution present that is the row-weighted
//! average of the local models; a missing institution's step is simply absent. No session
//! of the job sums a row count, which is constant and would difference out.

use fedrisk_models::federated::{self, Algorithm, Contribution};
use fedrisk_models::logistic::{Penalty, newton_step};
use serde::{Deserialize, Serialize};

use crate::error::RoundError;
use crate::fixed::TRAIN_CLIP;
use crate::kind::{Absorbed, Part, RoundKind, RowsCounted, SessionSum, split_constants};
use crate::local::Rows;
use crate::task::{GlobalModel, JobContext};

/// The update of `model` under the job's algorithm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Update {
    /// The model the update starts from.
    pub model: GlobalModel,
}

impl RoundKind for Update {
    fn label(&self) -> &'static str {
        "update"
    }

    fn vector_len(&self, job: &JobContext) -> usize {
        let k = self.model.theta.len();
        match job.settings.algorithm {
            Algorithm::Newton => federated::newton_len(k),
            Algorithm::FedAvg | Algorithm::FedProx => k,
        }
    }

    fn clip(&self) -> f64 {
        TRAIN_CLIP
    }

    fn contribute(
        &self,
        job: &JobContext,
        round: u32,
        rows: &mut dyn Rows,
    ) -> Result<Vec<Part>, RoundError> {
        let d = rows.design(job, &self.model.preprocessor)?;
        let theta = &self.model.theta;
        let c = match job.settings.algorithm {
            Algorithm::Newton => {
                let mut c = federated::newton_contribution(d.x_train.view(), &d.y_train, theta)?;
                // The step needs only the gradient and Hessian. The loss slot is sent as 0:
                // the evaluation of the same model carries the same loss, and two sums of it
                // over survivor sets that differ by one institution would give that
                // institution's loss.
                if let Some(loss) = c.values.last_mut() {
                    *loss = 0.0;
                }
                c
            }
            Algorithm::FedAvg | Algorithm::FedProx => {
                let total = job.settings.total_rows;
                if total.is_nan() || total < 1.0 {
                    return Err(RoundError::Task(
                        "a fedavg update without the federation's row count from the statistics session".into(),
                    ));
                }
                let local = federated::local_update(
                    d.x_train.view(),
                    &d.y_train,
                    theta,
                    &job.settings,
                    round,
                )?;
                let share = d.x_train.nrows() as f64 / total;
                Contribution {
                    weight: 1,
                    values: local
                        .iter()
                        .zip(theta)
                        .map(|(l, g)| share * (l - g))
                        .collect(),
                }
            }
        };
        Ok(Part::whole(self, round, c))
    }

    /// Every update carries the training counts, exactly or nearly. At round 1's zero
    /// coefficients every row scores 1/2, so a Newton update's intercept entries are a
    /// quarter of the rows and half of them less the defaults. Later, a design of 0/1
    /// columns (indicators, one-hot levels) gives each cell's rows in its Hessian entries
    /// divided by a `p(1 - p)` the coordinator knows from the model; a nearly flat model
    /// gives the counts to within a row; and in general the intercept entries approximate
    /// them. So every update names them and runs over the statistics set only.
    fn constants(
        &self,
        job: &JobContext,
        rows: &mut dyn Rows,
    ) -> Result<Vec<Vec<u64>>, RoundError> {
        split_constants(job, rows, RowsCounted::Train)
    }

    fn absorb(&self, job: &JobContext, sum: &SessionSum) -> Result<Absorbed, RoundError> {
        let k = self.model.theta.len();
        let theta: Vec<f64> = match job.settings.algorithm {
            Algorithm::Newton => {
                let c = federated::newton_from_sum(&sum.sums, k)?;
                newton_step(
                    &self.model.theta,
                    &c.grad,
                    &c.hess,
                    &Penalty::sklearn(job.settings.c),
                )?
            }
            Algorithm::FedAvg | Algorithm::FedProx => {
                if sum.sums.len() != k {
                    return Err(RoundError::Result(format!(
                        "the update has {} values for {k} parameters",
                        sum.sums.len()
                    )));
                }
                self.model
                    .theta
                    .iter()
                    .zip(&sum.sums)
                    .map(|(g, step)| g + step)
                    .collect()
            }
        };
        if theta.iter().any(|v| !v.is_finite()) {
            return Err(RoundError::Result("the update is not finite".into()));
        }
        Ok(Absorbed::Theta(theta))
    }
}

//! A training round's update. Newton: per-row gradient, Hessian (upper triangle) and loss
//! at the global model, from which the coordinator takes one Newton step on the pooled
//! objective. FedAvg / FedProx: parameters after local epochs, averaged by row count.

use fedrisk_models::federated::{self, Algorithm, Contribution};
use fedrisk_models::logistic::{Penalty, newton_step};
use serde::{Deserialize, Serialize};

use crate::error::RoundError;
use crate::fixed::TRAIN_CLIP;
use crate::kind::{Absorbed, RoundKind, SessionSum};
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
    ) -> Result<Contribution, RoundError> {
        let d = rows.design(job, &self.model.preprocessor)?;
        let theta = &self.model.theta;
        Ok(match job.settings.algorithm {
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
            Algorithm::FedAvg | Algorithm::FedProx => federated::local_update_contribution(
                d.x_train.view(),
                &d.y_train,
                theta,
                &job.settings,
                round,
            )?,
        })
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
                if sum.total_weight == 0 {
                    return Err(RoundError::Result("total weight is zero".into()));
                }
                sum.sums
                    .iter()
                    .map(|s| s / sum.total_weight as f64)
                    .collect()
            }
        };
        if theta.iter().any(|v| !v.is_finite()) {
            return Err(RoundError::Result("the update is not finite".into()));
        }
        Ok(Absorbed::Theta(theta))
    }
}

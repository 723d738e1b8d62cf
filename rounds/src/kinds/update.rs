//! A training round's update. Newton: per-row gradient, Hessian (upper triangle) and loss
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

impl Update {
    /// Whether the update starts from a model whose coefficients (all but the intercept)
    /// are zero, as round 1 does. Every row then has the same score, so a Newton update's
    /// intercept entries are exactly a quarter of the training rows and half of them less
    /// the defaults (scaled by the score's slope elsewhere), and its other entries are the
    /// feature sums a statistics session carries; a FedAvg step from there starts from the
    /// default rate the same way. Such an update carries the training counts.
    pub fn starts_flat(&self) -> bool {
        self.model
            .theta
            .split_last()
            .is_some_and(|(_, coefficients)| coefficients.iter().all(|c| *c == 0.0))
    }
}

/// The standard deviation of an institution's scores (log-odds, before the intercept)
/// below which an update counts as flat (see [`Update::constants`]). After the coordinator
/// corrects what the Hessian gives back, about `n s^4 / 8` of the row count `n` stays
/// unknown; below 0.25 that is under half a row for federations of a few thousand rows,
/// so the count would come out exact. Useful credit models spread their scores wider
/// (about 0.5 on the generated data, at an AUC near 0.77); a job whose model stays below
/// runs its updates over the statistics set only. Above it the counts still come out
/// approximately: SECURITY.md, "approximate differencing".
pub const FLAT_SPREAD: f64 = 0.25;

impl Update {
    /// The standard deviation of `x . coefficients` over this institution's training rows.
    pub fn score_spread(&self, job: &JobContext, rows: &mut dyn Rows) -> Result<f64, RoundError> {
        let Some((_, coefficients)) = self.model.theta.split_last() else {
            return Ok(0.0);
        };
        let d = rows.design(job, &self.model.preprocessor)?;
        if d.x_train.ncols() != coefficients.len() || d.x_train.nrows() < 2 {
            return Ok(0.0);
        }
        let z = d.x_train.dot(&ndarray::ArrayView1::from(coefficients));
        let n = z.len() as f64;
        let mean = z.sum() / n;
        Ok((z.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt())
    }
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
                let local = federated::local_update_contribution(
                    d.x_train.view(),
                    &d.y_train,
                    theta,
                    &job.settings,
                    round,
                )?;
                let share = local.weight as f64 / total;
                Contribution {
                    weight: 1,
                    values: local
                        .values
                        .iter()
                        .zip(theta)
                        .map(|(l, g)| share * (l - g))
                        .collect(),
                }
            }
        };
        Ok(Part::whole(self, round, c))
    }

    /// Also when the model is only nearly flat on this institution's rows: the job's
    /// settings are the coordinator's (a tiny `C` or learning rate keeps every later model
    /// within a hair of flat), and at a small spread of scores `s` the intercept entries
    /// differ from the flat ones by about `s^2 / 16` per row, most of which the session's
    /// own Hessian lets the coordinator take back out. Below [`FLAT_SPREAD`] the update
    /// therefore counts as carrying the counts.
    fn constants(
        &self,
        job: &JobContext,
        rows: &mut dyn Rows,
    ) -> Result<Vec<Vec<u64>>, RoundError> {
        if self.starts_flat() || self.score_spread(job, rows)? < FLAT_SPREAD {
            split_constants(job, rows, RowsCounted::Train)
        } else {
            Ok(Vec::new())
        }
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

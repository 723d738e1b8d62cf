//! The [`JobPlan`]: which session comes next, what its output means, and whether a failed
//! session is tried again. The engine drives it (`next_session`, then `on_output` or
//! `on_failure`) and owns only sockets, clocks and the store.
//!
//! Sequencing: round 0 is the statistics round (magnitudes, then statistics); training round
//! 1 is an update session; each later training round is one session that carries its
//! update and the evaluation of the previous round's model (`update_eval`), and the last
//! round's model is evaluated in a session of its own. A failed `update_eval` session is
//! retried as the update alone (the previous model stays unevaluated). A failed session is
//! retried on its own (a completed session's output is kept, so its inputs are not asked
//! for again), with fresh keys, until the round has used `max_attempts`; a deterministic
//! failure ends the job at once.

use fedrisk_models::federated::FederatedEval;
use fedrisk_models::model_file::ModelEvaluation;
use fedrisk_models::{FeatureStats, ModelFile, PreprocessOptions, Preprocessor, Provenance};
use serde::{Deserialize, Serialize};

use crate::error::{Failure, RoundError};
use crate::kind::{Absorbed, SessionSum};
use crate::kinds::{BinCounts, Evaluation, Magnitudes, Statistics, Update, UpdateEval};
use crate::spec::{Binning, JobSpec};
use crate::task::{self, EncodedTask, GlobalModel, JobContext, Task, TaskParams};

/// What the plan keeps between rounds; durable in the store with each completed round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The federation's feature statistics (round 0).
    pub stats: FeatureStats,
    /// The frozen preprocessing.
    pub preprocessor: Preprocessor,
    /// The latest global parameters.
    pub theta: Vec<f64>,
    /// Who the statistics session's sum was over. Every evaluation sum carries the same row
    /// and default counts as the statistics sum (or counts of a part of the same rows), so
    /// evaluations invite exactly these participants, and agents refuse any other set
    /// (empty in checkpoints written before this rule: the agents' refusal still holds).
    #[serde(default)]
    pub constants_survivors: Vec<u32>,
    /// Set when a Newton job's step fell below the job's tolerance: the job is done.
    #[serde(default)]
    pub converged: Option<Convergence>,
}

/// A Newton job that stopped early (see [`JobSpec::tolerance`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Convergence {
    /// The round whose step fell below the tolerance (its model is the final one).
    pub round: u32,
    /// That round's Newton decrement per row: λ²/(2N), the decrease of the mean penalised
    /// training loss its step predicted.
    pub decrement: f64,
    /// The job's tolerance.
    pub tolerance: f64,
}

impl std::fmt::Display for Convergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "converged at round {}: its Newton step lowered the mean training loss by {:.2e}, below the tolerance {:.1e}",
            self.round, self.decrement, self.tolerance
        )
    }
}

/// The largest absolute change between two coefficient vectors (infinite when their
/// lengths differ, so that no change of shape reads as convergence).
pub fn step_size(before: &[f64], after: &[f64]) -> f64 {
    if before.len() != after.len() {
        return f64::INFINITY;
    }
    before
        .iter()
        .zip(after)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
}

/// A completed session's result inside a round that is not complete yet: kept durably so
/// that a coordinator restart does not ask the participants for the same inputs again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Partial {
    /// The round.
    pub round: u32,
    /// What the completed session gave.
    pub result: PartialResult,
    /// Bytes of the round's sessions so far.
    pub bytes: (u64, u64),
}

/// See [`Partial`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PartialResult {
    /// The magnitudes session's scales.
    Scales(Vec<f64>),
    /// The statistics session's result, when bin counts come next (`binning = "woe"`).
    Stats {
        /// The magnitudes session's scales (the grid of the bin counts).
        scales: Vec<f64>,
        /// The federation's statistics.
        stats: FeatureStats,
        /// Who the statistics sum was over.
        #[serde(default)]
        survivors: Vec<u32>,
    },
    /// The update session's parameters and how many it was over.
    Theta {
        /// The new parameters.
        theta: Vec<f64>,
        /// Participants in the update's sum.
        survivors: u32,
        /// The update's Newton decrement per row (Newton jobs).
        #[serde(default)]
        decrement: Option<f64>,
        /// The evaluation of the previous round's model, which came with the update.
        #[serde(default)]
        earlier_eval: Option<FederatedEval>,
    },
    /// The round's update is asked for alone: the evaluation that rode with it was
    /// dropped (the job's lineage says so, and agents expect the update alone).
    UpdateAlone,
}

/// Where the plan's models come from, for their provenance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanIds {
    /// The federation.
    pub federation_id: String,
    /// The job.
    pub job_id: u64,
}

/// One session the driver should run.
#[derive(Debug, Clone)]
pub struct SessionRequest {
    /// The round it belongs to (0: statistics).
    pub round: u32,
    /// The kind's label.
    pub label: &'static str,
    /// The task as it travels: its bytes (sent to every invited agent) and the job-wide
    /// contents they refer to (fetched once per job).
    pub task: EncodedTask,
    /// The session binding: hash of the task's bytes.
    pub binding: [u8; 32],
    /// Length of the aggregated vector.
    pub vector_len: usize,
    /// Clip bound of the fixed-point encoding.
    pub clip: f64,
    /// The job's first session waits for `expected_participants`.
    pub first_of_job: bool,
    /// The first session of an attempt of its round (the driver records a new attempt).
    pub new_attempt: bool,
    /// Invite exactly these participants and no others; the session fails when one of them
    /// is missing (evaluations: see [`Checkpoint::constants_survivors`]).
    pub only: Option<Vec<u32>>,
    /// The session cannot go on without `only`'s members (an update alone or the bin
    /// counts, which carry the training counts): the driver waits for them as long as for
    /// a job's start, and their absence is a failure to retry, not a reason to drop or skip
    /// anything.
    pub only_needed: bool,
    /// How many leading words of each input carry a commitment (slot 0 and the values
    /// later tasks derive from: [`crate::RoundKind::committed_len`]); 0 for none.
    pub commit_words: u32,
}

/// A round that completed: everything the store makes durable together.
#[derive(Debug, Clone)]
pub struct RoundOutcome {
    /// The round.
    pub round: u32,
    /// Participants the round's sum (update, or statistics) is over.
    pub survivors: u32,
    /// Bytes received over the round's sessions.
    pub bytes_up: u64,
    /// Bytes sent over the round's sessions.
    pub bytes_down: u64,
    /// Federated evaluation of the new model (training rounds).
    pub eval: Option<FederatedEval>,
    /// The new model version (training rounds).
    pub model: Option<ModelFile>,
    /// The state to resume from.
    pub checkpoint: Checkpoint,
    /// The largest absolute change of a coefficient this round (training rounds).
    pub step: Option<f64>,
    /// The round's Newton decrement per row (Newton training rounds; see [`Convergence`]).
    pub decrement: Option<f64>,
    /// The evaluation of an earlier round's model that came with this round's update:
    /// `(that round, its evaluation)`.
    pub earlier_eval: Option<(u32, FederatedEval)>,
}

/// What the plan did with a session's output.
#[derive(Debug)]
pub enum Progress {
    /// The round goes on with its next session.
    Continue,
    /// The round is complete.
    RoundCompleted(Box<RoundOutcome>),
    /// The output could not be used; the session is tried again.
    Retrying(Failure),
    /// The output could not be used; the session is tried again as the round's update
    /// alone (see [`AfterFailure::WithoutEvaluation`]).
    WithoutEvaluation(Failure),
}

/// What the plan does after a failed session.
#[derive(Debug)]
pub enum AfterFailure {
    /// The session is tried again.
    Retry,
    /// The round completed without its evaluation (which could not run over the
    /// statistics session's participants): the model stands, unevaluated this round.
    Skipped(Box<RoundOutcome>),
    /// The session is tried again as the round's update alone: the evaluation of the
    /// previous round's model that rode with it could not run over the statistics
    /// session's participants, and that model stays unevaluated.
    WithoutEvaluation,
}

/// The job cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("round {round} failed after {attempts} attempt(s): {reason}")]
pub struct PlanError {
    /// The round.
    pub round: u32,
    /// Attempts used.
    pub attempts: u32,
    /// The last failure.
    pub reason: String,
}

#[derive(Debug, Clone)]
enum Phase {
    Magnitudes,
    Statistics {
        scales: Vec<f64>,
    },
    BinCounts {
        scales: Vec<f64>,
        stats: FeatureStats,
        /// Who the statistics sum was over: the bin counts carry the same row and default
        /// counts, so they are asked of exactly these.
        survivors: Vec<u32>,
    },
    /// A training round's update; `evaluate`: with the evaluation of the model it starts
    /// from (the previous round's, still owed).
    Update {
        evaluate: bool,
    },
    /// The last training round's model, evaluated in a session of its own.
    Evaluation {
        theta: Vec<f64>,
    },
    Done,
}

/// The state machine of one job.
#[derive(Debug)]
pub struct JobPlan {
    spec: JobSpec,
    ids: PlanIds,
    job: JobContext,
    phase: Phase,
    round: u32,
    checkpoint: Option<Checkpoint>,
    attempts: u32,
    new_attempt: bool,
    first_of_job: bool,
    bytes: (u64, u64),
    update_survivors: u32,
    /// The Newton decrement per row of the training round in progress, once its update
    /// is summed.
    decrement: Option<f64>,
    /// The largest coefficient change of the training round in progress.
    step: Option<f64>,
    /// The evaluation of the previous round's model, once this round's update brought it.
    earlier_eval: Option<FederatedEval>,
}

impl JobPlan {
    /// A plan for `spec`, from the start or from a checkpoint of round `last_completed`, and
    /// the completed sessions of the round after it, if [`JobPlan::partial`] was kept.
    pub fn resume(
        spec: JobSpec,
        ids: PlanIds,
        resume: Option<(Checkpoint, u32)>,
        partial: Option<Partial>,
    ) -> Self {
        let mut plan = Self::new(spec, ids, resume);
        if let Some(p) = partial
            && p.round == plan.round
        {
            match (&plan.phase, p.result) {
                (Phase::Magnitudes, PartialResult::Scales(scales)) => {
                    plan.phase = Phase::Statistics { scales };
                    plan.bytes = p.bytes;
                    plan.first_of_job = false;
                }
                (
                    Phase::Magnitudes,
                    PartialResult::Stats {
                        scales,
                        stats,
                        survivors,
                    },
                ) => {
                    plan.phase = Phase::BinCounts {
                        scales,
                        stats,
                        survivors,
                    };
                    plan.bytes = p.bytes;
                    plan.first_of_job = false;
                }
                (
                    Phase::Update { .. },
                    PartialResult::Theta {
                        theta,
                        survivors,
                        decrement,
                        earlier_eval,
                    },
                ) => {
                    plan.phase = Phase::Evaluation { theta };
                    plan.update_survivors = survivors;
                    plan.decrement = decrement;
                    plan.earlier_eval = earlier_eval;
                    plan.bytes = p.bytes;
                }
                (Phase::Update { .. }, PartialResult::UpdateAlone) => {
                    plan.phase = Phase::Update { evaluate: false };
                    plan.bytes = p.bytes;
                }
                _ => {}
            }
        }
        plan
    }

    /// The completed sessions of the round in progress, to keep with the job.
    pub fn partial(&self) -> Option<Partial> {
        let result = match &self.phase {
            Phase::Statistics { scales } => PartialResult::Scales(scales.clone()),
            Phase::BinCounts {
                scales,
                stats,
                survivors,
            } => PartialResult::Stats {
                scales: scales.clone(),
                stats: stats.clone(),
                survivors: survivors.clone(),
            },
            Phase::Evaluation { theta } => PartialResult::Theta {
                theta: theta.clone(),
                survivors: self.update_survivors,
                decrement: self.decrement,
                earlier_eval: self.earlier_eval.clone(),
            },
            Phase::Update { evaluate: false } if self.round >= 2 => PartialResult::UpdateAlone,
            _ => return None,
        };
        Some(Partial {
            round: self.round,
            result,
            bytes: self.bytes,
        })
    }

    /// A plan for `spec`, from the start or from a checkpoint of round `last_completed`.
    pub fn new(spec: JobSpec, ids: PlanIds, resume: Option<(Checkpoint, u32)>) -> Self {
        let mut job = JobContext {
            schema: spec.schema.clone(),
            settings: spec.settings.clone(),
        };
        let (phase, round, checkpoint) = match resume {
            None => (Phase::Magnitudes, 0, None),
            Some((cp, last)) => {
                job.settings.total_rows = cp.stats.rows;
                // A completed training round before the last left its model's
                // evaluation to the next round's session.
                let phase = if last >= spec.rounds || cp.converged.is_some() {
                    Phase::Done
                } else {
                    Phase::Update {
                        evaluate: last >= 1,
                    }
                };
                (phase, last + 1, Some(cp))
            }
        };
        let first_of_job = checkpoint.is_none();
        Self {
            spec,
            ids,
            job,
            phase,
            round,
            checkpoint,
            attempts: 1,
            new_attempt: true,
            first_of_job,
            bytes: (0, 0),
            update_survivors: 0,
            decrement: None,
            step: None,
            earlier_eval: None,
        }
    }

    /// The round in progress (the last one once done).
    pub fn round(&self) -> u32 {
        self.round
    }

    /// Whether every round is complete.
    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    fn params(&self) -> Option<TaskParams> {
        let model = |theta: &[f64]| {
            self.checkpoint.as_ref().map(|cp| GlobalModel {
                preprocessor: cp.preprocessor.clone(),
                theta: theta.to_vec(),
            })
        };
        Some(match &self.phase {
            Phase::Magnitudes => TaskParams::Magnitudes(Magnitudes {}),
            Phase::Statistics { scales } => TaskParams::Statistics(Statistics {
                scales: scales.clone(),
            }),
            Phase::BinCounts { scales, .. } => TaskParams::BinCounts(BinCounts {
                scales: scales.clone(),
            }),
            Phase::Update { evaluate: false } => TaskParams::Update(Update {
                model: model(&self.checkpoint.as_ref()?.theta)?,
            }),
            Phase::Update { evaluate: true } => TaskParams::UpdateEval(UpdateEval {
                model: model(&self.checkpoint.as_ref()?.theta)?,
                bins: self.spec.settings.histogram_bins as u32,
            }),
            Phase::Evaluation { theta } => TaskParams::Evaluation(Evaluation {
                model: model(theta)?,
                bins: self.spec.settings.histogram_bins as u32,
            }),
            Phase::Done => return None,
        })
    }

    /// The next session to run; `None` once the job is complete.
    pub fn next_session(&mut self) -> Option<SessionRequest> {
        let params = self.params()?;
        let task = Task {
            job_id: self.ids.job_id,
            round: self.round,
            job: self.job.clone(),
            params,
        };
        let kind = task.params.kind();
        // Every update carries the training counts (see `Update::constants`): it is tied
        // to the statistics set like an evaluation, but nothing can be dropped to run
        // without it.
        let update_alone = matches!(self.phase, Phase::Update { evaluate: false });
        let only = match (&self.phase, &self.checkpoint) {
            (Phase::Evaluation { .. } | Phase::Update { .. }, Some(cp))
                if !cp.constants_survivors.is_empty() =>
            {
                Some(cp.constants_survivors.clone())
            }
            (Phase::BinCounts { survivors, .. }, _) if !survivors.is_empty() => {
                Some(survivors.clone())
            }
            _ => None,
        };
        let encoded = task.encode();
        let request = SessionRequest {
            round: self.round,
            label: kind.label(),
            binding: task::binding(&encoded.bytes),
            vector_len: kind.vector_len(&self.job),
            clip: kind.clip(),
            task: encoded,
            first_of_job: self.first_of_job,
            new_attempt: self.new_attempt,
            only_needed: (update_alone || matches!(self.phase, Phase::BinCounts { .. }))
                && only.is_some(),
            only,
            commit_words: kind
                .committed_len(&self.job)
                .map_or(0, |len| len as u32 + 1),
        };
        self.new_attempt = false;
        Some(request)
    }

    /// Counts a failed session: it is tried again, or (an evaluation that cannot complete)
    /// the round completes without it; `Err` when the job cannot go on.
    pub fn on_failure(&mut self, failure: Failure) -> Result<AfterFailure, PlanError> {
        let fail = |attempts| PlanError {
            round: self.round,
            attempts,
            reason: failure.reason().to_string(),
        };
        // The evaluation riding with an update is dropped rather than waited for: the
        // update runs alone (over the same set, which it waits for). That is not another
        // try of the same session (it happens once per round), so it spends none of the
        // round's attempts: a job allowed one attempt still runs the update.
        if matches!(self.phase, Phase::Update { evaluate: true }) {
            self.phase = Phase::Update { evaluate: false };
            self.new_attempt = true;
            return Ok(AfterFailure::WithoutEvaluation);
        }
        let last =
            matches!(failure, Failure::Deterministic(_)) || self.attempts >= self.spec.max_attempts;
        if !last {
            self.attempts += 1;
            self.new_attempt = true;
            return Ok(AfterFailure::Retry);
        }
        // An evaluation is information about a model, not part of it: one that cannot run
        // over the participants its counts were summed over is skipped, never run over
        // others.
        if let Phase::Evaluation { theta } = &self.phase {
            let Some(prev) = self.checkpoint.clone() else {
                return Err(fail(self.attempts));
            };
            let cp = self.next_checkpoint(prev, theta.clone());
            let model = self
                .model_file(&cp)
                .map_err(|e| self.internal(&e.to_string()))?;
            self.checkpoint = Some(cp.clone());
            let survivors = self.update_survivors;
            return Ok(AfterFailure::Skipped(Box::new(self.complete(
                survivors,
                None,
                Some(model),
                cp,
            ))));
        }
        Err(fail(self.attempts))
    }

    /// Absorbs the decoded sum of the session `next_session` last returned.
    pub fn on_output(&mut self, sum: SessionSum) -> Result<Progress, PlanError> {
        let Some(params) = self.params() else {
            return Ok(Progress::Continue);
        };
        let absorbed = match params.kind().absorb(&self.job, &sum) {
            Ok(a) => a,
            Err(e) => {
                // The sum is unmasked already: asking the same inputs again would give the
                // coordinator a second sum of them (over another set, unless every ledger
                // stops it). A sum that does not absorb ends the attempt for good: the job
                // fails, or an evaluation is skipped, or an update that rode with one is
                // asked for alone over the same set (the same sum of the update again).
                let failure = Failure::Deterministic(format!(
                    "the sum does not absorb: {}",
                    Failure::from(e).reason()
                ));
                return Ok(match self.on_failure(failure.clone())? {
                    AfterFailure::Retry => Progress::Retrying(failure),
                    AfterFailure::WithoutEvaluation => Progress::WithoutEvaluation(failure),
                    AfterFailure::Skipped(o) => Progress::RoundCompleted(o),
                });
            }
        };
        self.first_of_job = false;
        self.bytes.0 += sum.bytes_up;
        self.bytes.1 += sum.bytes_down;
        match (std::mem::replace(&mut self.phase, Phase::Done), absorbed) {
            (Phase::Magnitudes, Absorbed::Scales(scales)) => {
                self.phase = Phase::Statistics { scales };
                Ok(Progress::Continue)
            }
            (Phase::Statistics { scales }, Absorbed::Stats(stats))
                if self.spec.binning == Binning::Woe =>
            {
                self.phase = Phase::BinCounts {
                    scales,
                    stats,
                    survivors: sum.survivors.clone(),
                };
                Ok(Progress::Continue)
            }
            (
                Phase::BinCounts {
                    scales,
                    stats,
                    survivors: constants_survivors,
                },
                Absorbed::BinCounts(counts),
            ) => {
                let grid = fedrisk_models::binning::CountGrid::new(&self.spec.schema, &scales)
                    .map_err(|e| self.internal(&e.to_string()))?;
                // A binning that cannot be fitted from these counts (one class, no feature
                // above the IV floor) would fail the same way again: the job ends.
                let woe =
                    fedrisk_models::WoeBinning::fit(&grid, &counts, &self.spec.binning_options)
                        .map_err(|e| self.internal(&format!("binning: {e}")))?;
                let preprocessor = self.fit_preprocessor(&stats).with_woe(woe);
                Ok(Progress::RoundCompleted(Box::new(
                    self.complete_statistics(stats, preprocessor, constants_survivors),
                )))
            }
            (Phase::Statistics { .. }, Absorbed::Stats(stats)) => {
                let preprocessor = self.fit_preprocessor(&stats);
                Ok(Progress::RoundCompleted(Box::new(
                    self.complete_statistics(stats, preprocessor, sum.survivors.clone()),
                )))
            }
            (Phase::Update { evaluate: false }, Absorbed::Theta(theta)) => {
                self.after_update(&sum, theta, None)
            }
            (Phase::Update { evaluate: true }, Absorbed::UpdateEval { theta, eval }) => {
                self.after_update(&sum, theta, eval)
            }
            (Phase::Evaluation { theta }, Absorbed::Eval(eval)) => {
                let Some(prev) = self.checkpoint.clone() else {
                    return Err(self.internal("evaluation without a checkpoint"));
                };
                let cp = self.next_checkpoint(prev, theta);
                let model = self
                    .model_file(&cp)
                    .map_err(|e| self.internal(&e.to_string()))?
                    .with_evaluation(ModelEvaluation::of(&eval, self.round));
                self.checkpoint = Some(cp.clone());
                let survivors = self.update_survivors;
                Ok(Progress::RoundCompleted(Box::new(self.complete(
                    survivors,
                    Some(eval),
                    Some(model),
                    cp,
                ))))
            }
            _ => Err(self.internal("a session's output does not fit the plan's phase")),
        }
    }

    /// A training round's update is summed (with `earlier`, the evaluation of the model it
    /// started from, when one came with it). The last round's model is evaluated in a
    /// session of its own; any other round completes now, and its model's evaluation
    /// rides with the next round's update.
    fn after_update(
        &mut self,
        sum: &SessionSum,
        theta: Vec<f64>,
        earlier: Option<FederatedEval>,
    ) -> Result<Progress, PlanError> {
        self.decrement = self.newton_decrement(sum, &theta);
        self.update_survivors = sum.survivors.len() as u32;
        // Only the figures travel on: the histogram belongs to that model's own file.
        self.earlier_eval = earlier.map(|e| FederatedEval {
            histogram: None,
            ..e
        });
        let converges = self
            .decrement
            .is_some_and(|d| self.spec.tolerance > 0.0 && d < self.spec.tolerance);
        if self.round >= self.spec.rounds || converges {
            self.phase = Phase::Evaluation { theta };
            return Ok(Progress::Continue);
        }
        let Some(prev) = self.checkpoint.clone() else {
            return Err(self.internal("an update without a checkpoint"));
        };
        let cp = self.next_checkpoint(prev, theta);
        let model = self
            .model_file(&cp)
            .map_err(|e| self.internal(&e.to_string()))?;
        self.checkpoint = Some(cp.clone());
        let survivors = self.update_survivors;
        Ok(Progress::RoundCompleted(Box::new(self.complete(
            survivors,
            None,
            Some(model),
            cp,
        ))))
    }

    /// Round 0 is complete. `constants_survivors`: who the statistics sum was over (see
    /// [`Checkpoint::constants_survivors`]).
    fn complete_statistics(
        &mut self,
        stats: FeatureStats,
        preprocessor: Preprocessor,
        constants_survivors: Vec<u32>,
    ) -> RoundOutcome {
        self.job.settings.total_rows = stats.rows;
        let survivors = constants_survivors.len() as u32;
        let cp = Checkpoint {
            theta: vec![0.0; preprocessor.width() + 1],
            stats,
            preprocessor,
            constants_survivors,
            converged: None,
        };
        self.checkpoint = Some(cp.clone());
        self.complete(survivors, None, None, cp)
    }

    /// The checkpoint after a training round that moved the coefficients from `prev`'s to
    /// `theta`, marked converged when the job has a tolerance and the round's Newton
    /// decrement is below it (only Newton rounds have one).
    fn next_checkpoint(&mut self, prev: Checkpoint, theta: Vec<f64>) -> Checkpoint {
        self.step = Some(step_size(&prev.theta, &theta));
        let tolerance = self.spec.tolerance;
        let converged = self
            .decrement
            .filter(|d| tolerance > 0.0 && *d < tolerance)
            .map(|decrement| Convergence {
                round: self.round,
                decrement,
                tolerance,
            });
        Checkpoint {
            theta,
            converged,
            ..prev
        }
    }

    /// λ²/(2N) of a Newton update's sum (N: the federation's rows), from the coefficients
    /// before it and the step taken; `None` for other algorithms.
    fn newton_decrement(&self, sum: &SessionSum, next: &[f64]) -> Option<f64> {
        if self.spec.settings.algorithm != fedrisk_models::federated::Algorithm::Newton {
            return None;
        }
        let prev = &self.checkpoint.as_ref()?.theta;
        // An update's sum may carry an evaluation after its Newton terms.
        let terms = sum
            .sums
            .get(..fedrisk_models::federated::newton_len(prev.len()))?;
        let c = fedrisk_models::federated::newton_from_sum(terms, prev.len()).ok()?;
        let rows = self.job.settings.total_rows;
        let d = fedrisk_models::logistic::newton_decrement(
            prev,
            next,
            &c.grad,
            &fedrisk_models::logistic::Penalty::sklearn(self.spec.settings.c),
        ) / (2.0 * rows);
        (rows > 0.0 && d.is_finite()).then_some(d)
    }

    /// Whether the job stopped early, and where.
    pub fn converged(&self) -> Option<Convergence> {
        self.checkpoint.as_ref().and_then(|c| c.converged)
    }

    /// The job's preprocessing from the federation's statistics.
    fn fit_preprocessor(&self, stats: &FeatureStats) -> Preprocessor {
        Preprocessor::fit(
            &self.spec.schema,
            stats,
            PreprocessOptions {
                missing_indicators: self.spec.settings.missing_indicators,
            },
        )
    }

    fn internal(&self, what: &str) -> PlanError {
        PlanError {
            round: self.round,
            attempts: self.attempts,
            reason: what.to_string(),
        }
    }

    fn complete(
        &mut self,
        survivors: u32,
        eval: Option<FederatedEval>,
        model: Option<ModelFile>,
        checkpoint: Checkpoint,
    ) -> RoundOutcome {
        let step = self.step.take();
        let decrement = self.decrement.take();
        let earlier_eval = self
            .earlier_eval
            .take()
            .map(|e| (self.round.saturating_sub(1), e));
        let done = checkpoint.converged.is_some();
        let outcome = RoundOutcome {
            round: self.round,
            survivors,
            bytes_up: self.bytes.0,
            bytes_down: self.bytes.1,
            eval,
            model,
            checkpoint,
            step,
            decrement,
            earlier_eval,
        };
        self.bytes = (0, 0);
        self.attempts = 1;
        self.new_attempt = true;
        if self.round >= self.spec.rounds || done {
            self.phase = Phase::Done;
        } else {
            self.round += 1;
            // Round 1 starts from zeros: nothing worth evaluating.
            self.phase = Phase::Update {
                evaluate: self.round >= 2,
            };
        }
        outcome
    }

    fn model_file(&self, cp: &Checkpoint) -> Result<ModelFile, RoundError> {
        Ok(ModelFile::new(
            self.spec.schema.clone(),
            cp.preprocessor.clone(),
            &cp.theta,
            Provenance {
                trainer: format!("federated-{}", self.spec.settings.algorithm),
                rounds: self.round,
                participants: self.update_survivors,
                schema_hash: self.spec.schema.hash(),
                l2_c: Some(self.spec.settings.c),
                notes: vec![
                    format!("federation {}", self.ids.federation_id),
                    format!("job {}", self.ids.job_id),
                ],
                created_at_unix_ms: None,
                software: None,
                settings: None,
                audit_record: None,
            },
        )?)
    }
}

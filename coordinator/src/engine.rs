//! The round engine: a thin driver of a job's [`JobPlan`] and of one secagg
//! [`CoordinatorSession`] at a time. It owns what the plan must not: the connected
//! participants, deadlines, randomness for session nonces, and the store. The plan decides
//! which session comes next, what its output means and whether a failure is retried.
//!
//! Invariant: the engine only ever sees decoded *sums*; it holds no model arithmetic (in
//! `fedrisk-models`, reached through `fedrisk-rounds`) and no protocol logic (in
//! `fedrisk-secagg`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use fedrisk_proto::v1::{self, task};
use fedrisk_rounds::{
    AfterFailure, Checkpoint, Failure, JobPlan, JobSpec, LineageEntry, Partial, PlanError, PlanIds,
    Progress, RoundOutcome, SessionRecord, SessionRequest, SessionSum, decode_output,
    session_binding, session_params,
};
use fedrisk_secagg::{CoordinatorSession, Message, SessionConfig, Step};
use rand::RngExt;
use tokio::sync::watch;

use crate::events::{Event, EventSink};
use crate::faults;
use crate::hub::{Hub, Peer, Upload};
use crate::store::{
    JobId, JobState, NewModel, Refusal as StoredRefusal, RoundCompletion, RoundKind, RoundMetrics,
    Store,
};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    RoundFailed(#[from] PlanError),
    #[error("cancelled")]
    Cancelled,
    #[error("invalid job: {0}")]
    Invalid(#[from] fedrisk_rounds::SpecError),
    #[error("stored checkpoint of job {job} is unreadable: {reason}")]
    Checkpoint { job: JobId, reason: String },
}

/// Why one session ended without a sum.
#[derive(Debug)]
enum SessionError {
    Failed(Failure),
    Cancelled,
    Store(crate::store::StoreError),
}

impl From<crate::store::StoreError> for SessionError {
    fn from(e: crate::store::StoreError) -> Self {
        SessionError::Store(e)
    }
}

/// The store key of the round in progress's completed sessions (see `rounds::Partial`).
const PARTIAL: &str = "partial";

pub struct Engine {
    pub hub: Arc<Hub>,
    pub store: Arc<Store>,
    pub federation_id: String,
    pub events: Arc<dyn EventSink>,
    /// The CA-signed revocation list relayed to agents with every session (PEM file).
    pub crl: Option<std::path::PathBuf>,
    /// Signs each model version's content hash (the coordinator's key).
    pub signer: Option<Arc<fedrisk_identity::signer::Signer>>,
    /// The live view of the session in flight (stage progress), for status.
    pub live: Arc<crate::live::Live>,
}

/// The attempt of a round in flight, as the store knows it.
struct Attempt {
    round: u32,
    id: Vec<u8>,
    started: Instant,
}

impl Engine {
    /// Runs (or resumes) a job to its end, recording its final state.
    pub async fn run_job(
        &self,
        job_id: JobId,
        spec: &JobSpec,
        cancel: watch::Receiver<bool>,
    ) -> Result<(), EngineError> {
        spec.validate()?;
        self.store
            .set_job_state(job_id, JobState::Running, "running")?;
        let result = self.run_plan(job_id, spec, &cancel).await;
        self.hub.set_activity(String::new());
        let (state, message, finished) = match &result {
            Ok(None) => (
                JobState::Completed,
                format!("{} rounds completed", spec.rounds),
                v1::JobState::Completed,
            ),
            Ok(Some(c)) => (
                JobState::Completed,
                converged_message(c, spec.rounds),
                v1::JobState::Completed,
            ),
            Err(EngineError::Cancelled) => (
                JobState::Cancelled,
                "cancelled by operator".to_string(),
                v1::JobState::Cancelled,
            ),
            Err(e) => (JobState::Failed, e.to_string(), v1::JobState::Failed),
        };
        self.store.set_job_state(job_id, state, &message)?;
        for peer in self.hub.connected() {
            self.hub.send(
                peer.id,
                job_id,
                0,
                &[],
                task::Kind::Finished(v1::JobFinished {
                    state: finished as i32,
                    message: message.clone(),
                }),
            );
        }
        self.events.emit(&Event::JobEnded {
            job: job_id,
            state: state.to_string(),
            message,
        });
        result.map(|_| ())
    }

    fn resume_point(&self, job_id: JobId) -> Result<Option<(Checkpoint, u32)>, EngineError> {
        let stored = self.store.checkpoint(job_id, "state")?;
        let last = self.store.last_completed_round(job_id)?;
        match (stored, last) {
            (Some(blob), Some(round)) => {
                let cp = serde_json::from_slice(&blob).map_err(|e| EngineError::Checkpoint {
                    job: job_id,
                    reason: e.to_string(),
                })?;
                Ok(Some((cp, round)))
            }
            _ => Ok(None),
        }
    }

    async fn run_plan(
        &self,
        job_id: JobId,
        spec: &JobSpec,
        cancel: &watch::Receiver<bool>,
    ) -> Result<Option<fedrisk_rounds::Convergence>, EngineError> {
        let ids = PlanIds {
            federation_id: self.federation_id.clone(),
            job_id,
        };
        let resume = self.resume_point(job_id)?;
        let resumed = resume.is_some();
        let partial = self
            .store
            .checkpoint(job_id, PARTIAL)?
            .and_then(|blob| serde_json::from_slice::<Partial>(&blob).ok());
        let mut plan = JobPlan::resume(spec.clone(), ids, resume, partial);
        self.hub.clear_contents();
        let mut lineage =
            crate::lineage::JobLineage::load(&self.store, &self.hub, job_id, &spec.to_json())?;
        self.events.emit(&Event::JobStarted {
            job: job_id,
            round: plan.round(),
            resumed,
        });
        let mut attempt: Option<Attempt> = None;
        let mut evaluation_set_missing = false;
        while let Some(req) = plan.next_session() {
            if *cancel.borrow() {
                return Err(EngineError::Cancelled);
            }
            if req.new_attempt || attempt.is_none() {
                let kind = if req.round == 0 {
                    RoundKind::Stats
                } else {
                    RoundKind::Train
                };
                let id: [u8; 32] = rand::rng().random();
                self.store.start_round(job_id, req.round, kind, &id)?;
                let started = match &attempt {
                    Some(a) if a.round == req.round => a.started,
                    _ => Instant::now(),
                };
                attempt = Some(Attempt {
                    round: req.round,
                    id: id.to_vec(),
                    started,
                });
            }
            let Some(current) = attempt.as_ref() else {
                continue;
            };
            // After one evaluation was skipped for a missing member, the next ones do not
            // wait for it again: they run at once if the set is back, or are skipped.
            let patience = if req.only.is_some() && !req.only_needed && evaluation_set_missing {
                Some(0)
            } else {
                None
            };
            let crafted = crate::faults::craft_model(&req, job_id);
            let sent = crafted.as_ref().unwrap_or(&req);
            let outcome = self
                .run_session(job_id, spec, sent, &lineage, patience, cancel.clone())
                .await;
            self.record_refusals(job_id)?;
            let failure = match outcome {
                Ok((sum, entry, certificates)) => {
                    self.events.emit(&Event::SessionCompleted {
                        job: job_id,
                        round: req.round,
                        kind: req.label,
                        survivors: sum.survivors.clone(),
                        aggregate_hash: crate::audit::aggregate_hash(&sum),
                        bytes_up: sum.bytes_up,
                        bytes_down: sum.bytes_down,
                    });
                    match plan.on_output(sum) {
                        Ok(Progress::Continue) => {
                            // The session's result is kept, so that a restart resumes after
                            // it instead of asking the participants for it again; its
                            // lineage entry becomes durable with it.
                            lineage.push(&self.hub, &entry, &certificates);
                            self.keep_progress(job_id, &plan, &mut lineage)?;
                            continue;
                        }
                        Ok(Progress::RoundCompleted(o)) => {
                            // An evaluation ran (the round's own, or the previous
                            // model's beside this update): the set is back.
                            if o.eval.is_some() || o.earlier_eval.is_some() {
                                evaluation_set_missing = false;
                            }
                            lineage.push(&self.hub, &entry, &certificates);
                            self.finish_round(job_id, spec, current, &o, lineage.take_pending())?;
                            continue;
                        }
                        Ok(Progress::Retrying(f)) => {
                            self.note_failure(job_id, &req, current, f.reason(), true)?;
                            continue;
                        }
                        Ok(Progress::WithoutEvaluation(f)) => {
                            self.drop_evaluation(
                                job_id,
                                &req,
                                current,
                                f.reason(),
                                (&plan, &mut lineage),
                            )?;
                            continue;
                        }
                        Err(e) => {
                            self.note_failure(job_id, &req, current, &e.reason, false)?;
                            return Err(e.into());
                        }
                    }
                }
                Err(SessionError::Cancelled) => return Err(EngineError::Cancelled),
                Err(SessionError::Store(e)) => return Err(e.into()),
                Err(SessionError::Failed(f)) => f,
            };
            let reason = failure.reason().to_string();
            match plan.on_failure(failure) {
                Ok(AfterFailure::Retry) => {
                    self.note_failure(job_id, &req, current, &reason, true)?
                }
                Ok(AfterFailure::WithoutEvaluation) => {
                    evaluation_set_missing = true;
                    self.drop_evaluation(job_id, &req, current, &reason, (&plan, &mut lineage))?;
                }
                Ok(AfterFailure::Skipped(o)) => {
                    evaluation_set_missing = true;
                    self.push_skipped(&req, &mut lineage);
                    self.events.emit(&Event::EvaluationSkipped {
                        job: job_id,
                        round: req.round,
                        reason: reason.clone(),
                    });
                    self.finish_round(job_id, spec, current, &o, lineage.take_pending())?;
                }
                Err(e) => {
                    self.note_failure(job_id, &req, current, &reason, false)?;
                    return Err(e.into());
                }
            }
        }
        Ok(plan.converged())
    }

    /// The lineage records that `req`'s evaluation did not run (agents' replicas skip it too).
    fn push_skipped(&self, req: &SessionRequest, lineage: &mut crate::lineage::JobLineage) {
        lineage.push(
            &self.hub,
            &LineageEntry::SkippedEvaluation {
                round: req.round,
                binding: hex::encode(req.binding),
            },
            &[],
        );
    }

    /// Makes the round's progress so far durable (its pending lineage entries and the
    /// plan's completed sessions), so that a restart resumes after it instead of asking
    /// the participants again.
    fn keep_progress(
        &self,
        job_id: JobId,
        plan: &JobPlan,
        lineage: &mut crate::lineage::JobLineage,
    ) -> Result<(), EngineError> {
        let mut blobs = lineage.take_pending();
        if let Some(p) = plan.partial() {
            let blob = serde_json::to_vec(&p).map_err(|e| EngineError::Checkpoint {
                job: job_id,
                reason: e.to_string(),
            })?;
            blobs.push((PARTIAL.into(), blob));
        }
        self.store.put_checkpoints(job_id, &blobs)?;
        Ok(())
    }

    /// An `update_eval` session failed and the plan asks for the round's update alone:
    /// the lineage says so (agents' replicas take the same turn), durably before the next
    /// task, and the previous round's model stays unevaluated.
    fn drop_evaluation(
        &self,
        job_id: JobId,
        req: &SessionRequest,
        attempt: &Attempt,
        reason: &str,
        (plan, lineage): (&JobPlan, &mut crate::lineage::JobLineage),
    ) -> Result<(), EngineError> {
        self.push_skipped(req, lineage);
        self.keep_progress(job_id, plan, lineage)?;
        self.events.emit(&Event::EvaluationSkipped {
            job: job_id,
            round: req.round.saturating_sub(1),
            reason: reason.to_string(),
        });
        self.note_failure(job_id, req, attempt, reason, true)
    }

    fn note_failure(
        &self,
        job_id: JobId,
        req: &SessionRequest,
        attempt: &Attempt,
        reason: &str,
        retrying: bool,
    ) -> Result<(), EngineError> {
        self.events.emit(&Event::AttemptFailed {
            job: job_id,
            round: req.round,
            kind: req.label,
            reason: reason.to_string(),
            retrying,
        });
        let message = format!("{} session: {reason}", req.label);
        if retrying {
            self.store
                .abort_round(job_id, req.round, &attempt.id, &message)?;
        } else {
            self.store
                .fail_round(job_id, req.round, &attempt.id, &message)?;
        }
        Ok(())
    }

    /// Provenance the plan cannot know (creation time, software, the job's settings), then
    /// the coordinator's signature of the content hash.
    fn stamp_and_sign(
        &self,
        mut m: fedrisk_models::ModelFile,
        spec: &JobSpec,
    ) -> Result<fedrisk_models::ModelFile, String> {
        let now = crate::now_ms();
        let settings = serde_json::to_value(&spec.settings).map_err(|e| e.to_string())?;
        m.stamp(now, Some(settings));
        if let Some(signer) = &self.signer {
            let hash = hex::decode(&m.content_hash).map_err(|e| e.to_string())?;
            let value = signer.sign(&hash).map_err(|e| e.to_string())?;
            m.signature = Some(fedrisk_models::ModelSignature {
                algorithm: "ecdsa-p256-sha256".into(),
                public_key: hex::encode(signer.public_key()),
                value: hex::encode(value),
            });
        }
        Ok(m)
    }

    /// Provenance from the store, before the model is stamped and signed: the audit record of
    /// the session whose sum made this version, and the evaluation figures of the job's
    /// earlier training rounds next to this one's (`earlier`: the figures of an earlier
    /// round that came with this round, not stored yet).
    fn with_records(
        &self,
        job_id: JobId,
        round: u32,
        mut m: fedrisk_models::ModelFile,
        earlier_now: Option<&crate::store::EarlierEvaluation>,
    ) -> Result<fedrisk_models::ModelFile, EngineError> {
        const KIND: &str = "session_completed";
        m.provenance.audit_record =
            self.store
                .last_audit_of(KIND, job_id, round)?
                .map(|(seq, hash)| fedrisk_models::model_file::AuditRecordRef {
                    seq,
                    hash,
                    kind: KIND.into(),
                });
        if let Some(e) = m.evaluation.as_mut() {
            let mut earlier: Vec<_> = self
                .store
                .rounds(job_id)?
                .into_iter()
                .filter(|r| {
                    r.round > 0 && r.round < round && r.state == crate::store::RoundState::Completed
                })
                .map(|r| match earlier_now.filter(|e| e.round == r.round) {
                    Some(e) => fedrisk_models::model_file::RoundFigures {
                        round: r.round,
                        auc: e.auc,
                        ks: e.ks,
                        log_loss: e.log_loss,
                    },
                    None => fedrisk_models::model_file::RoundFigures {
                        round: r.round,
                        auc: r.metrics.auc,
                        ks: r.metrics.ks,
                        log_loss: r.metrics.log_loss,
                    },
                })
                .collect();
            earlier.dedup_by_key(|f| f.round);
            earlier.append(&mut e.by_round);
            e.by_round = earlier;
        }
        Ok(m)
    }

    fn finish_round(
        &self,
        job_id: JobId,
        spec: &JobSpec,
        attempt: &Attempt,
        o: &RoundOutcome,
        lineage: Vec<(String, Vec<u8>)>,
    ) -> Result<(), EngineError> {
        let seconds = attempt.started.elapsed().as_secs_f64();
        let finite = |v: f64| v.is_finite().then_some(v);
        let metrics = RoundMetrics {
            survivors: Some(o.survivors),
            bytes_up: o.bytes_up,
            bytes_down: o.bytes_down,
            seconds: Some(seconds),
            auc: o.eval.as_ref().and_then(|e| finite(e.auc)),
            ks: o.eval.as_ref().and_then(|e| finite(e.ks)),
            log_loss: o.eval.as_ref().and_then(|e| finite(e.log_loss)),
        };
        let blob = serde_json::to_vec(&o.checkpoint).map_err(|e| EngineError::Checkpoint {
            job: job_id,
            reason: e.to_string(),
        })?;
        let earlier = o
            .earlier_eval
            .as_ref()
            .map(|(round, e)| crate::store::EarlierEvaluation {
                round: *round,
                auc: finite(e.auc),
                ks: finite(e.ks),
                log_loss: finite(e.log_loss),
            });
        let model = match &o.model {
            Some(m) => {
                let m = self.with_records(job_id, o.round, m.clone(), earlier.as_ref())?;
                let m = self
                    .stamp_and_sign(m, spec)
                    .map_err(|reason| EngineError::Checkpoint {
                        job: job_id,
                        reason,
                    })?;
                Some(NewModel {
                    content_hash: m.content_hash.clone(),
                    model_json: serde_json::to_string_pretty(&m).map_err(|e| {
                        EngineError::Checkpoint {
                            job: job_id,
                            reason: e.to_string(),
                        }
                    })?,
                })
            }
            None => None,
        };
        self.store.complete_round(
            job_id,
            o.round,
            &attempt.id,
            &RoundCompletion {
                metrics: metrics.clone(),
                model: model.clone(),
                checkpoint: [("state".into(), blob), (PARTIAL.into(), b"null".to_vec())]
                    .into_iter()
                    .chain(lineage)
                    .collect(),
                earlier: earlier.clone(),
            },
        )?;
        if let Some(m) = model {
            self.events.emit(&Event::ModelVersion {
                job: job_id,
                round: o.round,
                content_hash: m.content_hash,
            });
        }
        self.events.emit(&Event::RoundCompleted {
            job: job_id,
            round: o.round,
            survivors: o.survivors,
            auc: metrics.auc,
            seconds,
        });
        if let Some(c) = o.checkpoint.converged.filter(|c| c.round == o.round) {
            self.events.emit(&Event::Converged {
                job: job_id,
                round: c.round,
                decrement: c.decrement,
                tolerance: c.tolerance,
                rounds_not_run: spec.rounds.saturating_sub(c.round),
            });
        }
        Ok(())
    }

    /// The revocation list as it is on disk now (re-read per session: `certs revoke`
    /// replaces it while the coordinator runs); empty if there is none.
    fn crl_der(&self) -> Vec<u8> {
        use rustls_pki_types::CertificateRevocationListDer;
        use rustls_pki_types::pem::PemObject;
        self.crl
            .as_ref()
            .and_then(|p| CertificateRevocationListDer::from_pem_file(p).ok())
            .map(|d| d.to_vec())
            .unwrap_or_default()
    }

    /// Stores and reports the refusals participants sent since the last call.
    fn record_refusals(&self, job_id: JobId) -> Result<(), EngineError> {
        for r in self.hub.take_refusals() {
            if r.job_id != job_id {
                continue;
            }
            self.store.record_refusal(&StoredRefusal {
                job_id,
                participant_id: r.participant,
                round: r.round,
                kind: r.kind.as_str().to_string(),
                reason: r.reason.clone(),
            })?;
            self.events.emit(&Event::Refused {
                job: job_id,
                round: r.round,
                participant: r.participant,
                name: r.name,
                kind: r.kind.as_str().to_string(),
                reason: r.reason,
            });
        }
        Ok(())
    }

    /// Waits until enough participants that have not refused the job are connected.
    async fn wait_for_participants(
        &self,
        job_id: JobId,
        spec: &JobSpec,
        req: &SessionRequest,
        patience: Option<u64>,
        cancel: &mut watch::Receiver<bool>,
    ) -> Result<Vec<Peer>, SessionError> {
        // An evaluation waits for its set's members as long as a stage would (an agent
        // restarting comes back well within it), not as long as a job's start does: each
        // round's evaluation would wait again for a member that left for good.
        // A session that cannot go on without its set (an update, the bin counts) waits
        // for it as a job's start does.
        let wait = match (&req.only, patience) {
            (_, Some(ms)) => ms,
            (Some(_), None) if !req.only_needed => {
                spec.wait_for_participants_ms.min(spec.stage_deadline_ms)
            }
            (_, None) => spec.wait_for_participants_ms,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_millis(wait);
        let want = match &req.only {
            Some(only) => only.len(),
            None => spec.participants_wanted(req.first_of_job) as usize,
        };
        let available = |hub: &Hub| {
            let mut peers = hub.available(job_id);
            if let Some(only) = &req.only {
                peers.retain(|p| only.contains(&p.id));
            }
            peers
        };
        let mut changes = self.hub.changes();
        loop {
            changes.borrow_and_update();
            self.record_refusals(job_id).map_err(|e| match e {
                EngineError::Store(s) => SessionError::Store(s),
                other => SessionError::Failed(Failure::Transient(other.to_string())),
            })?;
            let peers = available(&self.hub);
            if peers.len() >= want {
                return Ok(peers);
            }
            let status = self.waiting_for(job_id, &peers, want);
            self.hub
                .set_activity(format!("round {}: {status}", req.round));
            tokio::select! {
                _ = changes.changed() => {}
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
                () = tokio::time::sleep_until(deadline) => {
                    let peers = available(&self.hub);
                    if let Some(only) = &req.only {
                        let known = self.store.participants().unwrap_or_default();
                        let missing: Vec<String> = only
                            .iter()
                            .filter(|id| !peers.iter().any(|p| p.id == **id))
                            .map(|id| {
                                known
                                    .iter()
                                    .find(|p| p.id == *id)
                                    .map_or_else(|| format!("participant {id}"), |p| p.name.clone())
                            })
                            .collect();
                        let missing = if missing.len() == 1 {
                            format!("{} is", missing[0])
                        } else {
                            format!("{} are", missing.join(", "))
                        };
                        // Such a session is tried again (its set may come back); an
                        // evaluation is dropped or skipped instead.
                        return Err(SessionError::Failed(if req.only_needed {
                            Failure::Transient(format!(
                                "round {}'s {} session carries the training row and default counts, so it runs over the statistics session's participants only, and {missing} not available",
                                req.round, req.label
                            ))
                        } else {
                            Failure::Deterministic(format!(
                                "an evaluation runs over the statistics session's participants only, and {missing} not available"
                            ))
                        }));
                    }
                    if peers.len() >= spec.min_participants as usize {
                        return Ok(peers);
                    }
                    let status = self.waiting_for(job_id, &peers, spec.min_participants as usize);
                    return Err(SessionError::Failed(Failure::Transient(status)));
                }
                _ = cancel.changed() => if *cancel.borrow() { return Err(SessionError::Cancelled) },
            }
        }
    }

    /// "only 2 of the 3 participants needed are connected (bank_c refused: ...)".
    fn waiting_for(&self, job_id: JobId, peers: &[Peer], want: usize) -> String {
        let mut text = format!(
            "only {} of the {want} participants needed are connected",
            peers.len()
        );
        if let Ok(refusals) = self.store.latest_refusals(job_id) {
            let connected: Vec<u32> = self.hub.connected().iter().map(|p| p.id).collect();
            let notes: Vec<String> = refusals
                .iter()
                .filter(|r| {
                    connected.contains(&r.participant_id)
                        && !peers.iter().any(|p| p.id == r.participant_id)
                })
                .map(|r| format!("participant {} refused: {}", r.participant_id, r.reason))
                .collect();
            if !notes.is_empty() {
                text.push_str(&format!(" ({})", notes.join("; ")));
            }
        }
        text
    }

    /// Why invited participants refused the session, for the failure the operator reads
    /// ("; 5 refused, e.g. participant 2: ..."), or nothing if none did.
    fn refusal_note(&self, job_id: JobId, sid: &[u8]) -> String {
        let refused = self.hub.refused_in_session(sid);
        if refused.is_empty() {
            return String::new();
        }
        if let Err(e) = self.record_refusals(job_id) {
            tracing::warn!(job = job_id, error = %e, "could not record refusals");
        }
        let first = self.store.latest_refusals(job_id).ok().and_then(|rs| {
            rs.into_iter()
                .find(|r| refused.contains(&r.participant_id))
                .map(|r| format!(", e.g. participant {}: {}", r.participant_id, r.reason))
        });
        format!("; {} refused{}", refused.len(), first.unwrap_or_default())
    }

    /// Runs one secagg session among the available participants.
    async fn run_session(
        &self,
        job_id: JobId,
        spec: &JobSpec,
        req: &SessionRequest,
        lineage: &crate::lineage::JobLineage,
        patience: Option<u64>,
        mut cancel: watch::Receiver<bool>,
    ) -> Result<(SessionSum, LineageEntry, Vec<(String, Vec<u8>)>), SessionError> {
        let peers = self
            .wait_for_participants(job_id, spec, req, patience, &mut cancel)
            .await?;
        let params = session_params(spec, req, peers.iter().map(|p| p.id).collect());
        let threshold = params.threshold;
        let binding = session_binding(&self.federation_id, req.round, req.binding);
        let nonce: [u8; 32] = rand::rng().random();
        let config = SessionConfig::new(&binding, nonce, params).map_err(|e| {
            SessionError::Failed(Failure::Deterministic(format!(
                "session configuration: {e}"
            )))
        })?;
        let fixed = config.params.fixed_point;
        let mut coord = CoordinatorSession::new(
            config.clone(),
            fedrisk_secagg::Roster::new(peers.iter().map(|p| (p.id, p.verifying_key))),
        )
        .map_err(|e| SessionError::Failed(Failure::Deterministic(format!("session: {e}"))))?;
        let sid = config.session_id;
        self.hub.publish(&req.task.contents);
        // Certificates go by hash on a stream that carried them; an agent that lost one
        // fetches it.
        let certificates: Vec<(String, Vec<u8>)> = peers
            .iter()
            .map(|p| {
                (
                    fedrisk_rounds::task::content_hash(&p.cert_der),
                    p.cert_der.clone(),
                )
            })
            .collect();
        self.hub.publish(&certificates);
        let fetched_before = self.hub.fetched_bytes();
        let mut inbox = self.hub.open_session(job_id, req.round, &sid);
        let compute = v1::ComputeTask {
            task: prost::bytes::Bytes::copy_from_slice(&req.task.bytes),
            job_spec: lineage.spec_hash().to_string(),
            lineage: lineage.hashes().to_vec(),
            secagg: Some(v1::SecAggParams {
                participant_ids: config.params.participants.clone(),
                threshold,
                vector_len: req.vector_len as u32,
                config: config.encode(),
                peers: faults::extra_peers(
                    peers
                        .iter()
                        .zip(&certificates)
                        .map(|(p, (hash, der))| v1::PeerIdentity {
                            participant_id: p.id,
                            certificate_der: prost::bytes::Bytes::copy_from_slice(der),
                            certificate_sha256: hash.clone(),
                        })
                        .collect(),
                ),
                crl: self.crl_der().into(),
            }),
        };
        let invitation = crate::hub::Invitation::new(compute);
        let mut traffic = Traffic::default();
        for p in &peers {
            if let Some(bytes) = self
                .hub
                .send_compute(p.id, job_id, req.round, &sid, &invitation)
            {
                traffic.down += bytes;
            }
        }
        self.events.emit(&Event::SessionStarted {
            job: job_id,
            round: req.round,
            kind: req.label,
            participants: peers.len(),
            threshold,
        });
        let generations: std::collections::BTreeMap<u32, u64> =
            peers.iter().map(|p| (p.id, p.generation)).collect();
        let result = self
            .drive(
                spec,
                job_id,
                req,
                &generations,
                &mut coord,
                &mut inbox,
                &mut traffic,
                &mut cancel,
            )
            .await;
        self.hub.close_session(&sid);
        release_freed_memory();
        // Contents fetched during the session are part of what it cost to send.
        traffic.down += self.hub.fetched_bytes().saturating_sub(fetched_before);
        match result {
            Ok(output) => {
                // What lets every agent check this sum before it takes part in a later
                // session: the survivors' signed commitments and their certificates.
                // (Hashed once above, when the session's certificates were published.)
                let mut hashes = std::collections::BTreeMap::new();
                let mut survivors_certificates = Vec::new();
                if config.params.committed() {
                    for (p, cert) in peers
                        .iter()
                        .zip(&certificates)
                        .filter(|(p, _)| output.survivors.binary_search(&p.id).is_ok())
                    {
                        hashes.insert(p.id, cert.0.clone());
                        survivors_certificates.push(cert.clone());
                    }
                }
                let record = SessionRecord::new(&config, &output, &hashes);
                // Checked here as every agent will check it: a sum that does not open the
                // survivors' commitments (an input that does not match its commitment, a
                // wrong share) would make every agent refuse the job's next task. It is
                // unmasked already, so it is not asked for again: the attempt ends, saying why.
                if config.params.committed() {
                    let roster =
                        fedrisk_secagg::Roster::new(peers.iter().map(|p| (p.id, p.verifying_key)));
                    // Every survivor's advertisement was verified when it arrived.
                    let verified: std::collections::BTreeSet<u32> =
                        output.survivors.iter().copied().collect();
                    let opened = fedrisk_secagg::commit::verify_sum_with_checked(
                        &config,
                        &roster,
                        &record.sum,
                        &record.blinding_sum,
                        &record.signed(),
                        &verified,
                    )
                    .map_err(|e| e.to_string());
                    if let Err(reason) = opened {
                        return Err(SessionError::Failed(Failure::Deterministic(format!(
                            "the sum does not check against the survivors' commitments ({reason}): a participant sent an input that does not match its commitment, or a wrong share"
                        ))));
                    }
                }
                let entry = LineageEntry::Session(record);
                let keys: std::collections::BTreeMap<u32, String> = peers
                    .iter()
                    .map(|p| (p.id, hex::encode(p.verifying_key.to_bytes())))
                    .collect();
                self.events.emit(&Event::SurvivorsSigned {
                    job: job_id,
                    round: req.round,
                    kind: req.label,
                    session_id: hex::encode(sid),
                    u1_digest: hex::encode(output.survivor_signatures.u1_digest),
                    survivors: output.survivors.clone(),
                    signatures: output
                        .survivor_signatures
                        .signatures
                        .iter()
                        .map(|(id, s)| crate::events::SurvivorSignature {
                            participant: *id,
                            public_key: keys.get(id).cloned().unwrap_or_default(),
                            signature: hex::encode(s),
                        })
                        .collect(),
                });
                let mut sum =
                    decode_output(&output.sum, output.survivors, &fixed).map_err(|e| {
                        SessionError::Failed(Failure::Deterministic(format!(
                            "decoding the sum: {e}"
                        )))
                    })?;
                sum.bytes_up = traffic.up;
                sum.bytes_down = traffic.down;
                Ok((sum, entry, survivors_certificates))
            }
            Err(e) => {
                let reason = match &e {
                    SessionError::Failed(f) => f.reason().to_string(),
                    SessionError::Cancelled => "cancelled".to_string(),
                    SessionError::Store(s) => s.to_string(),
                };
                for p in &config.params.participants {
                    self.hub.send(
                        *p,
                        job_id,
                        req.round,
                        &sid,
                        task::Kind::Aborted(v1::RoundAborted {
                            reason: reason.clone(),
                        }),
                    );
                }
                Err(e)
            }
        }
    }

    /// Feeds uploads into the coordinator state machine, stage by stage, until it outputs.
    #[allow(clippy::too_many_arguments)]
    async fn drive(
        &self,
        spec: &JobSpec,
        job_id: JobId,
        req: &SessionRequest,
        generations: &std::collections::BTreeMap<u32, u64>,
        coord: &mut CoordinatorSession,
        inbox: &mut tokio::sync::mpsc::Receiver<Upload>,
        traffic: &mut Traffic,
        cancel: &mut watch::Receiver<bool>,
    ) -> Result<fedrisk_secagg::Output, SessionError> {
        let sid = coord.config().session_id;
        let invited = coord.config().params.participants.len();
        let mut first = true;
        let mut changes = self.hub.changes();
        loop {
            let wait = if first {
                spec.round_deadline_ms
            } else {
                spec.stage_deadline_ms
            };
            first = false;
            let mut deadline = tokio::time::Instant::now() + Duration::from_millis(wait);
            let stage = coord.stage();
            let opened = Instant::now();
            let expected = stage_pool(coord);
            let secagg_plus = matches!(
                coord.config().params.graph,
                fedrisk_secagg::GraphKind::Harary { .. }
            );
            let mut first_in: Option<tokio::time::Instant> = None;
            loop {
                changes.borrow_and_update();
                let awaiting = coord.awaiting();
                if awaiting.len() < expected && first_in.is_none() {
                    first_in = Some(tokio::time::Instant::now());
                }
                deadline = advertise_deadline(deadline, stage, secagg_plus, first_in);
                self.live.stage(
                    (job_id, req.round),
                    stage,
                    expected.saturating_sub(awaiting.len()),
                    expected,
                    opened.elapsed().as_secs_f64(),
                    false,
                );
                let refused = self.hub.refused_in_session(&sid);
                self.hub.set_activity(format!(
                    "round {}: {} session, {:?} stage, {} of {invited} in",
                    req.round,
                    req.label,
                    stage,
                    invited.saturating_sub(awaiting.len())
                ));
                let gone = |id: &u32| {
                    !generations
                        .get(id)
                        .is_some_and(|g| self.hub.still_connected(*id, *g))
                };
                if awaiting.is_empty() || awaiting.iter().all(|id| gone(id) || refused.contains(id))
                {
                    break;
                }
                tokio::select! {
                    up = inbox.recv() => {
                        let Some(up) = up else { break };
                        traffic.up += up.payload.len() as u64;
                        let verdict = Message::decode_for(&up.payload, coord.config())
                            .and_then(|m| coord.handle(up.from, &m))
                            .map_err(|e| e.to_string());
                        if let Err(reason) = &verdict {
                            tracing::warn!(job = job_id, participant = up.from, session = req.label, ?stage, %reason, "secagg message rejected");
                        }
                        let _ = up.reply.send(verdict);
                    }
                    () = tokio::time::sleep_until(deadline) => {
                        tracing::warn!(job = job_id, session = req.label, ?stage, missing = ?coord.awaiting(), "stage deadline passed");
                        break;
                    }
                    _ = changes.changed() => {}
                    _ = cancel.changed() => if *cancel.borrow() {
                        coord.abort();
                        return Err(SessionError::Cancelled);
                    },
                }
            }
            let received = expected.saturating_sub(coord.awaiting().len());
            let seconds = opened.elapsed().as_secs_f64();
            self.live.stage(
                (job_id, req.round),
                stage,
                received,
                expected,
                seconds,
                true,
            );
            self.events.emit(&Event::StageClosed {
                job: job_id,
                round: req.round,
                kind: req.label,
                stage: crate::live::stage_name(stage),
                received,
                expected,
                seconds,
            });
            if let Some(reason) = short_secagg_plus_list(coord, stage, received) {
                coord.abort();
                return Err(SessionError::Failed(Failure::Transient(reason)));
            }
            match coord.close_stage() {
                Ok(Step::Send(out)) => {
                    for o in out {
                        let (recipients, message) = o.into_parts();
                        // One buffer for every recipient of a broadcast.
                        let payload = prost::bytes::Bytes::from(message.encode());
                        let parts =
                            crate::hub::delivery_parts(message.stage().wire_number(), &payload);
                        for r in recipients {
                            // The bytes queued count, up to a part that did not fit.
                            for part in &parts {
                                let kind = task::Kind::Secagg(part.clone());
                                if !self.hub.send(r, job_id, req.round, &sid, kind) {
                                    break;
                                }
                                traffic.down += part.payload.len() as u64;
                            }
                        }
                    }
                }
                Ok(Step::Finished(output)) => return Ok(output),
                Err(e) => {
                    let mut reason = format!("{} session aborted: {e}", req.label);
                    reason.push_str(&self.refusal_note(job_id, &sid));
                    return Err(SessionError::Failed(Failure::Transient(reason)));
                }
            }
        }
    }
}

/// Hands the heap pages a session freed back to the system. A session's messages are
/// hundreds of small buffers per participant, freed in another order than allocated; without
/// this, glibc keeps the holes, and a long job's footprint ratchets up session by session.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only returns free memory to the kernel; it touches no live
    // allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// "converged at round 4: ...; rounds 5 to 10 not run".
fn converged_message(c: &fedrisk_rounds::Convergence, rounds: u32) -> String {
    match rounds.saturating_sub(c.round) {
        0 => c.to_string(),
        1 => format!("{c}; round {rounds} not run"),
        _ => format!("{c}; rounds {} to {rounds} not run", c.round + 1),
    }
}

/// How many participants may send a message in the session's current stage: the invited
/// ones, then those still in after each stage (U1, U2, U3, then the signers of U3).
fn stage_pool(coord: &CoordinatorSession) -> usize {
    use fedrisk_secagg::Stage;
    let sets = coord.survivor_sets();
    match coord.stage() {
        Stage::Advertise => coord.config().params.participants.len(),
        Stage::ShareKeys => sets[0].len(),
        Stage::MaskedInput => sets[1].len(),
        Stage::ConsistencyCheck => sets[2].len(),
        Stage::Unmask => sets[3].len(),
        Stage::Finished | Stage::Aborted => 0,
    }
}

/// Bytes the coordinator received and sent in one session.
#[derive(Default)]
struct Traffic {
    up: u64,
    down: u64,
}

/// How long a SecAgg+ advertise stage waits after its first advertisement: agents refuse a
/// key list that comes more than their window (120 s by default,
/// `fedrisk_participant::agent::DEFAULT_KEY_LIST_WINDOW`) after they advertised, so one
/// participant that never advertises must not hold the list back past it.
pub const SECAGG_PLUS_ADVERTISE_WAIT: Duration = Duration::from_secs(90);

/// Why default agents would refuse the key list of an advertise stage that `listed`
/// members answered ([`fedrisk_secagg::ParticipantPolicy::check_key_list`]), or `None`.
/// The session then ends at once, saying so, instead of sending a list every member
/// refuses and waiting out the next stage.
fn short_secagg_plus_list(
    coord: &fedrisk_secagg::CoordinatorSession,
    stage: fedrisk_secagg::Stage,
    listed: usize,
) -> Option<String> {
    if stage != fedrisk_secagg::Stage::Advertise {
        return None;
    }
    let params = &coord.config().params;
    fedrisk_secagg::ParticipantPolicy::default()
        .check_key_list(params, listed)
        .err()
        .map(|_| {
            format!(
                "only {listed} of {} invited advertised: a SecAgg+ key list this short fails the participants' privacy bound, so none would take part",
                params.n()
            )
        })
}

/// The deadline of a stage: an advertise stage of a SecAgg+ session closes at most
/// [`SECAGG_PLUS_ADVERTISE_WAIT`] after its first advertisement.
fn advertise_deadline(
    deadline: tokio::time::Instant,
    stage: fedrisk_secagg::Stage,
    secagg_plus: bool,
    first_in: Option<tokio::time::Instant>,
) -> tokio::time::Instant {
    match first_in {
        Some(t) if secagg_plus && stage == fedrisk_secagg::Stage::Advertise => {
            deadline.min(t + SECAGG_PLUS_ADVERTISE_WAIT)
        }
        _ => deadline,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secagg_plus_advertise_stage_closes_well_inside_the_agents_key_list_window() {
        let now = tokio::time::Instant::now();
        let long = now + Duration::from_secs(600);
        let first = Some(now + Duration::from_secs(5));
        let capped = advertise_deadline(long, fedrisk_secagg::Stage::Advertise, true, first);
        assert_eq!(
            capped,
            now + Duration::from_secs(5) + SECAGG_PLUS_ADVERTISE_WAIT
        );
        assert!(SECAGG_PLUS_ADVERTISE_WAIT < Duration::from_secs(120));
        // Before any advertisement, for the complete graph and for later stages: unchanged.
        let stage = fedrisk_secagg::Stage::Advertise;
        assert_eq!(advertise_deadline(long, stage, true, None), long);
        assert_eq!(advertise_deadline(long, stage, false, first), long);
        let later = fedrisk_secagg::Stage::ShareKeys;
        assert_eq!(advertise_deadline(long, later, true, first), long);
        // A shorter deadline stays.
        let short = now + Duration::from_secs(10);
        assert_eq!(advertise_deadline(short, stage, true, first), short);
    }

    #[test]
    fn a_secagg_plus_key_list_the_agents_would_refuse_is_not_sent() {
        use fedrisk_secagg::sim::{Sim, SimConfig};
        let n = 150;
        let mut cfg = SimConfig::new(n, 2);
        cfg.threshold = 100;
        cfg.graph = fedrisk_secagg::recommended_graph(
            n,
            0.05,
            fedrisk_secagg::HARARY_COLLUDER_FRACTION,
            2.0 / 3.0,
            fedrisk_secagg::HARARY_PRIVACY_BITS,
        );
        assert!(matches!(
            cfg.graph,
            fedrisk_secagg::GraphKind::Harary { .. }
        ));
        let sim = Sim::new(cfg.clone(), vec![]).expect("sim");
        let advertise = fedrisk_secagg::Stage::Advertise;
        let reason = short_secagg_plus_list(&sim.coordinator, advertise, 100)
            .expect("a third missing is refused");
        assert!(reason.contains("only 100 of 150"), "{reason}");
        assert_eq!(
            short_secagg_plus_list(&sim.coordinator, advertise, 143),
            None
        );
        let later = fedrisk_secagg::Stage::ShareKeys;
        assert_eq!(short_secagg_plus_list(&sim.coordinator, later, 100), None);
        cfg.graph = fedrisk_secagg::GraphKind::Complete;
        let complete = Sim::new(cfg, vec![]).expect("sim");
        assert_eq!(
            short_secagg_plus_list(&complete.coordinator, advertise, 100),
            None
        );
    }
}

//! What the engine reports: one event type for every job, round, session, attempt, refusal
//! and model version, and the sinks that consume it. Logs are the one sink today; an audit
//! chain or metrics are further [`EventSink`] implementations, not engine changes.
//!
//! Invariant: events carry ids, counts, sizes, hashes and reasons, never values of an
//! institution's data or update.

use tracing::{debug, info, warn};

/// Something the engine did or saw, or an operator did. Serialised (for the audit chain)
/// as a JSON object whose `event` field names the variant in snake case.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// An operator submitted a job.
    JobSubmitted {
        /// The new job.
        job: u64,
        /// Its name.
        name: String,
        /// SHA-256 of the job specification (JSON) as submitted.
        spec_hash: String,
        /// The operator's certificate name.
        by: String,
    },
    /// An operator cancelled a job.
    JobCancelled {
        /// The job.
        job: u64,
        /// The operator's certificate name.
        by: String,
    },
    /// An operator exported a model version.
    ModelExported {
        /// The job.
        job: u64,
        /// The model version's round.
        round: u32,
        /// Its content hash.
        content_hash: String,
        /// The operator's certificate name.
        by: String,
    },
    /// The roster in force when the coordinator started, or after it changed (a certificate
    /// signed or revoked).
    RosterChanged {
        /// Every certificate of the roster.
        members: Vec<RosterMember>,
    },
    /// A job started or resumed.
    JobStarted {
        /// The job.
        job: u64,
        /// Where it starts (0: the statistics round).
        round: u32,
        /// Whether it resumes after completed rounds (a coordinator restart).
        resumed: bool,
    },
    /// A secure-aggregation session was proposed to the connected participants.
    SessionStarted {
        /// The job.
        job: u64,
        /// The round.
        round: u32,
        /// The round kind's label.
        kind: &'static str,
        /// Invited participants.
        participants: usize,
        /// Threshold t.
        threshold: u32,
    },
    /// A session produced its sum.
    SessionCompleted {
        /// The job.
        job: u64,
        /// The round.
        round: u32,
        /// The round kind's label.
        kind: &'static str,
        /// Participants the sum is over.
        survivors: Vec<u32>,
        /// SHA-256 of the decoded sum (total weight, then each element's IEEE-754 bits,
        /// little-endian), hex.
        aggregate_hash: String,
        /// Bytes received.
        bytes_up: u64,
        /// Bytes sent.
        bytes_down: u64,
    },
    /// The signatures certifying a session's survivor set, recorded just before its
    /// `session_completed`: each signer's Ed25519 signature by its certificate's key over
    /// `fedrisk_secagg::crypto::consistency_transcript(session_id, u1_digest, survivors)`,
    /// so an institution can show that a sum it signed for is on the record.
    SurvivorsSigned {
        /// The job.
        job: u64,
        /// The round.
        round: u32,
        /// The round kind's label.
        kind: &'static str,
        /// The secure-aggregation session id, hex.
        session_id: String,
        /// The hash of the set of participants that advertised keys (U1), hex.
        u1_digest: String,
        /// The survivor set U3 as session ids (roster ids), increasing.
        survivors: Vec<u32>,
        /// One per signer.
        signatures: Vec<SurvivorSignature>,
    },
    /// A session failed; the round is tried again or the job fails.
    AttemptFailed {
        /// The job.
        job: u64,
        /// The round.
        round: u32,
        /// The round kind's label.
        kind: &'static str,
        /// Why.
        reason: String,
        /// Whether another attempt follows.
        retrying: bool,
    },
    /// A round's model will not be evaluated: its evaluation could not run over the
    /// statistics session's participants (the model stands, unevaluated).
    EvaluationSkipped {
        /// The job.
        job: u64,
        /// The round.
        round: u32,
        /// Why.
        reason: String,
    },
    /// A participant refused a session or the job.
    Refused {
        /// The job.
        job: u64,
        /// The round.
        round: u32,
        /// Roster id.
        participant: u32,
        /// Certificate name.
        name: String,
        /// `schema`, `data`, `policy` or `task`.
        kind: String,
        /// The agent's reason.
        reason: String,
    },
    /// A round completed and is durable.
    RoundCompleted {
        /// The job.
        job: u64,
        /// The round.
        round: u32,
        /// Participants in its sum.
        survivors: u32,
        /// Federated AUC of the new model (training rounds).
        auc: Option<f64>,
        /// Wall time of the round.
        seconds: f64,
    },
    /// A model version was stored.
    ModelVersion {
        /// The job.
        job: u64,
        /// The round that produced it.
        round: u32,
        /// Its content hash.
        content_hash: String,
    },
    /// A secure-aggregation stage closed (all expected messages in, or its deadline
    /// passed). For metrics and the live status; not an audit record.
    StageClosed {
        /// The job.
        job: u64,
        /// The round.
        round: u32,
        /// The round kind's label.
        kind: &'static str,
        /// `advertised`, `shared`, `masked`, `signed` or `unmasked`.
        stage: &'static str,
        /// Messages accepted in the stage.
        received: usize,
        /// Participants expected to send one.
        expected: usize,
        /// How long the stage was open.
        seconds: f64,
    },
    /// A Newton job's step fell below its tolerance: the job ends after this round and the
    /// remaining rounds are not run.
    Converged {
        /// The job.
        job: u64,
        /// The round whose model is the final one.
        round: u32,
        /// Its Newton decrement per row (the decrease of the mean training loss its step
        /// predicted).
        decrement: f64,
        /// The job's tolerance.
        tolerance: f64,
        /// Rounds of the job's specification not run.
        rounds_not_run: u32,
    },
    /// A job ended.
    JobEnded {
        /// The job.
        job: u64,
        /// `completed`, `failed` or `cancelled`.
        state: String,
        /// Why.
        message: String,
    },
}

impl Event {
    /// Whether the audit chain records it (stage closures are progress, not evidence).
    pub fn audited(&self) -> bool {
        !matches!(self, Event::StageClosed { .. })
    }
}

/// One survivor's signature over a session's survivor set.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SurvivorSignature {
    /// Its id in the session (its roster id).
    pub participant: u32,
    /// The Ed25519 public key of its certificate, hex (32 bytes).
    pub public_key: String,
    /// The signature, hex (64 bytes).
    pub signature: String,
}

/// One certificate of the roster, as the audit chain records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RosterMember {
    /// Roster id.
    pub id: u32,
    /// Certificate name.
    pub name: String,
    /// `participant` or `operator`.
    pub role: String,
    /// SHA-256 of the certificate.
    pub fingerprint: String,
    /// Whether it is revoked.
    pub revoked: bool,
}

/// A consumer of engine events. Called synchronously on the engine's task: keep it quick.
pub trait EventSink: Send + Sync {
    /// Takes one event.
    fn emit(&self, event: &Event);
}

/// Writes every event to the log (`tracing`), warnings for failures and refusals.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogSink;

impl EventSink for LogSink {
    fn emit(&self, event: &Event) {
        match event {
            Event::JobStarted {
                job,
                round,
                resumed: false,
            } => info!(job, round, "job started"),
            Event::JobStarted { job, round, .. } => {
                info!(job, round, "resuming after the last completed round")
            }
            Event::SessionStarted {
                job,
                round,
                kind,
                participants,
                threshold,
            } => info!(
                job,
                round,
                session = kind,
                participants,
                threshold,
                "secagg session started"
            ),
            Event::JobSubmitted { job, name, by, .. } => info!(job, %name, %by, "job submitted"),
            Event::JobCancelled { job, by } => info!(job, %by, "job cancelled by an operator"),
            Event::ModelExported {
                job,
                round,
                content_hash,
                by,
            } => info!(job, round, %content_hash, %by, "model version exported"),
            Event::RosterChanged { members } => info!(
                certificates = members.len(),
                revoked = members.iter().filter(|m| m.revoked).count(),
                "roster in force"
            ),
            Event::SurvivorsSigned {
                job,
                round,
                kind,
                signatures,
                ..
            } => debug!(
                job,
                round,
                session = kind,
                signatures = signatures.len(),
                "survivor set certified"
            ),
            Event::SessionCompleted {
                job,
                round,
                kind,
                survivors,
                bytes_up,
                bytes_down,
                ..
            } => info!(
                job,
                round,
                session = kind,
                survivors = survivors.len(),
                bytes_up,
                bytes_down,
                "secagg session completed"
            ),
            Event::EvaluationSkipped { job, round, reason } => {
                warn!(job, round, %reason, "the round's model stays unevaluated")
            }
            Event::AttemptFailed {
                job,
                round,
                kind,
                reason,
                retrying,
            } => {
                if *retrying {
                    warn!(job, round, session = kind, %reason, "session failed; retrying with fresh keys")
                } else {
                    warn!(job, round, session = kind, %reason, "session failed; no attempt left")
                }
            }
            Event::Refused {
                job,
                round,
                participant,
                name,
                kind,
                reason,
            } => warn!(job, round, participant, %name, %kind, %reason, "participant refused"),
            Event::RoundCompleted {
                job,
                round,
                survivors,
                auc,
                seconds,
            } => info!(
                job,
                round,
                survivors,
                auc = auc.unwrap_or(f64::NAN),
                seconds,
                "round complete"
            ),
            Event::ModelVersion {
                job,
                round,
                content_hash,
            } => info!(job, round, %content_hash, "model version stored"),
            Event::StageClosed {
                job,
                round,
                kind,
                stage,
                received,
                expected,
                seconds,
            } => debug!(
                job,
                round,
                session = kind,
                stage,
                received,
                expected,
                seconds,
                "secagg stage closed"
            ),
            Event::Converged {
                job,
                round,
                decrement,
                tolerance,
                rounds_not_run,
            } => info!(
                job,
                round,
                decrement,
                tolerance,
                rounds_not_run,
                "converged: the Newton step fell below the tolerance; the remaining rounds are not run"
            ),
            Event::JobEnded {
                job,
                state,
                message,
            } => info!(job, %state, %message, "job ended"),
        }
    }
}

/// Several sinks as one.
pub struct Sinks(pub Vec<std::sync::Arc<dyn EventSink>>);

impl EventSink for Sinks {
    fn emit(&self, event: &Event) {
        for s in &self.0 {
            s.emit(event);
        }
    }
}

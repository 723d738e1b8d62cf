//! What the coordinator is doing now, for the operators' live status: the secure-aggregation
//! session in flight with its progress per stage (how many of the expected participants'
//! messages arrived), and the latest errors. In memory only: fed by the engine (stage
//! progress) and by events (sessions, failures), read by the Operator service's GetStatus.
//!
//! Invariant: holds ids, counts, stage names, durations and reasons, never data values.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Instant;

use crate::now_ms;

use fedrisk_secagg::Stage;

use crate::events::{Event, EventSink};

/// Errors kept for status (the newest).
const KEPT_ERRORS: usize = 8;

/// The name of a secagg stage in status, metrics and events: what the participants did in
/// it.
pub fn stage_name(stage: Stage) -> &'static str {
    match stage {
        Stage::Advertise => "advertised",
        Stage::ShareKeys => "shared",
        Stage::MaskedInput => "masked",
        Stage::ConsistencyCheck => "signed",
        Stage::Unmask => "unmasked",
        Stage::Finished => "finished",
        Stage::Aborted => "aborted",
    }
}

/// The stages of a session in order, by [`stage_name`].
pub const STAGES: [&str; 5] = ["advertised", "shared", "masked", "signed", "unmasked"];

/// One stage of the session in flight.
#[derive(Debug, Clone, PartialEq)]
pub struct StageProgress {
    /// [`STAGES`] name.
    pub stage: &'static str,
    /// Messages accepted so far.
    pub received: u32,
    /// Participants expected to send one (those still in the session when it opened; 0
    /// while the stage has not opened).
    pub expected: u32,
    /// Whether the stage is over.
    pub closed: bool,
    /// Time spent in the stage so far (or in all, once closed).
    pub seconds: f64,
}

/// The session in flight, or the job's last one.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionProgress {
    pub job: u64,
    pub round: u32,
    /// The round kind's label.
    pub kind: &'static str,
    pub invited: u32,
    pub threshold: u32,
    /// `running`, `completed` or `failed`.
    pub state: &'static str,
    /// Every stage, in order.
    pub stages: Vec<StageProgress>,
    /// Since the session started (until it ended).
    pub seconds: f64,
}

/// An error an operator should see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorNote {
    pub at_unix_ms: u64,
    pub job: u64,
    pub round: u32,
    pub message: String,
}

#[derive(Default)]
struct State {
    session: Option<(SessionProgress, Instant)>,
    errors: VecDeque<ErrorNote>,
}

/// The live view. An [`EventSink`]; the engine also reports stage progress directly.
#[derive(Default)]
pub struct Live {
    state: Mutex<State>,
}

impl Live {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Progress of the current stage of the session in flight of `(job, round)`.
    pub fn stage(
        &self,
        (job, round): (u64, u32),
        stage: Stage,
        received: usize,
        expected: usize,
        seconds: f64,
        closed: bool,
    ) {
        let name = stage_name(stage);
        let mut st = self.lock();
        let Some((s, _)) = st.session.as_mut() else {
            return;
        };
        if s.job != job || s.round != round || s.state != "running" {
            return;
        }
        if let Some(p) = s.stages.iter_mut().find(|p| p.stage == name) {
            p.received = u32::try_from(received).unwrap_or(u32::MAX);
            p.expected = u32::try_from(expected).unwrap_or(u32::MAX);
            p.seconds = seconds;
            p.closed = closed;
        }
    }

    /// The session in flight of `job`, or its last one while the job runs.
    pub fn session(&self, job: u64) -> Option<SessionProgress> {
        let st = self.lock();
        let (s, started) = st.session.as_ref()?;
        if s.job != job {
            return None;
        }
        let mut s = s.clone();
        if s.state == "running" {
            s.seconds = started.elapsed().as_secs_f64();
        }
        Some(s)
    }

    /// The latest errors of `job`, oldest first.
    pub fn errors(&self, job: u64) -> Vec<ErrorNote> {
        self.lock()
            .errors
            .iter()
            .filter(|e| e.job == job)
            .cloned()
            .collect()
    }

    fn note(&self, job: u64, round: u32, message: String) {
        let mut st = self.lock();
        if st.errors.len() == KEPT_ERRORS {
            st.errors.pop_front();
        }
        st.errors.push_back(ErrorNote {
            at_unix_ms: now_ms(),
            job,
            round,
            message,
        });
    }

    fn end_session(&self, job: u64, round: u32, state: &'static str) {
        let mut st = self.lock();
        if let Some((s, started)) = st.session.as_mut()
            && s.job == job
            && s.round == round
            && s.state == "running"
        {
            s.state = state;
            s.seconds = started.elapsed().as_secs_f64();
        }
    }
}

impl EventSink for Live {
    fn emit(&self, event: &Event) {
        match event {
            Event::SessionStarted {
                job,
                round,
                kind,
                participants,
                threshold,
            } => {
                let invited = u32::try_from(*participants).unwrap_or(u32::MAX);
                let stages = STAGES
                    .iter()
                    .map(|&stage| StageProgress {
                        stage,
                        received: 0,
                        expected: if stage == STAGES[0] { invited } else { 0 },
                        closed: false,
                        seconds: 0.0,
                    })
                    .collect();
                self.lock().session = Some((
                    SessionProgress {
                        job: *job,
                        round: *round,
                        kind,
                        invited,
                        threshold: *threshold,
                        state: "running",
                        stages,
                        seconds: 0.0,
                    },
                    Instant::now(),
                ));
            }
            Event::SessionCompleted { job, round, .. } => {
                self.end_session(*job, *round, "completed")
            }
            Event::AttemptFailed {
                job,
                round,
                kind,
                reason,
                retrying,
            } => {
                self.end_session(*job, *round, "failed");
                let then = if *retrying {
                    "retrying with fresh keys"
                } else {
                    "no attempt left"
                };
                self.note(
                    *job,
                    *round,
                    format!("{kind} session failed ({then}): {reason}"),
                );
            }
            Event::EvaluationSkipped { job, round, reason } => {
                self.note(*job, *round, format!("evaluation skipped: {reason}"))
            }
            Event::JobEnded {
                job,
                state,
                message,
            } if state == "failed" => self.note(*job, 0, format!("job failed: {message}")),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_shows_each_stage_and_its_end_and_errors_are_kept_per_job() {
        let live = Live::default();
        live.emit(&Event::SessionStarted {
            job: 1,
            round: 2,
            kind: "update",
            participants: 4,
            threshold: 3,
        });
        live.stage((1, 2), Stage::Advertise, 4, 4, 0.1, true);
        live.stage((1, 2), Stage::ShareKeys, 2, 4, 0.05, false);
        // Another job's or round's progress does not land here.
        live.stage((1, 3), Stage::ShareKeys, 1, 4, 0.05, false);
        let s = live.session(1).expect("session");
        assert_eq!(s.state, "running");
        assert_eq!(
            s.stages
                .iter()
                .map(|p| (p.stage, p.received, p.expected, p.closed))
                .collect::<Vec<_>>(),
            vec![
                ("advertised", 4, 4, true),
                ("shared", 2, 4, false),
                ("masked", 0, 0, false),
                ("signed", 0, 0, false),
                ("unmasked", 0, 0, false),
            ]
        );
        assert!(live.session(2).is_none());
        live.emit(&Event::AttemptFailed {
            job: 1,
            round: 2,
            kind: "update",
            reason: "only 2 of 3".into(),
            retrying: true,
        });
        assert_eq!(live.session(1).expect("session").state, "failed");
        let errors = live.errors(1);
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0].message,
            "update session failed (retrying with fresh keys): only 2 of 3"
        );
        assert!(live.errors(2).is_empty());
        for i in 0..20 {
            live.emit(&Event::EvaluationSkipped {
                job: 1,
                round: i,
                reason: "x".into(),
            });
        }
        assert_eq!(live.errors(1).len(), KEPT_ERRORS);
        assert_eq!(live.errors(1).last().map(|e| e.round), Some(19));
    }
}

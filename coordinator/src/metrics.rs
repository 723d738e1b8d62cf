//! Prometheus metrics (OpenMetrics text, `prometheus-client`): another [`EventSink`], and a
//! small plain-HTTP endpoint on its own port (`serve --metrics ADDR`) with `/metrics` and
//! `/healthz`.
//!
//! Invariant: labels are round kinds, stage names, refusal kinds, job end states and, for
//! refusal counts only, an institution's certificate name; no label or value carries data,
//! keys, sums or one institution's figures.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use fedrisk_probe::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::events::{Event, EventSink};
use crate::hub::Hub;
use crate::store::Store;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabel {
    stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ParticipantLabel {
    participant: String,
}

/// The coordinator's metrics.
pub struct Metrics {
    registry: Registry,
    rounds_started: Counter,
    rounds_completed: Counter,
    rounds_failed: Counter,
    round_seconds: Histogram,
    sessions_started: Family<KindLabel, Counter>,
    sessions_completed: Family<KindLabel, Counter>,
    sessions_aborted: Family<KindLabel, Counter>,
    stage_seconds: Family<StageLabel, Histogram>,
    participants_online: Gauge,
    dropouts: Counter,
    refusals: Family<KindLabel, Counter>,
    participant_refusals: Family<ParticipantLabel, Counter>,
    bytes_received: Counter,
    bytes_sent: Counter,
    jobs_ended: Family<StateLabel, Counter>,
    jobs_converged: Counter,
    /// Per session in flight: invited participants (for dropouts); the last round started.
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    invited: BTreeMap<(u64, u32, &'static str), usize>,
    last_round: Option<(u64, u32)>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("fedrisk");
        let rounds_started = Counter::default();
        let rounds_completed = Counter::default();
        let rounds_failed = Counter::default();
        // 10 ms to about 45 minutes.
        let round_seconds = Histogram::new(exponential_buckets(0.01, 2.0, 18));
        let sessions_started = Family::<KindLabel, Counter>::default();
        let sessions_completed = Family::<KindLabel, Counter>::default();
        let sessions_aborted = Family::<KindLabel, Counter>::default();
        // 1 ms to about 9 minutes.
        let stage_seconds = Family::<StageLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 20))
        });
        let participants_online = Gauge::default();
        let dropouts = Counter::default();
        let refusals = Family::<KindLabel, Counter>::default();
        let participant_refusals = Family::<ParticipantLabel, Counter>::default();
        let bytes_received = Counter::default();
        let bytes_sent = Counter::default();
        let jobs_ended = Family::<StateLabel, Counter>::default();
        let jobs_converged = Counter::default();
        registry.register(
            "rounds_started",
            "Rounds begun (a retried round counts once)",
            rounds_started.clone(),
        );
        registry.register(
            "rounds_completed",
            "Rounds completed and durable",
            rounds_completed.clone(),
        );
        registry.register(
            "rounds_failed",
            "Rounds that failed with no attempt left (the job failed)",
            rounds_failed.clone(),
        );
        registry.register(
            "round_seconds",
            "Wall time of completed rounds, retries included",
            round_seconds.clone(),
        );
        registry.register(
            "sessions_started",
            "Secure-aggregation sessions started, by round kind",
            sessions_started.clone(),
        );
        registry.register(
            "sessions_completed",
            "Secure-aggregation sessions that produced their sum, by round kind",
            sessions_completed.clone(),
        );
        registry.register(
            "sessions_aborted",
            "Secure-aggregation sessions that ended without a sum, by round kind",
            sessions_aborted.clone(),
        );
        registry.register(
            "stage_seconds",
            "Time each secure-aggregation stage stayed open, by stage (advertised, shared, masked, signed, unmasked)",
            stage_seconds.clone(),
        );
        registry.register(
            "participants_online",
            "Participants with an open task stream",
            participants_online.clone(),
        );
        registry.register(
            "dropouts",
            "Invited participants missing from a completed session's sum",
            dropouts.clone(),
        );
        registry.register(
            "refusals",
            "Participants' refusals, by kind (schema, data, policy, task)",
            refusals.clone(),
        );
        registry.register(
            "participant_refusals",
            "Refusals by participant (certificate name)",
            participant_refusals.clone(),
        );
        registry.register(
            "received_bytes",
            "Bytes received in completed sessions",
            bytes_received.clone(),
        );
        registry.register(
            "sent_bytes",
            "Bytes sent in completed sessions (tasks, deliveries, fetched contents)",
            bytes_sent.clone(),
        );
        registry.register(
            "jobs_ended",
            "Jobs ended, by state (completed, failed, cancelled)",
            jobs_ended.clone(),
        );
        registry.register(
            "jobs_converged",
            "Newton jobs stopped early because their step fell below the tolerance",
            jobs_converged.clone(),
        );
        Self {
            registry,
            rounds_started,
            rounds_completed,
            rounds_failed,
            round_seconds,
            sessions_started,
            sessions_completed,
            sessions_aborted,
            stage_seconds,
            participants_online,
            dropouts,
            refusals,
            participant_refusals,
            bytes_received,
            bytes_sent,
            jobs_ended,
            jobs_converged,
            seen: Mutex::new(Seen::default()),
        }
    }

    /// Sets the number of connected participants (read from the hub at each scrape).
    pub fn set_participants_online(&self, n: usize) {
        self.participants_online
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// The OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String does not fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn kind(k: &str) -> KindLabel {
    KindLabel { kind: k.to_owned() }
}

impl EventSink for Metrics {
    fn emit(&self, event: &Event) {
        match event {
            Event::SessionStarted {
                job,
                round,
                kind: k,
                participants,
                ..
            } => {
                self.sessions_started.get_or_create(&kind(k)).inc();
                let mut seen = self.seen();
                seen.invited.insert((*job, *round, k), *participants);
                if seen.last_round != Some((*job, *round)) {
                    seen.last_round = Some((*job, *round));
                    self.rounds_started.inc();
                }
            }
            Event::JobStarted { .. } => {
                self.seen().last_round = None;
            }
            Event::StageClosed { stage, seconds, .. } => {
                self.stage_seconds
                    .get_or_create(&StageLabel {
                        stage: (*stage).to_owned(),
                    })
                    .observe(*seconds);
            }
            Event::SessionCompleted {
                job,
                round,
                kind: k,
                survivors,
                bytes_up,
                bytes_down,
                ..
            } => {
                self.sessions_completed.get_or_create(&kind(k)).inc();
                self.bytes_received.inc_by(*bytes_up);
                self.bytes_sent.inc_by(*bytes_down);
                if let Some(invited) = self.seen().invited.remove(&(*job, *round, k)) {
                    self.dropouts
                        .inc_by(invited.saturating_sub(survivors.len()) as u64);
                }
            }
            Event::AttemptFailed {
                job,
                round,
                kind: k,
                retrying,
                ..
            } => {
                self.sessions_aborted.get_or_create(&kind(k)).inc();
                self.seen().invited.remove(&(*job, *round, k));
                if !retrying {
                    self.rounds_failed.inc();
                }
            }
            Event::Refused { name, kind: k, .. } => {
                self.refusals.get_or_create(&kind(k)).inc();
                self.participant_refusals
                    .get_or_create(&ParticipantLabel {
                        participant: name.clone(),
                    })
                    .inc();
            }
            Event::RoundCompleted { seconds, .. } => {
                self.rounds_completed.inc();
                self.round_seconds.observe(*seconds);
            }
            Event::Converged { .. } => {
                self.jobs_converged.inc();
            }
            Event::JobEnded { state, .. } => {
                self.jobs_ended
                    .get_or_create(&StateLabel {
                        state: state.clone(),
                    })
                    .inc();
            }
            _ => {}
        }
    }
}

/// What `/metrics` and `/healthz` read.
pub struct Endpoint {
    pub metrics: Arc<Metrics>,
    pub hub: Arc<Hub>,
    pub store: Arc<Store>,
    /// Whether the gRPC server is serving.
    pub serving: Arc<AtomicBool>,
}

/// Connections served at once; more wait.
const MAX_CONNECTIONS: usize = 16;

/// Serves `/metrics` and `/healthz` over plain HTTP/1.1 ([`fedrisk_probe`]) until the task
/// is dropped.
pub async fn serve(listener: TcpListener, endpoint: Arc<Endpoint>) {
    fedrisk_probe::serve(listener, MAX_CONNECTIONS, move |path| endpoint.answer(path)).await
}

impl Endpoint {
    /// The answer to a request for `path`; `None` for an unknown path.
    fn answer(&self, path: &str) -> Option<Response> {
        match path {
            "/metrics" => {
                self.metrics
                    .set_participants_online(self.hub.connected().len());
                Some(Response {
                    status: 200,
                    content_type: fedrisk_probe::OPENMETRICS,
                    body: self.metrics.encode(),
                })
            }
            "/healthz" => Some(
                match (
                    self.store.schema_version(),
                    self.serving.load(Ordering::SeqCst),
                ) {
                    (Ok(_), true) => Response::text(200, "ok\n"),
                    (Err(e), _) => Response::text(503, format!("store unreachable: {e}\n")),
                    (Ok(_), false) => Response::text(503, "the gRPC server is not serving\n"),
                },
            ),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .and_then(|l| l[series.len()..].trim().parse().ok())
    }

    #[test]
    fn events_become_counts_and_no_label_carries_a_value() {
        let m = Metrics::new();
        for (round, kind) in [(0, "magnitudes"), (0, "statistics"), (1, "update")] {
            m.emit(&Event::SessionStarted {
                job: 1,
                round,
                kind,
                participants: 4,
                threshold: 3,
            });
            m.emit(&Event::StageClosed {
                job: 1,
                round,
                kind,
                stage: "advertised",
                received: 4,
                expected: 4,
                seconds: 0.02,
            });
            m.emit(&Event::SessionCompleted {
                job: 1,
                round,
                kind,
                survivors: if kind == "update" {
                    vec![1, 2, 3]
                } else {
                    vec![1, 2, 3, 4]
                },
                aggregate_hash: "ab".repeat(32),
                bytes_up: 100,
                bytes_down: 50,
            });
        }
        m.emit(&Event::SessionStarted {
            job: 1,
            round: 1,
            kind: "evaluation",
            participants: 4,
            threshold: 3,
        });
        m.emit(&Event::AttemptFailed {
            job: 1,
            round: 1,
            kind: "evaluation",
            reason: "x".into(),
            retrying: true,
        });
        m.emit(&Event::Refused {
            job: 1,
            round: 1,
            participant: 3,
            name: "bank_c".into(),
            kind: "policy".into(),
            reason: "too few peers".into(),
        });
        m.emit(&Event::RoundCompleted {
            job: 1,
            round: 1,
            survivors: 3,
            auc: Some(0.7512),
            seconds: 1.5,
        });
        m.set_participants_online(4);
        let text = m.encode();
        assert_eq!(value(&text, "fedrisk_rounds_started_total"), Some(2.0));
        assert_eq!(value(&text, "fedrisk_rounds_completed_total"), Some(1.0));
        assert_eq!(
            value(&text, "fedrisk_sessions_completed_total{kind=\"update\"}"),
            Some(1.0)
        );
        assert_eq!(
            value(&text, "fedrisk_sessions_aborted_total{kind=\"evaluation\"}"),
            Some(1.0)
        );
        assert_eq!(value(&text, "fedrisk_dropouts_total"), Some(1.0));
        assert_eq!(value(&text, "fedrisk_received_bytes_total"), Some(300.0));
        assert_eq!(value(&text, "fedrisk_participants_online"), Some(4.0));
        assert_eq!(
            value(&text, "fedrisk_refusals_total{kind=\"policy\"}"),
            Some(1.0)
        );
        assert_eq!(
            value(&text, "fedrisk_stage_seconds_count{stage=\"advertised\"}"),
            Some(3.0)
        );
        // Neither the AUC nor the refusal's words nor a hash reach the metrics.
        assert!(!text.contains("0.7512"), "{text}");
        assert!(!text.contains("too few peers"), "{text}");
        assert!(!text.contains("abab"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }
}

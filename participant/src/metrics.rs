//! The agent's Prometheus metrics (OpenMetrics text, `prometheus-client`), served on request
//! over plain HTTP with `/metrics` and `/healthz` (`run --metrics ADDR`).
//!
//! The agent counts through the free functions below (one call at each point of
//! [`crate::agent`]); they are cheap and count whether or not an endpoint serves them.
//!
//! Invariant: labels are refusal kinds and secure-aggregation stage names only, and values
//! are counts, byte sizes and durations: no data value, key, sum, institution name or
//! message content ever reaches a metric.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Instant;

use fedrisk_probe::Response;
use fedrisk_proto::v1;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabel {
    stage: &'static str,
}

/// The agent's metrics.
pub struct AgentMetrics {
    registry: Registry,
    tasks_received: Counter,
    tasks_refused: Family<ReasonLabel, Counter>,
    sessions_completed: Counter,
    sessions_aborted: Counter,
    compute_seconds: Histogram,
    stage_seconds: Family<StageLabel, Histogram>,
    sent_bytes: Counter,
    received_bytes: Counter,
    connected: Gauge,
    is_connected: AtomicBool,
    /// When the session in flight last moved: the task's arrival (computing) or this agent's
    /// last upload and its stage (waiting for the coordinator to close that stage).
    clock: Mutex<Clock>,
}

#[derive(Default)]
enum Clock {
    #[default]
    Idle,
    Computing(Instant),
    Waiting(&'static str, Instant),
}

impl Default for AgentMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl AgentMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("fedrisk_agent");
        let tasks_received = Counter::default();
        let tasks_refused = Family::<ReasonLabel, Counter>::default();
        let sessions_completed = Counter::default();
        let sessions_aborted = Counter::default();
        // 1 ms to about 9 minutes.
        let compute_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 20));
        let stage_seconds = Family::<StageLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 20))
        });
        let sent_bytes = Counter::default();
        let received_bytes = Counter::default();
        let connected = Gauge::default();
        registry.register(
            "tasks_received",
            "Compute tasks received (one per secure-aggregation session this agent is invited to)",
            tasks_received.clone(),
        );
        registry.register(
            "tasks_refused",
            "Sessions this agent refused or left, by reason (schema, data, policy, task)",
            tasks_refused.clone(),
        );
        registry.register(
            "sessions_completed",
            "Sessions in which this agent sent its unmasking response (its part done)",
            sessions_completed.clone(),
        );
        registry.register(
            "sessions_aborted",
            "Sessions that ended for this agent without its unmasking response: aborted by the coordinator or left on a refusal",
            sessions_aborted.clone(),
        );
        registry.register(
            "compute_seconds",
            "From a task's arrival to this agent's first secure-aggregation message (loading the data and computing the contribution)",
            compute_seconds.clone(),
        );
        registry.register(
            "stage_seconds",
            "From this agent's upload at a stage to the coordinator's next message, by stage (advertise_keys, share_keys, masked_input, consistency_check)",
            stage_seconds.clone(),
        );
        registry.register(
            "sent_bytes",
            "Secure-aggregation payload bytes sent to the coordinator",
            sent_bytes.clone(),
        );
        registry.register(
            "received_bytes",
            "Task, task-content and secure-aggregation payload bytes received from the coordinator",
            received_bytes.clone(),
        );
        registry.register(
            "connected",
            "1 while this agent holds an open task stream to the coordinator, else 0",
            connected.clone(),
        );
        Self {
            registry,
            tasks_received,
            tasks_refused,
            sessions_completed,
            sessions_aborted,
            compute_seconds,
            stage_seconds,
            sent_bytes,
            received_bytes,
            connected,
            is_connected: AtomicBool::new(false),
            clock: Mutex::new(Clock::Idle),
        }
    }

    /// The OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String does not fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn is_connected(&self) -> bool {
        self.is_connected.load(Ordering::SeqCst)
    }

    fn clock(&self) -> std::sync::MutexGuard<'_, Clock> {
        self.clock.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn task_received(&self, bytes: usize) {
        self.tasks_received.inc();
        self.received_bytes.inc_by(bytes as u64);
        *self.clock() = Clock::Computing(Instant::now());
    }

    fn content_received(&self, bytes: usize) {
        self.received_bytes.inc_by(bytes as u64);
    }

    fn delivered(&self, bytes: usize) {
        self.received_bytes.inc_by(bytes as u64);
        let mut clock = self.clock();
        if let Clock::Waiting(stage, since) = *clock {
            self.stage_seconds
                .get_or_create(&StageLabel { stage })
                .observe(since.elapsed().as_secs_f64());
            *clock = Clock::Idle;
        }
    }

    fn sent(&self, stage: i32, bytes: usize) {
        self.sent_bytes.inc_by(bytes as u64);
        let stage = stage_name(stage);
        let mut clock = self.clock();
        if let Clock::Computing(since) = *clock {
            self.compute_seconds.observe(since.elapsed().as_secs_f64());
        }
        if stage == "unmasking" {
            self.sessions_completed.inc();
            *clock = Clock::Idle;
        } else {
            *clock = Clock::Waiting(stage, Instant::now());
        }
    }

    fn refused(&self, kind: v1::RefusalKind) {
        self.tasks_refused
            .get_or_create(&ReasonLabel {
                reason: refusal_name(kind),
            })
            .inc();
    }

    fn aborted(&self) {
        self.sessions_aborted.inc();
        *self.clock() = Clock::Idle;
    }

    fn set_connected(&self, up: bool) {
        self.is_connected.store(up, Ordering::SeqCst);
        self.connected.set(i64::from(up));
    }
}

fn stage_name(stage: i32) -> &'static str {
    match v1::SecAggStage::try_from(stage) {
        Ok(v1::SecAggStage::AdvertiseKeys) => "advertise_keys",
        Ok(v1::SecAggStage::ShareKeys) => "share_keys",
        Ok(v1::SecAggStage::MaskedInput) => "masked_input",
        Ok(v1::SecAggStage::ConsistencyCheck) => "consistency_check",
        Ok(v1::SecAggStage::Unmasking) => "unmasking",
        _ => "unknown",
    }
}

fn refusal_name(kind: v1::RefusalKind) -> &'static str {
    match kind {
        v1::RefusalKind::Schema => "schema",
        v1::RefusalKind::Data => "data",
        v1::RefusalKind::Policy => "policy",
        v1::RefusalKind::Task => "task",
        _ => "unspecified",
    }
}

/// The process's metrics: one agent per process (in-process simulations run several and
/// share them; nothing serves them there).
pub static METRICS: LazyLock<AgentMetrics> = LazyLock::new(AgentMetrics::new);

/// A compute task arrived (`bytes`: the task's size).
pub fn task_received(bytes: usize) {
    METRICS.task_received(bytes);
}

/// A task content was fetched.
pub fn content_received(bytes: usize) {
    METRICS.content_received(bytes);
}

/// A secure-aggregation message was delivered to this agent.
pub fn delivered(bytes: usize) {
    METRICS.delivered(bytes);
}

/// The coordinator accepted this agent's upload at `stage` (its wire number).
pub fn sent(stage: i32, bytes: usize) {
    METRICS.sent(stage, bytes);
}

/// This agent refused a session (sent the refusal to the coordinator).
pub fn refused(kind: v1::RefusalKind) {
    METRICS.refused(kind);
}

/// The session in flight ended without this agent's part done.
pub fn aborted() {
    METRICS.aborted();
}

/// The task stream opened (true) or closed (false).
pub fn set_connected(up: bool) {
    METRICS.set_connected(up);
}

/// Connections served at once; more wait.
const MAX_CONNECTIONS: usize = 8;

/// Serves `/metrics` and `/healthz` over plain HTTP/1.1 ([`fedrisk_probe`]) until the task
/// is dropped.
pub async fn serve(listener: TcpListener, metrics: &'static AgentMetrics) {
    fedrisk_probe::serve(listener, MAX_CONNECTIONS, move |path| metrics.answer(path)).await
}

impl AgentMetrics {
    /// The answer to a request for `path`; `None` for an unknown path.
    fn answer(&self, path: &str) -> Option<Response> {
        match path {
            "/metrics" => Some(Response {
                status: 200,
                content_type: fedrisk_probe::OPENMETRICS,
                body: self.encode(),
            }),
            "/healthz" if self.is_connected() => Some(Response::text(200, "ok\n")),
            "/healthz" => Some(Response::text(
                503,
                "not connected to the coordinator (reconnecting)\n",
            )),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One request through the shared endpoint's rules, as (status, body).
    fn respond(method: &str, path: &str, m: &AgentMetrics) -> (u16, String) {
        let r = fedrisk_probe::respond(method, path, &|p| m.answer(p));
        (r.status, r.body)
    }

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .and_then(|l| l[series.len()..].trim().parse().ok())
    }

    #[test]
    fn a_session_moves_the_counts_and_stage_timings() {
        let m = AgentMetrics::new();
        m.set_connected(true);
        m.task_received(1000);
        m.content_received(500);
        for stage in [
            v1::SecAggStage::AdvertiseKeys,
            v1::SecAggStage::ShareKeys,
            v1::SecAggStage::MaskedInput,
            v1::SecAggStage::ConsistencyCheck,
        ] {
            m.sent(stage as i32, 10);
            m.delivered(20);
        }
        m.sent(v1::SecAggStage::Unmasking as i32, 10);
        m.task_received(1000);
        m.refused(v1::RefusalKind::Policy);
        m.aborted();
        let text = m.encode();
        assert_eq!(
            value(&text, "fedrisk_agent_tasks_received_total"),
            Some(2.0)
        );
        assert_eq!(
            value(
                &text,
                "fedrisk_agent_tasks_refused_total{reason=\"policy\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            value(&text, "fedrisk_agent_sessions_completed_total"),
            Some(1.0)
        );
        assert_eq!(
            value(&text, "fedrisk_agent_sessions_aborted_total"),
            Some(1.0)
        );
        assert_eq!(value(&text, "fedrisk_agent_sent_bytes_total"), Some(50.0));
        assert_eq!(
            value(&text, "fedrisk_agent_received_bytes_total"),
            Some(2580.0)
        );
        assert_eq!(
            value(&text, "fedrisk_agent_compute_seconds_count"),
            Some(1.0)
        );
        for stage in [
            "advertise_keys",
            "share_keys",
            "masked_input",
            "consistency_check",
        ] {
            assert_eq!(
                value(
                    &text,
                    &format!("fedrisk_agent_stage_seconds_count{{stage=\"{stage}\"}}")
                ),
                Some(1.0),
                "{stage}"
            );
        }
        assert_eq!(value(&text, "fedrisk_agent_connected"), Some(1.0));
        assert_eq!(respond("GET", "/healthz", &m).0, 200);
        m.set_connected(false);
        assert_eq!(respond("GET", "/healthz", &m).0, 503);
        assert_eq!(respond("GET", "/other", &m).0, 404);
        assert_eq!(respond("POST", "/metrics", &m).0, 405);
        assert!(m.encode().contains("fedrisk_agent_connected 0"));
    }
}

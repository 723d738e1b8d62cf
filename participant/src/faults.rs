//! Fault injection for end-to-end tests, compiled only with the `test-faults` feature (off
//! in release builds of the agent; the end-to-end test crate turns it on).
//!
//! `FEDRISK_TEST_FAULT=<what>@<round>[:<kind>]` (kind: a round kind's label such as
//! `evaluation`; any session of the round without it): `hang-before-share-keys`,
//! `hang-before-masked-input`,
//! `hang-before-unmask` (the agent stops answering, so a test can kill it at that point),
//! `wrong-length` (a truncated masked input before the real one), `replay` (its previous
//! round's masked input before the real one) or `off-commitment` (a masked input one unit
//! off in its first value word, so it no longer opens its commitment). `FEDRISK_TEST_DELAY_MS` slows every
//! contribution, so a test can stop the coordinator in the middle of a job; `FEDRISK_TEST_STAGE_DELAY_MS`
//! slows every later secure-aggregation reply.

use std::time::Duration;

/// A fault to inject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// What to do.
    pub what: String,
    /// In which round.
    pub round: u32,
    /// In which kind of session of the round (`None`: any).
    pub kind: Option<String>,
}

impl Fault {
    /// Whether this fault is `what` in the session of `round` and `kind`.
    pub fn hits(&self, what: &str, round: u32, kind: &str) -> bool {
        self.what == what && self.round == round && self.kind.as_deref().is_none_or(|k| k == kind)
    }
}

/// With `off-commitment`, the masked input is one unit off in its first value word: what it
/// adds no longer opens the commitment its advertisement signed.
pub fn off_commitment(
    msg: &mut fedrisk_secagg::Message,
    fault: Option<&Fault>,
    round: u32,
    kind: &str,
) {
    if let fedrisk_secagg::Message::MaskedInput(m) = msg
        && fault.is_some_and(|f| f.hits("off-commitment", round, kind))
        && let Some(w) = m.vector.get_mut(1)
    {
        tracing::warn!("test fault: a masked input that does not open its commitment");
        *w = w.wrapping_add(1);
    }
}

/// The fault named in the environment, if any.
#[cfg(feature = "test-faults")]
pub fn from_env() -> Option<Fault> {
    let v = std::env::var("FEDRISK_TEST_FAULT").ok()?;
    let (what, at) = v.split_once('@')?;
    let (round, kind) = match at.split_once(':') {
        Some((r, k)) => (r, Some(k.to_string())),
        None => (at, None),
    };
    Some(Fault {
        what: what.to_string(),
        round: round.parse().ok()?,
        kind,
    })
}

/// Without the feature there are no faults.
#[cfg(not(feature = "test-faults"))]
pub fn from_env() -> Option<Fault> {
    None
}

/// The delay before each contribution, if any.
pub fn delay() -> Option<Duration> {
    env_delay("FEDRISK_TEST_DELAY_MS")
}

/// The delay before each later secure-aggregation reply (`FEDRISK_TEST_STAGE_DELAY_MS`), so
/// a test can watch a session with one stage closed and the next one open.
pub fn stage_delay() -> Option<Duration> {
    env_delay("FEDRISK_TEST_STAGE_DELAY_MS")
}

#[cfg(feature = "test-faults")]
fn env_delay(var: &str) -> Option<Duration> {
    std::env::var(var)
        .ok()?
        .parse()
        .ok()
        .map(Duration::from_millis)
}

/// Without the feature there is no delay.
#[cfg(not(feature = "test-faults"))]
fn env_delay(_var: &str) -> Option<Duration> {
    None
}

/// Stops this agent for good (the test kills it).
pub fn hang_forever() -> ! {
    tracing::warn!("test fault: this agent stops here");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// `FEDRISK_TEST_FLOOD=<count>:<bytes>`: once joined, the agent sends `count` secagg uploads
/// of `bytes` each at once, as an authenticated participant would that tries to exhaust the
/// coordinator's memory, then goes on as usual.
#[cfg(feature = "test-faults")]
pub fn flood() -> Option<(usize, usize)> {
    let v = std::env::var("FEDRISK_TEST_FLOOD").ok()?;
    let (count, bytes) = v.split_once(':')?;
    Some((count.parse().ok()?, bytes.parse().ok()?))
}

/// Without the feature there is no flood.
#[cfg(not(feature = "test-faults"))]
pub fn flood() -> Option<(usize, usize)> {
    None
}

//! fedrisk coordinator library: the connection hub, the round engine (a thin driver of
//! `fedrisk-rounds`' `JobPlan` and `fedrisk-secagg`'s coordinator session), the job
//! scheduler, the SQLite store, the events it emits and the gRPC services. Identities and
//! TLS come from `fedrisk-identity`; the `fedrisk-coordinator` command (in
//! `fedrisk-coordinator-cli`) wires these together.

pub mod audit;
pub mod budget;
pub mod engine;
pub mod events;
pub mod faults;
pub mod hub;
mod lineage;
pub mod live;
pub mod metrics;
pub mod report;
pub mod scheduler;
pub mod server;
pub mod service;
pub mod store;

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

//! The participant agent's library: what the `fedrisk-participant` binary is built from, and
//! what the lab's in-process federations start.

pub mod agent;
pub mod delivery;
pub mod faults;
pub mod ledger;
pub mod lineage;
pub mod loader;
pub mod metrics;
pub mod progress;
pub mod prove;

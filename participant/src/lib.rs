//! The participant agent's library: what the `fedrisk-participant` binary is built from, and
//! what the coordinator's demo and the end-to-end tests start in-process.

pub mod agent;
pub mod tls;
pub mod worker;

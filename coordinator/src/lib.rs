//! fedrisk coordinator library: the federation PKI, the mutual-TLS server plumbing, the
//! SQLite store, the connection hub, the round engine, the job scheduler and the gRPC
//! services. The binary `fedrisk-coordinator` only wires these together.

pub mod engine;
pub mod hub;
pub mod job;
pub mod pki;
pub mod scheduler;
pub mod server;
pub mod service;
pub mod store;
pub mod tls;

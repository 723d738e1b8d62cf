//! End-to-end tests: one binary, modules per area. Every test starts the real
//! `fedrisk-coordinator` and `fedrisk-participant` release binaries over loopback with
//! mutual TLS. `cargo test --workspace --release` builds them (the agent with its
//! `test-faults` feature); alone: `cargo build --release -p fedrisk-coordinator-cli -p
//! fedrisk-participant --features fedrisk-participant/test-faults`.

mod acceptance;
mod audit;
mod binning;
mod certs;
mod chaos;
mod custody;
mod dropout;
mod exports;
mod harness;
mod malicious;
mod netfault;
mod operator;
mod ops;
mod privacy;
mod report;
mod restart;
mod scale;
mod sources;

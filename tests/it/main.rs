//! End-to-end tests: one binary, modules per area. Every test starts the real
//! `fedrisk-coordinator` and `fedrisk-participant` release binaries over loopback with
//! mutual TLS; build them first with
//! `cargo build --release -p fedrisk-coordinator -p fedrisk-participant`.

mod acceptance;
mod certs;
mod dropout;
mod harness;
mod malicious;
mod operator;
mod restart;
mod scale;

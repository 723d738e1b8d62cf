//! The participant agent's library: what the `fedrisk-participant` binary is built from, and
//! what end-to-end tests drive directly.

pub mod tls;

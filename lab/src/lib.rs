//! The lab: whole federations on one machine over loopback with real mutual TLS, for the
//! `demo`, `simulate` and `bench` commands and for end-to-end tests. Not linked into the
//! coordinator server library.

pub mod bench;
pub mod demo;
pub mod federation;
pub mod simulate;

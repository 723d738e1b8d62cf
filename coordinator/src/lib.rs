//! fedrisk coordinator library: the federation PKI, the mutual-TLS server plumbing and the
//! SQLite store. The round engine and the gRPC services are built on these.

pub mod pki;
pub mod store;
pub mod tls;

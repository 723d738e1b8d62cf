//! Integration tests of the identity crate over real gRPC and TLS, in one binary.

use fedrisk_identity::client as participant_tls;

mod peers;
mod tls;

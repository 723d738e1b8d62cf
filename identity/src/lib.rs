//! Who belongs to a federation, and how each end proves it.
//!
//! - [`pki`]: the federation CA, certificate issue and revocation, roles, the roster.
//! - [`server`]: the coordinator's mutual-TLS acceptor with a roster-checking client
//!   verifier, and the per-request [`server::Authenticated`] identity.
//! - [`client`]: an agent's or operator's TLS identity, the connection to the coordinator,
//!   and the check of peers' certificates that keeps the coordinator from substituting
//!   secure-aggregation keys.
//!
//! Architecture invariant: this crate knows nothing of rounds, models or secure
//! aggregation; it turns files and certificates into verified identities.

pub mod client;
pub mod pki;
pub mod server;
pub mod signer;

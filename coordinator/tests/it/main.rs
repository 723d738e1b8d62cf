//! Integration tests of the coordinator library, in one binary so it links once.

// The client the agents use is the one tested against the server here.
use fedrisk_participant::tls as participant_tls;

mod store_crash;
mod tls;

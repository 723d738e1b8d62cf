//! A lying coordinator for end-to-end tests, compiled only with the `test-faults` feature
//! (never in release builds of the server; the end-to-end test crate turns it on):
//! `FEDRISK_TEST_EXTRA_PEER=<id>:<certificate PEM file>` adds that certificate to every
//! session's peers, as a coordinator would that pads a session with an identity it controls.

use fedrisk_proto::v1::PeerIdentity;

/// The peers to relay, with the test's extra one when the feature and variable are set.
#[cfg(feature = "test-faults")]
pub fn extra_peers(mut peers: Vec<PeerIdentity>) -> Vec<PeerIdentity> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let Ok(v) = std::env::var("FEDRISK_TEST_EXTRA_PEER") else {
        return peers;
    };
    let Some((id, path)) = v.split_once(':') else {
        return peers;
    };
    let (Ok(id), Ok(der)) = (id.parse(), CertificateDer::from_pem_file(path)) else {
        return peers;
    };
    tracing::warn!(
        participant = id,
        "test fault: relaying an extra peer certificate"
    );
    peers.push(PeerIdentity {
        participant_id: id,
        certificate_der: der.to_vec(),
    });
    peers
}

/// Without the feature the peers go as they are.
#[cfg(not(feature = "test-faults"))]
pub fn extra_peers(peers: Vec<PeerIdentity>) -> Vec<PeerIdentity> {
    peers
}

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
        certificate_sha256: fedrisk_rounds::task::content_hash(&der),
        certificate_der: prost::bytes::Bytes::copy_from_slice(&der),
    });
    peers
}

/// Without the feature the peers go as they are.
#[cfg(not(feature = "test-faults"))]
pub fn extra_peers(peers: Vec<PeerIdentity>) -> Vec<PeerIdentity> {
    peers
}

/// `FEDRISK_TEST_CRAFT_MODEL=<round>`: that round's evaluation scores a model of the
/// coordinator's making (one non-zero coefficient), as a curious coordinator would that
/// wants a histogram of one feature. The task is bound as sent, so only the agents' lineage
/// check can tell. `None`: send the request as the plan made it.
#[cfg(feature = "test-faults")]
pub fn craft_model(
    req: &fedrisk_rounds::SessionRequest,
    job_id: u64,
) -> Option<fedrisk_rounds::SessionRequest> {
    let wanted = std::env::var("FEDRISK_TEST_CRAFT_MODEL")
        .ok()
        .and_then(|v| v.parse::<u32>().ok());
    if wanted != Some(req.round) || !matches!(req.label, "evaluation" | "update_eval") {
        return None;
    }
    let mut task = fedrisk_rounds::Task::decode(&req.task, job_id, req.round).ok()?;
    let model = match &mut task.params {
        fedrisk_rounds::TaskParams::Evaluation(e) => &mut e.model,
        fedrisk_rounds::TaskParams::UpdateEval(u) => &mut u.model,
        _ => return None,
    };
    model.theta.iter_mut().for_each(|t| *t = 0.0);
    if let Some(t) = model.theta.first_mut() {
        *t = 25.0;
    }
    tracing::warn!(
        round = req.round,
        "test fault: crafting the evaluation's model"
    );
    let mut crafted = req.clone();
    crafted.task = task.encode();
    crafted.binding = fedrisk_rounds::task::binding(&crafted.task.bytes);
    Some(crafted)
}

/// Without the feature the request goes as the plan made it.
#[cfg(not(feature = "test-faults"))]
pub fn craft_model(
    _req: &fedrisk_rounds::SessionRequest,
    _job_id: u64,
) -> Option<fedrisk_rounds::SessionRequest> {
    None
}

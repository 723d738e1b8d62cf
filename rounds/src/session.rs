//! The secure-aggregation parameters of a session the plan asked for, among `n` invited
//! participants: one rule, used by the engine and by the in-memory tests alike.

use fedrisk_secagg::{
    HARARY_COLLUDER_FRACTION, HARARY_PRIVACY_BITS, ParticipantPolicy, SecurityMode, SessionBinding,
    SessionParams, recommended_graph,
};

use crate::fixed::fixed_point_for;
use crate::plan::SessionRequest;
use crate::spec::JobSpec;

/// Share of a neighbourhood a SecAgg+ graph is planned to lose within one session.
pub const GRAPH_DROPOUT_FRACTION: f64 = 0.05;

/// Session parameters for `request` among `participants` (sorted roster ids).
pub fn session_params(
    spec: &JobSpec,
    request: &SessionRequest,
    participants: Vec<u32>,
) -> SessionParams {
    let n = participants.len();
    let threshold = spec.threshold_for(n);
    let max_colluders = (2 * threshold)
        .saturating_sub(n as u32 + 1)
        .min(threshold.saturating_sub(1));
    // A SecAgg+ graph is planned for the colluder share default agents assume and their
    // minimum neighbourhood threshold, so that they accept it, and for a few dropouts per
    // neighbourhood (more fail the session, which is retried: availability, not privacy).
    let policy = ParticipantPolicy::default();
    SessionParams {
        participants,
        threshold,
        vector_len: request.vector_len as u32,
        fixed_point: fixed_point_for(n, request.clip),
        graph: recommended_graph(
            n,
            GRAPH_DROPOUT_FRACTION,
            HARARY_COLLUDER_FRACTION,
            policy.min_threshold_fraction,
            HARARY_PRIVACY_BITS,
        ),
        security: SecurityMode::Active { max_colluders },
        dp_sigma: None,
        commit_words: request.commit_words,
    }
}

/// What a session is bound to: the federation, the round and the task's hash. Agents build
/// it from what they received, the coordinator from what it sent.
pub fn session_binding(federation_id: &str, round: u32, task_binding: [u8; 32]) -> SessionBinding {
    SessionBinding {
        federation_id: federation_id.as_bytes().to_vec(),
        round: u64::from(round),
        model_hash: task_binding,
    }
}

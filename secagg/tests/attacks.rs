//! Attacks on the size of a sum: a sum over two participants gives each of them the
//! other's input, and a coordinator choosing the session or the survivor set could make
//! one. Every participant refuses both (its policy's `min_distinct`, default 3).

use fedrisk_secagg::sim::{DropPoint, Sim, SimConfig, random_inputs};
use fedrisk_secagg::*;

#[test]
fn attack_a_two_party_session_is_refused_by_every_participant() {
    let mut cfg = SimConfig::new(2, 4);
    cfg.threshold = 2;
    let inputs = random_inputs(&cfg);
    let mut sim = Sim::new(cfg, inputs).expect("sim");
    let report = sim.run();
    assert!(report.output.is_err(), "a two-party sum was produced");
    for id in 0..2 {
        assert!(
            matches!(sim.error_of(id), Some(SecAggError::PolicyViolation(_))),
            "participant {id}: {:?}",
            sim.error_of(id)
        );
    }
}

#[test]
fn attack_a_survivor_set_of_two_is_not_signed() {
    // Three invited, threshold 2: the coordinator drops one after key sharing, so that
    // the sum would be over the remaining two.
    let mut cfg = SimConfig::new(3, 4);
    cfg.threshold = 2;
    cfg.policy.min_threshold_fraction = 0.5;
    let inputs = random_inputs(&cfg);
    let mut sim = Sim::new(cfg, inputs).expect("sim");
    sim.drops.insert(2, DropPoint::AfterShareKeys);
    let report = sim.run();
    assert!(
        report.output.is_err(),
        "a sum over two survivors was produced"
    );
    for id in 0..2 {
        assert!(
            matches!(sim.error_of(id), Some(SecAggError::PolicyViolation(_))),
            "participant {id} signed a two-member survivor set: {:?}",
            sim.error_of(id)
        );
    }
    // With three survivors the same session completes.
    let mut cfg = SimConfig::new(3, 4);
    cfg.threshold = 2;
    cfg.policy.min_threshold_fraction = 0.5;
    let inputs = random_inputs(&cfg);
    let mut sim = Sim::new(cfg, inputs).expect("sim");
    assert!(sim.run().output.is_ok());
}

#[test]
fn attack_a_sparse_graph_for_a_small_session_is_refused() {
    // A ring (degree 2) among six, neighbourhood threshold 2: dropping two opposite members
    // would let the coordinator unmask a sum over two neighbours.
    let mut cfg = SimConfig::new(6, 4);
    cfg.threshold = 4;
    cfg.graph = GraphKind::Harary {
        degree: 2,
        share_threshold: 2,
    };
    let params = cfg.params();
    let e = cfg.policy.check(&params).unwrap_err();
    assert!(matches!(e, SecAggError::PolicyViolation(_)), "{e}");
}

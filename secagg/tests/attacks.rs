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

/// The key list the coordinator is about to broadcast, for a test to tamper with.
fn pending_key_list(sim: &mut Sim) -> &mut KeyList {
    match sim.outbox.first_mut() {
        Some(Outgoing::Broadcast {
            message: Message::KeyList(k),
            ..
        }) => k,
        _ => panic!("the key list is the coordinator's next message"),
    }
}

#[test]
fn attack_a_forged_key_list_entry_outside_the_neighbourhood_is_refused() {
    // SecAgg+ among 120, degree 6: every entry places a member on the ring, so a forged
    // entry for a non-neighbour would move a participant's neighbourhood to ids of the
    // coordinator's choosing. Every participant checks every entry, not only its
    // neighbours'.
    let mut cfg = SimConfig::new(120, 3);
    cfg.graph = GraphKind::Harary {
        degree: 6,
        share_threshold: 5,
    };
    cfg.policy.min_harary_participants = 100;
    cfg.policy.min_threshold_fraction = 0.5;
    cfg.policy.harary_privacy_bits = 0; // the weak graph itself is another test's subject
    let mut sim = Sim::new(cfg.clone(), random_inputs(&cfg)).expect("sim");
    sim.advertise().expect("advertise");
    let forged = 57u32;
    pending_key_list(&mut sim).entries[forged as usize].s_pk = [9u8; 32];
    let _ = sim.share_keys();
    for id in (0..120u32).filter(|id| *id != forged) {
        assert!(
            matches!(sim.error_of(id), Some(SecAggError::BadSignature(f)) if *f == forged),
            "participant {id} accepted a forged entry for {forged}: {:?}",
            sim.error_of(id)
        );
    }
}

#[test]
fn attack_a_member_shown_another_key_list_releases_nothing_and_is_not_summed() {
    // The coordinator leaves participant 5 out of the key list it shows participant 0
    // (claiming it never advertised), and shows the others the full list: their views of
    // U1, hence their graphs and the U1 hash each signs with U3, differ. Participant 0
    // must not end up releasing shares or being summed under a view nobody else shares.
    let mut cfg = SimConfig::new(7, 3);
    cfg.threshold = 5;
    let mut sim = Sim::new(cfg.clone(), random_inputs(&cfg)).expect("sim");
    sim.advertise().expect("advertise");
    let (full, recipients) = match sim.outbox.pop() {
        Some(Outgoing::Broadcast {
            message: Message::KeyList(k),
            recipients,
        }) => (k, recipients),
        other => panic!("expected the key list, got {other:?}"),
    };
    let mut partial = full.clone();
    partial.entries.retain(|e| e.id != 5);
    sim.outbox.push(Outgoing::Broadcast {
        recipients: vec![0],
        message: Message::KeyList(partial),
    });
    sim.outbox.push(Outgoing::Broadcast {
        recipients: recipients.into_iter().filter(|r| *r != 0).collect(),
        message: Message::KeyList(full),
    });
    let output = sim
        .share_keys()
        .and_then(|_| sim.masked_input())
        .and_then(|_| sim.consistency())
        .and_then(|_| sim.unmask());
    assert!(
        !sim.released.contains_key(&0),
        "participant 0 released shares for a view of U1 nobody else signed"
    );
    assert!(
        sim.rejected.iter().any(|(id, _)| *id == 0),
        "the split view went unnoticed"
    );
    if let Ok(o) = output {
        assert!(!o.survivors.contains(&0));
        assert_eq!(o.sum, sim.plaintext_sum(&o.survivors));
    }
}

#[test]
fn attack_a_graph_passing_the_structural_rules_but_not_the_privacy_bound_is_refused() {
    // Degree 20 among 1000, neighbourhood threshold 15 (over two thirds of 21, more than
    // half of 20): with a tenth of the participants colluding, some neighbourhood holds
    // the 9 colluders that break it with probability far above 2^-40.
    let mut cfg = SimConfig::new(1000, 3);
    cfg.graph = GraphKind::Harary {
        degree: 20,
        share_threshold: 15,
    };
    let e = ParticipantPolicy::default()
        .check(&cfg.params())
        .unwrap_err();
    assert!(
        matches!(e, SecAggError::PolicyViolation(m) if m.contains("privacy bound")),
        "{e}"
    );
    let failure = harary_privacy_failure(1000, 20, 15, HARARY_COLLUDER_FRACTION);
    assert!(failure > 1e-3, "{failure}");
    // What a coordinator proposes for the same n passes the same check.
    cfg.graph = recommended_graph(
        1000,
        0.05,
        HARARY_COLLUDER_FRACTION,
        ParticipantPolicy::default().min_threshold_fraction,
        HARARY_PRIVACY_BITS,
    );
    assert!(matches!(cfg.graph, GraphKind::Harary { .. }));
    ParticipantPolicy::default()
        .check(&cfg.params())
        .expect("the recommended graph passes the default policy");
}

#[test]
fn attack_a_key_list_leaving_out_honest_members_to_raise_the_colluders_share_is_refused() {
    // The ring is drawn over the key list, not over the invitation: a coordinator that
    // lists every colluder but leaves honest advertisers out (or invites institutions it
    // knows are offline) raises the colluders' share of the ring. Each member recomputes
    // the privacy bound for the list it got. A graph the coordinator recommends survives
    // the dropouts it was planned for; a list a third shorter is refused.
    let n = 150;
    let mut cfg = SimConfig::new(n, 5);
    cfg.threshold = 100;
    cfg.graph = recommended_graph(
        n,
        0.05,
        HARARY_COLLUDER_FRACTION,
        ParticipantPolicy::default().min_threshold_fraction,
        HARARY_PRIVACY_BITS,
    );
    let GraphKind::Harary {
        degree,
        share_threshold,
    } = cfg.graph
    else {
        panic!("a Harary graph at n = {n}")
    };
    cfg.policy = ParticipantPolicy::default();
    cfg.policy.min_threshold_fraction = 0.6;
    // What the member computes, for the planned and for the shortened list.
    let bound = (-f64::from(HARARY_PRIVACY_BITS)).exp2();
    let planned = key_list_privacy_failure(n, n - 7, degree, share_threshold, 0.1);
    let shortened = key_list_privacy_failure(n, 100, degree, share_threshold, 0.1);
    assert!(planned <= bound, "{planned}");
    assert!(shortened > bound * 1e3, "{shortened}");

    let run = |left_out: usize| {
        let mut sim = Sim::new(cfg.clone(), random_inputs(&cfg)).expect("sim");
        for id in 0..left_out as u32 {
            sim.drops.insert(id * 3, DropPoint::BeforeAdvertise);
        }
        let report = sim.run();
        (sim, report)
    };
    let (_, honest) = run(7);
    let out = honest
        .output
        .expect("a list missing the planned dropouts is accepted");
    assert_eq!(Some(out.sum), honest.expected);
    let (sim, attacked) = run(50);
    assert!(attacked.output.is_err());
    let refused = (0..n as u32)
        .filter(|id| {
            matches!(sim.error_of(*id), Some(SecAggError::PolicyViolation(m)) if m.contains("leaves out"))
        })
        .count();
    assert_eq!(
        refused,
        n - 50,
        "every listed member refuses the shortened list"
    );
}

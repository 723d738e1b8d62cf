//! Hostile input inside a live session: one byte of one message, to or from any
//! participant at any stage, is changed in flight (a lying coordinator, a lying
//! participant, or corruption), and the whole session runs on in memory. Whatever the
//! byte, nothing panics, no participant releases twice, and any sum the coordinator
//! outputs is either the exact sum of its survivors' inputs or fails the commitment check
//! every agent applies before it uses a sum (`commit::verify_sum`): a changed message can
//! stop a session, never make it sum wrongly unnoticed.

use fedrisk_secagg::sim::{DropPoint, Sim, SimConfig, Tamper, random_inputs};
use fedrisk_secagg::*;
use proptest::prelude::*;

const STAGES: [Stage; 5] = [
    Stage::Advertise,
    Stage::ShareKeys,
    Stage::MaskedInput,
    Stage::ConsistencyCheck,
    Stage::Unmask,
];

const DROPS: [DropPoint; 4] = [
    DropPoint::AfterAdvertise,
    DropPoint::AfterShareKeys,
    DropPoint::AfterMaskedInput,
    DropPoint::AfterConsistency,
];

/// How a tampered session ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// No sum: the session stopped.
    Stopped,
    /// A sum that opens its survivors' commitments (and, checked, equals their inputs).
    Verified,
    /// A sum that the commitment check refuses.
    Caught,
}

/// Runs one tampered session and checks the property.
fn tampered_session(n: usize, seed: u64, tamper: Tamper, drop: Option<(u32, DropPoint)>) -> End {
    let cfg = SimConfig {
        seed,
        threads: 1,
        ..SimConfig::new(n, 6)
    };
    let inputs = random_inputs(&cfg);
    let mut sim = Sim::new(cfg, inputs).expect("simulation set-up");
    sim.tamper = Some(tamper);
    if let Some((id, at)) = drop {
        sim.drops.insert(id, at);
    }
    let report = sim.run();
    assert!(
        sim.tamper.is_none() || tamper.xor == 0 || drop.is_some(),
        "the tamper was never applied: {tamper:?}"
    );
    assert!(
        !sim.rejected
            .iter()
            .any(|(_, e)| matches!(e, SecAggError::AlreadyUnmasked)),
        "a participant released twice under {tamper:?}"
    );
    let Ok(output) = report.output else {
        return End::Stopped;
    };
    let verified = commit::verify_sum(
        &sim.session,
        &sim.roster,
        &output.sum,
        &output.blinding_sum,
        &output.commitments,
    )
    .is_ok();
    if verified {
        assert_eq!(
            Some(&output.sum),
            report.expected.as_ref(),
            "a sum that verifies differs from its survivors' inputs under {tamper:?}"
        );
        End::Verified
    } else {
        End::Caught
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    #[test]
    fn one_changed_byte_anywhere_never_panics_nor_sums_wrongly(
        stage in 0usize..5,
        to_coordinator in any::<bool>(),
        who in 0u32..5,
        pos in any::<usize>(),
        xor in 1u8..=255,
        seed in 1u64..1_000,
        drop in proptest::option::of((0u32..5, 0usize..4)),
    ) {
        // Participants receive nothing in the advertise stage: what they send is changed.
        let to_coordinator = to_coordinator || stage == 0;
        let tamper = Tamper { stage: STAGES[stage], to_coordinator, who, pos, xor };
        tampered_session(5, seed, tamper, drop.map(|(id, at)| (id, DROPS[at])));
    }
}

/// The property is not vacuous: an untouched session verifies, and changed masked inputs,
/// which the coordinator cannot check, give sums that the commitment check refuses.
#[test]
fn untouched_sessions_verify_and_changed_masked_inputs_are_caught() {
    let none = Tamper {
        stage: Stage::MaskedInput,
        to_coordinator: true,
        who: 0,
        pos: 0,
        xor: 0,
    };
    assert_eq!(tampered_session(5, 7, none, None), End::Verified);
    let mut caught = 0;
    for pos in (0..400).step_by(7) {
        let t = Tamper {
            xor: 0x5a,
            pos,
            ..none
        };
        caught += usize::from(tampered_session(5, 7, t, None) == End::Caught);
    }
    assert!(
        caught > 0,
        "no changed masked input reached the commitment check"
    );
}

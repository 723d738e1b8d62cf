//! Guide tests 1-15 (docs: ../shared/guide/secagg.md), driven through the
//! in-memory simulation harness. Test names start with `gNN_` for the guide
//! case they cover; ignored large-n runs start with `large_`.

use std::collections::BTreeMap;

use ed25519_dalek::{Signer, SigningKey};
use fedrisk_secagg::crypto;
use fedrisk_secagg::sim::{DropPoint, Sim, SimConfig, random_inputs};
use fedrisk_secagg::*;
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

fn real_inputs(cfg: &SimConfig) -> (Vec<Vec<f64>>, Vec<u64>) {
    let mut rng = ChaCha20Rng::seed_from_u64(cfg.seed + 99);
    let clip = cfg.fixed_point.clip;
    let xs = (0..cfg.n)
        .map(|_| {
            (0..cfg.d)
                .map(|_| ((rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.5 - 1.25) * clip)
                .collect()
        })
        .collect();
    let ws = (0..cfg.n).map(|_| 1 + rng.next_u64() % 5000).collect();
    (xs, ws)
}

fn run_exact(cfg: SimConfig) {
    let (xs, ws) = real_inputs(&cfg);
    let inputs: Vec<Vec<u64>> = xs
        .iter()
        .zip(&ws)
        .map(|(x, &w)| encode_weighted(x, w, &cfg.fixed_point).unwrap())
        .collect();
    let fp = cfg.fixed_point;
    let (n, d) = (cfg.n, cfg.d);
    let mut sim = Sim::new(cfg, inputs).unwrap();
    let r = sim.run();
    let out = r.output.unwrap_or_else(|e| panic!("n={n} d={d}: {e}"));
    assert_eq!(out.survivors.len(), n);
    assert_eq!(
        Some(&out.sum),
        r.expected.as_ref(),
        "bit-exact sum n={n} d={d}"
    );
    let (w, mean) = decode_mean(&out.sum, &fp).unwrap();
    assert_eq!(w, ws.iter().sum::<u64>());
    let tol = (-(fp.frac_bits as f64 + 1.0)).exp2() + 1e-9;
    for j in 0..d {
        let truth: f64 = xs
            .iter()
            .zip(&ws)
            .map(|(x, &w)| x[j].clamp(-fp.clip, fp.clip) * w as f64)
            .sum::<f64>()
            / w as f64;
        assert!(
            (truth - mean[j]).abs() <= tol,
            "slot {j}: {truth} vs {}",
            mean[j]
        );
    }
}

/// An input of the session's length: one contributor, zero values.
fn unit_input(session: &SessionConfig) -> Vec<u64> {
    let mut v = vec![0; session.params.words()];
    v[0] = 1;
    v
}

#[test]
fn g01_exact_sums_small_n() {
    for n in [3, 4, 10, 50] {
        for d in [1, 10, 1000] {
            let mut cfg = SimConfig::new(n, d);
            cfg.seed = (n * 31 + d) as u64;
            run_exact(cfg);
        }
    }
}

#[test]
fn g01_exact_sums_n300() {
    let mut cfg = SimConfig::new(300, 10);
    cfg.seed = 300;
    run_exact(cfg);
}

#[test]
fn g01_exact_sums_n1000_harary() {
    let mut cfg = SimConfig::new(1000, 1000);
    cfg.graph = recommended_graph(1000, 0.1, 0.05, 0.5, 40);
    assert!(matches!(cfg.graph, GraphKind::Harary { .. }));
    cfg.policy.min_threshold_fraction = 0.5;
    cfg.policy.harary_colluder_fraction = 0.05;
    cfg.security = SecurityMode::Active { max_colluders: 50 };
    run_exact(cfg);
}

fn run_with_drops(cfg: SimConfig, drops: &[(u32, DropPoint)]) -> (Sim, Result<Output>) {
    let inputs = random_inputs(&cfg);
    let mut sim = Sim::new(cfg, inputs).unwrap();
    sim.drops = drops.iter().copied().collect();
    let r = sim.run();
    if let (Ok(o), Some(e)) = (&r.output, &r.expected) {
        assert_eq!(&o.sum, e);
    }
    (sim, r.output)
}

fn expected_u3(n: u32, drops: &[(u32, DropPoint)]) -> Vec<u32> {
    (0..n)
        .filter(|id| {
            !drops
                .iter()
                .any(|(d, p)| d == id && *p <= DropPoint::AfterShareKeys)
        })
        .collect()
}

#[test]
fn g02_dropouts_after_each_round_and_mixed() {
    use DropPoint::*;
    let n = 12u32; // t = 9: up to 3 dropouts
    for point in [
        BeforeAdvertise,
        AfterAdvertise,
        AfterShareKeys,
        AfterMaskedInput,
        AfterConsistency,
    ] {
        for k in 1..=3u32 {
            let drops: Vec<(u32, DropPoint)> = (0..k).map(|i| (i * 4 + 1, point)).collect();
            let mut cfg = SimConfig::new(n as usize, 17);
            cfg.seed = 1000 + k as u64;
            let (_, out) = run_with_drops(cfg, &drops);
            let out = out.unwrap_or_else(|e| panic!("{point:?} x{k}: {e}"));
            assert_eq!(out.survivors, expected_u3(n, &drops), "{point:?} x{k}");
        }
    }
    let mixed = [
        (0, BeforeAdvertise),
        (5, AfterShareKeys),
        (11, AfterConsistency),
    ];
    let (_, out) = run_with_drops(SimConfig::new(n as usize, 33), &mixed);
    assert_eq!(out.unwrap().survivors, expected_u3(n, &mixed));
    let mixed = [
        (2, AfterAdvertise),
        (3, AfterMaskedInput),
        (7, AfterShareKeys),
    ];
    let (_, out) = run_with_drops(SimConfig::new(n as usize, 33), &mixed);
    assert_eq!(out.unwrap().survivors, expected_u3(n, &mixed));
}

/// A SecAgg+ session whose participants accept the graph: its privacy bound holds for a 2%
/// colluder share, not the default 10% (the bound is tested in `attacks.rs`; these tests'
/// subjects are dropouts and messages).
fn harary(n: usize, d: usize, degree: u32, share_threshold: u32) -> SimConfig {
    let mut cfg = SimConfig::new(n, d);
    cfg.graph = GraphKind::Harary {
        degree,
        share_threshold,
    };
    cfg.policy.min_threshold_fraction = 0.5;
    cfg.policy.harary_colluder_fraction = 0.02;
    cfg
}

#[test]
fn g02_dropouts_harary_n300() {
    let cfg = harary(300, 8, 60, 41);
    let drops: Vec<(u32, DropPoint)> = (0..30)
        .map(|i| (i * 10 + 3, DropPoint::AfterShareKeys))
        .collect();
    let (_, out) = run_with_drops(cfg, &drops);
    assert_eq!(out.unwrap().survivors, expected_u3(300, &drops));
}

#[test]
fn g03_too_many_dropouts_abort_and_release_nothing() {
    use DropPoint::*;
    for point in [
        BeforeAdvertise,
        AfterAdvertise,
        AfterShareKeys,
        AfterMaskedInput,
    ] {
        let drops: Vec<(u32, DropPoint)> = (0..4).map(|i| (i * 3, point)).collect(); // n - t = 3
        let (sim, out) = run_with_drops(SimConfig::new(12, 5), &drops);
        assert!(
            matches!(out, Err(SecAggError::TooFewParticipants { .. })),
            "{point:?}: {out:?}"
        );
        assert!(sim.released.is_empty(), "{point:?}: shares were released");
        for msgs in sim.transcript.values() {
            assert!(!msgs.iter().any(|m| matches!(m, Message::UnmaskResponse(_))));
        }
    }
    // Too few responders in the unmask stage: the coordinator gets < t
    // responses; the output is refused (responders' shares cannot rebuild).
    let drops: Vec<(u32, DropPoint)> = (0..4)
        .map(|i| (i * 3, DropPoint::AfterConsistency))
        .collect();
    let (_, out) = run_with_drops(SimConfig::new(12, 5), &drops);
    assert!(out.is_err());
}

#[test]
fn g04_overflow_edges() {
    // ceil(log2 4) + 10 + 10 + 40 = 62: the largest admissible configuration.
    let fp = FixedPointParams {
        frac_bits: 40,
        clip: 1024.0,
        max_weight_bits: 10,
    };
    for sign in [1.0, -1.0] {
        let mut cfg = SimConfig::new(4, 3);
        cfg.fixed_point = fp;
        let inputs = (0..4)
            .map(|_| {
                encode_weighted(
                    &[sign * 1024.0, sign * 5000.0, -sign * 1024.0],
                    1 << 10,
                    &fp,
                )
                .unwrap()
            })
            .collect();
        let mut sim = Sim::new(cfg, inputs).unwrap();
        let out = sim.run().output.unwrap();
        let (w, mean) = decode_mean(&out.sum, &fp).unwrap();
        assert_eq!(w, 4 << 10);
        assert_eq!(mean, vec![sign * 1024.0, sign * 1024.0, -sign * 1024.0]);
        let (_, sum) = decode_sum(&out.sum, &fp).unwrap();
        assert_eq!(sum[0], sign * 1024.0 * 4096.0);
    }
    let mut cfg = SimConfig::new(5, 3); // ceil(log2 5) = 3: 63 bits
    cfg.fixed_point = fp;
    assert!(matches!(
        cfg.params().validate(),
        Err(SecAggError::InvalidConfig(_))
    ));
    cfg.fixed_point.clip = 1025.0;
    cfg.n = 4;
    assert!(matches!(
        cfg.params().validate(),
        Err(SecAggError::InvalidConfig(_))
    ));
}

#[test]
fn g05_masks_cancel_with_no_dropouts() {
    let cfg = SimConfig::new(9, 300);
    let inputs = vec![vec![0u64; 301]; 9];
    let mut sim = Sim::new(cfg, inputs).unwrap();
    let out = sim.run().output.unwrap();
    assert!(out.sum.iter().all(|&v| v == 0));
    // The masked vectors themselves look random, yet sum (after self masks) to 0.
    let masked: Vec<&Vec<u64>> = sim
        .transcript
        .values()
        .flat_map(|m| m.iter())
        .filter_map(|m| match m {
            Message::MaskedInput(v) => Some(&v.vector),
            _ => None,
        })
        .collect();
    assert_eq!(masked.len(), 9);
    assert!(
        masked
            .iter()
            .all(|v| v.iter().filter(|&&w| w == 0).count() < 3)
    );
}

#[test]
fn g07_lying_unmask_requests_are_refused() {
    use DropPoint::*;
    // Each attack edits the coordinator's unmask request before delivery.
    type Edit = fn(u32, &mut UnmaskRequest);
    let attacks: Vec<(&str, Edit)> = vec![
        ("alive and dead overlap", |_, r| {
            r.dropped.push(r.survivors[0]);
            r.dropped.sort();
        }),
        ("names recipient as dead", |me, r| {
            r.survivors.retain(|&v| v != me);
            r.dropped.push(me);
            r.dropped.sort();
        }),
        ("duplicate dead entries", |_, r| {
            let v = r.dropped[0];
            r.dropped.insert(0, v);
        }),
        ("duplicate signatures", |_, r| {
            let s = r.signatures[0];
            r.signatures.insert(0, s);
        }),
        ("hides a dead participant", |_, r| {
            r.dropped.clear();
        }),
    ];
    for (name, edit) in attacks {
        let mut sim =
            Sim::new(SimConfig::new(10, 4), random_inputs(&SimConfig::new(10, 4))).unwrap();
        sim.drops.insert(9, AfterShareKeys);
        sim.advertise().unwrap();
        sim.share_keys().unwrap();
        sim.masked_input().unwrap();
        sim.consistency().unwrap();
        let mut out = Vec::new();
        for o in std::mem::take(&mut sim.outbox) {
            let Outgoing::Broadcast {
                recipients,
                message: Message::UnmaskRequest(req),
            } = o
            else {
                panic!("expected a broadcast unmask request")
            };
            for r in recipients {
                let mut req = req.clone();
                edit(r, &mut req);
                out.push(Outgoing::Unicast {
                    recipient: r,
                    message: Message::UnmaskRequest(req),
                });
            }
        }
        sim.outbox = out;
        assert!(sim.unmask().is_err(), "{name}");
        assert!(sim.released.is_empty(), "{name}: something was released");
        for id in 0..9 {
            assert!(
                matches!(
                    sim.error_of(id),
                    Some(SecAggError::UnmaskRefused(_)) | Some(SecAggError::ConsistencyCheck(_))
                ),
                "{name}: participant {id} gave {:?}",
                sim.error_of(id)
            );
            assert_eq!(sim.participant(id).unwrap().stage(), Stage::Aborted);
        }
    }
}

#[test]
fn g07_second_unmask_request_is_refused() {
    let cfg = SimConfig::new(10, 4);
    let mut sim = Sim::new(cfg.clone(), random_inputs(&cfg)).unwrap();
    sim.drops.insert(4, DropPoint::AfterShareKeys);
    sim.advertise().unwrap();
    sim.share_keys().unwrap();
    sim.masked_input().unwrap();
    sim.consistency().unwrap();
    // Deliver the request twice, the second time with a different dead list.
    let Outgoing::Broadcast {
        recipients,
        message: Message::UnmaskRequest(req),
    } = sim.outbox[0].clone()
    else {
        panic!()
    };
    let mut second = req.clone();
    second.dropped.clear();
    sim.outbox.push(Outgoing::Broadcast {
        recipients: recipients.clone(),
        message: Message::UnmaskRequest(second),
    });
    let out = sim.unmask().unwrap();
    assert_eq!(out.sum, sim.plaintext_sum(&out.survivors));
    for id in recipients {
        assert_eq!(sim.error_of(id), Some(&SecAggError::AlreadyUnmasked));
        let r = &sim.released[&id];
        // Never both shares for one owner.
        assert!(
            r.b_shares
                .iter()
                .all(|(o, _)| !r.s_shares.iter().any(|(p, _)| p == o))
        );
    }
    assert!(
        !sim.rejected
            .iter()
            .any(|(_, e)| *e == SecAggError::AlreadyUnmasked)
    );
}

#[test]
fn g08_late_masked_input_is_rejected_and_stays_masked() {
    let cfg = SimConfig::new(10, 64);
    let mut sim = Sim::new(cfg.clone(), random_inputs(&cfg)).unwrap();
    sim.late_masked.insert(3);
    let out = sim.run().output.unwrap();
    assert!(!out.survivors.contains(&3));
    assert_eq!(out.sum, sim.plaintext_sum(&out.survivors));
    assert!(
        sim.rejected
            .contains(&(3, SecAggError::LateMessage(Stage::MaskedInput)))
    );
    // Even if kept: the coordinator can rebuild s_3 (3 is dead) and strip the
    // pairwise masks, but b_3 was never released, so y_3 stays masked.
    let late = &sim.late_vectors[&3];
    let mut s_points = Vec::new();
    for r in sim.released.values() {
        assert!(
            !r.b_shares.iter().any(|(o, _)| *o == 3),
            "b-share of a dead participant released"
        );
        if let Some((_, s)) = r.s_shares.iter().find(|(o, _)| *o == 3) {
            s_points.push((
                r.from,
                curve25519_dalek::Scalar::from_canonical_bytes(*s).unwrap(),
            ));
        }
    }
    let t = sim.cfg.threshold as usize;
    assert!(s_points.len() >= t);
    let s3 = fedrisk_secagg::shamir::reconstruct(&s_points[..t]);
    let keys: BTreeMap<u32, [u8; 32]> = sim
        .transcript
        .iter()
        .filter_map(|(id, m)| match &m[0] {
            Message::Advertise(a) => Some((*id, a.s_pk)),
            _ => None,
        })
        .collect();
    let mut stripped = late.clone();
    let secret = crypto::x25519_secret(&s3);
    for (&v, pk) in &keys {
        if v == 3 {
            continue;
        }
        let dh = crypto::agree(&secret, pk).unwrap();
        crypto::prg_accumulate(
            &crypto::pairwise_mask_seed(&dh, &sim.session.session_id, 3, v),
            &mut stripped,
            3 < v,
        );
    }
    let x3 = &sim.inputs[3];
    let equal = stripped.iter().zip(x3).filter(|(a, b)| a == b).count();
    assert!(equal <= 1, "late vector leaked {equal} slots");
}

#[test]
fn g09_split_view_makes_honest_participants_abort() {
    let n = 10u32; // t = 7
    let cfg = SimConfig::new(n as usize, 4);
    let mut sim = Sim::new(cfg.clone(), random_inputs(&cfg)).unwrap();
    sim.advertise().unwrap();
    sim.share_keys().unwrap();
    sim.masked_input().unwrap();
    // Group A (0..6) sees everyone alive; group B (6..10) sees 0 dead.
    let all: Vec<u32> = (0..n).collect();
    let without0: Vec<u32> = (1..n).collect();
    let sid = sim.session.session_id;
    sim.outbox = (0..n)
        .map(|r| Outgoing::Unicast {
            recipient: r,
            message: Message::SurvivorList(SurvivorList {
                session_id: sid,
                survivors: if r < 6 { all.clone() } else { without0.clone() },
            }),
        })
        .collect();
    // The coordinator only holds 6 valid signatures on its own U3 (< t): abort.
    assert!(sim.consistency().is_err());
    let sigs = |ids: std::ops::Range<u32>| -> Vec<(u32, [u8; 64])> {
        ids.map(|i| {
            let m = sim.transcript[&i]
                .iter()
                .find_map(|m| match m {
                    Message::ConsistencySignature(c) => Some(c.signature),
                    _ => None,
                })
                .unwrap();
            (i, m)
        })
        .collect()
    };
    let (sig_a, sig_b) = (sigs(0..6), sigs(6..10));
    let mut mixed = sig_a.clone();
    mixed.extend(sig_b.iter().copied());
    for id in 0..n {
        let (survivors, dropped, signatures) = if id < 6 {
            (all.clone(), vec![], mixed.clone())
        } else {
            (without0.clone(), vec![0], mixed.clone())
        };
        let req = UnmaskRequest {
            session_id: sid,
            survivors,
            dropped,
            signatures,
        };
        let p = sim.slots[id as usize].session.as_mut().unwrap();
        let r = p.on_unmask_request(&req);
        assert!(
            matches!(r, Err(SecAggError::ConsistencyCheck(_))),
            "{id}: {r:?}"
        );
        assert_eq!(p.stage(), Stage::Aborted);
        // And it will not answer a later (even honest-looking) request.
        assert!(p.on_unmask_request(&req).is_err());
    }
    // Variant: each group gets only its own (valid) signatures: below quorum.
    let mut sim = Sim::new(cfg.clone(), random_inputs(&cfg)).unwrap();
    sim.advertise().unwrap();
    sim.share_keys().unwrap();
    sim.masked_input().unwrap();
    let sid = sim.session.session_id;
    sim.outbox = (0..n)
        .map(|r| Outgoing::Unicast {
            recipient: r,
            message: Message::SurvivorList(SurvivorList {
                session_id: sid,
                survivors: if r < 6 { all.clone() } else { without0.clone() },
            }),
        })
        .collect();
    let _ = sim.consistency();
    let (sig_a, sig_b) = (sigs_of(&sim, 0..6), sigs_of(&sim, 6..10));
    for id in 0..n {
        let req = if id < 6 {
            UnmaskRequest {
                session_id: sid,
                survivors: all.clone(),
                dropped: vec![],
                signatures: sig_a.clone(),
            }
        } else {
            UnmaskRequest {
                session_id: sid,
                survivors: without0.clone(),
                dropped: vec![0],
                signatures: sig_b.clone(),
            }
        };
        let p = sim.slots[id as usize].session.as_mut().unwrap();
        assert!(matches!(
            p.on_unmask_request(&req),
            Err(SecAggError::ConsistencyCheck(_))
        ));
    }
}

fn sigs_of(sim: &Sim, ids: std::ops::Range<u32>) -> Vec<(u32, [u8; 64])> {
    ids.map(|i| {
        let s = sim.transcript[&i]
            .iter()
            .find_map(|m| match m {
                Message::ConsistencySignature(c) => Some(c.signature),
                _ => None,
            })
            .unwrap();
        (i, s)
    })
    .collect()
}

fn key_list_attack(edit: impl Fn(&mut KeyList)) -> Sim {
    key_list_attack_signed(|k, _| edit(k))
}

/// [`key_list_attack`] with the members' identity keys, for an edit a colluding member
/// signs ([`resign`]).
fn key_list_attack_signed(edit: impl Fn(&mut KeyList, &[SigningKey])) -> Sim {
    let cfg = SimConfig::new(6, 3);
    let mut sim = Sim::new(cfg.clone(), random_inputs(&cfg)).unwrap();
    sim.advertise().unwrap();
    let Some(Outgoing::Broadcast {
        message: Message::KeyList(k),
        ..
    }) = sim.outbox.first_mut()
    else {
        panic!()
    };
    edit(k, &sim.identities);
    let _ = sim.share_keys();
    sim
}

/// Signs entry `i` of the key list again, as its member does, with `key`.
fn resign(k: &mut KeyList, i: usize, key: &SigningKey) {
    let e = &k.entries[i];
    let t = crypto::advertise_transcript(&k.session_id, e.id, &e.c_pk, &e.s_pk, &e.commitment);
    k.entries[i].signature = key.sign(&t).to_bytes();
}

/// An advertisement of member `id` with keys `c` and `s` (no commitment), signed with `key`.
fn advertise_by(sid: [u8; 32], id: u32, key: &SigningKey, c: [u8; 32], s: [u8; 32]) -> Advertise {
    Advertise {
        session_id: sid,
        from: id,
        c_pk: c,
        s_pk: s,
        commitment: [0; 32],
        signature: key
            .sign(&crypto::advertise_transcript(&sid, id, &c, &s, &[0; 32]))
            .to_bytes(),
    }
}

#[test]
fn g10_forged_swapped_low_order_duplicate_unknown_keys() {
    // Participant side: swapped mask keys between two entries.
    let sim = key_list_attack(|k| {
        let s = k.entries[1].s_pk;
        k.entries[1].s_pk = k.entries[2].s_pk;
        k.entries[2].s_pk = s;
    });
    assert!(matches!(
        sim.error_of(0),
        Some(SecAggError::BadSignature(1)) | Some(SecAggError::DuplicateKey(_))
    ));
    assert!(matches!(sim.error_of(1), Some(SecAggError::ForgedOwnKeys)));
    // Duplicate key across entries.
    let sim = key_list_attack(|k| k.entries[3].c_pk = k.entries[2].c_pk);
    assert!(matches!(
        sim.error_of(0),
        Some(SecAggError::DuplicateKey(_))
    ));
    // Unknown identity injected.
    let sim = key_list_attack(|k| k.entries[5].id = 77);
    assert!(matches!(sim.error_of(0), Some(SecAggError::NotInvited(77))));
    // An extra entry beyond the roster size is refused at decoding.
    let sim = key_list_attack(|k| {
        let e = k.entries[5].clone();
        k.entries.push(e);
    });
    assert!(matches!(sim.error_of(0), Some(SecAggError::Malformed(_))));
    // Low-order key, validly signed by a malicious participant 4.
    let low = curve25519_dalek::constants::EIGHT_TORSION[1]
        .to_montgomery()
        .to_bytes();
    let sim = key_list_attack_signed(|k, ids| {
        k.entries[4].c_pk = low;
        resign(k, 4, &ids[4]);
    });
    assert!(
        matches!(sim.error_of(0), Some(SecAggError::NonContributoryKey(4))),
        "{:?}",
        sim.error_of(0)
    );

    // Coordinator side.
    let cfg = SimConfig::new(6, 3);
    let sim = Sim::new(cfg, vec![]).unwrap();
    let mut coord = sim.coordinator.clone();
    let sid = sim.session.session_id;
    let adv =
        |id: u32, key: &SigningKey, c: [u8; 32], s: [u8; 32]| advertise_by(sid, id, key, c, s);
    let pk = |b: u8| {
        x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from([b; 32])).to_bytes()
    };
    assert_eq!(
        coord.on_advertise(0, &adv(0, &sim.identities[0], low, pk(1))),
        Err(SecAggError::NonContributoryKey(0))
    );
    assert_eq!(
        coord.on_advertise(0, &adv(0, &sim.identities[0], [0; 32], pk(1))),
        Err(SecAggError::NonContributoryKey(0))
    );
    let mut forged = adv(0, &sim.identities[1], pk(1), pk(2));
    assert_eq!(
        coord.on_advertise(0, &forged),
        Err(SecAggError::BadSignature(0))
    );
    forged = adv(0, &sim.identities[0], pk(1), pk(2));
    forged.s_pk = pk(3);
    assert_eq!(
        coord.on_advertise(0, &forged),
        Err(SecAggError::BadSignature(0))
    );
    assert_eq!(
        coord.on_advertise(0, &adv(0, &sim.identities[0], pk(1), pk(2))),
        Ok(())
    );
    assert_eq!(
        coord.on_advertise(1, &adv(1, &sim.identities[1], pk(1), pk(4))),
        Err(SecAggError::DuplicateKey(1))
    );
    assert_eq!(
        coord.on_advertise(2, &adv(2, &sim.identities[2], pk(5), pk(5))),
        Err(SecAggError::DuplicateKey(2))
    );
    let stranger = SigningKey::from_bytes(&[9; 32]);
    assert_eq!(
        coord.on_advertise(40, &adv(40, &stranger, pk(6), pk(7))),
        Err(SecAggError::NotInvited(40))
    );
    assert_eq!(
        coord.on_advertise(3, &adv(2, &sim.identities[2], pk(6), pk(7))),
        Err(SecAggError::SenderMismatch {
            transport: 3,
            claimed: 2
        })
    );
}

/// A colluder re-advertising an honest member's mask key with the top bit set: X25519
/// reads it as the same key, but its bytes differ, so a byte-wise duplicate check alone
/// lets it through. Both ends refuse any non-canonical encoding. (The copy would give
/// the colluder nothing it could use: it lacks the secret, and every mask seed and share
/// key binds both members' ids. Aliases through a small-order point stay canonical and
/// are not refused; the same holds for them.)
#[test]
fn attack_a_key_repeated_under_another_encoding_is_refused() {
    let sim = key_list_attack_signed(|k, ids| {
        let mut copied = k.entries[3].s_pk;
        copied[31] |= 0x80;
        let alias = crypto::PreparedSecret::new(&[7; 32]);
        assert_eq!(
            crypto::x25519_prepared(&alias, &crypto::PreparedKey::new(&copied)).map(|z| *z),
            crypto::x25519_prepared(&alias, &crypto::PreparedKey::new(&k.entries[3].s_pk))
                .map(|z| *z),
            "the two encodings are one key to X25519"
        );
        k.entries[4].s_pk = copied;
        resign(k, 4, &ids[4]);
    });
    assert!(
        matches!(sim.error_of(0), Some(SecAggError::NonCanonicalKey(4))),
        "{:?}",
        sim.error_of(0)
    );

    // Coordinator side, for the top bit and for a value of at least p.
    let cfg = SimConfig::new(6, 3);
    let sim = Sim::new(cfg, vec![]).unwrap();
    let pk = |b: u8| {
        x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from([b; 32])).to_bytes()
    };
    let mut top = pk(1);
    top[31] |= 0x80;
    let mut at_p = [0xff; 32];
    at_p[0] = 0xed;
    at_p[31] = 0x7f;
    for c in [top, at_p] {
        let mut coord = sim.coordinator.clone();
        let msg = advertise_by(sim.session.session_id, 0, &sim.identities[0], c, pk(2));
        assert_eq!(
            coord.on_advertise(0, &msg),
            Err(SecAggError::NonCanonicalKey(0))
        );
    }
}

/// n = 10, t = 7: each participant derives the shares of the 6 before it and
/// receives ciphertexts from the 3 after it (0 from 1, 2 and 3), sending its
/// own to the 3 before it (0 to 7, 8 and 9).
fn share_bundle_attack(edit: impl Fn(&mut Vec<Outgoing>)) -> Sim {
    let cfg = SimConfig::new(10, 3);
    let mut sim = Sim::new(cfg.clone(), random_inputs(&cfg)).unwrap();
    sim.advertise().unwrap();
    sim.share_keys().unwrap();
    edit(&mut sim.outbox);
    let r = sim.masked_input();
    assert!(r.is_err() || sim.slots.iter().any(|s| s.error.is_some()));
    sim
}

fn bundle_of(out: &mut [Outgoing], who: u32) -> &mut ShareBundle {
    out.iter_mut()
        .find_map(|o| match o {
            Outgoing::Unicast {
                recipient,
                message: Message::ShareBundle(b),
            } if *recipient == who => Some(b),
            _ => None,
        })
        .unwrap()
}

/// The ciphertext `from` sent to `to`, as routed in `to`'s bundle.
fn ciphertext(out: &mut [Outgoing], to: u32, from: u32) -> messages::EncryptedShares {
    bundle_of(out, to)
        .shares
        .iter()
        .find(|s| s.0 == from)
        .unwrap()
        .1
}

#[test]
fn g11_misrouted_reflected_altered_replayed_ciphertexts_abort() {
    // Altered.
    let sim = share_bundle_attack(|out| bundle_of(out, 0).shares[1].1[7] ^= 0x80);
    assert_eq!(sim.error_of(0), Some(&SecAggError::ShareAuthentication(2)));
    // Misrouted: 1's ciphertext for 9 delivered to 0 (as from 1).
    let sim = share_bundle_attack(|out| {
        bundle_of(out, 0).shares[0].1 = ciphertext(out, 9, 1);
    });
    assert_eq!(sim.error_of(0), Some(&SecAggError::ShareAuthentication(1)));
    // Reflected: 0's own ciphertext (to 7) handed back to 0 as if from 1. (No
    // pair sends each other ciphertexts any more: 0 -> 1 is a derived share.
    // The crypto unit test covers a same-key direction swap.)
    let sim = share_bundle_attack(|out| {
        bundle_of(out, 0).shares[0].1 = ciphertext(out, 7, 0);
    });
    assert_eq!(sim.error_of(0), Some(&SecAggError::ShareAuthentication(1)));
    // Re-labelled sender.
    let sim = share_bundle_attack(|out| {
        let b = bundle_of(out, 0);
        let ct = b.shares[0].1;
        b.shares[1].1 = ct;
    });
    assert_eq!(sim.error_of(0), Some(&SecAggError::ShareAuthentication(2)));
    // Replayed from another session (same participants, new nonce).
    let cfg = SimConfig::new(10, 3);
    let mut old = Sim::new(cfg.clone(), random_inputs(&cfg)).unwrap();
    old.advertise().unwrap();
    old.share_keys().unwrap();
    let old_ct = bundle_of(&mut old.outbox, 0).shares[0].1;
    let mut cfg2 = cfg.clone();
    cfg2.seed = 2;
    let mut sim = Sim::new(cfg2, random_inputs(&cfg)).unwrap();
    sim.advertise().unwrap();
    sim.share_keys().unwrap();
    bundle_of(&mut sim.outbox, 0).shares[0].1 = old_ct;
    let _ = sim.masked_input();
    assert_eq!(sim.error_of(0), Some(&SecAggError::ShareAuthentication(1)));
    assert_eq!(sim.participant(0).unwrap().stage(), Stage::Aborted);
}

#[test]
fn g12_invalid_configurations_are_rejected() {
    let base = SimConfig::new(10, 5).params();
    let bad = |f: &dyn Fn(&mut SessionParams)| {
        let mut p = base.clone();
        f(&mut p);
        p.validate()
    };
    assert!(base.validate().is_ok());
    assert!(bad(&|p| p.threshold = 1).is_err(), "t < 2");
    assert!(bad(&|p| p.threshold = 11).is_err(), "t > n");
    assert!(bad(&|p| p.threshold = 5).is_err(), "2t <= n (active)");
    assert!(
        bad(&|p| {
            p.threshold = 7;
            p.security = SecurityMode::Active { max_colluders: 4 };
        })
        .is_err(),
        "2t <= n + c"
    );
    assert!(
        bad(&|p| {
            p.threshold = 8;
            p.security = SecurityMode::Active { max_colluders: 5 };
        })
        .is_ok(),
        "2t = 16 > n + c = 15"
    );
    assert!(
        bad(&|p| {
            p.threshold = 3;
            p.security = SecurityMode::HonestButCurious {
                max_colluders: 3,
                max_dropouts: 7,
            };
        })
        .is_err(),
        "t <= colluders"
    );
    assert!(
        bad(&|p| {
            p.threshold = 5;
            p.security = SecurityMode::HonestButCurious {
                max_colluders: 1,
                max_dropouts: 2,
            };
        })
        .is_err(),
        "t < n - dropout budget"
    );
    assert!(bad(&|p| p.participants = vec![3, 2, 4, 5, 6, 7, 8, 9, 10, 11]).is_err());
    assert!(bad(&|p| p.vector_len = 0).is_err());
    assert!(bad(&|p| p.fixed_point.clip = f64::NAN).is_err());
    assert!(bad(&|p| p.dp_sigma = Some(-1.0)).is_err());
    assert!(
        bad(&|p| p.graph = GraphKind::Harary {
            degree: 3,
            share_threshold: 3
        })
        .is_err()
    );
    assert!(
        bad(&|p| p.graph = GraphKind::Harary {
            degree: 4,
            share_threshold: 2
        })
        .is_err()
    );
    assert!(
        bad(&|p| p.graph = GraphKind::Harary {
            degree: 4,
            share_threshold: 4
        })
        .is_ok()
    );
    // Participants enforce their own policy on top.
    let cfg = SimConfig::new(10, 5);
    let sim = Sim::new(cfg, vec![]).unwrap();
    let mut params = base.clone();
    params.threshold = 6;
    let weak = SessionConfig::new(&Sim::binding(), [1; 32], params).unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let r = ParticipantSession::new(
        weak,
        &Sim::binding(),
        0,
        sim.identities[0].clone(),
        sim.roster.clone(),
        &ParticipantPolicy::default(),
        &unit_input(&sim.session),
        &mut rng,
    );
    assert!(matches!(r, Err(SecAggError::PolicyViolation(_))));
    let mut params = base.clone();
    params.security = SecurityMode::HonestButCurious {
        max_colluders: 1,
        max_dropouts: 3,
    };
    let hbc = SessionConfig::new(&Sim::binding(), [1; 32], params).unwrap();
    let r = ParticipantSession::new(
        hbc,
        &Sim::binding(),
        0,
        sim.identities[0].clone(),
        sim.roster.clone(),
        &ParticipantPolicy::default(),
        &unit_input(&sim.session),
        &mut rng,
    );
    assert!(matches!(r, Err(SecAggError::PolicyViolation(_))));
    // A tampered threshold no longer matches the session id.
    let mut tampered = sim.session.clone();
    tampered.params.threshold = 10;
    let r = ParticipantSession::new(
        tampered,
        &Sim::binding(),
        0,
        sim.identities[0].clone(),
        sim.roster.clone(),
        &ParticipantPolicy::default(),
        &unit_input(&sim.session),
        &mut rng,
    );
    assert_eq!(r.err(), Some(SecAggError::BindingMismatch));
}

#[test]
fn g13_different_model_hashes_cannot_complete() {
    let cfg = SimConfig::new(5, 3);
    let sim = Sim::new(cfg, vec![]).unwrap();
    let mut other = Sim::binding();
    other.model_hash[0] ^= 1;
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let r = ParticipantSession::new(
        sim.session.clone(),
        &other,
        1,
        sim.identities[1].clone(),
        sim.roster.clone(),
        &ParticipantPolicy::default(),
        &unit_input(&sim.session),
        &mut rng,
    );
    assert_eq!(r.err(), Some(SecAggError::BindingMismatch));
    // A participant that trusts a config built for its own (different) model
    // has a different session id: the coordinator rejects everything it sends.
    let own = SessionConfig::new(&other, sim.session.nonce, sim.session.params.clone()).unwrap();
    assert_ne!(own.session_id, sim.session.session_id);
    let (_, adv) = ParticipantSession::new(
        own,
        &other,
        1,
        sim.identities[1].clone(),
        sim.roster.clone(),
        &ParticipantPolicy::default(),
        &unit_input(&sim.session),
        &mut rng,
    )
    .unwrap();
    let mut coord = sim.coordinator.clone();
    assert_eq!(coord.on_advertise(1, &adv), Err(SecAggError::WrongSession));
    let mut forged = adv.clone();
    forged.session_id = sim.session.session_id;
    assert_eq!(
        coord.on_advertise(1, &forged),
        Err(SecAggError::BadSignature(1))
    );
}

#[test]
fn g14_malformed_and_out_of_order_messages_are_errors() {
    let cfg = SimConfig::new(6, 3);
    let mut sim = Sim::new(cfg.clone(), random_inputs(&cfg)).unwrap();
    sim.advertise().unwrap();
    let sid = sim.session.session_id;
    let mut coord = sim.coordinator.clone();
    // Wrong stage, late, duplicate, other session.
    let mi = MaskedInput {
        session_id: sid,
        from: 0,
        vector: vec![0; 4],
    };
    assert!(matches!(
        coord.on_masked_input(0, &mi),
        Err(SecAggError::WrongStage { .. })
    ));
    let Message::Advertise(a0) = sim.transcript[&0][0].clone() else {
        panic!()
    };
    assert_eq!(
        coord.on_advertise(0, &a0),
        Err(SecAggError::LateMessage(Stage::Advertise))
    );
    sim.share_keys().unwrap();
    let mut coord = sim.coordinator.clone();
    let Message::ShareKeys(sk) = sim.transcript[&1][1].clone() else {
        panic!()
    };
    assert_eq!(
        coord.on_share_keys(1, &sk),
        Err(SecAggError::LateMessage(Stage::ShareKeys))
    );
    sim.masked_input().unwrap();
    let mut coord = sim.coordinator.clone();
    let mut wrong = mi.clone();
    wrong.session_id = [0; 32];
    assert_eq!(
        coord.on_masked_input(0, &wrong),
        Err(SecAggError::LateMessage(Stage::MaskedInput))
    );
    // Coordinator still works after all of that.
    let out = sim.consistency().and_then(|_| sim.unmask()).unwrap();
    assert_eq!(out.sum, sim.plaintext_sum(&out.survivors));

    // Bad indices / extra entries at stage level.
    let cfg = SimConfig::new(6, 3);
    let mut sim = Sim::new(cfg.clone(), random_inputs(&cfg)).unwrap();
    sim.advertise().unwrap();
    let mut coord = sim.coordinator.clone();
    let Some(Outgoing::Broadcast {
        message: Message::KeyList(kl),
        ..
    }) = sim.outbox.first().cloned()
    else {
        panic!()
    };
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let p = sim.slots[2].session.as_mut().unwrap();
    let mut sk = p.on_key_list(&kl, &mut rng).unwrap();
    let good = sk.clone();
    sk.shares[0].0 = 99;
    assert!(matches!(
        coord.on_share_keys(2, &sk),
        Err(SecAggError::InvalidList(_))
    ));
    let mut extra = good.clone();
    extra.shares.push(good.shares[0]);
    assert!(matches!(
        coord.on_share_keys(2, &extra),
        Err(SecAggError::InvalidList(_))
    ));
    assert_eq!(coord.on_share_keys(2, &good), Ok(()));
    assert_eq!(
        coord.on_share_keys(2, &good),
        Err(SecAggError::Duplicate(2))
    );

    // Wire level: truncation, trailing bytes, versions, huge declared lengths.
    let bytes = Message::ShareKeys(good.clone()).encode();
    assert_eq!(Message::decode(&bytes).unwrap(), Message::ShareKeys(good));
    for cut in 0..bytes.len() {
        assert!(Message::decode(&bytes[..cut]).is_err());
    }
    let mut long = bytes.clone();
    long.push(0);
    assert_eq!(
        Message::decode(&long),
        Err(SecAggError::Malformed("trailing bytes"))
    );
    assert_eq!(WIRE_VERSION, 5);
    for v in [1u8, 2, 3, 4, 6] {
        let mut other = bytes.clone();
        other[0] = v;
        assert_eq!(
            Message::decode(&other),
            Err(SecAggError::UnsupportedVersion(v))
        );
    }
    let mut huge = MaskedInput {
        session_id: sid,
        from: 0,
        vector: vec![1, 2, 3, 4],
    }
    .encode();
    huge[2 + 32 + 4..2 + 32 + 8].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(MaskedInput::decode(&huge).is_err());
    let five = MaskedInput {
        session_id: sid,
        from: 0,
        vector: vec![0; 5],
    }
    .encode();
    assert!(MaskedInput::decode(&five).is_ok());
    assert!(
        Message::decode_for(&five, &sim.session).is_err(),
        "d + 1 = 4 words and the blinding limbs only"
    );
    let other = MaskedInput {
        session_id: [7; 32],
        from: 0,
        vector: vec![0; 4],
    }
    .encode();
    assert_eq!(
        Message::decode_for(&other, &sim.session),
        Err(SecAggError::WrongSession)
    );
    // Config round trip.
    let c = SessionConfig::decode(&sim.session.encode()).unwrap();
    assert_eq!(c, sim.session);
}

#[test]
fn g15_distributed_dp_noise_with_exactly_t_survivors() {
    let sigma = 200.0;
    let mut cfg = SimConfig::new(12, 4000); // t = 9
    cfg.dp_sigma = Some(sigma);
    let inputs = vec![encode_counts(&vec![0; 4000], 1); 12];
    let mut sim = Sim::new(cfg, inputs).unwrap();
    for id in [2, 5, 8] {
        sim.drops.insert(id, DropPoint::AfterShareKeys);
    }
    let out = sim.run().output.unwrap();
    assert_eq!(out.survivors.len(), 9);
    let (w, noise) = decode_counts(&out.sum).unwrap();
    assert_eq!(w, 9, "weight slot carries no noise");
    let vals: Vec<f64> = noise.iter().map(|&v| v as i64 as f64).collect();
    let mean = vals.iter().sum::<f64>() / vals.len() as f64;
    let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (vals.len() - 1) as f64;
    // Expected variance: 9 * (sigma^2 / 9 + ~1/12) >= sigma^2; 4000 samples give
    // a relative standard error of about 2.2%.
    assert!(
        var >= 0.9 * sigma * sigma,
        "variance {var} < sigma^2 = {}",
        sigma * sigma
    );
    assert!(
        var <= 1.1 * (sigma * sigma + 1.0),
        "variance {var} too large"
    );
    assert!(mean.abs() < 5.0 * sigma / (vals.len() as f64).sqrt());
}

#[test]
fn counts_mode_sums_histograms_exactly() {
    let cfg = SimConfig::new(7, 20);
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let hist: Vec<Vec<u64>> = (0..7)
        .map(|_| (0..20).map(|_| rng.next_u64() % 1000).collect())
        .collect();
    let inputs = hist.iter().map(|h| encode_counts(h, 1)).collect();
    let mut sim = Sim::new(cfg, inputs).unwrap();
    let out = sim.run().output.unwrap();
    let (w, sum) = decode_counts(&out.sum).unwrap();
    assert_eq!(w, 7);
    for j in 0..20 {
        assert_eq!(sum[j], hist.iter().map(|h| h[j]).sum::<u64>());
    }
}

#[test]
#[ignore = "large: complete graph with n = 1000 (minutes)"]
fn large_complete_n1000() {
    let mut cfg = SimConfig::new(1000, 1024);
    cfg.seed = 1000;
    let drops: Vec<(u32, DropPoint)> = (0..100)
        .map(|i| (i * 10, DropPoint::AfterShareKeys))
        .collect();
    let start = std::time::Instant::now();
    let (sim, out) = run_with_drops(cfg, &drops);
    assert_eq!(out.unwrap().survivors.len(), 900);
    eprintln!(
        "n=1000 complete: wall {:?}, coordinator {:?} (unmask {:?}), participant 1: {:?}",
        start.elapsed(),
        sim.coordinator_time,
        sim.unmask_time,
        sim.slots[1].time
    );
}

#[test]
#[ignore = "large: Harary graph with n = 5000 (minutes)"]
fn large_harary_n5000() {
    let mut cfg = SimConfig::new(5000, 100);
    cfg.graph = recommended_graph(5000, 0.1, 0.05, 0.5, 40);
    cfg.policy.min_threshold_fraction = 0.5;
    cfg.policy.harary_colluder_fraction = 0.05;
    cfg.security = SecurityMode::Active { max_colluders: 250 };
    let drops: Vec<(u32, DropPoint)> = (0..500)
        .map(|i| (i * 10 + 1, DropPoint::AfterShareKeys))
        .collect();
    let (_, out) = run_with_drops(cfg, &drops);
    assert_eq!(out.unwrap().survivors.len(), 4500);
}

/// Derived shares: a `ShareKeys` must carry exactly the ciphertexts of the
/// sender's non-derived recipients (the coordinator rejects one for a derived
/// recipient, a missing one, or a swap), and a participant aborts on a bundle
/// that delivers a ciphertext for a share it derives, or lists as derived a
/// sender it should receive a ciphertext from (or one outside its group).
#[test]
fn derived_recipients_get_no_ciphertext() {
    let cfg = SimConfig::new(10, 3); // t = 7: 2 derives for 3..=8, sends to 9, 0, 1
    let mut sim = Sim::new(cfg.clone(), random_inputs(&cfg)).unwrap();
    sim.advertise().unwrap();
    let mut coord = sim.coordinator.clone();
    let Some(Outgoing::Broadcast {
        message: Message::KeyList(kl),
        ..
    }) = sim.outbox.first().cloned()
    else {
        panic!()
    };
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let p = sim.slots[2].session.as_mut().unwrap();
    let good = p.on_key_list(&kl, &mut rng).unwrap();
    assert_eq!(
        good.shares.iter().map(|s| s.0).collect::<Vec<_>>(),
        vec![0, 1, 9]
    );
    let ct = good.shares[0].1;
    let mut for_derived = good.clone();
    for_derived.shares.insert(2, (3, ct));
    let mut missing = good.clone();
    missing.shares.remove(1);
    let mut swapped = good.clone();
    swapped.shares[2].0 = 8;
    for bad in [&for_derived, &missing, &swapped] {
        assert!(matches!(
            coord.on_share_keys(2, bad),
            Err(SecAggError::InvalidList(_))
        ));
    }
    assert_eq!(coord.on_share_keys(2, &good), Ok(()));

    // Participant side: 0 receives ciphertexts from 1, 2, 3 and derives 4..=9.
    let mut ok = Sim::new(cfg.clone(), random_inputs(&cfg)).unwrap();
    ok.advertise().unwrap();
    ok.share_keys().unwrap();
    {
        let b = bundle_of(&mut ok.outbox, 0);
        assert_eq!(
            b.shares.iter().map(|s| s.0).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!(b.derived, vec![4, 5, 6, 7, 8, 9]);
    }
    type Edit = fn(&mut ShareBundle);
    let attacks: Vec<Edit> = vec![
        // A ciphertext for a derived share (4's share is derived).
        |b| {
            let ct = b.shares[0].1;
            b.derived.retain(|&v| v != 4);
            b.shares.push((4, ct));
        },
        // A sent share claimed as derived.
        |b| {
            b.shares.remove(0);
            b.derived.insert(0, 1);
        },
        // A derived sender outside the group / U1.
        |b| b.derived.push(42),
        // Unordered derived list.
        |b| b.derived.swap(0, 1),
    ];
    for edit in attacks {
        let sim = share_bundle_attack(|out| edit(bundle_of(out, 0)));
        assert!(
            matches!(sim.error_of(0), Some(SecAggError::InvalidList(_))),
            "{:?}",
            sim.error_of(0)
        );
        assert_eq!(sim.participant(0).unwrap().stage(), Stage::Aborted);
    }
}

/// A dealer that never sends its `ShareKeys` is not in U2: the recipients in
/// its derived set are not told to keep a share for it, do not mask with it,
/// and the session completes; one that did send is in U2 everywhere.
#[test]
fn derived_shares_follow_u2() {
    let cfg = SimConfig::new(10, 3);
    let mut sim = Sim::new(cfg.clone(), random_inputs(&cfg)).unwrap();
    sim.drops.insert(5, DropPoint::AfterAdvertise);
    sim.drops.insert(6, DropPoint::AfterShareKeys);
    sim.advertise().unwrap();
    sim.share_keys().unwrap();
    for o in &sim.outbox {
        if let Outgoing::Unicast {
            message: Message::ShareBundle(b),
            ..
        } = o
        {
            assert!(!b.derived.contains(&5) && !b.shares.iter().any(|s| s.0 == 5));
            assert!(b.to == 6 || b.derived.contains(&6) || b.shares.iter().any(|s| s.0 == 6));
        }
    }
    sim.masked_input().unwrap();
    sim.consistency().unwrap();
    let out = sim.unmask().unwrap();
    assert_eq!(out.sum, sim.plaintext_sum(&out.survivors));
    assert!(!out.survivors.contains(&5) && !out.survivors.contains(&6));
}

/// g16: the output opens the survivors' signed commitments, with and without dropouts, and
/// a sum, blinding or commitment list changed in any way does not.
#[test]
fn g16_the_output_opens_the_signed_commitments_and_nothing_else() {
    for dropped in [0usize, 2] {
        let mut cfg = SimConfig::new(10, 12);
        cfg.seed = 1600 + dropped as u64;
        let inputs = random_inputs(&cfg);
        let mut sim = Sim::new(cfg, inputs).unwrap();
        for i in 0..dropped {
            sim.drops
                .insert(i as u32 * 4 + 1, DropPoint::AfterShareKeys);
        }
        let out = sim.run().output.unwrap();
        assert_eq!(out.survivors.len(), 10 - dropped);
        let ids: Vec<u32> = out.commitments.iter().map(|c| c.from).collect();
        assert_eq!(ids, out.survivors);
        let verify = |sum: &[u64], blinding: &[u64], cs: &[commit::SignedCommitment]| {
            commit::verify_sum(&sim.session, &sim.roster, sum, blinding, cs)
        };
        verify(&out.sum, &out.blinding_sum, &out.commitments).unwrap();

        let mut sum = out.sum.clone();
        sum[3] = sum[3].wrapping_add(1);
        assert!(matches!(
            verify(&sum, &out.blinding_sum, &out.commitments),
            Err(SecAggError::Unverified(_))
        ));
        let mut blinding = out.blinding_sum.clone();
        blinding[0] += 1;
        assert!(verify(&out.sum, &blinding, &out.commitments).is_err());
        // One survivor's commitment left out: the sum no longer opens them.
        let fewer = &out.commitments[1..];
        assert!(verify(&out.sum, &out.blinding_sum, fewer).is_err());
        // A commitment re-signed by nobody (its signature moved to another point).
        let mut forged = out.commitments.clone();
        forged[0].commitment = forged[1].commitment;
        assert!(matches!(
            verify(&out.sum, &out.blinding_sum, &forged),
            Err(SecAggError::BadSignature(_))
        ));
        // Under the threshold: refused whatever it opens.
        let t = sim.session.params.threshold as usize;
        assert!(matches!(
            verify(&out.sum, &out.blinding_sum, &out.commitments[..t - 1]),
            Err(SecAggError::Unverified(_))
        ));
    }
}

/// g16d: the commitments are the ones the survivors advertised (each member's key list
/// carries them under the advertisement's signature), and a caller that checked some of
/// those signatures as a member skips only those: a commitment swapped in the record, a
/// key changed, or a sum that does not open still fail.
#[test]
fn g16d_commitments_are_the_advertised_ones_and_checked_members_skip_only_their_own() {
    let mut cfg = SimConfig::new(8, 6);
    cfg.seed = 1620;
    let inputs = random_inputs(&cfg);
    let mut sim = Sim::new(cfg, inputs).unwrap();
    sim.advertise().unwrap();
    let Some(Outgoing::Broadcast {
        message: Message::KeyList(keys),
        ..
    }) = sim.outbox.first().cloned()
    else {
        panic!("the key list is the coordinator's next message")
    };
    assert!(keys.entries.iter().all(|e| e.commitment != [0; 32]));
    sim.share_keys().unwrap();
    sim.masked_input().unwrap();
    sim.consistency().unwrap();
    let out = sim.unmask().unwrap();
    for c in &out.commitments {
        let e = keys.entries.iter().find(|e| e.id == c.from).unwrap();
        assert_eq!(
            (e.c_pk, e.s_pk, e.commitment, e.signature),
            (c.c_pk, c.s_pk, c.commitment, c.signature)
        );
    }
    let all: std::collections::BTreeSet<u32> = out.survivors.iter().copied().collect();
    let verify = |cs: &[commit::SignedCommitment], checked: &std::collections::BTreeSet<u32>| {
        commit::verify_sum_with_checked(
            &sim.session,
            &sim.roster,
            &out.sum,
            &out.blinding_sum,
            cs,
            checked,
        )
    };
    verify(&out.commitments, &all).unwrap();
    // Survivor 0's commitment swapped for another point: with its signature unchecked the
    // swap is caught; even taken as checked, the sum no longer opens.
    let mut swapped = out.commitments.clone();
    swapped[0].commitment = swapped[1].commitment;
    let others: std::collections::BTreeSet<u32> = all.iter().copied().skip(1).collect();
    assert!(matches!(
        verify(&swapped, &others),
        Err(SecAggError::BadSignature(id)) if id == swapped[0].from
    ));
    assert!(matches!(
        verify(&swapped, &all),
        Err(SecAggError::Unverified(_))
    ));
    // A changed key is another advertisement: refused unless the caller checked it.
    let mut rekeyed = out.commitments.clone();
    rekeyed[2].s_pk[0] ^= 1;
    let without_2: std::collections::BTreeSet<u32> = all
        .iter()
        .copied()
        .filter(|id| *id != rekeyed[2].from)
        .collect();
    assert!(matches!(
        verify(&rekeyed, &without_2),
        Err(SecAggError::BadSignature(_))
    ));
    // A commitment that is not a group element is refused at the advertisement, naming
    // its sender, before anything is summed; the same advertisement with a real point is
    // taken.
    let fresh = Sim::new(SimConfig::new(8, 6), vec![]).unwrap();
    let sid = fresh.session.session_id;
    let pk = |b: u8| {
        x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from([b; 32])).to_bytes()
    };
    let (c, s_key) = (pk(7), pk(8));
    let advertise = |commitment: [u8; 32]| Advertise {
        session_id: sid,
        from: 0,
        c_pk: c,
        s_pk: s_key,
        commitment,
        signature: fresh.identities[0]
            .sign(&crypto::advertise_transcript(
                &sid,
                0,
                &c,
                &s_key,
                &commitment,
            ))
            .to_bytes(),
    };
    let mut coord = fresh.coordinator.clone();
    assert_eq!(
        coord.on_advertise(0, &advertise([0xFF; 32])),
        Err(SecAggError::InvalidInput(
            "the commitment is not a group element"
        ))
    );
    let point = keys.entries[0].commitment;
    assert_eq!(coord.on_advertise(0, &advertise(point)), Ok(()));
    // A commitment advertised in one session does not verify in another.
    let mut other = sim.session.clone();
    other.session_id[0] ^= 1;
    assert!(matches!(
        commit::verify_sum(
            &other,
            &sim.roster,
            &out.sum,
            &out.blinding_sum,
            &out.commitments
        ),
        Err(SecAggError::BadSignature(_))
    ));
}

/// A survivor list is checked as signing would check it, without signing or changing
/// state: the agent records a set in its ledger only once this passes.
#[test]
fn a_survivor_list_is_checked_without_signing_or_changing_state() {
    let cfg = SimConfig::new(6, 4);
    let mut sim = Sim::new(cfg.clone(), random_inputs(&cfg)).unwrap();
    sim.advertise().unwrap();
    sim.share_keys().unwrap();
    sim.masked_input().unwrap();
    let sid = sim.session.session_id;
    let p = sim.participant(0).unwrap();
    let list = |survivors: Vec<u32>| SurvivorList {
        session_id: sid,
        survivors,
    };
    assert!(matches!(
        p.check_survivors(&list(vec![1, 2, 3, 4, 5])),
        Err(SecAggError::InvalidList(_))
    ));
    assert!(matches!(
        p.check_survivors(&list(vec![0, 1])),
        Err(SecAggError::PolicyViolation(_) | SecAggError::TooFewParticipants { .. })
    ));
    assert_eq!(p.stage(), Stage::MaskedInput, "nothing changed");
    p.check_survivors(&list(vec![0, 1, 2, 3, 4, 5])).unwrap();
    // The session still signs the list it accepts.
    sim.consistency().unwrap();
    sim.unmask().unwrap();
}

/// g16b: commitments over a leading part of the input (an update, with an evaluation's
/// histograms after it): the output's leading words open them, any change there does not,
/// and the words after the part are not covered; the configuration carries the length.
#[test]
fn g16b_a_commitment_to_a_prefix_opens_to_the_summed_prefix_only() {
    let mut cfg = SimConfig::new(6, 20);
    cfg.seed = 1610;
    cfg.commit_prefix = Some(5);
    let inputs = random_inputs(&cfg);
    let mut sim = Sim::new(cfg, inputs).unwrap();
    assert_eq!(sim.session.params.committed_words(), 5);
    let decoded = SessionConfig::decode(&sim.session.encode()).unwrap();
    assert_eq!(decoded.params.commit_words, 5, "the prefix travels");
    let out = sim.run().output.unwrap();
    assert_eq!(
        out.sum,
        sim.plaintext_sum(&out.survivors),
        "the whole sum is exact"
    );
    let verify = |sum: &[u64]| {
        commit::verify_sum(
            &sim.session,
            &sim.roster,
            sum,
            &out.blinding_sum,
            &out.commitments,
        )
    };
    verify(&out.sum[..5]).unwrap();
    let mut changed = out.sum[..5].to_vec();
    changed[4] = changed[4].wrapping_add(1);
    assert!(matches!(verify(&changed), Err(SecAggError::Unverified(_))));
    // The whole sum is not what was committed to: its length is refused.
    assert!(matches!(verify(&out.sum), Err(SecAggError::Unverified(_))));
    assert!(verify(&out.sum[..4]).is_err());
}

/// g16c: a configuration whose commitment would be longer than the input is refused.
#[test]
fn g16c_a_commitment_longer_than_the_input_is_refused() {
    let mut cfg = SimConfig::new(4, 8);
    cfg.commit_prefix = Some(10);
    let inputs = random_inputs(&cfg);
    assert!(matches!(
        Sim::new(cfg, inputs),
        Err(SecAggError::InvalidConfig(_))
    ));
}

/// Each unmask request carries the quorum of signatures its recipient counts and no more
/// (the rest are bytes it would not read), and the session still completes with them.
#[test]
fn unmask_requests_carry_exactly_the_quorum_each_recipient_counts() {
    for cfg in [SimConfig::new(12, 4), harary(120, 4, 40, 28)] {
        let n = cfg.n;
        let quorum = cfg.params().share_threshold() as usize;
        let mut sim = Sim::new(cfg.clone(), random_inputs(&cfg)).unwrap();
        sim.advertise().unwrap();
        sim.share_keys().unwrap();
        sim.masked_input().unwrap();
        sim.consistency().unwrap();
        let mut seen = 0;
        for o in &sim.outbox {
            let (recipients, message) = match o {
                Outgoing::Broadcast {
                    recipients,
                    message,
                } => (recipients.clone(), message),
                Outgoing::Unicast { recipient, message } => (vec![*recipient], message),
            };
            let Message::UnmaskRequest(req) = message else {
                panic!("expected unmask requests, got {message:?}");
            };
            assert_eq!(req.signatures.len(), quorum, "n = {n}");
            assert!(req.signatures.len() < n, "n = {n}: fewer than every signer");
            seen += recipients.len();
        }
        assert_eq!(seen, n, "every signer gets a request");
        let out = sim.unmask().expect("the session completes");
        assert_eq!(out.survivors.len(), n);
        assert_eq!(out.sum, sim.plaintext_sum(&out.survivors));
    }
}

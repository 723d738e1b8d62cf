//! What the lineage checks cost (criterion): a participant's commitment to its input per
//! session (d in {32, 1024}), and an agent's check of one session record
//! (`commit::verify_sum`: n signature verifications, n point additions and one
//! multi-scalar multiplication of d + 1 points) for n in {5, 50, 200}. An agent checks one
//! record per training round (its update's; evaluations carry no commitments).

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use fedrisk_secagg::commit::{Blinding, commit, verify_sum};
use fedrisk_secagg::sim::{Sim, SimConfig, random_inputs};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("commit");
    g.sample_size(20);
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    for d in [32usize, 1024] {
        let input: Vec<u64> = (0..=d as u64).map(|k| k * 977).collect();
        let blinding = Blinding::random(&mut rng);
        g.bench_with_input(BenchmarkId::new("participant_commit", d), &d, |b, _| {
            b.iter(|| commit(black_box(&input), &blinding))
        });
    }
    for n in [5usize, 50, 200] {
        for d in [32usize, 1024] {
            let mut cfg = SimConfig::new(n, d);
            cfg.seed = (n * 31 + d) as u64;
            cfg.threads = std::thread::available_parallelism().map_or(2, |p| p.get());
            let inputs = random_inputs(&cfg);
            let mut sim = Sim::new(cfg, inputs).expect("simulation");
            let out = sim.run().output.expect("session output");
            g.bench_with_input(
                BenchmarkId::new(format!("agent_verify_record_n{n}"), d),
                &d,
                |b, _| {
                    b.iter(|| {
                        verify_sum(
                            &sim.session,
                            &sim.roster,
                            black_box(&out.sum),
                            &out.blinding_sum,
                            &out.commitments,
                        )
                        .expect("verifies")
                    })
                },
            );
        }
    }
    g.finish();
    per_member(c);
}

/// The two checks an agent makes for every member of every committed session, whatever the
/// graph: the member's advertisement signature (batched, as `check_key_list` does) and, at
/// the next session, the decompression of its commitment (as `verify_sum` does). Divided by
/// n they are the floor of an agent's per-member cost per session, which is what makes a
/// round's total work grow as n^2 on a fixed number of cores.
fn per_member(c: &mut Criterion) {
    use curve25519_dalek::RistrettoPoint;
    use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
    let n = 200usize;
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let keys: Vec<SigningKey> = (0..n).map(|_| SigningKey::generate(&mut rng)).collect();
    let public: Vec<VerifyingKey> = keys.iter().map(SigningKey::verifying_key).collect();
    let sid = [7u8; 32];
    let points: Vec<[u8; 32]> = (0..n)
        .map(|i| {
            let mut wide = [0u8; 64];
            wide[..8].copy_from_slice(&(i as u64).to_le_bytes());
            RistrettoPoint::from_uniform_bytes(&wide)
                .compress()
                .to_bytes()
        })
        .collect();
    let messages: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            fedrisk_secagg::crypto::advertise_transcript(
                &sid, i as u32, &[1; 32], &[2; 32], &points[i],
            )
        })
        .collect();
    let sigs: Vec<ed25519_dalek::Signature> =
        keys.iter().zip(&messages).map(|(k, m)| k.sign(m)).collect();
    let mut g = c.benchmark_group("per_member_floor");
    g.sample_size(30);
    g.bench_function("advertisement_signatures_batched_n200", |b| {
        b.iter(|| {
            let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
            ed25519_dalek::verify_batch(&refs, &sigs, &public).expect("valid")
        })
    });
    g.bench_function("commitment_decompressions_n200", |b| {
        b.iter(|| {
            points
                .iter()
                .map(|p| {
                    curve25519_dalek::ristretto::CompressedRistretto(*p)
                        .decompress()
                        .expect("point")
                })
                .fold(RistrettoPoint::default(), |acc, p| acc + p)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

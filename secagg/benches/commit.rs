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
}

criterion_group!(benches, bench);
criterion_main!(benches);

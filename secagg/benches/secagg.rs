//! Secure-aggregation benchmarks (criterion): for n in {10, 100, 1000} and
//! d in {32, 1024}, with 0% and 10% dropouts, the coordinator's unmasking step
//! (reconstruction plus mask removal) is timed by criterion; the whole-session
//! coordinator CPU time, the mean per-participant CPU time and the bytes each
//! participant sends and receives come from one instrumented simulated session
//! and are printed as a table.
//!
//! "10% dropouts" are participants that drop after sharing their keys and
//! before sending their masked input: the expensive case, where the
//! coordinator rebuilds each dropped participant's mask key and removes its
//! pairwise mask from every survivor's vector. Expansion is bytes sent per
//! participant divided by the plaintext vector, `8 * (d + 1)` bytes.
//!
//! n = 1000 runs only with `FEDRISK_BENCH_LARGE=1`: its set-up simulates 1000
//! complete-graph participants, about 3.5 minutes per configuration on 2 cores.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use fedrisk_secagg::sim::{DropPoint, Sim, SimConfig, random_inputs};

struct Row {
    n: usize,
    d: usize,
    drop_pct: usize,
    participant_ms: f64,
    coordinator_ms: f64,
    unmask_ms: f64,
    sent: f64,
    received: f64,
}

fn prepare(n: usize, d: usize, drop_pct: usize) -> (Sim, Row) {
    let mut cfg = SimConfig::new(n, d);
    cfg.seed = (n * 7919 + d * 31 + drop_pct) as u64;
    let inputs = random_inputs(&cfg);
    let mut sim = Sim::new(cfg, inputs).expect("valid simulation config");
    let dropped = n * drop_pct / 100;
    for i in 0..dropped {
        sim.drops
            .insert((i * n / dropped.max(1)) as u32, DropPoint::AfterShareKeys);
    }
    sim.advertise().expect("advertise");
    sim.share_keys().expect("share keys");
    sim.masked_input().expect("masked input");
    sim.consistency().expect("consistency");
    sim.collect_unmask();
    let mut probe = sim.coordinator.clone();
    let start = std::time::Instant::now();
    let step = probe.close_stage().expect("unmask");
    let unmask = start.elapsed();
    black_box(step);
    let survivors: Vec<&fedrisk_secagg::sim::Slot> = sim
        .slots
        .iter()
        .enumerate()
        .filter(|(i, _)| !sim.drops.contains_key(&(*i as u32)))
        .map(|(_, s)| s)
        .collect();
    let k = survivors.len() as f64;
    let row = Row {
        n,
        d,
        drop_pct,
        participant_ms: survivors.iter().map(|s| s.time.as_secs_f64()).sum::<f64>() / k * 1e3,
        coordinator_ms: (sim.coordinator_time + unmask).as_secs_f64() * 1e3,
        unmask_ms: unmask.as_secs_f64() * 1e3,
        sent: survivors.iter().map(|s| s.sent as f64).sum::<f64>() / k,
        received: survivors.iter().map(|s| s.received as f64).sum::<f64>() / k,
    };
    (sim, row)
}

fn bench(c: &mut Criterion) {
    let large = std::env::var_os("FEDRISK_BENCH_LARGE").is_some();
    let mut rows = Vec::new();
    let mut group = c.benchmark_group("coordinator_unmask");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(200));
    group.measurement_time(Duration::from_secs(2));
    for n in [10usize, 100, 1000] {
        if !large && n == 1000 {
            continue;
        }
        for d in [32usize, 1024] {
            for drop_pct in [0usize, 10] {
                let (sim, row) = prepare(n, d, drop_pct);
                rows.push(row);
                group.bench_with_input(
                    BenchmarkId::new(format!("n{n}_d{d}"), format!("{drop_pct}pct_dropped")),
                    &sim.coordinator,
                    |b, coordinator| {
                        b.iter_batched(
                            || coordinator.clone(),
                            |mut c| black_box(c.close_stage().expect("unmask")),
                            criterion::BatchSize::LargeInput,
                        )
                    },
                );
            }
        }
    }
    group.finish();

    println!();
    println!(
        "| n | d | dropped | participant CPU / session (ms) | coordinator CPU / session (ms) | of which unmask (ms) | bytes sent / participant | bytes received / participant | expansion (sent / 8(d+1)) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {}% | {:.1} | {:.1} | {:.1} | {:.0} | {:.0} | {:.2}x |",
            r.n,
            r.d,
            r.drop_pct,
            r.participant_ms,
            r.coordinator_ms,
            r.unmask_ms,
            r.sent,
            r.received,
            r.sent / (8.0 * (r.d as f64 + 1.0))
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);

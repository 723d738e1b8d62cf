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
//! Each `(n, d)` simulates the key exchange once and forks the session for the
//! two dropout rates (see `prepare`). n = 1000 runs only with
//! `FEDRISK_BENCH_LARGE=1`: its set-up simulates 1000 complete-graph
//! participants, a few minutes per `d` on 2 cores.

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
    unmask_cpu_ms: Option<f64>,
    sent: f64,
    received: f64,
}

/// CPU time of the calling thread (Linux `schedstat`, nanoseconds), so the
/// unmask step can be reported as single-core CPU time even when another job
/// shares the cores and stretches the wall clock.
fn thread_cpu_time() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = s.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// One key exchange per `(n, d)` (advertise and share keys, participants on
/// `threads` threads), then the session is forked and finished once per
/// dropout rate, so the expensive first half is simulated once, not twice.
fn prepare(n: usize, d: usize, drop_pcts: &[usize]) -> Vec<(Sim, Row)> {
    let mut cfg = SimConfig::new(n, d);
    cfg.seed = (n * 7919 + d * 31) as u64;
    cfg.threads = std::thread::available_parallelism().map_or(2, |p| p.get());
    let inputs = random_inputs(&cfg);
    let mut base = Sim::new(cfg, inputs).expect("valid simulation config");
    base.advertise().expect("advertise");
    base.share_keys().expect("share keys");
    drop_pcts
        .iter()
        .map(|&drop_pct| {
            let mut sim = base.fork();
            let dropped = n * drop_pct / 100;
            for i in 0..dropped {
                sim.drops
                    .insert((i * n / dropped.max(1)) as u32, DropPoint::AfterShareKeys);
            }
            sim.masked_input().expect("masked input");
            sim.consistency().expect("consistency");
            sim.collect_unmask();
            // The coordinator's handlers ran on this thread only, between the
            // participants' (threaded) steps: `coordinator_time` holds no
            // participant work. The unmask step is timed on a copy, alone.
            let mut probe = sim.coordinator.clone();
            let cpu_start = thread_cpu_time();
            let start = std::time::Instant::now();
            let step = probe.close_stage().expect("unmask");
            let unmask = start.elapsed();
            let unmask_cpu = thread_cpu_time()
                .zip(cpu_start)
                .map(|(b, a)| b.saturating_sub(a));
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
                participant_ms: survivors.iter().map(|s| s.time.as_secs_f64()).sum::<f64>() / k
                    * 1e3,
                coordinator_ms: (sim.coordinator_time + unmask).as_secs_f64() * 1e3,
                unmask_ms: unmask.as_secs_f64() * 1e3,
                unmask_cpu_ms: unmask_cpu.map(|t| t.as_secs_f64() * 1e3),
                sent: survivors.iter().map(|s| s.sent as f64).sum::<f64>() / k,
                received: survivors.iter().map(|s| s.received as f64).sum::<f64>() / k,
            };
            (sim, row)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let large = std::env::var_os("FEDRISK_BENCH_LARGE").is_some();
    let mut rows = Vec::new();
    let mut group = c.benchmark_group("coordinator_unmask");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(200));
    group.measurement_time(Duration::from_secs(2));
    // Optional filters, e.g. `FEDRISK_BENCH_N=1000 FEDRISK_BENCH_D=1024`.
    let only = |var: &str, v: usize| {
        std::env::var(var)
            .map(|s| s.split(',').any(|x| x.trim() == v.to_string()))
            .unwrap_or(true)
    };
    for n in [10usize, 100, 1000] {
        if (!large && n == 1000) || !only("FEDRISK_BENCH_N", n) {
            continue;
        }
        for d in [32usize, 1024] {
            if !only("FEDRISK_BENCH_D", d) {
                continue;
            }
            for (sim, row) in prepare(n, d, &[0, 10]) {
                let drop_pct = row.drop_pct;
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
        "| n | d | dropped | participant CPU / session (ms) | coordinator CPU / session (ms) | of which unmask (ms) | unmask thread CPU (ms) | bytes sent / participant | bytes received / participant | expansion (sent / 8(d+1)) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {}% | {:.1} | {:.1} | {:.1} | {} | {:.0} | {:.0} | {:.2}x |",
            r.n,
            r.d,
            r.drop_pct,
            r.participant_ms,
            r.coordinator_ms,
            r.unmask_ms,
            r.unmask_cpu_ms
                .map_or_else(|| "n/a".to_string(), |t| format!("{t:.1}")),
            r.sent,
            r.received,
            r.sent / (8.0 * (r.d as f64 + 1.0))
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);

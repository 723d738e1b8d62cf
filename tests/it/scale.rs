//! Fifty participant processes in one secure round.

use std::process::Command;
use std::time::{Duration, Instant};

use fedrisk_models::synth::generate;

use crate::harness::{coordinator_bin, run_simulate, secs, synth_config, tail};

#[test]
fn fifty_agents_finish_a_secure_round() {
    let dir = tempfile::Builder::new()
        .prefix("fedrisk-it-50-")
        .tempdir()
        .expect("tempdir");
    let data = dir.path().join("data");
    let cfg = synth_config(50, 20_000, 2_000, 50);
    assert_eq!(cfg.institutions.len(), 50);
    generate(&cfg).write_dir(&data).expect("writing data");
    let started = Instant::now();
    let mut cmd = Command::new(coordinator_bin());
    cmd.arg("simulate")
        .arg("--data")
        .arg(&data)
        .arg("--schema")
        .arg(data.join("schema.json"))
        .args(["--rounds", "1", "--processes", "--algorithm", "newton"]);
    let (_sim, report) = run_simulate(cmd, dir.path(), 1, Duration::from_secs(170));
    let wall = secs(started);
    let out = dir.path().join("out");
    let rounds = report["rounds"].as_array().expect("rounds");
    assert_eq!(rounds[0]["round"], 1);
    assert_eq!(rounds[0]["survivors"], 50, "{report}");
    assert_eq!(
        report["participants"].as_array().map(Vec::len),
        Some(50),
        "{report}"
    );
    // Fifty separate agent processes took part, each to the end of the job.
    let peaks = report["participant_peak_rss_mb"].as_array().expect("peaks");
    assert_eq!(peaks.len(), 50, "{report}");
    assert!(
        peaks
            .iter()
            .all(|p| p[1].as_f64().is_some_and(|mb| mb > 0.0)),
        "every agent process reports its peak memory: {peaks:?}"
    );
    for i in 1..=50 {
        let log = std::fs::read_to_string(out.join(format!("federation/logs/inst_{i:02}.log")))
            .unwrap_or_default();
        assert!(
            log.contains("job 1 completed"),
            "inst_{i:02}'s agent did not finish the job:\n{}",
            tail(&log, 10)
        );
    }
    // The coordinator was a process of its own (`serve`, as operators run it), and the
    // peak memory reported is that process's.
    let coordinator_log =
        std::fs::read_to_string(out.join("federation/logs/coordinator.log")).unwrap_or_default();
    assert!(
        coordinator_log.contains("coordinator listening"),
        "no serve process logged:\n{}",
        tail(&coordinator_log, 10)
    );
    let coordinator_mb = report["coordinator_peak_rss_mb"].as_f64().unwrap_or(0.0);
    assert!(
        coordinator_mb > 1.0,
        "the coordinator process's peak memory: {report}"
    );
    let auc = rounds[0]["auc"].as_f64().expect("auc");
    assert!(auc > 0.6, "one Newton step should already rank: AUC {auc}");
    println!(
        "50 participant processes, 1 secure round: wall {wall:.1} s (job {:.1} s, round {:.2} s, {} B up, {} B down), test AUC {auc:.4}",
        report["seconds_total"].as_f64().unwrap_or(f64::NAN),
        rounds[0]["seconds"].as_f64().unwrap_or(f64::NAN),
        rounds[0]["bytes_up"],
        rounds[0]["bytes_down"],
    );
}

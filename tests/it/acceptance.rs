//! Acceptance on the real shared data sets (taiwan, gmsc): the federated model reaches the
//! centralized scikit-learn baseline. Ignored by default (they need `../shared/data` and take
//! minutes); run with `cargo test --release -p fedrisk-tests -- --ignored`. Missing data is a
//! failure, not a skip.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{coordinator_bin, read_json, run_simulate, secs, shared_data};

fn data_set(name: &str) -> PathBuf {
    let dir = shared_data().join(name);
    for f in ["participants", "test.csv", "baselines.json"] {
        assert!(
            dir.join(f).exists(),
            "{} is missing: these tests need the shared data (set FEDRISK_SHARED_DATA)",
            dir.join(f).display()
        );
    }
    dir
}

/// Runs `simulate` and returns (report, centralized baseline AUC).
fn simulate(name: &str, algorithm: &str, rounds: u32, extra: &[&str]) -> (Value, f64) {
    let data = data_set(name);
    let baselines = read_json(&data.join("baselines.json"));
    let central = baselines["centralized"]["auc"]
        .as_f64()
        .expect("centralized.auc in baselines.json");
    let dir = tempfile::Builder::new()
        .prefix("fedrisk-it-accept-")
        .tempdir()
        .expect("tempdir");
    let started = Instant::now();
    let mut cmd = Command::new(coordinator_bin());
    cmd.arg("simulate")
        .arg("--data")
        .arg(&data)
        .args(["--algorithm", algorithm, "--rounds", &rounds.to_string()])
        .args(extra);
    let (p, report) = run_simulate(cmd, dir.path(), rounds as usize, Duration::from_secs(1800));
    println!(
        "{name} {algorithm} x{rounds}: {:.1} s\n{}",
        secs(started),
        p.stdout()
    );
    (report, central)
}

fn final_auc(report: &Value) -> f64 {
    report["rounds"]
        .as_array()
        .and_then(|r| r.last())
        .and_then(|r| r["auc"].as_f64())
        .expect("final round AUC")
}

fn assert_near(name: &str, auc: f64, central: f64, tol: f64) {
    println!("{name}: federated test AUC {auc:.5}, centralized {central:.5}, tolerance {tol}");
    assert!(
        (auc - central).abs() <= tol,
        "{name}: federated test AUC {auc:.5} is not within {tol} of the centralized {central:.5}"
    );
}

fn assert_everyone_gains(report: &Value) {
    for p in report["participants"].as_array().expect("participants") {
        let local = p["local_only_test_auc"].as_f64().expect("local AUC");
        let pooled = p["pooled_model_test_auc"].as_f64().expect("pooled AUC");
        assert!(
            pooled >= local,
            "{}: the federated model's test AUC {pooled:.5} is below its local-only model's {local:.5}",
            p["name"]
        );
    }
}

#[test]
#[ignore = "needs ../shared/data; run with --ignored"]
fn simulate_taiwan_newton_meets_the_acceptance() {
    let (report, central) = simulate("taiwan", "newton", 10, &[]);
    assert_near("taiwan newton", final_auc(&report), central, 0.001);
    assert_everyone_gains(&report);
}

#[test]
#[ignore = "needs ../shared/data; run with --ignored"]
fn simulate_taiwan_fedavg_meets_the_acceptance() {
    let (report, central) = simulate("taiwan", "fedavg", 30, &[]);
    assert_near("taiwan fedavg", final_auc(&report), central, 0.003);
}

#[test]
#[ignore = "needs ../shared/data; run with --ignored"]
fn simulate_gmsc_newton_meets_the_acceptance() {
    let (report, central) = simulate("gmsc", "newton", 10, &[]);
    assert_near("gmsc newton", final_auc(&report), central, 0.002);
}

/// The pooled model's test AUC must reach `floor`, and every institution must score at
/// least as well with it as with its own model binned the same way on its own rows.
fn assert_woe(name: &str, report: &Value, floor: f64) {
    assert_eq!(report["binning"], "woe", "{name}: the run was not binned");
    let auc = final_auc(report);
    println!("{name} --binning woe: federated test AUC {auc:.5} (floor {floor})");
    assert!(
        auc >= floor,
        "{name}: federated WOE test AUC {auc:.5} is below {floor}"
    );
    assert_everyone_gains(report);
    let features = report["features"].as_array().expect("feature report");
    assert!(
        features.iter().all(|f| f["iv"].as_f64().is_some()),
        "every feature has an IV"
    );
}

#[test]
#[ignore = "needs ../shared/data; run with --ignored"]
fn simulate_gmsc_woe_with_accepted_special_codes_reaches_0_850() {
    let (report, _) = simulate(
        "gmsc",
        "newton",
        10,
        &["--binning", "woe", "--accept-suggested-specials"],
    );
    assert_woe("gmsc", &report, 0.850);
    // The special codes infer suggests are the past-due columns' 96/98, each binned apart.
    let specials: Vec<&str> = report["features"]
        .as_array()
        .expect("features")
        .iter()
        .filter(|f| {
            f["bins"]
                .as_array()
                .is_some_and(|b| b.iter().any(|b| b["label"] == "special 98"))
        })
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert_eq!(specials.len(), 3, "{specials:?}");
}

/// taiwan with the default encoding (a coefficient per bin) reaches the 0.775
/// (measured 0.7774; optbinning's pooled WOE fit: 0.7743), well above raw-feature LR.
#[test]
#[ignore = "needs ../shared/data; run with --ignored"]
fn simulate_taiwan_woe_reaches_0_775_and_beats_every_local_model() {
    let (report, central) = simulate("taiwan", "newton", 10, &["--binning", "woe"]);
    assert_woe("taiwan", &report, 0.775);
    assert!(final_auc(&report) > central + 0.03);
}

/// The classic one-coefficient-per-feature WOE encoding stays available and still beats
/// every institution's own model binned and encoded the same way (measured 0.7721).
#[test]
#[ignore = "needs ../shared/data; run with --ignored"]
fn simulate_taiwan_woe_encoding_beats_every_local_model() {
    let (report, central) = simulate(
        "taiwan",
        "newton",
        10,
        &["--binning", "woe", "--encoding", "woe"],
    );
    assert_woe("taiwan", &report, 0.770);
    assert!(final_auc(&report) > central + 0.03);
}

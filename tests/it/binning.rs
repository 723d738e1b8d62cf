//! Binning end to end on data the project has never seen: a text label (`--positive bad`),
//! a text categorical, ragged missing values and a constant column. `simulate --binning woe`
//! bins from secure sums; the model file scores raw rows with `fedrisk-participant score`;
//! the feature report and the scorecard export from the model.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::harness::{Lcg, coordinator_bin, participant_bin, run_ok, run_simulate};

/// A small deterministic generator (no data from anywhere else).
fn write_rows(path: &Path, rows: usize, rng: &mut Lcg) {
    let regions = ["north", "south", "east", "west", "islands"];
    let mut text = String::from("balance,region,months_late,flat,status\n");
    for i in 0..rows {
        let region = regions[(rng.unit() * regions.len() as f64) as usize % regions.len()];
        let balance = (rng.unit() * 20_000.0).round();
        let late = (rng.unit() * rng.unit() * 6.0).floor();
        let z =
            -2.0 + balance / 10_000.0 + 0.6 * late + if region == "islands" { 0.8 } else { 0.0 };
        let bad = rng.unit() < 1.0 / (1.0 + (-z).exp());
        // Ragged missing values: some rows lack the balance, others the region.
        let balance = if i % 17 == 3 {
            String::new()
        } else {
            balance.to_string()
        };
        let region = if i % 23 == 5 { "" } else { region };
        let _ = writeln!(
            text,
            "{balance},{region},{late},7,{}",
            if bad { "bad" } else { "good" }
        );
    }
    std::fs::write(path, text).expect("write rows");
}

#[test]
fn unseen_data_bins_trains_scores_and_exports_a_scorecard() {
    let dir = tempfile::Builder::new()
        .prefix("fedrisk-it-binning-")
        .tempdir()
        .expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("participants")).expect("mkdir");
    let mut rng = Lcg(42);
    for (name, rows) in [("alpha", 2500), ("beta", 1800), ("gamma", 1200)] {
        write_rows(
            &data.join(format!("participants/{name}.csv")),
            rows,
            &mut rng,
        );
    }
    write_rows(&data.join("test.csv"), 2000, &mut rng);
    let mut cmd = Command::new(coordinator_bin());
    cmd.arg("simulate")
        .arg("--data")
        .arg(&data)
        .args(["--label", "status", "--positive", "bad", "--rounds", "4"])
        .args(["--binning", "woe"]);
    let (sim, report) = run_simulate(cmd, dir.path(), 4, Duration::from_secs(300));
    let stdout = sim.stdout();
    assert!(stdout.contains("feature report"), "{stdout}");
    let features = report["features"].as_array().expect("feature report");
    let by_name = |n: &str| {
        features
            .iter()
            .find(|f| f["name"] == n)
            .unwrap_or_else(|| panic!("{n} in {features:?}"))
    };
    // The constant column is left out, with the reason.
    let flat = by_name("flat");
    assert_eq!(flat["kept"], false);
    assert!(
        flat["note"].as_str().is_some_and(|n| n.contains("one bin")),
        "{flat}"
    );
    // The text categorical is binned by level; its missing values have a bin of their own.
    let region = by_name("region");
    let labels: Vec<&str> = region["bins"]
        .as_array()
        .expect("bins")
        .iter()
        .filter_map(|b| b["label"].as_str())
        .collect();
    assert!(labels.iter().any(|l| l.contains("islands")), "{labels:?}");
    assert!(labels.contains(&"missing"), "{labels:?}");
    assert!(by_name("months_late")["iv"].as_f64().expect("iv") > 0.1);
    assert!(
        report["participants"]
            .as_array()
            .expect("participants")
            .iter()
            .all(|p| p["local_only_test_auc"].as_f64().is_some())
    );
    // The model scores raw rows with its bins.
    let model = dir.path().join("out/model.json");
    let scores = dir.path().join("scores.csv");
    let out = run_ok(
        Command::new(participant_bin())
            .arg("score")
            .arg("--model")
            .arg(&model)
            .arg("--data")
            .arg(data.join("test.csv"))
            .arg("--out")
            .arg(&scores),
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("2000 scores"), "{text}");
    // The scorecard: JSON and CSV, and the score-to-PD table.
    let json = dir.path().join("card.json");
    let csv = dir.path().join("card.csv");
    let out = run_ok(
        Command::new(participant_bin())
            .arg("scorecard")
            .arg("--model")
            .arg(&model)
            .arg("--json")
            .arg(&json)
            .arg("--csv")
            .arg(&csv),
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("600 points at 50:1 odds"), "{text}");
    assert!(text.contains("PD"), "{text}");
    let card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("card json")).expect("json");
    assert!(
        card["features"]
            .as_array()
            .expect("features")
            .iter()
            .all(|f| f["name"] != "flat")
    );
    let rows = std::fs::read_to_string(&csv).expect("card csv");
    assert!(rows.starts_with("feature,bin,woe,term,points\n"));
    assert!(rows.contains("months_late"));
    // `export --format scorecard` writes the same scorecard (default scaling), JSON and CSV,
    // and the model report shows its points per bin.
    let exported = dir.path().join("exported-card.json");
    run_ok(
        Command::new(participant_bin())
            .args(["export", "--format", "scorecard", "--model"])
            .arg(&model)
            .arg("--out")
            .arg(&exported),
    );
    let again: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&exported).expect("exported card"))
            .expect("json");
    assert_eq!(again, card);
    let exported_csv = dir.path().join("exported-card.csv");
    run_ok(
        Command::new(participant_bin())
            .args(["export", "--format", "scorecard-csv", "--model"])
            .arg(&model)
            .arg("--out")
            .arg(&exported_csv),
    );
    assert_eq!(
        std::fs::read_to_string(&exported_csv).expect("exported csv"),
        rows
    );
    run_ok(
        Command::new(coordinator_bin())
            .args(["report", "--model"])
            .arg(&model)
            .arg("--out")
            .arg(dir.path().join("report")),
    );
    let html = std::fs::read_to_string(dir.path().join("report/report.html")).expect("report");
    assert!(html.contains("Scorecard: points per bin") && html.contains("months_late"));
    assert!(
        html.contains("ROC curve"),
        "a federated WOE model carries its evaluation"
    );
}

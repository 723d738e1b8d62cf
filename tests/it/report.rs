//! The validators' view of a real job: the model file names the audit record that produced it
//! and carries the federation's evaluation; `report` writes the HTML model report from the
//! coordinator's database and from a model file; `psi` compares an institution's data with
//! the federation's score distribution locally; a scorecard export of a model without bins is
//! refused with the reason. The report renders in headless Chromium with its plots visible
//! (`#[ignore]`: `.ci/run` installs Chromium and runs it; it fails when Chromium is missing).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{Fed, JobOpts, Proc, coordinator_bin, participant_bin, run_ok, text};

/// A completed three-round job of three institutions; returns the federation, its running
/// coordinator, the job's status JSON and the exported model file.
fn real_job(seed: u64) -> (Fed, Proc, Value, PathBuf) {
    let fed = Fed::new(seed, 2000, 3);
    let (coord, status) = fed.complete_job(
        &JobOpts {
            name: "reported",
            rounds: 3,
            min_participants: 3,
            ..JobOpts::default()
        },
        Duration::from_secs(180),
    );
    let model = fed.export(1, 0);
    (fed, coord, status, model)
}

fn report_db(fed: &Fed, out: &str) -> PathBuf {
    run_ok(
        Command::new(coordinator_bin())
            .args(["report", "--database", "coord.db", "--job", "1"])
            .args(["--coordinator-cert", "pki/coordinator.pem", "--out", out])
            .current_dir(&fed.root),
    );
    fed.path(out).join("report.html")
}

#[test]
fn a_real_jobs_model_names_its_audit_record_reports_and_gives_each_institution_its_psi() {
    let (fed, _coordinator, status, model_path) = real_job(71);
    let model: Value =
        serde_json::from_str(&std::fs::read_to_string(&model_path).expect("model")).expect("json");
    let hash = model["content_hash"].as_str().expect("hash").to_owned();

    // Provenance: the audit record of the last session of the model's round.
    let audit_file = fed.path("audit.jsonl");
    run_ok(
        Command::new(coordinator_bin())
            .args(["audit", "export", "--database", "coord.db", "--out"])
            .arg(&audit_file)
            .current_dir(&fed.root),
    );
    let records: Vec<Value> = std::fs::read_to_string(&audit_file)
        .expect("audit")
        .lines()
        .map(|l| serde_json::from_str(l).expect("record"))
        .collect();
    let named = &model["provenance"]["audit_record"];
    let seq = named["seq"].as_u64().expect("audit_record.seq");
    let record = &records[seq as usize - 1];
    assert_eq!(record["seq"].as_u64(), Some(seq));
    assert_eq!(record["hash"], named["hash"], "{named} vs {record}");
    let body: Value = serde_json::from_str(record["body"].as_str().expect("body")).expect("body");
    assert_eq!(body["event"], "session_completed", "{body}");
    assert_eq!(
        (body["job"].as_u64(), body["round"].as_u64()),
        (Some(1), Some(3))
    );
    assert_eq!(body["kind"], "evaluation", "{body}");
    // ... and the model version record after it names the model's hash.
    assert!(
        records[seq as usize..].iter().any(|r| {
            let b: Value =
                serde_json::from_str(r["body"].as_str().unwrap_or("{}")).unwrap_or_default();
            b["event"] == "model_version" && b["content_hash"] == hash.as_str()
        }),
        "no model_version record names {hash} after record {seq}"
    );

    // The evaluation the model carries is the one the operator saw, round by round.
    let eval = &model["evaluation"];
    let hist = &eval["histogram"];
    let rows: u64 = ["positives", "negatives"]
        .iter()
        .flat_map(|k| hist[k].as_array().expect("counts").iter())
        .map(|c| c.as_u64().expect("count"))
        .sum();
    assert_eq!(Some(rows), eval["rows"].as_u64());
    assert!(rows > 100, "{rows} evaluation rows");
    let by_round = eval["by_round"].as_array().expect("by_round");
    let rounds: Vec<&Value> = status["rounds"]
        .as_array()
        .expect("rounds")
        .iter()
        .filter(|r| r["kind"] == "training")
        .collect();
    assert_eq!(by_round.len(), 3, "{eval}");
    for (f, r) in by_round.iter().zip(&rounds) {
        assert_eq!(f["round"], r["round"]);
        let (a, b) = (
            f["auc"].as_f64().expect("auc"),
            r["auc"].as_f64().expect("auc"),
        );
        assert!((a - b).abs() < 1e-12, "round {}: {a} vs {b}", f["round"]);
    }

    // The report from the coordinator's database: hash, audit head checked, participants.
    let html = std::fs::read_to_string(report_db(&fed, "report-db")).expect("report");
    let head = records.last().expect("records")["hash"]
        .as_str()
        .expect("head")
        .to_owned();
    for needle in [
        hash.as_str(),
        head.as_str(),
        named["hash"].as_str().expect("hash"),
        "chain verified",
        "verified with pki/coordinator.pem",
        "3 institution(s)",
        "ROC curve",
        "Calibration by decile",
        "Coefficients",
        "algorithm",
        "Job 1 `reported`",
    ] {
        assert!(html.contains(needle), "the report lacks {needle}");
    }
    assert!(!html.contains("<script"));
    // From the model file alone, in both binaries.
    for bin in [coordinator_bin(), participant_bin()] {
        let out = run_ok(
            Command::new(&bin)
                .arg("report")
                .arg("--model")
                .arg(&model_path)
                .args(["--out", "report-file"])
                .current_dir(&fed.root),
        );
        assert!(text(&out).contains("report.html"), "{}", text(&out));
        let html = std::fs::read_to_string(fed.path("report-file/report.html")).expect("report");
        assert!(html.contains(&hash) && html.contains(named["hash"].as_str().unwrap_or("-")));
        assert!(html.contains("not known from a model file alone"));
    }

    // Through the Operator API, as from another host: the operator's identity, no database.
    let report_api = |cert: &str, out: &str| {
        let dir = if cert == "ops" {
            fed.path("ops")
        } else {
            fed.institution_dir(cert)
        };
        Command::new(coordinator_bin())
            .arg("report")
            .arg("--coordinator")
            .arg(fed.url())
            .arg("--ca")
            .arg(fed.path("pki/ca.pem"))
            .arg("--cert")
            .arg(dir.join(format!("{cert}.pem")))
            .arg("--key")
            .arg(dir.join(format!("{cert}.key")))
            .args(["--job", "1", "--coordinator-cert", "pki/coordinator.pem"])
            .args(["--out", out])
            .current_dir(&fed.root)
            .output()
            .expect("running report")
    };
    let out = report_api("ops", "report-api");
    assert!(out.status.success(), "{}", text(&out));
    let api = std::fs::read_to_string(fed.path("report-api/report.html")).expect("report");
    // The report through the API is recorded as an export of the model, and its audit head
    // is that record.
    run_ok(
        Command::new(coordinator_bin())
            .args(["audit", "export", "--database", "coord.db", "--out"])
            .arg(&audit_file)
            .current_dir(&fed.root),
    );
    let after: Vec<Value> = std::fs::read_to_string(&audit_file)
        .expect("audit")
        .lines()
        .map(|l| serde_json::from_str(l).expect("record"))
        .collect();
    let last = after.last().expect("records");
    let body: Value = serde_json::from_str(last["body"].as_str().expect("body")).expect("body");
    assert_eq!(body["event"], "model_exported", "{body}");
    assert_eq!(body["content_hash"], hash.as_str(), "{body}");
    assert_eq!(body["round"].as_u64(), Some(3), "{body}");
    let api_head = last["hash"].as_str().expect("head");
    assert!(
        api.contains(api_head),
        "the API report lacks its audit head {api_head}"
    );
    assert!(api.contains(&format!("chain verified: {} records", after.len())));
    // The database's report, read now, is the same page but for where it came from.
    let db = std::fs::read_to_string(report_db(&fed, "report-db-after")).expect("report");
    let (api_source, db_source) = (
        format!("job 1 of the coordinator {}", fed.url()),
        "job 1 of the coordinator database coord.db",
    );
    assert!(api.contains(&api_source) && db.contains(db_source));
    assert_eq!(
        api.replace(&api_source, db_source),
        db,
        "the API's report differs from the database's"
    );
    // An institution's certificate is not an operator's.
    let out = report_api(&fed.institutions[0], "report-refused");
    assert!(!out.status.success(), "{}", text(&out));
    assert!(!fed.path("report-refused/report.html").exists());

    // PSI, locally: each institution's data against the federation's score distribution.
    let institution = &fed.institutions[0];
    let out = run_ok(
        Command::new(participant_bin())
            .args(["psi", "--model"])
            .arg(&model_path)
            .arg("--data")
            .arg(fed.data_file(institution))
            .arg("--json")
            .current_dir(&fed.root),
    );
    let psi: Value = serde_json::from_slice(&out.stdout).expect("psi json");
    let value = psi["psi"].as_f64().expect("psi");
    let band = psi["band"].as_str().expect("band");
    assert!(value.is_finite() && value >= 0.0, "{psi}");
    let expected_band = if value < 0.1 {
        "stable"
    } else if value <= 0.25 {
        "watch"
    } else {
        "shift"
    };
    assert_eq!(band, expected_band, "{psi}");
    assert_eq!(psi["expected_rows"].as_u64(), Some(rows));
    // The same figure by hand from the institution's scores (`score`) and the model's histogram.
    let scores = fed.path("scores.csv");
    run_ok(
        Command::new(participant_bin())
            .arg("score")
            .arg("--model")
            .arg(&model_path)
            .arg("--data")
            .arg(fed.data_file(institution))
            .arg("--out")
            .arg(&scores),
    );
    let hand = hand_psi(&model, &scores);
    assert!((hand - value).abs() < 1e-9, "psi {value} vs by hand {hand}");
    let out = run_ok(
        Command::new(participant_bin())
            .args(["psi", "--model"])
            .arg(&model_path)
            .arg("--data")
            .arg(fed.data_file(institution)),
    );
    assert!(
        text(&out).contains(&format!("PSI {value:.4}: {band}")),
        "{}",
        text(&out)
    );

    // A scorecard needs a model trained on WOE bins: refused with the reason, both ways.
    let out = fed.job(
        "export",
        &["--id", "1", "--format", "scorecard", "--out", "card.json"],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("not trained on WOE bins"),
        "{}",
        text(&out)
    );
    let out = Command::new(participant_bin())
        .args(["export", "--format", "scorecard-csv", "--model"])
        .arg(&model_path)
        .args(["--out", "card.csv"])
        .current_dir(&fed.root)
        .output()
        .expect("export");
    assert!(!out.status.success());
    assert!(
        text(&out).contains("not trained on WOE bins"),
        "{}",
        text(&out)
    );
}

/// PSI computed here from the scores file: the model histogram's bins (logit scale), pooled
/// labels, ten groups of about equal federation rows, shares floored at 1e-4.
fn hand_psi(model: &Value, scores: &Path) -> f64 {
    let hist = &model["evaluation"]["histogram"];
    let (lo, hi) = (
        hist["logit_min"].as_f64().expect("min"),
        hist["logit_max"].as_f64().expect("max"),
    );
    let counts = |k: &str| -> Vec<u64> {
        hist[k]
            .as_array()
            .expect("counts")
            .iter()
            .map(|c| c.as_u64().expect("count"))
            .collect()
    };
    let fed: Vec<u64> = counts("positives")
        .iter()
        .zip(counts("negatives"))
        .map(|(p, n)| p + n)
        .collect();
    let bins = fed.len();
    let mut local = vec![0u64; bins];
    let text = std::fs::read_to_string(scores).expect("scores");
    for line in text.lines().skip(1) {
        let p: f64 = line
            .split(',')
            .nth(1)
            .expect("probability")
            .parse()
            .expect("number");
        let p = p.clamp(1e-300, 1.0 - 1e-16);
        let t = ((p / (1.0 - p)).ln() - lo) / (hi - lo);
        let b = (t * bins as f64).floor();
        let b = if b.is_nan() || b < 0.0 {
            0
        } else {
            (b as usize).min(bins - 1)
        };
        local[b] += 1;
    }
    let (te, ta) = (
        fed.iter().sum::<u64>() as f64,
        local.iter().sum::<u64>() as f64,
    );
    // Greedy decile groups over the federation's counts.
    let mut psi = 0.0;
    let (mut ce, mut ca, mut cum, mut next) = (0.0, 0.0, 0.0, 1.0);
    for i in 0..bins {
        ce += fed[i] as f64;
        ca += local[i] as f64;
        cum += fed[i] as f64;
        if (next < 10.0 && cum * 10.0 >= next * te) || i + 1 == bins {
            let (e, a) = ((ce / te).max(1e-4), (ca / ta).max(1e-4));
            psi += (a - e) * (a / e).ln();
            ce = 0.0;
            ca = 0.0;
            while next < 10.0 && cum * 10.0 >= next * te {
                next += 1.0;
            }
        }
    }
    psi
}

/// Chromium's binary: `FEDRISK_CHROMIUM`, else `chromium` or `chromium-browser` on PATH.
fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("FEDRISK_CHROMIUM").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if let Some(dir) = std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .find(|d| d.join(name).is_file())
        {
            return dir.join(name);
        }
    }
    panic!(
        "Chromium is not installed (`.ci/run` installs the `chromium` package; or set \
         FEDRISK_CHROMIUM): the report's rendering cannot be checked"
    );
}

/// An RGB screenshot.
struct Shot {
    width: usize,
    height: usize,
    rgb: Vec<[u8; 3]>,
}

fn decode_png(path: &Path) -> Shot {
    let file = std::io::BufReader::new(std::fs::File::open(path).expect("screenshot"));
    let mut reader = png::Decoder::new(file).read_info().expect("PNG header");
    let mut buf = vec![0; reader.output_buffer_size().expect("PNG size")];
    let info = reader.next_frame(&mut buf).expect("PNG frame");
    assert_eq!(info.bit_depth, png::BitDepth::Eight, "8-bit PNG");
    let channels = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => panic!("unexpected PNG colour type {other:?}"),
    };
    let rgb = buf[..info.buffer_size()]
        .chunks_exact(channels)
        .map(|c| [c[0], c[1], c[2]])
        .collect();
    Shot {
        width: info.width as usize,
        height: info.height as usize,
        rgb,
    }
}

fn hex_rgb(hex: &str) -> [u8; 3] {
    let v = u32::from_str_radix(hex.trim_start_matches('#'), 16).expect("hex colour");
    [(v >> 16) as u8, (v >> 8) as u8, v as u8]
}

/// Pixels within 12 of `colour` in each channel, as (x, y).
fn pixels_of(shot: &Shot, colour: &str) -> Vec<(usize, usize)> {
    let c = hex_rgb(colour);
    shot.rgb
        .iter()
        .enumerate()
        .filter(|(_, p)| (0..3).all(|k| p[k].abs_diff(c[k]) <= 12))
        .map(|(i, _)| (i % shot.width, i / shot.width))
        .collect()
}

/// Screenshots `html` with headless Chromium at 1200 x 2400 pixels.
fn screenshot(browser: &Path, fed: &Fed, html: &Path, shot_path: &Path) -> Shot {
    let profile = fed.path("chromium-profile");
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", shot_path.display()))
        .arg("--window-size=1200,2400")
        .arg(format!("file://{}", html.display()))
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", browser.display()));
    assert!(
        shot_path.is_file(),
        "no screenshot from {}: {}",
        browser.display(),
        text(&out)
    );
    let shot = decode_png(shot_path);
    assert_eq!((shot.width, shot.height), (1200, 2400));
    shot
}

/// What the screenshot lacks of the report's plots (empty when every plot is visible).
fn missing_plots(shot: &Shot) -> Vec<String> {
    use fedrisk_export::report::colours;
    let mut missing = Vec::new();
    // Not a blank or broken page: ink on a fair share of it.
    let ink = shot
        .rgb
        .iter()
        .filter(|p| p.iter().any(|&c| c < 200))
        .count();
    if ink * 100 <= shot.rgb.len() {
        missing.push(format!("ink: {ink} inked pixels of {}", shot.rgb.len()));
    }
    // Every plot's marks are drawn, spanning their plot rather than a speck (a legend swatch
    // alone is 12 pixels wide).
    for (what, colour, min_width, min_height) in [
        ("ROC curve", colours::ROC, 250, 150),
        ("KS goods", colours::KS_GOOD, 250, 100),
        ("KS defaults", colours::KS_BAD, 250, 100),
        ("AUC by round", colours::ROUND_AUC, 250, 10),
        ("KS by round", colours::ROUND_KS, 250, 10),
        ("log loss by round", colours::ROUND_LOG_LOSS, 250, 10),
        ("calibration", colours::CALIBRATION, 150, 100),
        ("distribution goods", colours::DIST_GOOD, 100, 50),
        ("distribution defaults", colours::DIST_BAD, 100, 50),
    ] {
        let px = pixels_of(shot, colour);
        let span = |f: fn(&(usize, usize)) -> usize| {
            px.iter().map(f).max().unwrap_or(0) - px.iter().map(f).min().unwrap_or(0)
        };
        let (w, h) = (span(|p| p.0), span(|p| p.1));
        if px.len() < 150 || w < min_width || h < min_height {
            missing.push(format!(
                "{what}: {} pixels of {colour} spanning {w}x{h}",
                px.len()
            ));
        }
    }
    // The ROC curve bows towards the top-left: nearly all its pixels lie on or above the
    // diagonal of the box it spans.
    let roc = pixels_of(shot, colours::ROC);
    if !roc.is_empty() {
        let (x0, x1) = (
            roc.iter().map(|p| p.0).min().unwrap_or(0),
            roc.iter().map(|p| p.0).max().unwrap_or(1),
        );
        let (y0, y1) = (
            roc.iter().map(|p| p.1).min().unwrap_or(0),
            roc.iter().map(|p| p.1).max().unwrap_or(1),
        );
        let above = roc
            .iter()
            .filter(|&&(x, y)| {
                let u = (x - x0) as f64 / (x1 - x0).max(1) as f64;
                let v = (y1 - y) as f64 / (y1 - y0).max(1) as f64;
                v + 0.03 >= u
            })
            .count();
        if above * 100 < roc.len() * 95 {
            missing.push(format!(
                "ROC shape: {above} of {} pixels above the diagonal",
                roc.len()
            ));
        }
    }
    missing
}

#[test]
#[ignore = "needs Chromium (.ci/run installs it); fails when it is missing"]
fn the_report_renders_in_headless_chromium_with_its_plots_visible() {
    let browser = chromium();
    let (fed, _coordinator, _status, _model) = real_job(72);
    let html = report_db(&fed, "report-shot");
    let shot_path = std::env::var_os("FEDRISK_REPORT_SCREENSHOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| fed.path("report.png"));
    let shot = screenshot(&browser, &fed, &html, &shot_path);
    let missing = missing_plots(&shot);
    assert!(missing.is_empty(), "{}: {missing:#?}", shot_path.display());

    // The check sees the difference: the report of a locally trained model (no federated
    // evaluation, so no curves) fails it, naming the plots it lacks.
    let local = fed.path("local.model.json");
    run_ok(
        Command::new(participant_bin())
            .arg("train")
            .arg("--data")
            .arg(fed.data_file(&fed.institutions[0]))
            .arg("--schema")
            .arg(fed.path("data/schema.json"))
            .arg("--out")
            .arg(&local),
    );
    run_ok(
        Command::new(coordinator_bin())
            .args(["report", "--model"])
            .arg(&local)
            .args(["--out", "report-local"])
            .current_dir(&fed.root),
    );
    let shot = screenshot(
        &browser,
        &fed,
        &fed.path("report-local/report.html"),
        &fed.path("report-local.png"),
    );
    let missing = missing_plots(&shot);
    assert!(
        missing.iter().any(|m| m.starts_with("ROC curve"))
            && missing.iter().any(|m| m.starts_with("calibration")),
        "{missing:#?}"
    );
}

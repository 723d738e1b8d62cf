//! The `fedrisk-participant` command line on bad input: every error names what is wrong and
//! where, and nothing half-done is left behind. (This file also makes `cargo test` build the
//! binary, which the end-to-end tests in `fedrisk-tests` start.)

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn participant() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fedrisk-participant"))
}

/// A scratch folder removed at the end of the test.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "fedrisk-participant-cli-{test}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creating a scratch folder");
        Self(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).expect("writing a scratch file");
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(cmd: &mut Command) -> (Output, String, String) {
    let out = cmd.output().expect("running fedrisk-participant");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

fn ok(cmd: &mut Command) -> String {
    let (out, stdout, stderr) = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    stdout
}

/// Fails with exit code 1 and returns stderr.
fn fails(cmd: &mut Command) -> String {
    let (out, stdout, stderr) = run(cmd);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{cmd:?} should fail with exit code 1:\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stderr.starts_with("error: "),
        "the error goes to stderr as `error: ...`: {stderr}"
    );
    stderr
}

/// 60 rows of a small credit file: two numbers, a category, the label (both classes).
fn good_csv() -> String {
    let mut s = String::from("income,age,sector,default\n");
    for i in 0..60u32 {
        let income = 1000 + (i * 37) % 500;
        let age = 20 + i % 40;
        let sector = ["retail", "farming", "transport"][(i % 3) as usize];
        let default = u32::from((i * 7) % 5 == 0 || (age > 50 && i % 2 == 0));
        s += &format!("{income},{age},{sector},{default}\n");
    }
    s
}

/// `schema infer` on the good file.
fn schema(dir: &Scratch) -> PathBuf {
    let data = dir.write("good.csv", &good_csv());
    let schema = dir.path("schema.json");
    let out = ok(participant()
        .args(["schema", "infer", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&schema));
    assert!(out.contains("3 features"), "{out}");
    schema
}

#[test]
fn help_lists_every_subcommand() {
    let out = ok(participant().arg("--help"));
    for sub in ["schema", "check", "train", "run", "score", "help"] {
        assert!(
            out.lines()
                .any(|l| l.trim_start().starts_with(&format!("{sub} "))),
            "`--help` does not list `{sub}`:\n{out}"
        );
    }
    // Hidden options stay hidden; the run options are documented.
    let run_help = ok(participant().args(["run", "--help"]));
    for opt in [
        "--coordinator",
        "--cert",
        "--key",
        "--ca",
        "--data",
        "--max-reconnects",
        "--keep-serving",
    ] {
        assert!(
            run_help.contains(opt),
            "`run --help` lacks {opt}:\n{run_help}"
        );
    }
    assert!(!run_help.contains("--report-peak-memory"));
}

#[test]
fn no_or_unknown_subcommand_is_a_usage_error() {
    let (out, _, stderr) = run(&mut participant());
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let (out, _, stderr) = run(participant().arg("frobnicate"));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("frobnicate"), "{stderr}");
}

#[test]
fn check_accepts_a_good_file() {
    let dir = Scratch::new("check-good");
    let schema = schema(&dir);
    let out = ok(participant()
        .args(["check", "--data"])
        .arg(dir.path("good.csv"))
        .arg("--schema")
        .arg(&schema));
    assert!(out.contains("OK: 60 rows"), "{out}");
}

#[test]
fn check_names_file_line_and_column_of_a_bad_number() {
    let dir = Scratch::new("check-bad-number");
    let schema = schema(&dir);
    // Line 1 is the header: the bad value is on line 4, column 2 (`age`).
    let mut lines: Vec<String> = good_csv().lines().map(String::from).collect();
    lines[3] = "1200,forty,retail,0".into();
    lines[7] = "1300,33,retail,maybe".into();
    let bad = dir.write("bad.csv", &(lines.join("\n") + "\n"));
    let err = fails(
        participant()
            .args(["check", "--data"])
            .arg(&bad)
            .arg("--schema")
            .arg(&schema),
    );
    let at = format!(
        "{}:4:2 (column `age`): expected a number, found `forty`",
        bad.display()
    );
    assert!(err.contains(&at), "expected `{at}` in:\n{err}");
    // Every problem is listed, not just the first: the bad label on line 8 too.
    assert!(err.contains("2 problem(s)"), "{err}");
    assert!(
        err.contains(&format!("{}:8:4", bad.display())) && err.contains("`maybe`"),
        "{err}"
    );
}

#[test]
fn check_names_a_missing_column_and_a_missing_file() {
    let dir = Scratch::new("check-columns");
    let schema = schema(&dir);
    let no_age = dir.write("no_age.csv", "income,sector,default\n1000,retail,0\n");
    let err = fails(
        participant()
            .args(["check", "--data"])
            .arg(&no_age)
            .arg("--schema")
            .arg(&schema),
    );
    assert!(
        err.contains(&format!("{}:1:", no_age.display())) && err.contains("`age`"),
        "{err}"
    );
    let missing = dir.path("nowhere.csv");
    let err = fails(participant().args(["check", "--data"]).arg(&missing));
    assert!(err.contains(&missing.display().to_string()), "{err}");
}

#[test]
fn score_refuses_a_model_whose_hash_was_altered() {
    let dir = Scratch::new("score-altered");
    let schema = schema(&dir);
    let data = dir.path("good.csv");
    let model = dir.path("model.json");
    let out = ok(participant()
        .args(["train", "--data"])
        .arg(&data)
        .arg("--schema")
        .arg(&schema)
        .arg("--out")
        .arg(&model));
    assert!(out.contains("content hash"), "{out}");

    // The untouched model scores.
    let scores = dir.path("scores.csv");
    let out = ok(participant()
        .args(["score", "--model"])
        .arg(&model)
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(&scores));
    assert!(out.contains("60 scores"), "{out}");
    let text = std::fs::read_to_string(&scores).expect("scores.csv");
    assert_eq!(text.lines().next(), Some("row,probability"));
    assert_eq!(text.lines().count(), 61);

    // One coefficient nudged, the recorded hash kept: refused, and nothing written.
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&model).expect("model")).expect("json");
    let c0 = m["coefficients"][0].as_f64().expect("a coefficient");
    m["coefficients"][0] = serde_json::json!(c0 + 0.5);
    let altered = dir.write(
        "altered.json",
        &serde_json::to_string_pretty(&m).expect("json"),
    );
    let altered_scores = dir.path("altered-scores.csv");
    let err = fails(
        participant()
            .args(["score", "--model"])
            .arg(&altered)
            .arg("--data")
            .arg(&data)
            .arg("--out")
            .arg(&altered_scores),
    );
    assert!(
        err.contains(&altered.display().to_string())
            && err.contains("content hash mismatch")
            && err.contains("altered"),
        "{err}"
    );
    assert!(
        !altered_scores.exists(),
        "scores were written with an altered model"
    );

    // Not a model at all: the JSON error names the file and the position.
    let junk = dir.write("junk.json", "{\"format\": \"fedrisk-model\",\n  oops }\n");
    let err = fails(
        participant()
            .args(["score", "--model"])
            .arg(&junk)
            .arg("--data")
            .arg(&data)
            .arg("--out")
            .arg(dir.path("junk-scores.csv")),
    );
    assert!(
        err.contains(&junk.display().to_string()) && err.contains("line 2"),
        "{err}"
    );
}

#[test]
fn score_names_a_data_problem_with_its_location() {
    let dir = Scratch::new("score-bad-data");
    let schema = schema(&dir);
    let model = dir.path("model.json");
    ok(participant()
        .args(["train", "--data"])
        .arg(dir.path("good.csv"))
        .arg("--schema")
        .arg(&schema)
        .arg("--out")
        .arg(&model));
    // Scoring needs no label, but the features must be numbers.
    let bad = dir.write(
        "new.csv",
        "income,age,sector\n1000,30,retail\n1e999,31,retail\n",
    );
    let err = fails(
        participant()
            .args(["score", "--model"])
            .arg(&model)
            .arg("--data")
            .arg(&bad)
            .arg("--out")
            .arg(dir.path("s.csv")),
    );
    assert!(
        err.contains(&format!("{}:3:1 (column `income`)", bad.display())),
        "{err}"
    );
}

fn run_args(dir: &Scratch, data: &Path) -> Command {
    let mut cmd = participant();
    cmd.args(["run", "--coordinator", "https://127.0.0.1:9", "--data"])
        .arg(data)
        .arg("--ca")
        .arg(dir.path("ca.pem"))
        .arg("--cert")
        .arg(dir.path("me.pem"))
        .arg("--key")
        .arg(dir.path("me.key"))
        .arg("--max-reconnects")
        .arg("1");
    cmd
}

#[test]
fn run_checks_its_settings_and_files_before_connecting() {
    let dir = Scratch::new("run-input");
    let data = dir.write("good.csv", &good_csv());
    let err = fails(run_args(&dir, &data).args(["--min-threshold-fraction", "0.3"]));
    assert!(err.contains("--min-threshold-fraction 0.3"), "{err}");

    // The key file is read first; its error names it.
    let err = fails(&mut run_args(&dir, &data));
    assert!(
        err.contains(&dir.path("me.key").display().to_string()),
        "{err}"
    );

    // A key that is not PKCS#8 Ed25519 is named as such (and not echoed).
    dir.write(
        "me.key",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    );
    let err = fails(&mut run_args(&dir, &data));
    assert!(
        err.contains("me.key") && err.contains("not a PKCS#8 Ed25519 private key"),
        "{err}"
    );

    // With a schema, the data is checked against it before anything else.
    let schema = schema(&dir);
    let mut lines: Vec<String> = good_csv().lines().map(String::from).collect();
    lines[2] = "1100,21,retail,yes".into();
    let bad = dir.write("bad.csv", &(lines.join("\n") + "\n"));
    let err = fails(run_args(&dir, &bad).arg("--schema").arg(&schema));
    assert!(
        err.contains(&format!("{}:3:4", bad.display())) && err.contains("`yes`"),
        "{err}"
    );
}

#[test]
fn run_without_a_schema_checks_the_data_file_at_start() {
    let dir = Scratch::new("run-shape");
    // A row with a field too few: found at start, with its line, before any connection.
    let mut lines: Vec<String> = good_csv().lines().map(String::from).collect();
    lines[5] = "1100,21,retail".into();
    let ragged = dir.write("ragged.csv", &(lines.join("\n") + "\n"));
    let err = fails(&mut run_args(&dir, &ragged));
    assert!(
        err.contains(&format!("{}:6", ragged.display())) && err.contains("expected 4 fields"),
        "{err}"
    );
    let header_only = dir.write("empty.csv", "income,age,sector,default\n");
    let err = fails(&mut run_args(&dir, &header_only));
    assert!(err.contains("empty.csv"), "{err}");
    let missing = dir.path("absent.csv");
    let err = fails(&mut run_args(&dir, &missing));
    assert!(err.contains("absent.csv"), "{err}");
    assert_eq!(err.matches("No such file").count(), 1, "{err}");
    // A plain-http coordinator URL is refused with the fix, not an HTTP/2 framing error.
    let data = dir.write("good.csv", &good_csv());
    let err = fails(
        participant()
            .args(["run", "--coordinator", "http://127.0.0.1:9", "--data"])
            .arg(&data)
            .args(["--ca", "ca.pem", "--cert", "me.pem", "--key", "me.key"]),
    );
    assert!(err.contains("use https://"), "{err}");
}

/// Trains a local model on the good file (no missing value anywhere) and returns its path.
fn trained_model(dir: &Scratch) -> PathBuf {
    let schema = schema(dir);
    let model = dir.path("model.json");
    ok(participant()
        .args(["train", "--data"])
        .arg(dir.path("good.csv"))
        .arg("--schema")
        .arg(&schema)
        .arg("--out")
        .arg(&model));
    model
}

/// Runs `score` and returns the output's lines.
fn score_lines(dir: &Scratch, model: &Path, data: &Path, extra: &[&str]) -> Vec<String> {
    let out = dir.path("scores.csv");
    let _ = std::fs::remove_file(&out);
    ok(participant()
        .args(["score", "--model"])
        .arg(model)
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(&out)
        .args(extra));
    std::fs::read_to_string(&out)
        .expect("scores.csv")
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn score_imputes_a_blank_field_the_training_data_never_had() {
    let dir = Scratch::new("score-blank");
    let model = trained_model(&dir);
    let schema = std::fs::read_to_string(dir.path("schema.json")).expect("schema");
    assert!(
        !schema.contains("\"missing\": true"),
        "the training file has no missing value: {schema}"
    );
    // The model imputes income with the training mean.
    let incomes: Vec<f64> = good_csv()
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    let mean = incomes.iter().sum::<f64>() / incomes.len() as f64;
    let new = dir.write(
        "new.csv",
        &format!("income,age,sector,default\n,30,retail,0\n{mean},30,retail,1\n1100,30,,0\n1100,30,mining,1\n"),
    );
    let lines = score_lines(&dir, &model, &new, &[]);
    assert_eq!(lines.len(), 5, "{lines:?}");
    let prob = |i: usize| lines[i].split_once(',').unwrap().1.to_owned();
    // A blank income scores as the mean income; a blank sector as an unseen one (`other`).
    assert_eq!(prob(1), prob(2));
    assert_eq!(prob(3), prob(4));
    assert!(lines[1].starts_with("1,") && lines[4].starts_with("4,"));
    // Checking the file as training data still refuses the blank, with its location.
    let err = fails(
        participant()
            .args(["check", "--data"])
            .arg(&new)
            .arg("--schema")
            .arg(dir.path("schema.json")),
    );
    assert!(
        err.contains(&format!(
            "{}:2:1 (column `income`): missing value",
            new.display()
        )),
        "{err}"
    );
}

#[test]
fn score_id_carries_an_identifier_column_through() {
    let dir = Scratch::new("score-id");
    let model = trained_model(&dir);
    let plain = dir.write(
        "plain.csv",
        "income,age,sector\n1000,30,retail\n1400,55,farming\n1200,41,transport\n",
    );
    let by_row = score_lines(&dir, &model, &plain, &[]);
    assert_eq!(by_row[0], "row,probability");
    // The id column is not in the schema; one id holds a comma and is quoted in the output.
    let with_ids = dir.write(
        "ids.csv",
        "loan_id,income,age,sector\nL-001,1000,30,retail\n\"L-002, renewal\",1400,55,farming\nL-003,1200,41,transport\n",
    );
    let by_id = score_lines(&dir, &model, &with_ids, &["--id", "loan_id"]);
    assert_eq!(by_id.len(), 4, "{by_id:?}");
    assert_eq!(by_id[0], "loan_id,probability");
    for (i, id) in ["L-001", "\"L-002, renewal\"", "L-003"].iter().enumerate() {
        let (row, p) = by_row[i + 1].split_once(',').unwrap();
        assert_eq!(row, (i + 1).to_string());
        assert_eq!(by_id[i + 1], format!("{id},{p}"));
    }

    // An absent id column: the file and the columns it has are named; nothing is written.
    let out = dir.path("none.csv");
    let err = fails(
        participant()
            .args(["score", "--model"])
            .arg(&model)
            .arg("--data")
            .arg(&with_ids)
            .args(["--id", "loan_number", "--out"])
            .arg(&out),
    );
    assert!(
        err.contains(&format!("{}:1:", with_ids.display()))
            && err.contains("`loan_number`")
            && err.contains("--id")
            && err.contains("columns are: loan_id, income, age, sector"),
        "{err}"
    );
    assert!(!out.exists());
}

#[test]
fn score_leaves_no_partial_output_when_a_later_row_is_bad() {
    let dir = Scratch::new("score-partial");
    let model = trained_model(&dir);
    let mut text = String::from("income,age,sector\n");
    for i in 0..20_000u32 {
        text += &format!("{},{},retail\n", 1000 + i % 500, 20 + i % 40);
    }
    text += "oops,30,retail\n";
    let bad = dir.write("late.csv", &text);
    let out = dir.path("late-scores.csv");
    let err = fails(
        participant()
            .args(["score", "--model"])
            .arg(&model)
            .arg("--data")
            .arg(&bad)
            .arg("--out")
            .arg(&out),
    );
    assert!(
        err.contains(&format!("{}:20002:1 (column `income`)", bad.display())),
        "{err}"
    );
    let left: Vec<_> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("late-scores"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// A file shaped like the Taiwan credit data: code columns that look numeric, and a bureau
/// export that writes -999 for "unknown".
fn coded_csv() -> String {
    let mut s = String::from("limit,sex,education,marriage,bill,default\n");
    for i in 0..40u32 {
        let bill = if i % 9 == 4 {
            "-999".to_string()
        } else {
            (300 + i * 11).to_string()
        };
        s += &format!(
            "{},{},{},{},{bill},{}\n",
            10_000 + i * 500,
            1 + i % 2,
            1 + i % 4,
            1 + i % 3,
            u32::from(i % 5 == 0)
        );
    }
    s
}

#[test]
fn schema_infer_declares_categorical_columns_and_missing_tokens() {
    let dir = Scratch::new("infer-flags");
    let data = dir.write("coded.csv", &coded_csv());
    let schema = dir.path("schema.json");
    let out = ok(participant()
        .args(["schema", "infer", "--data"])
        .arg(&data)
        .args([
            "--categorical",
            "sex,education",
            "--categorical",
            "marriage",
            "--missing-token",
            "-999",
            "--out",
        ])
        .arg(&schema));
    assert!(
        out.contains("5 features (2 numeric, 3 categorical)"),
        "{out}"
    );
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&schema).expect("schema")).expect("json");
    let feature = |name: &str| {
        s["features"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("no feature {name}: {s}"))
            .clone()
    };
    assert_eq!(feature("sex")["kind"], "categorical");
    assert_eq!(feature("sex")["levels"], serde_json::json!(["1", "2"]));
    assert_eq!(
        feature("education")["levels"],
        serde_json::json!(["1", "2", "3", "4"])
    );
    assert_eq!(
        feature("marriage")["levels"],
        serde_json::json!(["1", "2", "3"])
    );
    assert_eq!(feature("limit")["kind"], "numeric");
    assert_eq!(feature("bill")["kind"], "numeric");
    assert_eq!(feature("bill")["missing"], true);
    assert!(
        s["missing_tokens"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "-999"),
        "{s}"
    );
    // Later loads read -999 as missing (4 of 40 rows), and a model trains on it.
    let out = ok(participant()
        .args(["check", "--data"])
        .arg(&data)
        .arg("--schema")
        .arg(&schema));
    assert!(out.contains("bill: 4 missing"), "{out}");
    let model = dir.path("model.json");
    ok(participant()
        .args(["train", "--data"])
        .arg(&data)
        .arg("--schema")
        .arg(&schema)
        .arg("--out")
        .arg(&model));
    let m = std::fs::read_to_string(&model).expect("model");
    assert!(m.contains("\"sex=2\"") && m.contains("\"education=4\""));

    // Without the token, -999 is just a number.
    let plain = dir.path("plain.json");
    ok(participant()
        .args(["schema", "infer", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&plain));
    let p = std::fs::read_to_string(&plain).expect("schema");
    assert!(
        !p.contains("\"-999\"") && !p.contains("\"categorical\""),
        "{p}"
    );
}

#[test]
fn schema_infer_names_an_unknown_categorical_column_and_the_columns() {
    let dir = Scratch::new("infer-unknown");
    let data = dir.write("coded.csv", &coded_csv());
    let schema = dir.path("schema.json");
    let err = fails(
        participant()
            .args(["schema", "infer", "--data"])
            .arg(&data)
            .args(["--categorical", "sex,gender", "--out"])
            .arg(&schema),
    );
    assert!(
        err.contains(&data.display().to_string())
            && err.contains("`gender`")
            && err.contains("--categorical")
            && err.contains("columns are: limit, sex, education, marriage, bill, default"),
        "{err}"
    );
    assert!(!schema.exists());
}

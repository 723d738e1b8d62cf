//! Exported models scored by real consumers: onnxruntime (after `onnx.checker` with
//! `full_check`), JPMML-Evaluator and PMML4S (pypmml) score what `fedrisk-participant export`
//! and `fedrisk-coordinator job export` write, and agree with `fedrisk-participant score` to
//! 1e-6 on every row (`check_exports.py`). Binned models (`binning woe`, both encodings) are
//! scored on the test rows plus rows at every cut, the doubles either side of it, each
//! special code, each level, an unseen level and missing values (`with_edge_rows`).
//!
//! The consumers live in a Python virtual environment that `.ci/run` installs; these tests are
//! ignored by default and FAIL when `FEDRISK_EXPORT_PYTHON` (the venv's python) is not set, so
//! a clean clone's `cargo test` passes and CI cannot skip them silently.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::harness::{Fed, JobOpts, participant_bin, run_ok, shared_data, text};

const TOLERANCE: &str = "1e-6";

fn python() -> PathBuf {
    let p = std::env::var_os("FEDRISK_EXPORT_PYTHON").map(PathBuf::from);
    match p {
        Some(p) if p.is_file() => p,
        other => panic!(
            "FEDRISK_EXPORT_PYTHON must name the python of a venv with onnxruntime, onnx, \
             jpmml_evaluator and pypmml (.ci/run makes one); it is {other:?}"
        ),
    }
}

fn participant(args: &[&str], dir: &Path) -> String {
    let out = run_ok(Command::new(participant_bin()).args(args).current_dir(dir));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Exports `model` as ONNX and PMML with the participant command (or takes the given files),
/// scores `data` with `fedrisk-participant score`, and runs the consumers on both.
fn check(dir: &Path, model: &Path, data: &Path, exported: Option<(&Path, &Path)>) -> String {
    let s = |p: &Path| p.to_str().expect("utf-8 path").to_owned();
    let scores = dir.join("scores.csv");
    participant(
        &[
            "score",
            "--model",
            &s(model),
            "--data",
            &s(data),
            "--out",
            &s(&scores),
        ],
        dir,
    );
    let (onnx, pmml) = match exported {
        Some((o, p)) => (o.to_path_buf(), p.to_path_buf()),
        None => {
            let onnx = dir.join("model.onnx");
            let pmml = dir.join("model.pmml");
            for (format, out) in [("onnx", &onnx), ("pmml", &pmml)] {
                let said = participant(
                    &[
                        "export",
                        "--model",
                        &s(model),
                        "--format",
                        format,
                        "--out",
                        &s(out),
                    ],
                    dir,
                );
                assert!(said.contains("content hash"), "{said}");
            }
            (onnx, pmml)
        }
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("it/check_exports.py");
    let out = Command::new(python())
        .arg(&script)
        .args([model, &onnx, &pmml, data, &scores])
        .arg(TOLERANCE)
        .output()
        .expect("running check_exports.py");
    let text = text(&out);
    println!("{}:\n{text}", data.display());
    assert!(
        out.status.success(),
        "consumers disagree with fedrisk:\n{text}"
    );
    for consumer in ["onnxruntime", "jpmml-evaluator", "pypmml"] {
        assert!(text.contains(&format!("{consumer}: ")), "{text}");
    }
    text
}

/// Rows a scoring file can hold that training never showed: an unseen sector, a missing
/// sector, special codes, blanks and missing tokens in numeric columns.
const AWKWARD_ROWS: &str = "\
52000,0.3,96,0,41,5,0.2,10000,mining,0
,0.5,98,98,,2,0.4,20000,,1
NA,0.1,0,96,33,1,0.9,5000,NA,0
61000,0.7,2,1,.,8,0.1,15000,retail,1
";

#[test]
#[ignore = "needs the consumers' venv (FEDRISK_EXPORT_PYTHON); .ci/run runs it"]
fn exports_score_like_fedrisk_on_generated_data_with_unseen_and_missing_values() {
    let fed = Fed::new(61, 3000, 3);
    let dir = fed.path("export");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let train = fed.data_file(&fed.institutions[0]);
    let model = dir.join("model.json");
    let schema = fed.path("data/schema.json");
    let s = |p: &Path| p.to_str().expect("utf-8 path").to_owned();
    participant(
        &[
            "train",
            "--data",
            &s(&train),
            "--schema",
            &s(&schema),
            "--missing-indicators",
            "--out",
            &s(&model),
        ],
        &dir,
    );
    let test = fed.path("data/test.csv");
    let mut text = std::fs::read_to_string(&test).expect("test.csv");
    let header = text.lines().next().expect("header").to_owned();
    assert_eq!(
        header,
        "annual_income,utilisation,delinq_30_59,delinq_90,age,years_in_business,debt_ratio,loan_amount,sector,default",
        "the generated layout changed: update AWKWARD_ROWS"
    );
    text.push_str(AWKWARD_ROWS);
    let awkward = dir.join("test-awkward.csv");
    std::fs::write(&awkward, text).expect("writing test-awkward.csv");
    check(&dir, &model, &awkward, None);
}

/// Rows of `data` (a CSV with plain, unquoted fields) with, after them, rows that put each
/// kept binned feature of `model` on its edges: every cut, the doubles just below and above
/// it, every declared special code, a missing value; every level of a categorical feature,
/// an unseen one and a missing one. Each such row is `data`'s first row with one field
/// changed. Written to `out`; returns the number of rows added.
fn with_edge_rows(model: &Path, data: &Path, out: &Path) -> usize {
    use fedrisk_models::binning::BinRule;
    let m = fedrisk_models::ModelFile::load(model).expect("model file");
    let woe = m.preprocessing.woe.as_ref().expect("a binned model");
    let mut text = std::fs::read_to_string(data).expect("data file");
    assert!(!text.contains('"'), "{}: quoted fields", data.display());
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .expect("header")
        .split(',')
        .map(|h| h.trim().to_owned())
        .collect();
    let base: Vec<String> = lines
        .next()
        .expect("a data row")
        .split(',')
        .map(str::to_owned)
        .collect();
    assert_eq!(base.len(), header.len());
    if !text.ends_with('\n') {
        text.push('\n');
    }
    let mut added = 0;
    let mut cut_rows = 0;
    for f in woe.features.iter().filter(|f| f.kept) {
        let at = header
            .iter()
            .position(|h| *h == f.name)
            .expect("feature column");
        let values: Vec<String> = match &f.rule {
            BinRule::Numeric { cuts, specials, .. } => {
                cut_rows += cuts.len();
                let mut v: Vec<f64> = Vec::new();
                for c in cuts {
                    v.extend([*c, c.next_down(), c.next_up()]);
                }
                v.extend(specials);
                let mut v: Vec<String> = v.iter().map(|x| format!("{x}")).collect();
                v.push(String::new());
                v
            }
            BinRule::Categorical { levels, .. } => {
                let mut v = levels.clone();
                v.extend(["never-seen-level".to_owned(), String::new()]);
                v
            }
        };
        for value in values {
            let mut row = base.clone();
            row[at] = value;
            text.push_str(&row.join(","));
            text.push('\n');
            added += 1;
        }
    }
    assert!(
        cut_rows > 0,
        "{}: no kept numeric feature has a cut",
        model.display()
    );
    std::fs::write(out, text).expect("writing the data with edge rows");
    added
}

/// `fedrisk-participant train` with `binning woe` and `encoding` on `train`, then the
/// consumers on `data` with every bin edge added ([`with_edge_rows`]).
fn check_binned(dir: &Path, train: &Path, schema: &Path, data: &Path, encoding: &str) -> String {
    let s = |p: &Path| p.to_str().expect("utf-8 path").to_owned();
    let model = dir.join(format!("model-{encoding}.json"));
    participant(
        &[
            "train",
            "--data",
            &s(train),
            "--schema",
            &s(schema),
            "--binning",
            "woe",
            "--encoding",
            encoding,
            "--out",
            &s(&model),
        ],
        dir,
    );
    let edges = dir.join(format!("test-edges-{encoding}.csv"));
    let added = with_edge_rows(&model, data, &edges);
    println!("binned, encoding {encoding}: {added} edge rows added");
    check(dir, &model, &edges, None)
}

/// Both encodings of a model binned on generated rows: special codes 96/98 in the
/// delinquency counts, a text categorical, unseen and missing levels, every cut.
#[test]
#[ignore = "needs the consumers' venv (FEDRISK_EXPORT_PYTHON); .ci/run runs it"]
fn exports_of_binned_models_score_like_fedrisk_on_generated_data_at_every_bin_edge() {
    let fed = Fed::new(63, 3000, 3);
    let dir = fed.path("export");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let train = fed.data_file(&fed.institutions[0]);
    let schema = fed.path("data/schema.json");
    let mut text = std::fs::read_to_string(fed.path("data/test.csv")).expect("test.csv");
    text.push_str(AWKWARD_ROWS);
    let awkward = dir.join("test-awkward.csv");
    std::fs::write(&awkward, text).expect("writing test-awkward.csv");
    for encoding in ["indicators", "woe"] {
        check_binned(&dir, &train, &schema, &awkward, encoding);
    }
}

/// The schema of a shared data set, inferred from its pooled training rows.
fn shared_schema(data: &Path, d: &Path, categorical: &str, specials: bool) -> PathBuf {
    for f in ["pooled_train.csv", "test.csv"] {
        assert!(
            data.join(f).is_file(),
            "{} is missing: this test needs the shared data (set FEDRISK_SHARED_DATA)",
            data.join(f).display()
        );
    }
    let s = |p: &Path| p.to_str().expect("utf-8 path").to_owned();
    let schema = d.join("schema.json");
    let train_s = s(&data.join("pooled_train.csv"));
    let schema_s = s(&schema);
    let mut infer = vec!["schema", "infer", "--data", &train_s];
    if !categorical.is_empty() {
        infer.extend(["--categorical", categorical]);
    }
    if specials {
        infer.push("--accept-suggested-specials");
    }
    infer.extend(["--out", &schema_s]);
    participant(&infer, d);
    schema
}

fn shared_binned(name: &str, categorical: &str, specials: bool, encoding: &str) {
    let data = shared_data().join(name);
    let dir = tempfile::Builder::new()
        .prefix("fedrisk-it-export-")
        .tempdir()
        .expect("tempdir");
    let d = dir.path();
    let schema = shared_schema(&data, d, categorical, specials);
    if specials {
        let loaded = fedrisk_models::Schema::load(&schema).expect("schema");
        let declared = loaded.features.iter().any(|f| {
            matches!(&f.kind, fedrisk_models::schema::FeatureKind::Numeric { special_values }
                if !special_values.is_empty())
        });
        assert!(declared, "{name}: infer declared no special code");
    }
    check_binned(
        d,
        &data.join("pooled_train.csv"),
        &schema,
        &data.join("test.csv"),
        encoding,
    );
}

#[test]
#[ignore = "needs ../shared/data and the consumers' venv (FEDRISK_EXPORT_PYTHON)"]
fn exports_of_binned_models_score_like_fedrisk_on_taiwan_test_indicators() {
    shared_binned("taiwan", "sex,education,marriage", false, "indicators");
}

#[test]
#[ignore = "needs ../shared/data and the consumers' venv (FEDRISK_EXPORT_PYTHON)"]
fn exports_of_binned_models_score_like_fedrisk_on_taiwan_test_woe() {
    shared_binned("taiwan", "sex,education,marriage", false, "woe");
}

#[test]
#[ignore = "needs ../shared/data and the consumers' venv (FEDRISK_EXPORT_PYTHON)"]
fn exports_of_binned_models_score_like_fedrisk_on_gmsc_test_with_special_codes_indicators() {
    shared_binned("gmsc", "", true, "indicators");
}

#[test]
#[ignore = "needs ../shared/data and the consumers' venv (FEDRISK_EXPORT_PYTHON)"]
fn exports_of_binned_models_score_like_fedrisk_on_gmsc_test_with_special_codes_woe() {
    shared_binned("gmsc", "", true, "woe");
}

fn shared(name: &str, categorical: &str) {
    let data = shared_data().join(name);
    let dir = tempfile::Builder::new()
        .prefix("fedrisk-it-export-")
        .tempdir()
        .expect("tempdir");
    let d = dir.path();
    let s = |p: &Path| p.to_str().expect("utf-8 path").to_owned();
    let schema = shared_schema(&data, d, categorical, false);
    let model = d.join("model.json");
    participant(
        &[
            "train",
            "--data",
            &s(&data.join("pooled_train.csv")),
            "--schema",
            &s(&schema),
            "--missing-indicators",
            "--out",
            &s(&model),
        ],
        d,
    );
    check(d, &model, &data.join("test.csv"), None);
}

#[test]
#[ignore = "needs ../shared/data and the consumers' venv (FEDRISK_EXPORT_PYTHON)"]
fn exports_score_like_fedrisk_on_taiwan_test() {
    shared("taiwan", "sex,education,marriage");
}

#[test]
#[ignore = "needs ../shared/data and the consumers' venv (FEDRISK_EXPORT_PYTHON)"]
fn exports_score_like_fedrisk_on_gmsc_test() {
    shared("gmsc", "");
}

/// The operator's export of a federated job's model version, in each format.
#[test]
#[ignore = "needs the consumers' venv (FEDRISK_EXPORT_PYTHON); .ci/run runs it"]
fn the_operators_pmml_and_onnx_exports_of_a_job_score_like_fedrisk() {
    operators_exports(62, "");
}

/// The same for a job binned on the federation's summed counts (default encoding), scored
/// with every bin edge added.
#[test]
#[ignore = "needs the consumers' venv (FEDRISK_EXPORT_PYTHON); .ci/run runs it"]
fn the_operators_pmml_and_onnx_exports_of_a_binned_job_score_like_fedrisk() {
    operators_exports(64, "binning = \"woe\"");
}

/// `job_extra`: lines of the job's `[job]` table.
fn operators_exports(seed: u64, job_extra: &'static str) {
    let fed = Fed::new(seed, 2000, 3);
    // The coordinator keeps serving the operator's exports below.
    let (_coord, _) = fed.complete_job(
        &JobOpts {
            name: "export",
            rounds: 2,
            min_participants: 3,
            job_extra,
            ..JobOpts::default()
        },
        Duration::from_secs(120),
    );
    let json = fed.export(1, 0);
    // Asking for what is not there says what is.
    for (args, said) in [
        (["--id", "9", "--round", "0"], "no job 9"),
        (
            ["--id", "1", "--round", "7"],
            "job 1 has no model for round 7; its model versions are rounds 1 to 2",
        ),
    ] {
        let out = fed.job(
            "export",
            &[
                &args[..],
                &["--out", fed.path("none.json").to_str().expect("utf-8")],
            ]
            .concat(),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(said), "{err}");
        assert!(!fed.path("none.json").exists());
    }
    let mut files = Vec::new();
    for format in ["onnx", "pmml"] {
        let out = fed.path(&format!("model.{format}"));
        let said = fed.job_ok(
            "export",
            &[
                "--id",
                "1",
                "--format",
                format,
                "--out",
                out.to_str().expect("utf-8 path"),
            ],
        );
        assert!(
            said.contains(&format!("({format}, job 1 round 2")),
            "{said}"
        );
        files.push(out);
    }
    let mut data = fed.path("data/test.csv");
    let m = fedrisk_models::ModelFile::load(&json).expect("exported model");
    assert_eq!(m.preprocessing.woe.is_some(), job_extra.contains("woe"));
    if m.preprocessing.woe.is_some() {
        let edges = fed.path("test-edges.csv");
        with_edge_rows(&json, &data, &edges);
        data = edges;
    }
    check(&fed.root, &json, &data, Some((&files[0], &files[1])));
}

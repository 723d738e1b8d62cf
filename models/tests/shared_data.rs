//! Checks against the real data in ../shared/data. Ignored by default (a fresh clone has no
//! data); `.ci/run` runs them with `--ignored`, and then a missing folder is a failure.

use std::path::PathBuf;

use fedrisk_models::logistic::{NewtonOptions, fit_newton, predict};
use fedrisk_models::metrics;
use fedrisk_models::{
    FeatureStats, InferOptions, LabelMode, PreprocessOptions, Preprocessor, load_csv, schema,
};

fn shared_data() -> PathBuf {
    let dir = std::env::var_os("FEDRISK_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"));
    assert!(
        dir.join("taiwan/pooled_train.csv").is_file(),
        "shared data not found at {} (set FEDRISK_SHARED_DATA)",
        dir.display()
    );
    dir
}

#[test]
#[ignore = "needs ../shared/data; run with --ignored"]
fn shared_taiwan_newton_matches_sklearn() {
    let dir = shared_data().join("taiwan");
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/taiwan_sklearn_reference.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let baselines: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("baselines.json")).unwrap())
            .unwrap();

    let train_path = dir.join("pooled_train.csv");
    let schema = schema::infer(&train_path, &InferOptions::new("default", "1")).unwrap();
    let train = load_csv(&train_path, &schema, LabelMode::Required).unwrap();
    let test = load_csv(&dir.join("test.csv"), &schema, LabelMode::Required).unwrap();
    let stats = FeatureStats::from_dataset(&schema, &train);
    let pre = Preprocessor::fit(&schema, &stats, PreprocessOptions::default());
    let y = train.labels_f64().unwrap();
    let x = pre.transform(train);
    let fit = fit_newton(x.view(), &y, &NewtonOptions::default()).unwrap();
    assert!(fit.converged);

    let names: Vec<String> = serde_json::from_value(reference["features"].clone()).unwrap();
    assert_eq!(names, pre.columns());
    let coef: Vec<f64> = serde_json::from_value(reference["coefficients"].clone()).unwrap();
    let intercept = reference["intercept"].as_f64().unwrap();
    let p = coef.len();
    let mut worst = (intercept - fit.theta[p]).abs();
    for (a, b) in fit.theta[..p].iter().zip(&coef) {
        worst = worst.max((a - b).abs());
    }
    assert!(
        worst < 1e-4,
        "largest coefficient difference from scikit-learn: {worst}"
    );

    let labels = test.labels.clone().unwrap();
    let xt = pre.transform(test);
    let probs = predict(xt.view(), &fit.theta).unwrap();
    let auc = metrics::auc(&probs, &labels).unwrap();
    let target = baselines["centralized"]["auc"].as_f64().unwrap();
    assert!(
        (auc - target).abs() < 1e-4,
        "test AUC {auc} vs sklearn {target}"
    );
    println!(
        "newton iterations {}, max |coef diff| {worst:.2e}, test AUC {auc:.6}",
        fit.iterations
    );
}

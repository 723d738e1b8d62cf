//! Hostile files: whatever a data team's CSV, a schema or a model file holds, the loaders
//! return the data or an error that names the file, never a panic.

use std::path::Path;

use fedrisk_models::schema::infer;
use fedrisk_models::{InferOptions, LabelMode, ModelFile, Schema, load_csv};
use proptest::prelude::*;

/// A real schema (the generated demo's) as text, and its CSV header, built once.
fn sample() -> &'static (String, String) {
    static SAMPLE: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    SAMPLE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = fedrisk_models::synth::SynthConfig::demo(4, 50, 10);
        cfg.institutions.truncate(2);
        fedrisk_models::synth::generate(&cfg)
            .write_dir(dir.path())
            .expect("data");
        let text = std::fs::read_to_string(dir.path().join("schema.json")).expect("schema");
        let schema = Schema::load(&dir.path().join("schema.json")).expect("schema loads");
        let mut header: Vec<String> = schema.features.iter().map(|f| f.name.clone()).collect();
        header.push(schema.label.name.clone());
        (text, header.join(","))
    })
}

/// Text drawn from the characters CSV parsing cares about.
fn csv_text() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just(","),
            Just("\n"),
            Just("\r\n"),
            Just("\""),
            Just("1"),
            Just("0"),
            Just("-"),
            Just("."),
            Just("e"),
            Just("NaN"),
            Just("inf"),
            Just("a"),
            Just("b"),
            Just(" "),
            Just("9999999999999999999999"),
            Just("NA"),
            Just("\u{feff}"),
            Just("é")
        ],
        0..120,
    )
    .prop_map(|parts| parts.concat())
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write");
    p
}

fn schema(dir: &Path) -> Option<Schema> {
    Schema::load(&write(dir, "schema.json", sample().0.as_bytes())).ok()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    #[test]
    fn arbitrary_csv_text_never_panics_and_errors_name_the_file(body in csv_text(), header in any::<bool>()) {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = if header { format!("{}\n{body}", sample().1) } else { body };
        let path = write(dir.path(), "bank.csv", text.as_bytes());
        if let Some(schema) = schema(dir.path()) {
            if let Err(e) = load_csv(&path, &schema, LabelMode::Required) {
                prop_assert!(e.to_string().contains("bank.csv"), "{e}");
            }
            let _ = load_csv(&path, &schema, LabelMode::Optional);
        }
        let _ = infer(&path, &InferOptions::new("default", "1"));
    }

    #[test]
    fn arbitrary_bytes_as_csv_schema_or_model_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let csv = write(dir.path(), "bank.csv", &bytes);
        if let Some(schema) = schema(dir.path()) {
            let _ = load_csv(&csv, &schema, LabelMode::Required);
        }
        let _ = Schema::load(&write(dir.path(), "other-schema.json", &bytes));
        let _ = ModelFile::load(&write(dir.path(), "model.json", &bytes));
    }

    #[test]
    fn a_mutated_schema_never_panics(pos in any::<usize>(), val in any::<u8>()) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut b = sample().0.as_bytes().to_vec();
        let i = pos % b.len();
        b[i] = val;
        let _ = Schema::load(&write(dir.path(), "schema.json", &b));
    }
}

#[test]
fn the_sample_schema_loads() {
    // The CSV tests above load under this schema: a broken sample would test nothing.
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(schema(dir.path()).is_some());
}

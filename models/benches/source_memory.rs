//! `cargo bench -p fedrisk-models --bench source_memory`: writes a 2,000,000 x 16 Parquet file
//! (row groups of 131,072 rows), loads it in a fresh child process and prints that process's
//! peak resident memory beside the numeric matrix size (the bound: within 2x).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::{ArrayRef, Float64Array, Int32Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema as ArrowSchema};
use fedrisk_models::schema::{
    DEFAULT_MISSING_TOKENS, Feature, FeatureKind, LabelSpec, SCHEMA_FORMAT, SCHEMA_VERSION, Schema,
};
use fedrisk_models::{DataSource, LabelMode, load};

const ROWS: usize = 2_000_000;
const COLS: usize = 16;

fn status_kb(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

fn schema() -> Schema {
    Schema {
        format: SCHEMA_FORMAT.into(),
        version: SCHEMA_VERSION,
        label: LabelSpec {
            name: "default".into(),
            positive: "1".into(),
            negative: "0".into(),
        },
        missing_tokens: DEFAULT_MISSING_TOKENS
            .iter()
            .map(|s| s.to_string())
            .collect(),
        features: (0..COLS)
            .map(|j| Feature {
                name: format!("x{j}"),
                kind: FeatureKind::Numeric {
                    special_values: vec![],
                },
                missing: false,
            })
            .collect(),
    }
}

fn write(path: &Path) -> Result<(), String> {
    let mut fields: Vec<Field> = (0..COLS)
        .map(|j| Field::new(format!("x{j}"), DataType::Float64, false))
        .collect();
    fields.push(Field::new("default", DataType::Int32, false));
    let schema = Arc::new(ArrowSchema::new(fields));
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(131_072))
        .build();
    let file = std::fs::File::create(path).map_err(|e| e.to_string())?;
    let mut w = parquet::arrow::ArrowWriter::try_new(file, schema.clone(), Some(props))
        .map_err(|e| e.to_string())?;
    let block = 65_536;
    for start in (0..ROWS).step_by(block) {
        let n = block.min(ROWS - start);
        let mut cols: Vec<ArrayRef> = (0..COLS)
            .map(|j| {
                Arc::new(Float64Array::from_iter_values(
                    (start..start + n).map(|i| ((i * 31 + j * 17) % 997) as f64 / 7.0),
                )) as ArrayRef
            })
            .collect();
        cols.push(Arc::new(Int32Array::from_iter_values(
            (start..start + n).map(|i| i32::from(i % 5 == 0)),
        )));
        let batch = RecordBatch::try_new(schema.clone(), cols).map_err(|e| e.to_string())?;
        w.write(&batch).map_err(|e| e.to_string())?;
    }
    w.close().map_err(|e| e.to_string())?;
    Ok(())
}

/// In the child: load the file and print the peak.
fn read(path: &Path) {
    let before = status_kb("VmRSS:");
    let t = Instant::now();
    let data = load(
        &DataSource::Parquet(path.to_owned()),
        &schema(),
        LabelMode::Required,
    );
    let secs = t.elapsed().as_secs_f64();
    let peak = status_kb("VmHWM:");
    let matrix_mb = (ROWS * COLS * 8) as f64 / 1e6;
    let file_mb = std::fs::metadata(path)
        .map(|m| m.len() as f64 / 1e6)
        .unwrap_or(f64::NAN);
    match data {
        Ok(d) => println!(
            "load Parquet {} x {COLS} ({file_mb:.0} MB file): {secs:.2} s; numeric matrix {matrix_mb:.0} MB; \
             peak RSS {:.0} MB, {:.0} MB above start = {:.2}x the matrix",
            d.rows(),
            peak / 1e3,
            (peak - before) / 1e3,
            (peak - before) / 1e3 / matrix_mb
        ),
        Err(e) => println!("load failed: {e}"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--read") {
        if let Some(p) = args.get(i + 1) {
            read(Path::new(p));
        }
        return;
    }
    let dir = std::env::temp_dir().join(format!("fedrisk-source-bench-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("big.parquet");
    match write(&path) {
        Ok(()) => {
            // A fresh process, so the writer's memory is not counted.
            let exe = std::env::current_exe().unwrap_or_default();
            match std::process::Command::new(exe)
                .arg("--read")
                .arg(&path)
                .status()
            {
                Ok(s) if s.success() => {}
                Ok(s) => println!("the reading process failed: {s}"),
                Err(e) => println!("starting the reading process: {e}"),
            }
        }
        Err(e) => println!("writing {}: {e}", path.display()),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

//! `cargo bench -p fedrisk-models --bench load_memory`: writes a 1,000,000 x 32 CSV, loads it
//! in this fresh process and prints the peak resident memory beside the numeric matrix size.

use std::io::Write;
use std::time::Instant;

use fedrisk_models::schema::{
    DEFAULT_MISSING_TOKENS, Feature, FeatureKind, LabelSpec, SCHEMA_FORMAT, SCHEMA_VERSION, Schema,
};
use fedrisk_models::{LabelMode, load_csv};

fn status_kb(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let (rows, cols) = (1_000_000usize, 32usize);
    let dir = std::env::temp_dir().join(format!("fedrisk-load-bench-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("big.csv");
    {
        let Ok(f) = std::fs::File::create(&path) else {
            return;
        };
        let mut w = std::io::BufWriter::new(f);
        let header: Vec<String> = (0..cols).map(|j| format!("x{j}")).collect();
        let _ = writeln!(w, "{},default", header.join(","));
        for i in 0..rows {
            for j in 0..cols {
                let _ = write!(w, "{:.3},", ((i * 31 + j * 17) % 997) as f64 / 7.0);
            }
            let _ = writeln!(w, "{}", i % 5 == 0);
        }
    }
    let schema = Schema {
        format: SCHEMA_FORMAT.into(),
        version: SCHEMA_VERSION,
        label: LabelSpec {
            name: "default".into(),
            positive: "true".into(),
            negative: "false".into(),
        },
        missing_tokens: DEFAULT_MISSING_TOKENS
            .iter()
            .map(|s| s.to_string())
            .collect(),
        features: (0..cols)
            .map(|j| Feature {
                name: format!("x{j}"),
                kind: FeatureKind::Numeric {
                    special_values: vec![],
                },
                missing: false,
            })
            .collect(),
    };
    let before = status_kb("VmRSS:");
    let t = Instant::now();
    let data = load_csv(&path, &schema, LabelMode::Required);
    let secs = t.elapsed().as_secs_f64();
    let peak = status_kb("VmHWM:");
    let file_mb = std::fs::metadata(&path)
        .map(|m| m.len() as f64 / 1e6)
        .unwrap_or(f64::NAN);
    let matrix_mb = (rows * cols * 8) as f64 / 1e6;
    match data {
        Ok(d) => println!(
            "load_csv {} x {} ({file_mb:.0} MB file): {secs:.2} s, {:.0} MB/s; numeric matrix {matrix_mb:.0} MB; \
             peak RSS above start {:.0} MB = {:.2}x the matrix",
            d.rows(),
            cols,
            file_mb / secs,
            (peak - before) / 1e3,
            (peak - before) / 1e3 / matrix_mb
        ),
        Err(e) => println!("load failed: {e}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

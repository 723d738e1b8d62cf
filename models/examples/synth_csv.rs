//! Writes generated credit rows (the project's synthetic generator, the demo federation's
//! portfolio mix) to a CSV file, with the schema beside it, for memory and speed measurements:
//!
//! `cargo run --release -p fedrisk-models --example synth_csv -- ROWS OUT.csv [SEED]`
//!
//! `scripts/score_memory.sh` uses it to compare the peak memory of `score` and `train`.

use std::path::PathBuf;

use fedrisk_models::synth::{SynthConfig, generate};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(rows), Some(out)) = (args.first(), args.get(1)) else {
        return Err("usage: synth_csv ROWS OUT.csv [SEED]".into());
    };
    let rows: usize = rows.parse().map_err(|e| format!("ROWS `{rows}`: {e}"))?;
    let seed: u64 = match args.get(2) {
        Some(s) => s.parse().map_err(|e| format!("SEED `{s}`: {e}"))?,
        None => 1,
    };
    let out = PathBuf::from(out);
    let data = generate(&SynthConfig::demo(seed, 0, rows));
    std::fs::write(&out, &data.test).map_err(|e| format!("{}: {e}", out.display()))?;
    let schema = out.with_extension("schema.json");
    data.schema.save(&schema)?;
    println!(
        "wrote {} ({rows} rows, {} bytes) and {}",
        out.display(),
        data.test.len(),
        schema.display()
    );
    Ok(())
}

//! `fedrisk-coordinator demo`: five institutions (two banks, a guarantor, an association and a
//! rural bank) with generated non-IID data, a federation CA, a coordinator and five
//! participant agents on loopback with mutual TLS, trained with secure aggregation.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use fedrisk_models::federated::Algorithm;
use fedrisk_models::synth::{SynthConfig, generate};

use crate::simulate::{SimulateArgs, print_report, simulate, write_outputs};

#[derive(Args)]
pub struct DemoArgs {
    /// Seed of the generated data.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Training rows over all institutions.
    #[arg(long, default_value_t = 20_000)]
    rows: usize,
    /// Training rounds.
    #[arg(long, default_value_t = 6)]
    rounds: u32,
    /// newton, fedavg or fedprox.
    #[arg(long, default_value = "newton")]
    algorithm: Algorithm,
    /// Keep the generated data, certificates, database and model here (default: a new
    /// temporary folder).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub async fn run(args: DemoArgs) -> Result<()> {
    let out = match args.out {
        Some(p) => p,
        None => {
            std::env::temp_dir().join(format!("fedrisk-demo-{}-{}", std::process::id(), args.seed))
        }
    };
    let data_dir = out.join("data");
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let cfg = SynthConfig::demo(args.seed, args.rows, args.rows / 4);
    generate(&cfg).write_dir(&data_dir)?;
    println!(
        "fedrisk demo: {} institutions, {} generated training rows (non-IID), coordinator and agents on loopback with mutual TLS",
        cfg.institutions.len(),
        args.rows
    );
    println!(
        "secure aggregation: the coordinator sees only masked sums; {} rounds of {}",
        args.rounds, args.algorithm
    );
    println!();
    let sim = SimulateArgs {
        rounds: args.rounds,
        algorithm: args.algorithm,
        seed: args.seed,
        schema: Some(data_dir.join("schema.json")),
        validation_fraction: 0.2,
        ..SimulateArgs::with_defaults(&data_dir, &out)?
    };
    let (report, model) = simulate(&sim, &out.join("federation")).await?;
    print_report(&report);
    write_outputs(&out, &report, model.as_ref())?;
    println!();
    println!("model written to {}", out.join("model.json").display());
    println!("report written to {}", out.join("report.json").display());
    Ok(())
}

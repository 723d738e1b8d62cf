//! `fedrisk-coordinator demo`: a federation of five institutions on generated data.
//!
//! Until the gRPC federation lands, the demo trains each institution's local-only model and
//! the centrally pooled model (the target a federation must match), and says so.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use fedrisk_models::local::{LocalOptions, train_local};
use fedrisk_models::synth::{SynthConfig, generate};
use fedrisk_models::{LabelMode, Schema, load_csv, metrics};

#[derive(Args)]
pub struct DemoArgs {
    /// Seed of the generated data.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Training rows over all institutions.
    #[arg(long, default_value_t = 20_000)]
    rows: usize,
    /// Keep the generated data and models here (default: a new temporary folder).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(args: DemoArgs) -> Result<()> {
    let out = match args.out {
        Some(p) => p,
        None => std::env::temp_dir().join(format!("fedrisk-demo-{}", std::process::id())),
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let cfg = SynthConfig::demo(args.seed, args.rows, args.rows / 4);
    let data = generate(&cfg);
    data.write_dir(&out)?;
    let schema = Schema::load(&out.join("schema.json"))?;
    let test = load_csv(&out.join("test.csv"), &schema, LabelMode::Required)?;
    let test_labels = test.labels.clone().unwrap_or_default();
    println!(
        "fedrisk demo: {} institutions, {} training rows, data in {}",
        cfg.institutions.len(),
        args.rows,
        out.display()
    );
    println!(
        "NOTE: this build trains local-only and centrally pooled models; federated training over gRPC is not wired yet."
    );
    let mut pooled_text = String::new();
    println!("{:<16} {:>7} {:>10}", "institution", "rows", "local AUC");
    for (name, text) in &data.participants {
        let path = out.join(format!("participants/{name}.csv"));
        let ds = load_csv(&path, &schema, LabelMode::Required)?;
        let rows = ds.rows();
        let (model, _) = train_local(&schema, ds, &LocalOptions::default())?;
        let probs = model.score_dataset(test.clone())?;
        println!(
            "{name:<16} {rows:>7} {:>10.4}",
            metrics::auc(&probs, &test_labels)?
        );
        model.save(&out.join(format!("{name}.local.json")))?;
        if pooled_text.is_empty() {
            pooled_text.push_str(text);
        } else {
            pooled_text.extend(text.lines().skip(1).flat_map(|l| [l, "\n"]));
        }
    }
    let pooled_path = out.join("pooled_train.csv");
    std::fs::write(&pooled_path, pooled_text)?;
    let (pooled, _) = train_local(
        &schema,
        load_csv(&pooled_path, &schema, LabelMode::Required)?,
        &LocalOptions::default(),
    )?;
    let probs = pooled.score_dataset(test)?;
    let e = metrics::evaluate(&probs, &test_labels)?;
    let model_path = out.join("pooled.model.json");
    pooled.save(&model_path)?;
    println!(
        "pooled (central) model: test AUC {:.4}, KS {:.4}, log loss {:.4}; written to {}",
        e.auc,
        e.ks,
        e.log_loss,
        model_path.display()
    );
    Ok(())
}

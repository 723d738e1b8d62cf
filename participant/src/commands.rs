//! The local commands a bank data team runs before (and without) joining a federation:
//! infer a schema, check a file, train a local-only model, score a file.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use fedrisk_models::local::{LocalOptions, train_local};
use fedrisk_models::schema::{FeatureKind, InferOptions, infer};
use fedrisk_models::{LabelMode, ModelFile, PreprocessOptions, Schema, load_csv};

/// The schema given with --schema, or one inferred from the file itself.
pub fn schema_for(
    data: &Path,
    schema: Option<&Path>,
    label: &str,
    positive: &str,
) -> Result<Schema> {
    match schema {
        Some(p) => Ok(Schema::load(p)?),
        None => Ok(infer(data, &InferOptions::new(label, positive))?),
    }
}

pub fn infer_schema(
    data: &Path,
    label: &str,
    positive: &str,
    drop: &[String],
    special: &[String],
    out: &Path,
) -> Result<()> {
    let mut opts = InferOptions::new(label, positive);
    opts.drop = drop.to_vec();
    let mut schema = infer(data, &opts)?;
    for spec in special {
        let (col, codes) = spec
            .split_once('=')
            .with_context(|| format!("--special `{spec}`: expected COLUMN=CODE[,CODE...]"))?;
        let feature = schema
            .features
            .iter_mut()
            .find(|f| f.name == col)
            .with_context(|| format!("--special `{spec}`: no feature `{col}`"))?;
        let values = codes
            .split(',')
            .map(|c| {
                c.trim()
                    .parse::<f64>()
                    .with_context(|| format!("--special `{spec}`: `{c}` is not a number"))
            })
            .collect::<Result<Vec<_>>>()?;
        match &mut feature.kind {
            FeatureKind::Numeric { special_values } => *special_values = values,
            FeatureKind::Categorical { .. } => bail!("--special `{spec}`: `{col}` is categorical"),
        }
        feature.missing = true;
    }
    schema.validate().map_err(|m| anyhow::anyhow!("{m}"))?;
    schema.save(out)?;
    let cats = schema.categorical_features().count();
    println!(
        "wrote {}: {} features ({} numeric, {cats} categorical), label `{}` (positive `{}`, negative `{}`), hash {}",
        out.display(),
        schema.features.len(),
        schema.features.len() - cats,
        schema.label.name,
        schema.label.positive,
        schema.label.negative,
        &schema.hash()[..16]
    );
    Ok(())
}

/// Validates a file and prints a summary; any problem is an error listing where it is.
pub fn check(data: &Path, schema: &Schema) -> Result<()> {
    let ds = load_csv(data, schema, LabelMode::Required)?;
    let labels = ds.labels.as_deref().unwrap_or_default();
    let defaults = labels.iter().filter(|&&l| l == 1).count();
    println!(
        "{}: OK: {} rows, {} defaults ({:.2} %), schema hash {}",
        data.display(),
        ds.rows(),
        defaults,
        100.0 * defaults as f64 / ds.rows().max(1) as f64,
        &schema.hash()[..16]
    );
    for (j, f) in schema.numeric_features().enumerate() {
        let missing = ds.numeric.column(j).iter().filter(|v| v.is_nan()).count();
        if missing > 0 {
            println!(
                "  {}: {missing} missing ({:.1} %)",
                f.name,
                100.0 * missing as f64 / ds.rows() as f64
            );
        }
    }
    for (j, (f, _)) in schema.categorical_features().enumerate() {
        let other = ds
            .categorical
            .column(j)
            .iter()
            .filter(|&&c| c == fedrisk_models::data::CODE_OTHER)
            .count();
        if other > 0 {
            println!(
                "  {}: {other} values not among the schema's levels (scored as `other`)",
                f.name
            );
        }
    }
    Ok(())
}

pub struct TrainArgs<'a> {
    pub data: &'a Path,
    pub schema: Option<&'a Path>,
    pub label: &'a str,
    pub positive: &'a str,
    pub c: f64,
    pub missing_indicators: bool,
    pub out: &'a Path,
}

pub fn train(a: TrainArgs<'_>) -> Result<()> {
    let schema = schema_for(a.data, a.schema, a.label, a.positive)?;
    let ds = load_csv(a.data, &schema, LabelMode::Required)?;
    let opts = LocalOptions {
        c: a.c,
        preprocess: PreprocessOptions {
            missing_indicators: a.missing_indicators,
        },
        ..LocalOptions::default()
    };
    let (model, rows) = train_local(&schema, ds, &opts)
        .with_context(|| format!("training on {}", a.data.display()))?;
    model.save(a.out)?;
    println!(
        "wrote {}: local-only model on {rows} rows, {} coefficients, {} Newton iterations, content hash {}",
        a.out.display(),
        model.coefficients.len(),
        model.provenance.rounds,
        &model.content_hash[..16]
    );
    Ok(())
}

/// Writes `row,probability` (row = 1-based data row, not counting the header).
pub fn score(model: &Path, data: &Path, out: &PathBuf) -> Result<()> {
    let model = ModelFile::load(model)?;
    let (ds, probs) = model.score_csv(data)?;
    let file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut w = std::io::BufWriter::new(file);
    writeln!(w, "row,probability")?;
    for (i, p) in probs.iter().enumerate() {
        writeln!(w, "{},{p:.10}", i + 1)?;
    }
    w.flush()?;
    let mut line = format!("wrote {}: {} scores", out.display(), probs.len());
    if let Some(labels) = ds.labels.as_deref()
        && let Ok(e) = fedrisk_models::metrics::evaluate(&probs, labels)
    {
        line += &format!(
            " (labels present: AUC {:.4}, KS {:.4}, log loss {:.4})",
            e.auc, e.ks, e.log_loss
        );
    }
    println!("{line}");
    Ok(())
}

/// `run`: validate the data, then serve the federation's rounds.
pub fn run_agent(a: crate::AgentArgs) -> Result<()> {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| a.log.clone());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&filter)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    let schema = match &a.schema {
        Some(p) => {
            let s = Schema::load(p)?;
            load_csv(&a.data, &s, LabelMode::Required)?;
            Some(s)
        }
        None => {
            // No schema yet: the job brings it. Check the file's shape now with an inferred one.
            let s = infer(&a.data, &InferOptions::new("default", "1"));
            if let Err(e @ fedrisk_models::DataError::Rows { .. }) = s {
                return Err(e.into());
            }
            None
        }
    };
    if !(0.5..=1.0).contains(&a.min_threshold_fraction) {
        bail!(
            "--min-threshold-fraction {}: expected 0.5 to 1",
            a.min_threshold_fraction
        );
    }
    let identity = fedrisk_participant::tls::ClientIdentity::from_files(&a.ca, &a.cert, &a.key)?;
    let domain = match &a.domain {
        Some(d) => d.clone(),
        None => a
            .coordinator
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split([':', '/']).next())
            .filter(|h| !h.is_empty())
            .with_context(|| {
                format!(
                    "--coordinator `{}`: expected https://HOST:PORT",
                    a.coordinator
                )
            })?
            .to_string(),
    };
    let policy = fedrisk_secagg::ParticipantPolicy {
        min_threshold_fraction: a.min_threshold_fraction,
        ..fedrisk_secagg::ParticipantPolicy::default()
    };
    let cfg = fedrisk_participant::agent::AgentConfig {
        url: a.coordinator.clone(),
        domain,
        identity,
        data: a.data.clone(),
        schema,
        policy,
        keep_serving: a.keep_serving,
        max_reconnects: a.max_reconnects,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let outcome = rt.block_on(fedrisk_participant::agent::run(cfg));
    if a.report_peak_memory {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let kb = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("0");
        eprintln!("peak_rss_kb={kb}");
    }
    let outcome = outcome?;
    if outcome.completed {
        println!("job {} completed", outcome.job_id);
        Ok(())
    } else {
        bail!(
            "job {} ended without completing: {}",
            outcome.job_id,
            outcome.message
        )
    }
}

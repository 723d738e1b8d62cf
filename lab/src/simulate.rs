//! `fedrisk-coordinator simulate`: a federation over loopback on a folder of per-institution
//! CSV files, with a report an operator can compare against local-only and central models.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use fedrisk_models::binning::{BinningOptions, Encoding, FeatureBinning, Trend};
use fedrisk_models::federated::{Algorithm, RoundSettings, validation_split};
use fedrisk_models::local::{LocalOptions, train_local};
use fedrisk_models::schema::{FeatureKind, InferOptions, infer};
use fedrisk_models::{LabelMode, ModelFile, Schema, load_csv, metrics};
use fedrisk_rounds::{Binning, JobSpec};
use serde::Serialize;

use crate::federation::{self, Agents, Coordinator, Federation, FederationRun};

#[derive(Args, Debug, Clone)]
pub struct SimulateArgs {
    /// Folder with `participants/*.csv` (one institution each) and optionally `test.csv`.
    #[arg(long)]
    pub data: PathBuf,
    /// Label column.
    #[arg(long, default_value = "default")]
    pub label: String,
    /// Label value meaning "defaulted".
    #[arg(long, default_value = "1")]
    pub positive: String,
    /// Training rounds.
    #[arg(long, default_value_t = 10)]
    pub rounds: u32,
    /// newton, fedavg or fedprox.
    #[arg(long, default_value = "newton")]
    pub algorithm: Algorithm,
    /// Where to write model.json and report.json (default: ./simulate-out).
    #[arg(long, default_value = "simulate-out")]
    pub out: PathBuf,
    /// Seed of validation splits and local mini-batches.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Schema JSON (default: inferred from all participant files together).
    #[arg(long)]
    pub schema: Option<PathBuf>,
    /// Share of each institution's rows held out for federated evaluation (0: none; the
    /// model then trains on every row and evaluation uses the training rows).
    #[arg(long, default_value_t = 0.0)]
    pub validation_fraction: f64,
    /// Inverse L2 strength (scikit-learn's C).
    #[arg(long, default_value_t = 1.0)]
    pub c: f64,
    /// Local epochs per round (fedavg, fedprox).
    #[arg(long, default_value_t = 1)]
    pub local_epochs: usize,
    /// Local learning rate (fedavg, fedprox).
    #[arg(long, default_value_t = 0.05)]
    pub learning_rate: f64,
    /// Local mini-batch size (fedavg, fedprox).
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// FedProx proximal strength.
    #[arg(long, default_value_t = 0.01)]
    pub mu: f64,
    /// Run each participant as a separate `fedrisk-participant` process (found next to this
    /// binary) instead of in this process.
    #[arg(long)]
    pub processes: bool,
    /// `woe`: bin every feature from the federation's secure sums of good/bad counts and
    /// train on WOE; each local-only baseline bins its own rows the same way.
    #[arg(long, default_value = "none")]
    pub binning: Binning,
    /// Most bins per feature (binning woe).
    #[arg(long, default_value_t = BinningOptions::default().max_bins)]
    pub max_bins: usize,
    /// Trend of the default rate across bins: auto, ascending, descending, peak, valley.
    #[arg(long, default_value_t = BinningOptions::default().trend)]
    pub trend: Trend,
    /// Smallest share of rows in a bin (unless it holds --min-class-count of each class).
    #[arg(long, default_value_t = BinningOptions::default().min_bin_share)]
    pub min_bin_share: f64,
    /// Goods and bads that let a bin stand below --min-bin-share (0: never).
    #[arg(long, default_value_t = BinningOptions::default().min_class_count)]
    pub min_class_count: u64,
    /// Codes meaning "unknown" in a numeric column, COLUMN=CODE[,CODE...] (repeat): binned
    /// on their own, missing otherwise. Only with an inferred schema.
    #[arg(long)]
    pub special: Vec<String>,
    /// Declare the special codes schema inference suggests for any participant's file.
    #[arg(long)]
    pub accept_suggested_specials: bool,
    /// Features whose IV is below this are left out of the model.
    #[arg(long, default_value_t = BinningOptions::default().iv_floor)]
    pub iv_floor: f64,
    /// How bins enter the model: `indicators` (a coefficient per bin) or `woe` (one
    /// coefficient per feature, on its WOE).
    #[arg(long, default_value_t = BinningOptions::default().encoding)]
    pub encoding: Encoding,
}

impl SimulateArgs {
    /// The binning options the flags give.
    pub fn binning_options(&self) -> BinningOptions {
        BinningOptions {
            max_bins: self.max_bins,
            max_prebins: BinningOptions::default().max_prebins.max(self.max_bins),
            min_bin_share: self.min_bin_share,
            min_class_count: self.min_class_count,
            trend: self.trend,
            iv_floor: self.iv_floor,
            encoding: self.encoding,
        }
    }

    /// The `simulate` command's own defaults for `data` and `out`, so `demo` and `bench`
    /// change only what they mean to and never restate a default.
    pub fn with_defaults(data: &Path, out: &Path) -> Result<Self> {
        use clap::{Args, FromArgMatches};
        let matches = SimulateArgs::augment_args(clap::Command::new("simulate"))
            .try_get_matches_from([
                "simulate".as_ref(),
                "--data".as_ref(),
                data.as_os_str(),
                "--out".as_ref(),
                out.as_os_str(),
            ])?;
        Ok(SimulateArgs::from_arg_matches(&matches)?)
    }
}

#[derive(Debug, Serialize)]
pub struct RoundRow {
    pub round: u32,
    pub auc: f64,
    pub ks: f64,
    pub log_loss: f64,
    pub seconds: f64,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub survivors: u32,
    /// Federated evaluation (score histograms through secure aggregation) of the same model.
    pub federated_auc: Option<f64>,
    pub federated_ks: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct ParticipantRow {
    pub name: String,
    pub rows: usize,
    pub local_only_test_auc: f64,
    pub pooled_model_test_auc: f64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub data: String,
    pub algorithm: String,
    /// `none` or `woe` (the local-only baselines bin their own rows the same way).
    pub binning: String,
    /// The final model's bins, counts, default rate, WOE and IV per feature (binning woe).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<FeatureBinning>,
    /// The feature report as a table (binning woe).
    #[serde(skip)]
    pub features_table: Option<String>,
    /// `test.csv`, or each institution's own held-out rows when there is no test file.
    pub evaluated_on: String,
    pub job_state: String,
    pub job_message: String,
    pub rounds: Vec<RoundRow>,
    pub participants: Vec<ParticipantRow>,
    pub seconds_total: f64,
    pub coordinator_peak_rss_mb: f64,
    pub participant_peak_rss_mb: Vec<(String, f64)>,
    /// Every completed secure session, timed from the audit trail.
    pub sessions: Vec<crate::federation::SessionTiming>,
}

/// One schema for all institutions' files: kinds must agree, levels and missing flags merge.
pub fn infer_federation_schema(
    files: &[(String, PathBuf)],
    label: &str,
    positive: &str,
) -> Result<Schema> {
    let mut merged: Option<Schema> = None;
    for (_, path) in files {
        let s = infer(path, &InferOptions::new(label, positive))?;
        merged = Some(match merged {
            None => s,
            Some(mut m) => {
                if m.label != s.label {
                    bail!(
                        "{}: label classes {:?} differ from the other files' {:?}",
                        path.display(),
                        s.label,
                        m.label
                    );
                }
                for f in &s.features {
                    let Some(g) = m.features.iter_mut().find(|g| g.name == f.name) else {
                        bail!(
                            "{}: column `{}` is not in the other files",
                            path.display(),
                            f.name
                        );
                    };
                    g.missing |= f.missing;
                    match (&mut g.kind, &f.kind) {
                        (FeatureKind::Numeric { .. }, FeatureKind::Numeric { .. }) => {}
                        (
                            FeatureKind::Categorical { levels },
                            FeatureKind::Categorical { levels: more },
                        ) => {
                            for l in more {
                                if !levels.contains(l) {
                                    levels.push(l.clone());
                                }
                            }
                            levels.sort();
                        }
                        _ => bail!(
                            "{}: column `{}` is text in some files and numbers in others; give a schema with --schema",
                            path.display(),
                            f.name
                        ),
                    }
                }
                m
            }
        });
    }
    merged.context("no participant files")
}

/// The special codes schema inference suggests in any participant's file, merged per column
/// (each participant would run `schema infer` on its own file).
pub fn suggested_specials(
    files: &[(String, PathBuf)],
    label: &str,
    positive: &str,
) -> Result<Vec<fedrisk_models::schema::SpecialSuggestion>> {
    let mut merged: Vec<fedrisk_models::schema::SpecialSuggestion> = Vec::new();
    for (name, path) in files {
        let (_, sugg) = fedrisk_models::schema::infer_with_suggestions(
            path,
            &InferOptions::new(label, positive),
        )?;
        for s in sugg {
            match merged.iter_mut().find(|m| m.feature == s.feature) {
                Some(m) => {
                    for c in s.codes {
                        if !m.codes.contains(&c) {
                            m.codes.push(c);
                        }
                    }
                    m.codes.sort_by(f64::total_cmp);
                }
                None => merged.push(fedrisk_models::schema::SpecialSuggestion {
                    evidence: format!("in {name}: {}", s.evidence),
                    ..s
                }),
            }
        }
    }
    Ok(merged)
}

pub fn participant_files(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let pdir = dir.join("participants");
    let mut files: Vec<(String, PathBuf)> = std::fs::read_dir(&pdir)
        .with_context(|| format!("reading {}", pdir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "csv"))
        .map(|p| {
            (
                federation::cert_name(&p.file_stem().unwrap_or_default().to_string_lossy()),
                p,
            )
        })
        .collect();
    files.sort();
    if files.len() < 2 {
        bail!(
            "{}: a federation needs at least 2 participant CSV files, found {}",
            pdir.display(),
            files.len()
        );
    }
    for w in files.windows(2) {
        if w[0].0 == w[1].0 {
            bail!(
                "{} and {} map to the same participant name `{}`",
                w[0].1.display(),
                w[1].1.display(),
                w[0].0
            );
        }
    }
    Ok(files)
}

pub async fn simulate(args: &SimulateArgs, work: &Path) -> Result<(Report, Option<ModelFile>)> {
    let files = participant_files(&args.data)?;
    let schema = match &args.schema {
        Some(p) => {
            if !args.special.is_empty() || args.accept_suggested_specials {
                bail!(
                    "--special and --accept-suggested-specials go with an inferred schema, not --schema"
                );
            }
            Schema::load(p)?
        }
        None => {
            let mut s = infer_federation_schema(&files, &args.label, &args.positive)?;
            if args.accept_suggested_specials {
                for sugg in suggested_specials(&files, &args.label, &args.positive)? {
                    println!(
                        "declared special codes {}={:?}: {}",
                        sugg.feature, sugg.codes, sugg.evidence
                    );
                    s.declare_special(&sugg.feature, &sugg.codes)
                        .map_err(|m| anyhow::anyhow!("{m}"))?;
                }
            }
            for spec in &args.special {
                let (col, codes) = spec.split_once('=').with_context(|| {
                    format!("--special `{spec}`: expected COLUMN=CODE[,CODE...]")
                })?;
                let codes = codes
                    .split(',')
                    .map(|c| {
                        c.trim()
                            .parse::<f64>()
                            .with_context(|| format!("--special `{spec}`: `{c}` is not a number"))
                    })
                    .collect::<Result<Vec<_>>>()?;
                s.declare_special(col, &codes)
                    .map_err(|m| anyhow::anyhow!("--special `{spec}`: {m}"))?;
            }
            s
        }
    };
    // Every file is checked up front, as each agent would, so a bad row is reported once
    // with its file, line and column before anything starts.
    for (_, p) in &files {
        load_csv(p, &schema, LabelMode::Required)?;
    }
    let test_path = args.data.join("test.csv");
    let test = if test_path.is_file() {
        Some(load_csv(&test_path, &schema, LabelMode::Required)?)
    } else {
        None
    };
    let settings = RoundSettings {
        algorithm: args.algorithm,
        c: args.c,
        local_epochs: args.local_epochs,
        batch_size: args.batch_size,
        learning_rate: args.learning_rate,
        mu: args.mu,
        validation_fraction: args.validation_fraction,
        split_seed: args.seed,
        seed: args.seed,
        ..RoundSettings::default()
    };
    let n = files.len() as u32;
    // Every agent here shares this machine's cores, so a stage's wall time grows with n
    // times each agent's work (itself growing with n): deadlines meant for one machine per
    // institution would fail large simulations for want of CPU, not of participants.
    let shared_cpu_ms = u64::from(n) * 60;
    let spec = JobSpec {
        stage_deadline_ms: fedrisk_rounds::spec::DEFAULT_STAGE_DEADLINE_MS.max(shared_cpu_ms),
        round_deadline_ms: fedrisk_rounds::spec::DEFAULT_ROUND_DEADLINE_MS.max(2 * shared_cpu_ms),
        binning: args.binning,
        binning_options: args.binning_options(),
        settings: settings.clone(),
        rounds: args.rounds,
        min_participants: n,
        expected_participants: Some(n),
        ..JobSpec::new(
            &format!(
                "simulate-{}",
                args.data.file_name().unwrap_or_default().to_string_lossy()
            ),
            schema.clone(),
        )
    };
    spec.validate().map_err(|e| anyhow::anyhow!("job: {e}"))?;
    let agents = if args.processes {
        Agents::Processes(
            federation::sibling_participant_binary()
                .context("--processes: fedrisk-participant was not found next to this binary")?,
        )
    } else {
        Agents::InProcess
    };
    // With agents as processes, the coordinator is one too (`serve`, as operators run it),
    // so its peak memory is its own.
    let coordinator = match (&agents, federation::coordinator_binary()) {
        (Agents::Processes(_), Some(bin)) => Coordinator::Process(bin),
        _ => Coordinator::InProcess,
    };
    let run = federation::run(Federation {
        work: work.to_owned(),
        participants: files.clone(),
        spec,
        agents,
        coordinator,
    })
    .await?;
    let final_model = run.models.last().map(|(_, m)| m.clone());
    let report = build_report(args, &schema, &files, test.as_ref(), &settings, run)?;
    Ok((report, final_model))
}

fn build_report(
    args: &SimulateArgs,
    schema: &Schema,
    files: &[(String, PathBuf)],
    test: Option<&fedrisk_models::Dataset>,
    settings: &RoundSettings,
    run: FederationRun,
) -> Result<Report> {
    let mut rounds = Vec::new();
    for r in run.rounds.iter().filter(|r| r.round >= 1) {
        let model = run
            .models
            .iter()
            .find(|(k, _)| *k == r.round)
            .map(|(_, m)| m);
        let (auc, ks, log_loss) = match (test, model) {
            (Some(t), Some(m)) => {
                let probs = m.score_dataset(t.clone())?;
                let e = metrics::evaluate(&probs, t.labels.as_deref().unwrap_or_default())?;
                (e.auc, e.ks, e.log_loss)
            }
            _ => (
                r.metrics.auc.unwrap_or(f64::NAN),
                r.metrics.ks.unwrap_or(f64::NAN),
                r.metrics.log_loss.unwrap_or(f64::NAN),
            ),
        };
        rounds.push(RoundRow {
            round: r.round,
            auc,
            ks,
            log_loss,
            seconds: r.metrics.seconds.unwrap_or(f64::NAN),
            bytes_up: r.metrics.bytes_up,
            bytes_down: r.metrics.bytes_down,
            survivors: r.metrics.survivors.unwrap_or(0),
            federated_auc: r.metrics.auc,
            federated_ks: r.metrics.ks,
        });
    }
    let final_model = run.models.last().map(|(_, m)| m);
    let mut participants = Vec::new();
    for (name, path) in files {
        let data = load_csv(path, schema, LabelMode::Required)?;
        let rows = data.rows();
        let (local_auc, pooled_auc) = match test {
            Some(t) => {
                let labels = t.labels.clone().unwrap_or_default();
                let (local, _) = train_local(
                    schema,
                    data,
                    &LocalOptions {
                        c: args.c,
                        binning: (args.binning == Binning::Woe).then(|| args.binning_options()),
                        ..LocalOptions::default()
                    },
                )?;
                let local_auc = metrics::auc(&local.score_dataset(t.clone())?, &labels)?;
                let pooled = match final_model {
                    Some(m) => metrics::auc(&m.score_dataset(t.clone())?, &labels)?,
                    None => f64::NAN,
                };
                (local_auc, pooled)
            }
            None => {
                let fraction = if settings.validation_fraction > 0.0 {
                    settings.validation_fraction
                } else {
                    0.2
                };
                let (tr, va) = validation_split(rows, fraction, settings.split_seed);
                let val = data.select_rows(&va);
                let labels = val.labels.clone().unwrap_or_default();
                let (local, _) = train_local(
                    schema,
                    data.select_rows(&tr),
                    &LocalOptions {
                        c: args.c,
                        binning: (args.binning == Binning::Woe).then(|| args.binning_options()),
                        ..LocalOptions::default()
                    },
                )?;
                let local_auc =
                    metrics::auc(&local.score_dataset(val.clone())?, &labels).unwrap_or(f64::NAN);
                let pooled = match final_model {
                    Some(m) => metrics::auc(&m.score_dataset(val)?, &labels).unwrap_or(f64::NAN),
                    None => f64::NAN,
                };
                (local_auc, pooled)
            }
        };
        participants.push(ParticipantRow {
            name: name.clone(),
            rows,
            local_only_test_auc: local_auc,
            pooled_model_test_auc: pooled_auc,
        });
    }
    let woe = final_model.and_then(|m| m.preprocessing.woe.as_ref());
    Ok(Report {
        data: args.data.display().to_string(),
        algorithm: settings.algorithm.to_string(),
        binning: args.binning.to_string(),
        features: woe.map(|w| w.features.clone()).unwrap_or_default(),
        features_table: woe.map(|w| w.table()),
        evaluated_on: if test.is_some() {
            "test.csv".into()
        } else {
            "each institution's held-out rows".into()
        },
        job_state: run.job_state.to_string(),
        job_message: run.job_message,
        rounds,
        participants,
        seconds_total: run.seconds,
        sessions: run.sessions.clone(),
        coordinator_peak_rss_mb: run.coordinator_peak_kb as f64 / 1024.0,
        participant_peak_rss_mb: run
            .agent_peak_kb
            .iter()
            .map(|(n, k)| (n.clone(), *k as f64 / 1024.0))
            .collect(),
    })
}

pub fn print_report(r: &Report) {
    if let Some(t) = &r.features_table {
        println!("feature report (federated binning):");
        print!("{t}");
        println!();
    }
    println!(
        "{:>5} {:>8} {:>8} {:>9} {:>8} {:>11} {:>11} {:>9}",
        "round", "AUC", "KS", "log loss", "seconds", "bytes up", "bytes down", "survivors"
    );
    for row in &r.rounds {
        println!(
            "{:>5} {:>8.4} {:>8.4} {:>9.4} {:>8.3} {:>11} {:>11} {:>9}",
            row.round,
            row.auc,
            row.ks,
            row.log_loss,
            row.seconds,
            row.bytes_up,
            row.bytes_down,
            row.survivors
        );
    }
    println!(
        "metrics on {}; job {}: {}",
        r.evaluated_on, r.job_state, r.job_message
    );
    println!();
    println!(
        "{:<20} {:>8} {:>16} {:>17}",
        "institution", "rows", "local-only AUC", "pooled-model AUC"
    );
    for p in &r.participants {
        println!(
            "{:<20} {:>8} {:>16.4} {:>17.4}",
            p.name, p.rows, p.local_only_test_auc, p.pooled_model_test_auc
        );
    }
}

pub fn write_outputs(out: &Path, report: &Report, model: Option<&ModelFile>) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    if let Some(m) = model {
        m.save(&out.join("model.json"))?;
    }
    let text = serde_json::to_string_pretty(report)?;
    std::fs::write(out.join("report.json"), text + "\n")
        .with_context(|| format!("writing {}", out.join("report.json").display()))?;
    Ok(())
}

//! `fedrisk-participant`: the agent a bank runs next to its own data. Raw rows never leave it.

mod commands;
mod keygen;
mod run;
mod source;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "fedrisk-participant",
    version,
    about = "fedrisk participant agent: check and model your own credit data, and take part in federated training"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Work with data schemas (the feature layout every institution of a federation shares).
    Schema {
        #[command(subcommand)]
        command: SchemaCommand,
    },
    /// Validate a data file against a schema and print a summary; lists every problem found.
    Check {
        #[command(flatten)]
        src: source::SourceArgs,
        /// Schema JSON; without it, one is inferred from the data.
        #[arg(long)]
        schema: Option<PathBuf>,
        /// Label column (used only when inferring a schema).
        #[arg(long, default_value = "default")]
        label: String,
        /// Value of the label that means "defaulted" (used only when inferring a schema).
        #[arg(long, default_value = "1")]
        positive: String,
        /// A key column (e.g. a loan number) whose value Parquet and SQL errors name beside
        /// the row number; it need not be in the schema.
        #[arg(long, value_name = "COLUMN")]
        id: Option<String>,
    },
    /// Fit this institution's local-only model (its baseline before joining a federation).
    Train {
        #[command(flatten)]
        src: source::SourceArgs,
        /// Label column (ignored when --schema is given: the schema names it).
        #[arg(long, default_value = "default")]
        label: String,
        /// Label value meaning "defaulted", e.g. `1` or `bad` (ignored with --schema).
        #[arg(long, default_value = "1")]
        positive: String,
        /// Schema JSON; without it, one is inferred from --data.
        #[arg(long)]
        schema: Option<PathBuf>,
        /// Inverse L2 strength, as scikit-learn's C (the intercept is not penalised).
        #[arg(long, default_value_t = 1.0)]
        c: f64,
        /// Add a "was missing" 0/1 column for numeric features with missing values.
        #[arg(long)]
        missing_indicators: bool,
        /// `woe`: bin every feature on these rows (as a federation does on its summed
        /// counts) and train on the bins; the model then has a scorecard.
        #[arg(long, default_value = "none")]
        binning: fedrisk_rounds::Binning,
        /// How bins enter the model (binning woe): `indicators` (a coefficient per bin) or
        /// `woe` (one coefficient per feature, on its WOE).
        #[arg(long, default_value_t = fedrisk_models::BinningOptions::default().encoding)]
        encoding: fedrisk_models::Encoding,
        /// Where to write the model JSON.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the feature report of a model trained on WOE bins (IV, bins, counts, default
    /// rate and WOE per bin, trend); `--json` writes it as JSON too.
    Bins {
        /// Model JSON trained with binning woe.
        #[arg(long)]
        model: PathBuf,
        /// Also write the report as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Turn a model trained on WOE bins into a scorecard (points per bin) and print it with
    /// its score-to-PD table; export it as JSON and CSV.
    Scorecard {
        /// Model JSON trained with binning woe.
        #[arg(long)]
        model: PathBuf,
        /// Points at the base odds.
        #[arg(long, default_value_t = 600.0)]
        base_score: f64,
        /// Goods per bad at the base score (50 means 50:1).
        #[arg(long, default_value_t = 50.0)]
        base_odds: f64,
        /// Points to double the odds.
        #[arg(long, default_value_t = 20.0)]
        pdo: f64,
        /// Keep fractional points instead of rounding each bin's points.
        #[arg(long)]
        no_round: bool,
        /// Write the scorecard as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Write `feature,bin,woe,term,points` rows here (`term`: the bin's part of the log-odds).
        #[arg(long)]
        csv: Option<PathBuf>,
    },
    /// Make this institution's identity key and a certificate signing request: writes
    /// OUT/NAME.key (private, mode 0600: it never leaves this machine) and OUT/NAME.csr (send
    /// it to the federation operator, who sends back NAME.pem and ca.pem).
    Keygen {
        /// Institution name, as the federation knows it: lower case letters, digits, `_` and
        /// `-`, at most 64.
        #[arg(long)]
        name: String,
        /// Folder for the two files (created if absent); existing files are never overwritten.
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// Write the model report: one self-contained HTML file (inline SVG plots, no script)
    /// with the federation's ROC and KS curves, AUC/KS/log loss by round, calibration by
    /// decile, score distribution by label, coefficients or scorecard points, configuration,
    /// participant count, model hash and the audit record that produced it.
    Report(ReportArgs),
    /// Population stability of this institution's data against the federation: scores the
    /// data here and compares it with the federation's score distribution the model file
    /// carries (PSI over ten groups; < 0.1 stable, 0.1 to 0.25 watch, > 0.25 shift). Local
    /// only: nothing is sent.
    Psi(PsiArgs),
    /// Join a federation and serve its training rounds until the job ends. The data is
    /// checked first; only masked secure-aggregation messages ever leave this machine.
    Run(RunArgs),
    /// Score data with a model: writes `row,probability` per data row (`ID,probability`
    /// with --id) to a CSV, a Parquet file or a new PostgreSQL table. A missing value is
    /// imputed where the model has an imputation value.
    Score {
        /// Model JSON written by `train` or by a federation.
        #[arg(long)]
        model: PathBuf,
        /// The data to score: the model's feature columns (the label column is optional).
        #[command(flatten)]
        src: source::SourceArgs,
        /// A column of --data to copy into the output instead of row numbers, e.g. a loan
        /// number (it need not be in the schema).
        #[arg(long, value_name = "COLUMN")]
        id: Option<String>,
        /// Where to write the scores: a CSV file, a Parquet file (`.parquet`), or a
        /// postgres:// URL with --out-table (the password as for --data).
        #[arg(long, value_name = "FILE|URL")]
        out: String,
        /// With a postgres:// --out: the table to create (it must not exist; it appears,
        /// filled, only when every row scored).
        #[arg(long)]
        out_table: Option<String>,
    },
    /// Show a model in validators' terms: coefficients on the standardised and the raw scale
    /// with odds ratios, provenance, and with a labelled --data file AUC, KS, Gini, log loss,
    /// Brier score and calibration by decile.
    Describe {
        /// Model JSON (its content hash is checked).
        #[arg(long)]
        model: PathBuf,
        /// A labelled CSV to measure the model on (e.g. a hold-out sample).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Print one JSON object instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Check a federated model file: its content hash, and the coordinator's signature of it
    /// with the coordinator's certificate.
    Verify {
        /// Model JSON.
        #[arg(long)]
        model: PathBuf,
        /// The coordinator's certificate (`coordinator.pem`).
        #[arg(long)]
        cert: PathBuf,
    },
    /// Prove that a federated model version includes sums this institution signed for: checks
    /// the audit chain (`fedrisk-coordinator audit export`) up to the model's record, then
    /// finds the sessions of the model's job and rounds whose recorded survivor-set
    /// signatures include a valid one by this institution's certificate key, and prints them.
    AuditProve {
        /// The audit chain as JSON lines (`audit export`).
        #[arg(long)]
        audit: PathBuf,
        /// The model file (`job export`), which names its audit record.
        #[arg(long)]
        model: PathBuf,
        /// This institution's certificate (its key signed the survivor sets).
        #[arg(long)]
        cert: PathBuf,
        /// The coordinator's certificate: also checks the coordinator's record signatures.
        #[arg(long)]
        coordinator_cert: Option<PathBuf>,
    },
    /// Write a model file as PMML 4.4 or ONNX (or JSON again), for scoring outside fedrisk:
    /// the preprocessing (special codes, imputation, standardisation, one-hot levels with
    /// unseen and missing levels), or a binned model's bins and WOE, is part of the exported
    /// model. `scorecard` (JSON) and
    /// `scorecard-csv` write the points per bin of a model trained on WOE bins.
    Export {
        /// Model JSON written by `train` or by a federation (its content hash is checked).
        #[arg(long)]
        model: PathBuf,
        /// `json`, `pmml`, `onnx`, `scorecard` or `scorecard-csv`.
        #[arg(long, default_value = "pmml")]
        format: String,
        /// Where to write the exported model.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(clap::Args)]
struct ReportArgs {
    /// Model JSON (its content hash is checked).
    #[arg(long)]
    model: PathBuf,
    /// Folder to write `report.html` in (created if absent).
    #[arg(long)]
    out: PathBuf,
    /// The coordinator's certificate: check the model's signature with it and say so.
    #[arg(long)]
    cert: Option<PathBuf>,
}

#[derive(clap::Args)]
struct PsiArgs {
    /// A federated model file: it carries the federation's summed score distribution.
    #[arg(long)]
    model: PathBuf,
    /// This institution's data to compare (the model's feature columns; label optional).
    #[command(flatten)]
    src: source::SourceArgs,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Coordinator URL, e.g. https://coordinator.example:7443.
    #[arg(long)]
    coordinator: String,
    /// This institution's certificate (PEM): its `keygen` request signed with `certs sign`.
    #[arg(long)]
    cert: PathBuf,
    /// This institution's private key (PKCS#8 PEM); it also signs secure-aggregation messages.
    #[arg(long)]
    key: PathBuf,
    /// The federation CA certificate (PEM).
    #[arg(long)]
    ca: PathBuf,
    /// This institution's training data (with the label column).
    #[command(flatten)]
    src: source::SourceArgs,
    /// Schema JSON: if given, the data is checked against it at start and jobs with another
    /// schema are refused.
    #[arg(long)]
    schema: Option<PathBuf>,
    /// Name in the coordinator's certificate (default: the URL's host).
    #[arg(long)]
    domain: Option<String>,
    /// Keep serving further jobs instead of exiting when a job ends.
    #[arg(long)]
    keep_serving: bool,
    /// Lowest secure-aggregation threshold accepted, as a fraction of the participants
    /// (this agent refuses sessions below it, whatever the coordinator says).
    #[arg(long, default_value_t = 2.0 / 3.0)]
    min_threshold_fraction: f64,
    /// Give up after this many failed connection attempts in a row (0: keep trying, with
    /// backoff up to 15 s).
    #[arg(long, default_value_t = 0)]
    max_reconnects: u32,
    /// Fewest distinct institutions a session may invite and a sum may be over (at least 3:
    /// a sum of two and one's own input give away the other's).
    #[arg(long, default_value_t = 3)]
    min_distinct: u32,
    /// Where this agent records the survivor set of every sum its input went into, so it is
    /// never aggregated again over another set (default: the key file's path with
    /// `.ledger.jsonl` appended). Keep it with the key.
    #[arg(long)]
    ledger: Option<PathBuf>,
    /// Seconds a SecAgg+ session's key list may take to come after this agent advertised its
    /// keys: the ring order is drawn from the advertised keys, and a coordinator holding the
    /// list back could search redrawn colluder keys for an order that surrounds a victim.
    /// Keep it above the jobs' stage deadline (default 20 s).
    #[arg(long, default_value_t = fedrisk_participant::agent::DEFAULT_KEY_LIST_WINDOW.as_secs())]
    key_list_window_secs: u64,
    /// Serve Prometheus metrics (`/metrics`) and `/healthz` over plain HTTP on this address,
    /// e.g. 127.0.0.1:9465 (keep it on the institution's network: no TLS). Counts, sizes
    /// and timings only, never data values.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
    /// Print this process's peak resident memory when it exits (for benchmarks).
    #[arg(long, hide = true)]
    report_peak_memory: bool,
    /// Log filter, e.g. `info` or `debug` (also RUST_LOG).
    #[arg(long, default_value = "info")]
    log: String,
    /// `text` or `json` (one JSON object per log line, for log collectors).
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

#[derive(Subcommand)]
enum SchemaCommand {
    /// Infer a schema from a CSV: numeric columns, categorical columns with their levels,
    /// which columns have missing values, and the two label classes.
    Infer {
        #[command(flatten)]
        src: source::SourceArgs,
        /// Label column.
        #[arg(long, default_value = "default")]
        label: String,
        /// Label value meaning "defaulted", e.g. `1`, `bad`, `yes`.
        #[arg(long, default_value = "1")]
        positive: String,
        /// Leave a column out (identifiers, dates); repeat for several.
        #[arg(long)]
        drop: Vec<String>,
        /// Codes in a numeric column that mean "unknown", as COLUMN=CODE[,CODE...], e.g.
        /// `delinq_30_59=96,98`; they are treated as missing values. Repeat for several columns.
        #[arg(long)]
        special: Vec<String>,
        /// Treat a column as categorical even if its values look like numbers (codes such as
        /// sex=1/2); its levels are the values seen. Repeat, or separate with commas:
        /// `--categorical sex,education,marriage`.
        #[arg(long, value_name = "COLUMN", value_delimiter = ',')]
        categorical: Vec<String>,
        /// A field value meaning "missing", besides empty, NA, N/A, NaN, nan, null, NULL, ?
        /// and `.`, e.g. `--missing-token -999`; recorded in the schema. Repeat for several.
        #[arg(
            long = "missing-token",
            value_name = "TOKEN",
            allow_hyphen_values = true
        )]
        missing_token: Vec<String>,
        /// Declare the special codes infer suggests (codes such as 96/98 that sit apart from
        /// a count column); without it they are only printed, with their evidence.
        #[arg(long)]
        accept_suggested_specials: bool,
        /// Where to write the schema JSON.
        #[arg(long)]
        out: PathBuf,
    },
}

/// For commands that only print: dies quietly of SIGPIPE when the reader of stdout goes
/// away (`score ... | head`), as Unix tools do, instead of panicking on the failed write.
fn restore_sigpipe() {
    // SAFETY: setting a signal's disposition to the default at the start of `main`, before
    // any thread exists, has no preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Only for commands that print and exit: a server or an agent keeps SIGPIPE ignored
    // (Rust's default), or a peer that vanishes mid-write would kill it.
    if !matches!(cli.command, Command::Run(_)) {
        restore_sigpipe();
    }
    let result = match cli.command {
        Command::Schema {
            command:
                SchemaCommand::Infer {
                    src,
                    label,
                    positive,
                    drop,
                    special,
                    categorical,
                    missing_token,
                    accept_suggested_specials,
                    out,
                },
        } => src.source().and_then(|data| {
            commands::infer_schema(commands::InferArgs {
                data: &data,
                label: &label,
                positive: &positive,
                drop: &drop,
                special: &special,
                categorical: &categorical,
                missing_tokens: &missing_token,
                accept_suggested_specials,
                out: &out,
            })
        }),
        Command::Check {
            src,
            schema,
            label,
            positive,
            id,
        } => src.source().and_then(|data| {
            commands::schema_for(&data, schema.as_deref(), &label, &positive)
                .and_then(|s| commands::check(&data, &s, id.as_deref()))
        }),
        Command::Train {
            src,
            label,
            positive,
            schema,
            c,
            missing_indicators,
            binning,
            encoding,
            out,
        } => src.source().and_then(|data| {
            commands::train(commands::TrainArgs {
                binning,
                encoding,
                data: &data,
                schema: schema.as_deref(),
                label: &label,
                positive: &positive,
                c,
                missing_indicators,
                out: &out,
            })
        }),
        Command::Score {
            model,
            src,
            id,
            out,
            out_table,
        } => src.source().and_then(|data| {
            commands::score(
                &model,
                &data,
                id.as_deref(),
                &out,
                out_table.as_deref(),
                &src,
            )
        }),
        Command::Bins { model, json } => commands::bins(&model, json.as_deref()),
        Command::Scorecard {
            model,
            base_score,
            base_odds,
            pdo,
            no_round,
            json,
            csv,
        } => commands::scorecard(
            &model,
            &fedrisk_models::scorecard::ScorecardOptions {
                base_score,
                base_odds,
                pdo,
                round: !no_round,
            },
            json.as_deref(),
            csv.as_deref(),
        ),
        Command::Describe { model, data, json } => {
            commands::describe(&model, data.as_deref(), json)
        }
        Command::Verify { model, cert } => commands::verify(&model, &cert),
        Command::AuditProve {
            audit,
            model,
            cert,
            coordinator_cert,
        } => commands::audit_prove(&audit, &model, &cert, coordinator_cert.as_deref()),
        Command::Export { model, format, out } => commands::export(&model, &format, &out),
        Command::Keygen { name, out } => keygen::run(&name, &out),
        Command::Report(a) => commands::report(&a.model, &a.out, a.cert.as_deref()),
        Command::Psi(a) => a
            .src
            .source()
            .and_then(|data| commands::psi(&a.model, &data, a.json)),
        Command::Run(args) => run::run_agent(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "error: {}",
                fedrisk_identity::client::describe_error(e.as_ref())
            );
            ExitCode::FAILURE
        }
    }
}

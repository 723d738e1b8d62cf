//! `fedrisk-coordinator`: runs a federation's training rounds. It sees only securely
//! aggregated sums, never one institution's data or update.

mod audit;
mod certs;
mod config;
mod operator;
mod report;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use fedrisk_lab::{bench, demo, simulate};

#[derive(Parser)]
#[command(
    name = "fedrisk-coordinator",
    version,
    about = "fedrisk coordinator: federated credit-risk (PD) model training with secure aggregation"
)]
struct Cli {
    /// Log filter (e.g. `info`, `fedrisk_coordinator=debug`); also read from RUST_LOG.
    #[arg(long, global = true, default_value = "warn")]
    log: String,
    /// `text` or `json` (one JSON object per log line, for log collectors).
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a whole federation on this machine with generated data, no setup needed.
    Demo(demo::DemoArgs),
    /// Run a federation over loopback on a folder of per-institution CSV files.
    Simulate(simulate::SimulateArgs),
    /// Run the coordinator service (gRPC with mutual TLS, state in SQLite).
    Serve {
        /// TOML configuration (see README.md).
        #[arg(long)]
        config: PathBuf,
        /// Serve Prometheus metrics (`/metrics`) and `/healthz` over plain HTTP on this
        /// address, e.g. 127.0.0.1:9464 (keep it on a private network: no TLS, no client
        /// authentication; it shows counts, never data).
        #[arg(long)]
        metrics: Option<std::net::SocketAddr>,
    },
    /// Live status of a running coordinator: jobs, the round in flight with its progress per
    /// secure-aggregation stage, participants, refusals and errors; --watch redraws it.
    Status(status::StatusArgs),
    /// Manage the federation's certificates: CA, participants, operators, revocation.
    Certs {
        #[command(subcommand)]
        command: certs::CertsCommand,
    },
    /// Operator commands against a running coordinator: submit, status, cancel, list, models, export.
    Job {
        #[command(subcommand)]
        command: operator::JobCommand,
    },
    /// The audit chain in the coordinator's database: verify it, export it.
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// Write the model report of a job's model version (from the coordinator's database) or
    /// of a model file: one self-contained HTML file with SVG plots.
    Report(report::ReportArgs),
    /// Time a federation (a `serve` process and one process per participant, as an operator
    /// runs them) and print seconds and bytes per round and each process's peak memory.
    Bench(bench::BenchArgs),
}

fn init_logging(filter: &str, json: bool) {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| filter.to_string());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&filter)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init()
    };
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// For commands that only print: dies quietly of SIGPIPE when the reader of stdout goes
/// away (`job status | head -1`), as Unix tools do, instead of panicking on the failed write.
fn restore_sigpipe() {
    // SAFETY: setting a signal's disposition to the default at the start of `main`, before
    // any thread exists, has no preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// For the server: one malloc arena. Its few threads wait on the network far more than they
/// contend for the allocator, and glibc's default of an arena per thread (up to eight per
/// core) keeps a fragmented heap per thread, a few MB at a few hundred connections.
fn one_heap_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` sets an allocator parameter; called at the start of `main`, before
    // any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Only for commands that print and exit: a server or an agent keeps SIGPIPE ignored
    // (Rust's default), or a peer that vanishes mid-write would kill it.
    if matches!(
        cli.command,
        Command::Certs { .. }
            | Command::Job { .. }
            | Command::Audit { .. }
            | Command::Report(_)
            | Command::Status(_)
    ) {
        restore_sigpipe();
    }
    if matches!(cli.command, Command::Serve { .. }) {
        one_heap_arena();
    }
    let filter = match &cli.command {
        Command::Serve { .. } if cli.log == "warn" => "info".to_string(),
        _ => cli.log.clone(),
    };
    init_logging(&filter, cli.log_format == "json");
    let result = match cli.command {
        Command::Demo(args) => runtime().and_then(|rt| rt.block_on(demo::run(args))),
        Command::Simulate(args) => runtime().and_then(|rt| {
            rt.block_on(async {
                let work = args.out.join("federation");
                let (report, model) = simulate::simulate(&args, &work).await?;
                simulate::print_report(&report);
                simulate::write_outputs(&args.out, &report, model.as_ref())?;
                println!(
                    "\nwrote {} and {}",
                    args.out.join("model.json").display(),
                    args.out.join("report.json").display()
                );
                // The report is written either way (it says what happened); the exit status
                // says whether the job did.
                if report.job_state != "completed" {
                    anyhow::bail!("the job {}: {}", report.job_state, report.job_message);
                }
                Ok(())
            })
        }),
        Command::Serve { config, metrics } => {
            runtime().and_then(|rt| rt.block_on(config::serve(&config, metrics)))
        }
        Command::Status(args) => runtime().and_then(|rt| rt.block_on(status::run(args))),
        Command::Certs { command } => certs::run(command),
        Command::Audit { command } => audit::run(command),
        Command::Report(args) => report::run(args),
        Command::Job { command } => runtime().and_then(|rt| rt.block_on(operator::run(command))),
        Command::Bench(args) => runtime().and_then(|rt| rt.block_on(bench::run(args))),
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

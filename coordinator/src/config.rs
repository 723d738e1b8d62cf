//! `fedrisk-coordinator serve --config coordinator.toml`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use fedrisk_coordinator::job::JobSpec;
use fedrisk_coordinator::server::{self, ServeOptions};
use fedrisk_models::Schema;
use fedrisk_models::federated::RoundSettings;
use serde::Deserialize;

/// The coordinator's configuration file. Relative paths are relative to the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoordinatorConfig {
    /// Address to listen on, e.g. `0.0.0.0:7443`.
    pub listen: SocketAddr,
    /// Folder made by `certs init`.
    pub pki_dir: PathBuf,
    /// SQLite database (created if absent).
    pub database: PathBuf,
    /// Defaults to the federation name of the roster.
    #[serde(default)]
    pub federation_id: Option<String>,
    /// A job to submit at start-up, unless a job of the same name exists.
    #[serde(default)]
    pub job: Option<JobConfig>,
}

/// A job in the configuration file: like the Operator service's, with the schema as a path.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    pub name: String,
    pub schema: PathBuf,
    pub rounds: u32,
    pub min_participants: u32,
    /// The first session waits for this many participants (default: min_participants).
    #[serde(default)]
    pub expected_participants: Option<u32>,
    #[serde(default)]
    pub round_deadline_ms: Option<u64>,
    #[serde(default)]
    pub stage_deadline_ms: Option<u64>,
    #[serde(default)]
    pub threshold: Option<u32>,
    #[serde(default)]
    pub dropout_budget: Option<u32>,
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// How long an attempt waits for `min_participants` to be connected before it counts
    /// as failed (default 600000).
    #[serde(default)]
    pub wait_for_participants_ms: Option<u64>,
    /// Algorithm and hyper-parameters: `algorithm = "newton"`, `c`, `local_epochs`, ...
    #[serde(default)]
    pub settings: RoundSettings,
}

pub fn load(path: &Path) -> Result<(CoordinatorConfig, Option<JobSpec>)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut cfg: CoordinatorConfig =
        toml::from_str(&text).with_context(|| format!("{}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    cfg.pki_dir = relative_to(base, &cfg.pki_dir);
    cfg.database = relative_to(base, &cfg.database);
    let job = match &cfg.job {
        None => None,
        Some(j) => Some(job_spec(j, base, path)?),
    };
    Ok((cfg, job))
}

fn relative_to(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_owned()
    } else {
        base.join(p)
    }
}

/// Reads a job file (the `[job]` table's fields at top level), as `job submit` takes it.
pub fn load_job(path: &Path) -> Result<JobSpec> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let j: JobConfig = toml::from_str(&text).with_context(|| format!("{}", path.display()))?;
    job_spec(&j, path.parent().unwrap_or(Path::new(".")), path)
}

fn job_spec(j: &JobConfig, base: &Path, path: &Path) -> Result<JobSpec> {
    let spec = JobSpec {
        name: j.name.clone(),
        schema: Schema::load(&relative_to(base, &j.schema))?,
        settings: j.settings.clone(),
        rounds: j.rounds,
        min_participants: j.min_participants,
        expected_participants: j.expected_participants,
        round_deadline_ms: j.round_deadline_ms.unwrap_or(120_000),
        stage_deadline_ms: j.stage_deadline_ms.unwrap_or(20_000),
        threshold: j.threshold,
        dropout_budget: j.dropout_budget,
        max_attempts: j.max_attempts.unwrap_or(3),
        wait_for_participants_ms: j.wait_for_participants_ms.unwrap_or(600_000),
    };
    spec.validate()
        .map_err(|e| anyhow::anyhow!("{}: job: {e}", path.display()))?;
    Ok(spec)
}

pub async fn serve(path: &Path) -> Result<()> {
    let (cfg, job) = load(path)?;
    let running = server::start(ServeOptions {
        listen: cfg.listen,
        pki_dir: cfg.pki_dir.clone(),
        database: cfg.database.clone(),
        federation_id: cfg.federation_id.clone(),
    })
    .await?;
    println!(
        "fedrisk coordinator listening on {} (mutual TLS), federation `{}`",
        running.addr, running.federation_id
    );
    if let Some(spec) = job {
        let exists = running
            .store
            .list_jobs(None)?
            .iter()
            .any(|j| j.name == spec.name);
        if exists {
            println!(
                "job `{}` already exists; it resumes if it was running",
                spec.name
            );
        } else {
            let id = running
                .scheduler
                .submit(&spec)
                .map_err(|e| anyhow::anyhow!("job: {e}"))?;
            println!("submitted job `{}` as job {id}", spec.name);
        }
    }
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    println!("stopping; a running job resumes from its last completed round at the next start");
    running.stop().await;
    Ok(())
}

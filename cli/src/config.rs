//! `fedrisk-coordinator serve --config coordinator.toml`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use fedrisk_coordinator::server::{self, ServeOptions};
use fedrisk_models::Schema;
use fedrisk_rounds::JobSpec;
use serde::Deserialize;

/// The coordinator's configuration file. Relative paths are relative to the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoordinatorConfig {
    /// Address to listen on, e.g. `0.0.0.0:7443`.
    pub listen: SocketAddr,
    /// The coordinator's folder made by `certs init --dir` (`ca.pem`, `coordinator.pem`,
    /// `coordinator.key`, `roster.json`); `serve` refuses it if it holds any other key.
    pub pki_dir: PathBuf,
    /// SQLite database (created if absent).
    pub database: PathBuf,
    /// Defaults to the federation name of the roster.
    #[serde(default)]
    pub federation_id: Option<String>,
    /// A job to submit at start-up, unless a job of the same name exists: the fields of a
    /// job file (see [`job_from_toml`]).
    #[serde(default)]
    pub job: Option<toml::Table>,
}

pub fn load(path: &Path) -> Result<(CoordinatorConfig, Option<JobSpec>)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut cfg: CoordinatorConfig =
        toml::from_str(&text).with_context(|| format!("{}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    cfg.pki_dir = relative_to(base, &cfg.pki_dir);
    cfg.database = relative_to(base, &cfg.database);
    let job = match cfg.job.take() {
        None => None,
        Some(j) => Some(
            job_from_toml(j, base, path).with_context(|| format!("{}: [job]", path.display()))?,
        ),
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

/// Reads a job file, as `job submit --job` takes it.
pub fn load_job(path: &Path) -> Result<JobSpec> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("{}", path.display()))?;
    job_from_toml(table, path.parent().unwrap_or(Path::new(".")), path)
        .with_context(|| format!("{}", path.display()))
}

/// The TOML view of a [`JobSpec`]: the same fields (defaults from the same place), with
/// `schema` the path of a schema JSON file, relative to the job file.
pub fn job_from_toml(mut table: toml::Table, base: &Path, origin: &Path) -> Result<JobSpec> {
    let schema_path = match table.remove("schema") {
        Some(toml::Value::String(p)) => relative_to(base, Path::new(&p)),
        Some(other) => bail!("schema: expected the path of a schema JSON file, found {other}"),
        None => bail!("schema: missing (the path of a schema JSON file)"),
    };
    let schema = Schema::load(&schema_path)?;
    let mut json = serde_json::to_value(&table).context("job table")?;
    if let Some(obj) = json.as_object_mut() {
        obj.insert("schema".into(), serde_json::to_value(&schema)?);
    }
    let spec: JobSpec =
        serde_json::from_value(json).with_context(|| format!("{}: job", origin.display()))?;
    spec.validate()?;
    Ok(spec)
}

pub async fn serve(path: &Path, metrics: Option<SocketAddr>) -> Result<()> {
    let (cfg, job) = load(path)?;
    // The coordinator host holds no CA key and no member's key: refuse to serve a folder that
    // has one, naming it.
    fedrisk_identity::pki::check_serving_dir(&cfg.pki_dir)?;
    let running = server::start(ServeOptions {
        listen: cfg.listen,
        pki_dir: cfg.pki_dir.clone(),
        database: cfg.database.clone(),
        federation_id: cfg.federation_id.clone(),
        events: None,
        metrics,
    })
    .await?;
    println!(
        "fedrisk coordinator listening on {} (mutual TLS), federation `{}`",
        running.addr, running.federation_id
    );
    if let Some(addr) = running.metrics_addr {
        println!("metrics on http://{addr}/metrics, health on http://{addr}/healthz");
    }
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
            let id = running.scheduler.submit(&spec)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field of a job away from its default, in the TOML view.
    const EVERY_FIELD: &str = r#"
name = "every-field"
schema = "schema.json"
rounds = 7
min_participants = 4
expected_participants = 6
round_deadline_ms = 31000
stage_deadline_ms = 7000
threshold = 5
dropout_budget = 1
max_attempts = 5
wait_for_participants_ms = 45000
binning = "woe"
tolerance = 0.0001

[binning_options]
max_bins = 8
max_prebins = 16
min_bin_share = 0.04
min_class_count = 30
trend = "peak"
iv_floor = 0.01
encoding = "woe"

[settings]
algorithm = "fedprox"
c = 0.5
local_epochs = 3
batch_size = 32
learning_rate = 0.02
mu = 0.1
histogram_bins = 500
validation_fraction = 0.1
split_seed = 9
missing_indicators = true
seed = 4
"#;

    fn write_job(dir: &Path, text: &str) -> PathBuf {
        let schema = fedrisk_models::synth::SynthConfig::schema();
        std::fs::write(
            dir.join("schema.json"),
            serde_json::to_string(&schema).expect("schema json"),
        )
        .expect("write schema");
        let path = dir.join("job.toml");
        std::fs::write(&path, text).expect("write job");
        path
    }

    fn expected() -> JobSpec {
        let mut s = JobSpec::new("every-field", fedrisk_models::synth::SynthConfig::schema());
        s.rounds = 7;
        s.min_participants = 4;
        s.expected_participants = Some(6);
        s.round_deadline_ms = 31_000;
        s.stage_deadline_ms = 7_000;
        s.threshold = Some(5);
        s.dropout_budget = Some(1);
        s.max_attempts = 5;
        s.wait_for_participants_ms = 45_000;
        s.binning = fedrisk_rounds::Binning::Woe;
        s.tolerance = 1e-4;
        s.binning_options = fedrisk_models::BinningOptions {
            max_bins: 8,
            max_prebins: 16,
            min_bin_share: 0.04,
            min_class_count: 30,
            trend: fedrisk_models::binning::Trend::Peak,
            iv_floor: 0.01,
            encoding: fedrisk_models::Encoding::Woe,
        };
        s.settings = fedrisk_rounds::RoundSettings {
            algorithm: fedrisk_rounds::Algorithm::FedProx,
            c: 0.5,
            local_epochs: 3,
            batch_size: 32,
            learning_rate: 0.02,
            mu: 0.1,
            histogram_bins: 500,
            validation_fraction: 0.1,
            split_seed: 9,
            missing_indicators: true,
            total_rows: 0.0,
            seed: 4,
        };
        s
    }

    #[test]
    fn every_field_survives_toml_wire_and_store_views() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write_job(dir.path(), EVERY_FIELD);
        let from_toml = load_job(&path).expect("job file");
        assert_eq!(from_toml, expected());
        // The wire and the store carry the JSON view.
        let wire = fedrisk_proto::v1::JobSpec {
            spec_json: from_toml.to_json(),
        };
        let back = JobSpec::from_json(&wire.spec_json).expect("wire");
        assert_eq!(back, expected());
        let store = fedrisk_coordinator::store::Store::open(&dir.path().join("c.db")).expect("db");
        let id = store
            .create_job(&back.name, &back.to_json())
            .expect("create");
        let stored = JobSpec::from_json(&store.job(id).expect("job").spec_json).expect("stored");
        assert_eq!(stored, expected());
    }

    #[test]
    fn a_minimal_job_file_takes_the_spec_defaults_and_names_bad_fields() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write_job(dir.path(), "name = \"m\"\nschema = \"schema.json\"\n");
        assert_eq!(
            load_job(&path).expect("minimal"),
            JobSpec::new("m", fedrisk_models::synth::SynthConfig::schema())
        );
        let path = write_job(
            dir.path(),
            "name = \"m\"\nschema = \"schema.json\"\nmax_attempt = 2\n",
        );
        let e = format!("{:#}", load_job(&path).unwrap_err());
        assert!(e.contains("unknown field `max_attempt`"), "{e}");
        let path = write_job(
            dir.path(),
            "name = \"m\"\nschema = \"schema.json\"\nstage_deadline_ms = 5\n",
        );
        let e = format!("{:#}", load_job(&path).unwrap_err());
        assert!(e.contains("stage_deadline_ms"), "{e}");
    }
}

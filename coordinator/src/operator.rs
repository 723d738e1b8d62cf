//! `fedrisk-coordinator job ...`: the platform operator's client for a running coordinator,
//! over mutual TLS with an operator certificate.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use fedrisk_participant::tls::{self, ClientIdentity};
use fedrisk_proto::v1;

#[derive(Args)]
pub struct Connection {
    /// Coordinator URL, e.g. https://127.0.0.1:7443.
    #[arg(long)]
    coordinator: String,
    /// Federation CA certificate.
    #[arg(long)]
    ca: PathBuf,
    /// Operator certificate (`certs issue --role operator`).
    #[arg(long)]
    cert: PathBuf,
    /// Operator key.
    #[arg(long)]
    key: PathBuf,
    /// Name in the coordinator's certificate.
    #[arg(long, default_value = "localhost")]
    domain: String,
}

/// A job given on the command line instead of in a file.
#[derive(Args)]
pub struct JobFlags {
    /// Job name.
    #[arg(long)]
    name: Option<String>,
    /// Schema JSON every participant's data must match.
    #[arg(long)]
    schema: Option<PathBuf>,
    /// newton, fedavg or fedprox.
    #[arg(long, default_value = "newton")]
    algorithm: fedrisk_models::federated::Algorithm,
    /// Training rounds.
    #[arg(long, default_value_t = 10)]
    rounds: u32,
    /// Participants every session needs.
    #[arg(long, default_value_t = 3)]
    min_participants: u32,
    /// Participants the first session waits for (default: --min-participants).
    #[arg(long)]
    expected_participants: Option<u32>,
    /// How long the first stage of a session waits (it includes local computation), ms.
    #[arg(long, default_value_t = 120_000)]
    round_deadline_ms: u64,
    /// Secure-aggregation threshold t (default floor(2n/3)+1 for n invited).
    #[arg(long)]
    threshold: Option<u32>,
    /// Participants that may drop out of a round without aborting it.
    #[arg(long)]
    dropout_budget: Option<u32>,
    /// Inverse L2 strength (scikit-learn's C).
    #[arg(long, default_value_t = 1.0)]
    c: f64,
}

impl JobFlags {
    fn spec(&self) -> Result<fedrisk_coordinator::job::JobSpec> {
        let (Some(name), Some(schema)) = (&self.name, &self.schema) else {
            bail!("give --job FILE, or at least --name and --schema");
        };
        let spec = fedrisk_coordinator::job::JobSpec {
            name: name.clone(),
            schema: fedrisk_models::Schema::load(schema)?,
            settings: fedrisk_models::federated::RoundSettings {
                algorithm: self.algorithm,
                c: self.c,
                ..Default::default()
            },
            rounds: self.rounds,
            min_participants: self.min_participants,
            expected_participants: self.expected_participants,
            round_deadline_ms: self.round_deadline_ms,
            stage_deadline_ms: 20_000,
            threshold: self.threshold,
            dropout_budget: self.dropout_budget,
            max_attempts: 3,
            wait_for_participants_ms: 600_000,
        };
        spec.validate().map_err(|e| anyhow::anyhow!("job: {e}"))?;
        Ok(spec)
    }
}

#[derive(Subcommand)]
pub enum JobCommand {
    /// Submit a job file (TOML: name, schema, rounds, min_participants, [settings]).
    Submit {
        #[command(flatten)]
        conn: Connection,
        /// Job file (TOML: name, schema, rounds, min_participants, [settings]); or give the
        /// job with the flags below instead.
        #[arg(long, conflicts_with_all = ["name", "schema"])]
        job: Option<PathBuf>,
        #[command(flatten)]
        flags: JobFlags,
    },
    /// A job's state and per-round figures.
    Status {
        #[command(flatten)]
        conn: Connection,
        /// Job id.
        #[arg(long)]
        id: u64,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Cancel a pending or running job.
    Cancel {
        #[command(flatten)]
        conn: Connection,
        /// Job id.
        #[arg(long)]
        id: u64,
    },
    /// List jobs.
    List {
        #[command(flatten)]
        conn: Connection,
    },
    /// List model versions (of one job, or of all).
    Models {
        #[command(flatten)]
        conn: Connection,
        /// Job id (0: all jobs).
        #[arg(long, default_value_t = 0)]
        id: u64,
    },
    /// Export a model version as its JSON model file (round 0: the latest).
    Export {
        #[command(flatten)]
        conn: Connection,
        /// Job id.
        #[arg(long)]
        id: u64,
        /// Round (0: the latest).
        #[arg(long, default_value_t = 0)]
        round: u32,
        /// Where to write the model file.
        #[arg(long)]
        out: PathBuf,
    },
}

async fn client(
    c: &Connection,
) -> Result<fedrisk_proto::OperatorClient<tonic::transport::Channel>> {
    let id = ClientIdentity::from_files(&c.ca, &c.cert, &c.key)?;
    let channel = tls::connect(&c.coordinator, &c.domain, &id, tls::CONNECT_TIMEOUT).await?;
    Ok(fedrisk_proto::operator_client(channel))
}

fn state_name(s: i32) -> &'static str {
    v1::JobState::try_from(s).map_or("unknown", |s| match s {
        v1::JobState::Unspecified => "unspecified",
        v1::JobState::Pending => "pending",
        v1::JobState::Running => "running",
        v1::JobState::Completed => "completed",
        v1::JobState::Failed => "failed",
        v1::JobState::Cancelled => "cancelled",
    })
}

fn print_status(s: &v1::JobStatus) {
    println!(
        "job {} `{}`: {} (round {} of {}) {}",
        s.job_id,
        s.name,
        state_name(s.state),
        s.round,
        s.rounds_total,
        s.message
    );
    for m in &s.metrics {
        println!(
            "  round {:>3}: AUC {:.4} KS {:.4} log loss {:.4}, {} survivors, {:.3} s, {} B up, {} B down",
            m.round, m.auc, m.ks, m.log_loss, m.survivors, m.seconds, m.bytes_up, m.bytes_down
        );
    }
}

pub async fn run(cmd: JobCommand) -> Result<()> {
    match cmd {
        JobCommand::Submit { conn, job, flags } => {
            let spec = match job {
                Some(path) => crate::config::load_job(&path)?,
                None => flags.spec()?,
            };
            let wire = v1::JobSpec {
                name: spec.name.clone(),
                schema_json: serde_json::to_string(&spec.schema)?,
                algorithm: spec.settings.algorithm.to_string(),
                rounds: spec.rounds,
                min_participants: spec.min_participants,
                round_deadline_ms: spec.round_deadline_ms,
                secagg_threshold: spec.threshold.unwrap_or(0),
                dropout_budget: spec.dropout_budget.unwrap_or(0),
                hyper_params_json: serde_json::to_string(&spec.settings)?,
                participants: vec![],
                expected_participants: spec.expected_participants.unwrap_or(0),
                histogram_bins: spec.settings.histogram_bins as u32,
            };
            let r = client(&conn)
                .await?
                .submit_job(wire)
                .await
                .context("submit")?
                .into_inner();
            println!("submitted job {}", r.job_id);
        }
        JobCommand::Status { conn, id, json } => {
            let s = client(&conn)
                .await?
                .get_status(v1::JobRef { job_id: id })
                .await
                .context("status")?
                .into_inner();
            if json {
                let rounds: Vec<serde_json::Value> = s
                    .metrics
                    .iter()
                    .map(|m| {
                        serde_json::json!({"round": m.round, "auc": m.auc, "ks": m.ks, "log_loss": m.log_loss,
                            "survivors": m.survivors, "seconds": m.seconds, "bytes_up": m.bytes_up, "bytes_down": m.bytes_down})
                    })
                    .collect();
                let v = serde_json::json!({"job_id": s.job_id, "name": s.name, "state": state_name(s.state),
                    "round": s.round, "rounds_total": s.rounds_total, "message": s.message, "rounds": rounds});
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print_status(&s);
            }
        }
        JobCommand::Cancel { conn, id } => {
            let s = client(&conn)
                .await?
                .cancel_job(v1::JobRef { job_id: id })
                .await
                .context("cancel")?
                .into_inner();
            print_status(&s);
        }
        JobCommand::List { conn } => {
            let l = client(&conn)
                .await?
                .list_jobs(v1::ListJobsRequest::default())
                .await
                .context("list")?
                .into_inner();
            for s in &l.jobs {
                println!(
                    "job {} `{}`: {} (round {} of {})",
                    s.job_id,
                    s.name,
                    state_name(s.state),
                    s.round,
                    s.rounds_total
                );
            }
        }
        JobCommand::Models { conn, id } => {
            let l = client(&conn)
                .await?
                .list_models(v1::ListModelsRequest { job_id: id })
                .await
                .context("models")?
                .into_inner();
            for m in &l.models {
                println!("job {} round {:>3} {}", m.job_id, m.round, m.content_hash);
            }
        }
        JobCommand::Export {
            conn,
            id,
            round,
            out,
        } => {
            let m = client(&conn)
                .await?
                .export_model(v1::ModelRef {
                    job_id: id,
                    round,
                    format: v1::ExportFormat::Json as i32,
                })
                .await
                .context("export")?
                .into_inner();
            std::fs::write(&out, &m.content)
                .with_context(|| format!("writing {}", out.display()))?;
            let model = fedrisk_models::ModelFile::load(&out)?;
            if model.content_hash != m.content_hash {
                bail!("the exported model's hash differs from the coordinator's record");
            }
            println!(
                "wrote {} (job {} round {}, content hash {})",
                out.display(),
                m.job_id,
                m.round,
                m.content_hash
            );
        }
    }
    Ok(())
}

//! `fedrisk-coordinator job ...`: the platform operator's client for a running coordinator,
//! over mutual TLS with an operator certificate.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use fedrisk_identity::client::{self as tls, ClientIdentity};
use fedrisk_proto::v1;
use fedrisk_rounds::JobSpec;

#[derive(Args)]
pub struct Connection {
    /// Coordinator URL, e.g. https://127.0.0.1:7443.
    #[arg(long)]
    pub(crate) coordinator: String,
    /// Federation CA certificate.
    #[arg(long)]
    pub(crate) ca: PathBuf,
    /// Operator certificate (`certs issue --role operator`).
    #[arg(long)]
    pub(crate) cert: PathBuf,
    /// Operator key.
    #[arg(long)]
    pub(crate) key: PathBuf,
    /// Name in the coordinator's certificate.
    #[arg(long, default_value = "localhost")]
    pub(crate) domain: String,
}

/// A job given on the command line, or fields overriding a job file's. Every field left
/// out takes the job specification's own default (`fedrisk_rounds::spec`).
#[derive(Args, Default)]
pub struct JobFlags {
    /// Job name.
    #[arg(long)]
    name: Option<String>,
    /// Schema JSON every participant's data must match.
    #[arg(long)]
    schema: Option<PathBuf>,
    /// newton, fedavg or fedprox (default newton).
    #[arg(long)]
    algorithm: Option<fedrisk_rounds::Algorithm>,
    /// Training rounds (default 10).
    #[arg(long)]
    rounds: Option<u32>,
    /// Participants every session needs (default 3).
    #[arg(long)]
    min_participants: Option<u32>,
    /// Participants the first session waits for (default: --min-participants).
    #[arg(long)]
    expected_participants: Option<u32>,
    /// How long the first stage of a session waits (it includes local computation), ms
    /// (default 120000).
    #[arg(long)]
    round_deadline_ms: Option<u64>,
    /// How long each later secure-aggregation stage waits, ms (default 20000).
    #[arg(long)]
    stage_deadline_ms: Option<u64>,
    /// Secure-aggregation threshold t (default floor(2n/3)+1 for n invited).
    #[arg(long)]
    threshold: Option<u32>,
    /// Participants that may drop out of a session without aborting it.
    #[arg(long)]
    dropout_budget: Option<u32>,
    /// Attempts of one round before the job fails (default 3).
    #[arg(long)]
    max_attempts: Option<u32>,
    /// How long an attempt waits for --min-participants, ms (default 120000).
    #[arg(long)]
    wait_for_participants_ms: Option<u64>,
    /// Inverse L2 strength, scikit-learn's C (default 1).
    #[arg(long)]
    c: Option<f64>,
    /// `woe`: bin every feature from the federation's secure sums of good/bad counts and
    /// train on the WOE of the bins (default none).
    #[arg(long)]
    binning: Option<fedrisk_rounds::Binning>,
}

impl JobFlags {
    /// The job from flags alone, or `base` (a job file) with the flags given applied.
    pub fn spec(&self, base: Option<JobSpec>) -> Result<JobSpec> {
        let mut spec = match base {
            Some(s) => s,
            None => {
                let (Some(name), Some(schema)) = (&self.name, &self.schema) else {
                    bail!("give --job FILE, or at least --name and --schema");
                };
                JobSpec::new(name, fedrisk_models::Schema::load(schema)?)
            }
        };
        if let Some(v) = &self.name {
            spec.name = v.clone();
        }
        if let Some(v) = &self.schema {
            spec.schema = fedrisk_models::Schema::load(v)?;
        }
        if let Some(v) = self.algorithm {
            spec.settings.algorithm = v;
        }
        if let Some(v) = self.c {
            spec.settings.c = v;
        }
        if let Some(v) = self.binning {
            spec.binning = v;
        }
        if let Some(v) = self.rounds {
            spec.rounds = v;
        }
        if let Some(v) = self.min_participants {
            spec.min_participants = v;
        }
        if let Some(v) = self.expected_participants {
            spec.expected_participants = Some(v);
        }
        if let Some(v) = self.round_deadline_ms {
            spec.round_deadline_ms = v;
        }
        if let Some(v) = self.stage_deadline_ms {
            spec.stage_deadline_ms = v;
        }
        if let Some(v) = self.threshold {
            spec.threshold = Some(v);
        }
        if let Some(v) = self.dropout_budget {
            spec.dropout_budget = Some(v);
        }
        if let Some(v) = self.max_attempts {
            spec.max_attempts = v;
        }
        if let Some(v) = self.wait_for_participants_ms {
            spec.wait_for_participants_ms = v;
        }
        spec.validate()?;
        Ok(spec)
    }
}

#[derive(Subcommand)]
pub enum JobCommand {
    /// Submit a job file (TOML: name, schema, rounds, min_participants, [settings]).
    Submit {
        #[command(flatten)]
        conn: Connection,
        /// Job file (TOML: name, schema, rounds, min_participants, [settings], ...); flags
        /// below override its fields, or give the whole job without a file.
        #[arg(long)]
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
    /// Export a model version (round 0: the latest) as its JSON model file, PMML 4.4, ONNX
    /// or, for a model trained on WOE bins, its scorecard (JSON or CSV). The coordinator sends
    /// the JSON model file; its content hash is checked against the coordinator's record
    /// before it is converted here.
    Export {
        #[command(flatten)]
        conn: Connection,
        /// Job id.
        #[arg(long)]
        id: u64,
        /// Round (0: the latest).
        #[arg(long, default_value_t = 0)]
        round: u32,
        /// `json`, `pmml`, `onnx`, `scorecard` or `scorecard-csv`.
        #[arg(long, default_value = "json")]
        format: String,
        /// Where to write the model file.
        #[arg(long)]
        out: PathBuf,
    },
}

pub(crate) async fn client(
    c: &Connection,
) -> Result<fedrisk_proto::OperatorClient<tonic::transport::Channel>> {
    let id = ClientIdentity::from_files(&c.ca, &c.cert, &c.key)?;
    let channel = tls::connect(&c.coordinator, &c.domain, &id, tls::CONNECT_TIMEOUT).await?;
    Ok(fedrisk_proto::operator_client(channel))
}

pub(crate) fn state_name(s: i32) -> &'static str {
    v1::JobState::try_from(s).map_or("unknown", |s| match s {
        v1::JobState::Unspecified => "unspecified",
        v1::JobState::Pending => "pending",
        v1::JobState::Running => "running",
        v1::JobState::Completed => "completed",
        v1::JobState::Failed => "failed",
        v1::JobState::Cancelled => "cancelled",
    })
}

fn fmt_metric(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.4}")
    } else {
        "-".to_string()
    }
}

fn print_status(s: &v1::JobStatus) {
    print!("{}", render_status(s));
}

/// A job's status as text: its state line, what it does now, the session in flight stage by
/// stage, the participants, the latest errors and the per-round figures.
pub(crate) fn render_status(s: &v1::JobStatus) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let state = state_name(s.state);
    let mut line = format!(
        "job {} `{}`: {state}, {} of {} training rounds complete",
        s.job_id, s.name, s.round, s.rounds_total
    );
    if !s.message.is_empty() && s.message != state {
        line.push_str(&format!(" ({})", s.message));
    }
    let _ = writeln!(out, "{line}");
    if !s.activity.is_empty() {
        let _ = writeln!(out, "  now: {}", s.activity);
    }
    if let Some(p) = &s.session {
        let _ = writeln!(
            out,
            "  session: round {} {}, {} invited, threshold {}, {} ({:.1} s)",
            p.round, p.kind, p.invited, p.threshold, p.state, p.seconds
        );
        for st in &p.stages {
            let progress = if st.expected == 0 && !st.closed {
                "-".to_string()
            } else {
                format!(
                    "{:>3} of {:<3} {}{:.2} s",
                    st.received,
                    st.expected,
                    if st.closed {
                        "closed after "
                    } else {
                        "open for "
                    },
                    st.seconds
                )
            };
            let _ = writeln!(out, "    {:<10} {progress}", st.stage);
        }
    }
    for p in &s.participants {
        let mut l = format!(
            "  participant {:<16} {}",
            p.name,
            if p.connected {
                format!("connected from {}", p.address)
            } else {
                "not connected".to_string()
            }
        );
        if !p.refusal.is_empty() {
            let kind = v1::RefusalKind::try_from(p.refusal_kind)
                .map_or("unknown", |k| k.as_str_name())
                .trim_start_matches("REFUSAL_KIND_")
                .to_lowercase();
            l.push_str(&format!(
                "; refused round {} ({kind}): {}",
                p.refusal_round, p.refusal
            ));
        }
        let _ = writeln!(out, "{l}");
    }
    for e in &s.errors {
        let _ = writeln!(
            out,
            "  error at {} UTC, round {}: {}",
            clock(e.at_unix_ms),
            e.round,
            e.message
        );
    }
    for m in &s.metrics {
        if m.kind == v1::RoundKind::Stats as i32 {
            let _ = writeln!(
                out,
                "  round {:>3} (statistics): {} survivors, {:.3} s, {} B up, {} B down",
                m.round, m.survivors, m.seconds, m.bytes_up, m.bytes_down
            );
        } else {
            let _ = writeln!(
                out,
                "  round {:>3}: AUC {} KS {} log loss {}, {} survivors, {:.3} s, {} B up, {} B down",
                m.round,
                fmt_metric(m.auc),
                fmt_metric(m.ks),
                fmt_metric(m.log_loss),
                m.survivors,
                m.seconds,
                m.bytes_up,
                m.bytes_down
            );
        }
    }
    out
}

/// HH:MM:SS (UTC) of a Unix time in milliseconds.
pub(crate) fn clock(unix_ms: u64) -> String {
    let s = (unix_ms / 1000) % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

/// A job's status as JSON (`job status --json`, `status --json`).
pub(crate) fn status_json(s: &v1::JobStatus) -> serde_json::Value {
    let finite = |v: f64| v.is_finite().then_some(v);
    let rounds: Vec<serde_json::Value> = s
        .metrics
        .iter()
        .map(|m| {
            serde_json::json!({"round": m.round, "kind": if m.kind == v1::RoundKind::Stats as i32 { "statistics" } else { "training" },
                "auc": finite(m.auc), "ks": finite(m.ks), "log_loss": finite(m.log_loss),
                "survivors": m.survivors, "seconds": finite(m.seconds), "bytes_up": m.bytes_up, "bytes_down": m.bytes_down})
        })
        .collect();
    let participants: Vec<serde_json::Value> = s
        .participants
        .iter()
        .map(|p| {
            serde_json::json!({"id": p.participant_id, "name": p.name, "connected": p.connected,
                "address": p.address, "refusal": (!p.refusal.is_empty()).then(|| p.refusal.clone()),
                "refusal_round": p.refusal_round})
        })
        .collect();
    let session = s.session.as_ref().map(|p| {
        let stages: Vec<serde_json::Value> = p
            .stages
            .iter()
            .map(|st| {
                serde_json::json!({"stage": st.stage, "received": st.received, "expected": st.expected,
                    "closed": st.closed, "seconds": st.seconds})
            })
            .collect();
        serde_json::json!({"round": p.round, "kind": p.kind, "invited": p.invited, "threshold": p.threshold,
            "state": p.state, "seconds": p.seconds, "stages": stages})
    });
    let errors: Vec<serde_json::Value> = s
        .errors
        .iter()
        .map(|e| serde_json::json!({"at_unix_ms": e.at_unix_ms, "round": e.round, "message": e.message}))
        .collect();
    serde_json::json!({"job_id": s.job_id, "name": s.name, "state": state_name(s.state),
        "round": s.round, "rounds_total": s.rounds_total, "message": s.message,
        "activity": s.activity, "participants": participants, "rounds": rounds,
        "session": session, "errors": errors,
        "converged_round": (s.converged_round > 0).then_some(s.converged_round)})
}

pub async fn run(cmd: JobCommand) -> Result<()> {
    match cmd {
        JobCommand::Submit { conn, job, flags } => {
            let base = match job {
                Some(path) => Some(crate::config::load_job(&path)?),
                None => None,
            };
            let spec = flags.spec(base)?;
            let wire = v1::JobSpec {
                spec_json: spec.to_json(),
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
                println!("{}", serde_json::to_string_pretty(&status_json(&s))?);
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
                    "job {} `{}`: {}, {} of {} training rounds complete",
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
            format,
            out,
        } => {
            let format: fedrisk_export::Format = format.parse()?;
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
            let origin = PathBuf::from(format!("job {} round {}", m.job_id, m.round));
            let text = std::str::from_utf8(&m.content)
                .with_context(|| format!("{}: the model file is not UTF-8", origin.display()))?;
            let model = fedrisk_models::ModelFile::parse(text, &origin)?;
            if model.content_hash != m.content_hash {
                bail!("the exported model's hash differs from the coordinator's record");
            }
            let bytes = match format {
                // The coordinator's bytes, as they are.
                fedrisk_export::Format::Json => m.content.clone(),
                other => fedrisk_export::export(&model, other)?,
            };
            std::fs::write(&out, &bytes).with_context(|| format!("writing {}", out.display()))?;
            println!(
                "wrote {} ({format}, job {} round {}, content hash {})",
                out.display(),
                m.job_id,
                m.round,
                m.content_hash
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_a_job_file_field_by_field_and_keep_the_rest() {
        let mut base = JobSpec::new("file", fedrisk_models::synth::SynthConfig::schema());
        base.max_attempts = 5;
        base.wait_for_participants_ms = 45_000;
        let flags = JobFlags {
            rounds: Some(2),
            stage_deadline_ms: Some(3_000),
            algorithm: Some(fedrisk_rounds::Algorithm::FedAvg),
            ..JobFlags::default()
        };
        let spec = flags.spec(Some(base.clone())).expect("valid");
        assert_eq!(spec.rounds, 2);
        assert_eq!(spec.stage_deadline_ms, 3_000);
        assert_eq!(spec.settings.algorithm, fedrisk_rounds::Algorithm::FedAvg);
        assert_eq!(
            spec.max_attempts, 5,
            "a field the flags did not name is kept"
        );
        assert_eq!(spec.wait_for_participants_ms, 45_000);
        let e = JobFlags::default().spec(None).unwrap_err().to_string();
        assert!(e.contains("--name and --schema"), "{e}");
        let bad = JobFlags {
            max_attempts: Some(0),
            ..JobFlags::default()
        };
        let e = bad.spec(Some(base)).unwrap_err().to_string();
        assert!(e.contains("max_attempts"), "{e}");
    }
}

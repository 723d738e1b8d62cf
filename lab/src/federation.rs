//! A whole federation on this machine: a federation CA, the coordinator on loopback, one
//! participant agent per data file (in-process tasks or separate processes), all over real
//! gRPC with mutual TLS. `demo`, `simulate` and `bench` are built on it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use fedrisk_coordinator::server::{self, ServeOptions};
use fedrisk_coordinator::store::{JobState, RoundRecord, RoundState};
use fedrisk_identity::client::ClientIdentity;
use fedrisk_identity::pki::{self, Role};
use fedrisk_models::ModelFile;
use fedrisk_participant::agent::{self, AgentConfig};
use fedrisk_rounds::JobSpec;
use fedrisk_secagg::ParticipantPolicy;

/// How participant agents run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Agents {
    /// Tasks in this process (each with its own TLS connection).
    InProcess,
    /// `fedrisk-participant run` processes; their logs go to `work/logs/`.
    Processes(PathBuf),
}

pub struct Federation {
    /// Where the PKI, database and logs go.
    pub work: PathBuf,
    pub participants: Vec<(String, PathBuf)>,
    pub spec: JobSpec,
    pub agents: Agents,
}

pub struct FederationRun {
    pub job_state: JobState,
    pub job_message: String,
    pub rounds: Vec<RoundRecord>,
    /// Model of each training round, in order.
    pub models: Vec<(u32, ModelFile)>,
    pub seconds: f64,
    /// Peak resident memory of the coordinator process, kB (the whole process when agents
    /// run in-process).
    pub coordinator_peak_kb: u64,
    /// Peak resident memory of each agent process, kB (empty for in-process agents).
    pub agent_peak_kb: Vec<(String, u64)>,
}

/// A certificate name for an institution's file stem: lower case, `[a-z0-9_-]`.
pub fn cert_name(stem: &str) -> String {
    let s: String = stem
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if s.is_empty() || matches!(s.as_str(), "ca" | "coordinator" | "roster") {
        format!("p_{s}")
    } else {
        s
    }
}

pub fn peak_rss_kb(status: &str) -> u64 {
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

pub async fn run(f: Federation) -> Result<FederationRun> {
    let pki_dir = f.work.join("pki");
    // Each run is a new federation: the CA, database and agents' ledgers of an earlier run
    // in this folder belong to another one.
    if pki_dir.exists() {
        std::fs::remove_dir_all(&pki_dir)
            .with_context(|| format!("clearing {}", pki_dir.display()))?;
    }
    for db in ["coordinator.db", "coordinator.db-wal", "coordinator.db-shm"] {
        let _ = std::fs::remove_file(f.work.join(db));
    }
    for (name, _) in &f.participants {
        let _ = std::fs::remove_file(f.work.join(format!("{name}.ledger.jsonl")));
    }
    pki::init(&pki_dir, "fedrisk-local").context("creating the federation CA")?;
    for (name, _) in &f.participants {
        pki::issue(&pki_dir, name, Role::Participant, 30)
            .with_context(|| format!("issuing a certificate for {name}"))?;
    }
    let running = server::start(ServeOptions {
        listen: "127.0.0.1:0".parse()?,
        pki_dir: pki_dir.clone(),
        database: f.work.join("coordinator.db"),
        federation_id: None,
        events: None,
        metrics: None,
    })
    .await?;
    let url = format!("https://127.0.0.1:{}", running.addr.port());
    let started = Instant::now();
    let mut tasks = Vec::new();
    let mut children = Vec::new();
    for (name, csv) in &f.participants {
        match &f.agents {
            Agents::InProcess => {
                let cfg = AgentConfig {
                    url: url.clone(),
                    domain: "localhost".into(),
                    identity: ClientIdentity::from_dir(&pki_dir, name)?,
                    data: fedrisk_models::DataSource::Csv(csv.clone()),
                    schema: None,
                    policy: ParticipantPolicy::default(),
                    keep_serving: false,
                    max_reconnects: 20,
                    ledger: Some(f.work.join(format!("{name}.ledger.jsonl"))),
                    limits: fedrisk_rounds::TaskLimits::default(),
                    key_list_window: agent::DEFAULT_KEY_LIST_WINDOW,
                };
                tasks.push(tokio::spawn(agent::run(cfg)));
            }
            Agents::Processes(bin) => {
                let logs = f.work.join("logs");
                std::fs::create_dir_all(&logs)?;
                let log = std::fs::File::create(logs.join(format!("{name}.log")))?;
                let child = tokio::process::Command::new(bin)
                    .arg("run")
                    .arg("--coordinator")
                    .arg(&url)
                    .arg("--ca")
                    .arg(pki_dir.join("ca.pem"))
                    .arg("--cert")
                    .arg(pki_dir.join(format!("{name}.pem")))
                    .arg("--key")
                    .arg(pki_dir.join(format!("{name}.key")))
                    .arg("--data")
                    .arg(csv)
                    .arg("--report-peak-memory")
                    .stdout(log.try_clone()?)
                    .stderr(log)
                    .kill_on_drop(true)
                    .spawn()
                    .with_context(|| format!("starting {}", bin.display()))?;
                children.push((name.clone(), child));
            }
        }
    }
    let job_id = running.scheduler.submit(&f.spec)?;
    let job = loop {
        let job = running.store.job(job_id)?;
        if job.state.is_terminal() {
            break job;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let seconds = started.elapsed().as_secs_f64();
    let coordinator_peak_kb =
        peak_rss_kb(&std::fs::read_to_string("/proc/self/status").unwrap_or_default());
    let mut agent_peak_kb = Vec::new();
    for (name, mut child) in children {
        let status = tokio::time::timeout(Duration::from_secs(20), child.wait()).await;
        if status.is_err() {
            let _ = child.kill().await;
        }
        let log = std::fs::read_to_string(f.work.join("logs").join(format!("{name}.log")))
            .unwrap_or_default();
        let peak = log
            .lines()
            .filter_map(|l| l.split("peak_rss_kb=").nth(1))
            .filter_map(|v| v.split_whitespace().next()?.parse().ok())
            .max()
            .unwrap_or(0);
        agent_peak_kb.push((name, peak));
    }
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(20), t).await;
    }
    let rounds: Vec<RoundRecord> = running
        .store
        .rounds(job_id)?
        .into_iter()
        .filter(|r| r.state == RoundState::Completed)
        .collect();
    let mut models = Vec::new();
    for v in running.store.model_versions(Some(job_id))? {
        let Some(mv) = running.store.model_version(job_id, v.round)? else {
            continue;
        };
        let json = mv.model_json.unwrap_or_default();
        let model: ModelFile =
            serde_json::from_str(&json).with_context(|| format!("model of round {}", v.round))?;
        if model.compute_hash() != model.content_hash {
            bail!("model of round {} fails its content hash", v.round);
        }
        models.push((v.round, model));
    }
    running.stop().await;
    Ok(FederationRun {
        job_state: job.state,
        job_message: job.message,
        rounds,
        models,
        seconds,
        coordinator_peak_kb,
        agent_peak_kb,
    })
}

/// The `fedrisk-participant` binary next to this one, if it is there.
pub fn sibling_participant_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.join("fedrisk-participant");
    p.is_file().then_some(p)
}

//! A whole federation on this machine: a federation CA, the coordinator on loopback, one
//! participant agent per data file (in-process tasks or separate processes), all over real
//! gRPC with mutual TLS. `demo`, `simulate` and `bench` are built on it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use fedrisk_coordinator::server::{self, ServeOptions};
use fedrisk_coordinator::store::{JobState, RoundRecord, RoundState, Store};
use fedrisk_identity::client::{self as tls, ClientIdentity};
use fedrisk_identity::pki::{self, Role};
use fedrisk_models::ModelFile;
use fedrisk_participant::agent::{self, AgentConfig};
use fedrisk_proto::v1;
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
    pub coordinator: Coordinator,
}

/// How the coordinator runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Coordinator {
    /// In this process (its peak memory is then the whole process's).
    InProcess,
    /// `fedrisk-coordinator serve` as a process of its own, as an operator runs it; jobs go
    /// in over the operator API with a certificate of the operator role.
    Process(PathBuf),
}

pub struct FederationRun {
    pub job_state: JobState,
    pub job_message: String,
    pub rounds: Vec<RoundRecord>,
    /// Model of each training round, in order.
    pub models: Vec<(u32, ModelFile)>,
    pub seconds: f64,
    /// Peak resident memory of the coordinator, kB: its own process's, or this whole
    /// process's when it runs in-process.
    pub coordinator_peak_kb: u64,
    /// Peak resident memory of each agent process, kB (empty for in-process agents).
    pub agent_peak_kb: Vec<(String, u64)>,
    /// Every completed secure session of the job, in order, timed from its audit records.
    pub sessions: Vec<SessionTiming>,
}

/// One completed secure session: from its `session_started` audit record to its
/// `session_completed` one (millisecond clock).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SessionTiming {
    /// The round.
    pub round: u32,
    /// The round kind's label (`update`, `update_eval`, `evaluation`, `statistics`, ...).
    pub kind: String,
    /// Seconds from start to completion.
    pub seconds: f64,
}

/// The completed sessions of `job` in the audit trail: each completion paired with the
/// latest start of the same round and kind before it (a failed attempt's start is
/// superseded by its retry's).
fn session_timings(rows: &[fedrisk_coordinator::store::AuditRow], job: u64) -> Vec<SessionTiming> {
    let mut started: std::collections::HashMap<(u32, String), i64> = Default::default();
    let mut out = Vec::new();
    for row in rows {
        if row.kind != "session_started" && row.kind != "session_completed" {
            continue;
        }
        let Ok(body) = serde_json::from_str::<serde_json::Value>(&row.body) else {
            continue;
        };
        if body.get("job").and_then(|j| j.as_u64()) != Some(job) {
            continue;
        }
        let round = body.get("round").and_then(|r| r.as_u64()).unwrap_or(0) as u32;
        let kind = body
            .get("kind")
            .and_then(|k| k.as_str())
            .unwrap_or_default()
            .to_string();
        if row.kind == "session_started" {
            started.insert((round, kind), row.at_ms);
        } else if let Some(at) = started.remove(&(round, kind.clone())) {
            out.push(SessionTiming {
                round,
                kind,
                seconds: (row.at_ms - at) as f64 / 1e3,
            });
        }
    }
    out
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
    let ca_dir = f.work.join("ca");
    let ids_dir = f.work.join("identities");
    // Each run is a new federation: the CA, database and agents' ledgers of an earlier run
    // in this folder belong to another one.
    for dir in [&pki_dir, &ca_dir, &ids_dir] {
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
        }
    }
    for db in ["coordinator.db", "coordinator.db-wal", "coordinator.db-shm"] {
        let _ = std::fs::remove_file(f.work.join(db));
    }
    for (name, _) in &f.participants {
        let _ = std::fs::remove_file(f.work.join(format!("{name}.ledger.jsonl")));
    }
    match &f.coordinator {
        Coordinator::InProcess => run_in_process(&f, &pki_dir).await,
        Coordinator::Process(bin) => run_serve(&f, bin, &pki_dir, &ca_dir, &ids_dir).await,
    }
}

/// The coordinator as a server in this process, the CA in its folder.
async fn run_in_process(f: &Federation, pki_dir: &std::path::Path) -> Result<FederationRun> {
    pki::init(pki_dir, "fedrisk-local").context("creating the federation CA")?;
    for (name, _) in &f.participants {
        pki::issue(pki_dir, name, Role::Participant, 30)
            .with_context(|| format!("issuing a certificate for {name}"))?;
    }
    let running = server::start(ServeOptions {
        listen: "127.0.0.1:0".parse()?,
        pki_dir: pki_dir.to_owned(),
        database: f.work.join("coordinator.db"),
        federation_id: None,
        events: None,
        metrics: None,
    })
    .await?;
    let url = format!("https://127.0.0.1:{}", running.addr.port());
    let started = Instant::now();
    let agents = start_agents(f, &url, pki_dir)?;
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
    let agent_peak_kb = wait_for_agents(f, agents).await;
    let out = collect(
        &running.store,
        job,
        seconds,
        coordinator_peak_kb,
        agent_peak_kb,
    );
    running.stop().await;
    out
}

/// The coordinator as `bin serve`, with the layout `certs init --ca-dir` makes (`serve`
/// refuses a folder holding the CA's key or any key but its own): the CA in `ca_dir`, the
/// served folder `pki_dir`, and every identity's key and certificate, with `ca.pem`, in
/// `ids_dir`. The job goes in and is watched over the operator API.
async fn run_serve(
    f: &Federation,
    bin: &std::path::Path,
    pki_dir: &std::path::Path,
    ca_dir: &std::path::Path,
    ids_dir: &std::path::Path,
) -> Result<FederationRun> {
    pki::init_separate(ca_dir, pki_dir, &pki::InitOptions::new("fedrisk-local"))
        .context("creating the federation CA")?;
    let authority = pki::Authority::new(ca_dir, pki_dir);
    std::fs::create_dir_all(ids_dir).with_context(|| format!("creating {}", ids_dir.display()))?;
    std::fs::copy(pki_dir.join("ca.pem"), ids_dir.join("ca.pem"))
        .with_context(|| format!("copying ca.pem to {}", ids_dir.display()))?;
    for (name, _) in &f.participants {
        pki::issue_to(&authority, ids_dir, name, Role::Participant, 30)
            .with_context(|| format!("issuing a certificate for {name}"))?;
    }
    pki::issue_to(&authority, ids_dir, OPERATOR, Role::Operator, 30)
        .context("issuing the operator's certificate")?;
    let (mut server, url) = start_coordinator(bin, &f.work).await?;
    let started = Instant::now();
    let agents = start_agents(f, &url, ids_dir)?;
    let operator = ClientIdentity::from_dir(ids_dir, OPERATOR)?;
    let channel = tls::connect(&url, "localhost", &operator, tls::CONNECT_TIMEOUT).await?;
    let mut ops = fedrisk_proto::operator_client(channel);
    let job_id = ops
        .submit_job(v1::JobSpec {
            spec_json: f.spec.to_json(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("submitting the job: {}", s.message()))?
        .into_inner()
        .job_id;
    loop {
        let s = ops
            .get_status(v1::JobRef { job_id })
            .await
            .map_err(|s| anyhow::anyhow!("the job's status: {}", s.message()))?
            .into_inner();
        if matches!(
            v1::JobState::try_from(s.state),
            Ok(v1::JobState::Completed | v1::JobState::Failed | v1::JobState::Cancelled)
        ) {
            break;
        }
        if let Some(status) = server.try_wait()? {
            bail!(
                "the coordinator exited ({status}) during the job; see {}",
                f.work.join("logs").join("coordinator.log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let coordinator_peak_kb = server
        .id()
        .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .map_or(0, |s| peak_rss_kb(&s));
    let agent_peak_kb = wait_for_agents(f, agents).await;
    stop_coordinator(&mut server).await;
    let store = Store::open(&f.work.join("coordinator.db"))?;
    let job = store.job(job_id)?;
    collect(&store, job, seconds, coordinator_peak_kb, agent_peak_kb)
}

/// The operator identity the lab submits jobs with when the coordinator is a process.
const OPERATOR: &str = "lab-operator";

/// Starts `bin serve` on a free loopback port with the federation in `work`, and waits until
/// it accepts connections.
async fn start_coordinator(
    bin: &std::path::Path,
    work: &std::path::Path,
) -> Result<(tokio::process::Child, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let config = work.join("coordinator.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\npki_dir = \"pki\"\ndatabase = \"coordinator.db\"\n"
        ),
    )
    .with_context(|| format!("writing {}", config.display()))?;
    let logs = work.join("logs");
    std::fs::create_dir_all(&logs)?;
    let log_path = logs.join("coordinator.log");
    let log = std::fs::File::create(&log_path)?;
    let mut child = tokio::process::Command::new(bin)
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {} serve", bin.display()))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait()? {
            bail!(
                "the coordinator exited ({status}) before it listened; see {}",
                log_path.display()
            );
        }
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok((child, format!("https://127.0.0.1:{port}")));
        }
        if Instant::now() > deadline {
            bail!(
                "the coordinator did not listen on port {port} within 30 s; see {}",
                log_path.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Stops `serve` as an operator does (Ctrl-C, so it closes its database), or kills it after
/// 10 s.
async fn stop_coordinator(server: &mut tokio::process::Child) {
    if let Some(pid) = server.id().and_then(|p| i32::try_from(p).ok()) {
        // SAFETY: `kill` with a child's pid that is still ours (not yet waited for).
        unsafe {
            libc::kill(pid, libc::SIGINT);
        }
    }
    if tokio::time::timeout(Duration::from_secs(10), server.wait())
        .await
        .is_err()
    {
        let _ = server.kill().await;
    }
}

/// Agents started for a run: in-process tasks or processes.
struct Started {
    tasks: Vec<tokio::task::JoinHandle<Result<agent::JobOutcome, agent::AgentError>>>,
    children: Vec<(String, tokio::process::Child)>,
}

/// Starts one agent per institution; `ids_dir` holds `ca.pem` and each one's certificate
/// and key.
fn start_agents(f: &Federation, url: &str, ids_dir: &std::path::Path) -> Result<Started> {
    let mut started = Started {
        tasks: Vec::new(),
        children: Vec::new(),
    };
    for (name, csv) in &f.participants {
        match &f.agents {
            Agents::InProcess => {
                let cfg = AgentConfig {
                    url: url.to_owned(),
                    domain: "localhost".into(),
                    identity: ClientIdentity::from_dir(ids_dir, name)?,
                    data: fedrisk_models::DataSource::Csv(csv.clone()),
                    schema: None,
                    policy: ParticipantPolicy::default(),
                    keep_serving: false,
                    max_reconnects: 20,
                    ledger: Some(f.work.join(format!("{name}.ledger.jsonl"))),
                    limits: fedrisk_rounds::TaskLimits::default(),
                    key_list_window: agent::DEFAULT_KEY_LIST_WINDOW,
                };
                started.tasks.push(tokio::spawn(agent::run(cfg)));
            }
            Agents::Processes(bin) => {
                let logs = f.work.join("logs");
                std::fs::create_dir_all(&logs)?;
                let log = std::fs::File::create(logs.join(format!("{name}.log")))?;
                let child = tokio::process::Command::new(bin)
                    .arg("run")
                    .arg("--coordinator")
                    .arg(url)
                    .arg("--ca")
                    .arg(ids_dir.join("ca.pem"))
                    .arg("--cert")
                    .arg(ids_dir.join(format!("{name}.pem")))
                    .arg("--key")
                    .arg(ids_dir.join(format!("{name}.key")))
                    .arg("--data")
                    .arg(csv)
                    .arg("--report-peak-memory")
                    .stdout(log.try_clone()?)
                    .stderr(log)
                    .kill_on_drop(true)
                    .spawn()
                    .with_context(|| format!("starting {}", bin.display()))?;
                started.children.push((name.clone(), child));
            }
        }
    }
    Ok(started)
}

/// Waits for the agents to end and reads each process's peak memory from its log.
async fn wait_for_agents(f: &Federation, started: Started) -> Vec<(String, u64)> {
    let mut agent_peak_kb = Vec::new();
    for (name, mut child) in started.children {
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
    for t in started.tasks {
        let _ = tokio::time::timeout(Duration::from_secs(20), t).await;
    }
    agent_peak_kb
}

/// The run's rounds and models, from the coordinator's database.
fn collect(
    store: &Store,
    job: fedrisk_coordinator::store::JobRecord,
    seconds: f64,
    coordinator_peak_kb: u64,
    agent_peak_kb: Vec<(String, u64)>,
) -> Result<FederationRun> {
    let rounds: Vec<RoundRecord> = store
        .rounds(job.id)?
        .into_iter()
        .filter(|r| r.state == RoundState::Completed)
        .collect();
    let mut models = Vec::new();
    for v in store.model_versions(Some(job.id))? {
        let Some(mv) = store.model_version(job.id, v.round)? else {
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
    let sessions = session_timings(&store.audit_rows()?, job.id);
    Ok(FederationRun {
        job_state: job.state,
        job_message: job.message,
        rounds,
        models,
        seconds,
        coordinator_peak_kb,
        agent_peak_kb,
        sessions,
    })
}

/// The `fedrisk-participant` binary next to this one, if it is there.
pub fn sibling_participant_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.join("fedrisk-participant");
    p.is_file().then_some(p)
}

/// This binary, when it is `fedrisk-coordinator` (whose `serve` a run can start).
pub fn coordinator_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    (exe.file_name()? == "fedrisk-coordinator").then_some(exe)
}

//! The participant agent: connects to the coordinator with mutual TLS, receives tasks,
//! computes its contribution with `fedrisk-rounds` and takes part in each secure-aggregation
//! session with `fedrisk-secagg`. A thin driver: every task names what it needs, so a
//! restarted agent takes part in the next session with nothing cached.
//!
//! Architecture invariant: the only things this module sends are secagg protocol messages
//! (whose values are masked), the join request, refusals (a kind and a reason written for
//! the operator, never data values) and heartbeats. It logs sizes, never values.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fedrisk_identity::client::{self as tls, ClientIdentity, TlsRefusal};
use fedrisk_models::Schema;
use fedrisk_proto::v1::{self, task};
use fedrisk_proto::{PROTOCOL_VERSION, ParticipantClient};
use fedrisk_rounds::{LocalData, RoundError, Task, encode_parts, session_binding};
use fedrisk_secagg::channel::ChannelKey;
use fedrisk_secagg::{Message, ParticipantPolicy, ParticipantSession, Roster, SessionConfig};
use tonic::transport::Channel;
use tracing::{error, info, warn};

use crate::faults::{self, Fault};
use crate::ledger::{CONSTANTS, Entry, Ledger};
use crate::loader::SourceLoader;

pub struct AgentConfig {
    pub url: String,
    /// Name the coordinator's certificate must carry.
    pub domain: String,
    pub identity: ClientIdentity,
    /// Where the institution's rows are (CSV, Parquet or PostgreSQL).
    pub data: fedrisk_models::DataSource,
    pub schema: Option<Schema>,
    pub policy: ParticipantPolicy,
    /// Serve further jobs instead of exiting when a job ends.
    pub keep_serving: bool,
    /// Give up after this many failed connection attempts in a row (0: never).
    pub max_reconnects: u32,
    /// Where the agent records the survivor sets it signed (None: in memory only, for
    /// in-process simulations).
    pub ledger: Option<PathBuf>,
    /// The largest task this agent computes.
    pub limits: fedrisk_rounds::TaskLimits,
    /// Longest wait between advertising keys and a SecAgg+ key list (see
    /// [`key_list_in_time`]).
    pub key_list_window: Duration,
}

/// Default of [`AgentConfig::key_list_window`]: above the longest an honest coordinator
/// holds a SecAgg+ advertise stage open after its first advertisement (90 s, whatever the
/// job's deadlines), far below what a search of 2^40 redrawn rings needs.
pub const DEFAULT_KEY_LIST_WINDOW: Duration = Duration::from_secs(120);

/// Refuses a SecAgg+ key list that came more than `window` after this agent advertised its
/// keys. The ring order of a Harary graph is drawn from a hash of every advertised key, the
/// honest ones included, so a coordinator can only search for an order that puts colluders
/// around a victim (redrawing colluders' keys, or showing another subset of advertisers)
/// after the honest keys arrive and before it sends the list: bounding that time bounds the
/// search. The graph's privacy bound makes a breaking order a 2^-40 event; 2^40 tries of a
/// signature and a hash each in 120 s would need some hundred thousand cores.
pub fn key_list_in_time(
    graph: &fedrisk_secagg::GraphKind,
    waited: Duration,
    window: Duration,
) -> Result<(), String> {
    if matches!(graph, fedrisk_secagg::GraphKind::Complete) || waited <= window {
        return Ok(());
    }
    Err(format!(
        "the SecAgg+ key list came {:.0} s after this agent advertised its keys (limit {} s): a coordinator holding it back could search for a ring order that surrounds an institution with colluders; refusing",
        waited.as_secs_f64(),
        window.as_secs()
    ))
}

/// How the agent's work ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOutcome {
    pub job_id: u64,
    pub completed: bool,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Tls(#[from] tls::ClientTlsError),
    #[error(transparent)]
    TlsRefused(#[from] TlsRefusal),
    #[error("the coordinator refused this agent: {0}")]
    Refused(String),
    #[error("gave up after {0} failed connection attempts: {1}")]
    Unreachable(u32, String),
    #[error(transparent)]
    Ledger(#[from] crate::ledger::LedgerError),
}

/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(15);
/// A task stream that lived at least this long ended normally; a shorter one counts as a
/// failed attempt, so a stream that keeps ending at once backs off.
const HEALTHY_STREAM: Duration = Duration::from_secs(10);

struct Active {
    job_id: u64,
    round: u32,
    /// Each part of this institution's input for the ledger: the kind and round it is
    /// about and its fingerprint (see [`input_fingerprint`]).
    parts: Vec<(&'static str, u32, [u8; 32])>,
    /// The fingerprints of the job-constant counts the sum carries (see
    /// [`fedrisk_rounds::RoundKind::constants`]), each tied on its own.
    constants: Vec<[u8; 32]>,
    /// The identity key of each invited id, checked against the CA: the ledger records who
    /// a survivor set is, not the ids.
    identities: std::collections::BTreeMap<u32, String>,
    kind: &'static str,
    /// When this agent advertised its keys, and how long it waits for a SecAgg+ key list.
    advertised: Instant,
    key_list_window: Duration,
    /// The kind is asked once per job (see [`fedrisk_rounds::RoundKind::once_per_job`]).
    once_per_job: bool,
    session_id: Vec<u8>,
    config: SessionConfig,
    session: ParticipantSession,
    /// The encoded input (what the session committed to; kept for test faults).
    input: Vec<u64>,
    /// Each invited participant's certificate hash, as the task named it: what a later
    /// lineage record of this session names it by.
    certificates: std::collections::BTreeMap<u32, String>,
    /// The key list this session accepted (every entry's signature checked), until the
    /// caller hands it to the lineage to keep.
    accepted_key_list: Option<fedrisk_secagg::KeyList>,
}

type Data = LocalData<SourceLoader>;

pub async fn run(cfg: AgentConfig) -> Result<JobOutcome, AgentError> {
    let mut data = LocalData::new(
        SourceLoader {
            source: cfg.data.clone(),
        },
        cfg.schema.as_ref(),
    );
    let mut failures = 0u32;
    let mut backoff = Duration::from_millis(250);
    let fault = faults::from_env();
    let mut last_masked: Option<v1::SecAggUpload> = None;
    let mut ledger = match &cfg.ledger {
        Some(path) => Ledger::open(path)?,
        None => Ledger::in_memory(),
    };
    ledger.carry_crl_to(&crate::ledger::ca_domain(&cfg.identity.ca_pem))?;
    loop {
        let started = Instant::now();
        let reason = match connect_and_serve(
            &cfg,
            &mut data,
            &mut ledger,
            fault.as_ref(),
            &mut last_masked,
            &mut failures,
        )
        .await
        {
            Ok(Some(outcome)) => return Ok(outcome),
            Ok(None) if started.elapsed() >= HEALTHY_STREAM => {
                info!("task stream ended; reconnecting");
                backoff = Duration::from_millis(250);
                continue;
            }
            Ok(None) => "the task stream ended at once".to_string(),
            Err(Serve::Fatal(e)) => return Err(e),
            Err(Serve::Retry(reason)) => reason,
        };
        failures += 1;
        if cfg.max_reconnects > 0 && failures >= cfg.max_reconnects {
            return Err(AgentError::Unreachable(failures, reason));
        }
        warn!(%reason, retry_in_ms = backoff.as_millis() as u64, "not connected; reconnecting");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

enum Serve {
    Retry(String),
    Fatal(AgentError),
}

/// What to do with a failed call: refusals of the certificate stop the agent; anything
/// that can succeed later is retried.
fn classify(status: &tonic::Status) -> Serve {
    if let Some(r) = tls::tls_refusal(status) {
        return Serve::Fatal(r.into());
    }
    match status.code() {
        tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => {
            Serve::Fatal(AgentError::Refused(status.message().to_string()))
        }
        tonic::Code::FailedPrecondition => {
            Serve::Fatal(AgentError::Refused(status.message().to_string()))
        }
        _ => Serve::Retry(tls::describe_error(status)),
    }
}

async fn connect_and_serve(
    cfg: &AgentConfig,
    data: &mut Data,
    ledger: &mut Ledger,
    fault: Option<&Fault>,
    last_masked: &mut Option<v1::SecAggUpload>,
    failures: &mut u32,
) -> Result<Option<JobOutcome>, Serve> {
    let channel = tls::connect(&cfg.url, &cfg.domain, &cfg.identity, tls::CONNECT_TIMEOUT)
        .await
        .map_err(|e| match tls::tls_refusal(&e) {
            Some(r) => Serve::Fatal(r.into()),
            None => Serve::Retry(tls::describe_error(&e)),
        })?;
    let mut client = fedrisk_proto::participant_client(channel);
    let schema_hash = cfg.schema.as_ref().map(Schema::hash).unwrap_or_default();
    let join = client
        .join(v1::JoinRequest {
            protocol_version: PROTOCOL_VERSION,
            schema_hash,
            agent_version: env!("CARGO_PKG_VERSION").into(),
        })
        .await
        .map_err(|s| classify(&s))?
        .into_inner();
    let me = join.participant_id;
    let mut stream = client
        .tasks(v1::TaskStreamRequest { participant_id: me })
        .await
        .map_err(|s| match s.code() {
            tonic::Code::AlreadyExists => Serve::Retry(s.message().to_string()),
            _ => classify(&s),
        })?
        .into_inner();
    *failures = 0;
    info!(participant = me, name = %join.name, federation = %join.federation_id, "joined the federation");
    crate::metrics::set_connected(true);
    if let Some((count, bytes)) = faults::flood() {
        flood(&client, count, bytes).await;
    }
    let heartbeat = tokio::spawn(heartbeats(client.clone(), me));
    let signing = cfg
        .identity
        .signing_key()
        .map_err(|e| Serve::Fatal(e.into()))?;
    let mut active: Option<Active> = None;
    let mut contents = Contents::default();
    let mut lineage = crate::lineage::Lineage::default();
    // The channel key of the job in progress, kept for its sessions.
    let mut channel: Option<(u64, Arc<ChannelKey>)> = None;
    // A secagg message coming in parts (large key lists).
    let mut parts = crate::delivery::Reassembly::default();
    let result = loop {
        let task = match stream.message().await {
            Ok(Some(t)) => t,
            Ok(None) => break Ok(None),
            Err(s) if s.code() == tonic::Code::PermissionDenied => {
                warn!(
                    reason = s.message(),
                    "the coordinator closed this agent's stream"
                );
                break Err(Serve::Retry(s.message().to_string()));
            }
            Err(s) => break Err(Serve::Retry(tls::describe_error(&s))),
        };
        let Some(kind) = task.kind.clone() else {
            continue;
        };
        match kind {
            task::Kind::Certificates(c) => lineage.keep_certificates(&c.peers),
            task::Kind::Compute(c) => {
                active = None;
                parts = crate::delivery::Reassembly::default();
                crate::metrics::task_received(c.task.len());
                if let Some(d) = faults::delay() {
                    tokio::time::sleep(d).await;
                }
                if let Err(refusal) = fetch_contents(&mut client, &c.task, &mut contents).await {
                    refuse_session(&mut client, &task, &refusal).await;
                    continue;
                }
                let fetch_started = Instant::now();
                let peer_certificates =
                    match crate::lineage::peer_certificates(&mut client, &mut lineage, &c).await {
                        Ok(p) => p,
                        Err(e) => {
                            let refusal = Refusal::policy(e.to_string());
                            refuse_session(&mut client, &task, &refusal).await;
                            continue;
                        }
                    };
                let fetched =
                    match crate::lineage::fetch(&mut client, &mut lineage, task.job_id, &c).await {
                        Ok(f) => f,
                        Err(e) => {
                            let refusal = Refusal::policy(e.to_string());
                            refuse_session(&mut client, &task, &refusal).await;
                            continue;
                        }
                    };
                tracing::debug!(
                    round = task.round,
                    ms = fetch_started.elapsed().as_millis() as u64,
                    "lineage fetched"
                );
                let opened = tokio::task::block_in_place(|| {
                    open_session(
                        cfg,
                        data,
                        ledger,
                        &mut contents,
                        (&mut lineage, fetched),
                        &mut channel,
                        &peer_certificates,
                        &join.federation_id,
                        me,
                        &signing,
                        &task,
                        &c,
                    )
                });
                match opened {
                    Ok((a, adv)) => {
                        let up = upload(&a, Message::Advertise(adv));
                        if send(&mut client, up).await {
                            active = Some(a);
                        }
                    }
                    Err(refusal) => {
                        refuse_session(&mut client, &task, &refusal).await;
                    }
                }
            }
            task::Kind::Secagg(d) => {
                let Some(a) = active.as_mut() else { continue };
                crate::metrics::delivered(d.payload.len());
                if a.session_id != task.session_id
                    || a.job_id != task.job_id
                    || a.round != task.round
                {
                    warn!(
                        round = task.round,
                        "secagg message for another session ignored"
                    );
                    continue;
                }
                let of = crate::delivery::PartOf {
                    job_id: task.job_id,
                    round: task.round,
                    session_id: &task.session_id,
                    stage: d.stage,
                };
                let payload = match parts.push(of, &d.payload, d.more) {
                    Ok(Some(whole)) => whole,
                    Ok(None) => continue,
                    Err(e) => {
                        warn!(round = task.round, "{e}; the message is dropped");
                        continue;
                    }
                };
                // A stage's work grows with the vector: past a size where it could hold the
                // one runtime worker for long, it leaves the worker to the connection's driver
                // (heartbeats, pings), as opening a session does.
                let large = a.input.len() > INLINE_STEP_WORDS;
                let mut run = || step(a, &payload, &join.federation_id, ledger, fault);
                let stepped = if large {
                    tokio::task::block_in_place(run)
                } else {
                    run()
                };
                match stepped {
                    Ok(mut msg) => {
                        if let Some(k) = a.accepted_key_list.take() {
                            lineage.hold_key_list(&a.config, &k, &a.certificates);
                        }
                        faults::off_commitment(&mut msg, fault, a.round, a.kind);
                        let is_masked = matches!(msg, Message::MaskedInput(_));
                        let up = upload(a, msg);
                        if let Some(d) = faults::stage_delay() {
                            tokio::time::sleep(d).await;
                        }
                        if is_masked {
                            inject_before_masked(&mut client, a, fault, last_masked.as_ref()).await;
                            *last_masked = Some(up.clone());
                        }
                        if !send(&mut client, up).await {
                            active = None;
                        }
                    }
                    Err(e) => {
                        error!(round = task.round, error = %e, "secagg session refused; releasing nothing further");
                        let refusal = Refusal::policy(e);
                        refuse(&mut client, &task, &refusal).await;
                        crate::metrics::aborted();
                        active = None;
                    }
                }
            }
            task::Kind::Aborted(a) => {
                warn!(round = task.round, reason = %a.reason, "session aborted by the coordinator");
                crate::metrics::aborted();
                active = None;
            }
            task::Kind::Finished(f) => {
                // The job's channel key goes with the job (wiped on drop).
                if channel.as_ref().is_some_and(|(job, _)| *job == task.job_id) {
                    channel = None;
                }
                let completed = f.state == v1::JobState::Completed as i32;
                info!(job = task.job_id, completed, message = %f.message, "job finished");
                if !cfg.keep_serving {
                    break Ok(Some(JobOutcome {
                        job_id: task.job_id,
                        completed,
                        message: f.message,
                    }));
                }
            }
        }
    };
    heartbeat.abort();
    crate::metrics::set_connected(false);
    result
}

/// Why this agent does not take part in a session: what the operator is told, and what
/// stays in this agent's log.
struct Refusal {
    kind: v1::RefusalKind,
    /// Sent to the coordinator: written for the operator, never data values.
    reason: String,
    /// Logged here only: may name the file, line and column.
    detail: String,
}

impl Refusal {
    fn policy(reason: String) -> Self {
        Self {
            kind: v1::RefusalKind::Policy,
            detail: reason.clone(),
            reason,
        }
    }

    fn from_round(e: &RoundError) -> Self {
        let detail = e.to_string();
        let (kind, reason) = match e {
            RoundError::SchemaMismatch { .. } => (v1::RefusalKind::Schema, detail.clone()),
            RoundError::Data(_) => (
                v1::RefusalKind::Data,
                "this institution's data does not load under the job's schema; the agent's log names each problem".to_string(),
            ),
            RoundError::Fit(_) | RoundError::Result(_) => (
                v1::RefusalKind::Data,
                "the local computation failed on this institution's data; see the agent's log"
                    .to_string(),
            ),
            RoundError::Task(_) | RoundError::Schema(_) => (v1::RefusalKind::Task, detail.clone()),
        };
        Self {
            kind,
            reason,
            detail,
        }
    }
}

/// Checks the session the coordinator proposes, computes this institution's vector from
/// the task alone and opens the session with this agent's own view of what it is about.
#[allow(clippy::too_many_arguments)]
fn open_session(
    cfg: &AgentConfig,
    data: &mut Data,
    ledger: &mut Ledger,
    contents: &mut Contents,
    (lineage, fetched): (&mut crate::lineage::Lineage, crate::lineage::Fetched),
    channel: &mut Option<(u64, Arc<ChannelKey>)>,
    peer_certificates: &[(u32, String)],
    federation_id: &str,
    me: u32,
    signing: &ed25519_dalek::SigningKey,
    envelope: &v1::Task,
    compute: &v1::ComputeTask,
) -> Result<(Active, fedrisk_secagg::Advertise), Refusal> {
    let task = Task::decode_with(&compute.task, envelope.job_id, envelope.round, &|h| {
        contents.parts.get(h).cloned()
    })
    .map_err(|e| Refusal::from_round(&e))?;
    // The task's shape is the coordinator's choice: bound it before computing anything.
    task.check_limits(&cfg.limits)
        .map_err(|e| Refusal::from_round(&e))?;
    // The session's peers and the revocation list first: lineage records are checked
    // under the same list (a record counting a revoked certificate is refused), which must
    // be no older than the newest this agent has seen before any record is applied.
    let secagg = compute
        .secagg
        .as_ref()
        .ok_or_else(|| Refusal::policy("task without secagg parameters".into()))?;
    let config = SessionConfig::decode(&secagg.config)
        .map_err(|e| Refusal::policy(format!("session configuration: {e}")))?;
    check_fixed_point(&config, task.params.kind().clip())?;
    let peers: Vec<(u32, &[u8])> = peer_certificates
        .iter()
        .map(|(id, hash)| {
            lineage
                .certificate(hash)
                .map(|der| (*id, der))
                .ok_or_else(|| {
                    Refusal::policy(format!("participant {id}'s certificate was not kept"))
                })
        })
        .collect::<Result<_, _>>()?;
    let checked = tls::verify_session_peers_cached(
        &cfg.identity.ca_pem,
        &secagg.crl,
        &peers,
        &mut contents.peers,
    )
    .map_err(|e| Refusal::policy(format!("the session's peers: {e}")))?;
    // A revocation list's signature is checked only against the peers it is used for: with
    // none, a forged list's number would be kept for good and every genuine list after it
    // refused.
    if checked.keys.is_empty() {
        return Err(Refusal::policy("the session names no peers".into()));
    }
    ledger
        .allow_crl(
            &crate::ledger::ca_domain(&cfg.identity.ca_pem),
            checked.crl_number,
        )
        .map_err(|e| Refusal::policy(e.to_string()))?;
    // The task must be what the job's plan asks for after the job's verified sums.
    let check_started = Instant::now();
    lineage.adopt_checked_peers(&cfg.identity.ca_pem, &secagg.crl, &contents.peers);
    lineage
        .check(
            fetched,
            compute,
            federation_id,
            task.job_id,
            task.round,
            &fedrisk_rounds::task::binding(&compute.task),
            &cfg.identity.ca_pem,
            &secagg.crl,
            &cfg.policy,
        )
        .map_err(|e| Refusal::policy(e.to_string()))?;
    tracing::debug!(
        round = task.round,
        ms = check_started.elapsed().as_millis() as u64,
        "lineage checked"
    );
    if let Some(pre) = task.preprocessing_hash() {
        ledger
            .allow_preprocessing(federation_id, task.job_id, task.round, &pre)
            .map_err(|e| Refusal::policy(e.to_string()))?;
    }
    data.check_schema(&task.job.schema)
        .map_err(|e| Refusal::from_round(&e))?;
    let identities = checked
        .keys
        .iter()
        .map(|(id, k)| (*id, hex::encode(k.to_bytes())))
        .collect();
    let keys = checked.keys;
    let parts = task
        .params
        .kind()
        .contribute(&task.job, task.round, data)
        .map_err(|e| Refusal::from_round(&e))?;
    let constants = task
        .params
        .kind()
        .constants(&task.job, data)
        .map_err(|e| Refusal::from_round(&e))?
        .iter()
        .map(|c| constants_fingerprint(c))
        .collect();
    let fixed = config.params.fixed_point;
    // All rows against the limit, whatever part a task weighs: a part's count depends on
    // the job's validation share, which the coordinator could vary job by job to narrow
    // down a large institution's row count from its refusals.
    let all_rows = {
        let split = fedrisk_rounds::local::Rows::split(data, &task.job)
            .map_err(|e| Refusal::from_round(&e))?;
        split.train.rows() + split.held_out.as_ref().map_or(0, |d| d.rows())
    };
    if all_rows as u64 > fixed.max_weight() {
        return Err(Refusal::policy(format!(
            "this institution's row count exceeds the protocol's weight limit of {}",
            fixed.max_weight()
        )));
    }
    for part in &parts {
        let c = &part.contribution;
        if c.weight > fixed.max_weight() {
            return Err(Refusal::policy(format!(
                "this institution's row count exceeds the session's weight limit of {}",
                fixed.max_weight()
            )));
        }
        if c.max_abs() > fixed.clip {
            warn!(
                round = task.round,
                part = part.label,
                clip = fixed.clip,
                "contribution values exceed the clip bound and are clipped"
            );
        }
    }
    let input =
        encode_parts(&parts, &fixed).map_err(|e| Refusal::policy(format!("encoding: {e}")))?;
    if input.len() != config.params.words() {
        return Err(Refusal::policy(format!(
            "the task's input has {} words, the session's configuration {}",
            input.len(),
            config.params.words()
        )));
    }
    let binding = session_binding(
        federation_id,
        task.round,
        fedrisk_rounds::task::binding(&compute.task),
    );
    let mut rng = rand::rng();
    // One channel key for the job's sessions: a pair's agreement is then made once per
    // job (see fedrisk_secagg::channel); another job gets a fresh key.
    let key = match channel {
        Some((job, key)) if *job == envelope.job_id => key.clone(),
        _ => {
            let key = Arc::new(ChannelKey::generate(&mut rng));
            *channel = Some((envelope.job_id, key.clone()));
            key
        }
    };
    let (session, adv) = ParticipantSession::with_channel(
        config.clone(),
        &binding,
        me,
        signing.clone(),
        Roster::new(keys),
        &cfg.policy,
        &input,
        Some(key),
        &mut rng,
    )
    .map_err(|e| Refusal::policy(e.to_string()))?;
    info!(
        round = task.round,
        session = task.params.kind().label(),
        words = input.len(),
        participants = config.params.participants.len(),
        "session opened"
    );
    Ok((
        Active {
            job_id: envelope.job_id,
            round: envelope.round,
            parts: parts
                .iter()
                .map(|p| (p.label, p.round, input_fingerprint(&p.contribution)))
                .collect(),
            constants,
            identities,
            kind: task.params.kind().label(),
            advertised: Instant::now(),
            key_list_window: cfg.key_list_window,
            once_per_job: task.params.kind().once_per_job(),
            session_id: envelope.session_id.clone(),
            config,
            session,
            input,
            certificates: peer_certificates.iter().cloned().collect(),
            accepted_key_list: None,
        },
        adv,
    ))
}

/// A survivor set as the sorted identity keys of its members: ids are the coordinator's
/// to choose, so the same ids may name other institutions in another session.
fn survivor_identities(
    identities: &std::collections::BTreeMap<u32, String>,
    ids: &[u32],
) -> Result<Vec<String>, String> {
    let mut out = ids
        .iter()
        .map(|id| {
            identities
                .get(id)
                .cloned()
                .ok_or_else(|| format!("survivor {id} is not an invited peer"))
        })
        .collect::<Result<Vec<String>, String>>()?;
    out.sort();
    Ok(out)
}

/// What the ledger knows an input by: SHA-256 of its weight and real values, exactly. Not
/// the task's bytes (a coordinator could vary a job id, a round number or a setting the
/// computation ignores to get the same input again under a new name) and not its
/// fixed-point encoding (which changes with the number invited): any task that makes this
/// institution send the same figures again meets the same ledger entry.
fn input_fingerprint(c: &fedrisk_models::federated::Contribution) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"fedrisk/input/v1\0");
    h.update(c.weight.to_le_bytes());
    h.update((c.values.len() as u64).to_le_bytes());
    for v in &c.values {
        h.update(v.to_bits().to_le_bytes());
    }
    h.finalize().into()
}

/// Refuses a session whose fixed-point encoding is not the one the protocol derives from
/// the number invited and the task's clip bound. The encoding's weight limit decides
/// whether this institution's row count fits, so a coordinator free to set it could ask
/// "more than 2^b rows?" again and again, refusal by refusal, before any sum.
fn check_fixed_point(config: &fedrisk_secagg::SessionConfig, clip: f64) -> Result<(), Refusal> {
    let want = fedrisk_rounds::fixed::fixed_point_for(config.params.participants.len(), clip);
    if config.params.fixed_point != want {
        return Err(Refusal::policy(format!(
            "the session's fixed-point encoding ({} fractional bits, clip {}, weights up to 2^{}) is not the protocol's for {} participants ({} bits, clip {}, 2^{})",
            config.params.fixed_point.frac_bits,
            config.params.fixed_point.clip,
            config.params.fixed_point.max_weight_bits,
            config.params.participants.len(),
            want.frac_bits,
            want.clip,
            want.max_weight_bits
        )));
    }
    Ok(())
}

/// What the ledger knows job-constant counts by: SHA-256 of the counts, exactly (in the
/// local ledger only; never sent).
fn constants_fingerprint(counts: &[u64]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"fedrisk/constants/v1\0");
    for c in counts {
        h.update(c.to_le_bytes());
    }
    h.finalize().into()
}

/// Job-wide task contents this agent has fetched, by hash (a cache: a restarted agent
/// fetches again).
#[derive(Default)]
struct Contents {
    parts: std::collections::HashMap<String, Vec<u8>>,
    /// Peer certificates checked in this connection's earlier sessions.
    peers: tls::PeerCache,
}

/// At most this many contents are kept (a job uses two).
const MAX_CONTENTS: usize = 16;

/// Fetches the contents a task refers to that this agent does not hold, checking each
/// against its hash.
async fn fetch_contents(
    client: &mut ParticipantClient<Channel>,
    task: &[u8],
    contents: &mut Contents,
) -> Result<(), Refusal> {
    let refs = Task::references(task).map_err(|e| Refusal::from_round(&e))?;
    for hash in refs {
        if contents.parts.contains_key(&hash) {
            continue;
        }
        let got = client
            .fetch_content(v1::ContentRequest {
                sha256: hash.clone(),
                compact: false,
            })
            .await
            .map_err(|s| Refusal::policy(format!("fetching task content: {}", s.message())))?
            .into_inner()
            .content;
        if fedrisk_rounds::task::content_hash(&got) != hash {
            return Err(Refusal::policy(
                "the coordinator sent task content that does not match its hash".into(),
            ));
        }
        if contents.parts.len() >= MAX_CONTENTS {
            contents.parts.clear();
        }
        crate::metrics::content_received(got.len());
        contents.parts.insert(hash, got.to_vec());
    }
    Ok(())
}

/// The flooding test fault: `count` uploads of `bytes` at once; logs how they were answered.
async fn flood(client: &ParticipantClient<Channel>, count: usize, bytes: usize) {
    warn!(
        count,
        bytes, "test fault: flooding the coordinator with large uploads"
    );
    let started = Instant::now();
    let mut sends = tokio::task::JoinSet::new();
    for _ in 0..count {
        let mut client = client.clone();
        sends.spawn(async move {
            client
                .send_sec_agg(v1::SecAggUpload {
                    payload: vec![0x5a; bytes].into(),
                    ..v1::SecAggUpload::default()
                })
                .await
                .is_err()
        });
    }
    let refused = sends.join_all().await.into_iter().filter(|r| *r).count();
    warn!(
        count,
        refused,
        seconds = started.elapsed().as_secs_f64(),
        "test fault: flood answered"
    );
}

/// Says in this agent's log why it sits the session out, then tells the coordinator.
async fn refuse_session(client: &mut ParticipantClient<Channel>, task: &v1::Task, r: &Refusal) {
    error!(round = task.round, kind = ?r.kind, reason = %r.detail, "refusing the session");
    refuse(client, task, r).await;
}

/// Tells the coordinator why this agent sits a session out.
async fn refuse(client: &mut ParticipantClient<Channel>, task: &v1::Task, r: &Refusal) {
    crate::metrics::refused(r.kind);
    let sent = client
        .refuse(v1::Refusal {
            job_id: task.job_id,
            round: task.round,
            session_id: task.session_id.clone(),
            kind: r.kind as i32,
            reason: r.reason.clone(),
        })
        .await;
    if let Err(s) = sent {
        warn!(reason = s.message(), "could not tell the coordinator why");
    }
}

/// Feeds one delivered message to the session and returns the reply to send.
fn step(
    a: &mut Active,
    payload: &[u8],
    federation: &str,
    ledger: &mut Ledger,
    fault: Option<&Fault>,
) -> Result<Message, String> {
    let msg = Message::decode_for(payload, &a.config).map_err(|e| e.to_string())?;
    if let Message::KeyList(_) = &msg {
        key_list_in_time(
            &a.config.params.graph,
            a.advertised.elapsed(),
            a.key_list_window,
        )?;
    }
    if let Message::SurvivorList(list) = &msg {
        // The signature on U3 is what lets the coordinator unmask a sum over U3: record
        // the set first (as identities), and let an input be summed only over one set.
        // The job-constant counts the sum carries get the same rule on their own: every
        // sum carrying them is over one set. Only a list this session would sign is
        // recorded: a list it refuses (one leaving this agent out, say) would otherwise tie
        // its input to a set that never summed it, and bar every later sum of it.
        a.session.check_survivors(list).map_err(|e| e.to_string())?;
        let survivors = survivor_identities(&a.identities, &list.survivors)?;
        let entries = ledger_entries(
            federation,
            (a.job_id, a.round, a.kind, a.once_per_job),
            &a.parts,
            &a.constants,
            &survivors,
        );
        ledger.allow_all(&entries).map_err(|e| e.to_string())?;
    }
    let hang = |what: &str| fault.is_some_and(|f| f.hits(what, a.round, a.kind));
    let point = match msg {
        Message::KeyList(_) => "hang-before-share-keys",
        Message::ShareBundle(_) => "hang-before-masked-input",
        Message::UnmaskRequest(_) => "hang-before-unmask",
        _ => "",
    };
    if hang(point) {
        faults::hang_forever();
    }
    let mut rng = rand::rng();
    let reply = a
        .session
        .handle(&msg, &mut rng)
        .map_err(|e| e.to_string())?;
    if let Message::KeyList(k) = msg {
        a.accepted_key_list = Some(k);
    }
    Ok(reply)
}

/// What the ledger records when this agent signs `survivors` for a session of
/// `(job, round, kind, once per job)`: each part of its input under its own kind and round
/// (an update that rode with an evaluation is the same input as the update asked for
/// alone), and the job-constant counts the sum carries under the session's.
fn ledger_entries(
    federation: &str,
    (job, round, kind, once_per_job): (u64, u32, &str, bool),
    parts: &[(&'static str, u32, [u8; 32])],
    constants: &[[u8; 32]],
    survivors: &[String],
) -> Vec<Entry> {
    let entry = |kind: &str, round: u32, input: String| Entry {
        federation: federation.to_string(),
        job,
        round,
        kind: kind.to_string(),
        input,
        survivors: survivors.to_vec(),
        once_per_job,
    };
    let mut entries: Vec<Entry> = parts
        .iter()
        .map(|(kind, round, fp)| entry(kind, *round, hex::encode(fp)))
        .collect();
    for c in constants {
        entries.push(entry(kind, round, format!("{CONSTANTS}{}", hex::encode(c))));
    }
    entries
}

fn upload(a: &Active, msg: Message) -> v1::SecAggUpload {
    v1::SecAggUpload {
        job_id: a.job_id,
        round: a.round,
        session_id: a.session_id.clone(),
        stage: msg.stage().wire_number(),
        payload: msg.encode().into(),
    }
}

/// Sends one upload; logs its size (never its content). False if the coordinator refused it.
async fn send(client: &mut ParticipantClient<Channel>, up: v1::SecAggUpload) -> bool {
    let stage = v1::SecAggStage::try_from(up.stage).map_or("unknown", |s| s.as_str_name());
    let bytes = up.payload.len();
    let round = up.round;
    let wire_stage = up.stage;
    match client.send_sec_agg(up).await {
        Ok(_) => {
            crate::metrics::sent(wire_stage, bytes);
            info!(round, stage, bytes, "sent");
            true
        }
        Err(s) => {
            warn!(round, stage, bytes, code = ?s.code(), reason = %tls::describe_error(&s), "upload rejected");
            false
        }
    }
}

/// Test faults that send a bad message before the real masked input.
async fn inject_before_masked(
    client: &mut ParticipantClient<Channel>,
    a: &Active,
    fault: Option<&Fault>,
    last: Option<&v1::SecAggUpload>,
) {
    let Some(f) =
        fault.filter(|f| f.round == a.round && f.kind.as_deref().is_none_or(|k| k == a.kind))
    else {
        return;
    };
    match f.what.as_str() {
        "wrong-length" => {
            let mut input = a.input.clone();
            input.pop();
            let payload = Message::MaskedInput(fedrisk_secagg::MaskedInput {
                session_id: a.config.session_id,
                from: a.session.id(),
                vector: input,
            })
            .encode();
            let bad = v1::SecAggUpload {
                job_id: a.job_id,
                round: a.round,
                session_id: a.session_id.clone(),
                stage: v1::SecAggStage::MaskedInput as i32,
                payload: payload.into(),
            };
            warn!("test fault: sending a wrong-length masked input");
            send(client, bad).await;
        }
        "replay" => {
            if let Some(old) = last {
                warn!(
                    old_round = old.round,
                    "test fault: replaying an earlier round's masked input"
                );
                send(client, old.clone()).await;
            }
        }
        _ => {}
    }
}

/// Input words up to which a secure-aggregation stage runs inline on the runtime's worker:
/// at this size the largest stage (masking with every neighbour) takes a few tens of
/// milliseconds; a larger vector's stages leave the worker to the connection's driver.
const INLINE_STEP_WORDS: usize = 1 << 16;

async fn heartbeats(mut client: ParticipantClient<Channel>, me: u32) {
    loop {
        tokio::time::sleep(Duration::from_secs(10)).await;
        if let Err(s) = client
            .heartbeat(v1::HeartbeatRequest {
                participant_id: me,
                ..Default::default()
            })
            .await
        {
            warn!(reason = s.message(), "heartbeat failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attack_a_key_list_held_back_to_grind_a_secagg_plus_ring_is_refused() {
        // The coordinator keeps the key list while it redraws colluders' keys looking for a
        // ring order that surrounds a victim: past the window the agent refuses the list.
        let ring = fedrisk_secagg::GraphKind::Harary {
            degree: 40,
            share_threshold: 28,
        };
        let window = DEFAULT_KEY_LIST_WINDOW;
        let held = window + Duration::from_secs(1);
        let e = key_list_in_time(&ring, held, window).unwrap_err();
        assert!(e.contains("ring order") && e.contains("120 s"), "{e}");
        // An honest coordinator's list, sent when the advertise stage closes, is in time.
        key_list_in_time(&ring, Duration::from_secs(20), window).expect("in time");
        // The complete graph has no ring to search: no limit.
        key_list_in_time(&fedrisk_secagg::GraphKind::Complete, held, window)
            .expect("complete graph");
    }
    use crate::ledger::{Entry, Ledger};

    #[test]
    fn attack_renumbered_ids_do_not_reuse_a_survivor_set() {
        // Session 1: ids 1..4 are A, B, C, D. Session 2 of the same input: the coordinator
        // gives id 4 to its colluder E. The ids are the same; the institutions are not, and
        // S1 - S2 + x_E would be D's input.
        let ids = [1, 2, 3, 4];
        let first: std::collections::BTreeMap<u32, String> =
            [(1, "a"), (2, "b"), (3, "c"), (4, "d")]
                .into_iter()
                .map(|(i, k)| (i, k.repeat(64)))
                .collect();
        let mut second = first.clone();
        second.insert(4, "e".repeat(64));
        let entry = |survivors| Entry {
            federation: "fed".into(),
            job: 1,
            round: 1,
            kind: "update".into(),
            input: "ab".repeat(32),
            survivors,
            once_per_job: false,
        };
        let mut ledger = Ledger::in_memory();
        ledger
            .allow(&entry(survivor_identities(&first, &ids).expect("ids")))
            .expect("first session");
        assert!(
            ledger
                .allow(&entry(survivor_identities(&second, &ids).expect("ids")))
                .is_err(),
            "the same ids naming another institution were taken for the same set"
        );
        // An id the session did not invite is refused outright.
        assert!(survivor_identities(&first, &[1, 2, 9]).is_err());
    }

    /// One generated institution's rows behind the agent's real loader, with its schema,
    /// file and the default job context (`seed` and `institutions` as in `SynthConfig`).
    fn one_institution(
        seed: u64,
        institutions: usize,
    ) -> (
        tempfile::TempDir,
        fedrisk_models::Schema,
        std::path::PathBuf,
        LocalData<SourceLoader>,
        fedrisk_rounds::JobContext,
    ) {
        use fedrisk_models::synth::{SynthConfig, generate};
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = SynthConfig::demo(seed, 2000, 10);
        cfg.institutions.truncate(institutions);
        generate(&cfg).write_dir(dir.path()).expect("data");
        let schema = fedrisk_models::Schema::load(&dir.path().join("schema.json")).expect("schema");
        let name = std::fs::read_dir(dir.path().join("participants"))
            .expect("participants")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .next()
            .expect("a file");
        let data = LocalData::new(
            SourceLoader {
                source: fedrisk_models::DataSource::Csv(name.clone()),
            },
            None,
        );
        let spec = fedrisk_rounds::JobSpec::new("fed", schema.clone());
        let job = fedrisk_rounds::JobContext {
            schema: schema.clone(),
            settings: spec.settings.clone(),
        };
        (dir, schema, name, data, job)
    }

    #[test]
    fn attack_an_equivalent_statistics_task_over_fewer_survivors_is_refused() {
        // The coordinator asks for the statistics again with every scale doubled: a new
        // input (its values are halved) but the same row and default counts, over a set
        // without institution 4. The counts' ledger entry refuses it, through the real
        // kinds, fingerprints and ledger.
        use fedrisk_rounds::RoundKind;
        use fedrisk_rounds::kinds::Statistics;
        let (_dir, schema, _name, mut data, job) = one_institution(3, 3);
        let numeric = fedrisk_models::federated::magnitude_len(&schema)
            / (fedrisk_models::federated::MAX_OCTAVE - fedrisk_models::federated::MIN_OCTAVE + 1)
                as usize;
        let plain = Statistics {
            scales: vec![1.0; numeric],
        };
        let doubled = Statistics {
            scales: vec![2.0; numeric],
        };
        let fingerprints = |k: &Statistics, data: &mut LocalData<SourceLoader>| {
            let parts = k.contribute(&job, 0, data).expect("contribution");
            let c = &parts[0].contribution;
            let counts = k.constants(&job, data).expect("counts");
            (input_fingerprint(c), constants_fingerprint(&counts[0]))
        };
        let (input_a, counts_a) = fingerprints(&plain, &mut data);
        let (input_b, counts_b) = fingerprints(&doubled, &mut data);
        assert_ne!(
            input_a, input_b,
            "a new input as far as the input rule goes"
        );
        assert_eq!(counts_a, counts_b, "the same counts");
        let entries = |input: [u8; 32], counts: [u8; 32], survivors: &[&str]| {
            let entry = |input: String| Entry {
                federation: "fed".into(),
                job: 1,
                round: 0,
                kind: "statistics".into(),
                input,
                survivors: survivors.iter().map(|s| s.repeat(64)).collect(),
                once_per_job: true,
            };
            vec![
                entry(hex::encode(input)),
                entry(format!("{CONSTANTS}{}", hex::encode(counts))),
            ]
        };
        let mut ledger = Ledger::in_memory();
        ledger
            .allow_all(&entries(input_a, counts_a, &["a", "b", "c", "d"]))
            .expect("the statistics session");
        assert!(
            ledger
                .allow_all(&entries(input_b, counts_b, &["a", "b", "c"]))
                .is_err(),
            "the doubled-scale statistics were summed over a set without institution 4"
        );
    }

    #[test]
    fn an_input_is_known_by_its_values_not_by_the_task_that_asked() {
        use fedrisk_models::federated::Contribution;
        let c = Contribution {
            weight: 120,
            values: vec![0.5, -1.25, 3.0],
        };
        let same = c.clone();
        let mut other = c.clone();
        other.values[2] = 3.0000000001;
        assert_eq!(input_fingerprint(&c), input_fingerprint(&same));
        assert_ne!(input_fingerprint(&c), input_fingerprint(&other));
        let reweighted = Contribution {
            weight: 121,
            ..c.clone()
        };
        assert_ne!(input_fingerprint(&c), input_fingerprint(&reweighted));
    }

    #[test]
    fn attack_an_update_that_rode_with_an_evaluation_is_not_summed_again_over_fewer() {
        // The coordinator unmasks round 2's update with round 1's evaluation over A, B, C,
        // D, claims the session failed, and asks for round 2's update alone over A, B, C:
        // the difference would be D's update. Through the real kinds, fingerprints, ledger
        // entries and ledger, D refuses; over the same set it may answer again.
        use fedrisk_rounds::kinds::{Evaluation, Update, UpdateEval};
        use fedrisk_rounds::{GlobalModel, RoundKind};
        let (_dir, schema, name, mut data, job) = one_institution(5, 2);
        let rows = fedrisk_models::load_csv(&name, &schema, fedrisk_models::LabelMode::Required)
            .expect("rows");
        let stats = fedrisk_models::FeatureStats::from_dataset(&schema, &rows);
        let pre = fedrisk_models::Preprocessor::fit(&schema, &stats, Default::default());
        let mut theta = vec![0.0; pre.width() + 1];
        theta[0] = 0.3;
        let model = GlobalModel {
            preprocessor: pre,
            theta,
        };
        let record = |k: &dyn RoundKind, data: &mut LocalData<SourceLoader>| {
            k.contribute(&job, 2, data)
                .expect("contribution")
                .iter()
                .map(|p| (p.label, p.round, input_fingerprint(&p.contribution)))
                .collect::<Vec<_>>()
        };
        let riding = record(
            &UpdateEval {
                model: model.clone(),
                bins: 50,
            },
            &mut data,
        );
        let alone = record(
            &Update {
                model: model.clone(),
            },
            &mut data,
        );
        assert_eq!(riding.len(), 2);
        assert_eq!(riding[0], alone[0], "the update part is the update alone");
        assert_eq!(
            (riding[1].0, riding[1].1),
            ("evaluation", 1),
            "the evaluation is known by the round of the model it scores"
        );
        let four: Vec<String> = ["a", "b", "c", "d"].iter().map(|k| k.repeat(64)).collect();
        let three = four[..3].to_vec();
        let mut ledger = Ledger::in_memory();
        ledger
            .allow_all(&ledger_entries(
                "fed",
                (1, 2, "update_eval", false),
                &riding,
                &[],
                &four,
            ))
            .expect("first signature");
        let e = ledger
            .allow_all(&ledger_entries(
                "fed",
                (1, 2, "update", false),
                &alone,
                &[],
                &three,
            ))
            .unwrap_err();
        assert!(
            matches!(e, crate::ledger::LedgerError::OtherSurvivors { .. }),
            "{e}"
        );
        ledger
            .allow_all(&ledger_entries(
                "fed",
                (1, 2, "update", false),
                &alone,
                &[],
                &four,
            ))
            .expect("the same set again");
        // Nor can round 1's model be evaluated on its own over the smaller set.
        let evaluated = Evaluation { model, bins: 50 }
            .contribute(&job, 1, &mut data)
            .expect("evaluation")
            .iter()
            .map(|p| (p.label, p.round, input_fingerprint(&p.contribution)))
            .collect::<Vec<_>>();
        assert_eq!(evaluated[0], riding[1]);
        assert!(
            ledger
                .allow_all(&ledger_entries(
                    "fed",
                    (1, 1, "evaluation", false),
                    &evaluated,
                    &[],
                    &three,
                ))
                .is_err()
        );
    }

    /// The ledger entries one institution's session of `kind` makes over `survivors`,
    /// through the real kind, fingerprints and entry builder.
    fn entries_of(
        kind: &dyn fedrisk_rounds::RoundKind,
        job: &fedrisk_rounds::JobContext,
        (job_id, round): (u64, u32),
        data: &mut LocalData<SourceLoader>,
        survivors: &[String],
    ) -> Vec<Entry> {
        let parts: Vec<_> = kind
            .contribute(job, round, data)
            .expect("contribution")
            .iter()
            .map(|p| (p.label, p.round, input_fingerprint(&p.contribution)))
            .collect();
        let constants: Vec<_> = kind
            .constants(job, data)
            .expect("constants")
            .iter()
            .map(|c| constants_fingerprint(c))
            .collect();
        ledger_entries(
            "fed",
            (job_id, round, kind.label(), kind.once_per_job()),
            &parts,
            &constants,
            survivors,
        )
    }

    fn sets() -> (Vec<String>, Vec<String>) {
        let four: Vec<String> = ["a", "b", "c", "d"].iter().map(|k| k.repeat(64)).collect();
        let three = four[..3].to_vec();
        (four, three)
    }

    /// Statistics under unit scales and the job's preprocessing fitted on this institution
    /// alone (the tests need a valid model, not the federation's).
    fn statistics_and_flat_model(
        schema: &fedrisk_models::Schema,
        name: &std::path::Path,
    ) -> (
        fedrisk_rounds::kinds::Statistics,
        fedrisk_rounds::GlobalModel,
    ) {
        let numeric = fedrisk_models::federated::magnitude_len(schema)
            / (fedrisk_models::federated::MAX_OCTAVE - fedrisk_models::federated::MIN_OCTAVE + 1)
                as usize;
        let rows = fedrisk_models::load_csv(name, schema, fedrisk_models::LabelMode::Required)
            .expect("rows");
        let stats = fedrisk_models::FeatureStats::from_dataset(schema, &rows);
        let pre = fedrisk_models::Preprocessor::fit(schema, &stats, Default::default());
        let theta = vec![0.0; pre.width() + 1];
        (
            fedrisk_rounds::kinds::Statistics {
                scales: vec![1.0; numeric],
            },
            fedrisk_rounds::GlobalModel {
                preprocessor: pre,
                theta,
            },
        )
    }

    #[test]
    fn attack_round_one_at_zero_coefficients_over_fewer_than_the_statistics_is_refused() {
        // Round 1's Newton update at zero coefficients carries the training rows (4 x the
        // intercept's Hessian entry) and defaults (rows / 2 - its gradient). After the
        // statistics over A, B, C, D, a round 1 over A, B, C would give D's counts: D
        // refuses it. The same round 1 over A, B, C, D is allowed.
        use fedrisk_rounds::RoundKind;
        use fedrisk_rounds::kinds::Update;
        let (_dir, schema, name, mut data, job) = one_institution(6, 2);
        let (stats, model) = statistics_and_flat_model(&schema, &name);
        let update = Update { model };
        // The counts really are in the update's figures.
        let parts = update.contribute(&job, 1, &mut data).expect("update");
        let c = &parts[0].contribution;
        let k = update.model.theta.len();
        let curvature =
            fedrisk_models::federated::newton_from_sum(&c.values, k).expect("Newton sums");
        let counts = update.constants(&job, &mut data).expect("counts");
        let rows = counts[0][0] as f64;
        let defaults = rows / 2.0 - curvature.grad[k - 1];
        assert!((4.0 * curvature.hess[[k - 1, k - 1]] - rows).abs() < 1e-6);
        assert!(
            counts[1]
                .iter()
                .any(|d| (*d as f64 - defaults).abs() < 1e-6),
            "the defaults read from the update are among the named counts"
        );

        let (four, _) = sets();
        let mut ledger = Ledger::in_memory();
        ledger
            .allow_all(&entries_of(&stats, &job, (1, 0), &mut data, &four))
            .expect("the statistics session");
        counts_refused_over_three_allowed_over_four(&mut ledger, &update, &job, (1, 1), &mut data);
    }

    /// `kind`'s session `(job, round)` over A, B, C is refused for the counts it carries,
    /// and allowed over A, B, C, D.
    fn counts_refused_over_three_allowed_over_four(
        ledger: &mut Ledger,
        kind: &dyn fedrisk_rounds::RoundKind,
        job: &fedrisk_rounds::JobContext,
        at: (u64, u32),
        data: &mut LocalData<SourceLoader>,
    ) {
        let (four, three) = sets();
        let e = ledger
            .allow_all(&entries_of(kind, job, at, data, &three))
            .unwrap_err();
        assert!(
            matches!(
                e,
                crate::ledger::LedgerError::ConstantsOtherSurvivors { .. }
            ),
            "{e}"
        );
        ledger
            .allow_all(&entries_of(kind, job, at, data, &four))
            .expect("the same session over the statistics set");
    }

    #[test]
    fn attack_counts_of_two_jobs_split_differently_are_refused_over_another_set() {
        // Job 1 holds out 20% of the rows: its statistics carry the training counts and
        // its evaluations the held-out counts, both over A, B, C, D. Job 2 holds out 30%:
        // its counts are other figures, but its training plus held-out counts over A, B, C
        // would, subtracted from job 1's, give D's counts of all rows. D refuses job 2's
        // statistics over A, B, C; over A, B, C, D they are allowed.
        use fedrisk_rounds::kinds::Evaluation;
        let (_dir, schema, name, mut data, job) = one_institution(7, 2);
        let (stats, model) = statistics_and_flat_model(&schema, &name);
        let mut job1 = job.clone();
        job1.settings.validation_fraction = 0.2;
        let mut job2 = job;
        job2.settings.validation_fraction = 0.3;
        let (four, three) = sets();
        let mut ledger = Ledger::in_memory();
        let evaluation = Evaluation { model, bins: 20 };
        // The magnitudes are taken over all rows: the same input in both jobs, tied as one.
        let magnitudes = fedrisk_rounds::kinds::Magnitudes {};
        ledger
            .allow_all(&entries_of(&magnitudes, &job1, (1, 0), &mut data, &four))
            .expect("job 1's magnitudes");
        let e = ledger
            .allow_all(&entries_of(&magnitudes, &job2, (2, 0), &mut data, &three))
            .unwrap_err();
        assert!(
            matches!(e, crate::ledger::LedgerError::OtherSurvivors { .. }),
            "{e}"
        );
        ledger
            .allow_all(&entries_of(&stats, &job1, (1, 0), &mut data, &four))
            .expect("job 1's statistics");
        ledger
            .allow_all(&entries_of(&evaluation, &job1, (1, 1), &mut data, &four))
            .expect("job 1's evaluation");
        // The figures differ, so the counts' own entries would not have stopped it.
        let train1 = stats_counts(&stats, &job1, &mut data);
        let train2 = stats_counts(&stats, &job2, &mut data);
        assert_ne!(train1[0], train2[0], "the training counts differ");
        assert_eq!(
            train1[train1.len() - 2..],
            train2[train2.len() - 2..],
            "all rows' counts are the same"
        );
        counts_refused_over_three_allowed_over_four(&mut ledger, &stats, &job2, (2, 0), &mut data);
    }

    fn stats_counts(
        stats: &fedrisk_rounds::kinds::Statistics,
        job: &fedrisk_rounds::JobContext,
        data: &mut LocalData<SourceLoader>,
    ) -> Vec<Vec<u64>> {
        use fedrisk_rounds::RoundKind;
        stats.constants(job, data).expect("counts")
    }

    #[test]
    fn attack_a_label_read_the_other_way_round_is_refused_over_another_set() {
        // A job whose schema swaps the label's values has [rows, rows - defaults] where the
        // first had [rows, defaults]: as one figure these would be new counts, and the
        // second job's statistics over a set without institution 4 would give 4's rows and
        // defaults. Each count is tied on its own, so 4's peers refuse.
        let labels: Vec<u8> = (0..50u8).map(|i| u8::from(i % 7 == 0)).collect();
        let flipped: Vec<u8> = labels.iter().map(|y| 1 - y).collect();
        let fingerprints = |labels: &[u8]| -> Vec<[u8; 32]> {
            fedrisk_rounds::row_constants(labels.iter())
                .iter()
                .map(|c| constants_fingerprint(c))
                .collect()
        };
        let (four, three) = sets();
        let mut ledger = Ledger::in_memory();
        let stats = |job: u8, labels: &[u8], survivors: &[String]| {
            ledger_entries(
                "fed",
                (u64::from(job), 0, "statistics", true),
                &[("statistics", 0, [job; 32])],
                &fingerprints(labels),
                survivors,
            )
        };
        ledger
            .allow_all(&stats(1, &labels, &four))
            .expect("the first job's statistics");
        let e = ledger.allow_all(&stats(2, &flipped, &three)).unwrap_err();
        assert!(
            matches!(
                e,
                crate::ledger::LedgerError::ConstantsOtherSurvivors { .. }
            ),
            "{e}"
        );
    }

    #[test]
    fn attack_a_weight_limit_chosen_to_probe_the_row_count_is_refused_before_the_data() {
        // The coordinator lowers the encoding's weight limit to 2^10 to learn, from whether
        // the agent refuses, if this institution has more than 1,024 rows; then 2^11, and so
        // on. The agent refuses any encoding but the protocol's, whatever its row count.
        let (_dir, schema, _name, _data, _job) = one_institution(8, 2);
        let spec = fedrisk_rounds::JobSpec::new("fed", schema);
        let mut plan = fedrisk_rounds::JobPlan::new(
            spec.clone(),
            fedrisk_rounds::PlanIds {
                federation_id: "fed".into(),
                job_id: 1,
            },
            None,
        );
        let req = plan.next_session().expect("a session");
        let params = fedrisk_rounds::session::session_params(&spec, &req, (1..=5).collect());
        let honest = fedrisk_secagg::SessionConfig {
            session_id: [0; 32],
            nonce: [0; 32],
            params,
        };
        assert!(
            check_fixed_point(&honest, req.clip).is_ok(),
            "the protocol's encoding"
        );
        for bits in [10u8, 23, 25] {
            let mut probing = honest.clone();
            probing.params.fixed_point.max_weight_bits = bits;
            let Err(e) = check_fixed_point(&probing, req.clip) else {
                panic!("a weight limit of 2^{bits} was accepted");
            };
            assert!(e.reason.contains("fixed-point encoding"), "{}", e.reason);
        }
        let mut finer = honest.clone();
        finer.params.fixed_point.frac_bits += 1;
        assert!(check_fixed_point(&finer, req.clip).is_err());
    }
}

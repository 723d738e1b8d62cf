//! The participant agent: connects to the coordinator with mutual TLS, receives tasks,
//! computes its contribution locally and takes part in each secure-aggregation session.
//!
//! Architecture invariant: the only things this module sends are secagg protocol messages
//! (whose values are masked), the join request and heartbeats. It logs sizes, never values.

use std::path::PathBuf;
use std::time::Duration;

use fedrisk_models::Schema;
use fedrisk_proto::v1::{self, task};
use fedrisk_proto::{PROTOCOL_VERSION, ParticipantClient};
use fedrisk_secagg::{
    Message, ParticipantPolicy, ParticipantSession, Roster, SessionBinding, SessionConfig,
    encode_weighted,
};
use tonic::transport::Channel;
use tracing::{error, info, warn};

use crate::tls::{self, ClientIdentity};
use crate::worker::{LocalData, Work};

pub struct AgentConfig {
    pub url: String,
    /// Name the coordinator's certificate must carry.
    pub domain: String,
    pub identity: ClientIdentity,
    pub data: PathBuf,
    pub schema: Option<Schema>,
    pub policy: ParticipantPolicy,
    /// Serve further jobs instead of exiting when a job ends.
    pub keep_serving: bool,
    /// Give up after this many failed connection attempts in a row (0: never).
    pub max_reconnects: u32,
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
    #[error("{0}")]
    Tls(#[from] tls::ClientTlsError),
    #[error("coordinator refused: {0}")]
    Refused(String),
    #[error("gave up after {0} failed connection attempts: {1}")]
    Unreachable(u32, String),
}

/// Slows every contribution by this many milliseconds (end-to-end tests only:
/// `FEDRISK_TEST_DELAY_MS`), so a test can stop the coordinator in the middle of a job.
fn delay_from_env() -> Option<Duration> {
    std::env::var("FEDRISK_TEST_DELAY_MS")
        .ok()?
        .parse()
        .ok()
        .map(Duration::from_millis)
}

/// Fault injection for end-to-end tests only: `FEDRISK_TEST_FAULT=<what>@<round>`, where
/// `<what>` is `hang-before-share-keys`, `hang-before-masked-input`, `hang-before-unmask`
/// (the agent stops answering, so a test can kill it at that point), `wrong-length` (sends a
/// truncated masked input before each real one of that round) or `replay` (re-sends its previous
/// round's masked input before each real one of that round).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fault {
    what: String,
    round: u32,
}

fn fault_from_env() -> Option<Fault> {
    let v = std::env::var("FEDRISK_TEST_FAULT").ok()?;
    let (what, round) = v.split_once('@')?;
    Some(Fault {
        what: what.to_string(),
        round: round.parse().ok()?,
    })
}

struct Active {
    job_id: u64,
    round: u32,
    session_id: Vec<u8>,
    config: SessionConfig,
    session: ParticipantSession,
    input: Vec<u64>,
}

pub async fn run(cfg: AgentConfig) -> Result<JobOutcome, AgentError> {
    let mut data = LocalData::new(cfg.data.clone(), cfg.schema.as_ref());
    let mut failures = 0u32;
    let mut backoff = Duration::from_millis(250);
    let fault = fault_from_env();
    let mut last_masked: Option<v1::SecAggUpload> = None;
    loop {
        match connect_and_serve(
            &cfg,
            &mut data,
            fault.as_ref(),
            &mut last_masked,
            &mut failures,
        )
        .await
        {
            Ok(Some(outcome)) => return Ok(outcome),
            Ok(None) => info!("task stream ended; reconnecting"),
            Err(Serve::Fatal(e)) => return Err(e),
            Err(Serve::Retry(reason)) => {
                failures += 1;
                if cfg.max_reconnects > 0 && failures >= cfg.max_reconnects {
                    return Err(AgentError::Unreachable(failures, reason));
                }
                warn!(%reason, retry_in_ms = backoff.as_millis() as u64, "connection failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(15));
                continue;
            }
        }
        backoff = Duration::from_millis(250);
    }
}

enum Serve {
    Retry(String),
    Fatal(AgentError),
}

async fn connect_and_serve(
    cfg: &AgentConfig,
    data: &mut LocalData,
    fault: Option<&Fault>,
    last_masked: &mut Option<v1::SecAggUpload>,
    failures: &mut u32,
) -> Result<Option<JobOutcome>, Serve> {
    let channel = tls::connect(&cfg.url, &cfg.domain, &cfg.identity, tls::CONNECT_TIMEOUT)
        .await
        .map_err(|e| Serve::Retry(e.to_string()))?;
    let mut client = fedrisk_proto::participant_client(channel);
    let schema_hash = cfg.schema.as_ref().map(Schema::hash).unwrap_or_default();
    let join = client
        .join(v1::JoinRequest {
            protocol_version: PROTOCOL_VERSION,
            schema_hash,
            agent_version: env!("CARGO_PKG_VERSION").into(),
        })
        .await
        .map_err(|s| match s.code() {
            tonic::Code::Unauthenticated
            | tonic::Code::PermissionDenied
            | tonic::Code::FailedPrecondition => {
                Serve::Fatal(AgentError::Refused(s.message().to_string()))
            }
            _ => Serve::Retry(s.message().to_string()),
        })?
        .into_inner();
    let me = join.participant_id;
    let mut stream = client
        .tasks(v1::TaskStreamRequest {
            participant_id: me,
            resume_after_seq: 0,
        })
        .await
        .map_err(|s| Serve::Retry(s.message().to_string()))?
        .into_inner();
    *failures = 0;
    info!(participant = me, name = %join.name, federation = %join.federation_id, "joined the federation");
    let heartbeat = tokio::spawn(heartbeats(client.clone(), me));
    let signing = cfg
        .identity
        .signing_key()
        .map_err(|e| Serve::Fatal(e.into()))?;
    let mut active: Option<Active> = None;
    let result = loop {
        let task = match stream.message().await {
            Ok(Some(t)) => t,
            Ok(None) => break Ok(None),
            Err(s) => break Err(Serve::Retry(s.message().to_string())),
        };
        let Some(kind) = task.kind.clone() else {
            continue;
        };
        let work = match &kind {
            task::Kind::Stats(t) => Some((
                t.secagg.clone(),
                tokio::task::block_in_place(|| {
                    data.stats(t.phase, &t.schema_json, &t.settings_json, &t.scales)
                }),
            )),
            task::Kind::Train(t) => Some((
                t.secagg.clone(),
                model_parts(t.model.as_ref()).and_then(|(theta, pre)| {
                    tokio::task::block_in_place(|| {
                        data.train(task.round, &t.hyper_params_json, &pre, &theta)
                    })
                }),
            )),
            task::Kind::Eval(t) => Some((
                t.secagg.clone(),
                model_parts(t.model.as_ref()).and_then(|(theta, pre)| {
                    tokio::task::block_in_place(|| data.eval(&pre, &theta, t.histogram_bins))
                }),
            )),
            _ => None,
        };
        if let Some((secagg, work)) = work {
            active = None;
            if let Some(d) = delay_from_env() {
                tokio::time::sleep(d).await;
            }
            let work = match work {
                Ok(w) => w,
                Err(e) => {
                    error!(round = task.round, error = %e, "cannot compute this round's contribution; sitting it out");
                    continue;
                }
            };
            match start_session(cfg, &join.federation_id, me, &signing, &task, secagg, work) {
                Ok((a, adv)) => {
                    let up = upload(&a, Message::Advertise(adv));
                    if send(&mut client, up).await {
                        active = Some(a);
                    }
                }
                Err(e) => error!(round = task.round, error = %e, "refusing the session"),
            }
            continue;
        }
        match kind {
            task::Kind::Secagg(d) => {
                let Some(a) = active.as_mut() else { continue };
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
                match step(a, &d.payload, fault) {
                    Ok(Some(msg)) => {
                        let is_masked = matches!(msg, Message::MaskedInput(_));
                        let up = upload(a, msg);
                        if is_masked {
                            inject_before_masked(&mut client, a, fault, last_masked.as_ref()).await;
                            *last_masked = Some(up.clone());
                        }
                        if !send(&mut client, up).await {
                            active = None;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        error!(round = task.round, error = %e, "secagg session refused; releasing nothing further");
                        active = None;
                    }
                }
            }
            task::Kind::Aborted(a) => {
                warn!(round = task.round, reason = %a.reason, "round aborted by the coordinator");
                active = None;
            }
            task::Kind::Finished(f) => {
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
            _ => {}
        }
    };
    heartbeat.abort();
    result
}

/// The global parameters `[coefficients..., intercept]` and preprocessing of a task's model.
fn model_parts(m: Option<&v1::GlobalModel>) -> Result<(Vec<f64>, String), String> {
    let m = m.ok_or("the task carries no model")?;
    let mut theta = m.coefficients.clone();
    theta.push(m.intercept);
    Ok((theta, m.preprocessing_json.clone()))
}

/// Checks the session the coordinator proposes and opens it with this agent's own view of
/// what the round is about.
fn start_session(
    cfg: &AgentConfig,
    federation_id: &str,
    me: u32,
    signing: &ed25519_dalek::SigningKey,
    task: &v1::Task,
    secagg: Option<v1::SecAggParams>,
    work: Work,
) -> Result<(Active, fedrisk_secagg::Advertise), String> {
    let secagg = secagg.ok_or("task without secagg parameters")?;
    let config =
        SessionConfig::decode(&secagg.config).map_err(|e| format!("session configuration: {e}"))?;
    let mut keys = Vec::new();
    for p in &secagg.peers {
        let key = tls::verify_peer_certificate(&cfg.identity.ca_pem, &p.certificate_der)
            .map_err(|e| format!("participant {}: {e}", p.participant_id))?;
        keys.push((p.participant_id, key));
    }
    let binding = SessionBinding {
        federation_id: federation_id.as_bytes().to_vec(),
        round: u64::from(task.round),
        model_hash: work.binding,
    };
    let fixed = config.params.fixed_point;
    if work.contribution.weight > fixed.max_weight() {
        return Err(format!(
            "{} rows exceed the session's weight limit of {}",
            work.contribution.weight,
            fixed.max_weight()
        ));
    }
    let max = work.contribution.max_abs();
    if max > fixed.clip {
        warn!(
            round = task.round,
            max,
            clip = fixed.clip,
            "contribution values exceed the clip bound and are clipped"
        );
    }
    let input = encode_weighted(&work.contribution.values, work.contribution.weight, &fixed)
        .map_err(|e| format!("encoding: {e}"))?;
    let mut rng = rand::rng();
    let (session, adv) = ParticipantSession::new(
        config.clone(),
        &binding,
        me,
        signing.clone(),
        Roster::new(keys),
        &cfg.policy,
        &mut rng,
    )
    .map_err(|e| e.to_string())?;
    info!(
        round = task.round,
        rows = work.rows,
        words = input.len(),
        participants = config.params.participants.len(),
        "session opened"
    );
    Ok((
        Active {
            job_id: task.job_id,
            round: task.round,
            session_id: task.session_id.clone(),
            config,
            session,
            input,
        },
        adv,
    ))
}

/// Feeds one delivered message to the session and returns the reply to send.
fn step(a: &mut Active, payload: &[u8], fault: Option<&Fault>) -> Result<Option<Message>, String> {
    let msg = Message::decode_for(payload, &a.config).map_err(|e| e.to_string())?;
    let hang = |what: &str| fault.is_some_and(|f| f.what == what && f.round == a.round);
    let mut rng = rand::rng();
    let reply = match msg {
        Message::KeyList(m) => {
            if hang("hang-before-share-keys") {
                hang_forever();
            }
            Message::ShareKeys(
                a.session
                    .on_key_list(&m, &mut rng)
                    .map_err(|e| e.to_string())?,
            )
        }
        Message::ShareBundle(m) => {
            if hang("hang-before-masked-input") {
                hang_forever();
            }
            Message::MaskedInput(
                a.session
                    .on_shares(&m, &a.input, &mut rng)
                    .map_err(|e| e.to_string())?,
            )
        }
        Message::SurvivorList(m) => {
            Message::ConsistencySignature(a.session.on_survivors(&m).map_err(|e| e.to_string())?)
        }
        Message::UnmaskRequest(m) => {
            if hang("hang-before-unmask") {
                hang_forever();
            }
            Message::UnmaskResponse(a.session.on_unmask_request(&m).map_err(|e| e.to_string())?)
        }
        other => {
            return Err(format!(
                "unexpected {:?} message from the coordinator",
                other.stage()
            ));
        }
    };
    Ok(Some(reply))
}

fn hang_forever() -> ! {
    warn!("test fault: this agent stops here");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn upload(a: &Active, msg: Message) -> v1::SecAggUpload {
    v1::SecAggUpload {
        job_id: a.job_id,
        round: a.round,
        session_id: a.session_id.clone(),
        stage: v1::SecAggStage::from(msg.stage()) as i32,
        payload: msg.encode(),
    }
}

/// Sends one upload; logs its size (never its content). False if the coordinator refused it.
async fn send(client: &mut ParticipantClient<Channel>, up: v1::SecAggUpload) -> bool {
    let stage = v1::SecAggStage::try_from(up.stage).map_or("unknown", |s| s.as_str_name());
    let bytes = up.payload.len();
    let round = up.round;
    match client.send_sec_agg(up).await {
        Ok(_) => {
            info!(round, stage, bytes, "sent");
            true
        }
        Err(s) => {
            warn!(round, stage, bytes, code = ?s.code(), reason = s.message(), "upload rejected");
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
    let Some(f) = fault.filter(|f| f.round == a.round) else {
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
                payload,
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

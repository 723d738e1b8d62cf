//! The gRPC services: decode, authenticate by certificate, call the hub or the scheduler,
//! encode. No protocol or model logic lives here.

use crate::now_ms;
use std::pin::Pin;
use std::sync::Arc;

use fedrisk_proto::v1::{self, JobState as WireJobState};
use fedrisk_proto::{MAX_MESSAGE_BYTES, PROTOCOL_VERSION};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use fedrisk_identity::pki::Role;
use fedrisk_identity::server::{Authenticated, RosterHandle};
use fedrisk_rounds::JobSpec;

use crate::hub::{Hub, Peer, Refusal, RefusalKind};
use crate::scheduler::{Scheduler, SubmitError};
use crate::store::{JobRecord, JobState, ParticipantState, Store};

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

pub struct ParticipantService {
    pub hub: Arc<Hub>,
    pub store: Arc<Store>,
    pub roster: RosterHandle,
    pub federation_id: String,
}

/// A task stream that tells the hub when the agent goes away.
struct TaskStream {
    rx: tokio::sync::mpsc::Receiver<Result<v1::Task, Status>>,
    hub: Arc<Hub>,
    id: u32,
    generation: u64,
}

impl Stream for TaskStream {
    type Item = Result<v1::Task, Status>;
    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for TaskStream {
    fn drop(&mut self) {
        self.hub.unregister(self.id, self.generation);
    }
}

#[tonic::async_trait]
impl fedrisk_proto::Participant for ParticipantService {
    async fn join(
        &self,
        request: Request<v1::JoinRequest>,
    ) -> Result<Response<v1::JoinResponse>, Status> {
        let who =
            Authenticated::from_request(&request, &self.roster)?.require(Role::Participant)?;
        let req = request.into_inner();
        if req.protocol_version != PROTOCOL_VERSION {
            return Err(Status::failed_precondition(format!(
                "protocol version {} is not supported (this coordinator speaks {PROTOCOL_VERSION})",
                req.protocol_version
            )));
        }
        self.store
            .upsert_participant(
                who.id,
                &who.name,
                &who.fingerprint,
                ParticipantState::Active,
            )
            .map_err(internal)?;
        info!(participant = who.id, name = %who.name, agent = %req.agent_version, "participant joined");
        Ok(Response::new(v1::JoinResponse {
            participant_id: who.id,
            name: who.name,
            federation_id: self.federation_id.clone(),
            protocol_version: PROTOCOL_VERSION,
            max_message_bytes: MAX_MESSAGE_BYTES as u64,
        }))
    }

    type TasksStream = Pin<Box<dyn Stream<Item = Result<v1::Task, Status>> + Send + 'static>>;

    async fn tasks(
        &self,
        request: Request<v1::TaskStreamRequest>,
    ) -> Result<Response<Self::TasksStream>, Status> {
        let who =
            Authenticated::from_request(&request, &self.roster)?.require(Role::Participant)?;
        let cert = request
            .peer_certs()
            .and_then(|c| c.first().map(|d| d.as_ref().to_vec()))
            .ok_or_else(|| Status::unauthenticated("no TLS client certificate"))?;
        if request.get_ref().participant_id != who.id {
            return Err(Status::permission_denied(format!(
                "certificate of participant {} cannot open the task stream of participant {}",
                who.id,
                request.get_ref().participant_id
            )));
        }
        let address = request
            .remote_addr()
            .map_or_else(|| "an unknown address".to_string(), |a| a.to_string());
        let (rx, generation) = self
            .hub
            .register(Peer {
                id: who.id,
                name: who.name.clone(),
                cert_der: cert,
                verifying_key: who.verifying_key,
                address,
                generation: 0,
            })
            .inspect_err(|status| {
                warn!(participant = who.id, name = %who.name, reason = status.message(), "second task stream refused");
            })?;
        info!(participant = who.id, name = %who.name, "task stream opened");
        Ok(Response::new(Box::pin(TaskStream {
            rx,
            hub: self.hub.clone(),
            id: who.id,
            generation,
        })))
    }

    async fn send_sec_agg(
        &self,
        request: Request<v1::SecAggUpload>,
    ) -> Result<Response<v1::Ack>, Status> {
        let who =
            Authenticated::from_request(&request, &self.roster)?.require(Role::Participant)?;
        let up = request.into_inner();
        let verdict = self
            .hub
            .route(who.id, up.job_id, up.round, &up.session_id, up.payload)
            .await;
        if let Err(status) = &verdict {
            warn!(participant = who.id, name = %who.name, round = up.round, reason = status.message(), "secagg upload refused");
        }
        verdict?;
        Ok(Response::new(v1::Ack {
            job_id: up.job_id,
            round: up.round,
            session_id: up.session_id,
            stage: up.stage,
        }))
    }

    async fn refuse(&self, request: Request<v1::Refusal>) -> Result<Response<v1::Ack>, Status> {
        let who =
            Authenticated::from_request(&request, &self.roster)?.require(Role::Participant)?;
        let r = request.into_inner();
        let kind = match v1::RefusalKind::try_from(r.kind).unwrap_or(v1::RefusalKind::Unspecified) {
            v1::RefusalKind::Schema => RefusalKind::Schema,
            v1::RefusalKind::Data => RefusalKind::Data,
            v1::RefusalKind::Policy => RefusalKind::Policy,
            v1::RefusalKind::Task | v1::RefusalKind::Unspecified => RefusalKind::Task,
        };
        // The reason is the agent's own words for the operator; bound its size.
        let reason: String = r.reason.chars().take(500).collect();
        let taken = self.hub.refuse(Refusal {
            participant: who.id,
            name: who.name,
            job_id: r.job_id,
            round: r.round,
            session_id: r.session_id.clone(),
            kind,
            reason,
        });
        if !taken {
            return Err(Status::failed_precondition(
                "no open invitation to that session: a refusal answers the latest task, once",
            ));
        }
        Ok(Response::new(v1::Ack {
            job_id: r.job_id,
            round: r.round,
            session_id: r.session_id,
            stage: 0,
        }))
    }

    async fn fetch_content(
        &self,
        request: Request<v1::ContentRequest>,
    ) -> Result<Response<v1::Content>, Status> {
        Authenticated::from_request(&request, &self.roster)?.require(Role::Participant)?;
        let req = request.get_ref();
        let hash = &req.sha256;
        let content = if req.compact {
            self.hub.content_compact(hash)
        } else {
            self.hub.content(hash)
        }
        .ok_or_else(|| Status::not_found(format!("no task content {hash}")))?;
        Ok(Response::new(v1::Content { content }))
    }

    async fn heartbeat(
        &self,
        request: Request<v1::HeartbeatRequest>,
    ) -> Result<Response<v1::HeartbeatResponse>, Status> {
        let who =
            Authenticated::from_request(&request, &self.roster)?.require(Role::Participant)?;
        let _ = self.store.touch_participant(who.id);
        let req = request.into_inner();
        Ok(Response::new(v1::HeartbeatResponse {
            server_time_unix_ms: now_ms(),
            job_id: req.job_id,
            round: req.round,
            session_id: req.session_id,
        }))
    }
}

pub struct OperatorService {
    pub store: Arc<Store>,
    pub roster: RosterHandle,
    pub scheduler: Arc<Scheduler>,
    pub hub: Arc<Hub>,
    /// Operators' actions (submission, cancellation, export) go to the audit chain and log.
    pub events: Arc<dyn crate::events::EventSink>,
    /// The session in flight and the latest errors, for GetStatus.
    pub live: Arc<crate::live::Live>,
}

fn wire_state(s: JobState) -> WireJobState {
    match s {
        JobState::Pending => WireJobState::Pending,
        JobState::Running => WireJobState::Running,
        JobState::Completed => WireJobState::Completed,
        JobState::Failed => WireJobState::Failed,
        JobState::Cancelled => WireJobState::Cancelled,
    }
}

/// A job's status with its per-round figures, as operators and tools see it; with the hub,
/// also who is connected, who refused and why, and what the job waits for.
pub fn job_status(
    store: &Store,
    job: &JobRecord,
    live: Option<(&Hub, &RosterHandle)>,
) -> Result<v1::JobStatus, Status> {
    let rounds_total = JobSpec::from_json(&job.spec_json).map_or(0, |s| s.rounds);
    let metrics = store
        .rounds(job.id)
        .map_err(internal)?
        .into_iter()
        .filter(|r| r.state == crate::store::RoundState::Completed)
        .map(|r| v1::RoundMetrics {
            round: r.round,
            kind: match r.kind {
                crate::store::RoundKind::Stats => v1::RoundKind::Stats,
                crate::store::RoundKind::Train => v1::RoundKind::Train,
            } as i32,
            state: r.state.to_string(),
            survivors: r.metrics.survivors.unwrap_or(0),
            auc: r.metrics.auc.unwrap_or(f64::NAN),
            ks: r.metrics.ks.unwrap_or(f64::NAN),
            log_loss: r.metrics.log_loss.unwrap_or(f64::NAN),
            seconds: r.metrics.seconds.unwrap_or(f64::NAN),
            bytes_up: r.metrics.bytes_up,
            bytes_down: r.metrics.bytes_down,
        })
        .collect();
    let mut participants = Vec::new();
    let mut activity = String::new();
    if let Some((hub, roster)) = live {
        let connected = hub.connected();
        let refusals = store.latest_refusals(job.id).map_err(internal)?;
        for e in roster
            .current()
            .entries
            .iter()
            .filter(|e| e.role == Role::Participant && !e.revoked)
        {
            let conn = connected.iter().find(|p| p.id == e.id);
            let refusal = refusals.iter().find(|r| r.participant_id == e.id);
            participants.push(v1::ParticipantStatus {
                participant_id: e.id,
                name: e.name.clone(),
                connected: conn.is_some(),
                address: conn.map(|p| p.address.clone()).unwrap_or_default(),
                refusal: refusal.map(|r| r.reason.clone()).unwrap_or_default(),
                refusal_round: refusal.map_or(0, |r| r.round),
                refusal_kind: refusal.map_or(v1::RefusalKind::Unspecified, |r| {
                    match r.kind.as_str() {
                        "schema" => v1::RefusalKind::Schema,
                        "data" => v1::RefusalKind::Data,
                        "policy" => v1::RefusalKind::Policy,
                        _ => v1::RefusalKind::Task,
                    }
                }) as i32,
            });
        }
        if job.state == JobState::Running {
            activity = hub.activity();
        }
    }
    // A converged job's checkpoint says where it stopped (durable across restarts). Only
    // that field is read: ListJobs asks for every job, and `status --watch` every second.
    #[derive(serde::Deserialize)]
    struct Converged {
        #[serde(default)]
        converged: Option<fedrisk_rounds::Convergence>,
    }
    let converged_round = store
        .checkpoint(job.id, "state")
        .map_err(internal)?
        .and_then(|blob| serde_json::from_slice::<Converged>(&blob).ok())
        .and_then(|cp| cp.converged)
        .map_or(0, |c| c.round);
    Ok(v1::JobStatus {
        job_id: job.id,
        name: job.name.clone(),
        state: wire_state(job.state) as i32,
        round: job.current_round,
        rounds_total,
        metrics,
        message: job.message.clone(),
        activity,
        participants,
        session: None,
        errors: Vec::new(),
        converged_round,
    })
}

/// [`job_status`] with the live view: the session in flight and the latest errors.
pub fn live_job_status(
    store: &Store,
    job: &JobRecord,
    hub: &Hub,
    roster: &RosterHandle,
    live: &crate::live::Live,
) -> Result<v1::JobStatus, Status> {
    let mut status = job_status(store, job, Some((hub, roster)))?;
    if job.state == JobState::Running {
        status.session = live.session(job.id).map(|s| v1::SessionProgress {
            round: s.round,
            kind: s.kind.to_string(),
            invited: s.invited,
            threshold: s.threshold,
            state: s.state.to_string(),
            stages: s
                .stages
                .iter()
                .map(|p| v1::StageProgress {
                    stage: p.stage.to_string(),
                    received: p.received,
                    expected: p.expected,
                    closed: p.closed,
                    seconds: p.seconds,
                })
                .collect(),
            seconds: s.seconds,
        });
    }
    status.errors = live
        .errors(job.id)
        .into_iter()
        .map(|e| v1::ErrorNote {
            at_unix_ms: e.at_unix_ms,
            round: e.round,
            message: e.message,
        })
        .collect();
    Ok(status)
}

impl OperatorService {
    /// A job's model version of `round`, or its latest for round 0.
    fn model_version(&self, job: u64, round: u32) -> Result<crate::store::ModelVersion, Status> {
        if round == 0 {
            self.store.latest_model(job)
        } else {
            self.store.model_version(job, round)
        }
        .map_err(internal)?
        .ok_or_else(|| self.no_model(job, round))
    }

    /// Why there is no model to give: no such job, no round completed yet, or not this
    /// round (with the rounds that have one), so the operator knows what to ask instead.
    fn no_model(&self, job: u64, round: u32) -> Status {
        let record = match self.store.job(job) {
            Ok(record) => record,
            Err(crate::store::StoreError::NoSuchJob(_)) => {
                return Status::not_found(format!("no job {job}"));
            }
            Err(e) => return internal(e),
        };
        let rounds: Vec<u32> = match self.store.model_versions(Some(job)) {
            Ok(versions) => versions.iter().map(|v| v.round).collect(),
            Err(e) => return internal(e),
        };
        match (rounds.first(), rounds.last()) {
            (Some(first), Some(last)) => Status::not_found(format!(
                "job {job} has no model for round {round}; its model versions are rounds {first} to {last}"
            )),
            _ => Status::not_found(format!(
                "job {job} has no model yet (it is {}: no training round has completed)",
                record.state
            )),
        }
    }
}

#[tonic::async_trait]
impl fedrisk_proto::Operator for OperatorService {
    async fn submit_job(
        &self,
        request: Request<v1::JobSpec>,
    ) -> Result<Response<v1::JobRef>, Status> {
        let who = Authenticated::from_request(&request, &self.roster)?.require(Role::Operator)?;
        let spec = JobSpec::from_json(&request.get_ref().spec_json)
            .map_err(|e| Status::invalid_argument(format!("invalid job: {e}")))?;
        let id = self.scheduler.submit(&spec).map_err(|e| match e {
            SubmitError::Invalid(_) => Status::invalid_argument(e.to_string()),
            SubmitError::Store(_) => Status::internal(e.to_string()),
        })?;
        use sha2::Digest;
        self.events.emit(&crate::events::Event::JobSubmitted {
            job: id,
            name: spec.name.clone(),
            spec_hash: hex::encode(sha2::Sha256::digest(request.get_ref().spec_json.as_bytes())),
            by: who.name.clone(),
        });
        Ok(Response::new(v1::JobRef { job_id: id }))
    }

    async fn get_status(
        &self,
        request: Request<v1::JobRef>,
    ) -> Result<Response<v1::JobStatus>, Status> {
        Authenticated::from_request(&request, &self.roster)?.require(Role::Operator)?;
        let job = self
            .store
            .job(request.get_ref().job_id)
            .map_err(|e| Status::not_found(e.to_string()))?;
        Ok(Response::new(live_job_status(
            &self.store,
            &job,
            &self.hub,
            &self.roster,
            &self.live,
        )?))
    }

    async fn cancel_job(
        &self,
        request: Request<v1::JobRef>,
    ) -> Result<Response<v1::JobStatus>, Status> {
        let who = Authenticated::from_request(&request, &self.roster)?.require(Role::Operator)?;
        let id = request.get_ref().job_id;
        self.scheduler
            .cancel(id)
            .map_err(|e| Status::not_found(e.to_string()))?;
        self.events.emit(&crate::events::Event::JobCancelled {
            job: id,
            by: who.name.clone(),
        });
        let job = self
            .store
            .job(id)
            .map_err(|e| Status::not_found(e.to_string()))?;
        Ok(Response::new(job_status(&self.store, &job, None)?))
    }

    async fn list_jobs(
        &self,
        request: Request<v1::ListJobsRequest>,
    ) -> Result<Response<v1::JobList>, Status> {
        Authenticated::from_request(&request, &self.roster)?.require(Role::Operator)?;
        let filter = match WireJobState::try_from(request.get_ref().state)
            .unwrap_or(WireJobState::Unspecified)
        {
            WireJobState::Unspecified => None,
            WireJobState::Pending => Some(JobState::Pending),
            WireJobState::Running => Some(JobState::Running),
            WireJobState::Completed => Some(JobState::Completed),
            WireJobState::Failed => Some(JobState::Failed),
            WireJobState::Cancelled => Some(JobState::Cancelled),
        };
        let jobs = self
            .store
            .list_jobs(filter)
            .map_err(internal)?
            .iter()
            .map(|j| job_status(&self.store, j, None))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Response::new(v1::JobList { jobs }))
    }

    async fn list_models(
        &self,
        request: Request<v1::ListModelsRequest>,
    ) -> Result<Response<v1::ModelList>, Status> {
        Authenticated::from_request(&request, &self.roster)?.require(Role::Operator)?;
        let job = request.get_ref().job_id;
        let models = self
            .store
            .model_versions((job != 0).then_some(job))
            .map_err(internal)?
            .into_iter()
            .map(|m| v1::ModelVersion {
                job_id: m.job_id,
                round: m.round,
                content_hash: m.content_hash,
                created_at_unix_ms: m.created_at_ms.max(0) as u64,
            })
            .collect();
        Ok(Response::new(v1::ModelList { models }))
    }

    async fn export_model(
        &self,
        request: Request<v1::ModelRef>,
    ) -> Result<Response<v1::ModelExport>, Status> {
        let who = Authenticated::from_request(&request, &self.roster)?.require(Role::Operator)?;
        let r = request.into_inner();
        let format = v1::ExportFormat::try_from(r.format).unwrap_or(v1::ExportFormat::Unspecified);
        if !matches!(
            format,
            v1::ExportFormat::Json | v1::ExportFormat::Unspecified
        ) {
            return Err(Status::unimplemented(
                "only the JSON model format can be exported so far",
            ));
        }
        let model = self.model_version(r.job_id, r.round)?;
        let content = model.model_json.unwrap_or_default().into_bytes();
        self.events.emit(&crate::events::Event::ModelExported {
            job: model.job_id,
            round: model.round,
            content_hash: model.content_hash.clone(),
            by: who.name.clone(),
        });
        Ok(Response::new(v1::ModelExport {
            job_id: model.job_id,
            round: model.round,
            format: v1::ExportFormat::Json as i32,
            content,
            content_hash: model.content_hash,
        }))
    }

    async fn get_model_report(
        &self,
        request: Request<v1::ModelReportRequest>,
    ) -> Result<Response<v1::ModelReport>, Status> {
        let who = Authenticated::from_request(&request, &self.roster)?.require(Role::Operator)?;
        let r = request.into_inner();
        let version = self.model_version(r.job_id, r.round)?;
        // The model leaves the coordinator: recorded as an export before the chain is read,
        // so the report's audit head includes the record of this very report.
        self.events.emit(&crate::events::Event::ModelExported {
            job: version.job_id,
            round: version.round,
            content_hash: version.content_hash.clone(),
            by: who.name.clone(),
        });
        let report = crate::report::model_report(
            &self.store,
            version.job_id,
            Some(version.round),
            r.audit_chain,
        )
        .map_err(|e| match e {
            crate::report::ReportError::NoModel { .. }
            | crate::report::ReportError::Store(crate::store::StoreError::NoSuchJob(_)) => {
                Status::not_found(e.to_string())
            }
            e => internal(e),
        })?;
        // The records travel with the rest; a chain too long for one message is for
        // `audit export` on the coordinator's host.
        if r.audit_chain && report.audit_jsonl.len() > MAX_MESSAGE_BYTES - 4 * 1024 * 1024 {
            return Err(Status::resource_exhausted(format!(
                "the audit chain ({} records, {} bytes) is too long to send with the report; ask without the chain, and check it with `audit export` and `audit verify --file` on the coordinator's host",
                report.audit_records,
                report.audit_jsonl.len()
            )));
        }
        Ok(Response::new(report))
    }
}

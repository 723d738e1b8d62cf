//! Who is connected, and where their messages go.
//!
//! Each participant agent holds one open `Tasks` stream; the hub keeps its sending half,
//! so the round engine can push tasks and secagg deliveries. Uploads are routed to the one
//! secagg session in flight, and only if they name it exactly (job, round, session id):
//! anything else is stale or replayed and is refused before it reaches the protocol.
//!
//! One stream per identity: a second agent with an identity that is connected is refused
//! with the first one's address, instead of the two replacing each other in a loop. A
//! participant's refusal of a session or job is kept here for the engine, which stops
//! waiting for it, records it and shows it to the operator.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use fedrisk_proto::v1::{Task, task};
use prost::bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};
use tonic::Status;

/// Tasks waiting to be written to a slow agent before it counts as gone. Large deliveries
/// come in parts of `DELIVERY_PART`, so this is counted in parts: 96 MiB of them, room for
/// several of the largest messages (`MAX_MESSAGE_BYTES`). Slots take memory only when used.
const TASK_QUEUE: usize = 16 * 1024;

/// A secagg message from a participant, with a channel for the engine's verdict.
#[derive(Debug)]
pub struct Upload {
    pub from: u32,
    pub payload: Bytes,
    pub reply: oneshot::Sender<Result<(), String>>,
}

struct Conn {
    peer: Peer,
    tx: mpsc::Sender<Result<Task, Status>>,
    generation: u64,
    /// A job this connection refused as a whole (schema or data): not invited again to it
    /// until the agent reconnects (after fixing its data, say).
    refused_job: Option<u64>,
    /// The session this connection was last invited to, while it may still refuse it: one
    /// refusal per invitation, so an agent cannot fill the coordinator's memory or store.
    open_invitation: Option<Vec<u8>>,
    /// The certificate (hash) this stream last carried for each participant: later tasks
    /// leave an unchanged one out (200 certificates are most of a task's bytes at n = 200).
    certificates_sent: BTreeMap<u32, [u8; 32]>,
}

/// A session's task as the hub sends it to every invited agent, prepared once per session.
#[derive(Debug, Clone)]
pub struct Invitation {
    /// The task naming its peers by id only (its bytes and revocation list are `Bytes`,
    /// shared by every agent's copy).
    task: fedrisk_proto::v1::ComputeTask,
    /// Each peer's certificate, and its SHA-256 as 32 bytes (`None` if the task's hash is
    /// not one: such a certificate is always sent, never recorded as carried).
    peers: Vec<(fedrisk_proto::v1::PeerIdentity, Option<[u8; 32]>)>,
}

impl Invitation {
    /// Moves the certificates out of `compute`'s peers.
    pub fn new(mut compute: fedrisk_proto::v1::ComputeTask) -> Self {
        use fedrisk_proto::v1::PeerIdentity;
        let mut peers = Vec::new();
        for p in compute.secagg.iter_mut().flat_map(|s| s.peers.iter_mut()) {
            let id_only = PeerIdentity {
                participant_id: p.participant_id,
                ..PeerIdentity::default()
            };
            let full = std::mem::replace(p, id_only);
            let mut hash = [0u8; 32];
            let hash = hex::decode_to_slice(&full.certificate_sha256, &mut hash)
                .is_ok()
                .then_some(hash);
            peers.push((full, hash));
        }
        Invitation {
            task: compute,
            peers,
        }
    }
}

/// Certificates go in parts of about this many bytes (see `PeerCertificates`).
const CERTIFICATE_PART: usize = fedrisk_proto::DELIVERY_PART;

/// A secagg message as the deliveries that carry it: parts of at most
/// [`fedrisk_proto::DELIVERY_PART`] bytes, every one but the last marked `more`. The parts
/// are slices of `payload` (one buffer for every recipient and part).
pub fn delivery_parts(stage: i32, payload: &Bytes) -> Vec<fedrisk_proto::v1::SecAggDelivery> {
    let part = fedrisk_proto::DELIVERY_PART;
    let count = payload.len().div_ceil(part).max(1);
    (0..count)
        .map(|i| fedrisk_proto::v1::SecAggDelivery {
            stage,
            payload: payload.slice(i * part..((i + 1) * part).min(payload.len())),
            more: i + 1 < count,
        })
        .collect()
}

/// A stream that carried more certificates than this starts again from none (bounds the
/// memory an endless stream of rosters could take).
const MAX_CERTIFICATES_SENT: usize = 4096;

struct ActiveSession {
    job_id: u64,
    round: u32,
    session_id: Vec<u8>,
    tx: mpsc::Sender<Upload>,
    refused: BTreeSet<u32>,
}

#[derive(Default)]
struct Inner {
    conns: BTreeMap<u32, Conn>,
    session: Option<ActiveSession>,
    next_seq: u64,
    next_generation: u64,
    refusals: Vec<Refusal>,
    activity: String,
    /// Job-wide task contents by hash, for `FetchContent`.
    contents: BTreeMap<String, Bytes>,
    /// The compact forms of the lineage records among `contents`, made when first asked for.
    compact: BTreeMap<String, Bytes>,
    /// Bytes served by `FetchContent` so far.
    fetched: u64,
}

/// A participant's refusal, as the engine receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Roster id.
    pub participant: u32,
    /// Certificate name.
    pub name: String,
    /// The job.
    pub job_id: u64,
    /// The round.
    pub round: u32,
    /// The session it refused.
    pub session_id: Vec<u8>,
    /// What kind of refusal.
    pub kind: RefusalKind,
    /// The agent's reason.
    pub reason: String,
}

/// Whether a refusal concerns one session or the whole job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// The job's schema differs from the agent's.
    Schema,
    /// The agent's data does not load under the job's schema.
    Data,
    /// The session breaks the agent's policy.
    Policy,
    /// The task is malformed.
    Task,
}

impl RefusalKind {
    /// Its name in the store and in status lines.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalKind::Schema => "schema",
            RefusalKind::Data => "data",
            RefusalKind::Policy => "policy",
            RefusalKind::Task => "task",
        }
    }

    /// Whether the agent will refuse every session of the job the same way.
    pub fn is_job_wide(self) -> bool {
        matches!(self, RefusalKind::Schema | RefusalKind::Data)
    }
}

/// Shared between the gRPC services and the round engine.
pub struct Hub {
    inner: Mutex<Inner>,
    /// Counts changes. A watch, not a `Notify`: a change between a waiter's check of the
    /// state and its wait is kept, where `notify_waiters` would drop it and leave a session
    /// waiting out its deadline for refusals that already arrived.
    changed: watch::Sender<u64>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            inner: Mutex::default(),
            changed: watch::Sender::new(0),
        }
    }
}

/// A connected participant, as the engine sees it.
#[derive(Debug, Clone)]
pub struct Peer {
    pub id: u32,
    pub name: String,
    /// Relayed to the other participants, who check it against their CA.
    pub cert_der: Vec<u8>,
    /// Its secagg identity, taken from the certificate when the stream opened.
    pub verifying_key: ed25519_dalek::VerifyingKey,
    /// Where its task stream comes from (for operators).
    pub address: String,
    /// Which of its connections this is (set by [`Hub::register`]): a session waits only
    /// for the connections it invited, not for a restarted agent's new one.
    pub generation: u64,
}

impl Hub {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters more than refusing all further service, so recover the data.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers an agent's task stream. A second stream of an identity whose first stream
    /// is still open is refused, naming where the first one comes from.
    #[allow(clippy::result_large_err)]
    pub fn register(
        &self,
        peer: Peer,
    ) -> Result<(mpsc::Receiver<Result<Task, Status>>, u64), Status> {
        let (tx, rx) = mpsc::channel(TASK_QUEUE);
        let mut inner = self.lock();
        if let Some(c) = inner.conns.get(&peer.id)
            && !c.tx.is_closed()
        {
            return Err(Status::already_exists(format!(
                "{} is already connected from {}; stop that agent first (one agent per identity)",
                c.peer.name, c.peer.address
            )));
        }
        inner.next_generation += 1;
        let generation = inner.next_generation;
        let mut peer = peer;
        peer.generation = generation;
        inner.conns.insert(
            peer.id,
            Conn {
                peer,
                tx,
                generation,
                refused_job: None,
                open_invitation: None,
                certificates_sent: BTreeMap::new(),
            },
        );
        drop(inner);
        self.bump();
        Ok((rx, generation))
    }

    /// Drops a participant's stream at once (its certificate was revoked): it is no longer
    /// invited, and its open stream ends with `reason`.
    pub fn disconnect(&self, id: u32, reason: &str) -> bool {
        let mut inner = self.lock();
        let Some(conn) = inner.conns.remove(&id) else {
            return false;
        };
        drop(inner);
        let _ = conn
            .tx
            .try_send(Err(Status::permission_denied(reason.to_string())));
        tracing::warn!(participant = id, name = %conn.peer.name, %reason, "participant disconnected by the coordinator");
        self.bump();
        true
    }

    /// Records a participant's refusal; the engine takes it with [`Hub::take_refusals`].
    /// Only a refusal of the session the participant was last invited to counts, once;
    /// `false` for any other.
    pub fn refuse(&self, refusal: Refusal) -> bool {
        let mut inner = self.lock();
        match inner.conns.get_mut(&refusal.participant) {
            Some(c) if c.open_invitation.as_deref() == Some(refusal.session_id.as_slice()) => {
                c.open_invitation = None;
            }
            _ => return false,
        }
        if let Some(s) = inner.session.as_mut()
            && s.session_id == refusal.session_id
        {
            s.refused.insert(refusal.participant);
        }
        if refusal.kind.is_job_wide()
            && let Some(c) = inner.conns.get_mut(&refusal.participant)
        {
            c.refused_job = Some(refusal.job_id);
        }
        inner.refusals.push(refusal);
        drop(inner);
        self.bump();
        true
    }

    /// Refusals received since the last call.
    pub fn take_refusals(&self) -> Vec<Refusal> {
        std::mem::take(&mut self.lock().refusals)
    }

    /// Participants that refused the session in flight.
    pub fn refused_in_session(&self, session_id: &[u8]) -> BTreeSet<u32> {
        match &self.lock().session {
            Some(s) if s.session_id == session_id => s.refused.clone(),
            _ => BTreeSet::new(),
        }
    }

    /// Connected participants that have not refused `job` on their current connection.
    pub fn available(&self, job: u64) -> Vec<Peer> {
        self.lock()
            .conns
            .values()
            .filter(|c| !c.tx.is_closed() && c.refused_job != Some(job))
            .map(|c| c.peer.clone())
            .collect()
    }

    /// Makes task contents fetchable; the set is replaced when a job starts, so it holds one
    /// job's contents at a time.
    pub fn publish(&self, contents: &[(String, Vec<u8>)]) {
        let mut inner = self.lock();
        for (hash, bytes) in contents {
            inner
                .contents
                .entry(hash.clone())
                .or_insert_with(|| Bytes::copy_from_slice(bytes));
        }
    }

    /// Forgets every published content (a new job starts).
    pub fn clear_contents(&self) {
        let mut inner = self.lock();
        inner.contents.clear();
        inner.compact.clear();
    }

    /// A published content, counted as served.
    pub fn content(&self, hash: &str) -> Option<Bytes> {
        let mut inner = self.lock();
        let c = inner.contents.get(hash).cloned()?;
        inner.fetched += c.len() as u64;
        Some(c)
    }

    /// A published content in its compact form if it is a session's lineage record
    /// ([`fedrisk_rounds::lineage_codec::compact`]), else whole; counted as served.
    pub fn content_compact(&self, hash: &str) -> Option<Bytes> {
        let mut inner = self.lock();
        let c = match inner.compact.get(hash) {
            Some(c) => c.clone(),
            None => {
                let whole = inner.contents.get(hash).cloned()?;
                let c = fedrisk_rounds::lineage_codec::compact(&whole)
                    .map(Bytes::from)
                    .unwrap_or(whole);
                inner.compact.insert(hash.to_string(), c.clone());
                c
            }
        };
        inner.fetched += c.len() as u64;
        Some(c)
    }

    /// Bytes served by `FetchContent` so far.
    pub fn fetched_bytes(&self) -> u64 {
        self.lock().fetched
    }

    /// What the engine is doing, in words, for status.
    pub fn set_activity(&self, text: String) {
        self.lock().activity = text;
    }

    /// See [`Hub::set_activity`].
    pub fn activity(&self) -> String {
        self.lock().activity.clone()
    }

    /// Called when a task stream ends; ignores a stream that was already replaced.
    pub fn unregister(&self, id: u32, generation: u64) {
        let mut inner = self.lock();
        if inner
            .conns
            .get(&id)
            .is_some_and(|c| c.generation == generation)
        {
            inner.conns.remove(&id);
            drop(inner);
            tracing::info!(participant = id, "participant disconnected");
            self.bump();
        }
    }

    pub fn connected(&self) -> Vec<Peer> {
        self.lock()
            .conns
            .iter()
            .filter(|(_, c)| !c.tx.is_closed())
            .map(|(_, c)| c.peer.clone())
            .collect()
    }

    /// Whether this very connection of the peer is still open (a restarted agent's new
    /// connection is another one).
    pub fn still_connected(&self, id: u32, generation: u64) -> bool {
        self.lock()
            .conns
            .get(&id)
            .is_some_and(|c| c.generation == generation && !c.tx.is_closed())
    }

    pub fn is_connected(&self, id: u32) -> bool {
        self.lock()
            .conns
            .get(&id)
            .is_some_and(|c| !c.tx.is_closed())
    }

    /// Changes from here on: connections, refusals. Mark the current value seen
    /// (`borrow_and_update`) before reading the state, then await `changed()`.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Queues a task for one agent; false if it is not connected or its queue is full (a
    /// stalled agent is treated as dropped, never waited for).
    pub fn send(
        &self,
        id: u32,
        job_id: u64,
        round: u32,
        session_id: &[u8],
        kind: task::Kind,
    ) -> bool {
        self.queue(id, job_id, round, session_id, kind).is_some()
    }

    /// [`Hub::send`], answering the bytes of the task queued.
    fn queue(
        &self,
        id: u32,
        job_id: u64,
        round: u32,
        session_id: &[u8],
        kind: task::Kind,
    ) -> Option<u64> {
        let mut inner = self.lock();
        inner.next_seq += 1;
        let seq = inner.next_seq;
        let conn = inner.conns.get_mut(&id)?;
        if matches!(kind, task::Kind::Compute(_)) {
            conn.open_invitation = Some(session_id.to_vec());
        }
        let task = Task {
            seq,
            job_id,
            round,
            session_id: session_id.to_vec(),
            kind: Some(kind),
        };
        let bytes = prost::Message::encoded_len(&task) as u64;
        conn.tx.try_send(Ok(task)).is_ok().then_some(bytes)
    }

    /// Queues a session invitation for one agent: first the peer certificates its stream has
    /// not carried yet, in parts, then the task with every certificate left out (the agent
    /// keeps what its stream carried, by participant). The bytes queued, or None if it is
    /// not connected or its queue is full.
    pub fn send_compute(
        &self,
        id: u32,
        job_id: u64,
        round: u32,
        session_id: &[u8],
        invitation: &Invitation,
    ) -> Option<u64> {
        use fedrisk_proto::v1::PeerCertificates;
        let mut parts: Vec<Vec<fedrisk_proto::v1::PeerIdentity>> = Vec::new();
        {
            let mut inner = self.lock();
            let conn = inner.conns.get_mut(&id)?;
            if conn.certificates_sent.len() > MAX_CERTIFICATES_SENT {
                conn.certificates_sent.clear();
            }
            let mut size = 0;
            for (p, hash) in &invitation.peers {
                let carried = hash.is_some()
                    && conn.certificates_sent.get(&p.participant_id) == hash.as_ref();
                if carried {
                    continue;
                }
                if let Some(hash) = hash {
                    conn.certificates_sent.insert(p.participant_id, *hash);
                }
                if parts.is_empty() || size + p.certificate_der.len() > CERTIFICATE_PART {
                    parts.push(Vec::new());
                    size = 0;
                }
                size += p.certificate_der.len();
                if let Some(part) = parts.last_mut() {
                    // `Bytes`: every stream's part shares the session's one copy. No hash:
                    // the agent hashes what it keeps.
                    part.push(fedrisk_proto::v1::PeerIdentity {
                        participant_id: p.participant_id,
                        certificate_der: p.certificate_der.clone(),
                        certificate_sha256: String::new(),
                    });
                }
            }
        }
        let mut bytes = 0u64;
        for peers in parts {
            let kind = task::Kind::Certificates(PeerCertificates { peers });
            bytes += self.queue(id, job_id, round, session_id, kind)?;
        }
        let kind = task::Kind::Compute(invitation.task.clone());
        Some(bytes + self.queue(id, job_id, round, session_id, kind)?)
    }

    /// Opens routing for a session; uploads naming it go to the returned receiver.
    pub fn open_session(
        &self,
        job_id: u64,
        round: u32,
        session_id: &[u8],
    ) -> mpsc::Receiver<Upload> {
        let (tx, rx) = mpsc::channel(4096);
        self.lock().session = Some(ActiveSession {
            job_id,
            round,
            session_id: session_id.to_vec(),
            tx,
            refused: BTreeSet::new(),
        });
        rx
    }

    pub fn close_session(&self, session_id: &[u8]) {
        let mut inner = self.lock();
        if inner
            .session
            .as_ref()
            .is_some_and(|s| s.session_id == session_id)
        {
            inner.session = None;
        }
    }

    /// Routes an upload to the session it names, and waits for the engine's verdict.
    pub async fn route(
        &self,
        from: u32,
        job_id: u64,
        round: u32,
        session_id: &[u8],
        payload: Bytes,
    ) -> Result<(), Status> {
        let tx = {
            let inner = self.lock();
            match &inner.session {
                Some(s) if s.job_id == job_id && s.round == round && s.session_id == session_id => {
                    s.tx.clone()
                }
                Some(s) if s.job_id == job_id && round < s.round => {
                    return Err(Status::failed_precondition(format!(
                        "message for round {round}, but round {} is in progress: stale or replayed",
                        s.round
                    )));
                }
                Some(_) => {
                    return Err(Status::failed_precondition(
                        "message names a secagg session that is not in progress: stale or replayed",
                    ));
                }
                None => {
                    return Err(Status::failed_precondition(
                        "no secagg session is in progress",
                    ));
                }
            }
        };
        let (reply, verdict) = oneshot::channel();
        tx.send(Upload {
            from,
            payload,
            reply,
        })
        .await
        .map_err(|_| Status::failed_precondition("the session just ended"))?;
        match verdict.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(Status::invalid_argument(format!("rejected: {reason}"))),
            Err(_) => Err(Status::failed_precondition("the session just ended")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_are_cut_into_small_parts_that_join_to_the_message() {
        let part = fedrisk_proto::DELIVERY_PART;
        for len in [0, 1, part - 1, part, part + 1, 10 * part + 17] {
            let payload = Bytes::from((0..len).map(|i| (i % 253) as u8).collect::<Vec<u8>>());
            let parts = delivery_parts(3, &payload);
            assert_eq!(parts.len(), len.div_ceil(part).max(1), "len {len}");
            assert!(
                parts
                    .iter()
                    .all(|p| p.stage == 3 && p.payload.len() <= part)
            );
            let (last, rest) = parts.split_last().expect("one part at least");
            assert!(!last.more && rest.iter().all(|p| p.more), "len {len}");
            let joined: Vec<u8> = parts.iter().flat_map(|p| p.payload.to_vec()).collect();
            assert_eq!(joined, payload.to_vec());
        }
    }

    #[tokio::test]
    async fn uploads_reach_only_the_session_in_flight() {
        let hub = Hub::new();
        let mut inbox = hub.open_session(7, 3, b"session-3");
        let engine = tokio::spawn(async move {
            let up = inbox.recv().await.expect("one upload");
            assert_eq!((up.from, &up.payload[..]), (1, &b"ok"[..]));
            let _ = up.reply.send(Ok(()));
            let up = inbox.recv().await.expect("second upload");
            let _ = up.reply.send(Err("wrong length".into()));
        });
        hub.route(1, 7, 3, b"session-3", Bytes::from_static(b"ok"))
            .await
            .expect("accepted");
        let rejected = hub
            .route(1, 7, 3, b"session-3", Bytes::from_static(b"bad"))
            .await
            .unwrap_err();
        assert_eq!(rejected.code(), tonic::Code::InvalidArgument);
        assert!(rejected.message().contains("wrong length"));
        engine.await.expect("engine task");
        // A message of an earlier round (a replay) and one naming another session never reach it.
        let old = hub
            .route(1, 7, 2, b"session-2", Bytes::from_static(b"x"))
            .await
            .unwrap_err();
        assert_eq!(old.code(), tonic::Code::FailedPrecondition);
        assert!(old.message().contains("stale or replayed"));
        let other = hub
            .route(1, 7, 3, b"session-x", Bytes::from_static(b"x"))
            .await
            .unwrap_err();
        assert_eq!(other.code(), tonic::Code::FailedPrecondition);
        hub.close_session(b"session-3");
        let none = hub
            .route(1, 7, 3, b"session-3", Bytes::from_static(b"x"))
            .await
            .unwrap_err();
        assert!(none.message().contains("no secagg session"));
    }

    #[tokio::test]
    async fn a_replaced_stream_does_not_unregister_its_successor() {
        let hub = Hub::new();
        let peer = |cert: u8| Peer {
            id: 4,
            name: "bank".into(),
            cert_der: vec![cert],
            verifying_key: ed25519_dalek::SigningKey::from_bytes(&[cert; 32]).verifying_key(),
            address: format!("127.0.0.1:{cert}"),
            generation: 0,
        };
        let (rx1, g1) = hub.register(peer(1)).expect("first stream");
        // While the first stream is open, a second agent of the same identity is refused
        // with the first one's address.
        let refused = hub.register(peer(2)).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::AlreadyExists);
        assert!(
            refused
                .message()
                .contains("bank is already connected from 127.0.0.1:1"),
            "{}",
            refused.message()
        );
        // Once it is gone, a new stream takes its place; the old stream's end does not
        // unregister its successor.
        drop(rx1);
        let (_rx2, g2) = hub.register(peer(2)).expect("after the first ended");
        hub.unregister(4, g1);
        assert!(hub.is_connected(4));
        hub.unregister(4, g2);
        assert!(!hub.is_connected(4));
    }

    fn peer(id: u32) -> Peer {
        Peer {
            id,
            name: format!("bank_{id}"),
            cert_der: vec![],
            verifying_key: ed25519_dalek::SigningKey::from_bytes(&[id as u8; 32]).verifying_key(),
            address: "127.0.0.1:9".into(),
            generation: 0,
        }
    }

    #[tokio::test]
    async fn revocation_drops_the_stream_and_refusals_reach_the_engine() {
        let hub = Hub::new();
        let (mut rx, _) = hub.register(peer(1)).expect("register");
        let (_rx2, _) = hub.register(peer(2)).expect("register");
        assert!(hub.disconnect(1, "certificate revoked"));
        let ended = rx.recv().await.expect("a last message").unwrap_err();
        assert_eq!(ended.code(), tonic::Code::PermissionDenied);
        assert!(rx.recv().await.is_none(), "the stream ends");
        assert_eq!(hub.available(7).len(), 1);
        let _inbox = hub.open_session(7, 1, b"s1");
        let refusal = Refusal {
            participant: 2,
            name: "bank_2".into(),
            job_id: 7,
            round: 1,
            session_id: b"s1".to_vec(),
            kind: RefusalKind::Schema,
            reason: "schema differs".into(),
        };
        // Not invited yet: a refusal is not taken.
        assert!(!hub.refuse(refusal.clone()));
        let invite = task::Kind::Compute(fedrisk_proto::v1::ComputeTask::default());
        assert!(hub.send(2, 7, 1, b"s1", invite));
        assert!(hub.refuse(refusal.clone()));
        // One refusal per invitation: a second (or a flood) is not kept.
        assert!(!hub.refuse(refusal));
        assert!(hub.refused_in_session(b"s1").contains(&2));
        assert!(
            hub.available(7).is_empty(),
            "a job-wide refusal is not invited again"
        );
        assert_eq!(hub.available(8).len(), 1, "other jobs still invite it");
        assert_eq!(hub.take_refusals().len(), 1);
        assert!(hub.take_refusals().is_empty());
    }

    #[tokio::test]
    async fn a_stream_carries_each_peer_certificate_once_in_parts_ahead_of_the_task() {
        use fedrisk_proto::v1::{ComputeTask, PeerIdentity, SecAggParams};
        let hub = Hub::new();
        let (mut rx, _) = hub.register(peer(2)).expect("register");
        let compute = |certs: &[Vec<u8>]| ComputeTask {
            secagg: Some(SecAggParams {
                peers: certs
                    .iter()
                    .enumerate()
                    .map(|(i, der)| PeerIdentity {
                        participant_id: i as u32 + 1,
                        certificate_der: der.clone().into(),
                        certificate_sha256: fedrisk_rounds::task::content_hash(der),
                    })
                    .collect(),
                ..SecAggParams::default()
            }),
            ..ComputeTask::default()
        };
        // Up to the task: the certificates carried ahead of it, and its peers.
        let mut next =
            async || {
                let mut carried = Vec::new();
                let mut parts = 0;
                loop {
                    match rx.recv().await.expect("task").expect("ok").kind {
                        Some(task::Kind::Certificates(c)) => {
                            parts += 1;
                            carried.extend(c.peers.into_iter().map(|p| p.certificate_der.to_vec()));
                        }
                        Some(task::Kind::Compute(c)) => {
                            let peers = c.secagg.map(|s| s.peers).unwrap_or_default();
                            assert!(
                                peers.iter().all(|p| p.certificate_der.is_empty()
                                    && p.certificate_sha256.is_empty()),
                                "the task itself carries no certificate"
                            );
                            return (carried, parts);
                        }
                        other => panic!("unexpected {other:?}"),
                    }
                }
            };
        // 40 certificates of 1 KiB go in parts of at most `DELIVERY_PART` (6 KiB): 6 a part.
        let big: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 1024]).collect();
        let first = hub.send_compute(2, 7, 0, b"s0", &Invitation::new(compute(&big)));
        let (carried, parts) = next().await;
        assert_eq!(carried, big);
        assert_eq!(parts, 40usize.div_ceil(fedrisk_proto::DELIVERY_PART / 1024));
        // Nothing again for the same certificates; a reissued one goes again.
        let second = hub.send_compute(2, 7, 1, b"s1", &Invitation::new(compute(&big)));
        assert!(second < first, "{second:?} < {first:?}");
        assert_eq!(next().await, (Vec::new(), 0));
        let mut reissued = big.clone();
        reissued[0] = b"cert-a2".to_vec();
        hub.send_compute(2, 7, 2, b"s2", &Invitation::new(compute(&reissued)));
        assert_eq!(next().await, (vec![b"cert-a2".to_vec()], 1));
        // A new stream of the same participant starts from none.
        drop(rx);
        let (mut rx, _) = hub.register(peer(2)).expect("register again");
        hub.send_compute(2, 7, 3, b"s3", &Invitation::new(compute(&big[..1])));
        match rx.recv().await.expect("task").expect("ok").kind {
            Some(task::Kind::Certificates(c)) => assert_eq!(c.peers.len(), 1),
            other => panic!("unexpected {other:?}"),
        }
    }

    /// The engine reads the state, then waits for a change: a refusal landing between the
    /// two must still wake it (a lost wakeup left a session waiting out its deadline).
    #[tokio::test]
    async fn a_change_between_reading_the_state_and_waiting_is_not_lost() {
        let hub = Hub::new();
        let (_rx, _) = hub.register(peer(2)).expect("register");
        let _inbox = hub.open_session(7, 1, b"s1");
        let invite = task::Kind::Compute(fedrisk_proto::v1::ComputeTask::default());
        assert!(hub.send(2, 7, 1, b"s1", invite));
        let mut changes = hub.changes();
        changes.borrow_and_update();
        assert!(hub.refused_in_session(b"s1").is_empty());
        // The refusal arrives before the engine starts waiting.
        assert!(hub.refuse(Refusal {
            participant: 2,
            name: "bank_2".into(),
            job_id: 7,
            round: 1,
            session_id: b"s1".to_vec(),
            kind: RefusalKind::Policy,
            reason: "revoked peer".into(),
        }));
        tokio::time::timeout(std::time::Duration::from_secs(5), changes.changed())
            .await
            .expect("the change made before the wait wakes it")
            .expect("the hub lives");
        assert!(hub.refused_in_session(b"s1").contains(&2));
    }
}

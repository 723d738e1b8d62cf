//! In-memory simulation: `n` participants and one coordinator, seeded RNGs, any
//! dropout schedule, late messages, and a hook point for a lying coordinator.
//!
//! Every message goes through `encode`/`decode`, so the byte counts are the
//! wire sizes. Drive a whole session with [`Sim::run`], or stage by stage
//! (`advertise`, `share_keys`, ...) and edit [`Sim::outbox`] between stages to
//! play a malicious coordinator.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use chacha20::ChaCha20Rng;
use ed25519_dalek::SigningKey;
use rand_core::{Rng, SeedableRng};

use crate::config::{
    FixedPointParams, GraphKind, ParticipantPolicy, SecurityMode, SessionBinding, SessionConfig,
    SessionParams, default_threshold,
};
use crate::coordinator::{CoordinatorSession, Outgoing, Output, Step};
use crate::error::{Result, SecAggError};
use crate::fixed_point::encode_weighted;
use crate::messages::{Message, UnmaskResponse};
use crate::{ParticipantSession, Roster, Stage};

/// Where a participant drops out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DropPoint {
    /// Never advertises.
    BeforeAdvertise,
    /// Advertises, then never sends shares.
    AfterAdvertise,
    /// Sends shares, then never sends its masked input.
    AfterShareKeys,
    /// Sends its masked input, then never signs U3.
    AfterMaskedInput,
    /// Signs U3, then never answers the unmask request.
    AfterConsistency,
}

/// One byte of one encoded message changed in flight: the lie or corruption a test wants a
/// session to survive without panicking or summing wrongly. Applied once, to the first
/// message that matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tamper {
    /// The stage at which the message is handled.
    pub stage: Stage,
    /// A message a participant sends (`true`) or one the coordinator sends it.
    pub to_coordinator: bool,
    /// The participant that sends or receives it.
    pub who: u32,
    /// Which byte (modulo the message's length).
    pub pos: usize,
    /// What the byte is XORed with (0 changes nothing).
    pub xor: u8,
}

/// Parameters of a simulated session.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Number of invited participants (ids `0..n`).
    pub n: usize,
    /// Vector length `d`.
    pub d: usize,
    /// Threshold `t`.
    pub threshold: u32,
    /// Graph.
    pub graph: GraphKind,
    /// Threat model.
    pub security: SecurityMode,
    /// Fixed-point parameters.
    pub fixed_point: FixedPointParams,
    /// Distributed DP.
    pub dp_sigma: Option<f64>,
    /// Whether masked inputs carry commitments.
    pub committed: bool,
    /// The leading words the commitments cover (`None`: the whole input).
    pub commit_prefix: Option<u32>,
    /// Master seed: all keys, secrets and inputs derive from it.
    pub seed: u64,
    /// Worker threads for the participants' work (the outcome does not depend on it).
    pub threads: usize,
    /// Policy every participant applies.
    pub policy: ParticipantPolicy,
}

impl SimConfig {
    /// Complete graph, active security, `t = floor(2n/3) + 1`, no colluders assumed.
    pub fn new(n: usize, d: usize) -> Self {
        SimConfig {
            n,
            d,
            threshold: default_threshold(n),
            graph: GraphKind::Complete,
            security: SecurityMode::Active { max_colluders: 0 },
            fixed_point: FixedPointParams {
                frac_bits: 16,
                clip: 16.0,
                max_weight_bits: 20,
            },
            dp_sigma: None,
            committed: true,
            commit_prefix: None,
            seed: 1,
            threads: 2,
            policy: ParticipantPolicy {
                max_participants: 1 << 16,
                ..ParticipantPolicy::default()
            },
        }
    }

    /// The session parameters this simulation uses.
    pub fn params(&self) -> SessionParams {
        SessionParams {
            participants: (0..self.n as u32).collect(),
            threshold: self.threshold,
            vector_len: self.d as u32,
            fixed_point: self.fixed_point,
            graph: self.graph,
            security: self.security,
            dp_sigma: self.dp_sigma,
            commit_words: match (self.committed, self.commit_prefix) {
                (false, _) => 0,
                (true, Some(words)) => words,
                (true, None) => self.d as u32 + 1,
            },
        }
    }
}

/// Random real inputs in `[-clip, clip]` with random weights, encoded.
pub fn random_inputs(cfg: &SimConfig) -> Vec<Vec<u64>> {
    let mut rng = ChaCha20Rng::seed_from_u64(cfg.seed ^ 0x1234_5678);
    (0..cfg.n)
        .map(|_| {
            let w = 1 + rng.next_u64() % 1000;
            let xs: Vec<f64> = (0..cfg.d)
                .map(|_| {
                    let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                    (2.0 * u - 1.0) * cfg.fixed_point.clip
                })
                .collect();
            encode_weighted(&xs, w, &cfg.fixed_point).unwrap_or_default()
        })
        .collect()
}

/// Per-participant bookkeeping.
pub struct Slot {
    /// The state machine (None before `advertise` or after a drop before it).
    pub session: Option<ParticipantSession>,
    rng: ChaCha20Rng,
    /// CPU time spent in this participant's handlers.
    pub time: Duration,
    /// Bytes this participant sent (encoded).
    pub sent: u64,
    /// Bytes this participant received (encoded).
    pub received: u64,
    /// The first error this participant returned.
    pub error: Option<SecAggError>,
}

/// A simulated session.
pub struct Sim {
    /// The configuration.
    pub cfg: SimConfig,
    /// The session configuration given to everyone.
    pub session: SessionConfig,
    /// Identity keys by id.
    pub identities: Vec<SigningKey>,
    /// The roster.
    pub roster: Roster,
    /// The coordinator.
    pub coordinator: CoordinatorSession,
    /// The participants, by id.
    pub slots: Vec<Slot>,
    /// Inputs by id.
    pub inputs: Vec<Vec<u64>>,
    /// Dropout schedule.
    pub drops: BTreeMap<u32, DropPoint>,
    /// Participants whose masked input arrives after the deadline.
    pub late_masked: BTreeSet<u32>,
    /// Messages the coordinator emitted and the next stage will deliver.
    pub outbox: Vec<Outgoing>,
    /// Errors the coordinator returned for incoming messages.
    pub rejected: Vec<(u32, SecAggError)>,
    /// What each participant released in the unmask stage.
    pub released: BTreeMap<u32, UnmaskResponse>,
    /// Every message participants sent, by sender (what the coordinator saw).
    pub transcript: BTreeMap<u32, Vec<Message>>,
    /// Masked inputs produced after the deadline (kept to show they stay masked).
    pub late_vectors: BTreeMap<u32, Vec<u64>>,
    /// Coordinator CPU time.
    pub coordinator_time: Duration,
    /// Coordinator CPU time in the final unmask (`close_stage` of `Unmask`).
    pub unmask_time: Duration,
    /// A byte to change in flight; `None` once applied.
    pub tamper: Option<Tamper>,
    /// Channel keys participants keep from earlier sessions, by id (none: a fresh one
    /// per session), as agents keep one per job.
    pub channels: BTreeMap<u32, std::sync::Arc<crate::channel::ChannelKey>>,
}

/// The outcome of [`Sim::run`].
#[derive(Debug)]
pub struct SimReport {
    /// The coordinator's result.
    pub output: Result<Output>,
    /// The plaintext sum over the output's survivors (when there is an output).
    pub expected: Option<Vec<u64>>,
}

fn par_map<T: Send, U: Send>(items: Vec<T>, threads: usize, f: impl Fn(T) -> U + Sync) -> Vec<U> {
    let threads = threads.max(1);
    if threads == 1 || items.len() < 2 {
        return items.into_iter().map(f).collect();
    }
    let per = items.len().div_ceil(threads);
    let mut chunks: Vec<Vec<T>> = Vec::new();
    let mut it = items.into_iter().peekable();
    while it.peek().is_some() {
        chunks.push(it.by_ref().take(per).collect());
    }
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|c| s.spawn(move || c.into_iter().map(f).collect::<Vec<U>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

impl Sim {
    /// Sets up identities, roster, configuration and coordinator.
    pub fn new(cfg: SimConfig, inputs: Vec<Vec<u64>>) -> Result<Self> {
        let mut rng = ChaCha20Rng::seed_from_u64(cfg.seed);
        let identities: Vec<SigningKey> =
            (0..cfg.n).map(|_| SigningKey::generate(&mut rng)).collect();
        let roster = Roster::new(
            identities
                .iter()
                .enumerate()
                .map(|(i, k)| (i as u32, k.verifying_key())),
        );
        let mut nonce = [0u8; 32];
        rng.fill_bytes(&mut nonce);
        let session = SessionConfig::new(&Self::binding(), nonce, cfg.params())?;
        let coordinator = CoordinatorSession::new(session.clone(), roster.clone())?;
        let slots = (0..cfg.n)
            .map(|i| Slot {
                session: None,
                rng: ChaCha20Rng::seed_from_u64(
                    cfg.seed.wrapping_mul(1_000_003).wrapping_add(i as u64 + 1),
                ),
                time: Duration::ZERO,
                sent: 0,
                received: 0,
                error: None,
            })
            .collect();
        Ok(Sim {
            cfg,
            session,
            identities,
            roster,
            coordinator,
            slots,
            inputs,
            drops: BTreeMap::new(),
            late_masked: BTreeSet::new(),
            outbox: Vec::new(),
            rejected: Vec::new(),
            released: BTreeMap::new(),
            transcript: BTreeMap::new(),
            late_vectors: BTreeMap::new(),
            coordinator_time: Duration::ZERO,
            unmask_time: Duration::ZERO,
            tamper: None,
            channels: BTreeMap::new(),
        })
    }

    /// An independent copy of the whole simulation in its current state
    /// (participants' secrets, coordinator, RNGs, counters), so that one key
    /// exchange can be continued under several dropout schedules: fork after
    /// [`Self::share_keys`], then set [`Self::drops`] on each copy. Simulation
    /// only: real participants cannot be copied.
    pub fn fork(&self) -> Sim {
        Sim {
            cfg: self.cfg.clone(),
            session: self.session.clone(),
            identities: self.identities.clone(),
            roster: self.roster.clone(),
            coordinator: self.coordinator.clone(),
            slots: self
                .slots
                .iter()
                .map(|s| Slot {
                    session: s.session.as_ref().map(ParticipantSession::fork_for_sim),
                    rng: {
                        let mut rng = ChaCha20Rng::from_seed(s.rng.get_seed());
                        rng.set_stream(s.rng.get_stream());
                        rng.set_word_pos(s.rng.get_word_pos());
                        rng
                    },
                    time: s.time,
                    sent: s.sent,
                    received: s.received,
                    error: s.error.clone(),
                })
                .collect(),
            inputs: self.inputs.clone(),
            drops: self.drops.clone(),
            late_masked: self.late_masked.clone(),
            outbox: self.outbox.clone(),
            rejected: self.rejected.clone(),
            released: self.released.clone(),
            transcript: self.transcript.clone(),
            late_vectors: self.late_vectors.clone(),
            coordinator_time: self.coordinator_time,
            unmask_time: self.unmask_time,
            tamper: self.tamper,
            channels: self.channels.clone(),
        }
    }

    /// The binding every honest participant computes.
    pub fn binding() -> SessionBinding {
        SessionBinding {
            federation_id: b"sim-federation".to_vec(),
            round: 7,
            model_hash: [0x42; 32],
        }
    }

    fn active_at(&self, id: u32, stage: Stage) -> bool {
        let dropped = match self.drops.get(&id) {
            None => false,
            Some(p) => {
                let last_ok = match p {
                    DropPoint::BeforeAdvertise => return false,
                    DropPoint::AfterAdvertise => Stage::Advertise,
                    DropPoint::AfterShareKeys => Stage::ShareKeys,
                    DropPoint::AfterMaskedInput => Stage::MaskedInput,
                    DropPoint::AfterConsistency => Stage::ConsistencyCheck,
                };
                stage > last_ok
            }
        };
        !dropped
    }

    /// Applies [`Self::tamper`] to `bytes` if it names this message.
    fn tamper_with(&mut self, stage: Stage, to_coordinator: bool, who: u32, bytes: &mut [u8]) {
        if let Some(t) = self.tamper
            && t.stage == stage
            && t.to_coordinator == to_coordinator
            && t.who == who
            && !bytes.is_empty()
        {
            let i = t.pos % bytes.len();
            bytes[i] ^= t.xor;
            self.tamper = None;
        }
    }

    fn deliver_to_coordinator(&mut self, from: u32, msg: Message) {
        let mut bytes = msg.encode();
        self.tamper_with(self.coordinator.stage(), true, from, &mut bytes);
        self.slots[from as usize].sent += bytes.len() as u64;
        self.transcript.entry(from).or_default().push(msg);
        let start = Instant::now();
        let r = Message::decode_for(&bytes, &self.session)
            .and_then(|m| self.coordinator.handle(from, &m));
        self.coordinator_time += start.elapsed();
        if let Err(e) = r {
            self.rejected.push((from, e));
        }
    }

    /// Closes the coordinator's stage; stores outgoing messages in the outbox.
    pub fn close(&mut self) -> Result<Option<Output>> {
        let start = Instant::now();
        let unmasking = self.coordinator.stage() == Stage::Unmask;
        let r = self.coordinator.close_stage();
        let el = start.elapsed();
        self.coordinator_time += el;
        if unmasking {
            self.unmask_time = el;
        }
        match r? {
            Step::Send(out) => {
                self.outbox = out;
                Ok(None)
            }
            Step::Finished(o) => Ok(Some(o)),
        }
    }

    /// Expands the outbox into `(recipient, encoded bytes)` for recipients active
    /// at `stage`, counting received bytes.
    fn take_outbox(&mut self, stage: Stage) -> Vec<(u32, Vec<u8>)> {
        let mut out = Vec::new();
        for o in std::mem::take(&mut self.outbox) {
            let (recipients, message) = o.into_parts();
            let bytes = message.encode();
            for r in recipients {
                out.push((r, bytes.clone()));
            }
        }
        out.retain(|(r, _)| (*r as usize) < self.slots.len() && self.active_at(*r, stage));
        for (r, b) in &mut out {
            self.tamper_with(stage, false, *r, b);
        }
        for (r, b) in &out {
            self.slots[*r as usize].received += b.len() as u64;
        }
        out
    }

    /// Runs the participants' handler on each delivered message in parallel.
    fn step<F>(&mut self, stage: Stage, f: F) -> Vec<(u32, Message)>
    where
        F: Fn(&mut ParticipantSession, &mut ChaCha20Rng, Message, &[u64]) -> Result<Message> + Sync,
    {
        let deliveries = self.take_outbox(stage);
        let mut by_id: BTreeMap<u32, Vec<Vec<u8>>> = BTreeMap::new();
        for (r, b) in deliveries {
            by_id.entry(r).or_default().push(b);
        }
        let session = &self.session;
        let inputs = &self.inputs;
        let work: Vec<(u32, &mut Slot, Vec<Vec<u8>>)> = self
            .slots
            .iter_mut()
            .enumerate()
            .filter_map(|(i, s)| by_id.remove(&(i as u32)).map(|m| (i as u32, s, m)))
            .collect();
        let replies = par_map(work, self.cfg.threads, |(id, slot, msgs)| {
            let mut out = Vec::new();
            let Some(p) = slot.session.as_mut() else {
                return out;
            };
            for bytes in msgs {
                let start = Instant::now();
                let empty: &[u64] = &[];
                let input = inputs
                    .get(id as usize)
                    .map(|v| v.as_slice())
                    .unwrap_or(empty);
                let r = Message::decode_for(&bytes, session)
                    .and_then(|m| f(p, &mut slot.rng, m, input));
                slot.time += start.elapsed();
                match r {
                    Ok(m) => out.push((id, m)),
                    Err(e) => {
                        if slot.error.is_none() {
                            slot.error = Some(e);
                        }
                    }
                }
            }
            out
        });
        replies.into_iter().flatten().collect()
    }

    /// Stage 0: participants not dropped before advertising start and advertise;
    /// the coordinator closes the stage.
    pub fn advertise(&mut self) -> Result<()> {
        let session = self.session.clone();
        let binding = Self::binding();
        for id in 0..self.cfg.n as u32 {
            if self.drops.get(&id) == Some(&DropPoint::BeforeAdvertise) {
                continue;
            }
            let slot = &mut self.slots[id as usize];
            let input = self
                .inputs
                .get(id as usize)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let start = Instant::now();
            let r = ParticipantSession::with_channel(
                session.clone(),
                &binding,
                id,
                self.identities[id as usize].clone(),
                self.roster.clone(),
                &self.cfg.policy,
                input,
                self.channels.get(&id).cloned(),
                &mut slot.rng,
            );
            slot.time += start.elapsed();
            match r {
                Ok((p, adv)) => {
                    slot.session = Some(p);
                    self.deliver_to_coordinator(id, Message::Advertise(adv));
                }
                Err(e) => slot.error = Some(e),
            }
        }
        self.close().map(|_| ())
    }

    /// Stage 1.
    pub fn share_keys(&mut self) -> Result<()> {
        let replies = self.step(Stage::ShareKeys, |p, rng, m, _| match m {
            Message::KeyList(k) => p.on_key_list(&k, rng).map(Message::ShareKeys),
            _ => Err(SecAggError::Malformed("unexpected message")),
        });
        for (id, m) in replies {
            self.deliver_to_coordinator(id, m);
        }
        self.close().map(|_| ())
    }

    /// Stage 2 (late masked inputs are delivered after the deadline).
    pub fn masked_input(&mut self) -> Result<()> {
        let replies = self.step(Stage::MaskedInput, |p, _, m, _| match m {
            Message::ShareBundle(b) => p.on_shares(&b).map(Message::MaskedInput),
            _ => Err(SecAggError::Malformed("unexpected message")),
        });
        let mut late = Vec::new();
        for (id, m) in replies {
            if self.late_masked.contains(&id) {
                late.push((id, m));
            } else {
                self.deliver_to_coordinator(id, m);
            }
        }
        let r = self.close();
        for (id, m) in late {
            if let Message::MaskedInput(v) = &m {
                self.late_vectors.insert(id, v.vector.clone());
            }
            self.deliver_to_coordinator(id, m);
        }
        r.map(|_| ())
    }

    /// Stage 3.
    pub fn consistency(&mut self) -> Result<()> {
        let replies = self.step(Stage::ConsistencyCheck, |p, _, m, _| match m {
            Message::SurvivorList(s) => p.on_survivors(&s).map(Message::ConsistencySignature),
            _ => Err(SecAggError::Malformed("unexpected message")),
        });
        for (id, m) in replies {
            self.deliver_to_coordinator(id, m);
        }
        self.close().map(|_| ())
    }

    /// Stage 4: participants answer (every copy of) their unmask requests; the
    /// coordinator reconstructs and outputs.
    pub fn unmask(&mut self) -> Result<Output> {
        self.collect_unmask();
        self.close()?.ok_or(SecAggError::Aborted)
    }

    /// The participants' half of stage 4: answer the unmask requests and feed
    /// the responses to the coordinator, without closing the stage (benchmarks
    /// time the coordinator's `close_stage` separately).
    pub fn collect_unmask(&mut self) {
        let replies = self.step(Stage::Unmask, |p, _, m, _| match m {
            Message::UnmaskRequest(r) => p.on_unmask_request(&r).map(Message::UnmaskResponse),
            _ => Err(SecAggError::Malformed("unexpected message")),
        });
        for (id, m) in replies {
            if let Message::UnmaskResponse(r) = &m
                && self.released.insert(id, r.clone()).is_some()
            {
                // Would be a second release: the invariant says impossible.
                self.rejected.push((id, SecAggError::AlreadyUnmasked));
            }
            self.deliver_to_coordinator(id, m);
        }
    }

    /// Runs all stages and compares with the plaintext sum over the survivors.
    pub fn run(&mut self) -> SimReport {
        let output = self
            .advertise()
            .and_then(|_| self.share_keys())
            .and_then(|_| self.masked_input())
            .and_then(|_| self.consistency())
            .and_then(|_| self.unmask());
        let expected = output
            .as_ref()
            .ok()
            .map(|o| self.plaintext_sum(&o.survivors));
        SimReport { output, expected }
    }

    /// `sum_{u in ids} x_u` mod 2^64.
    pub fn plaintext_sum(&self, ids: &[u32]) -> Vec<u64> {
        let mut s = vec![0u64; self.cfg.d + 1];
        for &u in ids {
            if let Some(x) = self.inputs.get(u as usize) {
                for (a, b) in s.iter_mut().zip(x) {
                    *a = a.wrapping_add(*b);
                }
            }
        }
        s
    }

    /// The participant with id `id`.
    pub fn participant(&self, id: u32) -> Option<&ParticipantSession> {
        self.slots.get(id as usize).and_then(|s| s.session.as_ref())
    }

    /// The first error participant `id` returned.
    pub fn error_of(&self, id: u32) -> Option<&SecAggError> {
        self.slots.get(id as usize).and_then(|s| s.error.as_ref())
    }
}

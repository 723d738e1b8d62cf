//! The coordinator's state machine.

use std::collections::{BTreeMap, HashMap, HashSet};

use curve25519_dalek::Scalar;
use x25519_dalek::PublicKey;
use zeroize::Zeroizing;

use crate::config::SessionConfig;
use crate::crypto;
use crate::error::{Result, SecAggError};
use crate::graph::{Graph, graph_seed};
use crate::messages::{
    Advertise, AdvertisedKeys, ConsistencySignature, KeyList, MaskedInput, Message, ShareBundle,
    ShareKeys, SurvivorList, UnmaskRequest, UnmaskResponse,
};
use crate::{Roster, Stage, shamir, verify_signature};

/// A message the caller must deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// The same message to every listed participant.
    Broadcast {
        /// Recipients.
        recipients: Vec<u32>,
        /// The message.
        message: Message,
    },
    /// A message for one participant.
    Unicast {
        /// Recipient.
        recipient: u32,
        /// The message.
        message: Message,
    },
}

impl Outgoing {
    /// Its recipients and its message, whichever way it is addressed: every transport
    /// encodes the message once and delivers it to each recipient.
    pub fn into_parts(self) -> (Vec<u32>, Message) {
        match self {
            Outgoing::Broadcast {
                recipients,
                message,
            } => (recipients, message),
            Outgoing::Unicast { recipient, message } => (vec![recipient], message),
        }
    }
}

/// The result of a successful session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// `sum_{u in U3} x_u` mod 2^64 (`d + 1` words; slot 0 is the total weight).
    pub sum: Vec<u64>,
    /// `sum_{u in U3} rho_u`, limb by limb: with `sum`, the opening of the sum of
    /// `commitments` ([`crate::commit::verify_sum`]).
    pub blinding_sum: Vec<u64>,
    /// U3's signed commitments, by id: what lets an agent check `sum` later.
    pub commitments: Vec<crate::commit::SignedCommitment>,
    /// U3: whose inputs the sum contains.
    pub survivors: Vec<u32>,
    /// Total weight (`sum[0]`).
    pub total_weight: u64,
    /// The survivors' signatures certifying U3 (the consistency check), for the record.
    pub survivor_signatures: SurvivorSignatures,
}

/// What certifies a session's survivor set U3: each signer's Ed25519 signature (by its
/// identity key) over [`crypto::consistency_transcript`]`(session_id, u1_digest, U3)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SurvivorSignatures {
    /// The hash of U1 the transcript binds.
    pub u1_digest: [u8; 32],
    /// Signer id -> signature, one per member of U3 that signed (at least the threshold).
    pub signatures: BTreeMap<u32, [u8; 64]>,
}

/// What [`CoordinatorSession::close_stage`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Deliver these, then wait for the next stage's messages.
    Send(Vec<Outgoing>),
    /// The aggregate.
    Finished(Output),
}

/// The coordinator's side of one session. It holds no secret of its own: only
/// ciphertexts it cannot read until the unmask stage, then the shares it is
/// entitled to.
///
/// `on_*` handlers take the transport-authenticated sender id and the decoded
/// message. A rejected message (wrong stage, late, duplicate, not invited,
/// other session, bad signature, malformed) returns an error and leaves the
/// session as it was. [`Self::close_stage`] ends the current stage (the caller's
/// deadline fired or [`Self::all_arrived`] is true).
#[derive(Clone)]
pub struct CoordinatorSession {
    config: SessionConfig,
    roster: Roster,
    stage: Stage,
    advertised: BTreeMap<u32, AdvertisedKeys>,
    /// Every advertised public key (`c` and `s`), to reject reuse.
    advertised_keys: HashSet<[u8; 32]>,
    graph: Option<Graph>,
    u1: Vec<u32>,
    share_keys: BTreeMap<u32, ShareKeys>,
    u2: Vec<u32>,
    /// Who sent a masked input (U3 once the stage closes); the inputs themselves are
    /// summed as they arrive (`masked_sum`), not kept: n vectors of d words each.
    masked: BTreeMap<u32, ()>,
    masked_sum: Vec<u64>,
    commitments: BTreeMap<u32, crate::commit::SignedCommitment>,
    u3: Vec<u32>,
    signatures: BTreeMap<u32, [u8; 64]>,
    u4: Vec<u32>,
    dropped: Vec<u32>,
    responses: BTreeMap<u32, UnmaskResponse>,
}

/// Prints stage and set sizes only: never shares or vectors.
impl std::fmt::Debug for CoordinatorSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoordinatorSession")
            .field("stage", &self.stage)
            .field("u1", &self.u1.len())
            .field("u2", &self.u2.len())
            .field("u3", &self.u3.len())
            .field("signers", &self.u4.len())
            .finish_non_exhaustive()
    }
}

impl CoordinatorSession {
    /// Starts a session over a validated configuration. Every invited id must
    /// be in the roster.
    pub fn new(config: SessionConfig, roster: Roster) -> Result<Self> {
        config.validate()?;
        if let Some(&id) = config
            .params
            .participants
            .iter()
            .find(|&&id| roster.get(id).is_none())
        {
            return Err(SecAggError::NotInvited(id));
        }
        Ok(CoordinatorSession {
            config,
            roster,
            stage: Stage::Advertise,
            advertised: BTreeMap::new(),
            advertised_keys: HashSet::new(),
            graph: None,
            u1: Vec::new(),
            share_keys: BTreeMap::new(),
            u2: Vec::new(),
            masked: BTreeMap::new(),
            masked_sum: Vec::new(),
            commitments: BTreeMap::new(),
            u3: Vec::new(),
            signatures: BTreeMap::new(),
            u4: Vec::new(),
            dropped: Vec::new(),
            responses: BTreeMap::new(),
        })
    }

    /// The current stage.
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// The configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// Who may still send a message in the current stage.
    pub fn awaiting(&self) -> Vec<u32> {
        fn missing<V>(pool: &[u32], got: &BTreeMap<u32, V>) -> Vec<u32> {
            pool.iter()
                .copied()
                .filter(|id| !got.contains_key(id))
                .collect()
        }
        match self.stage {
            Stage::Advertise => missing(&self.config.params.participants, &self.advertised),
            Stage::ShareKeys => missing(&self.u1, &self.share_keys),
            Stage::MaskedInput => missing(&self.u2, &self.masked),
            Stage::ConsistencyCheck => missing(&self.u3, &self.signatures),
            Stage::Unmask => missing(&self.u4, &self.responses),
            Stage::Finished | Stage::Aborted => Vec::new(),
        }
    }

    /// Whether every expected message of the current stage has arrived, so the
    /// caller may close it before the deadline.
    pub fn all_arrived(&self) -> bool {
        self.awaiting().is_empty()
    }

    fn expect(&self, stage: Stage, session_id: &[u8; 32], from: u32, claimed: u32) -> Result<()> {
        if self.stage == Stage::Aborted {
            return Err(SecAggError::Aborted);
        }
        if stage < self.stage {
            return Err(SecAggError::LateMessage(stage));
        }
        if stage > self.stage {
            return Err(SecAggError::WrongStage {
                expected: self.stage,
                got: stage,
            });
        }
        if session_id != &self.config.session_id {
            return Err(SecAggError::WrongSession);
        }
        if from != claimed {
            return Err(SecAggError::SenderMismatch {
                transport: from,
                claimed,
            });
        }
        if self
            .config
            .params
            .participants
            .binary_search(&from)
            .is_err()
        {
            return Err(SecAggError::NotInvited(from));
        }
        Ok(())
    }

    fn share_threshold(&self) -> usize {
        self.config.params.share_threshold() as usize
    }

    fn group(&self, id: u32) -> Vec<u32> {
        self.graph.as_ref().map(|g| g.group(id)).unwrap_or_default()
    }

    /// Stage 0 message: verifies the signature and rejects low-order or
    /// already-advertised keys.
    pub fn on_advertise(&mut self, from: u32, msg: &Advertise) -> Result<()> {
        self.expect(Stage::Advertise, &msg.session_id, from, msg.from)?;
        if self.advertised.contains_key(&from) {
            return Err(SecAggError::Duplicate(from));
        }
        // A commitment that is not a group element could never open: refused here, naming
        // its sender, rather than after the sum is unmasked.
        if self.config.params.committed() {
            if curve25519_dalek::ristretto::CompressedRistretto(msg.commitment)
                .decompress()
                .is_none()
            {
                return Err(SecAggError::InvalidInput(
                    "the commitment is not a group element",
                ));
            }
        } else if msg.commitment != [0; 32] {
            return Err(SecAggError::InvalidInput(
                "a commitment in a session without commitments",
            ));
        }
        let t = crypto::advertise_transcript(
            &msg.session_id,
            from,
            &msg.c_pk,
            &msg.s_pk,
            &msg.commitment,
        );
        if !verify_signature(&self.roster, from, &t, &msg.signature) {
            return Err(SecAggError::BadSignature(from));
        }
        if !crypto::is_canonical_key(&msg.c_pk) || !crypto::is_canonical_key(&msg.s_pk) {
            return Err(SecAggError::NonCanonicalKey(from));
        }
        if !crypto::is_contributory_key(&msg.c_pk) || !crypto::is_contributory_key(&msg.s_pk) {
            return Err(SecAggError::NonContributoryKey(from));
        }
        if msg.c_pk == msg.s_pk
            || self.advertised_keys.contains(&msg.c_pk)
            || self.advertised_keys.contains(&msg.s_pk)
        {
            return Err(SecAggError::DuplicateKey(from));
        }
        self.advertised_keys.insert(msg.c_pk);
        self.advertised_keys.insert(msg.s_pk);
        self.advertised.insert(
            from,
            AdvertisedKeys {
                id: from,
                c_pk: msg.c_pk,
                s_pk: msg.s_pk,
                commitment: msg.commitment,
                signature: msg.signature,
            },
        );
        Ok(())
    }

    /// Stage 1 message: the sender must be in U1 and address exactly its sent
    /// recipients ([`Graph::sent_recipients`]: its share group minus itself
    /// minus its derived set), in order, once each. A ciphertext for a derived
    /// recipient, or a missing one for a sent recipient, is rejected.
    pub fn on_share_keys(&mut self, from: u32, msg: &ShareKeys) -> Result<()> {
        self.expect(Stage::ShareKeys, &msg.session_id, from, msg.from)?;
        if self.u1.binary_search(&from).is_err() {
            return Err(SecAggError::NotASurvivor(from));
        }
        if self.share_keys.contains_key(&from) {
            return Err(SecAggError::Duplicate(from));
        }
        let expected = self
            .graph
            .as_ref()
            .map(|g| g.sent_recipients(from, self.share_threshold()))
            .unwrap_or_default();
        if !expected.into_iter().eq(msg.shares.iter().map(|s| s.0)) {
            return Err(SecAggError::InvalidList(
                "share recipients differ from the sender's sent recipients",
            ));
        }
        self.share_keys.insert(from, msg.clone());
        Ok(())
    }

    /// Stage 2 message: a masked vector of exactly `d + 1` words from U2.
    pub fn on_masked_input(&mut self, from: u32, msg: &MaskedInput) -> Result<()> {
        self.expect(Stage::MaskedInput, &msg.session_id, from, msg.from)?;
        if self.u2.binary_search(&from).is_err() {
            return Err(SecAggError::NotASurvivor(from));
        }
        if self.masked.contains_key(&from) {
            return Err(SecAggError::Duplicate(from));
        }
        if msg.vector.len() != self.config.params.masked_words() {
            return Err(SecAggError::InvalidInput(
                "vector length differs from d + 1 and the blinding limbs",
            ));
        }
        if self.config.params.committed() {
            // Its commitment came signed with its keys (checked at the advertisement).
            let Some(a) = self.advertised.get(&from) else {
                return Err(SecAggError::NotASurvivor(from));
            };
            self.commitments.insert(
                from,
                crate::commit::SignedCommitment {
                    from,
                    c_pk: a.c_pk,
                    s_pk: a.s_pk,
                    commitment: a.commitment,
                    signature: a.signature,
                },
            );
        }
        self.add_masked(from, &msg.vector);
        Ok(())
    }

    fn add_masked(&mut self, from: u32, vector: &[u64]) {
        if self.masked_sum.is_empty() {
            self.masked_sum = vec![0; vector.len()];
        }
        for (a, b) in self.masked_sum.iter_mut().zip(vector) {
            *a = a.wrapping_add(*b);
        }
        self.masked.insert(from, ());
    }

    /// Stage 3 message: a valid signature over `(session, U3)` from U3.
    pub fn on_consistency(&mut self, from: u32, msg: &ConsistencySignature) -> Result<()> {
        self.expect(Stage::ConsistencyCheck, &msg.session_id, from, msg.from)?;
        if self.u3.binary_search(&from).is_err() {
            return Err(SecAggError::NotASurvivor(from));
        }
        if self.signatures.contains_key(&from) {
            return Err(SecAggError::Duplicate(from));
        }
        let digest =
            self.graph
                .as_ref()
                .map(|g| *g.u1_digest())
                .ok_or(SecAggError::InvalidList(
                    "no graph: the key list was never accepted",
                ))?;
        let t = crypto::consistency_transcript(&self.config.session_id, &digest, &self.u3);
        if !verify_signature(&self.roster, from, &t, &msg.signature) {
            return Err(SecAggError::BadSignature(from));
        }
        self.signatures.insert(from, msg.signature);
        Ok(())
    }

    /// Stage 4 message: exactly the `b`-shares of the responder's alive group
    /// members and the `s`-shares of its dead ones, as canonical field elements.
    pub fn on_unmask(&mut self, from: u32, msg: &UnmaskResponse) -> Result<()> {
        self.expect(Stage::Unmask, &msg.session_id, from, msg.from)?;
        if self.u4.binary_search(&from).is_err() {
            return Err(SecAggError::NotASurvivor(from));
        }
        if self.responses.contains_key(&from) {
            return Err(SecAggError::Duplicate(from));
        }
        let group = self.group(from);
        let alive = group
            .iter()
            .copied()
            .filter(|v| self.u3.binary_search(v).is_ok());
        if !alive.eq(msg.b_shares.iter().map(|s| s.0)) {
            return Err(SecAggError::InvalidList(
                "b-shares do not match the alive group members",
            ));
        }
        let dead = group
            .iter()
            .copied()
            .filter(|v| self.dropped.binary_search(v).is_ok());
        if !dead.eq(msg.s_shares.iter().map(|s| s.0)) {
            return Err(SecAggError::InvalidList(
                "s-shares do not match the dead group members",
            ));
        }
        let canonical = |b: &[u8; 32]| bool::from(Scalar::from_canonical_bytes(*b).is_some());
        if !msg
            .b_shares
            .iter()
            .chain(&msg.s_shares)
            .all(|(_, b)| canonical(b))
        {
            return Err(SecAggError::Malformed("share is not a field element"));
        }
        self.responses.insert(from, msg.clone());
        Ok(())
    }

    /// Aborts the session (e.g. the round was cancelled). Idempotent.
    pub fn abort(&mut self) {
        self.stage = Stage::Aborted;
        self.share_keys.clear();
        self.masked.clear();
        self.masked_sum = Vec::new();
        self.responses.clear();
    }

    fn require(&mut self, stage: Stage, have: usize) -> Result<()> {
        let need = self.config.params.threshold as usize;
        if have < need {
            self.abort();
            return Err(SecAggError::TooFewParticipants { stage, have, need });
        }
        Ok(())
    }

    /// Ends the current stage: computes the survivor set of the stage (aborting
    /// with [`SecAggError::TooFewParticipants`] below `t`) and returns the
    /// messages opening the next stage, or the [`Output`] after the unmask stage.
    /// Messages of a closed stage are rejected as late from then on.
    pub fn close_stage(&mut self) -> Result<Step> {
        let sid = self.config.session_id;
        match self.stage {
            Stage::Advertise => {
                self.require(Stage::Advertise, self.advertised.len())?;
                self.u1 = self.advertised.keys().copied().collect();
                let entries: Vec<AdvertisedKeys> = self.advertised.values().cloned().collect();
                let seed = graph_seed(&sid, entries.iter().map(|e| (e.id, &e.c_pk, &e.s_pk)));
                self.graph = Some(Graph::build(self.config.params.graph, &self.u1, seed));
                self.stage = Stage::ShareKeys;
                Ok(Step::Send(vec![Outgoing::Broadcast {
                    recipients: self.u1.clone(),
                    message: Message::KeyList(KeyList {
                        session_id: sid,
                        entries,
                    }),
                }]))
            }
            Stage::ShareKeys => {
                self.require(Stage::ShareKeys, self.share_keys.len())?;
                self.u2 = self.share_keys.keys().copied().collect();
                let mut bundles: BTreeMap<u32, (Vec<_>, Vec<u32>)> = self
                    .u2
                    .iter()
                    .map(|&v| (v, (Vec::new(), Vec::new())))
                    .collect();
                let t = self.share_threshold();
                let graph = self.graph.as_ref().ok_or(SecAggError::Aborted)?;
                // Ascending senders keep both lists strictly increasing.
                for (&from, msg) in &self.share_keys {
                    for (to, ct) in &msg.shares {
                        if let Some(b) = bundles.get_mut(to) {
                            b.0.push((from, *ct));
                        }
                    }
                    for to in graph.derived_recipients(from, t) {
                        if let Some(b) = bundles.get_mut(&to) {
                            b.1.push(from);
                        }
                    }
                }
                self.share_keys.clear();
                self.stage = Stage::MaskedInput;
                Ok(Step::Send(
                    bundles
                        .into_iter()
                        .map(|(to, (shares, derived))| Outgoing::Unicast {
                            recipient: to,
                            message: Message::ShareBundle(ShareBundle {
                                session_id: sid,
                                to,
                                shares,
                                derived,
                            }),
                        })
                        .collect(),
                ))
            }
            Stage::MaskedInput => {
                self.require(Stage::MaskedInput, self.masked.len())?;
                self.u3 = self.masked.keys().copied().collect();
                self.stage = Stage::ConsistencyCheck;
                Ok(Step::Send(vec![Outgoing::Broadcast {
                    recipients: self.u3.clone(),
                    message: Message::SurvivorList(SurvivorList {
                        session_id: sid,
                        survivors: self.u3.clone(),
                    }),
                }]))
            }
            Stage::ConsistencyCheck => {
                self.require(Stage::ConsistencyCheck, self.signatures.len())?;
                self.u4 = self.signatures.keys().copied().collect();
                self.dropped = self
                    .u2
                    .iter()
                    .copied()
                    .filter(|v| self.u3.binary_search(v).is_err())
                    .collect();
                self.stage = Stage::Unmask;
                let request = |signatures| {
                    Message::UnmaskRequest(UnmaskRequest {
                        session_id: sid,
                        survivors: self.u3.clone(),
                        dropped: self.dropped.clone(),
                        signatures,
                    })
                };
                let all: Vec<(u32, [u8; 64])> =
                    self.signatures.iter().map(|(&k, &v)| (k, v)).collect();
                // A participant counts the first quorum of its group's signers (all of whom
                // are in U3) and no more: those are all it is sent.
                let quorum = self.config.params.share_threshold() as usize;
                let out = match self.config.params.graph {
                    crate::GraphKind::Complete => vec![Outgoing::Broadcast {
                        recipients: self.u4.clone(),
                        message: request(all.into_iter().take(quorum).collect()),
                    }],
                    crate::GraphKind::Harary { .. } => self
                        .u4
                        .iter()
                        .map(|&v| {
                            let g = self.group(v);
                            let sigs = all
                                .iter()
                                .filter(|s| g.binary_search(&s.0).is_ok())
                                .take(quorum)
                                .copied()
                                .collect();
                            Outgoing::Unicast {
                                recipient: v,
                                message: request(sigs),
                            }
                        })
                        .collect(),
                };
                Ok(Step::Send(out))
            }
            Stage::Unmask => match self.unmask() {
                Ok(output) => {
                    self.stage = Stage::Finished;
                    self.responses.clear();
                    self.masked.clear();
                    self.masked_sum = Vec::new();
                    Ok(Step::Finished(output))
                }
                Err(e) => {
                    self.abort();
                    Err(e)
                }
            },
            Stage::Finished => Err(SecAggError::LateMessage(Stage::Finished)),
            Stage::Aborted => Err(SecAggError::Aborted),
        }
    }

    /// Rebuilds `b_u` for every survivor and `s_v^SK` for every dropped `v`
    /// from `t_share` responders of their group (Lagrange coefficients cached
    /// per responder set), then removes the masks.
    fn unmask(&self) -> Result<Output> {
        let sid = self.config.session_id;
        let tk = self.config.params.share_threshold() as usize;
        let responders: Vec<u32> = self.responses.keys().copied().collect();
        let mut lagrange: HashMap<Vec<u32>, Vec<Scalar>> = HashMap::new();
        // The first `tk` responders in `owner`'s group, and where each keeps
        // its share for `owner` inside its response list.
        let mut rebuild = |owner: u32, pick_b: bool| -> Result<Zeroizing<Scalar>> {
            let group = self.group(owner);
            let holders: Vec<u32> = responders
                .iter()
                .copied()
                .filter(|r| group.binary_search(r).is_ok())
                .take(tk)
                .collect();
            if holders.len() < tk {
                return Err(SecAggError::TooFewParticipants {
                    stage: Stage::Unmask,
                    have: holders.len(),
                    need: tk,
                });
            }
            let mut ys = Vec::with_capacity(tk);
            for h in &holders {
                let resp = self
                    .responses
                    .get(h)
                    .ok_or(SecAggError::ReconstructionFailed(owner))?;
                let list = if pick_b {
                    &resp.b_shares
                } else {
                    &resp.s_shares
                };
                let idx = list
                    .binary_search_by_key(&owner, |s| s.0)
                    .map_err(|_| SecAggError::ReconstructionFailed(owner))?;
                let y = Option::<Scalar>::from(Scalar::from_canonical_bytes(list[idx].1))
                    .ok_or(SecAggError::ReconstructionFailed(owner))?;
                ys.push(y);
            }
            let lambdas = lagrange
                .entry(holders)
                .or_insert_with_key(|h| shamir::lagrange_at_zero(h));
            let secret = Zeroizing::new(shamir::combine(lambdas, &ys));
            crypto::wipe(&mut ys);
            Ok(secret)
        };

        let words = self.config.params.masked_words();
        if let Some(u) = self.u3.iter().find(|u| !self.masked.contains_key(u)) {
            return Err(SecAggError::ReconstructionFailed(*u));
        }
        let mut sum = self.masked_sum.clone();
        sum.resize(words, 0);
        for &u in &self.u3 {
            let b = rebuild(u, true)?;
            let seed = Zeroizing::new(crypto::self_mask_seed(&b, &sid, u));
            crypto::prg_accumulate(&seed, &mut sum, true);
        }
        let graph = self.graph.as_ref().ok_or(SecAggError::Aborted)?;
        // Peers' mask keys, converted once each (only needed if someone died).
        let prepared: Vec<crypto::PreparedKey> = if self.dropped.is_empty() {
            Vec::new()
        } else {
            self.u3
                .iter()
                .map(|u| {
                    self.advertised
                        .get(u)
                        .map(|a| crypto::PreparedKey::new(&a.s_pk))
                        .ok_or(SecAggError::ReconstructionFailed(*u))
                })
                .collect::<Result<_>>()?
        };
        // Rebuild every dropped participant's mask key first. From here on these
        // keys are public to the coordinator (revealed by design), so the
        // agreements below run in variable time, grouped by survivor so one
        // precomputed table per survivor key serves all its dead neighbours.
        let mut dead: Vec<(u32, crypto::PreparedSecret)> = Vec::with_capacity(self.dropped.len());
        for &v in &self.dropped {
            let s = rebuild(v, false)?;
            let adv = self
                .advertised
                .get(&v)
                .ok_or(SecAggError::ReconstructionFailed(v))?;
            if PublicKey::from(&crypto::x25519_secret(&s)).to_bytes() != adv.s_pk {
                return Err(SecAggError::ReconstructionFailed(v));
            }
            dead.push((v, crypto::PreparedSecret::new(&s.to_bytes())));
        }
        let mut ids: Vec<u32> = Vec::with_capacity(dead.len());
        let mut secrets: Vec<&crypto::PreparedSecret> = Vec::with_capacity(dead.len());
        for (&u, key) in self.u3.iter().zip(&prepared) {
            ids.clear();
            secrets.clear();
            for (v, s) in &dead {
                if graph.adjacent(u, *v) {
                    ids.push(*v);
                    secrets.push(s);
                }
            }
            if ids.is_empty() {
                continue;
            }
            let shared = crypto::x25519_revealed_batch(key, &secrets);
            for (&v, dh) in ids.iter().zip(shared) {
                let dh = dh.ok_or(SecAggError::NonContributoryKey(u))?;
                let seed = Zeroizing::new(crypto::pairwise_mask_seed(&dh, &sid, u, v));
                // u added +PRG if u < v and -PRG if u > v: undo it.
                crypto::prg_accumulate(&seed, &mut sum, u < v);
            }
        }
        let blinding_sum = sum.split_off(self.config.params.words());
        // Every masked input of a committed session came with its commitment (none
        // otherwise), so U3's are all there.
        let commitments = self
            .u3
            .iter()
            .filter_map(|u| self.commitments.get(u).cloned())
            .collect();
        Ok(Output {
            total_weight: sum[0],
            sum,
            blinding_sum,
            commitments,
            survivors: self.u3.clone(),
            survivor_signatures: SurvivorSignatures {
                u1_digest: *graph.u1_digest(),
                signatures: self.signatures.clone(),
            },
        })
    }

    /// U1, U2, U3 and the signers of U3 so far (for logging and tests).
    pub fn survivor_sets(&self) -> [&[u32]; 4] {
        [&self.u1, &self.u2, &self.u3, &self.u4]
    }

    /// Hands one decoded participant message to the matching stage handler: the one
    /// dispatch every transport uses, so none can route a message to the wrong stage.
    pub fn handle(&mut self, from: u32, msg: &crate::messages::Message) -> Result<()> {
        use crate::messages::Message;
        match msg {
            Message::Advertise(m) => self.on_advertise(from, m),
            Message::ShareKeys(m) => self.on_share_keys(from, m),
            Message::MaskedInput(m) => self.on_masked_input(from, m),
            Message::ConsistencySignature(m) => self.on_consistency(from, m),
            Message::UnmaskResponse(m) => self.on_unmask(from, m),
            _ => Err(SecAggError::Malformed("not a participant message")),
        }
    }
}

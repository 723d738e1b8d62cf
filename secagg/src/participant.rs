//! The participant's state machine.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Arc;

use curve25519_dalek::Scalar;
use ed25519_dalek::{Signer, SigningKey};
use rand_core::CryptoRng;
use x25519_dalek::PublicKey;
use zeroize::{Zeroize, Zeroizing};

use crate::channel::ChannelKey;
use crate::config::{ParticipantPolicy, SessionBinding, SessionConfig};
use crate::crypto::{self, SHARE_PLAINTEXT_LEN};
use crate::error::{Result, SecAggError};
use crate::fixed_point::add_dp_noise;
use crate::graph::{Graph, graph_seed};
use crate::messages::{
    Advertise, ConsistencySignature, KeyList, MaskedInput, ShareBundle, ShareKeys, SurvivorList,
    UnmaskRequest, UnmaskResponse,
};
use crate::{Roster, Stage, shamir, strictly_increasing, verify_all};

/// What we keep about a neighbour after the key list.
#[derive(Clone)]
struct Peer {
    /// Key for decrypting the shares it sends us.
    recv_key: Zeroizing<[u8; 32]>,
    /// Seed of our pairwise mask.
    mask_seed: Zeroizing<[u8; 32]>,
    /// If we are in the peer's derived set: our shares of its `b` and `s^SK`,
    /// derived from our `c` agreement (kept only if it turns out to be in U2).
    derived: Option<(Zeroizing<Scalar>, Zeroizing<Scalar>)>,
}

/// One participant's side of one session.
///
/// Each `on_*` method consumes the coordinator's message for the current stage
/// and returns the participant's reply. A message for another stage or session
/// is rejected without changing state; a message whose content is wrong (bad
/// signature, forged key, failed authentication, inconsistent survivor lists)
/// aborts the session for good, and nothing more is released.
pub struct ParticipantSession {
    config: SessionConfig,
    id: u32,
    identity: SigningKey,
    roster: Roster,
    stage: Stage,
    /// The channel key, this session's own or the job's ([`crate::channel`]).
    channel: Arc<ChannelKey>,
    s_sk: Zeroizing<Scalar>,
    c_pk: [u8; 32],
    s_pk: [u8; 32],
    b: Zeroizing<Scalar>,
    /// What this participant adds before masking: its input, the noise drawn for it and,
    /// in a committed session, the blinding limbs. Fixed when the session starts, because
    /// the commitment to it is part of the signed advertisement.
    unmasked: Zeroizing<Vec<u64>>,
    /// The commitment in our advertisement (zeros in a session without commitments).
    commitment: [u8; 32],
    graph: Option<Graph>,
    group: Vec<u32>,
    peers: BTreeMap<u32, Peer>,
    /// Shares we hold, by owner: `(b-share, s-share)`. Ours included.
    held: BTreeMap<u32, (Scalar, Scalar)>,
    /// Our view of U2 within our group (ourselves included).
    u2: Vec<u32>,
    /// The U3 we signed.
    u3: Vec<u32>,
    /// This participant's policy: its floor on |U3|, and the SecAgg+ privacy bound it
    /// checks again against the key list's size.
    policy: ParticipantPolicy,
}

impl fmt::Debug for ParticipantSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParticipantSession")
            .field("id", &self.id)
            .field("stage", &self.stage)
            .field("group_size", &self.group.len())
            .finish_non_exhaustive()
    }
}

impl Drop for ParticipantSession {
    fn drop(&mut self) {
        self.wipe_shares();
    }
}

impl ParticipantSession {
    /// Starts a session: validates the coordinator's configuration, checks it
    /// against `policy` and against the participant's own `binding` (a different
    /// global model gives a different session id), checks `input` (`d + 1` words,
    /// slot 0 the weight, e.g. from [`crate::encode_weighted`]), draws its noise
    /// and, in a committed session, commits to it ([`crate::commit`]), then draws
    /// the two X25519 key pairs and returns the signed [`Advertise`].
    ///
    /// Why the commitment rides in the advertisement: one signature then covers the
    /// keys and the commitment, and every member checks it with the key list, so an
    /// agent that took part in a session holds every survivor's signed commitment
    /// already when a later task asks it to check that session's sum.
    #[allow(clippy::too_many_arguments)]
    pub fn new<R: CryptoRng + ?Sized>(
        config: SessionConfig,
        binding: &SessionBinding,
        id: u32,
        identity: SigningKey,
        roster: Roster,
        policy: &ParticipantPolicy,
        input: &[u64],
        rng: &mut R,
    ) -> Result<(Self, Advertise)> {
        Self::with_channel(
            config, binding, id, identity, roster, policy, input, None, rng,
        )
    }

    /// [`Self::new`] with the job's channel key (`None`: a fresh one for this session
    /// only), so that the agreements it remembers from the job's earlier sessions are not
    /// made again ([`crate::channel`]).
    #[allow(clippy::too_many_arguments)]
    pub fn with_channel<R: CryptoRng + ?Sized>(
        config: SessionConfig,
        binding: &SessionBinding,
        id: u32,
        identity: SigningKey,
        roster: Roster,
        policy: &ParticipantPolicy,
        input: &[u64],
        channel: Option<Arc<ChannelKey>>,
        rng: &mut R,
    ) -> Result<(Self, Advertise)> {
        config.validate()?;
        policy.check(&config.params)?;
        config.check_binding(binding)?;
        if config.params.participants.binary_search(&id).is_err() {
            return Err(SecAggError::NotInvited(id));
        }
        if roster.get(id) != Some(&identity.verifying_key()) {
            return Err(SecAggError::NotInvited(id));
        }
        let (unmasked, commitment) = Self::commit_input(&config, input, rng)?;
        let channel = channel.unwrap_or_else(|| Arc::new(ChannelKey::generate(rng)));
        let s_sk = Zeroizing::new(Scalar::random(rng));
        let c_pk = channel.public();
        let s_pk = PublicKey::from(&crypto::x25519_secret(&s_sk)).to_bytes();
        let transcript =
            crypto::advertise_transcript(&config.session_id, id, &c_pk, &s_pk, &commitment);
        let signature = identity.sign(&transcript).to_bytes();
        let adv = Advertise {
            session_id: config.session_id,
            from: id,
            c_pk,
            s_pk,
            commitment,
            signature,
        };
        let session = ParticipantSession {
            config,
            id,
            identity,
            roster,
            stage: Stage::Advertise,
            channel,
            s_sk,
            c_pk,
            s_pk,
            b: Zeroizing::new(Scalar::ZERO),
            unmasked,
            commitment,
            graph: None,
            group: Vec::new(),
            peers: BTreeMap::new(),
            held: BTreeMap::new(),
            u2: Vec::new(),
            u3: Vec::new(),
            policy: policy.clone(),
        };
        Ok((session, adv))
    }

    /// A copy of this state machine, secrets included, for the in-memory
    /// simulation only ([`crate::sim::Sim::fork`] measures several dropout
    /// schedules from one key exchange). Deliberately not `Clone`: two copies
    /// of a live participant could answer two unmask requests.
    pub(crate) fn fork_for_sim(&self) -> Self {
        ParticipantSession {
            config: self.config.clone(),
            id: self.id,
            identity: self.identity.clone(),
            roster: self.roster.clone(),
            stage: self.stage,
            channel: self.channel.clone(),
            s_sk: self.s_sk.clone(),
            c_pk: self.c_pk,
            s_pk: self.s_pk,
            b: self.b.clone(),
            unmasked: self.unmasked.clone(),
            commitment: self.commitment,
            graph: self.graph.clone(),
            group: self.group.clone(),
            peers: self.peers.clone(),
            held: self.held.clone(),
            u2: self.u2.clone(),
            u3: self.u3.clone(),
            policy: self.policy.clone(),
        }
    }

    /// The stage this participant is in (the one whose closing message it awaits).
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// This participant's id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The session configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    fn expect(&self, stage: Stage, session_id: &[u8; 32]) -> Result<()> {
        if self.stage == Stage::Aborted {
            return Err(SecAggError::Aborted);
        }
        if stage == Stage::Unmask && self.stage == Stage::Finished {
            return Err(SecAggError::AlreadyUnmasked);
        }
        if self.stage != stage {
            return Err(SecAggError::WrongStage {
                expected: self.stage,
                got: stage,
            });
        }
        if session_id != &self.config.session_id {
            return Err(SecAggError::WrongSession);
        }
        Ok(())
    }

    fn abort<T>(&mut self, e: SecAggError) -> Result<T> {
        self.stage = Stage::Aborted;
        self.wipe_shares();
        Err(e)
    }

    fn wipe_shares(&mut self) {
        for (b, s) in self.held.values_mut() {
            b.zeroize();
            s.zeroize();
        }
        self.held.clear();
        self.peers.clear();
        self.b.zeroize();
        self.s_sk.zeroize();
    }

    fn share_threshold(&self) -> usize {
        self.config.params.share_threshold() as usize
    }

    /// Stage 1: checks U1 (at least `t` entries, all invited, signatures valid for
    /// every key this participant will use, no duplicate or low-order keys, its
    /// own keys unchanged), Shamir-shares `b_u` and `s_u^SK` over its share group
    /// and encrypts each pair to its recipient, except for the `t - 1`
    /// recipients whose shares are derived.
    ///
    /// # Derived shares
    ///
    /// With threshold `t` each sharing polynomial has degree `t - 1`, so the
    /// secret `p(0) = S` and the shares at `t - 1` points determine it. For the
    /// recipients `v` in `D_u` ([`Graph::derived_recipients`]: the `t - 1`
    /// share-group members following `u` in id order, wrapping round) the share
    /// is not drawn and sent but *derived*: `r_{u,v}` =
    /// [`crypto::derived_shares`] of the X25519 agreement of `u`'s and `v`'s
    /// `c` keys (the share-encryption keys), bound to the session, to `u`, to
    /// `v` and to which secret. `u` interpolates the polynomial through `(0, S)`
    /// and the `t - 1` points `(x_v, r_{u,v})` ([`shamir::complete`], barycentric
    /// weights computed once per dealer and group) and sends only the other
    /// evaluations, encrypted as before; `v` recomputes `r_{u,v}` itself.
    ///
    /// Security: the `r_{u,v}` are pseudorandom field elements (HKDF output of
    /// a Diffie-Hellman secret, reduced from 512 bits), known only to `u` and
    /// `v` (the coordinator holds neither `c` secret) and chosen independently
    /// of `S`. For a fixed `S`, the polynomial of degree `t - 1` with `p(0) = S`
    /// and the values at the `t - 1` points of `D_u` correspond one to one, so
    /// drawing those values (pseudo)uniformly gives a (pseudo)uniform such
    /// polynomial, exactly as drawing its `t - 1` random coefficients does: the
    /// result is an ordinary `t`-of-`n` Shamir sharing, any `t - 1` shares
    /// (derived ones included) reveal nothing about `S`, and any `t`
    /// reconstruct it. A colluding `v` learns its own
    /// share only, as it would have by decrypting it. Nothing else changes:
    /// the shares are held, released and (for `s`, against the advertised key)
    /// checked exactly as sent ones.
    pub fn on_key_list<R: CryptoRng + ?Sized>(
        &mut self,
        msg: &KeyList,
        rng: &mut R,
    ) -> Result<ShareKeys> {
        self.expect(Stage::Advertise, &msg.session_id)?;
        match self.check_key_list(msg) {
            Ok(()) => {}
            Err(e) => return self.abort(e),
        }
        let sid = self.config.session_id;
        let graph = Graph::build(
            self.config.params.graph,
            &msg.entries.iter().map(|e| e.id).collect::<Vec<_>>(),
            graph_seed(&sid, msg.entries.iter().map(|e| (e.id, &e.c_pk, &e.s_pk))),
        );
        let group = graph.group(self.id);
        if group.len() < self.share_threshold() {
            return self.abort(SecAggError::TooFewParticipants {
                stage: Stage::ShareKeys,
                have: group.len(),
                need: self.share_threshold(),
            });
        }
        // The masking secret prepared once for all the agreements below (the channel key
        // is prepared, and remembers its agreements, for the whole job).
        let s_secret = crypto::PreparedSecret::new(crypto::x25519_secret(&self.s_sk).as_bytes());
        let t = self.share_threshold();
        // D_self (sorted), and our derived shares for them in the same order.
        let derived_to = graph.derived_recipients(self.id, t);
        let mut fixed_b = Zeroizing::new(Vec::with_capacity(derived_to.len() + 1));
        let mut fixed_s = Zeroizing::new(Vec::with_capacity(derived_to.len() + 1));
        fixed_b.push(Scalar::ZERO); // p(0), filled in once b is drawn
        fixed_s.push(*self.s_sk);
        let mut sealed = Vec::with_capacity(group.len().saturating_sub(t));
        let mut send_keys = Vec::with_capacity(group.len().saturating_sub(t));
        for e in &msg.entries {
            if e.id == self.id || group.binary_search(&e.id).is_err() {
                continue;
            }
            let (Some(c_dh), Some(s_dh)) = (
                self.channel.agree(&e.c_pk),
                crypto::x25519_prepared(&s_secret, &crypto::PreparedKey::new(&e.s_pk)),
            ) else {
                return self.abort(SecAggError::NonContributoryKey(e.id));
            };
            let c_dh =
                crypto::session_channel_secret(&c_dh, &sid, (self.id, &self.s_pk), (e.id, &e.s_pk));
            if derived_to.binary_search(&e.id).is_ok() {
                let (rb, rs) = crypto::derived_shares(&c_dh, &sid, self.id, e.id);
                fixed_b.push(rb);
                fixed_s.push(rs);
            } else {
                send_keys.push((
                    e.id,
                    Zeroizing::new(crypto::share_key(&c_dh, &sid, self.id, e.id)),
                ));
            }
            let derived = graph.is_derived(e.id, self.id, t).then(|| {
                let (rb, rs) = crypto::derived_shares(&c_dh, &sid, e.id, self.id);
                (Zeroizing::new(rb), Zeroizing::new(rs))
            });
            self.peers.insert(
                e.id,
                Peer {
                    recv_key: Zeroizing::new(crypto::share_key(&c_dh, &sid, e.id, self.id)),
                    mask_seed: Zeroizing::new(crypto::pairwise_mask_seed(
                        &s_dh, &sid, self.id, e.id,
                    )),
                    derived,
                },
            );
        }
        *self.b = Scalar::random(rng);
        fixed_b[0] = *self.b;
        // Evaluate at ourselves and at the sent recipients (group \ D_self).
        let targets: Vec<u32> = group
            .iter()
            .copied()
            .filter(|v| derived_to.binary_search(v).is_err())
            .collect();
        let mut evals = shamir::complete(&derived_to, &[&fixed_b[..], &fixed_s[..]], &targets);
        drop((fixed_b, fixed_s));
        let s_shares = Zeroizing::new(evals.pop().unwrap_or_default());
        let b_shares = Zeroizing::new(evals.pop().unwrap_or_default());
        let mut keys = send_keys.iter();
        for (i, &v) in targets.iter().enumerate() {
            if v == self.id {
                self.held.insert(v, (b_shares[i], s_shares[i]));
                continue;
            }
            let Some((to, key)) = keys.next() else {
                break;
            };
            debug_assert_eq!(*to, v);
            let mut pt = Zeroizing::new([0u8; SHARE_PLAINTEXT_LEN]);
            pt[..32].copy_from_slice(b_shares[i].as_bytes());
            pt[32..].copy_from_slice(s_shares[i].as_bytes());
            sealed.push((v, crypto::seal_shares(key, &sid, self.id, v, &pt)));
        }
        self.graph = Some(graph);
        self.group = group;
        self.stage = Stage::ShareKeys;
        Ok(ShareKeys {
            session_id: sid,
            from: self.id,
            shares: sealed,
        })
    }

    fn check_key_list(&self, msg: &KeyList) -> Result<()> {
        let p = &self.config.params;
        if !strictly_increasing(msg.entries.iter().map(|e| e.id)) {
            return Err(SecAggError::InvalidList(
                "key list ids not strictly increasing",
            ));
        }
        for e in &msg.entries {
            if p.participants.binary_search(&e.id).is_err() || self.roster.get(e.id).is_none() {
                return Err(SecAggError::NotInvited(e.id));
            }
        }
        if msg.entries.len() < p.threshold as usize {
            return Err(SecAggError::TooFewParticipants {
                stage: Stage::Advertise,
                have: msg.entries.len(),
                need: p.threshold as usize,
            });
        }
        self.policy.check_key_list(p, msg.entries.len())?;
        match msg.entries.iter().find(|e| e.id == self.id) {
            Some(e)
                if e.c_pk == self.c_pk
                    && e.s_pk == self.s_pk
                    && e.commitment == self.commitment => {}
            _ => return Err(SecAggError::ForgedOwnKeys),
        }
        let mut seen: HashSet<[u8; 32]> = HashSet::with_capacity(2 * msg.entries.len());
        for e in &msg.entries {
            for k in [e.c_pk, e.s_pk] {
                // One byte string per u-coordinate (`crypto::is_canonical_key`).
                if !crypto::is_canonical_key(&k) {
                    return Err(SecAggError::NonCanonicalKey(e.id));
                }
                if !seen.insert(k) {
                    return Err(SecAggError::DuplicateKey(e.id));
                }
            }
        }
        // Every entry, not only the neighbours': all of them place members on the ring, and
        // an entry the coordinator forged for a non-neighbour would move this participant's
        // neighbourhood to ids of its choosing.
        verify_all(
            &self.roster,
            msg.entries.iter().map(|e| {
                let t = crypto::advertise_transcript(
                    &self.config.session_id,
                    e.id,
                    &e.c_pk,
                    &e.s_pk,
                    &e.commitment,
                );
                (e.id, t, &e.signature)
            }),
        )
        .map_err(SecAggError::BadSignature)
    }

    /// Stage 2: decrypts and authenticates the shares addressed to us and
    /// takes the derived shares of the senders the bundle lists as derived
    /// (both sender sets form our view of U2; a ciphertext from a sender whose
    /// share we derive, or a derived entry for one that must send, aborts),
    /// then masks what [`ParticipantSession::new`] fixed (the input, its noise and
    /// blinding limbs) with the self mask and the pairwise masks of U2.
    ///
    /// A derived entry is not authenticated by the dealer: a lying coordinator
    /// can list a dealer `u` whose `ShareKeys` never arrived. That only adds a
    /// mask with `u` to our vector which it cannot remove (the `t - 1` derived
    /// shares alone do not determine `s_u^SK`): a denial of service, which it
    /// can cause anyway, and never a second share release, since U3 and the
    /// dead list are checked as before.
    pub fn on_shares(&mut self, msg: &ShareBundle) -> Result<MaskedInput> {
        self.expect(Stage::ShareKeys, &msg.session_id)?;
        if msg.to != self.id {
            return self.abort(SecAggError::InvalidList(
                "share bundle addressed to someone else",
            ));
        }
        if !strictly_increasing(msg.shares.iter().map(|s| s.0)) {
            return self.abort(SecAggError::InvalidList(
                "share senders not strictly increasing",
            ));
        }
        if !strictly_increasing(msg.derived.iter().copied()) {
            return self.abort(SecAggError::InvalidList(
                "derived-share senders not strictly increasing",
            ));
        }
        let sid = self.config.session_id;
        for from in &msg.derived {
            let Some((b, s)) = self.peers.get(from).and_then(|p| p.derived.as_ref()) else {
                return self.abort(SecAggError::InvalidList(
                    "derived share listed for a sender that must send it or is not a peer",
                ));
            };
            let pair = (**b, **s);
            self.held.insert(*from, pair);
        }
        for (from, ct) in &msg.shares {
            let Some(peer) = self.peers.get(from) else {
                return self.abort(SecAggError::InvalidList("share from outside our group"));
            };
            if peer.derived.is_some() {
                return self.abort(SecAggError::InvalidList(
                    "ciphertext for a share that is derived",
                ));
            }
            let Some(pt) = crypto::open_shares(&peer.recv_key, &sid, *from, self.id, ct) else {
                return self.abort(SecAggError::ShareAuthentication(*from));
            };
            let mut b = [0u8; 32];
            let mut s = [0u8; 32];
            b.copy_from_slice(&pt[..32]);
            s.copy_from_slice(&pt[32..]);
            let parsed = (
                Option::<Scalar>::from(Scalar::from_canonical_bytes(b)),
                Option::<Scalar>::from(Scalar::from_canonical_bytes(s)),
            );
            b.zeroize();
            s.zeroize();
            let (Some(b), Some(s)) = parsed else {
                return self.abort(SecAggError::ShareAuthentication(*from));
            };
            self.held.insert(*from, (b, s));
        }
        let mut u2: Vec<u32> = msg.shares.iter().map(|s| s.0).collect();
        u2.extend_from_slice(&msg.derived);
        u2.push(self.id);
        u2.sort_unstable();
        if u2.len() < self.share_threshold() {
            return self.abort(SecAggError::TooFewParticipants {
                stage: Stage::ShareKeys,
                have: u2.len(),
                need: self.share_threshold(),
            });
        }
        // Peers not in U2 (derived shares included) are never held.
        for peer in self.peers.values_mut() {
            peer.derived = None;
        }
        let mut y = self.unmasked.to_vec();
        let seed = Zeroizing::new(crypto::self_mask_seed(&self.b, &sid, self.id));
        crypto::prg_accumulate(&seed, &mut y, false);
        for &v in &u2 {
            if v == self.id {
                continue;
            }
            if let Some(peer) = self.peers.get(&v) {
                crypto::prg_accumulate(&peer.mask_seed, &mut y, self.id > v);
            }
        }
        self.u2 = u2;
        self.stage = Stage::MaskedInput;
        Ok(MaskedInput {
            session_id: sid,
            from: self.id,
            vector: y,
        })
    }

    /// What is summed, noise included, and the commitment to it (zeros in a session
    /// without commitments), so that anyone holding the session's output can check it.
    fn commit_input<R: CryptoRng + ?Sized>(
        config: &SessionConfig,
        input: &[u64],
        rng: &mut R,
    ) -> Result<(Zeroizing<Vec<u64>>, [u8; 32])> {
        let p = &config.params;
        if input.len() != p.words() {
            return Err(SecAggError::InvalidInput(
                "vector length differs from d + 1",
            ));
        }
        if input[0] > p.fixed_point.max_weight() {
            return Err(SecAggError::InvalidInput("weight above the configured cap"));
        }
        let mut y = Zeroizing::new(Vec::with_capacity(p.masked_words()));
        y.extend_from_slice(input);
        if let Some(sigma) = p.dp_sigma {
            add_dp_noise(&mut y, sigma, p.threshold, rng);
        }
        if !p.committed() {
            return Ok((y, [0; 32]));
        }
        let blinding = crate::commit::Blinding::random(rng);
        let covered = y
            .get(..p.committed_words())
            .ok_or(SecAggError::InvalidInput(
                "input shorter than its committed words",
            ))?;
        let commitment = crate::commit::commit(covered, &blinding);
        y.extend_from_slice(blinding.limbs());
        Ok((y, commitment))
    }

    /// The commitment in this participant's advertisement (zeros without commitments).
    pub fn commitment(&self) -> &[u8; 32] {
        &self.commitment
    }

    /// Hands one decoded coordinator message to the matching stage handler and returns
    /// the reply to send.
    pub fn handle<R: CryptoRng + ?Sized>(
        &mut self,
        msg: &crate::messages::Message,
        rng: &mut R,
    ) -> Result<crate::messages::Message> {
        use crate::messages::Message;
        Ok(match msg {
            Message::KeyList(m) => Message::ShareKeys(self.on_key_list(m, rng)?),
            Message::ShareBundle(m) => Message::MaskedInput(self.on_shares(m)?),
            Message::SurvivorList(m) => Message::ConsistencySignature(self.on_survivors(m)?),
            Message::UnmaskRequest(m) => Message::UnmaskResponse(self.on_unmask_request(m)?),
            _ => return Err(SecAggError::Malformed("not a coordinator message")),
        })
    }

    /// Checks a survivor list as [`ParticipantSession::on_survivors`] would, without
    /// signing it or changing state: a caller that records the set before signing (the
    /// agent's ledger) records only a list this session would sign.
    pub fn check_survivors(&self, msg: &SurvivorList) -> Result<()> {
        self.expect(Stage::MaskedInput, &msg.session_id)?;
        self.survivor_list_error(&msg.survivors).map_or(Ok(()), Err)
    }

    /// Why this participant would not sign `u3`: it must be a strictly increasing subset of
    /// U1 that includes us, meets our minimum and the threshold, and within our group is a
    /// subset of our U2 with at least the group's threshold.
    fn survivor_list_error(&self, u3: &[u32]) -> Option<SecAggError> {
        let p = &self.config.params;
        let graph_ok = self
            .graph
            .as_ref()
            .is_some_and(|g| u3.iter().all(|&v| g.contains(v)));
        if !strictly_increasing(u3.iter().copied()) || !graph_ok {
            Some(SecAggError::InvalidList(
                "survivors not a strictly increasing subset of U1",
            ))
        } else if u3.binary_search(&self.id).is_err() {
            Some(SecAggError::InvalidList(
                "survivor list omits this participant",
            ))
        } else if u3.len() < self.policy.min_distinct as usize {
            Some(SecAggError::PolicyViolation(
                "survivor set smaller than this participant's minimum",
            ))
        } else if u3.len() < p.threshold as usize {
            Some(SecAggError::TooFewParticipants {
                stage: Stage::MaskedInput,
                have: u3.len(),
                need: p.threshold as usize,
            })
        } else if self
            .group
            .iter()
            .any(|v| u3.binary_search(v).is_ok() && self.u2.binary_search(v).is_err())
        {
            Some(SecAggError::InvalidList("survivor was not in U2"))
        } else {
            let in_group = self
                .group
                .iter()
                .filter(|v| u3.binary_search(v).is_ok())
                .count();
            (in_group < self.share_threshold()).then(|| SecAggError::TooFewParticipants {
                stage: Stage::MaskedInput,
                have: in_group,
                need: self.share_threshold(),
            })
        }
    }

    /// Stage 3: checks U3 (strictly increasing, at least `t`, includes us, a
    /// subset of U1 and, within our group, of our U2) and signs `(session, U3)`.
    pub fn on_survivors(&mut self, msg: &SurvivorList) -> Result<ConsistencySignature> {
        self.expect(Stage::MaskedInput, &msg.session_id)?;
        let u3 = &msg.survivors;
        let err = self.survivor_list_error(u3);
        if let Some(e) = err {
            return self.abort(e);
        }
        let Some(digest) = self.graph.as_ref().map(|g| *g.u1_digest()) else {
            return self.abort(SecAggError::InvalidList(
                "no graph: the key list was never accepted",
            ));
        };
        let transcript = crypto::consistency_transcript(&self.config.session_id, &digest, u3);
        let signature = self.identity.sign(&transcript).to_bytes();
        self.u3 = u3.clone();
        self.stage = Stage::ConsistencyCheck;
        Ok(ConsistencySignature {
            session_id: self.config.session_id,
            from: self.id,
            signature,
        })
    }

    /// Stage 4: the one and only unmask request. Refuses (and aborts, releasing
    /// nothing) unless: the alive list is exactly the U3 we signed; alive and
    /// dead are disjoint, duplicate-free and within U1; we are not dead; within
    /// our group, dead is exactly our U2 minus U3; and at least the quorum of
    /// our group signed the same U3. Then releases `b`-shares for alive group
    /// members and `s`-shares for dead ones, and wipes every share it holds.
    pub fn on_unmask_request(&mut self, msg: &UnmaskRequest) -> Result<UnmaskResponse> {
        if self.stage == Stage::Finished {
            return Err(SecAggError::AlreadyUnmasked);
        }
        self.expect(Stage::ConsistencyCheck, &msg.session_id)?;
        // Whatever happens next, this was our one request.
        if let Err(e) = self.check_unmask_request(msg) {
            return self.abort(e);
        }
        let mut b_shares = Vec::new();
        let mut s_shares = Vec::new();
        for &v in &self.group {
            let Some((b, s)) = self.held.get(&v) else {
                continue;
            };
            if self.u3.binary_search(&v).is_ok() {
                b_shares.push((v, b.to_bytes()));
            } else if msg.dropped.binary_search(&v).is_ok() {
                s_shares.push((v, s.to_bytes()));
            }
        }
        self.wipe_shares();
        self.stage = Stage::Finished;
        Ok(UnmaskResponse {
            session_id: self.config.session_id,
            from: self.id,
            b_shares,
            s_shares,
        })
    }

    fn check_unmask_request(&self, msg: &UnmaskRequest) -> Result<()> {
        use SecAggError::UnmaskRefused as R;
        if msg.survivors != self.u3 {
            return Err(R("alive list differs from the survivor set we signed"));
        }
        if !strictly_increasing(msg.dropped.iter().copied()) {
            return Err(R("dead list has duplicates or is unordered"));
        }
        if msg.dropped.binary_search(&self.id).is_ok() {
            return Err(R("request names this participant as dead"));
        }
        if msg.dropped.iter().any(|v| self.u3.binary_search(v).is_ok()) {
            return Err(R("a participant is named both alive and dead"));
        }
        let graph = self.graph.as_ref().ok_or(R("no graph"))?;
        if msg.dropped.iter().any(|&v| !graph.contains(v)) {
            return Err(R("dead list names a participant outside U1"));
        }
        for &v in &self.group {
            let dead = msg.dropped.binary_search(&v).is_ok();
            let should_be = self.u2.binary_search(&v).is_ok() && self.u3.binary_search(&v).is_err();
            if dead != should_be {
                return Err(R("dead list disagrees with our view of U2 minus U3"));
            }
        }
        if !strictly_increasing(msg.signatures.iter().map(|s| s.0)) {
            return Err(R("signature list has duplicates or is unordered"));
        }
        let digest = *graph.u1_digest();
        let transcript = crypto::consistency_transcript(&self.config.session_id, &digest, &self.u3);
        let quorum = self.share_threshold();
        // The first `quorum` signers of our group that are in U3: all must verify.
        let counted: Vec<&(u32, [u8; 64])> = msg
            .signatures
            .iter()
            .filter(|(signer, _)| {
                self.group.binary_search(signer).is_ok() && self.u3.binary_search(signer).is_ok()
            })
            .take(quorum)
            .collect();
        if counted.len() < quorum {
            return Err(SecAggError::ConsistencyCheck(
                "fewer than the quorum signed the same survivor set",
            ));
        }
        verify_all(
            &self.roster,
            counted
                .into_iter()
                .map(|(signer, sig)| (*signer, transcript.clone(), sig)),
        )
        .map_err(|_| SecAggError::ConsistencyCheck("invalid signature on U3"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{Sim, SimConfig, random_inputs};

    /// Guide test 6: the coordinator plus `t - 1` colluders learn neither `b_u`,
    /// `s_u^SK` nor `x_u` of an honest participant `u`.
    #[test]
    fn g06_coordinator_plus_t_minus_1_colluders_learn_nothing() {
        let cfg = SimConfig::new(10, 32); // t = 7
        let t = cfg.threshold as usize;
        let mut sim = Sim::new(cfg.clone(), random_inputs(&cfg)).unwrap();
        sim.advertise().unwrap();
        sim.share_keys().unwrap();
        sim.masked_input().unwrap();
        let honest = 0u32;
        let colluders: Vec<u32> = (1..t as u32).collect(); // t - 1 of them
        let victim = sim.participant(honest).unwrap();
        let (b_true, s_true) = (*victim.b, *victim.s_sk);
        // Pool everything the colluders hold about the victim.
        let mut b_pts = Vec::new();
        let mut s_pts = Vec::new();
        for &c in &colluders {
            let (b, s) = sim.participant(c).unwrap().held[&honest];
            b_pts.push((c, b));
            s_pts.push((c, s));
        }
        assert_ne!(shamir::reconstruct(&b_pts), b_true);
        assert_ne!(shamir::reconstruct(&s_pts), s_true);
        // With one more (honest) share it would work: the threshold is exact.
        let (b, s) = sim.participant(9).unwrap().held[&honest];
        b_pts.push((9, b));
        s_pts.push((9, s));
        assert_eq!(shamir::reconstruct(&b_pts), b_true);
        assert_eq!(shamir::reconstruct(&s_pts), s_true);

        // The coordinator's transcript has no share it can open: every
        // ciphertext addressed to an honest participant fails under keys the
        // colluders can derive (their own pairwise keys with the dealer).
        let sid = sim.session.session_id;
        for msgs in sim.transcript.values() {
            for m in msgs {
                if let crate::Message::ShareKeys(sk) = m {
                    for (to, ct) in &sk.shares {
                        for &c in &colluders {
                            if let Some(peer) = sim.participant(c).unwrap().peers.get(&sk.from) {
                                let opened =
                                    crypto::open_shares(&peer.recv_key, &sid, sk.from, *to, ct);
                                assert_eq!(opened.is_some(), *to == c);
                            }
                        }
                    }
                }
            }
        }

        // x_u stays hidden: strip every mask the colluders know from y_u.
        let y = sim.transcript[&honest]
            .iter()
            .find_map(|m| match m {
                crate::Message::MaskedInput(v) => Some(v.vector.clone()),
                _ => None,
            })
            .unwrap();
        let mut stripped = y.clone();
        for &c in &colluders {
            let seed = &sim.participant(c).unwrap().peers[&honest].mask_seed;
            crypto::prg_accumulate(seed, &mut stripped, honest < c);
        }
        let x = &sim.inputs[honest as usize];
        assert!(stripped.iter().zip(x).filter(|(a, b)| a == b).count() <= 1);
    }

    #[test]
    fn debug_does_not_print_secrets() {
        let cfg = SimConfig::new(3, 1);
        let mut sim = Sim::new(cfg.clone(), random_inputs(&cfg)).unwrap();
        sim.advertise().unwrap();
        let p = sim.participant(0).unwrap();
        let text = format!("{p:?}");
        assert!(text.contains("ParticipantSession"));
        for secret in [p.b.to_bytes(), p.s_sk.to_bytes()] {
            let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
            assert!(!text.contains(&hex[..16]));
            assert!(!text.contains(&format!("{:?}", &secret[..4])));
        }
    }
}

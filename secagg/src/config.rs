//! Session configuration, its validation rules, the session-id binding and the
//! participant's own policy.
//!
//! Both sides call [`SessionConfig::validate`]; a participant additionally checks
//! the coordinator's configuration against its [`ParticipantPolicy`] and
//! recomputes the session id from its *own* view of the round
//! ([`SessionBinding`]), so a participant holding a different global model
//! derives a different session id and cannot take part (guide test 13).

use sha2::{Digest, Sha256};

use crate::codec::{Reader, Writer};
use crate::error::{Result, SecAggError};

/// Largest roster a session accepts. Shamir x-coordinates are `id + 1` in a
/// field of size about 2^252, so this bound is about message sizes, not math.
pub const MAX_PARTICIPANTS: usize = 1 << 16;
/// Largest vector length `d` (number of value slots, weight slot excluded).
pub const MAX_VECTOR_LEN: u32 = 1 << 24;

/// Fixed-point parameters: `f` fractional bits, a per-row clip and a weight cap (see
/// [`crate::fixed_point`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FixedPointParams {
    /// Fractional bits `f`: `q(x) = round(clip(x) * 2^f)`.
    pub frac_bits: u8,
    /// Values are clipped to `[-clip, clip]` before scaling; `clip_bits = ceil(log2(clip))`.
    pub clip: f64,
    /// Weights (sample counts) are capped at `2^max_weight_bits`.
    pub max_weight_bits: u8,
}

impl FixedPointParams {
    /// Bits needed for the clip bound: `ceil(log2(clip))`, at least 0.
    pub fn clip_bits(&self) -> u32 {
        if self.clip <= 1.0 {
            0
        } else {
            self.clip.log2().ceil() as u32
        }
    }
    /// The weight cap `2^max_weight_bits`.
    pub fn max_weight(&self) -> u64 {
        1u64 << self.max_weight_bits.min(62)
    }
}

/// Which pairs of participants share masks and hold each other's shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphKind {
    /// Everyone with everyone (Bonawitz et al. 2017). Shares are `t`-of-|U1|.
    Complete,
    /// Random `degree`-regular Harary graph (Bell et al. 2020, SecAgg+): each
    /// participant masks with and shares to its `degree` neighbours, with a
    /// Shamir threshold `share_threshold` inside its neighbourhood (itself included,
    /// `degree + 1` holders). The ring order is a permutation seeded by a hash of
    /// all advertised keys: the coordinator can redraw it only by changing U1 after the
    /// honest keys arrive, which agents give it a bounded time for.
    Harary {
        /// Even number of neighbours `k`.
        degree: u32,
        /// Shamir threshold and consistency quorum inside a neighbourhood.
        share_threshold: u32,
    },
}

/// Threat model the thresholds are checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityMode {
    /// Coordinator follows the protocol. Rules: `t > max_colluders`,
    /// `t >= n - max_dropouts` (more dropouts than the budget abort the round).
    HonestButCurious {
        /// Participants that may collude with the coordinator.
        max_colluders: u32,
        /// Dropout budget: the round aborts when more than this many drop.
        max_dropouts: u32,
    },
    /// Coordinator may lie. Rule: `2t > n + max_colluders`.
    Active {
        /// Participants that may collude with the coordinator.
        max_colluders: u32,
    },
}

impl SecurityMode {
    /// The colluder bound of either mode.
    pub fn max_colluders(&self) -> u32 {
        match *self {
            SecurityMode::HonestButCurious { max_colluders, .. }
            | SecurityMode::Active { max_colluders } => max_colluders,
        }
    }
}

/// Everything about a session except its identity (session id, nonce).
#[derive(Debug, Clone, PartialEq)]
pub struct SessionParams {
    /// Invited participant ids (indices into the roster), strictly increasing.
    pub participants: Vec<u32>,
    /// Threshold `t`: minimum survivors at every stage; for the complete graph
    /// also the Shamir threshold and the consistency-signature quorum.
    pub threshold: u32,
    /// `d`: number of value slots. Vectors on the wire have `d + 1` words; slot 0
    /// is the weight.
    pub vector_len: u32,
    /// Fixed-point encoding shared by all participants.
    pub fixed_point: FixedPointParams,
    /// Communication graph.
    pub graph: GraphKind,
    /// Threat model.
    pub security: SecurityMode,
    /// Distributed DP: standard deviation of the total noise on each value slot,
    /// in integer units of the summed vector (for fixed-point data: `2^-f`
    /// weighted units). Each participant adds rounded Gaussian noise of variance
    /// `sigma^2 / t`, so with exactly `t` survivors the total variance is at least
    /// `sigma^2`. The weight slot carries no noise.
    pub dp_sigma: Option<f64>,
    /// How many leading words of each input (slot 0 included) its sender commits to
    /// and signs ([`crate::commit`]); 0 for none. Sessions whose sum later tasks are
    /// derived from commit to the part those tasks derive from, so that agents can
    /// check it; the rest (an evaluation's histograms riding in the same session) is
    /// left out, because each committed word costs a multi-scalar multiplication term.
    pub commit_words: u32,
}

/// The round a session belongs to, as each side knows it independently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionBinding {
    /// Federation identifier.
    pub federation_id: Vec<u8>,
    /// Training round number.
    pub round: u64,
    /// Hash of the global model this round trains.
    pub model_hash: [u8; 32],
}

/// A validated session configuration, sent by the coordinator to every participant.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionConfig {
    /// `session_id(federation, round, model hash, params hash, nonce)`; bound into
    /// every signature, AEAD and KDF of the session.
    pub session_id: [u8; 32],
    /// Coordinator's fresh nonce for this session.
    pub nonce: [u8; 32],
    /// The parameters.
    pub params: SessionParams,
}

/// SHA-256 over a domain-separated, length-prefixed encoding of the binding.
pub fn session_id(
    federation_id: &[u8],
    round: u64,
    model_hash: &[u8; 32],
    config_hash: &[u8; 32],
    nonce: &[u8; 32],
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"fedrisk-secagg/v1/session-id\0");
    h.update((federation_id.len() as u64).to_le_bytes());
    h.update(federation_id);
    h.update(round.to_le_bytes());
    h.update(model_hash);
    h.update(config_hash);
    h.update(nonce);
    h.finalize().into()
}

/// Default threshold against an active coordinator: `floor(2n/3) + 1`.
pub fn default_threshold(n: usize) -> u32 {
    (2 * n / 3 + 1) as u32
}

fn ceil_log2(n: usize) -> u32 {
    if n <= 1 {
        0
    } else {
        usize::BITS - (n - 1).leading_zeros()
    }
}

const TAG_CONFIG: u8 = 0x40;

impl SessionParams {
    /// Number of invited participants.
    pub fn n(&self) -> usize {
        self.participants.len()
    }

    /// Words per wire vector: `d + 1`.
    pub fn words(&self) -> usize {
        self.vector_len as usize + 1
    }

    /// Whether masked inputs carry signed commitments.
    pub fn committed(&self) -> bool {
        self.commit_words > 0
    }

    /// The leading words of an input its commitment covers (0: not committed).
    pub fn committed_words(&self) -> usize {
        self.commit_words as usize
    }

    /// Words of a masked vector: the input's `d + 1`, then the commitment's blinding
    /// ([`crate::commit::RHO_LIMBS`]).
    pub fn masked_words(&self) -> usize {
        if self.committed() {
            self.words() + crate::commit::RHO_LIMBS
        } else {
            self.words()
        }
    }

    /// Shamir threshold inside a share group (`t` for the complete graph).
    pub fn share_threshold(&self) -> u32 {
        match self.graph {
            GraphKind::Complete => self.threshold,
            GraphKind::Harary {
                share_threshold, ..
            } => share_threshold,
        }
    }

    /// Enforces the guide's threshold rules and the overflow rule.
    pub fn validate(&self) -> Result<()> {
        use SecAggError::InvalidConfig as E;
        let n = self.n();
        if n < 2 {
            return Err(E("need at least two participants"));
        }
        if n > MAX_PARTICIPANTS {
            return Err(E("too many participants"));
        }
        if !crate::strictly_increasing(self.participants.iter().copied()) {
            return Err(E("participant ids must be strictly increasing"));
        }
        if self.participants.contains(&u32::MAX) {
            return Err(E("participant id u32::MAX is reserved"));
        }
        let t = self.threshold as usize;
        if t < 2 {
            return Err(E("threshold below 2"));
        }
        if t > n {
            return Err(E("threshold above number of participants"));
        }
        if self.vector_len == 0 || self.vector_len > MAX_VECTOR_LEN {
            return Err(E("vector length out of range"));
        }
        if self.committed_words() > self.words() {
            return Err(E("commitment longer than the input"));
        }
        let c = self.security.max_colluders() as usize;
        if c >= n {
            return Err(E("colluder bound not below n"));
        }
        match self.security {
            SecurityMode::HonestButCurious { max_dropouts, .. } => {
                if t <= c {
                    return Err(E("threshold must exceed colluders"));
                }
                if t + (max_dropouts as usize) < n {
                    return Err(E("threshold below n minus dropout budget"));
                }
            }
            SecurityMode::Active { .. } => {
                if 2 * t <= n + c {
                    return Err(E("active mode needs 2t > n + colluders"));
                }
            }
        }
        if let GraphKind::Harary {
            degree,
            share_threshold,
        } = self.graph
        {
            let k = degree as usize;
            let tk = share_threshold as usize;
            if k < 2 || !k.is_multiple_of(2) || k >= n {
                return Err(E("Harary degree must be even and in [2, n-1]"));
            }
            if tk < 2 || tk > k + 1 || tk > t {
                return Err(E("share threshold out of range"));
            }
            if 2 * tk <= k + 1 {
                return Err(E("share threshold must be a majority of the neighbourhood"));
            }
        }
        let fp = &self.fixed_point;
        if !fp.clip.is_finite() || fp.clip <= 0.0 {
            return Err(E("clip bound must be finite and positive"));
        }
        if fp.frac_bits > 62 || fp.max_weight_bits > 62 {
            return Err(E("fixed-point bit counts out of range"));
        }
        let bits = ceil_log2(n) + fp.max_weight_bits as u32 + fp.clip_bits() + fp.frac_bits as u32;
        if bits > 62 {
            return Err(E(
                "overflow rule: log2(n) + weight bits + clip bits + frac bits > 62",
            ));
        }
        if let Some(sigma) = self.dp_sigma {
            if !sigma.is_finite() || sigma < 0.0 {
                return Err(E("dp sigma must be finite and non-negative"));
            }
            // Noise tails (> 2^50 after summing) would eat the headroom bit.
            if bits > 61 || sigma > (1u64 << 44) as f64 {
                return Err(E("dp noise leaves no overflow headroom"));
            }
        }
        Ok(())
    }

    /// SHA-256 of the canonical encoding; enters the session id.
    pub fn hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"fedrisk-secagg/v1/params\0");
        h.update(self.encode_body());
        h.finalize().into()
    }

    fn encode_body(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.ids(&self.participants);
        w.u32(self.threshold);
        w.u32(self.vector_len);
        w.u8(self.fixed_point.frac_bits);
        w.f64(self.fixed_point.clip);
        w.u8(self.fixed_point.max_weight_bits);
        match self.graph {
            GraphKind::Complete => w.u8(0),
            GraphKind::Harary {
                degree,
                share_threshold,
            } => {
                w.u8(1);
                w.u32(degree);
                w.u32(share_threshold);
            }
        }
        match self.security {
            SecurityMode::HonestButCurious {
                max_colluders,
                max_dropouts,
            } => {
                w.u8(0);
                w.u32(max_colluders);
                w.u32(max_dropouts);
            }
            SecurityMode::Active { max_colluders } => {
                w.u8(1);
                w.u32(max_colluders);
            }
        }
        match self.dp_sigma {
            None => w.u8(0),
            Some(s) => {
                w.u8(1);
                w.f64(s);
            }
        }
        // 1: the whole input (the encoding before prefixes); 2: a prefix of that many words.
        if self.commit_words == 0 {
            w.u8(0);
        } else if self.committed_words() == self.words() {
            w.u8(1);
        } else {
            w.u8(2);
            w.u32(self.commit_words);
        }
        w.finish()
    }

    fn decode_body(r: &mut Reader<'_>) -> Result<Self> {
        let participants = r.ids()?;
        if participants.len() > MAX_PARTICIPANTS {
            return Err(SecAggError::Malformed("too many participants"));
        }
        let threshold = r.u32()?;
        let vector_len = r.u32()?;
        let fixed_point = FixedPointParams {
            frac_bits: r.u8()?,
            clip: r.f64()?,
            max_weight_bits: r.u8()?,
        };
        let graph = match r.u8()? {
            0 => GraphKind::Complete,
            1 => GraphKind::Harary {
                degree: r.u32()?,
                share_threshold: r.u32()?,
            },
            _ => return Err(SecAggError::Malformed("unknown graph kind")),
        };
        let security = match r.u8()? {
            0 => SecurityMode::HonestButCurious {
                max_colluders: r.u32()?,
                max_dropouts: r.u32()?,
            },
            1 => SecurityMode::Active {
                max_colluders: r.u32()?,
            },
            _ => return Err(SecAggError::Malformed("unknown security mode")),
        };
        let dp_sigma = match r.u8()? {
            0 => None,
            1 => Some(r.f64()?),
            _ => return Err(SecAggError::Malformed("bad dp flag")),
        };
        let commit_words = match r.u8()? {
            0 => 0,
            1 => vector_len.saturating_add(1),
            2 => r.u32()?,
            _ => return Err(SecAggError::Malformed("bad commitment flag")),
        };
        Ok(SessionParams {
            participants,
            threshold,
            vector_len,
            fixed_point,
            graph,
            security,
            dp_sigma,
            commit_words,
        })
    }
}

impl SessionConfig {
    /// Builds and validates a configuration; the coordinator calls this.
    pub fn new(binding: &SessionBinding, nonce: [u8; 32], params: SessionParams) -> Result<Self> {
        params.validate()?;
        let sid = session_id(
            &binding.federation_id,
            binding.round,
            &binding.model_hash,
            &params.hash(),
            &nonce,
        );
        Ok(SessionConfig {
            session_id: sid,
            nonce,
            params,
        })
    }

    /// Validates the parameters.
    pub fn validate(&self) -> Result<()> {
        self.params.validate()
    }

    /// Recomputes the session id from the caller's own view of the round; fails
    /// with [`SecAggError::BindingMismatch`] when it differs (other model, round,
    /// federation, or altered parameters).
    pub fn check_binding(&self, binding: &SessionBinding) -> Result<()> {
        let expect = session_id(
            &binding.federation_id,
            binding.round,
            &binding.model_hash,
            &self.params.hash(),
            &self.nonce,
        );
        if subtle::ConstantTimeEq::ct_eq(&expect[..], &self.session_id[..]).into() {
            Ok(())
        } else {
            Err(SecAggError::BindingMismatch)
        }
    }

    /// Versioned binary encoding (the gRPC layer carries it as bytes).
    pub fn encode(&self) -> Vec<u8> {
        let body = self.params.encode_body();
        let mut w = Writer::with_header(TAG_CONFIG, 64 + body.len());
        w.bytes(&self.session_id);
        w.bytes(&self.nonce);
        w.bytes(&body);
        w.finish()
    }

    /// Decodes; never panics. Does not validate (call [`Self::validate`]).
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::with_header(bytes, TAG_CONFIG)?;
        let session_id = r.array()?;
        let nonce = r.array()?;
        let params = SessionParams::decode_body(&mut r)?;
        r.finish()?;
        Ok(SessionConfig {
            session_id,
            nonce,
            params,
        })
    }
}

/// What a participant insists on, whatever the coordinator sends.
#[derive(Debug, Clone, PartialEq)]
pub struct ParticipantPolicy {
    /// `t >= ceil(min_threshold_fraction * n)`.
    pub min_threshold_fraction: f64,
    /// Absolute floor on `t`.
    pub min_threshold: u32,
    /// Largest `d` accepted.
    pub max_vector_len: u32,
    /// Largest roster accepted.
    pub max_participants: u32,
    /// Refuse honest-but-curious sessions.
    pub require_active: bool,
    /// The configuration must assume at least this many colluders.
    pub min_assumed_colluders: u32,
    /// Refuse sessions without distributed DP of at least this sigma.
    pub min_dp_sigma: Option<f64>,
    /// Fewest distinct participants a session may invite and a sum may be over (the
    /// survivor set U3): below 3, a sum and one's own input give away the other's.
    pub min_distinct: u32,
    /// Fewest participants a SecAgg+ (Harary) session may have.
    pub min_harary_participants: u32,
    /// Share of the participants this participant assumes collude with the coordinator
    /// when it recomputes a SecAgg+ graph's privacy bound.
    pub harary_colluder_fraction: f64,
    /// A SecAgg+ graph must keep every neighbourhood private except with probability at
    /// most `2^-harary_privacy_bits` (union over the `n` neighbourhoods) under that share.
    pub harary_privacy_bits: u32,
}

impl Default for ParticipantPolicy {
    /// Active mode, `t > 2n/3`, at most 2^20 slots and 10 000 participants.
    fn default() -> Self {
        ParticipantPolicy {
            min_threshold_fraction: 2.0 / 3.0,
            min_threshold: 2,
            max_vector_len: 1 << 20,
            max_participants: 10_000,
            require_active: true,
            min_assumed_colluders: 0,
            min_dp_sigma: None,
            min_distinct: 3,
            min_harary_participants: 100,
            harary_colluder_fraction: HARARY_COLLUDER_FRACTION,
            harary_privacy_bits: HARARY_PRIVACY_BITS,
        }
    }
}

impl ParticipantPolicy {
    /// Whether a SecAgg+ ring over `listed` of `invited` members keeps this policy's privacy
    /// bound at its assumed colluder share ([`key_list_privacy_failure`]).
    fn harary_private(
        &self,
        invited: usize,
        listed: usize,
        degree: u32,
        share_threshold: u32,
    ) -> bool {
        let failure = key_list_privacy_failure(
            invited,
            listed,
            degree,
            share_threshold,
            self.harary_colluder_fraction,
        );
        !failure.is_nan() && failure <= (-f64::from(self.harary_privacy_bits)).exp2()
    }

    /// Checks that a key list of `listed` members still keeps a SecAgg+ session's privacy
    /// bound: the ring is drawn over the list, and leaving invited members out raises the
    /// colluders' share of it. Nothing to check for the complete graph.
    pub fn check_key_list(&self, params: &SessionParams, listed: usize) -> Result<()> {
        match params.graph {
            GraphKind::Harary {
                degree,
                share_threshold,
            } if !self.harary_private(params.n(), listed, degree, share_threshold) => {
                Err(SecAggError::PolicyViolation(
                    "the key list leaves out so many invited members that the SecAgg+ graph fails this participant's privacy bound",
                ))
            }
            _ => Ok(()),
        }
    }

    /// Checks a (validated) configuration against this policy.
    pub fn check(&self, params: &SessionParams) -> Result<()> {
        use SecAggError::PolicyViolation as P;
        let n = params.n();
        if n > self.max_participants as usize {
            return Err(P("too many participants"));
        }
        if n < self.min_distinct as usize {
            return Err(P(
                "fewer invited participants than this participant's minimum",
            ));
        }
        if params.vector_len > self.max_vector_len {
            return Err(P("vector too long"));
        }
        let t = params.threshold as usize;
        let frac_floor = (self.min_threshold_fraction * n as f64).ceil();
        if (t as f64) < frac_floor || t < self.min_threshold as usize {
            return Err(P("threshold below participant minimum"));
        }
        if let GraphKind::Harary {
            degree,
            share_threshold,
        } = params.graph
        {
            // Below a hundred members a sparse graph saves little. A neighbourhood threshold
            // at most half the degree lets a coordinator that drops chosen members unmask
            // sums over two neighbours. Otherwise the graph is only as good as its privacy
            // bound, recomputed here for this participant's assumed colluder share.
            if n < self.min_harary_participants as usize {
                return Err(P(
                    "a SecAgg+ graph for fewer participants than this participant accepts",
                ));
            }
            if 2 * (share_threshold as usize).saturating_sub(1) <= degree as usize {
                return Err(P("neighbourhood threshold at most half the graph's degree"));
            }
            let group = (degree + 1) as f64;
            if (share_threshold as f64) < (self.min_threshold_fraction * group).ceil() {
                return Err(P("neighbourhood threshold below participant minimum"));
            }
            if !self.harary_private(n, n, degree, share_threshold) {
                return Err(P(
                    "SecAgg+ graph too sparse for this participant's privacy bound at its assumed colluder share",
                ));
            }
        }
        if self.require_active && !matches!(params.security, SecurityMode::Active { .. }) {
            return Err(P("active security required"));
        }
        if params.security.max_colluders() < self.min_assumed_colluders {
            return Err(P("configuration assumes too few colluders"));
        }
        if let Some(min) = self.min_dp_sigma
            && params.dp_sigma.unwrap_or(0.0) < min
        {
            return Err(P("distributed DP noise below minimum"));
        }
        Ok(())
    }
}

fn ln_binom_pmf(m: usize, i: usize, p: f64, ln_fact: &[f64]) -> f64 {
    ln_fact[m] - ln_fact[i] - ln_fact[m - i] + i as f64 * p.ln() + (m - i) as f64 * (1.0 - p).ln()
}

/// `P[Bin(m, p) >= a]`.
fn binom_tail_ge(m: usize, a: usize, p: f64, ln_fact: &[f64]) -> f64 {
    if a == 0 {
        return 1.0;
    }
    if p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return if a <= m { 1.0 } else { 0.0 };
    }
    (a..=m).map(|i| ln_binom_pmf(m, i, p, ln_fact).exp()).sum()
}

/// Colluder share that participants assume, and coordinators plan SecAgg+ graphs for, by
/// default.
pub const HARARY_COLLUDER_FRACTION: f64 = 0.1;
/// Privacy bound of a SecAgg+ graph, in bits, by default.
pub const HARARY_PRIVACY_BITS: u32 = 40;

fn ln_factorials(m: usize) -> Vec<f64> {
    let mut ln_fact = vec![0.0f64; m + 2];
    for i in 1..ln_fact.len() {
        ln_fact[i] = ln_fact[i - 1] + (i as f64).ln();
    }
    ln_fact
}

/// Probability, over the random ring order, that colluders (each participant one with
/// probability `colluder_fraction`) break the privacy of some neighbourhood of a Harary
/// graph on `n` members: `n` times the chance that a neighbourhood of `degree + 1` holds
/// `2 share_threshold - degree - 1` colluders (then, in active mode, a coordinator that
/// reports chosen members dead gets both of an honest member's secrets) or
/// `share_threshold` of them (then they hold its shares outright).
pub fn harary_privacy_failure(
    n: usize,
    degree: u32,
    share_threshold: u32,
    colluder_fraction: f64,
) -> f64 {
    let m = degree as usize + 1;
    let tk = share_threshold as usize;
    let bad = (2 * tk).saturating_sub(m).min(tk);
    let ln_fact = ln_factorials(m);
    (n as f64 * binom_tail_ge(m, bad, colluder_fraction, &ln_fact)).min(1.0)
}

/// [`harary_privacy_failure`] of a ring over the `listed` members of a key list, when
/// `colluder_fraction` of the `invited` participants collude and the coordinator lists
/// every one of them: leaving honest members out (or inviting absent ones) raises the
/// colluders' share of the ring, so a participant checks the bound at the key list, not
/// only at the invitation.
pub fn key_list_privacy_failure(
    invited: usize,
    listed: usize,
    degree: u32,
    share_threshold: u32,
    colluder_fraction: f64,
) -> f64 {
    if listed == 0 {
        return 1.0;
    }
    let share = (colluder_fraction * invited as f64 / listed as f64).min(1.0);
    harary_privacy_failure(listed, degree, share_threshold, share)
}

/// Picks the communication graph for `n` participants, a dropout fraction and a
/// colluder fraction, in the manner of Bell et al. 2020 (SecAgg+): the smallest
/// even degree `k` and neighbourhood threshold `t_k` such that
/// - [`key_list_privacy_failure`] is at most `2^-privacy_bits` for a key list that lists
///   all but `dropout_fraction` of the participants (so members who are offline at the
///   advertisement do not make the participants refuse the key list),
/// - the survivors of some neighbourhood fall below `t_k` with probability at most
///   `2^-20` (correctness, union over the `n` neighbourhoods), and
/// - `t_k` is at least `min_threshold_fraction` of the neighbourhood and more than half
///   the degree, as participants' policies demand.
///
/// Returns [`GraphKind::Complete`] when no such `k` below `n - 1` exists or when
/// `n < 100`, where a Harary graph saves little.
pub fn recommended_graph(
    n: usize,
    dropout_fraction: f64,
    colluder_fraction: f64,
    min_threshold_fraction: f64,
    privacy_bits: u32,
) -> GraphKind {
    if n < 100
        || !(0.0..1.0).contains(&dropout_fraction)
        || !(0.0..1.0).contains(&colluder_fraction)
    {
        return GraphKind::Complete;
    }
    let ln_fact = ln_factorials(n);
    let privacy = (-f64::from(privacy_bits)).exp2();
    let correctness = 2f64.powi(-20) / n as f64;
    let mut k = 2usize;
    while k < n - 1 {
        let m = k + 1;
        let lowest = ((min_threshold_fraction * m as f64).ceil() as usize).max(k / 2 + 2);
        // The privacy failure falls as t_k grows and the survivors' side gets worse: take
        // the smallest private t_k (binary search) and check that enough survive it.
        let listed = n - (dropout_fraction * n as f64).floor() as usize;
        let private = |tk: usize| {
            key_list_privacy_failure(n, listed, k as u32, tk as u32, colluder_fraction) <= privacy
        };
        if lowest <= m && private(m) {
            let (mut lo, mut hi) = (lowest, m);
            while lo < hi {
                let mid = (lo + hi) / 2;
                if private(mid) { hi = mid } else { lo = mid + 1 }
            }
            // P[alive < tk] = P[dropped >= m - tk + 1]
            let p_live = binom_tail_ge(m, m - lo + 1, dropout_fraction, &ln_fact);
            if p_live <= correctness {
                return GraphKind::Harary {
                    degree: k as u32,
                    share_threshold: lo as u32,
                };
            }
        }
        k += 2;
    }
    GraphKind::Complete
}

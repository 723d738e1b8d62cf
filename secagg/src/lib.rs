//! Secure aggregation for fedrisk: the coordinator learns only the weighted sum
//! of the participants' vectors, tolerates dropouts, and cannot unmask anyone
//! even if it lies.
//!
//! This is Bonawitz et al., "Practical Secure Aggregation for Privacy-Preserving
//! Machine Learning" (CCS 2017, ePrint 2017/281) in its actively secure form,
//! with the optional SecAgg+ communication graph of Bell et al. (CCS 2020). The
//! crate does no I/O, reads no clock and uses no global RNG: both sides are
//! state machines that consume typed messages and return the next ones; the
//! caller owns sockets, deadlines (it calls [`CoordinatorSession::close_stage`]
//! when its timer fires) and randomness (injected `rand_core` RNGs).
//!
//! # Stages and types
//!
//! | stage ([`Stage`]) | participant ([`ParticipantSession`]) | coordinator ([`CoordinatorSession`]) |
//! |---|---|---|
//! | 0 `Advertise` | `new` -> [`Advertise`] (a fresh X25519 masking key, the channel key (fresh, or the job's: [`channel`]) and the commitment to the input, signed with the Ed25519 identity) | `on_advertise`; `close_stage` broadcasts [`KeyList`] (U1) |
//! | 1 `ShareKeys` | `on_key_list` -> [`ShareKeys`] (Shamir shares of `b_u` and `s_u^SK`: `t - 1` derived from pairwise keys, the rest ChaCha20-Poly1305 per recipient) | `on_share_keys`; `close_stage` routes a [`ShareBundle`] (ciphertexts plus the senders whose shares the recipient derives) to each member of U2 |
//! | 2 `MaskedInput` | `on_shares` -> [`MaskedInput`] (`y_u = x_u + PRG(b_u) + sum +-PRG(s_uv)`, PRG = AES-256-CTR) | `on_masked_input`; `close_stage` broadcasts [`SurvivorList`] (U3) |
//! | 3 `ConsistencyCheck` | `on_survivors` -> [`ConsistencySignature`] over (session, U3) | `on_consistency`; `close_stage` sends [`UnmaskRequest`] with the signatures |
//! | 4 `Unmask` | `on_unmask_request` -> [`UnmaskResponse`] (at most once) | `on_unmask`; `close_stage` returns [`Output`] |
//!
//! Derived shares (wire version 2): of each dealer `u`'s shares, those of the
//! `t - 1` group members following `u` ([`graph::Graph::derived_recipients`])
//! are not sent but derived by both ends from their `c`-key agreement
//! ([`crypto::derived_shares`]); `u` interpolates the rest through them and
//! its secret ([`shamir::complete`]). The derived values are pseudorandom,
//! known only to the pair and independent of the secret, so the sharing is
//! still `t`-of-`n` with nothing learnt from `t - 1` shares (see
//! [`ParticipantSession::on_key_list`]); it saves `t - 1` ciphertexts per
//! participant.
//!
//! Every message has `encode`/`decode` (versioned, length-checked, never panics
//! on hostile bytes); [`Message`] wraps them for transports carrying one `bytes`
//! field. [`SessionConfig`] is validated by both sides; a participant also
//! applies its own [`ParticipantPolicy`] and recomputes the session id from its
//! own [`SessionBinding`]. [`fixed_point`] turns real vectors into
//! Z_2^64 (an institution's sums rounded once, or weighted means) and back; [`sim`] runs whole sessions in
//! memory for tests and benchmarks.
//!
//! # Invariants
//! - A participant never releases both the `b`-share and the `s`-share it holds
//!   for one peer, answers at most one unmask request, and refuses (releasing
//!   nothing, for good) a request whose alive and dead lists overlap, name it as
//!   dead, disagree with the U3 it signed, or lack a quorum of signatures on U3.
//! - Fewer than `t` survivors at any stage aborts the round; no share is
//!   released before the consistency check succeeds.
//! - Secrets (`b_u`, `s_u^SK`, `c_u^SK`, held shares, pairwise seeds) are
//!   zeroized on drop and never printed by `Debug`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod channel;
mod codec;
pub mod commit;
pub mod config;
mod coordinator;
pub mod crypto;
pub mod error;
pub mod fixed_point;
pub mod graph;
pub mod messages;
mod participant;
pub mod shamir;
pub mod sim;

use std::collections::BTreeMap;

use ed25519_dalek::VerifyingKey;

pub use codec::WIRE_VERSION;
pub use config::{
    FixedPointParams, GraphKind, HARARY_COLLUDER_FRACTION, HARARY_PRIVACY_BITS, ParticipantPolicy,
    SecurityMode, SessionBinding, SessionConfig, SessionParams, default_threshold,
    harary_privacy_failure, key_list_privacy_failure, recommended_graph, session_id,
};
pub use coordinator::{CoordinatorSession, Outgoing, Output, Step, SurvivorSignatures};
pub use error::{Result, SecAggError};
pub use fixed_point::{
    decode_counts, decode_mean, decode_sum, encode_counts, encode_scaled, encode_weighted,
};
pub use messages::{
    Advertise, AdvertisedKeys, ConsistencySignature, KeyList, MaskedInput, Message, ShareBundle,
    ShareKeys, SurvivorList, UnmaskRequest, UnmaskResponse,
};
pub use participant::ParticipantSession;

/// The protocol stages, in order. Both state machines report theirs, so the
/// gRPC layer can log and expose progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// Round 0: key advertisement.
    Advertise,
    /// Round 1: encrypted Shamir shares.
    ShareKeys,
    /// Round 2: masked inputs.
    MaskedInput,
    /// Round 3: signatures on the survivor set.
    ConsistencyCheck,
    /// Round 4: share release and unmasking.
    Unmask,
    /// The session produced its output (coordinator) or answered its unmask
    /// request (participant).
    Finished,
    /// The session ended without output.
    Aborted,
}

impl Stage {
    /// The number of this stage in `fedrisk.v1.SecAggStage` (Bonawitz rounds 0 to 4 are 1
    /// to 5; 0 for the end states), so transports label messages without a second mapping.
    pub fn wire_number(self) -> i32 {
        match self {
            Stage::Advertise => 1,
            Stage::ShareKeys => 2,
            Stage::MaskedInput => 3,
            Stage::ConsistencyCheck => 4,
            Stage::Unmask => 5,
            Stage::Finished | Stage::Aborted => 0,
        }
    }
}

/// Identity verification keys by participant id. In production they come from
/// the mTLS certificates; both sides receive the same roster up front.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roster {
    keys: BTreeMap<u32, VerifyingKey>,
}

impl Roster {
    /// Builds a roster from `(id, key)` pairs.
    pub fn new(entries: impl IntoIterator<Item = (u32, VerifyingKey)>) -> Self {
        Roster {
            keys: entries.into_iter().collect(),
        }
    }
    /// The verification key of `id`.
    pub fn get(&self, id: u32) -> Option<&VerifyingKey> {
        self.keys.get(&id)
    }
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.keys.len()
    }
    /// Whether the roster is empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Verifies an Ed25519 signature of `id` (strict verification).
pub(crate) fn verify_signature(roster: &Roster, id: u32, msg: &[u8], sig: &[u8; 64]) -> bool {
    match roster.get(id) {
        Some(vk) => vk
            .verify_strict(msg, &ed25519_dalek::Signature::from_bytes(sig))
            .is_ok(),
        None => false,
    }
}

/// Verifies many Ed25519 signatures at once: `Err(id)` names the first signer whose
/// signature does not verify (or who is not on the roster).
///
/// Why batched: an agent checks every key-list entry and every signed commitment of the
/// sessions its task derives from, n signatures each; one multi-scalar multiplication is
/// several times cheaper than n verifications. The batch's coefficients are drawn from a
/// transcript of its inputs, so every agent reaches the same verdict on the same list. A
/// failed batch is re-checked one by one (strictly) to name the signer. Weak (small-order)
/// keys are refused as strict verification would; a signature crafted with a torsion
/// component by its own key's holder may pass a batch where strict verification fails it,
/// which forges nothing.
pub(crate) fn verify_all<'a>(
    roster: &Roster,
    items: impl IntoIterator<Item = (u32, Vec<u8>, &'a [u8; 64])>,
) -> std::result::Result<(), u32> {
    /// Below this a batch saves nothing.
    const MIN_BATCH: usize = 4;
    let mut ids = Vec::new();
    let mut messages = Vec::new();
    let mut signatures = Vec::new();
    let mut keys = Vec::new();
    for (id, msg, sig) in items {
        let Some(vk) = roster.get(id) else {
            return Err(id);
        };
        if vk.is_weak() {
            return Err(id);
        }
        ids.push(id);
        messages.push(msg);
        signatures.push(ed25519_dalek::Signature::from_bytes(sig));
        keys.push(*vk);
    }
    if ids.len() >= MIN_BATCH {
        let msgs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
        if ed25519_dalek::verify_batch(&msgs, &signatures, &keys).is_ok() {
            return Ok(());
        }
    }
    for (((id, msg), sig), vk) in ids.iter().zip(&messages).zip(&signatures).zip(&keys) {
        if vk.verify_strict(msg, sig).is_err() {
            return Err(*id);
        }
    }
    Ok(())
}

/// Checks that `ids` is strictly increasing.
pub(crate) fn strictly_increasing(ids: impl IntoIterator<Item = u32>) -> bool {
    let mut prev: Option<u32> = None;
    for id in ids {
        if prev.is_some_and(|p| p >= id) {
            return false;
        }
        prev = Some(id);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    /// `(signer, message, signature)`.
    type Signed = (u32, Vec<u8>, [u8; 64]);

    fn signed(n: u32) -> (Roster, Vec<Signed>) {
        let keys: Vec<SigningKey> = (0..n)
            .map(|i| SigningKey::from_bytes(&[i as u8 + 1; 32]))
            .collect();
        let roster = Roster::new(
            keys.iter()
                .enumerate()
                .map(|(i, k)| (i as u32 + 1, k.verifying_key())),
        );
        let items = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let msg = format!("entry {i}").into_bytes();
                let sig = k.sign(&msg).to_bytes();
                (i as u32 + 1, msg, sig)
            })
            .collect();
        (roster, items)
    }

    fn check(roster: &Roster, items: &[Signed]) -> std::result::Result<(), u32> {
        verify_all(roster, items.iter().map(|(id, m, s)| (*id, m.clone(), s)))
    }

    #[test]
    fn a_batch_passes_whole_and_names_the_one_bad_signer() {
        for n in [1, 3, 4, 50] {
            let (roster, mut items) = signed(n);
            assert_eq!(check(&roster, &items), Ok(()), "n = {n}");
            // A signature over another message, a flipped bit, a signer not on the roster.
            let last = items.len() - 1;
            items[last].1.push(0);
            assert_eq!(check(&roster, &items), Err(n), "n = {n}");
            items[last].1.pop();
            items[0].2[40] ^= 1;
            assert_eq!(check(&roster, &items), Err(1), "n = {n}");
            items[0].2[40] ^= 1;
            items[last].0 = 999;
            assert_eq!(check(&roster, &items), Err(999), "n = {n}");
        }
    }

    #[test]
    fn a_swapped_signature_between_two_signers_fails_the_batch() {
        let (roster, mut items) = signed(8);
        let s2 = items[2].2;
        items[2].2 = items[5].2;
        items[5].2 = s2;
        assert_eq!(check(&roster, &items), Err(3));
    }
}

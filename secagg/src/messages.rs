//! Protocol messages and their compact binary encoding.
//!
//! Layout: `version: u8` ([`crate::WIRE_VERSION`]), `tag: u8`, `session_id: [u8; 32]`, then the fields
//! in order; integers little-endian. Lists of participant ids (alone, or keying
//! a list of fixed-size items, which then follow in the same order) are written
//! as an id list: a form byte, then a `u32` count and every id, or, for
//! strictly increasing ids where it is shorter, a `u32` count, the first id, a
//! `u32` span and a bitmap (dense id sets such as the complete graph's cost
//! one bit per participant instead of four bytes). The masked vector is a
//! `u32` count followed by the words. Decoding checks every count against the bytes left before
//! allocating and rejects trailing bytes; it never panics. Semantic checks
//! (vector length against the configuration, ids against the roster) happen in
//! the state machines, or up front with [`Message::decode_for`].

use crate::Stage;
use crate::codec::{Reader, Writer};
use crate::config::SessionConfig;
use crate::crypto::SHARE_CIPHERTEXT_LEN;
use crate::error::{Result, SecAggError};

/// A 64-byte Ed25519 signature.
pub type SignatureBytes = [u8; 64];
/// An encrypted share pair (`b`-share, `s`-share) with its Poly1305 tag.
pub type EncryptedShares = [u8; SHARE_CIPHERTEXT_LEN];

/// Stage 0, participant -> coordinator: fresh X25519 public keys, signed with
/// the participant's identity key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advertise {
    /// Session the keys are for.
    pub session_id: [u8; 32],
    /// Sender.
    pub from: u32,
    /// Public key for share encryption (`c_u^PK`).
    pub c_pk: [u8; 32],
    /// Public key for pairwise masks (`s_u^PK`).
    pub s_pk: [u8; 32],
    /// The commitment to what the sender will add ([`crate::commit`]); zeros in a
    /// session without commitments.
    pub commitment: [u8; 32],
    /// Ed25519 signature over [`crate::crypto::advertise_transcript`].
    pub signature: SignatureBytes,
}

/// One advertised entry inside a [`KeyList`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvertisedKeys {
    /// Participant id.
    pub id: u32,
    /// `c_u^PK`.
    pub c_pk: [u8; 32],
    /// `s_u^PK`.
    pub s_pk: [u8; 32],
    /// Its commitment (zeros in a session without commitments).
    pub commitment: [u8; 32],
    /// The participant's signature (verifiable by everyone against the roster).
    pub signature: SignatureBytes,
}

/// End of stage 0, coordinator -> every member of U1: the signed keys of U1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyList {
    /// Session.
    pub session_id: [u8; 32],
    /// U1, strictly increasing by id.
    pub entries: Vec<AdvertisedKeys>,
}

/// Stage 1, participant -> coordinator: one encrypted share pair per *sent*
/// recipient ([`crate::graph::Graph::sent_recipients`]: the sender's share
/// group minus itself minus the `t - 1` recipients whose shares are derived
/// from pairwise keys), in increasing recipient order; exactly those, no more,
/// no fewer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareKeys {
    /// Session.
    pub session_id: [u8; 32],
    /// Sender (dealer).
    pub from: u32,
    /// `(recipient, ciphertext)`.
    pub shares: Vec<(u32, EncryptedShares)>,
}

/// End of stage 1, coordinator -> each member of U2: the ciphertexts addressed
/// to it, and the senders in U2 whose shares for it are derived (nothing to
/// deliver); both sender lists, with the recipient, form the recipient's view
/// of U2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareBundle {
    /// Session.
    pub session_id: [u8; 32],
    /// Recipient.
    pub to: u32,
    /// `(sender, ciphertext)`, strictly increasing by sender.
    pub shares: Vec<(u32, EncryptedShares)>,
    /// Senders in U2 that have the recipient in their derived set, strictly
    /// increasing (the recipient computes those shares itself).
    pub derived: Vec<u32>,
}

/// Stage 2, participant -> coordinator: the masked vector (`d + 1` words).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskedInput {
    /// Session.
    pub session_id: [u8; 32],
    /// Sender.
    pub from: u32,
    /// `y_u = (x_u, rho_u) + PRG(b_u) + sum_v +-PRG(s_uv)` mod 2^64: the input, then
    /// the limbs of the blinding of the commitment the sender advertised.
    pub vector: Vec<u64>,
}

/// End of stage 2, coordinator -> each member of U3: the survivor set U3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SurvivorList {
    /// Session.
    pub session_id: [u8; 32],
    /// U3, strictly increasing.
    pub survivors: Vec<u32>,
}

/// Stage 3, participant -> coordinator: signature over `(session, U3)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistencySignature {
    /// Session.
    pub session_id: [u8; 32],
    /// Signer.
    pub from: u32,
    /// Ed25519 signature over the consistency transcript.
    pub signature: SignatureBytes,
}

/// End of stage 3, coordinator -> each signer: who is alive, who is dead, and
/// the signatures certifying U3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnmaskRequest {
    /// Session.
    pub session_id: [u8; 32],
    /// U3, strictly increasing.
    pub survivors: Vec<u32>,
    /// U2 \ U3 (as far as the recipient's share group is concerned), strictly increasing.
    pub dropped: Vec<u32>,
    /// `(signer, signature over (session, U3))`, strictly increasing by signer.
    pub signatures: Vec<(u32, SignatureBytes)>,
}

/// Stage 4, participant -> coordinator: `b`-shares of survivors and `s`-shares of
/// the dropped, never both for one participant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnmaskResponse {
    /// Session.
    pub session_id: [u8; 32],
    /// Responder.
    pub from: u32,
    /// `(owner, share of b_owner)` for owners in U3.
    pub b_shares: Vec<(u32, [u8; 32])>,
    /// `(owner, share of s_owner^SK)` for owners in U2 \ U3.
    pub s_shares: Vec<(u32, [u8; 32])>,
}

/// Any protocol message, for transports that carry one `bytes` field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// See [`Advertise`].
    Advertise(Advertise),
    /// See [`KeyList`].
    KeyList(KeyList),
    /// See [`ShareKeys`].
    ShareKeys(ShareKeys),
    /// See [`ShareBundle`].
    ShareBundle(ShareBundle),
    /// See [`MaskedInput`].
    MaskedInput(MaskedInput),
    /// See [`SurvivorList`].
    SurvivorList(SurvivorList),
    /// See [`ConsistencySignature`].
    ConsistencySignature(ConsistencySignature),
    /// See [`UnmaskRequest`].
    UnmaskRequest(UnmaskRequest),
    /// See [`UnmaskResponse`].
    UnmaskResponse(UnmaskResponse),
}

const TAG_ADVERTISE: u8 = 1;
const TAG_KEY_LIST: u8 = 2;
const TAG_SHARE_KEYS: u8 = 3;
const TAG_SHARE_BUNDLE: u8 = 4;
const TAG_MASKED_INPUT: u8 = 5;
const TAG_SURVIVORS: u8 = 6;
const TAG_CONSISTENCY: u8 = 7;
const TAG_UNMASK_REQUEST: u8 = 8;
const TAG_UNMASK_RESPONSE: u8 = 9;

/// `(id, item)` lists: the ids as one id list, then the items in the same order.
fn write_pairs<const N: usize>(w: &mut Writer, items: &[(u32, [u8; N])]) {
    let ids: Vec<u32> = items.iter().map(|p| p.0).collect();
    w.id_list(&ids);
    for (_, b) in items {
        w.bytes(b);
    }
}

fn read_pairs<const N: usize>(r: &mut Reader<'_>) -> Result<Vec<(u32, [u8; N])>> {
    let ids = r.id_list(N)?;
    ids.into_iter().map(|id| Ok((id, r.array()?))).collect()
}

macro_rules! codec {
    ($ty:ident, $tag:expr, |$s:ident, $w:ident| $enc:block, |$r:ident| $dec:block) => {
        impl $ty {
            /// Versioned binary encoding.
            pub fn encode(&self) -> Vec<u8> {
                let $s = self;
                let mut $w = Writer::with_header($tag, 64);
                $w.bytes(&$s.session_id);
                $enc
                $w.finish()
            }
            /// Decodes hostile bytes: `Err` on anything malformed, never a panic.
            pub fn decode(bytes: &[u8]) -> Result<Self> {
                let mut $r = Reader::with_header(bytes, $tag)?;
                let v = $dec;
                $r.finish()?;
                Ok(v)
            }
        }
    };
}

codec!(
    Advertise,
    TAG_ADVERTISE,
    |s, w| {
        w.u32(s.from);
        w.bytes(&s.c_pk);
        w.bytes(&s.s_pk);
        w.bytes(&s.commitment);
        w.bytes(&s.signature);
    },
    |r| {
        Advertise {
            session_id: r.array()?,
            from: r.u32()?,
            c_pk: r.array()?,
            s_pk: r.array()?,
            commitment: r.array()?,
            signature: r.array()?,
        }
    }
);

/// Whether a key list's entries carry commitments: a byte after the session id (0 or 1),
/// so a session without commitments does not send 32 zero bytes per entry.
const WITH_COMMITMENTS: u8 = 1;

codec!(
    KeyList,
    TAG_KEY_LIST,
    |s, w| {
        let committed = s.entries.iter().any(|e| e.commitment != [0; 32]);
        w.u8(if committed { WITH_COMMITMENTS } else { 0 });
        let ids: Vec<u32> = s.entries.iter().map(|e| e.id).collect();
        w.id_list(&ids);
        for e in &s.entries {
            w.bytes(&e.c_pk);
            w.bytes(&e.s_pk);
            if committed {
                w.bytes(&e.commitment);
            }
            w.bytes(&e.signature);
        }
    },
    |r| {
        let session_id = r.array()?;
        let committed = match r.u8()? {
            0 => false,
            WITH_COMMITMENTS => true,
            _ => return Err(SecAggError::Malformed("key list commitment flag")),
        };
        let ids = r.id_list(32 + 32 + if committed { 32 } else { 0 } + 64)?;
        let entries = ids
            .into_iter()
            .map(|id| {
                Ok(AdvertisedKeys {
                    id,
                    c_pk: r.array()?,
                    s_pk: r.array()?,
                    commitment: if committed { r.array()? } else { [0; 32] },
                    signature: r.array()?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        KeyList {
            session_id,
            entries,
        }
    }
);

codec!(
    ShareKeys,
    TAG_SHARE_KEYS,
    |s, w| {
        w.u32(s.from);
        write_pairs(&mut w, &s.shares);
    },
    |r| {
        ShareKeys {
            session_id: r.array()?,
            from: r.u32()?,
            shares: read_pairs(&mut r)?,
        }
    }
);

codec!(
    ShareBundle,
    TAG_SHARE_BUNDLE,
    |s, w| {
        w.u32(s.to);
        write_pairs(&mut w, &s.shares);
        w.id_list(&s.derived);
    },
    |r| {
        ShareBundle {
            session_id: r.array()?,
            to: r.u32()?,
            shares: read_pairs(&mut r)?,
            derived: r.id_list(0)?,
        }
    }
);

codec!(
    MaskedInput,
    TAG_MASKED_INPUT,
    |s, w| {
        w.u32(s.from);
        w.len(s.vector.len());
        w.buf.reserve(8 * s.vector.len());
        for v in &s.vector {
            w.u64(*v);
        }
    },
    |r| {
        let session_id = r.array()?;
        let from = r.u32()?;
        let n = r.count(8)?;
        let vector = (0..n).map(|_| r.u64()).collect::<Result<Vec<_>>>()?;
        MaskedInput {
            session_id,
            from,
            vector,
        }
    }
);

codec!(
    SurvivorList,
    TAG_SURVIVORS,
    |s, w| {
        w.id_list(&s.survivors);
    },
    |r| {
        SurvivorList {
            session_id: r.array()?,
            survivors: r.id_list(0)?,
        }
    }
);

codec!(
    ConsistencySignature,
    TAG_CONSISTENCY,
    |s, w| {
        w.u32(s.from);
        w.bytes(&s.signature);
    },
    |r| {
        ConsistencySignature {
            session_id: r.array()?,
            from: r.u32()?,
            signature: r.array()?,
        }
    }
);

codec!(
    UnmaskRequest,
    TAG_UNMASK_REQUEST,
    |s, w| {
        w.id_list(&s.survivors);
        w.id_list(&s.dropped);
        write_pairs(&mut w, &s.signatures);
    },
    |r| {
        UnmaskRequest {
            session_id: r.array()?,
            survivors: r.id_list(0)?,
            dropped: r.id_list(0)?,
            signatures: read_pairs(&mut r)?,
        }
    }
);

codec!(
    UnmaskResponse,
    TAG_UNMASK_RESPONSE,
    |s, w| {
        w.u32(s.from);
        write_pairs(&mut w, &s.b_shares);
        write_pairs(&mut w, &s.s_shares);
    },
    |r| {
        UnmaskResponse {
            session_id: r.array()?,
            from: r.u32()?,
            b_shares: read_pairs(&mut r)?,
            s_shares: read_pairs(&mut r)?,
        }
    }
);

impl Message {
    /// Encodes the inner message (its tag identifies the kind).
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Message::Advertise(m) => m.encode(),
            Message::KeyList(m) => m.encode(),
            Message::ShareKeys(m) => m.encode(),
            Message::ShareBundle(m) => m.encode(),
            Message::MaskedInput(m) => m.encode(),
            Message::SurvivorList(m) => m.encode(),
            Message::ConsistencySignature(m) => m.encode(),
            Message::UnmaskRequest(m) => m.encode(),
            Message::UnmaskResponse(m) => m.encode(),
        }
    }

    /// Decodes any message by its tag; never panics.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let tag = *bytes.get(1).ok_or(SecAggError::Malformed("truncated"))?;
        Ok(match tag {
            TAG_ADVERTISE => Message::Advertise(Advertise::decode(bytes)?),
            TAG_KEY_LIST => Message::KeyList(KeyList::decode(bytes)?),
            TAG_SHARE_KEYS => Message::ShareKeys(ShareKeys::decode(bytes)?),
            TAG_SHARE_BUNDLE => Message::ShareBundle(ShareBundle::decode(bytes)?),
            TAG_MASKED_INPUT => Message::MaskedInput(MaskedInput::decode(bytes)?),
            TAG_SURVIVORS => Message::SurvivorList(SurvivorList::decode(bytes)?),
            TAG_CONSISTENCY => Message::ConsistencySignature(ConsistencySignature::decode(bytes)?),
            TAG_UNMASK_REQUEST => Message::UnmaskRequest(UnmaskRequest::decode(bytes)?),
            TAG_UNMASK_RESPONSE => Message::UnmaskResponse(UnmaskResponse::decode(bytes)?),
            _ => {
                if bytes.first() != Some(&crate::codec::WIRE_VERSION) {
                    return Err(SecAggError::UnsupportedVersion(bytes[0]));
                }
                return Err(SecAggError::Malformed("unknown message type"));
            }
        })
    }

    /// Decodes and checks against a configuration *before* the caller buffers
    /// anything: session id, and list or vector lengths no larger than the
    /// configuration allows (a declared vector length above `d + 1` is refused
    /// without allocating it).
    pub fn decode_for(bytes: &[u8], config: &SessionConfig) -> Result<Self> {
        let n = config.params.n();
        let words = config.params.masked_words();
        // Upper bound on any well-formed message of this session (the largest item per
        // participant is a key-list entry: id, two keys, commitment, signature).
        let max_len = 2 + 32 + 13 + n.saturating_mul(8 + 96 + 64) + 8 * words + 96 + 64;
        if bytes.len() > max_len {
            return Err(SecAggError::Malformed(
                "message larger than the session allows",
            ));
        }
        let m = Message::decode(bytes)?;
        if m.session_id() != &config.session_id {
            return Err(SecAggError::WrongSession);
        }
        let too_long = match &m {
            Message::KeyList(k) => k.entries.len() > n,
            Message::ShareKeys(s) => s.shares.len() > n,
            Message::ShareBundle(s) => s.shares.len() + s.derived.len() > n,
            Message::MaskedInput(v) => v.vector.len() != words,
            Message::SurvivorList(s) => s.survivors.len() > n,
            Message::UnmaskRequest(u) => {
                u.survivors.len() > n || u.dropped.len() > n || u.signatures.len() > n
            }
            Message::UnmaskResponse(u) => u.b_shares.len() + u.s_shares.len() > n,
            Message::Advertise(_) | Message::ConsistencySignature(_) => false,
        };
        if too_long {
            return Err(SecAggError::Malformed(
                "list or vector length does not match the session",
            ));
        }
        Ok(m)
    }

    /// The session id the message carries.
    pub fn session_id(&self) -> &[u8; 32] {
        match self {
            Message::Advertise(m) => &m.session_id,
            Message::KeyList(m) => &m.session_id,
            Message::ShareKeys(m) => &m.session_id,
            Message::ShareBundle(m) => &m.session_id,
            Message::MaskedInput(m) => &m.session_id,
            Message::SurvivorList(m) => &m.session_id,
            Message::ConsistencySignature(m) => &m.session_id,
            Message::UnmaskRequest(m) => &m.session_id,
            Message::UnmaskResponse(m) => &m.session_id,
        }
    }

    /// The protocol stage the message belongs to.
    pub fn stage(&self) -> Stage {
        match self {
            Message::Advertise(_) => Stage::Advertise,
            Message::KeyList(_) | Message::ShareKeys(_) => Stage::ShareKeys,
            Message::ShareBundle(_) | Message::MaskedInput(_) => Stage::MaskedInput,
            Message::SurvivorList(_) | Message::ConsistencySignature(_) => Stage::ConsistencyCheck,
            Message::UnmaskRequest(_) | Message::UnmaskResponse(_) => Stage::Unmask,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn samples() -> Vec<Message> {
        let sid = [3u8; 32];
        vec![
            Message::Advertise(Advertise {
                session_id: sid,
                from: 1,
                c_pk: [1; 32],
                s_pk: [2; 32],
                commitment: [10; 32],
                signature: [3; 64],
            }),
            Message::KeyList(KeyList {
                session_id: sid,
                entries: vec![AdvertisedKeys {
                    id: 4,
                    c_pk: [5; 32],
                    s_pk: [6; 32],
                    commitment: [11; 32],
                    signature: [7; 64],
                }],
            }),
            Message::KeyList(KeyList {
                session_id: sid,
                entries: vec![
                    AdvertisedKeys {
                        id: 4,
                        c_pk: [5; 32],
                        s_pk: [6; 32],
                        commitment: [0; 32],
                        signature: [7; 64],
                    },
                    AdvertisedKeys {
                        id: 6,
                        c_pk: [8; 32],
                        s_pk: [9; 32],
                        commitment: [0; 32],
                        signature: [1; 64],
                    },
                ],
            }),
            Message::ShareKeys(ShareKeys {
                session_id: sid,
                from: 2,
                shares: vec![(3, [8; SHARE_CIPHERTEXT_LEN])],
            }),
            Message::ShareBundle(ShareBundle {
                session_id: sid,
                to: 3,
                shares: vec![(2, [9; SHARE_CIPHERTEXT_LEN])],
                derived: vec![4, 5, 7],
            }),
            Message::MaskedInput(MaskedInput {
                session_id: sid,
                from: 5,
                vector: vec![1, u64::MAX, 3],
            }),
            Message::SurvivorList(SurvivorList {
                session_id: sid,
                survivors: vec![1, 2, 9],
            }),
            Message::ConsistencySignature(ConsistencySignature {
                session_id: sid,
                from: 9,
                signature: [1; 64],
            }),
            Message::UnmaskRequest(UnmaskRequest {
                session_id: sid,
                survivors: vec![1, 2],
                dropped: vec![3],
                signatures: vec![(1, [2; 64])],
            }),
            Message::UnmaskResponse(UnmaskResponse {
                session_id: sid,
                from: 1,
                b_shares: vec![(1, [4; 32])],
                s_shares: vec![(3, [5; 32])],
            }),
        ]
    }

    #[test]
    fn every_message_round_trips_and_rejects_truncation() {
        for m in samples() {
            let b = m.encode();
            assert_eq!(Message::decode(&b).unwrap(), m);
            assert_eq!(m.session_id(), &[3u8; 32]);
            for cut in 0..b.len() {
                assert!(Message::decode(&b[..cut]).is_err());
            }
            let mut extra = b.clone();
            extra.extend_from_slice(&[0, 0, 0, 0]);
            assert!(Message::decode(&extra).is_err());
        }
    }

    /// Id lists round-trip in both forms; the bitmap form is only used when it
    /// is shorter, and a non-canonical bitmap is refused.
    #[test]
    fn id_lists_round_trip_and_bitmaps_are_canonical() {
        let sid = [3u8; 32];
        let lists: Vec<Vec<u32>> = vec![
            vec![],
            vec![7],
            vec![0, 1, 2, 3, 4, 5, 6, 7, 8],
            (0..1000).filter(|i| i % 10 != 0).collect(),
            vec![5, 3, 9],
            vec![1, 1, 2],
            vec![0, u32::MAX],
            (u32::MAX - 40..=u32::MAX).collect(),
        ];
        for ids in lists {
            let m = SurvivorList {
                session_id: sid,
                survivors: ids.clone(),
            };
            let b = m.encode();
            assert_eq!(SurvivorList::decode(&b).unwrap(), m);
            assert!(b.len() <= 2 + 32 + 1 + 4 + 4 * ids.len());
        }
        let dense = SurvivorList {
            session_id: sid,
            survivors: (10..30).collect(),
        }
        .encode();
        assert_eq!(dense[34], 1, "bitmap form");
        assert_eq!(dense.len(), 34 + 1 + 12 + 3);
        // Count mismatch, last bit clear, padding bit set, overflowing span.
        for (at, val) in [(35, 21u8), (49, 0x07), (49, 0x1f)] {
            let mut bad = dense.clone();
            bad[at] = val;
            assert!(SurvivorList::decode(&bad).is_err(), "byte {at} = {val}");
        }
        let mut bad = dense.clone();
        bad[39..43].copy_from_slice(&(u32::MAX - 5).to_le_bytes());
        assert!(SurvivorList::decode(&bad).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// Guide test 14: arbitrary bytes never panic any decoder.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600), tag in 0u8..12) {
            let mut b = bytes.clone();
            if b.len() >= 2 { b[0] = crate::WIRE_VERSION; b[1] = tag; }
            let _ = Message::decode(&bytes);
            let _ = Message::decode(&b);
            let _ = SessionConfig::decode(&bytes);
            let _ = Advertise::decode(&b);
            let _ = KeyList::decode(&b);
            let _ = ShareKeys::decode(&b);
            let _ = ShareBundle::decode(&b);
            let _ = MaskedInput::decode(&b);
            let _ = SurvivorList::decode(&b);
            let _ = ConsistencySignature::decode(&b);
            let _ = UnmaskRequest::decode(&b);
            let _ = UnmaskResponse::decode(&b);
        }

        /// Mutating one byte of a valid encoding gives `Err` or a message, never a panic.
        #[test]
        fn mutated_encodings_never_panic(which in 0usize..9, pos in any::<usize>(), val in any::<u8>()) {
            let mut b = samples()[which].encode();
            let i = pos % b.len();
            b[i] = val;
            let _ = Message::decode(&b);
        }
    }
}

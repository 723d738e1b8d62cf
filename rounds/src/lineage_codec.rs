//! The binary form of a [`LineageEntry`]. Every agent downloads every entry of its job, and
//! a session record carries one signed commitment per survivor: as hex inside JSON it
//! took about 330 bytes per survivor, here 196 (id, certificate hash, the two session keys
//! and the point its advertisement signed, signature).
//!
//! Layout, integers little-endian: the magic `FRL1`, then a tag byte.
//! Tag 3, a session: the configuration (u32 length, bytes), the sum (u32 count, u64
//! words), the blinding sum (likewise), the commitments (u32 count, then per commitment
//! its id u32, certificate SHA-256 32 bytes, `c_pk` and `s_pk` 32 bytes each, compressed
//! point 32 bytes, signature 64 bytes). Tag 1 is the same without the keys (records kept
//! before commitments were advertised; read, never written). Tag 2, a skipped evaluation:
//! the round u32 and the task's binding, 32 bytes. Nothing may follow. Lengths are checked
//! against what remains before anything is allocated, so hostile bytes get an error, never
//! a large allocation or a panic.
//!
//! Tag 4 is a transport form only ([`compact`], [`expand`]): a session record with each
//! commitment cut to its id. An agent that took part in the session holds every survivor's
//! signed advertisement from the key list it checked, rebuilds the record from those and
//! checks the rebuilt bytes against the hash the task names, so it downloads a few hundred
//! bytes where the record is tens of kilobytes.

use crate::lineage::{CommitmentRecord, LineageEntry, LineageError, SessionRecord};

/// The first bytes of a binary entry (a JSON entry starts with `{`).
pub const MAGIC: &[u8] = b"FRL1";

const SESSION_V1: u8 = 1;
const SKIPPED: u8 = 2;
const SESSION: u8 = 3;
const COMPACT: u8 = 4;
const COMMITMENT_BYTES_V1: usize = 4 + 32 + 32 + 64;
/// What a survivor's entry holds beyond its id.
const HELD_BYTES: usize = 32 + 32 + 32 + 32 + 64;
const COMMITMENT_BYTES: usize = 4 + HELD_BYTES;

/// Hex of a field this crate wrote, as bytes; a field that is not `N` bytes of hex (only
/// a hand-made record has one) is written as zeros, which no check accepts.
fn bytes_of<const N: usize>(hex_text: &str) -> [u8; N] {
    let mut out = [0u8; N];
    if hex::decode_to_slice(hex_text, &mut out).is_err() {
        out = [0u8; N];
    }
    out
}

fn words(out: &mut Vec<u8>, words: &[u64]) {
    out.extend_from_slice(&(words.len() as u32).to_le_bytes());
    for w in words {
        out.extend_from_slice(&w.to_le_bytes());
    }
}

/// See the module documentation.
pub fn encode(entry: &LineageEntry) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    match entry {
        LineageEntry::Session(r) => {
            out.push(SESSION);
            let config = hex::decode(&r.config).unwrap_or_default();
            out.extend_from_slice(&(config.len() as u32).to_le_bytes());
            out.extend_from_slice(&config);
            words(&mut out, &r.sum);
            words(&mut out, &r.blinding_sum);
            out.extend_from_slice(&(r.commitments.len() as u32).to_le_bytes());
            out.reserve(r.commitments.len() * COMMITMENT_BYTES);
            for c in &r.commitments {
                out.extend_from_slice(&c.id.to_le_bytes());
                out.extend_from_slice(&bytes_of::<32>(&c.certificate));
                out.extend_from_slice(&c.c_pk);
                out.extend_from_slice(&c.s_pk);
                out.extend_from_slice(&c.commitment);
                out.extend_from_slice(&c.signature);
            }
        }
        LineageEntry::SkippedEvaluation { round, binding } => {
            out.push(SKIPPED);
            out.extend_from_slice(&round.to_le_bytes());
            out.extend_from_slice(&bytes_of::<32>(binding));
        }
    }
    out
}

struct Reader<'a> {
    rest: &'a [u8],
}

fn malformed(what: &str) -> LineageError {
    LineageError::Malformed(format!("binary lineage entry: {what}"))
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], LineageError> {
        if self.rest.len() < n {
            return Err(malformed(&format!("{what} cut short")));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], LineageError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u32(&mut self, what: &str) -> Result<u32, LineageError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A count of items of `size` bytes each, checked against what remains.
    fn count(&mut self, size: usize, what: &str) -> Result<usize, LineageError> {
        let n = self.u32(what)? as usize;
        if n.saturating_mul(size) > self.rest.len() {
            return Err(malformed(&format!(
                "{what}: {n} items do not fit in what remains"
            )));
        }
        Ok(n)
    }

    fn words(&mut self, what: &str) -> Result<Vec<u64>, LineageError> {
        let n = self.count(8, what)?;
        let raw = self.take(n * 8, what)?;
        Ok(raw
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect())
    }
}

/// See the module documentation.
pub fn decode(bytes: &[u8]) -> Result<LineageEntry, LineageError> {
    let mut r = Reader {
        rest: bytes
            .strip_prefix(MAGIC)
            .ok_or_else(|| malformed("no magic"))?,
    };
    let entry = match r.take(1, "tag")?[0] {
        tag @ (SESSION | SESSION_V1) => {
            let keyed = tag == SESSION;
            let n = r.count(1, "configuration")?;
            let config = hex::encode(r.take(n, "configuration")?);
            let sum = r.words("sum")?;
            let blinding_sum = r.words("blinding sum")?;
            let size = if keyed {
                COMMITMENT_BYTES
            } else {
                COMMITMENT_BYTES_V1
            };
            let n = r.count(size, "commitments")?;
            let mut commitments = Vec::with_capacity(n);
            for _ in 0..n {
                let id = r.u32("commitment id")?;
                let certificate = hex::encode(r.take(32, "certificate hash")?);
                let (c_pk, s_pk) = if keyed {
                    (r.array("c_pk")?, r.array("s_pk")?)
                } else {
                    ([0u8; 32], [0u8; 32])
                };
                commitments.push(CommitmentRecord {
                    id,
                    certificate,
                    c_pk,
                    s_pk,
                    commitment: r.array("commitment")?,
                    signature: r.array("signature")?,
                });
            }
            LineageEntry::Session(SessionRecord {
                config,
                sum,
                blinding_sum,
                commitments,
            })
        }
        COMPACT => {
            return Err(malformed(
                "a compact record, to be rebuilt from the key list before it is read",
            ));
        }
        SKIPPED => LineageEntry::SkippedEvaluation {
            round: r.u32("round")?,
            binding: hex::encode(r.take(32, "binding")?),
        },
        t => return Err(malformed(&format!("unknown tag {t}"))),
    };
    if !r.rest.is_empty() {
        return Err(malformed(&format!(
            "{} bytes after the entry",
            r.rest.len()
        )));
    }
    Ok(entry)
}

/// One survivor's signed advertisement as a member of its session holds it, with the
/// hash of the certificate it was checked under: everything a record keeps of it but its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldEntry {
    /// SHA-256 of the survivor's certificate.
    pub certificate: [u8; 32],
    /// Its advertised keys.
    pub c_pk: [u8; 32],
    /// See `c_pk`.
    pub s_pk: [u8; 32],
    /// Its commitment.
    pub commitment: [u8; 32],
    /// Its advertisement's signature.
    pub signature: [u8; 64],
}

impl HeldEntry {
    /// Whether `c` records exactly this entry.
    pub fn matches(&self, c: &CommitmentRecord) -> bool {
        c.c_pk == self.c_pk
            && c.s_pk == self.s_pk
            && c.commitment == self.commitment
            && c.signature == self.signature
            && !c.certificate.is_empty()
            && bytes_of::<32>(&c.certificate) == self.certificate
    }
}

/// The parts of a binary session record of one tag.
struct SessionHead<'a> {
    /// Its bytes up to the commitments (magic, tag, configuration, sum, blinding sum).
    head: Vec<u8>,
    /// The encoded session configuration.
    config: &'a [u8],
    /// What follows the head: the commitments.
    rest: &'a [u8],
}

/// The head of a session record, or `None` for bytes that are not a binary session record
/// of `tag`.
fn session_head(bytes: &[u8], tag: u8) -> Option<SessionHead<'_>> {
    let rest = bytes.strip_prefix(MAGIC)?;
    if rest.first() != Some(&tag) {
        return None;
    }
    let mut r = Reader { rest: &rest[1..] };
    let n = r.count(1, "configuration").ok()?;
    let config = r.take(n, "configuration").ok()?;
    r.words("sum").ok()?;
    r.words("blinding sum").ok()?;
    let head_len = bytes.len() - r.rest.len();
    Some(SessionHead {
        head: bytes[..head_len].to_vec(),
        config,
        rest: r.rest,
    })
}

/// The compact form of a session record's bytes (see the module documentation); `None`
/// when `full` is anything else, which is then served as it is.
pub fn compact(full: &[u8]) -> Option<Vec<u8>> {
    let SessionHead { mut head, rest, .. } = session_head(full, SESSION)?;
    head[MAGIC.len()] = COMPACT;
    let mut r = Reader { rest };
    let n = r.count(COMMITMENT_BYTES, "commitments").ok()?;
    if r.rest.len() != n * COMMITMENT_BYTES {
        return None;
    }
    head.extend_from_slice(&(n as u32).to_le_bytes());
    for entry in r.rest.chunks_exact(COMMITMENT_BYTES) {
        head.extend_from_slice(&entry[..4]);
    }
    Some(head)
}

/// Why a compact record could not be rebuilt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    /// The bytes are not a compact record (e.g. the full entry was served).
    #[error("not a compact record")]
    NotCompact,
    /// The compact record does not read.
    #[error("{0}")]
    Malformed(String),
    /// This agent does not hold the advertisement of a survivor it names.
    #[error("participant {0}'s advertisement in that session is not held")]
    NotHeld(u32),
}

/// Rebuilds a session record's bytes from its compact form and the advertisements the
/// caller holds, by session id and participant (`held`). The caller checks the result
/// against the hash it asked for: a record rebuilt from anything else does not match.
pub fn expand(
    compact_bytes: &[u8],
    held: impl Fn(&[u8; 32], u32) -> Option<HeldEntry>,
) -> Result<Vec<u8>, ExpandError> {
    let SessionHead {
        head: mut out,
        config,
        rest,
    } = session_head(compact_bytes, COMPACT).ok_or(ExpandError::NotCompact)?;
    out[MAGIC.len()] = SESSION;
    let session_id = fedrisk_secagg::SessionConfig::decode(config)
        .map_err(|e| ExpandError::Malformed(format!("configuration: {e}")))?
        .session_id;
    let mut r = Reader { rest };
    let n = r
        .count(4, "commitment ids")
        .map_err(|e| ExpandError::Malformed(e.to_string()))?;
    if r.rest.len() != 4 * n {
        return Err(ExpandError::Malformed(
            "compact record: ids and length disagree".into(),
        ));
    }
    out.extend_from_slice(&(n as u32).to_le_bytes());
    for raw in r.rest.chunks_exact(4) {
        let id = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
        let h = held(&session_id, id).ok_or(ExpandError::NotHeld(id))?;
        out.extend_from_slice(raw);
        out.extend_from_slice(&h.certificate);
        out.extend_from_slice(&h.c_pk);
        out.extend_from_slice(&h.s_pk);
        out.extend_from_slice(&h.commitment);
        out.extend_from_slice(&h.signature);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn record(n: usize) -> LineageEntry {
        LineageEntry::Session(SessionRecord {
            config: "0a0b0c".into(),
            sum: vec![1, u64::MAX, 42],
            blinding_sum: vec![7, 8, 9, 10],
            commitments: (0..n as u32)
                .map(|i| CommitmentRecord {
                    id: i * 3 + 1,
                    certificate: hex::encode([i as u8; 32]),
                    c_pk: [i as u8 ^ 0x11; 32],
                    s_pk: [i as u8 ^ 0x22; 32],
                    commitment: [i as u8 ^ 0x5a; 32],
                    signature: [i as u8 ^ 0xa5; 64],
                })
                .collect(),
        })
    }

    #[test]
    fn entries_round_trip_and_a_record_is_a_third_of_its_json() {
        for entry in [
            record(0),
            record(200),
            LineageEntry::SkippedEvaluation {
                round: 3,
                binding: hex::encode([9u8; 32]),
            },
        ] {
            let bytes = encode(&entry);
            assert_eq!(LineageEntry::decode(&bytes).expect("decodes"), entry);
        }
        let big = record(200);
        let json = serde_json::to_vec(&big).expect("json");
        let binary = encode(&big);
        assert!(
            binary.len() * 2 < json.len(),
            "binary {} B, JSON {} B",
            binary.len(),
            json.len()
        );
        // Entries kept as JSON before still read.
        assert_eq!(LineageEntry::decode(&json).expect("json decodes"), big);
    }

    #[test]
    fn trailing_bytes_and_short_entries_are_refused() {
        let mut bytes = encode(&record(3));
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        bytes.push(0);
        assert!(decode(&bytes).is_err());
    }

    /// A record over a real session configuration, and what each survivor's fellow members
    /// hold of its advertisement.
    fn held_record(n: u32) -> (Vec<u8>, [u8; 32], BTreeMap<u32, HeldEntry>) {
        let cfg = fedrisk_secagg::sim::SimConfig::new(n as usize, 2);
        let sim = fedrisk_secagg::sim::Sim::new(cfg, vec![]).expect("sim");
        let held: BTreeMap<u32, HeldEntry> = (0..n)
            .map(|i| {
                let b = i as u8;
                let h = HeldEntry {
                    certificate: [b; 32],
                    c_pk: [b ^ 0x11; 32],
                    s_pk: [b ^ 0x22; 32],
                    commitment: [b ^ 0x33; 32],
                    signature: [b ^ 0x44; 64],
                };
                (i, h)
            })
            .collect();
        let record = LineageEntry::Session(SessionRecord {
            config: hex::encode(sim.session.encode()),
            sum: vec![1, 2, 3],
            blinding_sum: vec![4; 7],
            commitments: held
                .iter()
                .map(|(id, h)| CommitmentRecord {
                    id: *id,
                    certificate: hex::encode(h.certificate),
                    c_pk: h.c_pk,
                    s_pk: h.s_pk,
                    commitment: h.commitment,
                    signature: h.signature,
                })
                .collect(),
        });
        (encode(&record), sim.session.session_id, held)
    }

    #[test]
    fn a_member_rebuilds_a_record_from_its_compact_form_and_nothing_else_matches() {
        let (full, sid, held) = held_record(40);
        let small = compact(&full).expect("a session record compacts");
        assert!(
            small.len() * 10 < full.len(),
            "{} of {}",
            small.len(),
            full.len()
        );
        let lookup = |s: &[u8; 32], id: u32| (s == &sid).then(|| held.get(&id).cloned()).flatten();
        assert_eq!(expand(&small, lookup).expect("rebuilt"), full);
        // Every held field counts: one changed byte anywhere gives other bytes.
        for field in 0..5 {
            let mut other = held.clone();
            let h = other.get_mut(&7).expect("held");
            match field {
                0 => h.certificate[0] ^= 1,
                1 => h.c_pk[0] ^= 1,
                2 => h.s_pk[0] ^= 1,
                3 => h.commitment[0] ^= 1,
                _ => h.signature[63] ^= 1,
            }
            let rebuilt = expand(&small, |s: &[u8; 32], id: u32| {
                (s == &sid).then(|| other.get(&id).cloned()).flatten()
            })
            .expect("rebuilt");
            assert_ne!(rebuilt, full, "field {field}");
        }
        // Held for another session, or not held at all: nothing to rebuild from.
        assert_eq!(
            expand(&small, |_: &[u8; 32], id: u32| (id != 9)
                .then(|| held[&id].clone())),
            Err(ExpandError::NotHeld(9))
        );
        let elsewhere = [0xEEu8; 32];
        assert!(matches!(
            expand(&small, |s: &[u8; 32], id: u32| (s == &elsewhere)
                .then(|| held[&id].clone())),
            Err(ExpandError::NotHeld(_))
        ));
        // The full bytes and other entries are not compact, and a compact record is never
        // read as an entry.
        assert_eq!(expand(&full, lookup), Err(ExpandError::NotCompact));
        let skipped = encode(&LineageEntry::SkippedEvaluation {
            round: 1,
            binding: hex::encode([1u8; 32]),
        });
        assert!(compact(&skipped).is_none());
        assert!(LineageEntry::decode(&small).is_err());
        // A record matches its held entries only where every field agrees.
        let LineageEntry::Session(r) = LineageEntry::decode(&full).expect("decodes") else {
            panic!("a session");
        };
        assert!(r.commitments.iter().all(|c| held[&c.id].matches(c)));
        assert!(!held[&3].matches(&r.commitments[4]));
    }

    proptest! {
        #[test]
        fn hostile_compact_bytes_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..400)) {
            let mut bytes = MAGIC.to_vec();
            bytes.push(COMPACT);
            bytes.extend_from_slice(&tail);
            let _ = expand(&bytes, |_: &[u8; 32], _| None);
            let _ = compact(&bytes);
        }

        #[test]
        fn hostile_bytes_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut bytes = MAGIC.to_vec();
            bytes.extend_from_slice(&tail);
            let _ = LineageEntry::decode(&bytes);
        }

        #[test]
        fn a_changed_byte_is_refused_or_decodes_to_another_entry(pos in 0usize..2000, xor in 1u8..=255) {
            let entry = record(10);
            let mut bytes = encode(&entry);
            let pos = pos % bytes.len();
            bytes[pos] ^= xor;
            if let Ok(other) = LineageEntry::decode(&bytes) {
                prop_assert_ne!(other, entry);
            }
        }
    }
}

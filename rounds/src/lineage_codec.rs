//! The binary form of a [`LineageEntry`]. Every agent downloads every entry of its job, and
//! a session record carries one signed commitment per survivor: as hex inside JSON it
//! took about 330 bytes per survivor, here 132 (id, certificate hash, point, signature).
//!
//! Layout, integers little-endian: the magic `FRL1`, then a tag byte.
//! Tag 1, a session: the configuration (u32 length, bytes), the sum (u32 count, u64
//! words), the blinding sum (likewise), the commitments (u32 count, then per commitment
//! its id u32, certificate SHA-256 32 bytes, compressed point 32 bytes, signature 64
//! bytes). Tag 2, a skipped evaluation: the round u32 and the task's binding, 32 bytes.
//! Nothing may follow. Lengths are checked against what remains before anything is
//! allocated, so hostile bytes get an error, never a large allocation or a panic.

use crate::lineage::{CommitmentRecord, LineageEntry, LineageError, SessionRecord};

/// The first bytes of a binary entry (a JSON entry starts with `{`).
pub const MAGIC: &[u8] = b"FRL1";

const SESSION: u8 = 1;
const SKIPPED: u8 = 2;
const COMMITMENT_BYTES: usize = 4 + 32 + 32 + 64;

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
                out.extend_from_slice(&bytes_of::<32>(&c.commitment));
                out.extend_from_slice(&bytes_of::<64>(&c.signature));
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
        SESSION => {
            let n = r.count(1, "configuration")?;
            let config = hex::encode(r.take(n, "configuration")?);
            let sum = r.words("sum")?;
            let blinding_sum = r.words("blinding sum")?;
            let n = r.count(COMMITMENT_BYTES, "commitments")?;
            let mut commitments = Vec::with_capacity(n);
            for _ in 0..n {
                commitments.push(CommitmentRecord {
                    id: r.u32("commitment id")?,
                    certificate: hex::encode(r.take(32, "certificate hash")?),
                    commitment: hex::encode(r.take(32, "commitment")?),
                    signature: hex::encode(r.take(64, "signature")?),
                });
            }
            LineageEntry::Session(SessionRecord {
                config,
                sum,
                blinding_sum,
                commitments,
            })
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(n: usize) -> LineageEntry {
        LineageEntry::Session(SessionRecord {
            config: "0a0b0c".into(),
            sum: vec![1, u64::MAX, 42],
            blinding_sum: vec![7, 8, 9, 10],
            commitments: (0..n as u32)
                .map(|i| CommitmentRecord {
                    id: i * 3 + 1,
                    certificate: hex::encode([i as u8; 32]),
                    commitment: hex::encode([i as u8 ^ 0x5a; 32]),
                    signature: hex::encode([i as u8 ^ 0xa5; 64]),
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

    proptest! {
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

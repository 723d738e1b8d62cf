//! The audit chain: an append-only, hash-chained, signed log of what the platform did, in
//! the coordinator's database (table `audit`, which refuses UPDATE and DELETE).
//!
//! Every [`Event`] becomes one record (job submissions, cancellations, exports, the roster in
//! force and its changes, sessions with their survivor sets and aggregate hashes, rounds,
//! model versions, refusals, job ends). Before each session's `session_completed`, a
//! `survivors_signed` record holds the survivor set with each survivor's Ed25519 signature
//! over it (`fedrisk_secagg::crypto::consistency_transcript(session_id, u1_digest,
//! survivors)`, by its certificate's key, listed with that key), so an institution can show
//! that a model's lineage includes a sum it signed for (`fedrisk-participant audit-prove`).
//! A record is
//! `seq, at_ms, kind, body, prev_hash, hash, signature` where
//!
//! - `body` is the event as JSON (its `event` field is `kind`);
//! - `hash` = hex SHA-256 of the UTF-8 bytes of
//!   `"fedrisk-audit-v1\n{seq}\n{at_ms}\n{kind}\n{body}\n{prev_hash}"`;
//! - `prev_hash` is the previous record's `hash` (64 zeros for record 1), `seq` counts from 1
//!   without gaps;
//! - `signature` = hex DER ECDSA P-256/SHA-256 signature by the coordinator's key
//!   (`coordinator.key`; public key in `coordinator.pem`) over the 32 raw bytes of `hash`.
//!
//! [`verify`] checks all of it and names the first record that does not hold. `audit export`
//! writes the records as JSON lines with exactly these fields, so anyone can check them with
//! SHA-256 and ECDSA tools alone (README: "Audit trail").

use std::sync::Arc;

use fedrisk_identity::signer::{Signer, Verifier};
use fedrisk_rounds::SessionSum;
use sha2::{Digest, Sha256};
use tracing::error;

use crate::events::{Event, EventSink};
use crate::store::{AuditRow, Store, StoreError};

/// The `prev_hash` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const DOMAIN: &str = "fedrisk-audit-v1";

/// SHA-256 of a record's canonical bytes.
pub fn record_hash(seq: u64, at_ms: i64, kind: &str, body: &str, prev_hash: &str) -> [u8; 32] {
    let text = format!("{DOMAIN}\n{seq}\n{at_ms}\n{kind}\n{body}\n{prev_hash}");
    Sha256::digest(text.as_bytes()).into()
}

/// SHA-256 of a session's decoded sum: total weight (u64), then each element's IEEE-754 bits,
/// all little-endian. Two coordinators that summed the same inputs record the same hash.
pub fn aggregate_hash(sum: &SessionSum) -> String {
    let mut h = Sha256::new();
    h.update(sum.contributors.to_le_bytes());
    for v in &sum.sums {
        h.update(v.to_bits().to_le_bytes());
    }
    hex::encode(h.finalize())
}

/// Appends signed records to the store's chain; as an [`EventSink`], one per event.
pub struct AuditLog {
    store: Arc<Store>,
    signer: Arc<Signer>,
}

impl AuditLog {
    pub fn new(store: Arc<Store>, signer: Arc<Signer>) -> Self {
        Self { store, signer }
    }

    /// Appends one event as a record.
    pub fn append(&self, event: &Event) -> Result<AuditRow, StoreError> {
        let value = serde_json::to_value(event).map_err(|e| StoreError::Seal(e.to_string()))?;
        let kind = value["event"].as_str().unwrap_or("unknown").to_owned();
        let body = value.to_string();
        self.store.append_audit(&kind, &body, |seq, at_ms, prev| {
            let hash = record_hash(seq, at_ms, &kind, &body, prev);
            let signature = self.signer.sign(&hash).map_err(|e| e.to_string())?;
            Ok((hex::encode(hash), hex::encode(signature)))
        })
    }
}

impl EventSink for AuditLog {
    fn emit(&self, event: &Event) {
        if !event.audited() {
            return;
        }
        if let Err(e) = self.append(event) {
            error!(error = %e, "could not append to the audit chain");
        }
    }
}

/// Why a record does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit record {seq} ({kind}): {reason}")]
pub struct Broken {
    /// The first record that does not hold (its `seq`, or its position when that is wrong).
    pub seq: u64,
    pub kind: String,
    pub reason: String,
}

/// Checks the chain from its first record: numbering, links, hashes and signatures. Returns
/// the number of records, or the first broken one.
pub fn verify(rows: &[AuditRow], verifier: &Verifier) -> Result<usize, Broken> {
    let mut prev = GENESIS.to_owned();
    for (i, r) in rows.iter().enumerate() {
        let expected_seq = i as u64 + 1;
        let broken = |reason: String| Broken {
            seq: expected_seq,
            kind: r.kind.clone(),
            reason,
        };
        if r.seq != expected_seq {
            return Err(broken(format!(
                "numbered {}, expected {expected_seq}",
                r.seq
            )));
        }
        if r.prev_hash != prev {
            return Err(broken(
                "prev_hash is not the previous record's hash: a record was removed, inserted or altered before it".into(),
            ));
        }
        let hash = record_hash(r.seq, r.at_ms, &r.kind, &r.body, &r.prev_hash);
        if hex::encode(hash) != r.hash {
            return Err(broken(
                "hash does not match the record's content: the record was altered".into(),
            ));
        }
        let body_kind = serde_json::from_str::<serde_json::Value>(&r.body)
            .ok()
            .and_then(|v| v["event"].as_str().map(str::to_owned));
        if body_kind.as_deref() != Some(r.kind.as_str()) {
            return Err(broken("body is not this kind's JSON".into()));
        }
        let signature = hex::decode(&r.signature).unwrap_or_default();
        if !verifier.verify(&hash, &signature) {
            return Err(broken(
                "signature is not the coordinator's over this hash".into(),
            ));
        }
        prev = r.hash.clone();
    }
    Ok(rows.len())
}

/// Reads JSON lines written by `audit export`; errors name the line.
pub fn parse_jsonl(text: &str) -> Result<Vec<AuditRow>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| format!("line {} column {}: {e}", i + 1, e.column()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, Arc<Store>, AuditLog, Verifier) {
        let dir = tempfile::tempdir().unwrap();
        fedrisk_identity::pki::init(&dir.path().join("pki"), "fed").unwrap();
        let pki = fedrisk_identity::pki::PkiDir::new(&dir.path().join("pki"));
        let store = Arc::new(Store::open(&dir.path().join("c.db")).unwrap());
        let log = AuditLog::new(
            store.clone(),
            Arc::new(Signer::load(&pki.server_key()).unwrap()),
        );
        let verifier = Verifier::from_cert_file(&pki.server_cert()).unwrap();
        (dir, store, log, verifier)
    }

    fn events() -> Vec<Event> {
        vec![
            Event::JobSubmitted {
                job: 1,
                name: "pd".into(),
                spec_hash: "ab".repeat(32),
                by: "ops".into(),
            },
            Event::JobStarted {
                job: 1,
                round: 0,
                resumed: false,
            },
            Event::SessionCompleted {
                job: 1,
                round: 0,
                kind: "statistics",
                survivors: vec![1, 2, 3],
                aggregate_hash: "cd".repeat(32),
                bytes_up: 10,
                bytes_down: 20,
            },
            Event::ModelVersion {
                job: 1,
                round: 1,
                content_hash: "ef".repeat(32),
            },
            Event::ModelExported {
                job: 1,
                round: 1,
                content_hash: "ef".repeat(32),
                by: "ops".into(),
            },
        ]
    }

    #[test]
    fn a_chain_verifies_and_any_flipped_byte_names_its_record() {
        let (dir, store, log, verifier) = setup();
        for e in events() {
            log.append(&e).unwrap();
        }
        let rows = store.audit_rows().unwrap();
        assert_eq!(verify(&rows, &verifier), Ok(5));
        assert_eq!(rows[2].kind, "session_completed");
        assert!(rows[2].body.contains("\"survivors\":[1,2,3]"));

        // Flip one byte of each stored field of record 3 in the database itself.
        drop(log);
        drop(store);
        let conn = rusqlite::Connection::open(dir.path().join("c.db")).unwrap();
        conn.execute_batch("DROP TRIGGER audit_no_update").unwrap();
        for column in ["kind", "body", "prev_hash", "hash", "signature", "at_ms"] {
            let original: String = conn
                .query_row(
                    &format!("SELECT CAST({column} AS TEXT) FROM audit WHERE seq = 3"),
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            let mut bytes = original.clone().into_bytes();
            let at = bytes.len() / 2;
            bytes[at] ^= 0x01;
            let flipped = String::from_utf8(bytes).unwrap();
            let set = |v: &str| {
                conn.execute(
                    &format!("UPDATE audit SET {column} = ?1 WHERE seq = 3"),
                    [v],
                )
                .unwrap()
            };
            set(&flipped);
            let store = Store::open(&dir.path().join("c.db")).unwrap();
            let err = verify(&store.audit_rows().unwrap(), &verifier).unwrap_err();
            assert_eq!(err.seq, 3, "{column}: {err}");
            set(&original);
        }
        let store = Store::open(&dir.path().join("c.db")).unwrap();
        assert_eq!(verify(&store.audit_rows().unwrap(), &verifier), Ok(5));
    }

    #[test]
    fn the_table_refuses_updates_and_deletes_and_a_removed_record_breaks_the_next() {
        let (dir, store, log, verifier) = setup();
        for e in events() {
            log.append(&e).unwrap();
        }
        let conn = rusqlite::Connection::open(dir.path().join("c.db")).unwrap();
        let err = conn
            .execute("DELETE FROM audit WHERE seq = 2", [])
            .unwrap_err()
            .to_string();
        assert!(err.contains("append-only"), "{err}");
        assert!(
            conn.execute("UPDATE audit SET body = '' WHERE seq = 2", [])
                .is_err()
        );
        let mut rows = store.audit_rows().unwrap();
        rows.remove(1);
        let err = verify(&rows, &verifier).unwrap_err();
        assert_eq!(err.seq, 2);
        // Another key's signatures do not verify.
        let other = tempfile::tempdir().unwrap();
        fedrisk_identity::pki::init(other.path(), "other").unwrap();
        let v2 = Verifier::from_cert_file(
            &fedrisk_identity::pki::PkiDir::new(other.path()).server_cert(),
        )
        .unwrap();
        let err = verify(&store.audit_rows().unwrap(), &v2).unwrap_err();
        assert_eq!(err.seq, 1);
        assert!(err.reason.contains("signature"), "{err}");
    }

    #[test]
    fn exported_lines_read_back_and_name_a_bad_line() {
        let (_dir, store, log, verifier) = setup();
        for e in events() {
            log.append(&e).unwrap();
        }
        let rows = store.audit_rows().unwrap();
        let text: String = rows
            .iter()
            .map(|r| serde_json::to_string(r).unwrap() + "\n")
            .collect();
        let back = parse_jsonl(&text).unwrap();
        assert_eq!(back, rows);
        assert_eq!(verify(&back, &verifier), Ok(5));
        let err = parse_jsonl(&format!("{text}{{\"seq\": 6}}\n")).unwrap_err();
        assert!(err.starts_with("line 6"), "{err}");
    }
}

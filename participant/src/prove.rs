//! `fedrisk-participant audit-prove`: shows, from the coordinator's audit chain (`audit
//! export`) and a model file, that the model version includes sums this institution signed
//! for.
//!
//! The chain is checked from its first record up to the model's (numbering, links, each
//! record's hash and, given the coordinator's certificate, its signature). The model names
//! the record that produced it (`provenance.audit_record`); the sessions of its lineage are
//! the job's sessions of its round and before, recorded before it. Each session's
//! `survivors_signed` record carries the survivors' Ed25519 signatures over
//! `fedrisk_secagg::crypto::consistency_transcript(session_id, u1_digest, survivors)`: the
//! proof is each such record holding a signature that verifies under this institution's
//! certificate key. The coordinator cannot forge one: the signature is by the institution's
//! own key, over the session and the survivor set the sum was unmasked for.

use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};
use fedrisk_identity::signer::Verifier;
use fedrisk_models::model_file::AuditRecordRef;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Why no proof could be made.
#[derive(Debug, thiserror::Error)]
pub enum ProveError {
    #[error("line {line} column {column}: {message}")]
    Parse {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("audit record {seq} ({kind}): {reason}")]
    Broken {
        seq: u64,
        kind: String,
        reason: String,
    },
    #[error("the model names audit record {seq} ({hash}), which the file {state}")]
    ModelRecord {
        seq: u64,
        hash: String,
        state: &'static str,
    },
    #[error("record {seq}'s {field}: {reason}")]
    Field {
        seq: u64,
        field: &'static str,
        reason: String,
    },
    #[error(
        "no session of the model's lineage (job {job}, rounds 0 to {round}) carries a valid signature by this institution's key"
    )]
    NotIncluded { job: u64, round: u32 },
}

/// One line of `audit export`.
#[derive(Debug, Deserialize)]
struct Row {
    seq: u64,
    at_ms: i64,
    kind: String,
    body: String,
    prev_hash: String,
    hash: String,
    signature: String,
}

#[derive(Debug, Deserialize)]
struct Signed {
    job: u64,
    round: u32,
    kind: String,
    session_id: String,
    u1_digest: String,
    survivors: Vec<u32>,
    signatures: Vec<SignatureEntry>,
}

#[derive(Debug, Deserialize)]
struct SignatureEntry {
    participant: u32,
    public_key: String,
    signature: String,
}

/// A session of the model's lineage this institution signed the survivor set of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedSession {
    /// The `survivors_signed` record.
    pub seq: u64,
    pub round: u32,
    pub kind: String,
    /// This institution's id in the session, and how many survivors the sum was over.
    pub participant: u32,
    pub survivors: usize,
}

/// What was shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    pub job: u64,
    pub round: u32,
    /// The model's record and the records checked (1 to it).
    pub model_record: u64,
    /// Whether the coordinator's signatures were checked too.
    pub signatures_checked: bool,
    pub sessions: Vec<SignedSession>,
}

fn record_hash(r: &Row) -> [u8; 32] {
    let text = format!(
        "fedrisk-audit-v1\n{}\n{}\n{}\n{}\n{}",
        r.seq, r.at_ms, r.kind, r.body, r.prev_hash
    );
    Sha256::digest(text.as_bytes()).into()
}

fn parse(text: &str) -> Result<Vec<Row>, ProveError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| ProveError::Parse {
                line: i + 1,
                column: e.column(),
                message: e.to_string(),
            })
        })
        .collect()
}

fn hex_array<const N: usize>(
    seq: u64,
    field: &'static str,
    s: &str,
) -> Result<[u8; N], ProveError> {
    let bytes = hex::decode(s).map_err(|e| ProveError::Field {
        seq,
        field,
        reason: e.to_string(),
    })?;
    bytes.try_into().map_err(|_| ProveError::Field {
        seq,
        field,
        reason: format!("expected {N} bytes"),
    })
}

/// Proves from `audit` (the text of `audit export`) that the model whose provenance names
/// record `named` includes sessions whose survivor set `me` signed; `coordinator` also
/// checks the coordinator's record signatures.
pub fn prove(
    audit: &str,
    named: &AuditRecordRef,
    me: &VerifyingKey,
    coordinator: Option<&Verifier>,
) -> Result<Proof, ProveError> {
    let rows = parse(audit)?;
    let Some(end) = rows.iter().position(|r| r.seq == named.seq) else {
        return Err(ProveError::ModelRecord {
            seq: named.seq,
            hash: named.hash.clone(),
            state: "does not hold",
        });
    };
    let mut prev = "0".repeat(64);
    for (i, r) in rows[..=end].iter().enumerate() {
        let broken = |reason: &str| ProveError::Broken {
            seq: i as u64 + 1,
            kind: r.kind.clone(),
            reason: reason.to_owned(),
        };
        if r.seq != i as u64 + 1 {
            return Err(broken("numbered out of order"));
        }
        if r.prev_hash != prev {
            return Err(broken("prev_hash is not the previous record's hash"));
        }
        let hash = record_hash(r);
        if hex::encode(hash) != r.hash {
            return Err(broken("its hash does not match its content"));
        }
        if let Some(v) = coordinator {
            let sig = hex::decode(&r.signature).map_err(|_| broken("signature is not hex"))?;
            if !v.verify(&hash, &sig) {
                return Err(broken("the coordinator's signature does not verify"));
            }
        }
        prev = r.hash.clone();
    }
    let model_row = &rows[end];
    if model_row.hash != named.hash {
        return Err(ProveError::ModelRecord {
            seq: named.seq,
            hash: named.hash.clone(),
            state: "holds with another hash",
        });
    }
    let body: serde_json::Value =
        serde_json::from_str(&model_row.body).map_err(|e| ProveError::Field {
            seq: model_row.seq,
            field: "body",
            reason: e.to_string(),
        })?;
    let field = |name: &'static str| {
        body[name].as_u64().ok_or(ProveError::Field {
            seq: model_row.seq,
            field: name,
            reason: "missing".into(),
        })
    };
    let job = field("job")?;
    let round = u32::try_from(field("round")?).map_err(|_| ProveError::Field {
        seq: model_row.seq,
        field: "round",
        reason: "out of range".into(),
    })?;
    let mine = hex::encode(me.to_bytes());
    let mut sessions = Vec::new();
    for r in rows[..end].iter().filter(|r| r.kind == "survivors_signed") {
        let s: Signed = serde_json::from_str(&r.body).map_err(|e| ProveError::Field {
            seq: r.seq,
            field: "body",
            reason: e.to_string(),
        })?;
        if s.job != job || s.round > round {
            continue;
        }
        let session_id = hex_array::<32>(r.seq, "session_id", &s.session_id)?;
        let digest = hex_array::<32>(r.seq, "u1_digest", &s.u1_digest)?;
        let transcript =
            fedrisk_secagg::crypto::consistency_transcript(&session_id, &digest, &s.survivors);
        for e in &s.signatures {
            let Ok(bytes) = hex_array::<64>(r.seq, "signature", &e.signature) else {
                continue;
            };
            // Any entry, whatever key it claims: only this institution's key counts.
            if me
                .verify(&transcript, &Signature::from_bytes(&bytes))
                .is_ok()
            {
                sessions.push(SignedSession {
                    seq: r.seq,
                    round: s.round,
                    kind: s.kind.clone(),
                    participant: e.participant,
                    survivors: s.survivors.len(),
                });
                break;
            } else if e.public_key == mine {
                return Err(ProveError::Field {
                    seq: r.seq,
                    field: "signatures",
                    reason: format!(
                        "participant {}'s entry names this institution's key but its signature does not verify",
                        e.participant
                    ),
                });
            }
        }
    }
    if sessions.is_empty() {
        return Err(ProveError::NotIncluded { job, round });
    }
    Ok(Proof {
        job,
        round,
        model_record: named.seq,
        signatures_checked: coordinator.is_some(),
        sessions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer as _, SigningKey};

    fn row(seq: u64, prev: &str, kind: &str, body: &str) -> Row {
        let mut r = Row {
            seq,
            at_ms: 1000 + seq as i64,
            kind: kind.into(),
            body: body.into(),
            prev_hash: prev.into(),
            hash: String::new(),
            signature: String::new(),
        };
        r.hash = hex::encode(record_hash(&r));
        r
    }

    fn line(r: &Row) -> String {
        serde_json::json!({
            "seq": r.seq, "at_ms": r.at_ms, "kind": r.kind, "body": r.body,
            "prev_hash": r.prev_hash, "hash": r.hash, "signature": r.signature,
        })
        .to_string()
    }

    /// A chain with one signed session of job 1 round `round` (signed by `signers`), and a
    /// model whose provenance names the record after it.
    fn chain(signers: &[(u32, &SigningKey)], round: u32) -> (String, AuditRecordRef) {
        let sid = [7u8; 32];
        let digest = [9u8; 32];
        let survivors: Vec<u32> = signers.iter().map(|(i, _)| *i).collect();
        let t = fedrisk_secagg::crypto::consistency_transcript(&sid, &digest, &survivors);
        let sigs: Vec<serde_json::Value> = signers
            .iter()
            .map(|(i, k)| {
                serde_json::json!({
                    "participant": i,
                    "public_key": hex::encode(k.verifying_key().to_bytes()),
                    "signature": hex::encode(k.sign(&t).to_bytes()),
                })
            })
            .collect();
        let signed = serde_json::json!({
            "event": "survivors_signed", "job": 1, "round": round, "kind": "update",
            "session_id": hex::encode(sid), "u1_digest": hex::encode(digest),
            "survivors": survivors, "signatures": sigs,
        })
        .to_string();
        let r1 = row(1, &"0".repeat(64), "survivors_signed", &signed);
        let done = format!(
            r#"{{"event":"session_completed","job":1,"round":{round},"kind":"evaluation"}}"#
        );
        let r2 = row(2, &r1.hash.clone(), "session_completed", &done);
        let named = AuditRecordRef {
            seq: 2,
            hash: r2.hash.clone(),
            kind: "session_completed".into(),
        };
        (format!("{}\n{}\n", line(&r1), line(&r2)), named)
    }

    #[test]
    fn a_signature_by_this_institution_proves_the_round_and_nothing_else_does() {
        let a = SigningKey::from_bytes(&[1; 32]);
        let b = SigningKey::from_bytes(&[2; 32]);
        let c = SigningKey::from_bytes(&[3; 32]);
        let outsider = SigningKey::from_bytes(&[4; 32]);
        let (audit, model) = chain(&[(1, &a), (2, &b), (3, &c)], 1);
        let proof = prove(&audit, &model, &b.verifying_key(), None).expect("proof");
        assert_eq!(proof.sessions.len(), 1);
        assert_eq!(
            (proof.sessions[0].round, proof.sessions[0].participant),
            (1, 2)
        );
        // An institution that signed nothing in it proves nothing.
        let e = prove(&audit, &model, &outsider.verifying_key(), None).unwrap_err();
        assert!(
            matches!(e, ProveError::NotIncluded { job: 1, round: 1 }),
            "{e}"
        );
        // A record whose signature was swapped for another signer's, under b's key: refused.
        let forged = audit.replacen(
            &hex::encode(b.verifying_key().to_bytes()),
            &hex::encode(outsider.verifying_key().to_bytes()),
            1,
        );
        // (Changing the body breaks the chain first.)
        let e = prove(&forged, &model, &b.verifying_key(), None).unwrap_err();
        assert!(matches!(e, ProveError::Broken { seq: 1, .. }), "{e}");
    }

    #[test]
    fn a_session_after_the_models_round_is_not_its_lineage() {
        let a = SigningKey::from_bytes(&[1; 32]);
        let (audit, mut model) = chain(&[(1, &a)], 1);
        // The same chain, but the model's record says round 0: the round-1 session is later.
        let text: Vec<&str> = audit.lines().collect();
        let r1: serde_json::Value = serde_json::from_str(text[0]).expect("r1");
        let r2 = row(
            2,
            r1["hash"].as_str().expect("hash"),
            "session_completed",
            r#"{"event":"session_completed","job":1,"round":0,"kind":"evaluation"}"#,
        );
        let audit = format!("{}\n{}\n", text[0], line(&r2));
        model.hash = r2.hash.clone();
        let e = prove(&audit, &model, &a.verifying_key(), None).unwrap_err();
        assert!(matches!(e, ProveError::NotIncluded { round: 0, .. }), "{e}");
    }
}

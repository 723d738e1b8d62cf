//! A job's lineage: what lets an agent check that a task is the one the job's plan asks
//! for after the job's real sums, before it computes anything.
//!
//! Why: a task carries the model to score or to take a gradient at, the scales of a grid,
//! the preprocessing. Without a check, an active coordinator chooses them, and a model with
//! one non-zero coefficient turns a score histogram into a histogram of one feature. So the
//! coordinator keeps, for every session whose output its plan absorbed, a
//! [`SessionRecord`]: the session configuration, the output (sum and blinding sum) and the
//! survivors' signed commitments ([`fedrisk_secagg::commit`]). An agent keeps a
//! [`Replica`] of the job's [`JobPlan`], applies each record only after checking that its
//! session was the plan's next one and that its sum opens commitments signed by at least the
//! session's threshold of certified participants, and takes part in a task only if the
//! replica would ask for exactly that task next. The coordinator can still choose who takes
//! part and when; it can no longer choose what a task contains.
//!
//! What this does not stop: colluding participants' own inputs are their choice, so
//! colluders inside a session can steer its sum (poisoning); see SECURITY.md.

use std::collections::{BTreeMap, BTreeSet};

use fedrisk_secagg::commit::{SignedCommitment, verify_sum_with_checked};
use fedrisk_secagg::{Output, ParticipantPolicy, Roster, SessionConfig};
use serde::{Deserialize, Serialize};

use crate::error::Failure;
use crate::fixed::decode_output;
use crate::plan::{AfterFailure, JobPlan, PlanIds, Progress, SessionRequest};
use crate::session::session_binding;
use crate::spec::JobSpec;

/// One step of a job's lineage, in the order the plan took them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "entry", rename_all = "snake_case", deny_unknown_fields)]
pub enum LineageEntry {
    /// A session whose output the plan absorbed.
    Session(SessionRecord),
    /// An evaluation the coordinator could not run over the statistics session's
    /// participants. On its own (an `evaluation` task), the round's model stands
    /// unevaluated; riding with an update (an `update_eval` task), the round's update is
    /// asked for alone next and the previous round's model stays unevaluated.
    SkippedEvaluation {
        /// The round.
        round: u32,
        /// Hex hash of the skipped task's bytes.
        binding: String,
    },
}

/// A completed session as anyone can check it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionRecord {
    /// Hex of the encoded [`SessionConfig`] (binding, nonce and parameters).
    pub config: String,
    /// The output's leading words its commitments cover (all `d + 1` for most kinds;
    /// the update part of an `update_eval` session).
    pub sum: Vec<u64>,
    /// The output's blinding limbs.
    pub blinding_sum: Vec<u64>,
    /// The survivors' signed commitments, by id.
    pub commitments: Vec<CommitmentRecord>,
}

/// One survivor's signed commitment and the certificate whose key signed it. The
/// signature is the survivor's advertisement's, so it covers its session keys too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitmentRecord {
    /// The participant's id in the session.
    pub id: u32,
    /// Hex SHA-256 of its certificate (DER), fetched by that hash.
    pub certificate: String,
    /// The session keys it advertised with the commitment (hex in JSON; zeros in records
    /// kept before commitments were advertised: those no longer check). Bytes, not hex
    /// text, in memory: every agent reads every survivor's entry of every record.
    #[serde(default, with = "hex_array")]
    pub c_pk: [u8; 32],
    /// See `c_pk`.
    #[serde(default, with = "hex_array")]
    pub s_pk: [u8; 32],
    /// The compressed point.
    #[serde(with = "hex_array")]
    pub commitment: [u8; 32],
    /// The Ed25519 signature over its advertisement
    /// ([`fedrisk_secagg::crypto::advertise_transcript`]).
    #[serde(with = "hex_array")]
    pub signature: [u8; 64],
}

/// A fixed-size byte array as hex text in JSON; the empty text reads as zeros (records
/// kept before keys were recorded).
mod hex_array {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer, const N: usize>(
        bytes: &[u8; N],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        let text = String::deserialize(d)?;
        let mut out = [0u8; N];
        if !text.is_empty() {
            hex::decode_to_slice(&text, &mut out)
                .map_err(|e| serde::de::Error::custom(format!("not {N} bytes of hex: {e}")))?;
        }
        Ok(out)
    }
}

/// A lineage record that cannot be read or does not check.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LineageError {
    /// Bytes that are not a lineage entry.
    #[error("malformed lineage entry: {0}")]
    Malformed(String),
    /// The plan, replayed from the job's verified sums, asks for something else.
    #[error("{0}")]
    NotThePlan(String),
    /// A session's output does not check against its commitments.
    #[error("round {round} {label} session: {reason}")]
    Unverified {
        /// The round.
        round: u32,
        /// The session's kind.
        label: &'static str,
        /// Why.
        reason: String,
    },
}

impl SessionRecord {
    /// The record of a finished session; `certificates` maps each survivor's id to the
    /// hex SHA-256 of its certificate. A session without commitments (nothing later
    /// derives from its sum) is recorded without its sum: agents only check its place.
    pub fn new(
        config: &SessionConfig,
        output: &Output,
        certificates: &BTreeMap<u32, String>,
    ) -> Self {
        let committed = config.params.committed_words();
        SessionRecord {
            config: hex::encode(config.encode()),
            sum: output.sum.get(..committed).unwrap_or_default().to_vec(),
            blinding_sum: output.blinding_sum.clone(),
            commitments: output
                .commitments
                .iter()
                .map(|c| CommitmentRecord {
                    id: c.from,
                    certificate: certificates.get(&c.from).cloned().unwrap_or_default(),
                    c_pk: c.c_pk,
                    s_pk: c.s_pk,
                    commitment: c.commitment,
                    signature: c.signature,
                })
                .collect(),
        }
    }

    /// The session configuration.
    pub fn session_config(&self) -> Result<SessionConfig, LineageError> {
        let bytes = hex::decode(&self.config)
            .map_err(|e| LineageError::Malformed(format!("config: {e}")))?;
        SessionConfig::decode(&bytes).map_err(|e| LineageError::Malformed(format!("config: {e}")))
    }

    /// The survivors' signed commitments as the secure-aggregation layer checks them.
    pub fn signed(&self) -> Vec<SignedCommitment> {
        self.commitments
            .iter()
            .map(|c| SignedCommitment {
                from: c.id,
                c_pk: c.c_pk,
                s_pk: c.s_pk,
                commitment: c.commitment,
                signature: c.signature,
            })
            .collect()
    }
}

impl LineageEntry {
    /// The entry's bytes, published by their hash: a compact binary form (see
    /// [`crate::lineage_codec`]), since every agent fetches every entry; a record's
    /// hundreds of signed commitments as hex in JSON were most of an agent's download.
    pub fn encode(&self) -> Vec<u8> {
        crate::lineage_codec::encode(self)
    }

    /// Reads an entry, binary or (as jobs kept them before) JSON; never panics on hostile
    /// bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, LineageError> {
        if bytes.starts_with(crate::lineage_codec::MAGIC) {
            return crate::lineage_codec::decode(bytes);
        }
        serde_json::from_slice(bytes).map_err(|e| LineageError::Malformed(e.to_string()))
    }

    /// `(id, certificate hash)` of every commitment (none for a skipped evaluation).
    pub fn certificates(&self) -> Vec<(u32, String)> {
        match self {
            LineageEntry::Session(r) => r
                .commitments
                .iter()
                .map(|c| (c.id, c.certificate.clone()))
                .collect(),
            LineageEntry::SkippedEvaluation { .. } => Vec::new(),
        }
    }
}

/// An agent's own copy of a job's plan, advanced only by verified sums.
#[derive(Debug)]
pub struct Replica {
    plan: JobPlan,
    federation_id: String,
    applied: usize,
}

fn unverified(req: &SessionRequest, reason: String) -> LineageError {
    LineageError::Unverified {
        round: req.round,
        label: req.label,
        reason,
    }
}

impl Replica {
    /// The plan of `spec` from its start.
    pub fn new(spec: JobSpec, federation_id: &str, job_id: u64) -> Self {
        let ids = PlanIds {
            federation_id: federation_id.to_string(),
            job_id,
        };
        Replica {
            plan: JobPlan::new(spec, ids, None),
            federation_id: federation_id.to_string(),
            applied: 0,
        }
    }

    /// How many entries have been applied.
    pub fn applied(&self) -> usize {
        self.applied
    }

    /// Applies the next entry. A session record must be the plan's next session, its
    /// parameters must pass `policy` (what this agent demands of its own sessions: at
    /// least `min_distinct` institutions, its threshold rules), and its sum must open
    /// commitments from at least `max(threshold, min_distinct)` participants, signed by
    /// `roster` (the keys of their certificates, which the caller has checked). So a
    /// session made up by the coordinator needs that many colluding institutions.
    pub fn apply(
        &mut self,
        entry: &LineageEntry,
        roster: &Roster,
        policy: &ParticipantPolicy,
    ) -> Result<(), LineageError> {
        self.apply_checked(entry, roster, policy, &BTreeSet::new())
    }

    /// [`Replica::apply`], taking as verified the signatures of the survivors in
    /// `checked`: the caller checked exactly those signed advertisements, under the keys
    /// of the same certificates, as a member of that session (see
    /// [`fedrisk_secagg::commit::verify_sum_with_checked`]).
    pub fn apply_checked(
        &mut self,
        entry: &LineageEntry,
        roster: &Roster,
        policy: &ParticipantPolicy,
        checked: &BTreeSet<u32>,
    ) -> Result<(), LineageError> {
        let Some(req) = self.plan.next_session() else {
            return Err(LineageError::NotThePlan(
                "a lineage entry after the job's last session".into(),
            ));
        };
        match entry {
            LineageEntry::SkippedEvaluation { round, binding } => {
                if !matches!(req.label, "evaluation" | "update_eval")
                    || *round != req.round
                    || *binding != hex::encode(req.binding)
                {
                    return Err(LineageError::NotThePlan(format!(
                        "a skipped evaluation in place of the round {} {} session",
                        req.round, req.label
                    )));
                }
                self.go_on_without_sum(&req)?;
            }
            LineageEntry::Session(record) => {
                let config = record.session_config()?;
                let binding = session_binding(&self.federation_id, req.round, req.binding);
                if config.check_binding(&binding).is_err() {
                    return Err(LineageError::NotThePlan(format!(
                        "a session of another task in place of the round {} {} session",
                        req.round, req.label
                    )));
                }
                if req.commit_words > 0 {
                    self.absorb_verified(&req, &config, record, roster, policy, checked)?;
                } else {
                    // Nothing later derives from this sum (an evaluation): the plan goes
                    // on exactly as if it had been skipped.
                    self.go_on_without_sum(&req)?;
                }
            }
        }
        self.applied += 1;
        Ok(())
    }

    /// The plan goes on past `req` without its sum: only an evaluation allows that (on
    /// its own, the round completes unevaluated; riding with an update, the update is
    /// asked for alone).
    fn go_on_without_sum(&mut self, req: &SessionRequest) -> Result<(), LineageError> {
        match self
            .plan
            .on_failure(Failure::Deterministic("not in the lineage".into()))
        {
            Ok(AfterFailure::Skipped(_) | AfterFailure::WithoutEvaluation) => Ok(()),
            _ => Err(unverified(
                req,
                "the plan cannot go on without this sum".into(),
            )),
        }
    }

    /// Checks a committed session's sum against its commitments and feeds it to the plan.
    fn absorb_verified(
        &mut self,
        req: &SessionRequest,
        config: &SessionConfig,
        record: &SessionRecord,
        roster: &Roster,
        policy: &ParticipantPolicy,
        checked: &BTreeSet<u32>,
    ) -> Result<(), LineageError> {
        if config.params.vector_len as usize != req.vector_len {
            return Err(unverified(
                req,
                "vector length differs from the task's".into(),
            ));
        }
        if config.params.commit_words != req.commit_words {
            return Err(unverified(
                req,
                "the session's commitments cover other words than the task's".into(),
            ));
        }
        policy
            .check(&config.params)
            .map_err(|e| unverified(req, e.to_string()))?;
        let signed = record.signed();
        if signed.len() < policy.min_distinct as usize {
            return Err(unverified(
                req,
                format!(
                    "a sum over {} participants, fewer than this agent's minimum of {}",
                    signed.len(),
                    policy.min_distinct
                ),
            ));
        }
        verify_sum_with_checked(
            config,
            roster,
            &record.sum,
            &record.blinding_sum,
            &signed,
            checked,
        )
        .map_err(|e| unverified(req, e.to_string()))?;
        let survivors: Vec<u32> = signed.iter().map(|c| c.from).collect();
        let sum = decode_output(&record.sum, survivors, &config.params.fixed_point)
            .map_err(|e| unverified(req, e.to_string()))?;
        // Slot 0 of every input is 1.
        if sum.contributors != signed.len() as u64 {
            return Err(unverified(
                req,
                "the sum counts another number of inputs than it has commitments".into(),
            ));
        }
        match self.plan.on_output(sum) {
            Ok(Progress::Continue | Progress::RoundCompleted(_)) => Ok(()),
            Ok(Progress::Retrying(f) | Progress::WithoutEvaluation(f)) => Err(unverified(
                req,
                format!("the sum does not absorb: {}", f.reason()),
            )),
            Err(e) => Err(unverified(req, e.to_string())),
        }
    }

    /// Whether a task whose bytes hash to `binding`, for `round`, is the session the plan
    /// asks for next.
    pub fn expects(&mut self, round: u32, binding: &[u8; 32]) -> Result<(), LineageError> {
        let Some(req) = self.plan.next_session() else {
            return Err(LineageError::NotThePlan(format!(
                "a round {round} task after the job's last session (replayed from {} verified sessions)",
                self.applied
            )));
        };
        if req.round != round || req.binding != *binding {
            return Err(LineageError::NotThePlan(format!(
                "the round {round} task is not what the job's plan asks for after its {} verified sessions (the round {} {} session)",
                self.applied, req.round, req.label
            )));
        }
        Ok(())
    }
}

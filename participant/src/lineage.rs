//! The agent's side of a job's lineage (`fedrisk_rounds::lineage`): before it computes
//! anything for a task, the agent replays the job's plan from the sums of the sessions
//! before it, each checked against its survivors' signed commitments, and takes part only
//! if the replay asks for exactly this task. So the model an evaluation scores, the model an
//! update starts from, the scales of a grid and the preprocessing are the job's own, never
//! ones the coordinator chose.
//!
//! Fetching (async, [`fetch`]) is kept apart from checking (sync, [`Lineage::check`]):
//! entries and certificates come by hash with `FetchContent`, and only the entries this
//! agent has not applied yet are fetched; the replica lives as long as the connection.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use fedrisk_identity::client::{self as tls, PeerCache};
use fedrisk_proto::ParticipantClient;
use fedrisk_proto::v1;
use fedrisk_rounds::lineage_codec::{self, HeldEntry};
use fedrisk_rounds::task::content_hash;
use fedrisk_rounds::{JobSpec, LineageEntry, Replica};
use fedrisk_secagg::{ParticipantPolicy, Roster};
use tonic::transport::Channel;

/// At most this many certificates are kept (a federation's participants, reissues included).
const MAX_CERTIFICATES: usize = 20_000;

/// Key lists kept from the latest committed sessions this agent took part in: a task names
/// the record of the session before it, so the last few cover every record it fetches.
const HELD_SESSIONS: usize = 4;

/// What this agent has verified of the job in progress.
#[derive(Default)]
pub struct Lineage {
    /// `(job, hash of its specification)` the replica belongs to.
    job: Option<(u64, String)>,
    replica: Option<Replica>,
    /// Hashes of the entries the replica has applied, in order.
    applied: Vec<String>,
    /// Certificates (DER) by hex SHA-256.
    certificates: HashMap<String, Vec<u8>>,
    /// The certificate (hash) this stream last carried for each participant: a task leaves
    /// an unchanged one out.
    by_participant: HashMap<u32, String>,
    /// Certificates already checked against the CA and the revocation list the current
    /// task came with (a record counting a revoked certificate is refused: revoked keys
    /// must not sign sessions a job builds on).
    checked: PeerCache,
    /// The signed advertisements of the latest committed sessions this agent took part in,
    /// by session id: every entry of an accepted key list, whose signature the session
    /// checked. A record of such a session is fetched compact and rebuilt from them, and
    /// their signatures are not checked again.
    held: VecDeque<([u8; 32], BTreeMap<u32, HeldEntry>)>,
}

/// What [`fetch`] brought for one task.
pub struct Fetched {
    spec: Option<Vec<u8>>,
    entries: Vec<(String, LineageEntry)>,
}

/// Why a task's lineage does not check.
#[derive(Debug, thiserror::Error)]
pub enum LineageRefusal {
    /// The coordinator did not serve what the task names, or served something else.
    #[error("fetching the job's lineage: {0}")]
    Fetch(String),
    /// The lineage or the task does not check.
    #[error("the task's lineage does not check: {0}")]
    Check(String),
    /// A peer certificate named by hash could not be had, or one sent does not match its hash.
    #[error("the session's peer certificates: {0}")]
    Certificate(String),
}

impl Lineage {
    /// Whether the replica is for `job` under `spec_hash` and has applied a prefix of
    /// `lineage`; how many entries of it are known.
    fn known_prefix(&self, job: u64, spec_hash: &str, lineage: &[String]) -> Option<usize> {
        let (j, s) = self.job.as_ref()?;
        if *j != job || s != spec_hash || self.applied.len() > lineage.len() {
            return None;
        }
        (lineage[..self.applied.len()] == self.applied[..]).then_some(self.applied.len())
    }

    fn reset(&mut self) {
        self.job = None;
        self.replica = None;
        self.applied.clear();
    }

    /// Applies the fetched entries and checks that the replica asks for the task whose
    /// bytes hash to `binding` next.
    #[allow(clippy::too_many_arguments)]
    pub fn check(
        &mut self,
        fetched: Fetched,
        compute: &v1::ComputeTask,
        federation_id: &str,
        job_id: u64,
        round: u32,
        binding: &[u8; 32],
        ca_pem: &str,
        crl_der: &[u8],
        policy: &ParticipantPolicy,
    ) -> Result<(), LineageRefusal> {
        let result = self.apply(
            fetched,
            compute,
            federation_id,
            job_id,
            (ca_pem, crl_der),
            policy,
        );
        let result = result.and_then(|()| {
            self.replica
                .as_mut()
                .ok_or_else(|| LineageRefusal::Check("no job specification".into()))?
                .expects(round, binding)
                .map_err(|e| LineageRefusal::Check(e.to_string()))
        });
        if result.is_err() {
            // Start again from the job's first entry next time.
            self.reset();
        }
        result
    }

    fn apply(
        &mut self,
        fetched: Fetched,
        compute: &v1::ComputeTask,
        federation_id: &str,
        job_id: u64,
        (ca_pem, crl_der): (&str, &[u8]),
        policy: &ParticipantPolicy,
    ) -> Result<(), LineageRefusal> {
        if let Some(spec) = fetched.spec {
            let json = std::str::from_utf8(&spec)
                .map_err(|_| LineageRefusal::Check("the job specification is not UTF-8".into()))?;
            let spec = JobSpec::from_json(json)
                .map_err(|e| LineageRefusal::Check(format!("the job specification: {e}")))?;
            self.reset();
            self.replica = Some(Replica::new(spec, federation_id, job_id));
            self.job = Some((job_id, compute.job_spec.clone()));
        }
        let Some(replica) = self.replica.as_mut() else {
            return Err(LineageRefusal::Check("no job specification".into()));
        };
        for (hash, entry) in fetched.entries {
            let peers = entry
                .certificates()
                .into_iter()
                .map(|(id, h)| {
                    self.certificates
                        .get(&h)
                        .map(|der| (id, der.as_slice()))
                        .ok_or_else(|| {
                            LineageRefusal::Check(format!("certificate {h} was not served"))
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let keys = if peers.is_empty() {
                Vec::new()
            } else {
                tls::verify_session_peers_cached(ca_pem, crl_der, &peers, &mut self.checked)
                    .map_err(|e| LineageRefusal::Check(format!("a lineage session's peers: {e}")))?
                    .keys
            };
            let checked = checked_as_a_member(&self.held, &entry);
            replica
                .apply_checked(&entry, &Roster::new(keys), policy, &checked)
                .map_err(|e| LineageRefusal::Check(e.to_string()))?;
            self.applied.push(hash);
        }
        Ok(())
    }
}

/// A lineage entry by hash: asked for compact when this agent holds key lists (see
/// [`lineage_codec::expand`]) and rebuilt from them; whole when it was served whole, when
/// this agent cannot rebuild it, or when the rebuilt bytes do not match the hash.
async fn fetch_entry(
    client: &mut ParticipantClient<Channel>,
    lineage: &Lineage,
    hash: &str,
) -> Result<Vec<u8>, LineageRefusal> {
    if lineage.held.is_empty() {
        return fetch_one(client, hash).await;
    }
    let got = fetch_raw(client, hash, true).await?;
    if content_hash(&got) == hash {
        return Ok(got.to_vec());
    }
    match lineage_codec::expand(&got, |sid, id| lineage.held_entry(sid, id)) {
        Ok(full) if content_hash(&full) == hash => Ok(full),
        rebuilt => {
            let reason = rebuilt
                .err()
                .map_or("another hash".into(), |e| e.to_string());
            tracing::debug!(%reason, "a compact lineage record did not rebuild; fetching it whole");
            fetch_one(client, hash).await
        }
    }
}

async fn fetch_raw(
    client: &mut ParticipantClient<Channel>,
    hash: &str,
    compact: bool,
) -> Result<prost::bytes::Bytes, LineageRefusal> {
    Ok(client
        .fetch_content(v1::ContentRequest {
            sha256: hash.to_string(),
            compact,
        })
        .await
        .map_err(|s| LineageRefusal::Fetch(s.message().to_string()))?
        .into_inner()
        .content)
}

async fn fetch_one(
    client: &mut ParticipantClient<Channel>,
    hash: &str,
) -> Result<Vec<u8>, LineageRefusal> {
    let got = fetch_raw(client, hash, false).await?;
    if content_hash(&got) != hash {
        return Err(LineageRefusal::Fetch(
            "content that does not match its hash".into(),
        ));
    }
    Ok(got.to_vec())
}

/// The task's peers as `(id, certificate hash)`, every certificate now held by `lineage`:
/// those sent in full are kept (after checking the hash they are named by), those sent by
/// hash only (sent earlier on this stream) are taken from what was kept, or fetched.
pub async fn peer_certificates(
    client: &mut ParticipantClient<Channel>,
    lineage: &mut Lineage,
    compute: &v1::ComputeTask,
) -> Result<Vec<(u32, String)>, LineageRefusal> {
    if lineage.certificates.len() >= MAX_CERTIFICATES {
        lineage.certificates.clear();
    }
    if lineage.by_participant.len() >= MAX_CERTIFICATES {
        lineage.by_participant.clear();
    }
    let peers = compute.secagg.iter().flat_map(|s| &s.peers);
    let mut out = Vec::new();
    for p in peers {
        let id = p.participant_id;
        let hash = if p.certificate_der.is_empty() {
            let hash = if p.certificate_sha256.is_empty() {
                lineage.by_participant.get(&id).cloned().ok_or_else(|| {
                    LineageRefusal::Certificate(format!(
                        "participant {id}'s certificate was left out but never sent on this stream"
                    ))
                })?
            } else {
                p.certificate_sha256.clone()
            };
            if !lineage.certificates.contains_key(&hash) {
                let der = fetch_one(client, &hash)
                    .await
                    .map_err(|e| LineageRefusal::Certificate(format!("participant {id}'s: {e}")))?;
                lineage.certificates.insert(hash.clone(), der);
            }
            hash
        } else {
            let hash = content_hash(&p.certificate_der);
            if !p.certificate_sha256.is_empty() && p.certificate_sha256 != hash {
                return Err(LineageRefusal::Certificate(format!(
                    "participant {}'s certificate does not match the hash it is named by",
                    p.participant_id
                )));
            }
            lineage
                .certificates
                .entry(hash.clone())
                .or_insert_with(|| p.certificate_der.to_vec());
            hash
        };
        lineage.by_participant.insert(id, hash.clone());
        out.push((id, hash));
    }
    Ok(out)
}

impl Lineage {
    /// Trusts, for lineage checks, the peer certificates `checked` already passed under the
    /// same CA and revocation list (see [`PeerCache::adopt`]).
    pub fn adopt_checked_peers(&mut self, ca_pem: &str, crl_der: &[u8], checked: &PeerCache) {
        self.checked.adopt(ca_pem, crl_der, checked);
    }

    /// Keeps peer certificates the stream sent ahead of a task (`PeerCertificates`), by
    /// participant, as the certificates it carried last for each. They are checked when a
    /// task names them.
    pub fn keep_certificates(&mut self, peers: &[v1::PeerIdentity]) {
        if self.certificates.len() >= MAX_CERTIFICATES {
            self.certificates.clear();
        }
        if self.by_participant.len() >= MAX_CERTIFICATES {
            self.by_participant.clear();
        }
        for p in peers {
            self.keep(p.participant_id, &p.certificate_der);
        }
    }

    /// Keeps one certificate as the one carried last for `id`; its hash.
    fn keep(&mut self, id: u32, der: &[u8]) -> String {
        let hash = content_hash(der);
        self.certificates
            .entry(hash.clone())
            .or_insert_with(|| der.to_vec());
        self.by_participant.insert(id, hash.clone());
        hash
    }

    /// A certificate (DER) this connection holds, by hex SHA-256.
    pub fn certificate(&self, hash: &str) -> Option<&[u8]> {
        self.certificates.get(hash).map(Vec::as_slice)
    }

    /// Keeps the key list a committed session of this agent accepted (each entry's
    /// signature checked under the certificate `certificates` names for its id).
    pub fn hold_key_list(
        &mut self,
        config: &fedrisk_secagg::SessionConfig,
        keys: &fedrisk_secagg::KeyList,
        certificates: &BTreeMap<u32, String>,
    ) {
        if !config.params.committed() || keys.session_id != config.session_id {
            return;
        }
        let entries = keys
            .entries
            .iter()
            .filter_map(|e| {
                let mut certificate = [0u8; 32];
                hex::decode_to_slice(certificates.get(&e.id)?, &mut certificate).ok()?;
                Some((
                    e.id,
                    HeldEntry {
                        certificate,
                        c_pk: e.c_pk,
                        s_pk: e.s_pk,
                        commitment: e.commitment,
                        signature: e.signature,
                    },
                ))
            })
            .collect();
        self.held.retain(|(sid, _)| *sid != config.session_id);
        if self.held.len() >= HELD_SESSIONS {
            self.held.pop_front();
        }
        self.held.push_back((config.session_id, entries));
    }

    fn held_entry(&self, session_id: &[u8; 32], id: u32) -> Option<HeldEntry> {
        held_session(&self.held, session_id).and_then(|m| m.get(&id).cloned())
    }
}

/// The advertisements held for `session_id`, if this agent took part in it.
fn held_session<'a>(
    held: &'a VecDeque<([u8; 32], BTreeMap<u32, HeldEntry>)>,
    session_id: &[u8; 32],
) -> Option<&'a BTreeMap<u32, HeldEntry>> {
    held.iter()
        .find(|(sid, _)| sid == session_id)
        .map(|(_, m)| m)
}

/// The survivors of a session record whose signed advertisement this agent checked, byte
/// for byte and under the same certificate, as a member of that session (`held`).
fn checked_as_a_member(
    held: &VecDeque<([u8; 32], BTreeMap<u32, HeldEntry>)>,
    entry: &LineageEntry,
) -> BTreeSet<u32> {
    let LineageEntry::Session(record) = entry else {
        return BTreeSet::new();
    };
    let Ok(config) = record.session_config() else {
        return BTreeSet::new();
    };
    let Some(held) = held_session(held, &config.session_id) else {
        return BTreeSet::new();
    };
    record
        .commitments
        .iter()
        .filter(|c| held.get(&c.id).is_some_and(|h| h.matches(c)))
        .map(|c| c.id)
        .collect()
}

/// Fetches what `compute` names that `lineage` does not hold: the job's specification (for
/// a new replica), the entries after the applied ones and the certificates they name.
pub async fn fetch(
    client: &mut ParticipantClient<Channel>,
    lineage: &mut Lineage,
    job_id: u64,
    compute: &v1::ComputeTask,
) -> Result<Fetched, LineageRefusal> {
    // The task's own peers' certificates are held already (`peer_certificates`).
    let known = lineage.known_prefix(job_id, &compute.job_spec, &compute.lineage);
    let spec = match known {
        Some(_) => None,
        None => Some(fetch_one(client, &compute.job_spec).await?),
    };
    let mut entries = Vec::new();
    for hash in &compute.lineage[known.unwrap_or(0)..] {
        let bytes = fetch_entry(client, lineage, hash).await?;
        let entry =
            LineageEntry::decode(&bytes).map_err(|e| LineageRefusal::Fetch(e.to_string()))?;
        for (_, h) in entry.certificates() {
            if let std::collections::hash_map::Entry::Vacant(slot) = lineage.certificates.entry(h) {
                let der = fetch_one(client, slot.key()).await?;
                slot.insert(der);
            }
        }
        entries.push((hash.clone(), entry));
    }
    Ok(Fetched { spec, entries })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedrisk_rounds::{CommitmentRecord, SessionRecord};
    use fedrisk_secagg::sim::{Sim, SimConfig, random_inputs};
    use fedrisk_secagg::{KeyList, Message, Outgoing};

    /// A committed session's key list as the coordinator broadcasts it, and a certificate
    /// hash per member.
    fn session() -> (Sim, KeyList, BTreeMap<u32, String>) {
        let cfg = SimConfig::new(5, 3);
        let mut sim = Sim::new(cfg.clone(), random_inputs(&cfg)).expect("sim");
        sim.advertise().expect("advertise");
        let Some(Outgoing::Broadcast {
            message: Message::KeyList(keys),
            ..
        }) = sim.outbox.first().cloned()
        else {
            panic!("the key list is the coordinator's next message")
        };
        let certs = keys
            .entries
            .iter()
            .map(|e| (e.id, hex::encode([e.id as u8; 32])))
            .collect();
        (sim, keys, certs)
    }

    fn record_of(sim: &Sim, keys: &KeyList, certs: &BTreeMap<u32, String>) -> SessionRecord {
        SessionRecord {
            config: hex::encode(sim.session.encode()),
            sum: vec![0; 3],
            blinding_sum: vec![0; 7],
            commitments: keys
                .entries
                .iter()
                .map(|e| CommitmentRecord {
                    id: e.id,
                    certificate: certs[&e.id].clone(),
                    c_pk: e.c_pk,
                    s_pk: e.s_pk,
                    commitment: e.commitment,
                    signature: e.signature,
                })
                .collect(),
        }
    }

    #[test]
    fn attack_a_record_that_differs_from_the_checked_key_list_is_checked_in_full() {
        let (sim, keys, certs) = session();
        let mut lineage = Lineage::default();
        lineage.hold_key_list(&sim.session, &keys, &certs);
        let honest = record_of(&sim, &keys, &certs);
        let all: BTreeSet<u32> = keys.entries.iter().map(|e| e.id).collect();
        assert_eq!(
            checked_as_a_member(&lineage.held, &LineageEntry::Session(honest.clone())),
            all
        );
        // The coordinator swaps one survivor's commitment, or names another certificate
        // for another: those two lose the shortcut, so their signatures are checked again
        // (and fail, or are checked under the other certificate's key).
        let mut lying = honest.clone();
        lying.commitments[1].commitment = lying.commitments[2].commitment;
        lying.commitments[3].certificate = hex::encode([0xAAu8; 32]);
        let checked = checked_as_a_member(&lineage.held, &LineageEntry::Session(lying));
        let expected: BTreeSet<u32> = all
            .iter()
            .copied()
            .filter(|id| *id != keys.entries[1].id && *id != keys.entries[3].id)
            .collect();
        assert_eq!(checked, expected);
        // A record of a session this agent did not take part in: nothing is taken as checked.
        let mut elsewhere = sim.session.clone();
        elsewhere.session_id[0] ^= 1;
        let mut other = honest.clone();
        other.config = hex::encode(elsewhere.encode());
        assert!(checked_as_a_member(&lineage.held, &LineageEntry::Session(other)).is_empty());
        // The compact form rebuilds the record for a member, and only from what it held.
        let full = LineageEntry::Session(honest).encode();
        let small = lineage_codec::compact(&full).expect("compact");
        let rebuilt =
            lineage_codec::expand(&small, |sid, id| lineage.held_entry(sid, id)).expect("rebuilt");
        assert_eq!(content_hash(&rebuilt), content_hash(&full));
        let stranger = Lineage::default();
        assert!(lineage_codec::expand(&small, |sid, id| stranger.held_entry(sid, id)).is_err());
    }

    /// Revoked keys (a member's stolen after it left, say) signing a record of a session that
    /// never ran, for a coordinator to build a job on: the record names their certificates,
    /// and the agent checks them against the revocation list the task came with, which is
    /// no older than any it has seen. Before, the record's certificates were checked
    /// against the CA alone.
    #[test]
    fn attack_a_record_counting_a_revoked_certificate_is_refused() {
        use fedrisk_identity::pki::{self, Authority, PkiDir, Role};
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};
        let dir = tempfile::tempdir().expect("temp dir");
        let paths = PkiDir::new(dir.path());
        pki::init(dir.path(), "fed").expect("pki");
        let names = ["bank_a", "bank_b", "bank_c", "bank_d", "bank_e"];
        for name in names {
            pki::issue(dir.path(), name, Role::Participant, 30).expect("issue");
        }
        let crl = || {
            CertificateRevocationListDer::from_pem_file(paths.crl())
                .expect("crl")
                .to_vec()
        };
        let before = crl();
        pki::revoke(dir.path(), "bank_b").expect("revoke");
        pki::write_crl(&Authority::single(dir.path())).expect("crl");
        let after = crl();
        let ca_pem = std::fs::read_to_string(paths.ca_cert()).expect("ca");

        let (sim, keys, _) = session();
        let mut lineage = Lineage::default();
        let mut certs = BTreeMap::new();
        for (e, name) in keys.entries.iter().zip(names) {
            let der = CertificateDer::from_pem_file(paths.cert(name))
                .expect("cert")
                .to_vec();
            certs.insert(e.id, lineage.keep(e.id, &der));
        }
        let record = record_of(&sim, &keys, &certs);
        let spec = fedrisk_rounds::JobSpec::new("t", fedrisk_models::synth::SynthConfig::schema());
        let apply = |lineage: &mut Lineage, crl: &[u8]| {
            let fetched = Fetched {
                spec: Some(spec.to_json().into_bytes()),
                entries: vec![("record".to_string(), LineageEntry::Session(record.clone()))],
            };
            let compute = v1::ComputeTask::default();
            let policy = ParticipantPolicy::default();
            lineage
                .apply(fetched, &compute, "fed", 1, (&ca_pem, crl), &policy)
                .expect_err("the made-up record is refused")
                .to_string()
        };
        let peers = "a lineage session's peers";
        // Under the list from before the revocation the certificates pass (the record fails
        // later, at the replica); under the current list, at the certificate of bank_b.
        let earlier = apply(&mut lineage, &before);
        assert!(!earlier.contains(peers), "{earlier}");
        let now = apply(&mut lineage, &after);
        assert!(now.contains(peers) && now.contains("Revoked"), "{now}");
    }

    #[test]
    fn only_committed_sessions_key_lists_are_held_and_only_a_few() {
        let (sim, keys, certs) = session();
        let mut lineage = Lineage::default();
        let mut uncommitted = sim.session.clone();
        uncommitted.params.commit_words = 0;
        lineage.hold_key_list(&uncommitted, &keys, &certs);
        assert!(lineage.held.is_empty(), "nothing later checks that session");
        for i in 0..(HELD_SESSIONS as u8 + 3) {
            let mut cfg = sim.session.clone();
            cfg.session_id = [i; 32];
            let mut k = keys.clone();
            k.session_id = cfg.session_id;
            lineage.hold_key_list(&cfg, &k, &certs);
        }
        assert_eq!(lineage.held.len(), HELD_SESSIONS);
        assert_eq!(
            lineage.held.back().map(|(sid, _)| sid[0]),
            Some(HELD_SESSIONS as u8 + 2)
        );
    }
}

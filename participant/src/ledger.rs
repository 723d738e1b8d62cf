//! The agent's durable record of what it has let be aggregated: for each input (a
//! fingerprint of the exact figures it contributes, whatever task asked for them) the
//! survivor set it signed. The same input is signed again only over the identical set. So
//! two sums over this institution's same input never differ by a subset of participants: a
//! retried session, a round rerun after a coordinator restart, a second job with the same
//! settings, or a second session beside the first cannot be differenced into one
//! institution's vector, row count or score.
//!
//! The record is written (and synced) before the signature that lets the coordinator
//! unmask leaves the agent, and it survives the agent's restarts.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One signed survivor set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The federation.
    pub federation: String,
    /// The job.
    pub job: u64,
    /// The round.
    pub round: u32,
    /// The round kind's label.
    pub kind: String,
    /// Hex fingerprint of the input (for the preprocessing entry: its hash).
    #[serde(alias = "task")]
    pub input: String,
    /// The survivor set signed, as the members' identity keys (hex, sorted): ids are the
    /// coordinator's to choose and could name other institutions in another session.
    pub survivors: Vec<String>,
    /// The kind is asked once per job (it describes the rows, not a model): its one input
    /// is per job, not per round.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub once_per_job: bool,
}

/// Why the ledger cannot be used or refuses a signature.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// Reading or writing the file failed.
    #[error("ledger {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A line does not parse: the file was damaged; refusing is safer than forgetting.
    #[error("ledger {}:{line}: unreadable entry ({reason}); move the file aside only if you know no job is running", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What failed.
        reason: String,
    },
    /// Another process holds the ledger.
    #[error("ledger {}: in use by another agent process; stop it first (one agent per ledger)", path.display())]
    InUse {
        /// The file.
        path: PathBuf,
    },
    /// The session came with an older revocation list than one seen before (or none).
    #[error(
        "the session's peers come with revocation list number {now}, older than number {seen} seen before: a revocation may be hidden; refusing"
    )]
    OldRevocationList {
        /// The newest number seen.
        seen: u64,
        /// The number that came (0: none).
        now: u64,
    },
    /// A task changes the job's preprocessing.
    #[error(
        "job {job} round {round}: the task's preprocessing ({now}) is not the one the job fixed ({fixed}); refusing"
    )]
    PreprocessingChanged {
        /// The job.
        job: u64,
        /// The round.
        round: u32,
        /// Hash prefix of the job's preprocessing.
        fixed: String,
        /// Hash prefix of the task's.
        now: String,
    },
    /// This round's session of this kind was answered before with another input.
    #[error(
        "job {job} round {round} ({kind}): this query was already answered with a different input (for this round, or for the job when the kind is asked once per job); a second task for it (another model to evaluate, other scales, other settings) is a second query chosen after seeing the first sum; refusing"
    )]
    AnotherInput {
        /// The job.
        job: u64,
        /// The round.
        round: u32,
        /// The kind.
        kind: String,
    },
    /// The session's sum carries counts (rows, defaults) that are the same in every session
    /// reading these rows, and they were summed before over another survivor set.
    #[error(
        "job {job} round {round} ({kind}): this institution's row and default counts, which every such sum carries, were summed before over another set of {} institutions; refusing a sum over these {}, which could be differenced against it", before.len(), now.len()
    )]
    ConstantsOtherSurvivors {
        /// The job.
        job: u64,
        /// The round.
        round: u32,
        /// The kind.
        kind: String,
        /// The set signed before (identity keys).
        before: Vec<String>,
        /// The set proposed now (identity keys).
        now: Vec<String>,
    },
    /// The input was aggregated before over another survivor set.
    #[error(
        "job {job} round {round} ({kind}): this input was already aggregated over another set of {} institutions; refusing a sum over these {}, which could be differenced against it", before.len(), now.len()
    )]
    OtherSurvivors {
        /// The job.
        job: u64,
        /// The round.
        round: u32,
        /// The kind.
        kind: String,
        /// The set signed before (identity keys).
        before: Vec<String>,
        /// The set proposed now (identity keys).
        now: Vec<String>,
    },
}

/// The task an input answered: one per federation, job, round (none for a kind asked once
/// per job) and kind.
type Query = (String, u64, Option<u32>, String);

/// The record, in memory and (unless in-memory) in a JSON-lines file.
#[derive(Debug)]
pub struct Ledger {
    /// The open file (appended to, locked while this process runs) and its path; `None`
    /// in memory.
    file: Option<(std::fs::File, PathBuf)>,
    /// By input alone, not by federation: the federation id is the coordinator's to choose
    /// (a new one must not start an empty record), and the same rows summed in two
    /// federations could be differenced just the same.
    signed: HashMap<String, Vec<String>>,
    /// The one input each round's session of each kind may carry: a second, different one
    /// (the same round evaluated for another model, counted over other scales) would be a
    /// second query the coordinator chose after seeing the first sum.
    answered: HashMap<Query, String>,
    /// Each job's preprocessing (hash), fixed by the first task that carried one.
    frozen: HashMap<(String, u64), String>,
    /// The newest revocation list number seen, per CA (see [`ca_domain`]; the federation id
    /// would let a coordinator start over with none seen).
    crl: HashMap<String, u64>,
}

/// What revocation list numbers are kept by: the agent's own CA certificate (SHA-256 of its
/// base64 body, so line breaks do not matter), never a name the coordinator sends.
pub fn ca_domain(ca_pem: &str) -> String {
    use sha2::{Digest, Sha256};
    let body: String = ca_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .flat_map(|l| l.chars().filter(|c| !c.is_whitespace()))
        .collect();
    format!("ca:{}", hex::encode(Sha256::digest(body.as_bytes())))
}

/// Prefix of the entries that record the survivor set of a job-constant count (rows,
/// defaults) rather than of a whole input.
pub const CONSTANTS: &str = "constants:";

fn query_of(e: &Entry) -> Query {
    let round = (!e.once_per_job).then_some(e.round);
    (e.federation.clone(), e.job, round, e.kind.clone())
}

/// The ledger entry kind that records a revocation list number.
const CRL: &str = "crl";

/// The ledger entry kind that fixes a job's preprocessing.
const PREPROCESSING: &str = "preprocessing";

impl Ledger {
    /// Opens (or creates) the ledger file and reads every entry.
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        let io = |source| LedgerError::Io {
            path: path.to_owned(),
            source,
        };
        let mut ledger = Self::in_memory();
        match std::fs::read_to_string(path) {
            Ok(text) => {
                for (i, line) in text.lines().enumerate() {
                    if line.trim().is_empty() {
                        continue;
                    }
                    let e: Entry =
                        serde_json::from_str(line).map_err(|e| LedgerError::Corrupt {
                            path: path.to_owned(),
                            line: i + 1,
                            reason: e.to_string(),
                        })?;
                    ledger.remember(e);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        // Fail now, not in the middle of a session, if the file cannot be written; and hold
        // it for the life of this process, so that two agents never keep two histories of
        // one ledger (a hung agent and its restart, say).
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        file.try_lock().map_err(|_| LedgerError::InUse {
            path: path.to_owned(),
        })?;
        ledger.file = Some((file, path.to_owned()));
        Ok(ledger)
    }

    /// Takes a recorded entry into the in-memory view: the one place that knows which map
    /// each kind of entry belongs to, for entries read back and entries just written.
    fn remember(&mut self, e: Entry) {
        if e.kind == PREPROCESSING {
            self.frozen.insert((e.federation, e.job), e.input);
        } else if e.kind == CRL {
            let n: u64 = e.input.parse().unwrap_or(0);
            let seen = self.crl.entry(e.federation).or_insert(0);
            *seen = (*seen).max(n);
        } else {
            if !e.input.starts_with(CONSTANTS) {
                self.answered.insert(query_of(&e), e.input.clone());
            }
            self.signed.insert(e.input, e.survivors);
        }
    }

    /// Writes `entry` durably, then takes it into the in-memory view.
    fn record(&mut self, entry: Entry) -> Result<(), LedgerError> {
        self.append(&entry)?;
        self.remember(entry);
        Ok(())
    }

    /// A ledger that lives as long as the process (in-process simulations).
    pub fn in_memory() -> Self {
        Self {
            file: None,
            signed: HashMap::new(),
            answered: HashMap::new(),
            frozen: HashMap::new(),
            crl: HashMap::new(),
        }
    }

    /// Allows signing `entry.survivors` for its task if no other set was signed for it, and
    /// records it durably first.
    pub fn allow(&mut self, entry: &Entry) -> Result<(), LedgerError> {
        self.allow_all(std::slice::from_ref(entry))
    }

    /// [`Ledger::allow`] for every entry of one signature (an input and the job-constant
    /// counts it carries): all are checked before any is recorded, so a refused signature
    /// leaves no record behind.
    pub fn allow_all(&mut self, entries: &[Entry]) -> Result<(), LedgerError> {
        for entry in entries.iter().filter(|e| !e.input.starts_with(CONSTANTS)) {
            if let Some(before) = self.answered.get(&query_of(entry))
                && *before != entry.input
            {
                return Err(LedgerError::AnotherInput {
                    job: entry.job,
                    round: entry.round,
                    kind: entry.kind.clone(),
                });
            }
        }
        for entry in entries {
            match self.signed.get(&entry.input) {
                Some(before) if *before != entry.survivors => {
                    let (job, round, kind) = (entry.job, entry.round, entry.kind.clone());
                    let (before, now) = (before.clone(), entry.survivors.clone());
                    return Err(if entry.input.starts_with(CONSTANTS) {
                        LedgerError::ConstantsOtherSurvivors {
                            job,
                            round,
                            kind,
                            before,
                            now,
                        }
                    } else {
                        LedgerError::OtherSurvivors {
                            job,
                            round,
                            kind,
                            before,
                            now,
                        }
                    });
                }
                _ => {}
            }
        }
        for entry in entries {
            let key = &entry.input;
            // An input signed before for another query (the same figures in another job)
            // is recorded again as this query's answer, so that this query cannot be
            // answered with a different input later.
            let answered = entry.input.starts_with(CONSTANTS)
                || self.answered.get(&query_of(entry)) == Some(&entry.input);
            if self.signed.contains_key(key) && answered {
                continue;
            }
            self.record(entry.clone())?;
        }
        Ok(())
    }

    /// Allows a task of `job` that uses the preprocessing with hash `pre` if the job's
    /// preprocessing is not fixed yet (then fixes it) or is the same: a coordinator cannot
    /// change how rows are transformed in the middle of a job (to single out a feature).
    pub fn allow_preprocessing(
        &mut self,
        federation: &str,
        job: u64,
        round: u32,
        pre: &str,
    ) -> Result<(), LedgerError> {
        let key = (federation.to_string(), job);
        match self.frozen.get(&key) {
            Some(fixed) if fixed == pre => return Ok(()),
            Some(fixed) => {
                return Err(LedgerError::PreprocessingChanged {
                    job,
                    round,
                    fixed: fixed.chars().take(16).collect(),
                    now: pre.chars().take(16).collect(),
                });
            }
            None => {}
        }
        self.record(Entry {
            federation: federation.to_string(),
            job,
            round,
            kind: PREPROCESSING.to_string(),
            input: pre.to_string(),
            survivors: Vec::new(),
            once_per_job: false,
        })
    }

    /// Carries the newest revocation list number recorded under a federation id (as
    /// ledgers before `ca_domain` kept them) over to the agent's CA, so an upgrade does not
    /// start the CA at "none seen".
    pub fn carry_crl_to(&mut self, ca: &str) -> Result<(), LedgerError> {
        // Once any CA has its own number, the ledger was upgraded before: numbers under
        // federation ids may be another CA's and are not carried again.
        if self.crl.keys().any(|k| k.starts_with("ca:")) {
            return Ok(());
        }
        let older = self
            .crl
            .iter()
            .filter(|(k, _)| !k.starts_with("ca:"))
            .map(|(_, n)| *n)
            .max()
            .unwrap_or(0);
        if older > self.crl.get(ca).copied().unwrap_or(0) {
            self.allow_crl(ca, Some(older))?;
        }
        Ok(())
    }

    /// Allows a session whose peers were checked against revocation list `number` of the
    /// CA `ca` ([`ca_domain`]) unless a newer list was seen (a coordinator hiding a
    /// revocation by relaying an old list, or none); records a newer number.
    pub fn allow_crl(&mut self, ca: &str, number: Option<u64>) -> Result<(), LedgerError> {
        let federation = ca;
        let seen = self.crl.get(federation).copied().unwrap_or(0);
        let now = number.unwrap_or(0);
        if now < seen {
            return Err(LedgerError::OldRevocationList { seen, now });
        }
        if now > seen {
            self.record(Entry {
                federation: federation.to_string(),
                job: 0,
                round: 0,
                kind: CRL.to_string(),
                input: now.to_string(),
                survivors: Vec::new(),
                once_per_job: false,
            })?;
        }
        Ok(())
    }

    fn append(&mut self, entry: &Entry) -> Result<(), LedgerError> {
        let Some((file, path)) = &mut self.file else {
            return Ok(());
        };
        let mut line = serde_json::to_string(entry).unwrap_or_default();
        line.push('\n');
        file.write_all(line.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|source| LedgerError::Io {
                path: path.clone(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(survivors: &[u32]) -> Entry {
        let survivors = survivors.iter().map(|i| format!("{i:064x}")).collect();
        Entry {
            federation: "fed".into(),
            job: 1,
            round: 3,
            kind: "update".into(),
            input: "ab".repeat(32),
            survivors,
            once_per_job: false,
        }
    }

    #[test]
    fn attack_differencing_a_retried_task_over_fewer_survivors_is_refused() {
        // The honest-engine scenario: a task's sum over {1,2,3,4}, then the same task again
        // over {1,2,3} would give institution 4's exact vector and row count.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ledger.jsonl");
        let mut ledger = Ledger::open(&path).expect("open");
        ledger.allow(&entry(&[1, 2, 3, 4])).expect("first sum");
        let e = ledger.allow(&entry(&[1, 2, 3])).unwrap_err();
        assert!(matches!(e, LedgerError::OtherSurvivors { .. }), "{e}");
        // Beside it, a two-party-plus-one session {2,3,5} of the same task: refused too.
        assert!(ledger.allow(&entry(&[2, 3, 5])).is_err());
        // The identical set again reveals nothing new and is allowed.
        ledger.allow(&entry(&[1, 2, 3, 4])).expect("identical set");
        // A second process cannot keep a second history of the same ledger.
        assert!(matches!(
            Ledger::open(&path),
            Err(LedgerError::InUse { .. })
        ));
        drop(ledger);
        // The record survives the agent's restart.
        let mut reopened = Ledger::open(&path).expect("reopen");
        assert!(reopened.allow(&entry(&[1, 2, 3])).is_err());
        // Another round's task (another round's model) is independent.
        let mut other = entry(&[1, 2, 3]);
        other.round = 4;
        other.input = "cd".repeat(32);
        reopened.allow(&other).expect("another round's task");
    }

    #[test]
    fn attack_an_input_signed_for_another_job_still_fixes_this_queries_answer() {
        // Job 1 and job 2 have the same settings, so round 3's update is the same figures
        // in both. Signing it for job 2 over the same set reveals nothing new; but job 2's
        // round 3 has then been answered, and a second, different update for it (a model
        // chosen after seeing the first sum) is refused, also after a restart.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ledger.jsonl");
        let mut ledger = Ledger::open(&path).expect("open");
        ledger.allow(&entry(&[1, 2, 3, 4])).expect("job 1");
        let job2 = |input: &str| Entry {
            job: 2,
            input: input.to_string(),
            ..entry(&[1, 2, 3, 4])
        };
        ledger
            .allow(&job2(&"ab".repeat(32)))
            .expect("job 2, same figures");
        let e = ledger.allow(&job2(&"cd".repeat(32))).unwrap_err();
        assert!(
            matches!(
                e,
                LedgerError::AnotherInput {
                    job: 2,
                    round: 3,
                    ..
                }
            ),
            "{e}"
        );
        drop(ledger);
        let mut reopened = Ledger::open(&path).expect("reopen");
        assert!(matches!(
            reopened.allow(&job2(&"cd".repeat(32))),
            Err(LedgerError::AnotherInput { .. })
        ));
    }

    #[test]
    fn attack_a_new_federation_id_does_not_start_an_empty_record() {
        // The federation id comes from the coordinator's join reply. Restarted under
        // another id, it asks for the same statistics (the same input and counts) over a
        // set without institution 4: refused, as under the old id.
        let mut ledger = Ledger::in_memory();
        let counts = |federation: &str, survivors: &[u32]| Entry {
            federation: federation.into(),
            input: format!("{CONSTANTS}{}", "77".repeat(32)),
            ..entry(survivors)
        };
        ledger
            .allow_all(&[entry(&[1, 2, 3, 4]), counts("F", &[1, 2, 3, 4])])
            .expect("the first sum");
        let renamed = Entry {
            federation: "F2".into(),
            ..entry(&[1, 2, 3])
        };
        assert!(matches!(
            ledger.allow(&renamed),
            Err(LedgerError::OtherSurvivors { .. })
        ));
        assert!(matches!(
            ledger.allow(&counts("F2", &[1, 2, 3])),
            Err(LedgerError::ConstantsOtherSurvivors { .. })
        ));
        // Revocation list numbers are kept by the agent's CA, which the coordinator does
        // not name: the same certificate wrapped otherwise is the same CA.
        let pem = "-----BEGIN CERTIFICATE-----\nAAAA\nBBBB\n-----END CERTIFICATE-----\n";
        let rewrapped = "-----BEGIN CERTIFICATE-----\r\nAAAABBBB\r\n-----END CERTIFICATE-----";
        assert_eq!(ca_domain(pem), ca_domain(rewrapped));
        assert_ne!(ca_domain(pem), ca_domain(&pem.replace("BBBB", "BBBC")));
        ledger.allow_crl(&ca_domain(pem), Some(4)).expect("a list");
        assert!(ledger.allow_crl(&ca_domain(rewrapped), Some(3)).is_err());
    }

    #[test]
    fn attack_an_upgrade_does_not_forget_the_newest_revocation_list() {
        // A ledger written before revocation numbers were kept by CA holds them under the
        // federation id. After the upgrade the agent carries the newest over to its CA, so
        // a coordinator relaying an older list (or none) is still refused.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ledger.jsonl");
        let old = Entry {
            federation: "sme-credit".into(),
            job: 0,
            round: 0,
            kind: CRL.into(),
            input: "7".into(),
            survivors: Vec::new(),
            once_per_job: false,
        };
        std::fs::write(
            &path,
            format!("{}\n", serde_json::to_string(&old).expect("json")),
        )
        .expect("write");
        let ca = ca_domain("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
        let mut ledger = Ledger::open(&path).expect("open");
        ledger.carry_crl_to(&ca).expect("carried");
        assert!(matches!(
            ledger.allow_crl(&ca, Some(3)),
            Err(LedgerError::OldRevocationList { seen: 7, now: 3 })
        ));
        assert!(ledger.allow_crl(&ca, None).is_err());
        ledger.allow_crl(&ca, Some(7)).expect("the same list");
        drop(ledger);
        let mut reopened = Ledger::open(&path).expect("reopen");
        reopened.carry_crl_to(&ca).expect("again");
        assert!(
            reopened.allow_crl(&ca, Some(6)).is_err(),
            "kept across restarts"
        );
    }

    #[test]
    fn attack_a_second_query_in_the_same_round_is_refused() {
        // A curious coordinator, after round 3's evaluation sum, sends a second evaluation
        // for round 3 with a crafted model (all weight on one feature) to the same
        // survivors: the survivor-set rule alone would let it through (same set, a new input).
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ledger.jsonl");
        let mut ledger = Ledger::open(&path).expect("open");
        let eval = |input: &str| Entry {
            kind: "evaluation".into(),
            input: input.to_string(),
            ..entry(&[1, 2, 3, 4])
        };
        ledger
            .allow(&eval(&"01".repeat(32)))
            .expect("the round's evaluation");
        let e = ledger.allow(&eval(&"02".repeat(32))).unwrap_err();
        assert!(
            matches!(e, LedgerError::AnotherInput { round: 3, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("second query"), "{e}");
        // A retry of the same query is the same input and allowed; the update of the same
        // round is another kind; nothing of the refusal was recorded.
        ledger.allow(&eval(&"01".repeat(32))).expect("retry");
        ledger
            .allow(&entry(&[1, 2, 3, 4]))
            .expect("the round's update");
        drop(ledger);
        let mut reopened = Ledger::open(&path).expect("reopen");
        assert!(
            matches!(
                reopened.allow(&eval(&"03".repeat(32))),
                Err(LedgerError::AnotherInput { .. })
            ),
            "the rule survives a restart"
        );
    }

    #[test]
    fn attack_a_job_wide_query_asked_again_in_a_later_round_is_refused() {
        // Round 0's bin counts were answered over the agreed scales; in round 4 a coordinator
        // sends a bin-count task with every scale shifted, so the grid's cell edges fall
        // between the first ones and the two histograms together resolve each institution's
        // values more finely. The kind is asked once per job, so the round does not matter.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ledger.jsonl");
        let mut ledger = Ledger::open(&path).expect("open");
        let bins = |round: u32, input: &str| Entry {
            kind: "bin_counts".into(),
            round,
            input: input.to_string(),
            once_per_job: true,
            ..entry(&[1, 2, 3, 4])
        };
        ledger.allow(&bins(0, &"01".repeat(32))).expect("round 0");
        ledger.allow(&bins(0, &"01".repeat(32))).expect("a retry");
        drop(ledger);
        let mut reopened = Ledger::open(&path).expect("reopen");
        let e = reopened.allow(&bins(4, &"02".repeat(32))).unwrap_err();
        assert!(
            matches!(e, LedgerError::AnotherInput { round: 4, .. }),
            "{e}"
        );
        // Another job asks its own.
        let mut other_job = bins(0, &"02".repeat(32));
        other_job.job = 2;
        reopened.allow(&other_job).expect("another job");
    }

    #[test]
    fn attack_default_counts_differenced_across_evaluations_are_refused() {
        // Each round evaluates a new model, so the inputs differ; but every evaluation sum
        // carries the institution's row and default counts. Round 1's evaluation over
        // {1,2,3,4} and round 2's over {1,2,3} would give institution 4's counts.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ledger.jsonl");
        let mut ledger = Ledger::open(&path).expect("open");
        let counts = format!("{CONSTANTS}{}", "ee".repeat(32));
        let round = |input: &str, survivors: &[u32]| {
            let mut e = entry(survivors);
            e.kind = "evaluation".into();
            e.round = u32::from_str_radix(&input[..2], 16).expect("round from the input");
            e.input = input.to_string();
            let mut c = e.clone();
            c.input = counts.clone();
            vec![e, c]
        };
        ledger
            .allow_all(&round(&"01".repeat(32), &[1, 2, 3, 4]))
            .expect("round 1");
        let e = ledger
            .allow_all(&round(&"02".repeat(32), &[1, 2, 3]))
            .unwrap_err();
        assert!(
            matches!(e, LedgerError::ConstantsOtherSurvivors { .. }),
            "{e}"
        );
        // Nothing of the refused signature was recorded: round 2's input is still free to be
        // summed over the statistics set.
        ledger
            .allow_all(&round(&"02".repeat(32), &[1, 2, 3, 4]))
            .expect("round 2 over the same set");
        drop(ledger);
        let mut reopened = Ledger::open(&path).expect("reopen");
        assert!(
            reopened
                .allow_all(&round(&"03".repeat(32), &[1, 2, 4]))
                .is_err(),
            "the rule survives a restart"
        );
    }

    #[test]
    fn attack_a_preprocessing_changed_mid_job_is_refused() {
        // A coordinator swaps the standardisation of one feature for a huge scale and the
        // others for zero, so a model's scores rank rows by that feature alone.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ledger.jsonl");
        let mut ledger = Ledger::open(&path).expect("open");
        ledger
            .allow_preprocessing("fed", 1, 1, &"aa".repeat(32))
            .expect("fixed by round 1");
        ledger
            .allow_preprocessing("fed", 1, 2, &"aa".repeat(32))
            .expect("the same again");
        let e = ledger
            .allow_preprocessing("fed", 1, 3, &"bb".repeat(32))
            .unwrap_err();
        assert!(
            matches!(e, LedgerError::PreprocessingChanged { round: 3, .. }),
            "{e}"
        );
        // It stays fixed across the agent's restart; another job has its own.
        drop(ledger);
        let mut reopened = Ledger::open(&path).expect("reopen");
        assert!(
            reopened
                .allow_preprocessing("fed", 1, 4, &"bb".repeat(32))
                .is_err()
        );
        reopened
            .allow_preprocessing("fed", 2, 1, &"bb".repeat(32))
            .expect("another job");
    }

    #[test]
    fn attack_an_older_revocation_list_than_one_seen_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ledger.jsonl");
        let mut ledger = Ledger::open(&path).expect("open");
        ledger.allow_crl("fed", Some(1)).expect("first list");
        ledger.allow_crl("fed", Some(3)).expect("newer list");
        let e = ledger.allow_crl("fed", Some(2)).unwrap_err();
        assert!(
            matches!(e, LedgerError::OldRevocationList { seen: 3, now: 2 }),
            "{e}"
        );
        // Withholding the list altogether is refused too, also after a restart.
        drop(ledger);
        let mut reopened = Ledger::open(&path).expect("reopen");
        assert!(reopened.allow_crl("fed", None).is_err());
        reopened.allow_crl("fed", Some(3)).expect("the same list");
    }

    #[test]
    fn a_damaged_ledger_is_refused_with_its_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ledger.jsonl");
        std::fs::write(&path, "{\"federation\":\"f\"}\n").expect("write");
        let e = Ledger::open(&path).unwrap_err().to_string();
        assert!(e.contains("ledger.jsonl:1"), "{e}");
    }
}

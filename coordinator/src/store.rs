//! The coordinator's durable state in one embedded SQLite database.
//!
//! Crash safety is the point of this module: the coordinator may be killed (`kill -9`, power
//! loss) at any moment and must resume each job from its last completed round without
//! losing a completed model version. Hence:
//!
//! * WAL journal with `synchronous=FULL`: a transaction that returned is on disk.
//! * [`Store::complete_round`] marks the round completed, stores its model version and the
//!   engine's checkpoint blobs in **one** transaction, so a restart never sees a completed
//!   round without its model, nor a checkpoint ahead of its round.
//! * A round attempt left `started` by a crash is reported by
//!   [`Store::interrupted_rounds`]; the engine restarts it with a fresh secagg session id
//!   through [`Store::start_round`], which marks the stale attempt `aborted`. Session ids
//!   are unique in the database, so one can never be reused, and
//!   [`Store::round_by_session`] lets the services reject messages of old attempts.
//!
//! Concurrency: one `Connection` behind a `std::sync::Mutex`. Every call is a handful of
//! indexed statements (well under a millisecond, plus one fsync for writes), so calling it
//! from async code is acceptable for the coordinator's rate of a few writes per round;
//! wrap bulk reads in `tokio::task::spawn_blocking` if they ever grow.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

/// Job identifier (SQLite rowid; `job_id` on the wire).
pub type JobId = u64;

/// Schema migrations, applied in order; entry `i` brings the schema to version `i + 1`.
/// Never edit a released entry: append a new one.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE jobs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT    NOT NULL,
    spec_json     TEXT    NOT NULL,
    state         TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    current_round INTEGER NOT NULL DEFAULT 0,
    message       TEXT    NOT NULL DEFAULT ''
);
CREATE TABLE rounds (
    job_id      INTEGER NOT NULL REFERENCES jobs(id),
    round       INTEGER NOT NULL,
    attempt     INTEGER NOT NULL,
    kind        TEXT    NOT NULL,
    state       TEXT    NOT NULL,
    session_id  BLOB    NOT NULL UNIQUE,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    survivors   INTEGER,
    bytes_up    INTEGER NOT NULL DEFAULT 0,
    bytes_down  INTEGER NOT NULL DEFAULT 0,
    seconds     REAL,
    auc         REAL,
    ks          REAL,
    log_loss    REAL,
    result      BLOB,
    message     TEXT    NOT NULL DEFAULT '',
    PRIMARY KEY (job_id, round, attempt)
);
CREATE UNIQUE INDEX rounds_completed_once ON rounds(job_id, round) WHERE state = 'completed';
CREATE INDEX rounds_by_state ON rounds(state);
CREATE TABLE participants (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL,
    fingerprint TEXT    NOT NULL,
    last_seen   INTEGER,
    state       TEXT    NOT NULL
);
CREATE TABLE model_versions (
    job_id       INTEGER NOT NULL REFERENCES jobs(id),
    round        INTEGER NOT NULL,
    content_hash TEXT    NOT NULL,
    model_json   TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (job_id, round)
);
CREATE TABLE job_state (
    job_id     INTEGER NOT NULL REFERENCES jobs(id),
    key        TEXT    NOT NULL,
    blob       BLOB    NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (job_id, key)
);
"#,
    r#"
ALTER TABLE rounds DROP COLUMN result;
CREATE TABLE refusals (
    job_id         INTEGER NOT NULL REFERENCES jobs(id),
    participant_id INTEGER NOT NULL,
    round          INTEGER NOT NULL,
    kind           TEXT    NOT NULL,
    reason         TEXT    NOT NULL,
    at             INTEGER NOT NULL
);
CREATE INDEX refusals_by_job ON refusals(job_id, participant_id);
"#,
    r#"
CREATE TABLE audit (
    seq       INTEGER PRIMARY KEY,
    at_ms     INTEGER NOT NULL,
    kind      TEXT    NOT NULL,
    body      TEXT    NOT NULL,
    prev_hash TEXT    NOT NULL,
    hash      TEXT    NOT NULL,
    signature TEXT    NOT NULL
);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"#,
];

/// One record of the audit chain as stored (see `crate::audit` for the hash and signature).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditRow {
    /// 1, 2, ... with no gap.
    pub seq: u64,
    /// When it was appended, Unix milliseconds.
    pub at_ms: i64,
    /// What it records (`job_submitted`, `session_completed`, ...).
    pub kind: String,
    /// Its details, JSON.
    pub body: String,
    /// The previous record's `hash` (64 zeros for the first).
    pub prev_hash: String,
    /// SHA-256 of the record's canonical bytes, hex.
    pub hash: String,
    /// The coordinator's signature of the hash, hex.
    pub signature: String,
}

/// Errors of the store; database errors name the database file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("{}: {source}", path.display())]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The cause.
        source: rusqlite::Error,
    },
    /// The database was written by a newer coordinator.
    #[error(
        "{}: schema version {found} is newer than this build supports ({supported})",
        path.display()
    )]
    SchemaTooNew {
        /// The database file.
        path: PathBuf,
        /// Version found.
        found: u32,
        /// Latest version this build knows.
        supported: u32,
    },
    /// No job with this id.
    #[error("no job {0}")]
    NoSuchJob(JobId),
    /// An audit record could not be sealed (hashed and signed).
    #[error("sealing an audit record: {0}")]
    Seal(String),
    /// The round attempt with this session id is not in flight (never started, already
    /// finished or superseded).
    #[error("job {job} round {round}: no attempt with session {session} in flight")]
    NotInFlight {
        /// Job.
        job: JobId,
        /// Round.
        round: u32,
        /// Session id, hex.
        session: String,
    },
    /// `start_round` for a round that has already completed.
    #[error("job {job} round {round} is already completed")]
    AlreadyCompleted {
        /// Job.
        job: JobId,
        /// Round.
        round: u32,
    },
    /// `start_round` with a session id used before.
    #[error("session id {0} was already used")]
    SessionReused(String),
    /// A model version already exists for this round.
    #[error("job {job} round {round} already has a model version")]
    ModelExists {
        /// Job.
        job: JobId,
        /// Round.
        round: u32,
    },
    /// A text column holds a value this build does not know.
    #[error("{}: column {column} holds unknown value {value:?}", path.display())]
    BadValue {
        /// The database file.
        path: PathBuf,
        /// The column.
        column: &'static str,
        /// The value.
        value: String,
    },
}

macro_rules! text_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $s:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $v),* }
        impl $name {
            /// The text stored in the database.
            pub fn as_str(self) -> &'static str { match self { $($name::$v => $s),* } }
            /// Parses the stored text.
            pub fn parse(s: &str) -> Option<Self> { match s { $($s => Some($name::$v),)* _ => None } }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

text_enum!(
    /// Life cycle of a job.
    JobState {
        /// Submitted, not started.
        Pending = "pending",
        /// Rounds are being run.
        Running = "running",
        /// All rounds done.
        Completed = "completed",
        /// Gave up (see the job's message).
        Failed = "failed",
        /// Cancelled by an operator.
        Cancelled = "cancelled",
    }
);

impl JobState {
    /// Whether no more rounds will run.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::Failed | JobState::Cancelled
        )
    }
}

text_enum!(
    /// What a round computes.
    RoundKind {
        /// Global feature statistics for preprocessing.
        Stats = "stats",
        /// A training step.
        Train = "train",
    }
);

text_enum!(
    /// State of one round attempt.
    RoundState {
        /// In flight (or interrupted by a crash, if found at start-up).
        Started = "started",
        /// Done; its results and model version are stored.
        Completed = "completed",
        /// Ended with an error.
        Failed = "failed",
        /// Abandoned, e.g. superseded by a new attempt after a restart.
        Aborted = "aborted",
    }
);

text_enum!(
    /// What the coordinator knows of a participant.
    ParticipantState {
        /// Joined and reachable.
        Active = "active",
        /// Not heard from recently.
        Offline = "offline",
        /// Certificate revoked.
        Revoked = "revoked",
    }
);

/// A job row.
#[derive(Clone, Debug, PartialEq)]
pub struct JobRecord {
    /// Id.
    pub id: JobId,
    /// Operator-given name.
    pub name: String,
    /// The submitted `JobSpec`, JSON.
    pub spec_json: String,
    /// State.
    pub state: JobState,
    /// Unix ms.
    pub created_at_ms: i64,
    /// Unix ms.
    pub updated_at_ms: i64,
    /// The round most recently started (0 before the first).
    pub current_round: u32,
    /// Human-readable status or error.
    pub message: String,
}

/// Measurements of a round, all optional except traffic.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RoundMetrics {
    /// Participants whose input made it into the sum.
    pub survivors: Option<u32>,
    /// Bytes received by the coordinator.
    pub bytes_up: u64,
    /// Bytes sent by the coordinator.
    pub bytes_down: u64,
    /// Wall-clock duration.
    pub seconds: Option<f64>,
    /// Area under the ROC curve (eval rounds).
    pub auc: Option<f64>,
    /// Kolmogorov-Smirnov statistic (eval rounds).
    pub ks: Option<f64>,
    /// Mean log loss.
    pub log_loss: Option<f64>,
}

/// One round attempt.
#[derive(Clone, Debug, PartialEq)]
pub struct RoundRecord {
    /// Job.
    pub job_id: JobId,
    /// Round number.
    pub round: u32,
    /// 1 for the first attempt, +1 for each restart.
    pub attempt: u32,
    /// What it computes.
    pub kind: RoundKind,
    /// State.
    pub state: RoundState,
    /// The secagg session id of this attempt.
    pub session_id: Vec<u8>,
    /// Unix ms.
    pub started_at_ms: i64,
    /// Unix ms, once finished.
    pub finished_at_ms: Option<i64>,
    /// Measurements.
    pub metrics: RoundMetrics,
    /// Failure or abort reason.
    pub message: String,
}

/// A model version to store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewModel {
    /// Hex SHA-256 of the canonical model file (computed by fedrisk-models).
    pub content_hash: String,
    /// The model file.
    pub model_json: String,
}

/// A stored model version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelVersion {
    /// Job.
    pub job_id: JobId,
    /// Round that produced it.
    pub round: u32,
    /// Hex SHA-256 of the model file.
    pub content_hash: String,
    /// The model file (absent in listings).
    pub model_json: Option<String>,
    /// Unix ms.
    pub created_at_ms: i64,
}

/// Everything that becomes durable when a round completes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RoundCompletion {
    /// Measurements.
    pub metrics: RoundMetrics,
    /// The model version this round produced, if any.
    pub model: Option<NewModel>,
    /// Engine checkpoint blobs (key, value) to upsert with the round.
    pub checkpoint: Vec<(String, Vec<u8>)>,
    /// The evaluation of an earlier round's model that came with this round's session:
    /// that completed round's AUC, KS and log loss are filled in with this round.
    pub earlier: Option<EarlierEvaluation>,
}

/// See [`RoundCompletion::earlier`].
#[derive(Clone, Debug, PartialEq)]
pub struct EarlierEvaluation {
    /// The completed round whose model was evaluated.
    pub round: u32,
    /// Area under the ROC curve.
    pub auc: Option<f64>,
    /// Kolmogorov-Smirnov statistic.
    pub ks: Option<f64>,
    /// Mean log loss.
    pub log_loss: Option<f64>,
}

/// A participant's refusal of a session or job, as recorded for operators.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The job.
    pub job_id: JobId,
    /// Roster id.
    pub participant_id: u32,
    /// The round of the refused session.
    pub round: u32,
    /// `schema`, `data`, `policy` or `task`.
    pub kind: String,
    /// The agent's reason, written for the operator (never data values).
    pub reason: String,
}

/// A participant row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParticipantRecord {
    /// Roster id.
    pub id: u32,
    /// Certificate name.
    pub name: String,
    /// Certificate fingerprint.
    pub fingerprint: String,
    /// Unix ms of the last message.
    pub last_seen_ms: Option<i64>,
    /// State.
    pub state: ParticipantState,
}

/// The coordinator's database.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    conn: Mutex<Connection>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The columns [`raw_job`] decodes, in its order.
const JOB_COLUMNS: &str =
    "id, name, spec_json, state, created_at, updated_at, current_round, message";

/// The columns [`raw_round`] decodes, in its order.
const ROUND_COLUMNS: &str = "job_id, round, attempt, kind, state, session_id, started_at, finished_at, \
     survivors, bytes_up, bytes_down, seconds, auc, ks, log_loss, message";

/// A row decoded without enum validation (done after, to report the file name).
type RawRound = (RoundRecord, String, String);

fn raw_round(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawRound> {
    let kind: String = row.get(3)?;
    let state: String = row.get(4)?;
    Ok((
        RoundRecord {
            job_id: row.get::<_, i64>(0)? as JobId,
            round: row.get(1)?,
            attempt: row.get(2)?,
            kind: RoundKind::Stats,
            state: RoundState::Started,
            session_id: row.get(5)?,
            started_at_ms: row.get(6)?,
            finished_at_ms: row.get(7)?,
            metrics: RoundMetrics {
                survivors: row.get(8)?,
                bytes_up: row.get::<_, i64>(9)?.max(0) as u64,
                bytes_down: row.get::<_, i64>(10)?.max(0) as u64,
                seconds: row.get(11)?,
                auc: row.get(12)?,
                ks: row.get(13)?,
                log_loss: row.get(14)?,
            },
            message: row.get(15)?,
        },
        kind,
        state,
    ))
}

impl Store {
    /// Opens (creating if needed) the database and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let sql = |source| StoreError::Sqlite {
            path: path.to_owned(),
            source,
        };
        let mut conn = Connection::open(path).map_err(sql)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(sql)?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(sql)?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %path.display(), mode, "SQLite refused WAL mode");
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sql)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(sql)?;
        migrate(&mut conn, path)?;
        Ok(Self {
            path: path.to_owned(),
            conn: Mutex::new(conn),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock rolls back any open transaction on drop, so the
        // connection is still consistent: keep using it.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sql(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn bad(&self, column: &'static str, value: String) -> StoreError {
        StoreError::BadValue {
            path: self.path.clone(),
            column,
            value,
        }
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        current_version(&self.lock()).map_err(|e| self.sql(e))
    }

    // ------------------------------------------------------------------ jobs

    /// Records a new job in state `pending`.
    pub fn create_job(&self, name: &str, spec_json: &str) -> Result<JobId, StoreError> {
        let conn = self.lock();
        let now = now_ms();
        conn.execute(
            "INSERT INTO jobs (name, spec_json, state, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)",
            params![name, spec_json, JobState::Pending.as_str(), now],
        )
        .map_err(|e| self.sql(e))?;
        Ok(conn.last_insert_rowid() as JobId)
    }

    /// The job, or `NoSuchJob`.
    pub fn job(&self, id: JobId) -> Result<JobRecord, StoreError> {
        let conn = self.lock();
        let raw = conn
            .query_row(
                &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
                params![to_i64(id)],
                raw_job,
            )
            .optional()
            .map_err(|e| self.sql(e))?
            .ok_or(StoreError::NoSuchJob(id))?;
        self.finish_job(raw)
    }

    fn finish_job(&self, (mut job, state): (JobRecord, String)) -> Result<JobRecord, StoreError> {
        job.state = JobState::parse(&state).ok_or_else(|| self.bad("jobs.state", state))?;
        Ok(job)
    }

    /// Sets a job's state and message.
    pub fn set_job_state(
        &self,
        id: JobId,
        state: JobState,
        message: &str,
    ) -> Result<(), StoreError> {
        let n = self
            .lock()
            .execute(
                "UPDATE jobs SET state = ?2, message = ?3, updated_at = ?4 WHERE id = ?1",
                params![to_i64(id), state.as_str(), message, now_ms()],
            )
            .map_err(|e| self.sql(e))?;
        if n == 0 {
            return Err(StoreError::NoSuchJob(id));
        }
        Ok(())
    }

    /// Jobs, oldest first, optionally only those in `state`.
    pub fn list_jobs(&self, state: Option<JobState>) -> Result<Vec<JobRecord>, StoreError> {
        let raws = {
            let conn = self.lock();
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE ?1 IS NULL OR state = ?1 ORDER BY id"
                ))
                .map_err(|e| self.sql(e))?;
            stmt.query_map(params![state.map(JobState::as_str)], raw_job)
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .map_err(|e| self.sql(e))?
        };
        raws.into_iter().map(|r| self.finish_job(r)).collect()
    }

    // ------------------------------------------------------------------ rounds

    /// Starts an attempt of `round` with a fresh secagg `session_id`; returns its attempt
    /// number. Any attempt of the same round still `started` (interrupted by a crash) is
    /// marked `aborted` in the same transaction, so at most one attempt is ever in flight.
    pub fn start_round(
        &self,
        job: JobId,
        round: u32,
        kind: RoundKind,
        session_id: &[u8],
    ) -> Result<u32, StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.sql(e))?;
        let job_i = to_i64(job);
        let exists = |table_and_condition: &str, params: &[&dyn rusqlite::ToSql]| {
            tx.query_row(
                &format!("SELECT EXISTS(SELECT 1 FROM {table_and_condition})"),
                params,
                |r| r.get::<_, bool>(0),
            )
            .map_err(|e| self.sql(e))
        };
        if !exists("jobs WHERE id = ?1", params![job_i])? {
            return Err(StoreError::NoSuchJob(job));
        }
        if exists(
            "rounds WHERE job_id = ?1 AND round = ?2 AND state = 'completed'",
            params![job_i, round],
        )? {
            return Err(StoreError::AlreadyCompleted { job, round });
        }
        if exists("rounds WHERE session_id = ?1", params![session_id])? {
            return Err(StoreError::SessionReused(hex::encode(session_id)));
        }
        let now = now_ms();
        tx.execute(
            "UPDATE rounds SET state = 'aborted', finished_at = ?3, message = 'superseded by a new attempt' \
             WHERE job_id = ?1 AND round = ?2 AND state = 'started'",
            params![job_i, round, now],
        )
        .map_err(|e| self.sql(e))?;
        let attempt: u32 = tx
            .query_row(
                "SELECT COALESCE(MAX(attempt), 0) + 1 FROM rounds WHERE job_id = ?1 AND round = ?2",
                params![job_i, round],
                |r| r.get(0),
            )
            .map_err(|e| self.sql(e))?;
        tx.execute(
            "INSERT INTO rounds (job_id, round, attempt, kind, state, session_id, started_at) \
             VALUES (?1, ?2, ?3, ?4, 'started', ?5, ?6)",
            params![job_i, round, attempt, kind.as_str(), session_id, now],
        )
        .map_err(|e| self.sql(e))?;
        tx.execute(
            "UPDATE jobs SET current_round = ?2, updated_at = ?3 WHERE id = ?1",
            params![job_i, round, now],
        )
        .map_err(|e| self.sql(e))?;
        tx.commit().map_err(|e| self.sql(e))?;
        Ok(attempt)
    }

    /// Completes the attempt with `session_id`: its metrics, model version and the
    /// engine checkpoint become durable together or not at all.
    pub fn complete_round(
        &self,
        job: JobId,
        round: u32,
        session_id: &[u8],
        completion: &RoundCompletion,
    ) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.sql(e))?;
        let job_i = to_i64(job);
        let now = now_ms();
        let m = &completion.metrics;
        let n = tx
            .execute(
                "UPDATE rounds SET state = 'completed', finished_at = ?4, survivors = ?5, bytes_up = ?6, \
                 bytes_down = ?7, seconds = ?8, auc = ?9, ks = ?10, log_loss = ?11 \
                 WHERE job_id = ?1 AND round = ?2 AND session_id = ?3 AND state = 'started'",
                params![
                    job_i,
                    round,
                    session_id,
                    now,
                    m.survivors,
                    to_i64(m.bytes_up),
                    to_i64(m.bytes_down),
                    m.seconds,
                    m.auc,
                    m.ks,
                    m.log_loss,
                ],
            )
            .map_err(|e| self.sql(e))?;
        if n != 1 {
            return Err(not_in_flight(job, round, session_id));
        }
        if let Some(model) = &completion.model {
            insert_model(&tx, job, round, model, now).map_err(|e| self.model_err(e, job, round))?;
        }
        for (key, blob) in &completion.checkpoint {
            upsert_checkpoint(&tx, job_i, key, blob, now).map_err(|e| self.sql(e))?;
        }
        if let Some(e) = &completion.earlier {
            tx.execute(
                "UPDATE rounds SET auc = ?3, ks = ?4, log_loss = ?5 \
                 WHERE job_id = ?1 AND round = ?2 AND state = 'completed'",
                params![job_i, e.round, e.auc, e.ks, e.log_loss],
            )
            .map_err(|e| self.sql(e))?;
        }
        tx.execute(
            "UPDATE jobs SET updated_at = ?2 WHERE id = ?1",
            params![job_i, now],
        )
        .map_err(|e| self.sql(e))?;
        tx.commit().map_err(|e| self.sql(e))
    }

    /// Ends the attempt with `session_id` as `failed`.
    pub fn fail_round(
        &self,
        job: JobId,
        round: u32,
        session_id: &[u8],
        message: &str,
    ) -> Result<(), StoreError> {
        self.end_round(job, round, session_id, RoundState::Failed, message)
    }

    /// Ends the attempt with `session_id` as `aborted` (dropouts, deadline, restart).
    pub fn abort_round(
        &self,
        job: JobId,
        round: u32,
        session_id: &[u8],
        message: &str,
    ) -> Result<(), StoreError> {
        self.end_round(job, round, session_id, RoundState::Aborted, message)
    }

    fn end_round(
        &self,
        job: JobId,
        round: u32,
        session_id: &[u8],
        state: RoundState,
        message: &str,
    ) -> Result<(), StoreError> {
        let n = self
            .lock()
            .execute(
                "UPDATE rounds SET state = ?4, finished_at = ?5, message = ?6 \
                 WHERE job_id = ?1 AND round = ?2 AND session_id = ?3 AND state = 'started'",
                params![
                    to_i64(job),
                    round,
                    session_id,
                    state.as_str(),
                    now_ms(),
                    message
                ],
            )
            .map_err(|e| self.sql(e))?;
        if n != 1 {
            return Err(not_in_flight(job, round, session_id));
        }
        Ok(())
    }

    /// The highest completed round of a job.
    pub fn last_completed_round(&self, job: JobId) -> Result<Option<u32>, StoreError> {
        self.lock()
            .query_row(
                "SELECT MAX(round) FROM rounds WHERE job_id = ?1 AND state = 'completed'",
                params![to_i64(job)],
                |r| r.get(0),
            )
            .map_err(|e| self.sql(e))
    }

    /// Every attempt of every round of a job, by round then attempt.
    pub fn rounds(&self, job: JobId) -> Result<Vec<RoundRecord>, StoreError> {
        self.query_rounds(
            &format!(
                "SELECT {ROUND_COLUMNS} FROM rounds WHERE job_id = ?1 ORDER BY round, attempt"
            ),
            params![to_i64(job)],
        )
    }

    /// Attempts still `started`: after a restart, these were interrupted by the crash and
    /// must be restarted (with a fresh session id) or aborted by the engine.
    pub fn interrupted_rounds(&self) -> Result<Vec<RoundRecord>, StoreError> {
        self.query_rounds(
            &format!(
                "SELECT {ROUND_COLUMNS} FROM rounds WHERE state = 'started' ORDER BY job_id, round"
            ),
            params![],
        )
    }

    /// The attempt a secagg session id belongs to: lets services tell a replayed message
    /// of an earlier round (known session, not in flight) from garbage (unknown session).
    pub fn round_by_session(&self, session_id: &[u8]) -> Result<Option<RoundRecord>, StoreError> {
        Ok(self
            .query_rounds(
                &format!("SELECT {ROUND_COLUMNS} FROM rounds WHERE session_id = ?1"),
                params![session_id],
            )?
            .into_iter()
            .next())
    }

    fn query_rounds(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<RoundRecord>, StoreError> {
        let raws = {
            let conn = self.lock();
            let mut stmt = conn.prepare(sql).map_err(|e| self.sql(e))?;
            stmt.query_map(params, raw_round)
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .map_err(|e| self.sql(e))?
        };
        raws.into_iter()
            .map(|(mut r, kind, state)| {
                r.kind = RoundKind::parse(&kind).ok_or_else(|| self.bad("rounds.kind", kind))?;
                r.state =
                    RoundState::parse(&state).ok_or_else(|| self.bad("rounds.state", state))?;
                Ok(r)
            })
            .collect()
    }

    // ------------------------------------------------------------------ models

    fn model_err(&self, e: rusqlite::Error, job: JobId, round: u32) -> StoreError {
        match e {
            rusqlite::Error::SqliteFailure(f, _)
                if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
            {
                StoreError::ModelExists { job, round }
            }
            rusqlite::Error::SqliteFailure(f, _)
                if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY =>
            {
                StoreError::NoSuchJob(job)
            }
            e => self.sql(e),
        }
    }

    /// Test-only: a model row outside a round completion, to provoke a conflict.
    #[cfg(test)]
    fn insert_model_for_test(
        &self,
        job: JobId,
        round: u32,
        model: &NewModel,
    ) -> Result<(), StoreError> {
        insert_model(&self.lock(), job, round, model, now_ms())
            .map_err(|e| self.model_err(e, job, round))
    }

    /// Appends one audit record: `seal(seq, at_ms, prev_hash)` gives its hash and signature,
    /// inside the transaction that reads the chain's head, so records chain without gaps.
    pub fn append_audit(
        &self,
        kind: &str,
        body: &str,
        seal: impl FnOnce(u64, i64, &str) -> Result<(String, String), String>,
    ) -> Result<AuditRow, StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.sql(e))?;
        let head: Option<(i64, String)> = tx
            .query_row(
                "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.sql(e))?;
        let (seq, prev_hash) = match head {
            Some((seq, hash)) => (seq.max(0) as u64 + 1, hash),
            None => (1, crate::audit::GENESIS.to_owned()),
        };
        let at_ms = now_ms();
        let (hash, signature) = seal(seq, at_ms, &prev_hash).map_err(StoreError::Seal)?;
        tx.execute(
            "INSERT INTO audit (seq, at_ms, kind, body, prev_hash, hash, signature) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![to_i64(seq), at_ms, kind, body, prev_hash, hash, signature],
        )
        .map_err(|e| self.sql(e))?;
        tx.commit().map_err(|e| self.sql(e))?;
        Ok(AuditRow {
            seq,
            at_ms,
            kind: kind.to_owned(),
            body: body.to_owned(),
            prev_hash,
            hash,
            signature,
        })
    }

    /// The newest audit record of `kind` whose body names `job` and `round` (among the last
    /// 256 records of that kind): `(seq, hash)`.
    pub fn last_audit_of(
        &self,
        kind: &str,
        job: JobId,
        round: u32,
    ) -> Result<Option<(u64, String)>, StoreError> {
        let conn = self.lock();
        let mut st = conn
            .prepare(
                "SELECT seq, hash, body FROM audit WHERE kind = ?1 ORDER BY seq DESC LIMIT 256",
            )
            .map_err(|e| self.sql(e))?;
        let rows = st
            .query_map(params![kind], |r| {
                Ok((
                    r.get::<_, i64>(0)?.max(0) as u64,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(|e| self.sql(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.sql(e))?;
        Ok(rows.into_iter().find_map(|(seq, hash, body)| {
            let v: serde_json::Value = serde_json::from_str(&body).ok()?;
            (v["job"].as_u64() == Some(job) && v["round"].as_u64() == Some(u64::from(round)))
                .then_some((seq, hash))
        }))
    }

    /// Every audit record, in order.
    pub fn audit_rows(&self) -> Result<Vec<AuditRow>, StoreError> {
        let conn = self.lock();
        let mut st = conn
            .prepare(
                "SELECT seq, at_ms, kind, body, prev_hash, hash, signature FROM audit ORDER BY seq",
            )
            .map_err(|e| self.sql(e))?;
        st.query_map([], |r| {
            Ok(AuditRow {
                seq: r.get::<_, i64>(0)?.max(0) as u64,
                at_ms: r.get(1)?,
                kind: r.get(2)?,
                body: r.get(3)?,
                prev_hash: r.get(4)?,
                hash: r.get(5)?,
                signature: r.get(6)?,
            })
        })
        .map_err(|e| self.sql(e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| self.sql(e))
    }

    /// Model versions (without content), of one job or all, oldest first.
    pub fn model_versions(&self, job: Option<JobId>) -> Result<Vec<ModelVersion>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT job_id, round, content_hash, created_at FROM model_versions \
                 WHERE ?1 IS NULL OR job_id = ?1 ORDER BY job_id, round",
            )
            .map_err(|e| self.sql(e))?;
        stmt.query_map(params![job.map(to_i64)], |r| {
            Ok(ModelVersion {
                job_id: r.get::<_, i64>(0)? as JobId,
                round: r.get(1)?,
                content_hash: r.get(2)?,
                model_json: None,
                created_at_ms: r.get(3)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.sql(e))
    }

    /// One model version with its content.
    pub fn model_version(
        &self,
        job: JobId,
        round: u32,
    ) -> Result<Option<ModelVersion>, StoreError> {
        self.one_model(
            "SELECT job_id, round, content_hash, model_json, created_at FROM model_versions \
             WHERE job_id = ?1 AND round = ?2",
            params![to_i64(job), round],
        )
    }

    /// The job's model version of the highest round, with its content.
    pub fn latest_model(&self, job: JobId) -> Result<Option<ModelVersion>, StoreError> {
        self.one_model(
            "SELECT job_id, round, content_hash, model_json, created_at FROM model_versions \
             WHERE job_id = ?1 ORDER BY round DESC LIMIT 1",
            params![to_i64(job)],
        )
    }

    fn one_model(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Option<ModelVersion>, StoreError> {
        self.lock()
            .query_row(sql, params, |r| {
                Ok(ModelVersion {
                    job_id: r.get::<_, i64>(0)? as JobId,
                    round: r.get(1)?,
                    content_hash: r.get(2)?,
                    model_json: Some(r.get(3)?),
                    created_at_ms: r.get(4)?,
                })
            })
            .optional()
            .map_err(|e| self.sql(e))
    }

    // ------------------------------------------------------------------ refusals

    /// Records that a participant refused a session (or the whole job), with its reason.
    pub fn record_refusal(&self, r: &Refusal) -> Result<(), StoreError> {
        self.lock()
            .execute(
                "INSERT INTO refusals (job_id, participant_id, round, kind, reason, at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    to_i64(r.job_id),
                    r.participant_id,
                    r.round,
                    r.kind,
                    r.reason,
                    now_ms()
                ],
            )
            .map_err(|e| self.sql(e))?;
        Ok(())
    }

    /// Each participant's latest refusal of a job.
    pub fn latest_refusals(&self, job: JobId) -> Result<Vec<Refusal>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT job_id, participant_id, round, kind, reason FROM refusals r \
                 WHERE job_id = ?1 AND rowid = (SELECT MAX(rowid) FROM refusals \
                 WHERE job_id = r.job_id AND participant_id = r.participant_id) \
                 ORDER BY participant_id",
            )
            .map_err(|e| self.sql(e))?;
        stmt.query_map(params![to_i64(job)], |r| {
            Ok(Refusal {
                job_id: r.get::<_, i64>(0)? as JobId,
                participant_id: r.get(1)?,
                round: r.get(2)?,
                kind: r.get(3)?,
                reason: r.get(4)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.sql(e))
    }

    // ------------------------------------------------------------------ checkpoints

    /// Upserts an engine checkpoint blob (prefer passing it in [`RoundCompletion`] so it
    /// stays consistent with the completed round).
    pub fn put_checkpoint(&self, job: JobId, key: &str, blob: &[u8]) -> Result<(), StoreError> {
        upsert_checkpoint(&self.lock(), to_i64(job), key, blob, now_ms()).map_err(|e| self.sql(e))
    }

    /// Several engine blobs in one transaction (a session's lineage entry with the plan's
    /// state after it).
    pub fn put_checkpoints(
        &self,
        job: JobId,
        blobs: &[(String, Vec<u8>)],
    ) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.sql(e))?;
        let now = now_ms();
        for (key, blob) in blobs {
            upsert_checkpoint(&tx, to_i64(job), key, blob, now).map_err(|e| self.sql(e))?;
        }
        tx.commit().map_err(|e| self.sql(e))
    }

    /// The engine blobs whose keys start with `prefix`, by key.
    pub fn checkpoints_under(
        &self,
        job: JobId,
        prefix: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT key, blob FROM job_state WHERE job_id = ?1 AND substr(key, 1, length(?2)) = ?2 ORDER BY key",
            )
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map(params![to_i64(job), prefix], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| self.sql(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.sql(e))
    }

    /// An engine checkpoint blob.
    pub fn checkpoint(&self, job: JobId, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.lock()
            .query_row(
                "SELECT blob FROM job_state WHERE job_id = ?1 AND key = ?2",
                params![to_i64(job), key],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.sql(e))
    }

    // ------------------------------------------------------------------ participants

    /// Inserts or updates a participant (e.g. at Join, or after a re-issue).
    pub fn upsert_participant(
        &self,
        id: u32,
        name: &str,
        fingerprint: &str,
        state: ParticipantState,
    ) -> Result<(), StoreError> {
        self.lock()
            .execute(
                "INSERT INTO participants (id, name, fingerprint, last_seen, state) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT(id) DO UPDATE SET name = ?2, fingerprint = ?3, last_seen = ?4, state = ?5",
                params![id, name, fingerprint, now_ms(), state.as_str()],
            )
            .map_err(|e| self.sql(e))?;
        Ok(())
    }

    /// Records that a participant was heard from now.
    pub fn touch_participant(&self, id: u32) -> Result<(), StoreError> {
        self.lock()
            .execute(
                "UPDATE participants SET last_seen = ?2 WHERE id = ?1",
                params![id, now_ms()],
            )
            .map_err(|e| self.sql(e))?;
        Ok(())
    }

    /// Every known participant, by id.
    pub fn participants(&self) -> Result<Vec<ParticipantRecord>, StoreError> {
        let raws: Vec<(ParticipantRecord, String)> = {
            let conn = self.lock();
            let mut stmt = conn
                .prepare(
                    "SELECT id, name, fingerprint, last_seen, state FROM participants ORDER BY id",
                )
                .map_err(|e| self.sql(e))?;
            stmt.query_map([], |r| {
                Ok((
                    ParticipantRecord {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        fingerprint: r.get(2)?,
                        last_seen_ms: r.get(3)?,
                        state: ParticipantState::Active,
                    },
                    r.get::<_, String>(4)?,
                ))
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.sql(e))?
        };
        raws.into_iter()
            .map(|(mut p, s)| {
                p.state =
                    ParticipantState::parse(&s).ok_or_else(|| self.bad("participants.state", s))?;
                Ok(p)
            })
            .collect()
    }
}

fn not_in_flight(job: JobId, round: u32, session_id: &[u8]) -> StoreError {
    StoreError::NotInFlight {
        job,
        round,
        session: hex::encode(session_id),
    }
}

fn raw_job(row: &rusqlite::Row<'_>) -> rusqlite::Result<(JobRecord, String)> {
    Ok((
        JobRecord {
            id: row.get::<_, i64>(0)? as JobId,
            name: row.get(1)?,
            spec_json: row.get(2)?,
            state: JobState::Pending,
            created_at_ms: row.get(4)?,
            updated_at_ms: row.get(5)?,
            current_round: row.get(6)?,
            message: row.get(7)?,
        },
        row.get(3)?,
    ))
}

fn insert_model(
    conn: &Connection,
    job: JobId,
    round: u32,
    model: &NewModel,
    now: i64,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO model_versions (job_id, round, content_hash, model_json, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![to_i64(job), round, model.content_hash, model.model_json, now],
    )?;
    Ok(())
}

fn upsert_checkpoint(
    conn: &Connection,
    job: i64,
    key: &str,
    blob: &[u8],
    now: i64,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO job_state (job_id, key, blob, updated_at) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT(job_id, key) DO UPDATE SET blob = ?3, updated_at = ?4",
        params![job, key, blob, now],
    )?;
    Ok(())
}

fn current_version(conn: &Connection) -> rusqlite::Result<u32> {
    conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_version",
        [],
        |r| r.get(0),
    )
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let sql = |source| StoreError::Sqlite {
        path: path.to_owned(),
        source,
    };
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )
    .map_err(sql)?;
    let found = current_version(&tx).map_err(sql)?;
    let supported = MIGRATIONS.len() as u32;
    if found > supported {
        return Err(StoreError::SchemaTooNew {
            path: path.to_owned(),
            found,
            supported,
        });
    }
    for (i, migration) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.execute_batch(migration).map_err(sql)?;
        tx.execute(
            "INSERT INTO schema_version (version, applied_at) VALUES (?1, ?2)",
            params![i as u32 + 1, now_ms()],
        )
        .map_err(sql)?;
        tracing::info!(path = %path.display(), version = i + 1, "database schema migrated");
    }
    tx.commit().map_err(sql)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sid(n: u8) -> Vec<u8> {
        vec![n; 32]
    }

    fn model(n: u32) -> NewModel {
        NewModel {
            content_hash: format!("hash{n}"),
            model_json: format!("{{\"round\":{n}}}"),
        }
    }

    #[test]
    fn jobs_and_states() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&tmp.path().join("c.db")).expect("open");
        assert_eq!(store.schema_version().expect("v"), 3);
        let a = store.create_job("a", "{}").expect("job");
        let b = store.create_job("b", "{}").expect("job");
        store
            .set_job_state(b, JobState::Running, "go")
            .expect("state");
        assert_eq!(store.job(a).expect("a").state, JobState::Pending);
        let running = store.list_jobs(Some(JobState::Running)).expect("list");
        assert_eq!(running.len(), 1);
        assert_eq!(running[0].id, b);
        assert_eq!(running[0].message, "go");
        assert_eq!(store.list_jobs(None).expect("list").len(), 2);
        assert!(matches!(store.job(99), Err(StoreError::NoSuchJob(99))));
        assert!(matches!(
            store.set_job_state(99, JobState::Failed, ""),
            Err(StoreError::NoSuchJob(99))
        ));
    }

    #[test]
    fn reopen_keeps_completed_rounds_and_reports_interrupted() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("c.db");
        let job;
        {
            let store = Store::open(&path).expect("open");
            job = store.create_job("j", "{}").expect("job");
            for r in 1..=2 {
                store
                    .start_round(job, r, RoundKind::Train, &sid(r as u8))
                    .expect("start");
                store
                    .complete_round(
                        job,
                        r,
                        &sid(r as u8),
                        &RoundCompletion {
                            metrics: RoundMetrics {
                                survivors: Some(3),
                                auc: Some(0.7),
                                ..Default::default()
                            },
                            model: Some(model(r)),
                            checkpoint: vec![("coef".into(), vec![r as u8])],
                            // Round 2's session brought round 1's model's evaluation.
                            earlier: (r == 2).then_some(EarlierEvaluation {
                                round: 1,
                                auc: Some(0.65),
                                ks: Some(0.3),
                                log_loss: None,
                            }),
                        },
                    )
                    .expect("complete");
            }
            store
                .start_round(job, 3, RoundKind::Train, &sid(3))
                .expect("start");
        }
        let store = Store::open(&path).expect("reopen");
        assert_eq!(store.last_completed_round(job).expect("last"), Some(2));
        let first = store
            .rounds(job)
            .expect("rounds")
            .into_iter()
            .find(|r| r.round == 1)
            .expect("round 1");
        assert_eq!(
            (first.metrics.auc, first.metrics.ks, first.metrics.survivors),
            (Some(0.65), Some(0.3), Some(3)),
            "the evaluation that came later is filled in; the rest stays"
        );
        let interrupted = store.interrupted_rounds().expect("interrupted");
        assert_eq!(interrupted.len(), 1);
        assert_eq!((interrupted[0].round, interrupted[0].attempt), (3, 1));
        assert_eq!(store.checkpoint(job, "coef").expect("cp"), Some(vec![2]));
        let latest = store.latest_model(job).expect("latest").expect("some");
        assert_eq!(latest.round, 2);
        assert_eq!(latest.model_json.as_deref(), Some("{\"round\":2}"));
        assert_eq!(store.model_versions(Some(job)).expect("list").len(), 2);
        assert_eq!(store.job(job).expect("job").current_round, 3);

        // Restart of the interrupted round: new session, old attempt aborted.
        assert_eq!(
            store
                .start_round(job, 3, RoundKind::Train, &sid(33))
                .expect("restart"),
            2
        );
        assert!(store.interrupted_rounds().expect("i")[0].session_id == sid(33));
        let old = store.round_by_session(&sid(3)).expect("q").expect("some");
        assert_eq!(old.state, RoundState::Aborted);
        // A message of the old attempt can no longer complete the round.
        assert!(matches!(
            store.complete_round(job, 3, &sid(3), &RoundCompletion::default()),
            Err(StoreError::NotInFlight { .. })
        ));
        // Session ids are never reused, and completed rounds never restarted.
        assert!(matches!(
            store.start_round(job, 4, RoundKind::Train, &sid(1)),
            Err(StoreError::SessionReused(_))
        ));
        assert!(matches!(
            store.start_round(job, 2, RoundKind::Train, &sid(44)),
            Err(StoreError::AlreadyCompleted { .. })
        ));
        let rounds = store.rounds(job).expect("rounds");
        assert_eq!(rounds.len(), 4);
        assert_eq!(rounds[0].metrics.auc, Some(0.65), "filled in by round 2");
        assert_eq!(rounds[1].metrics.auc, Some(0.7));
    }

    #[test]
    fn completion_and_model_version_are_atomic() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&tmp.path().join("c.db")).expect("open");
        let job = store.create_job("j", "{}").expect("job");
        // A model for round 1 already exists, so completing round 1 with a model fails...
        store.insert_model_for_test(job, 1, &model(9)).expect("put");
        store
            .start_round(job, 1, RoundKind::Train, &sid(1))
            .expect("start");
        let err = store
            .complete_round(
                job,
                1,
                &sid(1),
                &RoundCompletion {
                    model: Some(model(1)),
                    checkpoint: vec![("coef".into(), vec![1])],
                    ..Default::default()
                },
            )
            .expect_err("conflict");
        assert!(matches!(err, StoreError::ModelExists { job: j, round: 1 } if j == job));
        // ...and nothing of it was kept: the round is still in flight, no checkpoint.
        assert_eq!(store.last_completed_round(job).expect("last"), None);
        assert_eq!(store.interrupted_rounds().expect("i").len(), 1);
        assert_eq!(store.checkpoint(job, "coef").expect("cp"), None);
        assert_eq!(
            store
                .model_version(job, 1)
                .expect("mv")
                .expect("some")
                .content_hash,
            "hash9"
        );
        // Failing it works, and failing twice does not.
        store.fail_round(job, 1, &sid(1), "boom").expect("fail");
        assert!(store.fail_round(job, 1, &sid(1), "boom").is_err());
        assert_eq!(store.rounds(job).expect("r")[0].state, RoundState::Failed);
    }

    #[test]
    fn participants_and_checkpoints() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&tmp.path().join("c.db")).expect("open");
        store
            .upsert_participant(2, "bank_b", "ff", ParticipantState::Active)
            .expect("up");
        store
            .upsert_participant(1, "bank_a", "ee", ParticipantState::Active)
            .expect("up");
        store
            .upsert_participant(2, "bank_b", "ff", ParticipantState::Revoked)
            .expect("up");
        store.touch_participant(1).expect("touch");
        let ps = store.participants().expect("list");
        assert_eq!(ps.len(), 2);
        assert_eq!(ps[0].name, "bank_a");
        assert_eq!(ps[1].state, ParticipantState::Revoked);
        let job = store.create_job("j", "{}").expect("job");
        store.put_checkpoint(job, "k", b"v1").expect("cp");
        store.put_checkpoint(job, "k", b"v2").expect("cp");
        assert_eq!(
            store.checkpoint(job, "k").expect("cp").as_deref(),
            Some(&b"v2"[..])
        );
    }

    #[test]
    fn newer_schema_is_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("c.db");
        drop(Store::open(&path).expect("open"));
        {
            let conn = Connection::open(&path).expect("raw");
            conn.execute(
                "INSERT INTO schema_version (version, applied_at) VALUES (99, 0)",
                [],
            )
            .expect("insert");
        }
        let err = Store::open(&path).expect_err("too new");
        assert!(
            matches!(err, StoreError::SchemaTooNew { found: 99, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("c.db"));
    }
}

//! PostgreSQL as a [`RowSource`] (and a destination for scores), feature `postgres`.
//!
//! The async client (`tokio-postgres`) runs on a thread of its own with a single-threaded
//! runtime; the reader sees a synchronous source, so no async reaches the rest of the crate
//! and the source works from any caller (a command, or an agent's blocking section). Rows
//! come in batches of [`FETCH_ROWS`] from a portal of one read-only, repeatable-read
//! transaction, through a channel holding at most two batches: besides the matrix, only a few
//! thousand rows are ever held. The row count (for the one allocation of the matrix) comes
//! from `count(*)` over the same query in the same snapshot.
//!
//! Types: `smallint`, `integer`, `bigint`, `oid`, `real`, `double precision` and `numeric`
//! read as numbers; `text`, `varchar`, `char` and `name` as text; NULL as a missing value;
//! any other type (boolean, date, timestamp, ...) is refused naming the column.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::Duration;

use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::{Config, NoTls, Row};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::data::Problems;
use crate::error::{DataError, RowPlace};
use crate::pg_tls::{self, SslMode, TlsSettings};
use crate::source::{Cell, ColumnKind, PgRead, PgSpec, RowSource, pg_name, quote_table};

/// Rows fetched from the portal at a time.
pub const FETCH_ROWS: i32 = 2048;
/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

enum Msg {
    Header {
        columns: Vec<(String, Type)>,
        count: usize,
    },
    Rows(Vec<Row>),
    Failed(String),
    End,
}

pub(crate) struct PgSource {
    name: PathBuf,
    columns: Vec<String>,
    kinds: Vec<ColumnKind>,
    count: usize,
    rx: Receiver<Msg>,
    batch: Vec<Row>,
    pos: usize,
    row: u64,
    ended: bool,
}

/// A connection configuration from the spec (the URL must not carry a password), and its
/// TLS settings (see [`crate::pg_tls`]).
fn config(spec: &PgSpec, name: &Path) -> Result<(Config, TlsSettings), DataError> {
    let fail = |message: String| DataError::Source {
        path: name.to_owned(),
        message,
    };
    let (url, tls) = pg_tls::split_url(&spec.url, spec.root_cert.as_deref()).map_err(fail)?;
    let mut cfg: Config = url
        .parse()
        .map_err(|e| fail(format!("not a PostgreSQL URL: {e}")))?;
    if cfg.get_password().is_some() {
        return Err(fail(
            "the URL holds a password, which would show in the process list and shell history: \
             give it in PGPASSWORD or with --password-file"
                .into(),
        ));
    }
    if let Some(p) = &spec.password {
        cfg.password(p.as_bytes());
    }
    cfg.ssl_mode(match tls.mode {
        SslMode::Disable => tokio_postgres::config::SslMode::Disable,
        SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
            tokio_postgres::config::SslMode::Require
        }
    });
    cfg.connect_timeout(CONNECT_TIMEOUT);
    Ok((cfg, tls))
}

/// A database error with its code, detail and position, or the client's error and causes.
fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut text = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
        if let Some(d) = db.detail() {
            text += &format!(" ({d})");
        }
        if let Some(tokio_postgres::error::ErrorPosition::Original(p)) = db.position() {
            text += &format!(" at character {p} of the query");
        }
        return text;
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text += &format!(": {s}");
        source = s.source();
    }
    text
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the database client's runtime: {e}"))
}

/// The query the spec reads, without a trailing semicolon (it is wrapped in `count(*)`).
fn query_of(read: &PgRead) -> String {
    match read {
        PgRead::Table(t) => format!("SELECT * FROM {}", quote_table(t)),
        PgRead::Query(q) => q.trim().trim_end_matches(';').trim_end().to_owned(),
    }
}

async fn connect(cfg: Config, tls: &TlsSettings) -> Result<tokio_postgres::Client, String> {
    let failed = |e: &tokio_postgres::Error| {
        let text = describe(e);
        match pg_tls::explain(&text, tls) {
            Some(plain) => format!("cannot connect: {plain} ({text})"),
            None => format!("cannot connect: {text}"),
        }
    };
    if tls.mode == SslMode::Disable {
        let (client, connection) = cfg.connect(NoTls).await.map_err(|e| failed(&e))?;
        tokio::spawn(connection);
        return Ok(client);
    }
    let connector = MakeRustlsConnect::new(pg_tls::client_config(tls)?);
    match cfg.connect(connector).await {
        Ok((client, connection)) => {
            tokio::spawn(connection);
            Ok(client)
        }
        // libpq's `prefer`: a TLS handshake that fails is retried in plain text (the server
        // refusing the login is not retried).
        Err(e) if tls.mode == SslMode::Prefer && e.as_db_error().is_none() => {
            let mut plain = cfg.clone();
            plain.ssl_mode(tokio_postgres::config::SslMode::Disable);
            let (client, connection) = plain.connect(NoTls).await.map_err(|e| failed(&e))?;
            tokio::spawn(connection);
            Ok(client)
        }
        Err(e) => Err(failed(&e)),
    }
}

async fn produce(
    cfg: Config,
    tls: TlsSettings,
    read: PgRead,
    tx: &SyncSender<Msg>,
) -> Result<(), String> {
    let mut client = connect(cfg, &tls).await?;
    let t = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(|e| describe(&e))?;
    let query = query_of(&read);
    let stmt = t
        .prepare(&query)
        .await
        .map_err(|e| format!("the query fails: {}", describe(&e)))?;
    let count: i64 = t
        .query_one(
            &format!("SELECT count(*) FROM ({query}) AS fedrisk_rows"),
            &[],
        )
        .await
        .map_err(|e| format!("counting the rows: {}", describe(&e)))?
        .get(0);
    let columns = stmt
        .columns()
        .iter()
        .map(|c| (c.name().to_owned(), c.type_().clone()))
        .collect();
    let header = Msg::Header {
        columns,
        count: usize::try_from(count).unwrap_or(0),
    };
    if tx.send(header).is_err() {
        return Ok(());
    }
    let portal = t
        .bind(&stmt, &[])
        .await
        .map_err(|e| format!("the query fails: {}", describe(&e)))?;
    let mut fetched = 0u64;
    loop {
        let rows = t
            .query_portal(&portal, FETCH_ROWS)
            .await
            .map_err(|e| format!("the query fails after row {fetched}: {}", describe(&e)))?;
        if rows.is_empty() {
            break;
        }
        fetched += rows.len() as u64;
        if tx.send(Msg::Rows(rows)).is_err() {
            return Ok(());
        }
    }
    let _ = tx.send(Msg::End);
    Ok(())
}

fn kind_of(t: &Type) -> ColumnKind {
    match *t {
        Type::INT2
        | Type::INT4
        | Type::INT8
        | Type::OID
        | Type::FLOAT4
        | Type::FLOAT8
        | Type::NUMERIC => ColumnKind::Number,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => ColumnKind::Text,
        ref other => ColumnKind::Refused(format!("{} (PostgreSQL)", other.name())),
    }
}

impl PgSource {
    pub(crate) fn open(spec: &PgSpec) -> Result<Self, DataError> {
        let name = PathBuf::from(pg_name(spec));
        let (cfg, tls) = config(spec, &name)?;
        let fail = |message: String| DataError::Source {
            path: name.clone(),
            message,
        };
        let (tx, rx) = sync_channel(2);
        let read = spec.read.clone();
        std::thread::Builder::new()
            .name("fedrisk-pg".into())
            .spawn(move || {
                let outcome = match runtime() {
                    Ok(rt) => rt.block_on(produce(cfg, tls, read, &tx)),
                    Err(e) => Err(e),
                };
                if let Err(e) = outcome {
                    let _ = tx.send(Msg::Failed(e));
                }
            })
            .map_err(|e| fail(format!("starting the database reader: {e}")))?;
        match rx.recv() {
            Ok(Msg::Header { columns, count }) => {
                let kinds = columns.iter().map(|(_, t)| kind_of(t)).collect();
                let columns: Vec<String> = columns.into_iter().map(|(n, _)| n).collect();
                for (i, c) in columns.iter().enumerate() {
                    if columns[..i].contains(c) {
                        return Err(DataError::DuplicateColumn {
                            path: name.clone(),
                            column: c.clone(),
                            index: i + 1,
                        });
                    }
                }
                Ok(Self {
                    name,
                    columns,
                    kinds,
                    count,
                    rx,
                    batch: Vec::new(),
                    pos: 0,
                    row: 0,
                    ended: false,
                })
            }
            Ok(Msg::Failed(e)) => Err(fail(e)),
            _ => Err(fail("the database reader stopped".into())),
        }
    }
}

/// One SQL value of the types [`kind_of`] reads.
enum SqlValue<'a> {
    Int(i64),
    Float(f64),
    Text(&'a str),
}

impl<'a> FromSql<'a> for SqlValue<'a> {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(match *ty {
            Type::INT2 => SqlValue::Int(i16::from_sql(ty, raw)?.into()),
            Type::INT4 => SqlValue::Int(i32::from_sql(ty, raw)?.into()),
            Type::INT8 => SqlValue::Int(i64::from_sql(ty, raw)?),
            Type::OID => SqlValue::Int(u32::from_sql(ty, raw)?.into()),
            Type::FLOAT4 => SqlValue::Float(f32::from_sql(ty, raw)?.into()),
            Type::FLOAT8 => SqlValue::Float(f64::from_sql(ty, raw)?),
            Type::NUMERIC => SqlValue::Float(numeric(raw)?),
            _ => SqlValue::Text(std::str::from_utf8(raw)?),
        })
    }

    fn accepts(ty: &Type) -> bool {
        !matches!(kind_of(ty), ColumnKind::Refused(_))
    }
}

/// A `numeric` in PostgreSQL's binary form (digit count, weight, sign, scale, base-10000
/// digits) as the nearest `f64`, through its decimal text so the rounding is correct.
pub(crate) fn numeric(raw: &[u8]) -> Result<f64, Box<dyn std::error::Error + Sync + Send>> {
    let word = |i: usize| -> Result<u16, Box<dyn std::error::Error + Sync + Send>> {
        raw.get(2 * i..2 * i + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "truncated numeric value".into())
    };
    let ndigits = usize::from(word(0)?);
    let weight = i64::from(word(1)? as i16);
    let sign = word(2)?;
    match sign {
        0xC000 => return Ok(f64::NAN),
        0xD000 => return Ok(f64::INFINITY),
        0xF000 => return Ok(f64::NEG_INFINITY),
        0x0000 | 0x4000 => {}
        other => return Err(format!("numeric sign word {other:#x}").into()),
    }
    if ndigits == 0 {
        return Ok(0.0);
    }
    let mut text = String::with_capacity(ndigits * 4 + 8);
    if sign == 0x4000 {
        text.push('-');
    }
    for i in 0..ndigits {
        let d = word(4 + i)?;
        if d > 9999 {
            return Err(format!("numeric digit {d} out of range").into());
        }
        // Writing into a String cannot fail.
        let _ = write!(text, "{d:04}");
    }
    let exponent = 4 * (weight - ndigits as i64 + 1);
    let _ = write!(text, "e{exponent}");
    Ok(text.parse()?)
}

impl RowSource for PgSource {
    fn name(&self) -> &Path {
        &self.name
    }

    fn columns(&self) -> &[String] {
        &self.columns
    }

    fn kind(&self, col: usize) -> ColumnKind {
        self.kinds[col].clone()
    }

    fn row_bound(&mut self) -> Result<usize, DataError> {
        Ok(self.count)
    }

    fn advance(&mut self, _problems: &mut Problems) -> Result<bool, DataError> {
        if self.ended {
            return Ok(false);
        }
        self.pos += 1;
        while self.pos >= self.batch.len() {
            match self.rx.recv() {
                Ok(Msg::Rows(rows)) => {
                    self.batch = rows;
                    self.pos = 0;
                }
                Ok(Msg::End) => {
                    self.ended = true;
                    self.batch.clear();
                    return Ok(false);
                }
                Ok(Msg::Failed(message)) => {
                    self.ended = true;
                    return Err(DataError::Source {
                        path: self.name.clone(),
                        message,
                    });
                }
                Ok(Msg::Header { .. }) | Err(_) => {
                    self.ended = true;
                    return Err(DataError::Source {
                        path: self.name.clone(),
                        message: format!("the database reader stopped after row {}", self.row),
                    });
                }
            }
        }
        self.row += 1;
        Ok(true)
    }

    fn cell(&self, col: usize) -> Cell<'_> {
        let Some(row) = self.batch.get(self.pos) else {
            return Cell::Null;
        };
        match row.try_get::<_, Option<SqlValue<'_>>>(col) {
            Ok(Some(SqlValue::Int(v))) => Cell::Int(v),
            Ok(Some(SqlValue::Float(v))) => Cell::Float(v),
            Ok(Some(SqlValue::Text(t))) => Cell::Text(t.as_bytes()),
            Ok(None) => Cell::Null,
            // Only a type refused when the source was opened fails to decode; such a column
            // is never read. A malformed value reads as text that is no number.
            Err(_) => Cell::Text(b"<undecodable value>"),
        }
    }

    fn place(&self, id: Option<String>) -> (u64, RowPlace) {
        (self.row, RowPlace::Row { id })
    }
}

enum Out {
    Scores(Vec<(String, f64)>),
    Finish,
}

/// Writes scores into a new table, in one transaction: the table appears, filled, only when
/// every score is written (as the CSV's temporary file is renamed only then).
pub struct PgScoreWriter {
    name: PathBuf,
    tx: Option<SyncSender<Out>>,
    done: Receiver<Result<u64, String>>,
}

impl PgScoreWriter {
    /// Connects and creates `table` (which must not exist) with the identifier column `id`
    /// (text) or `row` (bigint) and `probability` (double precision).
    pub fn create(spec: &PgSpec, table: &str, id: Option<&str>) -> Result<Self, DataError> {
        let spec = PgSpec {
            read: PgRead::Table(table.to_owned()),
            ..spec.clone()
        };
        let name = PathBuf::from(pg_name(&spec));
        let (cfg, tls) = config(&spec, &name)?;
        let (tx, rx) = sync_channel::<Out>(2);
        let (done_tx, done) = sync_channel(1);
        let (ready_tx, ready) = sync_channel::<Result<(), String>>(1);
        let id_col = id.unwrap_or("row").to_owned();
        let id_type = if id.is_some() { Type::TEXT } else { Type::INT8 };
        let table = quote_table(table);
        std::thread::Builder::new()
            .name("fedrisk-pg-out".into())
            .spawn(move || {
                let work = async {
                    let mut client = connect(cfg, &tls).await?;
                    let t = client.transaction().await.map_err(|e| describe(&e))?;
                    let column = format!("\"{}\"", id_col.replace('"', "\"\""));
                    t.batch_execute(&format!(
                        "CREATE TABLE {table} ({column} {} NOT NULL, probability double precision NOT NULL)",
                        if id_type == Type::TEXT { "text" } else { "bigint" }
                    ))
                    .await
                    .map_err(|e| format!("creating the table: {}", describe(&e)))?;
                    let sink = t
                        .copy_in(&format!("COPY {table} ({column}, probability) FROM STDIN BINARY"))
                        .await
                        .map_err(|e| describe(&e))?;
                    let _ = ready_tx.send(Ok(()));
                    let writer = tokio_postgres::binary_copy::BinaryCopyInWriter::new(
                        sink,
                        &[id_type.clone(), Type::FLOAT8],
                    );
                    futures_util::pin_mut!(writer);
                    loop {
                        match rx.recv() {
                            Ok(Out::Scores(rows)) => {
                                for (id, p) in rows {
                                    let res = if id_type == Type::TEXT {
                                        writer.as_mut().write(&[&id, &p]).await
                                    } else {
                                        let n: i64 = id.parse().unwrap_or(0);
                                        writer.as_mut().write(&[&n, &p]).await
                                    };
                                    res.map_err(|e| describe(&e))?;
                                }
                            }
                            Ok(Out::Finish) => break,
                            // The caller gave up: the transaction is rolled back.
                            Err(_) => return Err("abandoned".to_string()),
                        }
                    }
                    let n = writer.as_mut().finish().await.map_err(|e| describe(&e))?;
                    t.commit().await.map_err(|e| describe(&e))?;
                    Ok(n)
                };
                let outcome = match runtime() {
                    Ok(rt) => rt.block_on(work),
                    Err(e) => Err(e),
                };
                if let Err(e) = &outcome {
                    let _ = ready_tx.send(Err(e.clone()));
                }
                let _ = done_tx.send(outcome);
            })
            .map_err(|e| DataError::Source {
                path: name.clone(),
                message: format!("starting the database writer: {e}"),
            })?;
        match ready.recv() {
            Ok(Ok(())) => Ok(Self {
                name,
                tx: Some(tx),
                done,
            }),
            Ok(Err(message)) => Err(DataError::Source {
                path: name,
                message,
            }),
            Err(_) => Err(DataError::Source {
                path: name,
                message: "the database writer stopped".into(),
            }),
        }
    }

    fn failure(&mut self) -> DataError {
        self.tx = None;
        let message = match self.done.recv() {
            Ok(Err(e)) => e,
            _ => "the database writer stopped".into(),
        };
        DataError::Source {
            path: self.name.clone(),
            message,
        }
    }

    /// Appends a block of scores: `ids` when the table has an identifier column, else the
    /// block's first 1-based row number.
    pub fn write(
        &mut self,
        first_row: usize,
        ids: Option<&[String]>,
        probabilities: &[f64],
    ) -> Result<(), DataError> {
        let rows = probabilities
            .iter()
            .enumerate()
            .map(|(k, p)| {
                let id = match ids {
                    Some(ids) => ids[k].clone(),
                    None => (first_row + k).to_string(),
                };
                (id, *p)
            })
            .collect();
        let sent = self
            .tx
            .as_ref()
            .is_some_and(|tx| tx.send(Out::Scores(rows)).is_ok());
        if sent { Ok(()) } else { Err(self.failure()) }
    }

    /// Commits: the table appears with every score. Returns the rows written.
    pub fn finish(mut self) -> Result<u64, DataError> {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Out::Finish);
        }
        match self.done.recv() {
            Ok(Ok(n)) => Ok(n),
            Ok(Err(message)) => Err(DataError::Source {
                path: self.name,
                message,
            }),
            Err(_) => Err(DataError::Source {
                path: self.name,
                message: "the database writer stopped".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(ndigits: u16, weight: i16, sign: u16, scale: u16, digits: &[u16]) -> Vec<u8> {
        let mut v = Vec::new();
        for w in [ndigits, weight as u16, sign, scale].iter().chain(digits) {
            v.extend_from_slice(&w.to_be_bytes());
        }
        v
    }

    #[test]
    fn numerics_decode_exactly() {
        // 12345.678 = 1|2345|6780 with weight 1.
        assert_eq!(
            numeric(&raw(3, 1, 0, 3, &[1, 2345, 6780])).unwrap(),
            12345.678
        );
        assert_eq!(numeric(&raw(1, -1, 0x4000, 2, &[2500])).unwrap(), -0.25);
        assert_eq!(numeric(&raw(1, 2, 0, 0, &[7])).unwrap(), 7e8);
        assert_eq!(numeric(&raw(0, 0, 0, 0, &[])).unwrap(), 0.0);
        assert!(numeric(&raw(0, 0, 0xC000, 0, &[])).unwrap().is_nan());
        assert_eq!(numeric(&raw(0, 0, 0xD000, 0, &[])).unwrap(), f64::INFINITY);
        assert!(numeric(&raw(2, 0, 0, 0, &[1])).is_err(), "truncated");
        assert!(
            numeric(&raw(1, 0, 0, 0, &[10000])).is_err(),
            "digit out of range"
        );
    }

    #[test]
    fn types_map_numbers_text_and_refusals() {
        for t in [
            Type::INT2,
            Type::INT4,
            Type::INT8,
            Type::FLOAT4,
            Type::FLOAT8,
            Type::NUMERIC,
        ] {
            assert_eq!(kind_of(&t), ColumnKind::Number, "{t}");
        }
        for t in [Type::TEXT, Type::VARCHAR, Type::BPCHAR] {
            assert_eq!(kind_of(&t), ColumnKind::Text, "{t}");
        }
        assert_eq!(
            kind_of(&Type::BOOL),
            ColumnKind::Refused("bool (PostgreSQL)".into())
        );
        assert_eq!(
            kind_of(&Type::DATE),
            ColumnKind::Refused("date (PostgreSQL)".into())
        );
    }

    #[test]
    fn passwords_in_urls_and_verification_without_a_root_are_refused_before_connecting() {
        let spec = |url: &str| PgSpec {
            url: url.into(),
            password: None,
            root_cert: None,
            read: PgRead::Query("select 1;".into()),
        };
        let e = PgSource::open(&spec("postgres://u:pw@127.0.0.1:1/db"))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("PGPASSWORD") && !e.contains("pw@"), "{e}");
        let e = PgSource::open(&spec("postgres://u@127.0.0.1:1/db?sslmode=verify-full"))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.starts_with("postgres://u@127.0.0.1:1/db (query): sslmode=verify-full needs"),
            "{e}"
        );
        assert_eq!(query_of(&PgRead::Query(" select 1 ; ".into())), "select 1");
        assert_eq!(
            query_of(&PgRead::Table("a.b".into())),
            "SELECT * FROM \"a\".\"b\""
        );
    }

    #[test]
    fn an_unreachable_server_is_named() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = PgSource::open(&PgSpec {
            url: format!("postgres://u@127.0.0.1:{port}/db"),
            password: Some("secret".into()),
            root_cert: None,
            read: PgRead::Table("loans".into()),
        })
        .err()
        .unwrap()
        .to_string();
        assert!(
            e.starts_with(&format!(
                "postgres://u@127.0.0.1:{port}/db (table loans): cannot connect"
            )),
            "{e}"
        );
        assert!(!e.contains("secret"));
    }
}

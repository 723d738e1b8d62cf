//! Where an institution's rows come from: a CSV file, a Parquet file or a PostgreSQL query.
//!
//! Every kind of source hands rows to the one reader in [`crate::data`] as cells (a number, a
//! text or nothing), so validation, missing values, located errors and the single
//! preallocated matrix are the same whatever the source. Types map to the schema: any numeric
//! type of the source reads as a number, text as text (a numeric feature's text is parsed as in
//! a CSV file, so `12x` is refused at its row), NULL as a missing value; other types (booleans,
//! dates, binary) are refused when the source is opened, naming the column.

use std::path::{Path, PathBuf};

use crate::data::Problems;
use crate::error::{DataError, Location, RowPlace};

/// One value of the current row, borrowed from the source.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    /// NULL: a missing value.
    Null,
    /// An integer of the source (exact, so identifiers and codes print as they are stored).
    Int(i64),
    /// A floating-point or decimal number of the source.
    Float(f64),
    /// Text (a CSV field, an SQL text, a Parquet string), not yet trimmed.
    Text(&'a [u8]),
}

/// How a source column's type reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnKind {
    /// Integers, floats and decimals.
    Number,
    /// Text (every CSV column).
    Text,
    /// A type that is not read (booleans, dates, binary, ...): its name in the source.
    Refused(String),
}

/// A source of rows opened for reading. Implementations: CSV, Parquet, PostgreSQL.
pub trait RowSource {
    /// The source as errors name it (a path, or the database URL without its password).
    fn name(&self) -> &Path;
    /// Column names, in the source's order.
    fn columns(&self) -> &[String];
    /// How column `col` reads.
    fn kind(&self, col: usize) -> ColumnKind;
    /// The columns the caller will read (ascending or not); a columnar source decodes only
    /// these. All columns until called.
    fn select(&mut self, _cols: &[usize]) {}
    /// An upper bound on the rows, known before reading them (the matrix is allocated once).
    fn row_bound(&mut self) -> Result<usize, DataError>;
    /// Moves to the next row; false at the end. Rows the source cannot deliver whole (a CSV
    /// record with the wrong field count) are problems and are skipped; an error that ends
    /// the read (I/O, a query that fails midway) is returned.
    fn advance(&mut self, problems: &mut Problems) -> Result<bool, DataError>;
    /// A cell of the current row.
    fn cell(&self, col: usize) -> Cell<'_>;
    /// The current row's number (CSV: its line) and how it is named.
    fn place(&self, id: Option<String>) -> (u64, RowPlace);

    /// The location of column `col` (or the whole row) of the current row.
    fn location(&self, col: Option<usize>, id: Option<String>) -> Location {
        let (line, place) = self.place(id);
        Location {
            file: self.name().to_owned(),
            line,
            column: col.map(|i| (i + 1, self.columns()[i].clone())),
            place,
        }
    }
}

/// A PostgreSQL source or destination: the URL (no password in it), the password given
/// apart, and what to read.
#[derive(Clone)]
pub struct PgSpec {
    /// `postgres://USER@HOST:PORT/DB[?sslmode=...&sslrootcert=FILE]`.
    pub url: String,
    /// From an environment variable or a file, never the command line.
    pub password: Option<String>,
    /// The root certificate the server's must chain to (`--pg-ca`; or `sslrootcert=` in the
    /// URL), for `sslmode=verify-ca`/`verify-full` (and `require`, which then checks it).
    pub root_cert: Option<PathBuf>,
    /// What to read: a table or a query.
    pub read: PgRead,
}

impl std::fmt::Debug for PgSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSpec")
            .field("url", &self.url)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("root_cert", &self.root_cert)
            .field("read", &self.read)
            .finish()
    }
}

/// What a PostgreSQL source reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgRead {
    /// Every row of a table (`schema.table` allowed).
    Table(String),
    /// The rows of a query.
    Query(String),
}

/// Where data is read from (or, for scores, written to).
#[derive(Debug, Clone)]
pub enum DataSource {
    Csv(PathBuf),
    Parquet(PathBuf),
    Postgres(PgSpec),
}

impl DataSource {
    /// A file by its extension (`.parquet`/`.parq` is Parquet, anything else CSV).
    pub fn file(path: &Path) -> DataSource {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("parquet" | "parq" | "pq") => DataSource::Parquet(path.to_owned()),
            _ => DataSource::Csv(path.to_owned()),
        }
    }

    /// Whether `text` names a PostgreSQL database rather than a file.
    pub fn is_postgres_url(text: &str) -> bool {
        text.starts_with("postgres://") || text.starts_with("postgresql://")
    }

    /// The name errors give the source.
    pub fn name(&self) -> PathBuf {
        match self {
            DataSource::Csv(p) | DataSource::Parquet(p) => p.clone(),
            DataSource::Postgres(spec) => PathBuf::from(pg_name(spec)),
        }
    }

    /// Opens the source for reading.
    pub fn open(&self) -> Result<Box<dyn RowSource>, DataError> {
        Ok(match self {
            DataSource::Csv(p) => Box::new(crate::data::CsvSource::open(p)?),
            DataSource::Parquet(p) => Box::new(crate::parquet_source::ParquetSource::open(p)?),
            #[cfg(feature = "postgres")]
            DataSource::Postgres(spec) => Box::new(crate::pg::PgSource::open(spec)?),
            #[cfg(not(feature = "postgres"))]
            DataSource::Postgres(spec) => {
                return Err(DataError::Source {
                    path: PathBuf::from(pg_name(spec)),
                    message: "this build has no PostgreSQL support (feature `postgres`)".into(),
                });
            }
        })
    }
}

/// `postgres://USER@HOST:PORT/DB (table T)` or `(query)`: the URL without its query string
/// (or any password), and what is read.
pub fn pg_name(spec: &PgSpec) -> String {
    let base = spec.url.split('?').next().unwrap_or_default();
    let base = match base.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            // Never print a password, even one put in the URL against the rules.
            Some((user, host)) => format!(
                "{scheme}://{}@{host}",
                user.split(':').next().unwrap_or_default()
            ),
            None => format!("{scheme}://{rest}"),
        },
        None => base.to_owned(),
    };
    match &spec.read {
        PgRead::Table(t) => format!("{base} (table {t})"),
        PgRead::Query(_) => format!("{base} (query)"),
    }
}

/// `"schema"."table"` from `schema.table`, each part quoted, so a table name is never SQL.
pub fn quote_table(name: &str) -> String {
    name.split('.')
        .map(|part| format!("\"{}\"", part.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(".")
}

/// The refusal of a column whose type is not read.
pub(crate) fn refused_type(path: &Path, column: &str, found: &str) -> DataError {
    DataError::ColumnType {
        path: path.to_owned(),
        column: column.to_owned(),
        found: found.to_owned(),
        wanted: "a number or text",
        hint: "cast it in the source (e.g. `flag::int`, `extract(year from opened)`), or leave it out of the schema (--drop)",
    }
}

/// Text of a cell for categorical levels, labels and identifiers (trimmed); `None` for NULL.
pub(crate) fn cell_text(cell: Cell<'_>) -> Option<String> {
    match cell {
        Cell::Null => None,
        Cell::Int(v) => Some(v.to_string()),
        Cell::Float(v) => Some(v.to_string()),
        Cell::Text(b) => Some(String::from_utf8_lossy(b.trim_ascii()).into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_by_extension_and_urls() {
        assert!(matches!(
            DataSource::file(Path::new("a/b.PARQUET")),
            DataSource::Parquet(_)
        ));
        assert!(matches!(
            DataSource::file(Path::new("b.csv")),
            DataSource::Csv(_)
        ));
        assert!(matches!(
            DataSource::file(Path::new("b.txt")),
            DataSource::Csv(_)
        ));
        assert!(DataSource::is_postgres_url("postgresql://u@h/db"));
        assert!(!DataSource::is_postgres_url("loans.csv"));
    }

    #[test]
    fn names_never_show_a_password_and_tables_are_quoted() {
        let spec = PgSpec {
            url: "postgres://bank:secret@db.example:5432/risk?sslmode=require".into(),
            password: Some("other".into()),
            root_cert: None,
            read: PgRead::Table("loans".into()),
        };
        let name = pg_name(&spec);
        assert_eq!(name, "postgres://bank@db.example:5432/risk (table loans)");
        assert!(!format!("{spec:?}").contains("other"));
        assert_eq!(quote_table("risk.loa\"ns"), "\"risk\".\"loa\"\"ns\"");
    }

    #[test]
    fn cells_as_text() {
        assert_eq!(cell_text(Cell::Int(12)), Some("12".into()));
        assert_eq!(cell_text(Cell::Float(2.0)), Some("2".into()));
        assert_eq!(cell_text(Cell::Float(0.25)), Some("0.25".into()));
        assert_eq!(cell_text(Cell::Text(b" retail ")), Some("retail".into()));
        assert_eq!(cell_text(Cell::Null), None);
    }
}

//! Typed errors for data loading and model files.
//!
//! Every data error names the file, the 1-based line and the column (by name and 1-based index)
//! so a bank data team can fix the row without guessing; nothing is silently coerced.

use std::path::PathBuf;

/// Where in a data source a problem sits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file, or the database source (URL without password, and the table or `query`).
    pub file: PathBuf,
    /// CSV: 1-based line number in the file (the header is line 1). Parquet and SQL: the
    /// 1-based data row number.
    pub line: u64,
    /// 1-based column index and the column's name, when the problem is in one field.
    pub column: Option<(usize, String)>,
    /// How the row is named in its kind of source.
    pub place: RowPlace,
}

/// How a row is named, beside its number, in each kind of source.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RowPlace {
    /// A CSV line (`file:line:column`).
    #[default]
    Line,
    /// A Parquet row: its row group and its row in that group, both 1-based, and the value
    /// of the `--id` column when one is named.
    RowGroup {
        group: usize,
        row: u64,
        id: Option<String>,
    },
    /// A row of an SQL result, with the value of the `--id` column when one is named.
    Row { id: Option<String> },
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let id = match &self.place {
            RowPlace::Line => {
                write!(f, "{}:{}", self.file.display(), self.line)?;
                if let Some((idx, name)) = &self.column {
                    write!(f, ":{idx} (column `{name}`)")?;
                }
                return Ok(());
            }
            RowPlace::RowGroup { group, row, id } => {
                write!(
                    f,
                    "{}: row group {group}, row {row} (data row {})",
                    self.file.display(),
                    self.line
                )?;
                id
            }
            RowPlace::Row { id } => {
                write!(f, "{}: row {}", self.file.display(), self.line)?;
                id
            }
        };
        if let Some(id) = id {
            write!(f, ", id `{id}`")?;
        }
        if let Some((idx, name)) = &self.column {
            write!(f, ", column {idx} `{name}`")?;
        }
        Ok(())
    }
}

/// One problem found in a data file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowProblem {
    #[error("{at}: expected a number, found `{value}`")]
    NotANumber { at: Location, value: String },
    #[error("{at}: infinite value `{value}` is not allowed")]
    NotFinite { at: Location, value: String },
    #[error("{at}: missing value, but the schema does not allow missing values in this column")]
    MissingNotAllowed { at: Location },
    #[error(
        "{at}: label `{value}` is neither the positive class `{positive}` nor the negative class `{negative}`"
    )]
    BadLabel {
        at: Location,
        value: String,
        positive: String,
        negative: String,
    },
    #[error("{at}: the label is missing")]
    MissingLabel { at: Location },
    #[error("{at}: expected {expected} fields (as in the header), found {found}")]
    FieldCount {
        at: Location,
        expected: usize,
        found: usize,
    },
    #[error("{at}: malformed CSV: {message}")]
    Malformed { at: Location, message: String },
    #[error("{at}: unreadable value: {message}")]
    Unreadable { at: Location, message: String },
}

/// Errors from reading data, schemas and model files.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: the file is empty (a header row is required)")]
    Empty { path: PathBuf },
    #[error("{path}:1: the header has no column `{column}` ({what}); columns are: {available}")]
    MissingColumn {
        path: PathBuf,
        column: String,
        what: &'static str,
        available: String,
    },
    #[error("{path}:1:{index}: column `{column}` appears more than once in the header")]
    DuplicateColumn {
        path: PathBuf,
        column: String,
        index: usize,
    },
    #[error("{path}: {count} problem(s) found; first ones:\n{}", list_problems(.problems))]
    Rows {
        path: PathBuf,
        /// The first problems found (at most [`crate::data::MAX_REPORTED_PROBLEMS`]).
        problems: Vec<RowProblem>,
        /// How many problems the whole file has.
        count: u64,
    },
    #[error("{path}: no column `{column}` ({what}); columns are: {available}")]
    NoSuchColumn {
        path: PathBuf,
        column: String,
        what: &'static str,
        available: String,
    },
    #[error("{path}: column `{column}` is of type {found}, which is not read as {wanted}; {hint}")]
    ColumnType {
        path: PathBuf,
        column: String,
        found: String,
        wanted: &'static str,
        hint: &'static str,
    },
    #[error("{path}: {message}")]
    Source { path: PathBuf, message: String },
    #[error("{path}: no data rows")]
    NoRows { path: PathBuf },
    #[error("{path}: label column `{label}`: {message}")]
    Labels {
        path: PathBuf,
        label: String,
        message: String,
    },
    #[error("{path}: invalid schema: {message}")]
    Schema { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Json { path: PathBuf, message: String },
    #[error("{path}: model file: {message}")]
    Model { path: PathBuf, message: String },
}

fn list_problems(problems: &[RowProblem]) -> String {
    problems
        .iter()
        .map(|p| format!("  {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Errors from fitting and evaluating models (never from data files).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FitError {
    #[error("dimension mismatch: {what}: expected {expected}, found {found}")]
    Dimension {
        what: &'static str,
        expected: usize,
        found: usize,
    },
    #[error(
        "the Hessian is not positive definite (add L2 regularisation or drop constant columns)"
    )]
    NotPositiveDefinite,
    #[error("non-finite value in {what}")]
    NonFinite { what: &'static str },
    #[error("no rows to fit")]
    NoRows,
    #[error("both classes are needed to fit; found only label {0}")]
    OneClass(u8),
    #[error("invalid setting: {0}")]
    Invalid(String),
}

/// Writes a value as pretty JSON with a final newline; errors name the file.
pub(crate) fn write_json<T: serde::Serialize>(
    path: &std::path::Path,
    value: &T,
) -> Result<(), DataError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| DataError::Json {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    std::fs::write(path, text + "\n").map_err(|source| DataError::Io {
        path: path.to_owned(),
        source,
    })
}

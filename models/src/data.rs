//! Loading a data source (CSV, Parquet, PostgreSQL: [`crate::source`]) against a schema into
//! column-typed matrices.
//!
//! Values are parsed straight into one preallocated row-major buffer (its size comes from the
//! source's row bound: a newline count, Parquet metadata, an SQL count), so a source of
//! millions of rows is held once, not once per parsing stage. [`DataReader`] reads the same
//! way in blocks of rows, for callers (scoring) that need only one block at a time.

use std::io::Read;
use std::path::{Path, PathBuf};

use ndarray::Array2;

use crate::error::{DataError, Location, RowPlace, RowProblem};
use crate::schema::{FeatureKind, LabelSpec, Schema};
use crate::source::{Cell, ColumnKind, DataSource, RowSource, cell_text, refused_type};

/// How many problems a load reports in detail; the rest are counted.
pub const MAX_REPORTED_PROBLEMS: usize = 20;

/// A categorical code for a level that the schema does not know.
pub const CODE_OTHER: u32 = u32::MAX - 1;
/// A categorical code for a missing value.
pub const CODE_MISSING: u32 = u32::MAX;

/// Marker bits of a NaN that stands for a declared special code (see [`special_nan`]).
const SPECIAL_NAN_TAG: u64 = 0x7ff8_5ec0_0000_0000;
const SPECIAL_NAN_MASK: u64 = 0xffff_ffff_0000_0000;

/// The value a declared special code (the `k`-th of its feature's `special_values`) is
/// stored as: a NaN, so everything that does not care treats it as missing, whose payload
/// still says which code it was, so binning gives each code a bin of its own. Copies keep
/// the payload (no arithmetic is done on missing values).
pub fn special_nan(k: usize) -> f64 {
    f64::from_bits(SPECIAL_NAN_TAG | (k as u64 & 0xffff_ffff))
}

/// Which declared special code a stored value stands for, if it is one (see [`special_nan`]).
pub fn special_index(v: f64) -> Option<usize> {
    let bits = v.to_bits();
    (v.is_nan() && bits & SPECIAL_NAN_MASK == SPECIAL_NAN_TAG)
        .then_some((bits & 0xffff_ffff) as usize)
}

/// Whether the label column must be present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelMode {
    /// Training and evaluation: every row needs a valid label.
    Required,
    /// Scoring: the label may be absent from the header; if present it is checked.
    Optional,
}

/// A loaded data set, in the schema's feature order.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Rows x numeric features, `NaN` where the value is missing (or a special code).
    pub numeric: Array2<f64>,
    /// Rows x categorical features: level index, [`CODE_OTHER`] or [`CODE_MISSING`].
    pub categorical: Array2<u32>,
    /// 1 for the positive class (default), 0 otherwise; `None` if the file has no label.
    pub labels: Option<Vec<u8>>,
}

impl Dataset {
    pub fn rows(&self) -> usize {
        self.numeric.nrows().max(self.categorical.nrows())
    }

    /// Labels as `f64` (1.0 = default), the form the trainers use.
    pub fn labels_f64(&self) -> Option<Vec<f64>> {
        self.labels
            .as_ref()
            .map(|l| l.iter().map(|&v| f64::from(v)).collect())
    }

    /// Keeps the rows whose index satisfies `keep` (used for validation splits).
    pub fn select_rows(&self, rows: &[usize]) -> Dataset {
        let numeric = self.numeric.select(ndarray::Axis(0), rows);
        let categorical = self.categorical.select(ndarray::Axis(0), rows);
        let labels = self
            .labels
            .as_ref()
            .map(|l| rows.iter().map(|&i| l[i]).collect());
        Dataset {
            numeric,
            categorical,
            labels,
        }
    }
}

/// Reads a CSV file with a header row against `schema`.
pub fn load_csv(path: &Path, schema: &Schema, label: LabelMode) -> Result<Dataset, DataError> {
    load(&DataSource::Csv(path.to_owned()), schema, label)
}

/// Reads any source (CSV, Parquet, PostgreSQL) against `schema` into one preallocated matrix.
pub fn load(source: &DataSource, schema: &Schema, label: LabelMode) -> Result<Dataset, DataError> {
    load_with_id(source, schema, label, None)
}

/// [`load`], with errors naming each row's key from column `id` as well as its number.
pub fn load_with_id(
    source: &DataSource,
    schema: &Schema,
    label: LabelMode,
    id: Option<&str>,
) -> Result<Dataset, DataError> {
    let mut reader = DataReader::open(source, schema, label, id)?;
    let row_bound = reader.src.row_bound()?;
    let mut buf = reader.buffers(row_bound);
    while reader.read_row(&mut buf)? {}
    let data = reader.dataset_of(buf)?.0;
    reader.finish()?;
    Ok(data)
}

/// A block of consecutive data rows read by [`DataReader::next_chunk`].
#[derive(Debug, Clone)]
pub struct Chunk {
    /// 1-based number of the block's first data row (the header is not counted).
    pub first_row: usize,
    pub data: Dataset,
    /// The identifier column's values (trimmed), one per row, when one was asked for.
    pub ids: Option<Vec<String>>,
}

/// A source opened against a schema and read in blocks of rows, so that a caller that
/// handles each block and lets it go (scoring) never holds the whole source.
///
/// Every row problem is collected as in [`load`]; [`DataReader::finish`] reports them.
pub struct DataReader {
    src: Box<dyn RowSource>,
    path: PathBuf,
    missing_tokens: Vec<String>,
    label_spec: LabelSpec,
    num_cols: Vec<NumCol>,
    cat_cols: Vec<CatCol>,
    label_idx: Option<usize>,
    label: LabelMode,
    id_idx: Option<usize>,
    problems: Problems,
    rows: usize,
    ended: bool,
}

/// Column buffers rows are parsed into.
struct Buffers {
    numeric: Vec<f64>,
    categorical: Vec<u32>,
    labels: Vec<u8>,
    ids: Vec<String>,
    rows: usize,
}

impl DataReader {
    /// Opens `source` and matches its columns to the schema's features, the label (as
    /// `label` says) and, if given, an identifier column `id`, which need not be in the
    /// schema. A column of a type that is not read is refused here, by name.
    pub fn open(
        source: &DataSource,
        schema: &Schema,
        label: LabelMode,
        id: Option<&str>,
    ) -> Result<Self, DataError> {
        let mut src = source.open()?;
        let path = src.name().to_owned();
        let header = src.columns();
        let is_csv = matches!(source, DataSource::Csv(_));
        let find = |name: &str| header.iter().position(|h| h == name);
        let missing_column = |column: &str, what: &'static str| {
            if is_csv {
                DataError::MissingColumn {
                    path: path.clone(),
                    column: column.to_owned(),
                    what,
                    available: header.join(", "),
                }
            } else {
                DataError::NoSuchColumn {
                    path: path.clone(),
                    column: column.to_owned(),
                    what,
                    available: header.join(", "),
                }
            }
        };
        let readable = |idx: usize| match src.kind(idx) {
            ColumnKind::Refused(found) => Err(refused_type(&path, &header[idx], &found)),
            _ => Ok(idx),
        };
        let mut num_cols = Vec::new();
        let mut cat_cols = Vec::new();
        for f in &schema.features {
            let idx =
                find(&f.name).ok_or_else(|| missing_column(&f.name, "a feature of the schema"))?;
            let idx = readable(idx)?;
            match &f.kind {
                FeatureKind::Numeric { special_values } => num_cols.push(NumCol {
                    idx,
                    missing_ok: f.missing,
                    special: special_values.clone(),
                }),
                FeatureKind::Categorical { levels } => cat_cols.push(CatCol {
                    idx,
                    missing_ok: f.missing,
                    levels: levels.clone(),
                }),
            }
        }
        let label_idx = match (find(&schema.label.name), label) {
            (Some(i), _) => Some(readable(i)?),
            (None, LabelMode::Optional) => None,
            (None, LabelMode::Required) => {
                return Err(missing_column(&schema.label.name, "the label"));
            }
        };
        let id_idx = match id {
            Some(name) => {
                Some(readable(find(name).ok_or_else(|| {
                    missing_column(name, "the identifier column, --id")
                })?)?)
            }
            None => None,
        };
        let used: Vec<usize> = num_cols
            .iter()
            .map(|c| c.idx)
            .chain(cat_cols.iter().map(|c| c.idx))
            .chain(label_idx)
            .chain(id_idx)
            .collect();
        src.select(&used);
        Ok(Self {
            problems: Problems::new(&path),
            path,
            src,
            missing_tokens: schema.missing_tokens.clone(),
            label_spec: schema.label.clone(),
            num_cols,
            cat_cols,
            label_idx,
            label,
            id_idx,
            rows: 0,
            ended: false,
        })
    }

    /// The source being read, as errors name it.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The source's column names.
    pub fn header(&self) -> &[String] {
        self.src.columns()
    }

    /// Whether the source has the label column.
    pub fn has_label(&self) -> bool {
        self.label_idx.is_some()
    }

    /// How many problems the rows read so far have.
    pub fn problem_count(&self) -> u64 {
        self.problems.count
    }

    /// The next block of at most `max_rows` rows (at least one), or `None` at the end of the
    /// source. Rows with problems are included (their bad values as missing) but the problems
    /// are kept for [`DataReader::finish`]: check [`DataReader::problem_count`] before using one.
    pub fn next_chunk(&mut self, max_rows: usize) -> Result<Option<Chunk>, DataError> {
        let max_rows = max_rows.max(1);
        let first_row = self.rows + 1;
        let mut buf = self.buffers(max_rows);
        while buf.rows < max_rows && self.read_row(&mut buf)? {}
        if buf.rows == 0 {
            return Ok(None);
        }
        let (data, ids) = self.dataset_of(buf)?;
        Ok(Some(Chunk {
            first_row,
            data,
            ids,
        }))
    }

    /// Reads whatever is left and reports every problem of the source, or the number of rows.
    pub fn finish(mut self) -> Result<usize, DataError> {
        let mut buf = self.buffers(0);
        while self.read_row(&mut buf)? {
            buf.numeric.clear();
            buf.categorical.clear();
            buf.labels.clear();
            buf.ids.clear();
        }
        self.problems.finish()?;
        if self.rows == 0 {
            return Err(DataError::NoRows { path: self.path });
        }
        Ok(self.rows)
    }

    fn buffers(&self, rows: usize) -> Buffers {
        Buffers {
            numeric: Vec::with_capacity(rows * self.num_cols.len()),
            categorical: Vec::with_capacity(rows * self.cat_cols.len()),
            labels: Vec::with_capacity(if self.label_idx.is_some() { rows } else { 0 }),
            ids: Vec::with_capacity(if self.id_idx.is_some() { rows } else { 0 }),
            rows: 0,
        }
    }

    fn dataset_of(&self, buf: Buffers) -> Result<(Dataset, Option<Vec<String>>), DataError> {
        let numeric = Array2::from_shape_vec((buf.rows, self.num_cols.len()), buf.numeric)
            .map_err(|e| shape_error(&self.path, e))?;
        let categorical = Array2::from_shape_vec((buf.rows, self.cat_cols.len()), buf.categorical)
            .map_err(|e| shape_error(&self.path, e))?;
        // A scoring file that has the label column but no values in it is still a scoring file.
        let labels = self.label_idx.map(|_| buf.labels);
        let ids = self.id_idx.map(|_| buf.ids);
        Ok((
            Dataset {
                numeric,
                categorical,
                labels,
            },
            ids,
        ))
    }

    /// Parses the next row into `out`; false at the end of the source.
    fn read_row(&mut self, out: &mut Buffers) -> Result<bool, DataError> {
        if self.ended {
            return Ok(false);
        }
        if !self.src.advance(&mut self.problems)? {
            self.ended = true;
            return Ok(false);
        }
        self.parse_row(out);
        self.rows += 1;
        out.rows += 1;
        Ok(true)
    }

    fn parse_row(&mut self, out: &mut Buffers) {
        let src = &*self.src;
        let problems = &mut self.problems;
        let id_idx = self.id_idx;
        let at = |i: usize| src.location(Some(i), id_idx.and_then(|k| cell_text(src.cell(k))));
        let is_missing = |field: &str| self.missing_tokens.iter().any(|t| t == field);
        for c in &self.num_cols {
            let cell = src.cell(c.idx);
            let before = problems.count;
            let parsed = match cell {
                Cell::Null => Parsed::Missing,
                Cell::Int(v) => Parsed::Value(v as f64),
                Cell::Float(v) if v.is_nan() => Parsed::Missing,
                Cell::Float(v) if v.is_infinite() => Parsed::Infinite,
                Cell::Float(v) => Parsed::Value(v),
                Cell::Text(field) => parse_number(field.trim_ascii(), is_missing),
            };
            let value = match parsed {
                Parsed::Value(v) => match c.special.iter().position(|s| *s == v) {
                    Some(k) => special_nan(k),
                    None => v,
                },
                Parsed::Missing => f64::NAN,
                Parsed::Infinite => {
                    problems.push(RowProblem::NotFinite {
                        at: at(c.idx),
                        value: cell_text(cell).unwrap_or_default(),
                    });
                    f64::NAN
                }
                Parsed::Text => {
                    problems.push(RowProblem::NotANumber {
                        at: at(c.idx),
                        value: cell_text(cell).unwrap_or_default(),
                    });
                    f64::NAN
                }
            };
            if value.is_nan() && !c.missing_ok && problems.count == before {
                problems.push(RowProblem::MissingNotAllowed { at: at(c.idx) });
            }
            out.numeric.push(value);
        }
        for c in &self.cat_cols {
            let code = match cell_text(src.cell(c.idx)).filter(|f| !is_missing(f)) {
                None => {
                    if !c.missing_ok {
                        problems.push(RowProblem::MissingNotAllowed { at: at(c.idx) });
                    }
                    CODE_MISSING
                }
                Some(field) => c
                    .levels
                    .iter()
                    .position(|l| *l == field)
                    .map_or(CODE_OTHER, |p| p as u32),
            };
            out.categorical.push(code);
        }
        if let Some(li) = self.label_idx {
            let spec = &self.label_spec;
            match cell_text(src.cell(li)).filter(|f| !is_missing(f)) {
                None => {
                    if self.label == LabelMode::Required {
                        problems.push(RowProblem::MissingLabel { at: at(li) });
                    }
                    out.labels.push(0);
                }
                Some(field) if label_equals(&field, &spec.positive) => out.labels.push(1),
                Some(field) if label_equals(&field, &spec.negative) => out.labels.push(0),
                Some(field) => {
                    problems.push(RowProblem::BadLabel {
                        at: at(li),
                        value: field,
                        positive: spec.positive.clone(),
                        negative: spec.negative.clone(),
                    });
                    out.labels.push(0);
                }
            }
        }
        if let Some(ii) = self.id_idx {
            out.ids.push(cell_text(src.cell(ii)).unwrap_or_default());
        }
    }
}

/// A CSV file with a header row, as a [`RowSource`]: every column is text.
pub(crate) struct CsvSource {
    path: PathBuf,
    rdr: csv::Reader<std::io::BufReader<std::fs::File>>,
    header: Vec<String>,
    record: csv::ByteRecord,
    line: u64,
    ended: bool,
}

impl CsvSource {
    pub(crate) fn open(path: &Path) -> Result<Self, DataError> {
        let mut rdr = open_csv(path)?;
        let header = read_header(&mut rdr, path)?;
        Ok(Self {
            path: path.to_owned(),
            rdr,
            header,
            record: csv::ByteRecord::new(),
            line: 1,
            ended: false,
        })
    }
}

impl RowSource for CsvSource {
    fn name(&self) -> &Path {
        &self.path
    }

    fn columns(&self) -> &[String] {
        &self.header
    }

    fn kind(&self, _col: usize) -> ColumnKind {
        ColumnKind::Text
    }

    fn row_bound(&mut self) -> Result<usize, DataError> {
        count_lines(&self.path)
    }

    /// A record with the wrong number of fields is a problem and is skipped; an I/O error
    /// is a problem that ends the read.
    fn advance(&mut self, problems: &mut Problems) -> Result<bool, DataError> {
        loop {
            if self.ended {
                return Ok(false);
            }
            match self.rdr.read_byte_record(&mut self.record) {
                Ok(true) => {}
                Ok(false) => {
                    self.ended = true;
                    return Ok(false);
                }
                Err(e) => {
                    problems.push(csv_problem(&self.path, &e));
                    if problems.fatal(&e) {
                        self.ended = true;
                        return Ok(false);
                    }
                    continue;
                }
            }
            self.line = self.record.position().map(|p| p.line()).unwrap_or(0);
            if self.record.len() != self.header.len() {
                problems.push(RowProblem::FieldCount {
                    at: loc(&self.path, self.line, None),
                    expected: self.header.len(),
                    found: self.record.len(),
                });
                continue;
            }
            return Ok(true);
        }
    }

    fn cell(&self, col: usize) -> Cell<'_> {
        Cell::Text(self.record.get(col).unwrap_or_default())
    }

    fn place(&self, _id: Option<String>) -> (u64, RowPlace) {
        (self.line, RowPlace::Line)
    }
}
struct NumCol {
    idx: usize,
    missing_ok: bool,
    special: Vec<f64>,
}

struct CatCol {
    idx: usize,
    missing_ok: bool,
    levels: Vec<String>,
}

enum Parsed {
    Value(f64),
    Missing,
    Infinite,
    Text,
}

fn parse_number(field: &[u8], is_missing: impl Fn(&str) -> bool) -> Parsed {
    let Ok(text) = std::str::from_utf8(field) else {
        return Parsed::Text;
    };
    if is_missing(text) {
        return Parsed::Missing;
    }
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() => Parsed::Value(v),
        Ok(v) if v.is_nan() => Parsed::Missing,
        Ok(_) => Parsed::Infinite,
        Err(_) => Parsed::Text,
    }
}

/// Labels match as text, or as numbers when both are numbers (`1.0` is `1`).
pub(crate) fn label_equals(field: &str, class: &str) -> bool {
    if field == class {
        return true;
    }
    matches!((field.parse::<f64>(), class.parse::<f64>()), (Ok(a), Ok(b)) if a == b)
}

fn io(path: &Path, source: std::io::Error) -> DataError {
    DataError::Io {
        path: path.to_owned(),
        source,
    }
}

fn shape_error(path: &Path, e: ndarray::ShapeError) -> DataError {
    DataError::Json {
        path: path.to_owned(),
        message: format!("internal shape error: {e}"),
    }
}

pub(crate) fn loc(path: &Path, line: u64, column: Option<(usize, &String)>) -> Location {
    Location {
        file: path.to_owned(),
        line,
        column: column.map(|(i, name)| (i + 1, name.clone())),
        place: crate::error::RowPlace::Line,
    }
}

/// Opens a CSV file, taking the delimiter from its header line: a comma unless the header
/// has more semicolons, tabs or pipes (European spreadsheet exports use `;`).
pub(crate) fn open_csv(
    path: &Path,
) -> Result<csv::Reader<std::io::BufReader<std::fs::File>>, DataError> {
    use std::io::BufRead;
    let file = std::fs::File::open(path).map_err(|source| io(path, source))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let first = reader.fill_buf().map_err(|source| io(path, source))?;
    let line_end = first
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(first.len());
    let line = &first[..line_end];
    let delimiter = [b',', b';', b'\t', b'|']
        .into_iter()
        .max_by_key(|d| (line.iter().filter(|b| *b == d).count(), *d == b','))
        .unwrap_or(b',');
    Ok(csv::ReaderBuilder::new()
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(reader))
}

/// Reads the header row; names are trimmed and must be unique.
pub(crate) fn read_header<R: Read>(
    rdr: &mut csv::Reader<R>,
    path: &Path,
) -> Result<Vec<String>, DataError> {
    let header = rdr.byte_headers().map_err(|e| match e.kind() {
        csv::ErrorKind::Io(_) => DataError::Io {
            path: path.to_owned(),
            source: std::io::Error::other(e.to_string()),
        },
        _ => DataError::Rows {
            path: path.to_owned(),
            problems: vec![csv_problem(path, &e)],
            count: 1,
        },
    })?;
    if header.is_empty() || (header.len() == 1 && header[0].is_empty()) {
        return Err(DataError::Empty {
            path: path.to_owned(),
        });
    }
    let names: Vec<String> = header
        .iter()
        .enumerate()
        .map(|(i, h)| {
            // Spreadsheet exports often start with a UTF-8 byte-order mark.
            let h = if i == 0 {
                h.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(h)
            } else {
                h
            };
            String::from_utf8_lossy(h.trim_ascii()).into_owned()
        })
        .collect();
    for (i, n) in names.iter().enumerate() {
        if names[..i].contains(n) {
            return Err(DataError::DuplicateColumn {
                path: path.to_owned(),
                column: n.clone(),
                index: i + 1,
            });
        }
    }
    Ok(names)
}

pub(crate) fn csv_problem(path: &Path, e: &csv::Error) -> RowProblem {
    let line = e.position().map(|p| p.line()).unwrap_or(0);
    match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => RowProblem::FieldCount {
            at: loc(path, line, None),
            expected: *expected_len as usize,
            found: *len as usize,
        },
        _ => RowProblem::Malformed {
            at: loc(path, line, None),
            message: e.to_string(),
        },
    }
}

/// Collects row problems: the first few in detail, all of them counted.
pub struct Problems {
    path: PathBuf,
    list: Vec<RowProblem>,
    count: u64,
}

impl Problems {
    pub(crate) fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            list: Vec::new(),
            count: 0,
        }
    }

    pub(crate) fn push(&mut self, p: RowProblem) {
        self.count += 1;
        if self.list.len() < MAX_REPORTED_PROBLEMS {
            self.list.push(p);
        }
    }

    /// An I/O error ends the read; a malformed record does not.
    pub(crate) fn fatal(&self, e: &csv::Error) -> bool {
        matches!(e.kind(), csv::ErrorKind::Io(_))
    }

    pub(crate) fn finish(self) -> Result<(), DataError> {
        if self.count == 0 {
            Ok(())
        } else {
            Err(DataError::Rows {
                path: self.path,
                problems: self.list,
                count: self.count,
            })
        }
    }
}

/// An upper bound on the data rows (newlines, plus one for a last line without one).
fn count_lines(path: &Path) -> Result<usize, DataError> {
    let mut file = std::fs::File::open(path).map_err(|source| io(path, source))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut lines = 1usize;
    loop {
        let n = file.read(&mut buf).map_err(|source| io(path, source))?;
        if n == 0 {
            break;
        }
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count();
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{InferOptions, infer};

    fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    const GOOD: &str = "income,sector,default\n100,retail,good\n,farm,bad\n250.5,retail,good\n";

    fn schema_of(dir: &tempfile::TempDir) -> Schema {
        let p = write(dir, "train.csv", GOOD);
        infer(&p, &InferOptions::new("default", "bad")).unwrap()
    }

    fn problems(err: DataError) -> Vec<RowProblem> {
        match err {
            DataError::Rows { problems, .. } => problems,
            other => panic!("expected row problems, got {other}"),
        }
    }

    #[test]
    fn infers_kinds_levels_missing_and_text_labels() {
        let dir = tempfile::tempdir().unwrap();
        let s = schema_of(&dir);
        assert_eq!(s.label.positive, "bad");
        assert_eq!(s.label.negative, "good");
        assert_eq!(s.features.len(), 2);
        assert!(s.features[0].is_numeric() && s.features[0].missing);
        assert_eq!(
            s.features[1].kind,
            FeatureKind::Categorical {
                levels: vec!["farm".into(), "retail".into()]
            }
        );
        assert!(!s.features[1].missing);
    }

    #[test]
    fn loads_values_missing_and_labels() {
        let dir = tempfile::tempdir().unwrap();
        let s = schema_of(&dir);
        let p = write(&dir, "x.csv", GOOD);
        let d = load_csv(&p, &s, LabelMode::Required).unwrap();
        assert_eq!(d.rows(), 3);
        assert_eq!(d.numeric[[0, 0]], 100.0);
        assert!(d.numeric[[1, 0]].is_nan());
        assert_eq!(d.categorical.column(0).to_vec(), vec![1, 0, 1]);
        assert_eq!(d.labels, Some(vec![0, 1, 0]));
    }

    #[test]
    fn not_a_number_names_file_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let s = schema_of(&dir);
        let p = write(
            &dir,
            "bad.csv",
            "income,sector,default\n100,retail,good\n12x,retail,bad\n",
        );
        let err = load_csv(&p, &s, LabelMode::Required).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("bad.csv:3:1 (column `income`)"), "{text}");
        assert!(text.contains("expected a number, found `12x`"), "{text}");
        assert!(matches!(problems(err)[0], RowProblem::NotANumber { .. }));
    }

    #[test]
    fn infinity_is_an_error_not_a_value() {
        let dir = tempfile::tempdir().unwrap();
        let s = schema_of(&dir);
        let p = write(&dir, "inf.csv", "income,sector,default\ninf,retail,good\n");
        let err = load_csv(&p, &s, LabelMode::Required).unwrap_err();
        assert!(matches!(problems(err)[0], RowProblem::NotFinite { .. }));
    }

    #[test]
    fn missing_where_not_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let s = schema_of(&dir);
        let p = write(&dir, "m.csv", "income,sector,default\n1,NA,good\n");
        let err = load_csv(&p, &s, LabelMode::Required).unwrap_err();
        let ps = problems(err);
        assert!(
            matches!(&ps[0], RowProblem::MissingNotAllowed { at } if at.line == 2 && at.column == Some((2, "sector".into())))
        );
    }

    #[test]
    fn nan_and_na_tokens_are_missing_values() {
        let dir = tempfile::tempdir().unwrap();
        let s = schema_of(&dir);
        let p = write(
            &dir,
            "n.csv",
            "income,sector,default\nNaN,retail,good\nNA,retail,bad\n",
        );
        let d = load_csv(&p, &s, LabelMode::Required).unwrap();
        assert!(d.numeric.iter().all(|v| v.is_nan()));
    }

    #[test]
    fn field_count_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let s = schema_of(&dir);
        let p = write(
            &dir,
            "f.csv",
            "income,sector,default\n1,retail\n2,retail,good\n",
        );
        let ps = problems(load_csv(&p, &s, LabelMode::Required).unwrap_err());
        assert_eq!(ps.len(), 1);
        assert!(
            matches!(&ps[0], RowProblem::FieldCount { at, expected: 3, found: 2 } if at.line == 2)
        );
    }

    #[test]
    fn bad_and_missing_labels() {
        let dir = tempfile::tempdir().unwrap();
        let s = schema_of(&dir);
        let p = write(
            &dir,
            "l.csv",
            "income,sector,default\n1,retail,maybe\n2,retail,\n",
        );
        let ps = problems(load_csv(&p, &s, LabelMode::Required).unwrap_err());
        assert!(matches!(&ps[0], RowProblem::BadLabel { value, .. } if value == "maybe"));
        assert!(matches!(&ps[1], RowProblem::MissingLabel { at } if at.line == 3));
    }

    #[test]
    fn malformed_quoting_is_reported_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let s = schema_of(&dir);
        // An unterminated quote swallows the rest of the file into one field.
        let p = write(
            &dir,
            "q.csv",
            "income,sector,default\n1,retail,good\n\"2,retail,bad\n3,retail,good\n",
        );
        let ps = problems(load_csv(&p, &s, LabelMode::Required).unwrap_err());
        assert!(
            matches!(&ps[0], RowProblem::FieldCount { at, .. } if at.line == 3),
            "{ps:?}"
        );
    }

    #[test]
    fn all_problems_are_counted_first_ones_listed() {
        let dir = tempfile::tempdir().unwrap();
        let s = schema_of(&dir);
        let mut text = String::from("income,sector,default\n");
        for _ in 0..50 {
            text.push_str("x,retail,good\n");
        }
        let p = write(&dir, "many.csv", &text);
        match load_csv(&p, &s, LabelMode::Required).unwrap_err() {
            DataError::Rows {
                problems, count, ..
            } => {
                assert_eq!(count, 50);
                assert_eq!(problems.len(), MAX_REPORTED_PROBLEMS);
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn schema_errors_missing_column_duplicates_empty_and_no_rows() {
        let dir = tempfile::tempdir().unwrap();
        let s = schema_of(&dir);
        let p = write(&dir, "c.csv", "income,default\n1,good\n");
        assert!(
            matches!(load_csv(&p, &s, LabelMode::Required).unwrap_err(), DataError::MissingColumn { column, .. } if column == "sector")
        );
        let p = write(
            &dir,
            "d.csv",
            "income,sector,income,default\n1,retail,1,good\n",
        );
        assert!(matches!(
            load_csv(&p, &s, LabelMode::Required).unwrap_err(),
            DataError::DuplicateColumn { index: 3, .. }
        ));
        let p = write(&dir, "e.csv", "");
        assert!(matches!(
            load_csv(&p, &s, LabelMode::Required).unwrap_err(),
            DataError::Empty { .. }
        ));
        let p = write(&dir, "h.csv", "income,sector,default\n");
        assert!(matches!(
            load_csv(&p, &s, LabelMode::Required).unwrap_err(),
            DataError::NoRows { .. }
        ));
        let p = dir.path().join("absent.csv");
        assert!(matches!(
            load_csv(&p, &s, LabelMode::Required).unwrap_err(),
            DataError::Io { .. }
        ));
    }

    #[test]
    fn scoring_mode_allows_no_label_and_unseen_levels() {
        let dir = tempfile::tempdir().unwrap();
        let s = schema_of(&dir);
        let p = write(&dir, "s.csv", "sector,income\nmining,5\n");
        let d = load_csv(&p, &s, LabelMode::Optional).unwrap();
        assert_eq!(d.labels, None);
        assert_eq!(d.categorical[[0, 0]], CODE_OTHER);
        assert!(load_csv(&p, &s, LabelMode::Required).is_err());
    }

    #[test]
    fn special_codes_become_missing() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = schema_of(&dir);
        s.features[0].kind = FeatureKind::Numeric {
            special_values: vec![98.0],
        };
        let p = write(
            &dir,
            "sp.csv",
            "income,sector,default\n98,retail,good\n97,retail,bad\n",
        );
        let d = load_csv(&p, &s, LabelMode::Required).unwrap();
        assert!(d.numeric[[0, 0]].is_nan());
        assert_eq!(special_index(d.numeric[[0, 0]]), Some(0));
        assert_eq!(d.numeric[[1, 0]], 97.0);
        assert_eq!(special_index(f64::NAN), None);
        assert_eq!(special_index(97.0), None);
        // The payload survives a row selection (validation splits copy rows).
        assert_eq!(special_index(d.select_rows(&[0]).numeric[[0, 0]]), Some(0));
    }

    #[test]
    fn numeric_labels_match_numerically() {
        assert!(label_equals("1.0", "1"));
        assert!(!label_equals("1.5", "1"));
        assert!(label_equals("bad", "bad"));
    }

    #[test]
    fn infer_rejects_identifier_columns_and_bad_labels() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::from("id,default\n");
        for i in 0..300 {
            text.push_str(&format!("c{i},{}\n", i % 2));
        }
        let p = write(&dir, "ids.csv", &text);
        let err = infer(&p, &InferOptions::new("default", "1")).unwrap_err();
        assert!(err.to_string().contains("--drop id"), "{err}");
        let mut opts = InferOptions::new("default", "1");
        opts.drop.push("id".into());
        assert!(
            matches!(infer(&p, &opts), Err(DataError::Schema { .. })),
            "no features left"
        );
        let p = write(&dir, "three.csv", "x,default\n1,0\n2,1\n3,2\n");
        assert!(matches!(
            infer(&p, &InferOptions::new("default", "1")),
            Err(DataError::Labels { .. })
        ));
        let p = write(&dir, "nopos.csv", "x,default\n1,0\n2,0\n");
        assert!(matches!(
            infer(&p, &InferOptions::new("default", "1")),
            Err(DataError::Labels { .. })
        ));
    }
}

#[cfg(test)]
mod format_tests {
    use super::*;
    use crate::schema::{InferOptions, infer};

    #[test]
    fn semicolons_byte_order_marks_crlf_and_sas_missing_values_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("eu.csv");
        std::fs::write(
            &p,
            "\u{feff}income;sector;default\r\n100;retail;0\r\n.;farm;1\r\n?;retail;0\r\n",
        )
        .unwrap();
        let schema = infer(&p, &InferOptions::new("default", "1")).unwrap();
        assert_eq!(schema.features[0].name, "income");
        assert!(schema.features[0].is_numeric() && schema.features[0].missing);
        let d = load_csv(&p, &schema, LabelMode::Required).unwrap();
        assert_eq!(d.rows(), 3);
        assert_eq!(d.numeric[[0, 0]], 100.0);
        assert!(d.numeric[[1, 0]].is_nan() && d.numeric[[2, 0]].is_nan());
        assert_eq!(d.labels, Some(vec![0, 1, 0]));
    }

    #[test]
    fn commas_win_ties_and_quoted_delimiters_stay_inside_fields() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("q.csv");
        std::fs::write(
            &p,
            "name,amount,default\n\"Smith; Jones\",5,0\n\"Lee, A\",6,1\n",
        )
        .unwrap();
        let mut opts = InferOptions::new("default", "1");
        opts.drop.push("name".into());
        let schema = infer(&p, &opts).unwrap();
        let d = load_csv(&p, &schema, LabelMode::Required).unwrap();
        assert_eq!(d.numeric.column(0).to_vec(), vec![5.0, 6.0]);
    }
}

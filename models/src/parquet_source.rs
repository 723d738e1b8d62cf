//! Parquet files as a [`RowSource`], read one row group at a time in record batches of a few
//! thousand rows, only the columns the reader asks for. Integer, float and decimal columns
//! (any Parquet physical type the Arrow reader maps to them) read as numbers; strings,
//! string views and dictionaries of strings as text; NULL as a missing value. Rows are named
//! by row group and row (both 1-based).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Decimal32Type, Decimal64Type, Decimal128Type, Float16Type, Float32Type, Float64Type, Int8Type,
    Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder,
};

use crate::data::Problems;
use crate::error::{DataError, RowPlace};
use crate::source::{Cell, ColumnKind, RowSource};

/// Rows per record batch: the only rows held besides the matrix.
const BATCH_ROWS: usize = 4096;

pub(crate) struct ParquetSource {
    path: PathBuf,
    file: File,
    meta: ArrowReaderMetadata,
    columns: Vec<String>,
    types: Vec<DataType>,
    /// Columns to decode (all until the reader says which it needs), ascending.
    selected: Vec<usize>,
    /// Where each source column sits in a batch, if decoded.
    slot: Vec<Option<usize>>,
    group: usize,
    reader: Option<ParquetRecordBatchReader>,
    batch: Option<Batch>,
    row_in_batch: usize,
    row_in_group: u64,
    row: u64,
}

/// A record batch with its dictionary columns' keys resolved.
struct Batch {
    columns: Vec<ArrayRef>,
    /// For a dictionary column: each row's index into its values (None for NULL).
    keys: Vec<Option<Vec<Option<usize>>>>,
    rows: usize,
}

impl ParquetSource {
    pub(crate) fn open(path: &Path) -> Result<Self, DataError> {
        let file = File::open(path).map_err(|source| DataError::Io {
            path: path.to_owned(),
            source,
        })?;
        let meta = ArrowReaderMetadata::load(&file, Default::default())
            .map_err(|e| parquet_error(path, &e))?;
        let schema = meta.schema().clone();
        let columns: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        let types = schema
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        for (i, c) in columns.iter().enumerate() {
            if columns[..i].contains(c) {
                return Err(DataError::DuplicateColumn {
                    path: path.to_owned(),
                    column: c.clone(),
                    index: i + 1,
                });
            }
        }
        let selected: Vec<usize> = (0..columns.len()).collect();
        let slot = selected.iter().map(|&i| Some(i)).collect();
        Ok(Self {
            path: path.to_owned(),
            file,
            meta,
            columns,
            types,
            selected,
            slot,
            group: 0,
            reader: None,
            batch: None,
            row_in_batch: 0,
            row_in_group: 0,
            row: 0,
        })
    }

    /// The next record batch, opening the next row group when one is used up.
    fn next_batch(&mut self) -> Result<bool, DataError> {
        loop {
            if let Some(reader) = &mut self.reader {
                match reader.next() {
                    Some(Ok(batch)) => {
                        self.batch = Some(resolve(batch));
                        self.row_in_batch = 0;
                        return Ok(true);
                    }
                    Some(Err(e)) => {
                        return Err(DataError::Source {
                            path: self.path.clone(),
                            message: format!(
                                "row group {}, after row {}: {e}",
                                self.group, self.row_in_group
                            ),
                        });
                    }
                    None => self.reader = None,
                }
            }
            let groups = self.meta.metadata().num_row_groups();
            if self.group >= groups {
                return Ok(false);
            }
            let file = self.file.try_clone().map_err(|source| DataError::Io {
                path: self.path.clone(),
                source,
            })?;
            let mask =
                ProjectionMask::roots(self.meta.parquet_schema(), self.selected.iter().copied());
            let reader =
                ParquetRecordBatchReaderBuilder::new_with_metadata(file, self.meta.clone())
                    .with_row_groups(vec![self.group])
                    .with_projection(mask)
                    .with_batch_size(BATCH_ROWS)
                    .build()
                    .map_err(|e| parquet_error(&self.path, &e))?;
            self.group += 1;
            self.row_in_group = 0;
            self.reader = Some(reader);
        }
    }
}

fn resolve(batch: RecordBatch) -> Batch {
    let rows = batch.num_rows();
    let columns: Vec<ArrayRef> = batch.columns().to_vec();
    let keys = columns
        .iter()
        .map(|a| {
            matches!(a.data_type(), DataType::Dictionary(..)).then(|| {
                let d = a.as_any_dictionary();
                let k = d.normalized_keys();
                (0..rows)
                    .map(|r| (!d.keys().is_null(r)).then(|| k[r]))
                    .collect()
            })
        })
        .collect();
    Batch {
        columns,
        keys,
        rows,
    }
}

fn parquet_error(path: &Path, e: &parquet::errors::ParquetError) -> DataError {
    DataError::Source {
        path: path.to_owned(),
        message: format!("not a readable Parquet file: {e}"),
    }
}

fn kind_of(t: &DataType) -> ColumnKind {
    use DataType::*;
    match t {
        Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 | Float16 | Float32
        | Float64 | Decimal32(..) | Decimal64(..) | Decimal128(..) => ColumnKind::Number,
        Utf8 | LargeUtf8 | Utf8View | Null => ColumnKind::Text,
        Dictionary(_, v) if matches!(**v, Utf8 | LargeUtf8 | Utf8View) => ColumnKind::Text,
        other => ColumnKind::Refused(format!("{other} (Parquet)")),
    }
}

/// A decimal as the nearest `f64` (via its decimal text, so it is correctly rounded).
fn decimal(v: i128, scale: i8) -> f64 {
    format!("{v}e{}", -i32::from(scale))
        .parse()
        .unwrap_or(f64::NAN)
}

/// The cell at `row` of a (non-dictionary) array.
fn array_cell(a: &dyn Array, row: usize) -> Cell<'_> {
    if a.is_null(row) {
        return Cell::Null;
    }
    use DataType::*;
    match a.data_type() {
        Int8 => Cell::Int(a.as_primitive::<Int8Type>().value(row).into()),
        Int16 => Cell::Int(a.as_primitive::<Int16Type>().value(row).into()),
        Int32 => Cell::Int(a.as_primitive::<Int32Type>().value(row).into()),
        Int64 => Cell::Int(a.as_primitive::<Int64Type>().value(row)),
        UInt8 => Cell::Int(a.as_primitive::<UInt8Type>().value(row).into()),
        UInt16 => Cell::Int(a.as_primitive::<UInt16Type>().value(row).into()),
        UInt32 => Cell::Int(a.as_primitive::<UInt32Type>().value(row).into()),
        UInt64 => {
            let v = a.as_primitive::<UInt64Type>().value(row);
            i64::try_from(v).map_or(Cell::Float(v as f64), Cell::Int)
        }
        Float16 => Cell::Float(a.as_primitive::<Float16Type>().value(row).into()),
        Float32 => Cell::Float(a.as_primitive::<Float32Type>().value(row).into()),
        Float64 => Cell::Float(a.as_primitive::<Float64Type>().value(row)),
        Decimal32(_, s) => Cell::Float(decimal(
            a.as_primitive::<Decimal32Type>().value(row).into(),
            *s,
        )),
        Decimal64(_, s) => Cell::Float(decimal(
            a.as_primitive::<Decimal64Type>().value(row).into(),
            *s,
        )),
        Decimal128(_, s) => Cell::Float(decimal(a.as_primitive::<Decimal128Type>().value(row), *s)),
        Utf8 => Cell::Text(a.as_string::<i32>().value(row).as_bytes()),
        LargeUtf8 => Cell::Text(a.as_string::<i64>().value(row).as_bytes()),
        Utf8View => Cell::Text(a.as_string_view().value(row).as_bytes()),
        // Refused when the reader opened the source.
        _ => Cell::Null,
    }
}

impl RowSource for ParquetSource {
    fn name(&self) -> &Path {
        &self.path
    }

    fn columns(&self) -> &[String] {
        &self.columns
    }

    fn kind(&self, col: usize) -> ColumnKind {
        kind_of(&self.types[col])
    }

    fn select(&mut self, cols: &[usize]) {
        let mut selected = cols.to_vec();
        selected.sort_unstable();
        selected.dedup();
        self.slot = vec![None; self.columns.len()];
        for (k, &c) in selected.iter().enumerate() {
            self.slot[c] = Some(k);
        }
        self.selected = selected;
    }

    fn row_bound(&mut self) -> Result<usize, DataError> {
        Ok(usize::try_from(self.meta.metadata().file_metadata().num_rows()).unwrap_or(0))
    }

    fn advance(&mut self, _problems: &mut Problems) -> Result<bool, DataError> {
        if let Some(b) = &self.batch
            && self.row_in_batch + 1 < b.rows
        {
            self.row_in_batch += 1;
        } else {
            loop {
                if !self.next_batch()? {
                    self.batch = None;
                    return Ok(false);
                }
                if self.batch.as_ref().is_some_and(|b| b.rows > 0) {
                    break;
                }
            }
        }
        self.row_in_group += 1;
        self.row += 1;
        Ok(true)
    }

    fn cell(&self, col: usize) -> Cell<'_> {
        let (Some(b), Some(Some(k))) = (&self.batch, self.slot.get(col)) else {
            return Cell::Null;
        };
        let a = &b.columns[*k];
        let r = self.row_in_batch;
        match &b.keys[*k] {
            Some(keys) => match keys[r] {
                Some(v) => array_cell(a.as_any_dictionary().values().as_ref(), v),
                None => Cell::Null,
            },
            None => array_cell(a.as_ref(), r),
        }
    }

    fn place(&self, id: Option<String>) -> (u64, RowPlace) {
        (
            self.row,
            RowPlace::RowGroup {
                group: self.group,
                row: self.row_in_group,
                id,
            },
        )
    }
}

/// Writes `name: probability` rows (or `row`) to a Parquet file in batches.
pub struct ParquetScoreWriter {
    writer: parquet::arrow::ArrowWriter<File>,
    schema: Arc<arrow_schema::Schema>,
    path: PathBuf,
    with_ids: bool,
}

impl ParquetScoreWriter {
    /// Creates `path` with an identifier column `id` (text) or `row` (integer) and
    /// `probability`.
    pub fn create(path: &Path, id: Option<&str>) -> Result<Self, DataError> {
        use arrow_schema::{Field, Schema};
        let first = match id {
            Some(name) => Field::new(name, DataType::Utf8, false),
            None => Field::new("row", DataType::UInt64, false),
        };
        let schema = Arc::new(Schema::new(vec![
            first,
            Field::new("probability", DataType::Float64, false),
        ]));
        let file = File::create(path).map_err(|source| DataError::Io {
            path: path.to_owned(),
            source,
        })?;
        let writer = parquet::arrow::ArrowWriter::try_new(file, schema.clone(), None)
            .map_err(|e| parquet_error(path, &e))?;
        Ok(Self {
            writer,
            schema,
            path: path.to_owned(),
            with_ids: id.is_some(),
        })
    }

    /// Appends a block of scores: `ids` when the file has an identifier column, else the
    /// block's first 1-based row number.
    pub fn write(
        &mut self,
        first_row: usize,
        ids: Option<&[String]>,
        probabilities: &[f64],
    ) -> Result<(), DataError> {
        use arrow_array::{Float64Array, StringArray, UInt64Array};
        let first: ArrayRef = match (self.with_ids, ids) {
            (true, Some(ids)) => Arc::new(StringArray::from_iter_values(ids.iter())),
            _ => Arc::new(UInt64Array::from_iter_values(
                (0..probabilities.len()).map(|k| (first_row + k) as u64),
            )),
        };
        let probs: ArrayRef = Arc::new(Float64Array::from(probabilities.to_vec()));
        let batch = RecordBatch::try_new(self.schema.clone(), vec![first, probs]).map_err(|e| {
            DataError::Source {
                path: self.path.clone(),
                message: e.to_string(),
            }
        })?;
        self.writer
            .write(&batch)
            .map_err(|e| parquet_error(&self.path, &e))
    }

    /// Writes the footer.
    pub fn finish(self) -> Result<(), DataError> {
        let path = self.path;
        self.writer
            .close()
            .map(|_| ())
            .map_err(|e| parquet_error(&path, &e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{LabelMode, load};
    use crate::schema::{InferOptions, infer_source};
    use crate::source::DataSource;
    use arrow_array::{
        BooleanArray, Decimal128Array, Float64Array, Int32Array, Int64Array, StringArray,
    };
    use arrow_schema::{Field, Schema as ArrowSchema};

    /// Writes `columns` to a Parquet file in row groups of `group_rows`.
    fn write(path: &Path, columns: Vec<(&str, ArrayRef)>, group_rows: usize) {
        let schema = Arc::new(ArrowSchema::new(
            columns
                .iter()
                .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
                .collect::<Vec<_>>(),
        ));
        let batch = RecordBatch::try_new(
            schema.clone(),
            columns.into_iter().map(|(_, a)| a).collect(),
        )
        .unwrap();
        let props = parquet::file::properties::WriterProperties::builder()
            .set_max_row_group_row_count(Some(group_rows))
            .build();
        let mut w =
            parquet::arrow::ArrowWriter::try_new(File::create(path).unwrap(), schema, Some(props))
                .unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }

    fn loans(dir: &tempfile::TempDir, income: Vec<Option<f64>>, group_rows: usize) -> PathBuf {
        let n = income.len();
        let p = dir.path().join("loans.parquet");
        write(
            &p,
            vec![
                (
                    "loan",
                    Arc::new(Int64Array::from_iter_values(1000..1000 + n as i64)),
                ),
                ("income", Arc::new(Float64Array::from(income))),
                (
                    "amount",
                    Arc::new(
                        Decimal128Array::from_iter_values((0..n as i128).map(|i| 12345 + i))
                            .with_precision_and_scale(10, 2)
                            .unwrap(),
                    ),
                ),
                (
                    "sector",
                    Arc::new(StringArray::from_iter_values(
                        (0..n).map(|i| if i % 2 == 0 { "retail" } else { "farm" }),
                    )),
                ),
                (
                    "default",
                    Arc::new(Int32Array::from_iter_values(
                        (0..n).map(|i| (i % 3 == 0) as i32),
                    )),
                ),
            ],
            group_rows,
        );
        p
    }

    #[test]
    fn types_map_to_the_schema_across_row_groups() {
        let dir = tempfile::tempdir().unwrap();
        let p = loans(
            &dir,
            vec![Some(10.0), None, Some(30.5), Some(4.0), Some(5.0)],
            2,
        );
        let src = DataSource::file(&p);
        let mut opts = InferOptions::new("default", "1");
        opts.drop.push("loan".into());
        let schema = infer_source(&src, &opts).unwrap();
        assert_eq!(schema.features.len(), 3);
        assert!(schema.features[0].is_numeric() && schema.features[0].missing);
        assert!(schema.features[1].is_numeric() && !schema.features[1].missing);
        assert!(!schema.features[2].is_numeric());
        let d = load(&src, &schema, LabelMode::Required).unwrap();
        assert_eq!(d.rows(), 5);
        assert_eq!(d.numeric[[2, 0]], 30.5);
        assert!(d.numeric[[1, 0]].is_nan());
        assert_eq!(d.numeric[[1, 1]], 123.46);
        assert_eq!(d.labels, Some(vec![1, 0, 0, 1, 0]));
        assert_eq!(d.categorical.column(0).to_vec(), vec![1, 0, 1, 0, 1]);
    }

    #[test]
    fn null_where_forbidden_is_located_by_row_group_row_and_id() {
        let dir = tempfile::tempdir().unwrap();
        let p = loans(&dir, vec![Some(10.0), Some(2.0), Some(30.5)], 2);
        let src = DataSource::file(&p);
        let schema = infer_source(&src, &InferOptions::new("default", "1")).unwrap();
        let bad = loans(&dir, vec![Some(10.0), Some(2.0), None], 2);
        let mut r = crate::data::DataReader::open(
            &DataSource::file(&bad),
            &schema,
            LabelMode::Required,
            Some("loan"),
        )
        .unwrap();
        while r.next_chunk(2).unwrap().is_some() {}
        let text = r.finish().unwrap_err().to_string();
        assert!(
            text.contains("loans.parquet: row group 2, row 1 (data row 3), id `1002`, column 2 `income`: missing value"),
            "{text}"
        );
    }

    #[test]
    fn booleans_are_refused_naming_the_column_and_text_in_numbers_is_located() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.parquet");
        write(
            &p,
            vec![
                ("flag", Arc::new(BooleanArray::from(vec![true, false]))),
                ("x", Arc::new(StringArray::from(vec!["1.5", "12x"]))),
                ("default", Arc::new(Int32Array::from(vec![0, 1]))),
            ],
            10,
        );
        let src = DataSource::file(&p);
        let err = infer_source(&src, &InferOptions::new("default", "1")).unwrap_err();
        assert!(
            matches!(&err, DataError::ColumnType { column, .. } if column == "flag"),
            "{err}"
        );
        assert!(err.to_string().contains("Boolean"), "{err}");
        let mut opts = InferOptions::new("default", "1");
        opts.drop.push("flag".into());
        assert!(infer_source(&src, &opts).is_ok());
        let schema = crate::schema::Schema {
            features: vec![crate::schema::Feature {
                name: "x".into(),
                kind: crate::schema::FeatureKind::Numeric {
                    special_values: vec![],
                },
                missing: false,
            }],
            ..infer_source(
                &DataSource::file(&loans(&dir, vec![Some(1.0), Some(2.0)], 5)),
                &InferOptions::new("default", "1"),
            )
            .unwrap()
        };
        let err = load(&src, &schema, LabelMode::Required)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("b.parquet: row group 1, row 2 (data row 2), column 2 `x`: expected a number, found `12x`"),
            "{err}"
        );
        let err = load(
            &DataSource::Parquet(dir.path().join("none.parquet")),
            &schema,
            LabelMode::Required,
        )
        .unwrap_err();
        assert!(matches!(err, DataError::Io { .. }));
        std::fs::write(dir.path().join("junk.parquet"), "a,b\n1,2\n").unwrap();
        let err = load(
            &DataSource::Parquet(dir.path().join("junk.parquet")),
            &schema,
            LabelMode::Required,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("not a readable Parquet file"),
            "{err}"
        );
    }

    #[test]
    fn score_writer_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.parquet");
        let mut w = ParquetScoreWriter::create(&p, Some("loan")).unwrap();
        w.write(1, Some(&["a".into(), "b".into()]), &[0.25, 0.5])
            .unwrap();
        w.write(3, Some(&["c".into()]), &[0.75]).unwrap();
        w.finish().unwrap();
        let mut src = ParquetSource::open(&p).unwrap();
        assert_eq!(src.columns(), ["loan", "probability"]);
        let mut problems = Problems::new(&p);
        let mut seen = Vec::new();
        while src.advance(&mut problems).unwrap() {
            let Cell::Float(p) = src.cell(1) else {
                panic!("probability is not a float")
            };
            seen.push((cell_text_of(&src, 0), p));
        }
        assert_eq!(
            seen,
            vec![
                ("a".to_string(), 0.25),
                ("b".to_string(), 0.5),
                ("c".to_string(), 0.75)
            ]
        );
    }

    fn cell_text_of(src: &ParquetSource, col: usize) -> String {
        crate::source::cell_text(src.cell(col)).unwrap_or_default()
    }
}

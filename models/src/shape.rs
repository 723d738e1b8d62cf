//! The shape of a data file before any schema is known: a header, rows with as many fields
//! as the header, at least one row. An agent started without a schema checks this at start,
//! so a truncated or mis-exported file is found before the first job, not during it.

use std::path::Path;

use crate::data::{csv_problem, open_csv, read_header};
use crate::error::{DataError, Location, RowProblem};

/// What a shape check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    /// Header names, in order.
    pub columns: Vec<String>,
    /// Data rows.
    pub rows: usize,
}

/// At most this many problems are reported (the count says how many there were).
const MAX_PROBLEMS: usize = 20;

/// [`check_shape`] for any source: a Parquet file or an SQL result has a shape by
/// construction, so it is opened and read once (which finds an unreadable file, a failing
/// query or an unreachable server) and its rows counted.
pub fn check_source_shape(source: &crate::source::DataSource) -> Result<Shape, DataError> {
    if let crate::source::DataSource::Csv(path) = source {
        return check_shape(path);
    }
    let mut src = source.open()?;
    let columns = src.columns().to_vec();
    let mut problems = crate::data::Problems::new(src.name());
    let mut rows = 0usize;
    while src.advance(&mut problems)? {
        rows += 1;
    }
    problems.finish()?;
    if rows == 0 {
        return Err(DataError::NoRows {
            path: src.name().to_owned(),
        });
    }
    Ok(Shape { columns, rows })
}

/// Reads the whole file once: every row must have the header's field count.
pub fn check_shape(path: &Path) -> Result<Shape, DataError> {
    let mut rdr = open_csv(path)?;
    let columns = read_header(&mut rdr, path)?;
    let mut record = csv::ByteRecord::new();
    let mut rows = 0usize;
    let mut problems = Vec::new();
    let mut count = 0u64;
    loop {
        match rdr.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                rows += 1;
                if record.len() != columns.len() && !(record.len() == 1 && record[0].is_empty()) {
                    count += 1;
                    if problems.len() < MAX_PROBLEMS {
                        problems.push(RowProblem::FieldCount {
                            at: Location {
                                file: path.to_owned(),
                                line: record.position().map_or(0, |p| p.line()),
                                column: None,
                                place: Default::default(),
                            },
                            expected: columns.len(),
                            found: record.len(),
                        });
                    }
                }
            }
            Err(e) => {
                count += 1;
                problems.push(csv_problem(path, &e));
                break;
            }
        }
    }
    if !problems.is_empty() {
        return Err(DataError::Rows {
            path: path.to_owned(),
            problems,
            count,
        });
    }
    if rows == 0 {
        return Err(DataError::NoRows {
            path: path.to_owned(),
        });
    }
    Ok(Shape { columns, rows })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ragged_empty_and_good_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("a.csv");
        std::fs::write(&p, "a,b,default\n1,2,0\n3,4,1\n").expect("write");
        assert_eq!(
            check_shape(&p).expect("good"),
            Shape {
                columns: vec!["a".into(), "b".into(), "default".into()],
                rows: 2
            }
        );
        std::fs::write(&p, "a,b,default\n1,2,0\n3,4\n").expect("write");
        let e = check_shape(&p).unwrap_err().to_string();
        assert!(
            e.contains("a.csv:3") && e.contains("expected 3 fields"),
            "{e}"
        );
        std::fs::write(&p, "a,b,default\n").expect("write");
        assert!(matches!(check_shape(&p), Err(DataError::NoRows { .. })));
        let missing = dir.path().join("none.csv");
        assert!(
            check_shape(&missing)
                .unwrap_err()
                .to_string()
                .contains("none.csv")
        );
    }
}

//! The data schema: which columns are features, of what kind, and what the label means.
//!
//! One schema is shared by every institution of a federation, so it is a file (JSON) that
//! `fedrisk-participant schema infer` writes and everything else reads. Its hash binds models
//! and secagg sessions to the exact feature layout.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::DataError;

/// The tag written in every schema file, so a model file or a random JSON is not mistaken for one.
pub const SCHEMA_FORMAT: &str = "fedrisk-schema";
/// Bumped when the meaning of a field changes.
pub const SCHEMA_VERSION: u32 = 1;
/// Text that means "no value" in a field (compared after trimming spaces, case-sensitive).
pub const DEFAULT_MISSING_TOKENS: &[&str] =
    &["", "NA", "N/A", "NaN", "nan", "null", "NULL", "?", "."];
/// A text column with more distinct values than this is an identifier, not a category.
pub const MAX_LEVELS: usize = 200;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schema {
    pub format: String,
    pub version: u32,
    pub label: LabelSpec,
    /// Field values (after trimming) that mean "missing".
    pub missing_tokens: Vec<String>,
    pub features: Vec<Feature>,
}

/// The label column and its two classes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelSpec {
    pub name: String,
    /// The value that means "defaulted" (the event the model predicts).
    pub positive: String,
    /// The other value.
    pub negative: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feature {
    pub name: String,
    #[serde(flatten)]
    pub kind: FeatureKind,
    /// Whether a missing value is acceptable in this column; if not, it is an error.
    pub missing: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FeatureKind {
    Numeric {
        /// Codes that mean "unknown" rather than a quantity (e.g. 96/98 in bureau delinquency
        /// counts); they are treated as missing values, so the column must allow missing.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        special_values: Vec<f64>,
    },
    Categorical {
        /// The known levels, in a fixed order; an unseen level at scoring time goes to the
        /// "other" column.
        levels: Vec<String>,
    },
}

impl Feature {
    pub fn is_numeric(&self) -> bool {
        matches!(self.kind, FeatureKind::Numeric { .. })
    }
}

impl Schema {
    /// Reads and validates a schema file.
    pub fn load(path: &Path) -> Result<Self, DataError> {
        let text = std::fs::read_to_string(path).map_err(|source| DataError::Io {
            path: path.to_owned(),
            source,
        })?;
        let schema: Schema = serde_json::from_str(&text).map_err(|e| DataError::Json {
            path: path.to_owned(),
            message: format!("line {} column {}: {e}", e.line(), e.column()),
        })?;
        schema.validate().map_err(|message| DataError::Schema {
            path: path.to_owned(),
            message,
        })?;
        Ok(schema)
    }

    pub fn save(&self, path: &Path) -> Result<(), DataError> {
        crate::error::write_json(path, self)
    }

    /// Checks internal consistency; the message names the offending field.
    pub fn validate(&self) -> Result<(), String> {
        if self.format != SCHEMA_FORMAT {
            return Err(format!(
                "`format` is `{}`, expected `{SCHEMA_FORMAT}`",
                self.format
            ));
        }
        if self.version != SCHEMA_VERSION {
            return Err(format!(
                "`version` is {}, this build reads version {SCHEMA_VERSION}",
                self.version
            ));
        }
        if self.features.is_empty() {
            return Err("`features` is empty".into());
        }
        if self.label.positive == self.label.negative {
            return Err(format!(
                "`label.positive` and `label.negative` are both `{}`",
                self.label.positive
            ));
        }
        let mut seen = HashSet::new();
        for (i, f) in self.features.iter().enumerate() {
            if f.name.is_empty() {
                return Err(format!("features[{i}]: empty name"));
            }
            if f.name == self.label.name {
                return Err(format!("features[{i}]: `{}` is the label column", f.name));
            }
            if !seen.insert(f.name.as_str()) {
                return Err(format!("features[{i}]: `{}` appears twice", f.name));
            }
            match &f.kind {
                FeatureKind::Numeric { special_values } => {
                    if !special_values.is_empty() && !f.missing {
                        return Err(format!(
                            "features[{i}] `{}`: special_values are treated as missing, so `missing` must be true",
                            f.name
                        ));
                    }
                    if special_values.iter().any(|v| !v.is_finite()) {
                        return Err(format!(
                            "features[{i}] `{}`: special_values must be finite",
                            f.name
                        ));
                    }
                }
                FeatureKind::Categorical { levels } => {
                    if levels.is_empty() {
                        return Err(format!(
                            "features[{i}] `{}`: a categorical feature needs at least one level",
                            f.name
                        ));
                    }
                    let mut lv = HashSet::new();
                    for l in levels {
                        if !lv.insert(l.as_str()) {
                            return Err(format!(
                                "features[{i}] `{}`: level `{l}` appears twice",
                                f.name
                            ));
                        }
                        if self.missing_tokens.iter().any(|m| m == l) {
                            return Err(format!(
                                "features[{i}] `{}`: level `{l}` is also a missing token",
                                f.name
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// SHA-256 over the canonical JSON: two institutions agree on a layout iff hashes match.
    pub fn hash(&self) -> String {
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(Sha256::digest(&bytes))
    }

    pub fn is_missing_token(&self, field: &str) -> bool {
        self.missing_tokens.iter().any(|t| t == field)
    }

    pub fn numeric_features(&self) -> impl Iterator<Item = &Feature> {
        self.features.iter().filter(|f| f.is_numeric())
    }

    pub fn categorical_features(&self) -> impl Iterator<Item = (&Feature, &[String])> {
        self.features.iter().filter_map(|f| match &f.kind {
            FeatureKind::Categorical { levels } => Some((f, levels.as_slice())),
            FeatureKind::Numeric { .. } => None,
        })
    }
}

/// Options for [`infer`].
#[derive(Debug, Clone)]
pub struct InferOptions {
    pub label: String,
    pub positive: String,
    /// Columns to leave out (identifiers, dates, leakage).
    pub drop: Vec<String>,
    /// Columns that are categorical even if every value looks like a number (codes such as
    /// sex=1/2 or education=1..6); their levels are the values seen, as text.
    pub categorical: Vec<String>,
    /// Field values (after trimming) that mean "missing"; recorded in the schema.
    pub missing_tokens: Vec<String>,
}

impl InferOptions {
    pub fn new(label: &str, positive: &str) -> Self {
        Self {
            label: label.to_owned(),
            positive: positive.to_owned(),
            drop: Vec::new(),
            categorical: Vec::new(),
            missing_tokens: DEFAULT_MISSING_TOKENS
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }

    /// Adds a token that means "missing" (trimmed, as fields are), unless it is known already.
    pub fn add_missing_token(&mut self, token: &str) {
        let token = token.trim();
        if !self.missing_tokens.iter().any(|t| t == token) {
            self.missing_tokens.push(token.to_owned());
        }
    }
}

#[derive(Default)]
struct ColumnScan {
    non_numeric: bool,
    numbers: u64,
    texts: u64,
    missing: u64,
    levels: BTreeMap<String, u64>,
    too_many_levels: bool,
    first_text: Option<(u64, String)>,
}

/// Infers a schema from one CSV file: a column whose present values all parse as finite numbers
/// is numeric, any other is categorical with the levels seen (sorted, so the order is stable).
pub fn infer(path: &Path, opts: &InferOptions) -> Result<Schema, DataError> {
    infer_with_suggestions(path, opts).map(|(s, _)| s)
}

/// Codes in a numeric column that look like "unknown" markers rather than quantities: for
/// the data team to accept (as `special_values`) or not. Nothing is applied by itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpecialSuggestion {
    /// The column.
    pub feature: String,
    /// The codes.
    pub codes: Vec<f64>,
    /// Why: how often each code occurs and where the other values lie.
    pub evidence: String,
}

/// Whether a number reads like a sentinel: 9, 99, 999, 96, 98, 9999, or -1, -9, -99.
fn code_like(v: f64) -> bool {
    if v.fract() != 0.0 || v.abs() >= 1e9 {
        return false;
    }
    let digits = format!("{}", v.abs() as u64);
    if v < 0.0 {
        return v == -1.0 || digits.chars().all(|c| c == '9');
    }
    (digits.len() >= 2 && digits.starts_with('9')) || digits == "9"
}

/// Codes that sit apart from the rest of an integer column (see [`SpecialSuggestion`]): large
/// sentinel-looking values more than three times the largest other value, or negative
/// sentinels in an otherwise non-negative column, together under 5 % of the values.
fn suggest_codes(name: &str, values: &BTreeMap<String, u64>) -> Option<SpecialSuggestion> {
    let mut parsed: Vec<(f64, u64)> = values
        .iter()
        .filter_map(|(k, n)| k.parse::<f64>().ok().map(|v| (v, *n)))
        .collect();
    if parsed.len() < 3 || parsed.iter().any(|(v, _)| v.fract() != 0.0) {
        return None;
    }
    parsed.sort_by(|a, b| a.0.total_cmp(&b.0));
    let regular: Vec<f64> = parsed
        .iter()
        .map(|(v, _)| *v)
        .filter(|v| !code_like(*v))
        .collect();
    let (lo, hi) = (
        regular.iter().copied().fold(f64::INFINITY, f64::min),
        regular.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    );
    if regular.len() < 2 {
        return None;
    }
    let codes: Vec<(f64, u64)> = parsed
        .iter()
        .copied()
        .filter(|(v, _)| {
            code_like(*v) && ((*v > 0.0 && *v > 3.0 * hi.max(1.0)) || (*v < 0.0 && lo >= 0.0))
        })
        .collect();
    let total: u64 = parsed.iter().map(|(_, n)| n).sum();
    let coded: u64 = codes.iter().map(|(_, n)| n).sum();
    if codes.is_empty() || coded as f64 > 0.05 * total as f64 {
        return None;
    }
    let list = codes
        .iter()
        .map(|(v, n)| format!("{v} ({n} rows)"))
        .collect::<Vec<_>>()
        .join(", ");
    Some(SpecialSuggestion {
        feature: name.to_string(),
        codes: codes.iter().map(|(v, _)| *v).collect(),
        evidence: format!(
            "{list} sit apart from the other values, integers from {lo} to {hi} ({} of {total} rows)",
            total - coded
        ),
    })
}

/// [`infer`], with the special codes it would suggest for numeric columns.
pub fn infer_with_suggestions(
    path: &Path,
    opts: &InferOptions,
) -> Result<(Schema, Vec<SpecialSuggestion>), DataError> {
    infer_source_with_suggestions(&crate::source::DataSource::Csv(path.to_owned()), opts)
}

/// Infers a schema from any source (see [`infer`]); a source column of a numeric type is a
/// number column unless declared categorical, a column of a type that is not read is refused
/// unless it is dropped.
pub fn infer_source(
    source: &crate::source::DataSource,
    opts: &InferOptions,
) -> Result<Schema, DataError> {
    infer_source_with_suggestions(source, opts).map(|(s, _)| s)
}

/// [`infer_source`], with the special codes it would suggest for numeric columns.
pub fn infer_source_with_suggestions(
    source: &crate::source::DataSource,
    opts: &InferOptions,
) -> Result<(Schema, Vec<SpecialSuggestion>), DataError> {
    let mut suggestions = Vec::new();
    use crate::source::{Cell, ColumnKind};
    let mut src = source.open()?;
    let path_buf = src.name().to_owned();
    let path = path_buf.as_path();
    let header = src.columns().to_vec();
    let missing_column = |column: &str, what: &'static str| {
        if matches!(source, crate::source::DataSource::Csv(_)) {
            DataError::MissingColumn {
                path: path.to_owned(),
                column: column.to_owned(),
                what,
                available: header.join(", "),
            }
        } else {
            DataError::NoSuchColumn {
                path: path.to_owned(),
                column: column.to_owned(),
                what,
                available: header.join(", "),
            }
        }
    };
    let label_idx = header
        .iter()
        .position(|h| h == &opts.label)
        .ok_or_else(|| missing_column(&opts.label, "the label; choose it with --label"))?;
    for (names, what) in [
        (&opts.drop, "named by --drop"),
        (&opts.categorical, "named by --categorical"),
    ] {
        if let Some(d) = names.iter().find(|d| !header.contains(d)) {
            return Err(missing_column(d, what));
        }
    }
    for c in &opts.categorical {
        let clash = if *c == opts.label {
            Some("it is the label column")
        } else if opts.drop.contains(c) {
            Some("it is also named by --drop")
        } else {
            None
        };
        if let Some(clash) = clash {
            return Err(DataError::Schema {
                path: path.to_owned(),
                message: format!("--categorical `{c}`: {clash}"),
            });
        }
    }
    let used: Vec<usize> = (0..header.len())
        .filter(|&i| !opts.drop.contains(&header[i]))
        .collect();
    for &i in &used {
        if let ColumnKind::Refused(found) = src.kind(i) {
            return Err(crate::source::refused_type(path, &header[i], &found));
        }
    }
    src.select(&used);
    let mut scans: Vec<ColumnScan> = header.iter().map(|_| ColumnScan::default()).collect();
    // Each label value and the line (row) it first appears on.
    let mut labels: BTreeMap<String, u64> = BTreeMap::new();
    let mut problems = crate::data::Problems::new(path);
    let mut rows = 0u64;
    while src.advance(&mut problems)? {
        rows += 1;
        let line = src.place(None).0;
        for &i in &used {
            let cell = src.cell(i);
            if i == label_idx {
                match crate::source::cell_text(cell)
                    .filter(|f| !opts.missing_tokens.iter().any(|t| t == f))
                {
                    None => problems.push(crate::error::RowProblem::MissingLabel {
                        at: src.location(Some(i), None),
                    }),
                    Some(field) => {
                        if labels.len() <= 16 || labels.contains_key(&field) {
                            labels.entry(field).or_insert(line);
                        }
                    }
                }
                continue;
            }
            let scan = &mut scans[i];
            let field = match cell {
                Cell::Null => {
                    scan.missing += 1;
                    continue;
                }
                Cell::Float(v) if v.is_nan() => {
                    scan.missing += 1;
                    continue;
                }
                Cell::Int(_) | Cell::Float(_) => {
                    scan.numbers += 1;
                    if !scan.too_many_levels {
                        let text = crate::source::cell_text(cell).unwrap_or_default();
                        *scan.levels.entry(text).or_default() += 1;
                        if scan.levels.len() > MAX_LEVELS {
                            scan.too_many_levels = true;
                            scan.levels.clear();
                        }
                    }
                    continue;
                }
                Cell::Text(raw) => String::from_utf8_lossy(raw),
            };
            let field = field.trim();
            if opts.missing_tokens.iter().any(|t| t == field) {
                scan.missing += 1;
                continue;
            }
            match field.parse::<f64>() {
                Ok(v) if v.is_finite() => scan.numbers += 1,
                Ok(v) if v.is_nan() => {
                    scan.missing += 1;
                    continue;
                }
                _ => {
                    scan.non_numeric = true;
                    scan.texts += 1;
                    if scan.first_text.is_none() {
                        scan.first_text = Some((line, field.to_owned()));
                    }
                }
            }
            if !scan.too_many_levels {
                *scan.levels.entry(field.to_owned()).or_default() += 1;
                if scan.levels.len() > MAX_LEVELS {
                    scan.too_many_levels = true;
                    scan.levels.clear();
                }
            }
        }
    }
    problems.finish()?;
    if rows == 0 {
        return Err(DataError::NoRows {
            path: path.to_owned(),
        });
    }
    let negative = infer_negative(path, opts, &labels)?;
    let mut features = Vec::new();
    for (i, (name, scan)) in header.iter().zip(scans).enumerate() {
        if i == label_idx || opts.drop.contains(name) {
            continue;
        }
        let declared = opts.categorical.contains(name);
        let kind = if scan.non_numeric || declared {
            if scan.numbers > scan.texts && !declared {
                // A number column with a few stray words is a data error (or an undeclared
                // missing code), not a category: inferring one would hide it.
                let (line, text) = scan.first_text.unwrap_or_default();
                return Err(DataError::Schema {
                    path: path.to_owned(),
                    message: format!(
                        "column {} `{name}` holds numbers, but `{text}` on line {line} is not one ({} of {} values are not): \
                         fix those rows, declare `{text}` as a missing value (--missing-token {text}), \
                         or, if the column is a category, declare it (--categorical {name})",
                        i + 1,
                        scan.texts,
                        scan.texts + scan.numbers
                    ),
                });
            }
            if scan.too_many_levels && declared {
                return Err(DataError::Schema {
                    path: path.to_owned(),
                    message: format!(
                        "column {} `{name}` is declared with --categorical but has more than {MAX_LEVELS} distinct values, \
                         too many for a category: do not declare it, or leave it out with --drop {name}",
                        i + 1
                    ),
                });
            }
            if scan.too_many_levels {
                let (line, text) = scan.first_text.unwrap_or_default();
                return Err(DataError::Schema {
                    path: path.to_owned(),
                    message: format!(
                        "column {} `{name}` holds text (e.g. `{text}` on line {line}) with more than {MAX_LEVELS} distinct values; \
                         it looks like an identifier or free text: leave it out with --drop {name}",
                        i + 1
                    ),
                });
            }
            let mut levels: Vec<String> = scan.levels.into_keys().collect();
            // Declared number codes read best in numeric order (2 before 10).
            let codes: Option<Vec<f64>> = levels.iter().map(|l| l.parse().ok()).collect();
            if let (true, Some(codes)) = (declared, codes) {
                let mut pairs: Vec<(f64, String)> = codes.into_iter().zip(levels).collect();
                pairs.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
                levels = pairs.into_iter().map(|(_, l)| l).collect();
            }
            FeatureKind::Categorical { levels }
        } else {
            if !scan.too_many_levels
                && let Some(s) = suggest_codes(name, &scan.levels)
            {
                suggestions.push(s);
            }
            FeatureKind::Numeric {
                special_values: Vec::new(),
            }
        };
        features.push(Feature {
            name: name.clone(),
            kind,
            missing: scan.missing > 0,
        });
    }
    let schema = Schema {
        format: SCHEMA_FORMAT.into(),
        version: SCHEMA_VERSION,
        label: LabelSpec {
            name: opts.label.clone(),
            positive: opts.positive.clone(),
            negative,
        },
        missing_tokens: opts.missing_tokens.clone(),
        features,
    };
    schema.validate().map_err(|message| DataError::Schema {
        path: path.to_owned(),
        message,
    })?;
    Ok((schema, suggestions))
}

impl Schema {
    /// Declares `codes` as special values of numeric feature `name` (which then allows
    /// missing values, as special codes count as missing outside binning).
    pub fn declare_special(&mut self, name: &str, codes: &[f64]) -> Result<(), String> {
        let f = self
            .features
            .iter_mut()
            .find(|f| f.name == name)
            .ok_or_else(|| format!("no feature `{name}`"))?;
        match &mut f.kind {
            FeatureKind::Numeric { special_values } => {
                for c in codes {
                    if !special_values.contains(c) {
                        special_values.push(*c);
                    }
                }
            }
            FeatureKind::Categorical { .. } => {
                return Err(format!("`{name}` is categorical"));
            }
        }
        f.missing = true;
        Ok(())
    }
}

fn infer_negative(
    path: &Path,
    opts: &InferOptions,
    labels: &BTreeMap<String, u64>,
) -> Result<String, DataError> {
    let err = |message: String| DataError::Labels {
        path: path.to_owned(),
        label: opts.label.clone(),
        message,
    };
    let seen = labels
        .iter()
        .map(|(value, line)| format!("`{value}` (first on line {line})"))
        .collect::<Vec<_>>()
        .join(", ");
    let positive = labels
        .keys()
        .find(|k| crate::data::label_equals(k, &opts.positive))
        .ok_or_else(|| {
            err(format!(
                "the positive class `{}` (--positive) never occurs; values seen: {seen}",
                opts.positive
            ))
        })?;
    let others: Vec<&String> = labels.keys().filter(|k| *k != positive).collect();
    match others.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(err(format!(
            "only one class (`{positive}`) occurs; a default model needs both"
        ))),
        _ => Err(err(format!(
            "a binary label is needed, but it has {} distinct values: {seen}",
            labels.len()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Schema {
        crate::synth::SynthConfig::schema()
    }

    #[test]
    fn round_trips_and_hash_is_stable() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("schema.json");
        let s = sample();
        s.save(&p).unwrap();
        let back = Schema::load(&p).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.hash(), s.hash());
        let mut other = s.clone();
        other.features.swap(0, 1);
        assert_ne!(other.hash(), s.hash());
    }

    #[test]
    fn invalid_schemas_name_the_field() {
        let mut s = sample();
        s.features[1].name = s.features[0].name.clone();
        assert!(s.validate().unwrap_err().contains("features[1]"));
        let mut s = sample();
        s.features[2].missing = false;
        assert!(s.validate().unwrap_err().contains("special_values"));
        let mut s = sample();
        s.format = "other".into();
        assert!(s.validate().is_err());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("broken.json");
        std::fs::write(&p, "{\"format\": 3").unwrap();
        let err = Schema::load(&p).unwrap_err().to_string();
        assert!(
            err.contains("broken.json") && err.contains("line 1"),
            "{err}"
        );
    }
}

#[cfg(test)]
mod infer_tests {
    use super::*;

    #[test]
    fn a_number_column_with_stray_text_is_an_error_naming_the_row() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("stray.csv");
        std::fs::write(
            &p,
            "income,sector,default\n100,retail,0\nabc,farm,1\n50,retail,0\n",
        )
        .unwrap();
        let err = infer(&p, &InferOptions::new("default", "1"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`income` holds numbers, but `abc` on line 3 is not one"),
            "{err}"
        );
    }

    #[test]
    fn declared_categorical_columns_take_the_codes_seen_as_levels() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("codes.csv");
        std::fs::write(
            &p,
            "sex,education,grade,income,default
1,2,1,100,0
2,10,A,200,1
1,3,2,150,0
2,,3,120,1
",
        )
        .unwrap();
        let mut opts = InferOptions::new("default", "1");
        opts.categorical = vec!["sex".into(), "education".into(), "grade".into()];
        let s = infer(&p, &opts).unwrap();
        let levels = |i: usize| match &s.features[i].kind {
            FeatureKind::Categorical { levels } => levels.clone(),
            other => panic!("{} is {other:?}", s.features[i].name),
        };
        assert_eq!(levels(0), ["1", "2"]);
        // Number codes in numeric order; a blank is a missing value, not a level.
        assert_eq!(levels(1), ["2", "3", "10"]);
        assert!(s.features[1].missing && !s.features[0].missing);
        // Mostly numbers with one text value: without the flag this is an error.
        assert_eq!(levels(2), ["1", "2", "3", "A"]);
        assert!(s.features[3].is_numeric());
        let d = crate::data::load_csv(&p, &s, crate::LabelMode::Required).unwrap();
        assert_eq!(
            d.categorical.column(1).to_vec(),
            [0, 2, 1, crate::data::CODE_MISSING]
        );
        opts.categorical.pop();
        let err = infer(&p, &opts).unwrap_err().to_string();
        assert!(err.contains("--categorical grade"), "{err}");
    }

    #[test]
    fn unknown_or_clashing_categorical_columns_are_errors_naming_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("codes.csv");
        std::fs::write(
            &p,
            "sex,income,default
1,100,0
2,200,1
",
        )
        .unwrap();
        let mut opts = InferOptions::new("default", "1");
        opts.categorical = vec!["gender".into()];
        let err = infer(&p, &opts).unwrap_err();
        assert!(
            matches!(&err, DataError::MissingColumn { column, .. } if column == "gender"),
            "{err}"
        );
        let text = err.to_string();
        assert!(
            text.contains("--categorical") && text.contains("columns are: sex, income, default"),
            "{text}"
        );
        opts.categorical = vec!["default".into()];
        let err = infer(&p, &opts).unwrap_err().to_string();
        assert!(
            err.contains("--categorical `default`: it is the label"),
            "{err}"
        );
    }

    #[test]
    fn added_missing_tokens_are_recorded_and_read_as_missing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("codes.csv");
        std::fs::write(
            &p,
            "income,region,default
100,north,0
-999,unknown,1
200,south,0
",
        )
        .unwrap();
        let plain = infer(&p, &InferOptions::new("default", "1")).unwrap();
        assert!(!plain.features[0].missing && !plain.features[1].missing);
        let mut opts = InferOptions::new("default", "1");
        opts.add_missing_token("-999");
        opts.add_missing_token(" unknown ");
        opts.add_missing_token("NA");
        let s = infer(&p, &opts).unwrap();
        assert_eq!(s.missing_tokens.len(), DEFAULT_MISSING_TOKENS.len() + 2);
        assert!(s.is_missing_token("-999") && s.is_missing_token("unknown"));
        assert!(s.features[0].missing && s.features[1].missing);
        assert_eq!(
            s.features[1].kind,
            FeatureKind::Categorical {
                levels: vec!["north".into(), "south".into()]
            }
        );
        // A later load of the saved schema treats the tokens as missing values.
        let sp = dir.path().join("schema.json");
        s.save(&sp).unwrap();
        let back = Schema::load(&sp).unwrap();
        let d = crate::data::load_csv(&p, &back, crate::LabelMode::Required).unwrap();
        assert!(d.numeric[[1, 0]].is_nan() && d.numeric[[0, 0]] == 100.0);
        assert_eq!(d.categorical[[1, 0]], crate::data::CODE_MISSING);
    }

    #[test]
    fn a_third_label_value_is_located() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("labels.csv");
        std::fs::write(&p, "x,status\n1,good\n2,bad\n3,maybe\n").unwrap();
        let err = infer(&p, &InferOptions::new("status", "bad"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`maybe` (first on line 4)"), "{err}");
    }

    #[test]
    fn sentinel_codes_apart_from_a_count_column_are_suggested_with_evidence() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.csv");
        let mut text = String::from("late,age,pay,y\n");
        for i in 0..400 {
            // late: counts 0..5 with 96 and 98; age: 20..109 (99 is an age);
            // pay: -2..8 (-1 is a status, not a code: -2 occurs too).
            let late = match i {
                0..=2 => 96,
                3..=9 => 98,
                _ => i % 6,
            };
            text.push_str(&format!(
                "{late},{},{},{}\n",
                20 + i % 90,
                i % 11 - 2,
                i % 2
            ));
        }
        std::fs::write(&p, text).unwrap();
        let (mut schema, sugg) = infer_with_suggestions(&p, &InferOptions::new("y", "1")).unwrap();
        assert_eq!(sugg.len(), 1, "{sugg:?}");
        assert_eq!(sugg[0].feature, "late");
        assert_eq!(sugg[0].codes, vec![96.0, 98.0]);
        assert!(
            sugg[0].evidence.contains("98 (7 rows)"),
            "{}",
            sugg[0].evidence
        );
        assert!(
            sugg[0].evidence.contains("from 0 to 5"),
            "{}",
            sugg[0].evidence
        );
        // Nothing is applied until the data team accepts it.
        assert!(
            matches!(&schema.features[0].kind, FeatureKind::Numeric { special_values } if special_values.is_empty())
        );
        schema.declare_special("late", &sugg[0].codes).unwrap();
        assert!(schema.features[0].missing);
        assert!(schema.validate().is_ok());
        assert!(schema.declare_special("nope", &[1.0]).is_err());
    }
}

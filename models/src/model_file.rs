//! The model file: everything needed to score a CSV the same way anywhere, with provenance and
//! a content hash so a validator can tell a model was not altered.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::data::{DataReader, Dataset, LabelMode, load_csv};
use crate::error::{DataError, FitError};
use crate::logistic::predict;
use crate::metrics::ScoreHistogram;
use crate::preprocess::Preprocessor;
use crate::schema::Schema;
use crate::source::DataSource;

pub const MODEL_FORMAT: &str = "fedrisk-model";
/// Bumped when a field changes meaning; readers refuse versions they do not know.
pub const MODEL_VERSION: u32 = 1;
/// Rows per block when a file is scored: memory follows the block, not the file.
pub const SCORE_CHUNK_ROWS: usize = 8192;

/// How a model came to be.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// e.g. `local-newton`, `federated-newton`, `federated-fedavg`.
    pub trainer: String,
    /// Training rounds (federated) or iterations (local).
    pub rounds: u32,
    pub participants: u32,
    /// Hash of the schema the model was trained on.
    pub schema_hash: String,
    /// scikit-learn's C; `None` without L2.
    pub l2_c: Option<f64>,
    /// Free-form notes (federation id, job id).
    #[serde(default)]
    pub notes: Vec<String>,
    /// When the file was made, Unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at_unix_ms: Option<u64>,
    /// The software that made it, e.g. `fedrisk 0.1.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software: Option<String>,
    /// The job's settings (federated models), as the job specification holds them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<serde_json::Value>,
    /// The coordinator's audit record that produced this model version (federated models):
    /// the record of the secure-aggregation session whose sum the version was made from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_record: Option<AuditRecordRef>,
}

/// One record of the coordinator's audit chain, by number and hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecordRef {
    /// The record's `seq` (from 1).
    pub seq: u64,
    /// The record's `hash` (hex SHA-256, as `audit export` writes it).
    pub hash: String,
    /// The record's kind, e.g. `session_completed`.
    pub kind: String,
}

/// A federated model version's evaluation, from the federation's securely summed per-label
/// score histogram only (no institution's histogram is ever seen).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelEvaluation {
    /// Evaluation rows over the federation.
    pub rows: u64,
    /// AUC with scores in one bin tied (`None` with one class only).
    pub auc: Option<f64>,
    /// The most the exact pooled AUC can differ from `auc`.
    pub auc_error_bound: Option<f64>,
    /// KS over the bin edges.
    pub ks: Option<f64>,
    /// Mean log loss.
    pub log_loss: Option<f64>,
    /// The summed per-label score histogram (bins on the logit scale).
    pub histogram: ScoreHistogram,
    /// AUC, KS and log loss of each training round up to this version's.
    #[serde(default)]
    pub by_round: Vec<RoundFigures>,
}

/// One training round's federated evaluation figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundFigures {
    pub round: u32,
    pub auc: Option<f64>,
    pub ks: Option<f64>,
    pub log_loss: Option<f64>,
}

impl ModelEvaluation {
    /// From a federated evaluation that kept its histogram; `None` without one.
    pub fn of(eval: &crate::federated::FederatedEval, round: u32) -> Option<Self> {
        let finite = |v: f64| v.is_finite().then_some(v);
        let histogram = eval.histogram.clone()?;
        Some(Self {
            rows: eval.rows.max(0.0) as u64,
            auc: finite(eval.auc),
            auc_error_bound: finite(eval.auc_error_bound),
            ks: finite(eval.ks),
            log_loss: finite(eval.log_loss),
            histogram,
            by_round: vec![RoundFigures {
                round,
                auc: finite(eval.auc),
                ks: finite(eval.ks),
                log_loss: finite(eval.log_loss),
            }],
        })
    }
}

/// The coordinator's signature of a model file's content hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSignature {
    /// `ecdsa-p256-sha256` (DER), over the 32 raw bytes of `content_hash`.
    pub algorithm: String,
    /// The signer's public key (uncompressed SEC1 point), hex: the key of `coordinator.pem`.
    pub public_key: String,
    /// The signature, hex.
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelFile {
    pub format: String,
    pub version: u32,
    pub schema: Schema,
    pub preprocessing: Preprocessor,
    /// Names of the design columns, one per coefficient.
    pub columns: Vec<String>,
    pub coefficients: Vec<f64>,
    pub intercept: f64,
    pub provenance: Provenance,
    /// SHA-256 of this file's canonical JSON with this field empty and no signature.
    pub content_hash: String,
    /// The federation's evaluation of this version (federated models whose evaluation ran).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<ModelEvaluation>,
    /// The coordinator's signature of `content_hash` (federated models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<ModelSignature>,
}

impl ModelFile {
    pub fn new(
        schema: Schema,
        preprocessing: Preprocessor,
        theta: &[f64],
        provenance: Provenance,
    ) -> Result<Self, FitError> {
        let columns = preprocessing.columns();
        if theta.len() != columns.len() + 1 {
            return Err(FitError::Dimension {
                what: "parameters (coefficients + intercept)",
                expected: columns.len() + 1,
                found: theta.len(),
            });
        }
        if theta.iter().any(|v| !v.is_finite()) {
            return Err(FitError::NonFinite { what: "parameters" });
        }
        let mut m = Self {
            format: MODEL_FORMAT.into(),
            version: MODEL_VERSION,
            schema,
            preprocessing,
            coefficients: theta[..columns.len()].to_vec(),
            intercept: theta[columns.len()],
            columns,
            provenance,
            content_hash: String::new(),
            evaluation: None,
            signature: None,
        };
        m.content_hash = m.compute_hash();
        Ok(m)
    }

    /// Records when and by what the file was made (and the job's settings), and hashes it
    /// again; a signature made before no longer applies and is dropped.
    pub fn stamp(&mut self, created_at_unix_ms: u64, settings: Option<serde_json::Value>) {
        self.provenance.created_at_unix_ms = Some(created_at_unix_ms);
        self.provenance.software = Some(format!("fedrisk {}", env!("CARGO_PKG_VERSION")));
        if settings.is_some() {
            self.provenance.settings = settings;
        }
        self.signature = None;
        self.content_hash = self.compute_hash();
    }

    /// Attaches the federation's evaluation of this version and hashes the file again (a
    /// signature made before no longer applies and is dropped).
    pub fn with_evaluation(mut self, evaluation: Option<ModelEvaluation>) -> Self {
        self.evaluation = evaluation;
        self.signature = None;
        self.content_hash = self.compute_hash();
        self
    }

    pub fn compute_hash(&self) -> String {
        let mut copy = self.clone();
        copy.content_hash.clear();
        copy.signature = None;
        hex::encode(Sha256::digest(
            serde_json::to_vec(&copy).unwrap_or_default(),
        ))
    }

    /// `[coefficients..., intercept]`.
    pub fn theta(&self) -> Vec<f64> {
        let mut t = self.coefficients.clone();
        t.push(self.intercept);
        t
    }

    pub fn save(&self, path: &Path) -> Result<(), DataError> {
        crate::error::write_json(path, self)
    }

    /// Reads a model file and checks its format, version, shape and content hash.
    pub fn load(path: &Path) -> Result<Self, DataError> {
        let text = std::fs::read_to_string(path).map_err(|source| DataError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and checks a model file's text as [`ModelFile::load`] does; `path` names where
    /// it came from in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, DataError> {
        let err = |message: String| DataError::Model {
            path: path.to_owned(),
            message,
        };
        let m: ModelFile = serde_json::from_str(text)
            .map_err(|e| err(format!("line {} column {}: {e}", e.line(), e.column())))?;
        if m.format != MODEL_FORMAT {
            return Err(err(format!(
                "`format` is `{}`, expected `{MODEL_FORMAT}`",
                m.format
            )));
        }
        if m.version != MODEL_VERSION {
            return Err(err(format!(
                "`version` is {}, this build reads version {MODEL_VERSION}",
                m.version
            )));
        }
        m.schema
            .validate()
            .map_err(|e| err(format!("schema: {e}")))?;
        if m.columns != m.preprocessing.columns() || m.coefficients.len() != m.columns.len() {
            return Err(err(format!(
                "{} coefficients for {} columns: the file is inconsistent",
                m.coefficients.len(),
                m.columns.len()
            )));
        }
        let hash = m.compute_hash();
        if hash != m.content_hash {
            return Err(err(format!(
                "content hash mismatch (file says {}, content is {hash}): the model was altered",
                m.content_hash
            )));
        }
        Ok(m)
    }

    /// Default probabilities for a data set loaded with this model's schema.
    pub fn score_dataset(&self, data: Dataset) -> Result<Vec<f64>, FitError> {
        let x = self.preprocessing.transform(data);
        predict(x.view(), &self.theta())
    }

    /// The schema scoring files are read with: the model's, except that a missing value is
    /// accepted wherever the preprocessing has a place for it (a numeric feature's imputation
    /// value, a categorical feature's `missing` or `other` column), even in a column that had
    /// no missing values in training. Elsewhere a missing value stays an error.
    pub fn scoring_schema(&self) -> Schema {
        let mut schema = self.schema.clone();
        for f in &mut schema.features {
            if self.preprocessing.handles_missing(&f.name) {
                f.missing = true;
            }
        }
        schema
    }

    /// Loads a CSV (label optional) and scores it.
    pub fn score_csv(&self, path: &Path) -> Result<(Dataset, Vec<f64>), DataError> {
        let data = load_csv(path, &self.scoring_schema(), LabelMode::Optional)?;
        let x = self.preprocessing.transform_ref(&data);
        let probs = predict(x.view(), &self.theta()).map_err(|e| DataError::Model {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        Ok((data, probs))
    }

    /// Opens a CSV (label optional) to score block by block, carrying the column `id` (which
    /// need not be a feature) through when given. Header problems are reported here, before
    /// any score is produced.
    pub fn scorer(&self, path: &Path, id: Option<&str>) -> Result<Scorer<'_>, DataError> {
        self.scorer_for(&DataSource::Csv(path.to_owned()), id)
    }

    /// [`ModelFile::scorer`] for any source (CSV, Parquet, PostgreSQL).
    pub fn scorer_for(
        &self,
        source: &DataSource,
        id: Option<&str>,
    ) -> Result<Scorer<'_>, DataError> {
        let reader = DataReader::open(source, &self.scoring_schema(), LabelMode::Optional, id)?;
        Ok(Scorer {
            model: self,
            reader,
            theta: self.theta(),
        })
    }
}

/// Scores a CSV file in blocks of [`SCORE_CHUNK_ROWS`] rows; see [`ModelFile::scorer`].
pub struct Scorer<'m> {
    model: &'m ModelFile,
    reader: DataReader,
    theta: Vec<f64>,
}

/// The scores of a block of consecutive rows.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredChunk {
    /// 1-based number of the block's first data row (the header is not counted).
    pub first_row: usize,
    /// The identifier column's values, when one was asked for.
    pub ids: Option<Vec<String>>,
    /// Probability of default, one per row.
    pub probabilities: Vec<f64>,
    /// The rows' labels (1 = default), when the file has the label column.
    pub labels: Option<Vec<u8>>,
}

impl Scorer<'_> {
    /// Whether the file has the label column (then every block carries labels).
    pub fn has_label(&self) -> bool {
        self.reader.has_label()
    }

    /// The next block of scores; `None` at the end of the file, and from the first data
    /// problem on (no row is scored after one): [`Scorer::finish`] then reports them all.
    pub fn next_chunk(&mut self) -> Result<Option<ScoredChunk>, DataError> {
        if self.reader.problem_count() > 0 {
            return Ok(None);
        }
        let Some(chunk) = self.reader.next_chunk(SCORE_CHUNK_ROWS)? else {
            return Ok(None);
        };
        if self.reader.problem_count() > 0 {
            return Ok(None);
        }
        let mut data = chunk.data;
        let labels = data.labels.take();
        let x = self.model.preprocessing.transform(data);
        let probabilities = predict(x.view(), &self.theta).map_err(|e| DataError::Model {
            path: self.reader.path().to_owned(),
            message: e.to_string(),
        })?;
        Ok(Some(ScoredChunk {
            first_row: chunk.first_row,
            ids: chunk.ids,
            probabilities,
            labels,
        }))
    }

    /// Reads the rest of the file and reports every data problem in it, or the row count.
    /// Scores handed out are only valid if this succeeds.
    pub fn finish(self) -> Result<usize, DataError> {
        self.reader.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preprocess::PreprocessOptions;
    use crate::stats::FeatureStats;

    fn model() -> ModelFile {
        let schema = crate::synth::SynthConfig::schema();
        let stats = FeatureStats::zeros(&schema);
        let pre = Preprocessor::fit(&schema, &stats, PreprocessOptions::default());
        let theta: Vec<f64> = (0..=pre.width())
            .map(|i| (i as f64 + 0.1).sqrt() / 3.0)
            .collect();
        ModelFile::new(
            schema.clone(),
            pre,
            &theta,
            Provenance {
                trainer: "test".into(),
                rounds: 1,
                participants: 1,
                schema_hash: schema.hash(),
                l2_c: Some(1.0),
                notes: vec![],
                created_at_unix_ms: Some(1),
                software: Some("test".into()),
                settings: None,
                audit_record: None,
            },
        )
        .unwrap()
    }

    #[test]
    fn round_trip_keeps_everything() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.json");
        let m = model();
        m.save(&p).unwrap();
        assert_eq!(ModelFile::load(&p).unwrap(), m);
    }

    #[test]
    fn tampering_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.json");
        model().save(&p).unwrap();
        let text =
            std::fs::read_to_string(&p)
                .unwrap()
                .replacen("\"intercept\": ", "\"intercept\": 1", 1);
        std::fs::write(&p, text).unwrap();
        let err = ModelFile::load(&p).unwrap_err().to_string();
        assert!(err.contains("content hash mismatch"), "{err}");
    }

    #[test]
    fn the_signature_is_outside_the_hash_and_files_without_new_fields_load() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.json");
        let mut m = model();
        let hash = m.content_hash.clone();
        m.signature = Some(ModelSignature {
            algorithm: "ecdsa-p256-sha256".into(),
            public_key: "04".into(),
            value: "30".into(),
        });
        assert_eq!(m.compute_hash(), hash);
        m.save(&p).unwrap();
        assert_eq!(ModelFile::load(&p).unwrap(), m);
        // A file written before provenance had times, software and signatures.
        let mut old = model();
        old.provenance.created_at_unix_ms = None;
        old.provenance.software = None;
        old.content_hash = old.compute_hash();
        old.save(&p).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(!text.contains("created_at_unix_ms") && !text.contains("signature"));
        assert_eq!(ModelFile::load(&p).unwrap(), old);
    }

    #[test]
    fn wrong_parameter_count_is_refused() {
        let m = model();
        let r = ModelFile::new(m.schema, m.preprocessing, &[0.0; 2], m.provenance);
        assert!(matches!(r, Err(FitError::Dimension { .. })));
    }
}

#[cfg(test)]
mod scoring_tests {
    use super::*;
    use crate::error::RowProblem;
    use crate::local::{LocalOptions, train_local};
    use crate::logistic::sigmoid;
    use crate::schema::{FeatureKind, InferOptions, infer};

    /// No missing value anywhere: the inferred schema says `missing: false` for every column.
    const TRAIN: &str = "income,sector,default\n100,retail,0\n300,farm,1\n200,retail,0\n\
                         400,farm,1\n150,retail,1\n350,farm,0\n";

    fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// A model trained on [`TRAIN`] (income mean 250), then given distinct non-zero
    /// coefficients so that every design column moves the score.
    fn model(dir: &tempfile::TempDir, sector_missing_column: bool) -> ModelFile {
        let p = write(dir, "train.csv", TRAIN);
        let mut schema = infer(&p, &InferOptions::new("default", "1")).unwrap();
        assert!(schema.features.iter().all(|f| !f.missing));
        schema.features[1].missing = sector_missing_column;
        let data = load_csv(&p, &schema, LabelMode::Required).unwrap();
        let (m, _) = train_local(&schema, data, &LocalOptions::default()).unwrap();
        let theta: Vec<f64> = (0..=m.columns.len())
            .map(|i| 0.3 * (i as f64 + 1.0))
            .collect();
        ModelFile::new(m.schema, m.preprocessing, &theta, m.provenance).unwrap()
    }

    fn column(m: &ModelFile, name: &str) -> f64 {
        let j = m.columns.iter().position(|c| c == name).unwrap();
        m.coefficients[j]
    }

    #[test]
    fn a_blank_numeric_field_is_imputed_at_scoring_though_training_had_none() {
        let dir = tempfile::tempdir().unwrap();
        let m = model(&dir, false);
        assert_eq!(m.preprocessing.numeric[0].impute, 250.0);
        let p = write(
            &dir,
            "new.csv",
            "income,sector\n,retail\n250,retail\nNA,farm\n",
        );
        let (_, probs) = m.score_csv(&p).unwrap();
        // The blank income becomes the training mean: the same score as an income of 250.
        assert_eq!(probs[0], probs[1]);
        let expected = sigmoid(column(&m, "sector=farm") + m.intercept);
        assert!((probs[2] - expected).abs() < 1e-12, "{probs:?}");
        // Reading the file for training (the model's own schema) still refuses the blank.
        let err = load_csv(&p, &m.schema, LabelMode::Optional).unwrap_err();
        assert!(matches!(err, DataError::Rows { count: 2, .. }), "{err}");
    }

    #[test]
    fn a_missing_category_goes_to_the_missing_column_or_else_other() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "new.csv", "income,sector\n250,\n250,mining\n");
        let m = model(&dir, true);
        let (_, probs) = m.score_csv(&p).unwrap();
        let missing = sigmoid(column(&m, "sector=missing") + m.intercept);
        let other = sigmoid(column(&m, "sector=other") + m.intercept);
        assert!((probs[0] - missing).abs() < 1e-12, "{probs:?}");
        assert!((probs[1] - other).abs() < 1e-12, "{probs:?}");
        assert!(probs[0] != probs[1]);

        let m = model(&dir, false);
        assert!(!m.columns.iter().any(|c| c == "sector=missing"));
        let (_, probs) = m.score_csv(&p).unwrap();
        let other = sigmoid(column(&m, "sector=other") + m.intercept);
        assert!((probs[0] - other).abs() < 1e-12 && probs[0] == probs[1]);
    }

    #[test]
    fn a_missing_value_without_an_imputation_value_is_still_refused_with_its_location() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = model(&dir, false);
        m.preprocessing.numeric[0].impute = f64::NAN;
        assert!(!m.preprocessing.handles_missing("income"));
        assert!(m.preprocessing.handles_missing("sector"));
        let p = write(&dir, "new.csv", "income,sector\n250,retail\n,retail\n");
        let located = |err: DataError| match err {
            DataError::Rows {
                problems, count, ..
            } => {
                assert_eq!(count, 1);
                assert!(matches!(&problems[0],
                    RowProblem::MissingNotAllowed { at }
                        if at.file == p && at.line == 3 && at.column == Some((1, "income".into()))));
            }
            other => panic!("expected a located row problem, got {other}"),
        };
        located(m.score_csv(&p).unwrap_err());
        let mut s = m.scorer(&p, None).unwrap();
        assert_eq!(s.next_chunk().unwrap(), None, "no score once a row is bad");
        located(s.finish().unwrap_err());
    }

    #[test]
    fn the_scorer_streams_blocks_with_ids_and_agrees_with_score_csv() {
        let dir = tempfile::tempdir().unwrap();
        let m = model(&dir, false);
        let rows = 2 * SCORE_CHUNK_ROWS + 17;
        let mut text = String::from("loan_id,sector,income,default\n");
        for i in 0..rows {
            let sector = if i % 3 == 0 { "farm" } else { "retail" };
            let income = if i % 7 == 0 {
                String::new()
            } else {
                (i % 500).to_string()
            };
            text += &format!("L-{i},{sector},{income},{}\n", i % 2);
        }
        let p = write(&dir, "many.csv", &text);
        let (_, all) = m.score_csv(&p).unwrap();
        let mut s = m.scorer(&p, Some("loan_id")).unwrap();
        assert!(s.has_label());
        let mut blocks = 0;
        let mut next_row = 1;
        while let Some(c) = s.next_chunk().unwrap() {
            blocks += 1;
            assert_eq!(c.first_row, next_row);
            let n = c.probabilities.len();
            assert!(n <= SCORE_CHUNK_ROWS);
            let ids = c.ids.unwrap();
            assert_eq!(ids.len(), n);
            for (k, id) in ids.iter().enumerate() {
                assert_eq!(*id, format!("L-{}", next_row - 1 + k));
            }
            assert_eq!(c.probabilities, all[next_row - 1..next_row - 1 + n]);
            assert_eq!(c.labels.unwrap()[0], u8::from((next_row - 1) % 2 == 1));
            next_row += n;
        }
        assert_eq!(blocks, 3);
        assert_eq!(s.finish().unwrap(), rows);
    }

    #[test]
    fn an_absent_id_column_names_the_file_and_the_columns() {
        let dir = tempfile::tempdir().unwrap();
        let m = model(&dir, false);
        let p = write(&dir, "new.csv", "income,sector\n250,retail\n");
        let err = m.scorer(&p, Some("loan_id")).err().unwrap();
        assert!(
            matches!(&err, DataError::MissingColumn { column, available, .. }
                if column == "loan_id" && available == "income, sector"),
            "{err}"
        );
        let text = err.to_string();
        assert!(
            text.contains(&format!("{}:1:", p.display())) && text.contains("--id"),
            "{text}"
        );
        // The id column need not be in the schema, and a feature can be the id too.
        assert!(m.scorer(&p, Some("income")).is_ok());
        assert!(matches!(
            m.schema.features[0].kind,
            FeatureKind::Numeric { .. }
        ));
    }
}

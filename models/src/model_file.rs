//! The model file: everything needed to score a CSV the same way anywhere, with provenance and
//! a content hash so a validator can tell a model was not altered.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::data::{Dataset, LabelMode, load_csv};
use crate::error::{DataError, FitError};
use crate::logistic::predict;
use crate::preprocess::Preprocessor;
use crate::schema::Schema;

pub const MODEL_FORMAT: &str = "fedrisk-model";
/// Bumped when a field changes meaning; readers refuse versions they do not know.
pub const MODEL_VERSION: u32 = 1;

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
    /// SHA-256 of this file's canonical JSON with this field empty.
    pub content_hash: String,
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
        };
        m.content_hash = m.compute_hash();
        Ok(m)
    }

    pub fn compute_hash(&self) -> String {
        let mut copy = self.clone();
        copy.content_hash.clear();
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
        let err = |message: String| DataError::Model {
            path: path.to_owned(),
            message,
        };
        let m: ModelFile = serde_json::from_str(&text)
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

    /// Loads a CSV (label optional) and scores it.
    pub fn score_csv(&self, path: &Path) -> Result<(Dataset, Vec<f64>), DataError> {
        let data = load_csv(path, &self.schema, LabelMode::Optional)?;
        let x = self.preprocessing.transform_ref(&data);
        let probs = predict(x.view(), &self.theta()).map_err(|e| DataError::Model {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        Ok((data, probs))
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
    fn wrong_parameter_count_is_refused() {
        let m = model();
        let r = ModelFile::new(m.schema, m.preprocessing, &[0.0; 2], m.provenance);
        assert!(matches!(r, Err(FitError::Dimension { .. })));
    }
}

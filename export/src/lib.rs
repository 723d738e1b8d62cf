//! A fedrisk model file written for scorers outside fedrisk: PMML 4.4 (a `RegressionModel`
//! with the logit link, preprocessing as transformations) and ONNX (IR 8, opset 13 plus
//! `ai.onnx.ml` 2: one graph from the raw feature values to the probability of default).
//!
//! Both include everything [`fedrisk_models::ModelFile`] applies when it scores a row: special
//! codes treated as missing, mean imputation, standardisation, missing indicators, one-hot
//! levels with the `other` column for unseen levels and the `missing` column (or `other` when
//! the model has none) for missing ones; for a binned model (`binning = "woe"`), the bin of
//! every kept feature's raw value (cuts closed on the left, the missing bin, a bin per special
//! code, level groups and the `other` bin for unseen levels) and its WOE or indicator columns
//! (`binned.rs`). `.ci/run` checks that onnxruntime, JPMML-Evaluator and PMML4S score exported
//! models as `fedrisk-participant score` does (tests/it/exports.rs).
//!
//! Each format is a function of the model file alone; a new format (the scorecard of a binned
//! model) is one more [`Format`] variant and one more arm in [`export`].

mod binned;
mod onnx;
mod onnx_proto;
mod pmml;
pub mod report;
mod svg;
mod xml;

use fedrisk_models::ModelFile;

pub use onnx::{CATEGORICAL_INPUT, NUMERIC_INPUT, PROBABILITY_OUTPUT};

/// A format a model file can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// fedrisk's own model file, unchanged (content hash included).
    Json,
    /// PMML 4.4 XML.
    Pmml,
    /// ONNX protobuf.
    Onnx,
    /// The scorecard of a model trained on WOE bins (points per bin), JSON.
    Scorecard,
    /// The same scorecard as `feature,bin,woe,coefficient,points` CSV rows.
    ScorecardCsv,
}

impl Format {
    pub const ALL: [Format; 5] = [
        Format::Json,
        Format::Pmml,
        Format::Onnx,
        Format::Scorecard,
        Format::ScorecardCsv,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Pmml => "pmml",
            Format::Onnx => "onnx",
            Format::Scorecard => "scorecard",
            Format::ScorecardCsv => "scorecard-csv",
        }
    }

    /// The usual file extension.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Pmml => "pmml",
            Format::Onnx => "onnx",
            Format::Scorecard => "json",
            Format::ScorecardCsv => "csv",
        }
    }
}

impl std::str::FromStr for Format {
    type Err = ExportError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| ExportError::UnknownFormat(s.to_owned()))
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("unknown export format `{0}`: expected json, pmml, onnx, scorecard or scorecard-csv")]
    UnknownFormat(String),
    #[error(
        "no scorecard: the model was not trained on WOE bins (its job did not set binning = \"woe\"), so it has no points per bin; export json, pmml or onnx instead"
    )]
    NotBinned,
    #[error("scorecard: {0}")]
    Scorecard(String),
    #[error(
        "feature `{feature}`: its name is also the name of a derived column, rename it to export"
    )]
    NameClash { feature: String },
    #[error("the model's {what} are not finite: it cannot be exported")]
    NonFinite { what: &'static str },
    #[error("the model cannot be exported: {reason}")]
    Unsupported { reason: String },
    #[error("writing JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// The model in `format`, as the bytes of a file.
pub fn export(model: &ModelFile, format: Format) -> Result<Vec<u8>, ExportError> {
    if !model.intercept.is_finite() || model.coefficients.iter().any(|c| !c.is_finite()) {
        return Err(ExportError::NonFinite {
            what: "coefficients",
        });
    }
    match format {
        Format::Json => {
            let mut bytes = serde_json::to_vec_pretty(model)?;
            bytes.push(b'\n');
            Ok(bytes)
        }
        Format::Pmml => pmml::write(model).map(String::into_bytes),
        Format::Onnx => onnx::write(model),
        Format::Scorecard | Format::ScorecardCsv => {
            if model.preprocessing.woe.is_none() {
                return Err(ExportError::NotBinned);
            }
            let card = fedrisk_models::scorecard::Scorecard::from_model(
                model,
                &fedrisk_models::scorecard::ScorecardOptions::default(),
            )
            .map_err(|e| ExportError::Scorecard(e.to_string()))?;
            if format == Format::ScorecardCsv {
                return Ok(card.to_csv().into_bytes());
            }
            let mut bytes = serde_json::to_vec_pretty(&card)?;
            bytes.push(b'\n');
            Ok(bytes)
        }
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use fedrisk_models::model_file::Provenance;
    use fedrisk_models::schema::{
        DEFAULT_MISSING_TOKENS, Feature, FeatureKind, LabelSpec, SCHEMA_FORMAT, SCHEMA_VERSION,
        Schema,
    };
    use fedrisk_models::{ModelFile, PreprocessOptions, Preprocessor};

    /// A model with every transformation: a special code, an indicator, two categoricals
    /// (one with a `missing` column).
    pub fn model() -> ModelFile {
        let schema = Schema {
            format: SCHEMA_FORMAT.into(),
            version: SCHEMA_VERSION,
            label: LabelSpec {
                name: "default".into(),
                positive: "1".into(),
                negative: "0".into(),
            },
            missing_tokens: DEFAULT_MISSING_TOKENS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            features: vec![
                Feature {
                    name: "income".into(),
                    kind: FeatureKind::Numeric {
                        special_values: vec![96.0, 98.0],
                    },
                    missing: true,
                },
                Feature {
                    name: "sector".into(),
                    kind: FeatureKind::Categorical {
                        levels: vec!["farm".into(), "retail".into()],
                    },
                    missing: true,
                },
                Feature {
                    name: "age".into(),
                    kind: FeatureKind::Numeric {
                        special_values: vec![],
                    },
                    missing: false,
                },
                Feature {
                    name: "region".into(),
                    kind: FeatureKind::Categorical {
                        levels: vec!["n".into(), "s".into(), "e".into()],
                    },
                    missing: false,
                },
            ],
        };
        let mut stats = fedrisk_models::FeatureStats::zeros(&schema);
        stats.numeric[0].missing = 1.0;
        let mut pre = Preprocessor::fit(
            &schema,
            &stats,
            PreprocessOptions {
                missing_indicators: true,
            },
        );
        pre.numeric[0].impute = 250.0;
        pre.numeric[0].mean = 240.0;
        pre.numeric[0].scale = 80.0;
        pre.numeric[1].impute = 40.0;
        pre.numeric[1].mean = 40.0;
        pre.numeric[1].scale = 12.0;
        let theta: Vec<f64> = (0..=pre.width())
            .map(|i| 0.1 * (i as f64 + 1.0) * if i % 2 == 0 { 1.0 } else { -1.0 })
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
                l2_c: None,
                notes: vec![],
                created_at_unix_ms: None,
                software: None,
                settings: None,
                audit_record: None,
            },
        )
        .unwrap()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn formats_parse_by_name_and_refuse_others() {
        for f in Format::ALL {
            assert_eq!(f.name().parse::<Format>().unwrap(), f);
            assert_eq!(f.name().to_uppercase().parse::<Format>().unwrap(), f);
        }
        let err = "scorecards".parse::<Format>().unwrap_err().to_string();
        assert!(
            err.contains("`scorecards`") && err.contains("pmml"),
            "{err}"
        );
    }

    #[test]
    fn json_is_the_model_file_itself() {
        let m = testing::model();
        let bytes = export(&m, Format::Json).unwrap();
        let back: ModelFile = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.compute_hash(), m.content_hash);
    }

    /// A model binned on generated rows (special codes declared) in `encoding`.
    pub(crate) fn binned_model(encoding: fedrisk_models::Encoding) -> ModelFile {
        use fedrisk_models::local::{LocalOptions, train_local};
        use fedrisk_models::synth::{SynthConfig, generate};
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = SynthConfig::demo(3, 3000, 10);
        cfg.institutions.truncate(1);
        let d = generate(&cfg);
        d.write_dir(dir.path()).unwrap();
        let schema = fedrisk_models::Schema::load(&dir.path().join("schema.json")).unwrap();
        let path = dir
            .path()
            .join(format!("participants/{}.csv", d.participants[0].0));
        let data =
            fedrisk_models::load_csv(&path, &schema, fedrisk_models::LabelMode::Required).unwrap();
        let opts = LocalOptions {
            binning: Some(fedrisk_models::BinningOptions {
                encoding,
                ..Default::default()
            }),
            ..LocalOptions::default()
        };
        train_local(&schema, data, &opts).unwrap().0
    }

    #[test]
    fn a_binned_model_exports_in_every_format_in_both_encodings() {
        for encoding in [
            fedrisk_models::Encoding::Indicators,
            fedrisk_models::Encoding::Woe,
        ] {
            let m = binned_model(encoding);
            for f in Format::ALL {
                assert!(export(&m, f).is_ok(), "{f} {encoding}");
            }
        }
    }

    #[test]
    fn a_binned_model_whose_coefficients_do_not_fit_its_bins_is_refused_with_the_reason() {
        let mut m = binned_model(fedrisk_models::Encoding::Indicators);
        m.coefficients.pop();
        for f in [Format::Pmml, Format::Onnx] {
            let err = export(&m, f).unwrap_err();
            assert!(matches!(err, ExportError::Unsupported { .. }), "{err}");
            assert!(err.to_string().contains("coefficients"), "{err}");
        }
    }

    #[test]
    fn a_non_finite_coefficient_is_refused() {
        let mut m = testing::model();
        m.coefficients[0] = f64::NAN;
        for f in Format::ALL {
            assert!(matches!(export(&m, f), Err(ExportError::NonFinite { .. })));
        }
    }

    #[test]
    fn a_scorecard_is_refused_for_a_model_without_bins_with_the_reason() {
        let m = testing::model();
        for f in [Format::Scorecard, Format::ScorecardCsv] {
            let err = export(&m, f).unwrap_err();
            assert!(matches!(err, ExportError::NotBinned));
            let text = err.to_string();
            assert!(text.contains("WOE") && text.contains("binning"), "{text}");
        }
    }
}

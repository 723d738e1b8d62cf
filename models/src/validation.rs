//! A model in the terms validators use: each coefficient on the standardised scale the model
//! was fitted on, on the raw scale of its feature, and as an odds ratio; and, on a labelled
//! file, the usual discrimination and calibration figures.

use serde::{Deserialize, Serialize};

use crate::error::FitError;
use crate::metrics::{CalibrationBin, Evaluation, calibration_table, evaluate};
use crate::model_file::ModelFile;

/// One design column's coefficient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CoefficientRow {
    /// The design column (`income`, `income=missing`, `sector=retail`, ...).
    pub column: String,
    /// The fitted coefficient: per standard deviation for a numeric feature, per unit of a
    /// 0/1 column otherwise.
    pub standardised: f64,
    /// Per unit of the raw feature (after imputation): `standardised / scale`; the same as
    /// `standardised` for 0/1 columns.
    pub raw: f64,
    /// `exp(raw)`: the odds multiplier per raw unit (per level or indicator for 0/1 columns).
    pub odds_ratio: f64,
    /// `exp(standardised)`: per standard deviation of a numeric feature.
    pub odds_ratio_per_sd: f64,
    /// Standard deviation the numeric feature was divided by (`None` for 0/1 columns).
    pub scale: Option<f64>,
}

/// The coefficients on both scales, with the intercept of each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CoefficientTable {
    pub rows: Vec<CoefficientRow>,
    /// The intercept with standardised numeric features.
    pub intercept_standardised: f64,
    /// The intercept with raw numeric features: `b - sum(w_j * mean_j / scale_j)`.
    pub intercept_raw: f64,
}

impl CoefficientTable {
    pub fn of(model: &ModelFile) -> Self {
        let pre = &model.preprocessing;
        let mut rows = Vec::with_capacity(model.columns.len());
        let mut intercept_raw = model.intercept;
        for (j, (column, &w)) in model.columns.iter().zip(&model.coefficients).enumerate() {
            let scale = pre.numeric.get(j).map(|t| t.scale);
            let raw = match pre.numeric.get(j) {
                Some(t) => {
                    intercept_raw -= w * t.mean / t.scale;
                    w / t.scale
                }
                None => w,
            };
            rows.push(CoefficientRow {
                column: column.clone(),
                standardised: w,
                raw,
                odds_ratio: raw.exp(),
                odds_ratio_per_sd: w.exp(),
                scale,
            });
        }
        Self {
            rows,
            intercept_standardised: model.intercept,
            intercept_raw,
        }
    }
}

/// Discrimination and calibration of a model's scores on a labelled file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Performance {
    /// Rows, default rate, AUC, KS, Gini, log loss, Brier score.
    #[serde(flatten)]
    pub evaluation: Evaluation,
    /// Rows sorted by predicted PD in ten groups of (nearly) equal size.
    pub calibration_by_decile: Vec<CalibrationBin>,
}

impl Performance {
    pub fn of(probs: &[f64], labels: &[u8]) -> Result<Self, FitError> {
        Ok(Self {
            evaluation: evaluate(probs, labels)?,
            calibration_by_decile: calibration_table(probs, labels, 10)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{LabelMode, load_csv};
    use crate::local::{LocalOptions, train_local};
    use crate::logistic::sigmoid;
    use crate::schema::{InferOptions, infer};

    #[test]
    fn raw_scale_coefficients_give_the_models_scores_on_raw_values() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.csv");
        let mut text = String::from("income,age,sector,default\n");
        for i in 0..200 {
            let income = if i % 9 == 0 {
                String::new()
            } else {
                format!("{}", 100 + (i * 37) % 400)
            };
            let sector = ["farm", "retail", "mining"][i % 3];
            let y = u8::from((i * 7) % 5 < 2);
            text += &format!("{income},{},{sector},{y}\n", 20 + (i * 13) % 50);
        }
        std::fs::write(&p, &text).unwrap();
        let mut schema = infer(&p, &InferOptions::new("default", "1")).unwrap();
        schema.features[0].missing = true;
        let data = load_csv(&p, &schema, LabelMode::Required).unwrap();
        let (m, _) = train_local(&schema, data, &LocalOptions::default()).unwrap();
        let (data, probs) = m.score_csv(&p).unwrap();
        let t = CoefficientTable::of(&m);
        assert_eq!(t.rows.len(), m.coefficients.len());
        let n_num = m.preprocessing.numeric.len();
        let x = m.preprocessing.transform_ref(&data);
        for (i, &p) in probs.iter().enumerate() {
            // Raw values (imputed) times raw coefficients, 0/1 columns as they are.
            let mut z = t.intercept_raw;
            for (j, row) in t.rows.iter().enumerate() {
                let v = if j < n_num {
                    let raw = data.numeric[[i, j]];
                    if raw.is_nan() {
                        m.preprocessing.numeric[j].impute
                    } else {
                        raw
                    }
                } else {
                    x[[i, j]]
                };
                z += row.raw * v;
            }
            assert!(
                (sigmoid(z) - p).abs() < 1e-12,
                "row {i}: {} vs {p}",
                sigmoid(z)
            );
        }
        for r in &t.rows {
            assert!((r.odds_ratio.ln() - r.raw).abs() < 1e-12);
            assert!((r.odds_ratio_per_sd.ln() - r.standardised).abs() < 1e-12);
        }
        let labels = data.labels.as_deref().unwrap();
        let perf = Performance::of(&probs, labels).unwrap();
        assert_eq!(perf.calibration_by_decile.len(), 10);
        assert_eq!(
            perf.calibration_by_decile
                .iter()
                .map(|b| b.rows)
                .sum::<usize>(),
            200
        );
        assert!((perf.evaluation.gini - (2.0 * perf.evaluation.auc - 1.0)).abs() < 1e-15);
    }
}

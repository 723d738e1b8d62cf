//! Imputation, standardisation and one-hot encoding, fitted from (federated) statistics.
//!
//! The transform is a pure function of [`FeatureStats`], so a preprocessor built from the
//! secure sum of every institution's statistics is identical at every institution.

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::binning::WoeBinning;
use crate::data::{CODE_MISSING, CODE_OTHER, Dataset};
use crate::schema::Schema;
use crate::stats::FeatureStats;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PreprocessOptions {
    /// Adds a 0/1 column "feature is missing" for each numeric feature that had missing values
    /// in the statistics: missingness often carries credit risk of its own.
    pub missing_indicators: bool,
}

/// How one numeric feature becomes one design column (and maybe an indicator column).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NumericTransform {
    pub name: String,
    /// The value that replaces a missing one (the global mean).
    pub impute: f64,
    pub mean: f64,
    /// Population standard deviation after imputation (1 for a constant column).
    pub scale: f64,
    pub indicator: bool,
}

/// How one categorical feature becomes 0/1 columns: one per level, one "other" for levels
/// unseen in the schema, and one "missing" when missing values are allowed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoricalTransform {
    pub name: String,
    pub levels: Vec<String>,
    pub missing_column: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocessor {
    pub numeric: Vec<NumericTransform>,
    pub categorical: Vec<CategoricalTransform>,
    /// When set, the design is the WOE of each kept feature's bin instead of the standardised
    /// and one-hot columns above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub woe: Option<WoeBinning>,
}

impl Preprocessor {
    pub fn fit(schema: &Schema, stats: &FeatureStats, opts: PreprocessOptions) -> Self {
        let numeric = schema
            .numeric_features()
            .zip(&stats.numeric)
            .map(|(f, s)| {
                let mean = s.mean();
                // Imputing with the mean leaves the mean unchanged and shrinks the variance by
                // present / (present + missing): the same as standardising after imputation.
                let total = s.count + s.missing;
                let var = if total > 0.0 {
                    s.variance() * s.count / total
                } else {
                    0.0
                };
                let sd = var.sqrt();
                NumericTransform {
                    name: f.name.clone(),
                    impute: mean,
                    mean,
                    scale: if sd > 1e-12 * mean.abs().max(1.0) {
                        sd
                    } else {
                        1.0
                    },
                    indicator: opts.missing_indicators && s.missing > 0.0,
                }
            })
            .collect();
        let categorical = schema
            .categorical_features()
            .map(|(f, levels)| CategoricalTransform {
                name: f.name.clone(),
                levels: levels.to_vec(),
                missing_column: f.missing,
            })
            .collect();
        Self {
            numeric,
            categorical,
            woe: None,
        }
    }

    /// The same preprocessing with the design replaced by `woe`'s WOE columns.
    pub fn with_woe(self, woe: WoeBinning) -> Self {
        Self {
            woe: Some(woe),
            ..self
        }
    }

    /// Whether a missing value of feature `name` has a place in the design: a numeric feature
    /// with an imputation value, or a categorical feature (its `missing` column if it has one,
    /// else `other`, as [`Preprocessor::transform_ref`] does).
    pub fn handles_missing(&self, name: &str) -> bool {
        if let Some(w) = &self.woe {
            return w.features.iter().any(|f| f.name == name);
        }
        self.numeric
            .iter()
            .any(|n| n.name == name && n.impute.is_finite())
            || self.categorical.iter().any(|c| c.name == name)
    }

    /// Names of the design columns, in order.
    pub fn columns(&self) -> Vec<String> {
        if let Some(w) = &self.woe {
            return w.columns();
        }
        let mut cols: Vec<String> = self.numeric.iter().map(|n| n.name.clone()).collect();
        cols.extend(
            self.numeric
                .iter()
                .filter(|n| n.indicator)
                .map(|n| format!("{}=missing", n.name)),
        );
        for c in &self.categorical {
            cols.extend(c.levels.iter().map(|l| format!("{}={l}", c.name)));
            cols.push(format!("{}=other", c.name));
            if c.missing_column {
                cols.push(format!("{}=missing", c.name));
            }
        }
        cols
    }

    pub fn width(&self) -> usize {
        if let Some(w) = &self.woe {
            return w.width();
        }
        self.numeric.len()
            + self.numeric.iter().filter(|n| n.indicator).count()
            + self
                .categorical
                .iter()
                .map(|c| c.levels.len() + 1 + usize::from(c.missing_column))
                .sum::<usize>()
    }

    /// Builds the design matrix. Consumes the data set so that, when the design has only
    /// numeric columns, the numeric matrix is transformed in place (no second copy).
    pub fn transform(&self, data: Dataset) -> Array2<f64> {
        if let Some(w) = &self.woe {
            return w.transform(&data);
        }
        let only_numeric = self.categorical.is_empty() && !self.numeric.iter().any(|n| n.indicator);
        if only_numeric && data.numeric.ncols() == self.numeric.len() {
            let mut x = data.numeric;
            for mut row in x.rows_mut() {
                for (v, t) in row.iter_mut().zip(&self.numeric) {
                    *v = standardise(*v, t);
                }
            }
            return x;
        }
        self.transform_ref(&data)
    }

    /// Builds the design matrix from a borrowed data set (allocates a new matrix).
    pub fn transform_ref(&self, data: &Dataset) -> Array2<f64> {
        if let Some(w) = &self.woe {
            return w.transform(data);
        }
        let rows = data.rows();
        let mut x = Array2::<f64>::zeros((rows, self.width()));
        let n_ind = self.numeric.iter().filter(|n| n.indicator).count();
        for (i, mut out) in x.rows_mut().into_iter().enumerate() {
            let num = data.numeric.row(i);
            let mut ind_at = self.numeric.len();
            for (j, t) in self.numeric.iter().enumerate() {
                let v = num.get(j).copied().unwrap_or(f64::NAN);
                out[j] = standardise(v, t);
                if t.indicator {
                    out[ind_at] = if v.is_nan() { 1.0 } else { 0.0 };
                    ind_at += 1;
                }
            }
            let mut at = self.numeric.len() + n_ind;
            let cat = data.categorical.row(i);
            for (j, c) in self.categorical.iter().enumerate() {
                let code = cat.get(j).copied().unwrap_or(CODE_MISSING);
                let slot = match code {
                    CODE_MISSING if c.missing_column => c.levels.len() + 1,
                    CODE_MISSING | CODE_OTHER => c.levels.len(),
                    l if (l as usize) < c.levels.len() => l as usize,
                    _ => c.levels.len(),
                };
                out[at + slot] = 1.0;
                at += c.levels.len() + 1 + usize::from(c.missing_column);
            }
        }
        x
    }
}

#[inline]
fn standardise(v: f64, t: &NumericTransform) -> f64 {
    let v = if v.is_nan() { t.impute } else { v };
    (v - t.mean) / t.scale
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{LabelMode, load_csv};
    use crate::schema::{InferOptions, infer};

    #[test]
    fn standardises_imputes_and_one_hots_from_merged_stats() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.csv");
        let b = dir.path().join("b.csv");
        std::fs::write(&a, "x,c,y\n1,u,0\n3,v,1\n").unwrap();
        std::fs::write(&b, "x,c,y\n,u,0\n5,v,1\n").unwrap();
        let mut schema = infer(&a, &InferOptions::new("y", "1")).unwrap();
        schema.features[0].missing = true;
        schema.features[1].missing = true;
        let da = load_csv(&a, &schema, LabelMode::Required).unwrap();
        let db = load_csv(&b, &schema, LabelMode::Required).unwrap();
        let mut stats = FeatureStats::from_dataset(&schema, &da);
        stats.merge(&FeatureStats::from_dataset(&schema, &db));
        assert_eq!(stats.numeric[0].count, 3.0);
        assert_eq!(stats.numeric[0].missing, 1.0);
        let back = FeatureStats::from_vector(&schema, &stats.to_vector()).unwrap();
        assert_eq!(back, stats);
        let pre = Preprocessor::fit(
            &schema,
            &stats,
            PreprocessOptions {
                missing_indicators: true,
            },
        );
        assert_eq!(
            pre.columns(),
            vec!["x", "x=missing", "c=u", "c=v", "c=other", "c=missing"]
        );
        let x = pre.transform(db);
        // The missing x is imputed with the global mean (3), i.e. 0 after standardising.
        assert_eq!(x.row(0).to_vec(), vec![0.0, 1.0, 1.0, 0.0, 0.0, 0.0]);
        // Mean 3, population sd after imputation sqrt(8/4) = sqrt(2).
        assert!((x[[1, 0]] - 2.0 / 2f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn numeric_only_transform_reuses_the_buffer() {
        let schema = crate::synth::SynthConfig::schema();
        let mut s = schema.clone();
        s.features.retain(|f| f.is_numeric());
        let data = crate::data::Dataset {
            numeric: ndarray::Array2::from_elem((4, 8), 2.0),
            categorical: ndarray::Array2::zeros((4, 0)),
            labels: None,
        };
        let ptr = data.numeric.as_ptr();
        let stats = FeatureStats::from_dataset(&s, &data);
        let pre = Preprocessor::fit(&s, &stats, PreprocessOptions::default());
        let x = pre.transform(data);
        assert_eq!(x.as_ptr(), ptr);
        assert!(x.iter().all(|&v| v == 0.0));
    }
}

//! Per-feature statistics that institutions add up (through secure aggregation) so that every
//! one of them imputes and standardises with the federation's global figures.

use serde::{Deserialize, Serialize};

use crate::data::{CODE_MISSING, CODE_OTHER, Dataset};
use crate::schema::Schema;

/// Additive statistics of one numeric feature.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct NumericStats {
    /// Present (non-missing) values.
    pub count: f64,
    pub sum: f64,
    pub sum_sq: f64,
    pub missing: f64,
}

impl NumericStats {
    pub fn mean(&self) -> f64 {
        if self.count > 0.0 {
            self.sum / self.count
        } else {
            0.0
        }
    }

    /// Population variance of the present values.
    pub fn variance(&self) -> f64 {
        if self.count > 0.0 {
            let m = self.mean();
            (self.sum_sq / self.count - m * m).max(0.0)
        } else {
            0.0
        }
    }
}

/// Additive statistics of a whole data set: what the federation's statistics round sums.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureStats {
    pub rows: f64,
    pub positives: f64,
    pub numeric: Vec<NumericStats>,
    /// Per categorical feature: counts of each level, then "other", then "missing".
    pub categorical: Vec<Vec<f64>>,
}

impl FeatureStats {
    pub fn zeros(schema: &Schema) -> Self {
        Self {
            rows: 0.0,
            positives: 0.0,
            numeric: vec![NumericStats::default(); schema.numeric_features().count()],
            categorical: schema
                .categorical_features()
                .map(|(_, levels)| vec![0.0; levels.len() + 2])
                .collect(),
        }
    }

    pub fn from_dataset(schema: &Schema, data: &Dataset) -> Self {
        let mut s = Self::zeros(schema);
        s.rows = data.rows() as f64;
        s.positives = data
            .labels
            .as_ref()
            .map_or(0.0, |l| l.iter().map(|&v| f64::from(v)).sum());
        for (j, col) in data.numeric.columns().into_iter().enumerate() {
            let st = &mut s.numeric[j];
            for &v in col {
                if v.is_nan() {
                    st.missing += 1.0;
                } else {
                    st.count += 1.0;
                    st.sum += v;
                    st.sum_sq += v * v;
                }
            }
        }
        for (j, col) in data.categorical.columns().into_iter().enumerate() {
            let counts = &mut s.categorical[j];
            let levels = counts.len() - 2;
            for &code in col {
                let slot = match code {
                    CODE_MISSING => levels + 1,
                    CODE_OTHER => levels,
                    c => c as usize,
                };
                if let Some(c) = counts.get_mut(slot) {
                    *c += 1.0;
                }
            }
        }
        s
    }

    /// Flattens into one vector (the order `from_vector` reads back), for secure aggregation.
    pub fn to_vector(&self) -> Vec<f64> {
        let mut v = vec![self.rows, self.positives];
        for n in &self.numeric {
            v.extend([n.count, n.sum, n.sum_sq, n.missing]);
        }
        for c in &self.categorical {
            v.extend(c);
        }
        v
    }

    /// Reads a vector laid out like `zeros(schema).to_vector()`; `None` if its length differs.
    pub fn from_vector(schema: &Schema, v: &[f64]) -> Option<Self> {
        let mut s = Self::zeros(schema);
        if v.len() != s.to_vector().len() {
            return None;
        }
        s.rows = v[0];
        s.positives = v[1];
        let mut at = 2;
        for n in &mut s.numeric {
            *n = NumericStats {
                count: v[at],
                sum: v[at + 1],
                sum_sq: v[at + 2],
                missing: v[at + 3],
            };
            at += 4;
        }
        for c in &mut s.categorical {
            let len = c.len();
            c.copy_from_slice(&v[at..at + len]);
            at += len;
        }
        Some(s)
    }

    /// Adds another institution's statistics (what the secure sum computes).
    pub fn merge(&mut self, other: &FeatureStats) {
        self.rows += other.rows;
        self.positives += other.positives;
        for (a, b) in self.numeric.iter_mut().zip(&other.numeric) {
            a.count += b.count;
            a.sum += b.sum;
            a.sum_sq += b.sum_sq;
            a.missing += b.missing;
        }
        for (a, b) in self.categorical.iter_mut().zip(&other.categorical) {
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
        }
    }
}

//! What each institution contributes to one federated round, as a plain real vector, and how
//! the coordinator reads the sum of those vectors.
//!
//! Every contribution is `(weight, values)` where `values` are sums over the institution's
//! rows and `weight = n`, its row count. Secure aggregation returns `sum_i values_i`, the
//! federation-wide sums, without revealing any institution's count; the weight only bounds
//! each sum (the per-row clip times `n`) for the fixed-point encoding, which rounds each sum
//! once so that counts stay exact.
//!
//! Architecture invariant: this module knows nothing of the secure-aggregation protocol or of
//! the network; it only fixes vector layouts, so both sides share them by construction.

use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};

use crate::data::Dataset;
use crate::error::FitError;
use crate::logistic::{Curvature, loss_grad_hessian, predict, softplus};
use crate::metrics::ScoreHistogram;
use crate::schema::Schema;
use crate::stats::{FeatureStats, NumericStats};

/// Octaves `2^k` for `k` in `MIN_OCTAVE..=MAX_OCTAVE` bracket a feature's largest magnitude.
pub const MIN_OCTAVE: i32 = -20;
pub const MAX_OCTAVE: i32 = 63;
const OCTAVES: usize = (MAX_OCTAVE - MIN_OCTAVE + 1) as usize;

/// One institution's vector for a round: its sums over its `weight` rows (counts stay
/// whole numbers, so the secure sum encodes them exactly: see
/// `fedrisk_secagg::encode_scaled`).
#[derive(Debug, Clone, PartialEq)]
pub struct Contribution {
    pub weight: u64,
    pub values: Vec<f64>,
}

impl Contribution {
    fn summed(values: Vec<f64>, n: usize) -> Self {
        Self {
            weight: n as u64,
            values,
        }
    }

    /// Largest absolute value per row: the participant checks it against the session's
    /// clip bound.
    pub fn max_abs(&self) -> f64 {
        let w = self.weight.max(1) as f64;
        self.values.iter().fold(0.0, |m, v| m.max(v.abs() / w))
    }
}

fn octave_of(v: f64) -> usize {
    let k = v.abs().log2().ceil() as i32;
    (k.clamp(MIN_OCTAVE, MAX_OCTAVE) - MIN_OCTAVE) as usize
}

/// Phase 1 of the statistics round: for each numeric feature, a one-hot over octaves marking
/// the institution's largest |value| (weight 1). Summed, it tells the federation each
/// feature's global magnitude, hence a scale that keeps phase 2's values within [-1, 1].
pub fn magnitude_contribution(data: &Dataset) -> Contribution {
    magnitude_contribution_of(&[data])
}

/// [`magnitude_contribution`] of several parts of one institution's rows taken together
/// (its training and held-out rows: the input is then the same whatever the split).
pub fn magnitude_contribution_of(parts: &[&Dataset]) -> Contribution {
    let cols = parts.first().map_or(0, |d| d.numeric.ncols());
    let mut values = vec![0.0; cols * OCTAVES];
    for j in 0..cols {
        let max = parts.iter().fold(0.0f64, |m, d| {
            d.numeric
                .column(j)
                .iter()
                .filter(|v| !v.is_nan())
                .fold(m, |m, v| m.max(v.abs()))
        });
        if max > 0.0 {
            values[j * OCTAVES + octave_of(max)] = 1.0;
        }
    }
    Contribution { weight: 1, values }
}

pub fn magnitude_len(schema: &Schema) -> usize {
    schema.numeric_features().count() * OCTAVES
}

/// Per-feature scales `2^k` with `k` the largest octave any institution reported.
pub fn scales_from_magnitudes(schema: &Schema, sums: &[f64]) -> Result<Vec<f64>, FitError> {
    let cols = schema.numeric_features().count();
    if sums.len() != cols * OCTAVES {
        return Err(FitError::Dimension {
            what: "magnitude sums",
            expected: cols * OCTAVES,
            found: sums.len(),
        });
    }
    Ok((0..cols)
        .map(|j| {
            let row = &sums[j * OCTAVES..(j + 1) * OCTAVES];
            row.iter()
                .rposition(|&c| c > 0.5)
                .map_or(1.0, |k| f64::from(k as i32 + MIN_OCTAVE).exp2())
        })
        .collect())
}

fn check_scales(schema: &Schema, scales: &[f64]) -> Result<(), FitError> {
    let cols = schema.numeric_features().count();
    if scales.len() != cols || scales.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        return Err(FitError::Dimension {
            what: "feature scales",
            expected: cols,
            found: scales.len(),
        });
    }
    Ok(())
}

/// Phase 2: the institution's [`FeatureStats`], numeric sums divided by the agreed scales, so
/// every value lies in [-1, 1] per row.
pub fn stats_contribution(
    schema: &Schema,
    data: &Dataset,
    scales: &[f64],
) -> Result<Contribution, FitError> {
    check_scales(schema, scales)?;
    let mut s = FeatureStats::from_dataset(schema, data);
    for (n, &scale) in s.numeric.iter_mut().zip(scales) {
        n.sum /= scale;
        n.sum_sq /= scale * scale;
    }
    Ok(Contribution::summed(s.to_vector(), data.rows()))
}

pub fn stats_len(schema: &Schema) -> usize {
    FeatureStats::zeros(schema).to_vector().len()
}

/// The federation's statistics from the summed phase-2 vectors.
pub fn stats_from_sum(
    schema: &Schema,
    sums: &[f64],
    scales: &[f64],
) -> Result<FeatureStats, FitError> {
    check_scales(schema, scales)?;
    let mut s = FeatureStats::from_vector(schema, sums).ok_or(FitError::Dimension {
        what: "statistics sums",
        expected: stats_len(schema),
        found: sums.len(),
    })?;
    // Counts are integers; fixed-point rounding left them a hair off.
    s.rows = s.rows.round();
    s.positives = s.positives.round();
    for (n, &scale) in s.numeric.iter_mut().zip(scales) {
        *n = NumericStats {
            count: n.count.round(),
            sum: n.sum * scale,
            sum_sq: n.sum_sq.max(0.0) * scale * scale,
            missing: n.missing.round(),
        };
    }
    for c in &mut s.categorical {
        c.iter_mut().for_each(|v| *v = v.round().max(0.0));
    }
    Ok(s)
}

/// Indices of the upper triangle (with diagonal) of a `k x k` matrix, row by row.
fn upper_len(k: usize) -> usize {
    k * (k + 1) / 2
}

/// A Newton round: gradient, Hessian (upper triangle) and loss sums at `theta`.
pub fn newton_contribution(
    x: ArrayView2<f64>,
    y: &[f64],
    theta: &[f64],
) -> Result<Contribution, FitError> {
    let Curvature { loss, grad, hess } = loss_grad_hessian(x, y, theta)?;
    let k = theta.len();
    let mut values = grad;
    values.reserve(upper_len(k) + 1);
    for i in 0..k {
        for j in i..k {
            values.push(hess[[i, j]]);
        }
    }
    values.push(loss);
    Ok(Contribution::summed(values, x.nrows()))
}

pub fn newton_len(k: usize) -> usize {
    k + upper_len(k) + 1
}

/// Reads summed Newton vectors back into (loss, gradient, Hessian) sums.
pub fn newton_from_sum(sums: &[f64], k: usize) -> Result<Curvature, FitError> {
    if sums.len() != newton_len(k) {
        return Err(FitError::Dimension {
            what: "Newton sums",
            expected: newton_len(k),
            found: sums.len(),
        });
    }
    let grad = sums[..k].to_vec();
    let mut hess = Array2::zeros((k, k));
    let mut at = k;
    for i in 0..k {
        for j in i..k {
            hess[[i, j]] = sums[at];
            hess[[j, i]] = sums[at];
            at += 1;
        }
    }
    Ok(Curvature {
        loss: sums[at],
        grad,
        hess,
    })
}

/// Evaluation figures of a model on one institution's held-out rows, as sums: score
/// histograms by label, then the log-loss sum, then the row count.
pub fn eval_contribution(
    x: ArrayView2<f64>,
    labels: &[u8],
    theta: &[f64],
    bins: usize,
) -> Result<Vec<f64>, FitError> {
    let probs = predict(x, theta)?;
    let hist = ScoreHistogram::from_scores(&probs, labels, bins);
    let p = x.ncols();
    let mut loss = 0.0;
    for (row, &l) in x.rows().into_iter().zip(labels) {
        let z = row.iter().zip(&theta[..p]).map(|(a, b)| a * b).sum::<f64>() + theta[p];
        loss += softplus(z) - f64::from(l) * z;
    }
    let mut v: Vec<f64> = hist.to_counts().into_iter().map(|c| c as f64).collect();
    v.push(loss);
    v.push(labels.len() as f64);
    Ok(v)
}

pub fn eval_len(bins: usize) -> usize {
    2 * bins + 2
}

/// Federation-wide evaluation from summed evaluation values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FederatedEval {
    pub rows: f64,
    pub auc: f64,
    pub ks: f64,
    pub log_loss: f64,
    /// The most the histogram AUC can differ from the exact pooled AUC.
    pub auc_error_bound: f64,
    /// The summed per-label score histogram itself (the federation's, never one
    /// institution's): kept so a model version can carry its own evaluation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub histogram: Option<ScoreHistogram>,
}

pub fn eval_from_sum(sums: &[f64], bins: usize) -> Result<FederatedEval, FitError> {
    if sums.len() != eval_len(bins) {
        return Err(FitError::Dimension {
            what: "evaluation sums",
            expected: eval_len(bins),
            found: sums.len(),
        });
    }
    let counts: Vec<u64> = sums[..2 * bins]
        .iter()
        .map(|c| c.round().max(0.0) as u64)
        .collect();
    let hist = ScoreHistogram::from_counts(
        &counts,
        ScoreHistogram::new(1).logit_min,
        ScoreHistogram::new(1).logit_max,
    )
    .ok_or(FitError::NoRows)?;
    let rows = sums[2 * bins + 1].round();
    Ok(FederatedEval {
        rows,
        auc: hist.auc().unwrap_or(f64::NAN),
        ks: hist.ks().unwrap_or(f64::NAN),
        log_loss: if rows > 0.0 {
            sums[2 * bins] / rows
        } else {
            f64::NAN
        },
        auc_error_bound: hist.auc_error_bound().unwrap_or(f64::NAN),
        histogram: Some(hist),
    })
}

/// Splits rows into training and held-out validation, deterministically from a seed and the
/// row index, so a restarted round sees the same split.
pub fn validation_split(rows: usize, fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let (mut train, mut val) = (Vec::new(), Vec::new());
    let cut = (fraction.clamp(0.0, 1.0) * u64::MAX as f64) as u64;
    for i in 0..rows {
        // SplitMix64 of (seed, i): a fixed, well-mixed hash.
        let mut z = seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        if fraction > 0.0 && z < cut {
            val.push(i);
        } else {
            train.push(i);
        }
    }
    (train, val)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{LabelMode, load_csv};
    use crate::preprocess::{PreprocessOptions, Preprocessor};
    use crate::synth::{SynthConfig, generate};

    fn federation() -> (Schema, Vec<Dataset>) {
        let dir = tempfile::tempdir().unwrap();
        let data = generate(&SynthConfig::demo(3, 4000, 100));
        data.write_dir(dir.path()).unwrap();
        let schema = Schema::load(&dir.path().join("schema.json")).unwrap();
        let sets = data
            .participants
            .iter()
            .map(|(n, _)| {
                load_csv(
                    &dir.path().join(format!("participants/{n}.csv")),
                    &schema,
                    LabelMode::Required,
                )
                .unwrap()
            })
            .collect();
        (schema, sets)
    }

    /// The preprocessing a federation of `sets` agrees on.
    fn pooled_preprocessor(schema: &Schema, sets: &[Dataset]) -> Preprocessor {
        let mut stats = FeatureStats::zeros(schema);
        for d in sets {
            stats.merge(&FeatureStats::from_dataset(schema, d));
        }
        Preprocessor::fit(schema, &stats, PreprocessOptions::default())
    }

    fn add(contribs: &[Contribution]) -> Vec<f64> {
        let mut s = vec![0.0; contribs[0].values.len()];
        for c in contribs {
            for (a, v) in s.iter_mut().zip(&c.values) {
                *a += v;
            }
        }
        s
    }

    #[test]
    fn summed_statistics_equal_pooled_statistics() {
        let (schema, sets) = federation();
        let mags: Vec<_> = sets.iter().map(magnitude_contribution).collect();
        let scales = scales_from_magnitudes(&schema, &add(&mags)).unwrap();
        let contribs: Vec<_> = sets
            .iter()
            .map(|d| stats_contribution(&schema, d, &scales).unwrap())
            .collect();
        assert!(contribs.iter().all(|c| c.max_abs() <= 1.0));
        let fed = stats_from_sum(&schema, &add(&contribs), &scales).unwrap();
        let mut pooled = FeatureStats::zeros(&schema);
        for d in &sets {
            pooled.merge(&FeatureStats::from_dataset(&schema, d));
        }
        assert_eq!(fed.rows, pooled.rows);
        assert_eq!(fed.categorical, pooled.categorical);
        for (a, b) in fed.numeric.iter().zip(&pooled.numeric) {
            assert_eq!(a.count, b.count);
            assert!((a.sum - b.sum).abs() <= 1e-9 * b.sum.abs().max(1.0));
            assert!((a.sum_sq - b.sum_sq).abs() <= 1e-9 * b.sum_sq.abs().max(1.0));
        }
    }

    #[test]
    fn summed_newton_terms_equal_pooled_terms() {
        let (schema, sets) = federation();
        let pre = pooled_preprocessor(&schema, &sets);
        let theta: Vec<f64> = (0..=pre.width())
            .map(|i| (i as f64 * 0.37).sin() * 0.1)
            .collect();
        let k = theta.len();
        let mut contribs = Vec::new();
        let mut pooled_x = Vec::new();
        let mut pooled_y = Vec::new();
        for d in &sets {
            let y = d.labels_f64().unwrap();
            let x = pre.transform_ref(d);
            contribs.push(newton_contribution(x.view(), &y, &theta).unwrap());
            pooled_x.extend(x.iter().copied());
            pooled_y.extend(y);
        }
        let fed = newton_from_sum(&add(&contribs), k).unwrap();
        let x = Array2::from_shape_vec((pooled_y.len(), k - 1), pooled_x).unwrap();
        let pooled = loss_grad_hessian(x.view(), &pooled_y, &theta).unwrap();
        assert!((fed.loss - pooled.loss).abs() < 1e-8 * pooled.loss);
        for (a, b) in fed.grad.iter().zip(&pooled.grad) {
            assert!((a - b).abs() < 1e-8);
        }
        for (a, b) in fed.hess.iter().zip(pooled.hess.iter()) {
            assert!((a - b).abs() < 1e-7);
        }
    }

    #[test]
    fn summed_histograms_give_pooled_auc_within_bound() {
        let (schema, sets) = federation();
        let pre = pooled_preprocessor(&schema, &sets);
        let theta: Vec<f64> = (0..=pre.width())
            .map(|i| (i as f64 * 0.7).cos() * 0.3)
            .collect();
        let bins = 1000;
        let mut sum = vec![0.0; eval_len(bins)];
        let (mut probs, mut labels) = (Vec::new(), Vec::new());
        for d in &sets {
            let x = pre.transform_ref(d);
            let l = d.labels.clone().unwrap();
            let v = eval_contribution(x.view(), &l, &theta, bins).unwrap();
            for (a, b) in sum.iter_mut().zip(&v) {
                *a += b;
            }
            probs.extend(predict(x.view(), &theta).unwrap());
            labels.extend(l);
        }
        let e = eval_from_sum(&sum, bins).unwrap();
        let exact = crate::metrics::auc(&probs, &labels).unwrap();
        assert_eq!(e.rows as usize, labels.len());
        assert!((e.auc - exact).abs() <= e.auc_error_bound + 1e-12);
        assert!((e.log_loss - crate::metrics::log_loss(&probs, &labels).unwrap()).abs() < 1e-9);
    }

    #[test]
    fn validation_split_is_deterministic_and_near_the_fraction() {
        let (t1, v1) = validation_split(10_000, 0.2, 5);
        let (t2, v2) = validation_split(10_000, 0.2, 5);
        assert_eq!((t1.clone(), v1.clone()), (t2, v2));
        assert_eq!(t1.len() + v1.len(), 10_000);
        assert!((v1.len() as f64 - 2000.0).abs() < 150.0);
        assert_eq!(validation_split(100, 0.0, 1).1.len(), 0);
    }
}

/// The training algorithm of a federated job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// Participants send gradient and Hessian sums; the coordinator takes the Newton step.
    Newton,
    /// Participants run local epochs from the global model; the coordinator averages the
    /// results weighted by row counts (inside the masked vector).
    FedAvg,
    /// FedAvg with a proximal term `mu/2 |theta - theta_global|^2` in the local objective.
    FedProx,
}

impl std::str::FromStr for Algorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "newton" => Ok(Self::Newton),
            "fedavg" => Ok(Self::FedAvg),
            "fedprox" => Ok(Self::FedProx),
            other => Err(format!(
                "unknown algorithm `{other}` (newton, fedavg, fedprox)"
            )),
        }
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Newton => "newton",
            Self::FedAvg => "fedavg",
            Self::FedProx => "fedprox",
        })
    }
}

/// What every participant must know to compute its contribution the same way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoundSettings {
    pub algorithm: Algorithm,
    /// scikit-learn's C for the federation-wide objective.
    pub c: f64,
    pub local_epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    /// FedProx strength (ignored by the other algorithms).
    pub mu: f64,
    pub histogram_bins: usize,
    /// Share of each institution's rows held out for federated evaluation (0: evaluate on
    /// the training rows).
    pub validation_fraction: f64,
    pub split_seed: u64,
    pub missing_indicators: bool,
    /// Federation-wide training rows (from the statistics round), which spreads the L2
    /// penalty over local mini-batches; 0 before it is known.
    pub total_rows: f64,
    /// Seed of local mini-batch shuffling; the round number is mixed in.
    pub seed: u64,
}

impl Default for RoundSettings {
    fn default() -> Self {
        Self {
            algorithm: Algorithm::Newton,
            c: 1.0,
            local_epochs: 1,
            batch_size: 64,
            learning_rate: 0.01,
            mu: 0.01,
            histogram_bins: 2000,
            validation_fraction: 0.2,
            split_seed: 1,
            missing_indicators: false,
            total_rows: 0.0,
            seed: 1,
        }
    }
}

/// A FedAvg / FedProx round: local epochs from the global `theta`; the parameters they end
/// at (the caller weighs them by its row count's share of the federation's).
pub fn local_update(
    x: ArrayView2<f64>,
    y: &[f64],
    theta: &[f64],
    settings: &RoundSettings,
    round: u32,
) -> Result<Vec<f64>, FitError> {
    use crate::logistic::{Penalty, SgdOptions, fit_sgd};
    let prox = (settings.algorithm == Algorithm::FedProx).then(|| (settings.mu, theta.to_vec()));
    let opts = SgdOptions {
        epochs: settings.local_epochs,
        batch_size: settings.batch_size,
        learning_rate: settings.learning_rate,
        adam: false,
        penalty: Penalty {
            l2: 1.0 / settings.c,
            prox,
        },
        penalty_rows: settings.total_rows,
        seed: settings.seed ^ u64::from(round).wrapping_mul(0x9E37_79B9_7F4A_7C15),
    };
    fit_sgd(x, y, theta, &opts)
}

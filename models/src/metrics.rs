//! Discrimination and calibration metrics of a PD model, exact and from score histograms.
//!
//! The histogram forms are what a federation can compute: institutions add per-label counts
//! of scores in fixed bins through secure aggregation, and nobody sees a single score.

use serde::{Deserialize, Serialize};

use crate::error::FitError;

fn check(scores: &[f64], labels: &[u8]) -> Result<(f64, f64), FitError> {
    if scores.len() != labels.len() {
        return Err(FitError::Dimension {
            what: "labels",
            expected: scores.len(),
            found: labels.len(),
        });
    }
    if scores.iter().any(|s| !s.is_finite()) {
        return Err(FitError::NonFinite { what: "scores" });
    }
    let pos = labels.iter().filter(|&&l| l != 0).count() as f64;
    let neg = labels.len() as f64 - pos;
    if pos == 0.0 {
        return Err(FitError::OneClass(0));
    }
    if neg == 0.0 {
        return Err(FitError::OneClass(1));
    }
    Ok((pos, neg))
}

/// Indices sorted by score, ascending.
fn order(scores: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    idx
}

/// Area under the ROC curve; tied scores count one half (the Mann-Whitney statistic).
pub fn auc(scores: &[f64], labels: &[u8]) -> Result<f64, FitError> {
    let (pos, neg) = check(scores, labels)?;
    let idx = order(scores);
    // For each group of tied scores: positives in the group beat every negative below it and
    // tie with the negatives inside it.
    let mut neg_below = 0.0;
    let mut wins = 0.0;
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        let (mut p, mut n) = (0.0, 0.0);
        while j < idx.len() && scores[idx[j]] == scores[idx[i]] {
            if labels[idx[j]] != 0 {
                p += 1.0;
            } else {
                n += 1.0;
            }
            j += 1;
        }
        wins += p * (neg_below + 0.5 * n);
        neg_below += n;
        i = j;
    }
    Ok(wins / (pos * neg))
}

/// Kolmogorov-Smirnov statistic: the largest gap between the cumulative score distributions
/// of defaulters and non-defaulters, over thresholds between distinct scores.
pub fn ks(scores: &[f64], labels: &[u8]) -> Result<f64, FitError> {
    let (pos, neg) = check(scores, labels)?;
    let idx = order(scores);
    let (mut cp, mut cn, mut best) = (0.0f64, 0.0f64, 0.0f64);
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j < idx.len() && scores[idx[j]] == scores[idx[i]] {
            if labels[idx[j]] != 0 {
                cp += 1.0;
            } else {
                cn += 1.0;
            }
            j += 1;
        }
        best = best.max((cn / neg - cp / pos).abs());
        i = j;
    }
    Ok(best)
}

pub fn gini(scores: &[f64], labels: &[u8]) -> Result<f64, FitError> {
    Ok(2.0 * auc(scores, labels)? - 1.0)
}

/// Mean binary cross-entropy, probabilities clipped to `[1e-15, 1 - 1e-15]`.
pub fn log_loss(probs: &[f64], labels: &[u8]) -> Result<f64, FitError> {
    check(probs, labels)?;
    let eps = 1e-15;
    let sum: f64 = probs
        .iter()
        .zip(labels)
        .map(|(&p, &l)| {
            let p = p.clamp(eps, 1.0 - eps);
            if l != 0 { -p.ln() } else { -(1.0 - p).ln() }
        })
        .sum();
    Ok(sum / probs.len() as f64)
}

pub fn brier(probs: &[f64], labels: &[u8]) -> Result<f64, FitError> {
    check(probs, labels)?;
    let sum: f64 = probs
        .iter()
        .zip(labels)
        .map(|(&p, &l)| (p - f64::from(l)).powi(2))
        .sum();
    Ok(sum / probs.len() as f64)
}

/// One row of a calibration table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationBin {
    pub rows: usize,
    pub min_score: f64,
    pub max_score: f64,
    pub mean_predicted: f64,
    pub observed_rate: f64,
}

/// Rows sorted by predicted PD and cut into `groups` groups of (nearly) equal size.
pub fn calibration_table(
    probs: &[f64],
    labels: &[u8],
    groups: usize,
) -> Result<Vec<CalibrationBin>, FitError> {
    check(probs, labels)?;
    if groups == 0 {
        return Err(FitError::Invalid("at least one group is needed".into()));
    }
    let idx = order(probs);
    let n = idx.len();
    let mut out = Vec::with_capacity(groups);
    for g in 0..groups {
        let (a, b) = (g * n / groups, (g + 1) * n / groups);
        if a == b {
            continue;
        }
        let part = &idx[a..b];
        let rows = part.len();
        let mean_predicted = part.iter().map(|&i| probs[i]).sum::<f64>() / rows as f64;
        let observed_rate = part.iter().map(|&i| f64::from(labels[i])).sum::<f64>() / rows as f64;
        out.push(CalibrationBin {
            rows,
            min_score: probs[part[0]],
            max_score: probs[part[rows - 1]],
            mean_predicted,
            observed_rate,
        });
    }
    Ok(out)
}

/// Population stability index of `actual` scores against `expected` ones, over `bins` bins cut
/// at the expected scores' quantiles. Empty bins are floored at 1e-4 so the index stays finite.
pub fn psi(expected: &[f64], actual: &[f64], bins: usize) -> Result<f64, FitError> {
    if expected.is_empty() || actual.is_empty() || bins == 0 {
        return Err(FitError::NoRows);
    }
    if expected.iter().chain(actual).any(|s| !s.is_finite()) {
        return Err(FitError::NonFinite { what: "scores" });
    }
    let mut sorted = expected.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut cuts: Vec<f64> = (1..bins).map(|b| sorted[b * sorted.len() / bins]).collect();
    cuts.dedup();
    let share = |xs: &[f64]| {
        let mut counts = vec![0.0; cuts.len() + 1];
        for &x in xs {
            counts[cuts.partition_point(|&c| c <= x)] += 1.0;
        }
        counts
            .into_iter()
            .map(|c| (c / xs.len() as f64).max(1e-4))
            .collect::<Vec<_>>()
    };
    let (e, a) = (share(expected), share(actual));
    Ok(e.iter().zip(&a).map(|(e, a)| (a - e) * (a / e).ln()).sum())
}

/// Per-label counts of scores in fixed bins over the logit scale, where PD scores spread out
/// (uniform bins in probability would put most of a low-default portfolio in a few bins).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreHistogram {
    /// Logit range covered; scores beyond it fall in the first or last bin.
    pub logit_min: f64,
    pub logit_max: f64,
    pub positives: Vec<u64>,
    pub negatives: Vec<u64>,
}

impl ScoreHistogram {
    pub fn new(bins: usize) -> Self {
        Self::with_range(bins, -12.0, 12.0)
    }

    pub fn with_range(bins: usize, logit_min: f64, logit_max: f64) -> Self {
        let bins = bins.max(1);
        Self {
            logit_min,
            logit_max,
            positives: vec![0; bins],
            negatives: vec![0; bins],
        }
    }

    pub fn bins(&self) -> usize {
        self.positives.len()
    }

    pub fn bin_of(&self, prob: f64) -> usize {
        let p = prob.clamp(1e-300, 1.0 - 1e-16);
        let logit = (p / (1.0 - p)).ln();
        let t = (logit - self.logit_min) / (self.logit_max - self.logit_min);
        let b = (t * self.bins() as f64).floor();
        if b.is_nan() || b < 0.0 {
            0
        } else {
            (b as usize).min(self.bins() - 1)
        }
    }

    pub fn add(&mut self, prob: f64, label: u8) {
        let b = self.bin_of(prob);
        if label != 0 {
            self.positives[b] += 1;
        } else {
            self.negatives[b] += 1;
        }
    }

    pub fn from_scores(probs: &[f64], labels: &[u8], bins: usize) -> Self {
        let mut h = Self::new(bins);
        for (&p, &l) in probs.iter().zip(labels) {
            h.add(p, l);
        }
        h
    }

    /// Counts as one vector `[positives..., negatives...]`, the form secure aggregation sums.
    pub fn to_counts(&self) -> Vec<u64> {
        self.positives
            .iter()
            .chain(&self.negatives)
            .copied()
            .collect()
    }

    pub fn from_counts(counts: &[u64], logit_min: f64, logit_max: f64) -> Option<Self> {
        if counts.is_empty() || !counts.len().is_multiple_of(2) {
            return None;
        }
        let half = counts.len() / 2;
        Some(Self {
            logit_min,
            logit_max,
            positives: counts[..half].to_vec(),
            negatives: counts[half..].to_vec(),
        })
    }

    pub fn merge(&mut self, other: &ScoreHistogram) {
        for (a, b) in self.positives.iter_mut().zip(&other.positives) {
            *a += b;
        }
        for (a, b) in self.negatives.iter_mut().zip(&other.negatives) {
            *a += b;
        }
    }

    fn totals(&self) -> (f64, f64) {
        (
            self.positives.iter().sum::<u64>() as f64,
            self.negatives.iter().sum::<u64>() as f64,
        )
    }

    /// AUC treating scores within a bin as tied.
    pub fn auc(&self) -> Option<f64> {
        let (pos, neg) = self.totals();
        if pos == 0.0 || neg == 0.0 {
            return None;
        }
        let mut neg_below = 0.0;
        let mut wins = 0.0;
        for (&p, &n) in self.positives.iter().zip(&self.negatives) {
            wins += p as f64 * (neg_below + 0.5 * n as f64);
            neg_below += n as f64;
        }
        Some(wins / (pos * neg))
    }

    /// The most the exact AUC can differ from [`Self::auc`]: half the within-bin pairs.
    pub fn auc_error_bound(&self) -> Option<f64> {
        let (pos, neg) = self.totals();
        if pos == 0.0 || neg == 0.0 {
            return None;
        }
        let within: f64 = self
            .positives
            .iter()
            .zip(&self.negatives)
            .map(|(&p, &n)| p as f64 * n as f64)
            .sum();
        Some(0.5 * within / (pos * neg))
    }

    /// KS over the bin edges.
    pub fn ks(&self) -> Option<f64> {
        let (pos, neg) = self.totals();
        if pos == 0.0 || neg == 0.0 {
            return None;
        }
        let (mut cp, mut cn, mut best) = (0.0f64, 0.0f64, 0.0f64);
        for (&p, &n) in self.positives.iter().zip(&self.negatives) {
            cp += p as f64;
            cn += n as f64;
            best = best.max((cn / neg - cp / pos).abs());
        }
        Some(best)
    }

    /// The most the exact KS can exceed [`Self::ks`]: within a bin the curves can move by at
    /// most that bin's share of positives and negatives.
    pub fn ks_error_bound(&self) -> Option<f64> {
        let (pos, neg) = self.totals();
        if pos == 0.0 || neg == 0.0 {
            return None;
        }
        Some(
            self.positives
                .iter()
                .zip(&self.negatives)
                .map(|(&p, &n)| (p as f64 / pos).max(n as f64 / neg))
                .fold(0.0, f64::max),
        )
    }
}

/// The usual validation figures of a PD model on one data set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub rows: usize,
    pub default_rate: f64,
    pub auc: f64,
    pub ks: f64,
    pub gini: f64,
    pub log_loss: f64,
    pub brier: f64,
}

pub fn evaluate(probs: &[f64], labels: &[u8]) -> Result<Evaluation, FitError> {
    let auc = auc(probs, labels)?;
    Ok(Evaluation {
        rows: probs.len(),
        default_rate: labels.iter().map(|&l| f64::from(l)).sum::<f64>() / labels.len() as f64,
        auc,
        ks: ks(probs, labels)?,
        gini: 2.0 * auc - 1.0,
        log_loss: log_loss(probs, labels)?,
        brier: brier(probs, labels)?,
    })
}

/// Score bins of [`RunningEvaluation`]: 1.6 MB of counts, a bin 0.00024 wide in logit.
pub const RUNNING_BINS: usize = 100_000;

/// [`evaluate`]'s figures accumulated block by block in memory that does not grow with the
/// rows: rows, default rate, log loss and Brier exactly; AUC and KS from a
/// [`ScoreHistogram`] of [`RUNNING_BINS`] logit bins, with bounds on their error.
#[derive(Debug, Clone)]
pub struct RunningEvaluation {
    histogram: ScoreHistogram,
    rows: usize,
    defaults: usize,
    log_loss_sum: f64,
    brier_sum: f64,
}

/// A [`RunningEvaluation`]'s result.
#[derive(Debug, Clone, PartialEq)]
pub struct RunningFigures {
    pub evaluation: Evaluation,
    /// The most the exact AUC can differ from `evaluation.auc` (and Gini by twice this).
    pub auc_error_bound: f64,
    /// The most the exact KS can differ from `evaluation.ks`.
    pub ks_error_bound: f64,
}

impl Default for RunningEvaluation {
    fn default() -> Self {
        Self::new()
    }
}

impl RunningEvaluation {
    pub fn new() -> Self {
        Self {
            histogram: ScoreHistogram::new(RUNNING_BINS),
            rows: 0,
            defaults: 0,
            log_loss_sum: 0.0,
            brier_sum: 0.0,
        }
    }

    /// Adds a block of probabilities and their labels (1 = default).
    pub fn add(&mut self, probs: &[f64], labels: &[u8]) {
        let eps = 1e-15;
        for (&p, &l) in probs.iter().zip(labels) {
            self.histogram.add(p, l);
            self.rows += 1;
            let q = p.clamp(eps, 1.0 - eps);
            if l != 0 {
                self.defaults += 1;
                self.log_loss_sum -= q.ln();
            } else {
                self.log_loss_sum -= (1.0 - q).ln();
            }
            self.brier_sum += (p - f64::from(l)).powi(2);
        }
    }

    /// The figures, or `None` without both defaults and non-defaults.
    pub fn finish(&self) -> Option<RunningFigures> {
        let auc = self.histogram.auc()?;
        let n = self.rows as f64;
        Some(RunningFigures {
            evaluation: Evaluation {
                rows: self.rows,
                default_rate: self.defaults as f64 / n,
                auc,
                ks: self.histogram.ks()?,
                gini: 2.0 * auc - 1.0,
                log_loss: self.log_loss_sum / n,
                brier: self.brier_sum / n,
            },
            auc_error_bound: self.histogram.auc_error_bound()?,
            ks_error_bound: self.histogram.ks_error_bound()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// AUC by its definition: the share of (defaulter, non-defaulter) pairs ranked correctly.
    fn brute_auc(s: &[f64], l: &[u8]) -> f64 {
        let (mut wins, mut pairs) = (0.0, 0.0);
        for i in 0..s.len() {
            for j in 0..s.len() {
                if l[i] == 1 && l[j] == 0 {
                    pairs += 1.0;
                    if s[i] > s[j] {
                        wins += 1.0;
                    } else if s[i] == s[j] {
                        wins += 0.5;
                    }
                }
            }
        }
        wins / pairs
    }

    /// KS by its definition: max over every threshold t of |F_neg(t) - F_pos(t)|.
    fn brute_ks(s: &[f64], l: &[u8]) -> f64 {
        let pos = l.iter().filter(|&&v| v == 1).count() as f64;
        let neg = l.len() as f64 - pos;
        s.iter()
            .map(|&t| {
                let fp = s
                    .iter()
                    .zip(l)
                    .filter(|(v, c)| **v <= t && **c == 1)
                    .count() as f64
                    / pos;
                let fn_ = s
                    .iter()
                    .zip(l)
                    .filter(|(v, c)| **v <= t && **c == 0)
                    .count() as f64
                    / neg;
                (fn_ - fp).abs()
            })
            .fold(0.0, f64::max)
    }

    fn scored() -> impl Strategy<Value = (Vec<f64>, Vec<u8>)> {
        // Scores on a coarse grid so ties are frequent.
        prop::collection::vec((0u8..20, 0u8..2), 2..120).prop_filter_map(
            "needs both classes",
            |v| {
                let s: Vec<f64> = v.iter().map(|(a, _)| f64::from(*a) / 20.0).collect();
                let l: Vec<u8> = v.iter().map(|(_, b)| *b).collect();
                (l.contains(&0) && l.contains(&1)).then_some((s, l))
            },
        )
    }

    proptest! {
        #[test]
        fn auc_equals_pair_counting((s, l) in scored()) {
            prop_assert!((auc(&s, &l).unwrap() - brute_auc(&s, &l)).abs() < 1e-12);
        }

        #[test]
        fn ks_equals_threshold_scan((s, l) in scored()) {
            prop_assert!((ks(&s, &l).unwrap() - brute_ks(&s, &l)).abs() < 1e-12);
        }

        #[test]
        fn histogram_metrics_stay_within_their_bounds((s, l) in scored(), bins in 1usize..400) {
            let probs: Vec<f64> = s.iter().map(|v| 0.01 + 0.98 * v).collect();
            let h = ScoreHistogram::from_scores(&probs, &l, bins);
            let exact_auc = auc(&probs, &l).unwrap();
            let exact_ks = ks(&probs, &l).unwrap();
            prop_assert!((h.auc().unwrap() - exact_auc).abs() <= h.auc_error_bound().unwrap() + 1e-12);
            let hk = h.ks().unwrap();
            prop_assert!(hk <= exact_ks + 1e-12);
            prop_assert!(exact_ks - hk <= h.ks_error_bound().unwrap() + 1e-12);
        }
    }

    #[test]
    fn fine_histograms_are_close_on_continuous_scores() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let n = 20_000;
        let z: Vec<f64> = (0..n).map(|_| rng.random::<f64>() * 6.0 - 4.0).collect();
        let l: Vec<u8> = z
            .iter()
            .map(|&v| u8::from(rng.random::<f64>() < 1.0 / (1.0 + (-v).exp())))
            .collect();
        let p: Vec<f64> = z.iter().map(|&v| 1.0 / (1.0 + (-v).exp())).collect();
        let h = ScoreHistogram::from_scores(&p, &l, 2400);
        assert!(h.auc_error_bound().unwrap() < 1e-3);
        assert!((h.auc().unwrap() - auc(&p, &l).unwrap()).abs() < 1e-3);
        assert!((h.ks().unwrap() - ks(&p, &l).unwrap()).abs() < 5e-3);
    }

    #[test]
    fn known_values() {
        let s = [0.1, 0.4, 0.35, 0.8];
        let l = [0, 0, 1, 1];
        assert!((auc(&s, &l).unwrap() - 0.75).abs() < 1e-15);
        assert!((ks(&s, &l).unwrap() - 0.5).abs() < 1e-15);
        assert!((gini(&s, &l).unwrap() - 0.5).abs() < 1e-15);
        let ll = log_loss(&[0.5, 0.5], &[0, 1]).unwrap();
        assert!((ll - 2f64.ln()).abs() < 1e-15);
        assert!((brier(&[0.2, 0.9], &[0, 1]).unwrap() - 0.025).abs() < 1e-15);
        assert_eq!(auc(&[0.1], &[1]), Err(FitError::OneClass(1)));
        assert!(matches!(
            auc(&[f64::NAN, 0.2], &[0, 1]),
            Err(FitError::NonFinite { .. })
        ));
    }

    #[test]
    fn calibration_and_psi() {
        let p: Vec<f64> = (0..100).map(|i| f64::from(i) / 100.0).collect();
        let l: Vec<u8> = (0..100).map(|i| u8::from(i >= 50)).collect();
        let t = calibration_table(&p, &l, 10).unwrap();
        assert_eq!(t.len(), 10);
        assert!(t.iter().all(|b| b.rows == 10));
        assert_eq!(t[0].observed_rate, 0.0);
        assert_eq!(t[9].observed_rate, 1.0);
        assert!(psi(&p, &p, 10).unwrap().abs() < 1e-12);
        let shifted: Vec<f64> = p.iter().map(|v| v * 0.5).collect();
        assert!(psi(&p, &shifted, 10).unwrap() > 0.25);
    }

    #[test]
    fn running_evaluation_agrees_with_evaluate_within_its_bounds() {
        let mut rng = 12345u64;
        let mut next = || {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (rng >> 11) as f64 / (1u64 << 53) as f64
        };
        let probs: Vec<f64> = (0..20_000).map(|_| next()).collect();
        let labels: Vec<u8> = probs.iter().map(|&p| u8::from(next() < p)).collect();
        let exact = evaluate(&probs, &labels).unwrap();
        let mut running = RunningEvaluation::new();
        for (p, l) in probs.chunks(777).zip(labels.chunks(777)) {
            running.add(p, l);
        }
        let r = running.finish().unwrap();
        assert_eq!(r.evaluation.rows, exact.rows);
        assert_eq!(r.evaluation.default_rate, exact.default_rate);
        assert!((r.evaluation.log_loss - exact.log_loss).abs() < 1e-12);
        assert!((r.evaluation.brier - exact.brier).abs() < 1e-12);
        assert!((r.evaluation.auc - exact.auc).abs() <= r.auc_error_bound + 1e-12);
        assert!((r.evaluation.ks - exact.ks).abs() <= r.ks_error_bound + 1e-12);
        assert!(r.auc_error_bound < 1e-3, "{}", r.auc_error_bound);
        assert!(RunningEvaluation::new().finish().is_none());
    }
}

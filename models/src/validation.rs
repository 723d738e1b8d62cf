//! A model in the terms validators use: each coefficient on the standardised scale the model
//! was fitted on, on the raw scale of its feature, and as an odds ratio; and, on a labelled
//! file, the usual discrimination and calibration figures.

use serde::{Deserialize, Serialize};

use crate::error::FitError;
use crate::metrics::{CalibrationBin, Evaluation, ScoreHistogram, calibration_table, evaluate};
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

/// How a PSI is read, with the usual bands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PsiBand {
    /// Below 0.1: the population is stable.
    Stable,
    /// 0.1 to 0.25: a shift worth watching.
    Watch,
    /// Above 0.25: the population has shifted.
    Shift,
}

impl PsiBand {
    pub fn of(psi: f64) -> Self {
        if psi < 0.1 {
            PsiBand::Stable
        } else if psi <= 0.25 {
            PsiBand::Watch
        } else {
            PsiBand::Shift
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            PsiBand::Stable => "stable (< 0.1)",
            PsiBand::Watch => "watch (0.1 to 0.25)",
            PsiBand::Shift => "shift (> 0.25)",
        }
    }
}

/// One group of adjacent score bins and its part of the PSI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PsiGroup {
    /// The group's first and one-past-last score bin.
    pub first_bin: usize,
    pub end_bin: usize,
    /// Lowest and highest PD of the group's bins (edges of the logit bins).
    pub pd_from: f64,
    pub pd_to: f64,
    /// Share of the expected (federation's) rows in the group.
    pub expected_share: f64,
    /// Share of the actual (institution's) rows in the group.
    pub actual_share: f64,
    /// `(actual - expected) x ln(actual / expected)`, shares floored at 1e-4.
    pub contribution: f64,
}

/// The population stability index of one score distribution against another, both as counts
/// in the same bins of a [`ScoreHistogram`] (labels pooled).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PsiReport {
    pub psi: f64,
    pub band: PsiBand,
    pub expected_rows: u64,
    pub actual_rows: u64,
    pub groups: Vec<PsiGroup>,
}

/// PSI of `actual` against `expected` (counts per score bin of the same histogram layout).
/// Adjacent bins are merged into at most `groups` groups holding about equal shares of the
/// expected rows (the usual deciles with `groups = 10`); a share of 0 is floored at 1e-4 so
/// the index stays finite, as [`crate::metrics::psi`] does.
pub fn psi_of_histograms(
    expected: &ScoreHistogram,
    actual: &ScoreHistogram,
    groups: usize,
) -> Result<PsiReport, FitError> {
    let bins = expected.bins();
    if actual.bins() != bins
        || actual.logit_min != expected.logit_min
        || actual.logit_max != expected.logit_max
    {
        return Err(FitError::Invalid(format!(
            "the score histograms differ in layout ({} and {} bins)",
            bins,
            actual.bins()
        )));
    }
    let pooled = |h: &ScoreHistogram| -> Vec<u64> {
        h.positives
            .iter()
            .zip(&h.negatives)
            .map(|(p, n)| p + n)
            .collect()
    };
    let (e, a) = (pooled(expected), pooled(actual));
    let (te, ta) = (e.iter().sum::<u64>(), a.iter().sum::<u64>());
    if te == 0 || ta == 0 || groups == 0 {
        return Err(FitError::NoRows);
    }
    // Group ends: after bin i once the expected rows so far reach the next 1/groups of all.
    let mut ends = Vec::with_capacity(groups);
    let (mut cum, mut next) = (0u64, 1usize);
    for (i, &c) in e.iter().enumerate() {
        cum += c;
        if next < groups && cum as u128 * groups as u128 >= next as u128 * te as u128 {
            ends.push(i + 1);
            while next < groups && cum as u128 * groups as u128 >= next as u128 * te as u128 {
                next += 1;
            }
        }
    }
    if ends.last() != Some(&bins) {
        ends.push(bins);
    }
    let width = (expected.logit_max - expected.logit_min) / bins as f64;
    let pd = |edge: usize| {
        let z = expected.logit_min + width * edge as f64;
        1.0 / (1.0 + (-z).exp())
    };
    let mut out = Vec::with_capacity(ends.len());
    let mut start = 0;
    for &end in &ends {
        let se = e[start..end].iter().sum::<u64>() as f64 / te as f64;
        let sa = a[start..end].iter().sum::<u64>() as f64 / ta as f64;
        let (fe, fa) = (se.max(1e-4), sa.max(1e-4));
        out.push(PsiGroup {
            first_bin: start,
            end_bin: end,
            pd_from: pd(start),
            pd_to: pd(end),
            expected_share: se,
            actual_share: sa,
            contribution: (fa - fe) * (fa / fe).ln(),
        });
        start = end;
    }
    let psi = out.iter().map(|g| g.contribution).sum::<f64>();
    Ok(PsiReport {
        psi,
        band: PsiBand::of(psi),
        expected_rows: te,
        actual_rows: ta,
        groups: out,
    })
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

    fn hist(positives: &[u64], negatives: &[u64]) -> ScoreHistogram {
        ScoreHistogram {
            logit_min: -2.0,
            logit_max: 2.0,
            positives: positives.to_vec(),
            negatives: negatives.to_vec(),
        }
    }

    #[test]
    fn psi_of_histograms_matches_a_hand_computation() {
        // Federation: 100 rows, 50 in each half of four bins; two groups cut at the median.
        let federation = hist(&[5, 5, 10, 10], &[20, 20, 15, 15]);
        // Institution: 30 rows in the low half, 70 in the high half.
        let institution = hist(&[1, 2, 10, 10], &[12, 15, 20, 30]);
        let r = psi_of_histograms(&federation, &institution, 2).unwrap();
        assert_eq!(r.groups.len(), 2);
        assert_eq!((r.groups[0].first_bin, r.groups[0].end_bin), (0, 2));
        assert_eq!((r.expected_rows, r.actual_rows), (100, 100));
        // (0.3 - 0.5) ln(0.3 / 0.5) + (0.7 - 0.5) ln(0.7 / 0.5)
        //   = 0.2 x 0.510826 + 0.2 x 0.336472 = 0.169460
        assert!((r.psi - 0.169_459_6).abs() < 1e-6, "{}", r.psi);
        assert_eq!(r.band, PsiBand::Watch);
        // The group edges are the bins' PD edges: logit 0 is PD 0.5.
        assert!((r.groups[0].pd_to - 0.5).abs() < 1e-12);
        // The same distribution is stable; an empty actual group is floored, not infinite.
        let same = psi_of_histograms(&federation, &federation, 10).unwrap();
        assert_eq!(same.psi, 0.0);
        assert_eq!(same.band, PsiBand::Stable);
        let moved = hist(&[0, 0, 0, 0], &[0, 0, 0, 40]);
        let r = psi_of_histograms(&federation, &moved, 2).unwrap();
        // (1e-4 - 0.5) ln(1e-4 / 0.5) + (1 - 0.5) ln(1 / 0.5)
        let hand = (1e-4f64 - 0.5) * (1e-4f64 / 0.5).ln() + 0.5 * 2f64.ln();
        assert!((r.psi - hand).abs() < 1e-12 && r.band == PsiBand::Shift);
        assert!(psi_of_histograms(&federation, &hist(&[1], &[1]), 2).is_err());
    }

    #[test]
    fn psi_groups_hold_about_equal_expected_shares() {
        let probs: Vec<f64> = (0..1000).map(|i| (i as f64 + 0.5) / 1000.0).collect();
        let labels: Vec<u8> = (0..1000).map(|i| u8::from(i % 7 == 0)).collect();
        let h = ScoreHistogram::from_scores(&probs, &labels, 500);
        let r = psi_of_histograms(&h, &h, 10).unwrap();
        assert_eq!(r.groups.len(), 10);
        for g in &r.groups {
            assert!((g.expected_share - 0.1).abs() < 0.02, "{g:?}");
        }
    }
}

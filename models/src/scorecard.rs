//! Scorecards: the points of every bin of a model trained on WOE, scaled so that
//! `base_score` points mean odds of `base_odds` goods per bad and every `pdo` points double
//! the odds. A row's score is the sum of its bins' points; it ranks rows as the model's
//! probabilities do (exactly without rounding, up to the rounding of points with it).

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::binning::Encoding;
use crate::data::Dataset;
use crate::error::FitError;
use crate::model_file::ModelFile;

/// How points are scaled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScorecardOptions {
    /// Points at `base_odds`.
    pub base_score: f64,
    /// Goods per bad at `base_score` (50 means 50:1).
    pub base_odds: f64,
    /// Points to double the odds.
    pub pdo: f64,
    /// Round every bin's points to a whole number, as credit teams publish them.
    pub round: bool,
}

impl Default for ScorecardOptions {
    fn default() -> Self {
        Self {
            base_score: 600.0,
            base_odds: 50.0,
            pdo: 20.0,
            round: true,
        }
    }
}

/// One bin's points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScorecardBin {
    /// The bin as the feature report names it.
    pub bin: String,
    /// Its WOE.
    pub woe: f64,
    /// Its term in the model's log-odds of default (`coefficient x WOE`, or the bin's own
    /// coefficient; 0 for the reference bin).
    pub term: f64,
    /// Its points.
    pub points: f64,
}

/// One feature's part of the scorecard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScorecardFeature {
    /// The feature.
    pub name: String,
    /// The model's coefficient on its WOE (WOE encoding; with indicators each bin has its
    /// own, in `term`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coefficient: Option<f64>,
    /// Points per bin.
    pub bins: Vec<ScorecardBin>,
}

/// Points per bin of every feature the model uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scorecard {
    /// The scaling.
    pub options: ScorecardOptions,
    /// pdo / ln 2.
    pub factor: f64,
    /// base_score - factor x ln(base_odds).
    pub offset: f64,
    /// The model file's content hash.
    pub model_hash: String,
    /// The features, in the model's column order.
    pub features: Vec<ScorecardFeature>,
}

impl Scorecard {
    /// The scorecard of a model trained on WOE (`binning = "woe"`).
    pub fn from_model(model: &ModelFile, opts: &ScorecardOptions) -> Result<Self, FitError> {
        let woe = model.preprocessing.woe.as_ref().ok_or_else(|| {
            FitError::Invalid(
                "the model was not trained on WOE bins (binning = \"woe\"): it has no scorecard"
                    .into(),
            )
        })?;
        if !(opts.pdo.is_finite() && opts.pdo > 0.0) {
            return Err(FitError::Invalid(format!(
                "pdo must be positive, got {}",
                opts.pdo
            )));
        }
        if !(opts.base_odds.is_finite() && opts.base_odds > 0.0 && opts.base_score.is_finite()) {
            return Err(FitError::Invalid(
                "base odds must be positive and the base score finite".into(),
            ));
        }
        let factor = opts.pdo / std::f64::consts::LN_2;
        let offset = opts.base_score - factor * opts.base_odds.ln();
        let terms = woe.bin_terms(&model.coefficients)?;
        let n = terms.len().max(1) as f64;
        let share = (offset - factor * model.intercept) / n;
        let features = terms
            .into_iter()
            .map(|(f, terms)| ScorecardFeature {
                name: f.name.clone(),
                coefficient: (woe.options.encoding == Encoding::Woe)
                    .then(|| model.columns.iter().position(|c| *c == f.name))
                    .flatten()
                    .map(|i| model.coefficients[i]),
                bins: f
                    .bins
                    .iter()
                    .zip(terms)
                    .map(|(b, term)| {
                        let raw = -term * factor + share;
                        ScorecardBin {
                            bin: b.label.clone(),
                            woe: b.woe,
                            term,
                            points: if opts.round { raw.round() } else { raw },
                        }
                    })
                    .collect(),
            })
            .collect();
        Ok(Self {
            options: opts.clone(),
            factor,
            offset,
            model_hash: model.content_hash.clone(),
            features,
        })
    }

    /// The total points of every row of `data` under `model` (whose scorecard this is).
    pub fn score(&self, model: &ModelFile, data: &Dataset) -> Result<Vec<f64>, FitError> {
        let woe = model
            .preprocessing
            .woe
            .as_ref()
            .ok_or_else(|| FitError::Invalid("the model has no WOE bins".into()))?;
        let kept: Vec<_> = woe.features.iter().filter(|f| f.kept).collect();
        if kept.len() != self.features.len() || model.content_hash != self.model_hash {
            return Err(FitError::Invalid(
                "the scorecard was made from another model".into(),
            ));
        }
        Ok((0..data.rows())
            .map(|r| {
                kept.iter()
                    .zip(&self.features)
                    .map(|(f, sf)| sf.bins.get(f.bin_of_row(data, r)).map_or(0.0, |b| b.points))
                    .sum()
            })
            .collect())
    }

    /// Probability of default a total score stands for.
    pub fn pd_of_score(&self, score: f64) -> f64 {
        let ln_odds = (score - self.offset) / self.factor;
        1.0 / (1.0 + ln_odds.exp())
    }

    /// Lowest and highest total score a row can get.
    pub fn score_range(&self) -> (f64, f64) {
        self.features.iter().fold((0.0, 0.0), |(lo, hi), f| {
            let min = f
                .bins
                .iter()
                .map(|b| b.points)
                .fold(f64::INFINITY, f64::min);
            let max = f
                .bins
                .iter()
                .map(|b| b.points)
                .fold(f64::NEG_INFINITY, f64::max);
            (lo + min, hi + max)
        })
    }

    /// Score-to-PD rows every `step` points over the reachable range.
    pub fn pd_table(&self, step: f64) -> Vec<(f64, f64)> {
        let (lo, hi) = self.score_range();
        let step = if step > 0.0 { step } else { self.options.pdo };
        let start = (lo / step).floor() * step;
        let mut out = Vec::new();
        let mut s = start;
        while s <= hi + step && out.len() < 1000 {
            out.push((s, self.pd_of_score(s)));
            s += step;
        }
        out
    }

    /// `feature,bin,woe,term,points` rows, with a header (`term`: the bin's part of the
    /// model's log-odds of default).
    pub fn to_csv(&self) -> String {
        let mut out = String::from("feature,bin,woe,term,points\n");
        let quote = |s: &str| {
            if s.contains([',', '"', '\n']) {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s.to_string()
            }
        };
        for f in &self.features {
            for b in &f.bins {
                let _ = writeln!(
                    out,
                    "{},{},{:.6},{:.6},{}",
                    quote(&f.name),
                    quote(&b.bin),
                    b.woe,
                    b.term,
                    b.points
                );
            }
        }
        out
    }

    /// The scorecard as a table, then the score-to-PD table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let o = &self.options;
        let _ = writeln!(
            out,
            "scorecard: {} points at {}:1 odds, {} points to double the odds{}",
            o.base_score,
            o.base_odds,
            o.pdo,
            if o.round { ", points rounded" } else { "" }
        );
        for f in &self.features {
            match f.coefficient {
                Some(c) => {
                    let _ = writeln!(out, "{} (coefficient {c:.4} on WOE)", f.name);
                }
                None => {
                    let _ = writeln!(out, "{} (a coefficient per bin)", f.name);
                }
            }
            let _ = writeln!(
                out,
                "  {:<36} {:>8} {:>8} {:>8}",
                "bin", "WOE", "term", "points"
            );
            for b in &f.bins {
                let _ = writeln!(
                    out,
                    "  {:<36} {:>8.4} {:>8.4} {:>8}",
                    b.bin, b.woe, b.term, b.points
                );
            }
        }
        let (lo, hi) = self.score_range();
        let _ = writeln!(
            out,
            "\nscores run from {lo} to {hi}\n{:>8} {:>10}",
            "score", "PD"
        );
        for (s, pd) in self.pd_table(o.pdo) {
            let _ = writeln!(out, "{s:>8} {pd:>10.6}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binning::BinningOptions;
    use crate::local::{LocalOptions, train_local};
    use crate::synth::{SynthConfig, generate};
    use crate::{LabelMode, Schema, load_csv};

    fn model_and_rows(encoding: Encoding) -> (ModelFile, Dataset) {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = SynthConfig::demo(3, 8000, 10);
        cfg.institutions.truncate(1);
        let d = generate(&cfg);
        d.write_dir(dir.path()).unwrap();
        let schema = Schema::load(&dir.path().join("schema.json")).unwrap();
        let path = dir
            .path()
            .join(format!("participants/{}.csv", d.participants[0].0));
        let data = load_csv(&path, &schema, LabelMode::Required).unwrap();
        let (model, _) = train_local(
            &schema,
            data.clone(),
            &LocalOptions {
                binning: Some(BinningOptions {
                    encoding,
                    ..BinningOptions::default()
                }),
                ..LocalOptions::default()
            },
        )
        .unwrap();
        (model, data)
    }

    #[test]
    fn points_rank_rows_as_the_probabilities_do() {
        for encoding in [Encoding::Indicators, Encoding::Woe] {
            points_rank_rows_as_the_probabilities_do_with(encoding);
        }
    }

    fn points_rank_rows_as_the_probabilities_do_with(encoding: Encoding) {
        let (model, data) = model_and_rows(encoding);
        assert_eq!(
            model.columns.len(),
            model.preprocessing.woe.as_ref().unwrap().width()
        );
        let probs = model.score_dataset(data.clone()).unwrap();
        // Unrounded: the points are the model's log-odds, scaled; PD of the score is the
        // model's probability.
        let exact = Scorecard::from_model(
            &model,
            &ScorecardOptions {
                round: false,
                ..ScorecardOptions::default()
            },
        )
        .unwrap();
        let points = exact.score(&model, &data).unwrap();
        for (s, p) in points.iter().zip(&probs) {
            assert!((exact.pd_of_score(*s) - p).abs() < 1e-9, "{s} {p}");
        }
        // Rounded: the order of rows is kept up to the rounding of points.
        let card = Scorecard::from_model(&model, &ScorecardOptions::default()).unwrap();
        let rounded = card.score(&model, &data).unwrap();
        assert!(
            card.features
                .iter()
                .all(|f| f.bins.iter().all(|b| b.points.fract() == 0.0))
        );
        let slack = card.features.len() as f64 * 0.5;
        for i in (0..probs.len()).step_by(37) {
            for j in (0..probs.len()).step_by(53) {
                if probs[i] < probs[j] {
                    assert!(rounded[i] >= rounded[j] - 2.0 * slack);
                    assert!(points[i] > points[j]);
                }
            }
        }
        // 600 points at 50:1, 20 points double the odds.
        assert!((card.pd_of_score(600.0) - 1.0 / 51.0).abs() < 1e-12);
        assert!((card.pd_of_score(620.0) - 1.0 / 101.0).abs() < 1e-12);
        let csv = card.to_csv();
        assert!(csv.starts_with("feature,bin,woe,term,points\n"));
        assert_eq!(
            csv.lines().count(),
            1 + card.features.iter().map(|f| f.bins.len()).sum::<usize>()
        );
        let table = card.pd_table(20.0);
        assert!(table.windows(2).all(|w| w[1].1 < w[0].1));
    }

    #[test]
    fn a_model_without_bins_has_no_scorecard() {
        let (model, data) = model_and_rows(Encoding::default());
        let mut plain = model.clone();
        plain.preprocessing.woe = None;
        assert!(Scorecard::from_model(&plain, &ScorecardOptions::default()).is_err());
        let card = Scorecard::from_model(&model, &ScorecardOptions::default()).unwrap();
        let mut other = model.clone();
        other.content_hash = "x".into();
        assert!(card.score(&other, &data).is_err());
    }
}

//! Credit binning: good/bad counts over a fine grid agreed before counting, prebinning, an
//! IV-maximising merge under a monotonic trend and minimum-size rules, weight of evidence
//! (WOE) and information value (IV) per bin and feature, and the WOE transform of rows.
//!
//! Everything after the counts is a function of integer counts only ([`WoeBinning::fit`]), so
//! the same code bins the pooled rows of one data set and the securely aggregated counts of
//! a federation, with the same result when the counts are the same. The grid is a pure
//! function of the schema and per-feature scales (powers of two agreed in the federation's
//! magnitudes session), never of one institution's own minimum, maximum or quantiles.

use std::fmt;
use std::str::FromStr;

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::data::{CODE_MISSING, CODE_OTHER, Dataset, special_index};
use crate::error::FitError;
use crate::schema::{FeatureKind, Schema};

/// Grid cells per octave (a factor of 2 in |value|): cells are about 4.4 % wide.
pub const STEPS_PER_OCTAVE: i32 = 16;
/// Octaves below a feature's scale the grid resolves; smaller |values| share the cells next
/// to zero.
pub const GRID_OCTAVES: i32 = 32;
/// Counts added to each class of a bin before its WOE is taken, so an empty class does not
/// give an infinite WOE.
pub const WOE_SMOOTHING: f64 = 0.5;
/// `auto` picks a peak or valley shape only when it beats the best monotonic binning's IV by
/// this share: a shape with a turn must earn it.
pub const AUTO_SHAPE_MARGIN: f64 = 0.10;

/// The trend of the default rate across a numeric feature's bins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trend {
    /// The best of ascending and descending (peak or valley only if clearly better).
    #[default]
    Auto,
    /// The default rate rises bin by bin.
    Ascending,
    /// The default rate falls bin by bin.
    Descending,
    /// Rises, then falls.
    Peak,
    /// Falls, then rises.
    Valley,
}

impl fmt::Display for Trend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Trend::Auto => "auto",
            Trend::Ascending => "ascending",
            Trend::Descending => "descending",
            Trend::Peak => "peak",
            Trend::Valley => "valley",
        })
    }
}

impl FromStr for Trend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "auto" => Trend::Auto,
            "ascending" => Trend::Ascending,
            "descending" => Trend::Descending,
            "peak" => Trend::Peak,
            "valley" => Trend::Valley,
            _ => {
                return Err(format!(
                    "`{s}`: expected auto, ascending, descending, peak or valley"
                ));
            }
        })
    }
}

/// How a binned feature enters the logistic regression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// One 0/1 column per populated bin except the feature's most populated bin (the
    /// reference): a coefficient per bin, so the model finds each bin's effect given the other
    /// features, where WOE can only scale the bin's effect on its own. Measured better on
    /// both shared credit data sets (MODELLING.md); the scorecard is points per bin either way.
    #[default]
    Indicators,
    /// One column per feature, the WOE of the row's bin: one coefficient per feature, the
    /// classic scorecard whose points follow the bins' WOE order.
    Woe,
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Encoding::Indicators => "indicators",
            Encoding::Woe => "woe",
        })
    }
}

impl FromStr for Encoding {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "indicators" => Ok(Encoding::Indicators),
            "woe" => Ok(Encoding::Woe),
            _ => Err(format!("`{s}`: expected indicators or woe")),
        }
    }
}

/// How features are binned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BinningOptions {
    /// Most bins of a numeric feature or of a categorical feature's levels (missing and
    /// special-code bins come on top).
    pub max_bins: usize,
    /// Most prebins the fine grid is first cut into.
    pub max_prebins: usize,
    /// A bin (and a prebin, and a categorical level of its own) holds at least this share of
    /// the rows ...
    pub min_bin_share: f64,
    /// ... or at least this many goods and this many bads (0: the share rule alone), so a
    /// rare but well-populated segment, such as the few non-zero counts of a zero-inflated
    /// delinquency column, keeps a bin of its own.
    pub min_class_count: u64,
    /// Trend of the default rate across a numeric feature's bins.
    pub trend: Trend,
    /// Features whose IV is below this are left out of the model (with a note).
    pub iv_floor: f64,
    /// How the kept features' bins enter the model.
    pub encoding: Encoding,
}

impl Default for BinningOptions {
    fn default() -> Self {
        Self {
            max_bins: 10,
            max_prebins: 20,
            min_bin_share: 0.05,
            min_class_count: 100,
            trend: Trend::Auto,
            iv_floor: 0.02,
            encoding: Encoding::Indicators,
        }
    }
}

impl BinningOptions {
    /// Checks the options; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if !(2..=100).contains(&self.max_bins) {
            return Err(format!("max_bins: {} (expected 2..=100)", self.max_bins));
        }
        if self.max_prebins < self.max_bins || self.max_prebins > 200 {
            return Err(format!(
                "max_prebins: {} (expected max_bins..=200)",
                self.max_prebins
            ));
        }
        if !(0.0..0.5).contains(&self.min_bin_share) {
            return Err(format!(
                "min_bin_share: {} (expected 0 to 0.5)",
                self.min_bin_share
            ));
        }
        if !(self.iv_floor.is_finite() && self.iv_floor >= 0.0) {
            return Err(format!("iv_floor: {} (expected >= 0)", self.iv_floor));
        }
        Ok(())
    }

    fn valid(&self, c: [u64; 2], rows: u64) -> bool {
        let n = c[0] + c[1];
        n > 0
            && (n as f64 >= self.min_bin_share * rows as f64
                || (self.min_class_count > 0
                    && c[0] >= self.min_class_count
                    && c[1] >= self.min_class_count))
    }
}

/// The fine grid of a numeric feature whose |values| are at most `scale`: cell edges at
/// `±scale * 2^(-j/16)` for `j` in `0..=512`, and 0. A value's cell is the number of edges
/// at or below it.
pub fn grid_edges(scale: f64) -> Vec<f64> {
    let n = GRID_OCTAVES * STEPS_PER_OCTAVE;
    let step = |j: i32| scale * (-f64::from(j) / f64::from(STEPS_PER_OCTAVE)).exp2();
    let mut edges: Vec<f64> = (0..=n).map(|j| -step(j)).collect();
    edges.push(0.0);
    edges.extend((0..=n).rev().map(step));
    edges
}

/// The count slots of one feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Slots {
    /// Grid cells (`edges.len() + 1`), then missing, then one per declared special code.
    Numeric {
        /// Index among the numeric columns.
        column: usize,
        /// Cell edges, ascending.
        edges: Vec<f64>,
        /// Declared special codes.
        specials: Vec<f64>,
    },
    /// One per level, then `other`, then missing.
    Categorical {
        /// Index among the categorical columns.
        column: usize,
        /// The schema's levels.
        levels: Vec<String>,
    },
}

impl Slots {
    /// Number of count slots (each holds a good and a bad count).
    pub fn len(&self) -> usize {
        match self {
            Slots::Numeric {
                edges, specials, ..
            } => edges.len() + 2 + specials.len(),
            Slots::Categorical { levels, .. } => levels.len() + 2,
        }
    }

    /// Whether the feature has no slot (never: every feature has a missing slot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Good and bad counts of one slot: `[good, bad]`.
pub type Counts = [u64; 2];

/// The slots of every feature: what the federation counts, agreed before counting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CountGrid {
    /// Feature name and its slots, in schema order.
    pub features: Vec<(String, Slots)>,
}

impl CountGrid {
    /// The grid of `schema` under per-numeric-feature `scales` (powers of two bounding each
    /// feature's |values|, from the magnitudes session).
    pub fn new(schema: &Schema, scales: &[f64]) -> Result<Self, FitError> {
        let numeric = schema.numeric_features().count();
        if scales.len() != numeric || scales.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(FitError::Dimension {
                what: "feature scales",
                expected: numeric,
                found: scales.len(),
            });
        }
        let (mut ni, mut ci) = (0, 0);
        let features = schema
            .features
            .iter()
            .map(|f| {
                let slots = match &f.kind {
                    FeatureKind::Numeric { special_values } => {
                        ni += 1;
                        Slots::Numeric {
                            column: ni - 1,
                            edges: grid_edges(scales[ni - 1]),
                            specials: special_values.clone(),
                        }
                    }
                    FeatureKind::Categorical { levels } => {
                        ci += 1;
                        Slots::Categorical {
                            column: ci - 1,
                            levels: levels.clone(),
                        }
                    }
                };
                (f.name.clone(), slots)
            })
            .collect();
        Ok(Self { features })
    }

    /// Length of the flattened count vector (good and bad per slot).
    pub fn vector_len(&self) -> usize {
        2 * self.features.iter().map(|(_, s)| s.len()).sum::<usize>()
    }

    /// Good/bad counts of `data`'s labelled rows per feature and slot.
    pub fn count(&self, data: &Dataset) -> Result<Vec<Vec<Counts>>, FitError> {
        let labels = data.labels.as_deref().ok_or(FitError::NoRows)?;
        let mut out = Vec::with_capacity(self.features.len());
        for (_, slots) in &self.features {
            let mut c = vec![[0u64; 2]; slots.len()];
            match slots {
                Slots::Numeric {
                    column,
                    edges,
                    specials,
                } => {
                    let cells = edges.len() + 1;
                    let col = data.numeric.column(*column);
                    for (&v, &y) in col.iter().zip(labels) {
                        let slot = numeric_slot(v, edges, specials.len(), cells);
                        c[slot][usize::from(y > 0)] += 1;
                    }
                }
                Slots::Categorical { column, levels } => {
                    let col = data.categorical.column(*column);
                    for (&code, &y) in col.iter().zip(labels) {
                        let slot = category_slot(code, levels.len());
                        c[slot][usize::from(y > 0)] += 1;
                    }
                }
            }
            out.push(c);
        }
        Ok(out)
    }

    /// The flattened vector of `counts` (per feature, per slot: good, bad).
    pub fn to_vector(counts: &[Vec<Counts>]) -> Vec<f64> {
        counts
            .iter()
            .flat_map(|f| f.iter().flat_map(|c| [c[0] as f64, c[1] as f64]))
            .collect()
    }

    /// Counts back from a (summed) flattened vector, rounded to the integers they are.
    pub fn from_vector(&self, sums: &[f64]) -> Result<Vec<Vec<Counts>>, FitError> {
        if sums.len() != self.vector_len() {
            return Err(FitError::Dimension {
                what: "bin counts",
                expected: self.vector_len(),
                found: sums.len(),
            });
        }
        if sums.iter().any(|v| !v.is_finite() || *v < -0.5) {
            return Err(FitError::NonFinite { what: "bin counts" });
        }
        let mut at = 0;
        Ok(self
            .features
            .iter()
            .map(|(_, s)| {
                (0..s.len())
                    .map(|_| {
                        let c = [
                            sums[at].round().max(0.0) as u64,
                            sums[at + 1].round().max(0.0) as u64,
                        ];
                        at += 2;
                        c
                    })
                    .collect()
            })
            .collect())
    }
}

fn numeric_slot(v: f64, edges: &[f64], specials: usize, cells: usize) -> usize {
    if v.is_nan() {
        match special_index(v) {
            Some(k) if k < specials => cells + 1 + k,
            _ => cells,
        }
    } else {
        edges.partition_point(|e| *e <= v)
    }
}

fn category_slot(code: u32, levels: usize) -> usize {
    match code {
        CODE_MISSING => levels + 1,
        CODE_OTHER => levels,
        l if (l as usize) < levels => l as usize,
        _ => levels,
    }
}

/// One bin of a feature, as an analyst reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bin {
    /// `[lo, hi)`, a list of levels, `missing`, `special 98`, `other`.
    pub label: String,
    /// Non-defaulted rows.
    pub good: u64,
    /// Defaulted rows.
    pub bad: u64,
    /// ln(share of goods / share of bads), smoothed; 0 for an empty bin.
    pub woe: f64,
    /// (share of goods - share of bads) x WOE.
    pub iv: f64,
}

impl Bin {
    /// Rows in the bin.
    pub fn rows(&self) -> u64 {
        self.good + self.bad
    }

    /// Default rate in the bin (NaN when empty).
    pub fn default_rate(&self) -> f64 {
        self.bad as f64 / self.rows() as f64
    }
}

/// Which bin a raw value falls in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BinRule {
    /// Bin `i` is `[cuts[i-1], cuts[i])`; then the missing bin, then one bin per special code.
    Numeric {
        /// Index among the numeric columns.
        column: usize,
        /// Ascending cut points.
        cuts: Vec<f64>,
        /// Declared special codes, each with a bin of its own.
        specials: Vec<f64>,
    },
    /// Each level's bin, the bin of unseen (and rare) levels, and the missing bin.
    Categorical {
        /// Index among the categorical columns.
        column: usize,
        /// The schema's levels.
        levels: Vec<String>,
        /// Bin of each level.
        level_bins: Vec<usize>,
        /// Bin of levels not in the schema, and of rare levels.
        other_bin: usize,
        /// Bin of missing values.
        missing_bin: usize,
    },
}

/// One feature's binning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureBinning {
    /// The feature.
    pub name: String,
    /// How values map to bins.
    pub rule: BinRule,
    /// The bins.
    pub bins: Vec<Bin>,
    /// Information value: sum of the bins' IV.
    pub iv: f64,
    /// The trend of the default rate across the regular bins (numeric features).
    pub trend: Trend,
    /// Whether the model uses the feature (IV at or above the floor).
    pub kept: bool,
    /// Why the feature was left out, or anything else an analyst should know.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl FeatureBinning {
    /// The bins with an indicator column: every populated bin but the most populated one
    /// (the reference, the first on a tie). A row in the reference bin or in a bin no
    /// training row fell in has all its indicators 0.
    pub fn indicator_bins(&self) -> Vec<usize> {
        let reference = self
            .bins
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.rows().cmp(&b.1.rows()).then(b.0.cmp(&a.0)))
            .map(|(i, _)| i);
        (0..self.bins.len())
            .filter(|&i| Some(i) != reference && self.bins[i].rows() > 0)
            .collect()
    }

    /// The bin a numeric value (NaN for missing, a tagged NaN for a special code) falls in.
    pub fn numeric_bin(&self, v: f64) -> usize {
        match &self.rule {
            // The bins sit as the grid's slots do: regular, missing, then the special codes.
            BinRule::Numeric { cuts, specials, .. } => {
                numeric_slot(v, cuts, specials.len(), cuts.len() + 1)
            }
            BinRule::Categorical { other_bin, .. } => *other_bin,
        }
    }

    /// The bin of a categorical code.
    pub fn category_bin(&self, code: u32) -> usize {
        match &self.rule {
            BinRule::Categorical {
                level_bins,
                other_bin,
                missing_bin,
                ..
            } => match code {
                CODE_MISSING => *missing_bin,
                c => level_bins.get(c as usize).copied().unwrap_or(*other_bin),
            },
            BinRule::Numeric { .. } => 0,
        }
    }

    /// The bin of row `r` of `data`.
    pub fn bin_of_row(&self, data: &Dataset, r: usize) -> usize {
        match &self.rule {
            BinRule::Numeric { column, .. } => {
                self.numeric_bin(data.numeric.get((r, *column)).copied().unwrap_or(f64::NAN))
            }
            BinRule::Categorical { column, .. } => self.category_bin(
                data.categorical
                    .get((r, *column))
                    .copied()
                    .unwrap_or(CODE_MISSING),
            ),
        }
    }
}

/// Every feature's binning and WOE: fitted once from counts, then a fixed transform of rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WoeBinning {
    /// The options it was fitted with.
    pub options: BinningOptions,
    /// Rows the counts were over.
    pub rows: u64,
    /// Defaulted rows among them.
    pub bads: u64,
    /// One per schema feature, in schema order.
    pub features: Vec<FeatureBinning>,
}

fn woe_iv(c: Counts, total: Counts) -> (f64, f64) {
    if c[0] + c[1] == 0 || total[0] == 0 || total[1] == 0 {
        return (0.0, 0.0);
    }
    let g = (c[0] as f64 + WOE_SMOOTHING) / total[0] as f64;
    let b = (c[1] as f64 + WOE_SMOOTHING) / total[1] as f64;
    let woe = (g / b).ln();
    let iv = (c[0] as f64 / total[0] as f64 - c[1] as f64 / total[1] as f64) * woe;
    (woe, iv)
}

fn add(a: Counts, b: Counts) -> Counts {
    [a[0] + b[0], a[1] + b[1]]
}

fn sum(cs: &[Counts]) -> Counts {
    cs.iter().fold([0, 0], |a, c| add(a, *c))
}

fn make_bin(label: String, c: Counts, total: Counts) -> Bin {
    let (woe, iv) = woe_iv(c, total);
    Bin {
        label,
        good: c[0],
        bad: c[1],
        woe,
        iv,
    }
}

/// Gini impurity times rows.
fn impurity(c: Counts) -> f64 {
    let n = (c[0] + c[1]) as f64;
    if n == 0.0 {
        return 0.0;
    }
    let p = c[1] as f64 / n;
    2.0 * n * p * (1.0 - p)
}

/// Cuts the cells into at most `max_prebins` runs of cells by best-first binary splits that
/// most reduce the Gini impurity (a CART tree on the counts), each run valid under the
/// options. Returns the index of the first cell of every run after the first.
fn prebin(cells: &[Counts], rows: u64, opts: &BinningOptions) -> Vec<usize> {
    let mut prefix = vec![[0u64; 2]];
    for c in cells {
        let last = prefix[prefix.len() - 1];
        prefix.push(add(last, *c));
    }
    let range = |a: usize, b: usize| [prefix[b][0] - prefix[a][0], prefix[b][1] - prefix[a][1]];
    // The best split of [a, b): only at the start of a populated cell, so a cut sits just
    // below a value that occurs.
    let best_split = |a: usize, b: usize| -> Option<(f64, usize)> {
        let parent = impurity(range(a, b));
        let mut best: Option<(f64, usize)> = None;
        for (s, cell) in cells.iter().enumerate().take(b).skip(a + 1) {
            if cell[0] + cell[1] == 0 {
                continue;
            }
            let (l, r) = (range(a, s), range(s, b));
            if !opts.valid(l, rows) || !opts.valid(r, rows) {
                continue;
            }
            let gain = parent - impurity(l) - impurity(r);
            if gain > 1e-9 && best.is_none_or(|(g, _)| gain > g) {
                best = Some((gain, s));
            }
        }
        best
    };
    let mut segments = vec![(0usize, cells.len(), best_split(0, cells.len()))];
    while segments.len() < opts.max_prebins {
        let pick = segments
            .iter()
            .enumerate()
            .filter_map(|(i, (_, _, s))| s.map(|(g, _)| (i, g)))
            .max_by(|x, y| x.1.total_cmp(&y.1).then(y.0.cmp(&x.0)));
        let Some((i, _)) = pick else { break };
        let (a, b, split) = segments[i];
        let Some((_, s)) = split else { break };
        segments[i] = (a, s, best_split(a, s));
        segments.insert(i + 1, (s, b, best_split(s, b)));
    }
    segments.iter().skip(1).map(|(a, _, _)| *a).collect()
}

/// The IV-maximising partition of `groups` (in order) into at most `max_bins` runs, each
/// valid, whose default rates follow `trend` strictly. Returns the start index of every run
/// after the first and the IV; `None` when no partition satisfies the rules.
fn merge(
    groups: &[Counts],
    total: Counts,
    rows: u64,
    opts: &BinningOptions,
    trend: Trend,
) -> Option<(Vec<usize>, f64)> {
    let p = groups.len();
    if p == 0 {
        return None;
    }
    let mut prefix = vec![[0u64; 2]];
    for c in groups {
        let last = prefix[prefix.len() - 1];
        prefix.push(add(last, *c));
    }
    let range = |a: usize, b: usize| [prefix[b][0] - prefix[a][0], prefix[b][1] - prefix[a][1]];
    let rate = |a: usize, b: usize| {
        let c = range(a, b);
        c[1] as f64 / (c[0] + c[1]) as f64
    };
    let kmax = opts.max_bins.min(p);
    // best[k][i][j][phase]: best IV of [0, j) in k runs whose last run is [i, j).
    let idx = |k: usize, i: usize, j: usize, ph: usize| ((k * (p + 1) + i) * (p + 1) + j) * 2 + ph;
    type Cell = Option<(f64, usize, usize)>; // (iv, previous run start, previous phase)
    let mut best: Vec<Cell> = vec![None; (kmax + 1) * (p + 1) * (p + 1) * 2];
    for j in 1..=p {
        if opts.valid(range(0, j), rows) {
            best[idx(1, 0, j, 0)] = Some((woe_iv(range(0, j), total).1, 0, 0));
        }
    }
    // The phase after a step from rate `prev` to `cur`, or `None` if the trend forbids it.
    let step = |ph: usize, prev: f64, cur: f64| -> Option<usize> {
        let up = cur > prev;
        let down = cur < prev;
        match (trend, ph) {
            (Trend::Ascending, _) => up.then_some(0),
            (Trend::Descending, _) => down.then_some(0),
            (Trend::Peak, 0) => (up.then_some(0)).or(down.then_some(1)),
            (Trend::Peak, _) => down.then_some(1),
            (Trend::Valley, 0) => (down.then_some(0)).or(up.then_some(1)),
            (Trend::Valley, _) => up.then_some(1),
            (Trend::Auto, _) => None,
        }
    };
    for k in 2..=kmax {
        for j in 2..=p {
            for i in 1..j {
                let cur = range(i, j);
                if !opts.valid(cur, rows) {
                    continue;
                }
                let iv = woe_iv(cur, total).1;
                let r = rate(i, j);
                for h in 0..i {
                    for ph in 0..2 {
                        let Some((v, _, _)) = best[idx(k - 1, h, i, ph)] else {
                            continue;
                        };
                        let Some(nph) = step(ph, rate(h, i), r) else {
                            continue;
                        };
                        let cand = v + iv;
                        let slot = &mut best[idx(k, i, j, nph)];
                        if slot.is_none_or(|(b, _, _)| cand > b + 1e-12) {
                            *slot = Some((cand, h, ph));
                        }
                    }
                }
            }
        }
    }
    let mut end: Option<(f64, usize, usize, usize)> = None;
    for k in 1..=kmax {
        for i in 0..p {
            for ph in 0..2 {
                if let Some((v, _, _)) = best[idx(k, i, p, ph)]
                    && end.is_none_or(|(b, ..)| v > b + 1e-12)
                {
                    end = Some((v, k, i, ph));
                }
            }
        }
    }
    let (iv, mut k, mut i, mut ph) = end?;
    let mut j = p;
    let mut starts = Vec::new();
    while k > 1 {
        let (_, h, pph) = best[idx(k, i, j, ph)]?;
        starts.push(i);
        j = i;
        i = h;
        ph = pph;
        k -= 1;
    }
    starts.reverse();
    Some((starts, iv))
}

/// Picks the trend (for `auto`) and the merge.
fn merge_with_trend(
    groups: &[Counts],
    total: Counts,
    rows: u64,
    opts: &BinningOptions,
) -> (Vec<usize>, f64, Trend) {
    let run = |t: Trend| merge(groups, total, rows, opts, t).map(|(s, iv)| (s, iv, t));
    let chosen = match opts.trend {
        Trend::Auto => {
            let mono = [Trend::Ascending, Trend::Descending]
                .into_iter()
                .filter_map(run)
                .fold(None::<(Vec<usize>, f64, Trend)>, |b, c| match b {
                    Some(b) if b.1 >= c.1 => Some(b),
                    _ => Some(c),
                });
            let shaped = [Trend::Peak, Trend::Valley]
                .into_iter()
                .filter_map(run)
                .fold(None::<(Vec<usize>, f64, Trend)>, |b, c| match b {
                    Some(b) if b.1 >= c.1 => Some(b),
                    _ => Some(c),
                });
            match (mono, shaped) {
                (Some(m), Some(s)) if s.1 > m.1 * (1.0 + AUTO_SHAPE_MARGIN) => Some(s),
                (Some(m), _) => Some(m),
                (None, s) => s,
            }
        }
        t => run(t),
    };
    chosen.unwrap_or_else(|| (Vec::new(), woe_iv(sum(groups), total).1, opts.trend))
}

/// The number with the fewest significant digits in `[lo, hi]` (`hi` if none is rounder).
fn roundest_between(lo: f64, hi: f64) -> f64 {
    if lo >= hi || !lo.is_finite() || !hi.is_finite() {
        return hi;
    }
    let top = hi.abs().max(lo.abs()).log10().ceil() as i32 + 1;
    for k in (top - 16..=top).rev() {
        let step = 10f64.powi(k);
        let c = (lo / step).ceil() * step;
        if c >= lo && c <= hi {
            return if c == 0.0 { 0.0 } else { c };
        }
        // Halves read as well as whole steps (2.5, 0.05).
        let half = step / 2.0;
        let c = (lo / half).ceil() * half;
        if c >= lo && c <= hi {
            return c;
        }
    }
    hi
}

fn fmt_num(v: f64) -> String {
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

impl WoeBinning {
    /// Bins every feature from its good/bad counts over `grid` (from [`CountGrid::count`] on
    /// pooled rows, or [`CountGrid::from_vector`] on a federation's secure sum).
    pub fn fit(
        grid: &CountGrid,
        counts: &[Vec<Counts>],
        opts: &BinningOptions,
    ) -> Result<Self, FitError> {
        opts.validate().map_err(FitError::Invalid)?;
        if counts.len() != grid.features.len() {
            return Err(FitError::Dimension {
                what: "features in the bin counts",
                expected: grid.features.len(),
                found: counts.len(),
            });
        }
        let total = counts.first().map(|c| sum(c)).unwrap_or([0, 0]);
        if total[0] + total[1] == 0 {
            return Err(FitError::NoRows);
        }
        if total[0] == 0 {
            return Err(FitError::OneClass(1));
        }
        if total[1] == 0 {
            return Err(FitError::OneClass(0));
        }
        let rows = total[0] + total[1];
        let mut features = Vec::with_capacity(counts.len());
        for ((name, slots), c) in grid.features.iter().zip(counts) {
            if c.len() != slots.len() || sum(c) != total {
                return Err(FitError::Invalid(format!(
                    "bin counts of `{name}` do not add up to the rows"
                )));
            }
            let mut f = match slots {
                Slots::Numeric {
                    column,
                    edges,
                    specials,
                } => fit_numeric(name, *column, edges, specials, c, total, rows, opts),
                Slots::Categorical { column, levels } => {
                    fit_categorical(name, *column, levels, c, total, rows, opts)
                }
            };
            f.iv = f.bins.iter().map(|b| b.iv).sum();
            f.kept = f.iv >= opts.iv_floor;
            if !f.kept {
                let why = if f.bins.iter().filter(|b| b.rows() > 0).count() <= 1 {
                    "its values all fall in one bin (a constant column?)".to_string()
                } else {
                    format!("IV {:.4} is below the floor {}", f.iv, opts.iv_floor)
                };
                f.note = Some(format!("left out of the model: {why}"));
            }
            features.push(f);
        }
        if !features.iter().any(|f| f.kept) {
            return Err(FitError::Invalid(format!(
                "no feature reaches the IV floor {} (lower binning.iv_floor)",
                opts.iv_floor
            )));
        }
        Ok(Self {
            options: opts.clone(),
            rows,
            bads: total[1],
            features,
        })
    }

    /// The kept features, each with the bins that have a design column of their own (all
    /// bins for WOE; for indicators every populated bin but the reference).
    pub fn design(&self) -> Vec<(&FeatureBinning, Vec<usize>)> {
        self.features
            .iter()
            .filter(|f| f.kept)
            .map(|f| {
                let own = match self.options.encoding {
                    Encoding::Woe => (0..f.bins.len()).collect(),
                    Encoding::Indicators => f.indicator_bins(),
                };
                (f, own)
            })
            .collect()
    }

    /// Names of the model's columns: the kept features (WOE), or `feature=bin` per indicator.
    pub fn columns(&self) -> Vec<String> {
        match self.options.encoding {
            Encoding::Woe => self
                .features
                .iter()
                .filter(|f| f.kept)
                .map(|f| f.name.clone())
                .collect(),
            Encoding::Indicators => self
                .design()
                .into_iter()
                .flat_map(|(f, own)| {
                    own.into_iter()
                        .map(move |b| format!("{}={}", f.name, f.bins[b].label))
                })
                .collect(),
        }
    }

    /// Columns of the design matrix.
    pub fn width(&self) -> usize {
        match self.options.encoding {
            Encoding::Woe => self.features.iter().filter(|f| f.kept).count(),
            Encoding::Indicators => self.design().iter().map(|(_, own)| own.len()).sum(),
        }
    }

    /// Each kept feature with its term in the model's log-odds for every one of its bins,
    /// given the model's coefficients (in [`WoeBinning::columns`] order): `coefficient x WOE`,
    /// or the bin's own coefficient (0 for the reference bin and empty bins).
    pub fn bin_terms<'a>(
        &'a self,
        coefficients: &[f64],
    ) -> Result<Vec<(&'a FeatureBinning, Vec<f64>)>, FitError> {
        if coefficients.len() != self.width() {
            return Err(FitError::Dimension {
                what: "coefficients of the binned model",
                expected: self.width(),
                found: coefficients.len(),
            });
        }
        let mut at = 0;
        Ok(self
            .design()
            .into_iter()
            .map(|(f, own)| {
                let terms = match self.options.encoding {
                    Encoding::Woe => {
                        let c = coefficients[at];
                        at += 1;
                        f.bins.iter().map(|b| c * b.woe).collect()
                    }
                    Encoding::Indicators => {
                        let mut t = vec![0.0; f.bins.len()];
                        for b in own {
                            t[b] = coefficients[at];
                            at += 1;
                        }
                        t
                    }
                };
                (f, terms)
            })
            .collect())
    }

    /// The design matrix: the WOE of each kept feature's bin, or its bins' indicators, row
    /// by row.
    pub fn transform(&self, data: &Dataset) -> Array2<f64> {
        let design = self.design();
        let rows = data.rows();
        let width = match self.options.encoding {
            Encoding::Woe => design.len(),
            Encoding::Indicators => design.iter().map(|(_, own)| own.len()).sum(),
        };
        let mut x = Array2::zeros((rows, width));
        let mut at = 0;
        for (f, own) in design {
            match self.options.encoding {
                Encoding::Woe => {
                    for r in 0..rows {
                        x[[r, at]] = f.bins.get(f.bin_of_row(data, r)).map_or(0.0, |b| b.woe);
                    }
                    at += 1;
                }
                Encoding::Indicators => {
                    // Each bin's column, looked up once rather than searched row by row.
                    let mut column = vec![None; f.bins.len()];
                    for (k, &b) in own.iter().enumerate() {
                        column[b] = Some(at + k);
                    }
                    for r in 0..rows {
                        if let Some(Some(c)) = column.get(f.bin_of_row(data, r)) {
                            x[[r, *c]] = 1.0;
                        }
                    }
                    at += own.len();
                }
            }
        }
        x
    }

    /// The feature report as a table: IV, bins, counts, default rate and WOE per bin, trend.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let mut order: Vec<&FeatureBinning> = self.features.iter().collect();
        order.sort_by(|a, b| b.iv.total_cmp(&a.iv));
        for f in order {
            out.push_str(&format!(
                "{}  IV {:.4}  trend {}{}\n",
                f.name,
                f.iv,
                f.trend,
                f.note
                    .as_ref()
                    .map(|n| format!("  ({n})"))
                    .unwrap_or_default()
            ));
            out.push_str(&format!(
                "  {:<34} {:>9} {:>7} {:>8} {:>8} {:>8}\n",
                "bin", "rows", "share", "bad rate", "WOE", "IV"
            ));
            for b in &f.bins {
                out.push_str(&format!(
                    "  {:<34} {:>9} {:>7.4} {:>8.4} {:>8.4} {:>8.4}\n",
                    b.label,
                    b.rows(),
                    b.rows() as f64 / self.rows.max(1) as f64,
                    if b.rows() > 0 { b.default_rate() } else { 0.0 },
                    b.woe,
                    b.iv
                ));
            }
        }
        out
    }
}

#[allow(clippy::too_many_arguments)]
fn fit_numeric(
    name: &str,
    column: usize,
    edges: &[f64],
    specials: &[f64],
    c: &[Counts],
    total: Counts,
    rows: u64,
    opts: &BinningOptions,
) -> FeatureBinning {
    let cells = edges.len() + 1;
    let regular = &c[..cells];
    let pre = prebin(regular, rows, opts);
    let mut bounds = vec![0];
    bounds.extend(&pre);
    bounds.push(cells);
    let groups: Vec<Counts> = bounds
        .windows(2)
        .map(|w| sum(&regular[w[0]..w[1]]))
        .collect();
    let (starts, _, trend) = merge_with_trend(&groups, total, rows, opts);
    // Cell s starts at edges[s - 1]; any cut between the end of the last populated cell
    // before it and that edge splits the counts the same way: the roundest one reads best.
    let cut_cells: Vec<usize> = starts.iter().map(|&g| bounds[g]).collect();
    let cuts: Vec<f64> = cut_cells
        .iter()
        .map(|&s| {
            let hi = edges[s - 1];
            let lo = (0..s)
                .rev()
                .find(|&c| regular[c][0] + regular[c][1] > 0)
                .map_or(hi, |c| edges[c]);
            roundest_between(lo, hi)
        })
        .collect();
    let mut run_bounds = vec![0];
    run_bounds.extend(&cut_cells);
    run_bounds.push(cells);
    let mut bins: Vec<Bin> = run_bounds
        .windows(2)
        .enumerate()
        .map(|(i, w)| {
            let lo = if i == 0 {
                "-inf".to_string()
            } else {
                fmt_num(cuts[i - 1])
            };
            let hi = cuts.get(i).map_or("inf".to_string(), |v| fmt_num(*v));
            make_bin(format!("[{lo}, {hi})"), sum(&regular[w[0]..w[1]]), total)
        })
        .collect();
    bins.push(make_bin("missing".into(), c[cells], total));
    for (k, s) in specials.iter().enumerate() {
        bins.push(make_bin(
            format!("special {}", fmt_num(*s)),
            c[cells + 1 + k],
            total,
        ));
    }
    FeatureBinning {
        name: name.to_string(),
        rule: BinRule::Numeric {
            column,
            cuts,
            specials: specials.to_vec(),
        },
        bins,
        iv: 0.0,
        trend,
        kept: false,
        note: None,
    }
}

fn fit_categorical(
    name: &str,
    column: usize,
    levels: &[String],
    c: &[Counts],
    total: Counts,
    rows: u64,
    opts: &BinningOptions,
) -> FeatureBinning {
    let l = levels.len();
    // Levels big enough stand alone; rare ones join the `other` slot (unseen levels).
    let mut groups: Vec<(Vec<usize>, Counts)> = Vec::new();
    let mut other: (Vec<usize>, Counts) = (vec![l], c[l]);
    for (i, &ci) in c[..l].iter().enumerate() {
        if opts.valid(ci, rows) {
            groups.push((vec![i], ci));
        } else {
            other.0.push(i);
            other.1 = add(other.1, ci);
        }
    }
    let other_populated = other.1[0] + other.1[1] > 0;
    if other_populated {
        groups.push(other.clone());
    }
    // By default rate, then merged like ordered prebins (ascending in that order).
    groups.sort_by(|a, b| {
        let ra = a.1[1] as f64 / (a.1[0] + a.1[1]).max(1) as f64;
        let rb = b.1[1] as f64 / (b.1[0] + b.1[1]).max(1) as f64;
        ra.total_cmp(&rb).then(a.0.cmp(&b.0))
    });
    let counts: Vec<Counts> = groups.iter().map(|g| g.1).collect();
    let sorted_opts = BinningOptions {
        trend: Trend::Ascending,
        ..opts.clone()
    };
    let (starts, _, _) = merge_with_trend(&counts, total, rows, &sorted_opts);
    let mut bounds = vec![0];
    bounds.extend(&starts);
    bounds.push(groups.len());
    let mut level_bins = vec![usize::MAX; l];
    let mut other_bin = usize::MAX;
    let mut bins = Vec::new();
    for (b, w) in bounds.windows(2).enumerate() {
        let mut names = Vec::new();
        let mut cb = [0, 0];
        for g in &groups[w[0]..w[1]] {
            cb = add(cb, g.1);
            for &i in &g.0 {
                if i == l {
                    other_bin = b;
                    names.push("other".to_string());
                } else {
                    level_bins[i] = b;
                    names.push(levels[i].clone());
                }
            }
        }
        bins.push(make_bin(names.join(", "), cb, total));
    }
    if other_bin == usize::MAX {
        other_bin = bins.len();
        let mut names = vec!["other".to_string()];
        for (i, lb) in level_bins.iter_mut().enumerate() {
            if *lb == usize::MAX {
                *lb = other_bin;
                names.push(levels[i].clone());
            }
        }
        bins.push(make_bin(names.join(", "), other.1, total));
    }
    for lb in level_bins.iter_mut() {
        if *lb == usize::MAX {
            *lb = other_bin;
        }
    }
    let missing_bin = bins.len();
    bins.push(make_bin("missing".into(), c[l + 1], total));
    FeatureBinning {
        name: name.to_string(),
        rule: BinRule::Categorical {
            column,
            levels: levels.to_vec(),
            level_bins,
            other_bin,
            missing_bin,
        },
        bins,
        iv: 0.0,
        trend: Trend::Ascending,
        kept: false,
        note: None,
    }
}

/// Scales (powers of two at or above each numeric feature's largest |value|) of one data
/// set, as the federation's magnitudes session gives them for many: for binning one
/// institution's rows on their own.
pub fn local_scales(schema: &Schema, data: &Dataset) -> Result<Vec<f64>, FitError> {
    let c = crate::federated::magnitude_contribution(data);
    crate::federated::scales_from_magnitudes(schema, &c.values)
}

/// Bins one data set on its own rows (what a federation computes from its sums).
pub fn fit_pooled(
    schema: &Schema,
    data: &Dataset,
    opts: &BinningOptions,
) -> Result<WoeBinning, FitError> {
    let grid = CountGrid::new(schema, &local_scales(schema, data)?)?;
    let counts = grid.count(data)?;
    WoeBinning::fit(&grid, &counts, opts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{SynthConfig, generate};

    /// The pooled rows of a generated federation (special codes declared).
    fn pooled(train_rows: usize) -> (Schema, Dataset) {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = SynthConfig::demo(5, train_rows, 10);
        cfg.institutions.truncate(1);
        cfg.institutions[0].share = 1.0;
        let d = generate(&cfg);
        d.write_dir(dir.path()).unwrap();
        let schema = Schema::load(&dir.path().join("schema.json")).unwrap();
        let name = &d.participants[0].0;
        let data = crate::data::load_csv(
            &dir.path().join(format!("participants/{name}.csv")),
            &schema,
            crate::data::LabelMode::Required,
        )
        .unwrap();
        (schema, data)
    }

    fn counts(pairs: &[(u64, u64)]) -> Vec<Counts> {
        pairs.iter().map(|&(g, b)| [g, b]).collect()
    }

    #[test]
    fn grid_cells_follow_the_edges() {
        let e = grid_edges(8.0);
        assert!(e.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(
            e.len(),
            2 * (GRID_OCTAVES * STEPS_PER_OCTAVE + 1) as usize + 1
        );
        // 1.0 and 2.0 are edges (powers of two of a power-of-two scale).
        assert!(e.contains(&1.0) && e.contains(&2.0) && e.contains(&0.0));
        let cells = e.len() + 1;
        assert_eq!(numeric_slot(0.0, &e, 0, cells), e.len() / 2 + 1);
        assert_eq!(numeric_slot(f64::NAN, &e, 1, cells), cells);
        assert_eq!(
            numeric_slot(crate::data::special_nan(0), &e, 1, cells),
            cells + 1
        );
    }

    #[test]
    fn cuts_are_the_roundest_numbers_that_split_the_counts_alike() {
        assert_eq!(roundest_between(2.088, 2.9537), 2.5);
        assert_eq!(roundest_between(27.3, 28.1), 28.0);
        assert_eq!(roundest_between(0.0312, 0.0318), 0.0315);
        assert_eq!(roundest_between(-0.4, 0.2), 0.0);
        assert_eq!(roundest_between(5.0, 5.0), 5.0);
        assert_eq!(roundest_between(900.0, 1100.0), 1000.0);
    }

    #[test]
    fn merge_maximises_iv_under_an_ascending_trend() {
        // Rates 0.1, 0.3, 0.2, 0.5: ascending must merge the middle pair.
        let g = counts(&[(90, 10), (70, 30), (80, 20), (50, 50)]);
        let total = sum(&g);
        let opts = BinningOptions {
            min_bin_share: 0.0,
            min_class_count: 0,
            ..BinningOptions::default()
        };
        let (starts, iv) = merge(&g, total, 400, &opts, Trend::Ascending).unwrap();
        assert_eq!(starts, vec![1, 3]);
        let expect: f64 = [
            woe_iv([90, 10], total).1,
            woe_iv([150, 50], total).1,
            woe_iv([50, 50], total).1,
        ]
        .iter()
        .sum();
        assert!((iv - expect).abs() < 1e-12);
        // A peak may stay ascending, so it never has less IV.
        let (_, peak_iv) = merge(&g, total, 400, &opts, Trend::Peak).unwrap();
        assert!(peak_iv >= iv - 1e-12);
        let two = BinningOptions {
            max_bins: 2,
            ..opts.clone()
        };
        let (s2, _) = merge(&g, total, 400, &two, Trend::Ascending).unwrap();
        assert_eq!(s2.len(), 1);
    }

    #[test]
    fn minimum_share_or_class_counts_decide_which_bins_may_stand() {
        let opts = BinningOptions {
            min_bin_share: 0.05,
            min_class_count: 100,
            ..BinningOptions::default()
        };
        assert!(opts.valid([500, 0], 10_000));
        assert!(!opts.valid([300, 99], 100_000));
        // Under 5 % but with 100 of each class: a rare, well-populated segment stands.
        assert!(opts.valid([300, 150], 100_000));
    }

    #[test]
    fn pooled_binning_has_monotone_rates_and_consistent_counts() {
        let (schema, data) = pooled(20_000);
        let b = fit_pooled(&schema, &data, &BinningOptions::default()).unwrap();
        assert_eq!(b.features.len(), schema.features.len());
        for f in &b.features {
            let n: u64 = f.bins.iter().map(Bin::rows).sum();
            assert_eq!(n, b.rows, "{}", f.name);
            let regular: Vec<&Bin> = match &f.rule {
                BinRule::Numeric { cuts, .. } => f.bins[..cuts.len() + 1].iter().collect(),
                BinRule::Categorical { .. } => continue,
            };
            assert!(regular.len() <= 10);
            let rates: Vec<f64> = regular.iter().map(|b| b.default_rate()).collect();
            match f.trend {
                Trend::Ascending => assert!(rates.windows(2).all(|w| w[0] < w[1]), "{rates:?}"),
                Trend::Descending => {
                    assert!(rates.windows(2).all(|w| w[0] > w[1]), "{rates:?}")
                }
                _ => {}
            }
            for bin in &regular {
                assert!(
                    bin.rows() as f64 >= 0.05 * b.rows as f64
                        || (bin.good >= 100 && bin.bad >= 100),
                    "{}: {bin:?}",
                    f.name
                );
            }
        }
        assert!(b.features.iter().any(|f| f.kept && f.iv > 0.05));
        // The cuts (rounded within the gaps of the grid) put every row in the bin whose
        // counts it was part of.
        for f in &b.features {
            let mut recount = vec![[0u64; 2]; f.bins.len()];
            for r in 0..data.rows() {
                let y = data.labels.as_ref().unwrap()[r];
                recount[f.bin_of_row(&data, r)][usize::from(y > 0)] += 1;
            }
            let counted: Vec<[u64; 2]> = f.bins.iter().map(|b| [b.good, b.bad]).collect();
            assert_eq!(recount, counted, "{}", f.name);
        }
        // Transform, indicators (the default): a row has a 1 in its bin's column of each
        // kept feature, or no 1 at all when its bin is the reference (most populated) one.
        let x = b.transform(&data);
        assert_eq!(x.ncols(), b.columns().len());
        assert_eq!(x.ncols(), b.width());
        let mut at = 0;
        for (f, own) in b.design() {
            let reference = (0..f.bins.len())
                .max_by_key(|&i| (f.bins[i].rows(), std::cmp::Reverse(i)))
                .unwrap();
            assert!(!own.contains(&reference), "{}", f.name);
            assert!(own.iter().all(|&k| f.bins[k].rows() > 0), "{}", f.name);
            for r in 0..200 {
                let bin = f.bin_of_row(&data, r);
                let ones: Vec<usize> = (0..own.len()).filter(|&k| x[[r, at + k]] == 1.0).collect();
                let zeros = (0..own.len()).filter(|&k| x[[r, at + k]] == 0.0).count();
                assert_eq!(ones.len() + zeros, own.len());
                match own.iter().position(|&o| o == bin) {
                    Some(k) => assert_eq!(ones, [k], "{} row {r}", f.name),
                    None => {
                        assert_eq!(bin, reference, "{} row {r}", f.name);
                        assert!(ones.is_empty());
                    }
                }
            }
            at += own.len();
        }
        assert_eq!(at, x.ncols());
        // Transform, WOE: every row of a kept feature gets the WOE of its bin.
        let w = WoeBinning {
            options: BinningOptions {
                encoding: Encoding::Woe,
                ..b.options.clone()
            },
            ..b.clone()
        };
        let x = w.transform(&data);
        assert_eq!(x.ncols(), w.columns().len());
        assert_eq!(x.ncols(), b.features.iter().filter(|f| f.kept).count());
        let f0 = w.features.iter().find(|f| f.kept).unwrap();
        for r in 0..50 {
            assert_eq!(x[[r, 0]], f0.bins[f0.bin_of_row(&data, r)].woe);
        }
    }

    #[test]
    fn counts_survive_the_flat_vector() {
        let (schema, data) = pooled(500);
        let grid = CountGrid::new(&schema, &local_scales(&schema, &data).unwrap()).unwrap();
        let c = grid.count(&data).unwrap();
        let v = CountGrid::to_vector(&c);
        assert_eq!(v.len(), grid.vector_len());
        let noisy: Vec<f64> = v.iter().map(|x| x + 1e-7).collect();
        assert_eq!(grid.from_vector(&noisy).unwrap(), c);
        assert!(grid.from_vector(&v[1..]).is_err());
    }

    #[test]
    fn special_codes_and_rare_levels_get_their_own_bins() {
        let levels: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        // a: 600 rows, b: 380, c: 20 (rare, joins other), other: 0, missing: 0.
        let c = counts(&[(540, 60), (300, 80), (10, 10), (0, 0), (0, 0)]);
        let total = sum(&c);
        let f = fit_categorical("k", 0, &levels, &c, total, 1000, &BinningOptions::default());
        let BinRule::Categorical {
            level_bins,
            other_bin,
            ..
        } = &f.rule
        else {
            panic!("categorical")
        };
        assert_eq!(level_bins[2], *other_bin);
        assert_ne!(level_bins[0], level_bins[1]);
        assert_eq!(f.category_bin(CODE_OTHER), *other_bin);
        assert_eq!(f.category_bin(77), *other_bin);
        let edges = grid_edges(128.0);
        let cells = edges.len() + 1;
        let mut nc = vec![[0u64, 0]; cells + 3];
        nc[numeric_slot(1.0, &edges, 2, cells)] = [800, 100];
        nc[numeric_slot(5.0, &edges, 2, cells)] = [500, 300];
        nc[cells] = [50, 20];
        nc[cells + 2] = [10, 40];
        let t = sum(&nc);
        let f = fit_numeric(
            "n",
            0,
            &edges,
            &[96.0, 98.0],
            &nc,
            t,
            1820,
            &BinningOptions::default(),
        );
        assert_eq!(f.bins.len(), 2 + 1 + 2);
        assert_eq!(f.numeric_bin(crate::data::special_nan(1)), 4);
        assert_eq!(f.bins[4].bad, 40);
        assert_eq!(f.bins[3].rows(), 0);
        assert_eq!(f.bins[3].woe, 0.0);
        assert_eq!(f.numeric_bin(f64::NAN), 2);
        assert_eq!(f.numeric_bin(1.0), 0);
        assert_eq!(f.numeric_bin(5.0), 1);
    }
}

//! What the PMML and ONNX writers need of a binned model (`binning = "woe"`), taken from the
//! model file once: for every kept feature, how a raw value finds its bin (exactly as
//! [`fedrisk_models::binning::FeatureBinning::bin_of_row`] does after the data loader has
//! read it) and what the bin contributes to the design (its WOE, or its indicator column).
//!
//! fedrisk's lookup, restated:
//! - numeric: a missing value (a missing token, an empty field, NaN) is the missing bin; a
//!   value equal to the `k`-th declared special code (the first `k` if a code is listed twice)
//!   is the bin of special code `k`; any other value `v` is regular bin `i`, the number of
//!   cuts at or below `v`: bin `i` is `[cuts[i-1], cuts[i])`, closed on the left, open on the
//!   right;
//! - categorical: a missing token is the missing bin (even if a level has the same text), a
//!   level is its level's bin, any other text is the `other` bin.

use fedrisk_models::ModelFile;
use fedrisk_models::binning::{BinRule, Encoding, WoeBinning};
use fedrisk_models::schema::FeatureKind;

use crate::ExportError;

/// How a raw value of one feature finds its bin.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Lookup {
    Numeric {
        /// Index among the numeric inputs (schema order).
        column: usize,
        /// Ascending cut points: regular bin `i` is `[cuts[i-1], cuts[i])`.
        cuts: Vec<f64>,
        /// Each distinct declared special code and its bin.
        specials: Vec<(f64, usize)>,
        missing_bin: usize,
    },
    Categorical {
        /// Index among the categorical inputs (schema order).
        column: usize,
        /// Each level (not a missing token) and its bin, first occurrence only.
        levels: Vec<(String, usize)>,
        other_bin: usize,
        missing_bin: usize,
    },
}

/// What a feature's bin puts into the design.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Design {
    /// One column, the bin's WOE, with the feature's coefficient.
    Woe { woe: Vec<f64>, coefficient: f64 },
    /// One 0/1 column per bin listed, with its coefficient; other bins add nothing.
    Indicators { columns: Vec<(usize, f64)> },
}

/// One kept feature of a binned model.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Feature {
    pub name: String,
    pub lookup: Lookup,
    pub design: Design,
}

/// A part of the real line that falls in one bin: regular bins less their special codes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Piece {
    /// Lower end (`None`: unbounded) and whether it is included.
    pub lo: Option<f64>,
    pub lo_closed: bool,
    /// Upper end (`None`: unbounded) and whether it is included.
    pub hi: Option<f64>,
    pub hi_closed: bool,
    pub bin: usize,
}

fn unsupported(reason: String) -> ExportError {
    ExportError::Unsupported { reason }
}

/// The kept features of `woe`, with their coefficients from `model`.
pub(crate) fn features(model: &ModelFile, woe: &WoeBinning) -> Result<Vec<Feature>, ExportError> {
    // Checks the coefficient count against the design.
    woe.bin_terms(&model.coefficients)
        .map_err(|e| unsupported(e.to_string()))?;
    let mut at = 0;
    let mut out = Vec::new();
    for (f, own) in woe.design() {
        let schema_feature = model
            .schema
            .features
            .iter()
            .find(|s| s.name == f.name)
            .ok_or_else(|| {
                unsupported(format!(
                    "binned feature `{}` is not in the model's schema",
                    f.name
                ))
            })?;
        let lookup = match (&f.rule, &schema_feature.kind) {
            (
                BinRule::Numeric {
                    column,
                    cuts,
                    specials,
                },
                FeatureKind::Numeric { special_values },
            ) => {
                if cuts.iter().any(|c| !c.is_finite()) || cuts.windows(2).any(|w| w[0] > w[1]) {
                    return Err(unsupported(format!(
                        "feature `{}`: its cuts are not finite and ascending",
                        f.name
                    )));
                }
                let missing_bin = cuts.len() + 1;
                if f.bins.len() != cuts.len() + 2 + specials.len() {
                    return Err(unsupported(format!(
                        "feature `{}`: {} bins for {} cuts and {} special codes",
                        f.name,
                        f.bins.len(),
                        cuts.len(),
                        specials.len()
                    )));
                }
                // The loader turns the k-th code (first match) into special k; binning puts
                // a code beyond the rule's own list in the missing bin.
                let mut seen: Vec<(f64, usize)> = Vec::new();
                for (k, v) in special_values.iter().enumerate() {
                    if v.is_finite() && !seen.iter().any(|(s, _)| s == v) {
                        let bin = if k < specials.len() {
                            cuts.len() + 2 + k
                        } else {
                            missing_bin
                        };
                        seen.push((*v, bin));
                    }
                }
                Lookup::Numeric {
                    column: *column,
                    cuts: cuts.clone(),
                    specials: seen,
                    missing_bin,
                }
            }
            (
                BinRule::Categorical {
                    column,
                    levels,
                    level_bins,
                    other_bin,
                    missing_bin,
                },
                FeatureKind::Categorical { .. },
            ) => {
                let top = f.bins.len();
                if level_bins.len() != levels.len()
                    || level_bins.iter().any(|b| *b >= top)
                    || *other_bin >= top
                    || *missing_bin >= top
                {
                    return Err(unsupported(format!(
                        "feature `{}`: its level bins do not match its {top} bins",
                        f.name
                    )));
                }
                let mut kept: Vec<(String, usize)> = Vec::new();
                for (l, b) in levels.iter().zip(level_bins) {
                    let is_token = model.schema.missing_tokens.iter().any(|t| t == l);
                    if !is_token && !kept.iter().any(|(k, _)| k == l) {
                        kept.push((l.clone(), *b));
                    }
                }
                Lookup::Categorical {
                    column: *column,
                    levels: kept,
                    other_bin: *other_bin,
                    missing_bin: *missing_bin,
                }
            }
            _ => {
                return Err(unsupported(format!(
                    "feature `{}`: its binning and its schema kind differ",
                    f.name
                )));
            }
        };
        let design = match woe.options.encoding {
            Encoding::Woe => {
                let coefficient = model.coefficients[at];
                at += 1;
                Design::Woe {
                    woe: f.bins.iter().map(|b| b.woe).collect(),
                    coefficient,
                }
            }
            Encoding::Indicators => {
                let columns = own
                    .iter()
                    .map(|&b| {
                        let c = model.coefficients[at];
                        at += 1;
                        (b, c)
                    })
                    .collect();
                Design::Indicators { columns }
            }
        };
        if let Design::Woe { woe, .. } = &design
            && woe.iter().any(|w| !w.is_finite())
        {
            return Err(ExportError::NonFinite { what: "bins' WOE" });
        }
        out.push(Feature {
            name: f.name.clone(),
            lookup,
            design,
        });
    }
    Ok(out)
}

/// The regular bins of a numeric feature as parts of the line, each special code cut out as
/// a point of its own bin (`[s, s]`), so that the parts are disjoint and cover every finite
/// number. Empty parts (two equal cuts) are left out.
pub(crate) fn pieces(cuts: &[f64], specials: &[(f64, usize)]) -> Vec<Piece> {
    let mut points: Vec<(f64, usize)> = specials.to_vec();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut out = Vec::new();
    let mut push = |p: Piece| {
        let empty = match (p.lo, p.hi) {
            (Some(l), Some(h)) => l > h || (l == h && !(p.lo_closed && p.hi_closed)),
            _ => false,
        };
        if !empty {
            out.push(p);
        }
    };
    for i in 0..=cuts.len() {
        let lo = (i > 0).then(|| cuts[i - 1]);
        let hi = cuts.get(i).copied();
        let inside = |v: f64| lo.is_none_or(|l| v >= l) && hi.is_none_or(|h| v < h);
        let mut start = lo;
        let mut start_closed = lo.is_some();
        for &(s, bin) in points.iter().filter(|(s, _)| inside(*s)) {
            push(Piece {
                lo: start,
                lo_closed: start_closed,
                hi: Some(s),
                hi_closed: false,
                bin: i,
            });
            push(Piece {
                lo: Some(s),
                lo_closed: true,
                hi: Some(s),
                hi_closed: true,
                bin,
            });
            start = Some(s);
            start_closed = false;
        }
        push(Piece {
            lo: start,
            lo_closed: start_closed,
            hi,
            hi_closed: false,
            bin: i,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(pieces: &[Piece], v: f64) -> Vec<usize> {
        pieces
            .iter()
            .filter(|p| {
                let above = match p.lo {
                    None => true,
                    Some(l) if p.lo_closed => v >= l,
                    Some(l) => v > l,
                };
                let below = match p.hi {
                    None => true,
                    Some(h) if p.hi_closed => v <= h,
                    Some(h) => v < h,
                };
                above && below
            })
            .map(|p| p.bin)
            .collect()
    }

    /// fedrisk's own rule: the number of cuts at or below the value, unless it is a code.
    fn fedrisk_bin(v: f64, cuts: &[f64], specials: &[(f64, usize)]) -> usize {
        specials
            .iter()
            .find(|(s, _)| *s == v)
            .map_or_else(|| cuts.partition_point(|c| *c <= v), |(_, b)| *b)
    }

    #[test]
    fn pieces_cover_the_line_once_and_agree_with_the_bin_lookup_at_every_edge() {
        let cuts = [-1.0, 0.0, 2.5, 2.5, 96.0];
        // 96 sits on a cut, 98 inside the last bin, -5 inside the first, 0.5 inside one.
        let specials = [(98.0, 8), (96.0, 9), (-5.0, 10), (0.5, 11)];
        let p = pieces(&cuts, &specials);
        let mut probes: Vec<f64> = vec![-1e300, 1e300, -0.0, 0.0, 1.0, 97.0, 200.0];
        for c in cuts.iter().chain(specials.iter().map(|(s, _)| s)) {
            probes.extend([*c, c.next_down(), c.next_up()]);
        }
        for v in probes {
            let hits = find(&p, v);
            assert_eq!(hits.len(), 1, "{v}: {hits:?} in {p:?}");
            assert_eq!(hits[0], fedrisk_bin(v, &cuts, &specials), "{v}");
        }
        // No cut, no code: one part, the whole line.
        assert_eq!(
            pieces(&[], &[]),
            [Piece {
                lo: None,
                lo_closed: false,
                hi: None,
                hi_closed: false,
                bin: 0
            }]
        );
    }
}

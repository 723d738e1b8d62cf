//! Fixed-point vectors in Z_2^64 and their decoding as two's-complement sums: weighted
//! means `[w, w*q(x_1), ..., w*q(x_d)]` with `q(x) = round(clip(x) * 2^f)`
//! ([`encode_weighted`], for simulations), and what the federation sends, an institution's
//! sums rounded once with no weight slot ([`encode_scaled`]).
//!
//! The weight `w` (a sample count) travels inside the masked vector, so the
//! coordinator learns only the summed weight, never an individual count.

use rand_core::Rng;

use crate::config::FixedPointParams;
use crate::error::{Result, SecAggError};

/// `q(x)`: clip to `[-clip, clip]`, scale by `2^f`, round to nearest.
pub fn quantize(x: f64, params: &FixedPointParams) -> Result<i64> {
    quantize_within(x, params.clip, params)
}

/// `x` clipped to `[-bound, bound]`, scaled by `2^f` and rounded to nearest.
fn quantize_within(x: f64, bound: f64, params: &FixedPointParams) -> Result<i64> {
    if !x.is_finite() {
        return Err(SecAggError::FixedPoint("non-finite value"));
    }
    let scaled = (x.clamp(-bound, bound) * (params.frac_bits as f64).exp2()).round();
    if scaled.abs() >= 9.2e18 {
        return Err(SecAggError::FixedPoint("value does not fit in 63 bits"));
    }
    Ok(scaled as i64)
}

/// Encodes `values` with `weight` (capped at `2^max_weight_bits`) as
/// `[w, w*q(x_1), ...]`, each entry a two's-complement `u64`.
pub fn encode_weighted(values: &[f64], weight: u64, params: &FixedPointParams) -> Result<Vec<u64>> {
    let w = weight.min(params.max_weight());
    let mut out = Vec::with_capacity(values.len() + 1);
    out.push(w);
    for &x in values {
        let q = i128::from(quantize(x, params)?) * i128::from(w);
        let q =
            i64::try_from(q).map_err(|_| SecAggError::FixedPoint("weighted value overflows"))?;
        out.push(q as u64);
    }
    Ok(out)
}

/// Encodes an institution's sums over its `weight` rows as `[1, r(s_1), ...]`, with
/// `r(s) = round(clip(s) * 2^f)` and `clip` bounding each sum at `weight` times the
/// per-row clip. The weight is not itself sent, and slot 0 counts contributors: row counts
/// are constant over a job, and a weight slot summed in every session would give one
/// institution's count as the difference of two sessions whose survivors differ by it.
///
/// Why the sum is rounded, not `weight` times a rounded mean: `w * round(s / w * 2^f)`
/// differs from `s * 2^f` by an error that depends on `w`, and where the true sum is known
/// to be an integer (a count, half a count at round 1's zero coefficients) the coordinator
/// reads the total error off the summed word and from it, slot by slot, the row count of
/// an institution alone in a rare slot. A sum with at most `f` binary places (every count,
/// half and quarter count) is encoded exactly, so that error is zero.
pub fn encode_scaled(sums: &[f64], weight: u64, params: &FixedPointParams) -> Result<Vec<u64>> {
    let bound = params.clip * weight.clamp(1, params.max_weight()) as f64;
    let mut out = Vec::with_capacity(sums.len() + 1);
    out.push(1);
    for &s in sums {
        out.push(quantize_within(s, bound, params)? as u64);
    }
    Ok(out)
}

/// Raw integer mode (histograms, counts): `[weight_slot, c_1, ..., c_d]`,
/// no scaling, summed exactly mod 2^64.
pub fn encode_counts(counts: &[u64], weight_slot: u64) -> Vec<u64> {
    let mut out = Vec::with_capacity(counts.len() + 1);
    out.push(weight_slot);
    out.extend_from_slice(counts);
    out
}

/// Splits an aggregated raw-integer vector into `(weight slot, counts)`.
pub fn decode_counts(sum: &[u64]) -> Result<(u64, Vec<u64>)> {
    match sum.split_first() {
        Some((w, rest)) => Ok((*w, rest.to_vec())),
        None => Err(SecAggError::FixedPoint("empty sum")),
    }
}

/// The weighted sum `sum_u w_u * q(x_u)` as reals (each slot read as `i64`,
/// divided by `2^f`), with the total weight. For Newton steps (sums of
/// gradients and Hessians) use this rather than the mean.
pub fn decode_sum(sum: &[u64], params: &FixedPointParams) -> Result<(u64, Vec<f64>)> {
    let (w, rest) = sum
        .split_first()
        .ok_or(SecAggError::FixedPoint("empty sum"))?;
    let scale = (-(params.frac_bits as f64)).exp2();
    Ok((
        *w,
        rest.iter().map(|&v| (v as i64) as f64 * scale).collect(),
    ))
}

/// The weighted mean `sum_u w_u q(x_u) / sum_u w_u` and the total weight.
pub fn decode_mean(sum: &[u64], params: &FixedPointParams) -> Result<(u64, Vec<f64>)> {
    let (w, s) = decode_sum(sum, params)?;
    if w == 0 {
        return Err(SecAggError::FixedPoint("total weight is zero"));
    }
    let inv = 1.0 / w as f64;
    Ok((w, s.into_iter().map(|v| v * inv).collect()))
}

/// One standard normal draw (Box-Muller) from the injected RNG.
fn standard_normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    // 53-bit uniforms in (0, 1].
    let u1 = ((rng.next_u64() >> 11) as f64 + 1.0) * (-53f64).exp2();
    let u2 = (rng.next_u64() >> 11) as f64 * (-53f64).exp2();
    (-2.0 * u1.ln()).sqrt() * (2.0 * core::f64::consts::PI * u2).cos()
}

/// Adds rounded Gaussian noise of standard deviation `sigma / sqrt(t)` to every
/// value slot (slot 0, the weight, is left alone). Rounding adds variance
/// (about 1/12), so the per-participant variance is at least `sigma^2 / t` and
/// with `t` or more survivors the total is at least `sigma^2`.
pub fn add_dp_noise<R: Rng + ?Sized>(vector: &mut [u64], sigma: f64, t: u32, rng: &mut R) {
    if sigma <= 0.0 || t == 0 {
        return;
    }
    let sd = sigma / f64::from(t).sqrt();
    for v in vector.iter_mut().skip(1) {
        let noise = (standard_normal(rng) * sd).round() as i64;
        *v = v.wrapping_add(noise as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> FixedPointParams {
        FixedPointParams {
            frac_bits: 16,
            clip: 8.0,
            max_weight_bits: 20,
        }
    }

    #[test]
    fn encode_decode_roundtrip_within_half_ulp() {
        let p = params();
        let xs = [0.0, 1.25, -3.25, 7.999, -8.5, 100.0];
        let v = encode_weighted(&xs, 3, &p).unwrap();
        assert_eq!(v[0], 3);
        let (w, mean) = decode_mean(&v, &p).unwrap();
        assert_eq!(w, 3);
        for (x, m) in xs.iter().zip(mean) {
            let c = x.clamp(-8.0, 8.0);
            assert!((c - m).abs() <= (-17f64).exp2(), "{c} vs {m}");
        }
    }

    #[test]
    fn non_finite_is_an_error() {
        let p = params();
        assert!(encode_weighted(&[f64::NAN], 1, &p).is_err());
        assert!(encode_weighted(&[f64::INFINITY], 1, &p).is_err());
        assert!(encode_weighted(&[f64::NEG_INFINITY], 1, &p).is_err());
    }

    #[test]
    fn scaled_inputs_hide_the_weight_and_keep_the_sum() {
        let p = params();
        let a = encode_scaled(&[3.0 * 0.5, 3.0 * -0.25], 3, &p).unwrap();
        let b = encode_scaled(&[5.0 * 0.25, 5.0 * 1.0], 5, &p).unwrap();
        let sum: Vec<u64> = a.iter().zip(&b).map(|(x, y)| x.wrapping_add(*y)).collect();
        let (contributors, s) = decode_sum(&sum, &p).unwrap();
        assert_eq!(contributors, 2);
        assert!((s[0] - (3.0 * 0.5 + 5.0 * 0.25)).abs() < 1e-6);
        assert!((s[1] - (3.0 * -0.25 + 5.0 * 1.0)).abs() < 1e-6);
        // The per-row clip bounds each sum at weight x clip.
        let big = encode_scaled(&[1e9, -1e9], 3, &p).unwrap();
        let (_, s) = decode_sum(&big, &p).unwrap();
        assert_eq!(s, vec![24.0, -24.0]);
        assert!(encode_scaled(&[f64::NAN], 3, &p).is_err());
    }

    #[test]
    fn attack_the_rounding_error_of_a_sum_of_counts_does_not_depend_on_the_row_count() {
        // A rare cell held by one institution: c = 3 of its n rows (a missing count, a
        // default count, half the rows less the defaults at round 1). Rounding `c / n` and
        // multiplying by n leaves an error that depends on n, which the coordinator reads
        // off the summed word because it knows the true total is an integer; the sum
        // itself is encoded with no error at all, whatever n is.
        let p = FixedPointParams {
            frac_bits: 36,
            clip: 1.0,
            max_weight_bits: 24,
        };
        let scale = 36f64.exp2();
        // The true totals are multiples of a quarter: what the word holds beyond one.
        let quarter = 34f64.exp2();
        let residual = |word: u64| {
            let v = word as i64;
            v - ((v as f64 / quarter).round() * quarter) as i64
        };
        let mut leaked = std::collections::BTreeSet::new();
        for n in [12_345u64, 50_000, 777_777, 3_000_000] {
            for c in [3.0, 3.5, 0.25, 1234.0] {
                let old = encode_weighted(&[c / n as f64], n, &p).unwrap();
                leaked.insert(residual(old[1]));
                let new = encode_scaled(&[c], n, &p).unwrap();
                assert_eq!(residual(new[1]), 0, "n = {n}, c = {c}");
                assert_eq!(new[1] as i64, (c * scale) as i64);
            }
        }
        assert!(
            leaked.len() > 4,
            "the old encoding's error varied with n: {leaked:?}"
        );
    }

    #[test]
    fn weight_is_capped() {
        let p = params();
        let v = encode_weighted(&[1.0], u64::MAX, &p).unwrap();
        assert_eq!(v[0], 1 << 20);
    }

    #[test]
    fn counts_are_exact() {
        let v = encode_counts(&[1, 2, u64::MAX], 1);
        assert_eq!(v, vec![1, 1, 2, u64::MAX]);
        assert_eq!(decode_counts(&v).unwrap(), (1, vec![1, 2, u64::MAX]));
        assert!(decode_mean(&[0, 5], &params()).is_err());
    }
}

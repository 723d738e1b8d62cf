//! The fixed-point choice of a session, next to the overflow rule it follows.

use fedrisk_models::federated::Contribution;
use fedrisk_secagg::{FixedPointParams, SecAggError, decode_sum, encode_scaled};

use crate::kind::{Part, SessionSum};

/// Weights (row counts) up to 2^24 per institution.
pub const WEIGHT_BITS: u8 = 24;
/// Clip bound of training vectors (per-row gradient and Hessian terms, FedAvg parameters).
pub const TRAIN_CLIP: f64 = 4096.0;

fn ceil_log2(n: usize) -> u32 {
    if n <= 1 {
        0
    } else {
        usize::BITS - (n - 1).leading_zeros()
    }
}

/// Fixed-point parameters for `n` participants and a clip bound: as many fractional bits as
/// the overflow rule (`log2 n + weight bits + clip bits + f <= 62`) allows, at most 40.
pub fn fixed_point_for(n: usize, clip: f64) -> FixedPointParams {
    let clip_bits = if clip <= 1.0 {
        0
    } else {
        clip.log2().ceil() as u32
    };
    let used = ceil_log2(n).max(1) + u32::from(WEIGHT_BITS) + clip_bits;
    FixedPointParams {
        frac_bits: 62u32.saturating_sub(used).min(40) as u8,
        clip,
        max_weight_bits: WEIGHT_BITS,
    }
}

/// A contribution as a session input: its sums, each rounded once; the row count only bounds
/// them and is never a slot of its own (see [`fedrisk_secagg::encode_scaled`]).
pub fn encode_input(c: &Contribution, fixed: &FixedPointParams) -> Result<Vec<u64>, SecAggError> {
    encode_scaled(&c.values, c.weight, fixed)
}

/// A session input made of parts: slot 0 (one contributor), then each part's sums (bounded
/// by that part's own row count), in order. Each part sums as it would in a session
/// of its own.
pub fn encode_parts(parts: &[Part], fixed: &FixedPointParams) -> Result<Vec<u64>, SecAggError> {
    let mut out = vec![1u64];
    for p in parts {
        let encoded = encode_input(&p.contribution, fixed)?;
        out.extend_from_slice(encoded.get(1..).unwrap_or_default());
    }
    Ok(out)
}

/// A session's aggregated vector as the plan reads it (traffic figures left at zero for the
/// driver to fill in).
pub fn decode_output(
    sum: &[u64],
    survivors: Vec<u32>,
    fixed: &FixedPointParams,
) -> Result<SessionSum, SecAggError> {
    let (contributors, sums) = decode_sum(sum, fixed)?;
    Ok(SessionSum {
        contributors,
        sums,
        survivors,
        bytes_up: 0,
        bytes_down: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_point_uses_every_bit_the_overflow_rule_allows() {
        for (n, clip) in [
            (2usize, 1.0),
            (5, TRAIN_CLIP),
            (50, TRAIN_CLIP),
            (1000, 1.0),
        ] {
            let fp = fixed_point_for(n, clip);
            let used = ceil_log2(n).max(1)
                + u32::from(WEIGHT_BITS)
                + fp.clip_bits()
                + u32::from(fp.frac_bits);
            assert!(used <= 62, "n {n}: {used} bits");
            assert!(used == 62 || fp.frac_bits == 40, "n {n}: bits left unused");
        }
        assert_eq!(fixed_point_for(5, TRAIN_CLIP).frac_bits, 62 - 3 - 24 - 12);
    }
}

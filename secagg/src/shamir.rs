//! Shamir t-of-n secret sharing over the curve25519 scalar field (prime
//! `l = 2^252 + ...`), with participant `id` holding the share at `x = id + 1`.
//!
//! Reconstruction uses Lagrange interpolation at 0 with coefficients computed
//! once per holder set (batch inversion), because the coordinator rebuilds many
//! secrets from shares held by the same responders.

use curve25519_dalek::Scalar;
use rand_core::CryptoRng;
use zeroize::Zeroize;

use crate::crypto::wipe;

/// The x-coordinate of participant `id`: `id + 1` (never 0).
pub fn x_of(id: u32) -> Scalar {
    Scalar::from(u64::from(id) + 1)
}

/// Splits `secret` into shares for `holders` (ids) with threshold `t`: a random
/// polynomial of degree `t - 1` with constant term `secret`, evaluated at each
/// holder's x by Horner's rule. The coefficients are zeroized before returning.
pub fn split<R: CryptoRng + ?Sized>(
    secret: &Scalar,
    t: usize,
    holders: &[u32],
    rng: &mut R,
) -> Vec<Scalar> {
    let degree = t.max(1) - 1;
    let mut coeffs = Vec::with_capacity(degree + 1);
    coeffs.push(*secret);
    for _ in 0..degree {
        coeffs.push(Scalar::random(rng));
    }
    let shares = holders
        .iter()
        .map(|&id| {
            let x = x_of(id);
            let mut acc = Scalar::ZERO;
            for c in coeffs.iter().rev() {
                acc = acc * x + c;
            }
            acc
        })
        .collect();
    wipe(&mut coeffs);
    shares
}

/// Lagrange coefficients at 0 for the holders `ids` (distinct):
/// `lambda_i = prod_{j != i} x_j / (x_j - x_i)`. One batch inversion for all.
pub fn lagrange_at_zero(ids: &[u32]) -> Vec<Scalar> {
    let xs: Vec<Scalar> = ids.iter().map(|&id| x_of(id)).collect();
    let prod_all: Scalar = xs.iter().product();
    let mut denoms: Vec<Scalar> = xs
        .iter()
        .enumerate()
        .map(|(i, xi)| {
            let mut d = *xi; // numerator correction: prod_{j!=i} x_j = prod_all / x_i
            for (j, xj) in xs.iter().enumerate() {
                if i != j {
                    d *= xj - xi;
                }
            }
            d
        })
        .collect();
    Scalar::invert_batch_alloc(&mut denoms);
    denoms.iter().map(|inv| prod_all * inv).collect()
}

/// `sum_i lambda_i * y_i`.
pub fn combine(lambdas: &[Scalar], shares: &[Scalar]) -> Scalar {
    lambdas.iter().zip(shares).map(|(l, y)| l * y).sum()
}

/// Reconstructs from `(id, share)` pairs, using exactly the given ones.
pub fn reconstruct(points: &[(u32, Scalar)]) -> Scalar {
    let ids: Vec<u32> = points.iter().map(|p| p.0).collect();
    let mut ys: Vec<Scalar> = points.iter().map(|p| p.1).collect();
    let s = combine(&lagrange_at_zero(&ids), &ys);
    ys.zeroize();
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn t_shares_reconstruct_t_minus_1_do_not() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let secret = Scalar::random(&mut rng);
        let holders: Vec<u32> = (0..20).map(|i| i * 3 + 5).collect();
        let shares = split(&secret, 11, &holders, &mut rng);
        let pts: Vec<(u32, Scalar)> = holders
            .iter()
            .copied()
            .zip(shares.iter().copied())
            .collect();
        assert_eq!(reconstruct(&pts[..11]), secret);
        assert_eq!(reconstruct(&pts[9..]), secret);
        assert_ne!(reconstruct(&pts[..10]), secret);
        assert_ne!(reconstruct(&pts[5..15][..10]), secret);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn any_t_subset_reconstructs(seed in any::<u64>(), t in 2usize..12, extra in 0usize..6, skip in 0usize..6) {
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let secret = Scalar::random(&mut rng);
            let holders: Vec<u32> = (0..(t + extra) as u32).map(|i| i * 7 + (seed as u32 % 1000)).collect();
            let shares = split(&secret, t, &holders, &mut rng);
            let pts: Vec<(u32, Scalar)> = holders.iter().copied().zip(shares).collect();
            let start = skip.min(extra);
            prop_assert_eq!(reconstruct(&pts[start..start + t]), secret);
            prop_assert_ne!(reconstruct(&pts[start..start + t - 1]), secret);
        }
    }
}

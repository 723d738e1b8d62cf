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

/// Targets evaluated per batch inversion in [`complete`] (bounds its scratch
/// memory to `TARGET_CHUNK * t` field elements).
const TARGET_CHUNK: usize = 64;

/// Completes sharings whose polynomials are fixed by the secret and `t - 1`
/// given shares: for each `k`, `values[k]` is `[secret_k, y_k1, ..., y_k(t-1)]`
/// with `y_kj` the share at `x_of(fixed[j])`; returns `out[k][i]`, the unique
/// polynomial of degree `t - 1` through `(0, secret_k)` and `(x_of(fixed[j]),
/// y_kj)`, evaluated at `x_of(targets[i])`. `fixed` and `targets` are distinct
/// ids, disjoint from each other.
///
/// Barycentric form: with nodes `x_0 = 0, x_j = x_of(fixed[j])` and weights
/// `w_j = 1 / prod_{k != j} (x_j - x_k)` (computed once, `O(t^2)`, one
/// inversion), `p(z) = l(z) sum_j w_j y_j / (z - x_j)` with
/// `l(z) = prod_j (z - x_j)`: `O(t)` per target and secret, the `1 / (z - x_j)`
/// batch-inverted over a chunk of targets and shared by all secrets.
pub fn complete(fixed: &[u32], values: &[&[Scalar]], targets: &[u32]) -> Vec<Vec<Scalar>> {
    let mut xs = Vec::with_capacity(fixed.len() + 1);
    xs.push(Scalar::ZERO);
    xs.extend(fixed.iter().map(|&id| x_of(id)));
    let nodes = xs.len();
    debug_assert!(values.iter().all(|v| v.len() == nodes));
    let mut w: Vec<Scalar> = xs
        .iter()
        .enumerate()
        .map(|(j, xj)| {
            xs.iter()
                .enumerate()
                .filter(|&(k, _)| k != j)
                .map(|(_, xk)| xj - xk)
                .product()
        })
        .collect();
    Scalar::invert_batch_alloc(&mut w);
    // w_j * y_kj, once per secret.
    let mut wy: Vec<Vec<Scalar>> = values
        .iter()
        .map(|v| v.iter().zip(&w).map(|(y, wj)| y * wj).collect())
        .collect();
    let mut out: Vec<Vec<Scalar>> = vec![Vec::with_capacity(targets.len()); values.len()];
    let mut inv = Vec::with_capacity(TARGET_CHUNK.min(targets.len()) * nodes);
    for chunk in targets.chunks(TARGET_CHUNK) {
        inv.clear();
        let mut ell = Vec::with_capacity(chunk.len());
        for &id in chunk {
            let z = x_of(id);
            let mut l = Scalar::ONE;
            for xj in &xs {
                let d = z - xj;
                debug_assert!(d != Scalar::ZERO, "target coincides with a node");
                l *= d;
                inv.push(d);
            }
            ell.push(l);
        }
        Scalar::invert_batch_alloc(&mut inv);
        for (i, l) in ell.iter().enumerate() {
            let row = &inv[i * nodes..(i + 1) * nodes];
            for (k, wyk) in wy.iter().enumerate() {
                let acc: Scalar = row.iter().zip(wyk).map(|(a, b)| a * b).sum();
                out[k].push(l * acc);
            }
        }
    }
    for v in &mut wy {
        wipe(v);
    }
    out
}

/// Lagrange coefficients at 0 for the holders `ids` (distinct):
/// `lambda_i = prod_{j != i} x_j / (x_j - x_i)`. One batch inversion for all.
///
/// The `t^2` differences are small integers (ids are `u32`), so they are multiplied in
/// `u128` as long as the product fits and only then folded into the field: a few field
/// multiplications per coefficient instead of `t`. The coordinator computes a set of
/// coefficients for every SecAgg+ neighbourhood it unmasks, on the session's critical path.
pub fn lagrange_at_zero(ids: &[u32]) -> Vec<Scalar> {
    let xs: Vec<u128> = ids.iter().map(|&id| u128::from(id) + 1).collect();
    let prod_all: Scalar = xs.iter().map(|&x| Scalar::from(x)).product();
    let mut denoms: Vec<Scalar> = xs
        .iter()
        .enumerate()
        .map(|(i, &xi)| {
            // numerator correction: prod_{j!=i} x_j = prod_all / x_i
            let mut d = Scalar::from(xi);
            let mut acc: u128 = 1;
            let mut negative = false;
            for (j, &xj) in xs.iter().enumerate() {
                if i == j {
                    continue;
                }
                negative ^= xj < xi;
                let diff = xj.abs_diff(xi);
                match acc.checked_mul(diff) {
                    Some(v) => acc = v,
                    None => {
                        d *= Scalar::from(acc);
                        acc = diff;
                    }
                }
            }
            d *= Scalar::from(acc);
            if negative { -d } else { d }
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

    /// The field-only formula, as the coefficients were computed before.
    fn lagrange_direct(ids: &[u32]) -> Vec<Scalar> {
        let xs: Vec<Scalar> = ids.iter().map(|&id| x_of(id)).collect();
        xs.iter()
            .enumerate()
            .map(|(i, xi)| {
                let mut num = Scalar::ONE;
                let mut den = Scalar::ONE;
                for (j, xj) in xs.iter().enumerate() {
                    if i != j {
                        num *= xj;
                        den *= xj - xi;
                    }
                }
                num * den.invert()
            })
            .collect()
    }

    proptest! {
        #[test]
        fn integer_folded_coefficients_are_the_field_formulas(
            ids in proptest::collection::btree_set(any::<u32>(), 1..40),
            small in proptest::collection::btree_set(0u32..300, 1..80),
        ) {
            for set in [ids, small] {
                let ids: Vec<u32> = set.into_iter().collect();
                prop_assert_eq!(lagrange_at_zero(&ids), lagrange_direct(&ids));
            }
        }
    }

    #[test]
    fn coefficients_at_the_ends_of_the_id_range() {
        let ids = [0u32, 1, u32::MAX - 1, u32::MAX, 7, 1 << 31];
        assert_eq!(lagrange_at_zero(&ids), lagrange_direct(&ids));
    }

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

    /// A sharing completed from the secret and `t - 1` pseudorandom (derived)
    /// shares is an ordinary `t`-of-`n` sharing: any `t` shares, derived ones
    /// included, reconstruct the secret; `t - 1`, derived ones included, do not.
    #[test]
    fn derived_plus_sent_shares_reconstruct_from_any_t_only() {
        let mut rng = ChaCha20Rng::seed_from_u64(21);
        for (n, t) in [(10usize, 7usize), (6, 5), (30, 21), (5, 2), (4, 4)] {
            let group: Vec<u32> = (0..n as u32).map(|i| i * 5 + 2).collect();
            let dealer = 3 % n;
            let derived: Vec<u32> = {
                let mut d: Vec<u32> = (1..t).map(|k| group[(dealer + k) % n]).collect();
                d.sort_unstable();
                d
            };
            let targets: Vec<u32> = group
                .iter()
                .copied()
                .filter(|v| derived.binary_search(v).is_err())
                .collect();
            let b = Scalar::random(&mut rng);
            let s = Scalar::random(&mut rng);
            let rb: Vec<Scalar> = derived.iter().map(|_| Scalar::random(&mut rng)).collect();
            let rs: Vec<Scalar> = derived.iter().map(|_| Scalar::random(&mut rng)).collect();
            let vb: Vec<Scalar> = std::iter::once(b).chain(rb.iter().copied()).collect();
            let vs: Vec<Scalar> = std::iter::once(s).chain(rs.iter().copied()).collect();
            let out = complete(&derived, &[&vb, &vs], &targets);
            assert_eq!(out.len(), 2);
            for (secret, derived_vals, sent) in [(b, &rb, &out[0]), (s, &rs, &out[1])] {
                let mut pts: Vec<(u32, Scalar)> = derived
                    .iter()
                    .copied()
                    .zip(derived_vals.iter().copied())
                    .chain(targets.iter().copied().zip(sent.iter().copied()))
                    .collect();
                pts.sort_by_key(|p| p.0);
                assert_eq!(pts.len(), n);
                // Every window of t (wrapping), and t - 1 of them: derived only,
                // mixed, and sent only where there are enough.
                for start in 0..n {
                    let sub: Vec<(u32, Scalar)> = (0..t).map(|k| pts[(start + k) % n]).collect();
                    assert_eq!(reconstruct(&sub), secret, "n {n} t {t} start {start}");
                    if t > 1 {
                        assert_ne!(reconstruct(&sub[..t - 1]), secret);
                        assert_ne!(reconstruct(&sub[1..]), secret);
                    }
                }
                let only_derived: Vec<(u32, Scalar)> = pts
                    .iter()
                    .copied()
                    .filter(|p| derived.contains(&p.0))
                    .collect();
                assert_eq!(only_derived.len(), t - 1);
                if t > 1 {
                    assert_ne!(reconstruct(&only_derived), secret);
                }
            }
        }
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

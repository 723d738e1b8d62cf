//! Logistic regression: a numerically stable loss, its gradient and Hessian, and trainers.
//!
//! Parameters are laid out as `[coef_1 .. coef_p, intercept]`. The objective is scikit-learn's:
//! `sum_i logloss_i + l2/2 * |coef|^2` with the intercept unpenalised (`l2 = 1/C`), optionally
//! plus a FedProx term `mu/2 * |theta - theta_global|^2`. Data terms are *sums* over rows, so
//! the federation adds institutions' gradients and Hessians and applies the penalty once.

use ndarray::{Array2, ArrayView2, s};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::error::FitError;

/// `log(1 + exp(z))` without overflow.
#[inline]
pub fn softplus(z: f64) -> f64 {
    z.max(0.0) + (-z.abs()).exp().ln_1p()
}

#[inline]
pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// Penalty terms added once to the summed data terms.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Penalty {
    /// L2 strength on the coefficients (not the intercept): scikit-learn's `1/C`.
    pub l2: f64,
    /// FedProx: strength and centre (the global parameters of the round).
    pub prox: Option<(f64, Vec<f64>)>,
}

impl Penalty {
    /// scikit-learn's `LogisticRegression(C=c)`.
    pub fn sklearn(c: f64) -> Self {
        Self {
            l2: 1.0 / c,
            prox: None,
        }
    }

    pub fn value(&self, theta: &[f64]) -> f64 {
        let p = theta.len().saturating_sub(1);
        let mut v = 0.5 * self.l2 * theta[..p].iter().map(|b| b * b).sum::<f64>();
        if let Some((mu, centre)) = &self.prox {
            v += 0.5
                * mu
                * theta
                    .iter()
                    .zip(centre)
                    .map(|(a, b)| (a - b) * (a - b))
                    .sum::<f64>();
        }
        v
    }

    pub fn add_gradient(&self, theta: &[f64], grad: &mut [f64]) {
        let p = theta.len().saturating_sub(1);
        for j in 0..p {
            grad[j] += self.l2 * theta[j];
        }
        if let Some((mu, centre)) = &self.prox {
            for ((g, a), b) in grad.iter_mut().zip(theta).zip(centre) {
                *g += mu * (a - b);
            }
        }
    }

    pub fn add_hessian(&self, hess: &mut Array2<f64>) {
        let k = hess.nrows();
        for j in 0..k.saturating_sub(1) {
            hess[[j, j]] += self.l2;
        }
        if let Some((mu, _)) = &self.prox {
            for j in 0..k {
                hess[[j, j]] += mu;
            }
        }
    }
}

fn check_dims(x: &ArrayView2<f64>, y: &[f64], theta: &[f64]) -> Result<(), FitError> {
    if y.len() != x.nrows() {
        return Err(FitError::Dimension {
            what: "labels",
            expected: x.nrows(),
            found: y.len(),
        });
    }
    if theta.len() != x.ncols() + 1 {
        return Err(FitError::Dimension {
            what: "parameters (coefficients + intercept)",
            expected: x.ncols() + 1,
            found: theta.len(),
        });
    }
    Ok(())
}

#[inline]
fn dot(a: &[f64], b: &[f64]) -> f64 {
    // Four independent accumulators let the compiler use SIMD lanes without fast-math.
    let mut acc = [0.0f64; 4];
    let ca = a.chunks_exact(4);
    let cb = b.chunks_exact(4);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        acc[0] += x[0] * y[0];
        acc[1] += x[1] * y[1];
        acc[2] += x[2] * y[2];
        acc[3] += x[3] * y[3];
    }
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// Sum of the log loss and its gradient over the rows of `x` (no penalty).
pub fn loss_grad(
    x: ArrayView2<f64>,
    y: &[f64],
    theta: &[f64],
) -> Result<(f64, Vec<f64>), FitError> {
    check_dims(&x, y, theta)?;
    let p = x.ncols();
    let (coef, b) = (&theta[..p], theta[p]);
    let mut grad = vec![0.0; p + 1];
    let mut loss = 0.0;
    for_each_row(x, |i, row| {
        let z = dot(row, coef) + b;
        loss += softplus(z) - y[i] * z;
        let r = sigmoid(z) - y[i];
        for (g, v) in grad[..p].iter_mut().zip(row) {
            *g += r * v;
        }
        grad[p] += r;
    });
    Ok((loss, grad))
}

/// The gradient alone (one pass, one `exp` per row): the hot loop of local training.
pub fn gradient(x: ArrayView2<f64>, y: &[f64], theta: &[f64]) -> Result<Vec<f64>, FitError> {
    check_dims(&x, y, theta)?;
    let p = x.ncols();
    let (coef, b) = (&theta[..p], theta[p]);
    let mut grad = vec![0.0; p + 1];
    for_each_row(x, |i, row| {
        let r = sigmoid(dot(row, coef) + b) - y[i];
        for (g, v) in grad[..p].iter_mut().zip(row) {
            *g += r * v;
        }
        grad[p] += r;
    });
    Ok(grad)
}

fn for_each_row(x: ArrayView2<f64>, mut f: impl FnMut(usize, &[f64])) {
    if let Some(flat) = x.as_slice() {
        let p = x.ncols().max(1);
        for (i, row) in flat.chunks_exact(p).enumerate() {
            f(i, row);
        }
    } else {
        let mut buf = vec![0.0; x.ncols()];
        for (i, row) in x.rows().into_iter().enumerate() {
            for (b, v) in buf.iter_mut().zip(row) {
                *b = *v;
            }
            f(i, &buf);
        }
    }
}

/// Loss, gradient and Hessian sums over the rows (no penalty): what one institution sends in a
/// federated Newton round.
#[derive(Debug, Clone, PartialEq)]
pub struct Curvature {
    pub loss: f64,
    pub grad: Vec<f64>,
    /// `(p+1) x (p+1)`, symmetric.
    pub hess: Array2<f64>,
}

pub fn loss_grad_hessian(
    x: ArrayView2<f64>,
    y: &[f64],
    theta: &[f64],
) -> Result<Curvature, FitError> {
    let (loss, grad) = loss_grad(x, y, theta)?;
    let p = x.ncols();
    let k = p + 1;
    let mut hess = Array2::<f64>::zeros((k, k));
    // Blocks of rows scaled by sqrt(p(1-p)) with a ones column, multiplied as B^T B: the memory
    // overhead is one block, and the product runs in the matrix-multiply kernel.
    const BLOCK: usize = 4096;
    let n = x.nrows();
    let mut block = Array2::<f64>::zeros((BLOCK.min(n.max(1)), k));
    let mut start = 0;
    while start < n {
        let end = (start + BLOCK).min(n);
        let rows = end - start;
        let xb = x.slice(s![start..end, ..]);
        for (r, xr) in xb.rows().into_iter().enumerate() {
            let z = xr.iter().zip(&theta[..p]).map(|(a, b)| a * b).sum::<f64>() + theta[p];
            let pr = sigmoid(z);
            let w = (pr * (1.0 - pr)).sqrt();
            let mut out = block.row_mut(r);
            for (o, v) in out.iter_mut().zip(xr.iter()) {
                *o = w * v;
            }
            out[p] = w;
        }
        let bv = block.slice(s![..rows, ..]);
        ndarray::linalg::general_mat_mul(1.0, &bv.t(), &bv, 1.0, &mut hess);
        start = end;
    }
    Ok(Curvature { loss, grad, hess })
}

/// Solves `a x = b` for symmetric positive definite `a` by Cholesky.
pub fn solve_spd(a: &Array2<f64>, b: &[f64]) -> Result<Vec<f64>, FitError> {
    let n = a.nrows();
    if a.ncols() != n || b.len() != n {
        return Err(FitError::Dimension {
            what: "linear system",
            expected: n,
            found: b.len(),
        });
    }
    let mut l = Array2::<f64>::zeros((n, n));
    for i in 0..n {
        for j in 0..=i {
            let mut sum = a[[i, j]];
            for k in 0..j {
                sum -= l[[i, k]] * l[[j, k]];
            }
            if i == j {
                if sum.is_nan() || sum <= 0.0 || !sum.is_finite() {
                    return Err(FitError::NotPositiveDefinite);
                }
                l[[i, i]] = sum.sqrt();
            } else {
                l[[i, j]] = sum / l[[j, j]];
            }
        }
    }
    let mut z = vec![0.0; n];
    for i in 0..n {
        let mut sum = b[i];
        for k in 0..i {
            sum -= l[[i, k]] * z[k];
        }
        z[i] = sum / l[[i, i]];
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        let mut sum = z[i];
        for k in i + 1..n {
            sum -= l[[k, i]] * x[k];
        }
        x[i] = sum / l[[i, i]];
    }
    Ok(x)
}

/// One Newton step from summed data terms: `theta - (H + penalty)^-1 (g + penalty)`.
/// The federation's coordinator calls this on the secure sums.
pub fn newton_step(
    theta: &[f64],
    grad: &[f64],
    hess: &Array2<f64>,
    penalty: &Penalty,
) -> Result<Vec<f64>, FitError> {
    let mut g = grad.to_vec();
    penalty.add_gradient(theta, &mut g);
    let mut h = hess.clone();
    penalty.add_hessian(&mut h);
    let step = solve_spd(&h, &g)?;
    Ok(theta.iter().zip(&step).map(|(t, d)| t - d).collect())
}

/// The Newton decrement squared, λ² = g'H⁻¹g of the penalised objective at `theta`, from
/// the step [`newton_step`] took to `next`: since `theta - next = H⁻¹g`, λ² =
/// (theta - next)·g with `g` the penalised gradient. λ²/2 is the decrease of the objective
/// the step predicts (Boyd & Vandenberghe §9.5.1); unlike the step's size it does not grow
/// with ill-conditioning, so the rounding of a securely summed gradient does not keep it
/// from falling below a small tolerance.
pub fn newton_decrement(theta: &[f64], next: &[f64], grad: &[f64], penalty: &Penalty) -> f64 {
    let mut g = grad.to_vec();
    penalty.add_gradient(theta, &mut g);
    theta
        .iter()
        .zip(next)
        .zip(&g)
        .map(|((a, b), g)| (a - b) * g)
        .sum()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewtonOptions {
    pub penalty: Penalty,
    pub max_iter: usize,
    /// Stops when the largest parameter change is below this.
    pub tol: f64,
}

impl Default for NewtonOptions {
    fn default() -> Self {
        Self {
            penalty: Penalty::sklearn(1.0),
            max_iter: 100,
            tol: 1e-10,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitReport {
    pub theta: Vec<f64>,
    pub iterations: usize,
    pub converged: bool,
    /// Objective (loss sum + penalty) at `theta`.
    pub objective: f64,
}

fn check_labels(y: &[f64]) -> Result<(), FitError> {
    if y.is_empty() {
        return Err(FitError::NoRows);
    }
    if y.iter().any(|v| !v.is_finite()) {
        return Err(FitError::NonFinite { what: "labels" });
    }
    Ok(())
}

/// Full-batch Newton (IRLS) with step halving: exact fits in a handful of iterations.
pub fn fit_newton(
    x: ArrayView2<f64>,
    y: &[f64],
    opts: &NewtonOptions,
) -> Result<FitReport, FitError> {
    check_labels(y)?;
    if x.iter().any(|v| !v.is_finite()) {
        return Err(FitError::NonFinite {
            what: "design matrix",
        });
    }
    let mut theta = vec![0.0; x.ncols() + 1];
    let objective =
        |t: &[f64]| -> Result<f64, FitError> { Ok(loss_grad(x, y, t)?.0 + opts.penalty.value(t)) };
    let mut current = objective(&theta)?;
    for it in 1..=opts.max_iter {
        let c = loss_grad_hessian(x, y, &theta)?;
        let proposal = newton_step(&theta, &c.grad, &c.hess, &opts.penalty)?;
        let mut step: Vec<f64> = proposal.iter().zip(&theta).map(|(a, b)| a - b).collect();
        // Newton on this convex objective converges from zero in practice; the halving only
        // guards against rare overshoot on separable data.
        let mut next: Vec<f64> = proposal;
        let mut value = objective(&next)?;
        let mut halvings = 0;
        while value > current + 1e-12 * current.abs().max(1.0) && halvings < 30 {
            step.iter_mut().for_each(|d| *d *= 0.5);
            next = theta.iter().zip(&step).map(|(t, d)| t + d).collect();
            value = objective(&next)?;
            halvings += 1;
        }
        let change = step.iter().fold(0.0f64, |m, d| m.max(d.abs()));
        theta = next;
        current = value;
        if change < opts.tol {
            return Ok(FitReport {
                theta,
                iterations: it,
                converged: true,
                objective: current,
            });
        }
    }
    Ok(FitReport {
        theta,
        iterations: opts.max_iter,
        converged: false,
        objective: current,
    })
}

/// Settings for mini-batch training (local epochs of FedAvg / FedProx).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SgdOptions {
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    /// Adam when true, plain SGD otherwise.
    pub adam: bool,
    /// L2 per row of the full objective: the per-batch penalty is `l2 * batch / n_total`, so a
    /// pass over all the data applies the whole penalty once.
    pub penalty: Penalty,
    /// Rows over which `penalty.l2` is spread (the federation's total; the local rows if alone).
    pub penalty_rows: f64,
    pub seed: u64,
}

impl Default for SgdOptions {
    fn default() -> Self {
        Self {
            epochs: 1,
            batch_size: 64,
            learning_rate: 0.05,
            adam: true,
            penalty: Penalty::sklearn(1.0),
            penalty_rows: 0.0,
            seed: 0,
        }
    }
}

/// Mini-batch SGD or Adam from `init`, minimising the mean loss plus the scaled penalty.
pub fn fit_sgd(
    x: ArrayView2<f64>,
    y: &[f64],
    init: &[f64],
    opts: &SgdOptions,
) -> Result<Vec<f64>, FitError> {
    check_labels(y)?;
    check_dims(&x, y, init)?;
    if opts.batch_size == 0 || opts.learning_rate.is_nan() || opts.learning_rate <= 0.0 {
        return Err(FitError::Invalid(
            "batch size and learning rate must be positive".into(),
        ));
    }
    let n = x.nrows();
    let k = init.len();
    let mut theta = init.to_vec();
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(opts.seed);
    let (mut m, mut v) = (vec![0.0; k], vec![0.0; k]);
    let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8);
    let mut t = 0i32;
    let penalty_rows = if opts.penalty_rows > 0.0 {
        opts.penalty_rows
    } else {
        n as f64
    };
    let mut batch = Array2::<f64>::zeros((opts.batch_size.min(n), x.ncols()));
    let mut yb = Vec::with_capacity(opts.batch_size);
    for _ in 0..opts.epochs {
        order.shuffle(&mut rng);
        for chunk in order.chunks(opts.batch_size) {
            yb.clear();
            for (r, &i) in chunk.iter().enumerate() {
                batch.row_mut(r).assign(&x.row(i));
                yb.push(y[i]);
            }
            let view = batch.slice(s![..chunk.len(), ..]);
            let mut g = gradient(view, &yb, &theta)?;
            let scale = chunk.len() as f64;
            g.iter_mut().for_each(|gi| *gi /= scale);
            let scaled = Penalty {
                l2: opts.penalty.l2 / penalty_rows,
                prox: opts.penalty.prox.clone(),
            };
            scaled.add_gradient(&theta, &mut g);
            if opts.adam {
                t += 1;
                let (c1, c2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
                for j in 0..k {
                    m[j] = b1 * m[j] + (1.0 - b1) * g[j];
                    v[j] = b2 * v[j] + (1.0 - b2) * g[j] * g[j];
                    theta[j] -= opts.learning_rate * (m[j] / c1) / ((v[j] / c2).sqrt() + eps);
                }
            } else {
                for j in 0..k {
                    theta[j] -= opts.learning_rate * g[j];
                }
            }
        }
    }
    if theta.iter().any(|t| !t.is_finite()) {
        return Err(FitError::NonFinite {
            what: "parameters (lower the learning rate)",
        });
    }
    Ok(theta)
}

/// Probabilities for each row of a design matrix.
pub fn predict(x: ArrayView2<f64>, theta: &[f64]) -> Result<Vec<f64>, FitError> {
    if theta.len() != x.ncols() + 1 {
        return Err(FitError::Dimension {
            what: "parameters (coefficients + intercept)",
            expected: x.ncols() + 1,
            found: theta.len(),
        });
    }
    let p = x.ncols();
    let mut out = Vec::with_capacity(x.nrows());
    for_each_row(x, |_, row| {
        out.push(sigmoid(dot(row, &theta[..p]) + theta[p]))
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    fn toy(n: usize, seed: u64) -> (Array2<f64>, Vec<f64>) {
        use rand::RngExt;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let x = Array2::from_shape_fn((n, 3), |_| rng.random::<f64>() * 2.0 - 1.0);
        let y = x
            .rows()
            .into_iter()
            .map(|r| {
                let z = 1.5 * r[0] - 2.0 * r[1] + 0.3;
                f64::from(u8::from(rng.random::<f64>() < sigmoid(z)))
            })
            .collect();
        (x, y)
    }

    #[test]
    fn softplus_and_sigmoid_are_stable_at_extremes() {
        assert_eq!(softplus(1000.0), 1000.0);
        assert!(softplus(-1000.0) >= 0.0 && softplus(-1000.0) < 1e-300);
        assert_eq!(sigmoid(-1000.0), 0.0);
        assert_eq!(sigmoid(1000.0), 1.0);
        assert!((softplus(0.0) - 2f64.ln()).abs() < 1e-15);
    }

    #[test]
    fn the_newton_decrement_is_g_h_inverse_g_and_vanishes_at_the_optimum() {
        let (x, y) = toy(300, 3);
        let penalty = Penalty::sklearn(0.5);
        let theta = vec![0.3, -0.2, 0.4, 0.1];
        let c = loss_grad_hessian(x.view(), &y, &theta).expect("curvature");
        let next = newton_step(&theta, &c.grad, &c.hess, &penalty).expect("step");
        let mut g = c.grad.clone();
        penalty.add_gradient(&theta, &mut g);
        let mut h = c.hess.clone();
        penalty.add_hessian(&mut h);
        let hinv_g = solve_spd(&h, &g).expect("solve");
        let direct: f64 = g.iter().zip(&hinv_g).map(|(a, b)| a * b).sum();
        let from_step = newton_decrement(&theta, &next, &c.grad, &penalty);
        assert!(direct > 1e-3, "a point away from the optimum: {direct}");
        assert!(
            (from_step - direct).abs() <= 1e-9 * direct,
            "{from_step} vs {direct}"
        );
        let fit = fit_newton(
            x.view(),
            &y,
            &NewtonOptions {
                penalty: penalty.clone(),
                max_iter: 50,
                tol: 1e-12,
            },
        )
        .expect("fit");
        let c = loss_grad_hessian(x.view(), &y, &fit.theta).expect("curvature");
        let next = newton_step(&fit.theta, &c.grad, &c.hess, &penalty).expect("step");
        let at_optimum = newton_decrement(&fit.theta, &next, &c.grad, &penalty);
        assert!(at_optimum.abs() < 1e-12, "{at_optimum}");
    }

    #[test]
    fn gradient_and_hessian_match_finite_differences() {
        let (x, y) = toy(200, 1);
        let theta = vec![0.2, -0.4, 0.1, 0.05];
        let c = loss_grad_hessian(x.view(), &y, &theta).unwrap();
        let h = 1e-6;
        for j in 0..theta.len() {
            let mut a = theta.clone();
            a[j] += h;
            let mut b = theta.clone();
            b[j] -= h;
            let (la, ga) = loss_grad(x.view(), &y, &a).unwrap();
            let (lb, gb) = loss_grad(x.view(), &y, &b).unwrap();
            assert!(((la - lb) / (2.0 * h) - c.grad[j]).abs() < 1e-5);
            for k in 0..theta.len() {
                assert!(((ga[k] - gb[k]) / (2.0 * h) - c.hess[[k, j]]).abs() < 1e-4);
            }
        }
        assert_eq!(gradient(x.view(), &y, &theta).unwrap(), c.grad);
    }

    #[test]
    fn newton_reaches_a_stationary_point_of_the_penalised_objective() {
        let (x, y) = toy(2000, 2);
        let opts = NewtonOptions::default();
        let fit = fit_newton(x.view(), &y, &opts).unwrap();
        assert!(fit.converged && fit.iterations < 15, "{fit:?}");
        let (_, mut g) = loss_grad(x.view(), &y, &fit.theta).unwrap();
        opts.penalty.add_gradient(&fit.theta, &mut g);
        assert!(g.iter().all(|v| v.abs() < 1e-8), "{g:?}");
        assert!((fit.theta[0] - 1.5).abs() < 0.3 && (fit.theta[1] + 2.0).abs() < 0.3);
    }

    #[test]
    fn adam_gets_close_to_newton() {
        let (x, y) = toy(2000, 3);
        let newton = fit_newton(x.view(), &y, &NewtonOptions::default()).unwrap();
        let opts = SgdOptions {
            epochs: 40,
            learning_rate: 0.01,
            ..SgdOptions::default()
        };
        let sgd = fit_sgd(x.view(), &y, &[0.0; 4], &opts).unwrap();
        for (a, b) in sgd.iter().zip(&newton.theta) {
            assert!((a - b).abs() < 0.05, "{sgd:?} vs {:?}", newton.theta);
        }
    }

    #[test]
    fn prox_term_pulls_towards_the_centre() {
        let (x, y) = toy(500, 4);
        let centre = vec![0.0; 4];
        let free = fit_newton(x.view(), &y, &NewtonOptions::default()).unwrap();
        let opts = NewtonOptions {
            penalty: Penalty {
                l2: 1.0,
                prox: Some((1e4, centre)),
            },
            ..NewtonOptions::default()
        };
        let prox = fit_newton(x.view(), &y, &opts).unwrap();
        let norm = |t: &[f64]| t.iter().map(|v| v * v).sum::<f64>();
        assert!(norm(&prox.theta) < 0.1 * norm(&free.theta));
    }

    #[test]
    fn wrong_lengths_and_non_finite_inputs_are_errors() {
        let (x, y) = toy(10, 5);
        assert!(matches!(
            loss_grad(x.view(), &y, &[0.0; 3]),
            Err(FitError::Dimension { .. })
        ));
        assert!(matches!(
            loss_grad(x.view(), &y[..9], &[0.0; 4]),
            Err(FitError::Dimension { .. })
        ));
        let mut bad = x.clone();
        bad[[0, 0]] = f64::NAN;
        assert!(matches!(
            fit_newton(bad.view(), &y, &NewtonOptions::default()),
            Err(FitError::NonFinite { .. })
        ));
    }

    #[test]
    fn cholesky_solves_and_refuses_indefinite() {
        let a = ndarray::arr2(&[[4.0, 1.0], [1.0, 3.0]]);
        let x = solve_spd(&a, &[1.0, 2.0]).unwrap();
        assert!((4.0 * x[0] + x[1] - 1.0).abs() < 1e-12 && (x[0] + 3.0 * x[1] - 2.0).abs() < 1e-12);
        let b = ndarray::arr2(&[[1.0, 2.0], [2.0, 1.0]]);
        assert_eq!(
            solve_spd(&b, &[1.0, 1.0]),
            Err(FitError::NotPositiveDefinite)
        );
    }
}

//! Second-order information from gradients alone: Hessian-vector products by central differences,
//! Hutchinson's trace estimator with Rademacher probes, power iteration for the top eigenvalue and
//! the Gauss-Newton trace from per-sample gradients.
//!
//! dfdx has no second-order autodiff, so every routine here takes a gradient oracle
//! `grad(theta) -> dL/dtheta` and works in f64.

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::linalg::{dot, norm};

/// Hessian-vector product `H(theta) v` by a central difference of gradients:
/// `(g(theta + h u) - g(theta - h u)) / (2 h) * |v|` with `u = v / |v|`. Costs two gradient
/// evaluations. The error is O(h^2) times the third derivative.
pub fn fd_hvp(
    grad: &mut dyn FnMut(&[f64]) -> Vec<f64>,
    theta: &[f64],
    v: &[f64],
    h: f64,
) -> Vec<f64> {
    let nv = norm(v);
    if nv == 0.0 {
        return vec![0.0; v.len()];
    }
    let plus: Vec<f64> = theta.iter().zip(v).map(|(t, x)| t + h * x / nv).collect();
    let minus: Vec<f64> = theta.iter().zip(v).map(|(t, x)| t - h * x / nv).collect();
    let gp = grad(&plus);
    let gm = grad(&minus);
    gp.iter()
        .zip(&gm)
        .map(|(a, b)| (a - b) / (2.0 * h) * nv)
        .collect()
}

/// An estimate with its standard error.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub value: f64,
    pub std_err: f64,
    /// Number of samples (probes) or iterations behind it.
    pub samples: usize,
}

/// Hutchinson's estimator `tr(H) ~ mean_k z_k^T H z_k` with Rademacher probes `z_k`.
/// The standard error is the sample standard deviation over probes divided by sqrt(probes).
pub fn hutchinson_trace(
    hvp: &mut dyn FnMut(&[f64]) -> Vec<f64>,
    dim: usize,
    probes: usize,
    rng: &mut impl Rng,
) -> Estimate {
    assert!(probes >= 1, "Hutchinson needs at least one probe");
    let mut samples = Vec::with_capacity(probes);
    for _ in 0..probes {
        let z: Vec<f64> = (0..dim)
            .map(|_| if rng.gen::<bool>() { 1.0 } else { -1.0 })
            .collect();
        let hz = hvp(&z);
        samples.push(dot(&z, &hz));
    }
    let n = samples.len() as f64;
    let mean = samples.iter().sum::<f64>() / n;
    let var = if samples.len() > 1 {
        samples.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    Estimate {
        value: mean,
        std_err: (var / n).sqrt(),
        samples: probes,
    }
}

/// Power iteration for the eigenvalue of largest magnitude of the symmetric operator `hvp`.
/// Stops when the Rayleigh quotient changes by less than `rel_tol` (relative) or after `iters`.
/// `std_err` holds the residual `|H v - lambda v|`, an error bound for the eigenvalue.
pub fn power_iteration(
    hvp: &mut dyn FnMut(&[f64]) -> Vec<f64>,
    dim: usize,
    iters: usize,
    rel_tol: f64,
    rng: &mut impl Rng,
) -> Estimate {
    let mut v: Vec<f64> = (0..dim).map(|_| rng.gen::<f64>() - 0.5).collect();
    let n0 = norm(&v);
    v.iter_mut().for_each(|x| *x /= n0);
    let mut lambda = 0.0;
    let mut residual = f64::INFINITY;
    let mut done = 0;
    for k in 0..iters.max(1) {
        let hv = hvp(&v);
        let new_lambda = dot(&v, &hv);
        residual = hv
            .iter()
            .zip(&v)
            .map(|(a, b)| (a - new_lambda * b).powi(2))
            .sum::<f64>()
            .sqrt();
        let nh = norm(&hv);
        done = k + 1;
        let converged = k > 0 && (new_lambda - lambda).abs() <= rel_tol * new_lambda.abs();
        lambda = new_lambda;
        if nh == 0.0 || converged {
            break;
        }
        v = hv.iter().map(|x| x / nh).collect();
    }
    Estimate {
        value: lambda,
        std_err: residual,
        samples: done,
    }
}

/// The Gauss-Newton trace `(1/n) sum_i |grad f(x_i)|^2` of the loss `(1/2n) sum_i (f(x_i)-y_i)^2`,
/// from per-sample output gradients. At an interpolating minimum it equals the Hessian's trace.
pub fn gauss_newton_trace<I: IntoIterator<Item = Vec<f64>>>(per_sample_output_grads: I) -> f64 {
    let mut total = 0.0;
    let mut n = 0usize;
    for g in per_sample_output_grads {
        total += dot(&g, &g);
        n += 1;
    }
    if n == 0 {
        0.0
    } else {
        total / n as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::linalg::{mat_vec, symmetric_eigenvalues};
    use rand::SeedableRng;

    /// A random symmetric matrix with a given spectrum: Q diag(eigs) Q^T.
    fn with_spectrum(eigs: &[f64], seed: u64) -> Vec<f64> {
        let n = eigs.len();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        // Gram-Schmidt on random vectors.
        let mut q: Vec<Vec<f64>> = Vec::new();
        while q.len() < n {
            let mut v: Vec<f64> = (0..n).map(|_| rng.gen::<f64>() - 0.5).collect();
            for u in &q {
                let d = dot(&v, u);
                v.iter_mut().zip(u).for_each(|(a, b)| *a -= d * b);
            }
            let nv = norm(&v);
            if nv > 1e-6 {
                q.push(v.iter().map(|x| x / nv).collect());
            }
        }
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                a[i * n + j] = (0..n).map(|k| q[k][i] * eigs[k] * q[k][j]).sum();
            }
        }
        a
    }

    #[test]
    fn hutchinson_is_exact_for_diagonal_and_unbiased_otherwise() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let diag = [3.0, -1.0, 0.5, 7.0];
        let mut hvp = |v: &[f64]| v.iter().zip(&diag).map(|(a, b)| a * b).collect::<Vec<_>>();
        let e = hutchinson_trace(&mut hvp, 4, 5, &mut rng);
        assert!((e.value - 9.5).abs() < 1e-12 && e.std_err < 1e-12, "{e:?}");

        let eigs = [5.0, 3.0, 2.0, 1.0, 0.5, 0.25, 0.1, 0.0];
        let a = with_spectrum(&eigs, 2);
        let mut hvp = |v: &[f64]| mat_vec(&a, v);
        let e = hutchinson_trace(&mut hvp, 8, 400, &mut rng);
        let truth: f64 = eigs.iter().sum();
        assert!(e.std_err > 0.0);
        assert!(
            (e.value - truth).abs() < 4.0 * e.std_err,
            "{e:?} vs {truth}"
        );
    }

    #[test]
    fn power_iteration_finds_top_eigenvalue() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let eigs = [10.0, 4.0, 3.0, 1.0, 0.2, 0.0];
        let a = with_spectrum(&eigs, 4);
        let mut hvp = |v: &[f64]| mat_vec(&a, v);
        let e = power_iteration(&mut hvp, 6, 500, 1e-12, &mut rng);
        assert!((e.value - 10.0).abs() < 1e-6, "{e:?}");
        let jac = symmetric_eigenvalues(&a, 6);
        assert!((jac[0] - 10.0).abs() < 1e-9, "{jac:?}");
    }

    #[test]
    fn fd_hvp_matches_quadratic() {
        // L = 1/2 t^T A t + b^T t, grad = A t + b, H = A exactly.
        let eigs = [2.0, 1.0, -0.5, 0.1];
        let a = with_spectrum(&eigs, 5);
        let b = [0.3, -0.2, 0.1, 1.0];
        let mut grad = |t: &[f64]| {
            mat_vec(&a, t)
                .iter()
                .zip(&b)
                .map(|(x, y)| x + y)
                .collect::<Vec<_>>()
        };
        let theta = [1.0, 2.0, -1.0, 0.5];
        let v = [0.5, -1.0, 2.0, 0.0];
        let hv = fd_hvp(&mut grad, &theta, &v, 1e-4);
        let exact = mat_vec(&a, &v);
        for (x, y) in hv.iter().zip(&exact) {
            assert!((x - y).abs() < 1e-8, "{hv:?} vs {exact:?}");
        }
    }

    #[test]
    fn gauss_newton_trace_of_linear_model_is_mean_squared_feature_norm() {
        // f(x) = w.x: grad f = x, so tr = mean |x|^2 and equals the exact Hessian trace.
        let xs = [vec![1.0, 2.0], vec![0.0, 3.0], vec![-1.0, 1.0]];
        let t = gauss_newton_trace(xs.iter().cloned());
        assert!((t - (5.0 + 9.0 + 2.0) / 3.0).abs() < 1e-12);
    }
}

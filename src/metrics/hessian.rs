//! Second-order information from gradients alone: Hessian-vector products by central differences,
//! Hutchinson's trace estimator with Rademacher probes, power iteration, Lanczos with full
//! reorthogonalization (the algebraically largest eigenvalue with its residual) and the
//! Gauss-Newton trace from per-sample gradients.
//!
//! dfdx has no second-order autodiff, so every routine takes a Hessian-vector product oracle.
//! The routines are generic over a [`VectorSpace`]: host vectors (`HostSpace`, for tests against
//! dense references) or the trainable parameters of a device store (`DeviceSpace`), where
//! vectors stay on the device and only dot products cross to the host. Random vectors are drawn
//! on the host from the caller's seeded generator (the same draws on every device).

use nalgebra::{DMatrix, SymmetricEigen};
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::linalg::{dot, norm};

/// The vector operations the estimators need.
pub trait VectorSpace {
    type V: Clone;
    fn dim(&self) -> usize;
    fn dot(&self, a: &Self::V, b: &Self::V) -> f64;
    /// `y = alpha * y + beta * x`.
    fn axpby(&self, y: &mut Self::V, alpha: f64, x: &Self::V, beta: f64);
    /// A vector with the given host values (probes, start vectors), uploaded.
    fn upload(&self, values: &[f64]) -> Self::V;

    fn norm(&self, a: &Self::V) -> f64 {
        self.dot(a, a).sqrt()
    }
    fn scale(&self, y: &mut Self::V, alpha: f64) {
        let c = y.clone();
        self.axpby(y, 0.0, &c, alpha);
    }
}

/// Plain `Vec<f64>` vectors of a fixed length.
pub struct HostSpace(pub usize);

impl VectorSpace for HostSpace {
    type V = Vec<f64>;
    fn dim(&self) -> usize {
        self.0
    }
    fn dot(&self, a: &Vec<f64>, b: &Vec<f64>) -> f64 {
        dot(a, b)
    }
    fn axpby(&self, y: &mut Vec<f64>, alpha: f64, x: &Vec<f64>, beta: f64) {
        y.iter_mut()
            .zip(x)
            .for_each(|(a, b)| *a = alpha * *a + beta * b);
    }
    fn upload(&self, values: &[f64]) -> Vec<f64> {
        values.to_vec()
    }
}

/// Hessian-vector product `H(theta) v` by a central difference of gradients on host vectors:
/// `(g(theta + h u) - g(theta - h u)) / (2 h) * |v|` with `u = v / |v|`. Two gradient calls;
/// the error is O(h^2) times the third derivative.
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

/// An estimate with its standard error (or, for eigenvalues, its residual bound).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub value: f64,
    pub std_err: f64,
    /// Number of samples (probes) or iterations behind it.
    pub samples: usize,
}

/// A Rademacher vector (entries +-1) drawn on the host.
pub fn rademacher(dim: usize, rng: &mut impl Rng) -> Vec<f64> {
    (0..dim)
        .map(|_| if rng.gen::<bool>() { 1.0 } else { -1.0 })
        .collect()
}

/// Hutchinson's estimator `tr(H) ~ mean_k z_k^T H z_k` with Rademacher probes `z_k`.
/// The standard error is the sample standard deviation over probes divided by sqrt(probes).
pub fn hutchinson_trace<S: VectorSpace>(
    space: &S,
    hvp: &mut dyn FnMut(&S::V) -> S::V,
    probes: usize,
    rng: &mut impl Rng,
) -> Estimate {
    assert!(probes >= 1, "Hutchinson needs at least one probe");
    let mut samples = Vec::with_capacity(probes);
    for _ in 0..probes {
        let z = space.upload(&rademacher(space.dim(), rng));
        let hz = hvp(&z);
        samples.push(space.dot(&z, &hz));
    }
    mean_and_std_err(&samples, probes)
}

fn mean_and_std_err(samples: &[f64], count: usize) -> Estimate {
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
        samples: count,
    }
}

/// A random unit start vector (uniform entries in [-0.5, 0.5), normalized).
fn start_vector<S: VectorSpace>(space: &S, rng: &mut impl Rng) -> S::V {
    let v: Vec<f64> = (0..space.dim()).map(|_| rng.gen::<f64>() - 0.5).collect();
    let n = norm(&v);
    space.upload(&v.iter().map(|x| x / n).collect::<Vec<_>>())
}

/// Power iteration for the eigenvalue of largest magnitude of the symmetric operator `hvp`.
/// Stops when the Rayleigh quotient changes by less than `rel_tol` (relative) or after `iters`.
/// `std_err` holds the residual `|H v - lambda v|`. For the algebraically largest eigenvalue
/// use [`lanczos`].
pub fn power_iteration<S: VectorSpace>(
    space: &S,
    hvp: &mut dyn FnMut(&S::V) -> S::V,
    iters: usize,
    rel_tol: f64,
    rng: &mut impl Rng,
) -> Estimate {
    let mut v = start_vector(space, rng);
    let mut lambda = 0.0;
    let mut residual = f64::INFINITY;
    let mut done = 0;
    for k in 0..iters.max(1) {
        let hv = hvp(&v);
        let new_lambda = space.dot(&v, &hv);
        let mut r = hv.clone();
        space.axpby(&mut r, 1.0, &v, -new_lambda);
        residual = space.norm(&r);
        let nh = space.norm(&hv);
        done = k + 1;
        let converged = k > 0 && (new_lambda - lambda).abs() <= rel_tol * new_lambda.abs();
        lambda = new_lambda;
        if nh == 0.0 || converged {
            break;
        }
        v = hv;
        space.scale(&mut v, 1.0 / nh);
    }
    Estimate {
        value: lambda,
        std_err: residual,
        samples: done,
    }
}

/// What Lanczos found: Ritz values (ascending) with their residual bounds `|beta_k s_k|`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Spectrum {
    pub ritz_values: Vec<f64>,
    pub residuals: Vec<f64>,
    pub iterations: usize,
}

impl Spectrum {
    /// The algebraically largest Ritz value with its residual.
    pub fn top(&self) -> Estimate {
        let i = self.ritz_values.len() - 1;
        Estimate {
            value: self.ritz_values[i],
            std_err: self.residuals[i],
            samples: self.iterations,
        }
    }

    /// The algebraically smallest Ritz value with its residual.
    pub fn bottom(&self) -> Estimate {
        Estimate {
            value: self.ritz_values[0],
            std_err: self.residuals[0],
            samples: self.iterations,
        }
    }
}

/// Eigen-decomposition of the symmetric tridiagonal matrix (alphas on the diagonal, betas off
/// it): ascending eigenvalues and the last component of each eigenvector.
fn tridiagonal_eigen(alphas: &[f64], betas: &[f64]) -> Vec<(f64, f64)> {
    let k = alphas.len();
    let t = DMatrix::from_fn(k, k, |i, j| {
        if i == j {
            alphas[i]
        } else if i + 1 == j {
            betas[i]
        } else if j + 1 == i {
            betas[j]
        } else {
            0.0
        }
    });
    let eig = SymmetricEigen::new(t);
    let mut pairs: Vec<(f64, f64)> = (0..k)
        .map(|i| (eig.eigenvalues[i], eig.eigenvectors[(k - 1, i)]))
        .collect();
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    pairs
}

/// Lanczos with full reorthogonalization: at most `max_iters` Hessian-vector products (and at
/// most the dimension). It stops early once the top Ritz value's residual falls below
/// `rel_tol * |value|`, or when the Krylov space is invariant (then the Ritz values are exact).
pub fn lanczos<S: VectorSpace>(
    space: &S,
    hvp: &mut dyn FnMut(&S::V) -> S::V,
    max_iters: usize,
    rel_tol: f64,
    rng: &mut impl Rng,
) -> Spectrum {
    let k_max = max_iters.clamp(1, space.dim().max(1));
    let mut q = vec![start_vector(space, rng)];
    let (mut alphas, mut betas): (Vec<f64>, Vec<f64>) = (Vec::new(), Vec::new());
    let mut pairs = Vec::new();
    let mut beta_last = 0.0;
    for j in 0..k_max {
        let mut w = hvp(&q[j]);
        let alpha = space.dot(&q[j], &w);
        space.axpby(&mut w, 1.0, &q[j], -alpha);
        if j > 0 {
            space.axpby(&mut w, 1.0, &q[j - 1], -betas[j - 1]);
        }
        // Full reorthogonalization, twice ("twice is enough").
        for _ in 0..2 {
            for qi in &q {
                let c = space.dot(qi, &w);
                space.axpby(&mut w, 1.0, qi, -c);
            }
        }
        alphas.push(alpha);
        beta_last = space.norm(&w);
        pairs = tridiagonal_eigen(&alphas, &betas);
        let (top, s_last) = pairs[pairs.len() - 1];
        let scale = alphas
            .iter()
            .map(|a| a.abs())
            .fold(0.0, f64::max)
            .max(1e-300);
        let invariant = beta_last <= 1e-12 * scale;
        if invariant || (beta_last * s_last).abs() <= rel_tol * top.abs() || j + 1 == k_max {
            break;
        }
        betas.push(beta_last);
        space.scale(&mut w, 1.0 / beta_last);
        q.push(w);
    }
    Spectrum {
        ritz_values: pairs.iter().map(|p| p.0).collect(),
        residuals: pairs.iter().map(|p| (beta_last * p.1).abs()).collect(),
        iterations: alphas.len(),
    }
}

/// The Gauss-Newton trace `(1/n) sum_i |grad f(x_i)|^2` of the loss `(1/2n) sum_i (f(x_i)-y_i)^2`,
/// from per-sample output gradients. At an interpolating minimum it equals the Hessian's trace.
/// (Models with a closed form compute it batched; this is their reference.)
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
    pub(crate) fn with_spectrum(eigs: &[f64], seed: u64) -> Vec<f64> {
        let n = eigs.len();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
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
        let mut hvp = |v: &Vec<f64>| v.iter().zip(&diag).map(|(a, b)| a * b).collect::<Vec<_>>();
        let e = hutchinson_trace(&HostSpace(4), &mut hvp, 5, &mut rng);
        assert!((e.value - 9.5).abs() < 1e-12 && e.std_err < 1e-12, "{e:?}");

        let eigs = [5.0, 3.0, 2.0, 1.0, 0.5, 0.25, 0.1, 0.0];
        let a = with_spectrum(&eigs, 2);
        let mut hvp = |v: &Vec<f64>| mat_vec(&a, v);
        let e = hutchinson_trace(&HostSpace(8), &mut hvp, 400, &mut rng);
        let truth: f64 = eigs.iter().sum();
        assert!(e.std_err > 0.0);
        assert!(
            (e.value - truth).abs() < 4.0 * e.std_err,
            "{e:?} vs {truth}"
        );
    }

    #[test]
    fn power_iteration_finds_the_largest_magnitude() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let eigs = [10.0, 4.0, 3.0, 1.0, 0.2, 0.0];
        let a = with_spectrum(&eigs, 4);
        let mut hvp = |v: &Vec<f64>| mat_vec(&a, v);
        let e = power_iteration(&HostSpace(6), &mut hvp, 500, 1e-12, &mut rng);
        assert!((e.value - 10.0).abs() < 1e-6, "{e:?}");
        let jac = symmetric_eigenvalues(&a, 6);
        assert!((jac[0] - 10.0).abs() < 1e-9, "{jac:?}");
    }

    #[test]
    fn lanczos_reports_the_algebraic_top_not_the_largest_magnitude() {
        // The negative eigenvalue has the largest magnitude; power iteration finds it.
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let eigs = [-43.0, 11.7, 3.0, 1.0, 0.5, 0.0, -2.0, 0.25];
        let a = with_spectrum(&eigs, 6);
        let mut hvp = |v: &Vec<f64>| mat_vec(&a, v);
        let pi = power_iteration(&HostSpace(8), &mut hvp, 500, 1e-12, &mut rng);
        assert!((pi.value + 43.0).abs() < 1e-6, "{pi:?}");
        let s = lanczos(&HostSpace(8), &mut hvp, 100, 1e-12, &mut rng);
        assert!((s.top().value - 11.7).abs() < 1e-9, "{s:?}");
        assert!((s.bottom().value + 43.0).abs() < 1e-9, "{s:?}");
    }

    #[test]
    fn lanczos_matches_a_full_eigendecomposition() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let n = 60;
        let eigs: Vec<f64> = (0..n).map(|i| ((i * 37) % 60) as f64 * 0.5 - 5.0).collect();
        let a = with_spectrum(&eigs, 10);
        let mut hvp = |v: &Vec<f64>| mat_vec(&a, v);
        let s = lanczos(&HostSpace(n), &mut hvp, 100, 1e-6, &mut rng);
        let mut exact = symmetric_eigenvalues(&a, n);
        exact.sort_by(|x, y| x.total_cmp(y));
        let top = *exact.last().unwrap();
        assert!(
            (s.top().value - top).abs() <= 1e-4 * top.abs(),
            "{:?} vs {top}",
            s.top()
        );
        // Run to the dimension (no early stop): every eigenvalue comes out.
        let s = lanczos(&HostSpace(n), &mut hvp, 100, 0.0, &mut rng);
        assert_eq!(s.ritz_values.len(), n);
        for (r, e) in s.ritz_values.iter().zip(&exact) {
            assert!((r - e).abs() < 1e-8, "{r} vs {e}");
        }
        // The residual bounds the error.
        let s = lanczos(&HostSpace(n), &mut hvp, 12, 0.0, &mut rng);
        let t = s.top();
        assert!((t.value - top).abs() <= t.std_err + 1e-9, "{t:?} vs {top}");
    }

    #[test]
    fn fd_hvp_matches_quadratic() {
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
        let xs = [vec![1.0, 2.0], vec![0.0, 3.0], vec![-1.0, 1.0]];
        let t = gauss_newton_trace(xs.iter().cloned());
        assert!((t - (5.0 + 9.0 + 2.0) / 3.0).abs() < 1e-12);
    }
}

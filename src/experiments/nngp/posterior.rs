//! Conjugate regression with a GP prior scaled by sigma_v^2 (host f64, nalgebra's Cholesky).
//!
//! With the noise inside the scaled kernel, `Y_c ~ N(0, s K_y)` for each of C outputs, `K_y =
//! K + eps I`. Given `q = sum_c y_c' K_y^-1 y_c` over n training points:
//!
//! - ML-II scale: `s = q / (n C)`; the log marginal likelihood with it is
//!   `-nC/2 (ln(2 pi q / (nC)) + 1) - C/2 ln|K_y|` (what picks eps).
//! - Inverse-gamma prior `s ~ IG(a, b)`: posterior `IG(a + nC/2, b + q/2)`, and the predictive of
//!   a test target vector (C outputs sharing s) is a multivariate Student t with `2a + nC`
//!   degrees of freedom, location `mu* = k*' K_y^-1 Y` and scale
//!   `(b + q/2) / (a + nC/2) * (k** + eps - k*' K_y^-1 k*)`.
//! - Gaussian predictive with a given s: `N(mu*, s (k** + eps - k*' K_y^-1 k*) I_C)`.

use nalgebra::{Cholesky, DMatrix, Dyn};

pub use crate::metrics::special::ln_gamma;

/// `ln N(r; 0, s v I_C)` of a C-vector with squared norm `r2`.
pub fn gaussian_logpdf(r2: f64, c: usize, var: f64) -> f64 {
    let c = c as f64;
    -0.5 * c * (2.0 * std::f64::consts::PI * var).ln() - 0.5 * r2 / var
}

/// `ln t_nu(r; 0, scale2 I_C)`: the multivariate Student t of a C-vector with squared norm `r2`.
pub fn student_t_logpdf(r2: f64, c: usize, nu: f64, scale2: f64) -> f64 {
    let c = c as f64;
    ln_gamma(0.5 * (nu + c))
        - ln_gamma(0.5 * nu)
        - 0.5 * c * (nu * std::f64::consts::PI * scale2).ln()
        - 0.5 * (nu + c) * (r2 / (nu * scale2)).ln_1p()
}

/// `ln InvGamma(s; a, b)`.
pub fn inv_gamma_logpdf(s: f64, a: f64, b: f64) -> f64 {
    a * b.ln() - ln_gamma(a) - (a + 1.0) * s.ln() - b / s
}

/// One training set's posterior: the chosen noise, `K_y^-1`, `alpha = K_y^-1 Y` and `q`.
#[derive(Clone, Debug)]
pub struct Fit {
    pub n: usize,
    pub outputs: usize,
    /// The relative noise picked (eps / mean diag K).
    pub eps_rel: f64,
    /// The noise added to the diagonal.
    pub eps: f64,
    pub k_inv: DMatrix<f64>,
    pub alpha: DMatrix<f64>,
    /// `sum_c y_c' K_y^-1 y_c`.
    pub q: f64,
    /// The log marginal likelihood with the ML-II scale, for the chosen eps.
    pub log_ml: f64,
    /// Every candidate's (eps_rel, log marginal likelihood).
    pub candidates: Vec<(f64, f64)>,
}

/// The Cholesky factor of `k + noise I`, with growing jitter if it is not numerically positive
/// definite.
fn cholesky(k: &DMatrix<f64>, noise: f64) -> Option<Cholesky<f64, Dyn>> {
    let scale = k.diagonal().mean().abs().max(1e-300);
    for jitter in [0.0, 1e-10, 1e-8, 1e-6] {
        let mut m = k.clone();
        for i in 0..m.nrows() {
            m[(i, i)] += noise + jitter * scale;
        }
        if let Some(c) = Cholesky::new(m) {
            return Some(c);
        }
    }
    None
}

impl Fit {
    /// Fits `y` (n x C) with kernel `k` (n x n), eps picked from `eps_grid` (relative to the
    /// mean diagonal of `k`) by the marginal likelihood with the ML-II scale.
    pub fn new(k: &DMatrix<f64>, y: &DMatrix<f64>, eps_grid: &[f64]) -> Option<Fit> {
        let n = k.nrows();
        let c = y.ncols();
        let nc = (n * c) as f64;
        let mean_diag = k.diagonal().mean();
        // (eps_rel, log marginal likelihood, factor, alpha, q) of the best candidate so far.
        type Best = (f64, f64, Cholesky<f64, Dyn>, DMatrix<f64>, f64);
        let mut best: Option<Best> = None;
        let mut candidates = Vec::new();
        for &rel in eps_grid {
            let Some(ch) = cholesky(k, rel * mean_diag) else {
                continue;
            };
            let alpha = ch.solve(y);
            let q = y.component_mul(&alpha).sum();
            let logdet = 2.0 * ch.l_dirty().diagonal().iter().map(|v| v.ln()).sum::<f64>();
            let lml = -0.5 * nc * ((2.0 * std::f64::consts::PI * q / nc).ln() + 1.0)
                - 0.5 * c as f64 * logdet;
            candidates.push((rel, lml));
            if best.as_ref().is_none_or(|b| lml > b.1) {
                best = Some((rel, lml, ch, alpha, q));
            }
        }
        let (rel, lml, ch, alpha, q) = best?;
        Some(Fit {
            n,
            outputs: c,
            eps_rel: rel,
            eps: rel * mean_diag,
            k_inv: ch.inverse(),
            alpha,
            q,
            log_ml: lml,
            candidates,
        })
    }

    /// The ML-II scale `q / (nC)`.
    pub fn scale2_ml2(&self) -> f64 {
        self.q / (self.n * self.outputs) as f64
    }

    /// The inverse-gamma posterior `(a + nC/2, b + q/2)` from the prior `(a, b)`.
    pub fn inv_gamma_posterior(&self, a: f64, b: f64) -> (f64, f64) {
        (a + 0.5 * (self.n * self.outputs) as f64, b + 0.5 * self.q)
    }

    /// Predictive means (m x C) and the unscaled predictive variances
    /// `k** + eps - k*' K_y^-1 k*` (m) at test points with cross kernel `k_star` (n x m) and
    /// prior variances `k_ss`.
    pub fn predict(&self, k_star: &DMatrix<f64>, k_ss: &[f64]) -> (DMatrix<f64>, Vec<f64>) {
        let mean = k_star.transpose() * &self.alpha;
        let solved = &self.k_inv * k_star;
        let var = (0..k_star.ncols())
            .map(|j| {
                let quad = k_star.column(j).dot(&solved.column(j));
                (k_ss[j] + self.eps - quad).max(1e-12 * self.eps)
            })
            .collect();
        (mean, var)
    }
}

/// How the last-layer scale sigma_v^2 is treated.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scale {
    /// A fixed sigma_v^2 (the plain NNGP prior).
    Fixed(f64),
    /// sigma_v^2 = q / (nC), type-II maximum likelihood.
    Ml2,
    /// sigma_v^2 ~ InvGamma(a, b): the Student-t process.
    InverseGamma { a: f64, b: f64 },
    /// The inverse-gamma posterior's scale (b + q/2) / (a + nC/2) plugged into a Gaussian: the
    /// same scale as the t without its tails (ablation).
    InverseGammaPlugIn { a: f64, b: f64 },
}

impl Scale {
    /// `ln p(y*)` of a test target vector with squared residual `r2` and unscaled predictive
    /// variance `v`, under the fit `fit`.
    pub fn logpdf(&self, fit: &Fit, r2: f64, v: f64) -> f64 {
        let c = fit.outputs;
        match *self {
            Scale::Fixed(s) => gaussian_logpdf(r2, c, s * v),
            Scale::Ml2 => gaussian_logpdf(r2, c, fit.scale2_ml2() * v),
            Scale::InverseGamma { a, b } => {
                let (a2, b2) = fit.inv_gamma_posterior(a, b);
                student_t_logpdf(r2, c, 2.0 * a2, b2 / a2 * v)
            }
            Scale::InverseGammaPlugIn { a, b } => {
                let (a2, b2) = fit.inv_gamma_posterior(a, b);
                gaussian_logpdf(r2, c, b2 / a2 * v)
            }
        }
    }

    /// The scale sigma_v^2 the predictive uses (the t's scale parameter for the mixture).
    pub fn scale2(&self, fit: &Fit) -> f64 {
        match *self {
            Scale::Fixed(s) => s,
            Scale::Ml2 => fit.scale2_ml2(),
            Scale::InverseGamma { a, b } | Scale::InverseGammaPlugIn { a, b } => {
                let (a2, b2) = fit.inv_gamma_posterior(a, b);
                b2 / a2
            }
        }
    }
}

/// The mean negative log predictive density per output of targets `y` (m x C) given the
/// predictive means and unscaled variances.
pub fn nll_per_output(
    scale: Scale,
    fit: &Fit,
    y: &DMatrix<f64>,
    mean: &DMatrix<f64>,
    var: &[f64],
) -> f64 {
    let m = y.nrows();
    let total: f64 = (0..m)
        .map(|i| {
            let r2 = (y.row(i) - mean.row(i)).norm_squared();
            scale.logpdf(fit, r2, var[i])
        })
        .sum();
    -total / (m * fit.outputs) as f64
}

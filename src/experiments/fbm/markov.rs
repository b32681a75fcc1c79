//! Host numerics (f64, nalgebra) of the Markov-approximate fractional Brownian motion (ln Gamma
//! and the regularised upper incomplete gamma come from `metrics::special`): the geometric gamma
//! grid, the optimal type-I weights omega(H) (closed form), the approximation's exact
//! covariance, the linear state-space model of an fOU driven by it, its exact discretisation (Van
//! Loan), the Kalman log-likelihood (and a dense Gaussian twin for tests), exact fBM sampling
//! (Cholesky) and a Nelder-Mead minimiser.
//!
//! Type I (Mandelbrot-Van Ness): `B^H(t) ~ sum_k omega_k (Y_k(t) - Y_k(0))` with `dY_k =
//! -gamma_k Y_k dt + dW` started from their joint stationary law (`Cov(Y_i, Y_j) = 1 / (g_i +
//! g_j)`, one Brownian motion for all k). The weights minimise the L2 error over [0, T].

use nalgebra::{DMatrix, DVector};

pub use crate::metrics::special::{gamma_q, gamma_q_times_exp, ln_gamma};

/// The geometric grid `gamma_k = r^(k - (K + 1) / 2)`, `r = gamma_max^(2 / (K - 1))`, so that
/// gamma_min = 1 / gamma_max.
pub fn gamma_grid(k: usize, gamma_max: f64) -> Vec<f64> {
    if k == 1 {
        return vec![1.0];
    }
    let r = gamma_max.powf(2.0 / (k as f64 - 1.0));
    (1..=k)
        .map(|i| r.powf(i as f64 - (k as f64 + 1.0) / 2.0))
        .collect()
}

/// The optimal type-I weights `omega = A^{-1} b` over the horizon `t_end`.
pub fn omega(h: f64, gammas: &[f64], t_end: f64) -> Vec<f64> {
    let k = gammas.len();
    let t = t_end;
    let a = DMatrix::from_fn(k, k, |i, j| {
        let (gi, gj) = (gammas[i], gammas[j]);
        (2.0 * t + ((-gi * t).exp() - 1.0) / gi + ((-gj * t).exp() - 1.0) / gj) / (gi + gj)
    });
    let hp = h + 0.5;
    let gamma_h32 = ln_gamma(h + 1.5).exp();
    let b = DVector::from_fn(k, |i, _| {
        let g = gammas[i];
        2.0 * t / g.powf(hp) - t.powf(hp) / (g * gamma_h32)
            + ((-g * t).exp() - gamma_q_times_exp(hp, g * t)) / g.powf(hp + 1.0)
    });
    let sol = a
        .clone()
        .cholesky()
        .map(|c| c.solve(&b))
        .or_else(|| a.lu().solve(&b))
        .unwrap_or_else(|| DVector::from_element(k, f64::NAN));
    sol.iter().copied().collect()
}

/// d omega / dH by a central difference (omega is smooth in H).
pub fn omega_dh(h: f64, gammas: &[f64], t_end: f64) -> Vec<f64> {
    let e = 1e-5;
    let (p, m) = (omega(h + e, gammas, t_end), omega(h - e, gammas, t_end));
    p.iter().zip(&m).map(|(a, b)| (a - b) / (2.0 * e)).collect()
}

/// `Cov(Y_i(u), Y_j(v))` of the stationary OU components.
fn ou_cov(gi: f64, gj: f64, u: f64, v: f64) -> f64 {
    if v >= u {
        (-gj * (v - u)).exp() / (gi + gj)
    } else {
        (-gi * (u - v)).exp() / (gi + gj)
    }
}

/// The exact covariance `Cov(B^_H(s), B^_H(t))` of the type-I approximation.
pub fn ma_cov(omega: &[f64], gammas: &[f64], s: f64, t: f64) -> f64 {
    let mut c = 0.0;
    for (i, (&wi, &gi)) in omega.iter().zip(gammas).enumerate() {
        for (j, (&wj, &gj)) in omega.iter().zip(gammas).enumerate() {
            let _ = (i, j);
            let v = ou_cov(gi, gj, s, t) - ou_cov(gi, gj, s, 0.0) - ou_cov(gi, gj, 0.0, t)
                + ou_cov(gi, gj, 0.0, 0.0);
            c += wi * wj * v;
        }
    }
    c
}

/// `Var(B^_H(t)) / t^(2H)`: constant in t when the approximation has the right scaling.
pub fn ma_var_ratio(h: f64, k: usize, gamma_max: f64, t_end: f64, t: f64) -> f64 {
    let g = gamma_grid(k, gamma_max);
    let w = omega(h, &g, t_end);
    ma_cov(&w, &g, t, t) / t.powf(2.0 * h)
}

/// The fBM covariance with unit variance at t = 1.
pub fn fbm_cov(h: f64, s: f64, t: f64) -> f64 {
    0.5 * (s.powf(2.0 * h) + t.powf(2.0 * h) - (t - s).abs().powf(2.0 * h))
}

/// Exact fBM on `t_i = i * t_end / n`, i = 1..n (B(0) = 0), `paths` of them: the lower
/// Cholesky factor of the covariance times standard normals.
pub fn fbm_paths(
    h: f64,
    n: usize,
    t_end: f64,
    paths: usize,
    rng: &mut impl rand::Rng,
) -> Vec<Vec<f64>> {
    use rand_distr::{Distribution, StandardNormal};
    let ts: Vec<f64> = (1..=n).map(|i| t_end * i as f64 / n as f64).collect();
    let cov = DMatrix::from_fn(n, n, |i, j| fbm_cov(h, ts[i], ts[j]));
    let l = cov
        .cholesky()
        .expect("the fBM covariance on distinct positive times is positive definite")
        .unpack();
    (0..paths)
        .map(|_| {
            let z = DVector::from_fn(n, |_, _| StandardNormal.sample(rng));
            (&l * z).iter().copied().collect()
        })
        .collect()
}

/// The linear-Gaussian model `ds = A s dt + b dW`, s = (X, Y_1..Y_K), observed as `y = X + N(0,
/// r)`: an fOU `dX = -theta X dt + sigma sum omega_k dY_k` (K = 0: the BM-driven OU).
#[derive(Clone, Debug, PartialEq)]
pub struct StateModel {
    pub theta: f64,
    pub sigma: f64,
    pub omega: Vec<f64>,
    pub gammas: Vec<f64>,
    /// Observation noise variance.
    pub r: f64,
}

impl StateModel {
    pub fn dim(&self) -> usize {
        self.gammas.len() + 1
    }

    /// Drift `A = [[-theta, -sigma (omega * gamma)'], [0, -diag(gamma)]]`.
    pub fn drift(&self) -> DMatrix<f64> {
        let n = self.dim();
        let mut a = DMatrix::zeros(n, n);
        a[(0, 0)] = -self.theta;
        for (k, (&w, &g)) in self.omega.iter().zip(&self.gammas).enumerate() {
            a[(0, k + 1)] = -self.sigma * w * g;
            a[(k + 1, k + 1)] = -g;
        }
        a
    }

    /// Diffusion `b = (sigma sum omega, 1, ..., 1)`.
    pub fn diffusion(&self) -> DVector<f64> {
        let mut b = DVector::from_element(self.dim(), 1.0);
        b[0] = if self.gammas.is_empty() {
            self.sigma
        } else {
            self.sigma * self.omega.iter().sum::<f64>()
        };
        b
    }

    /// The initial covariance: X(0) = 0, the OU components stationary (type I).
    pub fn initial_cov(&self) -> DMatrix<f64> {
        let n = self.dim();
        DMatrix::from_fn(n, n, |i, j| {
            if i == 0 || j == 0 {
                0.0
            } else {
                1.0 / (self.gammas[i - 1] + self.gammas[j - 1])
            }
        })
    }

    /// The exact transition over `dt` (Van Loan): `s' = F s + N(0, Q)`, from
    /// `expm([[-A, b b'], [0, A']] dt) = [[., G12], [0, G22]]`, `F = G22'`, `Q = F G12`.
    pub fn discretise(&self, dt: f64) -> (DMatrix<f64>, DMatrix<f64>) {
        let n = self.dim();
        let a = self.drift();
        let b = self.diffusion();
        let mut m = DMatrix::zeros(2 * n, 2 * n);
        m.view_mut((0, 0), (n, n)).copy_from(&(-&a * dt));
        m.view_mut((0, n), (n, n))
            .copy_from(&(&b * b.transpose() * dt));
        m.view_mut((n, n), (n, n)).copy_from(&(a.transpose() * dt));
        let e = m.exp();
        let f = e.view((n, n), (n, n)).transpose();
        let q = &f * e.view((0, n), (n, n));
        let q = (&q + q.transpose()) * 0.5;
        (f, q)
    }

    /// Log-likelihood of one path observed at `dt_obs, 2 dt_obs, ...` (Kalman filter).
    pub fn loglik_path(&self, f: &DMatrix<f64>, q: &DMatrix<f64>, ys: &[f64]) -> f64 {
        let n = self.dim();
        let mut m = DVector::zeros(n);
        let mut p = self.initial_cov();
        let mut ll = 0.0;
        for &y in ys {
            m = f * m;
            p = f * &p * f.transpose() + q;
            let s = p[(0, 0)] + self.r;
            let v = y - m[0];
            ll -= 0.5 * ((2.0 * std::f64::consts::PI * s).ln() + v * v / s);
            let gain = p.column(0) / s;
            m += &gain * v;
            p -= &gain * gain.transpose() * s;
            p = (&p + p.transpose()) * 0.5;
        }
        ll
    }

    /// Mean log-likelihood per observation over `paths` (each observed every `dt_obs`).
    pub fn loglik_per_obs(&self, paths: &[Vec<f64>], dt_obs: f64) -> f64 {
        let (f, q) = self.discretise(dt_obs);
        let total: f64 = paths.iter().map(|y| self.loglik_path(&f, &q, y)).sum();
        let count: usize = paths.iter().map(|y| y.len()).sum();
        total / count as f64
    }

    /// The same log-likelihood from the dense Gaussian of the observations (tests).
    pub fn loglik_dense(&self, ys: &[f64], dt_obs: f64) -> f64 {
        let (f, q) = self.discretise(dt_obs);
        let m = ys.len();
        // Prior state covariances P_i and Cov(s_j, s_i) = F^(i-j) P_j (i >= j).
        let mut ps = Vec::with_capacity(m);
        let mut p = self.initial_cov();
        for _ in 0..m {
            p = &f * &p * f.transpose() + &q;
            ps.push(p.clone());
        }
        let mut cov = DMatrix::zeros(m, m);
        for j in 0..m {
            let mut c = ps[j].clone();
            for i in j..m {
                cov[(i, j)] = c[(0, 0)];
                cov[(j, i)] = c[(0, 0)];
                c = &f * c;
            }
            cov[(j, j)] += self.r;
        }
        let chol = cov.cholesky().expect("positive definite");
        let y = DVector::from_column_slice(ys);
        let z = chol.l().solve_lower_triangular(&y).expect("triangular");
        let logdet: f64 = 2.0 * chol.l().diagonal().iter().map(|d| d.ln()).sum::<f64>();
        -0.5 * (m as f64 * (2.0 * std::f64::consts::PI).ln() + logdet + z.norm_squared())
    }
}

/// Nelder-Mead (reflection 1, expansion 2, contraction 1/2, shrink 1/2), one iteration per
/// [`NelderMead::iterate`] call.
#[derive(Clone, Debug)]
pub struct NelderMead {
    pub simplex: Vec<(Vec<f64>, f64)>,
    pub evaluations: usize,
}

impl NelderMead {
    pub fn new(x0: &[f64], step: f64, f: &mut impl FnMut(&[f64]) -> f64) -> NelderMead {
        let mut simplex = vec![(x0.to_vec(), f(x0))];
        for i in 0..x0.len() {
            let mut x = x0.to_vec();
            x[i] += step;
            let v = f(&x);
            simplex.push((x, v));
        }
        let mut nm = NelderMead {
            evaluations: simplex.len(),
            simplex,
        };
        nm.sort();
        nm
    }

    fn sort(&mut self) {
        self.simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
    }

    pub fn best(&self) -> (&[f64], f64) {
        (&self.simplex[0].0, self.simplex[0].1)
    }

    /// The spread of values over the simplex.
    pub fn spread(&self) -> f64 {
        self.simplex.last().unwrap().1 - self.simplex[0].1
    }

    pub fn iterate(&mut self, f: &mut impl FnMut(&[f64]) -> f64) {
        let n = self.simplex.len() - 1;
        let centroid: Vec<f64> = (0..n)
            .map(|d| self.simplex[..n].iter().map(|p| p.0[d]).sum::<f64>() / n as f64)
            .collect();
        let worst = self.simplex[n].clone();
        let along = |t: f64| -> Vec<f64> {
            centroid
                .iter()
                .zip(&worst.0)
                .map(|(c, w)| c + t * (c - w))
                .collect()
        };
        let mut eval = |x: &[f64], count: &mut usize| {
            *count += 1;
            let v = f(x);
            if v.is_nan() {
                f64::INFINITY
            } else {
                v
            }
        };
        let xr = along(1.0);
        let fr = eval(&xr, &mut self.evaluations);
        if fr < self.simplex[0].1 {
            let xe = along(2.0);
            let fe = eval(&xe, &mut self.evaluations);
            self.simplex[n] = if fe < fr { (xe, fe) } else { (xr, fr) };
        } else if fr < self.simplex[n - 1].1 {
            self.simplex[n] = (xr, fr);
        } else {
            let (xc, fc) = if fr < worst.1 {
                let x = along(0.5);
                let v = eval(&x, &mut self.evaluations);
                (x, v)
            } else {
                let x = along(-0.5);
                let v = eval(&x, &mut self.evaluations);
                (x, v)
            };
            if fc < worst.1.min(fr) {
                self.simplex[n] = (xc, fc);
            } else {
                let best = self.simplex[0].0.clone();
                for p in self.simplex.iter_mut().skip(1) {
                    let x: Vec<f64> = best
                        .iter()
                        .zip(&p.0)
                        .map(|(b, v)| b + 0.5 * (v - b))
                        .collect();
                    let v = eval(&x, &mut self.evaluations);
                    *p = (x, v);
                }
            }
        }
        self.sort();
    }
}

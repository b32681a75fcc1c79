//! The harness's 2-D part: densities in the plane with exact interpolant fields, an MLP over
//! `(t, x)` with its regression step, ODE / SDE samplers on the host, and sample metrics.
//!
//! - [`Mixture`]: an isotropic Gaussian mixture (the ring of Gaussians) with the exact velocity
//!   and score of the one-sided linear interpolant `x_t = (1 - t) z + t x1`, `z ~ N(0, I)`
//!   (host, f64, log-sum-exp responsibilities).
//! - [`checker`]: the checkerboard of the stochastic-interpolants notebook (8 filled 2 x 2 cells
//!   in `[-4, 4]^2`) and its support test.
//! - [`PlaneNet`]: `[t, x] -> depth x hidden SiLU -> 2`, evaluated on a batch of particles and
//!   trained by regression (Adam step per call).
//! - Samplers over any field given as a closure on a batch: [`euler`], [`heun`],
//!   [`euler_maruyama`] (drift `b + eps s`, noise `sqrt(2 eps)`), and the one-sided Tweedie jump
//!   [`tweedie_one_sided`].
//! - Metrics: [`sliced_w1`] with evenly spaced directions (unequal sample sizes allowed),
//!   [`mmd2_multi`] (unbiased MMD^2 summed over RBF bandwidths), [`scatter`] pictures.

use dfdx::prelude::*;
use rand::Rng;
use rand_distr::StandardNormal;

use crate::experiments::classifier::upload_rows;
use crate::experiments::RunStop;
use crate::metrics::distances::mmd2_rbf;
use crate::metrics::picture::Picture;
use crate::nn::models::{Activation, Mlp};
use crate::nn::store::ParamStore;
use crate::nn::transfer::Download;
use crate::nn::Optimizer;

/// A point of the plane.
pub type P2 = [f64; 2];

/// `(alpha, beta, alpha', beta')` of the one-sided linear interpolant at `t`.
pub fn linear(t: f64) -> (f64, f64, f64, f64) {
    (1.0 - t, t, -1.0, 1.0)
}

/// A standard normal point.
pub fn normal(rng: &mut impl Rng) -> P2 {
    [rng.sample(StandardNormal), rng.sample(StandardNormal)]
}

/// `n` standard normal points.
pub fn normals(n: usize, rng: &mut impl Rng) -> Vec<P2> {
    (0..n).map(|_| normal(rng)).collect()
}

/// An isotropic Gaussian mixture in the plane.
#[derive(Clone, Debug, PartialEq)]
pub struct Mixture {
    pub weights: Vec<f64>,
    pub means: Vec<P2>,
    pub stds: Vec<f64>,
}

impl Mixture {
    /// `k` equal Gaussians of `std` on the circle of `radius` (`densities::ring_centers`).
    pub fn ring(k: usize, radius: f64, std: f64) -> Mixture {
        Mixture {
            weights: vec![1.0 / k as f64; k],
            means: crate::datasets::densities::ring_centers(k, radius),
            stds: vec![std; k],
        }
    }

    /// `n` samples (components drawn by weight).
    pub fn sample(&self, n: usize, rng: &mut impl Rng) -> Vec<P2> {
        (0..n)
            .map(|_| {
                let mut u: f64 = rng.gen();
                let mut k = 0;
                while k + 1 < self.weights.len() && u >= self.weights[k] {
                    u -= self.weights[k];
                    k += 1;
                }
                let z = normal(rng);
                [
                    self.means[k][0] + self.stds[k] * z[0],
                    self.means[k][1] + self.stds[k] * z[1],
                ]
            })
            .collect()
    }

    /// Per component at time `t`: the log of `pi_k N(x; beta mu_k, v_k I)`, `d_k = x - beta
    /// mu_k` and `v_k = alpha^2 + beta^2 sigma_k^2`.
    fn components(&self, t: f64, x: P2) -> Vec<(f64, P2, f64)> {
        let (a, b, _, _) = linear(t);
        (0..self.weights.len())
            .map(|k| {
                let v = a * a + b * b * self.stds[k] * self.stds[k];
                let d = [x[0] - b * self.means[k][0], x[1] - b * self.means[k][1]];
                let lw = self.weights[k].ln()
                    - (d[0] * d[0] + d[1] * d[1]) / (2.0 * v)
                    - (2.0 * std::f64::consts::PI * v).ln();
                (lw, d, v)
            })
            .collect()
    }

    /// The log density of `x_t = (1 - t) z + t x1` at `x` (t = 1: the mixture itself).
    pub fn log_density_t(&self, t: f64, x: P2) -> f64 {
        let c = self.components(t, x);
        let m = c.iter().map(|c| c.0).fold(f64::NEG_INFINITY, f64::max);
        m + c.iter().map(|c| (c.0 - m).exp()).sum::<f64>().ln()
    }

    /// The exact velocity `b = E[alpha' z + beta' x1 | x_t = x]` and score `s = grad log rho_t`
    /// of the one-sided linear interpolant.
    pub fn fields(&self, t: f64, x: P2) -> (P2, P2) {
        let (a, b, da, db) = linear(t);
        let c = self.components(t, x);
        let m = c.iter().map(|c| c.0).fold(f64::NEG_INFINITY, f64::max);
        let total: f64 = c.iter().map(|c| (c.0 - m).exp()).sum();
        let (mut vel, mut score) = ([0.0; 2], [0.0; 2]);
        for (k, (lw, d, v)) in c.iter().enumerate() {
            let w = (lw - m).exp() / total;
            let s2 = self.stds[k] * self.stds[k];
            for i in 0..2 {
                score[i] += w * (-d[i] / v);
                let ez = a * d[i] / v;
                let ex1 = self.means[k][i] + b * s2 * d[i] / v;
                vel[i] += w * (da * ez + db * ex1);
            }
        }
        (vel, score)
    }

    /// Whether `x` is farther than `k_sigma` standard deviations from every mean.
    pub fn off_support(&self, x: P2, k_sigma: f64) -> bool {
        self.means.iter().zip(&self.stds).all(|(m, s)| {
            let d2 = (x[0] - m[0]).powi(2) + (x[1] - m[1]).powi(2);
            d2 > (k_sigma * s).powi(2)
        })
    }
}

/// The checkerboard of the stochastic-interpolants notebook: `u1 ~ U[-2, 2)`, `u2 = U[0, 1) -
/// 2 Bernoulli(1/2) + (floor(u1) mod 2)`, both scaled by 2: uniform on the 8 cells of
/// `[-4, 4]^2` (side 2) whose column plus row index is even.
pub fn checker(n: usize, rng: &mut impl Rng) -> Vec<P2> {
    (0..n)
        .map(|_| {
            let u1: f64 = rng.gen::<f64>() * 4.0 - 2.0;
            let u2: f64 = rng.gen::<f64>() - 2.0 * f64::from(rng.gen::<bool>() as u8);
            [2.0 * u1, 2.0 * (u2 + u1.floor().rem_euclid(2.0))]
        })
        .collect()
}

/// Whether `x` lies outside [`checker`]'s support (an empty cell or outside `[-4, 4]^2`).
pub fn checker_off(x: P2) -> bool {
    if !(x[0].is_finite() && x[1].is_finite()) || x.iter().any(|v| v.abs() > 4.0) {
        return true;
    }
    let cell = |v: f64| ((v / 2.0).floor() as i64).clamp(-2, 1);
    (cell(x[0]) + cell(x[1])).rem_euclid(2) != 0
}

/// A field evaluated on a batch of particles at one time.
pub type Field<'a> = dyn FnMut(f64, &[P2]) -> Vec<P2> + 'a;
/// A drift and a score evaluated on a batch at one time.
pub type DriftScore<'a> = dyn FnMut(f64, &[P2]) -> (Vec<P2>, Vec<P2>) + 'a;

/// `steps` Euler steps of `dx = v(t, x) dt` from `t0` to `t1`.
pub fn euler(x: &[P2], t0: f64, t1: f64, steps: usize, v: &mut Field<'_>) -> Vec<P2> {
    let dt = (t1 - t0) / steps as f64;
    let mut x = x.to_vec();
    for i in 0..steps {
        let f = v(t0 + i as f64 * dt, &x);
        for (p, f) in x.iter_mut().zip(&f) {
            p[0] += dt * f[0];
            p[1] += dt * f[1];
        }
    }
    x
}

/// `steps` Heun steps (2 evaluations each) of `dx = v(t, x) dt` from `t0` to `t1`.
pub fn heun(x: &[P2], t0: f64, t1: f64, steps: usize, v: &mut Field<'_>) -> Vec<P2> {
    let dt = (t1 - t0) / steps as f64;
    let mut x = x.to_vec();
    for i in 0..steps {
        let t = t0 + i as f64 * dt;
        let f1 = v(t, &x);
        let pred: Vec<P2> = x
            .iter()
            .zip(&f1)
            .map(|(p, f)| [p[0] + dt * f[0], p[1] + dt * f[1]])
            .collect();
        let f2 = v(t + dt, &pred);
        for ((p, a), b) in x.iter_mut().zip(&f1).zip(&f2) {
            p[0] += 0.5 * dt * (a[0] + b[0]);
            p[1] += 0.5 * dt * (a[1] + b[1]);
        }
    }
    x
}

/// `steps` Euler-Maruyama steps of `dX = [b + eps s] dt + sqrt(2 eps) dW` from `t0` to `t1`
/// (`bs` returns `(b, s)`), the noise drawn from `rng`.
pub fn euler_maruyama(
    x: &[P2],
    t0: f64,
    t1: f64,
    steps: usize,
    eps: f64,
    bs: &mut DriftScore<'_>,
    rng: &mut impl Rng,
) -> Vec<P2> {
    let dt = (t1 - t0) / steps as f64;
    let noise = (2.0 * eps * dt).max(0.0).sqrt();
    let mut x = x.to_vec();
    for i in 0..steps {
        let (b, s) = bs(t0 + i as f64 * dt, &x);
        for ((p, b), s) in x.iter_mut().zip(&b).zip(&s) {
            let xi = normal(rng);
            for j in 0..2 {
                p[j] += dt * (b[j] + eps * s[j]) + noise * xi[j];
            }
        }
    }
    x
}

/// The one-sided Tweedie jump `E[x1 | x_t = x] = (x + alpha^2 s) / beta` at `t`.
pub fn tweedie_one_sided(x: &[P2], t: f64, s: &[P2]) -> Vec<P2> {
    let (a, b, _, _) = linear(t);
    x.iter()
        .zip(s)
        .map(|(p, s)| [(p[0] + a * a * s[0]) / b, (p[1] + a * a * s[1]) / b])
        .collect()
}

/// Exact Wasserstein-1 between two 1-D samples of any sizes: the integral of `|F_a - F_b|`.
pub fn w1_1d(mut a: Vec<f64>, mut b: Vec<f64>) -> f64 {
    a.sort_unstable_by(f64::total_cmp);
    b.sort_unstable_by(f64::total_cmp);
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j) = (0usize, 0usize);
    let mut last = a[0].min(b[0]);
    let mut total = 0.0;
    while i < a.len() || j < b.len() {
        let next = match (a.get(i), b.get(j)) {
            (Some(&u), Some(&v)) => u.min(v),
            (Some(&u), None) => u,
            (None, Some(&v)) => v,
            (None, None) => break,
        };
        total += (i as f64 / na - j as f64 / nb).abs() * (next - last);
        last = next;
        while i < a.len() && a[i] <= next {
            i += 1;
        }
        while j < b.len() && b[j] <= next {
            j += 1;
        }
    }
    total
}

/// Sliced Wasserstein-1: the mean of the 1-D W1 over `directions` evenly spaced angles in
/// `[0, pi)` (fixed, so repeated measurements are comparable). Non-finite points count as
/// far away (1e6).
pub fn sliced_w1(x: &[P2], y: &[P2], directions: usize) -> f64 {
    let fin = |v: f64| if v.is_finite() { v } else { 1e6 };
    (0..directions)
        .map(|k| {
            let th = std::f64::consts::PI * k as f64 / directions as f64;
            let (c, s) = (th.cos(), th.sin());
            let proj = |p: &[P2]| p.iter().map(|q| fin(c * q[0] + s * q[1])).collect();
            w1_1d(proj(x), proj(y))
        })
        .sum::<f64>()
        / directions as f64
}

/// Unbiased MMD^2 with the Gaussian kernel, summed over `bandwidths`.
pub fn mmd2_multi(x: &[P2], y: &[P2], bandwidths: &[f64]) -> f64 {
    let flat = |p: &[P2]| -> Vec<f64> {
        p.iter()
            .flat_map(|q| [q[0], q[1]].map(|v| if v.is_finite() { v } else { 1e6 }))
            .collect()
    };
    let (fx, fy) = (flat(x), flat(y));
    bandwidths
        .iter()
        .map(|&h| mmd2_rbf(&fx, &fy, 2, h, true))
        .sum()
}

/// A scatter picture of `points` over `reference`.
pub fn scatter(points: &[P2], reference: &[P2]) -> Picture {
    let f = |p: &[P2]| -> Vec<[f32; 2]> { p.iter().map(|q| [q[0] as f32, q[1] as f32]).collect() };
    Picture::scatter(&f(points), &f(reference))
}

/// `[t, x] -> depth x hidden SiLU -> 2`, its parameters in a store under `"{prefix}.{i}.*"`.
#[derive(Clone, Debug)]
pub struct PlaneNet {
    pub mlp: Mlp,
}

impl PlaneNet {
    pub fn new<D: Device<f32>>(
        store: &mut ParamStore<f32, D>,
        prefix: &str,
        hidden: usize,
        depth: usize,
        rng: &mut impl Rng,
    ) -> PlaneNet {
        let mut sizes = vec![3];
        sizes.extend(std::iter::repeat_n(hidden, depth));
        sizes.push(2);
        PlaneNet {
            mlp: Mlp::new(store, prefix, &sizes, Activation::Silu, rng),
        }
    }

    fn input<D: Device<f32>>(dev: &D, t: &[f64], x: &[P2]) -> Tensor<(usize, usize), f32, D> {
        let rows: Vec<f64> = t
            .iter()
            .zip(x)
            .flat_map(|(t, p)| [*t, p[0], p[1]])
            .collect();
        upload_rows(dev, &rows, 3)
    }

    /// The output at every `(t_i, x_i)` (no tape).
    pub fn predict<D: Device<f32>>(
        &self,
        store: &ParamStore<f32, D>,
        t: &[f64],
        x: &[P2],
    ) -> Vec<P2> {
        let out = self
            .mlp
            .logits(store, Self::input(store.device(), t, x))
            .download();
        out.chunks(2).map(|c| [c[0] as f64, c[1] as f64]).collect()
    }

    /// The output at one time `t` for every particle.
    pub fn predict_at<D: Device<f32>>(
        &self,
        store: &ParamStore<f32, D>,
        t: f64,
        x: &[P2],
    ) -> Vec<P2> {
        self.predict(store, &vec![t; x.len()], x)
    }

    /// One Adam step on the mean squared error to `target` (per coordinate); returns the loss
    /// before the step.
    pub fn regression_step<D: Device<f32>>(
        &self,
        store: &mut ParamStore<f32, D>,
        opt: &mut Optimizer<f32, D>,
        t: &[f64],
        x: &[P2],
        target: &[P2],
    ) -> Result<f64, RunStop> {
        let dev = store.device().clone();
        let input = Self::input(&dev, t, x);
        let flat: Vec<f64> = target.iter().flat_map(|p| *p).collect();
        let target = upload_rows(&dev, &flat, 2);
        let pred = self.mlp.forward(store, input.leaky_trace());
        let (loss, tape) = mse_loss(pred, target).split_tape();
        let value = loss.download()[0] as f64;
        if !value.is_finite() {
            return Ok(value);
        }
        let mut grads = loss.put_tape(tape).backward();
        opt.step(store, &mut grads)
            .map_err(|e| RunStop::Failed(format!("optimizer update: {e:?}")))?;
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn exact_fields_solve_the_transport_equation_and_match_the_score() {
        // d/dt rho + div(rho b) = 0 and s = grad log rho_t, by central differences.
        let mix = Mixture {
            weights: vec![0.2, 0.5, 0.3],
            means: vec![[1.0, -2.0], [-1.5, 0.5], [2.0, 2.5]],
            stds: vec![0.3, 0.6, 0.45],
        };
        let h = 1e-5;
        for &(t, x) in &[(0.3, [0.2, -0.4]), (0.7, [1.1, 0.9]), (0.95, [-1.2, 0.4])] {
            let rho = |t: f64, x: P2| mix.log_density_t(t, x).exp();
            let (_, s) = mix.fields(t, x);
            let dt = (rho(t + h, x) - rho(t - h, x)) / (2.0 * h);
            let mut div = 0.0;
            for i in 0..2 {
                let (mut p, mut m) = (x, x);
                p[i] += h;
                m[i] -= h;
                div += (rho(t, p) * mix.fields(t, p).0[i] - rho(t, m) * mix.fields(t, m).0[i])
                    / (2.0 * h);
                let g = (mix.log_density_t(t, p) - mix.log_density_t(t, m)) / (2.0 * h);
                assert!((g - s[i]).abs() < 1e-6, "score {i}: {g} vs {}", s[i]);
            }
            assert!(
                (dt + div).abs() < 1e-6 * (1.0 + dt.abs()),
                "t {t}: d rho/dt {dt} + div {div}"
            );
        }
    }

    #[test]
    fn the_exact_flow_and_sde_reach_the_ring() {
        let ring = Mixture::ring(8, 3.0, 0.25);
        let mut rng = StdRng::seed_from_u64(0);
        let x0 = normals(1500, &mut rng);
        let target = ring.sample(1500, &mut rng);
        let floor = sliced_w1(&ring.sample(1500, &mut rng), &target, 64);
        let mut v = |t: f64, x: &[P2]| x.iter().map(|p| ring.fields(t, *p).0).collect();
        let ode = heun(&x0, 0.0, 1.0, 100, &mut v);
        let mut bs = |t: f64, x: &[P2]| x.iter().map(|p| ring.fields(t, *p)).unzip();
        let sde = euler_maruyama(&x0, 0.0, 0.99, 200, 1.0, &mut bs, &mut rng);
        let s: Vec<P2> = sde.iter().map(|p| ring.fields(0.99, *p).1).collect();
        let sde = tweedie_one_sided(&sde, 0.99, &s);
        for x in [&ode, &sde] {
            let off = x.iter().filter(|p| ring.off_support(**p, 3.0)).count() as f64 / 1500.0;
            let sw = sliced_w1(x, &target, 64);
            assert!(off < 0.03, "off-support {off}");
            assert!(sw < floor + 0.05, "SW {sw} vs floor {floor}");
        }
    }

    #[test]
    fn w1_1d_matches_sorted_matching_and_a_shift() {
        let a = vec![0.3, -1.0, 2.0, 0.7];
        let b = vec![1.3, 0.0, 3.0, 1.7];
        assert!((w1_1d(a.clone(), b) - 1.0).abs() < 1e-12);
        // a repeated twice is the same measure.
        let aa: Vec<f64> = a.iter().chain(&a).copied().collect();
        assert!(w1_1d(a.clone(), aa).abs() < 1e-12);
        let c = vec![0.0, 1.0];
        let d = vec![0.0, 0.5, 1.0];
        // F_c - F_d: 1/2 - 1/3 on [0, 0.5), 1/2 - 2/3 on [0.5, 1): 1/12 + 1/12.
        assert!((w1_1d(c, d) - 1.0 / 6.0).abs() < 1e-12);
    }

    #[test]
    fn the_checkerboard_fills_its_cells_only() {
        let mut rng = StdRng::seed_from_u64(4);
        let x = checker(4000, &mut rng);
        assert!(x.iter().all(|p| !checker_off(*p)));
        let mut cells = std::collections::BTreeSet::new();
        for p in &x {
            cells.insert(((p[0] / 2.0).floor() as i64, (p[1] / 2.0).floor() as i64));
        }
        assert_eq!(cells.len(), 8);
        assert!(checker_off([1.0, -1.0]) && checker_off([4.5, 0.5]) && !checker_off([1.0, 1.0]));
    }
}

//! The solvers, one denoiser evaluation per iteration, over a batch of problems (one row each):
//!
//! - **RED-diff** (Mardani et al. 2023): Adam on the point estimate `mu` (initialized at
//!   `A^+ y`) over the loss `||y - A mu||^2 / (2 m) + lambda (sigma_t / alpha_t) L_noise`, `t`
//!   swept once from large to small. At each `t`: `x0 = mu + sigma_x0 z`,
//!   `x_t = alpha_t x0 + sigma_t eps`, `e = eps_theta(x_t, t)` (no tape), and
//!   `L_noise = mean(stopgrad(e - eps) * x0)`, whose gradient is `(e - eps) / 64`: one forward
//!   pass and no back-propagation through the network.
//! - **DPS** (Chung et al. 2023): DDPM ancestral steps respaced to K (DDIM with `eta = 1`), each
//!   followed by `x_{t-1} -= zeta grad_{x_t} ||y - A x0_hat(x_t)||` with
//!   `x0_hat = (x_t - sigma_t e) / alpha_t`, the gradient through the network's input (dfdx tape).
//! - the pseudo-inverse `A^+ y` (no prior, no iteration).
//!
//! The iterates live on the host; only the network runs on the device.

use dfdx::prelude::*;
use rand::Rng;
use rand_distr::StandardNormal;

use super::tasks::{Problem, PIXELS};
use crate::experiments::diffusion::net::upload_f32;
use crate::experiments::diffusion::{EpsNet, NoiseSchedule};
use crate::nn::models::Matrix;
use crate::nn::store::ParamStore;
use crate::nn::transfer::Download;

/// Which solver a run uses.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Method {
    /// RED-diff with regularization weight `lambda` (0: least squares from `A^+ y`, no network).
    RedDiff { lambda: f64 },
    /// DPS with step size `zeta`.
    Dps { zeta: f64 },
    /// `A^+ y`.
    Pinv,
}

impl Method {
    /// Whether the solver evaluates the denoiser.
    pub fn uses_prior(&self) -> bool {
        match self {
            Method::RedDiff { lambda } => *lambda > 0.0,
            Method::Dps { .. } => true,
            Method::Pinv => false,
        }
    }

    /// Iterations at a budget of `k` denoiser evaluations (the pseudo-inverse has none).
    pub fn iterations(&self, k: usize) -> usize {
        match self {
            Method::Pinv => 0,
            _ => k,
        }
    }
}

/// The trained prior on a device.
pub struct Prior<D: Device<f32>> {
    pub store: ParamStore<f32, D>,
    pub net: EpsNet,
}

impl<D: Device<f32>> Prior<D> {
    /// `eps_theta(x, t)` for every row of `x` (`rows x 64`, host) at one timestep.
    pub fn eps(&self, x: &[f32], t: usize) -> Vec<f32> {
        let n = x.len() / PIXELS;
        let xd: Matrix<f32, D> = upload_f32(self.store.device(), x, PIXELS);
        self.net.eps(&self.store, &xd, None, &vec![t; n]).download()
    }

    /// `eps_theta(x, t)` and the vector-Jacobian product `(d eps / d x)^T w` for the `w` that
    /// `weights` computes from the prediction (both `rows x 64`, host).
    pub fn eps_and_vjp(
        &self,
        x: &[f32],
        t: usize,
        weights: &mut dyn FnMut(&[f32]) -> Vec<f32>,
    ) -> (Vec<f32>, Vec<f32>) {
        let n = x.len() / PIXELS;
        let dev = self.store.device();
        let xd: Matrix<f32, D> = upload_f32(dev, x, PIXELS);
        let out = self
            .net
            .eps_taped(&self.store, xd.leaky_trace(), None, &vec![t; n]);
        let (e, tape) = out.split_tape();
        let e_host = e.download();
        let w: Matrix<f32, D> = upload_f32(dev, &weights(&e_host), PIXELS);
        let loss = (e.put_tape(tape) * w).sum::<Rank0, _>();
        let grads = loss.backward();
        (e_host, grads.get(&xd).download())
    }
}

/// Adam on host values (PyTorch's form: bias-corrected moments, `eps` outside the root).
#[derive(Clone, Debug)]
pub struct Adam {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    m: Vec<f64>,
    v: Vec<f64>,
    steps: i32,
}

impl Adam {
    pub fn new(len: usize, beta1: f64, beta2: f64) -> Adam {
        Adam {
            beta1,
            beta2,
            eps: 1e-8,
            m: vec![0.0; len],
            v: vec![0.0; len],
            steps: 0,
        }
    }

    /// `x -= lr m_hat / (sqrt(v_hat) + eps)`.
    pub fn step(&mut self, x: &mut [f32], g: &[f32], lr: f64) {
        self.steps += 1;
        let c1 = 1.0 - self.beta1.powi(self.steps);
        let c2 = 1.0 - self.beta2.powi(self.steps);
        for (((x, g), m), v) in x.iter_mut().zip(g).zip(&mut self.m).zip(&mut self.v) {
            let g = *g as f64;
            *m = self.beta1 * *m + (1.0 - self.beta1) * g;
            *v = self.beta2 * *v + (1.0 - self.beta2) * g * g;
            *x -= (lr * (*m / c1) / ((*v / c2).sqrt() + self.eps)) as f32;
        }
    }
}

/// RED-diff's observation loss of one image, `mean((y - A x0)^2) / 2`.
pub fn observation_loss(p: &Problem, x0: &[f32]) -> f64 {
    let ax = p.op.apply(x0);
    ax.iter()
        .zip(&p.y)
        .map(|(a, y)| (*y as f64 - *a as f64).powi(2))
        .sum::<f64>()
        / (2.0 * p.y.len() as f64)
}

/// The gradient of RED-diff's loss for one image at `x0`: `-A^T (y - A x0) / m` (the
/// observation term, exact) plus `weight (e - eps) / 64` (the score term with the network's
/// Jacobian dropped; `weight = lambda sigma_t / alpha_t`).
pub fn reddiff_gradient(p: &Problem, x0: &[f32], e: &[f32], eps: &[f32], weight: f64) -> Vec<f32> {
    let r: Vec<f32> =
        p.op.apply(x0)
            .iter()
            .zip(&p.y)
            .map(|(a, y)| (a - y) / p.y.len() as f32)
            .collect();
    let mut g = p.op.adjoint(&r);
    if weight != 0.0 {
        for ((g, e), z) in g.iter_mut().zip(e).zip(eps) {
            *g += (weight * (*e as f64 - *z as f64) / PIXELS as f64) as f32;
        }
    }
    g
}

/// DPS's measurement term of one image: `||y - A x0_hat||` and its gradient with respect to
/// `x0_hat`, `-A^T (y - A x0_hat) / ||y - A x0_hat||`.
pub fn residual_norm_gradient(p: &Problem, x0: &[f32]) -> (f64, Vec<f32>) {
    let r: Vec<f32> =
        p.op.apply(x0)
            .iter()
            .zip(&p.y)
            .map(|(a, y)| a - y)
            .collect();
    let norm = r.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
    let scale = 1.0 / norm.max(1e-12);
    let g =
        p.op.adjoint(&r)
            .into_iter()
            .map(|v| (v as f64 * scale) as f32)
            .collect();
    (norm, g)
}

/// One solve of every problem at a budget of K denoiser evaluations.
#[derive(Clone, Debug)]
pub struct Solve {
    pub k: usize,
    /// Timesteps, descending.
    pub ts: Vec<usize>,
    /// Iterations done.
    pub done: usize,
    /// RED-diff's `mu`, or DPS's `x_t` (rows x 64).
    pub x: Vec<f32>,
    /// The current estimate of the clean images (RED-diff: `mu`; DPS: `x0_hat`).
    pub x0: Vec<f32>,
    pub lr: f64,
    adam: Adam,
    pub diverged: bool,
    /// Seconds spent in the iterations.
    pub seconds: f64,
}

/// How RED-diff's step size follows the budget: `clamp(scale / K, min, max)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LrRule {
    pub scale: f64,
    pub min: f64,
    pub max: f64,
}

impl LrRule {
    pub fn lr(&self, k: usize) -> f64 {
        (self.scale / k as f64).clamp(self.min, self.max)
    }
}

/// Values at or beyond this (on the [-1, 1] pixel scale) count as diverged.
pub const DIVERGED_ABOVE: f32 = 1e4;

impl Solve {
    /// The start of a solve: `A^+ y` for RED-diff and the pseudo-inverse, `x_T ~ N(0, I)` for
    /// DPS.
    pub fn start(
        method: Method,
        schedule: &NoiseSchedule,
        k: usize,
        lr: f64,
        problems: &[Problem],
        rng: &mut impl Rng,
    ) -> Solve {
        let pinv: Vec<f32> = problems.iter().flat_map(|p| p.op.pinv(&p.y)).collect();
        let mut ts = schedule.respaced(k);
        ts.reverse();
        let x = match method {
            Method::Dps { .. } => (0..pinv.len())
                .map(|_| rng.sample::<f64, _>(StandardNormal) as f32)
                .collect(),
            _ => pinv.clone(),
        };
        Solve {
            k,
            ts,
            done: 0,
            adam: Adam::new(pinv.len(), 0.9, 0.99),
            x,
            x0: pinv,
            lr,
            diverged: false,
            seconds: 0.0,
        }
    }

    pub fn finished(&self, method: Method) -> bool {
        self.diverged || self.done >= method.iterations(self.k)
    }

    /// One RED-diff iteration at the next timestep; returns the mean observation loss.
    pub fn reddiff_step<D: Device<f32>>(
        &mut self,
        lambda: f64,
        sigma_x0: f64,
        schedule: &NoiseSchedule,
        prior: Option<&Prior<D>>,
        problems: &[Problem],
        rng: &mut impl Rng,
    ) -> f64 {
        let t = self.ts[self.done];
        let (a, s) = schedule.mix(t);
        let n = problems.len();
        let mut x0 = self.x.clone();
        for v in x0.iter_mut() {
            *v += (sigma_x0 * rng.sample::<f64, _>(StandardNormal)) as f32;
        }
        let eps: Vec<f32> = (0..n * PIXELS)
            .map(|_| rng.sample::<f64, _>(StandardNormal) as f32)
            .collect();
        let e = match prior {
            Some(prior) if lambda > 0.0 => {
                let xt: Vec<f32> = x0
                    .iter()
                    .zip(&eps)
                    .map(|(x, z)| (a * *x as f64 + s * *z as f64) as f32)
                    .collect();
                prior.eps(&xt, t)
            }
            _ => vec![0.0; n * PIXELS],
        };
        let weight = if lambda > 0.0 { lambda * s / a } else { 0.0 };
        let mut grad = Vec::with_capacity(n * PIXELS);
        let mut loss = 0.0;
        for (i, p) in problems.iter().enumerate() {
            let r = i * PIXELS..(i + 1) * PIXELS;
            loss += observation_loss(p, &x0[r.clone()]);
            grad.extend(reddiff_gradient(
                p,
                &x0[r.clone()],
                &e[r.clone()],
                &eps[r],
                weight,
            ));
        }
        self.adam.step(&mut self.x, &grad, self.lr);
        self.x0.clone_from(&self.x);
        self.done += 1;
        self.check();
        loss / n as f64
    }

    /// One DPS iteration at the next timestep; returns the mean measurement residual norm.
    pub fn dps_step<D: Device<f32>>(
        &mut self,
        zeta: f64,
        schedule: &NoiseSchedule,
        prior: &Prior<D>,
        problems: &[Problem],
        rng: &mut impl Rng,
    ) -> f64 {
        let t = self.ts[self.done];
        let to = self.ts.get(self.done + 1).copied();
        let (c1, c2) = schedule.x0_coefficients(t);
        let x = self.x.clone();
        let mut w = Vec::with_capacity(x.len());
        let mut x0hat = Vec::with_capacity(x.len());
        let mut total = 0.0;
        let (e, vjp) = prior.eps_and_vjp(&x, t, &mut |e: &[f32]| {
            x0hat = x
                .iter()
                .zip(e)
                .map(|(x, e)| (c1 * *x as f64 + c2 * *e as f64) as f32)
                .collect();
            for (i, p) in problems.iter().enumerate() {
                let (norm, g) = residual_norm_gradient(p, &x0hat[i * PIXELS..(i + 1) * PIXELS]);
                total += norm;
                w.extend(g);
            }
            w.iter().map(|v| (c2 * *v as f64) as f32).collect()
        });
        let c = schedule.ddim(Some(t), to, 1.0);
        for (i, xi) in self.x.iter_mut().enumerate() {
            let grad = c1 * w[i] as f64 + vjp[i] as f64;
            let z = if c.noise_std > 0.0 {
                rng.sample::<f64, _>(StandardNormal)
            } else {
                0.0
            };
            *xi = (c.x_coef * x[i] as f64 + c.eps_coef * e[i] as f64 + c.noise_std * z
                - zeta * grad) as f32;
        }
        self.done += 1;
        self.x0 = if to.is_none() { self.x.clone() } else { x0hat };
        self.check();
        total / problems.len() as f64
    }

    fn check(&mut self) {
        if self
            .x
            .iter()
            .any(|v| !v.is_finite() || v.abs() >= DIVERGED_ABOVE)
        {
            self.diverged = true;
        }
    }
}

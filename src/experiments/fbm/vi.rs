//! The paper's variational method on a dfdx device (f32): posterior paths of the Markov-
//! approximate fOU by Euler-Maruyama on the tape, one control `u` added to every OU component,
//!
//! ```text
//! dY_k = (-gamma_k Y_k + u) dt + dW,   dX = -theta X dt + sigma sum_k omega_k dY_k,
//! ELBO = E_q[ sum_i log N(y_i; X(t_i), r) ] - E_q[ 1/2 int u^2 dt ]
//! ```
//!
//! with one shared Brownian increment per step, X(0) = 0 and Y(0) from its stationary law.
//! The control is an MLP of (sin t, cos t, the next two observations of the path, the time to
//! the next one), the state (X, Y) and `r = (y_next - X) / tau`: 2 x `hidden` tanh, last layer
//! zero-initialised, plus a linear skip `c r` (c = 0 at the start: u = 0, the prior).
//! omega(H) needs the incomplete gamma, so it is computed on the host and fed as a tensor; the H gradient is chained on the host, `dL/dH = <dL/d omega, d omega/dH>`. H, theta,
//! sigma (as logit H, log theta, log sigma) take host Adam steps of `model_lr`; the control
//! takes the project's Adam with `lr`.

use std::collections::VecDeque;

use dfdx::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

use super::driver::{Evaluation, Trainer};
use super::markov::{omega, omega_dh};
use super::{data_tensors, fit_values, logit, model_text, sigmoid, Dataset, ModelSpace};
use crate::artifacts::{self, NamedTensor};
use crate::experiments::RunStop;
use crate::nn::optim::{Optimizer, Rule};
use crate::nn::store::{ParamId, ParamStore, Taped};
use crate::nn::transfer::{Download, Upload};
use crate::params::Params;

/// Known inputs of the control per row: sin t, cos t, next observation, the one after, time to
/// the next one (in observation intervals).
pub const KNOWN: usize = 5;

struct Ids {
    w1c: ParamId,
    w1x: ParamId,
    w1y: ParamId,
    w1r: ParamId,
    skip: ParamId,
    b1: ParamId,
    w2: ParamId,
    b2: ParamId,
    w3: ParamId,
    b3: ParamId,
    omega: ParamId,
    theta: ParamId,
    sigma: ParamId,
}

/// One ELBO estimate's parts (per observation / per sampled path).
#[derive(Clone, Copy, Debug, Default)]
pub struct ElboParts {
    pub elbo: f64,
    pub kl_path: f64,
    pub loss: f64,
}

pub struct ViRun<D: Device<f32>> {
    dev: D,
    store: ParamStore<f32, D>,
    ids: Ids,
    adam: Optimizer<f32, D>,
    space: ModelSpace,
    data: Dataset,
    /// (logit H, log theta, log sigma) and their host Adam moments.
    z: [f64; 3],
    m: [f64; 3],
    v: [f64; 3],
    t: i32,
    steps_done: i32,
    model_lr: f64,
    warmup: i32,
    em_steps: usize,
    samples: usize,
    hidden: usize,
    ratio: usize,
    dt: f64,
    feats: Vec<Tensor<(usize, usize), f32, D>>,
    obs: Vec<Tensor<(usize, usize), f32, D>>,
    gam: Tensor<(usize, usize), f32, D>,
    chol0: nalgebra::DMatrix<f64>,
    rng: StdRng,
    last: ElboParts,
    recent: VecDeque<f64>,
}

impl<D: Device<f32>> ViRun<D> {
    pub fn new(dev: &D, p: &Params, data: Dataset, seed: u64) -> ViRun<D> {
        let space = ModelSpace::from_params(p, true);
        let k = space.gammas.len();
        let hidden = p.usize("hidden");
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5D_E1);
        let mut store = ParamStore::new(dev);
        let uniform = |n: usize, fan_in: usize, rng: &mut StdRng| -> Vec<f32> {
            use rand::Rng;
            let b = 1.0 / (fan_in as f32).sqrt();
            (0..n).map(|_| rng.gen_range(-b..b)).collect()
        };
        let fan1 = KNOWN + 2 + k;
        let ids = Ids {
            w1c: store.add(
                "control.0.weight_known",
                &[KNOWN, hidden],
                uniform(KNOWN * hidden, fan1, &mut rng),
            ),
            w1x: store.add(
                "control.0.weight_x",
                &[1, hidden],
                uniform(hidden, fan1, &mut rng),
            ),
            w1y: store.add(
                "control.0.weight_y",
                &[k, hidden],
                uniform(k * hidden, fan1, &mut rng),
            ),
            w1r: store.add(
                "control.0.weight_r",
                &[1, hidden],
                uniform(hidden, fan1, &mut rng),
            ),
            skip: store.add("control.skip", &[1, 1], vec![0.0]),
            b1: store.add("control.0.bias", &[hidden], uniform(hidden, fan1, &mut rng)),
            w2: store.add(
                "control.1.weight",
                &[hidden, hidden],
                uniform(hidden * hidden, hidden, &mut rng),
            ),
            b2: store.add(
                "control.1.bias",
                &[hidden],
                uniform(hidden, hidden, &mut rng),
            ),
            w3: store.add("control.2.weight", &[hidden, 1], vec![0.0; hidden]),
            b3: store.add("control.2.bias", &[1], vec![0.0]),
            omega: store.add("omega", &[k, 1], vec![0.0; k]),
            theta: store.add("theta", &[1, 1], vec![1.0]),
            sigma: store.add("sigma", &[1, 1], vec![1.0]),
        };
        for id in [ids.omega, ids.theta, ids.sigma] {
            store.set_trainable(id, false);
        }
        let em_steps = p.usize("em_steps");
        let m = data.train[0].len();
        let ratio = em_steps / m;
        let dt = p.f64("t_end") / em_steps as f64;
        let samples = p.usize("samples");
        let b = data.train.len() * samples;
        // Known control inputs per Euler step, and the observations per row.
        let row_path = |row: usize| row / samples;
        let feats = (0..em_steps)
            .map(|n| {
                let t = n as f64 * dt;
                let j = n / ratio;
                let tau = ((j + 1) * ratio - n) as f64 / ratio as f64;
                let mut v = Vec::with_capacity(b * KNOWN);
                for row in 0..b {
                    let y = &data.train[row_path(row)];
                    v.extend_from_slice(&[
                        t.sin() as f32,
                        t.cos() as f32,
                        y[j] as f32,
                        y[(j + 1).min(m - 1)] as f32,
                        tau as f32,
                    ]);
                }
                dev.upload(v, (b, KNOWN))
            })
            .collect();
        let obs = (0..m)
            .map(|j| {
                let v = (0..b)
                    .map(|row| data.train[row_path(row)][j] as f32)
                    .collect();
                dev.upload(v, (b, 1usize))
            })
            .collect();
        let gam = dev.upload(
            (0..b)
                .flat_map(|_| space.gammas.iter().map(|&g| g as f32))
                .collect(),
            (b, k),
        );
        let cov0 =
            nalgebra::DMatrix::from_fn(k, k, |i, j| 1.0 / (space.gammas[i] + space.gammas[j]));
        let chol0 = cov0.cholesky().expect("stationary covariance").unpack();
        let h0 = p.f64("h_start");
        let mut run = ViRun {
            dev: dev.clone(),
            store,
            ids,
            adam: Optimizer::new(Rule::adam(), p.f64("lr")),
            space,
            data,
            z: [logit(h0), 0.0, 0.0],
            m: [0.0; 3],
            v: [0.0; 3],
            t: 0,
            steps_done: 0,
            model_lr: p.f64("model_lr"),
            warmup: p.usize("warmup") as i32,
            em_steps,
            samples,
            hidden,
            ratio,
            dt,
            feats,
            obs,
            gam,
            chol0,
            rng: StdRng::seed_from_u64(seed ^ 0xE1B0),
            last: ElboParts::default(),
            recent: VecDeque::new(),
        };
        run.upload_model();
        run
    }

    pub fn hurst(&self) -> f64 {
        sigmoid(self.z[0])
    }

    pub fn theta(&self) -> f64 {
        self.z[1].exp()
    }

    pub fn sigma(&self) -> f64 {
        self.z[2].exp()
    }

    /// Sets the model parameters (tests): H, theta, sigma.
    pub fn set_model(&mut self, h: f64, theta: f64, sigma: f64) {
        self.z = [logit(h), theta.ln(), sigma.ln()];
        self.upload_model();
    }

    fn upload_model(&mut self) {
        let w = omega(self.hurst(), &self.space.gammas, self.space.t_end);
        self.store
            .upload(self.ids.omega, w.iter().map(|&v| v as f32).collect());
        self.store.upload(self.ids.theta, vec![self.theta() as f32]);
        self.store.upload(self.ids.sigma, vec![self.sigma() as f32]);
    }

    fn rows(&self) -> usize {
        self.data.train.len() * self.samples
    }

    /// The loss (minus the ELBO per observation, without the constant) on the tape, and its
    /// parts: the summed squared residuals and the summed KL over rows.
    fn forward(&mut self) -> (Taped<(), f32, D>, ElboParts) {
        let b = self.rows();
        let k = self.space.gammas.len();
        let (hd, dt) = (self.hidden, self.dt);
        let s = &self.store;
        let ids = &self.ids;
        // Y(0) from its stationary law, one shared Brownian increment per row and step.
        let mut y0 = Vec::with_capacity(b * k);
        for _ in 0..b {
            let e = nalgebra::DVector::from_fn(k, |_, _| StandardNormal.sample(&mut self.rng));
            let y = &self.chol0 * e;
            y0.extend(y.iter().map(|&v| v as f32));
        }
        let mut x: Taped<(usize, usize), f32, D> =
            self.dev.upload(vec![0.0f32; b], (b, 1usize)).retaped();
        let mut y: Taped<(usize, usize), f32, D> = self.dev.upload(y0, (b, k)).retaped();
        let mut sq: Option<Taped<(), f32, D>> = None;
        let mut kl: Option<Taped<(), f32, D>> = None;
        let sd = dt.sqrt() as f32;
        for n in 0..self.em_steps {
            // r = (y_next - x) / tau: what the posterior has to cover before the next
            // observation (tau in observation intervals).
            let j = n / self.ratio;
            let inv_tau = self.ratio as f32 / ((j + 1) * self.ratio - n) as f32;
            let r = (x.with_empty_tape().negate() + self.obs[j].clone()) * inv_tau;
            let h1 = self.feats[n]
                .retaped::<OwnedTape<f32, D>>()
                .matmul(s.matrix(ids.w1c))
                + x.with_empty_tape().matmul(s.matrix(ids.w1x))
                + y.with_empty_tape().matmul(s.matrix(ids.w1y))
                + r.with_empty_tape().matmul(s.matrix(ids.w1r))
                + s.vector(ids.b1).broadcast_like::<_, Axis<0>>(&(b, hd));
            let h2 = h1.tanh().matmul(s.matrix(ids.w2))
                + s.vector(ids.b2).broadcast_like::<_, Axis<0>>(&(b, hd));
            let u = h2.tanh().matmul(s.matrix(ids.w3))
                + s.vector(ids.b3).broadcast_like::<_, Axis<0>>(&(b, 1usize))
                + r.matmul(s.matrix(ids.skip));
            let u = u.reshape_like(&(b,));
            let kl_n = u.with_empty_tape().square().sum::<(), _>();
            kl = Some(match kl {
                None => kl_n,
                Some(a) => a + kl_n,
            });
            let noise: Vec<f32> = (0..b)
                .map(|_| {
                    let z: f64 = StandardNormal.sample(&mut self.rng);
                    sd * z as f32
                })
                .collect();
            let dw = self.dev.upload(noise, (b,));
            let incr = (u * dt as f32 + dw).broadcast_like::<_, Axis<1>>(&(b, k));
            let dy = incr - y.with_empty_tape() * self.gam.clone() * dt as f32;
            y = y + dy.with_empty_tape();
            let dx = dy.matmul(s.matrix(ids.omega)).matmul(s.matrix(ids.sigma))
                - x.with_empty_tape().matmul(s.matrix(ids.theta)) * dt as f32;
            x = x + dx;
            if (n + 1) % self.ratio == 0 {
                let j = (n + 1) / self.ratio - 1;
                let e = (x.with_empty_tape() - self.obs[j].clone())
                    .square()
                    .sum::<(), _>();
                sq = Some(match sq {
                    None => e,
                    Some(a) => a + e,
                });
            }
        }
        let (sq, kl) = (sq.expect("observations"), kl.expect("steps"));
        let (sq_v, sq_tape) = sq.split_tape();
        let (kl_v, kl_tape) = kl.split_tape();
        let (sqs, kls) = (sq_v.download()[0] as f64, kl_v.download()[0] as f64);
        let count = (b * self.obs.len()) as f64;
        let r = self.space.r;
        // The state chains carry the operations of every step on their own tapes (the copies
        // above were taken with empty ones): merged in with weight zero, they replay them.
        let chains = x.sum::<(), _>() + y.sum::<(), _>();
        let loss = sq_v.put_tape(sq_tape) * (0.5 / (r * count)) as f32
            + kl_v.put_tape(kl_tape) * (0.5 * dt / count) as f32
            + chains * 0.0;
        let kl_total = 0.5 * dt * kls;
        let elbo =
            (-0.5 * sqs / r - kl_total) / count - 0.5 * (2.0 * std::f64::consts::PI * r).ln();
        let loss_v = 0.5 * sqs / (r * count) + kl_total / count;
        (
            loss,
            ElboParts {
                elbo,
                kl_path: kl_total / b as f64,
                loss: loss_v,
            },
        )
    }

    /// One ELBO estimate at the current parameters without an update (tests).
    pub fn estimate(&mut self) -> ElboParts {
        let (loss, parts) = self.forward();
        drop(loss);
        parts
    }

    /// Gradients of the loss with respect to (logit H, log theta, log sigma) from one sample
    /// (tests: against finite differences with common random numbers).
    pub fn model_gradient(&mut self) -> ([f64; 3], ElboParts) {
        let (loss, parts) = self.forward();
        let grads = loss.backward();
        (self.chain(&grads), parts)
    }

    fn chain(&self, grads: &Gradients<f32, D>) -> [f64; 3] {
        let get = |id: ParamId| -> Vec<f64> {
            grads
                .get(self.store.flat(id))
                .download()
                .into_iter()
                .map(f64::from)
                .collect()
        };
        let (go, gt, gs) = (
            get(self.ids.omega),
            get(self.ids.theta),
            get(self.ids.sigma),
        );
        let h = self.hurst();
        let dw = omega_dh(h, &self.space.gammas, self.space.t_end);
        let gh: f64 = go.iter().zip(&dw).map(|(a, b)| a * b).sum();
        [
            gh * h * (1.0 - h),
            gt[0] * self.theta(),
            gs[0] * self.sigma(),
        ]
    }

    /// Reseeds the sampler (tests: common random numbers).
    pub fn reseed(&mut self, seed: u64) {
        self.rng = StdRng::seed_from_u64(seed);
    }
}

impl<D: Device<f32>> Trainer for ViRun<D> {
    fn evaluate(&mut self, _step: u64, _last: bool) -> Result<Evaluation, RunStop> {
        let mut values = fit_values(
            &self.space,
            &self.data,
            self.hurst(),
            self.theta(),
            self.sigma(),
        );
        if self.steps_done > 0 {
            values.push(("elbo", self.last.elbo));
            values.push(("kl_path", self.last.kl_path));
        }
        Ok(Evaluation::new(values))
    }

    fn step(&mut self, _step: u64) -> Result<f64, RunStop> {
        let (loss, parts) = self.forward();
        let mut grads = loss.backward();
        let g = self.chain(&grads);
        self.adam
            .step(&mut self.store, &mut grads)
            .map_err(|e| RunStop::Failed(format!("optimizer update: {e:?}")))?;
        // Host Adam on (logit H, log theta, log sigma), after the control's warm-up.
        self.steps_done += 1;
        if self.steps_done <= self.warmup {
            self.last = parts;
            return Ok(parts.loss);
        }
        self.t += 1;
        let (b1, b2) = (0.9f64, 0.999f64);
        for (i, &gi) in g.iter().enumerate().take(3) {
            self.m[i] = b1 * self.m[i] + (1.0 - b1) * gi;
            self.v[i] = b2 * self.v[i] + (1.0 - b2) * gi * gi;
            let mh = self.m[i] / (1.0 - b1.powi(self.t));
            let vh = self.v[i] / (1.0 - b2.powi(self.t));
            self.z[i] -= self.model_lr * mh / (vh.sqrt() + 1e-8);
        }
        self.z[0] = self.z[0].clamp(logit(0.02), logit(0.98));
        self.upload_model();
        self.last = parts;
        self.recent.push_back(parts.elbo);
        if self.recent.len() > 20 {
            self.recent.pop_front();
        }
        Ok(parts.loss)
    }

    fn finish(&mut self, final_values: &mut std::collections::BTreeMap<String, f64>, _steps: u64) {
        if !self.recent.is_empty() {
            let v: Vec<f64> = self.recent.iter().copied().collect();
            let (m, se) = crate::verdict::mean_se(&v);
            // The final ELBO: the mean of the last (up to) 20 estimates.
            final_values.insert("elbo".into(), m);
            final_values.insert("elbo_se".into(), se);
        }
    }

    fn write_artifacts(&self, dir: &std::path::Path) -> std::io::Result<()> {
        let mut params: Vec<NamedTensor> = self
            .store
            .named_values()
            .into_iter()
            .map(|(name, shape, values)| NamedTensor::new(&name, &shape, values))
            .collect();
        params.push(NamedTensor::new("hurst", &[1], vec![self.hurst()]));
        params.push(NamedTensor::new(
            "gammas",
            &[self.space.gammas.len()],
            self.space.gammas.clone(),
        ));
        let model = self.space.model(self.hurst(), self.theta(), self.sigma());
        let ll = model.loglik_per_obs(&self.data.train, self.data.dt_obs);
        let mut text = model_text(
            &self.space,
            &self.data,
            self.hurst(),
            self.theta(),
            self.sigma(),
            ll,
        );
        text.push_str(&format!(
            "variational: Euler-Maruyama with {} steps of {}, {} sampled paths per data path; \
             control u = W3 tanh(W2 tanh(W1 [sin t, cos t, y_next, y_next2, tau, x, y_1..y_K, r] \
             + b1) + b2) + b3 + skip r, r = (y_next - x) / tau (control.*: weight_known, \
             weight_x, weight_y, weight_r are the rows of W1); \
             last ELBO per observation {:.6}\n",
            self.em_steps, self.dt, self.samples, self.last.elbo
        ));
        artifacts::write_run(dir, &params, &data_tensors(&self.data), &text)
    }
}

//! The noise-predicting network `eps_theta(x_t, t[, c])`: an MLP over `[x_t, c, emb(t)]` (SiLU,
//! `depth` hidden layers of `hidden` units) with the sinusoidal time embedding, and its trainer
//! (DDPM's `L_simple = E ||eps_theta(x_t, t) - eps||^2`, Adam with cosine decay).
//!
//! Inputs are assembled on the device by concatenation, so a caller can put `x_t` on the tape
//! and take the gradient of anything built from the prediction with respect to it (DPS).

use dfdx::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

use super::schedule::{time_embedding, NoiseSchedule};
use crate::experiments::classifier::upload_rows;
use crate::experiments::RunStop;
use crate::nn::models::{Activation, Matrix, Mlp, TapedMatrix};
use crate::nn::optim::cosine_lr;
use crate::nn::store::ParamStore;
use crate::nn::transfer::Download;
use crate::nn::{Optimizer, Rule};

/// The network's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EpsNetConfig {
    /// Values per sample (64 for the digits, 2 for a plane density).
    pub data_dim: usize,
    /// Values of the condition appended to the input (0: unconditional).
    pub cond_dim: usize,
    pub hidden: usize,
    /// Hidden layers.
    pub depth: usize,
    /// Width of the time embedding (even).
    pub emb_dim: usize,
}

impl EpsNetConfig {
    /// The harness's digits prior: `[x (64), t-embedding (32)] -> 3 x 256 SiLU -> 64`.
    pub fn digits() -> EpsNetConfig {
        EpsNetConfig {
            data_dim: 64,
            cond_dim: 0,
            hidden: 256,
            depth: 3,
            emb_dim: 32,
        }
    }

    pub fn sizes(&self) -> Vec<usize> {
        let mut s = vec![self.data_dim + self.cond_dim + self.emb_dim];
        s.extend(std::iter::repeat_n(self.hidden, self.depth));
        s.push(self.data_dim);
        s
    }
}

/// `eps_theta`, its parameters in a store under `"{prefix}.{i}.weight|bias"`.
#[derive(Clone, Debug)]
pub struct EpsNet {
    pub mlp: Mlp,
    pub config: EpsNetConfig,
}

impl EpsNet {
    pub fn new<E: Dtype, D: Device<E>>(
        store: &mut ParamStore<E, D>,
        prefix: &str,
        config: EpsNetConfig,
        rng: &mut impl Rng,
    ) -> EpsNet {
        let mlp = Mlp::new(store, prefix, &config.sizes(), Activation::Silu, rng);
        EpsNet { mlp, config }
    }

    /// The time embeddings of `t` (`t.len() x emb_dim`) on the device.
    pub fn embedding<E: Dtype, D: Device<E>>(&self, dev: &D, t: &[usize]) -> Matrix<E, D> {
        let rows: Vec<f64> = t
            .iter()
            .flat_map(|&t| time_embedding(t as f64, self.config.emb_dim))
            .collect();
        upload_rows(dev, &rows, self.config.emb_dim)
    }

    /// `[x, c, emb(t)]`, keeping `x`'s tape.
    fn input<E: Dtype, D: Device<E>, T: Tape<E, D> + Merge<NoneTape>>(
        &self,
        x: Tensor<(usize, usize), E, D, T>,
        cond: Option<&Matrix<E, D>>,
        t: &[usize],
    ) -> Tensor<(usize, usize), E, D, T> {
        let (n, w) = *x.shape();
        assert_eq!(w, self.config.data_dim, "x has data_dim columns");
        assert_eq!(t.len(), n, "one timestep per row");
        let emb = self.embedding(x.device(), t);
        let x = match (cond, self.config.cond_dim) {
            (Some(c), k) if k > 0 => {
                assert_eq!(*c.shape(), (n, k), "one condition row per sample");
                (x, c.clone()).concat_along(Axis::<1>)
            }
            (None, 0) => x,
            _ => panic!("the condition must match cond_dim"),
        };
        (x, emb).concat_along(Axis::<1>)
    }

    /// The predicted noise for rows `x` at timesteps `t` (no tape).
    pub fn eps<E: Dtype, D: Device<E>>(
        &self,
        store: &ParamStore<E, D>,
        x: &Matrix<E, D>,
        cond: Option<&Matrix<E, D>>,
        t: &[usize],
    ) -> Matrix<E, D> {
        self.mlp.logits(store, self.input(x.clone(), cond, t))
    }

    /// The predicted noise on the tape of `x` (which may trace the input, the parameters, or
    /// both).
    pub fn eps_taped<E: Dtype, D: Device<E>>(
        &self,
        store: &ParamStore<E, D>,
        x: TapedMatrix<E, D>,
        cond: Option<&Matrix<E, D>>,
        t: &[usize],
    ) -> TapedMatrix<E, D> {
        self.mlp.forward(store, self.input(x, cond, t))
    }
}

/// One training batch drawn on the host: timesteps uniform in `0..T`, noise `N(0, I)` and
/// `x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps`, with the batch's condition rows.
#[derive(Clone, Debug)]
pub struct DenoisingBatch {
    pub t: Vec<usize>,
    pub x0: Vec<f32>,
    pub eps: Vec<f32>,
    pub xt: Vec<f32>,
    pub cond: Vec<f32>,
}

/// A denoising batch of `batch` rows of `data` (`dim` columns; `cond` has `cond_dim` columns
/// per row, or is empty).
pub fn denoising_batch(
    schedule: &NoiseSchedule,
    data: &[f32],
    cond: &[f32],
    dim: usize,
    cond_dim: usize,
    batch: usize,
    rng: &mut impl Rng,
) -> DenoisingBatch {
    let n = data.len() / dim;
    assert!(n > 0, "no data to train on");
    let mut b = DenoisingBatch {
        t: Vec::with_capacity(batch),
        x0: Vec::with_capacity(batch * dim),
        eps: Vec::with_capacity(batch * dim),
        xt: Vec::with_capacity(batch * dim),
        cond: Vec::with_capacity(batch * cond_dim),
    };
    for _ in 0..batch {
        let i = rng.gen_range(0..n);
        let t = rng.gen_range(0..schedule.steps());
        let (a, s) = schedule.mix(t);
        b.t.push(t);
        for &x in &data[i * dim..(i + 1) * dim] {
            let e: f64 = rng.sample(StandardNormal);
            b.x0.push(x);
            b.eps.push(e as f32);
            b.xt.push((a * x as f64 + s * e) as f32);
        }
        if cond_dim > 0 {
            b.cond
                .extend_from_slice(&cond[i * cond_dim..(i + 1) * cond_dim]);
        }
    }
    b
}

/// Host rows as a device matrix of the run's dtype.
pub fn upload_f32<E: Dtype, D: Device<E>>(dev: &D, v: &[f32], cols: usize) -> Matrix<E, D> {
    let v: Vec<f64> = v.iter().map(|&x| x as f64).collect();
    upload_rows(dev, &v, cols)
}

/// How to train the prior.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainConfig {
    pub steps: usize,
    pub batch: usize,
    /// Adam's peak learning rate, decayed by a cosine to 0.
    pub lr: f64,
    pub seed: u64,
}

/// A trained network's parameters on the host, with its loss curve (mean `L_simple` over each
/// `steps / 20` steps), ready to load into any device's store.
#[derive(Clone, Debug)]
pub struct TrainedEpsNet {
    pub config: EpsNetConfig,
    pub prefix: String,
    pub named: Vec<(String, Vec<usize>, Vec<f64>)>,
    pub loss_curve: Vec<f64>,
}

impl TrainedEpsNet {
    /// The network in a new store on `dev`.
    pub fn load<E: Dtype, D: Device<E>>(&self, dev: &D) -> (ParamStore<E, D>, EpsNet) {
        let mut store = ParamStore::new(dev);
        let mut rng = StdRng::seed_from_u64(0);
        let net = EpsNet::new(&mut store, &self.prefix, self.config, &mut rng);
        for (name, _, values) in &self.named {
            let id = store.id(name);
            let v = values
                .iter()
                .map(|&x| E::from_f64(x).expect("representable"))
                .collect();
            store.upload(id, v);
        }
        (store, net)
    }

    /// The last point of the loss curve.
    pub fn final_loss(&self) -> f64 {
        self.loss_curve.last().copied().unwrap_or(f64::NAN)
    }
}

/// Trains `eps_theta` on `data` (`config.data_dim` columns, with `cond` rows when
/// `config.cond_dim > 0`) with `L_simple`. `progress(step, mean recent loss)` is called about
/// every `steps / 20` steps and stops training by returning false.
#[allow(clippy::too_many_arguments)]
pub fn train_eps_net<E: Dtype + num_traits::ToPrimitive, D: Device<E>>(
    dev: &D,
    schedule: &NoiseSchedule,
    config: EpsNetConfig,
    train: TrainConfig,
    data: &[f32],
    cond: &[f32],
    progress: &mut dyn FnMut(usize, f64) -> bool,
) -> Result<TrainedEpsNet, RunStop> {
    let prefix = "eps";
    let mut rng = StdRng::seed_from_u64(train.seed);
    let mut store = ParamStore::<E, D>::new(dev);
    let net = EpsNet::new(&mut store, prefix, config, &mut rng);
    let mut opt = Optimizer::new(Rule::adam(), train.lr);
    let every = (train.steps / 20).max(1);
    let (mut sum, mut count) = (0.0, 0usize);
    let mut curve = Vec::new();
    for step in 0..train.steps {
        opt.lr = cosine_lr(train.lr, step, train.steps);
        let b = denoising_batch(
            schedule,
            data,
            cond,
            config.data_dim,
            config.cond_dim,
            train.batch,
            &mut rng,
        );
        let xt = upload_f32::<E, D>(dev, &b.xt, config.data_dim);
        let target = upload_f32::<E, D>(dev, &b.eps, config.data_dim);
        let c = (config.cond_dim > 0).then(|| upload_f32::<E, D>(dev, &b.cond, config.cond_dim));
        let pred = net.eps_taped(&store, xt.leaky_trace(), c.as_ref(), &b.t);
        let (loss, tape) = mse_loss(pred, target).split_tape();
        let value = loss.download()[0].to_f64().unwrap_or(f64::NAN);
        let loss = loss.put_tape(tape);
        if !value.is_finite() {
            return Err(RunStop::Diverged {
                step: step as u64,
                reason: format!("the prior's loss became {value} at step {step}"),
            });
        }
        let mut grads = loss.backward();
        opt.step(&mut store, &mut grads)
            .map_err(|e| RunStop::Failed(format!("{e:?}")))?;
        sum += value;
        count += 1;
        if (step + 1) % every == 0 || step + 1 == train.steps {
            let mean = sum / count.max(1) as f64;
            curve.push(mean);
            (sum, count) = (0.0, 0);
            if !progress(step + 1, mean) {
                return Err(RunStop::Stopped { step: step as u64 });
            }
        }
    }
    Ok(TrainedEpsNet {
        config,
        prefix: prefix.to_string(),
        named: store.named_values(),
        loss_curve: curve,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_gradient_matches_finite_differences() {
        // d/dx sum(w * eps(x)) through the concatenated input, against central differences.
        let dev = Cpu::default();
        let mut rng = StdRng::seed_from_u64(3);
        let mut store = ParamStore::<f64, Cpu>::new(&dev);
        let cfg = EpsNetConfig {
            data_dim: 3,
            cond_dim: 2,
            hidden: 8,
            depth: 2,
            emb_dim: 4,
        };
        let net = EpsNet::new(&mut store, "eps", cfg, &mut rng);
        let xs: Vec<f64> = (0..6).map(|_| rng.sample(StandardNormal)).collect();
        let cs: Vec<f64> = (0..4).map(|_| rng.sample(StandardNormal)).collect();
        let w: Vec<f64> = (0..6).map(|_| rng.sample(StandardNormal)).collect();
        let t = [5usize, 700];
        let c = dev.tensor_from_vec(cs, (2, 2));
        let wt = dev.tensor_from_vec(w.clone(), (2, 3));
        let x = dev.tensor_from_vec(xs.clone(), (2, 3));
        let out = net.eps_taped(&store, x.leaky_trace(), Some(&c), &t);
        let g = (out * wt).sum::<Rank0, _>().backward();
        let grad = g.get(&x).as_vec();
        let f = |v: &[f64]| -> f64 {
            let x = dev.tensor_from_vec(v.to_vec(), (2, 3));
            let e = net.eps(&store, &x, Some(&c), &t).as_vec();
            e.iter().zip(&w).map(|(a, b)| a * b).sum()
        };
        for i in 0..6 {
            let h = 1e-6;
            let (mut p, mut m) = (xs.clone(), xs.clone());
            p[i] += h;
            m[i] -= h;
            let fd = (f(&p) - f(&m)) / (2.0 * h);
            assert!((fd - grad[i]).abs() < 1e-7, "{i}: {fd} vs {}", grad[i]);
        }
    }

    #[test]
    fn training_lowers_the_denoising_loss() {
        // Data on a line in 2-D: a small network learns to denoise it well below the loss of
        // predicting zero (1 per coordinate).
        let dev = Cpu::default();
        let mut rng = StdRng::seed_from_u64(1);
        let data: Vec<f32> = (0..256)
            .flat_map(|_| {
                let u: f32 = rng.gen_range(-1.0..1.0);
                [u, 0.5 * u]
            })
            .collect();
        let cfg = EpsNetConfig {
            data_dim: 2,
            cond_dim: 0,
            hidden: 32,
            depth: 2,
            emb_dim: 8,
        };
        let train = TrainConfig {
            steps: 400,
            batch: 64,
            lr: 3e-3,
            seed: 0,
        };
        let mut calls = 0;
        let trained = train_eps_net::<f32, Cpu>(
            &dev,
            &NoiseSchedule::ddpm(),
            cfg,
            train,
            &data,
            &[],
            &mut |_, _| {
                calls += 1;
                true
            },
        )
        .unwrap();
        assert_eq!(calls, 20);
        assert!(trained.loss_curve[0] > 0.6, "{:?}", trained.loss_curve);
        assert!(trained.final_loss() < 0.45, "{:?}", trained.loss_curve);
        let (store, net) = trained.load::<f32, Cpu>(&dev);
        assert_eq!(store.named_values(), trained.named);
        assert_eq!(net.config, cfg);
    }
}

//! "Learning Rates as a Function of Batch Size: A Random Matrix Theory Approach to Neural
//! Network Training" (Granziol, Zohren, Roberts, JMLR 2022): the batch Hessian is the full-data
//! Hessian plus a fluctuation matrix whose entries scale like `1/B - 1/N`, so its extremal
//! eigenvalue grows as the batch shrinks; the largest stable learning rate then grows linearly in
//! B for SGD and like sqrt(B) for Adam.
//!
//! A tanh MLP 64-W-10 on the digits (f64, any dfdx device), warmed up by full-batch gradient
//! descent from the seed's initialization to `w_warm`. Every run measures one part at `w_warm`
//! for each batch size B (the x axis of its metrics is B):
//! - `curvature`: the top eigenvalue of the batch Hessian (Lanczos with full
//!   reorthogonalization on central-difference Hessian-vector products) and of the batch
//!   Gauss-Newton matrix (`J^T H_out J v`: `J v` by a central difference of the logits, the
//!   softmax output Hessian `diag(p) - p p^T` on the device, `J^T u` by one backward pass of
//!   `sum(u * f)`), averaged over `repeats` batches drawn without replacement;
//! - `sgd` / `adam`: the largest learning rate whose trial from `w_warm` stays stable, by
//!   bisection on log2(lr) (one fixed criterion, see [`LrSearch`]).
//!
//! `sampling = "full"` switches the mechanism off: every "batch" is the whole training set, so
//! there is no fluctuation matrix (the control the tests use).

pub mod bench;
mod verdict;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use dfdx::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

use super::classifier::{one_hot, rows, upload_rows, DigitsSplit};
use super::profile::{DeviceCase, Profile};
use super::{Experiment, FinishedRun, RunContext, RunEnd, RunStop};
use crate::artifacts::{self, NamedTensor};
use crate::datasets::{DIGIT_CLASSES, DIGIT_PIXELS};
use crate::metrics::hessian::lanczos;
use crate::metrics::picture::Picture;
use crate::metrics::MetricSpec;
use crate::nn::curvature::{fd_hvp, DeviceSpace};
use crate::nn::models::{accuracy_on_device, softmax_cross_entropy, Activation, Matrix, Mlp};
use crate::nn::store::{vec_ops, ParamStore, ParamVec};
use crate::nn::transfer::Download;
use crate::nn::{Optimizer, Rule};
use crate::params::{ParamSpec, Params};
use crate::verdict::Verdict;

pub struct LrBatchRmt;

/// Relative residual at which Lanczos stops before `lanczos_steps`.
const LANCZOS_TOL: f64 = 1e-4;
/// A trial fails when a mini-batch loss exceeds this multiple of the loss at initialization.
const BLOWUP: f64 = 1000.0;

impl Experiment for LrBatchRmt {
    fn kind(&self) -> &'static str {
        "lr-batch-rmt"
    }

    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::choice(
                "part",
                &["curvature", "sgd", "adam"],
                "curvature",
                "what the run measures per batch size: batch Hessian and Gauss-Newton lambda_max, \
                 or the largest stable SGD / Adam learning rate",
            ),
            ParamSpec::int(
                "width",
                32,
                1,
                4096,
                "hidden width of the tanh MLP 64-width-10",
            ),
            ParamSpec::int(
                "n_train",
                1024,
                8,
                1438,
                "training images N (a seeded subset of the 80% split)",
            ),
            ParamSpec::choice(
                "sampling",
                &["batch", "full"],
                "batch",
                "batch: mini-batches of B examples; full: every batch is the whole training set \
                 (no fluctuation: the mechanism switched off)",
            ),
            ParamSpec::int(
                "warm_steps",
                300,
                0,
                100_000,
                "full-batch gradient steps from the initialization to w_warm",
            ),
            ParamSpec::float(
                "warm_lr",
                0.1,
                1e-6,
                100.0,
                "learning rate of the warm start",
            ),
            ParamSpec::int(
                "b_max",
                256,
                2,
                4096,
                "largest power-of-two batch size (batch sizes 2, 4, ..., b_max; below N)",
            ),
            ParamSpec::int(
                "include_full",
                1,
                0,
                1,
                "1: also B = N (the full-data point: lambda_N, saturation)",
            ),
            ParamSpec::int(
                "s_max",
                64,
                2,
                4096,
                "largest B of the range S over which the exponents are fitted",
            ),
            ParamSpec::int(
                "repeats",
                6,
                1,
                100,
                "random batches (without replacement) averaged per B for lambda_max (1 at B = N)",
            ),
            ParamSpec::int(
                "lanczos_steps",
                30,
                2,
                500,
                "Lanczos iterations (full reorthogonalization)",
            ),
            ParamSpec::float(
                "hvp_h",
                1e-4,
                1e-9,
                1.0,
                "central-difference step of the Hessian- and Jacobian-vector products",
            ),
            ParamSpec::int(
                "trial_steps",
                150,
                1,
                100_000,
                "steps of one learning-rate trial",
            ),
            ParamSpec::int(
                "check_every",
                10,
                1,
                100_000,
                "steps between the full-batch loss checks of a trial",
            ),
            ParamSpec::float(
                "sgd_start_log2",
                -10.0,
                -60.0,
                20.0,
                "first SGD trial: 2^this",
            ),
            ParamSpec::float(
                "adam_start_log2",
                -16.0,
                -60.0,
                20.0,
                "first Adam trial: 2^this",
            ),
            ParamSpec::float(
                "cap_log2",
                7.0,
                -60.0,
                30.0,
                "largest learning rate tried, 2^this (reaching it: inconclusive at that B)",
            ),
            ParamSpec::float(
                "resolution",
                0.125,
                0.001,
                4.0,
                "width of the final bisection bracket, in octaves of lr",
            ),
        ]
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        vec![
            MetricSpec::new("max_lr_sgd", "largest stable SGD lr")
                .unit("lr")
                .x_axis("batch size B", 1.0)
                .log()
                .reference("sgd_linear_rule"),
            MetricSpec::new("max_lr_adam", "largest stable Adam lr")
                .unit("lr")
                .x_axis("batch size B", 1.0)
                .log()
                .reference("adam_sqrt_rule"),
            MetricSpec::new("lambda_max_hessian", "batch Hessian lambda_max")
                .unit("mean over batches")
                .x_axis("batch size B", 1.0)
                .log()
                .reference("lambda_max_full")
                .std_err("lambda_max_hessian_se"),
            MetricSpec::new("lambda_max_gn", "batch Gauss-Newton lambda_max")
                .unit("mean over batches")
                .x_axis("batch size B", 1.0)
                .log()
                .reference("lambda_max_full_gn"),
            MetricSpec::new("excess_lambda", "lambda_B - lambda_N")
                .x_axis("batch size B", 1.0)
                .log()
                .reference("excess_rule"),
            MetricSpec::new("two_over_lambda", "2 / lambda_max (quadratic-model bound)")
                .unit("lr")
                .x_axis("batch size B", 1.0)
                .log(),
            MetricSpec::new("exponent", "fitted log-log slope over S so far")
                .reference("claimed_exponent"),
            MetricSpec::new("trial_lr", "learning rate of the latest trial").log(),
            MetricSpec::new("trial_ok", "latest trial stable (1) or not (0)"),
            MetricSpec::new("lambda_max_hessian_se", "standard error over batches"),
            MetricSpec::new("lambda_max_full", "full-data Hessian lambda_max (B = N)"),
            MetricSpec::new("lambda_max_full_gn", "full-data Gauss-Newton lambda_max"),
            MetricSpec::new("excess_rule", "(1/B - 1/N) law through the smallest B"),
            MetricSpec::new("sgd_linear_rule", "linear rule through the smallest B"),
            MetricSpec::new("adam_sqrt_rule", "square-root rule through the smallest B"),
            MetricSpec::new("claimed_exponent", "the claimed exponent"),
        ]
    }

    fn table_metrics(&self) -> Vec<&'static str> {
        vec!["exponent", "warm_loss", "warm_acc", "init_loss", "wall_s"]
    }

    fn total_steps(&self, params: &Params) -> u64 {
        batch_sizes(params).last().copied().unwrap_or(0) as u64
    }

    fn builtin_presets(&self) -> &'static [(&'static str, &'static str)] {
        &[(
            "presets/lr-batch-rmt.toml",
            include_str!("../../../presets/lr-batch-rmt.toml"),
        )]
    }

    fn verdict_bar(&self) -> Option<(&'static str, Option<&'static str>)> {
        Some(("exponent", None))
    }

    fn quick_profile(&self) -> Profile {
        QUICK
    }

    fn device_cases(&self) -> Vec<DeviceCase> {
        let small = Profile {
            overrides: &[
                ("n_train", "128"),
                ("b_max", "16"),
                ("repeats", "2"),
                ("lanczos_steps", "10"),
                ("trial_steps", "30"),
                ("warm_steps", "50"),
            ],
            seeds: &[0],
            ..QUICK
        };
        let large = Profile {
            overrides: &[
                ("width", "1024"),
                ("b_max", "64"),
                ("repeats", "2"),
                ("trial_steps", "50"),
            ],
            seeds: &[0],
            ..QUICK
        };
        vec![
            DeviceCase {
                size: "preset",
                arm: "curvature",
                profile: small,
            },
            DeviceCase {
                size: "preset",
                arm: "sgd-maxlr",
                profile: small,
            },
            DeviceCase {
                size: "large",
                arm: "curvature",
                profile: large,
            },
        ]
    }

    fn bench(&self, quick: bool, out: &mut String) {
        bench::report(quick, out)
    }

    fn validate(&self, p: &Params) -> Result<(), String> {
        if p.usize("b_max") >= p.usize("n_train") {
            return Err(format!(
                "b_max ({}) must be below n_train ({})",
                p.usize("b_max"),
                p.usize("n_train")
            ));
        }
        let start = match p.text("part") {
            "adam" => p.f64("adam_start_log2"),
            _ => p.f64("sgd_start_log2"),
        };
        if start >= p.f64("cap_log2") {
            return Err("the first trial's log2(lr) must be below cap_log2".into());
        }
        Ok(())
    }

    fn memory(&self, p: &Params) -> crate::engine::memory::Estimate {
        let n = p.usize("n_train") as f64;
        let w = p.usize("width") as f64;
        let params = (DIGIT_PIXELS as f64 + 1.0) * w + (w + 1.0) * DIGIT_CLASSES as f64;
        let k = p.usize("lanczos_steps") as f64;
        crate::engine::memory::Estimate::of(&[
            (
                8.0 * params * (k + 8.0),
                format!("Lanczos basis: {k} vectors of {params} parameters (f64)"),
            ),
            (
                8.0 * n * (DIGIT_PIXELS as f64 + 4.0 * w + 6.0 * DIGIT_CLASSES as f64),
                format!("full-batch forward and backward over {n} images, width {w}"),
            ),
        ])
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<RunEnd, RunStop> {
        let p = ctx.params.clone();
        crate::on_device!(ctx, |dev| run_on(ctx, &p, &dev))
    }

    fn verdict(&self, claim: &str, preset_id: &str, runs: &[FinishedRun]) -> Verdict {
        verdict::compute(claim, preset_id, runs)
    }
}

/// The quick profile: N = 256, three arms of width 32, two seeds.
const QUICK: Profile = Profile {
    preset: "lr-batch-rmt",
    arms: &["curvature", "sgd-maxlr", "adam-maxlr"],
    seeds: &[0, 1],
    overrides: &[
        ("n_train", "256"),
        ("b_max", "128"),
        ("repeats", "3"),
        ("lanczos_steps", "20"),
        ("trial_steps", "100"),
    ],
};

/// The batch sizes of a run, ascending: 2, 4, ..., b_max, then N when included.
pub fn batch_sizes(p: &Params) -> Vec<usize> {
    let n = p.usize("n_train");
    let mut out: Vec<usize> = (1..)
        .map(|k| 1usize << k)
        .take_while(|&b| b <= p.usize("b_max") && b < n)
        .collect();
    if p.usize("include_full") == 1 {
        out.push(n);
    }
    out
}

/// The least-squares slope of y against x.
pub fn slope(xs: &[f64], ys: &[f64]) -> f64 {
    let n = xs.len() as f64;
    let mx = xs.iter().sum::<f64>() / n;
    let my = ys.iter().sum::<f64>() / n;
    let sxy: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
    sxy / sxx
}

/// The slope of ln y against ln B over the points with B <= s_max and finite positive y (NaN
/// with fewer than two).
pub fn log_slope(points: &[(usize, f64)], s_max: usize) -> (f64, usize) {
    let (xs, ys): (Vec<f64>, Vec<f64>) = points
        .iter()
        .filter(|(b, y)| *b <= s_max && y.is_finite() && *y > 0.0)
        .map(|(b, y)| ((*b as f64).ln(), y.ln()))
        .unzip();
    if xs.len() < 2 {
        return (f64::NAN, xs.len());
    }
    (slope(&xs, &ys), xs.len())
}

/// `k` distinct indices of `0..n` (a partial Fisher-Yates shuffle).
pub fn without_replacement(n: usize, k: usize, rng: &mut impl Rng) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let k = k.min(n);
    for i in 0..k {
        let j = rng.gen_range(i..n);
        order.swap(i, j);
    }
    order.truncate(k);
    order
}

fn mix(seed: u64, a: u64, b: u64) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ a.wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
        ^ b.wrapping_mul(0x1656_67B1_9E37_79F9)
}

/// The digits of a run: `n` training images, pixels/16 standardized per pixel over them (a
/// constant pixel stays 0) and multiplied by 0.3; the rest of the split for testing.
pub struct Data {
    pub x_train: Vec<f64>,
    pub y_train: Vec<usize>,
    pub x_test: Vec<f64>,
    pub y_test: Vec<usize>,
}

impl Data {
    pub fn load(n: usize, seed: u64) -> Data {
        let mut rng = StdRng::seed_from_u64(mix(seed, 0xD161, 0));
        let split = DigitsSplit::load(0.8, Some(n), &mut rng);
        let rows = split.n_train();
        let mut mean = [0.0f64; DIGIT_PIXELS];
        let mut sd = [0.0f64; DIGIT_PIXELS];
        for row in split.x_train.chunks(DIGIT_PIXELS) {
            for (m, &v) in mean.iter_mut().zip(row) {
                *m += v as f64 / rows as f64;
            }
        }
        for row in split.x_train.chunks(DIGIT_PIXELS) {
            for ((s, m), &v) in sd.iter_mut().zip(&mean).zip(row) {
                *s += (v as f64 - m).powi(2) / rows as f64;
            }
        }
        let scale = |x: &[f32]| -> Vec<f64> {
            x.iter()
                .enumerate()
                .map(|(k, &v)| {
                    let j = k % DIGIT_PIXELS;
                    let s = sd[j].sqrt();
                    if s > 1e-12 {
                        0.3 * (v as f64 - mean[j]) / s
                    } else {
                        0.0
                    }
                })
                .collect()
        };
        Data {
            x_train: scale(&split.x_train),
            y_train: split.y_train.clone(),
            x_test: scale(&split.x_test),
            y_test: split.y_test.clone(),
        }
    }
}

/// The network, its parameters at `w_warm` and the training set on the device.
pub struct Net<D: Device<f64>> {
    pub mlp: Mlp,
    pub store: ParamStore<f64, D>,
    pub x: Matrix<f64, D>,
    pub y: Matrix<f64, D>,
    pub labels: Vec<usize>,
    /// The parameters every measurement and trial starts from.
    pub warm: ParamVec<f64, D>,
    /// Full-batch loss at the random initialization (the trials' threshold).
    pub init_loss: f64,
}

/// The mean cross-entropy of `mlp` on `(x, y)` and its gradient.
pub fn loss_and_grad<D: Device<f64>>(
    mlp: &Mlp,
    store: &ParamStore<f64, D>,
    x: &Matrix<f64, D>,
    y: &Matrix<f64, D>,
) -> (f64, ParamVec<f64, D>) {
    let logits = mlp.forward(store, x.clone().leaky_trace());
    let loss = softmax_cross_entropy(logits, y.clone());
    let value = loss.download()[0];
    let mut g = loss.backward();
    (value, store.gradient_vec(&mut g))
}

/// The mean cross-entropy without a tape.
pub fn loss_of<D: Device<f64>>(
    mlp: &Mlp,
    store: &ParamStore<f64, D>,
    x: &Matrix<f64, D>,
    y: &Matrix<f64, D>,
) -> f64 {
    cross_entropy_with_logits_loss(mlp.logits(store, x.clone()), y.clone()).download()[0]
}

/// The batch Gauss-Newton product `G v = (1/B) sum_i J_i^T (diag(p_i) - p_i p_i^T) J_i v` of the
/// mean cross-entropy at the store's parameters: `J v` by a central difference of the logits
/// along `v / |v|` (step `h`), the output Hessian on the device, `J^T u` by one backward pass.
pub fn gn_product<D: Device<f64>>(
    mlp: &Mlp,
    store: &mut ParamStore<f64, D>,
    x: &Matrix<f64, D>,
    v: &ParamVec<f64, D>,
    h: f64,
) -> ParamVec<f64, D> {
    let nv = vec_ops::norm(v);
    if nv == 0.0 {
        return v.clone();
    }
    let base = store.snapshot();
    store.add_scaled(v, h / nv);
    let fp = mlp.logits(store, x.clone());
    store.restore(&base);
    store.add_scaled(v, -h / nv);
    let fm = mlp.logits(store, x.clone());
    store.restore(&base);
    let jv = (fp - fm) * (nv / (2.0 * h));
    let f = mlp.logits(store, x.clone());
    let (b, c) = *f.shape();
    let p = f.softmax::<Axis<1>>();
    let pj = p.clone() * jv;
    let s = pj.clone().sum::<(usize,), Axis<1>>();
    let u = (pj - p * s.broadcast_like::<_, Axis<1>>(&(b, c))) * (1.0 / b as f64);
    let logits = mlp.forward(store, x.clone().leaky_trace());
    let mut g = (logits * u).sum::<Rank0, _>().backward();
    store.gradient_vec(&mut g)
}

/// `w_warm` on the host (flat, in the store's trainable order) with the loss at initialization,
/// computed once per (device, seed, sizes, warm start) and shared by the runs of a process.
type WarmCache = Mutex<BTreeMap<String, Arc<OnceLock<(Vec<f64>, f64)>>>>;
static WARM: OnceLock<WarmCache> = OnceLock::new();

impl<D: Device<f64>> Net<D> {
    /// The seed's network (W ~ N(0, 1/fan_in), zero biases) on `data`, warmed up by
    /// `warm_steps` full-batch gradient steps of `warm_lr`.
    pub fn new(dev: &D, data: &Data, p: &Params, seed: u64, device_key: &str) -> Net<D> {
        let width = p.usize("width");
        let mut store = ParamStore::new(dev);
        let mut rng = StdRng::seed_from_u64(mix(seed, 0x1417, width as u64));
        let mlp = Mlp::new(
            &mut store,
            "mlp",
            &[DIGIT_PIXELS, width, DIGIT_CLASSES],
            Activation::Tanh,
            &mut rng,
        );
        for (i, &(w, b)) in mlp.layers.clone().iter().enumerate() {
            let fan_in = mlp.sizes[i] as f64;
            let n = mlp.sizes[i] * mlp.sizes[i + 1];
            let values: Vec<f64> = (0..n)
                .map(|_| rng.sample::<f64, _>(StandardNormal) / fan_in.sqrt())
                .collect();
            store.upload(w, values);
            store.upload(b, vec![0.0; mlp.sizes[i + 1]]);
        }
        let n = data.y_train.len();
        let x = upload_rows(dev, &data.x_train, DIGIT_PIXELS);
        let y = one_hot(dev, &data.y_train, DIGIT_CLASSES);
        let key = format!(
            "{device_key}/{seed}/{width}/{n}/{}/{}",
            p.usize("warm_steps"),
            p.f64("warm_lr")
        );
        let cell = WARM
            .get_or_init(Default::default)
            .lock()
            .expect("warm-start cache")
            .entry(key)
            .or_default()
            .clone();
        let (flat, init_loss) = cell
            .get_or_init(|| {
                let init = loss_of(&mlp, &store, &x, &y);
                let mut s = ParamStore::new(dev);
                std::mem::swap(&mut s, &mut store);
                for _ in 0..p.usize("warm_steps") {
                    let (_, g) = loss_and_grad(&mlp, &s, &x, &y);
                    s.add_scaled(&g, -p.f64("warm_lr"));
                }
                let flat = ParamStore::download_vec(&s.snapshot());
                std::mem::swap(&mut s, &mut store);
                (flat, init)
            })
            .clone();
        let warm = store.upload_vec(&flat);
        store.restore(&warm);
        let warm = store.snapshot();
        Net {
            mlp,
            store,
            x,
            y,
            labels: data.y_train.clone(),
            warm,
            init_loss,
        }
    }

    pub fn n(&self) -> usize {
        self.labels.len()
    }

    /// The rows `idx` of the training set (the whole set for None).
    pub fn batch(&self, idx: Option<&[usize]>) -> (Matrix<f64, D>, Matrix<f64, D>) {
        match idx {
            Some(idx) => (rows(&self.x, idx), rows(&self.y, idx)),
            None => (self.x.clone(), self.y.clone()),
        }
    }

    pub fn full_loss(&self) -> f64 {
        loss_of(&self.mlp, &self.store, &self.x, &self.y)
    }

    pub fn full_accuracy(&self) -> f64 {
        accuracy_on_device(&self.mlp.logits(&self.store, self.x.clone()), &self.labels)
    }

    /// lambda_max of the batch Hessian and of the batch Gauss-Newton matrix at `w_warm`:
    /// `steps` Lanczos iterations each (fewer when the residual is small).
    pub fn top_eigenvalues(
        &mut self,
        idx: Option<&[usize]>,
        steps: usize,
        h: f64,
        rng: &mut StdRng,
    ) -> (f64, f64) {
        self.store.restore(&self.warm);
        let (xb, yb) = self.batch(idx);
        let space = DeviceSpace::of(&self.store);
        let mlp = &self.mlp;
        let store = &mut self.store;
        let mut grad = |s: &ParamStore<f64, D>| loss_and_grad(mlp, s, &xb, &yb).1;
        let mut hvp = |v: &ParamVec<f64, D>| fd_hvp(store, &mut grad, v, h);
        let hess = lanczos(&space, &mut hvp, steps, LANCZOS_TOL, rng)
            .top()
            .value;
        let mut gvp = |v: &ParamVec<f64, D>| gn_product(mlp, store, &xb, v, h);
        let gn = lanczos(&space, &mut gvp, steps, LANCZOS_TOL, rng)
            .top()
            .value;
        (hess, gn)
    }

    /// One learning-rate trial from `w_warm`: `search.steps` steps with batches of `b` drawn
    /// with replacement from `batch_rng` (the whole set when `full`). Stable unless a
    /// mini-batch loss is non-finite or above 1000 x the initial loss, or the full-batch loss at
    /// a check (every `check_every` steps and at the end) exceeds the initial loss.
    pub fn trial(&mut self, rule: Rule, lr: f64, b: usize, full: bool, s: &LrSearch) -> bool {
        self.store.restore(&self.warm);
        let mut opt = Optimizer::new(rule, lr);
        let mut rng = StdRng::seed_from_u64(s.batch_seed);
        let n = self.n();
        for k in 0..s.steps {
            let idx: Vec<usize> = (0..b).map(|_| rng.gen_range(0..n)).collect();
            let (xb, yb) = self.batch((!full).then_some(&idx[..]));
            let logits = self.mlp.forward(&self.store, xb.leaky_trace());
            let loss = softmax_cross_entropy(logits, yb);
            let l = loss.download()[0];
            if !l.is_finite() || l > BLOWUP * self.init_loss {
                return false;
            }
            let mut g = loss.backward();
            if opt.step(&mut self.store, &mut g).is_err() {
                return false;
            }
            if (k + 1) % s.check_every == 0 || k + 1 == s.steps {
                let lf = self.full_loss();
                if lf.is_nan() || lf > self.init_loss {
                    return false;
                }
            }
        }
        true
    }
}

/// The learning-rate search of one batch size.
#[derive(Clone, Copy, Debug)]
pub struct LrSearch {
    pub steps: usize,
    pub check_every: usize,
    pub start_log2: f64,
    pub cap_log2: f64,
    pub resolution: f64,
    pub batch_seed: u64,
}

/// What a search found: the last stable log2(lr), whether it hit the cap, and the trials.
#[derive(Clone, Debug, Default)]
pub struct Found {
    pub log2_lr: f64,
    pub capped: bool,
    pub below_range: bool,
    pub trials: Vec<(f64, bool)>,
}

/// Walks up from `start_log2` in steps of 2 octaves until a trial fails (or the cap passes),
/// then bisects to a bracket of `resolution` octaves; `trial(log2_lr)` says stable or not.
pub fn search_max_lr(s: &LrSearch, trial: &mut dyn FnMut(f64) -> bool) -> Found {
    let mut found = Found::default();
    let mut run = |x: f64, found: &mut Found| {
        let ok = trial(x);
        found.trials.push((x, ok));
        ok
    };
    let mut lo = s.start_log2;
    if !run(lo, &mut found) {
        found.log2_lr = f64::NAN;
        found.below_range = true;
        return found;
    }
    let mut hi;
    loop {
        if lo >= s.cap_log2 {
            found.log2_lr = lo;
            found.capped = true;
            return found;
        }
        hi = (lo + 2.0).min(s.cap_log2);
        if run(hi, &mut found) {
            lo = hi;
        } else {
            break;
        }
    }
    while hi - lo > s.resolution + 1e-12 {
        let mid = 0.5 * (lo + hi);
        if run(mid, &mut found) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    found.log2_lr = lo;
    found
}

/// One run's results per batch size.
#[derive(Default)]
struct Results {
    lambda_h: BTreeMap<usize, (f64, f64)>,
    lambda_gn: BTreeMap<usize, f64>,
    max_lr: BTreeMap<usize, Found>,
    batches: Vec<(usize, Vec<usize>)>,
}

fn picture(points: &[(usize, f64)], reference: &[(f64, f64)]) -> Picture {
    let pts: Vec<[f32; 2]> = points
        .iter()
        .filter(|(_, y)| *y > 0.0 && y.is_finite())
        .map(|(b, y)| [(*b as f64).log2() as f32, y.log2() as f32])
        .collect();
    let refs: Vec<[f32; 2]> = reference
        .iter()
        .filter(|(_, y)| *y > 0.0 && y.is_finite())
        .map(|(b, y)| [b.log2() as f32, y.log2() as f32])
        .collect();
    Picture::scatter(&pts, &refs)
}

/// A reference curve sampled on a fine grid of B in [lo, hi].
fn curve(lo: f64, hi: f64, f: impl Fn(f64) -> f64) -> Vec<(f64, f64)> {
    (0..=60)
        .map(|i| {
            let b = lo * (hi / lo).powf(i as f64 / 60.0);
            (b, f(b))
        })
        .collect()
}

fn run_on<D: Device<f64>>(
    ctx: &mut RunContext<'_>,
    p: &Params,
    dev: &D,
) -> Result<RunEnd, RunStop> {
    let started = Instant::now();
    let seed = ctx.seed;
    let data = Data::load(p.usize("n_train"), seed);
    let mut net = Net::new(dev, &data, p, seed, &format!("{:?}", ctx.device));
    let n = net.n();
    let part = p.text("part").to_string();
    let full = p.text("sampling") == "full";
    let s_max = p.usize("s_max");
    let sizes = batch_sizes(p);
    net.store.restore(&net.warm);
    let (warm_loss, warm_acc) = (net.full_loss(), net.full_accuracy());
    let params_count = net.store.num_trainable();
    ctx.log(format!(
        "tanh MLP 64-{}-10 (P = {params_count}) on {n} digits, CE; w_warm after {} full-batch \
         steps of lr {}: loss {warm_loss:.4} (init {:.4}), accuracy {warm_acc:.3}; part {part}, \
         sampling {}; batch sizes {sizes:?}",
        p.usize("width"),
        p.usize("warm_steps"),
        p.f64("warm_lr"),
        net.init_loss,
        p.text("sampling"),
    ));
    let mut res = Results::default();
    let stop = |ctx: &RunContext<'_>, b: usize| {
        if ctx.stop_requested() {
            Err(RunStop::Stopped { step: b as u64 })
        } else {
            Ok(())
        }
    };
    let mut exponent = f64::NAN;
    if part == "curvature" {
        let steps = p.usize("lanczos_steps");
        let h = p.f64("hvp_h");
        // The full-data point first: it is every batch size's reference.
        let mut rng = StdRng::seed_from_u64(mix(seed, n as u64, 0x1A));
        let (lh_n, lg_n) = net.top_eigenvalues(None, steps, h, &mut rng);
        ctx.log(format!(
            "full data: lambda_max Hessian {lh_n:.4}, Gauss-Newton {lg_n:.4}"
        ));
        let b0 = sizes[0].min(n) as f64;
        for &b in &sizes {
            stop(ctx, b)?;
            let (lh, se, lg) = if b >= n || full {
                if b >= n {
                    (lh_n, 0.0, lg_n)
                } else {
                    let mut rng = StdRng::seed_from_u64(mix(seed, b as u64, 0x1B));
                    let (a, g) = net.top_eigenvalues(None, steps, h, &mut rng);
                    (a, 0.0, g)
                }
            } else {
                let reps = p.usize("repeats");
                let (mut hs, mut gs) = (Vec::new(), Vec::new());
                for r in 0..reps {
                    let mut rng = StdRng::seed_from_u64(mix(seed, b as u64, 100 + r as u64));
                    let idx = without_replacement(n, b, &mut rng);
                    let (a, g) = net.top_eigenvalues(Some(&idx), steps, h, &mut rng);
                    hs.push(a);
                    gs.push(g);
                    res.batches.push((b, idx));
                }
                let (m, se) = crate::verdict::mean_se(&hs);
                (
                    m,
                    if se.is_nan() { 0.0 } else { se },
                    gs.iter().sum::<f64>() / gs.len() as f64,
                )
            };
            res.lambda_h.insert(b, (lh, se));
            res.lambda_gn.insert(b, lg);
            let inv = 1.0 / b as f64 - 1.0 / n as f64;
            let two: Vec<(usize, f64)> =
                res.lambda_h.iter().map(|(b, v)| (*b, 2.0 / v.0)).collect();
            exponent = log_slope(&two, s_max).0;
            let first = res.lambda_h.values().next().map(|v| v.0).unwrap_or(lh);
            let inv0 = 1.0 / b0 - 1.0 / n as f64;
            let rule = |bb: f64| (first - lh_n) * (1.0 / bb - 1.0 / n as f64) / inv0;
            let mut values = vec![
                ("lambda_max_hessian", lh),
                ("lambda_max_hessian_se", se),
                ("lambda_max_gn", lg),
                ("lambda_max_full", lh_n),
                ("lambda_max_full_gn", lg_n),
                ("two_over_lambda", 2.0 / lh),
                ("claimed_exponent", 1.0),
            ];
            if b < n {
                values.push(("excess_lambda", lh - lh_n));
                values.push(("excess_rule", rule(b as f64)));
                values.push(("inv_b_minus_inv_n", inv));
            }
            if exponent.is_finite() {
                values.push(("exponent", exponent));
            }
            ctx.record(b as u64, &values);
            let pts: Vec<(usize, f64)> = res.lambda_h.iter().map(|(b, v)| (*b, v.0)).collect();
            let hi = *sizes.last().unwrap_or(&n) as f64;
            ctx.picture(
                "lambda_max vs B (log2-log2; reference: the (1/B - 1/N) law)",
                picture(&pts, &curve(b0, hi, |bb| lh_n + rule(bb))),
            );
        }
    } else {
        let adam = part == "adam";
        let rule = if adam { Rule::adam() } else { Rule::sgd() };
        let claimed = if adam { 0.5 } else { 1.0 };
        let (name, rule_name) = if adam {
            ("max_lr_adam", "adam_sqrt_rule")
        } else {
            ("max_lr_sgd", "sgd_linear_rule")
        };
        for &b in &sizes {
            stop(ctx, b)?;
            let s = LrSearch {
                steps: p.usize("trial_steps"),
                check_every: p.usize("check_every").max(1),
                start_log2: if adam {
                    p.f64("adam_start_log2")
                } else {
                    p.f64("sgd_start_log2")
                },
                cap_log2: p.f64("cap_log2"),
                resolution: p.f64("resolution"),
                batch_seed: mix(seed, b as u64, 0x7A1),
            };
            let mut stopped = false;
            let found = search_max_lr(&s, &mut |x| {
                if stopped || ctx.stop_requested() {
                    stopped = true;
                    return false;
                }
                let ok = net.trial(rule, x.exp2(), b.min(n), full, &s);
                ctx.record(
                    b as u64,
                    &[
                        ("trial_lr", x.exp2()),
                        ("trial_ok", f64::from(u8::from(ok))),
                    ],
                );
                ok
            });
            stop(ctx, b)?;
            let lr = found.log2_lr.exp2();
            if found.capped {
                ctx.log(format!(
                    "B = {b}: the search reached the cap 2^{}",
                    s.cap_log2
                ));
            }
            if found.below_range {
                ctx.log(format!(
                    "B = {b}: even the first trial 2^{} was unstable",
                    s.start_log2
                ));
            }
            res.max_lr.insert(b, found);
            let pts: Vec<(usize, f64)> = res
                .max_lr
                .iter()
                .filter(|(_, f)| !f.capped)
                .map(|(b, f)| (*b, f.log2_lr.exp2()))
                .collect();
            exponent = log_slope(&pts, s_max).0;
            let (b0, lr0) = pts.first().copied().unwrap_or((b, lr));
            let law = |bb: f64| lr0 * (bb / b0 as f64).powf(claimed);
            let mut values = vec![("claimed_exponent", claimed)];
            if lr.is_finite() {
                values.push((name, lr));
            }
            if lr0.is_finite() {
                values.push((rule_name, law(b as f64)));
            }
            if exponent.is_finite() {
                values.push(("exponent", exponent));
            }
            ctx.record(b as u64, &values);
            let hi = *sizes.last().unwrap_or(&n) as f64;
            ctx.picture(
                if adam {
                    "max Adam lr vs B (log2-log2; reference: the sqrt rule)"
                } else {
                    "max SGD lr vs B (log2-log2; reference: the linear rule)"
                },
                picture(&pts, &curve(b0 as f64, hi, law)),
            );
        }
    }

    let mut fv: BTreeMap<String, f64> = BTreeMap::new();
    fv.insert("exponent".into(), exponent);
    fv.insert("warm_loss".into(), warm_loss);
    fv.insert("warm_acc".into(), warm_acc);
    fv.insert("init_loss".into(), net.init_loss);
    fv.insert("n_train".into(), n as f64);
    fv.insert("num_params".into(), params_count as f64);
    for (b, (lh, se)) in &res.lambda_h {
        fv.insert(format!("lambda_h_b{b}"), *lh);
        fv.insert(format!("lambda_h_se_b{b}"), *se);
    }
    for (b, lg) in &res.lambda_gn {
        fv.insert(format!("lambda_gn_b{b}"), *lg);
    }
    for (b, f) in &res.max_lr {
        fv.insert(format!("max_lr_b{b}"), f.log2_lr.exp2());
        fv.insert(format!("capped_b{b}"), f64::from(u8::from(f.capped)));
        fv.insert(format!("trials_b{b}"), f.trials.len() as f64);
    }
    fv.insert("wall_s".into(), started.elapsed().as_secs_f64());
    net.store.restore(&net.warm);
    if let Some(dir) = ctx.dir.clone() {
        write_artifacts(&dir, &net, &data, p, &res)
            .map_err(|e| RunStop::Failed(format!("writing artifacts: {e}")))?;
    }
    Ok(RunEnd {
        steps: *sizes.last().unwrap_or(&0) as u64,
        final_values: fv,
    })
}

fn write_artifacts<D: Device<f64>>(
    dir: &std::path::Path,
    net: &Net<D>,
    data: &Data,
    p: &Params,
    res: &Results,
) -> std::io::Result<()> {
    let params = artifacts::store_tensors(&net.store);
    let n = data.y_train.len();
    let t = data.y_test.len();
    let labels = |v: &[usize]| v.iter().map(|&l| l as f64).collect::<Vec<f64>>();
    let mut tensors = vec![
        NamedTensor::new("x_train", &[n, DIGIT_PIXELS], data.x_train.clone()),
        NamedTensor::new("y_train", &[n], labels(&data.y_train)),
        NamedTensor::new("x_test", &[t, DIGIT_PIXELS], data.x_test.clone()),
        NamedTensor::new("y_test", &[t], labels(&data.y_test)),
    ];
    let sizes: Vec<f64> = batch_sizes(p).iter().map(|&b| b as f64).collect();
    tensors.push(NamedTensor::new(
        "batch_sizes",
        &[sizes.len()],
        sizes.clone(),
    ));
    if !res.lambda_h.is_empty() {
        let col = |f: &dyn Fn(usize) -> f64| sizes.iter().map(|&b| f(b as usize)).collect();
        tensors.push(NamedTensor::new(
            "lambda_max_hessian",
            &[sizes.len()],
            col(&|b| res.lambda_h.get(&b).map_or(f64::NAN, |v| v.0)),
        ));
        tensors.push(NamedTensor::new(
            "lambda_max_gn",
            &[sizes.len()],
            col(&|b| res.lambda_gn.get(&b).copied().unwrap_or(f64::NAN)),
        ));
        let mut by_b: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
        for (b, idx) in &res.batches {
            by_b.entry(*b)
                .or_default()
                .extend(idx.iter().map(|&i| i as f64));
        }
        for (b, flat) in by_b {
            tensors.push(NamedTensor::new(
                &format!("batches_b{b}"),
                &[flat.len() / b, b],
                flat,
            ));
        }
    }
    if !res.max_lr.is_empty() {
        tensors.push(NamedTensor::new(
            "max_lr",
            &[sizes.len()],
            sizes
                .iter()
                .map(|&b| {
                    res.max_lr
                        .get(&(b as usize))
                        .map_or(f64::NAN, |f| f.log2_lr.exp2())
                })
                .collect(),
        ));
    }
    let text = format!(
        "tanh MLP 64-{w}-10: logits = tanh(x @ mlp.0.weight + mlp.0.bias) @ mlp.1.weight + \
         mlp.1.bias (weights stored in x out); params.safetensors holds w_warm, the point every \
         measurement starts from ({warm} full-batch gradient steps of lr {lr} from W ~ \
         N(0, 1/fan_in), zero biases).\n\
         loss = mean over rows of logsumexp(logits) - logits[y] on x_train / y_train (pixels/16 \
         standardized per pixel over the training images, times 0.3).\n\
         part {part}: lambda_max_hessian[i] / lambda_max_gn[i] = mean over the batches \
         batches_b<B> (rows of training indices, drawn without replacement; B = N: all rows) of \
         the top eigenvalue of the batch Hessian / Gauss-Newton matrix of that loss \
         (Lanczos, {k} steps, central differences h = {h}); max_lr[i] = the largest learning \
         rate (log2 bisection to {res} octaves) whose {steps}-step {opt} run from w_warm on \
         batches of B drawn with replacement kept every batch loss finite and below 1000 x \
         the initial loss and the full-batch loss (every {ce} steps) below the initial loss.\n",
        w = p.usize("width"),
        warm = p.usize("warm_steps"),
        lr = p.f64("warm_lr"),
        part = p.text("part"),
        k = p.usize("lanczos_steps"),
        h = p.f64("hvp_h"),
        res = p.f64("resolution"),
        steps = p.usize("trial_steps"),
        opt = p.text("part"),
        ce = p.usize("check_every"),
    );
    artifacts::write_run(dir, &params, &tensors, &text)
}

//! "Weight Compander: A Simple Weight Reparameterization for Regularization" (Cakaj, Mehnert &
//! Yang, IJCNN 2023): every weight matrix of the network is `W = Psi(V) = a arctan(V / b)` of a
//! free latent `V`, started at `V = b tan(W_init / a)` so that the network starts at its usual
//! initialization. Claim: added to standard training it improves test accuracy; the weights stay
//! bounded (`|w| < a pi / 2`) and fewer of them sit near zero.
//!
//! On the tape the network sees `W' = W + (V - V~) Psi'(V~)` (`~`: the same values without a
//! tape), whose value is exactly `W = Psi(V)` and whose gradient in `V` is `Psi'(V) dL/dW`: the
//! chain rule of the paper's Eq. 2, with `W` and `Psi'` computed on the device from `V` (dfdx has
//! no arctangent; see [`function::atan`]). The learnable version adds `(a - a~) W / a` and
//! `(b - b~) dPsi/db` per layer. The weights the network uses live in the store under the MLP's
//! names (not trained directly) and are recomputed from `V` after every update.

pub mod bench;
pub mod function;
mod verdict;

use std::collections::BTreeMap;

use dfdx::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::classifier::{self, CommonDefaults, DigitsSplit, EpochBatches};
use super::driver::{self, Evaluation, Schedule, Trainer};
use super::profile::{DeviceCase, Profile};
use super::{Experiment, FinishedRun, RunContext, RunEnd, RunStop};
use crate::artifacts::{self, NamedTensor};
use crate::datasets::{DIGIT_CLASSES, DIGIT_PIXELS};
use crate::metrics::MetricSpec;
use crate::nn::models::{softmax_cross_entropy, Activation, Mlp};
use crate::nn::store::{ParamId, ParamStore, Taped};
use crate::nn::transfer::{Download, Upload};
use crate::nn::{Optimizer, Rule};
use crate::params::{ParamSpec, Params};
use crate::verdict::Verdict;
use function::Compander;

pub struct WeightCompander;

/// Bins of the end-of-run weight histogram.
pub const HIST_BINS: usize = 41;

/// How the weights are parameterized.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    /// Plain weights (the baselines).
    Off,
    /// `W = a arctan(V / b)` with fixed `a`, `b` shared by every layer.
    Fixed(Compander),
    /// One learned `(a, b)` per layer, starting at the given values.
    Learned(Compander),
}

impl Mode {
    pub fn of(p: &Params) -> Mode {
        let c = Compander {
            a: p.f64("wc_a"),
            b: p.f64("wc_b"),
        };
        match (p.text("compander"), p.text("wc_hyper")) {
            ("off", _) => Mode::Off,
            (_, "learned") => Mode::Learned(c),
            _ => Mode::Fixed(c),
        }
    }
}

impl Experiment for WeightCompander {
    fn kind(&self) -> &'static str {
        "weight-compander"
    }

    fn params(&self) -> Vec<ParamSpec> {
        let mut v = classifier::common_params(&CommonDefaults {
            optimizer: "sgd",
            lr: 0.05,
            momentum: 0.9,
            weight_decay: 0.0,
            batch: 64,
            epochs: 300,
            n_train: 300,
            width: 256,
            depth: 2,
        });
        v.extend([
            ParamSpec::choice(
                "compander",
                &["off", "paper"],
                "off",
                "weight reparameterization: none, or the paper's W = a arctan(V / b) on every weight matrix (not the biases)",
            ),
            ParamSpec::choice(
                "wc_hyper",
                &["fixed", "learned"],
                "fixed",
                "a and b fixed and shared by all layers (weight decay on W), or learned per layer (weight decay on V)",
            ),
            ParamSpec::float("wc_a", 1.0, 0.05, 100.0, "compander a (bound a pi/2; learned: initial a)"),
            ParamSpec::float("wc_b", 0.6, 0.05, 100.0, "compander b (slope a/b at 0; learned: initial b)"),
            ParamSpec::float("wc_ab_lr_scale", 0.1, 0.0, 100.0, "learned: learning rate of a and b relative to lr (at 1 they collapse within 40 steps on this MLP)"),
            ParamSpec::int("eval_every", 10, 1, 100_000, "epochs between measurements"),
            ParamSpec::float("hist_range", 0.5, 1e-3, 1e3, "end-of-run weight histogram over [-hist_range, hist_range] (outside: the end bins)"),
        ]);
        v
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        vec![
            MetricSpec::new("test_acc", "test accuracy")
                .unit("fraction")
                .reference("train_acc"),
            MetricSpec::new("train_acc", "training accuracy").unit("fraction"),
            MetricSpec::new("near_zero_frac", "weights with |w| < 0.01 max|w_init|")
                .unit("fraction"),
            MetricSpec::new("w_max", "max |w| over all layers"),
            MetricSpec::new("w_std", "std of all weights"),
            MetricSpec::new("gen_gap", "train - test accuracy").unit("fraction"),
            MetricSpec::new("test_nll", "test NLL").unit("nats"),
            MetricSpec::new("train_loss", "training CE (since the last measurement)")
                .unit("nats")
                .log(),
            MetricSpec::new("wc_a", "learned a (mean over layers)"),
            MetricSpec::new("wc_b", "learned b (mean over layers)"),
        ]
    }

    fn table_metrics(&self) -> Vec<&'static str> {
        vec![
            "test_acc",
            "train_acc",
            "near_zero_frac",
            "w_max",
            "w_std",
            "wc_a",
            "wc_b",
        ]
    }

    fn total_steps(&self, p: &Params) -> u64 {
        steps(p) as u64
    }

    fn memory(&self, p: &Params) -> crate::engine::memory::Estimate {
        let sizes = classifier::layer_sizes(p);
        let weights: f64 = sizes.windows(2).map(|w| (w[0] * w[1] + w[1]) as f64).sum();
        let widest = *sizes.iter().max().unwrap_or(&1) as f64;
        crate::engine::memory::Estimate::of(&[
            (
                8.0 * 8.0 * weights,
                format!("layers {sizes:?} (W, V, moments, gradients)"),
            ),
            (
                4.0 * 1797.0 * widest * 4.0,
                format!("every digit through a layer of width {widest}"),
            ),
        ])
    }

    fn validate(&self, p: &Params) -> Result<(), String> {
        let m = Mode::of(p);
        if let Mode::Fixed(c) | Mode::Learned(c) = m {
            // The widest initial weight is 1/sqrt(64) (PyTorch's bound at fan-in 64).
            let widest = 1.0 / (DIGIT_PIXELS as f64).sqrt();
            if c.inverse(widest).is_none() {
                return Err(format!(
                    "wc_a {}: the compander's bound a pi/2 = {:.3} must exceed the largest \
                     initial weight {widest:.3}",
                    c.a,
                    c.bound()
                ));
            }
        }
        classifier::validate_sizes(p, classifier::TRAIN_70)?;
        Ok(())
    }

    fn builtin_presets(&self) -> &'static [(&'static str, &'static str)] {
        &[(
            "presets/weight-compander.toml",
            include_str!("../../../presets/weight-compander.toml"),
        )]
    }

    fn verdict_bar(&self) -> Option<(&'static str, Option<&'static str>)> {
        Some(("test_acc", None))
    }

    fn quick_profile(&self) -> Profile {
        Profile {
            preset: "weight-compander",
            arms: &["baseline", "wd", "wc", "wc-wd"],
            seeds: &[0, 1, 2],
            overrides: &[("epochs", "100"), ("eval_every", "50")],
        }
    }

    fn device_cases(&self) -> Vec<DeviceCase> {
        let small = Profile {
            preset: "weight-compander",
            arms: &[],
            seeds: &[0],
            overrides: &[("epochs", "5"), ("eval_every", "5")],
        };
        let large = Profile {
            overrides: &[
                ("epochs", "3"),
                ("eval_every", "3"),
                ("width", "2048"),
                ("n_train", "1258"),
                ("batch", "512"),
            ],
            ..small
        };
        vec![
            DeviceCase {
                size: "preset",
                arm: "wc-wd",
                profile: small,
            },
            DeviceCase {
                size: "preset",
                arm: "wc-learned",
                profile: small,
            },
            DeviceCase {
                size: "large",
                arm: "wc-wd",
                profile: large,
            },
        ]
    }

    fn bench(&self, quick: bool, out: &mut String) {
        bench::report(quick, out)
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<RunEnd, RunStop> {
        crate::on_device!(ctx, |dev| train(ctx, &dev))
    }

    fn verdict(&self, claim: &str, preset_id: &str, runs: &[FinishedRun]) -> Verdict {
        verdict::compute(claim, preset_id, runs)
    }
}

/// Training steps of a run (`drop_last` epochs).
pub fn steps(p: &Params) -> usize {
    classifier::steps_for(p.usize("n_train"), p.usize("batch"), p.usize("epochs"))
}

/// One reparameterized layer: its latent `V`, the network's weight `W = Psi(V)` and, when
/// learned, its own `a` and `b`.
#[derive(Clone, Debug)]
pub struct WcLayer {
    pub w: ParamId,
    pub v: ParamId,
    pub ab: Option<(ParamId, ParamId)>,
    pub shape: (usize, usize),
}

/// The digits MLP with (optionally) companded weights, in one store.
#[derive(Clone, Debug)]
pub struct WcNet<D: Device<f32>> {
    pub store: ParamStore<f32, D>,
    pub mlp: Mlp,
    pub mode: Mode,
    /// Empty when the compander is off.
    pub layers: Vec<WcLayer>,
}

impl<D: Device<f32>> WcNet<D> {
    /// The MLP at PyTorch's initialization and, with a compander, `V = b tan(W_init / a)` so
    /// that `Psi(V)` is that initialization.
    pub fn new(dev: &D, sizes: &[usize], mode: Mode, rng: &mut StdRng) -> WcNet<D> {
        let mut store = ParamStore::new(dev);
        let mlp = Mlp::new(&mut store, "mlp", sizes, Activation::Relu, rng);
        let mut net = WcNet {
            store,
            mlp,
            mode,
            layers: Vec::new(),
        };
        let c = match mode {
            Mode::Off => return net,
            Mode::Fixed(c) | Mode::Learned(c) => c,
        };
        for i in 0..net.mlp.num_layers() {
            let w = net.mlp.layer_weight(i);
            let shape = (sizes[i], sizes[i + 1]);
            let v: Vec<f32> = net
                .store
                .values(w)
                .iter()
                .map(|&x| {
                    c.inverse(x as f64)
                        .expect("initial weight inside the bound") as f32
                })
                .collect();
            let v = net.store.add(&format!("wc.{i}.v"), &[shape.0, shape.1], v);
            net.store.set_trainable(w, false);
            let ab = matches!(mode, Mode::Learned(_)).then(|| {
                let a = net.store.add(&format!("wc.{i}.a"), &[1], vec![c.a as f32]);
                let b = net.store.add(&format!("wc.{i}.b"), &[1], vec![c.b as f32]);
                net.store.set_group(a, AB_GROUP);
                net.store.set_group(b, AB_GROUP);
                (a, b)
            });
            net.layers.push(WcLayer { w, v, ab, shape });
        }
        net.refresh();
        net
    }

    /// The compander of layer `i` (its learned `a`, `b` when learned).
    pub fn compander(&self, i: usize) -> Compander {
        match (self.mode, self.layers[i].ab) {
            (_, Some((a, b))) => Compander {
                a: self.store.values(a)[0] as f64,
                b: self.store.values(b)[0] as f64,
            },
            (Mode::Fixed(c) | Mode::Learned(c), None) => c,
            (Mode::Off, None) => unreachable!("no compander layers when off"),
        }
    }

    /// Recomputes every `W = Psi(V)` on the device (after an update of `V`, `a` or `b`).
    pub fn refresh(&mut self) {
        for i in 0..self.layers.len() {
            let c = self.compander(i);
            let l = &self.layers[i];
            let w = c.apply(self.store.flat(l.v).clone());
            self.store.assign(l.w, &w);
        }
    }

    /// `W' = W + (V - V~) Psi'(V~)` (plus, when learned, `(a - a~) W / a + (b - b~) dPsi/db`) of
    /// layer `i` on a fresh tape: the value is `W`, the gradient reaches `V` (and `a`, `b`)
    /// through the exact derivatives of `Psi`.
    pub fn companded(&self, i: usize) -> Taped<(usize, usize), f32, D> {
        let (c, l) = (self.compander(i), &self.layers[i]);
        // A copy with its own id: dfdx cannot difference a tensor with itself on the tape.
        let v_const = self.store.matrix_value(l.v) * 1.0f32;
        let w_const = self.store.matrix_value(l.w);
        let slope = c.slope(v_const.clone());
        let w = (self.store.matrix(l.v) - v_const.clone()) * slope + w_const.clone();
        let Some((a, b)) = l.ab else {
            return w;
        };
        let as_matrix = |id: ParamId| {
            self.store
                .vector(id)
                .reshape_like(&())
                .broadcast_like(&l.shape)
        };
        let da = w_const * (1.0 / c.a) as f32;
        let db = c.slope_b(v_const);
        w + (as_matrix(a) - c.a as f32) * da + (as_matrix(b) - c.b as f32) * db
    }

    /// The training loss on a batch: mean cross-entropy plus, with a compander, `wd/2` times
    /// the squared norm of what the weight decay acts on: `W = Psi(V)` and the biases (fixed
    /// `a`, `b`, as the paper), `V` and the biases (learned). Without a compander the optimizer
    /// applies the decay (L2 on every parameter, the same gradient). Returns the total and the
    /// cross-entropy.
    pub fn loss(
        &self,
        x: Tensor<(usize, usize), f32, D>,
        y: Tensor<(usize, usize), f32, D>,
        weight_decay: f64,
    ) -> (Taped<(), f32, D>, f64) {
        if self.layers.is_empty() {
            let ce = softmax_cross_entropy(self.mlp.forward(&self.store, x.leaky_trace()), y);
            let v = ce.download()[0] as f64;
            return (ce, v);
        }
        let weights = (0..self.layers.len()).map(|i| self.companded(i)).collect();
        let logits = self
            .mlp
            .forward_with_weights(&self.store, x.leaky_trace(), weights);
        let ce = softmax_cross_entropy(logits, y);
        let ce_value = ce.download()[0] as f64;
        if weight_decay <= 0.0 {
            return (ce, ce_value);
        }
        let half = (weight_decay / 2.0) as f32;
        let mut total = ce;
        for (i, l) in self.layers.iter().enumerate() {
            let sq = match self.mode {
                Mode::Learned(_) => self.store.vector(l.v).square().sum::<Rank0, _>(),
                _ => self.companded(i).square().sum::<Rank0, _>(),
            };
            let bias = self.mlp.layer_bias(i);
            total = total + (sq + self.store.vector(bias).square().sum::<Rank0, _>()) * half;
        }
        (total, ce_value)
    }

    /// Every weight the network uses, flattened (host).
    pub fn all_weights(&self) -> Vec<f32> {
        (0..self.mlp.num_layers())
            .flat_map(|i| self.store.values(self.mlp.layer_weight(i)))
            .collect()
    }

    /// After an optimizer step: keeps learned `a`, `b` positive (the compander is defined
    /// only there) and recomputes the weights.
    pub fn after_update(&mut self) {
        for i in 0..self.layers.len() {
            if let Some((a, b)) = self.layers[i].ab {
                for id in [a, b] {
                    let x = self.store.values(id)[0];
                    if x < MIN_AB {
                        self.store.upload(id, vec![MIN_AB]);
                    }
                }
            }
        }
        if !self.layers.is_empty() {
            self.refresh();
        }
    }
}

/// The optimizer group of the learned `a`, `b` (their own learning rate).
pub const AB_GROUP: usize = 1;

/// The smallest learned `a` or `b` (a floor the paper does not need at its scale).
const MIN_AB: f32 = 0.05;

/// The optimizer of a run: the preset's, with the weight decay left to the loss when the
/// compander is on (it acts on `W` or `V`, not on every trainable parameter).
fn optimizer_for<D: Device<f32>>(p: &Params, mode: Mode) -> Optimizer<f32, D> {
    let mut opt = classifier::optimizer::<f32, D>(p);
    if mode != Mode::Off {
        opt.rule = match opt.rule {
            Rule::Sgd {
                momentum, nesterov, ..
            } => Rule::Sgd {
                momentum,
                nesterov,
                weight_decay: 0.0,
            },
            Rule::Adam {
                beta1, beta2, eps, ..
            } => Rule::Adam {
                beta1,
                beta2,
                eps,
                weight_decay: 0.0,
            },
            r => r,
        };
    }
    opt.with_group_lr(AB_GROUP, p.f64("lr") * p.f64("wc_ab_lr_scale"))
}

/// Share of `w` below `threshold` in magnitude, the largest magnitude and the std.
pub fn weight_stats(w: &[f32], threshold: f64) -> (f64, f64, f64) {
    let n = w.len().max(1) as f64;
    let near = w.iter().filter(|x| (x.abs() as f64) < threshold).count() as f64 / n;
    let max = w.iter().fold(0.0f64, |m, x| m.max(x.abs() as f64));
    let mean = w.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = w.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    (near, max, var.sqrt())
}

/// Counts of `w` in `bins` equal bins over `[-range, range]` (values outside go to the end bins).
pub fn histogram(w: &[f32], range: f64, bins: usize) -> Vec<f64> {
    let mut h = vec![0.0; bins];
    for &x in w {
        let t = ((x as f64 + range) / (2.0 * range) * bins as f64).floor();
        h[(t.max(0.0) as usize).min(bins - 1)] += 1.0;
    }
    h
}

/// Trains one run on the device `dev`.
fn train<D: Device<f32>>(ctx: &mut RunContext<'_>, dev: &D) -> Result<RunEnd, RunStop> {
    let p = ctx.params.clone();
    let seed = ctx.seed;
    let n_train = p.usize("n_train");
    let mut rng = StdRng::seed_from_u64(seed ^ 0xC0DE);
    // `n_train` images for training, every other digit for testing.
    let split = DigitsSplit::load(n_train as f64 / 1797.0, Some(n_train), &mut rng);
    let mode = Mode::of(&p);
    let net = WcNet::new(dev, &classifier::layer_sizes(&p), mode, &mut rng);
    let init_max = weight_stats(&net.all_weights(), 0.0).1;
    let batches = EpochBatches::new(split.n_train(), p.usize("batch"), seed ^ 0xBA7C);
    let per_epoch = batches.per_epoch();
    ctx.log(format!(
        "{} training / {} test images; {} steps ({} per epoch); {}",
        split.n_train(),
        split.n_test(),
        steps(&p),
        per_epoch,
        match mode {
            Mode::Off => "plain weights".to_string(),
            Mode::Fixed(c) => format!("W = {} arctan(V / {}), |W| < {:.3}", c.a, c.b, c.bound()),
            Mode::Learned(c) => format!("W = a arctan(V / b) per layer, from a {} b {}", c.a, c.b),
        }
    ));
    if mode != Mode::Off && p.text("optimizer") == "adam" {
        ctx.log(
            "Adam sees dL/dV (the paper prescribes the Adam step of dL/dW times Psi'(V); \
             SGD is its setting)",
        );
    }
    let mut run = WcRun {
        x_train: dev.upload(split.x_train.clone(), (split.n_train(), DIGIT_PIXELS)),
        y_train: classifier::one_hot(dev, &split.y_train, DIGIT_CLASSES),
        x_test: dev.upload(split.x_test.clone(), (split.n_test(), DIGIT_PIXELS)),
        opt: optimizer_for(&p, mode),
        weight_decay: p.f64("weight_decay"),
        near_zero: 0.01 * init_max,
        hist_range: p.f64("hist_range"),
        ce_sum: (0.0, 0),
        net,
        split,
        batches,
    };
    let schedule = Schedule {
        steps: steps(&p) as u64,
        log_every: (per_epoch * p.usize("eval_every")) as u64,
        blowup: None,
    };
    driver::drive(ctx, schedule, &mut run)
}

/// One run's state between steps.
struct WcRun<D: Device<f32>> {
    net: WcNet<D>,
    opt: Optimizer<f32, D>,
    split: DigitsSplit,
    x_train: Tensor<(usize, usize), f32, D>,
    y_train: Tensor<(usize, usize), f32, D>,
    x_test: Tensor<(usize, usize), f32, D>,
    batches: EpochBatches,
    weight_decay: f64,
    /// `0.01 max |w_init|`.
    near_zero: f64,
    hist_range: f64,
    /// Cross-entropy summed since the last measurement, and the steps.
    ce_sum: (f64, usize),
}

impl<D: Device<f32>> WcRun<D> {
    fn judge(&self, x: &Tensor<(usize, usize), f32, D>, y: &[usize]) -> (f64, f64) {
        let probs = classifier::probabilities(&self.net.mlp, &self.net.store, x);
        let c = classifier::judge(&probs, y);
        (c.accuracy, c.nll)
    }
}

impl<D: Device<f32>> Trainer for WcRun<D> {
    fn evaluate(&mut self, _step: u64, _last: bool) -> Result<Evaluation, RunStop> {
        let (test_acc, test_nll) = self.judge(&self.x_test, &self.split.y_test);
        let (train_acc, _) = self.judge(&self.x_train, &self.split.y_train);
        let (near, max, std) = weight_stats(&self.net.all_weights(), self.near_zero);
        let mut values = vec![
            ("test_acc", test_acc),
            ("train_acc", train_acc),
            ("gen_gap", train_acc - test_acc),
            ("test_nll", test_nll),
            ("near_zero_frac", near),
            ("w_max", max),
            ("w_std", std),
        ];
        if self.ce_sum.1 > 0 {
            values.push(("train_loss", self.ce_sum.0 / self.ce_sum.1 as f64));
            self.ce_sum = (0.0, 0);
        }
        if matches!(self.net.mode, Mode::Learned(_)) {
            let n = self.net.layers.len() as f64;
            let cs: Vec<Compander> = (0..self.net.layers.len())
                .map(|i| self.net.compander(i))
                .collect();
            values.push(("wc_a", cs.iter().map(|c| c.a).sum::<f64>() / n));
            values.push(("wc_b", cs.iter().map(|c| c.b).sum::<f64>() / n));
        }
        Ok(Evaluation::new(values))
    }

    fn step(&mut self, _step: u64) -> Result<f64, RunStop> {
        let idx = self.batches.next_batch();
        let x = classifier::rows(&self.x_train, &idx);
        let y = classifier::rows(&self.y_train, &idx);
        let (loss, ce) = self.net.loss(x, y, self.weight_decay);
        let total = loss.download()[0] as f64;
        if !total.is_finite() {
            return Ok(total);
        }
        let mut grads = loss.backward();
        self.opt
            .step(&mut self.net.store, &mut grads)
            .map_err(|e| RunStop::Failed(format!("optimizer update: {e:?}")))?;
        self.net.after_update();
        self.ce_sum = (self.ce_sum.0 + ce, self.ce_sum.1 + 1);
        Ok(total)
    }

    fn finish(&mut self, final_values: &mut BTreeMap<String, f64>, _steps: u64) {
        let w = self.net.all_weights();
        for (i, c) in histogram(&w, self.hist_range, HIST_BINS).iter().enumerate() {
            final_values.insert(format!("w_hist_{i:02}"), c / w.len() as f64);
        }
        final_values.insert("w_hist_range".into(), self.hist_range);
        final_values.insert("near_zero_threshold".into(), self.near_zero);
        for i in 0..self.net.layers.len() {
            if self.net.layers[i].ab.is_some() {
                let c = self.net.compander(i);
                final_values.insert(format!("wc_a_layer{i}"), c.a);
                final_values.insert(format!("wc_b_layer{i}"), c.b);
            }
        }
    }

    fn write_artifacts(&self, dir: &std::path::Path) -> std::io::Result<()> {
        let params = artifacts::store_tensors(&self.net.store);
        let s = &self.split;
        let labels = |y: &[usize]| y.iter().map(|&v| v as f64).collect::<Vec<_>>();
        let w = self.net.all_weights();
        let data = vec![
            NamedTensor::from_f32("x_train", &[s.n_train(), DIGIT_PIXELS], &s.x_train),
            NamedTensor::new("y_train", &[s.n_train()], labels(&s.y_train)),
            NamedTensor::from_f32("x_test", &[s.n_test(), DIGIT_PIXELS], &s.x_test),
            NamedTensor::new("y_test", &[s.n_test()], labels(&s.y_test)),
            NamedTensor::new(
                "w_hist",
                &[HIST_BINS],
                histogram(&w, self.hist_range, HIST_BINS),
            ),
        ];
        let n = self.net.mlp.num_layers();
        let compander = match self.net.mode {
            Mode::Off => "none: the weights are trained directly".to_string(),
            Mode::Fixed(c) => format!(
                "mlp.{{i}}.weight = {} * arctan(wc.{{i}}.v / {}) (trained: wc.{{i}}.v; weight \
                 decay on mlp.{{i}}.weight and the biases)",
                c.a, c.b
            ),
            Mode::Learned(_) => "mlp.{i}.weight = wc.{i}.a * arctan(wc.{i}.v / wc.{i}.b) \
                 (trained: wc.{i}.v, wc.{i}.a, wc.{i}.b; weight decay on wc.{i}.v and the biases)"
                .to_string(),
        };
        let text = format!(
            "digits MLP {:?}, ReLU, {n} layers: h = relu(h @ mlp.{{i}}.weight + mlp.{{i}}.bias) \
             (weights stored in x out), logits from the last layer without ReLU\n\
             compander: {compander}\n\
             test_acc / train_acc: argmax of the logits on x_test / x_train against y_test / \
             y_train (pixels / 16)\n\
             near_zero_frac: share of all mlp.*.weight entries with |w| < {:.6} (0.01 max|w_init|); \
             w_max: max |w|; w_std: their std\n\
             w_hist: counts of all weights in {HIST_BINS} equal bins over [-{r}, {r}] (outside: \
             the end bins)\n",
            self.net.mlp.sizes,
            self.near_zero,
            r = self.hist_range
        );
        artifacts::write_run(dir, &params, &data, &text)
    }
}

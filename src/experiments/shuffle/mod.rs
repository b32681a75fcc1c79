//! "Stochastic Layer-Wise Shuffle: A Good Practice to Improve Vision Mamba Training" (Huang et
//! al., 2024; ICML 2025 as "Stochastic Layer-Wise Shuffle for Improving Vision Mamba
//! Training"): during training, layer `l` of `L` shuffles its token sequence with probability
//! `p_l = l / (L - 1) p_max` (one Bernoulli draw and one permutation per layer and step, shared
//! by the batch, class token included), runs its block on the shuffled sequence and restores
//! the order afterwards; nothing changes at inference. Claim: smaller train-test gap and better
//! accuracy, more so for larger models.
//!
//! Here: the 8x8 digits as 16 2x2-patch tokens plus a class token, a residual stack of
//! bidirectional gated linear recurrences ([`model`]), 400 training images, with and without a
//! 1-pixel random shift augmentation.

pub mod bench;
pub mod model;
mod verdict;

use std::collections::BTreeMap;
use std::time::Instant;

use dfdx::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::classifier::{self, DigitsSplit, EpochBatches};
use super::driver::{self, Evaluation, Schedule, Trainer};
use super::profile::{DeviceCase, Profile};
use super::{Experiment, FinishedRun, RunContext, RunEnd, RunStop};
use crate::artifacts::{self, NamedTensor};
use crate::datasets::{DIGIT_CLASSES, DIGIT_PIXELS};
use crate::metrics::MetricSpec;
use crate::nn::models::softmax_cross_entropy;
use crate::nn::transfer::{Download, Upload};
use crate::nn::{Optimizer, Rule};
use crate::params::{ParamSpec, Params};
use crate::verdict::Verdict;
use model::{TokenNet, FEATURES, TOKENS};

pub struct LayerwiseShuffle;

impl Experiment for LayerwiseShuffle {
    fn kind(&self) -> &'static str {
        "layerwise-shuffle"
    }

    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::int("depth", 8, 1, 32, "residual blocks L"),
            ParamSpec::int("dim", 64, 2, 512, "channels d"),
            ParamSpec::choice(
                "shuffle",
                &["off", "on"],
                "off",
                "stochastic layer-wise shuffle during training",
            ),
            ParamSpec::float(
                "p_max",
                0.5,
                0.0,
                1.0,
                "shuffle probability of the last layer",
            ),
            ParamSpec::choice(
                "allocation",
                &["linear", "constant"],
                "linear",
                "p_l = l / (L - 1) p_max (the paper's), or p_max / 2 in every layer (same mean)",
            ),
            ParamSpec::int(
                "shift",
                0,
                0,
                3,
                "random shift augmentation of up to this many pixels (0: none)",
            ),
            ParamSpec::float(
                "lr",
                2e-3,
                1e-6,
                1.0,
                "AdamW peak learning rate (one-cycle schedule)",
            ),
            ParamSpec::float(
                "weight_decay",
                0.05,
                0.0,
                1.0,
                "AdamW decoupled weight decay",
            ),
            ParamSpec::int("batch", 64, 1, 1024, "images per step"),
            ParamSpec::int("epochs", 40, 1, 10_000, "passes over the training set"),
            ParamSpec::int(
                "n_train",
                400,
                10,
                1258,
                "training images (the rest of the 1797 test)",
            ),
            ParamSpec::int("eval_every", 5, 1, 10_000, "epochs between measurements"),
        ]
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        vec![
            MetricSpec::new("test_acc", "test accuracy")
                .unit("fraction")
                .reference("train_acc"),
            MetricSpec::new("gap", "train_acc - test_acc").unit("fraction"),
            MetricSpec::new("train_acc", "training accuracy (eval mode)").unit("fraction"),
            MetricSpec::new(
                "train_loss",
                "training loss (train mode, since the last measurement)",
            )
            .unit("nats")
            .log(),
            MetricSpec::new("test_loss", "test loss").unit("nats"),
            MetricSpec::new("train_nll", "training loss (eval mode)").unit("nats"),
            MetricSpec::new("loss_gap", "test_loss - train_nll").unit("nats"),
            MetricSpec::new("shuffle_rate_realized", "fraction of layer-steps shuffled")
                .unit("fraction")
                .reference("shuffle_rate_expected"),
            MetricSpec::new("shuffle_rate_expected", "mean of p_l").unit("fraction"),
            MetricSpec::new("ms_per_step", "training time per step").unit("ms"),
            MetricSpec::new("eval_ms", "evaluation time (all 1797 digits)").unit("ms"),
        ]
    }

    fn table_metrics(&self) -> Vec<&'static str> {
        vec![
            "test_acc",
            "train_acc",
            "gap",
            "train_loss",
            "shuffle_rate_realized",
            "eval_ms",
        ]
    }

    fn total_steps(&self, p: &Params) -> u64 {
        steps(p) as u64
    }

    fn memory(&self, p: &Params) -> crate::engine::memory::Estimate {
        let (d, l, b) = (p.usize("dim"), p.usize("depth"), p.usize("batch"));
        let weights = (l * (3 * d * d + 4 * d) + d * FEATURES + 11 * d) as f64;
        crate::engine::memory::Estimate::of(&[
            (
                4.0 * 4.0 * weights,
                format!("{l} blocks of width {d} (weights, moments, gradients)"),
            ),
            (
                4.0 * 12.0 * (l * d * b * TOKENS) as f64,
                format!("training activations of {l} blocks over {b} x {TOKENS} tokens"),
            ),
            (
                4.0 * 8.0 * (d * 512 * TOKENS) as f64,
                "evaluation in chunks of 512 images".to_string(),
            ),
        ])
    }

    fn validate(&self, p: &Params) -> Result<(), String> {
        let n = p.usize("n_train");
        if p.usize("batch") > n {
            return Err(format!(
                "batch {} is larger than n_train {n}",
                p.usize("batch")
            ));
        }
        Ok(())
    }

    fn builtin_presets(&self) -> &'static [(&'static str, &'static str)] {
        &[(
            "presets/layerwise-shuffle.toml",
            include_str!("../../../presets/layerwise-shuffle.toml"),
        )]
    }

    fn verdict_bar(&self) -> Option<(&'static str, Option<&'static str>)> {
        Some(("test_acc", None))
    }

    fn quick_profile(&self) -> Profile {
        Profile {
            preset: "layerwise-shuffle",
            arms: QUICK_ARMS,
            seeds: &[0],
            overrides: &[("epochs", "15"), ("eval_every", "15")],
        }
    }

    fn device_cases(&self) -> Vec<DeviceCase> {
        let small = Profile {
            preset: "layerwise-shuffle",
            arms: &[],
            seeds: &[0],
            overrides: &[("epochs", "2"), ("eval_every", "2")],
        };
        let large = Profile {
            overrides: &[
                ("epochs", "2"),
                ("eval_every", "2"),
                ("dim", "256"),
                ("batch", "256"),
                ("n_train", "1024"),
            ],
            ..small
        };
        vec![
            DeviceCase {
                size: "preset",
                arm: "large-aug-slws",
                profile: small,
            },
            DeviceCase {
                size: "large",
                arm: "xl-slws",
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

/// The arms of the quick profile: the augmented small and large pairs (checks 1-3).
pub const QUICK_ARMS: &[&str] = &[
    "small-aug-none",
    "small-aug-slws",
    "large-aug-none",
    "large-aug-slws",
];

/// Training steps of a run (`drop_last` epochs).
pub fn steps(p: &Params) -> usize {
    classifier::steps_for(p.usize("n_train"), p.usize("batch"), p.usize("epochs"))
}

/// PyTorch's `OneCycleLR` (cosine, 30% warm-up from `lr / 25`, down to `lr / 25 / 1e4`) at
/// step `i` of `n`.
pub fn one_cycle(lr: f64, i: usize, n: usize) -> f64 {
    let up = (0.3 * n as f64).max(1.0);
    let (start, end) = (lr / 25.0, lr / 25.0 / 1e4);
    let cos =
        |a: f64, b: f64, pct: f64| b + (a - b) / 2.0 * (1.0 + (std::f64::consts::PI * pct).cos());
    let i = i as f64;
    if i < up {
        cos(start, lr, i / up)
    } else {
        cos(lr, end, ((i - up) / (n as f64 - up).max(1.0)).min(1.0))
    }
}

/// The per-layer shuffle probabilities of a run (all zero with the shuffle off).
pub fn probabilities(p: &Params) -> Vec<f64> {
    let depth = p.usize("depth");
    let on = p.text("shuffle") == "on";
    let constant = p.text("allocation") == "constant";
    (0..depth)
        .map(|l| {
            if on {
                model::layer_probability(l, depth, p.f64("p_max"), constant)
            } else {
                0.0
            }
        })
        .collect()
}

fn train<D: Device<f32>>(ctx: &mut RunContext<'_>, dev: &D) -> Result<RunEnd, RunStop> {
    let p = ctx.params.clone();
    let seed = ctx.seed;
    let n_train = p.usize("n_train");
    // Split and initialization depend on the seed only: arms with and without the shuffle are
    // paired (same images, same initial weights, same batches and shifts).
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5EED);
    let split = DigitsSplit::load(n_train as f64 / 1797.0, Some(n_train), &mut rng);
    let net = TokenNet::new(dev, p.usize("dim"), p.usize("depth"), &mut rng);
    let probs = probabilities(&p);
    let batches = EpochBatches::new(split.n_train(), p.usize("batch"), seed ^ 0xBA7C);
    let per_epoch = batches.per_epoch();
    ctx.log(format!(
        "{} training / {} test images; {} steps ({per_epoch} per epoch); {} parameters; \
         p_l = [{}]; shift {}",
        split.n_train(),
        split.n_test(),
        steps(&p),
        net.store.num_trainable(),
        probs
            .iter()
            .map(|x| format!("{x:.2}"))
            .collect::<Vec<_>>()
            .join(", "),
        p.usize("shift"),
    ));
    let expected = probs.iter().sum::<f64>() / probs.len().max(1) as f64;
    let wd = p.f64("weight_decay");
    let mut run = ShuffleRun {
        opt: Optimizer::new(
            Rule::AdamW {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: wd,
            },
            p.f64("lr"),
        ),
        peak_lr: p.f64("lr"),
        total: steps(&p),
        shift: p.usize("shift") as i32,
        probs,
        expected,
        shuffle_rng: StdRng::seed_from_u64(seed ^ 0x5F1E),
        shift_rng: StdRng::seed_from_u64(seed ^ 0xA06),
        loss_sum: (0.0, 0),
        shuffled: (0, 0),
        step_ms: (0.0, 0),
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

struct ShuffleRun<D: Device<f32>> {
    net: TokenNet<D>,
    opt: Optimizer<f32, D>,
    peak_lr: f64,
    total: usize,
    split: DigitsSplit,
    batches: EpochBatches,
    shift: i32,
    probs: Vec<f64>,
    expected: f64,
    shuffle_rng: StdRng,
    shift_rng: StdRng,
    /// Training loss summed since the last measurement, and the steps.
    loss_sum: (f64, usize),
    /// Layer-steps shuffled and layer-steps in all.
    shuffled: (u64, u64),
    /// Milliseconds of training steps since the last measurement, and the steps.
    step_ms: (f64, usize),
}

/// Accuracy and mean cross-entropy of logits against labels.
pub fn judge(logits: &[f32], labels: &[usize]) -> (f64, f64) {
    let mut correct = 0usize;
    let mut nll = 0.0;
    for (row, &y) in logits.chunks(DIGIT_CLASSES).zip(labels) {
        let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
        let lse = m + row.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln();
        nll += lse - row[y] as f64;
        let arg = (0..row.len())
            .max_by(|&a, &b| row[a].total_cmp(&row[b]))
            .unwrap_or(0);
        correct += usize::from(arg == y);
    }
    let n = labels.len().max(1) as f64;
    (correct as f64 / n, nll / n)
}

impl<D: Device<f32>> Trainer for ShuffleRun<D> {
    fn evaluate(&mut self, _step: u64, _last: bool) -> Result<Evaluation, RunStop> {
        let t0 = Instant::now();
        let test = self.net.logits(&self.split.x_test);
        let train = self.net.logits(&self.split.x_train);
        let eval_ms = t0.elapsed().as_secs_f64() * 1e3;
        let (test_acc, test_loss) = judge(&test, &self.split.y_test);
        let (train_acc, train_nll) = judge(&train, &self.split.y_train);
        let mut values = vec![
            ("test_acc", test_acc),
            ("train_acc", train_acc),
            ("gap", train_acc - test_acc),
            ("test_loss", test_loss),
            ("train_nll", train_nll),
            ("loss_gap", test_loss - train_nll),
            ("shuffle_rate_expected", self.expected),
            ("eval_ms", eval_ms),
        ];
        if self.loss_sum.1 > 0 {
            values.push(("train_loss", self.loss_sum.0 / self.loss_sum.1 as f64));
            self.loss_sum = (0.0, 0);
        }
        if self.step_ms.1 > 0 {
            values.push(("ms_per_step", self.step_ms.0 / self.step_ms.1 as f64));
            self.step_ms = (0.0, 0);
        }
        if self.shuffled.1 > 0 {
            values.push((
                "shuffle_rate_realized",
                self.shuffled.0 as f64 / self.shuffled.1 as f64,
            ));
        }
        Ok(Evaluation::new(values))
    }

    fn step(&mut self, step: u64) -> Result<f64, RunStop> {
        let t0 = Instant::now();
        let idx = self.batches.next_batch();
        let b = idx.len();
        let mut images = Vec::with_capacity(b * DIGIT_PIXELS);
        for &i in &idx {
            images.extend_from_slice(&self.split.x_train[i * DIGIT_PIXELS..(i + 1) * DIGIT_PIXELS]);
        }
        classifier::random_shift(&mut images, self.shift, &mut self.shift_rng);
        let labels: Vec<usize> = idx.iter().map(|&i| self.split.y_train[i]).collect();
        // One Bernoulli draw and, when it fires, one permutation per layer, shared by the batch.
        let perms: Vec<Option<Vec<usize>>> = self
            .probs
            .iter()
            .map(|&pl| {
                (pl > 0.0 && self.shuffle_rng.gen::<f64>() < pl)
                    .then(|| model::random_permutation(TOKENS, &mut self.shuffle_rng))
            })
            .collect();
        self.shuffled.0 += perms.iter().filter(|p| p.is_some()).count() as u64;
        self.shuffled.1 += perms.len() as u64;
        let dev = self.net.store.device().clone();
        let x: Tensor<(usize, usize), f32, D> =
            dev.upload(model::features(&images), (FEATURES, b * TOKENS));
        let y = classifier::one_hot(&dev, &labels, DIGIT_CLASSES);
        let logits = self.net.forward(x.leaky_trace(), b, &perms);
        let loss = softmax_cross_entropy(logits, y);
        let value = loss.download()[0] as f64;
        if !value.is_finite() {
            return Ok(value);
        }
        let mut grads = loss.backward();
        self.opt.lr = one_cycle(self.peak_lr, step as usize, self.total);
        self.opt
            .step(&mut self.net.store, &mut grads)
            .map_err(|e| RunStop::Failed(format!("optimizer update: {e:?}")))?;
        self.loss_sum = (self.loss_sum.0 + value, self.loss_sum.1 + 1);
        self.step_ms = (
            self.step_ms.0 + t0.elapsed().as_secs_f64() * 1e3,
            self.step_ms.1 + 1,
        );
        Ok(value)
    }

    fn finish(&mut self, final_values: &mut BTreeMap<String, f64>, _steps: u64) {
        for (l, p) in self.probs.iter().enumerate() {
            final_values.insert(format!("p_layer{l:02}"), *p);
        }
        final_values.insert("params".into(), self.net.store.num_trainable() as f64);
    }

    fn write_artifacts(&self, dir: &std::path::Path) -> std::io::Result<()> {
        let params = artifacts::store_tensors(&self.net.store);
        let s = &self.split;
        let labels = |y: &[usize]| y.iter().map(|&v| v as f64).collect::<Vec<_>>();
        let test = self.net.logits(&s.x_test);
        let data = vec![
            NamedTensor::from_f32("x_train", &[s.n_train(), DIGIT_PIXELS], &s.x_train),
            NamedTensor::new("y_train", &[s.n_train()], labels(&s.y_train)),
            NamedTensor::from_f32("x_test", &[s.n_test(), DIGIT_PIXELS], &s.x_test),
            NamedTensor::new("y_test", &[s.n_test()], labels(&s.y_test)),
            NamedTensor::from_f32("test_logits", &[s.n_test(), DIGIT_CLASSES], &test),
            NamedTensor::new("p_layer", &[self.probs.len()], self.probs.clone()),
        ];
        let text = format!(
            "token model over the 8x8 digits (pixels / 16): 17 tokens (0: class token; 1 + 4i + j: \
             the 2x2 patch at patch-row i, column j, pixel (2i + r, 2j + c) at feature 2r + c). \
             Hidden states are d x (B 17) matrices, d = {d}.\n\
             input features f (22 per token: 4 patch values, class flag, one-hot position); \
             x = embed @ f (embed: d x 22)\n\
             {depth} blocks: u = LN(x) over channels (block{{l}}.ln.weight/bias, eps 1e-5); v = w_v @ u; \
             z = w_z @ u; per channel c, a = sigmoid(lambda_fwd[c]) / sigmoid(lambda_bwd[c]): \
             h_t = a h_(t-1) + (1 - a) v_t from the first token (forward) and from the last \
             (backward), h = h_fwd + h_bwd; x = x + w_o @ (h * silu(z))\n\
             readout: logits = LN(x[:, class token]) (head.ln) @ head.weight + head.bias\n\
             evaluation: no shuffle, no augmentation; test_acc = argmax(test_logits) == y_test\n\
             training: shuffle probabilities p_layer (one Bernoulli draw and one permutation of \
             the 17 tokens per layer and step, order restored after the block)\n",
            d = self.net.dim,
            depth = self.net.depth(),
        );
        artifacts::write_run(dir, &params, &data, &text)
    }
}

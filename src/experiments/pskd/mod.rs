//! "Self-Knowledge Distillation with Progressive Refinement of Targets" (PS-KD; Kim, Ji, Yoon,
//! Hwang, ICCV 2021): the model is its own teacher. The target of example `i` at epoch `e` is
//! `(1 - alpha_e) onehot(y_i) + alpha_e P_prev[i]`, where `P_prev[i]` is the softmax the model
//! gave `i` the last time it was trained on (the previous epoch) and `alpha_e = alpha_T (e + 1) /
//! E`. Claim: better calibration (ECE), NLL and accuracy than cross entropy.
//!
//! The digits MLP classifier harness on a small, corrupted training set (300 images, fixed
//! pixel noise) with fresh noise augmentation, the regime in which the cross-entropy baseline
//! is over-confident; `P_prev` lives on the host.

pub mod bench;
pub mod calib;
mod verdict;

use dfdx::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::classifier::{self, CommonDefaults, DigitsSplit};
use super::driver::{self, Evaluation, Schedule, Trainer};
use super::profile::{DeviceCase, Profile};
use super::{Experiment, FinishedRun, RunContext, RunEnd, RunStop};
use crate::artifacts::{self, NamedTensor};
use crate::datasets::{DIGIT_CLASSES, DIGIT_PIXELS};
use crate::metrics::MetricSpec;
use crate::nn::models::{Activation, Matrix, Mlp};
use crate::nn::store::ParamStore;
use crate::nn::transfer::{Download, Upload};
use crate::nn::{Optimizer, Rule};
use crate::params::{ParamSpec, Params};
use crate::verdict::Verdict;
use calib::{measure, TestMeasures, BINS};

pub struct PsKd;

/// All the digits: the training set is the first `n_train` of a seeded shuffle, the test set
/// the rest.
const ALL: usize = 1797;

fn defaults() -> CommonDefaults {
    CommonDefaults {
        optimizer: "sgd",
        lr: 0.05,
        momentum: 0.9,
        weight_decay: 5e-4,
        batch: 64,
        epochs: 200,
        n_train: 300,
        width: 256,
        depth: 2,
    }
}

/// Steps per epoch: every example once, the last batch shorter.
fn per_epoch(p: &Params) -> usize {
    p.usize("n_train").div_ceil(p.usize("batch").max(1))
}

/// `alpha_e = alpha_T (e + 1) / E` (the official `(epoch + 1) / end_epoch`).
pub fn alpha_at(alpha_final: f64, epoch: usize, epochs: usize) -> f64 {
    (alpha_final * (epoch + 1) as f64 / epochs.max(1) as f64).max(0.0)
}

pub use crate::nn::optim::cosine_lr;

impl Experiment for PsKd {
    fn kind(&self) -> &'static str {
        "ps-kd"
    }

    fn params(&self) -> Vec<ParamSpec> {
        let mut v = vec![
            ParamSpec::choice(
                "method",
                &["ce", "pskd", "ls"],
                "pskd",
                "cross entropy on one-hot labels, PS-KD targets, or label smoothing",
            ),
            ParamSpec::float(
                "alpha_T",
                0.8,
                0.0,
                1.0,
                "PS-KD: final weight of the previous predictions in the targets",
            ),
            ParamSpec::float(
                "smoothing",
                0.1,
                0.0,
                1.0,
                "label smoothing: target (1 - s) onehot + s / 10",
            ),
            ParamSpec::float(
                "corruption",
                0.3,
                0.0,
                10.0,
                "std of the fixed pixel noise added once to every image (train and test)",
            ),
            ParamSpec::float(
                "augment",
                0.2,
                0.0,
                10.0,
                "std of the fresh pixel noise added to every training batch (0: none)",
            ),
            ParamSpec::choice(
                "nesterov",
                &["on", "off"],
                "on",
                "SGD: Nesterov momentum (official code: on)",
            ),
            ParamSpec::choice(
                "schedule",
                &["cosine", "constant"],
                "cosine",
                "learning rate: cosine decay per epoch, or constant",
            ),
            ParamSpec::int(
                "eval_every",
                5,
                1,
                100_000,
                "epochs between test evaluations",
            ),
        ];
        v.extend(classifier::common_params(&defaults()));
        v
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        vec![
            MetricSpec::new("test_ece", "test ECE (10 bins)").unit("%"),
            MetricSpec::new("mean_conf", "mean confidence (max softmax) on test")
                .unit("fraction; reference: test accuracy")
                .reference("test_acc"),
            MetricSpec::new("test_acc", "test accuracy").unit("fraction"),
            MetricSpec::new("test_nll", "test NLL").unit("nats"),
            MetricSpec::new("target_entropy", "mean entropy of the training targets").unit("nats"),
            MetricSpec::new("alpha_t", "PS-KD weight alpha_t"),
            MetricSpec::new("train_loss", "training loss (soft-target CE)")
                .unit("nats")
                .log(),
            MetricSpec::new("aurc", "AURC x 1000"),
            MetricSpec::new("overconfidence", "mean confidence - accuracy (test)").unit("fraction"),
        ]
    }

    fn table_metrics(&self) -> Vec<&'static str> {
        vec![
            "test_ece",
            "test_acc",
            "mean_conf",
            "test_nll",
            "aurc",
            "target_entropy",
        ]
    }

    fn total_steps(&self, p: &Params) -> u64 {
        (per_epoch(p) * p.usize("epochs")) as u64
    }

    fn builtin_presets(&self) -> &'static [(&'static str, &'static str)] {
        &[(
            "presets/ps-kd.toml",
            include_str!("../../../presets/ps-kd.toml"),
        )]
    }

    fn verdict_bar(&self) -> Option<(&'static str, Option<&'static str>)> {
        Some(("test_ece", None))
    }

    fn quick_profile(&self) -> Profile {
        Profile {
            preset: "ps-kd",
            arms: &["ce", "pskd", "ce-noaug", "pskd-noaug"],
            seeds: &[0, 1, 2],
            overrides: &[("eval_every", "20")],
        }
    }

    fn device_cases(&self) -> Vec<DeviceCase> {
        let preset_size = Profile {
            preset: "ps-kd",
            arms: &[],
            seeds: &[0],
            overrides: &[("epochs", "10")],
        };
        let large = Profile {
            overrides: &[("epochs", "3"), ("width", "2048"), ("n_train", "1024")],
            ..preset_size
        };
        vec![
            DeviceCase {
                size: "preset",
                arm: "ce",
                profile: preset_size,
            },
            DeviceCase {
                size: "preset",
                arm: "pskd",
                profile: preset_size,
            },
            DeviceCase {
                size: "large",
                arm: "pskd",
                profile: large,
            },
        ]
    }

    fn bench(&self, quick: bool, out: &mut String) {
        bench::report(quick, out)
    }

    fn validate(&self, p: &Params) -> Result<(), String> {
        if p.usize("n_train") >= ALL {
            return Err(format!(
                "n_train {} leaves no test images (the digits are {ALL})",
                p.usize("n_train")
            ));
        }
        Ok(())
    }

    fn memory(&self, p: &Params) -> crate::engine::memory::Estimate {
        let w = p.usize("width") as f64;
        let depth = p.usize("depth") as f64;
        let weights = 64.0 * w + (depth - 1.0) * w * w + 10.0 * w;
        crate::engine::memory::Estimate::of(&[
            (
                4.0 * weights * 4.0,
                format!("MLP width {w} x depth {depth} (weights, grads, momentum)"),
            ),
            (
                4.0 * ALL as f64 * w * depth * 2.0,
                format!("activations of {ALL} rows"),
            ),
            (
                8.0 * ALL as f64 * 84.0,
                "images, targets and probabilities".into(),
            ),
        ])
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<RunEnd, RunStop> {
        crate::on_device!(ctx, |dev| train(ctx, &dev))
    }

    fn verdict(&self, claim: &str, preset_id: &str, runs: &[FinishedRun]) -> Verdict {
        verdict::compute(claim, preset_id, runs)
    }
}

/// The run's data: a seeded shuffle of all the digits, `n_train` for training and the rest for
/// testing, both with the same fixed, seeded pixel corruption.
pub fn corrupted_split(p: &Params, seed: u64) -> DigitsSplit {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x95CD);
    let n = p.usize("n_train");
    let mut split = DigitsSplit::load(n as f64 / ALL as f64, None, &mut rng);
    classifier::add_gaussian_noise(&mut split.x_train, p.f64("corruption"), &mut rng);
    classifier::add_gaussian_noise(&mut split.x_test, p.f64("corruption"), &mut rng);
    split
}

fn optimizer<D: Device<f32>>(p: &Params) -> Optimizer<f32, D> {
    match p.text("optimizer") {
        "sgd" => Optimizer::new(
            Rule::Sgd {
                momentum: p.f64("momentum"),
                nesterov: p.text("nesterov") == "on",
                weight_decay: p.f64("weight_decay"),
            },
            p.f64("lr"),
        ),
        _ => classifier::optimizer(p),
    }
}

fn train<D: Device<f32>>(ctx: &mut RunContext<'_>, dev: &D) -> Result<RunEnd, RunStop> {
    let p = ctx.params.clone();
    let seed = ctx.seed;
    let split = corrupted_split(&p, seed);
    ctx.log(format!(
        "{} training and {} test images, fixed corruption std {}, augmentation std {}",
        split.n_train(),
        split.n_test(),
        p.f64("corruption"),
        p.f64("augment")
    ));
    let mut rng = StdRng::seed_from_u64(seed ^ 0x1417);
    let mut store = ParamStore::new(dev);
    let mlp = Mlp::new(
        &mut store,
        "mlp",
        &classifier::layer_sizes(&p),
        Activation::Relu,
        &mut rng,
    );
    let n = split.n_train();
    let per_epoch = per_epoch(&p);
    let steps = (per_epoch * p.usize("epochs")) as u64;
    let mut prev = vec![0.0f32; n * DIGIT_CLASSES];
    for (i, &y) in split.y_train.iter().enumerate() {
        prev[i * DIGIT_CLASSES + y] = 1.0;
    }
    let mut run = PsKdRun {
        x_train: dev.upload(split.x_train.clone(), (n, DIGIT_PIXELS)),
        x_test: dev.upload(split.x_test.clone(), (split.n_test(), DIGIT_PIXELS)),
        opt: optimizer(&p),
        method: match p.text("method") {
            "pskd" => Method::PsKd(p.f64("alpha_T")),
            "ls" => Method::Smoothing(p.f64("smoothing")),
            _ => Method::Ce,
        },
        epochs: p.usize("epochs"),
        lr: p.f64("lr"),
        cosine: p.text("schedule") == "cosine",
        augment: p.f64("augment"),
        batch: p.usize("batch"),
        per_epoch,
        prev,
        order: Vec::new(),
        alpha: 0.0,
        batch_rng: StdRng::seed_from_u64(seed ^ 0xBA7C),
        noise_rng: StdRng::seed_from_u64(seed ^ 0xA06),
        sums: (0.0, 0.0, 0),
        last: None,
        split,
        mlp,
        store,
    };
    let schedule = Schedule {
        steps,
        log_every: (per_epoch * p.usize("eval_every")) as u64,
        blowup: Some(1e4),
    };
    driver::drive(ctx, schedule, &mut run)
}

/// How the training targets are made.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Method {
    Ce,
    /// `alpha_T`.
    PsKd(f64),
    /// The smoothing weight.
    Smoothing(f64),
}

struct PsKdRun<D: Device<f32>> {
    mlp: Mlp,
    store: ParamStore<f32, D>,
    opt: Optimizer<f32, D>,
    split: DigitsSplit,
    x_train: Matrix<f32, D>,
    x_test: Matrix<f32, D>,
    method: Method,
    epochs: usize,
    lr: f64,
    cosine: bool,
    augment: f64,
    batch: usize,
    per_epoch: usize,
    /// `P_prev`: the last training softmax of every example (one-hot labels at first).
    prev: Vec<f32>,
    /// The current epoch's batches.
    order: Vec<Vec<usize>>,
    /// The current epoch's alpha (PS-KD).
    alpha: f64,
    batch_rng: StdRng,
    noise_rng: StdRng,
    /// Since the last evaluation: summed training loss, summed target entropy, steps.
    sums: (f64, f64, u64),
    /// The last evaluation (test probabilities and measures).
    last: Option<(Vec<f64>, TestMeasures)>,
}

impl<D: Device<f32>> PsKdRun<D> {
    /// The targets of the batch `idx` (row-major `idx.len() x 10`).
    fn targets(&self, idx: &[usize]) -> Vec<f32> {
        let c = DIGIT_CLASSES;
        let mut t = vec![0.0f32; idx.len() * c];
        for (r, &i) in idx.iter().enumerate() {
            let y = self.split.y_train[i];
            let row = &mut t[r * c..(r + 1) * c];
            match self.method {
                Method::Ce => row[y] = 1.0,
                Method::PsKd(_) => {
                    let a = self.alpha as f32;
                    for (k, v) in row.iter_mut().enumerate() {
                        let hot = if k == y { 1.0 } else { 0.0 };
                        *v = (1.0 - a) * hot + a * self.prev[i * c + k];
                    }
                }
                Method::Smoothing(s) => {
                    let s = s as f32;
                    for (k, v) in row.iter_mut().enumerate() {
                        let hot = if k == y { 1.0 } else { 0.0 };
                        *v = (1.0 - s) * hot + s / c as f32;
                    }
                }
            }
        }
        t
    }
}

/// Mean entropy (nats) of row-major distributions.
fn mean_entropy(rows: &[f32], classes: usize) -> f64 {
    let n = rows.len() / classes;
    let h: f64 = rows
        .iter()
        .filter(|&&v| v > 0.0)
        .map(|&v| -(v as f64) * (v as f64).ln())
        .sum();
    h / n.max(1) as f64
}

impl<D: Device<f32>> Trainer for PsKdRun<D> {
    fn evaluate(&mut self, _step: u64, _last: bool) -> Result<Evaluation, RunStop> {
        let pe = classifier::probabilities(&self.mlp, &self.store, &self.x_test);
        let m = measure(&pe, &self.split.y_test, DIGIT_CLASSES);
        let mut values = vec![
            ("test_ece", m.ece),
            ("mean_conf", m.mean_confidence),
            ("test_acc", m.accuracy),
            ("test_nll", m.nll),
            ("aurc", m.aurc),
            ("overconfidence", m.mean_confidence - m.accuracy),
        ];
        if matches!(self.method, Method::PsKd(_)) {
            values.push(("alpha_t", self.alpha));
        }
        let (loss, entropy, steps) = self.sums;
        if steps > 0 {
            values.push(("train_loss", loss / steps as f64));
            values.push(("target_entropy", entropy / steps as f64));
        }
        self.sums = (0.0, 0.0, 0);
        self.last = Some((pe, m));
        Ok(Evaluation::new(values))
    }

    fn step(&mut self, step: u64) -> Result<f64, RunStop> {
        let (epoch, k) = (
            step as usize / self.per_epoch,
            step as usize % self.per_epoch,
        );
        if k == 0 {
            let n = self.split.n_train();
            self.order = classifier::epoch_batches(n, self.batch, &mut self.batch_rng);
            if self.cosine {
                self.opt.lr = cosine_lr(self.lr, epoch, self.epochs);
            }
            if let Method::PsKd(a) = self.method {
                self.alpha = alpha_at(a, epoch, self.epochs);
            }
        }
        let idx = self.order[k.min(self.order.len() - 1)].clone();
        let b = idx.len();
        let dev = self.store.device().clone();
        let mut x = classifier::rows(&self.x_train, &idx);
        if self.augment > 0.0 {
            let mut noise = vec![0.0f32; b * DIGIT_PIXELS];
            classifier::add_gaussian_noise(&mut noise, self.augment, &mut self.noise_rng);
            x = x + dev.upload(noise, (b, DIGIT_PIXELS));
        }
        let targets = self.targets(&idx);
        let entropy = mean_entropy(&targets, DIGIT_CLASSES);
        let t = dev.upload(targets, (b, DIGIT_CLASSES));
        let logits = self.mlp.forward(&self.store, x.leaky_trace());
        let (z, tape) = logits.split_tape();
        if matches!(self.method, Method::PsKd(_)) {
            // The stored prediction: this step's training-mode softmax (temperature 1) of the
            // augmented input, detached; the loss above used the old values.
            let probs = z.clone().softmax::<Axis<1>>().download();
            for (r, &i) in idx.iter().enumerate() {
                self.prev[i * DIGIT_CLASSES..(i + 1) * DIGIT_CLASSES]
                    .copy_from_slice(&probs[r * DIGIT_CLASSES..(r + 1) * DIGIT_CLASSES]);
            }
        }
        let loss = cross_entropy_with_logits_loss(z.put_tape(tape), t);
        let (v, tape) = loss.split_tape();
        let value = v.download()[0] as f64;
        if !value.is_finite() {
            return Ok(value);
        }
        self.sums.0 += value;
        self.sums.1 += entropy;
        self.sums.2 += 1;
        let mut grads = v.put_tape(tape).backward();
        self.opt
            .step(&mut self.store, &mut grads)
            .map_err(|e| RunStop::Failed(format!("optimizer update: {e:?}")))?;
        Ok(value)
    }

    fn finish(&mut self, final_values: &mut std::collections::BTreeMap<String, f64>, _steps: u64) {
        if let Some((_, m)) = &self.last {
            for (k, b) in m.bins.iter().enumerate() {
                final_values.insert(format!("reliability_conf_{k}"), b.confidence);
                final_values.insert(format!("reliability_acc_{k}"), b.accuracy);
                final_values.insert(format!("reliability_count_{k}"), b.count as f64);
            }
        }
    }

    fn write_artifacts(&self, dir: &std::path::Path) -> std::io::Result<()> {
        let params = artifacts::store_tensors(&self.store);
        let s = &self.split;
        let (n, m) = (s.n_train(), s.n_test());
        let labels = |v: &[usize]| v.iter().map(|&l| l as f64).collect::<Vec<f64>>();
        let mut data = vec![
            NamedTensor::from_f32("x_train", &[n, DIGIT_PIXELS], &s.x_train),
            NamedTensor::new("y_train", &[n], labels(&s.y_train)),
            NamedTensor::from_f32("x_test", &[m, DIGIT_PIXELS], &s.x_test),
            NamedTensor::new("y_test", &[m], labels(&s.y_test)),
        ];
        if let Some((pe, meas)) = &self.last {
            data.push(NamedTensor::new(
                "test_probs",
                &[m, DIGIT_CLASSES],
                pe.clone(),
            ));
            let rel: Vec<f64> = meas
                .bins
                .iter()
                .flat_map(|b| [b.count as f64, b.confidence, b.accuracy])
                .collect();
            data.push(NamedTensor::new("reliability", &[BINS, 3], rel));
        }
        if matches!(self.method, Method::PsKd(_)) {
            data.push(NamedTensor::from_f32(
                "prev_predictions",
                &[n, DIGIT_CLASSES],
                &self.prev,
            ));
        }
        let text = format!(
            "digits MLP classifier {:?} (ReLU) on corrupted digits (x_train, x_test already \
             include the fixed pixel noise)\n\
             logits: h_0 = x; h_(i+1) = relu(h_i @ mlp.i.weight + mlp.i.bias); the last layer \
             has no relu (weights are in x out)\n\
             test_probs = softmax(logits(x_test)) at the final evaluation\n\
             training targets: {:?} (PS-KD: (1 - alpha_e) onehot + alpha_e prev_predictions, \
             alpha_e = alpha_T (e + 1) / E; label smoothing: (1 - s) onehot + s / 10)\n\
             metrics from test_probs: confidence = max prob, prediction = argmax; test_ece = 100 \
             * sum over 10 bins (k/10, (k+1)/10] of |acc - conf| * n_bin / n; test_nll = mean \
             -ln p[y_test]; aurc = 1000 * mean over k of the error rate of the k most confident \
             points; reliability rows: (count, mean confidence, accuracy) per bin\n",
            self.mlp.sizes, self.method
        );
        artifacts::write_run(dir, &params, &data, &text)
    }
}

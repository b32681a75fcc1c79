//! "Early-Learning Regularization Prevents Memorization of Noisy Labels" (Liu, Niles-Weed,
//! Razavian, Fernandez-Granda, NeurIPS 2020): with symmetric label noise, cross entropy first
//! fits the correctly labelled examples and then memorizes the wrong labels (test accuracy
//! peaks and falls); adding `lambda * mean log(1 - <t, p>)` against a temporal ensemble `t` of
//! the network's own predictions keeps it from memorizing.
//!
//! The digits MLP classifier harness (`experiments::classifier`) with symmetric noise from
//! `datasets::labels::symmetric_noise` (the official convention: a fraction of the examples get
//! a label drawn uniformly from all classes) and the per-example ensemble on the host.

pub mod bench;
pub mod loss;
mod verdict;

use dfdx::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::classifier::{self, CommonDefaults, DigitsSplit, EpochBatches};
use super::driver::{self, Evaluation, Schedule, Trainer};
use super::profile::{DeviceCase, Profile};
use super::{Experiment, FinishedRun, RunContext, RunEnd, RunStop};
use crate::artifacts::{self, NamedTensor};
use crate::datasets::labels::symmetric_noise;
use crate::datasets::{DIGIT_CLASSES, DIGIT_PIXELS};
use crate::metrics::classification::argmax;
use crate::metrics::picture::Picture;
use crate::metrics::MetricSpec;
use crate::nn::models::{Activation, Matrix, Mlp};
use crate::nn::store::ParamStore;
use crate::nn::transfer::{Download, Upload};
use crate::nn::Optimizer;
use crate::params::{ParamSpec, Params};
use crate::verdict::Verdict;
use loss::{elr_loss, TargetEnsemble};

pub struct ElrNoisyLabels;

use classifier::TRAIN_70 as FULL_TRAIN;

fn defaults() -> CommonDefaults {
    CommonDefaults {
        optimizer: "sgd",
        lr: 0.02,
        momentum: 0.9,
        weight_decay: 1e-3,
        batch: 64,
        epochs: 150,
        n_train: FULL_TRAIN as i64,
        width: 256,
        depth: 2,
    }
}

fn is_elr(p: &Params) -> bool {
    p.text("method") == "elr"
}

/// Steps per epoch of a run's parameters.
fn per_epoch(p: &Params) -> usize {
    classifier::steps_for(p.usize("n_train").min(FULL_TRAIN), p.usize("batch"), 1)
}

impl Experiment for ElrNoisyLabels {
    fn kind(&self) -> &'static str {
        "elr-noisy-labels"
    }

    fn params(&self) -> Vec<ParamSpec> {
        let mut v = vec![
            ParamSpec::choice(
                "method",
                &["ce", "elr"],
                "elr",
                "plain cross entropy, or cross entropy + the ELR term",
            ),
            ParamSpec::float(
                "lambda",
                3.0,
                0.0,
                1e3,
                "ELR: weight of mean log(1 - <t, p>) (official CIFAR-10: 3)",
            ),
            ParamSpec::float(
                "beta",
                0.7,
                0.0,
                0.9999,
                "ELR: temporal-ensemble momentum of the targets (official CIFAR-10: 0.7)",
            ),
            ParamSpec::float(
                "noise",
                0.4,
                0.0,
                1.0,
                "symmetric noise: fraction of training labels redrawn uniformly from all 10 classes",
            ),
            ParamSpec::int(
                "eval_every",
                1,
                1,
                100_000,
                "epochs between evaluations (test and full training set)",
            ),
        ];
        v.extend(classifier::common_params(&defaults()));
        v
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        vec![
            MetricSpec::new("test_acc", "test accuracy")
                .unit("fraction")
                .reference("best_test_acc"),
            MetricSpec::new("mem_wrong", "memorized fraction of wrong labels")
                .unit("fraction predicted as the wrong label"),
            MetricSpec::new("best_test_acc", "best test accuracy so far").unit("fraction"),
            MetricSpec::new("fixed_wrong", "corrected fraction of wrong labels")
                .unit("fraction predicted as the true label"),
            MetricSpec::new("train_loss", "training loss (CE part, noisy labels)")
                .unit("nats")
                .log(),
            MetricSpec::new("elr_reg", "ELR term mean log(1 - <t,p>)").unit("nats"),
            MetricSpec::new(
                "clean_train_acc",
                "accuracy on correctly labelled training examples",
            )
            .unit("fraction"),
            MetricSpec::new("noisy_train_fit", "training accuracy on the noisy labels")
                .unit("fraction"),
            MetricSpec::new("peak_epoch", "epoch of the best test accuracy").unit("epoch"),
        ]
    }

    fn table_metrics(&self) -> Vec<&'static str> {
        vec![
            "test_acc",
            "best_test_acc",
            "peak_epoch",
            "mem_wrong",
            "fixed_wrong",
            "noisy_train_fit",
        ]
    }

    fn total_steps(&self, p: &Params) -> u64 {
        (per_epoch(p) * p.usize("epochs")) as u64
    }

    fn builtin_presets(&self) -> &'static [(&'static str, &'static str)] {
        &[(
            "presets/elr-noisy-labels.toml",
            include_str!("../../../presets/elr-noisy-labels.toml"),
        )]
    }

    fn verdict_bar(&self) -> Option<(&'static str, Option<&'static str>)> {
        Some(("test_acc", None))
    }

    fn quick_profile(&self) -> Profile {
        Profile {
            preset: "elr-noisy-labels",
            arms: &["ce-n40", "elr-n40", "ce-n60", "elr-n60"],
            seeds: &[0],
            overrides: &[("epochs", "100"), ("eval_every", "5")],
        }
    }

    fn device_cases(&self) -> Vec<DeviceCase> {
        let preset_size = Profile {
            preset: "elr-noisy-labels",
            arms: &[],
            seeds: &[0],
            overrides: &[("epochs", "3")],
        };
        let large = Profile {
            overrides: &[("epochs", "2"), ("width", "2048"), ("batch", "512")],
            ..preset_size
        };
        vec![
            DeviceCase {
                size: "preset",
                arm: "ce-n40",
                profile: preset_size,
            },
            DeviceCase {
                size: "preset",
                arm: "elr-n40",
                profile: preset_size,
            },
            DeviceCase {
                size: "large",
                arm: "elr-n60",
                profile: large,
            },
        ]
    }

    fn bench(&self, quick: bool, out: &mut String) {
        bench::report(quick, out)
    }

    fn validate(&self, p: &Params) -> Result<(), String> {
        classifier::validate_sizes(p, FULL_TRAIN)
    }

    fn memory(&self, p: &Params) -> crate::engine::memory::Estimate {
        let w = p.usize("width") as f64;
        let depth = p.usize("depth") as f64;
        let weights = 64.0 * w + (depth - 1.0) * w * w + 10.0 * w;
        let rows = 1797.0 + p.usize("batch") as f64;
        crate::engine::memory::Estimate::of(&[
            (
                4.0 * weights * 4.0,
                format!("MLP width {w} x depth {depth} (weights, grads, momentum)"),
            ),
            (
                4.0 * rows * w * depth * 2.0,
                format!("activations of {rows} rows"),
            ),
            (
                8.0 * 1797.0 * 74.0,
                "images, targets and probabilities".to_string(),
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

/// The run's data: the seeded split with symmetric noise on the training labels (the true
/// ones kept beside them for the memorization metrics).
pub fn noisy_split(p: &Params, seed: u64) -> DigitsSplit {
    let mut rng = StdRng::seed_from_u64(seed ^ 0xE1A0);
    let mut split = DigitsSplit::load(0.7, Some(p.usize("n_train")), &mut rng);
    let noisy = symmetric_noise(&split.y_train_true, DIGIT_CLASSES, p.f64("noise"), &mut rng);
    split.y_train = noisy.labels;
    split
}

fn train<D: Device<f32>>(ctx: &mut RunContext<'_>, dev: &D) -> Result<RunEnd, RunStop> {
    let p = ctx.params.clone();
    let seed = ctx.seed;
    let split = noisy_split(&p, seed);
    let wrong = split.wrong_labels();
    ctx.log(format!(
        "{} training images, {} with a wrong label ({:.1}%; noise {}), {} test images",
        split.n_train(),
        wrong.len(),
        100.0 * wrong.len() as f64 / split.n_train() as f64,
        p.f64("noise"),
        split.n_test()
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
    let mut run = ElrRun {
        x_train: dev.upload(split.x_train.clone(), (n, DIGIT_PIXELS)),
        y_train: classifier::one_hot(dev, &split.y_train, DIGIT_CLASSES),
        x_test: dev.upload(split.x_test.clone(), (split.n_test(), DIGIT_PIXELS)),
        batches: EpochBatches::new(n, p.usize("batch"), seed ^ 0xBA7C),
        opt: classifier::optimizer(&p),
        ensemble: is_elr(&p).then(|| TargetEnsemble::new(n, DIGIT_CLASSES, p.f64("beta"))),
        lambda: p.f64("lambda"),
        per_epoch: per_epoch as u64,
        wrong: {
            let mut w = vec![false; n];
            wrong.iter().for_each(|&i| w[i] = true);
            w
        },
        split,
        mlp,
        store,
        best: f64::NEG_INFINITY,
        peak_epoch: 0,
        reg_sum: 0.0,
        reg_steps: 0,
        last_probs: (Vec::new(), Vec::new()),
    };
    let schedule = Schedule {
        steps,
        log_every: per_epoch as u64 * p.usize("eval_every") as u64,
        blowup: Some(1e4),
    };
    driver::drive(ctx, schedule, &mut run)
}

/// One run's state between steps.
struct ElrRun<D: Device<f32>> {
    mlp: Mlp,
    store: ParamStore<f32, D>,
    opt: Optimizer<f32, D>,
    split: DigitsSplit,
    /// Whether each training label is wrong.
    wrong: Vec<bool>,
    x_train: Matrix<f32, D>,
    /// One-hot noisy training labels (what the network is trained on).
    y_train: Matrix<f32, D>,
    x_test: Matrix<f32, D>,
    batches: EpochBatches,
    /// The targets `t` (ELR arms only).
    ensemble: Option<TargetEnsemble>,
    lambda: f64,
    per_epoch: u64,
    best: f64,
    peak_epoch: u64,
    /// Sum and count of the regularizer's values since the last evaluation.
    reg_sum: f64,
    reg_steps: u64,
    /// The last evaluation's probabilities (training set, test set).
    last_probs: (Vec<f64>, Vec<f64>),
}

/// Fraction of `rows` (of row-major probabilities) whose argmax is `want(i)`.
fn share(probs: &[f64], rows: &[usize], want: &dyn Fn(usize) -> usize) -> f64 {
    if rows.is_empty() {
        return f64::NAN;
    }
    let hits = rows
        .iter()
        .filter(|&&i| argmax(&probs[i * DIGIT_CLASSES..(i + 1) * DIGIT_CLASSES]) == want(i))
        .count();
    hits as f64 / rows.len() as f64
}

impl<D: Device<f32>> Trainer for ElrRun<D> {
    fn evaluate(&mut self, step: u64, _last: bool) -> Result<Evaluation, RunStop> {
        let pt = classifier::probabilities(&self.mlp, &self.store, &self.x_train);
        let pe = classifier::probabilities(&self.mlp, &self.store, &self.x_test);
        let s = &self.split;
        let all_test: Vec<usize> = (0..s.n_test()).collect();
        let test_acc = share(&pe, &all_test, &|i| s.y_test[i]);
        let epoch = step / self.per_epoch;
        if test_acc > self.best {
            self.best = test_acc;
            self.peak_epoch = epoch;
        }
        let wrong: Vec<usize> = (0..s.n_train()).filter(|&i| self.wrong[i]).collect();
        let right: Vec<usize> = (0..s.n_train()).filter(|&i| !self.wrong[i]).collect();
        let all: Vec<usize> = (0..s.n_train()).collect();
        let train_loss = all
            .iter()
            .map(|&i| -pt[i * DIGIT_CLASSES + s.y_train[i]].max(1e-15).ln())
            .sum::<f64>()
            / s.n_train() as f64;
        let mut values = vec![
            ("test_acc", test_acc),
            ("best_test_acc", self.best),
            ("peak_epoch", self.peak_epoch as f64),
            ("mem_wrong", share(&pt, &wrong, &|i| s.y_train[i])),
            ("fixed_wrong", share(&pt, &wrong, &|i| s.y_train_true[i])),
            ("clean_train_acc", share(&pt, &right, &|i| s.y_train[i])),
            ("noisy_train_fit", share(&pt, &all, &|i| s.y_train[i])),
            ("train_loss", train_loss),
        ];
        if self.ensemble.is_some() {
            let reg = if self.reg_steps > 0 {
                self.reg_sum / self.reg_steps as f64
            } else {
                0.0
            };
            values.push(("elr_reg", reg));
            self.reg_sum = 0.0;
            self.reg_steps = 0;
        }
        // The picture: wrong-label training digits the network now predicts as their wrong
        // label (memorized), captioned "label (true)".
        let predicted = |i: usize| argmax(&pt[i * DIGIT_CLASSES..(i + 1) * DIGIT_CLASSES]);
        let memorized: Vec<usize> = wrong
            .iter()
            .copied()
            .filter(|&i| predicted(i) == s.y_train[i])
            .take(24)
            .collect();
        let pixels: Vec<f32> = memorized
            .iter()
            .flat_map(|&i| {
                s.x_train[i * DIGIT_PIXELS..(i + 1) * DIGIT_PIXELS]
                    .iter()
                    .copied()
            })
            .collect();
        let captions = memorized
            .iter()
            .map(|&i| format!("{} ({})", s.y_train[i], s.y_train_true[i]))
            .collect();
        self.last_probs = (pt, pe);
        let mut e = Evaluation::new(values);
        e.pictures.push((
            "memorized wrong labels: label (true)",
            Picture::images(8, 8, &pixels, 0.0, 1.0, captions),
        ));
        Ok(e)
    }

    fn step(&mut self, _step: u64) -> Result<f64, RunStop> {
        let idx = self.batches.next_batch();
        let x = classifier::rows(&self.x_train, &idx);
        let y = classifier::rows(&self.y_train, &idx);
        let logits = self.mlp.forward(&self.store, x.leaky_trace());
        let (loss, ce) = match self.ensemble.as_mut() {
            None => {
                let loss = cross_entropy_with_logits_loss(logits, y);
                let (v, tape) = loss.split_tape();
                let ce = v.download()[0] as f64;
                (v.put_tape(tape), ce)
            }
            Some(ens) => {
                // Official order: the targets of the batch are updated with this step's
                // detached prediction first, then the regularizer uses them.
                let (z, tape) = logits.split_tape();
                let probs = z.clone().softmax::<Axis<1>>().download();
                let t = ens.update(&idx, &probs);
                let dev = self.store.device().clone();
                let t = dev.upload(t, (idx.len(), DIGIT_CLASSES));
                let out = elr_loss(z.put_tape(tape), y, t, self.lambda);
                self.reg_sum += out.reg;
                self.reg_steps += 1;
                (out.loss, out.ce + self.lambda * out.reg)
            }
        };
        if !ce.is_finite() {
            return Ok(ce);
        }
        let mut grads = loss.backward();
        self.opt
            .step(&mut self.store, &mut grads)
            .map_err(|e| RunStop::Failed(format!("optimizer update: {e:?}")))?;
        Ok(ce)
    }

    fn finish(&mut self, final_values: &mut std::collections::BTreeMap<String, f64>, _steps: u64) {
        let wrong = self.wrong.iter().filter(|w| **w).count();
        final_values.insert(
            "wrong_label_fraction".into(),
            wrong as f64 / self.wrong.len().max(1) as f64,
        );
    }

    fn write_artifacts(&self, dir: &std::path::Path) -> std::io::Result<()> {
        let params = artifacts::store_tensors(&self.store);
        let s = &self.split;
        let (n, m) = (s.n_train(), s.n_test());
        let labels = |v: &[usize]| v.iter().map(|&l| l as f64).collect::<Vec<f64>>();
        let mut data = vec![
            NamedTensor::from_f32("x_train", &[n, DIGIT_PIXELS], &s.x_train),
            NamedTensor::new("y_train_noisy", &[n], labels(&s.y_train)),
            NamedTensor::new("y_train_true", &[n], labels(&s.y_train_true)),
            NamedTensor::from_f32("x_test", &[m, DIGIT_PIXELS], &s.x_test),
            NamedTensor::new("y_test", &[m], labels(&s.y_test)),
            NamedTensor::new(
                "train_probs",
                &[n, DIGIT_CLASSES],
                self.last_probs.0.clone(),
            ),
            NamedTensor::new("test_probs", &[m, DIGIT_CLASSES], self.last_probs.1.clone()),
        ];
        if let Some(e) = &self.ensemble {
            data.push(NamedTensor::from_f32(
                "elr_targets",
                &[n, DIGIT_CLASSES],
                &e.t,
            ));
        }
        let text = format!(
            "digits MLP classifier {:?} (ReLU), trained on noisy labels\n\
             logits: h_0 = x; h_(i+1) = relu(h_i @ mlp.i.weight + mlp.i.bias); the last layer \
             has no relu (weights are in x out)\n\
             train_probs / test_probs = softmax(logits) of x_train / x_test at the final \
             evaluation\n\
             metrics: test_acc = mean(argmax(test_probs) == y_test); over the training examples \
             with y_train_noisy != y_train_true: mem_wrong = share with argmax == y_train_noisy, \
             fixed_wrong = share with argmax == y_train_true; clean_train_acc = share of the \
             others with argmax == label; noisy_train_fit = share of all with argmax == \
             y_train_noisy\n\
             loss: CE(logits, y_train_noisy){}\n",
            self.mlp.sizes,
            if self.ensemble.is_some() {
                format!(
                    " + {} * mean log(1 - <t, clamp(softmax(logits), 1e-4, 1 - 1e-4)>); \
                     elr_targets = the final t (beta {})",
                    self.lambda,
                    self.ensemble.as_ref().map(|e| e.beta).unwrap_or(0.0)
                )
            } else {
                String::new()
            }
        );
        artifacts::write_run(dir, &params, &data, &text)
    }
}

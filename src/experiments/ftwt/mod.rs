//! "Fire Together Wire Together: A Dynamic Pruning Approach with Self-Supervised Mask
//! Prediction" (Elkerdawy, Elhoushi, Zhang, Ray, CVPR 2022): every gated layer gets a small mask
//! predictor that looks at the layer's input and predicts, per sample, which output units to
//! compute. The predictor is a binary classifier trained against a self-supervised target (the
//! units holding a fraction `r` of the layer's activation mass), decoupled from the task loss:
//! its input is detached and the binary mask is a constant in the backbone's forward pass. The
//! budget `r` fixes the MAC reduction before training (apply the target masks to the pretrained
//! network).
//!
//! On the digits MLP 64-256-256-256-10: the dense network is pretrained (identically for every
//! arm of a seed), then fine-tuned with its gates: predicted masks (`ftwt`), a fixed unit set of
//! equal size (`static`), or none (`dense`). The targets, masks and MAC counts are computed on
//! the host ([`masks`]).

pub mod bench;
pub mod masks;
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
use crate::nn::models::{uniform_fan_in, Activation, Matrix, Mlp};
use crate::nn::store::{ParamId, ParamStore};
use crate::nn::transfer::{Download, Upload};
use crate::nn::{Optimizer, Rule};
use crate::params::{ParamSpec, Params};
use crate::verdict::Verdict;

pub struct FtwtDynamicPruning;

use classifier::TRAIN_70 as FULL_TRAIN;

fn defaults() -> CommonDefaults {
    CommonDefaults {
        optimizer: "sgd",
        lr: 0.05,
        momentum: 0.9,
        weight_decay: 5e-4,
        batch: 64,
        epochs: 40,
        n_train: FULL_TRAIN as i64,
        width: 256,
        depth: 3,
    }
}

/// Which gate the fine-tuned network runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// No gates (the baseline).
    Dense,
    /// FTWT: masks from the trained predictors.
    Ftwt,
    /// The same units for every input, as many per layer as the targets keep on average.
    Static,
}

impl Method {
    fn of(p: &Params) -> Method {
        match p.text("method") {
            "dense" => Method::Dense,
            "static" => Method::Static,
            _ => Method::Ftwt,
        }
    }
}

fn per_epoch(p: &Params) -> usize {
    classifier::steps_for(p.usize("n_train").min(FULL_TRAIN), p.usize("batch"), 1)
}

impl Experiment for FtwtDynamicPruning {
    fn kind(&self) -> &'static str {
        "ftwt-dynamic-pruning"
    }

    fn params(&self) -> Vec<ParamSpec> {
        let mut v = vec![
            ParamSpec::choice(
                "method",
                &["dense", "ftwt", "static"],
                "ftwt",
                "fine-tune without gates, with FTWT's predicted masks, or with a fixed unit set \
                 of the same size per layer",
            ),
            ParamSpec::float(
                "r",
                0.9,
                0.01,
                1.0,
                "budget: the targets keep the units holding this share of a layer's \
                 activation mass (official --mthresh)",
            ),
            ParamSpec::int(
                "pretrain_epochs",
                40,
                0,
                100_000,
                "epochs of dense pretraining before the gated fine-tuning (`epochs`)",
            ),
            ParamSpec::float(
                "pred_lr",
                0.1,
                0.0,
                10.0,
                "predictors' SGD learning rate (official --mlr; 0: predictors never trained)",
            ),
            ParamSpec::float("pred_momentum", 0.9, 0.0, 0.999, "predictors' SGD momentum"),
            ParamSpec::int(
                "pred_rank",
                32,
                1,
                4096,
                "predictor bottleneck: prev -> rank -> width, linear",
            ),
            ParamSpec::float(
                "pred_bias",
                3.0,
                -20.0,
                20.0,
                "initial predictor output bias (+3: every unit on at the start)",
            ),
            ParamSpec::float(
                "cooldown",
                1.0,
                0.0,
                1.0,
                "fraction of the fine-tuning steps with the mask loss (after it the \
                 predictors are frozen)",
            ),
            ParamSpec::int("eval_every", 1, 1, 100_000, "epochs between evaluations"),
        ];
        v.extend(classifier::common_params(&defaults()));
        v
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        vec![
            MetricSpec::new("mac_reduction", "1 - dynamic MACs / dense MACs (test mean)")
                .unit("fraction")
                .reference("mac_reduction_est"),
            MetricSpec::new("test_acc", "test accuracy (masked network)")
                .unit("fraction")
                .reference("pretrained_acc"),
            MetricSpec::new(
                "mac_reduction_est",
                "MAC reduction estimated before training (targets on the pretrained net)",
            )
            .unit("fraction"),
            MetricSpec::new(
                "mac_reduction_with_pred",
                "MAC reduction counting the predictors",
            )
            .unit("fraction"),
            MetricSpec::new(
                "mac_reduction_relu",
                "zero-cost reference: reduction of r = 1 (non-zero units) on the pretrained net",
            )
            .unit("fraction"),
            MetricSpec::new("mask_acc", "per-unit accuracy of predicted vs target masks")
                .unit("fraction"),
            MetricSpec::new("active_units_l1", "mean active units, layer 1").unit("count"),
            MetricSpec::new("active_units_l2", "mean active units, layer 2").unit("count"),
            MetricSpec::new("active_units_l3", "mean active units, layer 3").unit("count"),
            MetricSpec::new("task_loss", "training cross-entropy")
                .unit("nats")
                .log(),
            MetricSpec::new("mask_loss", "predictors' BCE against the targets").unit("nats"),
            MetricSpec::new(
                "pretrained_acc",
                "test accuracy of the pretrained dense net",
            )
            .unit("fraction"),
        ]
    }

    fn table_metrics(&self) -> Vec<&'static str> {
        vec![
            "test_acc",
            "mac_reduction",
            "mac_reduction_est",
            "mac_reduction_with_pred",
            "mask_acc",
            "pretrained_acc",
        ]
    }

    fn total_steps(&self, p: &Params) -> u64 {
        (per_epoch(p) * (p.usize("pretrain_epochs") + p.usize("epochs"))) as u64
    }

    fn builtin_presets(&self) -> &'static [(&'static str, &'static str)] {
        &[(
            "presets/ftwt-dynamic-pruning.toml",
            include_str!("../../../presets/ftwt-dynamic-pruning.toml"),
        )]
    }

    fn verdict_bar(&self) -> Option<(&'static str, Option<&'static str>)> {
        Some(("test_acc", None))
    }

    fn quick_profile(&self) -> Profile {
        Profile {
            preset: "ftwt-dynamic-pruning",
            arms: &[
                "dense",
                "ftwt-r0.9",
                "ftwt-r0.7",
                "static-r0.9",
                "static-r0.7",
            ],
            seeds: &[0],
            overrides: &[
                ("pretrain_epochs", "20"),
                ("epochs", "20"),
                ("eval_every", "5"),
            ],
        }
    }

    fn device_cases(&self) -> Vec<DeviceCase> {
        let preset_size = Profile {
            preset: "ftwt-dynamic-pruning",
            arms: &[],
            seeds: &[0],
            overrides: &[("pretrain_epochs", "2"), ("epochs", "2")],
        };
        let large = Profile {
            overrides: &[
                ("pretrain_epochs", "1"),
                ("epochs", "1"),
                ("width", "1024"),
                ("batch", "256"),
            ],
            ..preset_size
        };
        vec![
            DeviceCase {
                size: "preset",
                arm: "ftwt-r0.9",
                profile: preset_size,
            },
            DeviceCase {
                size: "preset",
                arm: "static-r0.7",
                profile: preset_size,
            },
            DeviceCase {
                size: "large",
                arm: "ftwt-r0.8",
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
        let sizes = classifier::layer_sizes(p);
        let weights: f64 = sizes.windows(2).map(|w| (w[0] * w[1] + w[1]) as f64).sum();
        let rank = p.usize("pred_rank") as f64;
        let preds: f64 = sizes
            .windows(2)
            .take(sizes.len() - 2)
            .map(|w| (w[0] as f64 + w[1] as f64) * rank)
            .sum();
        let widest = *sizes.iter().max().unwrap_or(&1) as f64;
        crate::engine::memory::Estimate::of(&[
            (
                4.0 * 4.0 * (weights + preds),
                format!("layers {sizes:?} and predictors (weights, grads, momentum)"),
            ),
            (
                4.0 * 1258.0 * widest * 8.0,
                format!("activations and masks of the training set at width {widest}"),
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

/// The low-rank linear mask predictor of one gated layer: `logit = (x A) B + c`.
#[derive(Clone, Copy, Debug)]
struct Predictor {
    a: ParamId,
    b: ParamId,
    c: ParamId,
}

/// How the hidden units are switched in a forward pass.
#[derive(Clone, Copy)]
enum Gate<'a> {
    /// Every unit computed.
    Off,
    /// The predictors' masks (`logit > 0`, i.e. `sigmoid > 0.5`).
    Predicted,
    /// The self-supervised targets at budget `r` (the pre-training estimate).
    Target(f64),
    /// The same units for every input (one 0/1 vector per layer).
    Fixed(&'a [Vec<f32>]),
}

/// What a gated forward pass saw, per hidden layer (host, `rows x width`).
struct Pass<T> {
    logits: T,
    /// The mask the layer ran with.
    used: Vec<Vec<f32>>,
    /// The targets at `r` of the layer's activations (its masked input given).
    targets: Vec<Vec<f32>>,
    /// The predictors' masks (empty without predictors).
    predicted: Vec<Vec<f32>>,
    /// The post-ReLU activations before masking (only when asked).
    acts: Vec<Vec<f32>>,
}

/// The network, its predictors and their stores.
struct Net<D: Device<f32>> {
    mlp: Mlp,
    store: ParamStore<f32, D>,
    preds: Vec<Predictor>,
    pstore: ParamStore<f32, D>,
}

impl<D: Device<f32>> Net<D> {
    fn new(dev: &D, sizes: &[usize], rank: usize, bias: f32, seed: u64) -> Net<D> {
        let mut rng = StdRng::seed_from_u64(seed ^ 0xF7A7);
        let mut store = ParamStore::new(dev);
        let mlp = Mlp::new(&mut store, "mlp", sizes, Activation::Relu, &mut rng);
        let mut prng = StdRng::seed_from_u64(seed ^ 0x9E0D);
        let mut pstore = ParamStore::new(dev);
        let preds = (0..sizes.len() - 2)
            .map(|l| {
                let (fan_in, out) = (sizes[l], sizes[l + 1]);
                Predictor {
                    a: pstore.add(
                        &format!("pred.{l}.a"),
                        &[fan_in, rank],
                        uniform_fan_in(fan_in * rank, fan_in, &mut prng),
                    ),
                    b: pstore.add(
                        &format!("pred.{l}.b"),
                        &[rank, out],
                        uniform_fan_in(rank * out, rank, &mut prng),
                    ),
                    c: pstore.add(&format!("pred.{l}.c"), &[out], vec![bias; out]),
                }
            })
            .collect();
        Net {
            mlp,
            store,
            preds,
            pstore,
        }
    }

    fn sizes(&self) -> &[usize] {
        &self.mlp.sizes
    }

    /// The gated network on `x`, with the backbone on the tape `T` (none for evaluation).
    /// Targets are computed at `r` when `r` is given; `keep_acts` keeps the activations. With
    /// `pred_tape`, the predictors' logits are also returned on their own tape, from the
    /// detached layer inputs (FTWT's decoupled mode).
    #[allow(clippy::type_complexity)]
    fn forward<T: Tape<f32, D>>(
        &self,
        x: Matrix<f32, D, T>,
        gate: Gate<'_>,
        r: Option<f64>,
        keep_acts: bool,
        pred_tape: bool,
    ) -> (
        Pass<Matrix<f32, D, T>>,
        Vec<Matrix<f32, D, OwnedTape<f32, D>>>,
    ) {
        let dev = self.store.device().clone();
        let sizes = self.sizes().to_vec();
        let (n, _) = *x.shape();
        let hidden = sizes.len() - 2;
        let mut pass = Pass {
            logits: x,
            used: Vec::new(),
            targets: Vec::new(),
            predicted: Vec::new(),
            acts: Vec::new(),
        };
        let mut taped_logits = Vec::new();
        let want_pred = matches!(gate, Gate::Predicted) || pred_tape;
        let r = match gate {
            Gate::Target(t) => Some(t),
            _ => r,
        };
        for l in 0..=hidden {
            let out = sizes[l + 1];
            let (w, b) = self.mlp.layers[l];
            let w = self.store.matrix_value(w).retaped::<T>();
            let b = self
                .store
                .flat(b)
                .clone()
                .retaped::<T>()
                .broadcast_like::<_, Axis<0>>(&(n, out));
            let (h, tape) = pass.logits.split_tape();
            let z = h.clone().put_tape(tape).matmul(w) + b;
            if l == hidden {
                pass.logits = z;
                break;
            }
            let a = z.relu();
            // The predictor looks at the (detached) layer input.
            if want_pred {
                let p = self.preds[l];
                let bias = |c: Tensor<(usize,), f32, D>| c.broadcast_like::<_, Axis<0>>(&(n, out));
                if pred_tape {
                    let logit = h
                        .clone()
                        .leaky_trace()
                        .matmul(self.pstore.matrix(p.a))
                        .matmul(self.pstore.matrix(p.b))
                        + self
                            .pstore
                            .vector(p.c)
                            .broadcast_like::<_, Axis<0>>(&(n, out));
                    let (v, t) = logit.split_tape();
                    pass.predicted.push(positive(&v.download()));
                    taped_logits.push(v.put_tape(t));
                } else {
                    let logit = h
                        .clone()
                        .matmul(self.pstore.matrix_value(p.a))
                        .matmul(self.pstore.matrix_value(p.b))
                        + bias(self.pstore.flat(p.c).clone());
                    pass.predicted.push(positive(&logit.download()));
                }
            }
            let need_host = r.is_some() || keep_acts;
            let (av, tape) = a.split_tape();
            if need_host {
                let host = av.download();
                if let Some(r) = r {
                    pass.targets.push(masks::top_mass(&host, out, r));
                }
                if keep_acts {
                    pass.acts.push(host);
                }
            }
            let a = av.put_tape(tape);
            let mask: Option<Vec<f32>> = match gate {
                Gate::Off => None,
                Gate::Predicted => Some(pass.predicted[l].clone()),
                Gate::Target(_) => Some(pass.targets[l].clone()),
                Gate::Fixed(units) => Some(units[l].repeat(n)),
            };
            pass.logits = match mask {
                Some(m) => {
                    let t = dev.upload(m.clone(), (n, out));
                    pass.used.push(m);
                    a * t
                }
                None => {
                    pass.used.push(vec![1.0; n * out]);
                    a
                }
            };
        }
        (pass, taped_logits)
    }
}

/// 1 where a logit is positive (`sigmoid > 0.5`).
fn positive(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| if x > 0.0 { 1.0 } else { 0.0 }).collect()
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// The run's split (the same for every arm of a seed).
pub fn split(p: &Params, seed: u64) -> DigitsSplit {
    let mut rng = StdRng::seed_from_u64(seed ^ 0xF7F7);
    DigitsSplit::load(0.7, Some(p.usize("n_train")), &mut rng)
}

fn train<D: Device<f32>>(ctx: &mut RunContext<'_>, dev: &D) -> Result<RunEnd, RunStop> {
    let p = ctx.params.clone();
    let seed = ctx.seed;
    let split = split(&p, seed);
    let sizes = classifier::layer_sizes(&p);
    let net = Net::new(
        dev,
        &sizes,
        p.usize("pred_rank"),
        p.f64("pred_bias") as f32,
        seed,
    );
    let n = split.n_train();
    let per_epoch = per_epoch(&p) as u64;
    let pre_steps = per_epoch * p.usize("pretrain_epochs") as u64;
    let fine_steps = per_epoch * p.usize("epochs") as u64;
    ctx.log(format!(
        "{} training images, {} test images; {pre_steps} pretraining steps, {fine_steps} \
         gated fine-tuning steps ({})",
        n,
        split.n_test(),
        p.text("method")
    ));
    let pred_rule = Rule::Sgd {
        momentum: p.f64("pred_momentum"),
        nesterov: false,
        weight_decay: 0.0,
    };
    let mut run = FtwtRun {
        method: Method::of(&p),
        r: p.f64("r"),
        rank: p.usize("pred_rank"),
        pre_steps,
        cooldown_step: pre_steps + (p.f64("cooldown") * fine_steps as f64).round() as u64,
        x_train: dev.upload(split.x_train.clone(), (n, DIGIT_PIXELS)),
        y_train: classifier::one_hot(dev, &split.y_train, DIGIT_CLASSES),
        x_test: dev.upload(split.x_test.clone(), (split.n_test(), DIGIT_PIXELS)),
        batches: EpochBatches::new(n, p.usize("batch"), seed ^ 0xBA7C),
        opt: classifier::optimizer(&p),
        popt: Optimizer::new(pred_rule, p.f64("pred_lr")),
        params: p.clone(),
        split,
        net,
        fixed: None,
        est: None,
        task_sum: 0.0,
        mask_sum: 0.0,
        task_n: 0,
        mask_n: 0,
        last: None,
    };
    if pre_steps == 0 {
        run.start_gating();
    }
    let schedule = Schedule {
        steps: pre_steps + fine_steps,
        log_every: per_epoch * p.usize("eval_every") as u64,
        blowup: Some(1e4),
    };
    let end = driver::drive(ctx, schedule, &mut run);
    if let Some(e) = &run.est {
        ctx.log(format!(
            "estimate at r = {}: MAC reduction {:.4} (r = 1 reference {:.4}), units per layer \
             {:?}",
            run.r, e.reduction, e.relu_reduction, e.units
        ));
    }
    end
}

/// What the pretrained network says before the gated fine-tuning.
#[derive(Clone, Debug)]
struct Estimate {
    /// Test accuracy of the pretrained dense network.
    pretrained_acc: f64,
    /// MAC reduction of the targets at `r` on the training set.
    reduction: f64,
    /// The same for `r = 1` (the units ReLU leaves non-zero: the zero-cost reference).
    relu_reduction: f64,
    /// Mean target units per hidden layer (the static arm's unit counts, rounded).
    units: Vec<f64>,
}

/// The last evaluation's host data (artifacts).
struct LastEval {
    test_probs: Vec<f32>,
    used: Vec<Vec<f32>>,
    targets: Vec<Vec<f32>>,
}

struct FtwtRun<D: Device<f32>> {
    method: Method,
    r: f64,
    rank: usize,
    pre_steps: u64,
    cooldown_step: u64,
    params: Params,
    split: DigitsSplit,
    net: Net<D>,
    opt: Optimizer<f32, D>,
    popt: Optimizer<f32, D>,
    x_train: Matrix<f32, D>,
    y_train: Matrix<f32, D>,
    x_test: Matrix<f32, D>,
    batches: EpochBatches,
    /// The static arm's units.
    fixed: Option<Vec<Vec<f32>>>,
    est: Option<Estimate>,
    task_sum: f64,
    mask_sum: f64,
    task_n: u64,
    mask_n: u64,
    last: Option<LastEval>,
}

impl<D: Device<f32>> FtwtRun<D> {
    fn accuracy(&self, logits: &Matrix<f32, D>) -> (f64, Vec<f32>) {
        let probs = logits.clone().softmax::<Axis<1>>().download();
        let labels = &self.split.y_test;
        let hits = probs
            .chunks(DIGIT_CLASSES)
            .zip(labels)
            .filter(|(row, &y)| {
                let best = row
                    .iter()
                    .enumerate()
                    .fold(
                        (0, f32::NEG_INFINITY),
                        |b, (i, &v)| {
                            if v > b.1 {
                                (i, v)
                            } else {
                                b
                            }
                        },
                    );
                best.0 == y
            })
            .count();
        (hits as f64 / labels.len().max(1) as f64, probs)
    }

    /// The end of pretraining: the estimate from the targets on the pretrained network, the
    /// static units, and fresh optimizer state for the fine-tuning.
    fn start_gating(&mut self) {
        let sizes = self.net.sizes().to_vec();
        let (dense, _) = self
            .net
            .forward(self.x_test.clone(), Gate::Off, None, false, false);
        let pretrained_acc = self.accuracy(&dense.logits).0;
        let (pass, _) = self.net.forward(
            self.x_train.clone(),
            Gate::Target(self.r),
            None,
            false,
            false,
        );
        let (reduction, _) = masks::reductions(&pass.used, &sizes, 0);
        let units: Vec<f64> = pass
            .used
            .iter()
            .enumerate()
            .map(|(l, m)| {
                mean(
                    &masks::row_counts(m, sizes[l + 1])
                        .iter()
                        .map(|&c| c as f64)
                        .collect::<Vec<_>>(),
                )
            })
            .collect();
        let (relu, _) =
            self.net
                .forward(self.x_train.clone(), Gate::Target(1.0), None, false, false);
        let (relu_reduction, _) = masks::reductions(&relu.used, &sizes, 0);
        if self.method == Method::Static {
            // Layer by layer: the mean shares of layer l with the static units of the layers
            // before it applied.
            let mut fixed: Vec<Vec<f32>> = Vec::new();
            for l in 0..units.len() {
                let mut gates = fixed.clone();
                gates.extend((l..units.len()).map(|k| vec![1.0; sizes[k + 1]]));
                let (pass, _) =
                    self.net
                        .forward(self.x_train.clone(), Gate::Fixed(&gates), None, true, false);
                let k = units[l].round() as usize;
                fixed.push(masks::top_mean_share(&pass.acts[l], sizes[l + 1], k));
            }
            self.fixed = Some(fixed);
        }
        self.est = Some(Estimate {
            pretrained_acc,
            reduction,
            relu_reduction,
            units,
        });
        self.opt = classifier::optimizer(&self.params);
    }

    fn gate(&self) -> Gate<'_> {
        match self.method {
            Method::Dense => Gate::Off,
            Method::Ftwt => Gate::Predicted,
            Method::Static => Gate::Fixed(self.fixed.as_deref().unwrap_or(&[])),
        }
    }
}

impl<D: Device<f32>> Trainer for FtwtRun<D> {
    fn evaluate(&mut self, _step: u64, _last: bool) -> Result<Evaluation, RunStop> {
        let task = if self.task_n > 0 {
            self.task_sum / self.task_n as f64
        } else {
            f64::NAN
        };
        self.task_sum = 0.0;
        self.task_n = 0;
        let Some(est) = self.est.clone() else {
            // Pretraining: the dense network only.
            let (pass, _) = self
                .net
                .forward(self.x_test.clone(), Gate::Off, None, false, false);
            let (acc, _) = self.accuracy(&pass.logits);
            let mut values = vec![("test_acc", acc)];
            if task.is_finite() {
                values.push(("task_loss", task));
            }
            return Ok(Evaluation::new(values));
        };
        let sizes = self.net.sizes().to_vec();
        let gate = self.gate();
        let (pass, _) = self
            .net
            .forward(self.x_test.clone(), gate, Some(self.r), false, false);
        let (acc, probs) = self.accuracy(&pass.logits);
        let rank = if self.method == Method::Ftwt {
            self.rank
        } else {
            0
        };
        let (red, red_pred) = masks::reductions(&pass.used, &sizes, rank);
        let mut values = vec![
            ("test_acc", acc),
            ("mac_reduction", red),
            ("mac_reduction_with_pred", red_pred),
            ("mac_reduction_relu", est.relu_reduction),
            ("pretrained_acc", est.pretrained_acc),
        ];
        if self.method != Method::Dense {
            values.push(("mac_reduction_est", est.reduction));
        }
        for (l, name) in ["active_units_l1", "active_units_l2", "active_units_l3"]
            .iter()
            .enumerate()
            .take(pass.used.len())
        {
            let c: Vec<f64> = masks::row_counts(&pass.used[l], sizes[l + 1])
                .iter()
                .map(|&c| c as f64)
                .collect();
            values.push((name, mean(&c)));
        }
        if self.method == Method::Ftwt {
            let agree: Vec<f64> = pass
                .predicted
                .iter()
                .zip(&pass.targets)
                .map(|(p, t)| masks::agreement(p, t))
                .collect();
            values.push(("mask_acc", mean(&agree)));
            if self.mask_n > 0 {
                values.push(("mask_loss", self.mask_sum / self.mask_n as f64));
            }
        }
        self.mask_sum = 0.0;
        self.mask_n = 0;
        if task.is_finite() {
            values.push(("task_loss", task));
        }
        self.last = Some(LastEval {
            test_probs: probs,
            used: pass.used,
            targets: pass.targets,
        });
        Ok(Evaluation::new(values))
    }

    fn step(&mut self, step: u64) -> Result<f64, RunStop> {
        let idx = self.batches.next_batch();
        let x = classifier::rows(&self.x_train, &idx);
        let y = classifier::rows(&self.y_train, &idx);
        let gating = self.est.is_some();
        let train_preds = gating && self.method == Method::Ftwt && step < self.cooldown_step;
        let gate = if gating { self.gate() } else { Gate::Off };
        let (pass, pred_logits) = self.net.forward(
            x.leaky_trace(),
            gate,
            train_preds.then_some(self.r),
            false,
            train_preds,
        );
        let loss = cross_entropy_with_logits_loss(pass.logits, y);
        let (v, tape) = loss.split_tape();
        let ce = v.download()[0] as f64;
        if !ce.is_finite() {
            return Ok(ce);
        }
        let mut grads = v.put_tape(tape).backward();
        self.opt
            .step(&mut self.net.store, &mut grads)
            .map_err(|e| RunStop::Failed(format!("optimizer update: {e:?}")))?;
        self.task_sum += ce;
        self.task_n += 1;
        if train_preds {
            // The predictors' own loss: BCE of their logits (from detached inputs) against the
            // targets; it reaches neither the backbone nor the task loss.
            let dev = self.net.store.device().clone();
            let mut total: Option<Tensor<(), f32, D, OwnedTape<f32, D>>> = None;
            let layers = pred_logits.len() as f32;
            for (logit, t) in pred_logits.into_iter().zip(&pass.targets) {
                let shape = *logit.shape();
                let t = dev.upload(t.clone(), shape);
                let l = binary_cross_entropy_with_logits_loss(logit, t);
                total = Some(match total {
                    None => l,
                    Some(s) => s + l,
                });
            }
            if let Some(total) = total {
                let total = total / layers;
                let (v, tape) = total.split_tape();
                self.mask_sum += v.download()[0] as f64;
                self.mask_n += 1;
                let mut g = v.put_tape(tape).backward();
                self.popt
                    .step(&mut self.net.pstore, &mut g)
                    .map_err(|e| RunStop::Failed(format!("predictor update: {e:?}")))?;
            }
        }
        if step + 1 == self.pre_steps {
            self.start_gating();
        }
        Ok(ce)
    }

    fn finish(&mut self, final_values: &mut BTreeMap<String, f64>, _steps: u64) {
        if let Some(e) = &self.est {
            for (l, u) in e.units.iter().enumerate() {
                final_values.insert(format!("target_units_l{}", l + 1), *u);
            }
            final_values.insert("r".into(), self.r);
        }
    }

    fn write_artifacts(&self, dir: &std::path::Path) -> std::io::Result<()> {
        let mut params = artifacts::store_tensors(&self.net.store);
        params.extend(artifacts::store_tensors(&self.net.pstore));
        let s = &self.split;
        let m = s.n_test();
        let labels = |v: &[usize]| v.iter().map(|&l| l as f64).collect::<Vec<f64>>();
        let mut data = vec![
            NamedTensor::from_f32("x_test", &[m, DIGIT_PIXELS], &s.x_test),
            NamedTensor::new("y_test", &[m], labels(&s.y_test)),
        ];
        let sizes = self.net.sizes();
        if let Some(last) = &self.last {
            data.push(NamedTensor::from_f32(
                "test_probs",
                &[m, DIGIT_CLASSES],
                &last.test_probs,
            ));
            for (l, u) in last.used.iter().enumerate() {
                data.push(NamedTensor::from_f32(
                    &format!("test_mask_l{}", l + 1),
                    &[m, sizes[l + 1]],
                    u,
                ));
            }
            for (l, t) in last.targets.iter().enumerate() {
                data.push(NamedTensor::from_f32(
                    &format!("test_target_l{}", l + 1),
                    &[m, sizes[l + 1]],
                    t,
                ));
            }
        }
        if let Some(f) = &self.fixed {
            for (l, u) in f.iter().enumerate() {
                data.push(NamedTensor::from_f32(
                    &format!("static_units_l{}", l + 1),
                    &[u.len()],
                    u,
                ));
            }
        }
        let text = format!(
            "digits MLP {:?} (ReLU) with gated hidden layers, method {:?}, r {}\n\
             h_0 = x; hidden layer l: a_l = relu(h_(l-1) @ mlp.l.weight + mlp.l.bias), h_l = a_l \
             * m_l; logits = h_3 @ mlp.3.weight + mlp.3.bias (weights are in x out)\n\
             ftwt: m_l = 1[(h_(l-1) @ pred.l.a) @ pred.l.b + pred.l.c > 0]; static: m_l = \
             static_units_l(l+1) for every input; dense: m_l = 1\n\
             test_mask_l* = the masks of the test digits at the final evaluation; \
             test_target_l* = top-mass targets at r of a_l (per row: sort |a| descending, keep \
             while the cumulative share <= r + 1e-5, zero units never kept)\n\
             metrics: test_acc = mean(argmax(test_probs) == y_test); mac_reduction = 1 - mean \
             over test rows of (64 k1 + k1 k2 + k2 k3 + 10 k3) / {} with k_l = row sums of \
             test_mask_l; with predictors add (fan_in_l + {}) * {} per layer (fan_in: 64, k1, \
             k2)\n",
            sizes,
            self.method,
            self.r,
            masks::dense_macs(sizes),
            sizes.get(1).copied().unwrap_or(0),
            self.rank
        );
        artifacts::write_run(dir, &params, &data, &text)
    }
}

//! "SaRA: High-Efficient Diffusion Model Fine-tuning with Progressive Sparse Low-Rank
//! Adaptation" (Hu, Zhang, Yi, Huang, Wang, Ma, ICLR 2025): fine-tune only the pretrained
//! weights of smallest magnitude (`|W| < threshold`, the "ineffective" ones), every other
//! entry frozen, with a nuclear-norm penalty on the sparse matrix of trainable entries (one
//! random eligible matrix per step) and a progressive re-selection of the set half-way.
//!
//! Toy version: a digits MLP 64-128-128-10 pretrained on half the training digits and adapted
//! to the other half rotated by 90 degrees, at an equal trainable budget (~10% of the weights)
//! against LoRA rank 4, full fine-tuning and a random 10%; old (original) and new (rotated)
//! test accuracy. Learning rates are swept: at toy scale the step size can matter more than the
//! method. The sparse update is the optimizer's gradient mask; the nuclear-norm sub-gradient
//! `U V^T` of `W * mask` comes from a host SVD (nalgebra) and enters the loss as the linear
//! surrogate `lambda <W, mask * U V^T>` (its gradient in `W` is exactly the masked sub-gradient).

pub mod bench;
mod verdict;

use std::collections::BTreeMap;

use dfdx::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

use super::classifier::{self, DigitsSplit, EpochBatches};
use super::driver::{self, Evaluation, Schedule, Trainer};
use super::profile::{DeviceCase, Profile};
use super::{Experiment, FinishedRun, RunContext, RunEnd, RunStop};
use crate::artifacts::{self, NamedTensor};
use crate::datasets::{DIGIT_CLASSES, DIGIT_PIXELS};
use crate::metrics::lowrank::Svd;
use crate::metrics::MetricSpec;
use crate::nn::models::{accuracy_on_device, Activation, Matrix, Mlp, TapedMatrix};
use crate::nn::store::{ParamId, ParamStore};
use crate::nn::transfer::{Download, Upload};
use crate::nn::{Optimizer, Rule};
use crate::params::{ParamSpec, Params};
use crate::verdict::Verdict;

pub struct Sara;

/// Which parameters an arm adapts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Frozen,
    Full,
    Lora,
    Sara,
    Random,
}

impl Method {
    fn of(p: &Params) -> Method {
        match p.text("method") {
            "frozen" => Method::Frozen,
            "full" => Method::Full,
            "lora" => Method::Lora,
            "random" => Method::Random,
            _ => Method::Sara,
        }
    }
}

/// Rotates each 8x8 image of host rows by 90 degrees (counter-clockwise).
pub fn rotate90(x: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0; x.len()];
    for (src, dst) in x.chunks(DIGIT_PIXELS).zip(out.chunks_mut(DIGIT_PIXELS)) {
        for r in 0..8 {
            for c in 0..8 {
                dst[(7 - c) * 8 + r] = src[r * 8 + c];
            }
        }
    }
    out
}

/// The `q` quantile of `|w|` over every value (the smallest `q` share lies below it).
pub fn abs_quantile(values: &[f32], q: f64) -> f32 {
    let mut a: Vec<f32> = values.iter().map(|v| v.abs()).collect();
    a.sort_by(f32::total_cmp);
    if a.is_empty() {
        return 0.0;
    }
    let k = ((q * a.len() as f64).round() as usize).min(a.len() - 1);
    a[k]
}

impl Experiment for Sara {
    fn kind(&self) -> &'static str {
        "sara"
    }

    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::choice(
                "method",
                &["frozen", "full", "lora", "sara", "random"],
                "sara",
                "what is adapted: nothing, everything, LoRA factors, the smallest weights \
                 (SaRA), or a random set of the same size",
            ),
            ParamSpec::float(
                "budget",
                0.1,
                0.001,
                1.0,
                "share of the weights SaRA and random-sparse train (SaRA: |W| below this \
                 quantile of the pretrained |W|)",
            ),
            ParamSpec::float(
                "lambda_rank",
                1e-3,
                0.0,
                10.0,
                "weight of the nuclear norm of W * mask (one random eligible matrix per step)",
            ),
            ParamSpec::int(
                "progressive_step",
                200,
                0,
                1_000_000,
                "adaptation step of the re-selection |W| < threshold on the current weights \
                 (0: never)",
            ),
            ParamSpec::int("lora_rank", 4, 1, 128, "LoRA rank (W + A B)"),
            ParamSpec::float("lr", 1e-3, 1e-7, 1.0, "adaptation learning rate (Adam)"),
            ParamSpec::int("steps", 400, 0, 1_000_000, "adaptation steps"),
            ParamSpec::int(
                "pretrain_steps",
                1500,
                1,
                1_000_000,
                "pretraining steps (Adam 1e-3)",
            ),
            ParamSpec::int("batch", 64, 1, 629, "examples per step"),
            ParamSpec::int("width", 128, 1, 4096, "units of both hidden layers"),
            ParamSpec::int("log_every", 20, 1, 1_000_000, "steps between evaluations"),
        ]
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        vec![
            MetricSpec::new("new_acc", "accuracy on rotated test digits (new task)")
                .unit("fraction")
                .reference("pretrained_new_acc"),
            MetricSpec::new("old_acc", "accuracy on original test digits (retention)")
                .unit("fraction")
                .reference("pretrained_old_acc"),
            MetricSpec::new("trainable_frac", "trainable parameters / weights").unit("fraction"),
            MetricSpec::new("nuclear", "nuclear norm of the masked matrices (sum)"),
            MetricSpec::new("mask_overlap", "re-selected mask's overlap with the first")
                .unit("fraction"),
            MetricSpec::new("train_loss", "adaptation loss (cross-entropy)")
                .unit("nats")
                .log(),
            MetricSpec::new("pretrained_old_acc", "pretrained accuracy, original digits")
                .unit("fraction"),
            MetricSpec::new("pretrained_new_acc", "pretrained accuracy, rotated digits")
                .unit("fraction"),
        ]
    }

    fn table_metrics(&self) -> Vec<&'static str> {
        vec![
            "new_acc",
            "old_acc",
            "trainable_frac",
            "mask_overlap",
            "pretrained_old_acc",
            "pretrained_new_acc",
        ]
    }

    fn total_steps(&self, p: &Params) -> u64 {
        p.usize("steps") as u64
    }

    fn builtin_presets(&self) -> &'static [(&'static str, &'static str)] {
        &[(
            "presets/sara.toml",
            include_str!("../../../presets/sara.toml"),
        )]
    }

    fn verdict_bar(&self) -> Option<(&'static str, Option<&'static str>)> {
        Some(("new_acc", None))
    }

    fn quick_profile(&self) -> Profile {
        Profile {
            preset: "sara",
            arms: &["frozen", "full", "lora-r4", "sara", "random-sparse"],
            seeds: &[0],
            overrides: &[("pretrain_steps", "800"), ("log_every", "100")],
        }
    }

    fn device_cases(&self) -> Vec<DeviceCase> {
        let preset_size = Profile {
            preset: "sara",
            arms: &[],
            seeds: &[0],
            overrides: &[("pretrain_steps", "50"), ("steps", "40")],
        };
        vec![
            DeviceCase {
                size: "preset",
                arm: "sara",
                profile: preset_size,
            },
            DeviceCase {
                size: "preset",
                arm: "lora-r4",
                profile: preset_size,
            },
        ]
    }

    fn bench(&self, quick: bool, out: &mut String) {
        bench::report(quick, out)
    }

    fn memory(&self, p: &Params) -> crate::engine::memory::Estimate {
        let w = p.usize("width") as f64;
        let weights = 64.0 * w + w * w + 10.0 * w;
        crate::engine::memory::Estimate::of(&[
            (
                4.0 * 6.0 * weights,
                format!("MLP 64-{w}-{w}-10 (weights, masks, grads, moments)"),
            ),
            (4.0 * 1797.0 * w * 4.0, "activations of every digit".into()),
        ])
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<RunEnd, RunStop> {
        crate::on_device!(ctx, |dev| train(ctx, &dev))
    }

    fn verdict(&self, claim: &str, preset_id: &str, runs: &[FinishedRun]) -> Verdict {
        verdict::compute(claim, preset_id, runs)
    }
}

/// The run's data: the seeded split; the first half of the training digits for pretraining,
/// the second half rotated for adaptation; the test digits original and rotated.
pub struct Data {
    pub split: DigitsSplit,
    pub half: usize,
    pub x_adapt: Vec<f32>,
    pub x_test_rot: Vec<f32>,
}

pub fn data(seed: u64) -> Data {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5A7A);
    let split = DigitsSplit::load(0.7, None, &mut rng);
    let half = split.n_train() / 2;
    let x_adapt = rotate90(&split.x_train[half * DIGIT_PIXELS..2 * half * DIGIT_PIXELS]);
    let x_test_rot = rotate90(&split.x_test);
    Data {
        split,
        half,
        x_adapt,
        x_test_rot,
    }
}

fn train<D: Device<f32>>(ctx: &mut RunContext<'_>, dev: &D) -> Result<RunEnd, RunStop> {
    let p = ctx.params.clone();
    let seed = ctx.seed;
    let d = data(seed);
    let half = d.half;
    let s = &d.split;
    let width = p.usize("width");
    let sizes = [DIGIT_PIXELS, width, width, DIGIT_CLASSES];
    let mut rng = StdRng::seed_from_u64(seed ^ 0x0517);
    let mut store = ParamStore::<f32, D>::new(dev);
    let mlp = Mlp::new(&mut store, "mlp", &sizes, Activation::Relu, &mut rng);
    // Pretraining on the original half (identical for every arm of a seed).
    let x_pre: Matrix<f32, D> = dev.upload(s.x_train[..half * DIGIT_PIXELS].to_vec(), (half, 64));
    let y_pre = classifier::one_hot(dev, &s.y_train[..half], DIGIT_CLASSES);
    let mut pre_batches = EpochBatches::new(half, p.usize("batch"), seed ^ 0xB1);
    let mut opt = Optimizer::new(Rule::adam(), 1e-3);
    for _ in 0..p.usize("pretrain_steps") {
        let idx = pre_batches.next_batch();
        let logits = mlp.forward(&store, classifier::rows(&x_pre, &idx).leaky_trace());
        let loss = cross_entropy_with_logits_loss(logits, classifier::rows(&y_pre, &idx));
        let mut g = loss.backward();
        opt.step(&mut store, &mut g)
            .map_err(|e| RunStop::Failed(format!("pretraining update: {e:?}")))?;
        if ctx.stop_requested() {
            return Err(RunStop::Stopped { step: 0 });
        }
    }
    let x_test: Matrix<f32, D> = dev.upload(s.x_test.clone(), (s.n_test(), 64));
    let x_test_rot: Matrix<f32, D> = dev.upload(d.x_test_rot.clone(), (s.n_test(), 64));
    let acc = |store: &ParamStore<f32, D>, x: &Matrix<f32, D>| {
        accuracy_on_device(&mlp.logits(store, x.clone()), &s.y_test)
    };
    let pre_old = acc(&store, &x_test);
    let pre_new = acc(&store, &x_test_rot);
    ctx.log(format!(
        "pretrained on {half} original digits: test accuracy {pre_old:.4} original, \
         {pre_new:.4} rotated"
    ));
    let method = Method::of(&p);
    let n_weights: usize = (0..3).map(|i| sizes[i] * sizes[i + 1]).sum();
    // Freeze what the arm does not train.
    let weights: Vec<ParamId> = (0..3).map(|i| mlp.layer_weight(i)).collect();
    let biases: Vec<ParamId> = (0..3).map(|i| mlp.layer_bias(i)).collect();
    let mut threshold = 0.0f32;
    let mut masks: Vec<Vec<f32>> = Vec::new();
    let mut lora: Vec<(ParamId, ParamId)> = Vec::new();
    match method {
        Method::Full => {}
        Method::Frozen => {
            for id in weights.iter().chain(&biases) {
                store.set_trainable(*id, false);
            }
        }
        Method::Lora => {
            for id in weights.iter().chain(&biases) {
                store.set_trainable(*id, false);
            }
            let k = p.usize("lora_rank");
            let mut lrng = StdRng::seed_from_u64(seed ^ 0x10AA);
            for i in 0..3 {
                let (fin, fout) = (sizes[i], sizes[i + 1]);
                let normal = Normal::new(0.0, (1.0 / fin as f64).sqrt()).expect("std");
                let a: Vec<f32> = (0..fin * k)
                    .map(|_| normal.sample(&mut lrng) as f32)
                    .collect();
                let a = store.add(&format!("lora.{i}.a"), &[fin, k], a);
                let b = store.add_filled(&format!("lora.{i}.b"), &[k, fout], 0.0);
                lora.push((a, b));
            }
        }
        Method::Sara | Method::Random => {
            for id in &biases {
                store.set_trainable(*id, false);
            }
            let all: Vec<f32> = weights.iter().flat_map(|&w| store.values(w)).collect();
            threshold = abs_quantile(&all, p.f64("budget"));
            let count = all.iter().filter(|v| v.abs() < threshold).count();
            let mut mrng = StdRng::seed_from_u64(seed ^ 0x3A5C);
            let chosen: Vec<bool> = if method == Method::Sara {
                all.iter().map(|v| v.abs() < threshold).collect()
            } else {
                // The same number of entries, uniformly at random.
                let mut order: Vec<usize> = (0..all.len()).collect();
                for i in (1..order.len()).rev() {
                    order.swap(i, mrng.gen_range(0..=i));
                }
                let mut c = vec![false; all.len()];
                order.iter().take(count).for_each(|&i| c[i] = true);
                c
            };
            let mut at = 0;
            for &w in &weights {
                let n = store.param(w).numel();
                let m: Vec<f32> = chosen[at..at + n]
                    .iter()
                    .map(|&c| if c { 1.0 } else { 0.0 })
                    .collect();
                at += n;
                store.set_mask(w, m.clone());
                masks.push(m);
            }
        }
    }
    let trainable = match method {
        Method::Frozen => 0.0,
        Method::Full => store.num_trainable() as f64,
        Method::Lora => lora
            .iter()
            .map(|(a, b)| store.param(*a).numel() + store.param(*b).numel())
            .sum::<usize>() as f64,
        Method::Sara | Method::Random => masks
            .iter()
            .map(|m| m.iter().filter(|&&v| v > 0.5).count())
            .sum::<usize>() as f64,
    };
    let steps = p.usize("steps") as u64;
    let mut run = SaraRun {
        method,
        lr: p.f64("lr"),
        lambda: if matches!(method, Method::Sara | Method::Random) {
            p.f64("lambda_rank")
        } else {
            0.0
        },
        progressive: if method == Method::Sara {
            p.usize("progressive_step") as u64
        } else {
            0
        },
        threshold,
        first_masks: masks.clone(),
        masks,
        overlap: None,
        trainable_frac: trainable / n_weights as f64,
        x_adapt: dev.upload(d.x_adapt.clone(), (half, 64)),
        y_adapt: classifier::one_hot(dev, &s.y_train[half..2 * half], DIGIT_CLASSES),
        x_test,
        x_test_rot,
        batches: EpochBatches::new(half, p.usize("batch"), seed ^ 0xAD),
        opt: Optimizer::new(Rule::adam(), p.f64("lr")),
        rng: StdRng::seed_from_u64(seed ^ 0x7711),
        sizes: sizes.to_vec(),
        weights,
        lora,
        mlp,
        store,
        pre: (pre_old, pre_new),
        y_test: s.y_test.clone(),
        loss_sum: 0.0,
        loss_n: 0,
        last_nuclear: f64::NAN,
    };
    let schedule = Schedule {
        steps,
        log_every: p.usize("log_every") as u64,
        blowup: Some(1e4),
    };
    driver::drive(ctx, schedule, &mut run)
}

struct SaraRun<D: Device<f32>> {
    method: Method,
    lr: f64,
    lambda: f64,
    progressive: u64,
    threshold: f32,
    masks: Vec<Vec<f32>>,
    first_masks: Vec<Vec<f32>>,
    overlap: Option<f64>,
    trainable_frac: f64,
    x_adapt: Matrix<f32, D>,
    y_adapt: Matrix<f32, D>,
    x_test: Matrix<f32, D>,
    x_test_rot: Matrix<f32, D>,
    batches: EpochBatches,
    opt: Optimizer<f32, D>,
    rng: StdRng,
    sizes: Vec<usize>,
    weights: Vec<ParamId>,
    lora: Vec<(ParamId, ParamId)>,
    mlp: Mlp,
    store: ParamStore<f32, D>,
    pre: (f64, f64),
    y_test: Vec<usize>,
    loss_sum: f64,
    loss_n: u64,
    last_nuclear: f64,
}

impl<D: Device<f32>> SaraRun<D> {
    /// The layer weights the network uses: `W` (frozen or masked) or, with LoRA, `W + A B`.
    fn weights_taped(&self) -> Vec<TapedMatrix<f32, D>> {
        (0..3)
            .map(|i| {
                let w = self.store.matrix(self.weights[i]);
                match self.lora.get(i) {
                    Some(&(a, b)) => w + self.store.matrix(a).matmul(self.store.matrix(b)),
                    None => w,
                }
            })
            .collect()
    }

    fn logits(&self, x: &Matrix<f32, D>) -> Matrix<f32, D> {
        let ws = self.weights_taped();
        let (out, _) = self
            .mlp
            .forward_with_weights(&self.store, x.clone().leaky_trace(), ws)
            .split_tape();
        out
    }

    /// Matrices the nuclear norm may pick (official: 2-D with the smaller side above 64; here
    /// at least 64: the two hidden-layer weights).
    fn eligible(&self) -> Vec<usize> {
        (0..3)
            .filter(|&i| self.sizes[i].min(self.sizes[i + 1]) >= 64)
            .collect()
    }

    /// The SVD of `W_i * mask_i` on the host.
    fn masked_svd(&self, i: usize) -> Svd {
        let w = self.store.values(self.weights[i]);
        let m = &self.masks[i];
        let v: Vec<f32> = w.iter().zip(m).map(|(a, b)| a * b).collect();
        Svd::of(&v, self.sizes[i], self.sizes[i + 1])
    }

    /// SaRA's re-selection: `|W| < threshold` on the current weights, fresh optimizer state.
    fn reselect(&mut self) {
        let mut same = 0usize;
        let mut first = 0usize;
        for i in 0..3 {
            let w = self.store.values(self.weights[i]);
            let m: Vec<f32> = w
                .iter()
                .map(|v| if v.abs() < self.threshold { 1.0 } else { 0.0 })
                .collect();
            same += m
                .iter()
                .zip(&self.first_masks[i])
                .filter(|(a, b)| **a > 0.5 && **b > 0.5)
                .count();
            first += self.first_masks[i].iter().filter(|&&v| v > 0.5).count();
            self.store.set_mask(self.weights[i], m.clone());
            self.masks[i] = m;
        }
        self.overlap = Some(same as f64 / first.max(1) as f64);
        let total: usize = self.masks.iter().map(|m| m.len()).sum();
        let on: usize = self
            .masks
            .iter()
            .map(|m| m.iter().filter(|&&v| v > 0.5).count())
            .sum();
        self.trainable_frac = on as f64 / total as f64;
        self.opt = Optimizer::new(Rule::adam(), self.lr);
    }
}

impl<D: Device<f32>> Trainer for SaraRun<D> {
    fn evaluate(&mut self, _step: u64, last: bool) -> Result<Evaluation, RunStop> {
        let old = accuracy_on_device(&self.logits(&self.x_test), &self.y_test);
        let new = accuracy_on_device(&self.logits(&self.x_test_rot), &self.y_test);
        let mut values = vec![
            ("new_acc", new),
            ("old_acc", old),
            ("trainable_frac", self.trainable_frac),
            ("pretrained_old_acc", self.pre.0),
            ("pretrained_new_acc", self.pre.1),
            ("lr", self.lr),
        ];
        if self.loss_n > 0 {
            values.push(("train_loss", self.loss_sum / self.loss_n as f64));
            self.loss_sum = 0.0;
            self.loss_n = 0;
        }
        if !self.masks.is_empty() {
            let nuc: f64 = self
                .eligible()
                .iter()
                .map(|&i| self.masked_svd(i).nuclear_norm())
                .sum();
            self.last_nuclear = nuc;
            values.push(("nuclear", nuc));
        }
        if let Some(o) = self.overlap {
            values.push(("mask_overlap", o));
        }
        let _ = last;
        Ok(Evaluation::new(values))
    }

    fn step(&mut self, step: u64) -> Result<f64, RunStop> {
        if self.progressive > 0 && step == self.progressive {
            self.reselect();
        }
        let idx = self.batches.next_batch();
        let x = classifier::rows(&self.x_adapt, &idx);
        let y = classifier::rows(&self.y_adapt, &idx);
        let ws = self.weights_taped();
        let logits = self
            .mlp
            .forward_with_weights(&self.store, x.leaky_trace(), ws);
        let ce = cross_entropy_with_logits_loss(logits, y);
        let (v, tape) = ce.split_tape();
        let value = v.download()[0] as f64;
        self.loss_sum += value;
        self.loss_n += 1;
        if self.method == Method::Frozen || !value.is_finite() {
            return Ok(value);
        }
        let mut loss = v.put_tape(tape);
        if self.lambda > 0.0 && !self.masks.is_empty() {
            // One random eligible matrix: lambda <W, mask * U V^T>, whose gradient in W is the
            // masked nuclear-norm sub-gradient of W * mask.
            let el = self.eligible();
            let i = el[self.rng.gen_range(0..el.len())];
            let svd = self.masked_svd(i);
            let rank = svd.value_rank(1e-6);
            let g: Vec<f32> = svd
                .nuclear_subgradient(rank)
                .iter()
                .zip(&self.masks[i])
                .map(|(g, m)| (*g as f32) * m)
                .collect();
            let dev = self.store.device().clone();
            let g = dev.upload(g, (self.sizes[i], self.sizes[i + 1]));
            let surrogate = (self.store.matrix(self.weights[i]) * g).sum::<Rank0, _>();
            loss = loss + surrogate * self.lambda as f32;
        }
        let mut grads = loss.backward();
        self.opt
            .step(&mut self.store, &mut grads)
            .map_err(|e| RunStop::Failed(format!("optimizer update: {e:?}")))?;
        Ok(value)
    }

    fn finish(&mut self, final_values: &mut BTreeMap<String, f64>, _steps: u64) {
        final_values.insert("threshold".into(), self.threshold as f64);
        if let Some(o) = self.overlap {
            final_values.insert("mask_overlap".into(), o);
        }
    }

    fn write_artifacts(&self, dir: &std::path::Path) -> std::io::Result<()> {
        let params = artifacts::store_tensors(&self.store);
        let labels: Vec<f64> = self.y_test.iter().map(|&l| l as f64).collect();
        let n = self.y_test.len();
        let mut data = vec![
            NamedTensor::from_f32("x_test", &[n, 64], &self.x_test.download()),
            NamedTensor::from_f32("x_test_rot", &[n, 64], &self.x_test_rot.download()),
            NamedTensor::new("y_test", &[n], labels),
        ];
        for (i, m) in self.masks.iter().enumerate() {
            data.push(NamedTensor::from_f32(
                &format!("mask.{i}"),
                &[self.sizes[i], self.sizes[i + 1]],
                m,
            ));
        }
        let text = format!(
            "digits MLP {:?} (ReLU), method {:?}, adaptation lr {}\n\
             logits: h_0 = x; h_(i+1) = relu(h_i @ W_i + mlp.i.bias), no relu on the last layer; \
             W_i = mlp.i.weight{} (weights are in x out)\n\
             metrics: old_acc = mean(argmax(logits(x_test)) == y_test); new_acc = the same on \
             x_test_rot (each image rotated by 90 degrees); mask.i = the entries of mlp.i.weight \
             trained last (SaRA: |W| < threshold {})\n",
            self.sizes,
            self.method,
            self.lr,
            if self.lora.is_empty() {
                ""
            } else {
                " + lora.i.a @ lora.i.b"
            },
            self.threshold
        );
        artifacts::write_run(dir, &params, &data, &text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_and_quantile() {
        let img: Vec<f32> = (0..64).map(|v| v as f32).collect();
        let r = rotate90(&img);
        // Four rotations are the identity; one moves the top-right corner to the top-left.
        let r4 = rotate90(&rotate90(&rotate90(&r)));
        assert_eq!(r4, img);
        assert_eq!(r[0], 7.0);
        let v = [0.5f32, -0.1, 0.3, -0.9, 0.05, 0.2, -0.7, 0.8, 0.4, -0.6];
        let t = abs_quantile(&v, 0.2);
        assert_eq!(v.iter().filter(|x| x.abs() < t).count(), 2);
    }
}

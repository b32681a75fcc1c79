//! "Robust Representation Consistency Model via Contrastive Denoising" (rRCM; Lei et al., ICLR
//! 2025) against denoised smoothing, with Cohen et al.'s randomized-smoothing certification on
//! the 8x8 digits at two noise levels. Every arm's base classifier `f` is certified by CERTIFY
//! ([`crate::metrics::smoothing`]): `n0` selection samples pick the class, `n` separate
//! estimation samples give its Clopper-Pearson lower bound `p_A`, the radius is
//! `sigma Phi^{-1}(p_A)` (abstain below 1/2).
//!
//! Arms (one network with a noise-level input, [`model::Encoder`]):
//! - `gauss`: cross-entropy on `x + sigma n` (Cohen et al.);
//! - `consreg`: cross-entropy over two noisy copies + `lbd mean_i KL(pbar || p_i) + eta H(pbar)`
//!   (Jeong & Shin 2020), from random initialization;
//! - `denoise`: denoised smoothing (Carlini et al. 2023) with a one-shot DDPM denoiser from the
//!   diffusion harness (`t*` with `sqrt((1 - abar)/abar) = 2 sigma` on the [-1, 1] scale) and
//!   a classifier trained on clean images: two networks per noise sample;
//! - `rrcm`: contrastive-denoising pre-training (InfoNCE between adjacent noise levels of one
//!   trajectory, stop-gradient on the less noisy point, plus InfoNCE between two shifted views
//!   at `s_min` against an EMA target), then the `consreg` fine-tuning; one network per sample.
//!
//! The denoiser, the clean classifier and the pre-trained encoder depend on the seed only and
//! are trained once per seed for all arms ([`crate::experiments::memo`]).

pub mod bench;
pub mod model;
mod verdict;

use std::time::Instant;

use dfdx::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

use self::model::{
    consistency_loss, info_nce, inputs, load_named, noise_features, Encoder, CLASSES, FOURIER,
    PIXELS,
};
use super::classifier::{one_hot, random_shift, upload_rows, EpochBatches};
use super::diffusion::net::upload_f32;
use super::diffusion::{
    to_unit, train_eps_net, EpsNet, EpsNetConfig, NoiseSchedule, SignedDigits, TrainConfig,
};
use super::driver::{self, Evaluation, Schedule, Trainer};
use super::profile::{DeviceCase, Profile};
use super::ssl::{copy_store, ema_update};
use super::{memo, Experiment, FinishedRun, RunContext, RunEnd, RunStop};
use crate::artifacts::{self, NamedTensor};
use crate::metrics::picture::Picture;
use crate::metrics::smoothing::{
    abstain_rate, average_certified_radius, certified_accuracy, certify_counts, max_radius,
    top_class_share, Certificate,
};
use crate::metrics::MetricSpec;
use crate::nn::models::{softmax_cross_entropy, Matrix};
use crate::nn::optim::cosine_lr;
use crate::nn::store::ParamStore;
use crate::nn::transfer::Download;
use crate::nn::{Optimizer, Rule};
use crate::params::{ParamSpec, Params};
use crate::verdict::Verdict;

pub use verdict::{claim_radii, COLLAPSE_ACC};

pub struct RrcmSmoothing;

/// The radii certified accuracy is reported at, with their metric names.
pub const RADIUS_METRICS: [(f64, &str); 5] = [
    (0.0, "cert_acc_r000"),
    (0.25, "cert_acc_r025"),
    (0.5, "cert_acc_r050"),
    (0.75, "cert_acc_r075"),
    (1.0, "cert_acc_r100"),
];

/// The radius grid of the certified-accuracy curve (`step = 100 r`).
pub const CURVE_STEP: f64 = 0.05;
pub const CURVE_MAX: f64 = 1.5;

/// Held-out images the noisy accuracy is measured on during training.
const HELD_OUT: usize = 256;
/// Noisy copies in the picture.
const PICTURE_COPIES: usize = 7;

impl Experiment for RrcmSmoothing {
    fn kind(&self) -> &'static str {
        "rrcm-smoothing"
    }

    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::choice(
                "method",
                &["gauss", "consreg", "denoise", "rrcm"],
                "rrcm",
                "the base classifier: Gaussian augmentation, consistency regularization, \
                 denoiser + clean classifier, or rRCM (pre-training + consistency fine-tuning)",
            ),
            ParamSpec::float(
                "sigma",
                0.25,
                0.01,
                2.0,
                "smoothing noise level (pixels in [0, 1])",
            ),
            ParamSpec::float(
                "train_noise",
                1.0,
                0.0,
                4.0,
                "training noise as a multiple of sigma (0: clean training, the mechanism off)",
            ),
            ParamSpec::float(
                "lbd",
                2.0,
                0.0,
                1000.0,
                "consistency weight lbd on mean_i KL(pbar || p_i) (consreg, rrcm)",
            ),
            ParamSpec::float(
                "eta",
                0.5,
                0.0,
                100.0,
                "entropy weight eta on H(pbar) (consreg, rrcm)",
            ),
            ParamSpec::int(
                "steps",
                1500,
                0,
                1_000_000,
                "training (fine-tuning) steps; the denoise arm trains its shared networks instead",
            ),
            ParamSpec::int("batch", 128, 2, 4096, "images per step"),
            ParamSpec::float(
                "lr",
                1e-3,
                1e-7,
                1.0,
                "Adam's peak learning rate (cosine decay)",
            ),
            ParamSpec::int("hidden", 256, 8, 4096, "encoder hidden width"),
            ParamSpec::int(
                "pretrain_steps",
                1500,
                0,
                1_000_000,
                "rRCM contrastive-denoising pre-training steps (0: none)",
            ),
            ParamSpec::float("pretrain_lr", 1e-3, 1e-7, 1.0, "pre-training learning rate"),
            ParamSpec::int(
                "levels",
                20,
                2,
                1000,
                "Karras noise levels N of the pre-training",
            ),
            ParamSpec::float(
                "s_max",
                2.0,
                1e-3,
                100.0,
                "largest pre-training noise level",
            ),
            ParamSpec::float("s_min", 0.002, 1e-5, 1.0, "smallest noise level"),
            ParamSpec::float("rho", 7.0, 1.0, 20.0, "Karras rho"),
            ParamSpec::float("tau", 0.2, 1e-3, 10.0, "InfoNCE temperature"),
            ParamSpec::float(
                "ema",
                0.99,
                0.0,
                1.0,
                "EMA momentum of the contrastive target",
            ),
            ParamSpec::int(
                "denoiser_steps",
                2000,
                1,
                1_000_000,
                "DDPM denoiser training steps (denoise arm)",
            ),
            ParamSpec::int(
                "clean_steps",
                1000,
                1,
                1_000_000,
                "clean classifier training steps (denoise arm)",
            ),
            ParamSpec::int("n_cert", 120, 1, 397, "test images certified"),
            ParamSpec::int("n0", 64, 1, 100_000, "CERTIFY selection samples"),
            ParamSpec::int("n_mc", 500, 1, 1_000_000, "CERTIFY estimation samples n"),
            ParamSpec::float("alpha", 0.001, 1e-9, 0.5, "CERTIFY failure probability"),
            ParamSpec::int(
                "log_every",
                50,
                1,
                1_000_000,
                "steps (training steps or certified images) between measurements",
            ),
        ]
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        vec![
            MetricSpec::new("cert_curve", "certified accuracy vs radius")
                .unit("fraction of test images; reference: a constant classifier")
                .x_axis("radius r", 100.0)
                .reference("chance"),
            MetricSpec::new("cert_acc_r050", "certified accuracy at r = 0.5")
                .unit("fraction; streamed per certified image")
                .reference("chance"),
            MetricSpec::new("cert_acc_r025", "certified accuracy at r = 0.25").reference("chance"),
            MetricSpec::new("cert_acc_r075", "certified accuracy at r = 0.75").reference("chance"),
            MetricSpec::new("cert_acc_r100", "certified accuracy at r = 1.0").reference("chance"),
            MetricSpec::new("clean_acc", "smoothed accuracy (r = 0)")
                .unit("fraction; collapse guard at 0.2")
                .reference("collapse_line"),
            MetricSpec::new("cert_acc_r000", "certified accuracy at r = 0"),
            MetricSpec::new("acr", "average certified radius"),
            MetricSpec::new("abstain_rate", "CERTIFY abstentions").unit("fraction"),
            MetricSpec::new("top_class_share", "share of the most frequent prediction")
                .unit("fraction; 0.1 for balanced predictions")
                .reference("balanced_share"),
            MetricSpec::new("ms_per_certificate", "certification time per image")
                .unit("ms, fastest of the certified images (identical work; least disturbed)"),
            MetricSpec::new("ms_median", "certification time per image (median)").unit("ms"),
            MetricSpec::new("kmacs_per_sample", "multiply-accumulates per noise sample")
                .unit("thousands"),
            MetricSpec::new("forwards_per_sample", "network passes per noise sample"),
            MetricSpec::new("acc_noisy", "base accuracy on x + sigma n (held out)"),
            MetricSpec::new("loss_ce", "cross-entropy").log(),
            MetricSpec::new("loss_cons", "consistency regularization"),
            MetricSpec::new("loss_nce_cons", "pre-training InfoNCE (adjacent levels)"),
            MetricSpec::new("loss_nce_contrast", "pre-training InfoNCE (two views)"),
            MetricSpec::new("chance", "constant classifier (largest class share)"),
            MetricSpec::new("collapse_line", "collapse guard (0.2)"),
            MetricSpec::new("balanced_share", "balanced predictions (0.1)"),
        ]
    }

    fn table_metrics(&self) -> Vec<&'static str> {
        vec![
            "clean_acc",
            "cert_acc_r025",
            "cert_acc_r050",
            "cert_acc_r075",
            "cert_acc_r100",
            "acr",
            "abstain_rate",
            "top_class_share",
            "ms_per_certificate",
        ]
    }

    fn total_steps(&self, p: &Params) -> u64 {
        (train_steps(p) + p.usize("n_cert")) as u64
    }

    fn memory(&self, p: &Params) -> crate::engine::memory::Estimate {
        let h = p.usize("hidden") as f64;
        let params = (80.0 * h + h * h + h * 128.0 + 128.0 * 138.0 + 64.0 * 128.0) * 4.0 * 5.0;
        let rows = (p.usize("n0") + p.usize("n_mc")).max(4 * p.usize("batch")) as f64;
        crate::engine::memory::Estimate::of(&[
            (
                params,
                format!("encoder with {h} hidden units (weights, Adam moments, EMA, gradients)"),
            ),
            (
                rows * h * 4.0 * 8.0,
                format!("{rows} noisy rows through the network at once"),
            ),
        ])
    }

    fn builtin_presets(&self) -> &'static [(&'static str, &'static str)] {
        &[(
            "presets/rrcm-smoothing.toml",
            include_str!("../../../presets/rrcm-smoothing.toml"),
        )]
    }

    fn verdict_bar(&self) -> Option<(&'static str, Option<&'static str>)> {
        Some(("ms_per_certificate", None))
    }

    fn quick_profile(&self) -> Profile {
        Profile {
            preset: "rrcm-smoothing",
            arms: &["denoise-s0.25", "rrcm-s0.25", "denoise-s0.5", "rrcm-s0.5"],
            seeds: &[0],
            overrides: &QUICK,
        }
    }

    fn device_cases(&self) -> Vec<DeviceCase> {
        let small = Profile {
            preset: "rrcm-smoothing",
            arms: &[],
            seeds: &[0],
            overrides: &[
                ("steps", "20"),
                ("pretrain_steps", "20"),
                ("denoiser_steps", "20"),
                ("clean_steps", "20"),
                ("n_cert", "4"),
                ("n_mc", "50"),
                ("log_every", "10"),
            ],
        };
        ["gauss-s0.5", "denoise-s0.5", "rrcm-s0.5"]
            .into_iter()
            .map(|arm| DeviceCase {
                size: "preset",
                arm,
                profile: small,
            })
            .collect()
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

/// The quick profile's sizes.
const QUICK: [(&str, &str); 7] = [
    ("steps", "300"),
    ("pretrain_steps", "200"),
    ("denoiser_steps", "500"),
    ("clean_steps", "200"),
    ("n_cert", "30"),
    ("n_mc", "200"),
    ("log_every", "20"),
];

/// Training steps the driver runs before certifying (the denoise arm's networks are trained
/// once per seed, outside its steps).
pub fn train_steps(p: &Params) -> usize {
    if p.text("method") == "denoise" {
        0
    } else {
        p.usize("steps")
    }
}

/// Karras et al.'s levels `s_i`, descending from `s_max` to `s_min`.
pub fn karras_levels(n: usize, s_max: f64, s_min: f64, rho: f64) -> Vec<f64> {
    let (a, b) = (s_max.powf(1.0 / rho), s_min.powf(1.0 / rho));
    (0..n)
        .map(|i| (a + i as f64 / (n - 1).max(1) as f64 * (b - a)).powf(rho))
        .collect()
}

/// The DDPM timestep whose noise-to-signal ratio `sqrt((1 - abar)/abar)` is closest to `ratio`
/// (Carlini et al.'s `t*`; `ratio = 2 sigma` on the [-1, 1] scale).
pub fn matching_timestep(schedule: &NoiseSchedule, ratio: f64) -> usize {
    (0..schedule.steps())
        .min_by(|&a, &b| {
            let r = |t: usize| {
                let ab = schedule.abar_at(Some(t));
                (((1.0 - ab) / ab).sqrt() - ratio).abs()
            };
            r(a).total_cmp(&r(b))
        })
        .unwrap_or(0)
}

/// Host rows of `x` (64 columns) plus `sigma n`, `n` standard normal.
fn noisy(x: &[f32], sigma: f64, rng: &mut impl Rng) -> Vec<f32> {
    x.iter()
        .map(|v| {
            let e: f64 = rng.sample(StandardNormal);
            (*v as f64 + sigma * e) as f32
        })
        .collect()
}

fn argmax_rows(logits: &[f32], classes: usize) -> Vec<usize> {
    logits
        .chunks(classes)
        .map(|row| {
            row.iter()
                .enumerate()
                .fold(0, |best, (c, v)| if *v > row[best] { c } else { best })
        })
        .collect()
}

/// The fastest certificate: every image does the same work (same shapes, same passes), so the
/// minimum is the cost least disturbed by the other runs training at the same time.
fn fastest(xs: &[f64]) -> f64 {
    xs.iter().copied().fold(f64::NAN, f64::min)
}

/// The median (the certification time is measured while other runs train: the median is
/// robust to their bursts).
fn median(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        0.5 * (v[m - 1] + v[m])
    }
}

/// Host parameters of a network trained once per seed, with its final losses.
struct Trained {
    named: Vec<(String, Vec<usize>, Vec<f64>)>,
    losses: Vec<(&'static str, f64)>,
}

fn download_f32<E: Dtype + num_traits::ToPrimitive, D: Device<E>>(m: &Matrix<E, D>) -> Vec<f32> {
    m.download()
        .into_iter()
        .map(|v| v.to_f32().unwrap_or(f32::NAN))
        .collect()
}

/// The contrastive-denoising pre-training of the encoder (rRCM), once per seed.
fn pretrain<D: Device<f32>>(
    dev: &D,
    p: &Params,
    x_train: &[f32],
    seed: u64,
    log: &mut dyn FnMut(String),
) -> Result<Trained, RunStop> {
    let steps = p.usize("pretrain_steps");
    let batch = p.usize("batch");
    let levels = karras_levels(
        p.usize("levels"),
        p.f64("s_max"),
        p.f64("s_min"),
        p.f64("rho"),
    );
    let (s_min, tau, momentum) = (p.f64("s_min"), p.f64("tau"), p.f64("ema"));
    let mut rng = StdRng::seed_from_u64(seed ^ 0x9E7A);
    let mut store = ParamStore::<f32, D>::new(dev);
    let enc = Encoder::new(&mut store, p.usize("hidden"), &mut rng);
    let mut target = copy_store(&store);
    let mut opt = Optimizer::new(Rule::adam(), p.f64("pretrain_lr"));
    let mut batches = EpochBatches::new(x_train.len() / PIXELS, batch, seed ^ 0xBA7C);
    let (mut sum_c, mut sum_v, mut count) = (0.0, 0.0, 0usize);
    let (mut last_c, mut last_v) = (f64::NAN, f64::NAN);
    let every = (steps / 10).max(1);
    for step in 0..steps {
        opt.lr = cosine_lr(p.f64("pretrain_lr"), step, steps);
        let idx = batches.next_batch();
        let x: Vec<f32> = super::ssl::host_rows(x_train, &idx, PIXELS);
        // Adjacent levels of one trajectory (same noise): s_i (query) and s_{i+1} (key).
        let (mut hi, mut lo) = (Vec::with_capacity(x.len()), Vec::with_capacity(x.len()));
        let (mut s_hi, mut s_lo) = (Vec::new(), Vec::new());
        for row in x.chunks(PIXELS) {
            let i = rng.gen_range(0..levels.len() - 1);
            for v in row {
                let e: f64 = rng.sample(StandardNormal);
                hi.push((*v as f64 + levels[i] * e) as f32);
                lo.push((*v as f64 + levels[i + 1] * e) as f32);
            }
            s_hi.push(levels[i]);
            s_lo.push(levels[i + 1]);
        }
        // Two random 1-pixel shifts at s_min (query: online, key: EMA target).
        let mut v1 = x.clone();
        let mut v2 = x.clone();
        random_shift(&mut v1, 1, &mut rng);
        random_shift(&mut v2, 1, &mut rng);
        let v1 = noisy(&v1, s_min, &mut rng);
        let v2 = noisy(&v2, s_min, &mut rng);
        let smin = vec![s_min; idx.len()];
        let up =
            |rows: &[f32], s: &[f64]| upload_rows::<f32, D>(dev, &inputs(rows, s), model::INPUT);
        let q1 = enc.project_taped(&store, up(&hi, &s_hi).leaky_trace());
        let k1 = enc.project(&store, up(&lo, &s_lo));
        let q2 = enc.project_taped(&store, up(&v1, &smin).leaky_trace());
        let k2 = enc.project(&target, up(&v2, &smin));
        let (lc, tc) = info_nce(q1, k1, tau).split_tape();
        let (lv, tv) = info_nce(q2, k2, tau).split_tape();
        let (c, v) = (lc.download()[0] as f64, lv.download()[0] as f64);
        if !(c + v).is_finite() {
            return Err(RunStop::Diverged {
                step: step as u64,
                reason: format!("pre-training InfoNCE became {}", c + v),
            });
        }
        let mut grads = (lc.put_tape(tc) + lv.put_tape(tv)).backward();
        opt.step(&mut store, &mut grads)
            .map_err(|e| RunStop::Failed(format!("pre-training update: {e:?}")))?;
        ema_update(&mut target, &store, momentum);
        sum_c += c;
        sum_v += v;
        count += 1;
        if (step + 1) % every == 0 || step + 1 == steps {
            (last_c, last_v) = (sum_c / count as f64, sum_v / count as f64);
            (sum_c, sum_v, count) = (0.0, 0.0, 0);
            log(format!(
                "pre-training step {}: InfoNCE adjacent levels {last_c:.3}, two views {last_v:.3} \
                 (chance ln B = {:.3})",
                step + 1,
                (batch as f64).ln()
            ));
        }
    }
    Ok(Trained {
        named: store.named_values(),
        losses: vec![("loss_nce_cons", last_c), ("loss_nce_contrast", last_v)],
    })
}

/// The denoise arm's classifier: the same encoder trained on clean images (noise input
/// `s_min`), once per seed.
fn clean_classifier<D: Device<f32>>(
    dev: &D,
    p: &Params,
    x_train: &[f32],
    y_train: &[usize],
    seed: u64,
) -> Result<Trained, RunStop> {
    let steps = p.usize("clean_steps");
    let mut rng = StdRng::seed_from_u64(seed ^ 0xC1EA);
    let mut store = ParamStore::<f32, D>::new(dev);
    let enc = Encoder::new(&mut store, p.usize("hidden"), &mut rng);
    let mut opt = Optimizer::new(Rule::adam(), p.f64("lr"));
    let mut batches = EpochBatches::new(y_train.len(), p.usize("batch"), seed ^ 0xC1EB);
    let mut last = f64::NAN;
    for step in 0..steps {
        opt.lr = cosine_lr(p.f64("lr"), step, steps);
        let idx = batches.next_batch();
        let x = super::ssl::host_rows(x_train, &idx, PIXELS);
        let y: Vec<usize> = idx.iter().map(|&i| y_train[i]).collect();
        let s = vec![p.f64("s_min"); idx.len()];
        let xin = upload_rows::<f32, D>(dev, &inputs(&x, &s), model::INPUT);
        let loss = softmax_cross_entropy(
            enc.logits_taped(&store, xin.leaky_trace()),
            one_hot(dev, &y, CLASSES),
        );
        let (l, t) = loss.split_tape();
        last = l.download()[0] as f64;
        let mut grads = l.put_tape(t).backward();
        opt.step(&mut store, &mut grads)
            .map_err(|e| RunStop::Failed(format!("clean classifier update: {e:?}")))?;
    }
    Ok(Trained {
        named: store.named_values(),
        losses: vec![("loss_clean", last)],
    })
}

/// The denoise arm's networks on the device.
struct Denoiser<D: Device<f32>> {
    net: EpsNet,
    store: ParamStore<f32, D>,
    t_star: usize,
    /// `(sqrt(abar), sqrt(1 - abar))` at `t*`.
    mix: (f64, f64),
}

/// What the run's base classifier is.
enum Base<D: Device<f32>> {
    /// One network on noisy inputs.
    Single,
    /// Denoiser, then the clean classifier (held in the run's store).
    Denoised(Box<Denoiser<D>>),
}

fn train<D: Device<f32>>(ctx: &mut RunContext<'_>, dev: &D) -> Result<RunEnd, RunStop> {
    let p = ctx.params.clone();
    let seed = ctx.seed;
    let method = p.text("method").to_string();
    let sigma = p.f64("sigma");
    let device_name = format!("{:?}", ctx.device);
    let digits = SignedDigits::load(seed);
    let x_train = to_unit(&digits.x_train);
    let x_test = to_unit(&digits.x_test);
    let n_cert = p.usize("n_cert").min(digits.n_test());
    let hidden = p.usize("hidden");
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5EED ^ ((sigma * 1e4) as u64) << 8);
    let mut store = ParamStore::<f32, D>::new(dev);
    let enc = Encoder::new(&mut store, hidden, &mut rng);
    let mut fixed: Vec<(&'static str, f64)> = Vec::new();
    let mut base = Base::Single;
    match method.as_str() {
        "rrcm" if p.usize("pretrain_steps") > 0 => {
            let key = format!(
                "rrcm-pretrain/{seed}/{device_name}/{}/{}/{}/{}/{}/{}/{}/{}/{}/{hidden}/{}",
                p.usize("pretrain_steps"),
                p.usize("batch"),
                p.f64("pretrain_lr"),
                p.usize("levels"),
                p.f64("s_max"),
                p.f64("s_min"),
                p.f64("rho"),
                p.f64("tau"),
                p.f64("ema"),
                digits.n_train(),
            );
            let pre = memo::shared(&key, || {
                pretrain(dev, &p, &x_train, seed, &mut |l| ctx.log(l))
            })?;
            load_named(&mut store, &pre.named, &["enc", "proj"]);
            fixed.extend(pre.losses.iter().copied());
        }
        "denoise" => {
            let key = format!(
                "rrcm-denoiser/{seed}/{device_name}/{}/{}/{}",
                p.usize("denoiser_steps"),
                p.usize("batch"),
                p.f64("lr"),
            );
            let schedule = NoiseSchedule::ddpm();
            let trained = memo::shared(&key, || {
                let train = TrainConfig {
                    steps: p.usize("denoiser_steps"),
                    batch: p.usize("batch"),
                    lr: p.f64("lr"),
                    seed: seed ^ 0xDE70,
                };
                train_eps_net::<f32, D>(
                    dev,
                    &schedule,
                    EpsNetConfig::digits(),
                    train,
                    &digits.x_train,
                    &[],
                    &mut |step, loss| {
                        ctx.log(format!("denoiser step {step}: L_simple {loss:.4}"));
                        true
                    },
                )
            })?;
            let key = format!(
                "rrcm-clean/{seed}/{device_name}/{}/{}/{}/{hidden}/{}",
                p.usize("clean_steps"),
                p.usize("batch"),
                p.f64("lr"),
                p.f64("s_min"),
            );
            let clf = memo::shared(&key, || {
                clean_classifier(dev, &p, &x_train, &digits.y_train, seed)
            })?;
            load_named(&mut store, &clf.named, &["enc", "head"]);
            fixed.extend(clf.losses.iter().copied());
            fixed.push(("loss_denoiser", trained.final_loss()));
            let (dstore, net) = trained.load::<f32, D>(dev);
            let t_star = matching_timestep(&schedule, 2.0 * sigma);
            ctx.log(format!(
                "denoised smoothing: t* = {t_star} (sqrt((1 - abar)/abar) = {:.4} for 2 sigma = {})",
                {
                    let ab = schedule.abar_at(Some(t_star));
                    ((1.0 - ab) / ab).sqrt()
                },
                2.0 * sigma
            ));
            base = Base::Denoised(Box::new(Denoiser {
                net,
                store: dstore,
                t_star,
                mix: schedule.mix(t_star),
            }));
        }
        _ => {}
    }
    let n_test = digits.n_test();
    let held = (n_cert..n_test).take(HELD_OUT).collect::<Vec<_>>();
    let held_x = super::ssl::host_rows(&x_test, &held, PIXELS);
    let held_y: Vec<usize> = held.iter().map(|&i| digits.y_test[i]).collect();
    let mut hrng = StdRng::seed_from_u64(seed ^ 0x4E1D);
    let held_noisy = noisy(&held_x, sigma, &mut hrng);
    let cert_y = digits.y_test[..n_cert].to_vec();
    let chance = {
        let mut c = [0usize; CLASSES];
        for &y in &cert_y {
            c[y] += 1;
        }
        *c.iter().max().unwrap_or(&0) as f64 / n_cert.max(1) as f64
    };
    let mut run = RrcmRun {
        method,
        sigma,
        train_sigma: sigma * p.f64("train_noise"),
        lbd: p.f64("lbd"),
        eta: p.f64("eta"),
        lr: p.f64("lr"),
        train_steps: train_steps(&p),
        n0: p.usize("n0"),
        n_mc: p.usize("n_mc"),
        alpha: p.f64("alpha"),
        s_min: p.f64("s_min"),
        opt: Optimizer::new(Rule::adam(), p.f64("lr")),
        batches: EpochBatches::new(digits.n_train(), p.usize("batch"), seed ^ 0xF17E),
        x_train,
        y_train: digits.y_train.clone(),
        held_noisy,
        held_y,
        cert_x: x_test[..n_cert * PIXELS].to_vec(),
        cert_y,
        chance,
        cert_seed: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ ((sigma * 1e4) as u64),
        certs: Vec::new(),
        cert_counts: Vec::new(),
        cert_ms: Vec::new(),
        fixed,
        window: Window::default(),
        enc,
        store,
        base,
        rng,
    };
    let schedule = Schedule {
        steps: (run.train_steps + n_cert) as u64,
        log_every: p.usize("log_every").max(1) as u64,
        blowup: None,
    };
    let end = driver::drive(ctx, schedule, &mut run)?;
    // The certified-accuracy curve against the radius (`step = 100 r`).
    let mut k = 0;
    loop {
        let r = k as f64 * CURVE_STEP;
        if r > CURVE_MAX + 1e-9 {
            break;
        }
        let acc = certified_accuracy(&run.certs, &run.cert_y, r - 1e-12);
        ctx.record(
            (r * 100.0).round() as u64,
            &[("cert_curve", acc), ("chance", run.chance)],
        );
        k += 1;
    }
    ctx.log(format!(
        "largest certifiable radius with n = {}: {:.3}",
        run.n_mc,
        max_radius(run.n_mc, run.alpha, sigma)
    ));
    Ok(end)
}

/// Training values averaged since the last measurement.
#[derive(Default)]
struct Window {
    ce: f64,
    cons: f64,
    n: usize,
}

struct RrcmRun<D: Device<f32>> {
    method: String,
    sigma: f64,
    train_sigma: f64,
    lbd: f64,
    eta: f64,
    lr: f64,
    train_steps: usize,
    n0: usize,
    n_mc: usize,
    alpha: f64,
    s_min: f64,
    opt: Optimizer<f32, D>,
    batches: EpochBatches,
    x_train: Vec<f32>,
    y_train: Vec<usize>,
    held_noisy: Vec<f32>,
    held_y: Vec<usize>,
    cert_x: Vec<f32>,
    cert_y: Vec<usize>,
    chance: f64,
    cert_seed: u64,
    certs: Vec<Certificate>,
    /// Per certified image: the estimation counts of every class.
    cert_counts: Vec<Vec<usize>>,
    /// Wall milliseconds of each certificate.
    cert_ms: Vec<f64>,
    fixed: Vec<(&'static str, f64)>,
    window: Window,
    enc: Encoder,
    store: ParamStore<f32, D>,
    base: Base<D>,
    rng: StdRng,
}

impl<D: Device<f32>> RrcmRun<D> {
    fn up(&self, x: &[f32], s: f64) -> Matrix<f32, D> {
        let s = vec![s; x.len() / PIXELS];
        upload_rows::<f32, D>(self.store.device(), &inputs(x, &s), model::INPUT)
    }

    /// The base classifier's classes for noisy images (rows of 64 pixels in [0, 1] + noise).
    fn classify(&self, x: &[f32]) -> Vec<usize> {
        let logits = match &self.base {
            Base::Single => self.enc.logits(&self.store, self.up(x, self.sigma)),
            Base::Denoised(d) => {
                let dev = self.store.device();
                let n = x.len() / PIXELS;
                let (a, s) = d.mix;
                // [-1, 1] scale: 2 x - 1 + 2 sigma n; x_t* = sqrt(abar) (that).
                let xt: Vec<f32> = x
                    .iter()
                    .map(|v| (a * (2.0 * *v as f64 - 1.0)) as f32)
                    .collect();
                let xt = upload_f32::<f32, D>(dev, &xt, PIXELS);
                let eps = d.net.eps(&d.store, &xt, None, &vec![d.t_star; n]);
                let x0 = ((xt - eps * s as f32) * (1.0 / a) as f32).clamp(-1.0, 1.0);
                let c = model::c_in(self.s_min) as f32;
                let unit = (x0 + 1.0) * (0.5 * c);
                let feats: Vec<f64> = (0..n).flat_map(|_| noise_features(self.s_min)).collect();
                let f = upload_rows::<f32, D>(dev, &feats, FOURIER);
                let xin: Matrix<f32, D> = (unit, f).concat_along(Axis::<1>);
                self.enc.logits(&self.store, xin)
            }
        };
        argmax_rows(&download_f32(&logits), CLASSES)
    }

    /// Multiply-accumulates of the base classifier per noise sample, in thousands.
    fn kmacs_per_sample(&self) -> f64 {
        let mlp = |sizes: &[usize]| sizes.windows(2).map(|w| w[0] * w[1]).sum::<usize>();
        let mut macs = mlp(&self.enc.body.sizes) + mlp(&self.enc.head.sizes);
        if let Base::Denoised(d) = &self.base {
            macs += mlp(&d.net.mlp.sizes);
        }
        macs as f64 / 1e3
    }

    fn forwards_per_sample(&self) -> f64 {
        match self.base {
            Base::Single => 1.0,
            Base::Denoised(_) => 2.0,
        }
    }

    /// CERTIFY on certified image `i`: `n0` selection and `n` estimation samples (separate
    /// draws), one batch through the base classifier.
    fn certify(&mut self, i: usize) {
        let started = Instant::now();
        let mut rng = StdRng::seed_from_u64(self.cert_seed ^ (i as u64).wrapping_mul(0xA24B_AED4));
        let x = &self.cert_x[i * PIXELS..(i + 1) * PIXELS];
        let total = self.n0 + self.n_mc;
        let mut rows = Vec::with_capacity(total * PIXELS);
        for _ in 0..total {
            rows.extend(noisy(x, self.sigma, &mut rng));
        }
        let preds = self.classify(&rows);
        let mut c0 = vec![0usize; CLASSES];
        let mut c = vec![0usize; CLASSES];
        for &k in &preds[..self.n0] {
            c0[k] += 1;
        }
        for &k in &preds[self.n0..] {
            c[k] += 1;
        }
        self.certs
            .push(certify_counts(&c0, &c, self.alpha, self.sigma));
        self.cert_counts.push(c);
        self.cert_ms.push(started.elapsed().as_secs_f64() * 1e3);
    }

    fn train_step(&mut self, step: usize) -> Result<f64, RunStop> {
        self.opt.lr = cosine_lr(self.lr, step, self.train_steps);
        let idx = self.batches.next_batch();
        let x = super::ssl::host_rows(&self.x_train, &idx, PIXELS);
        let y: Vec<usize> = idx.iter().map(|&i| self.y_train[i]).collect();
        let dev = self.store.device().clone();
        let target = one_hot(&dev, &y, CLASSES);
        let two = self.method != "gauss";
        let x1 = noisy(&x, self.train_sigma, &mut self.rng);
        let l1 = self
            .enc
            .logits_taped(&self.store, self.up(&x1, self.sigma).leaky_trace());
        let (ce, cons, loss) = if two {
            let x2 = noisy(&x, self.train_sigma, &mut self.rng);
            let l2 = self
                .enc
                .logits_taped(&self.store, self.up(&x2, self.sigma).leaky_trace());
            let (a, ta) = l1.split_tape();
            let (b, tb) = l2.split_tape();
            let ce = (softmax_cross_entropy(a.retaped::<OwnedTape<f32, D>>(), target.clone())
                + softmax_cross_entropy(b.retaped::<OwnedTape<f32, D>>(), target))
                * 0.5f32;
            let cons = consistency_loss(a.put_tape(ta), b.put_tape(tb), self.lbd, self.eta);
            let (cev, tce) = ce.split_tape();
            let (cv, tc) = cons.split_tape();
            let (x, y) = (cev.download()[0] as f64, cv.download()[0] as f64);
            (x, y, cev.put_tape(tce) + cv.put_tape(tc))
        } else {
            let ce = softmax_cross_entropy(l1, target);
            let (cev, tce) = ce.split_tape();
            let x = cev.download()[0] as f64;
            (x, 0.0, cev.put_tape(tce))
        };
        if !(ce + cons).is_finite() {
            return Ok(ce + cons);
        }
        let mut grads = loss.backward();
        self.opt
            .step(&mut self.store, &mut grads)
            .map_err(|e| RunStop::Failed(format!("optimizer update: {e:?}")))?;
        self.window.ce += ce;
        self.window.cons += cons;
        self.window.n += 1;
        Ok(ce + cons)
    }

    fn picture(&self) -> Picture {
        let mut rng = StdRng::seed_from_u64(self.cert_seed ^ 0x91C7);
        let x = &self.cert_x[..PIXELS];
        let mut rows = x.to_vec();
        let copies: Vec<f32> = (0..PICTURE_COPIES)
            .flat_map(|_| noisy(x, self.sigma, &mut rng))
            .collect();
        let preds = self.classify(&copies);
        rows.extend(&copies);
        let counts = self.cert_counts.first().cloned().unwrap_or_default();
        let top: Vec<String> = {
            let mut c: Vec<(usize, usize)> = counts.iter().copied().enumerate().collect();
            c.sort_by_key(|x| std::cmp::Reverse(x.1));
            c.iter()
                .take(3)
                .filter(|(_, k)| *k > 0)
                .map(|(k, n)| format!("{k}:{n}"))
                .collect()
        };
        let mut captions = vec![format!("label {} counts {}", self.cert_y[0], top.join(" "))];
        captions.extend(preds.iter().map(|k| format!("sigma {} -> {k}", self.sigma)));
        Picture::images(8, 8, &rows, 0.0, 1.0, captions)
    }
}

impl<D: Device<f32>> Trainer for RrcmRun<D> {
    fn evaluate(&mut self, step: u64, last: bool) -> Result<Evaluation, RunStop> {
        let mut values = self.fixed.clone();
        let w = std::mem::take(&mut self.window);
        if w.n > 0 {
            values.push(("loss_ce", w.ce / w.n as f64));
            if self.method != "gauss" {
                values.push(("loss_cons", w.cons / w.n as f64));
            }
        }
        if (step as usize) <= self.train_steps {
            let preds = self.classify(&self.held_noisy);
            let hits = preds
                .iter()
                .zip(&self.held_y)
                .filter(|(a, b)| a == b)
                .count();
            values.push(("acc_noisy", hits as f64 / self.held_y.len().max(1) as f64));
        }
        if !self.certs.is_empty() {
            let labels = &self.cert_y[..self.certs.len()];
            for (r, name) in RADIUS_METRICS {
                values.push((name, certified_accuracy(&self.certs, labels, r)));
            }
            values.extend([
                ("clean_acc", certified_accuracy(&self.certs, labels, 0.0)),
                ("acr", average_certified_radius(&self.certs, labels)),
                ("abstain_rate", abstain_rate(&self.certs)),
                ("top_class_share", top_class_share(&self.certs, CLASSES)),
                ("ms_per_certificate", fastest(&self.cert_ms)),
                ("ms_median", median(&self.cert_ms)),
                ("forwards_per_sample", self.forwards_per_sample()),
                ("kmacs_per_sample", self.kmacs_per_sample()),
                ("images_certified", self.certs.len() as f64),
                ("chance", self.chance),
                ("collapse_line", COLLAPSE_ACC),
                ("balanced_share", 0.1),
            ]);
        }
        let mut e = Evaluation::new(values);
        if last {
            e.pictures.push(("noisy copies", self.picture()));
        }
        Ok(e)
    }

    fn step(&mut self, step: u64) -> Result<f64, RunStop> {
        let s = step as usize;
        if s < self.train_steps {
            self.train_step(s)
        } else {
            self.certify(s - self.train_steps);
            Ok(0.0)
        }
    }

    fn write_artifacts(&self, dir: &std::path::Path) -> std::io::Result<()> {
        let mut params = artifacts::store_tensors(&self.store);
        if let Base::Denoised(d) = &self.base {
            params.extend(artifacts::store_tensors(&d.store));
        }
        let n = self.certs.len();
        let classes: Vec<f64> = self
            .certs
            .iter()
            .map(|c| c.class.map_or(-1.0, |k| k as f64))
            .collect();
        let counts: Vec<f64> = self
            .cert_counts
            .iter()
            .flat_map(|c| c.iter().map(|&k| k as f64))
            .collect();
        let data = vec![
            NamedTensor::from_f32("cert_images", &[n, PIXELS], &self.cert_x[..n * PIXELS]),
            NamedTensor::new(
                "cert_labels",
                &[n],
                self.cert_y[..n].iter().map(|&y| y as f64).collect(),
            ),
            NamedTensor::new("cert_class", &[n], classes),
            NamedTensor::new(
                "cert_radius",
                &[n],
                self.certs.iter().map(|c| c.radius).collect(),
            ),
            NamedTensor::new(
                "cert_p_lower",
                &[n],
                self.certs.iter().map(|c| c.p_lower).collect(),
            ),
            NamedTensor::new(
                "cert_guess",
                &[n],
                self.certs.iter().map(|c| c.guess as f64).collect(),
            ),
            NamedTensor::new("cert_counts", &[n, CLASSES], counts),
        ];
        let base = match &self.base {
            Base::Single => format!(
                "f(x) = argmax head(gelu(enc([c_in(s) x, fourier(s)]))) at s = sigma = {}",
                self.sigma
            ),
            Base::Denoised(d) => format!(
                "f(x) = classifier(D(x)) with D the one-shot DDPM denoiser at t* = {} \
                 (params 'eps.*': eps_theta([x_t (64), sinusoidal emb(t) (32)]) -> 3 x 256 SiLU \
                 -> 64 on the [-1, 1] scale; x_t = sqrt(abar) (2 x - 1), x0 = clamp((x_t - \
                 sqrt(1 - abar) eps) / sqrt(abar), -1, 1)), then the clean classifier \
                 ('enc.*', 'head.*') on (x0 + 1) / 2 at s = s_min = {}",
                d.t_star, self.s_min
            ),
        };
        let text = format!(
            "randomized smoothing on 8x8 digits (pixels in [0, 1]), method {method}, sigma {sigma}\n\
             encoder 'enc.{{i}}.weight|bias' (weight in x out, y = x W + b): [c_in(s) x (64), \
             sin/cos(f ln(s) / 4), f = 1, 2, 4, 8] -> 256 -> 256 -> 128, GELU between layers and \
             on the 128-d representation; head 'head.0': 128 -> 10; c_in(s) = 1 / sqrt(s^2 + \
             0.25); 'proj.*' is the pre-training projection (unused by f)\n\
             base classifier: {base}\n\
             CERTIFY (Cohen et al. 2019): n0 = {n0} selection samples choose cert_guess; n = {n} \
             separate estimation samples give cert_counts; cert_p_lower = the alpha = {alpha} \
             quantile of Beta(count, n - count + 1) (Clopper-Pearson); cert_class = cert_guess \
             when cert_p_lower >= 1/2 else -1 (abstain); cert_radius = sigma Phi^-1(cert_p_lower)\n\
             certified accuracy at r = mean(cert_class == cert_labels and cert_radius >= r); \
             acr = mean(cert_radius where correct, else 0)\n",
            method = self.method,
            sigma = self.sigma,
            n0 = self.n0,
            n = self.n_mc,
            alpha = self.alpha,
        );
        artifacts::write_run(dir, &params, &data, &text)
    }
}

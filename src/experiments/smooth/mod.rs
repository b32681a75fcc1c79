//! "Smooth Diffusion: Crafting Smooth Latent Spaces in Diffusion Models" (Guo et al., CVPR
//! 2024): step-wise variation regularization. A DDPM noise-predicting MLP on the 8x8 digits is
//! trained from random initialization with `L_simple`, alone (`base`) or with
//! `lambda (r - m)^2`, where `r` estimates how much the one-step prediction `x0_hat` moves per
//! unit change of the noise `eps` (a finite-difference Jacobian-vector product, [`reg`]) and
//! `m` is its running mean. Claim: interpolations between DDIM-inverted latents change more
//! steadily (lower ISTD) without worse samples, and inversion reconstructs better.

pub mod bench;
pub mod reg;
mod verdict;

use dfdx::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::diffusion::net::{denoising_batch, upload_f32};
use super::diffusion::{
    ddim_invert, ddim_sample, feature_classifier, gaussian_rows, slerp, EpsNet, EpsNetConfig,
    NoiseSchedule, SignedDigits,
};
use super::driver::{self, Evaluation, Schedule, Trainer};
use super::profile::{DeviceCase, Profile};
use super::{Experiment, FinishedRun, RunContext, RunEnd, RunStop};
use crate::artifacts::{self, NamedTensor};
use crate::metrics::frechet::frechet_distance;
use crate::metrics::picture::Picture;
use crate::metrics::MetricSpec;
use crate::nn::optim::cosine_lr;
use crate::nn::store::ParamStore;
use crate::nn::transfer::Download;
use crate::nn::{Optimizer, Rule};
use crate::params::{ParamSpec, Params};
use crate::verdict::Verdict;

pub use verdict::LOSS_LEARNED;

pub struct SmoothDiffusion;

const DIM: usize = 64;
/// Pairs shown in the interpolation picture.
const PICTURE_PAIRS: usize = 4;

impl Experiment for SmoothDiffusion {
    fn kind(&self) -> &'static str {
        "smooth-diffusion"
    }

    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::float(
                "lambda_reg",
                0.0,
                0.0,
                1e4,
                "weight of the step-wise variation penalty (r - m)^2 (0: plain DDPM)",
            ),
            ParamSpec::float(
                "fd_step",
                0.01,
                1e-5,
                1.0,
                "finite-difference step h: x_t moves by h z / sqrt(64)",
            ),
            ParamSpec::float(
                "mean_decay",
                0.01,
                0.0,
                1.0,
                "decay of the running mean m of r (the paper's 0.01)",
            ),
            ParamSpec::int("steps", 3000, 1, 1_000_000_000, "training steps"),
            ParamSpec::int("batch", 128, 1, 1_000_000, "images per step"),
            ParamSpec::float(
                "lr",
                1e-3,
                1e-9,
                10.0,
                "Adam's peak learning rate (cosine decay to 0)",
            ),
            ParamSpec::int(
                "hidden",
                256,
                1,
                100_000,
                "hidden units per layer of the noise predictor",
            ),
            ParamSpec::int("depth", 3, 1, 64, "hidden layers of the noise predictor"),
            ParamSpec::int(
                "log_every",
                100,
                1,
                1_000_000_000,
                "steps between training measurements",
            ),
            ParamSpec::int(
                "eval_every",
                1000,
                1,
                1_000_000_000,
                "steps between evaluations (ISTD, FD, inversion); always at the end",
            ),
            ParamSpec::int(
                "ddim_steps",
                50,
                1,
                1000,
                "DDIM steps for inversion and generation (eta 0)",
            ),
            ParamSpec::int("pairs", 32, 1, 190, "test-image pairs interpolated"),
            ParamSpec::int(
                "ratios",
                11,
                3,
                1000,
                "slerp ratios per pair (evenly spaced in [0, 1])",
            ),
            ParamSpec::int(
                "fd_samples",
                1000,
                2,
                100_000,
                "generated samples for the Frechet distance",
            ),
        ]
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        vec![
            MetricSpec::new("istd_feat", "ISTD (classifier features)")
                .unit("std of consecutive feature distances; reference: base arm"),
            MetricSpec::new("istd_rel", "relative ISTD (std / mean of the distances)"),
            MetricSpec::new("istd_pix", "ISTD (pixel L2)"),
            MetricSpec::new("fd", "Frechet distance (classifier features)")
                .unit("reference: between two halves of the test set")
                .reference("fd_ref"),
            MetricSpec::new("fd_ref", "Frechet distance between test halves"),
            MetricSpec::new("inv_mse", "inversion reconstruction MSE").log(),
            MetricSpec::new("loss_simple", "noise-prediction loss").log(),
            MetricSpec::new("loss_reg", "regularizer (r - m)^2").log(),
            MetricSpec::new("r_mean", "tracked variation m"),
            MetricSpec::new("r_cv", "std / mean of r within the batch"),
        ]
    }

    fn table_metrics(&self) -> Vec<&'static str> {
        vec![
            "istd_feat",
            "istd_rel",
            "istd_pix",
            "fd",
            "inv_mse",
            "loss_simple",
            "r_cv",
        ]
    }

    fn memory(&self, p: &Params) -> crate::engine::memory::Estimate {
        let h = p.usize("hidden") as f64;
        let params = (96.0 * h + p.usize("depth") as f64 * h * h + 64.0 * h) * 4.0 * 4.0;
        let rows = (p.usize("batch") * 2
            + p.usize("fd_samples")
            + p.usize("pairs") * p.usize("ratios")) as f64;
        crate::engine::memory::Estimate::of(&[
            (
                params,
                format!("noise predictor with {h} hidden units (weights, Adam moments, gradients)"),
            ),
            (
                rows * h * 4.0 * 8.0,
                format!("{rows} rows through the network"),
            ),
        ])
    }

    fn builtin_presets(&self) -> &'static [(&'static str, &'static str)] {
        &[(
            "presets/smooth-diffusion.toml",
            include_str!("../../../presets/smooth-diffusion.toml"),
        )]
    }

    fn verdict_bar(&self) -> Option<(&'static str, Option<&'static str>)> {
        Some(("istd_feat", None))
    }

    fn quick_profile(&self) -> Profile {
        Profile {
            preset: "smooth-diffusion",
            arms: &["base", "smooth-fd"],
            seeds: &[0],
            overrides: &[
                ("steps", "800"),
                ("eval_every", "800"),
                ("ddim_steps", "20"),
                ("pairs", "16"),
                ("fd_samples", "300"),
            ],
        }
    }

    fn device_cases(&self) -> Vec<DeviceCase> {
        let small = Profile {
            preset: "smooth-diffusion",
            arms: &[],
            seeds: &[0],
            overrides: &[
                ("steps", "20"),
                ("eval_every", "20"),
                ("log_every", "10"),
                ("ddim_steps", "10"),
                ("pairs", "4"),
                ("fd_samples", "100"),
            ],
        };
        vec![
            DeviceCase {
                size: "preset",
                arm: "base",
                profile: small,
            },
            DeviceCase {
                size: "preset",
                arm: "smooth-fd",
                profile: small,
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

/// The evaluation set: test pairs to interpolate and the test features FD compares with.
struct EvalSet {
    /// `2 pairs` test images, pair `i` = rows `2i`, `2i + 1`.
    images: Vec<f32>,
    test_features: Vec<f64>,
    fd_ref: f64,
}

/// What one evaluation measured, with the data it came from.
#[derive(Default)]
struct Measured {
    istd_feat: f64,
    istd_rel: f64,
    istd_pix: f64,
    fd: f64,
    inv_mse: f64,
    latents: Vec<f32>,
    frames: Vec<f32>,
    samples: Vec<f32>,
}

/// Mean over pairs of the std (and std / mean) of consecutive distances along each path of
/// `ratios` rows of `width` values.
pub fn istd(rows: &[f64], width: usize, ratios: usize) -> (f64, f64) {
    let paths = rows.len() / (width * ratios);
    let (mut sd_sum, mut rel_sum) = (0.0, 0.0);
    for p in 0..paths {
        let row = |k: usize| &rows[(p * ratios + k) * width..(p * ratios + k + 1) * width];
        let d: Vec<f64> = (0..ratios - 1)
            .map(|k| {
                row(k)
                    .iter()
                    .zip(row(k + 1))
                    .map(|(a, b)| (a - b).powi(2))
                    .sum::<f64>()
                    .sqrt()
            })
            .collect();
        let n = d.len() as f64;
        let mean = d.iter().sum::<f64>() / n;
        let sd = (d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
        sd_sum += sd;
        rel_sum += if mean > 0.0 { sd / mean } else { 0.0 };
    }
    (sd_sum / paths as f64, rel_sum / paths as f64)
}

fn train<D: Device<f32>>(ctx: &mut RunContext<'_>, dev: &D) -> Result<RunEnd, RunStop> {
    let p = ctx.params.clone();
    let seed = ctx.seed;
    // The split and the feature network depend on the seed only: every arm of a seed is
    // measured on the same pairs with the same features.
    let digits = SignedDigits::load(seed);
    let device_name = format!("{:?}", ctx.device);
    let classifier = feature_classifier::<f32, D>(dev, &device_name, &digits, seed)?;
    ctx.log(format!(
        "feature classifier: test accuracy {:.3}",
        classifier.test_accuracy
    ));
    let features = classifier.load::<f32, D>(dev);
    let pairs = p.usize("pairs").min(digits.n_test() / 2);
    let images = digits.x_test[..2 * pairs * DIM].to_vec();
    let test_features = features.features(&digits.x_test);
    let half = digits.n_test() / 2;
    let fd_ref = frechet_distance(
        &test_features[..half * 64],
        &test_features[half * 64..2 * half * 64],
        64,
    );
    let config = EpsNetConfig {
        hidden: p.usize("hidden"),
        depth: p.usize("depth"),
        ..EpsNetConfig::digits()
    };
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5300);
    let mut store = ParamStore::<f32, D>::new(dev);
    let net = EpsNet::new(&mut store, "eps", config, &mut rng);
    let mut run = SmoothRun {
        schedule: NoiseSchedule::ddpm(),
        opt: Optimizer::new(Rule::adam(), p.f64("lr")),
        lambda: p.f64("lambda_reg"),
        h: p.f64("fd_step"),
        decay: p.f64("mean_decay"),
        steps: p.usize("steps"),
        batch: p.usize("batch"),
        lr: p.f64("lr"),
        eval_every: p.usize("eval_every").max(1) as u64,
        ddim_steps: p.usize("ddim_steps"),
        ratios: p.usize("ratios"),
        fd_samples: p.usize("fd_samples"),
        eval_seed: seed ^ 0xE7A1,
        set: EvalSet {
            images,
            test_features,
            fd_ref,
        },
        features,
        train_x: digits.x_train,
        running: None,
        window: Window::default(),
        measured: Measured::default(),
        net,
        store,
        rng,
    };
    driver::drive(ctx, Schedule::from_params(&p), &mut run)
}

/// Training values averaged since the last measurement.
#[derive(Default)]
struct Window {
    simple: f64,
    reg: f64,
    cv: f64,
    n: usize,
}

struct SmoothRun<D: Device<f32>> {
    schedule: NoiseSchedule,
    net: EpsNet,
    store: ParamStore<f32, D>,
    opt: Optimizer<f32, D>,
    features: super::diffusion::features::Features<f32, D>,
    lambda: f64,
    h: f64,
    decay: f64,
    steps: usize,
    batch: usize,
    lr: f64,
    eval_every: u64,
    ddim_steps: usize,
    ratios: usize,
    fd_samples: usize,
    eval_seed: u64,
    set: EvalSet,
    train_x: Vec<f32>,
    /// The running mean m of r (None before the first regularized step).
    running: Option<f64>,
    window: Window,
    measured: Measured,
    rng: StdRng,
}

impl<D: Device<f32>> SmoothRun<D> {
    fn generate(&self, top: &[f32], rng: &mut StdRng) -> Vec<f32> {
        let ts = self.schedule.respaced(self.ddim_steps);
        let x = upload_f32::<f32, D>(self.store.device(), top, DIM);
        let mut eps = |x: &Matrix<f32, D>, t: usize| {
            let n = x.shape().0;
            self.net.eps(&self.store, x, None, &vec![t; n])
        };
        ddim_sample(&self.schedule, &ts, x, 0.0, &mut eps, rng).download()
    }

    fn invert(&self, images: &[f32]) -> Vec<f32> {
        let ts = self.schedule.respaced(self.ddim_steps);
        let x = upload_f32::<f32, D>(self.store.device(), images, DIM);
        let mut eps = |x: &Matrix<f32, D>, t: usize| {
            let n = x.shape().0;
            self.net.eps(&self.store, x, None, &vec![t; n])
        };
        ddim_invert(&self.schedule, &ts, x, &mut eps).download()
    }

    fn measure(&self) -> Measured {
        let mut rng = StdRng::seed_from_u64(self.eval_seed);
        let pairs = self.set.images.len() / (2 * DIM);
        let latents = self.invert(&self.set.images);
        let k = self.ratios;
        let mut top = Vec::with_capacity(pairs * k * DIM);
        for i in 0..pairs {
            let a = &latents[2 * i * DIM..(2 * i + 1) * DIM];
            let b = &latents[(2 * i + 1) * DIM..(2 * i + 2) * DIM];
            for j in 0..k {
                top.extend(slerp(a, b, j as f64 / (k - 1) as f64));
            }
        }
        let frames = self.generate(&top, &mut rng);
        let feats = self.features.features(&frames);
        let (istd_feat, istd_rel) = istd(&feats, 64, k);
        let pix: Vec<f64> = frames.iter().map(|v| *v as f64).collect();
        let (istd_pix, _) = istd(&pix, DIM, k);
        // The path's end frames regenerate the inverted images.
        let mut err = 0.0;
        for i in 0..pairs {
            for (end, img) in [(0, 2 * i), (k - 1, 2 * i + 1)] {
                let f = &frames[(i * k + end) * DIM..(i * k + end + 1) * DIM];
                let x = &self.set.images[img * DIM..(img + 1) * DIM];
                err += f
                    .iter()
                    .zip(x)
                    .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
                    .sum::<f64>();
            }
        }
        let inv_mse = err / (2 * pairs * DIM) as f64;
        let noise = gaussian_rows(self.fd_samples, DIM, &mut rng);
        let samples = self.generate(&noise, &mut rng);
        let fd = frechet_distance(
            &self.features.features(&samples),
            &self.set.test_features,
            64,
        );
        Measured {
            istd_feat,
            istd_rel,
            istd_pix,
            fd,
            inv_mse,
            latents,
            frames,
            samples,
        }
    }

    fn picture(&self) -> Picture {
        let k = self.ratios;
        let pairs = (self.measured.frames.len() / (k * DIM)).min(PICTURE_PAIRS);
        let rows = &self.measured.frames[..pairs * k * DIM];
        let captions = (0..pairs * k)
            .map(|i| format!("pair {} a={:.2}", i / k, (i % k) as f64 / (k - 1) as f64))
            .collect();
        Picture::images(8, 8, rows, -1.0, 1.0, captions)
    }
}

impl<D: Device<f32>> Trainer for SmoothRun<D> {
    fn evaluate(&mut self, step: u64, last: bool) -> Result<Evaluation, RunStop> {
        let w = std::mem::take(&mut self.window);
        let n = w.n.max(1) as f64;
        let mut values = Vec::new();
        if w.n > 0 {
            values.push(("loss_simple", w.simple / n));
            if self.lambda > 0.0 {
                values.push(("loss_reg", w.reg / n));
                values.push(("r_mean", self.running.unwrap_or(f64::NAN)));
                values.push(("r_cv", w.cv / n));
            }
        }
        let mut pictures = Vec::new();
        if last || (step > 0 && step.is_multiple_of(self.eval_every)) {
            self.measured = self.measure();
            let m = &self.measured;
            values.extend([
                ("istd_feat", m.istd_feat),
                ("istd_rel", m.istd_rel),
                ("istd_pix", m.istd_pix),
                ("fd", m.fd),
                ("fd_ref", self.set.fd_ref),
                ("inv_mse", m.inv_mse),
            ]);
            pictures.push(("interpolation", self.picture()));
        }
        let mut e = Evaluation::new(values);
        e.pictures = pictures;
        Ok(e)
    }

    fn step(&mut self, step: u64) -> Result<f64, RunStop> {
        self.opt.lr = cosine_lr(self.lr, step as usize, self.steps);
        let b = denoising_batch(
            &self.schedule,
            &self.train_x,
            &[],
            DIM,
            0,
            self.batch,
            &mut self.rng,
        );
        let dev = self.store.device().clone();
        let xt = upload_f32::<f32, D>(&dev, &b.xt, DIM);
        let target = upload_f32::<f32, D>(&dev, &b.eps, DIM);
        let e1 = self
            .net
            .eps_taped(&self.store, xt.leaky_trace(), None, &b.t);
        let (simple_value, mut grads) = if self.lambda > 0.0 {
            let z = gaussian_rows(self.batch, DIM, &mut self.rng);
            let pr = reg::probe(&self.schedule, &b.xt, &b.t, &z, self.h, DIM);
            let xt2 = upload_f32::<f32, D>(&dev, &pr.xt_shifted, DIM);
            let e2 = self
                .net
                .eps_taped(&self.store, xt2.leaky_trace(), None, &b.t);
            let (e1, tape) = e1.split_tape();
            let simple = mse_loss(e1.clone().put_tape(tape), target);
            let r = reg::variation(e1.retaped::<OwnedTape<f32, D>>(), e2, &pr);
            let (r, rtape) = r.split_tape();
            let rv: Vec<f64> = r.download().iter().map(|v| *v as f64).collect();
            let n = rv.len() as f64;
            let mean = rv.iter().sum::<f64>() / n;
            let sd = (rv.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
            // The target m: a running mean without gradient, updated before use as in the
            // official code; it starts at the first batch's mean rather than 0 (a pull of r
            // towards 0 is a plain Jacobian penalty).
            let m = match self.running {
                None => mean,
                Some(m) => m + self.decay * (mean - m),
            };
            self.running = Some(m);
            let reg_loss = (r.put_tape(rtape) - m as f32).square().mean::<Rank0, _>();
            let (simple, stape) = simple.split_tape();
            let (regv, regtape) = reg_loss.split_tape();
            let sv = simple.download()[0] as f64;
            let rg = regv.download()[0] as f64;
            self.window.reg += rg;
            self.window.cv += if mean > 0.0 { sd / mean } else { f64::NAN };
            let loss = simple.put_tape(stape) + regv.put_tape(regtape) * self.lambda as f32;
            (sv, loss.backward())
        } else {
            let loss = mse_loss(e1, target);
            let (l, tape) = loss.split_tape();
            let sv = l.download()[0] as f64;
            (sv, l.put_tape(tape).backward())
        };
        if !simple_value.is_finite() {
            return Ok(simple_value);
        }
        self.window.simple += simple_value;
        self.window.n += 1;
        self.opt
            .step(&mut self.store, &mut grads)
            .map_err(|e| RunStop::Failed(format!("optimizer update: {e:?}")))?;
        Ok(simple_value)
    }

    fn write_artifacts(&self, dir: &std::path::Path) -> std::io::Result<()> {
        let params = artifacts::store_tensors(&self.store);
        let m = &self.measured;
        let k = self.ratios;
        let pairs = self.set.images.len() / (2 * DIM);
        let data = vec![
            NamedTensor::from_f32("test_pairs", &[2 * pairs, DIM], &self.set.images),
            NamedTensor::from_f32("latents", &[m.latents.len() / DIM, DIM], &m.latents),
            NamedTensor::from_f32("frames", &[pairs, k, DIM], &m.frames),
            NamedTensor::from_f32("samples", &[m.samples.len() / DIM, DIM], &m.samples),
        ];
        let text = format!(
            "DDPM noise predictor on 8x8 digits in [-1, 1] (T = 1000, linear betas 1e-4..0.02)\n\
             eps_hat = MLP([x_t (64), sinusoidal emb(t) (32)]) -> {depth} x {hidden} SiLU -> 64; \
             parameters 'eps.{{i}}.weight|bias' (weight in x out, y = x W + b)\n\
             training: L_simple + lambda (r - m)^2, lambda = {lambda}; r = ||x0_hat(eps + k v) - \
             x0_hat(eps)|| / k with x_t moved by h z / 8 (h = {h}), m a running mean (decay {decay})\n\
             evaluation: DDIM eta 0, {ddim} steps (timesteps evenly spaced in [0, 999]);\n\
             test_pairs: pair i = rows 2i, 2i+1; latents = DDIM inversion of test_pairs;\n\
             frames[i, j] = DDIM generation from slerp(latent 2i, latent 2i+1, j / {km1});\n\
             istd_feat = mean over pairs of the population std of the {km1} distances between \
             consecutive frames in the feature classifier's 64-d penultimate layer (istd_pix: in \
             pixels; istd_rel: std / mean);\n\
             inv_mse = mean squared error of frames[i, 0] and frames[i, {km1}] against their test \
             images; samples: DDIM generations from N(0, I) for the Frechet distance (fd) against \
             the test set's features\n",
            depth = self.net.config.depth,
            hidden = self.net.config.hidden,
            lambda = self.lambda,
            h = self.h,
            decay = self.decay,
            ddim = self.ddim_steps,
            km1 = k - 1,
        );
        artifacts::write_run(dir, &params, &data, &text)
    }
}

use crate::nn::models::Matrix;

//! "A Variational Perspective on Solving Inverse Problems with Diffusion Models" (RED-diff;
//! Mardani, Song, Kautz, Vahdat 2023): instead of guiding the reverse diffusion (DPS), fit the
//! point estimate `mu` of a variational posterior by Adam on the measurement loss plus a
//! score-matching regularizer whose gradient is `lambda (sigma_t / alpha_t)(eps_theta(x_t, t) -
//! eps)` (stop-gradient: one forward pass per iteration, no back-propagation), `t` swept once
//! from large to small. Compared with DPS and the pseudo-inverse on random and box inpainting
//! and 2x super-resolution of the digits, over a sweep of K denoiser evaluations.
//!
//! A run is one solver and one seed; its steps are the denoiser evaluations of the whole K
//! sweep (one iteration of every problem, batched, per step). The prior (the diffusion
//! harness's noise-predicting MLP) and the digits classifier are trained once per seed and
//! shared by the arms of a launch.

pub mod solve;
pub mod tasks;
mod verdict;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use dfdx::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::diffusion::features::Features;
use super::diffusion::{
    feature_classifier, to_unit, train_eps_net, EpsNetConfig, NoiseSchedule, SignedDigits,
    TrainConfig, TrainedEpsNet,
};
use super::driver::{self, Evaluation, Schedule, Trainer};
use super::profile::{DeviceCase, Profile};
use super::{memo, Experiment, FinishedRun, RunContext, RunEnd, RunStop};
use crate::artifacts::{self, NamedTensor};
use crate::metrics::picture::Picture;
use crate::metrics::MetricSpec;
use crate::params::{ParamSpec, Params};
use crate::verdict::Verdict;
use solve::{LrRule, Method, Prior, Solve};
use tasks::{Problem, PIXELS, TASKS, TASK_KEYS};

pub struct RedDiff;

/// The K sweep of the preset (denoiser evaluations per restoration).
pub const FULL_SWEEP: [usize; 6] = [10, 25, 50, 100, 250, 1000];
/// A shorter sweep for quick launches.
pub const QUICK_SWEEP: [usize; 3] = [10, 50, 250];

/// The run's method from its parameters.
pub fn method_of(p: &Params) -> Method {
    match p.text("method") {
        "dps" => Method::Dps {
            zeta: p.f64("zeta"),
        },
        "pinv" => Method::Pinv,
        _ => Method::RedDiff {
            lambda: p.f64("lambda"),
        },
    }
}

/// The budgets K a run sweeps.
pub fn sweep_of(p: &Params) -> Vec<usize> {
    if p.usize("k_only") > 0 {
        return vec![p.usize("k_only")];
    }
    match p.text("sweep") {
        "quick" => QUICK_SWEEP.to_vec(),
        _ => FULL_SWEEP.to_vec(),
    }
}

fn lr_rule(p: &Params) -> LrRule {
    LrRule {
        scale: p.f64("lr_scale"),
        min: p.f64("lr_min"),
        max: p.f64("lr_max"),
    }
}

/// Driver steps of a run: one per denoiser evaluation (one per budget for the pseudo-inverse).
fn steps_of(p: &Params) -> u64 {
    let m = method_of(p);
    sweep_of(p)
        .iter()
        .map(|&k| m.iterations(k).max(1) as u64)
        .sum()
}

impl Experiment for RedDiff {
    fn kind(&self) -> &'static str {
        "red-diff"
    }

    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::choice(
                "method",
                &["reddiff", "dps", "pinv"],
                "reddiff",
                "RED-diff (Adam on mu), DPS (guided DDPM sampling), or the pseudo-inverse A^+ y",
            ),
            ParamSpec::float(
                "lambda",
                0.25,
                0.0,
                1e3,
                "RED-diff: weight of the score term (grad_term_weight; 0: least squares, no prior)",
            ),
            ParamSpec::float(
                "lr_scale",
                125.0,
                0.0,
                1e6,
                "RED-diff: Adam step size clamp(lr_scale / K, lr_min, lr_max)",
            ),
            ParamSpec::float("lr_min", 0.1, 0.0, 10.0, "RED-diff: smallest step size"),
            ParamSpec::float("lr_max", 0.5, 0.0, 10.0, "RED-diff: largest step size"),
            ParamSpec::float(
                "sigma_x0",
                1e-4,
                0.0,
                1.0,
                "RED-diff: std of the noise added to mu before diffusing it",
            ),
            ParamSpec::float(
                "zeta",
                1.0,
                0.0,
                100.0,
                "DPS: step size of the measurement-gradient correction",
            ),
            ParamSpec::float(
                "sigma_y",
                0.05,
                0.0,
                1.0,
                "measurement noise std on the [-1, 1] pixel scale",
            ),
            ParamSpec::choice(
                "sweep",
                &["full", "quick"],
                "full",
                "budgets K: full 10, 25, 50, 100, 250, 1000; quick 10, 50, 250",
            ),
            ParamSpec::int(
                "k_only",
                0,
                0,
                1000,
                "a single budget K instead of the sweep (0: the sweep)",
            ),
            ParamSpec::int(
                "test_images",
                100,
                1,
                397,
                "held-out images restored per task",
            ),
            ParamSpec::int(
                "diversity_images",
                8,
                0,
                100,
                "images per task restored 3 more times for the diversity measurement",
            ),
            ParamSpec::int(
                "picture_k",
                25,
                1,
                1000,
                "the budget whose restorations the picture keeps",
            ),
            ParamSpec::int(
                "prior_steps",
                4000,
                1,
                10_000_000,
                "training steps of the diffusion prior",
            ),
            ParamSpec::int(
                "prior_batch",
                128,
                1,
                100_000,
                "batch of the prior's training",
            ),
            ParamSpec::float(
                "prior_lr",
                1e-3,
                1e-9,
                1.0,
                "Adam peak learning rate of the prior (cosine decay)",
            ),
            ParamSpec::int(
                "log_every",
                50,
                1,
                1_000_000_000,
                "denoiser evaluations between measurements",
            ),
        ]
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        vec![
            MetricSpec::new("psnr", "PSNR, mean of the tasks (latest finished K)")
                .unit("dB")
                .reference("psnr_pinv"),
            MetricSpec::new("psnr_inpaint_random", "PSNR, random 40% inpainting")
                .unit("dB")
                .reference("psnr_pinv_inpaint_random"),
            MetricSpec::new("psnr_inpaint_box", "PSNR, 4x4 box inpainting")
                .unit("dB")
                .reference("psnr_pinv_inpaint_box"),
            MetricSpec::new("psnr_sr2x", "PSNR, 2x super-resolution")
                .unit("dB")
                .reference("psnr_pinv_sr2x"),
            MetricSpec::new("psnr_live", "PSNR of the current iterate (K in progress)").unit("dB"),
            MetricSpec::new("psnr_pinv", "PSNR of A^+ y, mean of the tasks").unit("dB"),
            MetricSpec::new(
                "psnr_pinv_inpaint_random",
                "PSNR of A^+ y, random inpainting",
            )
            .unit("dB"),
            MetricSpec::new("psnr_pinv_inpaint_box", "PSNR of A^+ y, box inpainting").unit("dB"),
            MetricSpec::new("psnr_pinv_sr2x", "PSNR of A^+ y, 2x SR").unit("dB"),
            MetricSpec::new("nfe", "denoiser evaluations K (budget in progress)").unit("count"),
            MetricSpec::new("meas_err", "||y - A x_hat|| / sqrt(m)").reference("sigma_y"),
            MetricSpec::new("sigma_y", "measurement noise std"),
            MetricSpec::new("ms_per_image", "time per restored image").unit("ms"),
            MetricSpec::new("clf_acc", "digits classifier accuracy on the restorations")
                .unit("fraction"),
            MetricSpec::new("diversity", "pixel std over 4 restorations of one y").unit("[0, 1]"),
            MetricSpec::new("loss_eps", "prior training loss (final)").log(),
            MetricSpec::new("step_loss", "measurement term of the current iteration").log(),
        ]
    }

    fn table_metrics(&self) -> Vec<&'static str> {
        vec![
            "psnr",
            "psnr_inpaint_random",
            "psnr_inpaint_box",
            "psnr_sr2x",
            "psnr_pinv",
            "meas_err",
            "ms_per_image",
            "clf_acc",
            "diversity",
        ]
    }

    fn total_steps(&self, params: &Params) -> u64 {
        steps_of(params)
    }

    fn memory(&self, p: &Params) -> crate::engine::memory::Estimate {
        let rows = (3 * (p.usize("test_images") + 3 * p.usize("diversity_images"))) as f64;
        crate::engine::memory::Estimate::of(&[
            (
                4.0 * rows * 256.0 * 3.0 * 8.0,
                format!("{rows} problems x 3 x 256 activations (DPS tape)"),
            ),
            (
                4.0 * 8.0 * p.usize("prior_batch") as f64 * 256.0 * 3.0,
                format!("prior batch {} x 3 x 256", p.usize("prior_batch")),
            ),
            (
                4.0 * 6.0 * rows * PIXELS as f64 * 4.0,
                format!("{rows} restorations x 6 budgets"),
            ),
        ])
    }

    fn builtin_presets(&self) -> &'static [(&'static str, &'static str)] {
        &[(
            "presets/red-diff.toml",
            include_str!("../../../presets/red-diff.toml"),
        )]
    }

    fn verdict_bar(&self) -> Option<(&'static str, Option<&'static str>)> {
        Some(("psnr", None))
    }

    fn quick_profile(&self) -> Profile {
        Profile {
            preset: "red-diff",
            arms: &[],
            seeds: &[0],
            overrides: &[
                ("sweep", "quick"),
                ("prior_steps", "1500"),
                ("test_images", "40"),
                ("diversity_images", "4"),
                ("picture_k", "10"),
            ],
        }
    }

    fn device_cases(&self) -> Vec<DeviceCase> {
        let small = Profile {
            preset: "red-diff",
            arms: &[],
            seeds: &[0],
            overrides: &[
                ("k_only", "25"),
                ("prior_steps", "200"),
                ("test_images", "20"),
                ("log_every", "10"),
            ],
        };
        vec![
            DeviceCase {
                size: "preset",
                arm: "reddiff",
                profile: small,
            },
            DeviceCase {
                size: "preset",
                arm: "dps",
                profile: small,
            },
        ]
    }

    fn bench(&self, quick: bool, out: &mut String) {
        use std::fmt::Write as _;
        let n = if quick { 25 } else { 100 };
        let _ = writeln!(
            out,
            "\nred-diff: denoiser evaluations per second per arm (all 3 tasks x 100 images + \
             diversity rows per evaluation; K = {n} vs {}, seed 0, prior of 50 steps):",
            2 * n
        );
        let profile = Profile {
            preset: "red-diff",
            arms: &[],
            seeds: &[0],
            overrides: &[("prior_steps", "50")],
        };
        profile.speed_lines(("k_only", "log_every"), n, &[], |_| false, out);
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<RunEnd, RunStop> {
        crate::on_device!(ctx, |dev| train(ctx, &dev))
    }

    fn verdict(&self, claim: &str, preset_id: &str, runs: &[FinishedRun]) -> Verdict {
        verdict::compute(claim, preset_id, runs)
    }
}

/// The prior of `seed`, trained once per process, device and configuration.
fn prior<D: Device<f32>>(
    ctx: &mut RunContext<'_>,
    dev: &D,
    digits: &SignedDigits,
) -> Result<Arc<TrainedEpsNet>, RunStop> {
    let p = ctx.params.clone();
    let train = TrainConfig {
        steps: p.usize("prior_steps"),
        batch: p.usize("prior_batch"),
        lr: p.f64("prior_lr"),
        seed: ctx.seed,
    };
    let key = format!(
        "red-diff-prior/{:?}/{}/{}/{}/{}",
        ctx.device, ctx.seed, train.steps, train.batch, train.lr
    );
    memo::shared(&key, || {
        let t = Instant::now();
        let net = train_eps_net::<f32, D>(
            dev,
            &NoiseSchedule::ddpm(),
            EpsNetConfig::digits(),
            train,
            &digits.x_train,
            &[],
            &mut |step, loss| {
                if step % (train.steps / 4).max(1) == 0 {
                    ctx.log(format!(
                        "prior: step {step}/{}, L_simple {loss:.4}",
                        train.steps
                    ));
                }
                !ctx.stop_requested()
            },
        )?;
        ctx.log(format!(
            "prior trained in {:.1} s (final L_simple {:.4})",
            t.elapsed().as_secs_f64(),
            net.final_loss()
        ));
        Ok(net)
    })
}

fn train<D: Device<f32>>(ctx: &mut RunContext<'_>, dev: &D) -> Result<RunEnd, RunStop> {
    let p = ctx.params.clone();
    let seed = ctx.seed;
    let method = method_of(&p);
    let digits = SignedDigits::load(seed);
    let n = p.usize("test_images").min(digits.n_test());
    let mut rng = StdRng::seed_from_u64(seed ^ 0x12ED_D1FF);
    let mut problems = tasks::problems(&digits.x_test, n, p.f64("sigma_y"), &mut rng);
    // Diversity: the first images of each task restored 3 more times (same y, fresh noise).
    let n_div = p.usize("diversity_images").min(n);
    let main = problems.len();
    for _ in 0..3 {
        for task in 0..TASKS.len() {
            for i in 0..n_div {
                problems.push(problems[task * n + i].clone());
            }
        }
    }
    let (prior, loss_eps) = if method.uses_prior() {
        let trained = prior(ctx, dev, &digits)?;
        let (store, net) = trained.load::<f32, D>(dev);
        (Some(Prior { store, net }), trained.final_loss())
    } else {
        (None, f64::NAN)
    };
    let classifier =
        feature_classifier::<f32, D>(dev, &format!("{:?}", ctx.device), &digits, seed)?;
    let features = classifier.load::<f32, D>(dev);
    let schedule = NoiseSchedule::ddpm();
    let pinv: Vec<f32> = problems[..main]
        .iter()
        .flat_map(|q| q.op.pinv(&q.y))
        .collect();
    let pinv_psnr = task_psnr(&problems[..main], &pinv);
    ctx.log(format!(
        "{} problems ({} test images x {} tasks, + {} diversity rows); A^+ y PSNR {:.2} / {:.2} / {:.2} dB",
        problems.len(),
        n,
        TASKS.len(),
        problems.len() - main,
        pinv_psnr[0],
        pinv_psnr[1],
        pinv_psnr[2]
    ));
    let sweep = sweep_of(&p);
    let mut run = SolveRun {
        method,
        lambda_sigma_x0: p.f64("sigma_x0"),
        lr: lr_rule(&p),
        sweep,
        kidx: 0,
        solve: None,
        results: Vec::new(),
        problems,
        main,
        n,
        n_div,
        labels: digits.y_test[..n].to_vec(),
        prior,
        features,
        schedule,
        rng,
        pinv_psnr,
        loss_eps,
        sigma_y: p.f64("sigma_y"),
        picture_k: p.usize("picture_k"),
        last_loss: f64::NAN,
    };
    let schedule = Schedule {
        steps: steps_of(&p),
        log_every: p.usize("log_every").max(1) as u64,
        blowup: None,
    };
    driver::drive(ctx, schedule, &mut run)
}

/// Mean PSNR (on the [0, 1] scale, images clipped to it) of each task's rows.
fn task_psnr(problems: &[Problem], x_hat: &[f32]) -> [f64; 3] {
    let mut sum = [0.0; 3];
    let mut count = [0usize; 3];
    for (i, q) in problems.iter().enumerate() {
        let a = to_unit(&x_hat[i * PIXELS..(i + 1) * PIXELS]);
        let b = to_unit(&q.x);
        sum[q.task] += crate::metrics::psnr::psnr(&a, &b, 1.0).min(100.0);
        count[q.task] += 1;
    }
    [0, 1, 2].map(|t| sum[t] / count[t].max(1) as f64)
}

/// What one budget K gave.
#[derive(Clone, Debug)]
struct KResult {
    k: usize,
    psnr: [f64; 3],
    meas_err: f64,
    ms_per_image: f64,
    clf_acc: f64,
    diversity: f64,
    lr: f64,
    diverged: bool,
    /// The restorations of the main rows (task-major).
    x_hat: Vec<f32>,
}

struct SolveRun<D: Device<f32>> {
    method: Method,
    lambda_sigma_x0: f64,
    lr: LrRule,
    sweep: Vec<usize>,
    kidx: usize,
    solve: Option<Solve>,
    results: Vec<KResult>,
    /// The main rows (`main`: task-major, `n` per task), then the diversity copies.
    problems: Vec<Problem>,
    main: usize,
    n: usize,
    n_div: usize,
    labels: Vec<usize>,
    prior: Option<Prior<D>>,
    features: Features<f32, D>,
    schedule: NoiseSchedule,
    rng: StdRng,
    pinv_psnr: [f64; 3],
    loss_eps: f64,
    sigma_y: f64,
    picture_k: usize,
    last_loss: f64,
}

impl<D: Device<f32>> SolveRun<D> {
    fn finish_k(&mut self, s: Solve) {
        let rows = self.problems.len();
        let main = &self.problems[..self.main];
        let x_hat = s.x0[..self.main * PIXELS].to_vec();
        let (psnr, meas_err, clf_acc, diversity) = if s.diverged {
            ([f64::NAN; 3], f64::NAN, f64::NAN, f64::NAN)
        } else {
            let meas = main
                .iter()
                .enumerate()
                .map(|(i, q)| q.meas_err(&x_hat[i * PIXELS..(i + 1) * PIXELS]))
                .sum::<f64>()
                / self.main as f64;
            let labels: Vec<usize> = main.iter().map(|q| self.labels[q.image]).collect();
            let acc = self.features.accuracy(&x_hat, &labels);
            (task_psnr(main, &x_hat), meas, acc, self.diversity(&s.x0))
        };
        self.results.push(KResult {
            k: s.k,
            psnr,
            meas_err,
            ms_per_image: s.seconds * 1e3 / rows as f64,
            clf_acc,
            diversity,
            lr: s.lr,
            diverged: s.diverged,
            x_hat,
        });
    }

    /// Mean over the diversity images and pixels of the std (on [0, 1]) of 4 restorations.
    fn diversity(&self, x0: &[f32]) -> f64 {
        if self.n_div == 0 {
            return f64::NAN;
        }
        let per_copy = TASKS.len() * self.n_div;
        let (mut sum, mut count) = (0.0, 0usize);
        for task in 0..TASKS.len() {
            for i in 0..self.n_div {
                let mut rows = vec![task * self.n + i];
                for c in 0..3 {
                    rows.push(self.main + c * per_copy + task * self.n_div + i);
                }
                for px in 0..PIXELS {
                    let v: Vec<f64> = rows
                        .iter()
                        .map(|r| ((x0[r * PIXELS + px] as f64 + 1.0) / 2.0).clamp(0.0, 1.0))
                        .collect();
                    let m = v.iter().sum::<f64>() / 4.0;
                    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / 3.0;
                    sum += var.sqrt();
                    count += 1;
                }
            }
        }
        sum / count as f64
    }

    /// The picture: truth, observation, the current estimate, the restorations at `picture_k`.
    fn picture(&self) -> Picture {
        let rows: Vec<usize> = [
            (0, 0),
            (0, 1),
            (0, 2),
            (1, 0),
            (1, 1),
            (1, 2),
            (2, 0),
            (2, 1),
        ]
        .iter()
        .map(|(t, i)| t * self.n + i.min(&(self.n - 1)))
        .collect();
        let mut px = Vec::new();
        let mut captions = Vec::new();
        let at = |v: &[f32], r: usize| v[r * PIXELS..(r + 1) * PIXELS].to_vec();
        for &r in &rows {
            px.extend(self.problems[r].x.clone());
            captions.push("truth".to_string());
        }
        for &r in &rows {
            let q = &self.problems[r];
            px.extend(q.op.show(&q.y));
            captions.push(format!("y {}", TASKS[q.task]));
        }
        let live = self.solve.as_ref().map(|s| (s.k, s.x0.clone()));
        let live = live.or_else(|| self.results.last().map(|r| (r.k, r.x_hat.clone())));
        for &r in &rows {
            match &live {
                Some((k, x)) => {
                    px.extend(at(x, r));
                    captions.push(format!("K {k}"));
                }
                None => {
                    px.extend(vec![-1.0; PIXELS]);
                    captions.push(String::new());
                }
            }
        }
        let fixed = self.results.iter().find(|r| r.k == self.picture_k);
        for &r in &rows {
            match fixed {
                Some(res) => {
                    px.extend(at(&res.x_hat, r));
                    captions.push(format!("K {}", res.k));
                }
                None => {
                    px.extend(vec![-1.0; PIXELS]);
                    captions.push(format!("K {} (pending)", self.picture_k));
                }
            }
        }
        Picture::images(8, 8, &px, -1.0, 1.0, captions)
    }
}

impl<D: Device<f32>> Trainer for SolveRun<D> {
    fn evaluate(&mut self, _step: u64, _last: bool) -> Result<Evaluation, RunStop> {
        let mean3 = |a: [f64; 3]| a.iter().sum::<f64>() / 3.0;
        let mut values = vec![
            ("psnr_pinv", mean3(self.pinv_psnr)),
            ("psnr_pinv_inpaint_random", self.pinv_psnr[0]),
            ("psnr_pinv_inpaint_box", self.pinv_psnr[1]),
            ("psnr_pinv_sr2x", self.pinv_psnr[2]),
            ("sigma_y", self.sigma_y),
        ];
        if self.loss_eps.is_finite() {
            values.push(("loss_eps", self.loss_eps));
        }
        if self.last_loss.is_finite() {
            values.push(("step_loss", self.last_loss));
        }
        if let Some(s) = &self.solve {
            values.push(("nfe", s.k as f64));
            if !s.diverged {
                values.push((
                    "psnr_live",
                    mean3(task_psnr(
                        &self.problems[..self.main],
                        &s.x0[..self.main * PIXELS],
                    )),
                ));
            }
        }
        if let Some(r) = self.results.last().filter(|r| !r.diverged) {
            if self.solve.is_none() {
                values.push(("nfe", r.k as f64));
            }
            values.push(("psnr", mean3(r.psnr)));
            for (t, key) in ["psnr_inpaint_random", "psnr_inpaint_box", "psnr_sr2x"]
                .into_iter()
                .enumerate()
            {
                values.push((key, r.psnr[t]));
            }
            values.push(("meas_err", r.meas_err));
            values.push(("ms_per_image", r.ms_per_image));
            values.push(("clf_acc", r.clf_acc));
            if r.diversity.is_finite() {
                values.push(("diversity", r.diversity));
            }
        }
        let mut e = Evaluation::new(values);
        e.pictures.push(("restorations", self.picture()));
        Ok(e)
    }

    fn step(&mut self, _step: u64) -> Result<f64, RunStop> {
        if self.kidx >= self.sweep.len() {
            return Ok(0.0);
        }
        if self.solve.is_none() {
            let k = self.sweep[self.kidx];
            self.solve = Some(Solve::start(
                self.method,
                &self.schedule,
                k,
                self.lr.lr(k),
                &self.problems,
                &mut self.rng,
            ));
        }
        let mut s = self.solve.take().expect("a solve in progress");
        let t = Instant::now();
        if !s.finished(self.method) {
            let loss = match (self.method, &self.prior) {
                (Method::RedDiff { lambda }, prior) => s.reddiff_step(
                    lambda,
                    self.lambda_sigma_x0,
                    &self.schedule,
                    prior.as_ref(),
                    &self.problems,
                    &mut self.rng,
                ),
                (Method::Dps { zeta }, Some(prior)) => {
                    s.dps_step(zeta, &self.schedule, prior, &self.problems, &mut self.rng)
                }
                _ => 0.0,
            };
            self.last_loss = loss;
        }
        s.seconds += t.elapsed().as_secs_f64();
        if s.finished(self.method) {
            self.finish_k(s);
            self.kidx += 1;
        } else {
            self.solve = Some(s);
        }
        Ok(if self.last_loss.is_finite() {
            self.last_loss
        } else {
            0.0
        })
    }

    fn finish(&mut self, f: &mut BTreeMap<String, f64>, _steps: u64) {
        f.remove("psnr_live");
        f.remove("step_loss");
        for (t, key) in TASK_KEYS.iter().enumerate() {
            f.insert(format!("psnr_pinv.{key}"), self.pinv_psnr[t]);
        }
        for r in &self.results {
            let k = r.k;
            f.insert(format!("diverged.k{k}"), f64::from(u8::from(r.diverged)));
            f.insert(format!("lr.k{k}"), r.lr);
            f.insert(format!("ms_per_image.k{k}"), r.ms_per_image);
            if r.diverged {
                continue;
            }
            for (t, key) in TASK_KEYS.iter().enumerate() {
                f.insert(format!("psnr.{key}.k{k}"), r.psnr[t]);
            }
            f.insert(format!("meas_err.k{k}"), r.meas_err);
            f.insert(format!("clf_acc.k{k}"), r.clf_acc);
            if r.diversity.is_finite() {
                f.insert(format!("diversity.k{k}"), r.diversity);
            }
        }
    }

    fn write_artifacts(&self, dir: &std::path::Path) -> std::io::Result<()> {
        let params = match &self.prior {
            Some(p) => artifacts::store_tensors(&p.store),
            None => Vec::new(),
        };
        let n = self.n;
        let main = &self.problems[..self.main];
        let mut data = vec![NamedTensor::from_f32(
            "x_test",
            &[n, PIXELS],
            &main[..n]
                .iter()
                .flat_map(|q| q.x.clone())
                .collect::<Vec<_>>(),
        )];
        for (t, key) in TASK_KEYS.iter().enumerate() {
            let rows = &main[t * n..(t + 1) * n];
            let m = rows[0].y.len();
            let y: Vec<f32> = rows.iter().flat_map(|q| q.y.clone()).collect();
            data.push(NamedTensor::from_f32(&format!("y_{key}"), &[n, m], &y));
            if let tasks::Operator::Mask(_) = rows[0].op {
                let idx: Vec<f32> = rows
                    .iter()
                    .flat_map(|q| match &q.op {
                        tasks::Operator::Mask(k) => k.iter().map(|&i| i as f32).collect(),
                        tasks::Operator::Pool2 => Vec::new(),
                    })
                    .collect();
                data.push(NamedTensor::from_f32(&format!("kept_{key}"), &[n, m], &idx));
            }
            for r in &self.results {
                data.push(NamedTensor::from_f32(
                    &format!("xhat_{key}_k{}", r.k),
                    &[n, PIXELS],
                    &r.x_hat[t * n * PIXELS..(t + 1) * n * PIXELS],
                ));
            }
        }
        let text = format!(
            "inverse problems on the 8x8 digits (pixels in [-1, 1]), method {:?}\n\
             y_<task> = A x_test + sigma_y v (sigma_y {}); inpaint_random and inpaint_box keep \
             the pixels kept_<task> (row-major indices), sr2x is 2x2 average pooling (16 values, \
             block-row-major)\n\
             xhat_<task>_k<K>: the restoration with K denoiser evaluations\n\
             psnr.<task>.k<K> in summary.json = mean over images of 10 log10(1 / mse) between \
             clip((xhat + 1) / 2, 0, 1) and (x_test + 1) / 2\n\
             params.safetensors: the diffusion prior eps_theta([x_t, emb(t)]) (MLP 96 -> 3 x 256 \
             SiLU -> 64; emb(t) = [sin(t w_k), cos(t w_k)], w_k = 10000^(-k/16), k < 16; \
             eps.<i>.weight is in x out); empty for runs that use no prior\n\
             schedule: DDPM linear beta 1e-4..0.02, T = 1000\n",
            self.method, self.sigma_y
        );
        artifacts::write_run(dir, &params, &data, &text)
    }
}

//! Albergo, Boffi, Vanden-Eijnden, "Stochastic Interpolants: A Unifying Framework for Flows and
//! Diffusions" (2023). One-sided linear interpolant `x_t = (1 - t) z + t x1` from N(0, I) to a
//! 2-D target; the velocity `b` and the denoiser `eta = E[z | x_t]` (score `s = -eta / (1 - t)`)
//! are exact (ring of Gaussians, with an injected rotational velocity error `delta (-x2, x1)`)
//! or learned by regression. Samples come from the probability-flow ODE (Heun) and from the SDE
//! `dX = [b + eps s] dt + sqrt(2 eps) dW` (Euler-Maruyama to t = 0.99, then a Tweedie jump) over
//! a sweep of `eps`. Claim: both reach the target; the SDE is more robust to velocity errors.

pub mod bench;
mod verdict;

use dfdx::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::diffusion::plane::{self, Mixture, PlaneNet, P2};
use super::driver::{self, Evaluation, Schedule, Trainer};
use super::profile::{DeviceCase, Profile};
use super::{Experiment, FinishedRun, RunContext, RunEnd, RunStop};
use crate::artifacts::{self, NamedTensor};
use crate::metrics::MetricSpec;
use crate::nn::optim::cosine_lr;
use crate::nn::store::ParamStore;
use crate::nn::{Optimizer, Rule};
use crate::params::{ParamSpec, Params};
use crate::verdict::Verdict;

pub struct StochasticInterpolants;

/// The SDE stops here (the score `-eta / (1 - t)` is singular at 1), then jumps by Tweedie.
pub const T_END: f64 = 0.99;
/// Directions of the sliced Wasserstein distance.
pub const SW_DIRECTIONS: usize = 128;
/// RBF bandwidths of the MMD^2 (summed).
pub const MMD_BANDWIDTHS: [f64; 3] = [0.5, 1.0, 2.0];
/// Points per sample in the MMD^2 (the first of the samples and of the held-out target).
pub const MMD_POINTS: usize = 1000;

/// One sampler setting: `eps == 0` is the ODE by Heun, otherwise the SDE by Euler-Maruyama.
#[derive(Clone, Copy, Debug)]
pub struct Setting {
    pub key: &'static str,
    pub sw: &'static str,
    pub mmd: &'static str,
    pub off: &'static str,
    pub nfe: &'static str,
    pub steps: usize,
    pub eps: f64,
}

macro_rules! setting {
    ($k:literal, $steps:expr, $eps:expr) => {
        Setting {
            key: $k,
            sw: concat!("sw_", $k),
            mmd: concat!("mmd_", $k),
            off: concat!("off_", $k),
            nfe: concat!("nfe_", $k),
            steps: $steps,
            eps: $eps,
        }
    };
}

/// The exact-field arms' samplers (the ODE first, then the SDE's eps sweep).
pub const EXACT: [Setting; 5] = [
    setting!("ode_h100", 100, 0.0),
    setting!("sde200_e0.25", 200, 0.25),
    setting!("sde200_e0.5", 200, 0.5),
    setting!("sde200_e1", 200, 1.0),
    setting!("sde200_e2", 200, 2.0),
];

/// The learned arms' samplers.
pub const LEARNED: [Setting; 7] = [
    setting!("ode_h10", 10, 0.0),
    setting!("ode_h50", 50, 0.0),
    setting!("sde100_e0.25", 100, 0.25),
    setting!("sde100_e0.5", 100, 0.5),
    setting!("sde100_e1", 100, 1.0),
    setting!("sde100_e2", 100, 2.0),
    setting!("sde400_e0.5", 400, 0.5),
];

/// The settings of a run, and the indices of its headline ODE and SDE.
pub fn settings(learned: bool) -> (&'static [Setting], usize, usize) {
    if learned {
        (&LEARNED, 1, 3)
    } else {
        (&EXACT, 0, 2)
    }
}

fn learned(p: &Params) -> bool {
    p.text("field") == "learned"
}

impl Experiment for StochasticInterpolants {
    fn kind(&self) -> &'static str {
        "stochastic-interpolants"
    }

    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::choice("target", &["ring", "checker"], "ring", "target density: 8 Gaussians on a circle of radius 3 (std 0.25), or the 8-cell checkerboard on [-4, 4]^2"),
            ParamSpec::choice("field", &["exact", "learned"], "exact", "exact Gaussian-mixture fields (ring only), or an MLP for b and one for eta"),
            ParamSpec::float("delta", 0.0, -10.0, 10.0, "exact fields: rotational velocity error b_hat = b + delta (-x2, x1)"),
            ParamSpec::float("eps_scale", 1.0, 0.0, 100.0, "multiplies every SDE eps (0: the SDE's diffusion switched off, a control)"),
            ParamSpec::int("steps", 2000, 0, 1_000_000, "training steps of eta (and of b unless b_steps is smaller); 0 for exact fields"),
            ParamSpec::int("b_steps", 2000, 0, 1_000_000, "training steps of the velocity b (200: the under-trained arm)"),
            ParamSpec::int("batch", 256, 1, 1_000_000, "(t, x0, x1) triples per step"),
            ParamSpec::float("lr", 2e-3, 1e-9, 10.0, "Adam learning rate, cosine decay to 5%"),
            ParamSpec::int("hidden", 64, 1, 4096, "hidden units of each MLP"),
            ParamSpec::int("depth", 3, 1, 16, "hidden layers of each MLP"),
            ParamSpec::int("particles", 2000, 10, 1_000_000, "particles of the final sampling (fixed base draws)"),
            ParamSpec::int("live_particles", 500, 10, 1_000_000, "particles of the live sampling during training"),
            ParamSpec::int("target_n", 4000, 10, 1_000_000, "held-out target samples (and as many again for the SW floor)"),
            ParamSpec::int("sample_every", 500, 1, 1_000_000, "training steps between live samplings"),
            ParamSpec::int("log_every", 100, 1, 1_000_000, "training steps between loss measurements"),
        ]
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        vec![
            MetricSpec::new("offsupport_sde", "off-support fraction, SDE (eps 0.5)")
                .unit("fraction")
                .reference("offsupport_ref"),
            MetricSpec::new("offsupport_ode", "off-support fraction, ODE (Heun)")
                .unit("fraction")
                .reference("offsupport_ref"),
            MetricSpec::new("sw_sde", "sliced W1 to target, SDE (eps 0.5)").reference("sw_floor"),
            MetricSpec::new("sw_ode", "sliced W1 to target, ODE (Heun)").reference("sw_floor"),
            MetricSpec::new("mmd_sde", "MMD^2 to target, SDE (eps 0.5)"),
            MetricSpec::new("mmd_ode", "MMD^2 to target, ODE (Heun)"),
            MetricSpec::new("b_l2_err", "velocity error E|b_hat - b|^2 (ring)").log(),
            MetricSpec::new("loss_b", "training loss of b (MSE per coordinate)").log(),
            MetricSpec::new("loss_eta", "training loss of eta (MSE per coordinate)").log(),
            MetricSpec::new(
                "offsupport_ref",
                "target's own off-support probability (exact)",
            )
            .unit("fraction"),
            MetricSpec::new(
                "offsupport_heldout",
                "held-out target's off-support fraction",
            )
            .unit("fraction"),
            MetricSpec::new("sw_floor", "SW1 between two target samples"),
            MetricSpec::new("nfe_ode", "NFE per sample, ODE").unit("count"),
            MetricSpec::new("nfe_sde", "NFE per sample, SDE").unit("count"),
        ]
    }

    fn table_metrics(&self) -> Vec<&'static str> {
        vec![
            "offsupport_ode",
            "offsupport_sde",
            "sw_ode",
            "sw_sde",
            "mmd_ode",
            "mmd_sde",
            "b_l2_err",
            "sw_floor",
        ]
    }

    fn total_steps(&self, p: &Params) -> u64 {
        if learned(p) {
            p.usize("steps") as u64
        } else {
            0
        }
    }

    fn memory(&self, p: &Params) -> crate::engine::memory::Estimate {
        let n = (p.usize("particles") + 2 * p.usize("target_n")) as f64;
        let h = p.usize("hidden") as f64;
        let b = p.usize("batch").max(p.usize("particles")) as f64;
        crate::engine::memory::Estimate::of(&[
            (8.0 * 2.0 * n * 4.0, format!("{n} points x 2 (copies)")),
            (4.0 * b * h * 8.0, format!("batch {b} x hidden {h}")),
        ])
    }

    fn builtin_presets(&self) -> &'static [(&'static str, &'static str)] {
        &[(
            "presets/stochastic-interpolants.toml",
            include_str!("../../../presets/stochastic-interpolants.toml"),
        )]
    }

    fn verdict_bar(&self) -> Option<(&'static str, Option<&'static str>)> {
        Some(("offsupport_sde", Some("offsupport_ref")))
    }

    fn quick_profile(&self) -> Profile {
        Profile {
            preset: "stochastic-interpolants",
            arms: &[
                "exact-d0",
                "exact-d0.5",
                "exact-d1",
                "undertrained-ring",
                "undertrained-checker",
            ],
            seeds: &[0],
            overrides: &[
                ("steps", "800"),
                ("particles", "1000"),
                ("target_n", "2000"),
                ("sample_every", "400"),
            ],
        }
    }

    fn device_cases(&self) -> Vec<DeviceCase> {
        let preset_size = Profile {
            preset: "stochastic-interpolants",
            arms: &[],
            seeds: &[0],
            overrides: &[
                ("steps", "100"),
                ("particles", "200"),
                ("target_n", "400"),
                ("sample_every", "50"),
            ],
        };
        vec![
            DeviceCase {
                size: "preset",
                arm: "learned-ring",
                profile: preset_size,
            },
            DeviceCase {
                size: "preset",
                arm: "undertrained-checker",
                profile: preset_size,
            },
        ]
    }

    fn bench(&self, quick: bool, out: &mut String) {
        bench::report(quick, out)
    }

    fn validate(&self, p: &Params) -> Result<(), String> {
        if !learned(p) && p.text("target") != "ring" {
            return Err("exact fields exist for the ring (a Gaussian mixture) only".into());
        }
        Ok(())
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<RunEnd, RunStop> {
        crate::on_device!(ctx, |dev| train(ctx, &dev))
    }

    fn verdict(&self, claim: &str, preset_id: &str, runs: &[FinishedRun]) -> Verdict {
        verdict::compute(claim, preset_id, runs)
    }
}

/// The target of a run.
#[derive(Clone, Debug)]
pub enum Target {
    Ring(Mixture),
    Checker,
}

impl Target {
    pub fn of(p: &Params) -> Target {
        match p.text("target") {
            "checker" => Target::Checker,
            _ => Target::Ring(Mixture::ring(8, 3.0, 0.25)),
        }
    }

    pub fn sample(&self, n: usize, rng: &mut impl Rng) -> Vec<P2> {
        match self {
            Target::Ring(m) => m.sample(n, rng),
            Target::Checker => plane::checker(n, rng),
        }
    }

    /// Ring: farther than 3 sigma from every mode; checker: an empty cell or outside.
    pub fn off(&self, x: P2) -> bool {
        if !(x[0].is_finite() && x[1].is_finite()) {
            return true;
        }
        match self {
            Target::Ring(m) => m.off_support(x, 3.0),
            Target::Checker => plane::checker_off(x),
        }
    }

    /// The target's own off-support probability: a ring mode's mass beyond 3 std,
    /// `exp(-9 / 2)` (the other modes are 9 std away: their overlap is below 1e-15), and 0 for
    /// the checkerboard.
    pub fn exact_off_fraction(&self) -> f64 {
        match self {
            Target::Ring(_) => (-4.5f64).exp(),
            Target::Checker => 0.0,
        }
    }

    pub fn off_fraction(&self, x: &[P2]) -> f64 {
        x.iter().filter(|p| self.off(**p)).count() as f64 / x.len().max(1) as f64
    }
}

/// The two learned networks in their stores.
struct Nets<D: Device<f32>> {
    b: PlaneNet,
    b_store: ParamStore<f32, D>,
    b_opt: Optimizer<f32, D>,
    eta: PlaneNet,
    eta_store: ParamStore<f32, D>,
    eta_opt: Optimizer<f32, D>,
}

/// One run's state.
struct SiRun<D: Device<f32>> {
    p: Params,
    seed: u64,
    target: Target,
    delta: f64,
    eps_scale: f64,
    nets: Option<Nets<D>>,
    rng: StdRng,
    /// Fixed base draws (the first `live_particles` are the live ones).
    base: Vec<P2>,
    held_out: Vec<P2>,
    sw_floor: f64,
    own_off: f64,
    held_out_off: f64,
    /// Fixed (t, x_t) draws for the velocity error (ring).
    probe: Vec<(f64, P2)>,
    loss_sum: (f64, f64, usize),
    final_samples: Vec<(&'static str, Vec<P2>)>,
}

fn train<D: Device<f32>>(ctx: &mut RunContext<'_>, dev: &D) -> Result<RunEnd, RunStop> {
    let p = ctx.params.clone();
    let seed = ctx.seed;
    let target = Target::of(&p);
    let mut rng = StdRng::seed_from_u64(seed ^ 0x51_1E7);
    let n = p.usize("target_n");
    let held_out = target.sample(n, &mut rng);
    let other = target.sample(n, &mut rng);
    let sw_floor = plane::sliced_w1(&held_out, &other, SW_DIRECTIONS);
    let held_out_off = target.off_fraction(&held_out);
    let own_off = target.exact_off_fraction();
    let base = plane::normals(
        p.usize("particles").max(p.usize("live_particles")),
        &mut rng,
    );
    let probe = (0..2000)
        .map(|_| {
            let t: f64 = rng.gen();
            let x1 = target.sample(1, &mut rng)[0];
            let z = plane::normal(&mut rng);
            (
                t,
                [(1.0 - t) * z[0] + t * x1[0], (1.0 - t) * z[1] + t * x1[1]],
            )
        })
        .collect();
    let nets = learned(&p).then(|| {
        let mut init = StdRng::seed_from_u64(seed ^ 0x0E7A);
        let (h, d) = (p.usize("hidden"), p.usize("depth"));
        let mut b_store = ParamStore::new(dev);
        let b = PlaneNet::new(&mut b_store, "b", h, d, &mut init);
        let mut eta_store = ParamStore::new(dev);
        let eta = PlaneNet::new(&mut eta_store, "eta", h, d, &mut init);
        Nets {
            b,
            b_store,
            b_opt: Optimizer::new(Rule::adam(), p.f64("lr")),
            eta,
            eta_store,
            eta_opt: Optimizer::new(Rule::adam(), p.f64("lr")),
        }
    });
    ctx.log(format!(
        "target {}: SW floor {sw_floor:.4}, off-support fraction exact {own_off:.4}, held-out \
         {held_out_off:.4}",
        p.text("target")
    ));
    let mut run = SiRun {
        delta: p.f64("delta"),
        eps_scale: p.f64("eps_scale"),
        seed,
        target,
        nets,
        rng: StdRng::seed_from_u64(seed ^ 0x7EA1),
        base,
        held_out,
        sw_floor,
        own_off,
        held_out_off,
        probe,
        loss_sum: (0.0, 0.0, 0),
        final_samples: Vec::new(),
        p: p.clone(),
    };
    let schedule = Schedule {
        // The exact fields need no training: one measurement at step 0.
        steps: StochasticInterpolants.total_steps(&p),
        log_every: p.usize("log_every") as u64,
        blowup: None,
    };
    driver::drive(ctx, schedule, &mut run)
}

/// The learning rate at step `i` of `n`: cosine from `lr` to 5% of it.
fn lr_at(lr: f64, i: usize, n: usize) -> f64 {
    0.05 * lr + cosine_lr(0.95 * lr, i, n)
}

impl<D: Device<f32>> SiRun<D> {
    /// The velocity used for sampling at `t` on a batch.
    fn velocity(&self, t: f64, x: &[P2]) -> Vec<P2> {
        match (&self.nets, &self.target) {
            (Some(n), _) => n.b.predict_at(&n.b_store, t, x),
            (None, Target::Ring(m)) => x
                .iter()
                .map(|p| {
                    let b = m.fields(t, *p).0;
                    [b[0] - self.delta * p[1], b[1] + self.delta * p[0]]
                })
                .collect(),
            (None, Target::Checker) => unreachable!("validated: exact fields need the ring"),
        }
    }

    /// The score at `t < 1` on a batch.
    fn score(&self, t: f64, x: &[P2]) -> Vec<P2> {
        match (&self.nets, &self.target) {
            (Some(n), _) => n
                .eta
                .predict_at(&n.eta_store, t, x)
                .into_iter()
                .map(|e| [-e[0] / (1.0 - t), -e[1] / (1.0 - t)])
                .collect(),
            (None, Target::Ring(m)) => x.iter().map(|p| m.fields(t, *p).1).collect(),
            (None, Target::Checker) => unreachable!("validated: exact fields need the ring"),
        }
    }

    /// Samples `n` particles with `s`; returns them and the NFE per sample.
    fn sample(&self, s: &Setting, n: usize) -> (Vec<P2>, f64) {
        let x0 = &self.base[..n];
        // Exact fields give b and s in one evaluation; the learned ones are two networks.
        let per_pair = if self.nets.is_some() { 2.0 } else { 1.0 };
        if s.eps == 0.0 {
            let mut v = |t: f64, x: &[P2]| self.velocity(t, x);
            let x = plane::heun(x0, 0.0, 1.0, s.steps, &mut v);
            return (x, 2.0 * s.steps as f64);
        }
        let eps = s.eps * self.eps_scale;
        let mut bs = |t: f64, x: &[P2]| (self.velocity(t, x), self.score(t, x));
        // The same noise for every setting of a run (common random numbers).
        let mut noise = StdRng::seed_from_u64(self.seed ^ 0xB0B);
        let x = plane::euler_maruyama(x0, 0.0, T_END, s.steps, eps, &mut bs, &mut noise);
        let score = self.score(T_END, &x);
        let x = plane::tweedie_one_sided(&x, T_END, &score);
        // The Tweedie jump is one more evaluation (of eta, or of the exact fields).
        (x, per_pair * s.steps as f64 + 1.0)
    }

    fn score_samples(&self, x: &[P2]) -> (f64, f64, f64) {
        let m = MMD_POINTS.min(x.len()).min(self.held_out.len());
        (
            plane::sliced_w1(x, &self.held_out, SW_DIRECTIONS),
            plane::mmd2_multi(&x[..m], &self.held_out[..m], &MMD_BANDWIDTHS),
            self.target.off_fraction(x),
        )
    }

    fn b_l2_err(&self) -> Option<f64> {
        let Target::Ring(m) = &self.target else {
            return None;
        };
        let (t, x): (Vec<f64>, Vec<P2>) = self.probe.iter().copied().unzip();
        let hat = match &self.nets {
            Some(n) => n.b.predict(&n.b_store, &t, &x),
            None => x
                .iter()
                .map(|p| [-self.delta * p[1], self.delta * p[0]])
                .zip(t.iter().zip(&x))
                .map(|(r, (t, p))| {
                    let b = m.fields(*t, *p).0;
                    [b[0] + r[0], b[1] + r[1]]
                })
                .collect(),
        };
        let err = t
            .iter()
            .zip(&x)
            .zip(&hat)
            .map(|((t, p), h)| {
                let b = m.fields(*t, *p).0;
                (h[0] - b[0]).powi(2) + (h[1] - b[1]).powi(2)
            })
            .sum::<f64>();
        Some(err / t.len() as f64)
    }
}

impl<D: Device<f32>> Trainer for SiRun<D> {
    fn evaluate(&mut self, step: u64, last: bool) -> Result<Evaluation, RunStop> {
        let mut values = vec![
            ("sw_floor", self.sw_floor),
            ("offsupport_ref", self.own_off),
            ("offsupport_heldout", self.held_out_off),
        ];
        if self.nets.is_some() && self.loss_sum.2 > 0 {
            let (b, e, k) = self.loss_sum;
            values.push(("loss_b", b / k as f64));
            values.push(("loss_eta", e / k as f64));
            self.loss_sum = (0.0, 0.0, 0);
        }
        if let Some(e) = self.b_l2_err() {
            values.push(("b_l2_err", e));
        }
        let mut pictures = Vec::new();
        let every = self.p.usize("sample_every").max(1) as u64;
        if last || step.is_multiple_of(every) {
            let (all, ode, sde) = settings(self.nets.is_some());
            let n = if last {
                self.p.usize("particles")
            } else {
                self.p.usize("live_particles")
            };
            let chosen: Vec<usize> = if last {
                (0..all.len()).collect()
            } else {
                vec![ode, sde]
            };
            for i in chosen {
                let s = &all[i];
                let (x, nfe) = self.sample(s, n);
                let (sw, mmd, off) = self.score_samples(&x);
                if last {
                    values.extend([(s.sw, sw), (s.mmd, mmd), (s.off, off), (s.nfe, nfe)]);
                }
                if i == ode || i == sde {
                    let tag = if i == ode { "ode" } else { "sde" };
                    let (kw, km, ko, kn, pic) = if tag == "ode" {
                        (
                            "sw_ode",
                            "mmd_ode",
                            "offsupport_ode",
                            "nfe_ode",
                            "ODE samples over the target",
                        )
                    } else {
                        (
                            "sw_sde",
                            "mmd_sde",
                            "offsupport_sde",
                            "nfe_sde",
                            "SDE (eps 0.5) samples over the target",
                        )
                    };
                    values.extend([(kw, sw), (km, mmd), (ko, off), (kn, nfe)]);
                    pictures.push((pic, plane::scatter(&x, &self.held_out)));
                }
                if last {
                    self.final_samples.push((s.key, x));
                }
            }
        }
        let mut e = Evaluation::new(values);
        e.pictures = pictures;
        Ok(e)
    }

    fn step(&mut self, step: u64) -> Result<f64, RunStop> {
        let Some(nets) = self.nets.as_mut() else {
            return Ok(0.0);
        };
        let (batch, steps, b_steps) = (
            self.p.usize("batch"),
            self.p.usize("steps"),
            self.p.usize("b_steps").min(self.p.usize("steps")),
        );
        let lr = self.p.f64("lr");
        let x1 = self.target.sample(batch, &mut self.rng);
        let z = plane::normals(batch, &mut self.rng);
        let t: Vec<f64> = (0..batch).map(|_| self.rng.gen()).collect();
        let xt: Vec<P2> = (0..batch)
            .map(|i| {
                let (a, b) = (1.0 - t[i], t[i]);
                [a * z[i][0] + b * x1[i][0], a * z[i][1] + b * x1[i][1]]
            })
            .collect();
        let i = step as usize;
        let mut loss_b = self.loss_sum.0 / self.loss_sum.2.max(1) as f64;
        if i < b_steps {
            // b's target alpha' z + beta' x1 = x1 - z.
            let target: Vec<P2> = x1
                .iter()
                .zip(&z)
                .map(|(a, b)| [a[0] - b[0], a[1] - b[1]])
                .collect();
            nets.b_opt.lr = lr_at(lr, i, b_steps);
            loss_b =
                nets.b
                    .regression_step(&mut nets.b_store, &mut nets.b_opt, &t, &xt, &target)?;
        }
        nets.eta_opt.lr = lr_at(lr, i, steps);
        let loss_eta =
            nets.eta
                .regression_step(&mut nets.eta_store, &mut nets.eta_opt, &t, &xt, &z)?;
        self.loss_sum.0 += loss_b;
        self.loss_sum.1 += loss_eta;
        self.loss_sum.2 += 1;
        Ok(loss_b + loss_eta)
    }

    fn write_artifacts(&self, dir: &std::path::Path) -> std::io::Result<()> {
        let params = match &self.nets {
            Some(n) => {
                let mut v = artifacts::store_tensors(&n.b_store);
                v.extend(artifacts::store_tensors(&n.eta_store));
                v
            }
            None => Vec::new(),
        };
        let rows = |name: &str, x: &[P2]| {
            NamedTensor::new(name, &[x.len(), 2], x.iter().flat_map(|p| *p).collect())
        };
        let mut data = vec![
            rows("base", &self.base),
            rows("target_held_out", &self.held_out),
        ];
        for (key, x) in &self.final_samples {
            data.push(rows(&format!("samples.{key}"), x));
        }
        let field = match &self.nets {
            Some(_) => format!(
                "learned: b(t, x) and eta(t, x) are MLPs [t, x1, x2] -> {} x {} SiLU -> 2 \
                 (tensors b.i.weight [in, out], b.i.bias; eta.i.*), y = silu(x W + b) per hidden \
                 layer, linear output; score s = -eta / (1 - t)",
                self.p.usize("depth"),
                self.p.usize("hidden")
            ),
            None => format!(
                "exact ring of 8 Gaussians (radius 3, std 0.25) fields, velocity error delta = \
                 {}: b_hat = b + delta (-x2, x1); no trained parameters",
                self.delta
            ),
        };
        let text = format!(
            "stochastic interpolant x_t = (1 - t) z + t x1, z ~ N(0, I), target {}\n{field}\n\
             samples.<setting>: ode_hK = Heun with K steps on [0, 1] from base; sdeK_eE = \
             Euler-Maruyama K steps on [0, {T_END}] of dX = [b + E*eps_scale s] dt + \
             sqrt(2 E*eps_scale) dW from base, then x1 = (x + (1 - t)^2 s) / t at t = {T_END}\n\
             metrics: sw_<setting> = mean over {SW_DIRECTIONS} angles pi k / {SW_DIRECTIONS} of \
             the 1-D W1 between projections of samples and target_held_out; mmd_<setting> = \
             unbiased MMD^2 summed over RBF bandwidths 0.5, 1, 2 between the first {MMD_POINTS} \
             samples and the first {MMD_POINTS} held-out points; off_<setting> = fraction \
             farther than 3 std from every ring mode (checker: in an empty cell or outside \
             [-4, 4]^2)\n",
            self.p.text("target")
        );
        artifacts::write_run(dir, &params, &data, &text)
    }
}

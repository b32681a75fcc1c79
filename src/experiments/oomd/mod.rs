//! "Optimistic Online Mirror Descent for Bridging Stochastic and Adversarial Online Convex
//! Optimization" (Chen, Zhang, Tu, Zhao, Zhang, ICML 2023): in the stochastically extended
//! adversarial (SEA) model, optimistic OMD on convex smooth losses has expected regret
//! O(sqrt(sigma^2_(1:T)) + sqrt(Sigma^2_(1:T))): the cumulative stochastic variance and the
//! cumulative adversarial variation.
//!
//! Host only (f64 closed-form vector arithmetic, `crate::online`): nothing is trained on a dfdx
//! device, so the run ignores the device choice. One run plays one environment (loss family,
//! centre path, noise level s, amplitude rho) for T rounds with three learners on the same
//! losses (optimistic OMD, textbook OGD, AdaGrad-norm OGD) and tracks their regret against the
//! best fixed point of the realised losses, re-solved at every measurement.

pub mod bench;
mod verdict;

use super::driver::{self, Evaluation, Schedule, Trainer};
use super::profile::{DeviceCase, Profile};
use super::{Experiment, FinishedRun, RunContext, RunEnd, RunStop};
use crate::artifacts::{self, NamedTensor};
use crate::metrics::picture::Picture;
use crate::metrics::MetricSpec;
use crate::online::comparator::Comparator;
use crate::online::learners::{AdaOgd, Learner, Ogd, Oomd, StepRule};
use crate::online::sea::{Family, Path, Round, SeaConfig, SeaEnv};
use crate::params::{ParamSpec, Params};
use crate::verdict::Verdict;

pub struct OomdSea;

/// The environment a run's parameters describe.
pub fn sea_config(p: &Params) -> SeaConfig {
    SeaConfig {
        family: Family::parse(p.text("family")),
        path: Path::parse(p.text("path")),
        dim: p.usize("dim"),
        s: p.f64("s"),
        rho: p.f64("rho"),
        c0: p.f64("c0"),
        drift_period: p.usize("drift_period"),
        switch_every: p.usize("switch_every"),
    }
}

impl Experiment for OomdSea {
    fn kind(&self) -> &'static str {
        "oomd-sea"
    }

    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::choice(
                "family",
                &["huber", "linear"],
                "huber",
                "loss family: pseudo-Huber sum_i sqrt(1 + (x_i - c_i)^2) - 1 (1-smooth), or \
                 linear <mu_t, x>",
            ),
            ParamSpec::choice(
                "path",
                &["fixed", "iid", "drift", "switch"],
                "fixed",
                "centre path: fixed c_0; c_0 + rho r_t/sqrt(d) with i.i.d. signs (oblivious \
                 adversary); rotation of amplitude rho; two centres c_0 +- rho/sqrt(d)",
            ),
            ParamSpec::float(
                "s",
                0.0,
                0.0,
                100.0,
                "noise: xi_t ~ N(0, s^2/d I), so sigma_t^2 = s^2 exactly",
            ),
            ParamSpec::float("rho", 0.0, 0.0, 100.0, "amplitude of the centre's movement"),
            ParamSpec::int("steps", 2000, 1, 10_000_000, "rounds T"),
            ParamSpec::int(
                "log_every",
                100,
                1,
                10_000_000,
                "rounds between measurements (the comparator is re-solved at each)",
            ),
            ParamSpec::int("dim", 5, 1, 1000, "dimension d"),
            ParamSpec::float("radius", 1.0, 1e-6, 1e6, "radius D of the ball X"),
            ParamSpec::float(
                "delta",
                1.0,
                1e-12,
                1e12,
                "delta in the adaptive step sizes",
            ),
            ParamSpec::float("c0", 0.3, -10.0, 10.0, "every coordinate of the centre c_0"),
            ParamSpec::int(
                "drift_period",
                500,
                2,
                10_000_000,
                "drift: rounds per rotation",
            ),
            ParamSpec::int(
                "switch_every",
                250,
                1,
                10_000_000,
                "switch: rounds between switches",
            ),
            ParamSpec::int(
                "fista_iters",
                3000,
                1,
                1_000_000,
                "comparator: most FISTA iterations per solve (pseudo-Huber)",
            ),
            ParamSpec::choice(
                "step_rule",
                &["adaptive", "fixed"],
                "adaptive",
                "OOMD's step: min(D/sqrt(delta + V_t), 1/(4L)), or the constant fixed_eta (the \
                 mechanism off)",
            ),
            ParamSpec::float(
                "fixed_eta",
                0.25,
                1e-9,
                1e3,
                "OOMD's constant step when step_rule = fixed",
            ),
        ]
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        vec![
            MetricSpec::new("regret_oomd", "regret of optimistic OMD")
                .unit("against the best fixed point")
                .reference("bound"),
            MetricSpec::new("regret_ratio", "OOMD regret / bound").unit("ratio"),
            MetricSpec::new("regret_ogd", "regret of OGD (eta = D/(G sqrt t))")
                .unit("against the best fixed point")
                .reference("bound"),
            MetricSpec::new("regret_adaogd", "regret of AdaGrad-norm OGD")
                .unit("against the best fixed point")
                .reference("bound"),
            MetricSpec::new("bound", "D sqrt(sigma^2_1:t) + D sqrt(Sigma^2_1:t) + L D^2"),
            MetricSpec::new("sigma2_cum", "cumulative stochastic variance sigma^2_1:t"),
            MetricSpec::new("Sigma2_cum", "cumulative adversarial variation Sigma^2_1:t"),
            MetricSpec::new("V_t", "OOMD's sum |g_s - M_s|^2")
                .reference("V_ref")
                .log(),
            MetricSpec::new("V_ref", "8 sigma^2_1:t + 4 Sigma^2_1:t").log(),
            MetricSpec::new("eta_oomd", "OOMD step size")
                .reference("eta_cap")
                .log(),
            MetricSpec::new("eta_cap", "1/(4L)"),
        ]
    }

    fn table_metrics(&self) -> Vec<&'static str> {
        vec![
            "regret_oomd",
            "bound",
            "regret_ratio",
            "regret_ogd",
            "regret_adaogd",
            "V_t",
        ]
    }

    fn builtin_presets(&self) -> &'static [(&'static str, &'static str)] {
        &[(
            "presets/oomd-sea.toml",
            include_str!("../../../presets/oomd-sea.toml"),
        )]
    }

    fn verdict_bar(&self) -> Option<(&'static str, Option<&'static str>)> {
        Some(("regret_oomd", Some("bound")))
    }

    fn quick_profile(&self) -> Profile {
        Profile {
            preset: "oomd-sea",
            arms: &[
                "det-T500",
                "det",
                "det-T8000",
                "stoch-s0.03",
                "stoch-s0.1",
                "stoch-s0.3",
                "stoch-s1",
                "stoch-s0.3-T500",
                "stoch-s0.3-T8000",
                "adv-rho0.03",
                "adv-rho0.1",
                "adv-rho0.3",
                "adv-rho1",
                "switch",
                "lin-stoch-s0.03",
                "lin-stoch-s0.1",
                "lin-stoch-s0.3",
                "lin-stoch-s1",
                "lin-adv-rho0.03",
                "lin-adv-rho0.1",
                "lin-adv-rho0.3",
                "lin-adv-rho1",
            ],
            seeds: &[0, 1],
            overrides: &[],
        }
    }

    fn device_cases(&self) -> Vec<DeviceCase> {
        // Host only: nothing runs on a dfdx device.
        Vec::new()
    }

    fn bench(&self, quick: bool, out: &mut String) {
        bench::report(quick, out)
    }

    fn validate(&self, p: &Params) -> Result<(), String> {
        let c0 = p.f64("c0").abs() * (p.usize("dim") as f64).sqrt();
        if p.text("family") == "huber" && c0 >= p.f64("radius") {
            return Err(format!(
                "|c_0| = {c0:.3} must lie inside the ball of radius {} (c0, dim, radius)",
                p.f64("radius")
            ));
        }
        Ok(())
    }

    fn memory(&self, p: &Params) -> crate::engine::memory::Estimate {
        let t = p.usize("steps") as f64;
        let d = p.usize("dim") as f64;
        crate::engine::memory::Estimate::of(&[(
            8.0 * t * d * 5.0,
            format!("centres, noise and three learners' plays of {t} rounds in R^{d}"),
        )])
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<RunEnd, RunStop> {
        // Host numerics: the device choice does not apply.
        let p = ctx.params.clone();
        let mut run = OomdRun::new(&p, ctx.seed);
        ctx.log(format!(
            "{:?} losses, {:?} path, d {}, D {}, s {}, rho {}, T {}; OGD's G = {:.3}",
            run.cfg.family,
            run.cfg.path,
            run.cfg.dim,
            run.radius,
            run.cfg.s,
            run.cfg.rho,
            p.usize("steps"),
            run.ogd.g_bound
        ));
        driver::drive(ctx, Schedule::from_params(&p), &mut run)
    }

    fn verdict(&self, claim: &str, preset_id: &str, runs: &[FinishedRun]) -> Verdict {
        verdict::compute(claim, preset_id, runs)
    }
}

/// One run: the environment, the three learners, the comparator and the running sums.
pub struct OomdRun {
    pub cfg: SeaConfig,
    env: SeaEnv,
    pub radius: f64,
    smoothness: f64,
    pub oomd: Oomd,
    pub ogd: Ogd,
    pub ada: AdaOgd,
    pub comparator: Comparator,
    fista_iters: usize,
    /// Cumulative losses of OOMD, OGD, AdaOGD.
    pub cum: [f64; 3],
    pub sigma2: f64,
    pub big_sigma2: f64,
    prev_c: Option<Vec<f64>>,
    /// Every round's centre and noise, and the three learners' plays (row-major, T x d).
    centres: Vec<f64>,
    noise: Vec<f64>,
    plays: [Vec<f64>; 3],
    last_star: Vec<f64>,
    rounds: u64,
}

impl OomdRun {
    pub fn new(p: &Params, seed: u64) -> OomdRun {
        let cfg = sea_config(p);
        let radius = p.f64("radius");
        let delta = p.f64("delta");
        let d = cfg.dim;
        let smoothness = cfg.family.smoothness();
        let rule = match p.text("step_rule") {
            "fixed" => StepRule::Fixed(p.f64("fixed_eta")),
            _ => StepRule::Adaptive,
        };
        // OGD's worst-case gradient bound: the family's, plus twice the noise's RMS norm.
        let g_bound = cfg.family.gradient_bound(d, cfg.largest_centre()) + 2.0 * cfg.s;
        OomdRun {
            env: SeaEnv::new(cfg.clone(), seed),
            oomd: Oomd::new(d, radius, delta, smoothness, rule),
            ogd: Ogd::new(d, radius, g_bound),
            ada: AdaOgd::new(d, radius, delta),
            comparator: Comparator::new(cfg.family, d, radius),
            fista_iters: p.usize("fista_iters"),
            cfg,
            radius,
            smoothness,
            cum: [0.0; 3],
            sigma2: 0.0,
            big_sigma2: 0.0,
            prev_c: None,
            centres: Vec::new(),
            noise: Vec::new(),
            plays: [Vec::new(), Vec::new(), Vec::new()],
            last_star: vec![0.0; d],
            rounds: 0,
        }
    }

    /// `D sqrt(sigma^2_1:t) + D sqrt(Sigma^2_1:t) + L D^2`.
    pub fn bound(&self) -> f64 {
        self.radius * self.sigma2.sqrt()
            + self.radius * self.big_sigma2.sqrt()
            + self.smoothness * self.radius * self.radius
    }

    /// Plays one round with all three learners.
    pub fn play_round(&mut self) -> f64 {
        let round: Round = self.env.next_round();
        let family = self.cfg.family;
        let mut oomd_loss = 0.0;
        let learners: [&mut dyn Learner; 3] = [&mut self.oomd, &mut self.ogd, &mut self.ada];
        for (k, l) in learners.into_iter().enumerate() {
            let x = l.play();
            let loss = round.loss(family, &x);
            self.cum[k] += loss;
            if k == 0 {
                oomd_loss = loss;
            }
            l.update(&round.grad(family, &x));
            self.plays[k].extend_from_slice(&x);
        }
        self.sigma2 += self.cfg.s * self.cfg.s;
        if let Some(prev) = &self.prev_c {
            self.big_sigma2 += family.variation(&round.c, prev);
        }
        self.comparator.add(&round);
        self.centres.extend_from_slice(&round.c);
        self.noise.extend_from_slice(&round.xi);
        self.prev_c = Some(round.c);
        self.rounds += 1;
        oomd_loss
    }

    /// The three regrets against the best fixed point of the losses so far.
    pub fn regrets(&mut self) -> [f64; 3] {
        let (x, best) = self.comparator.solve(self.fista_iters);
        self.last_star = x;
        [self.cum[0] - best, self.cum[1] - best, self.cum[2] - best]
    }
}

impl Trainer for OomdRun {
    fn evaluate(&mut self, step: u64, last: bool) -> Result<Evaluation, RunStop> {
        let r = self.regrets();
        let bound = self.bound();
        let mut values = vec![
            ("regret_oomd", r[0]),
            ("regret_ratio", r[0] / bound),
            ("regret_ogd", r[1]),
            ("regret_adaogd", r[2]),
            ("bound", bound),
            ("sigma2_cum", self.sigma2),
            ("Sigma2_cum", self.big_sigma2),
            ("V_t", self.oomd.v),
            ("V_ref", 8.0 * self.sigma2 + 4.0 * self.big_sigma2),
            ("eta_oomd", self.oomd.eta()),
        ];
        if self.oomd.cap.is_finite() {
            values.push(("eta_cap", self.oomd.cap));
        }
        if !bound.is_finite() || r.iter().any(|v| !v.is_finite()) {
            return Err(RunStop::Diverged {
                step,
                reason: format!("non-finite regret {r:?} or bound {bound}"),
            });
        }
        let mut e = Evaluation::new(values);
        if last || (step > 0 && step.is_multiple_of(1000)) {
            // OOMD's plays (first two coordinates) over the centres they chase.
            let two = |v: &[f64]| -> Vec<[f32; 2]> {
                v.chunks(self.cfg.dim)
                    .map(|c| [c[0] as f32, *c.get(1).unwrap_or(&0.0) as f32])
                    .collect()
            };
            e.pictures.push((
                "OOMD plays x_t (coordinates 1, 2) over the centres c_t",
                Picture::scatter(&two(&self.plays[0]), &two(&self.centres)),
            ));
        }
        Ok(e)
    }

    fn step(&mut self, _step: u64) -> Result<f64, RunStop> {
        Ok(self.play_round())
    }

    fn finish(&mut self, final_values: &mut std::collections::BTreeMap<String, f64>, _steps: u64) {
        final_values.insert("rounds".into(), self.rounds as f64);
        final_values.insert("comparator_iters".into(), self.comparator.last_iters as f64);
        final_values.insert("ogd_g_bound".into(), self.ogd.g_bound);
    }

    fn write_artifacts(&self, dir: &std::path::Path) -> std::io::Result<()> {
        let d = self.cfg.dim;
        let t = self.rounds as usize;
        let params = vec![
            NamedTensor::new("oomd_xhat", &[d], self.oomd.xhat.clone()),
            NamedTensor::new("oomd_hint", &[d], self.oomd.hint.clone()),
            NamedTensor::new("ogd_x", &[d], self.ogd.x.clone()),
            NamedTensor::new("adaogd_x", &[d], self.ada.x.clone()),
            NamedTensor::new("x_star", &[d], self.last_star.clone()),
        ];
        let data = vec![
            NamedTensor::new("centres", &[t, d], self.centres.clone()),
            NamedTensor::new("noise", &[t, d], self.noise.clone()),
            NamedTensor::new("plays_oomd", &[t, d], self.plays[0].clone()),
            NamedTensor::new("plays_ogd", &[t, d], self.plays[1].clone()),
            NamedTensor::new("plays_adaogd", &[t, d], self.plays[2].clone()),
        ];
        let f = match self.cfg.family {
            Family::Huber => "F(x; c) = sum_i (sqrt(1 + (x_i - c_i)^2) - 1)",
            Family::Linear => "F(x; c) = <c, x>",
        };
        let text = format!(
            "online convex optimization on the ball |x| <= {D} in R^{d}, {t} rounds\n\
             loss of round t: f_t(x) = F(x; centres[t]) + <noise[t], x>, {f}\n\
             regret_k = sum_t f_t(plays_k[t]) - sum_t f_t(x_star), x_star = argmin over the \
             ball of sum_t f_t (closed form -D sum g/|sum g| for linear losses, FISTA for \
             pseudo-Huber)\n\
             sigma2_cum = t s^2 (s = {s}); Sigma2_cum = sum_(t>=2) sup_x |grad F(x; c_t) - \
             grad F(x; c_(t-1))|^2 (linear: |dc|^2; pseudo-Huber: sum_i dc_i^2/(1 + dc_i^2/4))\n\
             bound = D sqrt(sigma2_cum) + D sqrt(Sigma2_cum) + L D^2 (L = {L})\n\
             learners from x = 0: OOMD x_t = Proj(xhat - eta_t M_t), xhat <- Proj(xhat - eta_t \
             g_t), M_(t+1) = g_t, eta_t = min(D/sqrt(delta + sum_(s<t)|g_s - M_s|^2), 1/(4L)); \
             OGD eta_t = D/(G sqrt t) with G = {G}; AdaOGD eta_t = D/sqrt(delta + \
             sum_(s<=t)|g_s|^2)\n",
            D = self.radius,
            s = self.cfg.s,
            L = self.smoothness,
            G = self.ogd.g_bound,
        );
        artifacts::write_run(dir, &params, &data, &text)
    }
}

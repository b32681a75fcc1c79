//! "Variational Inference for SDEs Driven by Fractional Noise" (Daems, Opper, Crevecoeur,
//! Birdal, ICLR 2024): fractional Brownian motion approximated by a weighted sum of OU
//! processes driven by one Brownian motion, with the closed-form optimal weights omega(H), makes
//! an fBM-driven SDE Markov in (X, Y_1..Y_K); its posterior path measure is fitted by an ELBO
//! with one control on every OU component, and H is learned with the drift.
//!
//! Toy: fractional OU paths (exact fBM by Cholesky, Euler on a fine grid) observed with noise;
//! the Markov-approximate fOU model is fitted by its exact Kalman likelihood (`ma-exact`,
//! Nelder-Mead, host), by the paper's variational method (`ma-vi`, dfdx, Euler-Maruyama on the
//! tape with a control MLP), and the BM-driven OU (`bm-ou`) is the baseline.

pub mod bench;
pub mod markov;
mod verdict;
pub mod vi;

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::driver::{self, Evaluation, Schedule, Trainer};
use super::profile::{DeviceCase, Profile};
use super::{Experiment, FinishedRun, RunContext, RunEnd, RunStop};
use crate::artifacts::{self, NamedTensor};
use crate::metrics::MetricSpec;
use crate::params::{ParamSpec, Params};
use crate::verdict::Verdict;
use markov::{gamma_grid, omega, NelderMead, StateModel};

pub struct FbmSdeVi;

/// Times at which `ma_var_ratio_*` is reported.
pub const RATIO_TIMES: [(f64, &str); 3] = [
    (1.0, "ma_var_ratio_1"),
    (2.5, "ma_var_ratio_2.5"),
    (5.0, "ma_var_ratio_5"),
];

impl Experiment for FbmSdeVi {
    fn kind(&self) -> &'static str {
        "fbm-sde-vi"
    }

    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::choice(
                "method",
                &["ma-exact", "ma-vi", "bm-ou"],
                "ma-exact",
                "Markov-approximate fOU by exact Kalman likelihood (Nelder-Mead); the same model \
                 by the variational ELBO with a control MLP; the BM-driven OU (exact likelihood)",
            ),
            ParamSpec::float("hurst", 0.2, 0.02, 0.98, "true Hurst index of the data"),
            ParamSpec::float("theta_true", 0.5, 0.0, 100.0, "data: mean reversion"),
            ParamSpec::float("sigma_true", 1.0, 1e-3, 100.0, "data: noise scale"),
            ParamSpec::float(
                "obs_noise",
                0.05,
                1e-4,
                10.0,
                "observation noise sd (known)",
            ),
            ParamSpec::int(
                "grid",
                1000,
                20,
                4000,
                "data: fBM grid points over [0, t_end]",
            ),
            ParamSpec::int("every", 10, 1, 1000, "data: observe every n-th grid point"),
            ParamSpec::float(
                "t_end",
                5.0,
                0.1,
                100.0,
                "data horizon (and the omega horizon T)",
            ),
            ParamSpec::int(
                "paths",
                8,
                1,
                256,
                "training paths (and as many held-out ones)",
            ),
            ParamSpec::int(
                "components",
                5,
                1,
                20,
                "K: OU components of the approximation",
            ),
            ParamSpec::float(
                "gamma_max",
                20.0,
                1.0001,
                1e4,
                "largest OU speed (smallest 1/it)",
            ),
            ParamSpec::int(
                "steps",
                360,
                1,
                1_000_000,
                "exact: Nelder-Mead iterations (split over the starts); vi: Adam steps",
            ),
            ParamSpec::int("log_every", 10, 1, 1_000_000, "steps between measurements"),
            ParamSpec::int(
                "em_steps",
                200,
                10,
                10_000,
                "vi: Euler-Maruyama steps over [0, t_end]",
            ),
            ParamSpec::int(
                "samples",
                4,
                1,
                1024,
                "vi: sampled posterior paths per data path",
            ),
            ParamSpec::int(
                "hidden",
                64,
                1,
                4096,
                "vi: control MLP width (2 tanh layers)",
            ),
            ParamSpec::float(
                "lr",
                1e-2,
                0.0,
                10.0,
                "vi: Adam learning rate of the control",
            ),
            ParamSpec::float(
                "model_lr",
                0.02,
                0.0,
                10.0,
                "vi: Adam learning rate of logit H, log theta, log sigma (0: fixed at the start)",
            ),
            ParamSpec::int(
                "warmup",
                100,
                0,
                1_000_000,
                "vi: steps in which only the control learns (the model held at its start)",
            ),
            ParamSpec::float("h_start", 0.5, 0.02, 0.98, "vi: initial H"),
        ]
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        vec![
            MetricSpec::new("hurst_hat", "estimated Hurst index")
                .unit("reference: true H")
                .reference("hurst_true"),
            MetricSpec::new("hurst_true", "true Hurst index"),
            MetricSpec::new("theta_hat", "estimated theta").reference("theta_true"),
            MetricSpec::new("theta_true", "true theta"),
            MetricSpec::new(
                "sigma_hat",
                "estimated sigma (MvN-normalised, not the data's)",
            ),
            MetricSpec::new("loglik", "exact training log-likelihood per observation").unit("nats"),
            MetricSpec::new("elbo", "ELBO per observation (vi)")
                .unit("nats; reference: exact log-likelihood at the same parameters")
                .reference("loglik"),
            MetricSpec::new("kl_path", "E[1/2 int u^2 dt] per path (vi)"),
            MetricSpec::new("heldout_ll", "held-out log-likelihood per observation").unit("nats"),
            MetricSpec::new("ma_var_ratio_1", "Var(B^_H(1)) / 1^(2H) at H_hat"),
            MetricSpec::new("ma_var_ratio_2.5", "Var(B^_H(2.5)) / 2.5^(2H) at H_hat"),
            MetricSpec::new("ma_var_ratio_5", "Var(B^_H(5)) / 5^(2H) at H_hat"),
        ]
    }

    fn table_metrics(&self) -> Vec<&'static str> {
        vec![
            "hurst_true",
            "hurst_hat",
            "theta_hat",
            "sigma_hat",
            "loglik",
            "elbo",
            "heldout_ll",
        ]
    }

    fn builtin_presets(&self) -> &'static [(&'static str, &'static str)] {
        &[(
            "presets/fbm-sde-vi.toml",
            include_str!("../../../presets/fbm-sde-vi.toml"),
        )]
    }

    fn verdict_bar(&self) -> Option<(&'static str, Option<&'static str>)> {
        Some(("hurst_hat", Some("hurst_true")))
    }

    fn quick_profile(&self) -> Profile {
        Profile {
            preset: "fbm-sde-vi",
            arms: &[
                "ma-exact-h0.2",
                "ma-exact-h0.5",
                "bm-ou-h0.2",
                "bm-ou-h0.5",
                "ma-vi-h0.2",
            ],
            seeds: &[0, 1],
            overrides: &[
                ("grid", "500"),
                ("em_steps", "100"),
                ("samples", "2"),
                ("steps", "120"),
                ("warmup", "40"),
            ],
        }
    }

    fn device_cases(&self) -> Vec<DeviceCase> {
        vec![DeviceCase {
            size: "preset",
            arm: "ma-vi-h0.2",
            profile: Profile {
                preset: "fbm-sde-vi",
                arms: &["ma-vi-h0.2"],
                seeds: &[0],
                overrides: &[("steps", "20"), ("grid", "200")],
            },
        }]
    }

    fn bench(&self, quick: bool, out: &mut String) {
        bench::report(quick, out)
    }

    fn validate(&self, p: &Params) -> Result<(), String> {
        if !p.usize("grid").is_multiple_of(p.usize("every")) {
            return Err("grid must be a multiple of every".into());
        }
        let obs = p.usize("grid") / p.usize("every");
        if p.text("method") == "ma-vi" && !p.usize("em_steps").is_multiple_of(obs) {
            return Err(format!(
                "em_steps must be a multiple of the {obs} observations (grid / every)"
            ));
        }
        Ok(())
    }

    fn memory(&self, p: &Params) -> crate::engine::memory::Estimate {
        let g = p.usize("grid") as f64;
        let b = (p.usize("paths") * p.usize("samples")) as f64;
        let tape = b * p.usize("em_steps") as f64 * (4.0 * p.usize("hidden") as f64 + 20.0) * 4.0;
        crate::engine::memory::Estimate::of(&[
            (
                16.0 * g * g,
                format!("fBM covariance and its Cholesky factor (grid {g})"),
            ),
            (
                tape,
                format!("vi tape: {b} sampled paths x {} steps", p.usize("em_steps")),
            ),
        ])
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<RunEnd, RunStop> {
        let p = ctx.params.clone();
        let data = Dataset::generate(&p, ctx.seed);
        ctx.log(format!(
            "true H {}, {} training / {} held-out paths of {} observations (dt {}), method {}",
            p.f64("hurst"),
            data.train.len(),
            data.heldout.len(),
            data.train[0].len(),
            data.dt_obs,
            p.text("method")
        ));
        let schedule = Schedule::from_params(&p);
        if p.text("method") == "ma-vi" {
            crate::on_device!(ctx, |dev| {
                let mut run = vi::ViRun::new(&dev, &p, data, ctx.seed);
                driver::drive(ctx, schedule, &mut run)
            })
        } else {
            let mut run = ExactRun::new(&p, data);
            driver::drive(ctx, schedule, &mut run)
        }
    }

    fn verdict(&self, claim: &str, preset_id: &str, runs: &[FinishedRun]) -> Verdict {
        verdict::compute(claim, preset_id, runs)
    }
}

/// Noisy observations of fOU paths, training and held-out.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub train: Vec<Vec<f64>>,
    pub heldout: Vec<Vec<f64>>,
    pub dt_obs: f64,
    pub hurst: f64,
    pub theta: f64,
    pub r: f64,
}

impl Dataset {
    /// Exact fBM on the grid (Cholesky), the fOU by Euler on that grid (X_0 = 0), every
    /// `every`-th point observed with N(0, obs_noise^2) noise. Seeded by (seed, H) only, so every
    /// method of a seed sees the same data.
    pub fn generate(p: &Params, seed: u64) -> Dataset {
        let h = p.f64("hurst");
        let (n, every, t_end) = (p.usize("grid"), p.usize("every"), p.f64("t_end"));
        let (theta, sigma, noise) = (p.f64("theta_true"), p.f64("sigma_true"), p.f64("obs_noise"));
        let paths = p.usize("paths");
        let mut rng = StdRng::seed_from_u64(
            seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ ((h * 1e4).round() as u64) ^ 0xFB5D,
        );
        let dt = t_end / n as f64;
        let bs = markov::fbm_paths(h, n, t_end, 2 * paths, &mut rng);
        use rand_distr::{Distribution, Normal};
        let eps = Normal::new(0.0, noise).unwrap();
        let obs: Vec<Vec<f64>> = bs
            .iter()
            .map(|b| {
                let (mut x, mut prev) = (0.0, 0.0);
                let mut ys = Vec::with_capacity(n / every);
                for (i, &bi) in b.iter().enumerate() {
                    x += -theta * x * dt + sigma * (bi - prev);
                    prev = bi;
                    if (i + 1) % every == 0 {
                        ys.push(x + eps.sample(&mut rng));
                    }
                }
                ys
            })
            .collect();
        Dataset {
            train: obs[..paths].to_vec(),
            heldout: obs[paths..].to_vec(),
            dt_obs: dt * every as f64,
            hurst: h,
            theta,
            r: noise * noise,
        }
    }
}

/// The model of a parameter vector: `(logit H, log theta, log sigma)` for the MA model, `(log
/// theta, log sigma)` for the BM-driven OU.
#[derive(Clone, Debug)]
pub struct ModelSpace {
    pub fractional: bool,
    pub gammas: Vec<f64>,
    pub t_end: f64,
    pub r: f64,
}

pub fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

pub fn logit(h: f64) -> f64 {
    (h / (1.0 - h)).ln()
}

impl ModelSpace {
    pub fn from_params(p: &Params, fractional: bool) -> ModelSpace {
        ModelSpace {
            fractional,
            gammas: gamma_grid(p.usize("components"), p.f64("gamma_max")),
            t_end: p.f64("t_end"),
            r: p.f64("obs_noise").powi(2),
        }
    }

    /// (H, theta, sigma) of a point.
    pub fn decode(&self, z: &[f64]) -> (f64, f64, f64) {
        if self.fractional {
            (sigmoid(z[0]), z[1].exp(), z[2].exp())
        } else {
            (0.5, z[0].exp(), z[1].exp())
        }
    }

    pub fn model(&self, h: f64, theta: f64, sigma: f64) -> StateModel {
        if self.fractional {
            StateModel {
                theta,
                sigma,
                omega: omega(h, &self.gammas, self.t_end),
                gammas: self.gammas.clone(),
                r: self.r,
            }
        } else {
            StateModel {
                theta,
                sigma,
                omega: Vec::new(),
                gammas: Vec::new(),
                r: self.r,
            }
        }
    }

    pub fn model_at(&self, z: &[f64]) -> StateModel {
        let (h, t, s) = self.decode(z);
        self.model(h, t, s)
    }
}

/// Exact maximum likelihood by Nelder-Mead from H in {0.3, 0.5, 0.7} (the MA model) or one
/// start (the BM-driven OU); the best end point is the fit.
pub struct ExactRun {
    space: ModelSpace,
    data: Dataset,
    starts: Vec<Vec<f64>>,
    per_start: u64,
    current: Option<NelderMead>,
    done: Vec<(Vec<f64>, f64)>,
    iterations: u64,
}

impl ExactRun {
    pub fn new(p: &Params, data: Dataset) -> ExactRun {
        let fractional = p.text("method") == "ma-exact";
        let starts: Vec<Vec<f64>> = if fractional {
            [0.3, 0.5, 0.7]
                .iter()
                .map(|&h| vec![logit(h), 0.0, 0.0])
                .collect()
        } else {
            vec![vec![0.0, 0.0]]
        };
        let per_start = (p.usize("steps") as u64 / starts.len() as u64).max(1);
        ExactRun {
            space: ModelSpace::from_params(p, fractional),
            data,
            starts,
            per_start,
            current: None,
            done: Vec::new(),
            iterations: 0,
        }
    }

    fn objective(&self) -> impl FnMut(&[f64]) -> f64 + '_ {
        move |z: &[f64]| {
            let v = -self
                .space
                .model_at(z)
                .loglik_per_obs(&self.data.train, self.data.dt_obs);
            if v.is_finite() {
                v
            } else {
                f64::INFINITY
            }
        }
    }

    /// The best point so far and its negative log-likelihood per observation.
    pub fn best(&self) -> (Vec<f64>, f64) {
        let mut all: Vec<(Vec<f64>, f64)> = self.done.clone();
        if let Some(nm) = &self.current {
            let (x, v) = nm.best();
            all.push((x.to_vec(), v));
        }
        all.into_iter()
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap_or_else(|| (self.starts[0].clone(), f64::INFINITY))
    }
}

/// Everything a run reports about a fitted (H, theta, sigma).
fn fit_values(
    space: &ModelSpace,
    data: &Dataset,
    h: f64,
    theta: f64,
    sigma: f64,
) -> Vec<(&'static str, f64)> {
    let model = space.model(h, theta, sigma);
    let mut v = vec![
        ("hurst_hat", h),
        ("hurst_true", data.hurst),
        ("theta_hat", theta),
        ("theta_true", data.theta),
        ("sigma_hat", sigma),
        ("loglik", model.loglik_per_obs(&data.train, data.dt_obs)),
        (
            "heldout_ll",
            model.loglik_per_obs(&data.heldout, data.dt_obs),
        ),
    ];
    if space.fractional {
        for (t, name) in RATIO_TIMES {
            let w = &model.omega;
            v.push((
                name,
                markov::ma_cov(w, &space.gammas, t, t) / t.powf(2.0 * h),
            ));
        }
    }
    v
}

impl Trainer for ExactRun {
    fn evaluate(&mut self, _step: u64, _last: bool) -> Result<Evaluation, RunStop> {
        let (z, _) = self.best();
        let (h, theta, sigma) = self.space.decode(&z);
        Ok(Evaluation::new(fit_values(
            &self.space,
            &self.data,
            h,
            theta,
            sigma,
        )))
    }

    fn step(&mut self, _step: u64) -> Result<f64, RunStop> {
        let start = (self.iterations / self.per_start) as usize;
        if start >= self.starts.len() {
            // Every start has finished: the remaining steps keep the fit.
            return Ok(self.best().1);
        }
        if self.current.is_none() {
            let x0 = self.starts[start].clone();
            let nm = {
                let mut f = self.objective();
                NelderMead::new(&x0, 0.5, &mut f)
            };
            self.current = Some(nm);
        }
        let mut nm = self.current.take().unwrap();
        {
            let mut f = self.objective();
            nm.iterate(&mut f);
        }
        self.iterations += 1;
        let v = nm.best().1;
        if self.iterations.is_multiple_of(self.per_start) {
            let (x, v) = nm.best();
            self.done.push((x.to_vec(), v));
        } else {
            self.current = Some(nm);
        }
        Ok(v)
    }

    fn finish(&mut self, final_values: &mut std::collections::BTreeMap<String, f64>, _steps: u64) {
        let fits: Vec<f64> = self
            .done
            .iter()
            .map(|(z, _)| self.space.decode(z).0)
            .collect();
        if self.space.fractional {
            for (i, h) in fits.iter().enumerate() {
                final_values.insert(format!("hurst_start{i}"), *h);
            }
        }
    }

    fn write_artifacts(&self, dir: &std::path::Path) -> std::io::Result<()> {
        let (z, nll) = self.best();
        let (h, theta, sigma) = self.space.decode(&z);
        let model = self.space.model(h, theta, sigma);
        let params = vec![
            NamedTensor::new("hurst", &[1], vec![h]),
            NamedTensor::new("theta", &[1], vec![theta]),
            NamedTensor::new("sigma", &[1], vec![sigma]),
            NamedTensor::new("omega", &[model.omega.len()], model.omega.clone()),
            NamedTensor::new("gammas", &[model.gammas.len()], model.gammas.clone()),
        ];
        let text = model_text(&self.space, &self.data, h, theta, sigma, -nll);
        artifacts::write_run(dir, &params, &data_tensors(&self.data), &text)
    }
}

/// The observations as tensors (paths x observations).
pub fn data_tensors(d: &Dataset) -> Vec<NamedTensor> {
    let flat = |v: &[Vec<f64>]| v.iter().flatten().copied().collect::<Vec<f64>>();
    let m = d.train[0].len();
    vec![
        NamedTensor::new("y_train", &[d.train.len(), m], flat(&d.train)),
        NamedTensor::new("y_heldout", &[d.heldout.len(), m], flat(&d.heldout)),
    ]
}

/// MODEL.txt: how to recompute the log-likelihoods from the artifacts.
pub fn model_text(
    space: &ModelSpace,
    d: &Dataset,
    h: f64,
    theta: f64,
    sigma: f64,
    loglik: f64,
) -> String {
    format!(
        "fractional OU data: true H {}, theta {}, observation noise sd {}, observed every {} \
         (y_train, y_heldout: paths x observations, t = dt, 2 dt, ...)\n\
         model: state s = (X, Y_1..Y_K), ds = A s dt + b dW with A = [[-theta, -sigma \
         (omega*gammas)'], [0, -diag(gammas)]], b = (sigma sum(omega), 1, ..., 1); X(0) = 0, \
         Y(0) ~ N(0, 1/(g_i + g_j)) (type-I Markov approximation of fBM; K = {} components, \
         K = 0 is the BM-driven OU); y = X + N(0, sd^2)\n\
         exact discretisation over dt (Van Loan) and a Kalman filter give the log-likelihood\n\
         fitted: H {h:.5}, theta {theta:.5}, sigma {sigma:.5}; training log-likelihood per \
         observation {loglik:.6}\n",
        d.hurst,
        d.theta,
        space.r.sqrt(),
        d.dt_obs,
        space.gammas.len()
    )
}

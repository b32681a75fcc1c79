//! "Scale Mixtures of Neural Network Gaussian Processes" (Lee, Yun, Yang, Lee, ICLR 2022): an
//! inverse-gamma prior on the last-layer variance sigma_v^2 of an infinitely wide network turns
//! its NNGP into a Student-t process; the claim is that the heavier tails give a better
//! predictive log-likelihood out of distribution at no in-distribution cost.
//!
//! Host only, in closed form (f64, nalgebra's Cholesky): the ReLU NNGP kernel (`kernel`) and
//! conjugate one-hot regression ("classification with a Gaussian likelihood", `posterior`) on
//! the digits. Nothing is trained with dfdx, so the run ignores the device choice. One run is
//! one arm (how sigma_v^2 is treated) and one seed; a step fits the next training size n and
//! evaluates every test set (clean, noise, rotation, flip, held-out classes).

pub mod bench;
pub mod kernel;
pub mod posterior;
pub mod shifts;
mod verdict;

use std::collections::BTreeMap;

use nalgebra::DMatrix;
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::driver::{self, Evaluation, Schedule, Trainer};
use super::profile::{DeviceCase, Profile};
use super::{Experiment, FinishedRun, RunContext, RunEnd, RunStop};
use crate::artifacts::{self, NamedTensor};
use crate::datasets::{self, DIGIT_CLASSES, DIGIT_PIXELS};
use crate::metrics::MetricSpec;
use crate::params::{ParamKind, ParamSpec, ParamValue, Params};
use crate::verdict::Verdict;
use kernel::ReluNngp;
use posterior::{nll_per_output, Fit, Scale};

pub struct SmNngp;

/// The training sizes (those up to `max_n` are fitted, in order).
pub const SIZES: [usize; 4] = [30, 100, 300, 1000];
/// The relative noise levels eps / mean diag K the marginal likelihood picks from: the spec's
/// {1e-3, 1e-2, 1e-1, 0.3} and, because the marginal likelihood picks its smallest value from
/// n = 100 on, two smaller ones.
pub const EPS_GRID: [f64; 6] = [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 0.3];
/// The classes left out of training for the `heldout` set.
pub const HELDOUT: [usize; 3] = [1, 4, 8];
/// The test sets, in the order they are reported.
pub const SETS: [&str; 5] = ["clean", "noise", "rot", "flip", "heldout"];
/// The shifted sets (the claim's).
pub const SHIFTED: [&str; 4] = ["noise", "rot", "flip", "heldout"];
/// Targets: one-hot minus this.
pub const TARGET_SHIFT: f64 = 0.1;

/// Live metric names per set: (nll, nll of the ML-II baseline, dnll, acc, tails).
const NAMES: [[&str; 5]; 5] = [
    [
        "nll_clean",
        "nll_clean_ml2",
        "dnll_clean",
        "acc_clean",
        "tails_clean",
    ],
    [
        "nll_noise",
        "nll_noise_ml2",
        "dnll_noise",
        "acc_noise",
        "tails_noise",
    ],
    ["nll_rot", "nll_rot_ml2", "dnll_rot", "acc_rot", "tails_rot"],
    [
        "nll_flip",
        "nll_flip_ml2",
        "dnll_flip",
        "acc_flip",
        "tails_flip",
    ],
    [
        "nll_heldout",
        "nll_heldout_ml2",
        "dnll_heldout",
        "acc_heldout",
        "tails_heldout",
    ],
];

/// The training sizes a run fits.
pub fn sizes(p: &Params) -> Vec<usize> {
    let max = p.usize("max_n");
    let v: Vec<usize> = SIZES.iter().copied().filter(|&n| n <= max).collect();
    if v.is_empty() {
        vec![SIZES[0]]
    } else {
        v
    }
}

/// How a run's parameters treat sigma_v^2.
pub fn scale_of(p: &Params) -> Scale {
    let (a, b) = (p.f64("a"), p.f64("b"));
    match p.text("prior") {
        "fixed" => Scale::Fixed(p.f64("sigma2")),
        "ml2" => Scale::Ml2,
        _ if !p.bool("heavy_tails") => Scale::InverseGammaPlugIn { a, b },
        _ => Scale::InverseGamma { a, b },
    }
}

impl Experiment for SmNngp {
    fn kind(&self) -> &'static str {
        "sm-nngp"
    }

    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::choice(
                "prior",
                &["fixed", "ml2", "inverse-gamma"],
                "inverse-gamma",
                "last-layer variance sigma_v^2: fixed (sigma2), type-II ML (q / nC), or \
                 InvGamma(a, b) (the Student-t process)",
            ),
            ParamSpec::float("sigma2", 1.0, 1e-6, 1e6, "fixed: sigma_v^2"),
            ParamSpec::float("a", 2.0, 1e-3, 1e9, "inverse-gamma: shape a (df 2a)"),
            ParamSpec::float("b", 2.0, 1e-6, 1e9, "inverse-gamma: scale b"),
            ParamSpec {
                name: "heavy_tails",
                kind: ParamKind::Bool,
                default: ParamValue::Bool(true),
                help: "inverse-gamma: the Student-t predictive; false plugs the t's scale \
                       (b + q/2) / (a + nC/2) into a Gaussian (the tails switched off)",
            },
            ParamSpec::int("depth", 3, 0, 20, "ReLU layers of the NNGP kernel"),
            ParamSpec::float("sw2", 2.0, 1e-6, 1e3, "weight variance s_w^2"),
            ParamSpec::float("sb2", 0.1, 0.0, 1e3, "bias variance s_b^2"),
            ParamSpec::int(
                "max_n",
                1000,
                30,
                1000,
                "the largest training size fitted (sizes 30, 100, 300, 1000 up to it)",
            ),
            ParamSpec::int(
                "verdict_n",
                300,
                30,
                1000,
                "the training size the verdict compares at",
            ),
            ParamSpec::int("n_test", 500, 50, 1000, "test images per seed"),
            ParamSpec::float(
                "noise_sigma",
                0.5,
                0.0,
                10.0,
                "noise set: std of the Gaussian added to the [0, 1] pixels",
            ),
            ParamSpec::float("rot_degrees", 45.0, -180.0, 180.0, "rot set: rotation"),
            ParamSpec::int("log_every", 1, 1, 1_000_000, "sizes between measurements"),
        ]
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        let unit = "nats per output, x = training size index (30, 100, 300, 1000)";
        let mut m = vec![
            MetricSpec::new(
                "dnll_heldout",
                "NLL(this arm) - NLL(NNGP, ML-II scale), held-out classes (< 0: claim)",
            )
            .unit(unit)
            .reference("zero"),
            MetricSpec::new("dnll_flip", "NLL(arm) - NLL(ML-II), flipped digits")
                .unit(unit)
                .reference("zero"),
            MetricSpec::new("dnll_rot", "NLL(arm) - NLL(ML-II), rotated digits")
                .unit(unit)
                .reference("zero"),
            MetricSpec::new("dnll_noise", "NLL(arm) - NLL(ML-II), noisy digits")
                .unit(unit)
                .reference("zero"),
            MetricSpec::new("dnll_clean", "NLL(arm) - NLL(ML-II), clean test digits")
                .unit(unit)
                .reference("zero"),
        ];
        // (nll label, ML-II nll label, accuracy label, tails label) per set, in SETS order.
        const LABELS: [[&str; 4]; 5] = [
            [
                "test NLL per output, clean test digits",
                "test NLL per output of the ML-II NNGP, clean test digits",
                "accuracy of the predictive mean, clean test digits",
                "inverse gamma: NLL(t) - NLL(Gaussian with the t's scale), clean",
            ],
            [
                "test NLL per output, noisy digits",
                "test NLL per output of the ML-II NNGP, noisy digits",
                "accuracy of the predictive mean, noisy digits",
                "inverse gamma: NLL(t) - NLL(Gaussian with the t's scale), noise",
            ],
            [
                "test NLL per output, rotated digits",
                "test NLL per output of the ML-II NNGP, rotated digits",
                "accuracy of the predictive mean, rotated digits",
                "inverse gamma: NLL(t) - NLL(Gaussian with the t's scale), rot",
            ],
            [
                "test NLL per output, flipped digits",
                "test NLL per output of the ML-II NNGP, flipped digits",
                "accuracy of the predictive mean, flipped digits",
                "inverse gamma: NLL(t) - NLL(Gaussian with the t's scale), flip",
            ],
            [
                "test NLL per output, held-out classes 1, 4, 8",
                "test NLL per output of the ML-II NNGP, held-out classes",
                "accuracy of the predictive mean, held-out classes (0: never trained on)",
                "inverse gamma: NLL(t) - NLL(Gaussian with the t's scale), heldout",
            ],
        ];
        for (i, [l_nll, l_ml2, l_acc, l_tails]) in LABELS.into_iter().enumerate() {
            let [nll, ml2, _, acc, tails] = NAMES[i];
            m.push(MetricSpec::new(nll, l_nll).unit("nats").reference(ml2));
            m.push(MetricSpec::new(ml2, l_ml2));
            m.push(MetricSpec::new(acc, l_acc));
            m.push(MetricSpec::new(tails, l_tails));
        }
        m.extend([
            MetricSpec::new("zero", "reference line 0"),
            MetricSpec::new("df_posterior", "posterior degrees of freedom 2a + nC"),
            MetricSpec::new("scale2_ml2", "ML-II scale q / (nC)").log(),
            MetricSpec::new("scale2_tp", "t scale (b + q/2) / (a + nC/2)").log(),
            MetricSpec::new("scale2", "this arm's sigma_v^2").log(),
            MetricSpec::new(
                "eps_rel",
                "noise eps / mean diag K picked by the marginal likelihood",
            )
            .log(),
            MetricSpec::new("n_train", "training size n"),
            MetricSpec::new("log_ml", "log marginal likelihood per output (ML-II scale)"),
        ]);
        m
    }

    fn table_metrics(&self) -> Vec<&'static str> {
        vec![
            "nll_clean_n300",
            "nll_noise_n300",
            "nll_rot_n300",
            "nll_flip_n300",
            "nll_heldout_n300",
            "dnll_heldout_n300",
            "acc_clean_n300",
            "scale2_n300",
        ]
    }

    fn total_steps(&self, params: &Params) -> u64 {
        sizes(params).len() as u64 - 1
    }

    fn builtin_presets(&self) -> &'static [(&'static str, &'static str)] {
        &[(
            "presets/sm-nngp.toml",
            include_str!("../../../presets/sm-nngp.toml"),
        )]
    }

    fn verdict_bar(&self) -> Option<(&'static str, Option<&'static str>)> {
        Some(("nll_heldout_n300", None))
    }

    fn quick_profile(&self) -> Profile {
        Profile {
            preset: "sm-nngp",
            arms: &["nngp-fixed", "nngp-ml2", "sm-nngp"],
            seeds: &[0, 1, 2],
            overrides: &[("max_n", "300")],
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
        let n = p.usize("verdict_n");
        if !sizes(p).contains(&n) {
            return Err(format!(
                "`verdict_n` ({n}) must be one of the fitted sizes {:?} (max_n {})",
                sizes(p),
                p.usize("max_n")
            ));
        }
        Ok(())
    }

    fn memory(&self, p: &Params) -> crate::engine::memory::Estimate {
        let pool = (1797 - p.usize("n_test")) as f64;
        let n = *sizes(p).last().unwrap_or(&1000) as f64;
        let m = 5.0 * p.usize("n_test") as f64;
        crate::engine::memory::Estimate::of(&[(
            8.0 * (pool * pool + pool * m + 4.0 * n * n + 2.0 * n * m),
            format!(
                "the pool kernel ({pool} x {pool}), test kernel rows and K_y^-1 at n {n} (f64)"
            ),
        )])
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<RunEnd, RunStop> {
        // Host numerics: the device choice does not apply.
        let p = ctx.params.clone();
        let mut run = NngpRun::new(&p, ctx.seed);
        ctx.log(format!(
            "pool {} / test {} digits ({} held-out-class test images), sizes {:?}, {:?}",
            run.pool_labels.len(),
            run.test_labels.len(),
            run.heldout_test.len(),
            run.sizes,
            run.scale
        ));
        let schedule = Schedule {
            steps: run.sizes.len() as u64 - 1,
            log_every: p.usize("log_every").max(1) as u64,
            blowup: None,
        };
        driver::drive(ctx, schedule, &mut run)
    }

    fn verdict(&self, claim: &str, preset_id: &str, runs: &[FinishedRun]) -> Verdict {
        verdict::compute(claim, preset_id, runs)
    }
}

/// One-hot rows minus [`TARGET_SHIFT`].
pub fn targets(labels: &[usize]) -> DMatrix<f64> {
    DMatrix::from_fn(labels.len(), DIGIT_CLASSES, |i, c| {
        f64::from(u8::from(labels[i] == c)) - TARGET_SHIFT
    })
}

/// What one training size measured.
#[derive(Clone, Debug, Default)]
pub struct SizeResult {
    pub n: usize,
    /// Training size of the held-out-class fit (fewer when the pool runs out).
    pub n_heldout: usize,
    /// Per set: (nll of this arm, nll of ML-II, accuracy, tails effect or NaN).
    pub sets: Vec<(f64, f64, f64, f64)>,
    pub scale2: f64,
    pub scale2_ml2: f64,
    pub scale2_tp: f64,
    pub df_posterior: f64,
    pub eps_rel: f64,
    /// The held-out-class fit's eps and ML-II scale.
    pub eps_rel_heldout: f64,
    pub scale2_ml2_heldout: f64,
    pub log_ml: f64,
}

/// A test set: inputs' kernel rows against the pool, prior variances, targets, labels.
struct TestSet {
    k_pool: DMatrix<f64>,
    k_ss: Vec<f64>,
    y: DMatrix<f64>,
    labels: Vec<usize>,
    x: Vec<f64>,
}

/// The last fit's arrays, for the artifacts.
struct LastFit {
    n: usize,
    train_idx: Vec<usize>,
    fit: Fit,
    means: Vec<DMatrix<f64>>,
    vars: Vec<Vec<f64>>,
}

/// One run's state.
pub struct NngpRun {
    pub scale: Scale,
    pub sizes: Vec<usize>,
    kernel: ReluNngp,
    pool_x: Vec<f64>,
    pub pool_labels: Vec<usize>,
    pool_k: DMatrix<f64>,
    pub test_labels: Vec<usize>,
    /// Indices of the clean test images of the held-out classes.
    pub heldout_test: Vec<usize>,
    sets: Vec<TestSet>,
    pub results: Vec<SizeResult>,
    last: Option<LastFit>,
    a: f64,
    b: f64,
}

impl NngpRun {
    pub fn new(p: &Params, seed: u64) -> NngpRun {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5EED_00A6);
        let d = datasets::digits(1.0, &mut rng);
        let n_test = p.usize("n_test");
        let total = d.y_train.len();
        let n_pool = total - n_test;
        let all: Vec<f64> = d.x_train.iter().map(|&v| v as f64).collect();
        let pool_labels = d.y_train[..n_pool].to_vec();
        // Only the pool images some training set uses enter the kernel.
        let largest = *sizes(p).last().unwrap_or(&SIZES[0]);
        let kept = (0..n_pool)
            .filter(|&i| !HELDOUT.contains(&pool_labels[i]))
            .take(largest)
            .last()
            .map_or(0, |i| i + 1);
        let n_pool = largest.max(kept).min(n_pool);
        let pool_labels = pool_labels[..n_pool].to_vec();
        let pool_x = all[..n_pool * DIGIT_PIXELS].to_vec();
        let test_x = all[(total - n_test) * DIGIT_PIXELS..].to_vec();
        let test_labels = d.y_train[total - n_test..].to_vec();
        let kernel = ReluNngp {
            depth: p.usize("depth"),
            sw2: p.f64("sw2"),
            sb2: p.f64("sb2"),
        };
        let pool_k = kernel.matrix(&pool_x, &pool_x, DIGIT_PIXELS);
        let heldout_test: Vec<usize> = (0..test_labels.len())
            .filter(|&i| HELDOUT.contains(&test_labels[i]))
            .collect();
        let inputs = [
            test_x.clone(),
            shifts::noisy(&test_x, p.f64("noise_sigma"), &mut rng),
            shifts::rotated(&test_x, p.f64("rot_degrees")),
            shifts::flipped(&test_x),
            heldout_test
                .iter()
                .flat_map(|&i| {
                    test_x[i * DIGIT_PIXELS..(i + 1) * DIGIT_PIXELS]
                        .iter()
                        .copied()
                })
                .collect(),
        ];
        let sets = inputs
            .into_iter()
            .enumerate()
            .map(|(k, x)| {
                let labels: Vec<usize> = if k == 4 {
                    heldout_test.iter().map(|&i| test_labels[i]).collect()
                } else {
                    test_labels.clone()
                };
                TestSet {
                    k_pool: kernel.matrix(&pool_x, &x, DIGIT_PIXELS),
                    k_ss: kernel.diag(&x, DIGIT_PIXELS),
                    y: targets(&labels),
                    labels,
                    x,
                }
            })
            .collect();
        NngpRun {
            scale: scale_of(p),
            sizes: sizes(p),
            kernel,
            pool_x,
            pool_labels,
            pool_k,
            test_labels,
            heldout_test,
            sets,
            results: Vec::new(),
            last: None,
            a: p.f64("a"),
            b: p.f64("b"),
        }
    }

    /// Fits a training set (indices into the pool).
    fn fit(&self, idx: &[usize]) -> Result<Fit, RunStop> {
        let k = self.pool_k.select_rows(idx).select_columns(idx);
        let labels: Vec<usize> = idx.iter().map(|&i| self.pool_labels[i]).collect();
        Fit::new(&k, &targets(&labels), &EPS_GRID).ok_or_else(|| {
            RunStop::Failed(format!(
                "the kernel of {} training points is not positive definite",
                idx.len()
            ))
        })
    }

    /// Fits the next training size and evaluates every test set.
    pub fn fit_next(&mut self) -> Result<&SizeResult, RunStop> {
        let n = self.sizes[self.results.len()];
        let full: Vec<usize> = (0..n.min(self.pool_labels.len())).collect();
        let kept: Vec<usize> = (0..self.pool_labels.len())
            .filter(|&i| !HELDOUT.contains(&self.pool_labels[i]))
            .take(n)
            .collect();
        let fit = self.fit(&full)?;
        let fit_h = self.fit(&kept)?;
        let plug_in = match self.scale {
            Scale::InverseGamma { a, b } => Some(Scale::InverseGammaPlugIn { a, b }),
            _ => None,
        };
        let mut sets = Vec::new();
        let (mut means, mut vars) = (Vec::new(), Vec::new());
        for (k, set) in self.sets.iter().enumerate() {
            let (f, idx) = if k == 4 {
                (&fit_h, &kept)
            } else {
                (&fit, &full)
            };
            let k_star = set.k_pool.select_rows(idx);
            let (mean, var) = f.predict(&k_star, &set.k_ss);
            let nll = nll_per_output(self.scale, f, &set.y, &mean, &var);
            let ml2 = nll_per_output(Scale::Ml2, f, &set.y, &mean, &var);
            let tails = plug_in
                .map(|s| nll - nll_per_output(s, f, &set.y, &mean, &var))
                .unwrap_or(f64::NAN);
            let hits = (0..set.y.nrows())
                .filter(|&i| mean.row(i).transpose().imax() == set.labels[i])
                .count();
            sets.push((nll, ml2, hits as f64 / set.y.nrows() as f64, tails));
            means.push(mean);
            vars.push(var);
        }
        let (a2, b2) = fit.inv_gamma_posterior(self.a, self.b);
        let nc = (fit.n * fit.outputs) as f64;
        let result = SizeResult {
            n,
            n_heldout: kept.len(),
            sets,
            scale2: self.scale.scale2(&fit),
            scale2_ml2: fit.scale2_ml2(),
            scale2_tp: b2 / a2,
            df_posterior: 2.0 * a2,
            eps_rel: fit.eps_rel,
            eps_rel_heldout: fit_h.eps_rel,
            scale2_ml2_heldout: fit_h.scale2_ml2(),
            log_ml: fit.log_ml / nc,
        };
        self.last = Some(LastFit {
            n,
            train_idx: full,
            fit,
            means,
            vars,
        });
        self.results.push(result);
        Ok(self.results.last().expect("just pushed"))
    }
}

impl Trainer for NngpRun {
    fn evaluate(&mut self, step: u64, _last: bool) -> Result<Evaluation, RunStop> {
        while self.results.len() <= step as usize {
            self.fit_next()?;
        }
        let r = &self.results[step as usize];
        let mut values = vec![("zero", 0.0)];
        for (k, &(nll, ml2, acc, tails)) in r.sets.iter().enumerate() {
            let [n_nll, n_ml2, n_d, n_acc, n_tails] = NAMES[k];
            values.extend([(n_nll, nll), (n_ml2, ml2), (n_d, nll - ml2), (n_acc, acc)]);
            if tails.is_finite() {
                values.push((n_tails, tails));
            }
        }
        values.extend([
            ("df_posterior", r.df_posterior),
            ("scale2_ml2", r.scale2_ml2),
            ("scale2_tp", r.scale2_tp),
            ("scale2", r.scale2),
            ("eps_rel", r.eps_rel),
            ("n_train", r.n as f64),
            ("log_ml", r.log_ml),
        ]);
        if values.iter().any(|v| !v.1.is_finite()) {
            let bad: Vec<&str> = values
                .iter()
                .filter(|v| !v.1.is_finite())
                .map(|v| v.0)
                .collect();
            return Err(RunStop::Diverged {
                step,
                reason: format!("non-finite {bad:?} at n {}", r.n),
            });
        }
        Ok(Evaluation::new(values))
    }

    fn step(&mut self, _step: u64) -> Result<f64, RunStop> {
        let r = self.fit_next()?;
        Ok(-r.log_ml)
    }

    fn finish(&mut self, final_values: &mut BTreeMap<String, f64>, _steps: u64) {
        for r in &self.results {
            let n = r.n;
            for (k, set) in SETS.iter().enumerate() {
                let (nll, ml2, acc, tails) = r.sets[k];
                final_values.insert(format!("nll_{set}_n{n}"), nll);
                final_values.insert(format!("nll_{set}_ml2_n{n}"), ml2);
                final_values.insert(format!("dnll_{set}_n{n}"), nll - ml2);
                final_values.insert(format!("acc_{set}_n{n}"), acc);
                if tails.is_finite() {
                    final_values.insert(format!("tails_{set}_n{n}"), tails);
                }
            }
            final_values.insert(format!("scale2_n{n}"), r.scale2);
            final_values.insert(format!("scale2_ml2_n{n}"), r.scale2_ml2);
            final_values.insert(format!("df_posterior_n{n}"), r.df_posterior);
            final_values.insert(format!("eps_rel_n{n}"), r.eps_rel);
            final_values.insert(format!("eps_rel_heldout_n{n}"), r.eps_rel_heldout);
            final_values.insert(format!("scale2_ml2_heldout_n{n}"), r.scale2_ml2_heldout);
            final_values.insert(format!("n_heldout_train_n{n}"), r.n_heldout as f64);
        }
    }

    fn write_artifacts(&self, dir: &std::path::Path) -> std::io::Result<()> {
        let Some(last) = &self.last else {
            return Ok(());
        };
        let row_major = |m: &DMatrix<f64>| -> Vec<f64> {
            (0..m.nrows())
                .flat_map(|i| (0..m.ncols()).map(move |j| m[(i, j)]))
                .collect()
        };
        let n = last.n.min(last.train_idx.len());
        let x_train: Vec<f64> = last
            .train_idx
            .iter()
            .flat_map(|&i| {
                self.pool_x[i * DIGIT_PIXELS..(i + 1) * DIGIT_PIXELS]
                    .iter()
                    .copied()
            })
            .collect();
        let labels: Vec<usize> = last
            .train_idx
            .iter()
            .map(|&i| self.pool_labels[i])
            .collect();
        let f = &last.fit;
        let params = vec![
            NamedTensor::new("alpha", &[n, DIGIT_CLASSES], row_major(&f.alpha)),
            NamedTensor::new("eps", &[1], vec![f.eps]),
            NamedTensor::new("q", &[1], vec![f.q]),
            NamedTensor::new("scale2", &[1], vec![self.scale.scale2(f)]),
        ];
        let mut data = vec![
            NamedTensor::new("x_train", &[n, DIGIT_PIXELS], x_train),
            NamedTensor::new("y_train", &[n, DIGIT_CLASSES], row_major(&targets(&labels))),
        ];
        for (k, set) in self.sets.iter().enumerate().take(4) {
            let name = SETS[k];
            let m = set.labels.len();
            data.push(NamedTensor::new(
                &format!("x_{name}"),
                &[m, DIGIT_PIXELS],
                set.x.clone(),
            ));
            data.push(NamedTensor::new(
                &format!("y_{name}"),
                &[m, DIGIT_CLASSES],
                row_major(&set.y),
            ));
            data.push(NamedTensor::new(
                &format!("mean_{name}"),
                &[m, DIGIT_CLASSES],
                row_major(&last.means[k]),
            ));
            data.push(NamedTensor::new(
                &format!("var_{name}"),
                &[m],
                last.vars[k].clone(),
            ));
        }
        let text = format!(
            "closed-form ReLU NNGP regression on one-hot digits targets (one-hot - {TARGET_SHIFT}), \
             n = {n} training images (the last size fitted)\n\
             kernel: {:?} (arc-cosine recursion, input K0 = sb2 + sw2 x.x'/64, x = pixels / 16)\n\
             K_y = K(x_train, x_train) + eps I; alpha = K_y^-1 y_train; q = sum(y_train * alpha)\n\
             mean_<set> = K(x_<set>, x_train) alpha; var_<set> = k(x, x) + eps - k*' K_y^-1 k* \
             (unscaled)\n\
             predictive of a test row y (10 outputs): {:?}\n\
             \x20 Fixed(s) / Ml2 (s = q / (10 n)): N(mean, s var I)\n\
             \x20 InverseGamma {{a, b}}: multivariate t with 2a + 10n df, scale (b + q/2) / (a + 10n/2) \
             var\n\
             nll_<set> = -mean over rows of ln p(y) / 10 (nats per output); clean / noise / rot / \
             flip are stored (the heldout fit trains without classes 1, 4, 8)\n",
            self.kernel, self.scale
        );
        artifacts::write_run(dir, &params, &data, &text)
    }
}

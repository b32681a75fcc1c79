//! "Target-based Surrogates for Stochastic Optimization" (Lavington, Vaswani, Babanezhad,
//! Schmidt, Le Roux, ICML 2023): one expensive gradient in target space (the logits) builds a
//! surrogate that several cheap inner steps minimise; the claim is that this needs fewer
//! expensive gradient calls than SGD to reach a given training loss.
//!
//! Softmax regression on the digits (65 features with the bias, 10 classes) on the host in f64
//! (`surrogate`): the model is linear, so every step is a small dense product and nothing is
//! trained on a dfdx device; the run ignores the device choice. One training step is one
//! expensive call (one batch's `grad_z l`), for SGD and SSO alike.

pub mod bench;
pub mod surrogate;
mod verdict;

use nalgebra::DMatrix;
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::classifier::{DigitsSplit, EpochBatches};
use super::driver::{self, Evaluation, Schedule, Trainer};
use super::profile::{DeviceCase, Profile};
use super::{Experiment, FinishedRun, RunContext, RunEnd, RunStop};
use crate::artifacts::{self, NamedTensor};
use crate::datasets::{DIGIT_CLASSES, DIGIT_PIXELS};
use crate::metrics::MetricSpec;
use crate::params::{ParamSpec, Params};
use crate::verdict::Verdict;
use surrogate::{cross_entropy, target_gradient, Surrogate};

pub struct SsoSurrogate;

/// Features: 64 pixels and a bias column.
pub const FEATURES: usize = DIGIT_PIXELS + 1;
/// Training-loss thresholds whose first crossing is recorded (`calls_to_<thr>`).
pub const THRESHOLDS: [(f64, &str); 3] = [
    (0.3, "calls_to_0.3"),
    (0.15, "calls_to_0.15"),
    (0.08, "calls_to_0.08"),
];

impl Experiment for SsoSurrogate {
    fn kind(&self) -> &'static str {
        "sso-surrogate"
    }

    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::choice(
                "method",
                &["sgd", "sso", "sso-exact"],
                "sso",
                "SGD on W; SSO with inner_steps gradient steps on the surrogate; SSO with the \
                 surrogate's exact minimiser",
            ),
            ParamSpec::float("lr", 10.0, 1e-6, 1e6, "SGD: step alpha on W"),
            ParamSpec::float(
                "eta",
                8.0,
                1e-6,
                1e6,
                "SSO: target-space step eta of the surrogate (majorises the batch loss when \
                 eta <= 2)",
            ),
            ParamSpec::int(
                "inner_steps",
                5,
                1,
                100_000,
                "SSO: cheap gradient steps of size 1/L_h on the surrogate per expensive call",
            ),
            ParamSpec::int("batch", 128, 1, 1437, "examples per expensive call"),
            ParamSpec::int("steps", 300, 1, 1_000_000, "expensive calls K"),
            ParamSpec::int("log_every", 1, 1, 1_000_000, "calls between measurements"),
            ParamSpec::int(
                "eval_every",
                10,
                1,
                1_000_000,
                "calls between test-accuracy measurements",
            ),
        ]
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        vec![
            MetricSpec::new("train_loss", "training loss (full batch CE)")
                .unit("nats, x = expensive calls")
                .log(),
            MetricSpec::new("test_acc", "test accuracy").unit("fraction"),
            MetricSpec::new("inner_steps_total", "cheap inner gradient steps so far"),
            MetricSpec::new(
                "surrogate_gap",
                "h_t(W_(t+1)) - l_batch(W_(t+1)) (>= 0: the surrogate majorises)",
            ),
            MetricSpec::new("batch_loss", "batch loss at the expensive call").log(),
            MetricSpec::new("calls_to_0.3", "expensive calls to train loss 0.3"),
            MetricSpec::new("calls_to_0.15", "expensive calls to train loss 0.15"),
            MetricSpec::new("calls_to_0.08", "expensive calls to train loss 0.08"),
        ]
    }

    fn table_metrics(&self) -> Vec<&'static str> {
        vec![
            "train_loss",
            "test_acc",
            "calls_to_0.15",
            "calls_to_0.08",
            "inner_steps_total",
            "surrogate_gap_min",
        ]
    }

    fn builtin_presets(&self) -> &'static [(&'static str, &'static str)] {
        &[(
            "presets/sso-surrogate.toml",
            include_str!("../../../presets/sso-surrogate.toml"),
        )]
    }

    fn verdict_bar(&self) -> Option<(&'static str, Option<&'static str>)> {
        Some(("train_loss", None))
    }

    fn quick_profile(&self) -> Profile {
        Profile {
            preset: "sso-surrogate",
            arms: &[
                "sgd-lr3",
                "sgd-lr10",
                "sgd-lr20",
                "sgd-lr30",
                "sgd-lr60",
                "sso-eta2-m5",
                "sso-eta8-m1",
                "sso-eta8-m5",
                "sso-eta8-m20",
                "sso-eta32-m1",
                "sso-eta32-m5",
                "sso-eta32-m20",
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

    fn memory(&self, _p: &Params) -> crate::engine::memory::Estimate {
        crate::engine::memory::Estimate::of(&[(
            8.0 * 1797.0 * (FEATURES + 2 * DIGIT_CLASSES) as f64,
            "digits features, logits and probabilities (f64)".to_string(),
        )])
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<RunEnd, RunStop> {
        // Host numerics: the device choice does not apply.
        let p = ctx.params.clone();
        let mut run = SsoRun::new(&p, ctx.seed);
        ctx.log(format!(
            "{} training / {} test digits, batch {}, {} expensive calls, method {}",
            run.y_train.len(),
            run.y_test.len(),
            run.batch_size,
            p.usize("steps"),
            p.text("method")
        ));
        let schedule = Schedule {
            blowup: Some(50.0),
            ..Schedule::from_params(&p)
        };
        driver::drive(ctx, schedule, &mut run)
    }

    fn verdict(&self, claim: &str, preset_id: &str, runs: &[FinishedRun]) -> Verdict {
        verdict::compute(claim, preset_id, runs)
    }
}

/// Rows of x/16 with a trailing bias column of ones.
fn features(pixels: &[f32]) -> DMatrix<f64> {
    let n = pixels.len() / DIGIT_PIXELS;
    DMatrix::from_fn(n, FEATURES, |i, j| {
        if j < DIGIT_PIXELS {
            pixels[i * DIGIT_PIXELS + j] as f64
        } else {
            1.0
        }
    })
}

/// How one run updates W.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Method {
    Sgd { lr: f64 },
    Sso { eta: f64, m: usize },
    SsoExact { eta: f64 },
}

/// One run's state.
pub struct SsoRun {
    pub method: Method,
    pub w: DMatrix<f64>,
    x_train: DMatrix<f64>,
    pub y_train: Vec<usize>,
    x_test: DMatrix<f64>,
    pub y_test: Vec<usize>,
    batches: EpochBatches,
    pub batch_size: usize,
    eval_every: u64,
    pub calls: u64,
    pub inner_total: u64,
    last_gap: f64,
    min_gap: f64,
    last_batch_loss: f64,
    reached: [Option<u64>; 3],
    test_acc: f64,
}

impl SsoRun {
    pub fn new(p: &Params, seed: u64) -> SsoRun {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x550);
        let split = DigitsSplit::load(0.8, None, &mut rng);
        let method = match p.text("method") {
            "sgd" => Method::Sgd { lr: p.f64("lr") },
            "sso-exact" => Method::SsoExact { eta: p.f64("eta") },
            _ => Method::Sso {
                eta: p.f64("eta"),
                m: p.usize("inner_steps"),
            },
        };
        let n = split.n_train();
        SsoRun {
            method,
            w: DMatrix::zeros(FEATURES, DIGIT_CLASSES),
            x_train: features(&split.x_train),
            x_test: features(&split.x_test),
            batches: EpochBatches::new(n, p.usize("batch"), seed ^ 0xBA7C),
            batch_size: p.usize("batch").min(n),
            y_train: split.y_train,
            y_test: split.y_test,
            eval_every: p.usize("eval_every").max(1) as u64,
            calls: 0,
            inner_total: 0,
            last_gap: f64::NAN,
            min_gap: f64::INFINITY,
            last_batch_loss: f64::NAN,
            reached: [None; 3],
            test_acc: f64::NAN,
        }
    }

    /// The full-batch training loss of the current W.
    pub fn train_loss(&self) -> f64 {
        cross_entropy(&(&self.x_train * &self.w), &self.y_train)
    }

    fn accuracy(&self) -> f64 {
        let z = &self.x_test * &self.w;
        let hits = z
            .row_iter()
            .enumerate()
            .filter(|(i, row)| row.transpose().imax() == self.y_test[*i])
            .count();
        hits as f64 / self.y_test.len() as f64
    }

    /// One expensive call and the update it feeds.
    pub fn outer_step(&mut self) -> f64 {
        let idx = self.batches.next_batch();
        let xb = self.x_train.select_rows(&idx);
        let yb: Vec<usize> = idx.iter().map(|&i| self.y_train[i]).collect();
        let z0 = &xb * &self.w;
        let (g, l0) = target_gradient(&z0, &yb);
        self.calls += 1;
        let (eta, m) = match self.method {
            Method::Sgd { lr } => {
                self.w -= xb.transpose() * &g * lr;
                self.last_batch_loss = l0;
                return l0;
            }
            Method::Sso { eta, m } => (eta, Some(m)),
            Method::SsoExact { eta } => (eta, None),
        };
        let s = Surrogate {
            x: &xb,
            z0,
            g,
            l0,
            eta,
        };
        let w = match m {
            Some(m) => {
                self.inner_total += m as u64;
                s.inner_steps(&self.w, m)
            }
            None => s.exact(&self.w),
        };
        self.last_gap = s.value(&w) - cross_entropy(&(&xb * &w), &yb);
        self.min_gap = self.min_gap.min(self.last_gap);
        self.w = w;
        self.last_batch_loss = l0;
        l0
    }
}

impl Trainer for SsoRun {
    fn evaluate(&mut self, step: u64, last: bool) -> Result<Evaluation, RunStop> {
        let loss = self.train_loss();
        for (k, (thr, _)) in THRESHOLDS.iter().enumerate() {
            if self.reached[k].is_none() && loss <= *thr {
                self.reached[k] = Some(step);
            }
        }
        if step.is_multiple_of(self.eval_every) || last {
            self.test_acc = self.accuracy();
        }
        let mut values = vec![
            ("train_loss", loss),
            ("test_acc", self.test_acc),
            ("inner_steps_total", self.inner_total as f64),
        ];
        if self.last_gap.is_finite() {
            values.push(("surrogate_gap", self.last_gap));
        }
        if self.last_batch_loss.is_finite() {
            values.push(("batch_loss", self.last_batch_loss));
        }
        for (k, (_, name)) in THRESHOLDS.iter().enumerate() {
            if let Some(c) = self.reached[k] {
                values.push((name, c as f64));
            }
        }
        if !loss.is_finite() {
            return Err(RunStop::Diverged {
                step,
                reason: format!("training loss {loss}"),
            });
        }
        Ok(Evaluation::new(values))
    }

    fn step(&mut self, _step: u64) -> Result<f64, RunStop> {
        Ok(self.outer_step())
    }

    fn finish(&mut self, final_values: &mut std::collections::BTreeMap<String, f64>, _steps: u64) {
        final_values.insert("expensive_calls".into(), self.calls as f64);
        if self.min_gap.is_finite() {
            final_values.insert("surrogate_gap_min".into(), self.min_gap);
        }
    }

    fn write_artifacts(&self, dir: &std::path::Path) -> std::io::Result<()> {
        let row_major = |m: &DMatrix<f64>| -> Vec<f64> {
            (0..m.nrows())
                .flat_map(|i| (0..m.ncols()).map(move |j| m[(i, j)]))
                .collect()
        };
        let labels = |v: &[usize]| v.iter().map(|&l| l as f64).collect::<Vec<f64>>();
        let (n, t) = (self.y_train.len(), self.y_test.len());
        let params = vec![NamedTensor::new(
            "W",
            &[FEATURES, DIGIT_CLASSES],
            row_major(&self.w),
        )];
        let data = vec![
            NamedTensor::new("x_train", &[n, FEATURES], row_major(&self.x_train)),
            NamedTensor::new("y_train", &[n], labels(&self.y_train)),
            NamedTensor::new("x_test", &[t, FEATURES], row_major(&self.x_test)),
            NamedTensor::new("y_test", &[t], labels(&self.y_test)),
        ];
        let text = format!(
            "softmax regression on the digits: logits = x @ W (x = pixels/16 and a bias column \
             of ones)\n\
             train_loss = mean over x_train of logsumexp(logits) - logits[y]; test_acc = \
             mean(argmax(x_test @ W) == y_test)\n\
             method: {:?}; {} expensive calls (batch {}), {} cheap inner steps\n",
            self.method, self.calls, self.batch_size, self.inner_total
        );
        artifacts::write_run(dir, &params, &data, &text)
    }
}

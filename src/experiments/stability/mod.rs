//! Wu & Su (ICML 2023), "The Implicit Regularization of Dynamical Stability in Stochastic
//! Gradient Descent": a minimum that is linearly stable for SGD has tr(H) <= 2/eta, while GD's
//! stability bounds only lambda_max(H) by 2/eta.
//!
//! One run trains one model (two-layer ReLU net on a teacher, or diagonal linear net on sparse
//! regression) with GD or SGD at one learning rate and measures, at every logging step, the
//! losses, the Hessian trace (Hutchinson, finite-difference HVPs of dfdx gradients), the exact
//! Gauss-Newton trace, lambda_max (power iteration), 2/eta and the model's parameter norm.

pub mod bench;
pub mod data;
pub mod models;
mod verdict;

use dfdx::prelude::*;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::driver::{self, Evaluation, Schedule, Trainer};
use super::profile::{DeviceCase, Profile};
use super::{Experiment, FinishedRun, RunContext, RunEnd, RunStop};
use crate::artifacts::{self, NamedTensor};
use crate::metrics::hessian::{hutchinson_trace, lanczos};
use crate::metrics::MetricSpec;
use crate::nn::curvature::{fd_hvp, DeviceSpace};
use crate::nn::{ParamStore, ParamVec};
use crate::params::{ParamKind, ParamSpec, ParamValue, Params};
use crate::verdict::Verdict;
use data::Dataset;
use models::{Batch, Model};

pub struct SgdStability;

/// Everything one run needs, read from its parameters.
struct Setup {
    model: Model,
    full_batch: bool,
    batch: usize,
    eta: f64,
    steps: u64,
    log_every: u64,
    probes: usize,
    final_probes: usize,
    lanczos_iters: usize,
    fd_step: f64,
    stop_loss: f64,
    diverge_factor: f64,
    train: Dataset,
    test: Dataset,
    theta0: Vec<f64>,
    /// The sparse regression's true vector (diagonal model only).
    beta_star: Vec<f64>,
}

impl Setup {
    fn new(p: &Params, seed: u64) -> Setup {
        // Data and initialization depend on the seed only, so the arms of one seed share them.
        let mut data_rng = StdRng::seed_from_u64(seed ^ 0xDA7A);
        let mut init_rng = StdRng::seed_from_u64(seed ^ 0x1417);
        let dim = p.usize("dim");
        let n_train = p.usize("n_train");
        let n_test = p.usize("n_test");
        let init = p.f64("init_scale");
        let (model, train, test, beta_star, theta0) = match p.text("model") {
            "relu" => {
                let width = p.usize("width");
                let (train, test) = data::relu_teacher(
                    dim,
                    p.usize("teacher_units"),
                    n_train,
                    n_test,
                    &mut data_rng,
                );
                let model = Model::Relu { dim, width };
                let normal = rand_distr::Normal::new(0.0, 1.0).unwrap();
                use rand_distr::Distribution;
                let mut theta: Vec<f64> = Vec::with_capacity(model.num_params());
                for _ in 0..width * dim {
                    theta.push(init * normal.sample(&mut init_rng) / (dim as f64).sqrt());
                }
                for _ in 0..width {
                    theta.push(init * normal.sample(&mut init_rng) / (dim as f64).sqrt());
                }
                (model, train, test, Vec::new(), theta)
            }
            _ => {
                let (train, test, beta) = data::sparse_regression(
                    dim,
                    p.usize("sparsity"),
                    n_train,
                    n_test,
                    &mut data_rng,
                );
                (
                    Model::Diagonal { dim },
                    train,
                    test,
                    beta,
                    vec![init; 2 * dim],
                )
            }
        };
        let full_batch = p.text("optimizer") == "gd";
        Setup {
            model,
            full_batch,
            batch: if full_batch {
                n_train
            } else {
                p.usize("batch").min(n_train)
            },
            eta: p.f64("eta"),
            steps: p.usize("steps") as u64,
            log_every: p.usize("log_every").max(1) as u64,
            probes: p.usize("probes"),
            final_probes: p.usize("final_probes"),
            lanczos_iters: p.usize("lanczos_iters"),
            fd_step: p.f64("fd_step"),
            stop_loss: p.f64("stop_loss"),
            diverge_factor: p.f64("diverge_factor"),
            train,
            test,
            theta0,
            beta_star,
        }
    }
}

/// The second-order measurements at one point.
#[derive(Clone, Copy, Debug)]
pub struct Curvature {
    pub trace: f64,
    pub trace_se: f64,
    pub gn_trace: f64,
    /// The algebraically largest eigenvalue (Lanczos) and its residual bound.
    pub lambda_max: f64,
    pub lambda_residual: f64,
}

/// How hard the curvature estimators work.
#[derive(Clone, Copy, Debug)]
pub struct EstimatorSettings {
    /// Hutchinson probes.
    pub probes: usize,
    /// Lanczos iterations at most (it stops once the top residual is below 1e-6 relative).
    pub lanczos_iters: usize,
    /// Central-difference step along a unit direction.
    pub fd_step: f64,
}

/// Measures the Hessian trace (Hutchinson), the Gauss-Newton trace and lambda_max at the
/// store's parameters; the vectors stay on the device, scalars come back.
pub fn measure_curvature<D: Device<f64>>(
    model: &Model,
    store: &mut ParamStore<f64, D>,
    full: &Batch<D>,
    est: EstimatorSettings,
    rng: &mut StdRng,
) -> Curvature {
    let space = DeviceSpace::of(store);
    let (tr, spectrum) = {
        let mut grad = |s: &ParamStore<f64, D>| model.gradient(s, full);
        let mut hvp = |v: &ParamVec<f64, D>| fd_hvp(store, &mut grad, v, est.fd_step);
        let tr = hutchinson_trace(&space, &mut hvp, est.probes, rng);
        (tr, lanczos(&space, &mut hvp, est.lanczos_iters, 1e-6, rng))
    };
    let top = spectrum.top();
    Curvature {
        trace: tr.value,
        trace_se: tr.std_err,
        gn_trace: model.gauss_newton_trace(store, full),
        lambda_max: top.value,
        lambda_residual: top.std_err,
    }
}

impl Experiment for SgdStability {
    fn kind(&self) -> &'static str {
        "sgd-stability"
    }

    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec {
                name: "model",
                kind: ParamKind::Choice(&["relu", "diagonal"]),
                default: ParamValue::Text("relu".into()),
                help:
                    "two-layer ReLU net on a teacher, or diagonal linear net on sparse regression",
            },
            ParamSpec {
                name: "optimizer",
                kind: ParamKind::Choice(&["gd", "sgd"]),
                default: ParamValue::Text("sgd".into()),
                help:
                    "full-batch GD, or SGD with `batch` samples drawn without replacement per step",
            },
            ParamSpec::int("batch", 1, 1, 1_000_000, "SGD batch size (ignored by GD)"),
            ParamSpec::float("eta", 0.01, 1e-9, 100.0, "learning rate"),
            ParamSpec::int("steps", 20_000, 1, 1_000_000_000, "training steps"),
            ParamSpec::int(
                "log_every",
                500,
                1,
                1_000_000_000,
                "steps between measurements",
            ),
            ParamSpec::int("dim", 5, 1, 100_000, "input dimension d"),
            ParamSpec::int(
                "width",
                20,
                1,
                100_000,
                "hidden units m of the ReLU student",
            ),
            ParamSpec::int(
                "teacher_units",
                2,
                1,
                100_000,
                "hidden units of the ReLU teacher",
            ),
            ParamSpec::int(
                "sparsity",
                3,
                1,
                100_000,
                "non-zeros of the sparse regression vector",
            ),
            ParamSpec::int("n_train", 16, 1, 1_000_000, "training samples"),
            ParamSpec::int("n_test", 500, 1, 10_000_000, "test samples"),
            ParamSpec::float(
                "init_scale",
                1.0,
                0.0,
                1e3,
                "ReLU: weight std multiplier; diagonal: u = v = init_scale",
            ),
            ParamSpec::int(
                "probes",
                16,
                1,
                100_000,
                "Hutchinson probes per measurement",
            ),
            ParamSpec::int(
                "final_probes",
                200,
                1,
                1_000_000,
                "Hutchinson probes at the final point",
            ),
            ParamSpec::int(
                "lanczos_iters",
                40,
                1,
                100_000,
                "Lanczos iterations (at most) for lambda_max, the algebraically largest eigenvalue",
            ),
            ParamSpec::float(
                "fd_step",
                1e-2,
                1e-12,
                1.0,
                "central-difference step (along a unit direction) for Hessian-vector products; \
                 not smaller: (S)GD leaves ReLU pre-activations at the kink, where a tiny step \
                 measures the jump of the gradient instead of the curvature",
            ),
            ParamSpec::float(
                "stop_loss",
                1e-9,
                0.0,
                1e9,
                "end early once the full training loss is below this",
            ),
            ParamSpec::float(
                "converge_loss",
                1e-5,
                0.0,
                1e9,
                "a run counts as converged when its final training loss is below this",
            ),
            ParamSpec::float(
                "diverge_factor",
                1e4,
                1.0,
                1e300,
                "diverged when the training loss exceeds this times its initial value",
            ),
        ]
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        vec![
            MetricSpec::new("train_loss", "train loss").log(),
            MetricSpec::new("test_loss", "test loss").log(),
            MetricSpec::new("hessian_trace", "Hessian trace")
                .reference("two_over_eta")
                .std_err("hessian_trace_se"),
            MetricSpec::new("hessian_trace_se", "trace std. error"),
            MetricSpec::new("gn_trace", "Gauss-Newton trace").reference("two_over_eta"),
            MetricSpec::new("lambda_max", "top eigenvalue").reference("two_over_eta"),
            MetricSpec::new("lambda_residual", "lambda_max residual bound"),
            MetricSpec::new("two_over_eta", "2/eta"),
            MetricSpec::new("param_norm", "parameter norm").unit("path norm or |beta|_1"),
        ]
    }

    fn table_metrics(&self) -> Vec<&'static str> {
        vec![
            "train_loss",
            "test_loss",
            "hessian_trace",
            "hessian_trace_se",
            "gn_trace",
            "lambda_max",
            "lambda_residual",
            "two_over_eta",
            "param_norm",
        ]
    }

    fn validate(&self, p: &Params) -> Result<(), String> {
        if p.text("optimizer") == "sgd" && p.usize("batch") > p.usize("n_train") {
            return Err(format!(
                "batch {} is larger than n_train {}: SGD draws its batch from the training set \
                 without replacement (use optimizer = \"gd\" for the full batch)",
                p.usize("batch"),
                p.usize("n_train")
            ));
        }
        Ok(())
    }

    fn memory(&self, p: &Params) -> crate::engine::memory::Estimate {
        let (dim, n_train, n_test) = (
            p.usize("dim") as f64,
            p.usize("n_train") as f64,
            p.usize("n_test") as f64,
        );
        let width = p.usize("width") as f64;
        // Parameters, gradients and the Lanczos vectors (f64), the data, and the hidden layer
        // on the largest evaluated set.
        let (params, hidden) = match p.text("model") {
            "relu" => (width * dim + width, width * n_train.max(n_test)),
            _ => (2.0 * dim, dim * n_train.max(n_test)),
        };
        let copies = 6.0 + p.usize("lanczos_iters") as f64;
        crate::engine::memory::Estimate::of(&[
            (
                8.0 * params * copies,
                format!(
                    "{} parameters (width {width} x dim {dim}) x {copies} copies",
                    params
                ),
            ),
            (
                8.0 * (n_train + n_test) * dim * 2.0,
                format!("data: (n_train {n_train} + n_test {n_test}) x dim {dim}"),
            ),
            (
                8.0 * hidden * 3.0,
                format!("model outputs and activations: {hidden} values"),
            ),
        ])
    }

    fn builtin_presets(&self) -> &'static [(&'static str, &'static str)] {
        &[(
            "presets/sgd-stability.toml",
            include_str!("../../../presets/sgd-stability.toml"),
        )]
    }

    fn verdict_bar(&self) -> Option<(&'static str, Option<&'static str>)> {
        Some(("hessian_trace", Some("two_over_eta")))
    }

    fn quick_profile(&self) -> Profile {
        // One seed of every arm at the preset's size: about 20 runs of a few thousand steps.
        Profile {
            preset: "sgd-stability",
            arms: &[],
            seeds: &[0],
            overrides: &[],
        }
    }

    fn device_cases(&self) -> Vec<DeviceCase> {
        let profile = |overrides| Profile {
            preset: "sgd-stability",
            arms: &[],
            seeds: &[0],
            overrides,
        };
        vec![
            DeviceCase {
                size: "preset",
                arm: "relu-gd-eta0.1",
                profile: profile(&[("steps", "300"), ("log_every", "100"), ("stop_loss", "0")]),
            },
            DeviceCase {
                size: "large",
                arm: "relu-gd-eta0.1",
                profile: profile(&[
                    ("dim", "64"),
                    ("width", "2048"),
                    ("n_train", "2048"),
                    ("n_test", "2048"),
                    ("steps", "20"),
                    ("log_every", "10"),
                    ("probes", "4"),
                    ("final_probes", "4"),
                    ("lanczos_iters", "4"),
                    ("stop_loss", "0"),
                    ("eta", "0.01"),
                ]),
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

/// Trains one run on the device `dev`.
fn train<D: Device<f64>>(ctx: &mut RunContext<'_>, dev: &D) -> Result<RunEnd, RunStop> {
    let s = Setup::new(ctx.params, ctx.seed);
    let store = s.model.store(dev, &s.theta0);
    let train_all = Batch::from_dataset(dev, &s.train, None);
    let test_all = Batch::from_dataset(dev, &s.test, None);
    let initial_loss = s.model.loss(&store, &train_all);
    ctx.log(format!(
        "{} model, {} params, {} with batch {}, eta {}, initial loss {initial_loss:.4e}",
        s.model.name(),
        s.model.num_params(),
        if s.full_batch { "GD" } else { "SGD" },
        s.batch,
        s.eta
    ));
    let schedule = Schedule {
        steps: s.steps,
        log_every: s.log_every,
        blowup: None,
    };
    let mut run = StabilityRun {
        blowup: s.diverge_factor * initial_loss.max(1e-12),
        converge_loss: ctx.params.f64("converge_loss"),
        sample_rng: StdRng::seed_from_u64(ctx.seed ^ 0x5A3D),
        probe_rng: StdRng::seed_from_u64(ctx.seed ^ 0x9B0E),
        order: (0..s.train.n).collect(),
        cursor: s.train.n, // reshuffle on first use
        opt: crate::nn::Optimizer::new(crate::nn::Rule::sgd(), s.eta),
        store,
        train_all,
        test_all,
        s,
    };
    driver::drive(ctx, schedule, &mut run)
}

/// One run's state between steps.
struct StabilityRun<D: Device<f64>> {
    s: Setup,
    store: ParamStore<f64, D>,
    opt: crate::nn::Optimizer<f64, D>,
    train_all: Batch<D>,
    test_all: Batch<D>,
    blowup: f64,
    converge_loss: f64,
    sample_rng: StdRng,
    probe_rng: StdRng,
    order: Vec<usize>,
    cursor: usize,
}

impl<D: Device<f64>> Trainer for StabilityRun<D> {
    fn evaluate(&mut self, step: u64, last: bool) -> Result<Evaluation, RunStop> {
        let s = &self.s;
        let train_loss = s.model.loss(&self.store, &self.train_all);
        if !train_loss.is_finite() || train_loss > self.blowup {
            return Err(RunStop::Diverged {
                step,
                reason: format!("training loss {train_loss:.3e}"),
            });
        }
        let converged_early = train_loss < s.stop_loss;
        let final_point = last || converged_early;
        let c = measure_curvature(
            &s.model,
            &mut self.store,
            &self.train_all,
            EstimatorSettings {
                probes: if final_point {
                    s.final_probes
                } else {
                    s.probes
                },
                lanczos_iters: s.lanczos_iters,
                fd_step: s.fd_step,
            },
            &mut self.probe_rng,
        );
        let test_loss = s.model.loss(&self.store, &self.test_all);
        Ok(Evaluation {
            values: vec![
                ("train_loss", train_loss),
                ("test_loss", test_loss),
                ("hessian_trace", c.trace),
                ("hessian_trace_se", c.trace_se),
                ("gn_trace", c.gn_trace),
                ("lambda_max", c.lambda_max),
                ("lambda_residual", c.lambda_residual),
                ("two_over_eta", 2.0 / s.eta),
                ("param_norm", s.model.param_norm_on(&self.store)),
            ],
            pictures: Vec::new(),
            stop_early: converged_early,
        })
    }

    fn step(&mut self, _step: u64) -> Result<f64, RunStop> {
        let s = &self.s;
        let (loss, mut grads) = if s.full_batch {
            s.model.loss_and_grads(&self.store, &self.train_all)
        } else {
            if self.cursor + s.batch > self.order.len() {
                self.order.shuffle(&mut self.sample_rng);
                self.cursor = 0;
            }
            self.cursor += s.batch;
            let idx = &self.order[self.cursor - s.batch..self.cursor];
            let b = Batch::from_dataset(self.store.device(), &s.train, Some(idx));
            s.model.loss_and_grads(&self.store, &b)
        };
        self.opt
            .step(&mut self.store, &mut grads)
            .map_err(|e| RunStop::Failed(format!("optimizer update: {e:?}")))?;
        Ok(loss)
    }

    fn finish(&mut self, last: &mut std::collections::BTreeMap<String, f64>, steps: u64) {
        let converged = last["train_loss"] < self.converge_loss;
        last.insert("converged".into(), if converged { 1.0 } else { 0.0 });
        last.insert("steps".into(), steps as f64);
    }

    fn write_artifacts(&self, dir: &std::path::Path) -> std::io::Result<()> {
        let s = &self.s;
        let mut params = artifacts::store_tensors(&self.store);
        let theta: Vec<f64> = params.iter().flat_map(|t| t.data.iter().copied()).collect();
        if let Model::Diagonal { dim } = s.model {
            params.push(NamedTensor::new("beta", &[dim], s.model.beta(&theta)));
        }
        let mut data = vec![
            NamedTensor::new("x_train", &[s.train.n, s.train.dim], s.train.x.clone()),
            NamedTensor::new("y_train", &[s.train.n], s.train.y.clone()),
            NamedTensor::new("x_test", &[s.test.n, s.test.dim], s.test.x.clone()),
            NamedTensor::new("y_test", &[s.test.n], s.test.y.clone()),
        ];
        if !s.beta_star.is_empty() {
            data.push(NamedTensor::new(
                "beta_star",
                &[s.beta_star.len()],
                s.beta_star.clone(),
            ));
        }
        artifacts::write_run(dir, &params, &data, &s.model.formula())
    }
}

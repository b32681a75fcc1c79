//! Pal, Edelman & Rackauckas (ICML 2023), "Locally Regularized Neural Differential Equations":
//! penalizing the adaptive solver's own error estimate at a random time trains dynamics that
//! need fewer function evaluations (NFE), at similar accuracy.
//!
//! Arms: unregularized; local regularization (weight `reg_weight`: at a random time per batch,
//! the scaled error estimate times the step size of one fresh solver step from the solution at
//! that time, as the authors' code takes it; or, as an ablation, of the accepted step holding
//! that time); global regularization (the same summed over every accepted step of the
//! trajectory). Tasks: classification of the 8x8 digits with a
//! neural ODE block, and fitting a 2-D spiral trajectory.

pub mod bench;
mod net;
mod verdict;

pub use net::{fork, step_taped, Dynamics, DynamicsIds, DynamicsTensors, TapedScalar};

use std::time::Instant;

use dfdx::prelude::*;

use crate::nn::transfer::{Download, Upload};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};

use super::driver::{self, Evaluation, Schedule};
use super::profile::{DeviceCase, Profile};
use super::{Experiment, FinishedRun, RunContext, RunEnd, RunStop};
use crate::artifacts::{self, NamedTensor};
use crate::metrics::picture::Picture;
use crate::metrics::{MetricSpec, Relative};
use crate::nn::{Optimizer, ParamId, ParamStore, Rule};
use crate::ode::{self, Step, Tolerances};
use crate::params::ParamSpec;
use crate::verdict::Verdict;

pub struct LocalRegNode;

/// Which regularizer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Regularizer {
    None,
    Local,
    Global,
}

/// A trainable model: optional linear encoder, the ODE block over [0, t_end], optional linear
/// read-out.
/// Its parameters live in a device store: the dynamics' (`dyn.*`) and, for the digits, the
/// 64 -> d encoder `W_in`, `b_in` and the d -> 10 read-out `W_out`, `b_out`.
struct Model<D: Device<f64>> {
    dynamics: Dynamics,
    store: ParamStore<f64, D>,
    dyn_ids: DynamicsIds,
    w_in: ParamId,
    b_in: ParamId,
    w_out: ParamId,
    b_out: ParamId,
}

impl<D: Device<f64>> Model<D> {
    fn tensors(&self) -> DynamicsTensors<D> {
        DynamicsTensors::from_store(&self.store, self.dyn_ids)
    }
}

/// The data of a task.
enum Task {
    Digits {
        x_train: Vec<f64>,
        y_train: Vec<usize>,
        x_test: Vec<f64>,
        y_test: Vec<usize>,
    },
    Spiral {
        y0: Vec<f64>,
        /// Observation times and states; even indices train, odd indices test.
        times: Vec<f64>,
        states: Vec<Vec<f64>>,
    },
}

const DIGIT_FEATURES: usize = 64;
const CLASSES: usize = 10;

fn digits(rng: &mut impl Rng) -> Task {
    let d = crate::datasets::digits(0.8, rng);
    let widen = |v: Vec<f32>| v.into_iter().map(f64::from).collect();
    Task::Digits {
        x_train: widen(d.x_train),
        y_train: d.y_train,
        x_test: widen(d.x_test),
        y_test: d.y_test,
    }
}

/// The spiral of the classic neural-ODE demonstration: `y' = A y^3` (cubed elementwise) with
/// `A = [[-0.1, 2], [-2, -0.1]]` from `y0 = (2, 0)`, observed at `points` times in [0, t_end],
/// solved at a tight tolerance.
fn spiral(points: usize, t_end: f64) -> Task {
    let mut f = |_t: f64, y: &Vec<f64>| {
        let (a, b) = (y[0].powi(3), y[1].powi(3));
        vec![-0.1 * a + 2.0 * b, -2.0 * a - 0.1 * b]
    };
    let times: Vec<f64> = (1..=points)
        .map(|i| t_end * i as f64 / points as f64)
        .collect();
    let tol = Tolerances {
        atol: 1e-10,
        rtol: 1e-10,
    };
    let sol = ode::solve(&mut f, 0.0, &vec![2.0, 0.0], &times, tol, 1_000_000)
        .expect("the reference spiral solves");
    Task::Spiral {
        y0: vec![2.0, 0.0],
        times,
        states: sol.ys,
    }
}

fn softmax_xent(logits: &[f64], labels: &[usize]) -> (f64, f64) {
    let mut loss = 0.0;
    let mut correct = 0;
    for (r, &y) in labels.iter().enumerate() {
        let row = &logits[r * CLASSES..(r + 1) * CLASSES];
        let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = row.iter().map(|v| (v - m).exp()).sum();
        loss += z.ln() + m - row[y];
        let arg = (0..CLASSES)
            .max_by(|a, b| row[*a].total_cmp(&row[*b]))
            .unwrap();
        correct += usize::from(arg == y);
    }
    (
        loss / labels.len() as f64,
        correct as f64 / labels.len() as f64,
    )
}

impl Experiment for LocalRegNode {
    fn kind(&self) -> &'static str {
        "local-reg-node"
    }

    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::choice("task", &["digits", "spiral"], "digits", "classification of the 8x8 digits with an ODE block, or fitting a 2-D spiral"),
            ParamSpec::choice("regularizer", &["none", "local", "global"], "none", "none; local (error estimate x step size at one random step per batch); global (summed over the trajectory)"),
            ParamSpec::float("reg_weight", 1.0, 0.0, 1e6, "weight of the regularizer"),
            ParamSpec::choice("sampling", &["unbiased", "biased"], "unbiased", "local: a uniformly random time (its step is picked in proportion to its length), or a uniformly random accepted step (biased towards where the solver takes small steps)"),
            ParamSpec::choice("local_step", &["fresh", "accepted"], "fresh", "local: a fresh step from the solution at the sampled time, its size the solver's initial-step choice there (the authors' code), or the accepted step holding the sampled time (ablation)"),
            ParamSpec::int("steps", 400, 1, 100_000_000, "training steps"),
            ParamSpec::int("batch", 64, 1, 100_000, "samples per step (digits)"),
            ParamSpec::float("lr", 1e-2, 1e-9, 10.0, "Adam learning rate"),
            ParamSpec::int("log_every", 25, 1, 100_000_000, "steps between measurements"),
            ParamSpec::int("state_dim", 8, 1, 4096, "ODE state dimension (digits; the spiral's is 2)"),
            ParamSpec::int("hidden", 32, 1, 4096, "hidden units of the dynamics network"),
            ParamSpec::float("init_scale", 1.0, 0.0, 100.0, "initial weight scale of the dynamics network"),
            ParamSpec::float("t_end", 1.0, 1e-6, 1e6, "integration time of the ODE block (digits)"),
            ParamSpec::float("atol", 1e-6, 1e-14, 1.0, "solver absolute tolerance"),
            ParamSpec::float("rtol", 1e-6, 1e-14, 1.0, "solver relative tolerance"),
            ParamSpec::int("max_solver_steps", 20_000, 1, 100_000_000, "step attempts before a solve fails"),
            ParamSpec::int("spiral_points", 40, 2, 100_000, "spiral: observation times (even train, odd test)"),
            ParamSpec::float("spiral_t_end", 5.0, 1e-3, 1e4, "spiral: final observation time"),
        ]
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        vec![
            MetricSpec::new("train_loss", "training loss").log(),
            MetricSpec::new("test_acc", "test accuracy").unit("fraction"),
            MetricSpec::new("test_mse", "test error (MSE)").log(),
            MetricSpec::new("nfe_train", "NFE per training forward pass"),
            MetricSpec::new("nfe_test", "NFE per test prediction (sparse outputs)").relative(
                Relative {
                    name: "nfe_test_relative",
                    label: "test NFE relative to the unregularized arm",
                    param: "regularizer",
                    value: "none",
                },
            ),
            MetricSpec::new(
                "nfe_floor",
                "NFE of the same solve with f = 0 (the solver's floor)",
            ),
            MetricSpec::new(
                "us_per_prediction",
                "wall time per prediction after training (median of 7)",
            )
            .unit("us"),
            MetricSpec::new(
                "us_per_prediction_iqr",
                "wall time per prediction: interquartile range of the 7",
            )
            .unit("us"),
            MetricSpec::new(
                "reg_value",
                "the arm's regularizer (local: the sampled step's; else summed over the steps)",
            )
            .log(),
            MetricSpec::new(
                "reg_global",
                "error estimate x step size summed over the accepted steps",
            )
            .log(),
            MetricSpec::new("n_test", "test samples (digits)"),
            MetricSpec::new("step_ms", "training step time (mean so far)").unit("ms"),
        ]
    }

    fn table_metrics(&self) -> Vec<&'static str> {
        vec![
            "train_loss",
            "test_acc",
            "test_mse",
            "nfe_train",
            "nfe_test",
            "nfe_floor",
            "us_per_prediction",
            "reg_value",
            "step_ms",
        ]
    }

    fn memory(&self, p: &crate::params::Params) -> crate::engine::memory::Estimate {
        let d = p.usize("state_dim") as f64;
        let h = p.usize("hidden") as f64;
        let b = p.usize("batch") as f64;
        // The taped replay keeps every stage of every step; 200 steps is generous for the
        // preset's tolerances.
        crate::engine::memory::Estimate::of(&[
            (
                8.0 * 200.0 * 7.0 * b * (h + d) * 2.0,
                format!("replay tape: batch {b} x (hidden {h} + state_dim {d}) x 1400 stages"),
            ),
            (
                8.0 * h * d * 4.0 * 3.0,
                format!("hidden {h} x state_dim {d} (weights, moments)"),
            ),
        ])
    }

    fn builtin_presets(&self) -> &'static [(&'static str, &'static str)] {
        &[(
            "presets/local-reg-node.toml",
            include_str!("../../../presets/local-reg-node.toml"),
        )]
    }

    fn verdict_bar(&self) -> Option<(&'static str, Option<&'static str>)> {
        Some(("nfe_test", None))
    }

    fn quick_profile(&self) -> Profile {
        Profile {
            preset: "local-reg-node",
            arms: &["digits-none", "digits-local", "digits-local-accepted"],
            seeds: &[1],
            overrides: &[("steps", "200")],
        }
    }

    fn device_cases(&self) -> Vec<DeviceCase> {
        let preset_size = Profile {
            preset: "local-reg-node",
            arms: &[],
            seeds: &[0],
            overrides: &[("steps", "20"), ("log_every", "10")],
        };
        let large = Profile {
            overrides: &[
                ("state_dim", "64"),
                ("hidden", "1024"),
                ("batch", "1024"),
                ("steps", "5"),
                ("log_every", "5"),
            ],
            ..preset_size
        };
        vec![
            DeviceCase {
                size: "preset",
                arm: "digits-local",
                profile: preset_size,
            },
            DeviceCase {
                size: "large",
                arm: "digits-local",
                profile: large,
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
    let p = ctx.params.clone();
    let seed = ctx.seed;
    let mut data_rng = StdRng::seed_from_u64(seed ^ 0xDA7A);
    let mut rng = StdRng::seed_from_u64(seed ^ 0x0DE);
    let task = match p.text("task") {
        "spiral" => spiral(p.usize("spiral_points"), p.f64("spiral_t_end")),
        _ => digits(&mut data_rng),
    };
    let reg = match p.text("regularizer") {
        "local" => Regularizer::Local,
        "global" => Regularizer::Global,
        _ => Regularizer::None,
    };
    let tol = Tolerances {
        atol: p.f64("atol"),
        rtol: p.f64("rtol"),
    };
    let d = match task {
        Task::Spiral { .. } => 2,
        Task::Digits { .. } => p.usize("state_dim"),
    };
    let dynamics = Dynamics::new(d, p.usize("hidden"), p.f64("init_scale"), &mut rng);
    let mut store = ParamStore::new(dev);
    let dyn_ids = dynamics.register(&mut store);
    let w_in: Vec<f64> = (0..DIGIT_FEATURES * d)
        .map(|_| {
            let z: f64 = StandardNormal.sample(&mut rng);
            z / (DIGIT_FEATURES as f64).sqrt()
        })
        .collect();
    let w_out: Vec<f64> = (0..d * CLASSES)
        .map(|_| {
            let z: f64 = StandardNormal.sample(&mut rng);
            z / (d as f64).sqrt()
        })
        .collect();
    let w_in = store.add("W_in", &[DIGIT_FEATURES, d], w_in);
    let b_in = store.add_filled("b_in", &[d], 0.0);
    let w_out = store.add("W_out", &[d, CLASSES], w_out);
    let b_out = store.add_filled("b_out", &[CLASSES], 0.0);
    if matches!(task, Task::Spiral { .. }) {
        // The spiral has no encoder or read-out.
        for id in [w_in, b_in, w_out, b_out] {
            store.set_trainable(id, false);
        }
    }
    let model = Model {
        dynamics,
        store,
        dyn_ids,
        w_in,
        b_in,
        w_out,
        b_out,
    };
    let trainer = Trainer {
        tol,
        max_steps: p.usize("max_solver_steps"),
        t_end: p.f64("t_end"),
        reg,
        reg_weight: p.f64("reg_weight"),
        biased: p.text("sampling") == "biased",
        fresh: p.text("local_step") == "fresh",
    };
    let mut run = NodeRun {
        adam: Optimizer::new(Rule::adam(), p.f64("lr")),
        batch: p.usize("batch"),
        last_step: (f64::NAN, f64::NAN, f64::NAN, f64::NAN),
        reg_global: f64::NAN,
        total_ms: 0.0,
        trainer,
        model,
        task,
        rng,
    };
    driver::drive(ctx, Schedule::from_params(&p), &mut run)
}

/// One run's state between steps.
struct NodeRun<D: Device<f64>> {
    trainer: Trainer,
    model: Model<D>,
    task: Task,
    adam: Optimizer<f64, D>,
    batch: usize,
    rng: StdRng,
    /// Loss, training NFE, regularizer value and mean ms of the steps so far.
    last_step: (f64, f64, f64, f64),
    /// The global form of the regularizer at the last step.
    reg_global: f64,
    total_ms: f64,
}

impl<D: Device<f64>> driver::Trainer for NodeRun<D> {
    fn evaluate(&mut self, step: u64, _last: bool) -> Result<Evaluation, RunStop> {
        let dev = self.model.store.device().clone();
        let e = self
            .trainer
            .evaluate(&dev, &self.model, &self.task)
            .map_err(|e| RunStop::Diverged {
                step,
                reason: format!("test solve failed: {e}"),
            })?;
        let (loss, nfe_train, reg_value, step_ms) = self.last_step;
        let mut values = vec![
            ("train_loss", loss),
            ("nfe_train", nfe_train),
            ("nfe_test", e.nfe),
            ("nfe_floor", self.trainer.nfe_floor(&self.task) as f64),
            ("reg_value", reg_value),
            ("reg_global", self.reg_global),
            ("step_ms", step_ms),
        ];
        match &self.task {
            Task::Digits { y_test, .. } => {
                values.push(("test_acc", e.score));
                values.push(("n_test", y_test.len() as f64));
            }
            Task::Spiral { .. } => values.push(("test_mse", e.score)),
        }
        let mut evaluation = Evaluation::new(values);
        evaluation.pictures.push(e.picture);
        Ok(evaluation)
    }

    fn step(&mut self, step: u64) -> Result<f64, RunStop> {
        let dev = self.model.store.device().clone();
        let t0 = Instant::now();
        let out = self
            .trainer
            .train_step(
                &dev,
                &mut self.model,
                &self.task,
                self.batch,
                &mut self.rng,
                &mut self.adam,
            )
            .map_err(|e| RunStop::Diverged { step, reason: e })?;
        self.total_ms += t0.elapsed().as_secs_f64() * 1e3;
        self.last_step = (
            out.loss,
            out.nfe as f64,
            out.reg_value,
            self.total_ms / (step + 1) as f64,
        );
        self.reg_global = out.reg_global;
        Ok(out.loss)
    }

    /// Times the prediction of the trained model on its own, repeated: the median and the
    /// interquartile range of `PREDICTION_REPEATS` timings.
    fn finish(&mut self, final_values: &mut std::collections::BTreeMap<String, f64>, _: u64) {
        let dev = self.model.store.device().clone();
        let mut us = Vec::with_capacity(PREDICTION_REPEATS);
        for _ in 0..PREDICTION_REPEATS {
            match self.trainer.time_prediction(&dev, &self.model, &self.task) {
                Ok(t) => us.push(t),
                Err(_) => break,
            }
        }
        let (median, iqr) = if us.len() == PREDICTION_REPEATS {
            us.sort_by(f64::total_cmp);
            let q = |f: f64| {
                let x = f * (us.len() - 1) as f64;
                let (lo, hi) = (x.floor() as usize, x.ceil() as usize);
                us[lo] + (us[hi] - us[lo]) * (x - lo as f64)
            };
            (q(0.5), q(0.75) - q(0.25))
        } else {
            (f64::NAN, f64::NAN)
        };
        final_values.insert("us_per_prediction".into(), median);
        final_values.insert("us_per_prediction_iqr".into(), iqr);
    }

    fn write_artifacts(&self, dir: &std::path::Path) -> std::io::Result<()> {
        let params = artifacts::store_tensors(&self.model.store);
        let data = match &self.task {
            Task::Digits {
                x_train,
                y_train,
                x_test,
                y_test,
            } => vec![
                NamedTensor::new("x_train", &[y_train.len(), DIGIT_FEATURES], x_train.clone()),
                NamedTensor::new(
                    "y_train",
                    &[y_train.len()],
                    y_train.iter().map(|v| *v as f64).collect(),
                ),
                NamedTensor::new("x_test", &[y_test.len(), DIGIT_FEATURES], x_test.clone()),
                NamedTensor::new(
                    "y_test",
                    &[y_test.len()],
                    y_test.iter().map(|v| *v as f64).collect(),
                ),
            ],
            Task::Spiral { y0, times, states } => vec![
                NamedTensor::new("y0", &[2], y0.clone()),
                NamedTensor::new("times", &[times.len()], times.clone()),
                NamedTensor::new(
                    "states",
                    &[states.len(), 2],
                    states.iter().flatten().copied().collect(),
                ),
            ],
        };
        let t = &self.trainer;
        let text = format!(
            "neural ODE: y' = f(t, y) = tanh(y @ dyn.W1 + t * dyn.wt + dyn.b1) @ dyn.W2 + dyn.b2, \
             d = {d}, hidden = {hidden}\n\
             solver: Dormand-Prince 5(4), atol {atol:e}, rtol {rtol:e}; error norm: RMS over every \
             entry of the (batch x d) state of err / (atol + rtol max(|y_n|, |y_n+1|)); initial \
             step by Hairer, Norsett & Wanner II.4; step factor 0.9 err^(-1/5) clamped to \
             [0.2, 10], no growth right after a rejection (the controller of scipy's RK45)\n\
             digits: h0 = x @ W_in + b_in, h1 = y(t_end = {t_end}) from y(0) = h0, logits = h1 @ W_out + b_out \
             (W_in/b_in/W_out/b_out are unused by the spiral)\n\
             spiral: y(0) = y0, observed at `times` (even indices train, odd test), targets `states`\n\
             \n\
             recomputing the held-out numbers:\n\
             test_acc (digits): h0 = x_test @ W_in + b_in for the whole test set at once, solve \
             over [0, {t_end}] asking only for the end point, logits as above; the fraction with \
             argmax(logits) == y_test.\n\
             test_mse (spiral): solve from y0 with the odd-indexed `times` as output times; the \
             mean over those times of the squared distance (summed over the 2 coordinates) to \
             `states`.\n\
             nfe_test: the function evaluations of the prediction's solve asked only for its end \
             point (digits: the batched test solve above, the state flattened to one vector; \
             spiral: from y0 to the last of `times`): 2 + 6 x (accepted + rejected steps). \
             scipy.integrate.solve_ivp(fun, (0, T), y0.ravel(), method=\"RK45\", rtol={rtol:e}, \
             atol={atol:e}).nfev uses the same method and controller (its NFE agrees with this \
             solver's within a few percent on standard problems).\n\
             nfe_floor: the NFE of the same solve with f = 0.\n",
            d = self.model.dynamics.d,
            hidden = self.model.dynamics.hidden,
            atol = t.tol.atol,
            rtol = t.tol.rtol,
            t_end = t.t_end
        );
        artifacts::write_run(dir, &params, &data, &text)
    }
}

/// A solve on the device: states are `batch x d` tensors.
type DeviceSolution<D> = ode::Solution<Tensor<(usize, usize), f64, D>>;

struct Trainer {
    tol: Tolerances,
    max_steps: usize,
    t_end: f64,
    reg: Regularizer,
    reg_weight: f64,
    /// Local regularization samples a step uniformly instead of a time.
    biased: bool,
    /// Local regularization takes a fresh step from the sampled time (else the accepted step
    /// holding it).
    fresh: bool,
}

/// Timed predictions after training.
const PREDICTION_REPEATS: usize = 7;

struct StepResult {
    loss: f64,
    nfe: usize,
    reg_value: f64,
    /// The global form of the regularizer on this step's solve.
    reg_global: f64,
}

struct EvalResult {
    /// Accuracy (digits) or MSE (spiral) on the test set.
    score: f64,
    nfe: f64,
    /// What to look at: the test digits it gets wrong, or the predicted spiral over the data.
    picture: (&'static str, Picture),
}

impl Trainer {
    /// The solve of the ODE block on the device: accepted steps, visited states, statistics.
    fn solve<D: Device<f64>>(
        &self,
        net: &Dynamics,
        p: &DynamicsTensors<D>,
        y0: &Tensor<(usize, usize), f64, D>,
        t_out: &[f64],
    ) -> Result<DeviceSolution<D>, String> {
        let mut f = |t: f64, y: &Tensor<(usize, usize), f64, D>| net.eval_on(p, t, y);
        ode::solve(&mut f, 0.0, y0, t_out, self.tol, self.max_steps)
    }

    /// Replays the accepted steps on the tape from `y0`, returning the states at the output
    /// times (in order) and the regularizer's value on the tape, if any.
    fn replay<D: Device<f64>>(
        &self,
        net: &Dynamics,
        p: &DynamicsTensors<D>,
        y0: net::Taped<D>,
        sol: &DeviceSolution<D>,
        t_out: &[f64],
        chosen: Option<usize>,
    ) -> (Vec<net::Taped<D>>, Option<net::TapedScalar<D>>) {
        let mut y = y0;
        let mut outs = Vec::new();
        let mut reg: Option<net::TapedScalar<D>> = None;
        let mut next_out = 0;
        for (j, st) in sol.steps.iter().enumerate() {
            let want_err = match self.reg {
                Regularizer::Global => true,
                Regularizer::Local => chosen == Some(j),
                Regularizer::None => false,
            };
            let scale = want_err
                .then(|| net::tolerance_scale(&sol.states[j], &sol.states[j + 1], self.tol));
            let (y_next, e) = step_taped(net, p, y, *st, scale.as_ref());
            if let Some(e) = e {
                let term = e * st.h.abs();
                reg = Some(match reg {
                    None => term,
                    Some(r) => r + term,
                });
            }
            y = y_next;
            let t_after = st.t + st.h;
            if next_out < t_out.len() && (t_after - t_out[next_out]).abs() < 1e-9 {
                next_out += 1;
                if j + 1 == sol.steps.len() {
                    // The last output keeps the tape that holds the whole history.
                    outs.push(y);
                    return (outs, reg);
                }
                let mut two = fork(y, 2);
                outs.push(two.pop().unwrap());
                y = two.pop().unwrap();
            }
        }
        outs.push(y);
        (outs, reg)
    }

    fn train_step<D: Device<f64>>(
        &self,
        dev: &D,
        model: &mut Model<D>,
        task: &Task,
        batch: usize,
        rng: &mut StdRng,
        adam: &mut Optimizer<f64, D>,
    ) -> Result<StepResult, String> {
        let dev = dev.clone();
        let net = &model.dynamics;
        let p = model.tensors();
        let d = net.d;
        match task {
            Task::Digits {
                x_train, y_train, ..
            } => {
                let idx: Vec<usize> = (0..batch)
                    .map(|_| rng.gen_range(0..y_train.len()))
                    .collect();
                let x: Vec<f64> = idx
                    .iter()
                    .flat_map(|&i| {
                        x_train[i * DIGIT_FEATURES..(i + 1) * DIGIT_FEATURES]
                            .iter()
                            .copied()
                    })
                    .collect();
                let labels: Vec<usize> = idx.iter().map(|&i| y_train[i]).collect();
                let xt = dev.upload(x.clone(), (batch, DIGIT_FEATURES));
                let h0 = model.store.matrix(model.w_in);
                let h0 = xt.retaped::<OwnedTape<f64, D>>().matmul(h0)
                    + model
                        .store
                        .vector(model.b_in)
                        .broadcast_like::<_, Axis<0>>(&(batch, d));
                let (h0_values, h0_tape) = h0.split_tape();
                let t_out = [self.t_end];
                let sol = self.solve(net, &p, &h0_values, &t_out)?;
                let (chosen, fresh) = self.local_term(net, &p, &sol, rng);
                let h0 = h0_values.put_tape(h0_tape);
                let (mut outs, reg) = self.replay(net, &p, h0, &sol, &t_out, chosen);
                let (reg, extra_nfe) = merge_fresh(reg, fresh);
                let h1 = outs.pop().ok_or("no output state")?;
                let logits = h1.matmul(model.store.matrix(model.w_out))
                    + model
                        .store
                        .vector(model.b_out)
                        .broadcast_like::<_, Axis<0>>(&(batch, CLASSES));
                let mut onehot = vec![0.0; batch * CLASSES];
                for (r, y) in labels.iter().enumerate() {
                    onehot[r * CLASSES + y] = 1.0;
                }
                let target = dev.upload(onehot, (batch, CLASSES));
                let loss = cross_entropy_with_logits_loss(logits, target);
                let (task_loss, reg_value, loss) = self.add_regularizer(loss, reg, &sol)?;
                let mut g = loss.backward();
                drop(p);
                adam.step(&mut model.store, &mut g)
                    .map_err(|e| format!("optimizer update: {e:?}"))?;
                Ok(StepResult {
                    loss: task_loss,
                    nfe: sol.stats.nfe + extra_nfe,
                    reg_value,
                    reg_global: global_form(&sol),
                })
            }
            Task::Spiral {
                y0, times, states, ..
            } => {
                // Train on the even-indexed observations.
                let t_out: Vec<f64> = times.iter().step_by(2).copied().collect();
                let targets: Vec<&Vec<f64>> = states.iter().step_by(2).collect();
                let y0 = dev.upload(y0.clone(), (1usize, 2usize));
                let sol = self.solve(net, &p, &y0, &t_out)?;
                let (chosen, fresh) = self.local_term(net, &p, &sol, rng);
                let y0t = y0.retaped::<OwnedTape<f64, D>>();
                let (outs, reg) = self.replay(net, &p, y0t, &sol, &t_out, chosen);
                let (reg, extra_nfe) = merge_fresh(reg, fresh);
                let mut loss: Option<net::TapedScalar<D>> = None;
                let n = outs.len() as f64;
                for (o, target) in outs.into_iter().zip(&targets) {
                    let tt = dev.upload((*target).clone(), (1usize, 2usize));
                    let term = (o - tt).square().sum::<Rank0, _>() * (1.0 / n);
                    loss = Some(match loss {
                        None => term,
                        Some(l) => l + term,
                    });
                }
                let loss = loss.ok_or("no outputs")?;
                let (task_loss, reg_value, loss) = self.add_regularizer(loss, reg, &sol)?;
                let mut g = loss.backward();
                drop(p);
                adam.step(&mut model.store, &mut g)
                    .map_err(|e| format!("optimizer update: {e:?}"))?;
                Ok(StepResult {
                    loss: task_loss,
                    nfe: sol.stats.nfe + extra_nfe,
                    reg_value,
                    reg_global: global_form(&sol),
                })
            }
        }
    }

    /// Adds the weighted regularizer to the task loss. Returns the task loss, the regularizer's
    /// value (the taped one for local regularization, else the global form from the solve's
    /// step errors) and the total loss; a non-finite total is an error.
    fn add_regularizer<D: Device<f64>>(
        &self,
        loss: net::TapedScalar<D>,
        reg: Option<net::TapedScalar<D>>,
        sol: &DeviceSolution<D>,
    ) -> Result<(f64, f64, net::TapedScalar<D>), String> {
        let task_loss = loss.download()[0];
        let mut reg_value = global_form(sol);
        let mut loss = loss;
        if let Some(r) = reg {
            if self.reg == Regularizer::Local {
                reg_value = r.download()[0];
            }
            loss = loss + r * self.reg_weight;
        }
        if !loss.download()[0].is_finite() {
            return Err("non-finite loss".into());
        }
        Ok((task_loss, reg_value, loss))
    }

    /// The local regularizer's sample: the sampled time and the accepted step holding it (a
    /// uniformly random time for unbiased sampling, the start of a uniformly random accepted
    /// step for biased sampling).
    fn sample_time<S>(&self, sol: &ode::Solution<S>, rng: &mut StdRng) -> Option<(f64, usize)> {
        if self.reg != Regularizer::Local || sol.steps.is_empty() {
            return None;
        }
        if self.biased {
            let j = rng.gen_range(0..sol.steps.len());
            return Some((sol.steps[j].t, j));
        }
        let last = sol.steps.last().unwrap();
        let t = rng.gen::<f64>() * (last.t + last.h);
        let j = sol
            .steps
            .iter()
            .position(|s| t < s.t + s.h)
            .unwrap_or(sol.steps.len() - 1);
        Some((t, j))
    }

    /// The local regularizer of this step: for the accepted-step method, which accepted step
    /// the replay penalizes; for the fresh-step method, the taped term and the function
    /// evaluations it took.
    ///
    /// Fresh step (the authors' code): the solution at the sampled time `t1` (a constant: no
    /// gradient flows through it, as in the authors' code), then one Dormand-Prince step from
    /// it whose size is the solver's initial-step choice there (a freshly started integrator's
    /// step), evaluated on the tape; the term is its scaled error estimate times its size. The
    /// solution at `t1` comes from a step of the accepted step's start to `t1` (shorter than an
    /// accepted step, so within the tolerance).
    #[allow(clippy::type_complexity)]
    fn local_term<D: Device<f64>>(
        &self,
        net: &Dynamics,
        p: &DynamicsTensors<D>,
        sol: &DeviceSolution<D>,
        rng: &mut StdRng,
    ) -> (Option<usize>, Option<(net::TapedScalar<D>, usize)>) {
        let Some((t1, j)) = self.sample_time(sol, rng) else {
            return (None, None);
        };
        if !self.fresh {
            return (Some(j), None);
        }
        let mut nfe = 0usize;
        let mut f = |t: f64, y: &Tensor<(usize, usize), f64, D>| {
            nfe += 1;
            net.eval_on(p, t, y)
        };
        let start = &sol.states[j];
        let step = sol.steps[j];
        let y1 = if t1 > step.t {
            let k1 = f(step.t, start);
            ode::dp5_step(&mut f, step.t, start, &k1, t1 - step.t).0
        } else {
            start.clone()
        };
        let k1 = f(t1, &y1);
        let span = sol.steps.last().map_or(self.t_end, |s| s.t + s.h);
        let h = ode::initial_step(&mut f, t1, &y1, &k1, self.tol).min(span);
        let (y5, _, _) = ode::dp5_step(&mut f, t1, &y1, &k1, h);
        let scale = net::tolerance_scale(&y1, &y5, self.tol);
        let fresh = Step {
            t: t1,
            h,
            err: f64::NAN,
        };
        let (_, e) = step_taped(
            net,
            p,
            y1.retaped::<OwnedTape<f64, D>>(),
            fresh,
            Some(&scale),
        );
        let term = e.expect("error estimate") * h.abs();
        // The taped step evaluates the dynamics seven times.
        (None, Some((term, nfe + 7)))
    }

    /// The NFE of a prediction's solve (end point only) for `f = 0`: the fewest evaluations
    /// the solver spends over that interval.
    fn nfe_floor(&self, task: &Task) -> usize {
        let end = match task {
            Task::Digits { .. } => self.t_end,
            Task::Spiral { times, .. } => *times.last().unwrap(),
        };
        let mut zero = |_t: f64, y: &Vec<f64>| vec![0.0; y.len()];
        ode::solve(&mut zero, 0.0, &vec![1.0], &[end], self.tol, self.max_steps)
            .map_or(0, |s| s.stats.nfe)
    }

    /// Microseconds per prediction of one prediction pass on its own: the digits' whole test
    /// set (one batched solve and read-out, per sample), or the spiral's end point.
    fn time_prediction<D: Device<f64>>(
        &self,
        dev: &D,
        model: &Model<D>,
        task: &Task,
    ) -> Result<f64, String> {
        let net = &model.dynamics;
        let p = model.tensors();
        match task {
            Task::Digits { x_test, y_test, .. } => {
                let n = y_test.len();
                let t0 = Instant::now();
                let (logits, _) = self.digits_logits(dev, model, x_test)?;
                std::hint::black_box(&logits);
                Ok(t0.elapsed().as_secs_f64() * 1e6 / n as f64)
            }
            Task::Spiral { y0, times, .. } => {
                let t0 = Instant::now();
                let y0 = dev.upload(y0.clone(), (1usize, 2usize));
                let end = self.solve(net, &p, &y0, &[*times.last().unwrap()])?;
                std::hint::black_box(end.ys[0].download());
                Ok(t0.elapsed().as_secs_f64() * 1e6)
            }
        }
    }

    /// Logits of the digits `x_test` (row-major, `n x DIGIT_FEATURES`) in one batched solve
    /// to `t_end`, and that solve's NFE.
    fn digits_logits<D: Device<f64>>(
        &self,
        dev: &D,
        model: &Model<D>,
        x_test: &[f64],
    ) -> Result<(Vec<f64>, usize), String> {
        let net = &model.dynamics;
        let p = model.tensors();
        let (d, store) = (net.d, &model.store);
        let n = x_test.len() / DIGIT_FEATURES;
        let x = dev.upload(x_test.to_vec(), (n, DIGIT_FEATURES));
        let h = x.matmul(store.matrix_value(model.w_in))
            + store
                .flat(model.b_in)
                .clone()
                .broadcast_like::<_, Axis<0>>(&(n, d));
        let sol = self.solve(net, &p, &h, &[self.t_end])?;
        let logits = sol.ys[0].clone().matmul(store.matrix_value(model.w_out))
            + store
                .flat(model.b_out)
                .clone()
                .broadcast_like::<_, Axis<0>>(&(n, CLASSES));
        Ok((logits.download(), sol.stats.nfe))
    }

    /// Test score and NFE of a prediction whose only output time is the end point.
    fn evaluate<D: Device<f64>>(
        &self,
        dev: &D,
        model: &Model<D>,
        task: &Task,
    ) -> Result<EvalResult, String> {
        let net = &model.dynamics;
        let p = model.tensors();
        match task {
            Task::Digits { x_test, y_test, .. } => {
                let (logits, nfe) = self.digits_logits(dev, model, x_test)?;
                let (_, acc) = softmax_xent(&logits, y_test);
                // Up to 24 misclassified test digits, captioned "predicted (true)".
                let mut pixels = Vec::new();
                let mut captions = Vec::new();
                for (i, &y) in y_test.iter().enumerate() {
                    let row = &logits[i * CLASSES..(i + 1) * CLASSES];
                    let pred = crate::metrics::classification::argmax(row);
                    if pred != y && captions.len() < 24 {
                        let img = &x_test[i * DIGIT_FEATURES..(i + 1) * DIGIT_FEATURES];
                        pixels.extend(img.iter().map(|&v| v as f32));
                        captions.push(format!("{pred} ({y})"));
                    }
                }
                Ok(EvalResult {
                    score: acc,
                    nfe: nfe as f64,
                    picture: (
                        "wrong test digits: predicted (true)",
                        Picture::images(8, 8, &pixels, 0.0, 1.0, captions),
                    ),
                })
            }
            Task::Spiral { y0, times, states } => {
                // Test error on the odd-indexed observations.
                let t_test: Vec<f64> = times.iter().skip(1).step_by(2).copied().collect();
                let y0 = dev.upload(y0.clone(), (1usize, 2usize));
                let sol = self.solve(net, &p, &y0, &t_test)?;
                let mut mse = 0.0;
                let mut predicted = Vec::with_capacity(t_test.len());
                for (y, target) in sol.ys.iter().zip(states.iter().skip(1).step_by(2)) {
                    let y = y.download();
                    predicted.push([y[0] as f32, y[1] as f32]);
                    mse += y
                        .iter()
                        .zip(target)
                        .map(|(a, b)| (a - b).powi(2))
                        .sum::<f64>();
                }
                let observed: Vec<[f32; 2]> =
                    states.iter().map(|s| [s[0] as f32, s[1] as f32]).collect();
                mse /= t_test.len() as f64;
                // NFE of a prediction with only its end point requested.
                let end = self.solve(net, &p, &y0, &[*times.last().unwrap()])?;
                Ok(EvalResult {
                    score: mse,
                    nfe: end.stats.nfe as f64,
                    picture: (
                        "spiral: predicted over observed",
                        Picture::scatter(&predicted, &observed),
                    ),
                })
            }
        }
    }
}

/// The global form of the regularizer on a solve: scaled error estimate times step size, summed
/// over the accepted steps.
fn global_form<S>(sol: &ode::Solution<S>) -> f64 {
    sol.steps.iter().map(|s| s.err * s.h.abs()).sum()
}

/// The regularizer on the tape: the replay's (accepted-step local or global) or the fresh
/// step's, with the function evaluations the fresh step added.
fn merge_fresh<D: Device<f64>>(
    replayed: Option<net::TapedScalar<D>>,
    fresh: Option<(net::TapedScalar<D>, usize)>,
) -> (Option<net::TapedScalar<D>>, usize) {
    match fresh {
        Some((term, nfe)) => (Some(term), nfe),
        None => (replayed, 0),
    }
}

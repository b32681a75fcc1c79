//! Pal, Edelman & Rackauckas (ICML 2023), "Locally Regularized Neural Differential Equations":
//! penalizing the adaptive solver's own error estimate at a random time trains dynamics that
//! need fewer function evaluations (NFE), at similar accuracy.
//!
//! Arms: unregularized; local regularization (one random accepted step per batch: its scaled
//! error estimate times its step size, weight `reg_weight`); global regularization (the same
//! summed over every step of the trajectory). Tasks: classification of the 8x8 digits with a
//! neural ODE block, and fitting a 2-D spiral trajectory.

mod net;
mod verdict;

pub use net::{fork, step_taped, Dynamics, DynamicsTensors, TapedScalar};

use std::collections::BTreeMap;
use std::time::Instant;

use dfdx::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};

use super::{Experiment, FinishedRun, RunContext, RunEnd, RunStop};
use crate::metrics::{MetricSpec, Relative};
use crate::ode::{self, Tolerances};
use crate::optim::Adam;
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
struct Model {
    dynamics: Dynamics,
    /// Digits: 64 -> d encoder and d -> 10 read-out (row-major), with biases.
    w_in: Vec<f64>,
    b_in: Vec<f64>,
    w_out: Vec<f64>,
    b_out: Vec<f64>,
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
    let mut f = |_t: f64, y: &[f64]| {
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
    let sol = ode::solve(&mut f, 0.0, &[2.0, 0.0], &times, tol, 1_000_000)
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
            MetricSpec::new("us_per_prediction", "wall time per prediction").unit("us"),
            MetricSpec::new("reg_value", "error-estimate regularizer (global form)").log(),
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
            "us_per_prediction",
            "reg_value",
            "step_ms",
        ]
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
    let mut model = Model {
        dynamics: Dynamics::new(d, p.usize("hidden"), p.f64("init_scale"), &mut rng),
        w_in: (0..DIGIT_FEATURES * d)
            .map(|_| {
                let z: f64 = StandardNormal.sample(&mut rng);
                z / (DIGIT_FEATURES as f64).sqrt()
            })
            .collect(),
        b_in: vec![0.0; d],
        w_out: (0..d * CLASSES)
            .map(|_| {
                let z: f64 = StandardNormal.sample(&mut rng);
                z / (d as f64).sqrt()
            })
            .collect(),
        b_out: vec![0.0; CLASSES],
    };
    let trainer = Trainer {
        tol,
        max_steps: p.usize("max_solver_steps"),
        t_end: p.f64("t_end"),
        reg,
        reg_weight: p.f64("reg_weight"),
        biased: p.text("sampling") == "biased",
    };
    let mut adam = Adam64::new(p.f64("lr"));
    let (steps, log_every, batch) = (
        p.usize("steps") as u64,
        p.usize("log_every").max(1) as u64,
        p.usize("batch"),
    );
    let (mut loss, mut nfe_train, mut reg_value, mut step_ms) =
        (f64::NAN, f64::NAN, f64::NAN, f64::NAN);
    let mut last = BTreeMap::new();
    let mut step = 0u64;
    let mut total_ms = 0.0;
    loop {
        if step.is_multiple_of(log_every) || step == steps {
            let e = trainer
                .evaluate(dev, &model, &task)
                .map_err(|e| RunStop::Diverged {
                    step,
                    reason: format!("test solve failed: {e}"),
                })?;
            let mut values = vec![
                ("train_loss", loss),
                ("nfe_train", nfe_train),
                ("nfe_test", e.nfe),
                ("us_per_prediction", e.us_per_prediction),
                ("reg_value", reg_value),
                ("step_ms", step_ms),
            ];
            match task {
                Task::Digits { .. } => values.push(("test_acc", e.score)),
                Task::Spiral { .. } => values.push(("test_mse", e.score)),
            }
            ctx.record(step, &values);
            last = values.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        }
        if step >= steps {
            break;
        }
        if ctx.stop_requested() {
            return Err(RunStop::Stopped { step });
        }
        let t0 = Instant::now();
        let out = trainer
            .train_step(dev, &mut model, &task, batch, &mut rng, &mut adam)
            .map_err(|e| RunStop::Diverged { step, reason: e })?;
        total_ms += t0.elapsed().as_secs_f64() * 1e3;
        step_ms = total_ms / (step + 1) as f64;
        loss = out.loss;
        nfe_train = out.nfe as f64;
        reg_value = out.reg_value;
        step += 1;
    }
    Ok(RunEnd {
        steps: step,
        final_values: last,
    })
}

/// Adam over the model's parameter groups (f64).
struct Adam64 {
    inner: Adam,
}

impl Adam64 {
    fn new(lr: f64) -> Adam64 {
        Adam64 {
            inner: Adam::new(lr as f32),
        }
    }

    /// Steps in f32 arithmetic on copies, then writes back: the optimizer state is f32.
    fn step(&mut self, params: Vec<&mut Vec<f64>>, grads: &[Vec<f64>]) {
        let mut p32: Vec<Vec<f32>> = params
            .iter()
            .map(|v| v.iter().map(|x| *x as f32).collect())
            .collect();
        let g32: Vec<Vec<f32>> = grads
            .iter()
            .map(|v| v.iter().map(|x| *x as f32).collect())
            .collect();
        {
            let mut refs: Vec<&mut Vec<f32>> = p32.iter_mut().collect();
            self.inner.step(&mut refs, &g32);
        }
        for (dst, src) in params.into_iter().zip(&p32) {
            for (d, s) in dst.iter_mut().zip(src) {
                // Keep the f64 value and add the f32 update, so tiny updates are not lost.
                *d += (*s as f64) - (*d as f32 as f64);
            }
        }
    }
}

/// What a replay follows: the host solve's accepted steps, the host states at their ends (for
/// the tolerance scales) and the output times.
#[derive(Clone, Copy)]
struct Plan<'a> {
    sol: &'a ode::Solution,
    states: &'a [Vec<f64>],
    t_out: &'a [f64],
}

struct Trainer {
    tol: Tolerances,
    max_steps: usize,
    t_end: f64,
    reg: Regularizer,
    reg_weight: f64,
    /// Local regularization samples a step uniformly instead of a time.
    biased: bool,
}

struct StepResult {
    loss: f64,
    nfe: usize,
    reg_value: f64,
}

struct EvalResult {
    /// Accuracy (digits) or MSE (spiral) on the test set.
    score: f64,
    nfe: f64,
    us_per_prediction: f64,
}

impl Trainer {
    /// The host solve of the ODE block: accepted steps and statistics.
    fn solve<D: Device<f64>>(
        &self,
        net: &Dynamics,
        p: &DynamicsTensors<D>,
        dev: &D,
        y0: &[f64],
        t_out: &[f64],
    ) -> Result<ode::Solution, String> {
        let mut f = |t: f64, y: &[f64]| net.eval(p, dev, t, y);
        ode::solve(&mut f, 0.0, y0, t_out, self.tol, self.max_steps)
    }

    /// Replays the accepted steps on the tape from `y0`, returning the states at the output
    /// times (in order) and the regularizer's value on the tape, if any.
    fn replay<D: Device<f64>>(
        &self,
        net: &Dynamics,
        p: &DynamicsTensors<D>,
        y0: net::Taped<D>,
        plan: Plan<'_>,
        chosen: Option<usize>,
    ) -> (Vec<net::Taped<D>>, Option<net::TapedScalar<D>>) {
        let Plan {
            sol,
            states: host_states,
            t_out,
        } = plan;
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
                .then(|| net::tolerance_scale(&host_states[j], &host_states[j + 1], self.tol));
            let (y_next, e) = step_taped(net, p, y, *st, scale.as_deref());
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
        model: &mut Model,
        task: &Task,
        batch: usize,
        rng: &mut StdRng,
        adam: &mut Adam64,
    ) -> Result<StepResult, String> {
        let dev = dev.clone();
        let net = &model.dynamics;
        let p = net.tensors(&dev);
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
                let xt = dev.tensor_from_vec(x.clone(), (batch, DIGIT_FEATURES));
                let w_in = dev.tensor_from_vec(model.w_in.clone(), (DIGIT_FEATURES, d));
                let b_in = dev.tensor_from_vec(model.b_in.clone(), (d,));
                let w_out = dev.tensor_from_vec(model.w_out.clone(), (d, CLASSES));
                let b_out = dev.tensor_from_vec(model.b_out.clone(), (CLASSES,));
                let h0 = w_in.leaky_trace();
                let h0 = xt.retaped::<OwnedTape<f64, D>>().matmul(h0)
                    + b_in.leaky_trace().broadcast_like::<_, Axis<0>>(&(batch, d));
                let h0_values = h0.as_vec();
                let t_out = [self.t_end];
                let sol = self.solve(net, &p, &dev, &h0_values, &t_out)?;
                let states = self.host_states(net, &p, &dev, &h0_values, &sol)?;
                let chosen = self.pick_step(&sol, rng);
                let plan = Plan {
                    sol: &sol,
                    states: &states,
                    t_out: &t_out,
                };
                let (mut outs, reg) = self.replay(net, &p, h0, plan, chosen);
                let h1 = outs.pop().ok_or("no output state")?;
                let logits = h1.matmul(w_out.leaky_trace())
                    + b_out
                        .leaky_trace()
                        .broadcast_like::<_, Axis<0>>(&(batch, CLASSES));
                let mut onehot = vec![0.0; batch * CLASSES];
                for (r, y) in labels.iter().enumerate() {
                    onehot[r * CLASSES + y] = 1.0;
                }
                let target = dev.tensor_from_vec(onehot, (batch, CLASSES));
                let loss = cross_entropy_with_logits_loss(logits, target);
                let (task_loss, reg_value, loss) = self.add_regularizer(loss, reg, &sol)?;
                let g = loss.backward();
                let mut grads = Dynamics::grads(&p, &g);
                grads.push(g.get(&w_in).as_vec());
                grads.push(g.get(&b_in).as_vec());
                grads.push(g.get(&w_out).as_vec());
                grads.push(g.get(&b_out).as_vec());
                let Model {
                    dynamics,
                    w_in,
                    b_in,
                    w_out,
                    b_out,
                } = model;
                let mut params = dynamics.params_mut();
                params.extend([w_in, b_in, w_out, b_out]);
                adam.step(params, &grads);
                Ok(StepResult {
                    loss: task_loss,
                    nfe: sol.stats.nfe,
                    reg_value,
                })
            }
            Task::Spiral {
                y0, times, states, ..
            } => {
                // Train on the even-indexed observations.
                let t_out: Vec<f64> = times.iter().step_by(2).copied().collect();
                let targets: Vec<&Vec<f64>> = states.iter().step_by(2).collect();
                let sol = self.solve(net, &p, &dev, y0, &t_out)?;
                let host = self.host_states(net, &p, &dev, y0, &sol)?;
                let chosen = self.pick_step(&sol, rng);
                let y0t = dev
                    .tensor_from_vec(y0.clone(), (1usize, 2usize))
                    .retaped::<OwnedTape<f64, D>>();
                let plan = Plan {
                    sol: &sol,
                    states: &host,
                    t_out: &t_out,
                };
                let (outs, reg) = self.replay(net, &p, y0t, plan, chosen);
                let mut loss: Option<net::TapedScalar<D>> = None;
                let n = outs.len() as f64;
                for (o, target) in outs.into_iter().zip(&targets) {
                    let tt = dev.tensor_from_vec((*target).clone(), (1usize, 2usize));
                    let term = (o - tt).square().sum::<Rank0, _>() * (1.0 / n);
                    loss = Some(match loss {
                        None => term,
                        Some(l) => l + term,
                    });
                }
                let loss = loss.ok_or("no outputs")?;
                let (task_loss, reg_value, loss) = self.add_regularizer(loss, reg, &sol)?;
                let g = loss.backward();
                let grads = Dynamics::grads(&p, &g);
                adam.step(model.dynamics.params_mut(), &grads);
                Ok(StepResult {
                    loss: task_loss,
                    nfe: sol.stats.nfe,
                    reg_value,
                })
            }
        }
    }

    /// Adds the weighted regularizer to the task loss. Returns the task loss, the regularizer's
    /// value (the taped one for local regularization, else the global form from the host
    /// solve) and the total loss; a non-finite total is an error.
    fn add_regularizer<D: Device<f64>>(
        &self,
        loss: net::TapedScalar<D>,
        reg: Option<net::TapedScalar<D>>,
        sol: &ode::Solution,
    ) -> Result<(f64, f64, net::TapedScalar<D>), String> {
        let task_loss = loss.as_vec()[0];
        let mut reg_value = sol.steps.iter().map(|s| s.err * s.h.abs()).sum::<f64>();
        let mut loss = loss;
        if let Some(r) = reg {
            if self.reg == Regularizer::Local {
                reg_value = r.as_vec()[0];
            }
            loss = loss + r * self.reg_weight;
        }
        if !loss.as_vec()[0].is_finite() {
            return Err("non-finite loss".into());
        }
        Ok((task_loss, reg_value, loss))
    }

    /// The local regularizer's step: the accepted step containing a uniformly random time
    /// (unbiased sampling), or a uniformly random accepted step (biased sampling).
    fn pick_step(&self, sol: &ode::Solution, rng: &mut StdRng) -> Option<usize> {
        if self.reg != Regularizer::Local || sol.steps.is_empty() {
            return None;
        }
        if self.biased {
            return Some(rng.gen_range(0..sol.steps.len()));
        }
        let last = sol.steps.last().unwrap();
        let t = rng.gen::<f64>() * (last.t + last.h);
        Some(
            sol.steps
                .iter()
                .position(|s| t < s.t + s.h)
                .unwrap_or(sol.steps.len() - 1),
        )
    }

    /// The host states at the start of every accepted step and after the last one (for the
    /// tolerance scales of the error estimates).
    fn host_states<D: Device<f64>>(
        &self,
        net: &Dynamics,
        p: &DynamicsTensors<D>,
        dev: &D,
        y0: &[f64],
        sol: &ode::Solution,
    ) -> Result<Vec<Vec<f64>>, String> {
        let mut f = |t: f64, y: &[f64]| net.eval(p, dev, t, y);
        let mut states = vec![y0.to_vec()];
        let mut y = y0.to_vec();
        for st in &sol.steps {
            let k1 = f(st.t, &y);
            let (y5, _, _) = ode::dp5_step(&mut f, st.t, &y, &k1, st.h);
            y = y5;
            states.push(y.clone());
        }
        Ok(states)
    }

    /// Test score and NFE of a prediction whose only output time is the end point.
    fn evaluate<D: Device<f64>>(
        &self,
        dev: &D,
        model: &Model,
        task: &Task,
    ) -> Result<EvalResult, String> {
        let dev = dev.clone();
        let net = &model.dynamics;
        let p = net.tensors(&dev);
        let d = net.d;
        match task {
            Task::Digits { x_test, y_test, .. } => {
                let n = y_test.len();
                let t0 = Instant::now();
                let mut h = vec![0.0; n * d];
                for r in 0..n {
                    for j in 0..d {
                        let mut acc = model.b_in[j];
                        for i in 0..DIGIT_FEATURES {
                            acc += x_test[r * DIGIT_FEATURES + i] * model.w_in[i * d + j];
                        }
                        h[r * d + j] = acc;
                    }
                }
                let sol = self.solve(net, &p, &dev, &h, &[self.t_end])?;
                let h1 = &sol.ys[0];
                let mut logits = vec![0.0; n * CLASSES];
                for r in 0..n {
                    for c in 0..CLASSES {
                        let mut acc = model.b_out[c];
                        for j in 0..d {
                            acc += h1[r * d + j] * model.w_out[j * CLASSES + c];
                        }
                        logits[r * CLASSES + c] = acc;
                    }
                }
                let elapsed = t0.elapsed().as_secs_f64();
                let (_, acc) = softmax_xent(&logits, y_test);
                Ok(EvalResult {
                    score: acc,
                    nfe: sol.stats.nfe as f64,
                    us_per_prediction: elapsed * 1e6 / n as f64,
                })
            }
            Task::Spiral { y0, times, states } => {
                // Test error on the odd-indexed observations.
                let t_test: Vec<f64> = times.iter().skip(1).step_by(2).copied().collect();
                let sol = self.solve(net, &p, &dev, y0, &t_test)?;
                let mut mse = 0.0;
                for (y, target) in sol.ys.iter().zip(states.iter().skip(1).step_by(2)) {
                    mse += y
                        .iter()
                        .zip(target)
                        .map(|(a, b)| (a - b).powi(2))
                        .sum::<f64>();
                }
                mse /= t_test.len() as f64;
                // NFE and time of a prediction with only its end point requested.
                let t0 = Instant::now();
                let end = self.solve(net, &p, &dev, y0, &[*times.last().unwrap()])?;
                Ok(EvalResult {
                    score: mse,
                    nfe: end.stats.nfe as f64,
                    us_per_prediction: t0.elapsed().as_secs_f64() * 1e6,
                })
            }
        }
    }
}

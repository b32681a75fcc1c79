//! "An adaptively inexact first-order method for bilevel optimization with application to
//! hyperparameter learning" (Salehi, Mukherjee, Roberts & Ehrhardt, SIMODS; arXiv 2308.10098):
//! MAID solves the lower level and the adjoint system only as accurately as an a-posteriori
//! error bound needs for the inexact hypergradient to be a descent direction, and takes its
//! upper step by an inexact backtracking line search; the claim is that this converges without
//! a hand-set accuracy schedule, at lower total lower-level cost than HOAG's a-priori
//! schedules.
//!
//! Toy: 65 per-feature log L2 weights of a softmax regression on the digits (`problem`), the
//! methods in `outer`. Host numerics only (f64, nalgebra): every piece is a small dense product,
//! so nothing trains on a dfdx device and the run ignores the device choice. One driver step is
//! one unit of lower-level work (a FISTA gradient or a CG Hessian product), so the charts' x
//! axis is the cumulative lower-level cost; the run advances whole outer iterations until its
//! cost passes the step.

pub mod bench;
pub mod outer;
pub mod problem;
mod verdict;

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::classifier::DigitsSplit;
use super::driver::{self, Evaluation, Schedule, Trainer};
use super::profile::{DeviceCase, Profile};
use super::{Experiment, FinishedRun, RunContext, RunEnd, RunStop};
use crate::artifacts::{self, NamedTensor};
use crate::datasets::DIGIT_CLASSES;
use crate::metrics::MetricSpec;
use crate::params::{ParamSpec, Params};
use crate::verdict::Verdict;
use outer::{Method, Outer, Settings};
use problem::{features, Bilevel, FEATURES};

pub struct MaidBilevel;

/// Training and validation images per seed (the rest, 597, are the test set).
pub const N_TRAIN: usize = 600;
pub const N_VAL: usize = 600;
/// The accuracy of the final, outside-the-budget solve that measures `f(theta)`.
pub const EXACT_EPS: f64 = 1e-7;

impl Experiment for MaidBilevel {
    fn kind(&self) -> &'static str {
        "maid-bilevel"
    }

    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::choice(
                "method",
                &["maid", "hoag"],
                "maid",
                "MAID (a-posteriori accuracies, inexact backtracking) or HOAG (a-priori \
                 accuracy schedule, step 1/L_lambda)",
            ),
            ParamSpec::choice(
                "accuracy",
                &["adaptive", "fixed"],
                "adaptive",
                "MAID: eps and delta adapted by the error bound and the line search, or \
                 frozen at eps0",
            ),
            ParamSpec::choice(
                "schedule",
                &["geometric", "quadratic", "cubic"],
                "geometric",
                "HOAG: eps_k = eps0 0.9^k, eps0/k^2 or eps0/k^3 (delta_k = eps_k)",
            ),
            ParamSpec::float(
                "eps0",
                0.1,
                1e-12,
                10.0,
                "initial (or fixed) lower-level accuracy eps and CG residual delta",
            ),
            ParamSpec::float(
                "beta0",
                100.0,
                1e-6,
                1e6,
                "MAID: initial upper step beta (the line search shrinks a step by 0.9 per \
                 trial but grows it only by 10/9 per success: start large)",
            ),
            ParamSpec::float("theta0", -3.0, -6.0, 4.0, "initial log L2 weight"),
            ParamSpec::float("theta_min", -6.0, -20.0, 0.0, "lower clip of theta"),
            ParamSpec::float("theta_max", 4.0, 0.0, 20.0, "upper clip of theta"),
            ParamSpec::int(
                "steps",
                40_000,
                100,
                100_000_000,
                "lower-level budget: FISTA gradients + CG Hessian products (one pass over \
                 the training set each); the x axis",
            ),
            ParamSpec::int(
                "log_every",
                250,
                1,
                1_000_000,
                "lower-level units between measurements",
            ),
        ]
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        vec![
            MetricSpec::new(
                "upper_loss",
                "upper loss g (validation CE) at the accepted iterate",
            )
            .unit("nats, x = lower-level cost")
            .log()
            .reference("upper_loss_best"),
            MetricSpec::new("upper_loss_best", "lowest upper loss so far").log(),
            MetricSpec::new("eps", "lower-level accuracy eps").log(),
            MetricSpec::new("delta", "CG residual delta").log(),
            MetricSpec::new("step", "accepted upper step").log(),
            MetricSpec::new(
                "omega_over_p",
                "error bound / |p| (MAID keeps it <= 1 - eta)",
            )
            .log(),
            MetricSpec::new("test_acc", "test accuracy at the accepted iterate").unit("fraction"),
            MetricSpec::new(
                "ll_cost_per_outer",
                "lower-level work of the last outer iteration",
            ),
            MetricSpec::new("ll_cost", "cumulative lower-level work"),
            MetricSpec::new("outer_iters", "outer iterations"),
            MetricSpec::new("p_norm", "|p|, the inexact hypergradient's norm").log(),
            MetricSpec::new("theta_min", "smallest log weight"),
            MetricSpec::new("theta_max", "largest log weight"),
        ]
    }

    fn table_metrics(&self) -> Vec<&'static str> {
        vec![
            "upper_loss",
            "upper_loss_exact",
            "test_acc",
            "eps",
            "outer_iters",
            "accepted_steps",
            "ll_cost",
        ]
    }

    fn builtin_presets(&self) -> &'static [(&'static str, &'static str)] {
        &[(
            "presets/maid-bilevel.toml",
            include_str!("../../../presets/maid-bilevel.toml"),
        )]
    }

    fn verdict_bar(&self) -> Option<(&'static str, Option<&'static str>)> {
        Some(("upper_loss_exact", None))
    }

    fn quick_profile(&self) -> Profile {
        Profile {
            preset: "maid-bilevel",
            arms: &[
                "maid",
                "maid-eps1e-3",
                "hoag-geometric",
                "hoag-quadratic",
                "hoag-cubic",
                "fixed-1e-4",
            ],
            seeds: &[0, 1],
            overrides: &[("steps", "8000"), ("log_every", "100")],
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
            8.0 * 1797.0 * (FEATURES + 3 * DIGIT_CLASSES) as f64,
            "digits features, logits and probabilities (f64)".to_string(),
        )])
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<RunEnd, RunStop> {
        // Host numerics: the device choice does not apply.
        let p = ctx.params.clone();
        let mut run = MaidRun::new(&p, ctx.seed);
        let o = &run.outer;
        ctx.log(format!(
            "{} training / {} validation / {} test digits; lower-level mu = {:.3e}, L = {:.3}, \
             L_g = {:.3}; method {:?}, eps0 {}, budget {} lower-level units{}",
            o.prob.y_train.len(),
            o.prob.y_val.len(),
            o.prob.y_test.len(),
            o.prob.constants(&Outer::exp_theta(&o.theta)).0,
            o.prob.constants(&Outer::exp_theta(&o.theta)).1,
            o.prob.l_g,
            o.method,
            o.set.eps0,
            o.set.budget,
            if matches!(o.method, Method::Maid { .. }) {
                "; a failed line search also shrinks beta by rho^(10+j) (the official code \
                 keeps it)"
            } else {
                ""
            }
        ));
        let schedule = Schedule::from_params(&p);
        driver::drive(ctx, schedule, &mut run)
    }

    fn verdict(&self, claim: &str, preset_id: &str, runs: &[FinishedRun]) -> Verdict {
        verdict::compute(claim, preset_id, runs)
    }
}

/// The method a run's parameters name.
pub fn method(p: &Params) -> Method {
    match p.text("method") {
        "hoag" => Method::Hoag(match p.text("schedule") {
            "quadratic" => outer::Schedule::Quadratic,
            "cubic" => outer::Schedule::Cubic,
            _ => outer::Schedule::Geometric,
        }),
        _ => Method::Maid {
            adaptive: p.text("accuracy") == "adaptive",
        },
    }
}

/// One seed's problem: 600 training, 600 validation and 597 test digits.
pub fn problem_for_seed(seed: u64) -> Bilevel {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x3A1D_0001);
    let split = DigitsSplit::load((N_TRAIN + N_VAL) as f64 / 1797.0, None, &mut rng);
    let x = features(&split.x_train);
    let x_train = x.rows(0, N_TRAIN).into_owned();
    let x_val = x.rows(N_TRAIN, N_VAL).into_owned();
    Bilevel::new(
        x_train,
        split.y_train[..N_TRAIN].to_vec(),
        x_val,
        split.y_train[N_TRAIN..N_TRAIN + N_VAL].to_vec(),
        features(&split.x_test),
        split.y_test,
    )
}

/// One run: the method and its measurements.
pub struct MaidRun {
    pub outer: Outer,
    test_acc: f64,
    exact: Option<(f64, f64, nalgebra::DMatrix<f64>)>,
}

impl MaidRun {
    pub fn new(p: &Params, seed: u64) -> MaidRun {
        let set = Settings {
            eps0: p.f64("eps0"),
            beta0: p.f64("beta0"),
            theta0: p.f64("theta0"),
            theta_lo: p.f64("theta_min"),
            theta_hi: p.f64("theta_max"),
            budget: p.usize("steps") as u64,
        };
        MaidRun {
            outer: Outer::new(problem_for_seed(seed), method(p), set, seed),
            test_acc: f64::NAN,
            exact: None,
        }
    }
}

impl Trainer for MaidRun {
    fn evaluate(&mut self, _step: u64, _last: bool) -> Result<Evaluation, RunStop> {
        let o = &self.outer;
        self.test_acc = o.prob.test_accuracy(&o.w);
        let tmin = o.theta.iter().cloned().fold(f64::INFINITY, f64::min);
        let tmax = o.theta.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let mut values = vec![
            ("upper_loss", o.upper_loss),
            ("upper_loss_best", o.best_loss),
            ("eps", o.eps),
            ("delta", o.delta),
            ("test_acc", self.test_acc),
            ("ll_cost", o.cost.used as f64),
            ("ll_cost_per_outer", o.last_outer_cost as f64),
            ("outer_iters", o.outer_iters as f64),
            ("accepted_steps", o.accepted as f64),
            ("theta_min", tmin),
            ("theta_max", tmax),
        ];
        for (name, v) in [
            ("step", o.accepted_step),
            ("omega_over_p", o.omega_over_p),
            ("p_norm", o.p_norm),
        ] {
            if v.is_finite() {
                values.push((name, v));
            }
        }
        Ok(Evaluation::new(values))
    }

    fn step(&mut self, step: u64) -> Result<f64, RunStop> {
        self.outer.advance_to(step + 1);
        Ok(self.outer.upper_loss)
    }

    fn finish(&mut self, final_values: &mut std::collections::BTreeMap<String, f64>, _steps: u64) {
        let o = &self.outer;
        for (k, cost) in &o.reach {
            final_values.insert(format!("cost_to_level_{k:04}"), *cost as f64);
        }
        final_values.insert("upper_loss_min".into(), o.best_loss);
        final_values.insert("upper_loss_first".into(), o.first_loss);
        final_values.insert("c_estimate".into(), o.c_est);
        final_values.insert("failed_searches".into(), o.failed_searches as f64);
        final_values.insert("budget".into(), o.set.budget as f64);
        let exact = o.exact_upper(EXACT_EPS);
        final_values.insert("upper_loss_exact".into(), exact.0);
        final_values.insert("test_acc_exact".into(), exact.1);
        self.exact = Some(exact);
    }

    fn write_artifacts(&self, dir: &std::path::Path) -> std::io::Result<()> {
        let o = &self.outer;
        let row_major = |m: &nalgebra::DMatrix<f64>| -> Vec<f64> {
            (0..m.nrows())
                .flat_map(|i| (0..m.ncols()).map(move |j| m[(i, j)]))
                .collect()
        };
        let labels = |v: &[usize]| v.iter().map(|&l| l as f64).collect::<Vec<f64>>();
        let mut params = vec![
            NamedTensor::new("theta", &[FEATURES], o.theta.clone()),
            NamedTensor::new("W", &[FEATURES, DIGIT_CLASSES], row_major(&o.w)),
        ];
        if let Some((_, _, w)) = &self.exact {
            params.push(NamedTensor::new(
                "W_exact",
                &[FEATURES, DIGIT_CLASSES],
                row_major(w),
            ));
        }
        let (n, v, t) = (
            o.prob.y_train.len(),
            o.prob.y_val.len(),
            o.prob.y_test.len(),
        );
        let data = vec![
            NamedTensor::new("x_train", &[n, FEATURES], row_major(&o.prob.x_train)),
            NamedTensor::new("y_train", &[n], labels(&o.prob.y_train)),
            NamedTensor::new("x_val", &[v, FEATURES], row_major(&o.prob.x_val)),
            NamedTensor::new("y_val", &[v], labels(&o.prob.y_val)),
            NamedTensor::new("x_test", &[t, FEATURES], row_major(&o.prob.x_test)),
            NamedTensor::new("y_test", &[t], labels(&o.prob.y_test)),
        ];
        let text = format!(
            "bilevel hyperparameter learning on the digits (x = pixels/16 and a bias column of \
             ones)\n\
             lower: W = argmin mean CE(x_train @ W, y_train) + 1/2 sum_jc exp(theta_j) W_jc^2; \
             upper: g(W) = mean CE(x_val @ W, y_val)\n\
             W: the accepted lower-level iterate (upper_loss = g(W), test_acc = mean(argmax(x_test \
             @ W) == y_test)); W_exact: the lower level at the final theta solved to \
             |grad h| / min exp(theta) <= {EXACT_EPS:e} (upper_loss_exact = g(W_exact))\n\
             method {:?}: {} outer iterations, {} accepted steps, {} lower-level units (budget \
             {}), final eps {:.3e}\n",
            o.method, o.outer_iters, o.accepted, o.cost.used, o.set.budget, o.eps
        );
        artifacts::write_run(dir, &params, &data, &text)
    }
}

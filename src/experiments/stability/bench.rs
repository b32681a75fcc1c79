//! sgd-stability's speed figures: training steps per second of every arm, and the cost of one
//! Hutchinson estimate in gradient evaluations per probe.

use std::fmt::Write as _;
use std::time::Instant;

use dfdx::prelude::Cpu;
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::data;
use super::models::{Batch, Model};
use crate::experiments::profile::Profile;
use crate::metrics::hessian::hutchinson_trace;
use crate::nn::curvature::{fd_hvp, DeviceSpace};
use crate::nn::{ParamStore, ParamVec};

/// Every arm of the preset at its own parameters, measuring only at the ends.
const PRESET: Profile = Profile {
    preset: "sgd-stability",
    arms: &[],
    seeds: &[],
    overrides: &[
        ("stop_loss", "0"),
        ("final_probes", "4"),
        ("lanczos_iters", "2"),
    ],
};

pub fn report(quick: bool, out: &mut String) {
    steps_per_second(quick, out);
    hutchinson_cost(quick, out);
}

/// Training steps per second of every arm.
fn steps_per_second(quick: bool, out: &mut String) {
    let steps = if quick { 2_000 } else { 20_000 };
    let Ok(preset) = PRESET.preset() else {
        out.push_str("sgd-stability preset not found\n");
        return;
    };
    let _ = writeln!(
        out,
        "training steps per second, sgd-stability arms ({steps} vs {} steps, seed 0, one thread):",
        2 * steps
    );
    let _ = writeln!(out, "  {:<22} {:>12} {:>14}", "arm", "steps/s", "us/step");
    for arm in &preset.arms {
        match PRESET.seconds_per_step(&arm.name, steps, &[]) {
            Ok(per_step) => {
                let _ = writeln!(
                    out,
                    "  {:<22} {:>12.0} {:>14.2}",
                    arm.name,
                    1.0 / per_step,
                    per_step * 1e6
                );
            }
            Err(e) => {
                let _ = writeln!(out, "  {:<22} {:>12} ({e})", arm.name, "-");
            }
        }
    }
}

/// Gradient evaluations and time per Hutchinson probe on the preset's two models.
fn hutchinson_cost(quick: bool, out: &mut String) {
    let probes = if quick { 50 } else { 500 };
    let dev = Cpu::default();
    let mut rng = StdRng::seed_from_u64(0);
    out.push_str("\nHutchinson trace estimate (central-difference HVPs of dfdx gradients, f64):\n");
    let cases = [
        ("relu d=5 m=20, n=16", Model::Relu { dim: 5, width: 20 }, 16),
        ("diagonal d=40, n=20", Model::Diagonal { dim: 40 }, 20),
    ];
    for (name, model, n) in cases {
        let dim = match model {
            Model::Relu { dim, .. } | Model::Diagonal { dim } => dim,
        };
        let (train, _) = data::relu_teacher(dim, 2, n, 1, &mut rng);
        let batch = Batch::from_dataset(&dev, &train, None);
        let theta: Vec<f64> = (0..model.num_params())
            .map(|i| ((i * 37 % 11) as f64 - 5.0) * 0.1)
            .collect();
        let mut store = model.store(&dev, &theta);
        let space = DeviceSpace::of(&store);
        let t0 = Instant::now();
        let _ = model.gradient(&store, &batch);
        let grad_s = t0.elapsed().as_secs_f64();
        let mut evals = 0usize;
        let mut grad = |s: &ParamStore<f64, Cpu>| {
            evals += 1;
            model.gradient(s, &batch)
        };
        let t = Instant::now();
        let mut hvp = |v: &ParamVec<f64, Cpu>| fd_hvp(&mut store, &mut grad, v, 1e-2);
        let est = hutchinson_trace(&space, &mut hvp, probes, &mut rng);
        let secs = t.elapsed().as_secs_f64();
        let _ = writeln!(
            out,
            "  {name}: {:.2} gradient evaluations per probe (floor 2), {:.1} us per probe, \
             one full-batch gradient {:.1} us; trace {:.3} +- {:.3} from {probes} probes",
            evals as f64 / probes as f64,
            secs / probes as f64 * 1e6,
            grad_s * 1e6,
            est.value,
            est.std_err
        );
    }
}

//! lr-batch-rmt's speed figures: training steps per second of a learning-rate trial (SGD and
//! Adam, batch 32 and the full set) and Hessian- / Gauss-Newton-vector products per second, at
//! both widths of the preset (CPU, seed 0).

use std::fmt::Write as _;
use std::time::Instant;

use dfdx::prelude::Cpu;

use super::{gn_product, loss_and_grad, Data, LrSearch, Net};
use crate::experiments::profile::Profile;
use crate::nn::curvature::fd_hvp;
use crate::nn::Rule;

const PRESET: Profile = Profile {
    preset: "lr-batch-rmt",
    arms: &[],
    seeds: &[],
    overrides: &[],
};

pub fn report(quick: bool, out: &mut String) {
    let steps = if quick { 20 } else { 100 };
    let _ = writeln!(
        out,
        "\nlr-batch-rmt: trial steps and curvature products per second (CPU, seed 0, N = 1024):"
    );
    for (arm, width) in [("curvature", 32usize), ("wide-curvature", 256)] {
        let Ok(mut p) = PRESET.arm_params(arm, &[]) else {
            continue;
        };
        p.set("warm_steps", crate::params::ParamValue::Int(0));
        let data = Data::load(p.usize("n_train"), 0);
        let dev = Cpu::default();
        let mut net = Net::new(&dev, &data, &p, 0, "bench");
        for (name, rule) in [("sgd", Rule::sgd()), ("adam", Rule::adam())] {
            for b in [32usize, net.n()] {
                let s = LrSearch {
                    steps,
                    check_every: 10,
                    start_log2: -10.0,
                    cap_log2: 7.0,
                    resolution: 0.125,
                    batch_seed: 1,
                };
                let t = Instant::now();
                net.trial(rule, 1e-4, b, false, &s);
                let secs = t.elapsed().as_secs_f64();
                let _ = writeln!(
                    out,
                    "  width {width:<4} {name:<4} B = {b:<5} {:>8.0} steps/s (full-batch check every 10)",
                    steps as f64 / secs
                );
            }
        }
        let v = net.warm.clone();
        let (x, y) = net.batch(None);
        let reps = if quick { 3 } else { 10 };
        let t = Instant::now();
        for _ in 0..reps {
            let mlp = &net.mlp;
            let mut grad = |s: &crate::nn::ParamStore<f64, Cpu>| loss_and_grad(mlp, s, &x, &y).1;
            fd_hvp(&mut net.store, &mut grad, &v, 1e-4);
        }
        let hvp = reps as f64 / t.elapsed().as_secs_f64();
        let t = Instant::now();
        for _ in 0..reps {
            gn_product(&net.mlp, &mut net.store, &x, &v, 1e-4);
        }
        let gvp = reps as f64 / t.elapsed().as_secs_f64();
        let _ = writeln!(
            out,
            "  width {width:<4} full batch: {hvp:>6.1} Hessian-vector, {gvp:>6.1} Gauss-Newton-vector products/s"
        );
    }
}

//! vsae's speed figures: tokens per second of every arm, the TopK training step that the PyTorch
//! comparison times, and the cost of dead-feature tracking.

use std::fmt::Write as _;
use std::time::Instant;

use dfdx::prelude::Cpu;
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::model::{Sae, Variant};
use crate::experiments::profile::Profile;
use crate::metrics::dead_features::DeadFeatureTracker;
use crate::nn::{Optimizer, Rule};

/// Every arm at its own parameters (the digits network trained for one step only).
const PRESET: Profile = Profile {
    preset: "vsae",
    arms: &[],
    seeds: &[],
    overrides: &[("mlp_steps", "1")],
};

/// Tokens per second of every vsae arm, and the cost of dead-feature tracking relative to one
/// training step.
pub fn report(quick: bool, out: &mut String) {
    let Ok(preset) = PRESET.preset() else {
        return;
    };
    let steps = if quick { 50 } else { 300 };
    let _ = writeln!(
        out,
        "\nvsae: tokens per second per arm ({steps} vs {} steps, seed 0, one thread):",
        2 * steps
    );
    for arm in &preset.arms {
        let batch = arm.params.usize("batch") as f64;
        match PRESET.seconds_per_step(&arm.name, steps, &[]) {
            Ok(per_step) => {
                let _ = writeln!(
                    out,
                    "  {:<20} {:>10.0} tokens/s  ({:.2} ms/step)",
                    arm.name,
                    batch / per_step,
                    per_step * 1e3
                );
            }
            Err(e) => {
                let _ = writeln!(out, "  {:<20} (could not be timed: {e})", arm.name);
            }
        }
    }
    // Tracking cost against a TopK step at the preset's size.
    let reps = if quick { 20 } else { 200 };
    let step_s = topk_step_ms(reps) / 1e3;
    let (m, b) = (192, 256);
    let last: Vec<f32> = (0..m).map(|j| (j % 7) as f32).collect();
    let mut tracker = DeadFeatureTracker::new(m, 25_600);
    let t = Instant::now();
    for _ in 0..reps {
        tracker.observe_last_rows(std::hint::black_box(&last), b);
        std::hint::black_box(tracker.dead_fraction());
    }
    let track_s = t.elapsed().as_secs_f64() / reps as f64;
    let _ = writeln!(
        out,
        "  dead-feature tracking: {:.1} us per batch of {b} tokens x {m} latents, {:.2}% of a \
         TopK training step ({:.2} ms; target under 5%)",
        track_s * 1e6,
        track_s / step_s * 100.0,
        step_s * 1e3
    );
}

/// Milliseconds per TopK SAE training step at the vsae preset's size (d 32, m 192, k 8,
/// batch 256, Adam, decoder renormalized): forward, TopK, backward, update, on the CPU.
pub fn topk_step_ms(reps: usize) -> f64 {
    let dev = Cpu::default();
    let mut rng = StdRng::seed_from_u64(0);
    let (d, m, k, b) = (32, 192, 8, 256);
    let mut sae = Sae::new(&dev, d, m, k, Variant::TopK, &mut rng);
    let mut opt = Optimizer::new(Rule::adam(), 1e-3);
    let x: Vec<f32> = (0..b * d)
        .map(|_| rand_distr::Distribution::<f32>::sample(&rand_distr::StandardNormal, &mut rng))
        .collect();
    let mut step = |sae: &mut Sae<Cpu>| {
        let mut out = sae.train_step(&x, b, None, 1.0, &mut rng);
        opt.step(&mut sae.store, &mut out.grads)
            .expect("cpu update");
        sae.normalize_decoder();
    };
    for _ in 0..5 {
        step(&mut sae);
    }
    let mut times: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..reps.max(1) {
                step(&mut sae);
            }
            t.elapsed().as_secs_f64() * 1e3 / reps.max(1) as f64
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[2]
}

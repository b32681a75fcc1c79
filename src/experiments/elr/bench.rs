//! elr-noisy-labels' speed figures: training steps per second of every arm (CE, and CE + ELR
//! with its host-side target update) and the cost of one evaluation on all 1797 images.

use std::fmt::Write as _;

use crate::device::DeviceChoice;
use crate::experiments::profile::Profile;
use crate::params::Override;

const PRESET: Profile = Profile {
    preset: "elr-noisy-labels",
    arms: &[],
    seeds: &[],
    overrides: &[],
};

fn set(pairs: &[(&str, usize)]) -> Vec<Override> {
    pairs
        .iter()
        .map(|(k, v)| Override {
            key: k.to_string(),
            value: v.to_string(),
        })
        .collect()
}

/// Wall seconds of a run of `epochs` epochs evaluated only at its start and end.
fn timed(arm: &str, epochs: usize) -> Result<f64, String> {
    let o = set(&[("epochs", epochs), ("eval_every", epochs)]);
    PRESET
        .run_arm(arm, 0, &o, DeviceChoice::Cpu)
        .map(|(_, s)| s)
}

pub fn report(quick: bool, out: &mut String) {
    let Ok(preset) = PRESET.preset() else {
        return;
    };
    let epochs = if quick { 2 } else { 10 };
    let _ = writeln!(
        out,
        "\nelr-noisy-labels: training steps per second per arm ({epochs} vs {} epochs of 19 \
         steps at batch 64, seed 0):",
        2 * epochs
    );
    for arm in &preset.arms {
        let per_epoch = 1258 / arm.params.usize("batch").max(1);
        match (timed(&arm.name, epochs), timed(&arm.name, 2 * epochs)) {
            (Ok(a), Ok(b)) if b > a => {
                let per_step = (b - a) / (epochs * per_epoch) as f64;
                let _ = writeln!(
                    out,
                    "  {:<10} {:>8.0} steps/s  ({:.3} ms/step)",
                    arm.name,
                    1.0 / per_step,
                    per_step * 1e3
                );
            }
            (Err(e), _) | (_, Err(e)) => {
                let _ = writeln!(out, "  {:<10} (could not be timed: {e})", arm.name);
            }
            _ => {
                let _ = writeln!(out, "  {:<10} (too fast to time)", arm.name);
            }
        }
    }
    // Two epochs evaluated after each against two evaluated at the end: one evaluation apart.
    let each = PRESET.run_arm(
        "elr-n40",
        0,
        &set(&[("epochs", 2), ("eval_every", 1)]),
        DeviceChoice::Cpu,
    );
    let ends = PRESET.run_arm(
        "elr-n40",
        0,
        &set(&[("epochs", 2), ("eval_every", 2)]),
        DeviceChoice::Cpu,
    );
    if let (Ok((_, a)), Ok((_, b))) = (each, ends) {
        let _ = writeln!(
            out,
            "  one evaluation (1258 training + 539 test images, host metrics): about {:.1} ms",
            (a - b).max(0.0) * 1e3
        );
    }
}

//! ftwt-dynamic-pruning's speed figures: training steps per second of every arm (dense
//! pretraining and the gated fine-tuning with its host-side targets and masks).

use std::fmt::Write as _;

use crate::device::DeviceChoice;
use crate::experiments::profile::Profile;
use crate::params::Override;

const PRESET: Profile = Profile {
    preset: "ftwt-dynamic-pruning",
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

/// Wall seconds of a run with one pretraining epoch and `epochs` gated epochs, evaluated only
/// at its start and end.
fn timed(arm: &str, epochs: usize) -> Result<f64, String> {
    let o = set(&[
        ("pretrain_epochs", 1),
        ("epochs", epochs),
        ("eval_every", epochs + 1),
    ]);
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
        "\nftwt-dynamic-pruning: gated fine-tuning steps per second per arm ({epochs} vs {} \
         epochs of 19 steps at batch 64, seed 0):",
        2 * epochs
    );
    for arm in &preset.arms {
        let per_epoch = 1258 / arm.params.usize("batch").max(1);
        match (timed(&arm.name, epochs), timed(&arm.name, 2 * epochs)) {
            (Ok(a), Ok(b)) if b > a => {
                let per_step = (b - a) / (epochs * per_epoch) as f64;
                let _ = writeln!(
                    out,
                    "  {:<12} {:>8.0} steps/s  ({:.3} ms/step)",
                    arm.name,
                    1.0 / per_step,
                    per_step * 1e3
                );
            }
            (Err(e), _) | (_, Err(e)) => {
                let _ = writeln!(out, "  {:<12} (could not be timed: {e})", arm.name);
            }
            _ => {
                let _ = writeln!(out, "  {:<12} (too fast to time)", arm.name);
            }
        }
    }
}

//! trained-rank-pruning's speed figures: training steps per second of every arm (host SVDs every
//! period and twins trained in lockstep against plain training).

use std::fmt::Write as _;

use crate::device::DeviceChoice;
use crate::experiments::profile::Profile;
use crate::params::Override;

const PRESET: Profile = Profile {
    preset: "trained-rank-pruning",
    arms: &[],
    seeds: &[],
    overrides: &[],
};

/// Seconds per step of `arm`: the difference of runs of `epochs` and `2 * epochs` epochs
/// (measured only at their ends), so set-up and measurements cancel.
pub fn seconds_per_step(profile: &Profile, arm: &str, epochs: usize) -> Result<f64, String> {
    let params = profile.arm_params(arm, &[])?;
    let timed = |e: usize| {
        let o: Vec<Override> = [("epochs", e), ("eval_every", e)]
            .iter()
            .map(|(k, v)| Override {
                key: k.to_string(),
                value: v.to_string(),
            })
            .collect();
        profile.run_arm(arm, 0, &o, DeviceChoice::Cpu).map(|r| r.1)
    };
    let (a, b) = (timed(epochs)?, timed(2 * epochs)?);
    let per_epoch = crate::experiments::classifier::steps_for(
        params.usize("n_train"),
        params.usize("batch"),
        1,
    );
    if b > a {
        Ok((b - a) / (epochs * per_epoch) as f64)
    } else {
        Err("too fast to time".into())
    }
}

pub fn report(quick: bool, out: &mut String) {
    let Ok(preset) = PRESET.preset() else {
        return;
    };
    let epochs = if quick { 2 } else { 10 };
    let _ = writeln!(
        out,
        "\ntrained-rank-pruning: training steps per second per arm ({epochs} vs {} epochs, seed 0):",
        2 * epochs
    );
    for arm in &preset.arms {
        match seconds_per_step(&PRESET, &arm.name, epochs) {
            Ok(s) => {
                let _ = writeln!(
                    out,
                    "  {:<12} {:>8.0} steps/s  ({:.3} ms/step)",
                    arm.name,
                    1.0 / s,
                    s * 1e3
                );
            }
            Err(e) => {
                let _ = writeln!(out, "  {:<12} (could not be timed: {e})", arm.name);
            }
        }
    }
}

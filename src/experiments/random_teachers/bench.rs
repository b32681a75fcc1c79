//! random-teachers' speed figures: training steps per second of every training arm (one
//! student forward and backward pass; the teacher's targets are computed once per run).

use std::fmt::Write as _;

use crate::experiments::profile::Profile;
use crate::params::Override;

const PRESET: Profile = Profile {
    preset: "random-teachers",
    arms: &[],
    seeds: &[],
    overrides: &[],
};

pub fn report(quick: bool, out: &mut String) {
    let Ok(preset) = PRESET.preset() else {
        return;
    };
    let steps = if quick { 10 } else { 50 };
    let _ = writeln!(
        out,
        "\nrandom-teachers: training steps per second per arm ({steps} vs {} steps at batch \
         256, K 1024, seed 0):",
        2 * steps
    );
    let probe_at_end = [Override {
        key: "probe_every".into(),
        value: "1000000".into(),
    }];
    for arm in &preset.arms {
        if arm.params.text("method") == "teacher" {
            continue;
        }
        match PRESET.seconds_per_step(&arm.name, steps, &probe_at_end) {
            Ok(s) => {
                let _ = writeln!(
                    out,
                    "  {:<22} {:>8.0} steps/s  ({:.3} ms/step)",
                    arm.name,
                    1.0 / s,
                    s * 1e3
                );
            }
            Err(e) => {
                let _ = writeln!(out, "  {:<22} (could not be timed: {e})", arm.name);
            }
        }
    }
}

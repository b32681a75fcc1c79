//! sara's speed figures: adaptation steps per second of every method at the default learning
//! rate (SaRA's includes one host SVD of a hidden matrix per step).

use std::fmt::Write as _;

use crate::experiments::profile::Profile;

const PRESET: Profile = Profile {
    preset: "sara",
    arms: &[],
    seeds: &[],
    overrides: &[("pretrain_steps", "10")],
};

pub fn report(quick: bool, out: &mut String) {
    let steps = if quick { 40 } else { 200 };
    let _ = writeln!(
        out,
        "\nsara: adaptation steps per second ({steps} vs {} steps, seed 0):",
        2 * steps
    );
    for arm in [
        "frozen",
        "full",
        "lora-r4",
        "sara",
        "sara-nonuc",
        "random-sparse",
    ] {
        match PRESET.seconds_per_step(arm, steps, &[]) {
            Ok(s) => {
                let _ = writeln!(
                    out,
                    "  {arm:<14} {:>8.0} steps/s  ({:.3} ms/step)",
                    1.0 / s,
                    s * 1e3
                );
            }
            Err(e) => {
                let _ = writeln!(out, "  {arm:<14} (could not be timed: {e})");
            }
        }
    }
}

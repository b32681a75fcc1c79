//! weight-compander's speed figures: training steps per second of every arm (the compander's
//! device arctangent and chain rule against plain weights).

use std::fmt::Write as _;

use crate::experiments::profile::Profile;

const PRESET: Profile = Profile {
    preset: "weight-compander",
    arms: &[],
    seeds: &[],
    overrides: &[],
};

pub fn report(quick: bool, out: &mut String) {
    let epochs = if quick { 10 } else { 60 };
    let _ = writeln!(
        out,
        "\nweight-compander: training steps per second per arm ({epochs} vs {} epochs, seed 0):",
        2 * epochs
    );
    PRESET.speed_lines(("epochs", "eval_every"), epochs, &[], |_| false, out);
}

//! trained-rank-pruning's speed figures: training steps per second of every arm (host SVDs every
//! period and twins trained in lockstep against plain training).

use std::fmt::Write as _;

use crate::experiments::profile::Profile;

const PRESET: Profile = Profile {
    preset: "trained-rank-pruning",
    arms: &[],
    seeds: &[],
    overrides: &[],
};

pub fn report(quick: bool, out: &mut String) {
    let epochs = if quick { 2 } else { 10 };
    let _ = writeln!(
        out,
        "\ntrained-rank-pruning: training steps per second per arm ({epochs} vs {} epochs, seed 0):",
        2 * epochs
    );
    PRESET.speed_lines(("epochs", "eval_every"), epochs, &[], |_| false, out);
}

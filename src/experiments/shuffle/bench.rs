//! layerwise-shuffle's speed figures: training steps per second of every arm (the shuffle's
//! two permutation products per shuffled layer against the plain stack).

use std::fmt::Write as _;

use crate::experiments::profile::Profile;

const PRESET: Profile = Profile {
    preset: "layerwise-shuffle",
    arms: &[],
    seeds: &[],
    overrides: &[],
};

pub fn report(quick: bool, out: &mut String) {
    let epochs = if quick { 2 } else { 10 };
    let _ = writeln!(
        out,
        "\nlayerwise-shuffle: training steps per second per arm ({epochs} vs {} epochs, seed 0):",
        2 * epochs
    );
    PRESET.speed_lines(("epochs", "eval_every"), epochs, &[], |_| false, out);
}

//! ps-kd's speed figures: training steps per second of every arm (PS-KD adds a download of the
//! batch's softmax and a host update of the stored predictions).

use std::fmt::Write as _;

use crate::experiments::profile::Profile;

const PRESET: Profile = Profile {
    preset: "ps-kd",
    arms: &[],
    seeds: &[],
    overrides: &[],
};

pub fn report(quick: bool, out: &mut String) {
    let epochs = if quick { 10 } else { 50 };
    let _ = writeln!(
        out,
        "\nps-kd: training steps per second per arm ({epochs} vs {} epochs, seed 0):",
        2 * epochs
    );
    PRESET.speed_lines(("epochs", "eval_every"), epochs, &[], |_| false, out);
}

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
    // One arm per method, at the default learning rate.
    const SHOWN: [&str; 6] = [
        "frozen",
        "full",
        "lora-r4",
        "sara",
        "sara-nonuc",
        "random-sparse",
    ];
    PRESET.speed_lines(
        ("steps", "log_every"),
        steps,
        &[],
        |a| !SHOWN.contains(&a.name.as_str()),
        out,
    );
}

//! msbreg's speed figures: training steps per second of every training arm (augmentation and
//! the host SVD of the singular-value term included).

use std::fmt::Write as _;

use crate::experiments::profile::Profile;
use crate::params::Override;

const PRESET: Profile = Profile {
    preset: "msbreg",
    arms: &[],
    seeds: &[],
    overrides: &[],
};

fn set(key: &str, value: &str) -> Override {
    Override {
        key: key.into(),
        value: value.into(),
    }
}

pub fn report(quick: bool, out: &mut String) {
    let steps = if quick { 10 } else { 50 };
    let _ = writeln!(
        out,
        "\nmsbreg: training steps per second per arm ({steps} vs {} steps at batch 128, seed 0):",
        2 * steps
    );
    let probe_at_end = [set("probe_every", "1000000")];
    PRESET.speed_lines(
        ("steps", "log_every"),
        steps,
        &probe_at_end,
        |a| a.params.text("method") == "none",
        out,
    );
}

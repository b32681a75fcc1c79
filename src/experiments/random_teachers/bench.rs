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
        "\nrandom-teachers: training steps per second per arm ({steps} vs {} steps at batch \
         256, K 1024, seed 0):",
        2 * steps
    );
    let probe_at_end = [set("probe_every", "1000000")];
    PRESET.speed_lines(
        ("steps", "log_every"),
        steps,
        &probe_at_end,
        |a| a.params.text("method") == "teacher",
        out,
    );
}

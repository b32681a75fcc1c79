//! oomd-sea's speed figures: rounds per second per arm (three learners, the running sums and,
//! every 100 rounds, the comparator re-solved).

use std::fmt::Write as _;

use crate::experiments::profile::Profile;

const PRESET: Profile = Profile {
    preset: "oomd-sea",
    arms: &[],
    seeds: &[],
    overrides: &[],
};

pub fn report(quick: bool, out: &mut String) {
    let rounds = if quick { 200 } else { 1000 };
    let _ = writeln!(
        out,
        "\noomd-sea: rounds per second per arm ({rounds} vs {} rounds, seed 0):",
        2 * rounds
    );
    PRESET.speed_lines(("steps", "log_every"), rounds, &[], |_| false, out);
}

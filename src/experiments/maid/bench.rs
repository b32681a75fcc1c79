//! maid-bilevel's speed figures: lower-level units (FISTA gradients, CG products) per second per
//! arm, outer-loop overhead included.

use std::fmt::Write as _;

use crate::experiments::profile::Profile;

const PRESET: Profile = Profile {
    preset: "maid-bilevel",
    arms: &[],
    seeds: &[],
    overrides: &[],
};

pub fn report(quick: bool, out: &mut String) {
    let units = if quick { 1000 } else { 4000 };
    let _ = writeln!(
        out,
        "\nmaid-bilevel: lower-level units per second per arm ({units} vs {} units, seed 0):",
        2 * units
    );
    PRESET.speed_lines(("steps", "log_every"), units, &[], |_| false, out);
}

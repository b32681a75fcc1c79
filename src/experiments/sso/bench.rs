//! sso-surrogate's speed figures: expensive calls per second per arm (SGD: one product; SSO: m
//! cheap inner steps and a 65x65 eigen-solve; exact: a pseudo-inverse).

use std::fmt::Write as _;

use crate::experiments::profile::Profile;

const PRESET: Profile = Profile {
    preset: "sso-surrogate",
    arms: &[],
    seeds: &[],
    overrides: &[],
};

pub fn report(quick: bool, out: &mut String) {
    let calls = if quick { 20 } else { 100 };
    let _ = writeln!(
        out,
        "\nsso-surrogate: expensive calls per second per arm ({calls} vs {} calls, seed 0):",
        2 * calls
    );
    PRESET.speed_lines(("steps", "log_every"), calls, &[], |_| false, out);
}

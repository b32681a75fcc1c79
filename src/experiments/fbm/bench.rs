//! fbm-sde-vi's speed figures: steps per second per arm (exact arms: Nelder-Mead iterations,
//! each one or two Kalman likelihoods over the training paths; vi: ELBO steps, each an
//! Euler-Maruyama pass over 8 x 16 sampled paths on the tape and its backward).

use std::fmt::Write as _;

use crate::experiments::profile::Profile;

const PRESET: Profile = Profile {
    preset: "fbm-sde-vi",
    arms: &[],
    seeds: &[],
    overrides: &[],
};

pub fn report(quick: bool, out: &mut String) {
    let steps = if quick { 4 } else { 20 };
    let _ = writeln!(
        out,
        "\nfbm-sde-vi: steps per second per arm ({steps} vs {} steps, seed 0; H = 0.2 arms):",
        2 * steps
    );
    PRESET.speed_lines(
        ("steps", "log_every"),
        steps,
        &[],
        |a| !a.name.ends_with("h0.2"),
        out,
    );
}

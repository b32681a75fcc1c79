//! smooth-diffusion's speed figures: training steps per second per arm (a regularized step is
//! two forward passes and one backward through both; the evaluation is made small and cancels
//! between the two timed lengths).

use std::fmt::Write as _;

use crate::experiments::profile::Profile;

const PRESET: Profile = Profile {
    preset: "smooth-diffusion",
    arms: &[],
    seeds: &[],
    overrides: &[
        ("eval_every", "1000000"),
        ("ddim_steps", "2"),
        ("pairs", "2"),
        ("fd_samples", "8"),
    ],
};

pub fn report(quick: bool, out: &mut String) {
    let steps = if quick { 10 } else { 100 };
    let _ = writeln!(
        out,
        "\nsmooth-diffusion: training steps per second per arm ({steps} vs {} steps, seed 0):",
        2 * steps
    );
    PRESET.speed_lines(("steps", "log_every"), steps, &[], |_| false, out);
}

//! rrcm-smoothing's speed figures: training steps per second per arm (a consistency step is
//! two noisy forward passes; the denoise arm trains nothing per step). The shared networks are
//! made small and certification cancels between the two timed lengths.

use std::fmt::Write as _;

use crate::experiments::profile::Profile;

const PRESET: Profile = Profile {
    preset: "rrcm-smoothing",
    arms: &[],
    seeds: &[],
    overrides: &[
        ("pretrain_steps", "2"),
        ("denoiser_steps", "2"),
        ("clean_steps", "2"),
        ("n_cert", "1"),
        ("n_mc", "10"),
        ("n0", "2"),
        ("log_every", "1000000"),
    ],
};

pub fn report(quick: bool, out: &mut String) {
    let steps = if quick { 10 } else { 100 };
    let _ = writeln!(
        out,
        "\nrrcm-smoothing: training steps per second per arm ({steps} vs {} steps, seed 0):",
        2 * steps
    );
    PRESET.speed_lines(
        ("steps", "log_every"),
        steps,
        &[],
        |a| a.params.text("method") == "denoise",
        out,
    );
}

//! quantnas-sr's speed figures: steps per second of every arm (a search step runs the whole
//! supernet twice, weights then alphas; QAT steps run one discrete net).

use std::fmt::Write as _;

use crate::experiments::profile::Profile;

const PRESET: Profile = Profile {
    preset: "quantnas-sr",
    arms: &[],
    seeds: &[],
    overrides: &[("warmup", "0"), ("qat_steps", "1"), ("log_every", "100000")],
};

pub fn report(quick: bool, out: &mut String) {
    let steps = if quick { 10 } else { 60 };
    let _ = writeln!(
        out,
        "\nquantnas-sr: steps per second per arm ({steps} vs {} steps, seed 0): search steps of \
         the searched arms, then QAT steps of the fixed nets:",
        2 * steps
    );
    let fixed = |a: &crate::presets::Arm| a.name.starts_with("fixed-");
    PRESET.speed_lines(("search_steps", "log_every"), steps, &[], |a| fixed(a), out);
    PRESET.speed_lines(("qat_steps", "log_every"), steps, &[], |a| !fixed(a), out);
}

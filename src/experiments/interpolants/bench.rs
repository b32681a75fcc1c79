//! stochastic-interpolants' speed figures: training steps per second of the learned arms (both
//! networks; sampling cancels in the difference of two run lengths), and the wall time of one
//! exact-field run (5 samplers on the final particles, host f64 fields).

use std::fmt::Write as _;

use crate::device::DeviceChoice;
use crate::experiments::profile::Profile;
use crate::params::Override;

const PRESET: Profile = Profile {
    preset: "stochastic-interpolants",
    arms: &[],
    seeds: &[],
    overrides: &[("particles", "200"), ("target_n", "400")],
};

pub fn report(quick: bool, out: &mut String) {
    let steps = if quick { 50 } else { 200 };
    let _ = writeln!(
        out,
        "\nstochastic-interpolants: training steps per second per learned arm ({steps} vs {} \
         steps, seed 0, one thread):",
        2 * steps
    );
    let extra = [Override {
        key: "sample_every".into(),
        value: "1000000".into(),
    }];
    PRESET.speed_lines(
        ("steps", "log_every"),
        steps,
        &extra,
        |a| a.params.text("field") != "learned",
        out,
    );
    let preset = Profile {
        overrides: &[],
        ..PRESET
    };
    for arm in ["exact-d0", "exact-d1"] {
        let _ = match preset.run_arm(arm, 0, &[], DeviceChoice::Cpu) {
            Ok((_, secs)) => writeln!(
                out,
                "  {arm:<22} {secs:>8.2} s/run  (2000 particles, ODE Heun 100 + 4 SDE x 200 steps)"
            ),
            Err(e) => writeln!(out, "  {arm:<22} (could not be timed: {e})"),
        };
    }
}

//! sm-nngp's speed figures: training sizes fitted and evaluated per second per arm (a step is
//! one size: the eps selection's Choleskys, K_y^-1 and the five test sets' predictives).

use std::fmt::Write as _;

use crate::device::DeviceChoice;
use crate::experiments::profile::Profile;
use crate::params::Override;

const PRESET: Profile = Profile {
    preset: "sm-nngp",
    arms: &[],
    seeds: &[],
    overrides: &[],
};

pub fn report(quick: bool, out: &mut String) {
    let max_n = if quick { 300 } else { 1000 };
    let _ = writeln!(
        out,
        "\nsm-nngp: one run per arm (sizes 30..{max_n}, seed 0; kernel set-up included):"
    );
    let Ok(preset) = PRESET.preset() else {
        return;
    };
    let extra = [
        Override {
            key: "max_n".into(),
            value: max_n.to_string(),
        },
        Override {
            key: "verdict_n".into(),
            value: "30".into(),
        },
    ];
    for arm in &preset.arms {
        let _ = match PRESET.run_arm(&arm.name, 0, &extra, DeviceChoice::Cpu) {
            Ok((end, secs)) => writeln!(
                out,
                "  {:<22} {:>8.2} s/run  ({:.2} sizes/s)",
                arm.name,
                secs,
                (end.steps + 1) as f64 / secs
            ),
            Err(e) => writeln!(out, "  {:<22} (could not be timed: {e})", arm.name),
        };
    }
}

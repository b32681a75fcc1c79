//! local-reg-node's speed figures: test NFE, wall time per prediction and training steps per
//! second of every arm.

use std::fmt::Write as _;

use crate::device::DeviceChoice;
use crate::experiments::profile::Profile;
use crate::params::Override;

const PRESET: Profile = Profile {
    preset: "local-reg-node",
    arms: &[],
    seeds: &[],
    overrides: &[],
};

/// NFE, wall time per prediction and training speed of every local-reg-node arm.
pub fn report(quick: bool, out: &mut String) {
    let Ok(preset) = PRESET.preset() else {
        return;
    };
    let _ = writeln!(
        out,
        "\nlocal-reg-node: per arm after training (seed 0{}):",
        if quick {
            ", 50 steps"
        } else {
            ", the preset's steps"
        }
    );
    let _ = writeln!(
        out,
        "  {:<14} {:>9} {:>16} {:>14} {:>10}",
        "arm", "test NFE", "us/prediction", "train steps/s", "accuracy"
    );
    for arm in &preset.arms {
        let steps = Override {
            key: "steps".into(),
            value: "50".into(),
        };
        let extra = if quick { vec![steps] } else { vec![] };
        match PRESET.run_arm(&arm.name, 0, &extra, DeviceChoice::Cpu) {
            Ok((end, _)) => {
                let v = |k: &str| end.final_values.get(k).copied().unwrap_or(f64::NAN);
                let score = if v("test_acc").is_finite() {
                    format!("{:.4}", v("test_acc"))
                } else {
                    format!("mse {:.4}", v("test_mse"))
                };
                let _ = writeln!(
                    out,
                    "  {:<14} {:>9.0} {:>16.1} {:>14.0} {:>10}",
                    arm.name,
                    v("nfe_test"),
                    v("us_per_prediction"),
                    1e3 / v("step_ms"),
                    score
                );
            }
            Err(e) => {
                let _ = writeln!(out, "  {:<14} ({e})", arm.name);
            }
        }
    }
}

//! elr-noisy-labels' speed figures: training steps per second of every arm (CE, and CE + ELR
//! with its host-side target update) and the cost of one evaluation on all 1797 images.

use std::fmt::Write as _;

use crate::device::DeviceChoice;
use crate::experiments::profile::Profile;
use crate::params::Override;

const PRESET: Profile = Profile {
    preset: "elr-noisy-labels",
    arms: &[],
    seeds: &[],
    overrides: &[],
};

pub fn report(quick: bool, out: &mut String) {
    let epochs = if quick { 2 } else { 10 };
    let _ = writeln!(
        out,
        "\nelr-noisy-labels: training steps per second per arm ({epochs} vs {} epochs, seed 0):",
        2 * epochs
    );
    PRESET.speed_lines(("epochs", "eval_every"), epochs, &[], |_| false, out);
    // Two epochs evaluated after each against two evaluated at the end: one evaluation apart.
    let run = |every: usize| {
        let o: Vec<Override> = [("epochs", 2), ("eval_every", every)]
            .iter()
            .map(|(k, v)| Override {
                key: k.to_string(),
                value: v.to_string(),
            })
            .collect();
        PRESET.run_arm("elr-n40", 0, &o, DeviceChoice::Cpu)
    };
    if let (Ok((_, a)), Ok((_, b))) = (run(1), run(2)) {
        let _ = writeln!(
            out,
            "  one evaluation (1258 training + 539 test images, host metrics): about {:.1} ms",
            (a - b).max(0.0) * 1e3
        );
    }
}

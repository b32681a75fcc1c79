//! ftwt-dynamic-pruning's speed figures: gated fine-tuning steps per second of every arm (with
//! its host-side targets and masks), after one epoch of dense pretraining.

use std::fmt::Write as _;

use crate::experiments::profile::Profile;
use crate::params::Override;

const PRESET: Profile = Profile {
    preset: "ftwt-dynamic-pruning",
    arms: &[],
    seeds: &[],
    overrides: &[],
};

fn set(key: &str, value: &str) -> Override {
    Override {
        key: key.into(),
        value: value.into(),
    }
}

pub fn report(quick: bool, out: &mut String) {
    let epochs = if quick { 2 } else { 10 };
    let _ = writeln!(
        out,
        "\nftwt-dynamic-pruning: gated fine-tuning steps per second per arm ({epochs} vs {} \
         epochs of 19 steps at batch 64, seed 0):",
        2 * epochs
    );
    let one_pretraining_epoch = [set("pretrain_epochs", "1")];
    PRESET.speed_lines(
        ("epochs", "eval_every"),
        epochs,
        &one_pretraining_epoch,
        |_| false,
        out,
    );
}

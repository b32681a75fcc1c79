//! Every experiment declares a quick profile (a small seeded launch that still exercises its
//! claim): it names a built-in preset of that experiment, its arms exist and its overrides are
//! valid. The claim tests of each preset run that profile.

use reglab::engine::{manager, LaunchRequest};
use reglab::experiments;

#[test]
fn every_experiment_declares_a_valid_quick_profile() {
    for exp in experiments::all() {
        let profile = exp.quick_profile();
        let preset = profile.preset().unwrap();
        assert_eq!(preset.experiment, exp.kind(), "{}", profile.preset);
        let runs = manager::resolve(&preset, &LaunchRequest::from(&profile))
            .unwrap_or_else(|e| panic!("{}: {e}", exp.kind()));
        assert!(!runs.is_empty(), "{}", exp.kind());
        for case in exp.device_cases() {
            case.profile
                .arm_params(case.arm, &[])
                .unwrap_or_else(|e| panic!("{} device case: {e}", exp.kind()));
        }
    }
}

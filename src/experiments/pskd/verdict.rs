//! The PS-KD verdict over the augmented runs (means +- standard errors over seeds, PS-KD and CE
//! paired by seed):
//!
//! 0. The regime: the CE baseline is over-confident, `mean_conf - acc >= 0.03`. When it is not,
//!    PS-KD has nothing to fix: this check and 1-3 are INCONCLUSIVE, with the numbers.
//! 1. Calibration: `ece(pskd) <= 0.6 ece(ce)` and `ece(pskd) < ece(ce)` on every seed.
//! 2. Accuracy: `acc(pskd) >= acc(ce) - 0.005` (the strict version reported beside it).
//! 3. NLL: `nll(pskd) < nll(ce)`.
//! 4. (reported) Label smoothing's ECE, accuracy and over-confidence against CE.
//! 5. (reported) The ablation without augmentation: PS-KD's ECE gain over CE there against the
//!    gain with augmentation, and the targets' entropy.
//!
//! A run whose final test accuracy is below [`LEARNED`] learned nothing and is left out.

use crate::experiments::FinishedRun;
use crate::verdict::{mean_se, mean_se_text, CheckBuilder, Quantifier, Verdict};

/// A run whose final test accuracy is below this learned nothing (chance is 0.1).
pub const LEARNED: f64 = 0.3;
/// Check 0: the CE baseline's smallest mean over-confidence.
pub const OVERCONFIDENT: f64 = 0.03;
/// Check 1: PS-KD's ECE at most this times CE's.
pub const ECE_RATIO: f64 = 0.6;
/// Check 2: the accuracy PS-KD may lose.
pub const ACC_SLACK: f64 = 0.005;

fn method(r: &FinishedRun) -> &str {
    r.params.text("method")
}

fn augmented(r: &FinishedRun) -> bool {
    r.params.f64("augment") > 0.0
}

fn mean(xs: &[f64]) -> f64 {
    mean_se(xs).0
}

/// The usable runs of `m` with or without augmentation, and notes on those left out.
fn select<'a>(
    runs: &'a [FinishedRun],
    m: &str,
    aug: bool,
    notes: &mut Vec<String>,
) -> Vec<&'a FinishedRun> {
    runs.iter()
        .filter(|r| method(r) == m && augmented(r) == aug)
        .filter(
            |r| match crate::verdict::unusable(r, "test_acc", "test accuracy", LEARNED) {
                Some(why) => {
                    notes.push(why);
                    false
                }
                None => true,
            },
        )
        .collect()
}

fn vals(rs: &[&FinishedRun], key: &str) -> Vec<f64> {
    rs.iter().map(|r| r.value(key)).collect()
}

fn over(rs: &[&FinishedRun]) -> Vec<f64> {
    rs.iter()
        .map(|r| r.value("mean_conf") - r.value("test_acc"))
        .collect()
}

pub fn compute(claim: &str, preset_id: &str, runs: &[FinishedRun]) -> Verdict {
    let mut notes = Vec::new();
    let ce = select(runs, "ce", true, &mut notes);
    let pskd = select(runs, "pskd", true, &mut notes);
    let ls = select(runs, "ls", true, &mut notes);
    let mut checks = Vec::new();

    // 0. The regime.
    let mut c0 = CheckBuilder::new(
        "0",
        Quantifier::Every,
        format!(
            "the regime: the CE baseline is over-confident on the test set (mean confidence - \
             accuracy >= {OVERCONFIDENT}), so there is miscalibration for PS-KD to fix"
        ),
        "CE is not over-confident (then INCONCLUSIVE: the claim was not exercised)",
    );
    for n in &notes {
        c0.note(n.clone());
    }
    let regime = !ce.is_empty() && mean(&over(&ce)) >= OVERCONFIDENT;
    if !ce.is_empty() {
        let line = format!(
            "CE: mean confidence {} vs accuracy {}: over-confidence {}",
            mean_se_text(&vals(&ce, "mean_conf")),
            mean_se_text(&vals(&ce, "test_acc")),
            mean_se_text(&over(&ce))
        );
        if regime {
            c0.case(true, line);
        } else {
            c0.note(format!(
                "{line}: below {OVERCONFIDENT}, PS-KD has nothing to fix here (not decided)"
            ));
        }
        c0.number("ce.overconfidence", mean(&over(&ce)));
    }
    checks.push(c0.finish());

    let pairs: Vec<(&FinishedRun, &FinishedRun)> = pskd
        .iter()
        .filter_map(|p| ce.iter().find(|c| c.seed == p.seed).map(|c| (*p, *c)))
        .collect();
    let decide = |c: &mut CheckBuilder, held: bool, line: String| {
        if regime {
            c.case(held, line);
        } else {
            c.note(format!("{line}; not decided: CE is not over-confident"));
        }
    };

    // 1. Calibration.
    let mut c1 = CheckBuilder::new(
        "1",
        Quantifier::Every,
        format!(
            "calibration: PS-KD's test ECE is at most {ECE_RATIO} x CE's (means over seeds) and \
             below CE's on every seed"
        ),
        "PS-KD's mean ECE is above the ratio times CE's, or some seed has it at or above CE's",
    );
    if !pairs.is_empty() {
        let mut every = true;
        for (p, c) in &pairs {
            let (a, b) = (p.value("test_ece"), c.value("test_ece"));
            every &= a < b;
            c1.note(format!("seed {}: ECE PS-KD {a:.3}% vs CE {b:.3}%", p.seed));
        }
        let (ep, ec) = (mean(&vals(&pskd, "test_ece")), mean(&vals(&ce, "test_ece")));
        let line = format!(
            "ECE (%): PS-KD {} vs CE {} (ratio {:.3}, <= {ECE_RATIO}: {}); every seed lower: \
             {every}; mean confidence - accuracy: PS-KD {} vs CE {}",
            mean_se_text(&vals(&pskd, "test_ece")),
            mean_se_text(&vals(&ce, "test_ece")),
            ep / ec,
            ep <= ECE_RATIO * ec,
            mean_se_text(&over(&pskd)),
            mean_se_text(&over(&ce))
        );
        decide(&mut c1, ep <= ECE_RATIO * ec && every, line);
        c1.number("pskd.ece", ep);
        c1.number("ce.ece", ec);
    }
    checks.push(c1.finish());

    // 2. Accuracy.
    let mut c2 = CheckBuilder::new(
        "2",
        Quantifier::Every,
        format!("accuracy: PS-KD's mean test accuracy is not below CE's by more than {ACC_SLACK}"),
        "PS-KD loses more than the slack in accuracy",
    );
    if !pskd.is_empty() && !ce.is_empty() {
        let (ap, ac) = (mean(&vals(&pskd, "test_acc")), mean(&vals(&ce, "test_acc")));
        let line = format!(
            "accuracy: PS-KD {} vs CE {} ({:+.4}; strictly better: {})",
            mean_se_text(&vals(&pskd, "test_acc")),
            mean_se_text(&vals(&ce, "test_acc")),
            ap - ac,
            ap > ac
        );
        decide(&mut c2, ap >= ac - ACC_SLACK, line);
        c2.number("pskd.acc", ap);
        c2.number("ce.acc", ac);
    }
    checks.push(c2.finish());

    // 3. NLL.
    let mut c3 = CheckBuilder::new(
        "3",
        Quantifier::Every,
        "NLL: PS-KD's mean test NLL is below CE's",
        "PS-KD's mean NLL is at or above CE's",
    );
    if !pskd.is_empty() && !ce.is_empty() {
        let (np, nc) = (mean(&vals(&pskd, "test_nll")), mean(&vals(&ce, "test_nll")));
        let line = format!(
            "NLL: PS-KD {} vs CE {}; AURC x1000: PS-KD {} vs CE {}",
            mean_se_text(&vals(&pskd, "test_nll")),
            mean_se_text(&vals(&ce, "test_nll")),
            mean_se_text(&vals(&pskd, "aurc")),
            mean_se_text(&vals(&ce, "aurc"))
        );
        decide(&mut c3, np < nc, line);
        c3.number("pskd.nll", np);
        c3.number("ce.nll", nc);
    }
    checks.push(c3.finish());

    // 4. Label smoothing (reported).
    if !ls.is_empty() && !ce.is_empty() {
        let mut c4 = CheckBuilder::new(
            "4",
            Quantifier::Every,
            "reported: label smoothing (0.1) against CE: lower ECE (it can leave the model \
             under-confident)",
            "label smoothing's mean ECE is at or above CE's",
        )
        .informational();
        let (el, ec) = (mean(&vals(&ls, "test_ece")), mean(&vals(&ce, "test_ece")));
        c4.case(
            el < ec,
            format!(
                "LS: ECE {}% vs CE {}%; accuracy {} vs {}; mean confidence - accuracy {} vs {}",
                mean_se_text(&vals(&ls, "test_ece")),
                mean_se_text(&vals(&ce, "test_ece")),
                mean_se_text(&vals(&ls, "test_acc")),
                mean_se_text(&vals(&ce, "test_acc")),
                mean_se_text(&over(&ls)),
                mean_se_text(&over(&ce))
            ),
        );
        checks.push(c4.finish());
    }

    // 5. The ablation without augmentation (reported).
    let mut ab_notes = Vec::new();
    let ce0 = select(runs, "ce", false, &mut ab_notes);
    let pskd0 = select(runs, "pskd", false, &mut ab_notes);
    if !ce0.is_empty() && !pskd0.is_empty() && !ce.is_empty() && !pskd.is_empty() {
        let mut c5 = CheckBuilder::new(
            "5",
            Quantifier::Every,
            "reported: without augmentation PS-KD's ECE gain over CE shrinks (the stored \
             predictions are near one-hot)",
            "the ECE gain without augmentation is at least the gain with it",
        )
        .informational();
        for n in ab_notes {
            c5.note(n);
        }
        let gain = mean(&vals(&ce, "test_ece")) - mean(&vals(&pskd, "test_ece"));
        let gain0 = mean(&vals(&ce0, "test_ece")) - mean(&vals(&pskd0, "test_ece"));
        c5.case(
            gain0 < gain,
            format!(
                "ECE gain (CE - PS-KD, %): with augmentation {gain:.3}, without {gain0:.3}; \
                 without augmentation ECE CE {} vs PS-KD {}, CE over-confidence {}; PS-KD \
                 target entropy (nats, final window) with {} vs without {}",
                mean_se_text(&vals(&ce0, "test_ece")),
                mean_se_text(&vals(&pskd0, "test_ece")),
                mean_se_text(&over(&ce0)),
                mean_se_text(&vals(&pskd, "target_entropy")),
                mean_se_text(&vals(&pskd0, "target_entropy"))
            ),
        );
        c5.number("gain.aug", gain);
        c5.number("gain.noaug", gain0);
        checks.push(c5.finish());
    }

    Verdict {
        preset: preset_id.to_string(),
        claim: claim.to_string(),
        checks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiments::{Experiment, RunStatus};
    use crate::params::{ParamValue, Params};
    use crate::verdict::Outcome;

    fn run(method: &str, seed: u64, acc: f64, conf: f64, ece: f64, nll: f64) -> FinishedRun {
        let mut params = Params::defaults(&super::super::PsKd.params());
        params.set("method", ParamValue::Text(method.into()));
        FinishedRun {
            arm: method.into(),
            seed,
            params,
            status: RunStatus::Completed { steps: 10 },
            final_values: [
                ("test_acc", acc),
                ("mean_conf", conf),
                ("test_ece", ece),
                ("test_nll", nll),
                ("aurc", 50.0),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        }
    }

    #[test]
    fn holds_fails_and_needs_an_overconfident_baseline() {
        let ce = run("ce", 0, 0.85, 0.95, 10.0, 0.6);
        let good = run("pskd", 0, 0.86, 0.87, 2.0, 0.45);
        assert_eq!(
            compute("c", "p", &[ce.clone(), good.clone()]).outcome(),
            Outcome::Holds
        );
        let worse_ece = run("pskd", 0, 0.86, 0.93, 8.0, 0.45);
        let v = compute("c", "p", &[ce.clone(), worse_ece]);
        assert_eq!(v.check("1").unwrap().outcome, Outcome::Fails);
        assert_eq!(v.outcome(), Outcome::Fails);
        let calibrated_ce = run("ce", 0, 0.85, 0.86, 2.5, 0.5);
        let v = compute("c", "p", &[calibrated_ce, good.clone()]);
        assert_eq!(v.check("0").unwrap().outcome, Outcome::Inconclusive);
        assert_eq!(v.outcome(), Outcome::Inconclusive);
        let nothing = run("pskd", 0, 0.1, 0.2, 1.0, 2.3);
        assert_eq!(
            compute("c", "p", &[ce, nothing]).outcome(),
            Outcome::Inconclusive
        );
    }
}

//! The ELR verdict, per noise level, from the final and best test accuracies and the memorized
//! fraction over seeds (means with standard errors):
//!
//! 1. CE memorizes: `mean(best_ce - final_ce) >= 0.05`. When it does not, the claim was not
//!    exercised: this check and the two that compare with CE (3, 4) are INCONCLUSIVE, with the
//!    numbers and a hint.
//! 2. ELR does not: `mean(best_elr - final_elr) <= 0.02`.
//! 3. ELR beats CE: `mean(final_elr) - mean(final_ce) >= 0.10` and `final_elr > final_ce` for
//!    every seed.
//! 4. The mechanism: `mean(mem_wrong_elr) <= 0.25 mean(mem_wrong_ce)`.
//! 5. (reported) ELR's final accuracy against CE's peak (an early-stopped CE).
//!
//! Clean-label CE runs (noise 0) are reported: their drop from the peak shows the noise causes
//! CE's. A run whose best test accuracy stays below [`LEARNED`] learned nothing and is left out.

use crate::experiments::FinishedRun;
use crate::verdict::{mean_se, mean_se_text, CheckBuilder, Quantifier, Verdict};

/// A run whose best test accuracy stays below this learned nothing (chance is 0.1).
pub const LEARNED: f64 = 0.5;
/// Check 1: CE's mean drop from its peak that counts as memorization.
pub const MEMORIZED_DROP: f64 = 0.05;
/// Check 2: ELR's largest mean drop from its peak.
pub const ELR_DROP: f64 = 0.02;
/// Check 3: ELR's smallest mean advantage over CE.
pub const MARGIN: f64 = 0.10;
/// Check 4: ELR's memorized fraction at most this times CE's.
pub const MEM_RATIO: f64 = 0.25;

fn method(r: &FinishedRun) -> &str {
    r.params.text("method")
}

fn noise(r: &FinishedRun) -> f64 {
    r.params.f64("noise")
}

fn drop(r: &FinishedRun) -> f64 {
    r.value("best_test_acc") - r.value("test_acc")
}

/// Why a run cannot enter a comparison, if it cannot.
fn unusable(r: &FinishedRun) -> Option<String> {
    crate::verdict::unusable(r, "best_test_acc", "best test accuracy", LEARNED)
}

fn pct(noise: f64) -> String {
    format!("n{:.0}", noise * 100.0)
}

pub fn compute(claim: &str, preset_id: &str, runs: &[FinishedRun]) -> Verdict {
    let mut levels: Vec<f64> = runs.iter().map(noise).filter(|&n| n > 0.0).collect();
    levels.sort_by(f64::total_cmp);
    levels.dedup();
    let mut checks = Vec::new();
    for &level in &levels {
        let tag = pct(level);
        let mut left_out = Vec::new();
        let mut usable = |m: &str| -> Vec<&FinishedRun> {
            runs.iter()
                .filter(|r| method(r) == m && noise(r) == level)
                .filter(|r| match unusable(r) {
                    Some(why) => {
                        left_out.push(why);
                        false
                    }
                    None => true,
                })
                .collect()
        };
        let ce = usable("ce");
        let elr = usable("elr");
        let vals = |rs: &[&FinishedRun], f: &dyn Fn(&FinishedRun) -> f64| -> Vec<f64> {
            rs.iter().map(|r| f(r)).collect()
        };
        let ce_drop = vals(&ce, &drop);
        let elr_drop = vals(&elr, &drop);
        let ce_final = vals(&ce, &|r| r.value("test_acc"));
        let elr_final = vals(&elr, &|r| r.value("test_acc"));
        let ce_best = vals(&ce, &|r| r.value("best_test_acc"));
        let ce_mem = vals(&ce, &|r| r.value("mem_wrong"));
        let elr_mem = vals(&elr, &|r| r.value("mem_wrong"));

        // 1. CE memorizes.
        let mut c1 = CheckBuilder::new(
            format!("1-{tag}"),
            Quantifier::Every,
            format!(
                "noise {level}: CE memorizes: its final test accuracy is at least \
                 {MEMORIZED_DROP} below its peak (mean over seeds)"
            ),
            "CE's mean drop from its peak is below the threshold (then INCONCLUSIVE: the \
             claim was not exercised)",
        );
        for why in &left_out {
            c1.note(why.clone());
        }
        let memorized = !ce.is_empty() && mean_se(&ce_drop).0 >= MEMORIZED_DROP;
        if !ce.is_empty() {
            let line = format!(
                "CE: best {} - final {} = drop {} over {} seeds (peak epochs {:?})",
                mean_se_text(&ce_best),
                mean_se_text(&ce_final),
                mean_se_text(&ce_drop),
                ce.len(),
                ce.iter()
                    .map(|r| r.value("peak_epoch") as i64)
                    .collect::<Vec<_>>()
            );
            if memorized {
                c1.case(true, line);
            } else {
                c1.note(format!(
                    "{line}: CE did not memorize; raise epochs or lower weight decay \
                     (not decided)"
                ));
            }
            c1.number(format!("ce-{tag}.drop"), mean_se(&ce_drop).0);
            c1.number(format!("ce-{tag}.final"), mean_se(&ce_final).0);
            c1.number(format!("ce-{tag}.best"), mean_se(&ce_best).0);
        }
        checks.push(c1.finish());

        // 2. ELR does not.
        let mut c2 = CheckBuilder::new(
            format!("2-{tag}"),
            Quantifier::Every,
            format!(
                "noise {level}: ELR prevents memorization: its final test accuracy is within \
                 {ELR_DROP} of its own peak (mean over seeds)"
            ),
            "ELR's mean drop from its peak is larger than the threshold",
        );
        if !elr.is_empty() {
            let (m, _) = mean_se(&elr_drop);
            c2.case(
                m <= ELR_DROP,
                format!(
                    "ELR: best {} - final {} = drop {} (<= {ELR_DROP}: {})",
                    mean_se_text(&vals(&elr, &|r| r.value("best_test_acc"))),
                    mean_se_text(&elr_final),
                    mean_se_text(&elr_drop),
                    m <= ELR_DROP
                ),
            );
            c2.number(format!("elr-{tag}.drop"), m);
            c2.number(format!("elr-{tag}.final"), mean_se(&elr_final).0);
        }
        checks.push(c2.finish());

        // 3. ELR beats CE, paired by seed.
        let mut c3 = CheckBuilder::new(
            format!("3-{tag}"),
            Quantifier::Every,
            format!(
                "noise {level}: ELR's final test accuracy beats CE's by at least {MARGIN} on \
                 average and on every seed"
            ),
            "the mean advantage is below the margin, or some seed has ELR at or below CE",
        );
        let pairs: Vec<(&FinishedRun, &FinishedRun)> = elr
            .iter()
            .filter_map(|e| ce.iter().find(|c| c.seed == e.seed).map(|c| (*e, *c)))
            .collect();
        if !pairs.is_empty() {
            let mut every = true;
            for (e, c) in &pairs {
                let (a, b) = (e.value("test_acc"), c.value("test_acc"));
                every &= a > b;
                c3.note(format!(
                    "seed {}: ELR {a:.4} vs CE {b:.4} ({:+.4})",
                    e.seed,
                    a - b
                ));
            }
            let (me, mc) = (mean_se(&elr_final).0, mean_se(&ce_final).0);
            let line = format!(
                "mean final: ELR {} vs CE {}: advantage {:+.4} (>= {MARGIN}: {}); every seed \
                 ELR > CE: {every}",
                mean_se_text(&elr_final),
                mean_se_text(&ce_final),
                me - mc,
                me - mc >= MARGIN
            );
            if memorized {
                c3.case(me - mc >= MARGIN && every, line);
            } else {
                c3.note(format!("{line}; not decided: CE did not memorize"));
            }
            c3.number(format!("{tag}.advantage"), me - mc);
        }
        checks.push(c3.finish());

        // 4. The mechanism: ELR memorizes far fewer wrong labels.
        let mut c4 = CheckBuilder::new(
            format!("4-{tag}"),
            Quantifier::Every,
            format!(
                "noise {level}: ELR's final memorized fraction of the wrong labels is at most \
                 {MEM_RATIO} x CE's (means over seeds)"
            ),
            "ELR's mean memorized fraction is above the ratio times CE's",
        );
        if !ce.is_empty() && !elr.is_empty() {
            let (me, mc) = (mean_se(&elr_mem).0, mean_se(&ce_mem).0);
            let line = format!(
                "memorized fraction: ELR {} vs CE {} (ratio {:.3}; corrected fraction ELR {} vs \
                 CE {})",
                mean_se_text(&elr_mem),
                mean_se_text(&ce_mem),
                me / mc,
                mean_se_text(&vals(&elr, &|r| r.value("fixed_wrong"))),
                mean_se_text(&vals(&ce, &|r| r.value("fixed_wrong")))
            );
            if memorized {
                c4.case(me <= MEM_RATIO * mc, line);
            } else {
                c4.note(format!("{line}; not decided: CE did not memorize"));
            }
            c4.number(format!("elr-{tag}.mem_wrong"), me);
            c4.number(format!("ce-{tag}.mem_wrong"), mc);
        }
        checks.push(c4.finish());

        // 5. Reported: against an early-stopped CE.
        let mut c5 = CheckBuilder::new(
            format!("5-{tag}"),
            Quantifier::Every,
            format!(
                "reported: noise {level}: ELR's final test accuracy against CE's peak (CE \
                 stopped early at its best epoch, which needs clean validation labels)"
            ),
            "ELR's mean final accuracy is below CE's mean peak",
        )
        .informational();
        if !ce.is_empty() && !elr.is_empty() {
            let (me, mb) = (mean_se(&elr_final).0, mean_se(&ce_best).0);
            c5.case(
                me >= mb,
                format!(
                    "ELR final {} vs CE peak {} ({:+.4})",
                    mean_se_text(&elr_final),
                    mean_se_text(&ce_best),
                    me - mb
                ),
            );
        }
        checks.push(c5.finish());
    }
    // Reported: clean-label CE.
    let clean: Vec<&FinishedRun> = runs
        .iter()
        .filter(|r| method(r) == "ce" && noise(r) == 0.0 && unusable(r).is_none())
        .collect();
    if !clean.is_empty() {
        let mut c = CheckBuilder::new(
            "clean",
            Quantifier::Every,
            "reported: with clean labels CE does not fall from its peak (drop below the \
             memorization threshold), so the noisy runs' drop is caused by the noise",
            "clean-label CE falls from its peak as much as the noisy runs",
        )
        .informational();
        let d: Vec<f64> = clean.iter().map(|r| drop(r)).collect();
        let f: Vec<f64> = clean.iter().map(|r| r.value("test_acc")).collect();
        c.case(
            mean_se(&d).0 < MEMORIZED_DROP,
            format!(
                "clean CE: final {}, drop from peak {}",
                mean_se_text(&f),
                mean_se_text(&d)
            ),
        );
        checks.push(c.finish());
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

    fn run(method: &str, seed: u64, best: f64, fin: f64, mem: f64) -> FinishedRun {
        let mut params = Params::defaults(&super::super::ElrNoisyLabels.params());
        params.set("method", ParamValue::Text(method.into()));
        params.set("noise", ParamValue::Float(0.4));
        FinishedRun {
            arm: format!("{method}-n40"),
            seed,
            params,
            status: RunStatus::Completed { steps: 10 },
            final_values: [
                ("best_test_acc", best),
                ("test_acc", fin),
                ("mem_wrong", mem),
                ("fixed_wrong", 0.5),
                ("peak_epoch", 10.0),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        }
    }

    #[test]
    fn holds_fails_and_is_inconclusive_when_ce_did_not_memorize() {
        let good = [
            run("ce", 0, 0.95, 0.70, 0.8),
            run("elr", 0, 0.95, 0.94, 0.05),
        ];
        assert_eq!(compute("c", "p", &good).outcome(), Outcome::Holds);
        let elr_falls = [
            run("ce", 0, 0.95, 0.70, 0.8),
            run("elr", 0, 0.95, 0.85, 0.05),
        ];
        let v = compute("c", "p", &elr_falls);
        assert_eq!(v.check("2-n40").unwrap().outcome, Outcome::Fails);
        assert_eq!(v.outcome(), Outcome::Fails);
        let no_memorization = [
            run("ce", 0, 0.95, 0.94, 0.1),
            run("elr", 0, 0.95, 0.945, 0.05),
        ];
        let v = compute("c", "p", &no_memorization);
        for id in ["1-n40", "3-n40", "4-n40"] {
            assert_eq!(v.check(id).unwrap().outcome, Outcome::Inconclusive, "{id}");
        }
        assert_eq!(v.outcome(), Outcome::Inconclusive);
        // A run that learned nothing is left out.
        let nothing = [run("ce", 0, 0.95, 0.70, 0.8), run("elr", 0, 0.2, 0.2, 0.0)];
        assert_eq!(compute("c", "p", &nothing).outcome(), Outcome::Inconclusive);
    }
}

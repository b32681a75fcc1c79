//! The weight-compander verdict, from the runs' final values (means over seeds with their
//! standard errors):
//!
//! 1. (claim) test accuracy: WC + weight decay at least half a point above weight decay, and
//!    WC alone at least the baseline. HOLDS when both hold; FAILS when either is more than one
//!    point the wrong way; INCONCLUSIVE otherwise (a sub-point effect is within the seed spread).
//! 2. (mechanism) WC has at most 0.7x the baseline's share of near-zero weights.
//! 3. (mechanism) WC's largest weight is at most the baseline's.
//! 4. (reported) the learned compander's a and b; the generalization gap of every arm.
//!
//! A run whose test accuracy is below [`LEARNED`] learned nothing: it is left out, and a
//! comparison without runs on both sides is INCONCLUSIVE.

use crate::experiments::FinishedRun;
use crate::verdict::{
    fmt_mean_se, mean_se, paired_by_seed, runs_mean_se, Check, CheckBuilder, Outcome, Quantifier,
    Verdict,
};

/// Test accuracy below which a run learned nothing (chance is 0.1).
pub const LEARNED: f64 = 0.5;

/// How an arm is trained, from its parameters (arm names are the preset's, not relied on).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Role {
    Baseline,
    Wd,
    Wc,
    WcWd,
    WcLearned,
}

fn role(r: &FinishedRun) -> Role {
    let wd = r.params.f64("weight_decay") > 0.0;
    match (
        r.params.text("compander") == "off",
        r.params.text("wc_hyper"),
        wd,
    ) {
        (true, _, false) => Role::Baseline,
        (true, _, true) => Role::Wd,
        (false, "learned", _) => Role::WcLearned,
        (false, _, false) => Role::Wc,
        (false, _, true) => Role::WcWd,
    }
}

fn name(role: Role) -> &'static str {
    match role {
        Role::Baseline => "baseline",
        Role::Wd => "weight decay",
        Role::Wc => "WC",
        Role::WcWd => "WC + weight decay",
        Role::WcLearned => "learned WC",
    }
}

/// The usable runs of a role, and notes on the ones left out.
fn runs_of<'a>(
    runs: &'a [FinishedRun],
    role_: Role,
    notes: &mut Vec<String>,
) -> Vec<&'a FinishedRun> {
    crate::verdict::usable(
        runs.iter().filter(|r| role(r) == role_),
        "test_acc",
        "test accuracy",
        LEARNED,
        notes,
    )
}

/// One accuracy comparison of check 1: `subject >= base + margin`; returns whether it held
/// and whether it went the wrong way by more than a point.
fn accuracy_case(
    c: &mut CheckBuilder,
    runs: &[FinishedRun],
    subject: Role,
    base: Role,
    margin: f64,
    notes: &mut Vec<String>,
) -> Option<(bool, bool)> {
    let s = runs_of(runs, subject, notes);
    let b = runs_of(runs, base, notes);
    if s.is_empty() || b.is_empty() {
        c.note(format!(
            "no usable {} or {} runs: not compared",
            name(subject),
            name(base)
        ));
        return None;
    }
    let (ms, mb) = (runs_mean_se(&s, "test_acc"), runs_mean_se(&b, "test_acc"));
    let d = paired_by_seed(&s, &b, "test_acc");
    let diffs: Vec<f64> = d.iter().map(|x| x.1).collect();
    let md = mean_se(&diffs);
    let held = ms.0 >= mb.0 + margin;
    let wrong = ms.0 < mb.0 - 0.01;
    c.case(
        held,
        format!(
            "test accuracy: {} {} vs {} {} (n = {} / {}); paired difference {} (seeds: {}); \
             needs >= {:+.3}",
            name(subject),
            fmt_mean_se(ms),
            name(base),
            fmt_mean_se(mb),
            s.len(),
            b.len(),
            fmt_mean_se(md),
            d.iter()
                .map(|(seed, x)| format!("s{seed} {x:+.4}"))
                .collect::<Vec<_>>()
                .join(", "),
            margin
        ),
    );
    c.number(format!("{}.test_acc", name(subject)), ms.0);
    c.number(format!("{}.test_acc", name(base)), mb.0);
    c.number(format!("{} - {}", name(subject), name(base)), md.0);
    Some((held, wrong))
}

/// A mechanism check: `subject`'s mean `key` at most `factor` times the baseline's.
fn mechanism(
    id: &str,
    runs: &[FinishedRun],
    key: &str,
    factor: f64,
    statement: &str,
    fails_when: &str,
) -> Check {
    let mut notes = Vec::new();
    let mut c = CheckBuilder::new(id, Quantifier::Every, statement, fails_when);
    let s = runs_of(runs, Role::Wc, &mut notes);
    let b = runs_of(runs, Role::Baseline, &mut notes);
    if !s.is_empty() && !b.is_empty() {
        let (ms, mb) = (runs_mean_se(&s, key), runs_mean_se(&b, key));
        c.case(
            ms.0 <= factor * mb.0,
            format!(
                "{key}: WC {} vs baseline {} (n = {} / {}); needs <= {factor} x baseline = {:.4}",
                fmt_mean_se(ms),
                fmt_mean_se(mb),
                s.len(),
                b.len(),
                factor * mb.0
            ),
        );
        c.number(format!("WC.{key}"), ms.0);
        c.number(format!("baseline.{key}"), mb.0);
    }
    for n in notes {
        c.note(n);
    }
    c.finish()
}

pub fn compute(claim: &str, preset_id: &str, runs: &[FinishedRun]) -> Verdict {
    let mut checks = Vec::new();

    // 1. Accuracy.
    let mut notes = Vec::new();
    let mut c = CheckBuilder::new(
        "1",
        Quantifier::Every,
        "WC improves test accuracy: WC + weight decay >= weight decay + 0.005 and WC >= \
         baseline (means over seeds)",
        "either comparison falls short; FAILS only when one is more than 1 point the wrong way, \
         otherwise INCONCLUSIVE (within the seed spread)",
    );
    let a = accuracy_case(&mut c, runs, Role::WcWd, Role::Wd, 0.005, &mut notes);
    let b = accuracy_case(&mut c, runs, Role::Wc, Role::Baseline, 0.0, &mut notes);
    notes.sort();
    notes.dedup();
    for n in notes {
        c.note(n);
    }
    let mut check = c.finish();
    check.outcome = match (a, b) {
        (Some((h1, w1)), Some((h2, w2))) => {
            if w1 || w2 {
                Outcome::Fails
            } else if h1 && h2 {
                Outcome::Holds
            } else {
                Outcome::Inconclusive
            }
        }
        (Some((_, true)), None) | (None, Some((_, true))) => Outcome::Fails,
        _ => Outcome::Inconclusive,
    };
    checks.push(check);

    // 2, 3. Mechanism.
    checks.push(mechanism(
        "2",
        runs,
        "near_zero_frac",
        0.7,
        "fewer near-zero weights: WC's share of |w| < 0.01 max|w_init| is at most 0.7x the \
         baseline's",
        "WC's near-zero share is above 0.7x the baseline's",
    ));
    checks.push(mechanism(
        "3",
        runs,
        "w_max",
        1.0,
        "bounded weights: WC's largest |w| is at most the baseline's",
        "WC's largest |w| exceeds the baseline's",
    ));

    // 4. Reported: learned hyperparameters, generalization gaps.
    let mut notes = Vec::new();
    let mut c = CheckBuilder::new(
        "4",
        Quantifier::Every,
        "reported: the learned compander's a and b (per layer), and every arm's test accuracy \
         and generalization gap",
        "reported only",
    )
    .informational();
    for role_ in [
        Role::Baseline,
        Role::Wd,
        Role::Wc,
        Role::WcWd,
        Role::WcLearned,
    ] {
        let rs = runs_of(runs, role_, &mut notes);
        if rs.is_empty() {
            continue;
        }
        let (acc, gap) = (runs_mean_se(&rs, "test_acc"), runs_mean_se(&rs, "gen_gap"));
        let mut line = format!(
            "{}: test accuracy {}, train - test {}, max |w| {}, near-zero {}",
            name(role_),
            fmt_mean_se(acc),
            fmt_mean_se(gap),
            fmt_mean_se(runs_mean_se(&rs, "w_max")),
            fmt_mean_se(runs_mean_se(&rs, "near_zero_frac"))
        );
        if role_ == Role::WcLearned {
            let layers =
                (0..16).take_while(|i| rs[0].final_values.contains_key(&format!("wc_a_layer{i}")));
            for i in layers {
                line.push_str(&format!(
                    "; layer {i}: a {}, b {}",
                    fmt_mean_se(runs_mean_se(&rs, &format!("wc_a_layer{i}"))),
                    fmt_mean_se(runs_mean_se(&rs, &format!("wc_b_layer{i}")))
                ));
            }
        }
        c.note(line);
        c.number(format!("{}.test_acc", name(role_)), acc.0);
        c.number(format!("{}.gen_gap", name(role_)), gap.0);
    }
    checks.push(c.finish());

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

    fn run(compander: &str, wd: f64, seed: u64, acc: f64, near: f64, wmax: f64) -> FinishedRun {
        let mut params = Params::defaults(&super::super::WeightCompander.params());
        params.set("compander", ParamValue::Text(compander.into()));
        params.set("weight_decay", ParamValue::Float(wd));
        FinishedRun {
            arm: format!("{compander}-{wd}"),
            seed,
            params,
            status: RunStatus::Completed { steps: 10 },
            final_values: [
                ("test_acc", acc),
                ("gen_gap", 1.0 - acc),
                ("near_zero_frac", near),
                ("w_max", wmax),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        }
    }

    fn launch(wc_acc: f64, wcwd_acc: f64) -> Vec<FinishedRun> {
        (0..3)
            .flat_map(|s| {
                let j = s as f64 * 0.001;
                [
                    run("off", 0.0, s, 0.90 + j, 0.02, 0.5),
                    run("off", 5e-4, s, 0.90 + j, 0.02, 0.5),
                    run("paper", 0.0, s, wc_acc + j, 0.01, 0.4),
                    run("paper", 5e-4, s, wcwd_acc + j, 0.01, 0.4),
                ]
            })
            .collect()
    }

    fn outcome(runs: &[FinishedRun], id: &str) -> Outcome {
        compute("c", "weight-compander", runs)
            .check(id)
            .unwrap()
            .outcome
    }

    #[test]
    fn accuracy_check_holds_is_inconclusive_or_fails() {
        assert_eq!(outcome(&launch(0.91, 0.91), "1"), Outcome::Holds);
        assert_eq!(outcome(&launch(0.90, 0.903), "1"), Outcome::Inconclusive);
        assert_eq!(outcome(&launch(0.88, 0.91), "1"), Outcome::Fails);
        assert_eq!(outcome(&launch(0.91, 0.91), "2"), Outcome::Holds);
        assert_eq!(outcome(&launch(0.91, 0.91), "3"), Outcome::Holds);
    }

    #[test]
    fn runs_that_learned_nothing_are_left_out() {
        let mut runs = launch(0.91, 0.91);
        for r in runs
            .iter_mut()
            .filter(|r| r.params.text("compander") == "paper")
        {
            r.final_values.insert("test_acc".into(), 0.1);
        }
        assert_eq!(outcome(&runs, "1"), Outcome::Inconclusive);
        assert_eq!(outcome(&runs, "2"), Outcome::Inconclusive);
    }
}

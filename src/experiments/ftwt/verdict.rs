//! The FTWT verdict, from the final values of every run (means over seeds with standard errors):
//!
//! 1. The transparent budget: for every `r`, `|mac_reduction - mac_reduction_est| <= 0.10`.
//! 2. Small accuracy loss: at `r = 0.9`, `test_acc >= dense - 0.01` with `mac_reduction >= 0.3`.
//! 3. Better than static pruning: at every `r`, `test_acc(ftwt) >= test_acc(static) - 0.005`,
//!    and strictly above it at the most aggressive (smallest) `r`.
//! 4. (reported) the reduction counting the predictors, and the zero-cost reference `r = 1`
//!    (the units ReLU leaves non-zero on the pretrained network).
//!
//! A run whose pretrained network stays below [`LEARNED`] test accuracy learned nothing and is
//! left out; a check without the runs it needs is INCONCLUSIVE.

use crate::experiments::FinishedRun;
use crate::verdict::{mean_se, mean_se_text, CheckBuilder, Quantifier, Verdict};

/// Below this pretrained test accuracy a run learned nothing (chance is 0.1).
pub const LEARNED: f64 = 0.5;
/// Check 1: largest gap between the measured and the estimated MAC reduction.
pub const BUDGET_GAP: f64 = 0.10;
/// Check 2: largest accuracy drop from the dense baseline at r = 0.9.
pub const ACC_DROP: f64 = 0.01;
/// Check 2: smallest MAC reduction at r = 0.9.
pub const MIN_REDUCTION: f64 = 0.3;
/// Check 3: largest shortfall of FTWT against static pruning.
pub const STATIC_SLACK: f64 = 0.005;
/// The budget of check 2.
pub const R_MAIN: f64 = 0.9;

fn method(r: &FinishedRun) -> &str {
    r.params.text("method")
}

fn vals(rs: &[&FinishedRun], key: &str) -> Vec<f64> {
    rs.iter().map(|r| r.value(key)).collect()
}

fn m(xs: &[f64]) -> f64 {
    mean_se(xs).0
}

pub fn compute(claim: &str, preset_id: &str, runs: &[FinishedRun]) -> Verdict {
    let mut left_out = Vec::new();
    let usable: Vec<&FinishedRun> = crate::verdict::usable(
        runs,
        "pretrained_acc",
        "pretrained test accuracy",
        LEARNED,
        &mut left_out,
    );
    let of = |meth: &str, r: Option<f64>| -> Vec<&FinishedRun> {
        usable
            .iter()
            .copied()
            .filter(|x| method(x) == meth && r.is_none_or(|r| (x.params.f64("r") - r).abs() < 1e-9))
            .collect()
    };
    let mut budgets: Vec<f64> = usable
        .iter()
        .filter(|x| method(x) == "ftwt")
        .map(|x| x.params.f64("r"))
        .collect();
    budgets.sort_by(f64::total_cmp);
    budgets.dedup();
    let dense = of("dense", None);
    let dense_acc = vals(&dense, "test_acc");

    // 1. The transparent budget.
    let mut c1 = CheckBuilder::new(
        "1",
        Quantifier::Every,
        format!(
            "the budget is known before training: for every r, FTWT's MAC reduction on the test \
             digits is within {BUDGET_GAP} of the reduction of the target masks on the \
             pretrained network (means over seeds)"
        ),
        "for some r the measured mean reduction is more than the gap away from the estimate",
    );
    for why in &left_out {
        c1.note(why.clone());
    }
    for &r in &budgets {
        let f = of("ftwt", Some(r));
        let red = vals(&f, "mac_reduction");
        let est = vals(&f, "mac_reduction_est");
        let gap = m(&red) - m(&est);
        c1.case(
            gap.abs() <= BUDGET_GAP,
            format!(
                "r = {r}: measured {} vs estimated {} (gap {gap:+.4}; within {BUDGET_GAP}: {})",
                mean_se_text(&red),
                mean_se_text(&est),
                gap.abs() <= BUDGET_GAP
            ),
        );
        c1.number(format!("ftwt-r{r}.mac_reduction"), m(&red));
        c1.number(format!("ftwt-r{r}.mac_reduction_est"), m(&est));
    }
    let checks_1 = c1.finish();

    // 2. Small accuracy loss at r = 0.9.
    let mut c2 = CheckBuilder::new(
        "2",
        Quantifier::Every,
        format!(
            "at r = {R_MAIN} FTWT's test accuracy is at most {ACC_DROP} below the dense \
             baseline's while its MAC reduction is at least {MIN_REDUCTION} (means over seeds)"
        ),
        "the accuracy drop is larger than the threshold, or the reduction smaller",
    );
    let main = of("ftwt", Some(R_MAIN));
    if !main.is_empty() && !dense.is_empty() {
        let acc = vals(&main, "test_acc");
        let red = vals(&main, "mac_reduction");
        let drop = m(&dense_acc) - m(&acc);
        let held = drop <= ACC_DROP && m(&red) >= MIN_REDUCTION;
        c2.case(
            held,
            format!(
                "FTWT r = {R_MAIN}: accuracy {} vs dense {} (drop {drop:+.4}, <= {ACC_DROP}: {}); \
                 MAC reduction {} (>= {MIN_REDUCTION}: {})",
                mean_se_text(&acc),
                mean_se_text(&dense_acc),
                drop <= ACC_DROP,
                mean_se_text(&red),
                m(&red) >= MIN_REDUCTION
            ),
        );
        for x in &main {
            if let Some(d) = dense.iter().find(|d| d.seed == x.seed) {
                c2.note(format!(
                    "seed {}: FTWT {:.4} vs dense {:.4} ({:+.4})",
                    x.seed,
                    x.value("test_acc"),
                    d.value("test_acc"),
                    x.value("test_acc") - d.value("test_acc")
                ));
            }
        }
        c2.number("dense.test_acc", m(&dense_acc));
        c2.number(format!("ftwt-r{R_MAIN}.test_acc"), m(&acc));
        c2.number(format!("ftwt-r{R_MAIN}.drop"), drop);
    }
    let checks_2 = c2.finish();

    // 3. Better than static pruning at equal unit counts.
    let smallest = budgets.first().copied();
    let mut c3 = CheckBuilder::new(
        "3",
        Quantifier::Every,
        format!(
            "at every r FTWT's test accuracy is at least static pruning's (same mean unit \
             counts) minus {STATIC_SLACK}, and strictly above it at the most aggressive r"
        ),
        "FTWT falls more than the slack below static pruning at some r, or is not above it at \
         the smallest r",
    );
    for &r in &budgets {
        let f = of("ftwt", Some(r));
        let s = of("static", Some(r));
        if s.is_empty() {
            continue;
        }
        let (fa, sa) = (vals(&f, "test_acc"), vals(&s, "test_acc"));
        let diff = m(&fa) - m(&sa);
        let strict = Some(r) == smallest;
        let held = diff >= -STATIC_SLACK && (!strict || diff > 0.0);
        let paired: Vec<f64> = f
            .iter()
            .filter_map(|x| {
                s.iter()
                    .find(|y| y.seed == x.seed)
                    .map(|y| x.value("test_acc") - y.value("test_acc"))
            })
            .collect();
        c3.case(
            held,
            format!(
                "r = {r}: FTWT {} vs static {} ({diff:+.4}; paired {}{}); MACs: FTWT {} vs \
                 static {}",
                mean_se_text(&fa),
                mean_se_text(&sa),
                mean_se_text(&paired),
                if strict {
                    ", the most aggressive r: must be above"
                } else {
                    ""
                },
                mean_se_text(&vals(&f, "mac_reduction")),
                mean_se_text(&vals(&s, "mac_reduction"))
            ),
        );
        c3.number(format!("r{r}.ftwt_minus_static"), diff);
    }
    let checks_3 = c3.finish();

    // 4. Reported: the predictors' cost and the zero-cost reference.
    let mut c4 = CheckBuilder::new(
        "4",
        Quantifier::Every,
        "reported: the MAC reduction counting the predictors' MACs (each is fan_in -> rank -> \
         width), against r = 1 (the units ReLU leaves non-zero on the pretrained network: \
         skipping them costs no accuracy)",
        "the reduction counting the predictors is not positive",
    )
    .informational();
    for &r in &budgets {
        let f = of("ftwt", Some(r));
        let wp = vals(&f, "mac_reduction_with_pred");
        c4.case(
            m(&wp) > 0.0,
            format!(
                "r = {r}: reduction {} without, {} with the predictors; mask accuracy {}",
                mean_se_text(&vals(&f, "mac_reduction")),
                mean_se_text(&wp),
                mean_se_text(&vals(&f, "mask_acc"))
            ),
        );
        c4.number(format!("ftwt-r{r}.mac_reduction_with_pred"), m(&wp));
    }
    let relu: Vec<f64> = usable
        .iter()
        .filter(|x| method(x) == "dense")
        .map(|x| x.value("mac_reduction_relu"))
        .collect();
    if !relu.is_empty() {
        c4.note(format!(
            "r = 1 on the pretrained network (non-zero units only): reduction {}",
            mean_se_text(&relu)
        ));
        c4.number("relu_reduction", m(&relu));
    }
    let checks_4 = c4.finish();

    Verdict {
        preset: preset_id.to_string(),
        claim: claim.to_string(),
        checks: vec![checks_1, checks_2, checks_3, checks_4],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiments::{Experiment, RunStatus};
    use crate::params::{ParamValue, Params};
    use crate::verdict::Outcome;

    fn run(meth: &str, r: f64, seed: u64, acc: f64, red: f64, est: f64) -> FinishedRun {
        let mut params = Params::defaults(&super::super::FtwtDynamicPruning.params());
        params.set("method", ParamValue::Text(meth.into()));
        params.set("r", ParamValue::Float(r));
        FinishedRun {
            arm: format!("{meth}-r{r}"),
            seed,
            params,
            status: RunStatus::Completed { steps: 10 },
            final_values: [
                ("test_acc", acc),
                ("mac_reduction", red),
                ("mac_reduction_est", est),
                ("mac_reduction_with_pred", red - 0.2),
                ("mac_reduction_relu", 0.7),
                ("pretrained_acc", 0.97),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        }
    }

    #[test]
    fn holds_fails_and_is_inconclusive() {
        let good = [
            run("dense", 0.9, 0, 0.97, 0.0, f64::NAN),
            run("ftwt", 0.9, 0, 0.965, 0.8, 0.82),
            run("static", 0.9, 0, 0.96, 0.82, 0.82),
            run("ftwt", 0.7, 0, 0.95, 0.9, 0.92),
            run("static", 0.7, 0, 0.93, 0.92, 0.92),
        ];
        assert_eq!(compute("c", "p", &good).outcome(), Outcome::Holds);
        // Predictors that never switch anything off: the budget is missed.
        let mut off = good.clone();
        off[1].final_values.insert("mac_reduction".into(), 0.0);
        let v = compute("c", "p", &off);
        assert_eq!(v.check("1").unwrap().outcome, Outcome::Fails);
        assert_eq!(v.check("2").unwrap().outcome, Outcome::Fails);
        // Static better at the most aggressive r.
        let mut worse = good.clone();
        worse[3].final_values.insert("test_acc".into(), 0.93);
        assert_eq!(
            compute("c", "p", &worse).check("3").unwrap().outcome,
            Outcome::Fails
        );
        // Nothing learned: inconclusive.
        let mut nothing = good.clone();
        for r in nothing.iter_mut() {
            r.final_values.insert("pretrained_acc".into(), 0.1);
        }
        assert_eq!(compute("c", "p", &nothing).outcome(), Outcome::Inconclusive);
    }
}

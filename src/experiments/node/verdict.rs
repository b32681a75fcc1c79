//! The verdict of the locally regularized neural ODE paper. Per task and seed, against the
//! unregularized arm: (i) some regularized arm needs at most 0.75x its test NFE while keeping
//! test accuracy within 1 point (digits; the paper reports 0.556-0.733x). Reported alongside:
//! the spiral's NFE ratio and test error, and the training time per step of local against
//! global regularization (with back-propagation through the solver both replay every step).

use crate::experiments::FinishedRun;
use crate::verdict::{mean_se, CheckBuilder, Quantifier, Verdict};

/// The paper's bar: NFE ratio at most this.
pub const NFE_RATIO: f64 = 0.75;
/// Accuracy may drop by at most this (1 point).
pub const ACC_DROP: f64 = 0.01;
/// The spiral's test MSE may grow by at most this factor.
pub const MSE_FACTOR: f64 = 1.5;

pub fn compute(claim: &str, preset_id: &str, runs: &[FinishedRun]) -> Verdict {
    let mut checks = Vec::new();
    for task in ["digits", "spiral"] {
        let of_task: Vec<&FinishedRun> = runs
            .iter()
            .filter(|r| r.params.text("task") == task)
            .collect();
        if of_task.is_empty() {
            continue;
        }
        let statement = if task == "digits" {
            format!(
                "digits: a regularized arm needs at most {NFE_RATIO}x the unregularized test NFE \
                 with test accuracy within {} point",
                ACC_DROP * 100.0
            )
        } else {
            format!(
                "spiral: a regularized arm needs at most {NFE_RATIO}x the unregularized test NFE \
                 with a test MSE at most {MSE_FACTOR}x its"
            )
        };
        let fails_when = "no completed regularized run meets both the NFE bar and the accuracy \
                          (or error) bar against the unregularized run of its seed";
        let mut c = CheckBuilder::new(
            if task == "digits" { "i" } else { "ii" },
            Quantifier::Some,
            statement,
            fails_when,
        );
        if task != "digits" {
            c = c.informational();
        }
        let mut seeds: Vec<u64> = of_task.iter().map(|r| r.seed).collect();
        seeds.sort();
        seeds.dedup();
        for seed in seeds {
            let Some(base) = of_task.iter().find(|r| {
                r.seed == seed && r.params.text("regularizer") == "none" && r.completed()
            }) else {
                c.note(format!("seed {seed}: no completed unregularized run"));
                continue;
            };
            let base_nfe = base.value("nfe_test");
            for r in of_task
                .iter()
                .filter(|r| r.seed == seed && r.params.text("regularizer") != "none")
            {
                if !r.completed() {
                    c.note(format!("{}: {}", r.label(), r.status.describe()));
                    continue;
                }
                let ratio = r.value("nfe_test") / base_nfe;
                c.number(format!("{}.s{seed}.nfe_ratio", r.arm), ratio);
                let (score, base_score, ok) = if task == "digits" {
                    let (a, b) = (r.value("test_acc"), base.value("test_acc"));
                    (a, b, ratio <= NFE_RATIO && a >= b - ACC_DROP)
                } else {
                    let (a, b) = (r.value("test_mse"), base.value("test_mse"));
                    (a, b, ratio <= NFE_RATIO && a <= MSE_FACTOR * b)
                };
                c.number(format!("{}.s{seed}.score", r.arm), score);
                c.number(format!("{}.s{seed}.base_score", r.arm), base_score);
                c.case(ok, format!(
                    "{} (seed {seed}): test NFE {:.1} vs unregularized {:.1} = {ratio:.3}x; {} {score:.4} vs {base_score:.4}; \
                     {:.1} vs {:.1} us per prediction{}",
                    r.arm,
                    r.value("nfe_test"),
                    base_nfe,
                    if task == "digits" { "test accuracy" } else { "test MSE" },
                    r.value("us_per_prediction"),
                    base.value("us_per_prediction"),
                    if ok { "  <- meets the bar" } else { "" }
                ));
            }
        }
        checks.push(c.finish());
    }
    // Training cost of local against global regularization.
    let mean_ms = |reg: &str| {
        let xs: Vec<f64> = runs
            .iter()
            .filter(|r| r.params.text("regularizer") == reg && r.completed())
            .map(|r| r.value("step_ms"))
            .filter(|x| x.is_finite())
            .collect();
        (!xs.is_empty()).then(|| mean_se(&xs).0)
    };
    if let (Some(l), Some(g)) = (mean_ms("local"), mean_ms("global")) {
        let mut c = CheckBuilder::new(
            "iii",
            Quantifier::Every,
            "training time per step: local regularization is cheaper than global",
            "the mean training time per step of local regularization is not below global's",
        )
        .informational();
        c.number("local_step_ms", l);
        c.number("global_step_ms", g);
        c.case(
            l < g,
            format!(
                "mean per step: local {l:.2} ms vs global {g:.2} ms (back-propagation through the \
                 solver replays every step for both; the paper's cost advantage comes with \
                 adjoint methods)"
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

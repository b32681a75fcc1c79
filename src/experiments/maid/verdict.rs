//! The maid-bilevel verdict. `cost(run, q)`: the lower-level work until the run's upper loss
//! first reached `(1 + q) x` the best upper loss any run of that seed found (through the level
//! grid of `outer`: the first recorded level at or below the target; none = not reached within
//! the budget).
//!
//! 1. (claim) less work than prescribed schedules: `cost(maid, 5%)` at most the smallest cost of
//!    `hoag-quadratic`, `hoag-cubic` and `fixed-1e-4` (unreached: infinite), in at least 2/3 of
//!    the seeds (rounded up).
//! 2. (claim) robust to its initial accuracy: `maid-eps1e-3` and `maid` both reach 5 % in at
//!    least 2/3 of the seeds, and where both do their costs are within a factor 1.5.
//! 3. (claim) no tuning beats every schedule: `cost(maid, 5%) <= cost(hoag-geometric, 5%)` in at
//!    least 2/3 of the seeds.
//! 4. (reported) final upper loss (at the accepted iterate and re-solved exactly), test
//!    accuracy, outer iterations and final eps per arm.
//! 5. (reported) the fixed-accuracy arms: whether the loose one plateaus above the target and
//!    how late the tight one gets there.
//!
//! A seed where no run lowered the upper loss by at least 1 % below its value at theta0 (after
//! the first lower-level solve) learned nothing:
//! its comparisons are left out (all seeds out: INCONCLUSIVE).

use std::collections::BTreeMap;

use super::outer::{level, level_at_or_below};
use crate::experiments::FinishedRun;
use crate::verdict::{mean_se, mean_se_text, CheckBuilder, Quantifier, Verdict};

/// The relative target above the best loss.
pub const TARGET: f64 = 0.05;
/// Check 2's largest cost ratio.
pub const ROBUST_FACTOR: f64 = 1.5;
/// The arms check 1 compares against.
pub const SCHEDULES: [&str; 3] = ["hoag-quadratic", "hoag-cubic", "fixed-1e-4"];
/// A seed whose best loss is not this much below the loss at W = 0 learned nothing.
pub const LEARNED: f64 = 0.99;

/// The cost at which `r` reached `target`.
pub fn cost_to(r: &FinishedRun, target: f64) -> Option<f64> {
    let k = level_at_or_below(target);
    let v = r.value(&format!("cost_to_level_{k:04}"));
    v.is_finite().then_some(v)
}

fn show(c: Option<f64>) -> String {
    c.map(|v| format!("{v:.0}"))
        .unwrap_or_else(|| "not reached".into())
}

/// Seeds needed out of `n` for "at least 2/3".
fn majority(n: usize) -> usize {
    (2 * n).div_ceil(3)
}

pub fn compute(claim: &str, preset_id: &str, runs: &[FinishedRun]) -> Verdict {
    let mut left = Vec::new();
    let ok: Vec<&FinishedRun> = runs
        .iter()
        .filter(|r| {
            let fine = r.completed() && r.value("upper_loss_min").is_finite();
            if !fine {
                left.push(format!("{}: {}, left out", r.label(), r.status.describe()));
            }
            fine
        })
        .collect();
    // Per seed: the runs by arm, the best loss and the target.
    let mut seeds: BTreeMap<u64, BTreeMap<&str, &FinishedRun>> = BTreeMap::new();
    for r in &ok {
        seeds.entry(r.seed).or_default().insert(r.arm.as_str(), r);
    }
    let mut targets: BTreeMap<u64, f64> = BTreeMap::new();
    for (seed, arms) in &seeds {
        let best = arms
            .values()
            .map(|r| r.value("upper_loss_min"))
            .fold(f64::INFINITY, f64::min);
        let learned = arms
            .values()
            .any(|r| r.value("upper_loss_min") < LEARNED * r.value("upper_loss_first"));
        if learned {
            targets.insert(*seed, (1.0 + TARGET) * best);
        } else {
            left.push(format!(
                "seed {seed}: no run lowered the upper loss below {LEARNED} x its value at \
                 theta0 (best {best:.4}): learned nothing, left out"
            ));
        }
    }
    let cost = |seed: u64, arm: &str| -> Option<Option<f64>> {
        let t = targets.get(&seed)?;
        seeds.get(&seed)?.get(arm).map(|r| cost_to(r, *t))
    };
    let target_line = targets
        .iter()
        .map(|(s, t)| {
            format!(
                "seed {s}: best {:.4}, target {t:.4} (level {:.4})",
                t / (1.0 + TARGET),
                level(level_at_or_below(*t))
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let mut checks = Vec::new();

    // 1. Less work than prescribed schedules.
    let mut c1 = CheckBuilder::new(
        "1",
        Quantifier::Every,
        format!(
            "MAID reaches 5 % above the best upper loss with at most the lower-level work of \
             the best of {SCHEDULES:?}, in at least 2/3 of the seeds"
        ),
        "MAID needs more work than one of the prescribed schedules (or does not get there) in \
         more than 1/3 of the seeds",
    );
    for why in &left {
        c1.note(why.clone());
    }
    c1.note(target_line.clone());
    let mut wins = 0;
    let mut compared = 0;
    let mut ratios = Vec::new();
    for &seed in targets.keys() {
        let Some(m) = cost(seed, "maid") else {
            c1.note(format!("seed {seed}: no maid run"));
            continue;
        };
        let others: Vec<(&str, Option<f64>)> = SCHEDULES
            .iter()
            .filter_map(|a| cost(seed, a).map(|c| (*a, c)))
            .collect();
        if others.is_empty() {
            c1.note(format!("seed {seed}: no schedule arm to compare"));
            continue;
        }
        compared += 1;
        let best_other = others
            .iter()
            .filter_map(|(a, c)| c.map(|c| (*a, c)))
            .min_by(|a, b| a.1.total_cmp(&b.1));
        let won = match (m, best_other) {
            (Some(m), Some((_, b))) => m <= b,
            (Some(_), None) => !others.is_empty(),
            (None, _) => false,
        };
        if let (Some(m), Some((_, b))) = (m, best_other) {
            ratios.push(m / b);
        }
        wins += usize::from(won);
        c1.note(format!(
            "seed {seed}: maid {} vs {} ({})",
            show(m),
            others
                .iter()
                .map(|(a, c)| format!("{a} {}", show(*c)))
                .collect::<Vec<_>>()
                .join(", "),
            if won { "maid not more" } else { "maid more" }
        ));
    }
    if compared > 0 {
        let need = majority(compared);
        c1.case(
            wins >= need,
            format!("maid needs no more work in {wins} of {compared} seeds (need {need})"),
        );
        c1.number("seeds_won", wins as f64);
    }
    if !ratios.is_empty() {
        c1.note(format!(
            "cost ratio maid / best schedule: {}",
            mean_se_text(&ratios)
        ));
        c1.number("cost_ratio", mean_se(&ratios).0);
    }
    checks.push(c1.finish());

    // 2. Robust to the initial accuracy.
    let mut c2 = CheckBuilder::new(
        "2",
        Quantifier::Every,
        format!(
            "maid-eps1e-3 and maid both reach 5 % in at least 2/3 of the seeds, and where both \
             do, their costs are within a factor {ROBUST_FACTOR}"
        ),
        "one of them misses the target too often, or the costs differ by more than the factor",
    );
    let mut both = 0;
    let mut paired = 0;
    let mut cases = Vec::new();
    for &seed in targets.keys() {
        let (Some(a), Some(b)) = (cost(seed, "maid"), cost(seed, "maid-eps1e-3")) else {
            continue;
        };
        paired += 1;
        match (a, b) {
            (Some(a), Some(b)) => {
                both += 1;
                let r = b / a;
                cases.push((
                    (1.0 / ROBUST_FACTOR..=ROBUST_FACTOR).contains(&r),
                    format!("seed {seed}: maid {a:.0}, maid-eps1e-3 {b:.0} (ratio {r:.2})"),
                ));
            }
            _ => c2.note(format!(
                "seed {seed}: maid {}, maid-eps1e-3 {}",
                show(a),
                show(b)
            )),
        }
    }
    if paired > 0 {
        let need = majority(paired);
        c2.case(
            both >= need,
            format!("both reach the target in {both} of {paired} seeds (need {need})"),
        );
        for (held, line) in cases {
            c2.case(held, line);
        }
    }
    checks.push(c2.finish());

    // 3. No tuning beats every schedule, the geometric one too.
    let mut c3 = CheckBuilder::new(
        "3",
        Quantifier::Every,
        "MAID reaches 5 % with at most hoag-geometric's lower-level work, in at least 2/3 of \
         the seeds",
        "hoag-geometric gets there with less work in more than 1/3 of the seeds",
    );
    let mut wins3 = 0;
    let mut compared3 = 0;
    for &seed in targets.keys() {
        let (Some(m), Some(g)) = (cost(seed, "maid"), cost(seed, "hoag-geometric")) else {
            continue;
        };
        compared3 += 1;
        let won = match (m, g) {
            (Some(m), Some(g)) => m <= g,
            (Some(_), None) => true,
            (None, _) => false,
        };
        wins3 += usize::from(won);
        c3.note(format!(
            "seed {seed}: maid {} vs hoag-geometric {}",
            show(m),
            show(g)
        ));
    }
    if compared3 > 0 {
        let need = majority(compared3);
        c3.case(
            wins3 >= need,
            format!("maid needs no more work in {wins3} of {compared3} seeds (need {need})"),
        );
        c3.number("seeds_won", wins3 as f64);
    }
    checks.push(c3.finish());

    // 4. Reported: every arm's end point.
    let mut c4 = CheckBuilder::new(
        "4",
        Quantifier::Every,
        "reported: per arm, the final upper loss at the accepted iterate and re-solved to \
         1e-7, test accuracy, outer iterations, accepted steps, final eps, runs reaching 5 %",
        "nothing (reported)",
    )
    .informational();
    let mut arms: Vec<&str> = Vec::new();
    for r in &ok {
        if !arms.contains(&r.arm.as_str()) {
            arms.push(r.arm.as_str());
        }
    }
    for arm in &arms {
        let rs: Vec<&&FinishedRun> = ok.iter().filter(|r| r.arm == *arm).collect();
        let col = |k: &str| rs.iter().map(|r| r.value(k)).collect::<Vec<f64>>();
        let reached: Vec<f64> = rs
            .iter()
            .filter_map(|r| targets.get(&r.seed).and_then(|t| cost_to(r, *t)))
            .collect();
        c4.note(format!(
            "{arm}: upper loss {} (exact {}), test acc {}, outer {}, accepted {}, final eps {}, \
             reached 5 % in {} of {} runs (cost {})",
            mean_se_text(&col("upper_loss")),
            mean_se_text(&col("upper_loss_exact")),
            mean_se_text(&col("test_acc_exact")),
            mean_se_text(&col("outer_iters")),
            mean_se_text(&col("accepted_steps")),
            col("eps")
                .iter()
                .map(|e| format!("{e:.1e}"))
                .collect::<Vec<_>>()
                .join("/"),
            reached.len(),
            rs.len(),
            if reached.is_empty() {
                "-".to_string()
            } else {
                mean_se_text(&reached)
            }
        ));
        c4.number(
            format!("{arm}.upper_loss_exact"),
            mean_se(&col("upper_loss_exact")).0,
        );
    }
    checks.push(c4.finish());

    // 5. Reported: the fixed-accuracy arms.
    let mut c5 = CheckBuilder::new(
        "5",
        Quantifier::Every,
        "reported: the loose fixed accuracy (1e-2) plateaus above the 5 % target in some seed; \
         the tight one (1e-4) reaches it later than maid",
        "the loose arm reaches the target in every seed, or the tight one is never later",
    )
    .informational();
    let (mut loose_miss, mut tight_late) = (None, None);
    for &seed in targets.keys() {
        let m = cost(seed, "maid").flatten();
        let l = cost(seed, "fixed-1e-2");
        let t = cost(seed, "fixed-1e-4");
        if let Some(l) = l {
            loose_miss = Some(loose_miss.unwrap_or(false) | l.is_none());
        }
        if let (Some(m), Some(t)) = (m, t) {
            tight_late = Some(tight_late.unwrap_or(false) | t.is_none_or(|t| t > m));
        }
        c5.note(format!(
            "seed {seed}: fixed-1e-2 {}, fixed-1e-4 {}, maid {}",
            l.map(show).unwrap_or_else(|| "-".into()),
            t.map(show).unwrap_or_else(|| "-".into()),
            show(m)
        ));
    }
    if let Some(held) = loose_miss {
        c5.case(held, "fixed-1e-2 plateaus above the target in some seed");
    }
    if let Some(held) = tight_late {
        c5.case(held, "fixed-1e-4 is later than maid in some seed");
    }
    checks.push(c5.finish());

    Verdict {
        preset: preset_id.to_string(),
        claim: claim.to_string(),
        checks,
    }
}

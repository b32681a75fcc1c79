//! The SaRA verdict at the default learning rate (1e-3), means over seeds with standard errors:
//!
//! 0. The setting: the pretrained network is good on the original digits (>= 0.85) and poor on
//!    the rotated ones (<= 0.5); otherwise there is nothing to adapt to and every claim check is
//!    INCONCLUSIVE.
//! 1. Adaptation at equal budget: `new_acc(sara) >= new_acc(lora-r4) - 0.01`.
//! 2. Retention: `old_acc(sara) >= old_acc(lora-r4) - 0.01` and `old_acc(sara) > old_acc(full)`.
//! 3. "Ineffective" parameters matter: `sara` beats `random-sparse` on `new_acc + old_acc`.
//! 4. (reported) the nuclear-norm ablation and the re-selection's mask overlap.
//! 5. (reported) the learning rate against the method: every method's `new_acc + old_acc` at
//!    each learning rate; whether the spread over learning rates of one method exceeds the
//!    spread over methods at one learning rate, and each method at its own best rate.

use std::collections::BTreeMap;

use crate::experiments::FinishedRun;
use crate::verdict::{mean_se, mean_se_text, CheckBuilder, Quantifier, Verdict};

pub const LR_MAIN: f64 = 1e-3;
pub const MARGIN: f64 = 0.01;
pub const PRE_OLD: f64 = 0.85;
pub const PRE_NEW: f64 = 0.5;

fn method(r: &FinishedRun) -> &str {
    r.params.text("method")
}

fn nuc_off(r: &FinishedRun) -> bool {
    r.params.f64("lambda_rank") == 0.0
}

fn m(xs: &[f64]) -> f64 {
    mean_se(xs).0
}

pub fn compute(claim: &str, preset_id: &str, runs: &[FinishedRun]) -> Verdict {
    let done: Vec<&FinishedRun> = runs.iter().filter(|r| r.completed()).collect();
    let at = |meth: &str, lr: f64, nonuc: bool| -> Vec<&FinishedRun> {
        done.iter()
            .copied()
            .filter(|r| {
                method(r) == meth
                    && (meth == "frozen" || (r.params.f64("lr") - lr).abs() < 1e-12)
                    && (meth != "sara" || nuc_off(r) == nonuc)
            })
            .collect()
    };
    let v = |rs: &[&FinishedRun], k: &str| -> Vec<f64> { rs.iter().map(|r| r.value(k)).collect() };
    let both = |rs: &[&FinishedRun]| -> Vec<f64> {
        rs.iter()
            .map(|r| r.value("new_acc") + r.value("old_acc"))
            .collect()
    };
    let pre_old = v(&done, "pretrained_old_acc");
    let pre_new = v(&done, "pretrained_new_acc");
    let shifted = !done.is_empty() && m(&pre_old) >= PRE_OLD && m(&pre_new) <= PRE_NEW;
    let setting = format!(
        "pretrained: original digits {}, rotated {} (needs >= {PRE_OLD} and <= {PRE_NEW})",
        mean_se_text(&pre_old),
        mean_se_text(&pre_new)
    );
    let (sara, lora, full, random) = (
        at("sara", LR_MAIN, false),
        at("lora", LR_MAIN, false),
        at("full", LR_MAIN, false),
        at("random", LR_MAIN, false),
    );
    let decide = |c: &mut CheckBuilder, held: bool, line: String| {
        if shifted {
            c.case(held, line);
        } else {
            c.note(format!("{line}; not decided: {setting}"));
        }
    };

    let mut c1 = CheckBuilder::new(
        "1",
        Quantifier::Every,
        format!(
            "at lr {LR_MAIN}, SaRA's accuracy on the rotated digits is at least LoRA r4's minus \
             {MARGIN} (equal budget, means over seeds)"
        ),
        "SaRA's new-task accuracy is more than the margin below LoRA's",
    );
    c1.note(setting.clone());
    if !sara.is_empty() && !lora.is_empty() {
        let (s, l) = (v(&sara, "new_acc"), v(&lora, "new_acc"));
        decide(
            &mut c1,
            m(&s) >= m(&l) - MARGIN,
            format!(
                "new_acc: SaRA {} vs LoRA {} ({:+.4}); trainable share SaRA {} vs LoRA {}",
                mean_se_text(&s),
                mean_se_text(&l),
                m(&s) - m(&l),
                mean_se_text(&v(&sara, "trainable_frac")),
                mean_se_text(&v(&lora, "trainable_frac"))
            ),
        );
        c1.number("sara.new_acc", m(&s));
        c1.number("lora.new_acc", m(&l));
    }
    let mut c2 = CheckBuilder::new(
        "2",
        Quantifier::Every,
        format!(
            "at lr {LR_MAIN}, SaRA keeps the original digits at least as well as LoRA r4 (minus \
             {MARGIN}) and better than full fine-tuning"
        ),
        "SaRA's old-task accuracy is more than the margin below LoRA's, or not above full \
         fine-tuning's",
    );
    if !sara.is_empty() && !lora.is_empty() && !full.is_empty() {
        let (s, l, f) = (
            v(&sara, "old_acc"),
            v(&lora, "old_acc"),
            v(&full, "old_acc"),
        );
        decide(
            &mut c2,
            m(&s) >= m(&l) - MARGIN && m(&s) > m(&f),
            format!(
                "old_acc: SaRA {} vs LoRA {} ({:+.4}) vs full {} ({:+.4})",
                mean_se_text(&s),
                mean_se_text(&l),
                m(&s) - m(&l),
                mean_se_text(&f),
                m(&s) - m(&f)
            ),
        );
        c2.number("sara.old_acc", m(&s));
        c2.number("lora.old_acc", m(&l));
        c2.number("full.old_acc", m(&f));
    }
    let mut c3 = CheckBuilder::new(
        "3",
        Quantifier::Every,
        format!(
            "at lr {LR_MAIN}, the smallest weights beat a random set of the same size on \
             new_acc + old_acc"
        ),
        "the random 10% does at least as well",
    );
    if !sara.is_empty() && !random.is_empty() {
        let (s, r) = (both(&sara), both(&random));
        decide(
            &mut c3,
            m(&s) > m(&r),
            format!(
                "new + old: SaRA {} vs random {} ({:+.4})",
                mean_se_text(&s),
                mean_se_text(&r),
                m(&s) - m(&r)
            ),
        );
        c3.number("sara.both", m(&s));
        c3.number("random.both", m(&r));
    }
    let mut c4 = CheckBuilder::new(
        "4",
        Quantifier::Every,
        "reported: SaRA with and without the nuclear norm (new + old), and the re-selection's \
         overlap with the first mask",
        "the nuclear norm lowers new + old",
    )
    .informational();
    let nonuc = at("sara", LR_MAIN, true);
    if !sara.is_empty() && !nonuc.is_empty() {
        let (s, n) = (both(&sara), both(&nonuc));
        c4.case(
            m(&s) >= m(&n),
            format!(
                "new + old: with {} vs without {}; nuclear norm at the end {} vs {}; mask \
                 overlap {}",
                mean_se_text(&s),
                mean_se_text(&n),
                mean_se_text(&v(&sara, "nuclear")),
                mean_se_text(&v(&nonuc, "nuclear")),
                mean_se_text(&v(&sara, "mask_overlap"))
            ),
        );
    }
    // 5. The learning rate against the method.
    let mut c5 = CheckBuilder::new(
        "5",
        Quantifier::Every,
        "reported: the learning rate against the method on new_acc + old_acc: the largest \
         spread over learning rates within a method, against the spread over methods at lr \
         1e-3; each method at its best learning rate",
        "the learning rate moves a method's result more than the choice of method does",
    )
    .informational();
    let mut lrs: Vec<f64> = done
        .iter()
        .filter(|r| method(r) != "frozen")
        .map(|r| r.params.f64("lr"))
        .collect();
    lrs.sort_by(f64::total_cmp);
    lrs.dedup();
    let mut table: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for meth in ["full", "lora", "sara", "random"] {
        for &lr in &lrs {
            let rs = at(meth, lr, false);
            if !rs.is_empty() {
                table.entry(meth).or_default().push((lr, m(&both(&rs))));
            }
        }
    }
    let mut lr_spread = 0.0f64;
    let mut main_vals = Vec::new();
    for (meth, row) in &table {
        let hi = row.iter().map(|x| x.1).fold(f64::NEG_INFINITY, f64::max);
        let lo = row.iter().map(|x| x.1).fold(f64::INFINITY, f64::min);
        lr_spread = lr_spread.max(hi - lo);
        let best = row.iter().fold(
            (0.0, f64::NEG_INFINITY),
            |b, x| if x.1 > b.1 { *x } else { b },
        );
        c5.note(format!(
            "{meth}: {} (best lr {:e}: {:.4})",
            row.iter()
                .map(|(lr, x)| format!("lr {lr:e}: {x:.4}"))
                .collect::<Vec<_>>()
                .join(", "),
            best.0,
            best.1
        ));
        if let Some(x) = row.iter().find(|x| (x.0 - LR_MAIN).abs() < 1e-12) {
            main_vals.push(x.1);
        }
    }
    if table.len() > 1 && lrs.len() > 1 && !main_vals.is_empty() {
        let hi = main_vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let lo = main_vals.iter().copied().fold(f64::INFINITY, f64::min);
        let method_spread = hi - lo;
        c5.case(
            lr_spread <= method_spread,
            format!(
                "largest spread over learning rates within a method {lr_spread:.4} vs spread \
                 over methods at lr {LR_MAIN} {method_spread:.4}: {}",
                if lr_spread > method_spread {
                    "the learning rate matters more than the method"
                } else {
                    "the method matters more than the learning rate"
                }
            ),
        );
        c5.number("lr_spread", lr_spread);
        c5.number("method_spread", method_spread);
    }
    Verdict {
        preset: preset_id.to_string(),
        claim: claim.to_string(),
        checks: vec![
            c1.finish(),
            c2.finish(),
            c3.finish(),
            c4.finish(),
            c5.finish(),
        ],
    }
}

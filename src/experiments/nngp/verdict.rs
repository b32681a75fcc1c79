//! The sm-nngp verdict, at the training size `verdict_n` (default 300). The claim arm is the
//! inverse-gamma arm named `sm-nngp` (else the first inverse-gamma arm with heavy tails); the
//! fair baseline is the NNGP with the ML-II scale (`prior = "ml2"`), paired by seed (same split,
//! same kernel, same noise, same predictive mean).
//!
//! 1. (claim) OOD robustness: for every shifted set (noise, rot, flip, heldout) the mean over
//!    seeds of NLL(sm) is below NLL(ml2), and in every seed NLL(sm) <= NLL(ml2) + 1e-3.
//! 2. (claim) No in-distribution cost: on clean, mean NLL(sm) <= mean NLL(ml2) + 0.01.
//! 3. (claim, effect size) heldout: mean NLL(ml2) - NLL(sm) >= 0.01 nats per output.
//! 4. (reported) every other arm (the fixed-scale NNGP, other inverse-gamma arms) against ML-II.
//! 5. (reported) dnll on heldout and flip against n: the tails fade as 2a + nC grows.
//! 6. (reported) what the t's gain is made of: its tails (NLL(t) - NLL(Gaussian with the t's
//!    scale)) and its scale (the rest).
//!
//! A run whose clean accuracy at `verdict_n` is below 0.5 learned nothing and is left out; with
//! no paired seed left the checks are INCONCLUSIVE.

use std::collections::BTreeMap;

use super::{SETS, SHIFTED};
use crate::experiments::FinishedRun;
use crate::verdict::{mean_se, mean_se_text, usable, CheckBuilder, Quantifier, Verdict};

/// Check 1: the per-seed tolerance.
pub const SEED_TOL: f64 = 1e-3;
/// Check 2: the in-distribution tolerance.
pub const CLEAN_TOL: f64 = 0.01;
/// Check 3: the held-out effect size.
pub const EFFECT: f64 = 0.01;
/// Below this clean accuracy a run learned nothing.
pub const LEARNED: f64 = 0.5;

fn prior(r: &FinishedRun) -> &str {
    r.params.text("prior")
}

/// The runs of one arm by seed.
type BySeed<'a> = BTreeMap<u64, &'a FinishedRun>;

fn by_seed<'a>(runs: &[&'a FinishedRun], arm: &str) -> BySeed<'a> {
    runs.iter()
        .filter(|r| r.arm == arm)
        .map(|r| (r.seed, *r))
        .collect()
}

/// Paired per-seed differences `value(a) - value(b)` of a metric.
fn paired(a: &BySeed, b: &BySeed, key: &str) -> Vec<(u64, f64, f64)> {
    a.iter()
        .filter_map(|(s, ra)| b.get(s).map(|rb| (*s, ra.value(key), rb.value(key))))
        .filter(|(_, x, y)| x.is_finite() && y.is_finite())
        .collect()
}

pub fn compute(claim: &str, preset_id: &str, runs: &[FinishedRun]) -> Verdict {
    let n = runs
        .first()
        .map(|r| r.params.usize("verdict_n"))
        .unwrap_or(300);
    let mut left = Vec::new();
    let ok = usable(
        runs,
        &format!("acc_clean_n{n}"),
        &format!("clean accuracy at n {n}"),
        LEARNED,
        &mut left,
    );
    let mut arms: Vec<String> = Vec::new();
    for r in &ok {
        if !arms.contains(&r.arm) {
            arms.push(r.arm.clone());
        }
    }
    let first_arm =
        |f: &dyn Fn(&FinishedRun) -> bool| ok.iter().find(|r| f(r)).map(|r| r.arm.clone());
    let base_arm = first_arm(&|r| prior(r) == "ml2");
    let sm_arm = ok
        .iter()
        .find(|r| r.arm == "sm-nngp" && prior(r) == "inverse-gamma")
        .map(|r| r.arm.clone())
        .or_else(|| first_arm(&|r| prior(r) == "inverse-gamma" && r.params.bool("heavy_tails")))
        .or_else(|| first_arm(&|r| prior(r) == "inverse-gamma"));
    let base = base_arm
        .as_deref()
        .map(|a| by_seed(&ok, a))
        .unwrap_or_default();
    let sm = sm_arm
        .as_deref()
        .map(|a| by_seed(&ok, a))
        .unwrap_or_default();
    let sm_name = sm_arm
        .clone()
        .unwrap_or_else(|| "(no inverse-gamma arm)".into());
    let header =
        format!(
        "at n = {n}: claim arm {sm_name}{}, baseline {} (NLL per output, mean +- s.e. over seeds)",
        sm.values()
            .next()
            .map(|r| format!(
                " (a {}, b {}, posterior df {:.0}{})",
                r.params.f64("a"),
                r.params.f64("b"),
                r.value(&format!("df_posterior_n{n}")),
                if r.params.bool("heavy_tails") { "" } else { ", tails OFF: Gaussian plug-in" }
            ))
            .unwrap_or_default(),
        base_arm.as_deref().unwrap_or("(no ML-II arm)")
    );
    let nll = |set: &str| format!("nll_{set}_n{n}");

    // 1. OOD robustness against ML-II.
    let mut c1 = CheckBuilder::new(
        "1",
        Quantifier::Every,
        format!(
            "on every shifted set (noise, rot, flip, heldout) at n = {n} the Student-t process \
             has a lower mean test NLL than the ML-II NNGP, and in every seed NLL(sm) <= \
             NLL(ml2) + {SEED_TOL}"
        ),
        "on some shifted set the mean NLL is not lower, or some seed is worse by more than the \
         tolerance",
    );
    for why in &left {
        c1.note(why.clone());
    }
    c1.note(header.clone());
    for set in SHIFTED {
        let pairs = paired(&sm, &base, &nll(set));
        if pairs.is_empty() {
            continue;
        }
        let d: Vec<f64> = pairs.iter().map(|p| p.1 - p.2).collect();
        let xs: Vec<f64> = pairs.iter().map(|p| p.1).collect();
        let ys: Vec<f64> = pairs.iter().map(|p| p.2).collect();
        let worst = d.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let mean_d = mean_se(&d).0;
        c1.case(
            mean_d < 0.0 && worst <= SEED_TOL,
            format!(
                "{set}: sm {} vs ml2 {}: difference {} (worst seed {worst:+.4})",
                mean_se_text(&xs),
                mean_se_text(&ys),
                mean_se_text(&d)
            ),
        );
        c1.number(format!("dnll_{set}"), mean_d);
    }
    let mut checks = vec![c1.finish()];

    // 2. No in-distribution cost.
    let mut c2 = CheckBuilder::new(
        "2",
        Quantifier::Every,
        format!("on clean test digits at n = {n}, mean NLL(sm) <= mean NLL(ml2) + {CLEAN_TOL}"),
        "the Student-t process is worse in distribution by more than the tolerance",
    );
    let pairs = paired(&sm, &base, &nll("clean"));
    if !pairs.is_empty() {
        let d: Vec<f64> = pairs.iter().map(|p| p.1 - p.2).collect();
        let xs: Vec<f64> = pairs.iter().map(|p| p.1).collect();
        let ys: Vec<f64> = pairs.iter().map(|p| p.2).collect();
        c2.case(
            mean_se(&xs).0 <= mean_se(&ys).0 + CLEAN_TOL,
            format!(
                "clean: sm {} vs ml2 {}: difference {}",
                mean_se_text(&xs),
                mean_se_text(&ys),
                mean_se_text(&d)
            ),
        );
        c2.number("dnll_clean", mean_se(&d).0);
    }
    checks.push(c2.finish());

    // 3. Effect size on held-out classes.
    let mut c3 = CheckBuilder::new(
        "3",
        Quantifier::Every,
        format!(
            "on held-out classes at n = {n}, mean NLL(ml2) - NLL(sm) >= {EFFECT} nats per output"
        ),
        "the gain on held-out classes is below the effect size",
    );
    let pairs = paired(&sm, &base, &nll("heldout"));
    if !pairs.is_empty() {
        let g: Vec<f64> = pairs.iter().map(|p| p.2 - p.1).collect();
        c3.case(
            mean_se(&g).0 >= EFFECT,
            format!("heldout gain NLL(ml2) - NLL(sm): {}", mean_se_text(&g)),
        );
        c3.number("gain_heldout", mean_se(&g).0);
    }
    checks.push(c3.finish());

    // 4. Every other arm against ML-II.
    let mut c4 = CheckBuilder::new(
        "4",
        Quantifier::Every,
        format!(
            "reported: every arm's mean NLL minus ML-II's per set at n = {n} (the fixed-scale \
             NNGP mostly measures whether the data want sigma_v^2 above or below its value)"
        ),
        "-",
    )
    .informational();
    for arm in arms.iter().filter(|a| Some(*a) != base_arm.as_ref()) {
        let rs = by_seed(&ok, arm);
        let s2: Vec<f64> = rs
            .values()
            .map(|r| r.value(&format!("scale2_n{n}")))
            .collect();
        let line = SETS
            .iter()
            .map(|set| {
                let d: Vec<f64> = paired(&rs, &base, &nll(set))
                    .iter()
                    .map(|p| p.1 - p.2)
                    .collect();
                c4.number(format!("{arm}.dnll_{set}"), mean_se(&d).0);
                format!("{set} {}", mean_se_text(&d))
            })
            .collect::<Vec<_>>()
            .join(", ");
        c4.note(format!("{arm} (sigma_v^2 {}): {line}", mean_se_text(&s2)));
    }
    if !base.is_empty() {
        let of = |key: &str| -> Vec<f64> {
            base.values()
                .map(|r| r.value(&format!("{key}_n{n}")))
                .collect()
        };
        let eps = of("eps_rel");
        let smallest = super::EPS_GRID[0];
        c4.note(format!(
            "ML-II scale q / nC {} (held-out-class fit {}); eps / mean diag K {:?} (held-out \
             fit {:?}){}",
            mean_se_text(&of("scale2")),
            mean_se_text(&of("scale2_ml2_heldout")),
            eps,
            of("eps_rel_heldout"),
            if eps.contains(&smallest) {
                " (the grid's smallest value)"
            } else {
                ""
            }
        ));
    }
    checks.push(c4.finish());

    // 5. Trend over n.
    let mut c5 = CheckBuilder::new(
        "5",
        Quantifier::Every,
        "reported: NLL(sm) - NLL(ml2) on heldout and flip against n; its size shrinks from the \
         smallest to the largest n as the posterior df 2a + nC grows",
        "the difference grows with n",
    )
    .informational();
    let mut sizes: Vec<usize> = super::SIZES
        .iter()
        .copied()
        .filter(|s| {
            sm.values()
                .any(|r| r.value(&format!("nll_clean_n{s}")).is_finite())
        })
        .collect();
    sizes.dedup();
    for set in ["heldout", "flip"] {
        let row: Vec<(usize, f64, f64)> = sizes
            .iter()
            .filter_map(|&s| {
                let d: Vec<f64> = paired(&sm, &base, &format!("nll_{set}_n{s}"))
                    .iter()
                    .map(|p| p.1 - p.2)
                    .collect();
                let df = sm
                    .values()
                    .next()
                    .map(|r| r.value(&format!("df_posterior_n{s}")))
                    .unwrap_or(f64::NAN);
                (!d.is_empty()).then(|| (s, mean_se(&d).0, df))
            })
            .collect();
        if row.len() < 2 {
            continue;
        }
        let line = row
            .iter()
            .map(|(s, d, df)| format!("n {s}: {d:+.4} (df {df:.0})"))
            .collect::<Vec<_>>()
            .join(", ");
        let (first, last) = (row[0].1, row[row.len() - 1].1);
        c5.case(last.abs() <= first.abs(), format!("{set}: {line}"));
    }
    checks.push(c5.finish());

    // 6. Tails against scale.
    let mut c6 = CheckBuilder::new(
        "6",
        Quantifier::Every,
        format!(
            "reported: the t's difference to ML-II at n = {n} split into its tails (NLL(t) - \
             NLL(Gaussian with the t's scale (b + q/2)/(a + nC/2))) and its scale (the rest)"
        ),
        "-",
    )
    .informational();
    for set in SETS {
        let pairs = paired(&sm, &base, &nll(set));
        let tails: Vec<f64> = sm
            .values()
            .map(|r| r.value(&format!("tails_{set}_n{n}")))
            .filter(|v| v.is_finite())
            .collect();
        if pairs.is_empty() || tails.is_empty() {
            continue;
        }
        let d: Vec<f64> = pairs.iter().map(|p| p.1 - p.2).collect();
        let (dm, tm) = (mean_se(&d).0, mean_se(&tails).0);
        c6.note(format!(
            "{set}: total {dm:+.4} = tails {} + scale {:+.4}",
            mean_se_text(&tails),
            dm - tm
        ));
        c6.number(format!("tails_{set}"), tm);
    }
    checks.push(c6.finish());

    Verdict {
        preset: preset_id.to_string(),
        claim: claim.to_string(),
        checks,
    }
}

//! Smooth Diffusion's verdict, per seed against the `base` run of the same seed (same split,
//! same test pairs, same feature network, same evaluation noise):
//! 1. smoother interpolation: the `smooth-fd` run's feature ISTD is at most 0.8 x base's, and
//!    its relative ISTD (std / mean of the consecutive distances) is lower;
//! 2. quality not hurt: its Frechet distance is at most 1.2 x base's;
//! 3. better inversion: its inversion MSE is at most base's.
//!
//! Reported: pixel ISTD, `r_cv`, and every other regularized arm (the lambda sweep) with its
//! ISTD and FD. A run whose final noise-prediction loss is at or above [`LOSS_LEARNED`] (1 is
//! predicting zero) learned nothing and is left out, so a check without cases is INCONCLUSIVE.

use crate::experiments::FinishedRun;
use crate::verdict::{mean_se, CheckBuilder, Quantifier, Verdict};

/// A run whose final `L_simple` is at or above this learned no denoiser.
pub const LOSS_LEARNED: f64 = 0.9;

const BASE: &str = "base";
const CLAIM: &str = "smooth-fd";

fn unusable(r: &FinishedRun) -> Option<String> {
    if !r.completed() {
        return Some(format!("{}: {}, left out", r.label(), r.status.describe()));
    }
    let l = r.value("loss_simple");
    let bad = l.is_nan() || l >= LOSS_LEARNED || !r.value("fd").is_finite();
    bad.then(|| {
        format!(
            "{}: final noise-prediction loss {l:.3} (>= {LOSS_LEARNED} or no FD): learned nothing, left out",
            r.label()
        )
    })
}

fn fmt_ms(xs: &[f64]) -> String {
    let (m, se) = mean_se(xs);
    format!("{m:.4} +- {se:.4}")
}

/// The (claim run, base run) pairs by seed, with notes for the runs left out.
fn pairs<'a>(
    runs: &'a [FinishedRun],
    arm: &str,
    notes: &mut Vec<String>,
) -> Vec<(&'a FinishedRun, &'a FinishedRun)> {
    let mut out = Vec::new();
    for r in runs.iter().filter(|r| r.arm == arm) {
        let Some(b) = runs.iter().find(|b| b.arm == BASE && b.seed == r.seed) else {
            notes.push(format!("{}: no base run with its seed", r.label()));
            continue;
        };
        if let Some(why) = unusable(r).or_else(|| unusable(b)) {
            notes.push(why);
            continue;
        }
        out.push((r, b));
    }
    out
}

pub fn compute(claim: &str, preset_id: &str, runs: &[FinishedRun]) -> Verdict {
    let mut notes = Vec::new();
    let ps = pairs(runs, CLAIM, &mut notes);
    let lambda = runs
        .iter()
        .find(|r| r.arm == CLAIM)
        .map(|r| r.params.f64("lambda_reg"))
        .unwrap_or(f64::NAN);
    let col = |key: &str, claim_side: bool| -> Vec<f64> {
        ps.iter()
            .map(|(r, b)| if claim_side { r } else { b }.value(key))
            .collect()
    };
    let summary = |key: &str| {
        format!(
            "{key}: {CLAIM} {} vs base {} (mean +- s.e. over {} seeds)",
            fmt_ms(&col(key, true)),
            fmt_ms(&col(key, false)),
            ps.len()
        )
    };
    let mut checks = Vec::new();

    let mut c = CheckBuilder::new(
        "1",
        Quantifier::Every,
        format!(
            "smoother interpolation: in every seed the {CLAIM} run (lambda {lambda}) has a feature \
             ISTD <= 0.8 x base's and a lower relative ISTD"
        ),
        "a seed where the feature ISTD ratio exceeds 0.8 or the relative ISTD is not lower",
    );
    for n in &notes {
        c.note(n.clone());
    }
    for (r, b) in &ps {
        let (x, y) = (r.value("istd_feat"), b.value("istd_feat"));
        let (xr, yr) = (r.value("istd_rel"), b.value("istd_rel"));
        c.case(
            x <= 0.8 * y && xr < yr,
            format!(
                "seed {}: ISTD {x:.4} vs base {y:.4} (ratio {:.3}); relative ISTD {xr:.4} vs {yr:.4}",
                r.seed,
                x / y
            ),
        );
        c.number(format!("{CLAIM}.s{}.istd_feat", r.seed), x);
        c.number(format!("base.s{}.istd_feat", r.seed), y);
        c.number(format!("{CLAIM}.s{}.istd_rel", r.seed), xr);
        c.number(format!("base.s{}.istd_rel", r.seed), yr);
    }
    if !ps.is_empty() {
        c.note(summary("istd_feat"));
        c.note(summary("istd_rel"));
    }
    checks.push(c.finish());

    let mut c = CheckBuilder::new(
        "2",
        Quantifier::Every,
        format!(
            "quality not hurt: in every seed FD({CLAIM}) <= 1.2 x FD(base) (classifier features)"
        ),
        "a seed where the Frechet distance exceeds 1.2 x base's",
    );
    for (r, b) in &ps {
        let (x, y) = (r.value("fd"), b.value("fd"));
        c.case(
            x <= 1.2 * y,
            format!(
                "seed {}: FD {x:.3} vs base {y:.3} (ratio {:.3}; test halves {:.3})",
                r.seed,
                x / y,
                b.value("fd_ref")
            ),
        );
        c.number(format!("{CLAIM}.s{}.fd", r.seed), x);
        c.number(format!("base.s{}.fd", r.seed), y);
    }
    if !ps.is_empty() {
        c.note(summary("fd"));
    }
    checks.push(c.finish());

    let mut c = CheckBuilder::new(
        "3",
        Quantifier::Every,
        format!("better inversion: in every seed the inversion MSE of {CLAIM} <= base's"),
        "a seed where the inversion MSE is higher than base's",
    );
    for (r, b) in &ps {
        let (x, y) = (r.value("inv_mse"), b.value("inv_mse"));
        c.case(
            x <= y,
            format!("seed {}: inversion MSE {x:.4} vs base {y:.4}", r.seed),
        );
        c.number(format!("{CLAIM}.s{}.inv_mse", r.seed), x);
        c.number(format!("base.s{}.inv_mse", r.seed), y);
    }
    if !ps.is_empty() {
        c.note(summary("inv_mse"));
    }
    checks.push(c.finish());

    // Reported only: pixel ISTD, r_cv, the lambda sweep.
    let mut c = CheckBuilder::new(
        "4",
        Quantifier::Every,
        "reported: pixel ISTD, within-batch spread of r, and every arm's ISTD / FD / inversion MSE \
         (the lambda sweep)",
        "reported only",
    )
    .informational();
    let mut arms: Vec<&str> = runs.iter().map(|r| r.arm.as_str()).collect();
    arms.dedup();
    arms.sort();
    arms.dedup();
    for arm in arms {
        let of: Vec<&FinishedRun> = runs
            .iter()
            .filter(|r| r.arm == arm && unusable(r).is_none())
            .collect();
        if of.is_empty() {
            c.note(format!("{arm}: no usable run"));
            continue;
        }
        let v = |k: &str| of.iter().map(|r| r.value(k)).collect::<Vec<f64>>();
        let lam = of[0].params.f64("lambda_reg");
        let cv = if lam > 0.0 {
            format!("; r_cv {}", fmt_ms(&v("r_cv")))
        } else {
            String::new()
        };
        c.note(format!(
            "{arm} (lambda {lam}): ISTD {} (pixels {}), relative {}, FD {}, inversion MSE {}, \
             L_simple {}{cv}",
            fmt_ms(&v("istd_feat")),
            fmt_ms(&v("istd_pix")),
            fmt_ms(&v("istd_rel")),
            fmt_ms(&v("fd")),
            fmt_ms(&v("inv_mse")),
            fmt_ms(&v("loss_simple")),
        ));
        c.number(format!("{arm}.istd_feat"), mean_se(&v("istd_feat")).0);
        c.number(format!("{arm}.fd"), mean_se(&v("fd")).0);
    }
    checks.push(c.finish());

    Verdict {
        preset: preset_id.to_string(),
        claim: claim.to_string(),
        checks,
    }
}

//! rRCM's verdict, per noise level over the seeds (means with standard errors):
//! 0. collapse guard (first, every arm): a run whose smoothed clean accuracy is below
//!    [`COLLAPSE_ACC`] collapsed (a constant class "certifies" large radii at chance accuracy).
//!    A collapsed or diverged `rrcm` run fails the claim; a collapsed or missing `denoise` arm,
//!    a missing `rrcm` arm, or any other `rrcm` / `denoise` run that did not finish leaves it
//!    inconclusive (so the means always cover the same seeds); collapsed reported arms are
//!    marked.
//! 1. large radii: the certified accuracy of `rrcm` is at least `denoise`'s at every radius
//!    r >= sigma that n samples can certify ([`claim_radii`]), and above it by
//!    [`MARGIN`] at one of them;
//! 2. cost: `rrcm`'s certification time per image is at most [`COST_RATIO`] x `denoise`'s.
//! 3. reported: every arm's clean accuracy, certified accuracies, ACR, abstentions, top-class
//!    share and cost, and `rrcm` against `consreg` (same fine-tuning, no pre-training) and
//!    `gauss`.

use crate::experiments::{FinishedRun, RunStatus};
use crate::metrics::smoothing::max_radius;
use crate::verdict::{mean_se, CheckBuilder, Quantifier, Verdict};

use super::RADIUS_METRICS;

/// Smoothed clean accuracy below which a run collapsed (chance is 0.1).
pub const COLLAPSE_ACC: f64 = 0.2;
/// The certified-accuracy lead `rrcm` needs at one claim radius.
pub const MARGIN: f64 = 0.02;
/// `rrcm`'s time per certificate at most this fraction of `denoise`'s.
pub const COST_RATIO: f64 = 0.5;

const METHODS: [&str; 4] = ["gauss", "consreg", "denoise", "rrcm"];

/// The radii of the claim at `sigma`: the reported radii r >= sigma that `n` estimation samples
/// can certify at level `1 - alpha` (r <= sigma Phi^-1(alpha^{1/n})).
pub fn claim_radii(sigma: f64, n: usize, alpha: f64) -> Vec<(f64, &'static str)> {
    let top = max_radius(n, alpha, sigma);
    RADIUS_METRICS
        .iter()
        .copied()
        .filter(|(r, _)| *r >= sigma - 1e-9 && *r <= top)
        .collect()
}

fn collapsed(r: &FinishedRun) -> bool {
    let a = r.value("clean_acc");
    a.is_nan() || a < COLLAPSE_ACC
}

fn ms(xs: &[f64]) -> String {
    let (m, se) = mean_se(xs);
    if se.is_nan() {
        format!("{m:.3}")
    } else {
        format!("{m:.3} +- {se:.3}")
    }
}

/// The canonical arm name of a method at a noise level (`rrcm-s0.25`).
pub fn arm_name(method: &str, sigma: f64) -> String {
    format!("{method}-s{sigma}")
}

/// The noise levels of the launch, ascending.
fn sigmas(runs: &[FinishedRun]) -> Vec<f64> {
    let mut s: Vec<f64> = runs.iter().map(|r| r.params.f64("sigma")).collect();
    s.sort_by(f64::total_cmp);
    s.dedup();
    s
}

fn done(v: Vec<&FinishedRun>) -> Vec<&FinishedRun> {
    v.into_iter().filter(|r| r.completed()).collect()
}

pub fn compute(claim: &str, preset_id: &str, runs: &[FinishedRun]) -> Verdict {
    let of = |arm: &str| -> Vec<&FinishedRun> { runs.iter().filter(|r| r.arm == arm).collect() };
    let mut levels = sigmas(runs);
    for s in [0.25, 0.5] {
        if !levels.iter().any(|x| (x - s).abs() < 1e-9) {
            levels.push(s);
        }
    }
    levels.sort_by(f64::total_cmp);
    let mut checks = Vec::new();

    // 0. Collapse guard.
    let mut c = CheckBuilder::new(
        "0",
        Quantifier::Every,
        format!(
            "collapse guard: every rrcm and denoise run certifies with smoothed clean accuracy >= \
             {COLLAPSE_ACC} at both noise levels (a constant classifier certifies large radii at \
             chance accuracy; that never counts as robustness)"
        ),
        "an rrcm run whose smoothed clean accuracy is below the guard, or that diverged (a \
         collapsed denoise arm, a missing arm or a run stopped or failed leaves the claim \
         inconclusive)",
    );
    let mut guard_cases: Vec<(bool, String)> = Vec::new();
    let mut void = false;
    for &s in &levels {
        for method in ["rrcm", "denoise"] {
            let arm = arm_name(method, s);
            let all = of(&arm);
            // Every seed or none: a run that did not finish voids the comparison at this noise
            // level, except an rrcm run that diverged, which counts against the method.
            for r in all.iter().filter(|r| !r.completed()) {
                let line = format!("{}: {}", r.label(), r.status.describe());
                if method == "rrcm" && matches!(r.status, RunStatus::Diverged { .. }) {
                    guard_cases.push((false, format!("{line}: the method's training diverged")));
                } else {
                    c.note(format!("{line}: the comparison at sigma {s} is void"));
                    void = true;
                }
            }
            let fin = done(all);
            if fin.is_empty() {
                c.note(format!(
                    "{arm}: no finished run: the comparison at sigma {s} is void"
                ));
                void = true;
                continue;
            }
            for r in fin {
                let line = format!(
                    "{}: clean accuracy {:.3}, top-class share {:.3}, abstain {:.3}{}",
                    r.label(),
                    r.value("clean_acc"),
                    r.value("top_class_share"),
                    r.value("abstain_rate"),
                    if collapsed(r) { " -> COLLAPSED" } else { "" }
                );
                c.number(format!("{}.clean_acc", r.label()), r.value("clean_acc"));
                if method == "rrcm" {
                    guard_cases.push((!collapsed(r), line));
                } else if collapsed(r) {
                    c.note(format!("{line}: the comparison at sigma {s} is void"));
                    void = true;
                } else {
                    c.note(line);
                }
            }
        }
    }
    let any_failed = guard_cases.iter().any(|(h, _)| !h);
    if any_failed || !void {
        for (held, line) in guard_cases {
            c.case(held, line);
        }
    } else {
        for (_, line) in guard_cases {
            c.note(line);
        }
    }
    checks.push(c.finish());

    // 1. Certified accuracy at large radii.
    let mut c = CheckBuilder::new(
        "1",
        Quantifier::Every,
        format!(
            "large radii: at each sigma the mean certified accuracy of rrcm is >= denoise's at \
             every radius r >= sigma that n samples can certify, and higher by >= {MARGIN} at one \
             of them"
        ),
        "a radius where rrcm certifies less than denoise, no radius with a lead of 0.02, or a \
         collapsed rrcm arm",
    );
    for &s in &levels {
        let rr = done(of(&arm_name("rrcm", s)));
        let dd = done(of(&arm_name("denoise", s)));
        let (Some(first), false) = (rr.first().or(dd.first()), dd.is_empty() || rr.is_empty())
        else {
            c.note(format!("sigma {s}: rrcm or denoise has no finished run"));
            continue;
        };
        let n = first.params.usize("n_mc");
        let alpha = first.params.f64("alpha");
        let rr_ok: Vec<&FinishedRun> = rr.iter().copied().filter(|r| !collapsed(r)).collect();
        let dd_ok: Vec<&FinishedRun> = dd.iter().copied().filter(|r| !collapsed(r)).collect();
        if dd_ok.is_empty() {
            c.note(format!(
                "sigma {s}: every denoise run collapsed: no comparison"
            ));
            continue;
        }
        if rr_ok.len() < rr.len() {
            c.case(
                false,
                format!(
                    "sigma {s}: {} of {} rrcm runs collapsed (clean accuracy < {COLLAPSE_ACC}): \
                     their certified radii do not count",
                    rr.len() - rr_ok.len(),
                    rr.len()
                ),
            );
            continue;
        }
        let radii = claim_radii(s, n, alpha);
        let (mut all_ge, mut lead) = (true, false);
        let mut parts = Vec::new();
        for (r, key) in &radii {
            let a: Vec<f64> = rr_ok.iter().map(|x| x.value(key)).collect();
            let b: Vec<f64> = dd_ok.iter().map(|x| x.value(key)).collect();
            let (ma, mb) = (mean_se(&a).0, mean_se(&b).0);
            all_ge &= ma >= mb;
            lead |= ma - mb >= MARGIN;
            parts.push(format!(
                "r {r}: rrcm {} vs denoise {} ({:+.3})",
                ms(&a),
                ms(&b),
                ma - mb
            ));
            c.number(format!("s{s}.r{r}.rrcm"), ma);
            c.number(format!("s{s}.r{r}.denoise"), mb);
        }
        c.case(
            all_ge && lead && !radii.is_empty(),
            format!(
                "sigma {s} (certifiable up to r = {:.2} with n = {n}): {}",
                max_radius(n, alpha, s),
                parts.join("; ")
            ),
        );
    }
    checks.push(c.finish());

    // 2. Inference cost.
    let mut c = CheckBuilder::new(
        "2",
        Quantifier::Every,
        format!(
            "cost: at each sigma rrcm's certification time per image (fastest of its images) is <= {COST_RATIO} x \
             denoise's (one network per noise sample against denoiser + classifier)"
        ),
        "a noise level where rrcm certifies an image in more than half denoise's time",
    );
    for &s in &levels {
        let rr = done(of(&arm_name("rrcm", s)));
        let dd = done(of(&arm_name("denoise", s)));
        if rr.is_empty() || dd.is_empty() {
            c.note(format!("sigma {s}: rrcm or denoise has no finished run"));
            continue;
        }
        let a: Vec<f64> = rr.iter().map(|x| x.value("ms_per_certificate")).collect();
        let b: Vec<f64> = dd.iter().map(|x| x.value("ms_per_certificate")).collect();
        let ratio = mean_se(&a).0 / mean_se(&b).0;
        c.case(
            ratio <= COST_RATIO,
            format!(
                "sigma {s}: rrcm {} ms vs denoise {} ms per certificate (ratio {ratio:.3}; \
                 medians {} vs {}); \
                 network passes per noise sample {} vs {}, multiply-accumulates {:.0}k vs {:.0}k",
                ms(&a),
                ms(&b),
                ms(&rr.iter().map(|x| x.value("ms_median")).collect::<Vec<_>>()),
                ms(&dd.iter().map(|x| x.value("ms_median")).collect::<Vec<_>>()),
                rr[0].value("forwards_per_sample"),
                dd[0].value("forwards_per_sample"),
                rr[0].value("kmacs_per_sample"),
                dd[0].value("kmacs_per_sample"),
            ),
        );
        c.number(format!("s{s}.cost_ratio"), ratio);
    }
    checks.push(c.finish());

    // 3. Reported: every arm.
    let mut c = CheckBuilder::new(
        "3",
        Quantifier::Every,
        "reported: every arm's smoothed accuracy, certified accuracy by radius, ACR, abstentions, \
         top-class share and cost; rrcm against consreg (no pre-training) and gauss",
        "reported only",
    )
    .informational();
    let mut arms: Vec<&str> = runs.iter().map(|r| r.arm.as_str()).collect();
    arms.sort();
    arms.dedup();
    for &s in &levels {
        for arm in arms.iter().filter(|a| {
            runs.iter()
                .any(|r| &r.arm == *a && (r.params.f64("sigma") - s).abs() < 1e-9)
        }) {
            let fin = done(of(arm));
            if fin.is_empty() {
                c.note(format!("{arm}: no finished run"));
                continue;
            }
            let v = |k: &str| fin.iter().map(|r| r.value(k)).collect::<Vec<f64>>();
            let radii: Vec<String> = RADIUS_METRICS
                .iter()
                .skip(1)
                .map(|(r, k)| format!("r{r} {}", ms(&v(k))))
                .collect();
            let coll: Vec<String> = fin
                .iter()
                .filter(|r| collapsed(r))
                .map(|r| format!("seed {}", r.seed))
                .collect();
            c.note(format!(
                "{arm}: clean {}, {}; ACR {}; abstain {}; top-class share {}; {} ms/certificate{}",
                ms(&v("clean_acc")),
                radii.join(", "),
                ms(&v("acr")),
                ms(&v("abstain_rate")),
                ms(&v("top_class_share")),
                ms(&v("ms_per_certificate")),
                if coll.is_empty() {
                    String::new()
                } else {
                    format!(" -- COLLAPSED in {}", coll.join(", "))
                }
            ));
            c.number(format!("{arm}.acr"), mean_se(&v("acr")).0);
            c.number(format!("{arm}.clean_acc"), mean_se(&v("clean_acc")).0);
        }
        let rr = done(of(&arm_name("rrcm", s)));
        for other in METHODS
            .iter()
            .filter(|m| **m == "consreg" || **m == "gauss")
        {
            let oo = done(of(&arm_name(other, s)));
            if rr.is_empty() || oo.is_empty() {
                continue;
            }
            let diffs: Vec<String> = RADIUS_METRICS
                .iter()
                .map(|(r, k)| {
                    let a = mean_se(&rr.iter().map(|x| x.value(k)).collect::<Vec<_>>()).0;
                    let b = mean_se(&oo.iter().map(|x| x.value(k)).collect::<Vec<_>>()).0;
                    format!("r{r} {:+.3}", a - b)
                })
                .collect();
            c.note(format!(
                "sigma {s}: rrcm minus {other} certified accuracy: {}",
                diffs.join(", ")
            ));
        }
    }
    checks.push(c.finish());

    Verdict {
        preset: preset_id.to_string(),
        claim: claim.to_string(),
        checks,
    }
}

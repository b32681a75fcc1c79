//! RED-diff's verdict, from the final per-budget values of the runs (means over seeds with
//! their standard errors):
//!
//! 1. (claim) in the many-step regime, every task and every K >= 250 of the sweep:
//!    PSNR(reddiff) >= PSNR(dps) + 0.5 dB;
//! 2. (claim) cheaper per step: ms_per_image(reddiff) / ms_per_image(dps) <= 0.8 at every K;
//! 3. (claim) the prior helps: PSNR(reddiff) >= PSNR(reddiff-lambda0) + 1 dB on every task at
//!    the largest K of the sweep;
//! 4. (reported) the whole K sweep: PSNR of every method per task, the crossover K, classifier
//!    accuracy, diversity, measurement error and the step size used.
//!
//! A method that diverged at a budget of a claim check, or a missing arm, makes that check
//! INCONCLUSIVE (unless a compared case already failed). A run whose prior did not learn (final
//! `L_simple` at or above [`PRIOR_LEARNED`]) is left out.

use crate::experiments::FinishedRun;
use crate::verdict::{mean_se, CheckBuilder, Outcome, Quantifier, Verdict};

use super::tasks::{TASKS, TASK_KEYS};

/// A prior whose final training loss is at or above this has learned nothing (predicting zero
/// noise scores 1).
pub const PRIOR_LEARNED: f64 = 0.9;

/// The arms the verdict compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Arm {
    RedDiff,
    Lambda0,
    Dps,
    Pinv,
}

impl Arm {
    /// By the preset's arm names; other arms by their parameters.
    fn of(r: &FinishedRun) -> Arm {
        match r.arm.as_str() {
            "reddiff" => return Arm::RedDiff,
            "reddiff-lambda0" => return Arm::Lambda0,
            "dps" => return Arm::Dps,
            "pinv" => return Arm::Pinv,
            _ => {}
        }
        match r.params.text("method") {
            "dps" => Arm::Dps,
            "pinv" => Arm::Pinv,
            _ if r.params.f64("lambda") > 0.0 => Arm::RedDiff,
            _ => Arm::Lambda0,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Arm::RedDiff => "reddiff",
            Arm::Lambda0 => "reddiff-lambda0",
            Arm::Dps => "dps",
            Arm::Pinv => "pinv",
        }
    }
}

fn unusable(r: &FinishedRun) -> Option<String> {
    if !r.completed() {
        return Some(format!("{}: {}, left out", r.label(), r.status.describe()));
    }
    let uses_prior = super::method_of(&r.params).uses_prior();
    let loss = r.value("loss_eps");
    (uses_prior && (loss.is_nan() || loss >= PRIOR_LEARNED)).then(|| {
        format!(
            "{}: the prior's L_simple {loss:.3} >= {PRIOR_LEARNED}: it learned nothing, left out",
            r.label()
        )
    })
}

struct Runs<'a> {
    usable: Vec<&'a FinishedRun>,
    notes: Vec<String>,
}

impl Runs<'_> {
    fn of(&self, arm: Arm) -> impl Iterator<Item = &&FinishedRun> {
        self.usable.iter().filter(move |r| Arm::of(r) == arm)
    }

    /// The finite values of `key` over the arm's usable runs.
    fn values(&self, arm: Arm, key: &str) -> Vec<f64> {
        self.of(arm)
            .map(|r| r.value(key))
            .filter(|v| v.is_finite())
            .collect()
    }

    fn diverged(&self, arm: Arm, k: usize) -> Vec<String> {
        self.of(arm)
            .filter(|r| r.value(&format!("diverged.k{k}")) > 0.0)
            .map(|r| r.label())
            .collect()
    }
}

fn fmt(xs: &[f64]) -> String {
    if xs.is_empty() {
        return "n/a".into();
    }
    let (m, se) = mean_se(xs);
    if se.is_finite() {
        format!("{m:.2} +- {se:.2}")
    } else {
        format!("{m:.2}")
    }
}

fn mean(xs: &[f64]) -> f64 {
    mean_se(xs).0
}

/// The budgets any run measured, ascending.
fn sweep(runs: &[FinishedRun]) -> Vec<usize> {
    let mut ks: Vec<usize> = runs
        .iter()
        .flat_map(|r| r.final_values.keys())
        .filter_map(|k| k.strip_prefix("ms_per_image.k"))
        .filter_map(|k| k.parse().ok())
        .collect();
    ks.sort_unstable();
    ks.dedup();
    ks
}

/// Finishes `c`, INCONCLUSIVE when something it needed was missing and nothing failed.
fn finish(c: CheckBuilder, incomplete: bool) -> crate::verdict::Check {
    let mut c = c.finish();
    if incomplete && c.outcome == Outcome::Holds {
        c.outcome = Outcome::Inconclusive;
    }
    c
}

pub fn compute(claim: &str, preset_id: &str, runs: &[FinishedRun]) -> Verdict {
    let mut notes = Vec::new();
    let usable = runs
        .iter()
        .filter(|r| match unusable(r) {
            Some(why) => {
                notes.push(why);
                false
            }
            None => true,
        })
        .collect();
    let rs = Runs { usable, notes };
    let ks = sweep(runs);
    let psnr_key = |t: usize, k: usize| format!("psnr.{}.k{k}", TASK_KEYS[t]);
    let mut checks = Vec::new();

    // 1. Many-step regime.
    let mut c = CheckBuilder::new(
        "1",
        Quantifier::Every,
        "many-step regime (K >= 250): mean PSNR of RED-diff >= mean PSNR of DPS + 0.5 dB on \
         every task",
        "on some task and K >= 250, RED-diff's mean PSNR is below DPS's + 0.5 dB",
    );
    for n in &rs.notes {
        c.note(n.clone());
    }
    let mut incomplete = false;
    let many: Vec<usize> = ks.iter().copied().filter(|&k| k >= 250).collect();
    if many.is_empty() {
        c.note("no budget K >= 250 in the sweep");
    }
    for &k in &many {
        for arm in [Arm::RedDiff, Arm::Dps] {
            let d = rs.diverged(arm, k);
            if !d.is_empty() {
                incomplete = true;
                c.note(format!("K {k}: {} diverged: {}", arm.name(), d.join(", ")));
            }
        }
        for (t, task) in TASKS.iter().enumerate() {
            let r = rs.values(Arm::RedDiff, &psnr_key(t, k));
            let d = rs.values(Arm::Dps, &psnr_key(t, k));
            if r.is_empty() || d.is_empty() {
                incomplete = true;
                c.note(format!("{task}, K {k}: no usable reddiff or dps run"));
                continue;
            }
            let gap = mean(&r) - mean(&d);
            c.case(
                gap >= 0.5,
                format!(
                    "{task}, K {k}: RED-diff {} dB vs DPS {} dB (gap {gap:+.2} dB, needs +0.5)",
                    fmt(&r),
                    fmt(&d)
                ),
            );
            c.number(format!("gap.{}.k{k}", TASK_KEYS[t]), gap);
        }
    }
    checks.push(finish(c, incomplete));

    // 2. Cheaper per step.
    let mut c = CheckBuilder::new(
        "2",
        Quantifier::Every,
        "cheaper per step: time per restored image of RED-diff / DPS <= 0.8 at every K",
        "at some K, RED-diff takes more than 0.8 of DPS's time per image",
    );
    for &k in &ks {
        let key = format!("ms_per_image.k{k}");
        let (r, d) = (rs.values(Arm::RedDiff, &key), rs.values(Arm::Dps, &key));
        if r.is_empty() || d.is_empty() || mean(&d) <= 0.0 {
            c.note(format!("K {k}: no timed reddiff or dps run"));
            continue;
        }
        let ratio = mean(&r) / mean(&d);
        c.case(
            ratio <= 0.8,
            format!(
                "K {k}: {} ms vs {} ms per image, ratio {ratio:.2}",
                fmt3(&r),
                fmt3(&d)
            ),
        );
        c.number(format!("time_ratio.k{k}"), ratio);
    }
    checks.push(c.finish());

    // 3. The prior helps.
    let mut c = CheckBuilder::new(
        "3",
        Quantifier::Every,
        "the prior helps: at the largest K, mean PSNR of RED-diff >= RED-diff with lambda 0 + \
         1 dB on every task",
        "on some task RED-diff gains less than 1 dB over its lambda-0 (least-squares) twin",
    );
    let mut incomplete = false;
    if let Some(&k) = ks.last() {
        let d = rs.diverged(Arm::RedDiff, k);
        if !d.is_empty() {
            incomplete = true;
            c.note(format!("K {k}: reddiff diverged: {}", d.join(", ")));
        }
        for (t, task) in TASKS.iter().enumerate() {
            let r = rs.values(Arm::RedDiff, &psnr_key(t, k));
            let z = rs.values(Arm::Lambda0, &psnr_key(t, k));
            if r.is_empty() || z.is_empty() {
                incomplete = true;
                c.note(format!(
                    "{task}, K {k}: no usable reddiff or reddiff-lambda0 run"
                ));
                continue;
            }
            let gain = mean(&r) - mean(&z);
            c.case(
                gain >= 1.0,
                format!(
                    "{task}, K {k}: RED-diff {} dB vs lambda 0 {} dB (gain {gain:+.2} dB, needs +1)",
                    fmt(&r),
                    fmt(&z)
                ),
            );
            c.number(format!("prior_gain.{}.k{k}", TASK_KEYS[t]), gain);
        }
    }
    checks.push(finish(c, incomplete));

    // 4. The whole sweep (reported).
    let mut c = CheckBuilder::new(
        "4",
        Quantifier::Every,
        "reported: the K sweep (PSNR dB per task and method, mean +- se over seeds), the \
         crossover K from which RED-diff stays ahead of DPS, classifier accuracy, diversity, \
         measurement error and RED-diff's step size",
        "reported only",
    )
    .informational();
    let pinv: Vec<Vec<f64>> = (0..3)
        .map(|t| rs.values(Arm::Pinv, &format!("psnr_pinv.{}", TASK_KEYS[t])))
        .collect();
    for (t, task) in TASKS.iter().enumerate() {
        let mut ahead = Vec::new();
        for &k in &ks {
            let key = psnr_key(t, k);
            let (r, d, z) = (
                rs.values(Arm::RedDiff, &key),
                rs.values(Arm::Dps, &key),
                rs.values(Arm::Lambda0, &key),
            );
            let dv = |arm: Arm| {
                if rs.diverged(arm, k).is_empty() {
                    ""
                } else {
                    " (diverged on some seed)"
                }
            };
            c.note(format!(
                "{task}, K {k}: reddiff {}{} | dps {}{} | lambda0 {} | pinv {}",
                fmt(&r),
                dv(Arm::RedDiff),
                fmt(&d),
                dv(Arm::Dps),
                fmt(&z),
                fmt(&pinv[t])
            ));
            if !r.is_empty() && !d.is_empty() {
                ahead.push((k, mean(&r) > mean(&d)));
                c.number(format!("reddiff.{}.k{k}", TASK_KEYS[t]), mean(&r));
                c.number(format!("dps.{}.k{k}", TASK_KEYS[t]), mean(&d));
            }
        }
        // The smallest K from which RED-diff stays ahead.
        let mut cross = None;
        for i in (0..ahead.len()).rev() {
            if ahead[i].1 {
                cross = Some(ahead[i].0);
            } else {
                break;
            }
        }
        c.note(format!(
            "{task}: crossover K {}",
            cross.map_or("none".to_string(), |k| k.to_string())
        ));
        c.number(
            format!("crossover.{}", TASK_KEYS[t]),
            cross.map_or(-1.0, |k| k as f64),
        );
    }
    for &k in &ks {
        let v = |arm: Arm, m: &str| fmt3(&rs.values(arm, &format!("{m}.k{k}")));
        c.note(format!(
            "K {k}: classifier accuracy reddiff {} / dps {} / lambda0 {}; diversity reddiff {} / \
             dps {}; meas_err reddiff {} / dps {}; RED-diff lr {}",
            v(Arm::RedDiff, "clf_acc"),
            v(Arm::Dps, "clf_acc"),
            v(Arm::Lambda0, "clf_acc"),
            v(Arm::RedDiff, "diversity"),
            v(Arm::Dps, "diversity"),
            v(Arm::RedDiff, "meas_err"),
            v(Arm::Dps, "meas_err"),
            v(Arm::RedDiff, "lr"),
        ));
    }
    c.note(format!("{} budgets reported", ks.len()));
    checks.push(c.finish());
    Verdict {
        preset: preset_id.to_string(),
        claim: claim.to_string(),
        checks,
    }
}

fn fmt3(xs: &[f64]) -> String {
    if xs.is_empty() {
        return "n/a".into();
    }
    let (m, se) = mean_se(xs);
    if se.is_finite() {
        format!("{m:.3} +- {se:.3}")
    } else {
        format!("{m:.3}")
    }
}

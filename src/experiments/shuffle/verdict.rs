//! The layer-wise shuffle verdict, from the runs' final values (means over seeds with their
//! standard errors, and paired per-seed differences: `none` and `slws` arms share the split,
//! the initialization, the batches and the shifts of a seed). Arms are found by their names in
//! the preset, `{size}-{aug-}{none|slws}`.
//!
//! On the augmented pairs (the claim regime):
//! 1. (claim: the regularizer acts) large: gap(slws) < gap(none) and train_loss(slws) >
//!    train_loss(none).
//! 2. (claim: better accuracy) large: test_acc(slws) >= test_acc(none) + 0.005.
//! 3. (claim: larger models benefit more) the paired test-accuracy gain of large > small's.
//! 4. (reported) the same on the plain pairs with the baselines' training accuracy, the depth
//!    trend of the gains (small, large, xl), the p_max 0.2 and constant-allocation arms, and
//!    the evaluation time of every arm.
//!
//! A missing arm or a run that learned nothing (test accuracy below [`LEARNED`]) makes a check
//! INCONCLUSIVE.

use crate::experiments::FinishedRun;
use crate::verdict::{
    fmt_mean_se, mean_se, paired_by_seed, runs_mean_se, Check, CheckBuilder, Outcome, Quantifier,
    Verdict,
};

/// Test accuracy below which a run learned nothing (chance is 0.1).
pub const LEARNED: f64 = 0.3;

/// The usable runs of arm `arm`, with notes on the ones left out.
fn arm<'a>(runs: &'a [FinishedRun], arm: &str, notes: &mut Vec<String>) -> Vec<&'a FinishedRun> {
    crate::verdict::usable(
        runs.iter().filter(|r| r.arm == arm),
        "test_acc",
        "test accuracy",
        LEARNED,
        notes,
    )
}

fn seeds_line(d: &[(u64, f64)]) -> String {
    d.iter()
        .map(|(s, x)| format!("s{s} {x:+.4}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One pair `{size}-{aug}slws` vs `{size}-{aug}none`.
struct Pair<'a> {
    label: String,
    slws: Vec<&'a FinishedRun>,
    none: Vec<&'a FinishedRun>,
}

impl<'a> Pair<'a> {
    fn of(runs: &'a [FinishedRun], subject: &str, base: &str, notes: &mut Vec<String>) -> Pair<'a> {
        Pair {
            label: subject.to_string(),
            slws: arm(runs, subject, notes),
            none: arm(runs, base, notes),
        }
    }

    /// The pair `{size}-{aug}slws` vs `{size}-{aug}none`.
    fn sized(runs: &'a [FinishedRun], size: &str, aug: &str, notes: &mut Vec<String>) -> Pair<'a> {
        Pair::of(
            runs,
            &format!("{size}-{aug}slws"),
            &format!("{size}-{aug}none"),
            notes,
        )
    }

    fn present(&self) -> bool {
        !self.slws.is_empty() && !self.none.is_empty() && !self.diff("test_acc").is_empty()
    }

    fn diff(&self, key: &str) -> Vec<(u64, f64)> {
        paired_by_seed(&self.slws, &self.none, key)
    }

    fn gain(&self, key: &str) -> (f64, f64) {
        let d: Vec<f64> = self.diff(key).iter().map(|x| x.1).collect();
        mean_se(&d)
    }

    /// A line with both arms' means and the paired difference of `key`.
    fn line(&self, key: &str) -> String {
        format!(
            "{key}: {} {} vs none {} (n = {} / {}); paired slws - none {} ({})",
            self.label,
            fmt_mean_se(runs_mean_se(&self.slws, key)),
            fmt_mean_se(runs_mean_se(&self.none, key)),
            self.slws.len(),
            self.none.len(),
            fmt_mean_se(self.gain(key)),
            seeds_line(&self.diff(key))
        )
    }
}

fn missing(c: &mut CheckBuilder, pairs: &[&Pair]) -> bool {
    let mut any = false;
    for p in pairs {
        if !p.present() {
            c.note(format!(
                "{}: the pair has no usable runs on both sides: not compared",
                p.label
            ));
            any = true;
        }
    }
    any
}

fn finish(c: CheckBuilder, notes: Vec<String>, inconclusive: bool) -> Check {
    let mut c = c;
    let mut notes = notes;
    notes.sort();
    notes.dedup();
    for n in notes {
        c.note(n);
    }
    let mut check = c.finish();
    if inconclusive {
        check.outcome = Outcome::Inconclusive;
    }
    check
}

/// "plain" or "augmented" for `aug` "" or "aug-".
fn regime(aug: &str) -> &'static str {
    if aug.is_empty() {
        "plain"
    } else {
        "augmented"
    }
}

/// A check of claim (`informational` false) or one reported beside it.
fn builder(id: &str, informational: bool, statement: String, fails_when: &str) -> CheckBuilder {
    let c = CheckBuilder::new(id, Quantifier::Every, statement, fails_when);
    if informational {
        c.informational()
    } else {
        c
    }
}

/// Checks 1 and 2 on one pair (`aug`: "aug-" or "").
fn act_check(id: &str, runs: &[FinishedRun], aug: &str, informational: bool) -> Check {
    let mut notes = Vec::new();
    let large = Pair::sized(runs, "large", aug, &mut notes);
    let regime = regime(aug);
    let mut c = builder(
        id,
        informational,
        format!(
            "({regime}) the regularizer acts on the large model: gap(slws) < gap(none) and \
             training loss (train mode) of slws > none, means over seeds"
        ),
        "either comparison goes the other way (or is equal)",
    );
    let gone = missing(&mut c, &[&large]);
    if !gone {
        let (g, l) = (large.gain("gap"), large.gain("train_loss"));
        c.case(g.0 < 0.0, large.line("gap"));
        c.case(l.0 > 0.0, large.line("train_loss"));
        c.note(format!(
            "baseline large-{aug}none final training accuracy {}",
            fmt_mean_se(runs_mean_se(&large.none, "train_acc"))
        ));
        c.number("large.gap_change", g.0);
        c.number("large.train_loss_change", l.0);
    }
    finish(c, notes, gone)
}

fn accuracy_check(id: &str, runs: &[FinishedRun], aug: &str, informational: bool) -> Check {
    let mut notes = Vec::new();
    let large = Pair::sized(runs, "large", aug, &mut notes);
    let regime = regime(aug);
    let mut c = builder(
        id,
        informational,
        format!("({regime}) better accuracy: large test_acc(slws) >= test_acc(none) + 0.005"),
        "the paired gain is below half a point",
    );
    let gone = missing(&mut c, &[&large]);
    if !gone {
        let g = large.gain("test_acc");
        c.case(g.0 >= 0.005, large.line("test_acc"));
        c.number("large.gain", g.0);
    }
    finish(c, notes, gone)
}

fn scaling_check(id: &str, runs: &[FinishedRun], aug: &str, informational: bool) -> Check {
    let mut notes = Vec::new();
    let small = Pair::sized(runs, "small", aug, &mut notes);
    let large = Pair::sized(runs, "large", aug, &mut notes);
    let regime = regime(aug);
    let mut c = builder(
        id,
        informational,
        format!("({regime}) larger models benefit more: the test-accuracy gain of large > small's"),
        "the large model's gain is at most the small one's",
    );
    let gone = missing(&mut c, &[&small, &large]);
    if !gone {
        let (gs, gl) = (small.gain("test_acc"), large.gain("test_acc"));
        c.case(
            gl.0 > gs.0,
            format!(
                "test accuracy gain: large {} vs small {}; {}; {}",
                fmt_mean_se(gl),
                fmt_mean_se(gs),
                large.line("test_acc"),
                small.line("test_acc")
            ),
        );
        c.number("large.gain", gl.0);
        c.number("small.gain", gs.0);
    }
    finish(c, notes, gone)
}

pub fn compute(claim: &str, preset_id: &str, runs: &[FinishedRun]) -> Verdict {
    let mut checks = vec![
        act_check("1", runs, "aug-", false),
        accuracy_check("2", runs, "aug-", false),
        scaling_check("3", runs, "aug-", false),
    ];
    // 4. Reported: the plain pairs, the depth trend, the ablations, evaluation time.
    let mut notes = Vec::new();
    let mut c = CheckBuilder::new(
        "4",
        Quantifier::Every,
        "reported: checks 1-3 on the plain pairs (a baseline at 100% training accuracy \
         memorizes), the depth trend of the gain, p_max 0.2 and constant allocation against \
         large-aug-slws, and evaluation time per arm (the shuffle costs nothing at inference)",
        "reported only",
    )
    .informational();
    for aug in ["aug-", ""] {
        let mut trend = Vec::new();
        for size in ["small", "large", "xl"] {
            let p = Pair::sized(runs, size, aug, &mut notes);
            if !p.present() {
                continue;
            }
            let g = p.gain("test_acc");
            trend.push(format!("{size} {}", fmt_mean_se(g)));
            c.note(format!(
                "{}; {}; baseline train_acc {}",
                p.line("test_acc"),
                p.line("gap"),
                fmt_mean_se(runs_mean_se(&p.none, "train_acc"))
            ));
            c.number(format!("{size}-{aug}gain"), g.0);
            c.number(
                format!("{size}-{aug}none.train_acc"),
                runs_mean_se(&p.none, "train_acc").0,
            );
        }
        if !trend.is_empty() {
            c.note(format!(
                "depth trend ({}): test-accuracy gain of slws by size: {}",
                if aug.is_empty() { "plain" } else { "augmented" },
                trend.join(", ")
            ));
        }
    }
    for variant in ["large-aug-slws-p0.2", "large-aug-const"] {
        let p = Pair::of(runs, variant, "large-aug-none", &mut notes);
        let main = arm(runs, "large-aug-slws", &mut notes);
        if p.present() && !main.is_empty() {
            c.note(format!(
                "{}; large-aug-slws {}",
                p.line("test_acc"),
                fmt_mean_se(runs_mean_se(&main, "test_acc"))
            ));
            c.number(format!("{variant}.gain"), p.gain("test_acc").0);
        }
    }
    let mut arms: Vec<&str> = runs.iter().map(|r| r.arm.as_str()).collect();
    arms.sort();
    arms.dedup();
    let evals: Vec<String> = arms
        .iter()
        .map(|a| {
            let rs = arm(runs, a, &mut notes);
            format!("{a} {:.1}", runs_mean_se(&rs, "eval_ms").0)
        })
        .collect();
    c.note(format!("evaluation ms (all digits): {}", evals.join(", ")));
    for (size, base) in [
        ("small", "small-aug"),
        ("large", "large-aug"),
        ("xl", "xl-aug"),
    ] {
        let (s, n) = (
            arm(runs, &format!("{base}-slws"), &mut notes),
            arm(runs, &format!("{base}-none"), &mut notes),
        );
        if !s.is_empty() && !n.is_empty() {
            let r = runs_mean_se(&s, "eval_ms").0 / runs_mean_se(&n, "eval_ms").0;
            c.note(format!(
                "{size}: eval time slws / none {r:.3} (equal within 5%: {})",
                (r - 1.0).abs() <= 0.05
            ));
            c.number(format!("{size}.eval_ratio"), r);
        }
    }
    checks.push(finish(c, notes, false));
    for (id, f) in [
        (
            "5",
            act_check as fn(&str, &[FinishedRun], &str, bool) -> Check,
        ),
        ("6", accuracy_check),
        ("7", scaling_check),
    ] {
        let mut ch = f(id, runs, "", true);
        ch.statement = format!("reported: {}", ch.statement);
        checks.push(ch);
    }
    Verdict {
        preset: preset_id.to_string(),
        claim: claim.to_string(),
        checks,
    }
}

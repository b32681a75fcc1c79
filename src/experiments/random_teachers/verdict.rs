//! The random-teachers verdict, from each run's final probes against its own teacher's (the
//! same seeded teacher; means with standard errors over seeds):
//!
//! 1. (claim 1) distilling on the digits (student an exact copy of the teacher):
//!    `mean(probe_linear - probe_linear_teacher) >= 0.02` and positive on every seed.
//! 2. (claim 2, data dependence) the mean gain on the digits is at least 1.5 x the mean gain
//!    on noise inputs (INCONCLUSIVE without noise runs; FAILS when the digits gain is not
//!    positive).
//! 3. (reported) k-NN and 5-shot gains, the locality arm (independent student init), the
//!    no-batch-norm arm.
//!
//! A student whose final linear probe is below [`LEARNED`] learned nothing and is left out.

use crate::experiments::FinishedRun;
use crate::verdict::{mean_se, CheckBuilder, Quantifier, Verdict};

/// Below this final linear-probe accuracy a run learned nothing (chance is 0.1).
pub const LEARNED: f64 = 0.5;
/// Check 1: the smallest mean gain over the teacher.
pub const MIN_GAIN: f64 = 0.02;
/// Check 2: the digits gain must be at least this times the noise gain.
pub const DATA_RATIO: f64 = 1.5;

fn text<'a>(r: &'a FinishedRun, k: &str) -> &'a str {
    r.params.text(k)
}

fn gain(r: &FinishedRun, probe: &str) -> f64 {
    r.value(probe) - r.value(&format!("{probe}_teacher"))
}

fn stat(xs: &[f64]) -> String {
    let (m, se) = mean_se(xs);
    if se.is_nan() {
        format!("{m:+.4}")
    } else {
        format!("{m:+.4} +- {se:.4}")
    }
}

/// The usable distillation runs of one kind, and the reasons others were left out.
fn select<'a>(
    runs: &'a [FinishedRun],
    inputs: &str,
    init: &str,
    perturbed: bool,
    left_out: &mut Vec<String>,
) -> Vec<&'a FinishedRun> {
    runs.iter()
        .filter(|r| {
            text(r, "method") == "distill"
                && text(r, "inputs") == inputs
                && text(r, "student_init") == init
                && (r.params.f64("student_eps") > 0.0) == perturbed
        })
        .filter(|r| {
            if !r.completed() {
                left_out.push(format!("{}: {}, left out", r.label(), r.status.describe()));
                return false;
            }
            let p = r.value("probe_linear");
            if p.is_nan() || p < LEARNED {
                left_out.push(format!(
                    "{}: final linear probe {p:.3} < {LEARNED}: learned nothing, left out",
                    r.label()
                ));
                return false;
            }
            true
        })
        .collect()
}

pub fn compute(claim: &str, preset_id: &str, runs: &[FinishedRun]) -> Verdict {
    let mut left_out = Vec::new();
    // The method: the student an exact copy of the teacher (batch norm as the arm sets it).
    let digits = select(runs, "digits", "teacher", false, &mut left_out);
    let noise = select(runs, "noise", "teacher", false, &mut left_out);
    let random = select(runs, "digits", "random", false, &mut left_out);
    let nobn = select(runs, "digits", "teacher", true, &mut left_out);
    let gains = |rs: &[&FinishedRun], probe: &str| -> Vec<f64> {
        rs.iter().map(|r| gain(r, probe)).collect()
    };
    let mut checks = Vec::new();

    // 1. The student beats its random teacher.
    let mut c1 = CheckBuilder::new(
        "1",
        Quantifier::Every,
        format!(
            "distilled on the digits, the student's linear probe beats its random teacher's by \
             at least {MIN_GAIN} on average and on every seed (toy scale: the paper's gain is \
             tens of points on CIFAR; a random MLP's digits embedding leaves little headroom)"
        ),
        "the mean gain is below the threshold, or some seed's student is not above its teacher",
    );
    for why in &left_out {
        c1.note(why.clone());
    }
    let g_digits = gains(&digits, "probe_linear");
    if !digits.is_empty() {
        for r in &digits {
            c1.note(format!(
                "seed {}: student {:.4} vs teacher {:.4} ({:+.4})",
                r.seed,
                r.value("probe_linear"),
                r.value("probe_linear_teacher"),
                gain(r, "probe_linear")
            ));
        }
        let (m, _) = mean_se(&g_digits);
        let every = g_digits.iter().all(|g| *g > 0.0);
        c1.case(
            m >= MIN_GAIN && every,
            format!(
                "gain {} over {} seeds (>= {MIN_GAIN}: {}); positive on every seed: {every}",
                stat(&g_digits),
                digits.len(),
                m >= MIN_GAIN
            ),
        );
        c1.number("gain.digits", m);
        c1.number(
            "student.digits",
            mean_se(
                &digits
                    .iter()
                    .map(|r| r.value("probe_linear"))
                    .collect::<Vec<_>>(),
            )
            .0,
        );
        c1.number(
            "teacher.digits",
            mean_se(
                &digits
                    .iter()
                    .map(|r| r.value("probe_linear_teacher"))
                    .collect::<Vec<_>>(),
            )
            .0,
        );
    }
    checks.push(c1.finish());

    // 2. The gain depends on the data.
    let mut c2 = CheckBuilder::new(
        "2",
        Quantifier::Every,
        format!(
            "the gain depends on the data: the mean gain distilling on the digits is at least \
             {DATA_RATIO} x the mean gain distilling on Gaussian noise inputs"
        ),
        "the digits gain is not positive or is below the ratio times the noise gain",
    );
    let g_noise = gains(&noise, "probe_linear");
    if !digits.is_empty() && !noise.is_empty() {
        let (gd, gn) = (mean_se(&g_digits).0, mean_se(&g_noise).0);
        let held = gd > 0.0 && gd >= DATA_RATIO * gn;
        c2.case(
            held,
            format!(
                "gain on digits {} vs on noise {} ({} seeds): {held}",
                stat(&g_digits),
                stat(&g_noise),
                noise.len()
            ),
        );
        c2.number("gain.noise", gn);
    }
    checks.push(c2.finish());

    // 3. Reported.
    let mut c3 = CheckBuilder::new(
        "3",
        Quantifier::Every,
        "reported: k-NN and 5-shot gains on the digits, the gain with an independently \
         initialized student (locality) and without batch norm (student = perturbed teacher)",
        "the digits student's k-NN or 5-shot probe is not above the teacher's",
    )
    .informational();
    if !digits.is_empty() {
        let (k, f) = (gains(&digits, "probe_knn"), gains(&digits, "probe_5shot"));
        c3.case(
            mean_se(&k).0 > 0.0 && mean_se(&f).0 > 0.0,
            format!("digits: 20-NN gain {}, 5-shot gain {}", stat(&k), stat(&f)),
        );
        c3.number("gain_knn.digits", mean_se(&k).0);
        c3.number("gain_5shot.digits", mean_se(&f).0);
    }
    for (name, rs) in [
        ("independent student init", &random),
        ("no batch norm, perturbed student", &nobn),
    ] {
        if !rs.is_empty() {
            let g = gains(rs, "probe_linear");
            c3.note(format!(
                "{name}: linear gain {}, 20-NN gain {} ({} seeds)",
                stat(&g),
                stat(&gains(rs, "probe_knn")),
                rs.len()
            ));
        }
    }
    checks.push(c3.finish());
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
    use crate::verdict::Outcome;

    fn run(inputs: &str, seed: u64, student: f64, teacher: f64) -> FinishedRun {
        let mut params = Params::defaults(&super::super::RandomTeachers.params());
        params.set("inputs", ParamValue::Text(inputs.into()));
        FinishedRun {
            arm: format!("distill-{inputs}"),
            seed,
            params,
            status: RunStatus::Completed { steps: 10 },
            final_values: [
                ("probe_linear", student),
                ("probe_linear_teacher", teacher),
                ("probe_knn", student),
                ("probe_knn_teacher", teacher),
                ("probe_5shot", student),
                ("probe_5shot_teacher", teacher),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        }
    }

    #[test]
    fn holds_fails_and_leaves_out_runs_that_learned_nothing() {
        let good = [
            run("digits", 0, 0.95, 0.90),
            run("digits", 1, 0.94, 0.91),
            run("noise", 0, 0.91, 0.90),
        ];
        assert_eq!(compute("c", "p", &good).outcome(), Outcome::Holds);
        let one_seed_below = [
            run("digits", 0, 0.99, 0.90),
            run("digits", 1, 0.90, 0.91),
            run("noise", 0, 0.91, 0.90),
        ];
        assert_eq!(
            compute("c", "p", &one_seed_below)
                .check("1")
                .unwrap()
                .outcome,
            Outcome::Fails
        );
        let noise_as_good = [run("digits", 0, 0.95, 0.90), run("noise", 0, 0.95, 0.90)];
        let v = compute("c", "p", &noise_as_good);
        assert_eq!(v.check("2").unwrap().outcome, Outcome::Fails);
        let nothing = [run("digits", 0, 0.2, 0.9), run("noise", 0, 0.95, 0.90)];
        let v = compute("c", "p", &nothing);
        assert_eq!(v.check("1").unwrap().outcome, Outcome::Inconclusive);
        assert_eq!(v.outcome(), Outcome::Inconclusive);
    }
}

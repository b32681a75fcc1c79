//! The vSAE paper's verdict, per data source, from held-out measurements on the deterministic
//! encodings (the vSAE's means): against the TopK SAE of the same seed, (i) every vSAE run with
//! a KL term has a larger dead-latent fraction and (ii) a higher MSE; (iii) the KL term is the
//! cause: every such run has more dead latents than the vSAE of the same seed without the KL
//! term (KL weight 0). Reported beside them: the vSAE with a small initial variance against the
//! default one (does the sampling noise kill latents?).
//!
//! A run whose held-out fraction of variance unexplained is at least [`FVU_LEARNED`] has not
//! learned a representation: a comparison involving it is left out, so a check with nothing
//! else to compare is INCONCLUSIVE, not HOLDS.

use crate::experiments::FinishedRun;
use crate::verdict::{CheckBuilder, Quantifier, Verdict};

/// A run with a held-out FVU at or above this has not learned a representation.
pub const FVU_LEARNED: f64 = 0.95;

fn kl_weight(r: &FinishedRun) -> f64 {
    r.params.f64("kl_weight")
}

fn is_vsae(r: &FinishedRun) -> bool {
    r.params.text("variant") == "vsae"
}

/// Why a run cannot enter a comparison, if it cannot.
fn unusable(r: &FinishedRun) -> Option<String> {
    if !r.completed() {
        return Some(format!("{}: {}, left out", r.label(), r.status.describe()));
    }
    let fvu = r.value("fvu");
    (fvu.is_nan() || fvu >= FVU_LEARNED).then(|| {
        format!(
            "{}: held-out FVU {fvu:.3} >= {FVU_LEARNED}: learned no representation, left out",
            r.label()
        )
    })
}

/// Adds one case per run selected by `subject`: compared on `key` with the run of the same
/// seed and data selected by `base`, in the direction `larger` (the subject's value above).
fn compare(
    c: &mut CheckBuilder,
    runs: &[&FinishedRun],
    subject: &dyn Fn(&FinishedRun) -> bool,
    base: &dyn Fn(&FinishedRun, &FinishedRun) -> bool,
    base_name: &str,
    key: &str,
) {
    for r in runs.iter().filter(|r| subject(r)) {
        let Some(b) = runs.iter().find(|b| b.seed == r.seed && base(r, b)) else {
            c.note(format!("{}: no {base_name} run with its seed", r.label()));
            continue;
        };
        if let Some(why) = unusable(r).or_else(|| unusable(b)) {
            c.note(why);
            continue;
        }
        let (x, y) = (r.value(key), b.value(key));
        let sign = if x > y {
            ">"
        } else if x < y {
            "<"
        } else {
            "="
        };
        c.case(
            x > y,
            format!(
                "{}: {key} {x:.4} {sign} {base_name}'s {y:.4} ({}; held-out FVU {:.3} vs {:.3}, \
                 L0 {:.2} vs {:.2})",
                r.label(),
                b.arm,
                r.value("fvu"),
                b.value("fvu"),
                r.value("l0_eval"),
                b.value("l0_eval")
            ),
        );
        c.number(format!("{}.s{}.{key}", r.arm, r.seed), x);
        c.number(format!("{}.s{}.{key}", b.arm, b.seed), y);
    }
}

pub fn compute(claim: &str, preset_id: &str, runs: &[FinishedRun]) -> Verdict {
    let mut sources: Vec<String> = runs
        .iter()
        .map(|r| r.params.text("data").to_string())
        .collect();
    sources.sort();
    sources.dedup();
    let mut checks = Vec::new();
    let default_init = |r: &FinishedRun| r.params.f64("log_var_init");
    for source in &sources {
        let of: Vec<&FinishedRun> = runs
            .iter()
            .filter(|r| r.params.text("data") == source)
            .collect();
        let id = |base: &str| {
            if sources.len() > 1 {
                format!("{base}, {source}")
            } else {
                base.to_string()
            }
        };
        // The vSAE runs the claim is about: a KL term, the default initial variance.
        let with_kl =
            |r: &FinishedRun| is_vsae(r) && kl_weight(r) > 0.0 && default_init(r) >= -2.0 - 1e-9;
        let topk = |_: &FinishedRun, b: &FinishedRun| b.params.text("variant") == "topk";
        for (cid, key, what) in [
            ("i", "dead_eval", "a larger dead-latent fraction"),
            ("ii", "mse", "a higher MSE"),
        ] {
            let mut c = CheckBuilder::new(
                id(cid),
                Quantifier::Every,
                format!(
                    "every vSAE run with a KL term has {what} than the TopK SAE of its seed \
                     (held-out, deterministic encodings); {source} data"
                ),
                format!("a vSAE run with a KL term has at most the TopK run's {key}"),
            );
            compare(&mut c, &of, &with_kl, &topk, "TopK", key);
            checks.push(c.finish());
        }
        if of.iter().any(|r| is_vsae(r) && kl_weight(r) == 0.0) {
            let mut c = CheckBuilder::new(
                id("iii"),
                Quantifier::Every,
                format!(
                    "the KL term is the cause: every vSAE run with a KL term has more dead \
                     latents than the same vSAE without it (KL weight 0); {source} data"
                ),
                "a vSAE run with a KL term has at most the dead fraction of its KL-free twin",
            );
            let twin = |r: &FinishedRun, b: &FinishedRun| {
                is_vsae(b)
                    && kl_weight(b) == 0.0
                    && b.params.text("variance") == r.params.text("variance")
                    && b.params.f64("log_var_init") == r.params.f64("log_var_init")
            };
            compare(&mut c, &of, &with_kl, &twin, "KL-free vSAE", "dead_eval");
            checks.push(c.finish());
        }
        if of
            .iter()
            .any(|r| is_vsae(r) && default_init(r) < -2.0 - 1e-9)
        {
            let mut c = CheckBuilder::new(
                id("iv"),
                Quantifier::Every,
                format!(
                    "reported: the vSAE with its default initial variance (log-variance -2) has \
                     more dead latents than with a small one; {source} data"
                ),
                "the default-variance vSAE has at most the small-variance one's dead fraction",
            )
            .informational();
            let small = |r: &FinishedRun, b: &FinishedRun| {
                is_vsae(b)
                    && default_init(b) < -2.0 - 1e-9
                    && kl_weight(b) == kl_weight(r)
                    && b.params.text("variance") == r.params.text("variance")
            };
            compare(
                &mut c,
                &of,
                &with_kl,
                &small,
                "small-variance vSAE",
                "dead_eval",
            );
            checks.push(c.finish());
        }
    }
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

    fn run(arm: &str, variant: &str, kl: f64, fvu: f64, dead: f64) -> FinishedRun {
        let mut params = Params::defaults(&crate::experiments::sae::VariationalSae.params());
        params.set("variant", ParamValue::Text(variant.into()));
        params.set("kl_weight", ParamValue::Float(kl));
        FinishedRun {
            arm: arm.into(),
            seed: 0,
            params,
            status: RunStatus::Completed { steps: 10 },
            final_values: [
                ("fvu", fvu),
                ("dead_eval", dead),
                ("mse", fvu),
                ("l0_eval", 8.0),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        }
    }

    fn outcome(runs: &[FinishedRun], id: &str) -> Outcome {
        compute("c", "vsae", runs).check(id).unwrap().outcome
    }

    #[test]
    fn a_run_that_learned_nothing_makes_the_comparison_inconclusive() {
        let topk = run("topk", "topk", 1.0, 0.1, 0.05);
        let learned = run("vsae", "vsae", 1.0, 0.5, 0.6);
        let nothing = run("vsae", "vsae", 1.0, 0.97, 0.9);
        assert_eq!(outcome(&[topk.clone(), learned], "i"), Outcome::Holds);
        assert_eq!(
            outcome(&[topk.clone(), nothing], "i"),
            Outcome::Inconclusive
        );
        let fewer_dead = run("vsae", "vsae", 1.0, 0.5, 0.01);
        assert_eq!(outcome(&[topk, fewer_dead], "i"), Outcome::Fails);
    }

    #[test]
    fn the_kl_attribution_compares_with_the_kl_free_twin() {
        let topk = run("topk", "topk", 1.0, 0.1, 0.05);
        let with_kl = run("vsae-kl1", "vsae", 1.0, 0.5, 0.6);
        let fewer = run("vsae-kl0", "vsae", 0.0, 0.3, 0.2);
        let more = run("vsae-kl0", "vsae", 0.0, 0.3, 0.8);
        let runs = [topk.clone(), with_kl.clone(), fewer];
        assert_eq!(outcome(&runs, "iii"), Outcome::Holds);
        let runs = [topk, with_kl, more];
        assert_eq!(outcome(&runs, "iii"), Outcome::Fails);
    }
}

//! The vSAE paper's verdict. For each data source and seed, against the plain TopK SAE:
//! (i) every vSAE run has a larger dead fraction, (ii) every vSAE run has a larger MSE. Dead
//! latents are counted at evaluation, on the deterministic means over held-out tokens (in
//! training, the vSAE's sampling noise can make every latent fire). AuxK's dead fraction is
//! reported against TopK (informational: it is OpenAI's claim, not this paper's).

use crate::experiments::FinishedRun;
use crate::verdict::{CheckBuilder, Quantifier, Verdict};

/// Adds one case per run of `variant`: compared with the TopK run of the same data and seed on
/// `key`, in the direction `holds_if_larger`.
fn compare(
    c: &mut CheckBuilder,
    runs: &[FinishedRun],
    variant: &str,
    key: &str,
    holds_if_larger: bool,
) {
    for r in runs.iter().filter(|r| r.params.text("variant") == variant) {
        let base = runs.iter().find(|b| {
            b.params.text("variant") == "topk"
                && b.seed == r.seed
                && b.params.text("data") == r.params.text("data")
                && b.completed()
        });
        let Some(base) = base else {
            c.note(format!(
                "{}: no completed TopK run with its data and seed",
                r.label()
            ));
            continue;
        };
        if !r.completed() {
            c.note(format!("{}: {}, left out", r.label(), r.status.describe()));
            continue;
        }
        let (a, b) = (r.value(key), base.value(key));
        let ok = if holds_if_larger { a > b } else { a <= b };
        let sign = if a > b {
            ">"
        } else if a < b {
            "<"
        } else {
            "="
        };
        c.case(
            ok,
            format!(
                "{}: {key} {a:.4} {sign} TopK's {b:.4} ({})",
                r.label(),
                base.arm
            ),
        );
        c.number(format!("{}.s{}.{key}", r.arm, r.seed), a);
        c.number(format!("{}.s{}.{key}", base.arm, base.seed), b);
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
    for (id, variant, key, larger, statement, informational) in [
        (
            "i",
            "vsae",
            "dead_eval",
            true,
            "every vSAE run has a larger dead-latent fraction than TopK (counted on the \
             deterministic means over held-out tokens)",
            false,
        ),
        (
            "ii",
            "vsae",
            "mse",
            true,
            "every vSAE run reconstructs worse (higher held-out MSE) than TopK",
            false,
        ),
        (
            "iii",
            "auxk",
            "dead_eval",
            false,
            "TopK + AuxK has at most TopK's dead-latent fraction (held-out means)",
            true,
        ),
    ] {
        // One check per data source, so a claim that holds on one and not the other says so.
        for source in &sources {
            let subset: Vec<FinishedRun> = runs
                .iter()
                .filter(|r| r.params.text("data") == source)
                .cloned()
                .collect();
            if !subset.iter().any(|r| r.params.text("variant") == variant) {
                continue;
            }
            let id = if sources.len() > 1 {
                format!("{id}, {source}")
            } else {
                id.to_string()
            };
            let fails_when = format!(
                "a completed {variant} run's {key} is {} the TopK run's of its seed",
                if larger { "at most" } else { "above" }
            );
            let mut c = CheckBuilder::new(
                id,
                Quantifier::Every,
                format!("{statement}; {source} data"),
                fails_when,
            );
            if informational {
                c = c.informational();
            }
            compare(&mut c, &subset, variant, key, larger);
            checks.push(c.finish());
        }
    }
    Verdict {
        preset: preset_id.to_string(),
        claim: claim.to_string(),
        checks,
    }
}

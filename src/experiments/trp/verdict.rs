//! The trained-rank-pruning verdict, from the runs' final values (means over seeds with their
//! standard errors; paired per seed where a run measured its own twin).
//!
//! The runs that compare are those that trained their plain twin (`posthoc_twins`); the claim is
//! judged on those with the smallest energy threshold `e` (the preset's `trp` arm, e = 0.9):
//!
//! 1. (claim: low rank) mean compression of the decomposable layers at the energy-`e` ranks
//!    (`sum(m n) / sum(k (m + n))`) at least 2x.
//! 2. (claim: no fine-tuning needed) accuracy with both layers truncated at those ranks at least
//!    the plain twin's dense accuracy minus 0.01.
//! 3. (claim: beats post-hoc) truncated accuracy minus the plain twin's accuracy truncated at
//!    the same ranks at least +0.02 on average and positive for every seed.
//!
//! When the runs' ranks are not below their twins' (the same network measured at the same `e`),
//! TRP did nothing to the rank and checks 1-3 are INCONCLUSIVE. Reported: the nuclear-only twin
//! truncated at the same ranks (4), the other energy thresholds (5), the standalone arms and
//! whether the plain twin reproduced the `baseline` arm (6). A run below [`LEARNED`] test
//! accuracy (its own or its twin's) learned nothing and is left out.

use crate::experiments::FinishedRun;
use crate::verdict::{
    fmt_mean_se, mean_se, runs_mean_se, Check, CheckBuilder, Outcome, Quantifier, Verdict,
};

/// Test accuracy below which a run learned nothing (chance is 0.1).
pub const LEARNED: f64 = 0.5;

/// Required mean compression (check 1).
pub const MIN_COMPRESSION: f64 = 2.0;
/// Allowed loss of the truncated network against the dense baseline (check 2).
pub const MAX_LOSS: f64 = 0.01;
/// Required mean advantage over post-hoc truncation (check 3).
pub const MIN_GAIN: f64 = 0.02;

fn has_twin(r: &FinishedRun) -> bool {
    r.params.text("posthoc_twins") != "none"
}

/// Per-seed values of `f`, as "s0 +0.0123, ...".
fn per_seed(runs: &[&FinishedRun], f: impl Fn(&FinishedRun) -> f64) -> String {
    runs.iter()
        .map(|r| format!("s{} {:+.4}", r.seed, f(r)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn rank_sum(r: &FinishedRun) -> f64 {
    r.value("rank_l2") + r.value("rank_l3")
}

fn twin_rank_sum(r: &FinishedRun) -> f64 {
    r.value("twin_rank_l2") + r.value("twin_rank_l3")
}

/// The usable comparing runs at energy `e`, and notes on the ones left out.
fn usable<'a>(runs: &'a [FinishedRun], e: f64, notes: &mut Vec<String>) -> Vec<&'a FinishedRun> {
    let mut out = Vec::new();
    for r in runs
        .iter()
        .filter(|r| has_twin(r) && r.params.f64("trp_energy") == e)
    {
        if !r.completed() {
            notes.push(format!("{}: {}, left out", r.label(), r.status.describe()));
            continue;
        }
        let (acc, twin) = (r.value("test_acc"), r.value("twin_test_acc"));
        if acc.is_nan() || twin.is_nan() || acc < LEARNED || twin < LEARNED {
            notes.push(format!(
                "{}: test accuracy {acc:.3}, plain twin {twin:.3} (< {LEARNED}: learned nothing), \
                 left out",
                r.label()
            ));
            continue;
        }
        out.push(r);
    }
    out
}

/// The energy thresholds of the comparing runs, smallest first.
fn energies(runs: &[FinishedRun]) -> Vec<f64> {
    let mut es: Vec<f64> = runs
        .iter()
        .filter(|r| has_twin(r))
        .map(|r| r.params.f64("trp_energy"))
        .collect();
    es.sort_by(|a, b| a.total_cmp(b));
    es.dedup();
    es
}

/// Checks 1-3 (or, `informational`, check 5's lines) for the runs at one energy.
struct Comparison {
    compression: (f64, f64),
    trunc: (f64, f64),
    twin_dense: (f64, f64),
    posthoc: (f64, f64),
    gain: (f64, f64),
    loss: (f64, f64),
    gain_every_seed: bool,
    ranks_below: bool,
    lines: Vec<String>,
}

fn compare(rs: &[&FinishedRun], e: f64) -> Comparison {
    let gains: Vec<f64> = rs
        .iter()
        .map(|r| r.value("test_acc_trunc") - r.value("posthoc_acc"))
        .collect();
    let losses: Vec<f64> = rs
        .iter()
        .map(|r| r.value("twin_test_acc") - r.value("test_acc_trunc"))
        .collect();
    let ranks = (runs_mean_se(rs, "rank_l2"), runs_mean_se(rs, "rank_l3"));
    let twin_ranks = (
        runs_mean_se(rs, "twin_rank_l2"),
        runs_mean_se(rs, "twin_rank_l3"),
    );
    let below = rs.iter().all(|r| rank_sum(r) < twin_rank_sum(r));
    Comparison {
        compression: runs_mean_se(rs, "compression"),
        trunc: runs_mean_se(rs, "test_acc_trunc"),
        twin_dense: runs_mean_se(rs, "twin_test_acc"),
        posthoc: runs_mean_se(rs, "posthoc_acc"),
        gain: mean_se(&gains),
        loss: mean_se(&losses),
        gain_every_seed: gains.iter().all(|&g| g > 0.0),
        ranks_below: below,
        lines: vec![format!(
            "e = {e}: ranks (layer 2, layer 3) {} / {} against the plain twin's {} / {} (n = {}; \
             per seed, sum of ranks TRP - twin: {})",
            fmt_mean_se(ranks.0),
            fmt_mean_se(ranks.1),
            fmt_mean_se(twin_ranks.0),
            fmt_mean_se(twin_ranks.1),
            rs.len(),
            per_seed(rs, |r| rank_sum(r) - twin_rank_sum(r))
        )],
    }
}

pub fn compute(claim: &str, preset_id: &str, runs: &[FinishedRun]) -> Verdict {
    let mut checks = Vec::new();
    let es = energies(runs);
    let e = es.first().copied();
    let mut notes = Vec::new();
    let rs = e.map(|e| usable(runs, e, &mut notes)).unwrap_or_default();
    let cmp = e.filter(|_| !rs.is_empty()).map(|e| compare(&rs, e));
    let e_text = e
        .map(|e| format!("e = {e}"))
        .unwrap_or_else(|| "no TRP run".into());

    let mut c1 = CheckBuilder::new(
        "1",
        Quantifier::Every,
        format!(
            "low rank: TRP's mean compression of the decomposable layers at its energy ranks \
             ({e_text}) is at least {MIN_COMPRESSION}x (paper: 2.2-3.4x FLOPs on ResNets)"
        ),
        format!("mean compression below {MIN_COMPRESSION}x"),
    );
    let mut c2 = CheckBuilder::new(
        "2",
        Quantifier::Every,
        format!(
            "no fine-tuning needed: TRP truncated at its ranks keeps at least the plain \
             network's dense test accuracy - {MAX_LOSS} ({e_text})"
        ),
        format!("the truncated TRP network loses more than {MAX_LOSS} against the dense baseline"),
    );
    let mut c3 = CheckBuilder::new(
        "3",
        Quantifier::Every,
        format!(
            "beats post-hoc: TRP truncated at its ranks beats the plain network truncated at the \
             same ranks (no fine-tuning) by at least {MIN_GAIN} on average and on every seed \
             ({e_text})"
        ),
        format!("mean advantage below {MIN_GAIN}, or not positive on some seed"),
    );
    if let Some(cmp) = &cmp {
        for l in &cmp.lines {
            c1.note(l.clone());
        }
        c1.case(
            cmp.compression.0 >= MIN_COMPRESSION,
            format!(
                "compression {}x; needs >= {MIN_COMPRESSION}x",
                fmt_mean_se(cmp.compression)
            ),
        );
        c1.number("trp.compression", cmp.compression.0);
        c1.number(
            "trp.rank_sum",
            runs_mean_se(&rs, "rank_l2").0 + runs_mean_se(&rs, "rank_l3").0,
        );
        c1.number(
            "twin.rank_sum",
            runs_mean_se(&rs, "twin_rank_l2").0 + runs_mean_se(&rs, "twin_rank_l3").0,
        );
        c2.case(
            cmp.trunc.0 >= cmp.twin_dense.0 - MAX_LOSS,
            format!(
                "truncated TRP {} vs plain dense {} (n = {}); loss (plain dense - truncated TRP) \
                 {} (seeds: {}); needs <= {MAX_LOSS}",
                fmt_mean_se(cmp.trunc),
                fmt_mean_se(cmp.twin_dense),
                rs.len(),
                fmt_mean_se(cmp.loss),
                per_seed(&rs, |r| r.value("twin_test_acc")
                    - r.value("test_acc_trunc"))
            ),
        );
        c2.note(format!(
            "TRP dense (before truncation): {}",
            fmt_mean_se(runs_mean_se(&rs, "test_acc"))
        ));
        c2.number("trp.test_acc_trunc", cmp.trunc.0);
        c2.number("plain.test_acc", cmp.twin_dense.0);
        c2.number("loss", cmp.loss.0);
        c3.case(
            cmp.gain.0 >= MIN_GAIN && cmp.gain_every_seed,
            format!(
                "truncated TRP {} vs plain truncated at TRP's ranks {} (n = {}); paired advantage \
                 {} (seeds: {}); needs mean >= {MIN_GAIN} and every seed > 0",
                fmt_mean_se(cmp.trunc),
                fmt_mean_se(cmp.posthoc),
                rs.len(),
                fmt_mean_se(cmp.gain),
                per_seed(&rs, |r| r.value("test_acc_trunc") - r.value("posthoc_acc"))
            ),
        );
        c3.number("trp.test_acc_trunc", cmp.trunc.0);
        c3.number("plain.posthoc_acc", cmp.posthoc.0);
        c3.number("advantage", cmp.gain.0);
    }
    notes.sort();
    notes.dedup();
    for n in &notes {
        c1.note(n.clone());
        c3.note(n.clone());
    }
    let mut three = vec![c1.finish(), c2.finish(), c3.finish()];
    if let Some(cmp) = &cmp {
        if !cmp.ranks_below {
            for c in three.iter_mut() {
                c.outcome = Outcome::Inconclusive;
                c.evidence.push(
                    "TRP's ranks are not below its plain twin's on every seed: training did not \
                     lower the rank, so the comparison at TRP's ranks does not test TRP"
                        .into(),
                );
            }
        }
    }
    checks.extend(three);

    // 4. Reported: the nuclear-only twin truncated at TRP's ranks.
    let mut c4 = CheckBuilder::new(
        "4",
        Quantifier::Every,
        format!(
            "reported: the nuclear-norm sub-gradient alone (no projections), truncated at TRP's \
             ranks without fine-tuning ({e_text})"
        ),
        "reported only",
    )
    .informational();
    let nuc: Vec<&FinishedRun> = rs
        .iter()
        .copied()
        .filter(|r| !r.value("nuc_posthoc_acc").is_nan())
        .collect();
    if !nuc.is_empty() {
        let (np, nd) = (
            runs_mean_se(&nuc, "nuc_posthoc_acc"),
            runs_mean_se(&nuc, "nuc_twin_test_acc"),
        );
        let gain: Vec<f64> = nuc
            .iter()
            .map(|r| r.value("test_acc_trunc") - r.value("nuc_posthoc_acc"))
            .collect();
        c4.note(format!(
            "nuclear-only twin: dense {}, truncated at TRP's ranks {}; plain twin truncated {}; \
                 TRP truncated - nuclear-only truncated {} (seeds: {})",
            fmt_mean_se(nd),
            fmt_mean_se(np),
            fmt_mean_se(runs_mean_se(&nuc, "posthoc_acc")),
            fmt_mean_se(mean_se(&gain)),
            per_seed(&nuc, |r| r.value("test_acc_trunc")
                - r.value("nuc_posthoc_acc"))
        ));
        c4.number("nuclear.posthoc_acc", np.0);
        c4.number("nuclear.test_acc", nd.0);
    }
    checks.push(c4.finish());

    // 5. Reported: the other energy thresholds.
    let mut c5 = CheckBuilder::new(
        "5",
        Quantifier::Every,
        "reported: the same comparison at the other energy thresholds (milder compression)",
        "reported only",
    )
    .informational();
    for &e2 in es.iter().skip(1) {
        let mut n2 = Vec::new();
        let r2 = usable(runs, e2, &mut n2);
        for n in n2 {
            c5.note(n);
        }
        if r2.is_empty() {
            continue;
        }
        let c = compare(&r2, e2);
        for l in c.lines {
            c5.note(l);
        }
        c5.note(format!(
            "e = {e2}: compression {}x; truncated TRP {} (dense plain {}); plain truncated at \
                 TRP's ranks {}; advantage {} (seeds: {})",
            fmt_mean_se(c.compression),
            fmt_mean_se(c.trunc),
            fmt_mean_se(c.twin_dense),
            fmt_mean_se(c.posthoc),
            fmt_mean_se(c.gain),
            per_seed(&r2, |r| r.value("test_acc_trunc") - r.value("posthoc_acc"))
        ));
        c5.number(format!("e{e2}.compression"), c.compression.0);
        c5.number(format!("e{e2}.advantage"), c.gain.0);
    }
    checks.push(c5.finish());

    checks.push(standalone(runs, &rs));

    Verdict {
        preset: preset_id.to_string(),
        claim: claim.to_string(),
        checks,
    }
}

/// Check 6 (reported): the arms without twins (their ranks and accuracy) and whether the plain
/// twin of each comparing run reproduced the `baseline` arm of its seed.
fn standalone(runs: &[FinishedRun], subjects: &[&FinishedRun]) -> Check {
    let mut c = CheckBuilder::new(
        "6",
        Quantifier::Every,
        "reported: the arms trained alone (ranks at the same e, dense accuracy), and whether each \
         plain twin reproduced the baseline arm of its seed",
        "reported only",
    )
    .informational();
    let alone: Vec<&FinishedRun> = runs
        .iter()
        .filter(|r| !has_twin(r) && r.completed())
        .collect();
    let mut arms: Vec<&str> = alone.iter().map(|r| r.arm.as_str()).collect();
    arms.sort();
    arms.dedup();
    for arm in arms {
        let rs: Vec<&FinishedRun> = alone.iter().copied().filter(|r| r.arm == arm).collect();
        c.note(format!(
            "{arm}: dense {}, truncated at its own energy ranks {}, ranks {} / {}, \
                 compression {}x",
            fmt_mean_se(runs_mean_se(&rs, "test_acc")),
            fmt_mean_se(runs_mean_se(&rs, "test_acc_trunc")),
            fmt_mean_se(runs_mean_se(&rs, "rank_l2")),
            fmt_mean_se(runs_mean_se(&rs, "rank_l3")),
            fmt_mean_se(runs_mean_se(&rs, "compression"))
        ));
    }
    for s in subjects {
        let twin = alone.iter().find(|b| {
            b.seed == s.seed
                && b.params.text("trp_project") == "off"
                && b.params.f64("nuclear_weight") == 0.0
                && b.params.f64("trp_energy") == s.params.f64("trp_energy")
        });
        if let Some(b) = twin {
            let same = b.value("test_acc") == s.value("twin_test_acc")
                && b.value("rank_l2") == s.value("twin_rank_l2")
                && b.value("rank_l3") == s.value("twin_rank_l3");
            c.note(format!(
                "{}: plain twin dense {:.4}, ranks {} / {}; {} {:.4}, ranks {} / {}: {}",
                s.label(),
                s.value("twin_test_acc"),
                s.value("twin_rank_l2"),
                s.value("twin_rank_l3"),
                b.label(),
                b.value("test_acc"),
                b.value("rank_l2"),
                b.value("rank_l3"),
                if same {
                    "the same network"
                } else {
                    "they differ"
                }
            ));
        }
    }
    c.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiments::{Experiment, RunStatus};
    use crate::params::{ParamValue, Params};

    struct R {
        seed: u64,
        e: f64,
        trunc: f64,
        posthoc: f64,
        dense_twin: f64,
        ranks: (f64, f64),
        twin_ranks: (f64, f64),
    }

    fn run(r: R) -> FinishedRun {
        let mut params = Params::defaults(&super::super::TrainedRankPruning.params());
        params.set("posthoc_twins", ParamValue::Text("plain".into()));
        params.set("trp_project", ParamValue::Text("on".into()));
        params.set("trp_energy", ParamValue::Float(r.e));
        let k = r.ranks.0 + r.ranks.1;
        FinishedRun {
            arm: format!("trp-{}", r.e),
            seed: r.seed,
            params,
            status: RunStatus::Completed { steps: 10 },
            final_values: [
                ("test_acc", r.trunc + 0.001),
                ("test_acc_trunc", r.trunc),
                ("posthoc_acc", r.posthoc),
                ("twin_test_acc", r.dense_twin),
                ("rank_l2", r.ranks.0),
                ("rank_l3", r.ranks.1),
                ("twin_rank_l2", r.twin_ranks.0),
                ("twin_rank_l3", r.twin_ranks.1),
                ("compression", 2.0 * 65536.0 / (k * 512.0)),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        }
    }

    fn launch(trunc: f64, posthoc: f64, ranks: f64, twin_ranks: f64) -> Vec<FinishedRun> {
        (0..3)
            .flat_map(|s| {
                let j = s as f64 * 0.002;
                [0.9, 0.95].map(|e| {
                    run(R {
                        seed: s,
                        e,
                        trunc: trunc + j,
                        posthoc: posthoc + j,
                        dense_twin: 0.95,
                        ranks: (ranks, ranks),
                        twin_ranks: (twin_ranks, twin_ranks),
                    })
                })
            })
            .collect()
    }

    fn verdict(runs: &[FinishedRun]) -> Verdict {
        compute("c", "trained-rank-pruning", runs)
    }

    #[test]
    fn holds_fails_and_is_inconclusive() {
        let v = verdict(&launch(0.95, 0.80, 20.0, 100.0));
        assert_eq!(v.outcome(), Outcome::Holds, "{v:#?}");
        // Compression 65536 / (50 * 256) = 5.1x.
        assert!(v.check("1").unwrap().numbers["trp.compression"] > 5.0);
        // No advantage over post-hoc truncation.
        let v = verdict(&launch(0.95, 0.945, 20.0, 100.0));
        assert_eq!(v.check("3").unwrap().outcome, Outcome::Fails);
        assert_eq!(v.outcome(), Outcome::Fails);
        // Truncation costs accuracy.
        let v = verdict(&launch(0.90, 0.80, 20.0, 100.0));
        assert_eq!(v.check("2").unwrap().outcome, Outcome::Fails);
        // Not low rank enough: 256 / 80 x 2 = 1.6x.
        let v = verdict(&launch(0.95, 0.80, 80.0, 100.0));
        assert_eq!(v.check("1").unwrap().outcome, Outcome::Fails);
        // TRP's ranks are its twin's: inconclusive whatever the accuracies.
        let v = verdict(&launch(0.95, 0.80, 50.0, 50.0));
        for id in ["1", "2", "3"] {
            assert_eq!(v.check(id).unwrap().outcome, Outcome::Inconclusive);
        }
        // The milder threshold is reported, not judged.
        assert!(v.check("5").unwrap().informational);
        assert!(v
            .check("5")
            .unwrap()
            .numbers
            .contains_key("e0.95.advantage"));
    }

    #[test]
    fn runs_that_learned_nothing_are_left_out() {
        let mut runs = launch(0.95, 0.80, 20.0, 100.0);
        for r in runs.iter_mut() {
            r.final_values.insert("twin_test_acc".into(), 0.1);
        }
        let v = verdict(&runs);
        assert_eq!(v.outcome(), Outcome::Inconclusive);
        assert_eq!(verdict(&[]).outcome(), Outcome::Inconclusive);
    }
}

//! The QuantNAS verdict, from the runs' final values (means over seeds with standard errors).
//!
//! 1. (claim: frontier) For each `fixed-{8,4,2}bit` arm some `qnas-qn-mu*` arm has BitOps <=
//!    its BitOps and PSNR >= its PSNR - 0.05 dB, with at least one such pair improving by at
//!    least 0.2 dB or 25% of the BitOps, its qnas-qn net matched by no fixed net at no more
//!    BitOps (above the uniform frontier: a search that returns a fixed net is not a gain).
//! 2. (claim: QN vs straight-through in the search) At mu 0.1 the QN-searched net's PSNR >= the
//!    STE-searched net's, at no more than 1.1x its BitOps (INCONCLUSIVE when both derived the
//!    same architecture on every seed).
//! 3. (reported) Entropy penalty: final mean block entropy < 0.1 nats with it, and the
//!    supernet-to-derived PSNR drop smaller than without it.
//! 4. (reported) `frontier_margin` of every arm (PSNR minus the uniform frontier interpolated
//!    in log BitOps), the derived architectures, search wall time QN vs STE, fixed-fp.
//!
//! A missing arm, or an arm with any run left out (failed, diverged, or learned nothing: test
//! PSNR not above nearest upsampling), makes the checks using it INCONCLUSIVE; so does check 2
//! when QN and STE derived the same architecture on every seed (a tie of identical searches).

use crate::experiments::FinishedRun;
use crate::verdict::{mean_se, Check, CheckBuilder, Outcome, Quantifier, Verdict};

use super::decode_arch;

/// Runs whose PSNR gain over nearest upsampling is below this learned nothing.
pub const LEARNED: f64 = 0.0;

fn arm<'a>(runs: &'a [FinishedRun], name: &str, notes: &mut Vec<String>) -> Vec<&'a FinishedRun> {
    crate::verdict::usable(
        runs.iter().filter(|r| r.arm == name),
        "psnr_gain",
        "PSNR gain over nearest upsampling (dB)",
        LEARNED,
        notes,
    )
}

fn stat(runs: &[&FinishedRun], key: &str) -> (f64, f64) {
    let xs: Vec<f64> = runs.iter().map(|r| r.value(key)).collect();
    mean_se(&xs)
}

fn fmt(m: (f64, f64), digits: usize) -> String {
    if m.1.is_nan() {
        format!("{:.*}", digits, m.0)
    } else {
        format!("{:.*} +- {:.*}", digits, m.0, digits, m.1)
    }
}

/// One arm's means: (name, PSNR, BitOps in MBitOps, runs).
struct Point<'a> {
    name: String,
    psnr: (f64, f64),
    bitops: (f64, f64),
    runs: Vec<&'a FinishedRun>,
}

/// An arm's point, or None when it has no runs or any of its runs is left out (failed, diverged
/// or learned nothing): a mean over the surviving seeds is not the arm's point, so the checks
/// using it are INCONCLUSIVE (the note names the left-out runs).
fn point<'a>(runs: &'a [FinishedRun], name: &str, notes: &mut Vec<String>) -> Option<Point<'a>> {
    let launched = runs.iter().filter(|r| r.arm == name).count();
    let rs = arm(runs, name, notes);
    if !rs.is_empty() && rs.len() < launched {
        notes.push(format!(
            "{name}: {} of {launched} runs usable: its point is void",
            rs.len()
        ));
        return None;
    }
    (!rs.is_empty()).then(|| Point {
        name: name.to_string(),
        psnr: stat(&rs, "psnr_test"),
        bitops: stat(&rs, "bitops"),
        runs: rs,
    })
}

impl Point<'_> {
    fn line(&self) -> String {
        format!(
            "{} PSNR {} dB at {} MBitOps (n = {})",
            self.name,
            fmt(self.psnr, 3),
            fmt(self.bitops, 3),
            self.runs.len()
        )
    }

    /// The architectures of the runs, one per seed.
    fn archs(&self) -> String {
        self.runs
            .iter()
            .map(|r| {
                let blocks = ["block0_bits", "block1_bits", "block2_bits", "block3_bits"]
                    .iter()
                    .filter(|k| r.final_values.contains_key(**k))
                    .count()
                    .max(1);
                let mut a = decode_arch(r.value("arch_code"), blocks);
                // The code names search-space candidates; the bits (32 for the full-precision
                // net) come from the run itself.
                for (k, c) in a.iter_mut().enumerate() {
                    if let Some(b) = r.final_values.get(&format!("block{k}_bits")) {
                        c.bits = *b as u32;
                    }
                }
                format!(
                    "s{} [{}]",
                    r.seed,
                    a.iter().map(|k| k.label()).collect::<Vec<_>>().join(" ")
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The uniform frontier (BitOps, PSNR) of the fixed quantized arms, sorted by BitOps, at `x`
/// BitOps: linear in log BitOps between the points, flat beyond the ends.
pub fn frontier_at(frontier: &[(f64, f64)], x: f64) -> f64 {
    let mut f: Vec<(f64, f64)> = frontier.to_vec();
    f.sort_by(|a, b| a.0.total_cmp(&b.0));
    let Some(first) = f.first() else {
        return f64::NAN;
    };
    if x <= first.0 {
        return first.1;
    }
    for w in f.windows(2) {
        let ((x0, y0), (x1, y1)) = (w[0], w[1]);
        if x <= x1 {
            let t = (x.ln() - x0.ln()) / (x1.ln() - x0.ln()).max(1e-12);
            return y0 + t * (y1 - y0);
        }
    }
    f.last().map(|p| p.1).unwrap_or(f64::NAN)
}

const FIXED: [&str; 3] = ["fixed-8bit", "fixed-4bit", "fixed-2bit"];
const QN: [&str; 3] = ["qnas-qn-mu0", "qnas-qn-mu0.03", "qnas-qn-mu0.1"];

fn finish(mut c: CheckBuilder, mut notes: Vec<String>, inconclusive: bool) -> Check {
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

fn frontier_check(runs: &[FinishedRun]) -> Check {
    let mut notes = Vec::new();
    let mut c = CheckBuilder::new(
        "1",
        Quantifier::Every,
        "frontier: for each fixed-{8,4,2}bit net some qnas-qn net has BitOps <= its BitOps and \
         PSNR >= its PSNR - 0.05 dB, and at least one such pair gains >= 0.2 dB or uses >= 25% \
         fewer BitOps with a qnas-qn net that no fixed net matches at <= its BitOps (above the \
         uniform frontier, not on it; means over seeds)",
        "a uniformly quantized net is not matched at equal or lower BitOps, or no match is a \
         strict improvement",
    );
    let fixed: Vec<Option<Point>> = FIXED.iter().map(|a| point(runs, a, &mut notes)).collect();
    let qn: Vec<Option<Point>> = QN.iter().map(|a| point(runs, a, &mut notes)).collect();
    let mut gone = false;
    for (name, p) in FIXED
        .iter()
        .chain(QN.iter())
        .zip(fixed.iter().chain(qn.iter()))
    {
        if p.is_none() {
            c.note(format!("{name}: no usable runs: not compared"));
            gone = true;
        }
    }
    if gone {
        return finish(c, notes, true);
    }
    let fixed: Vec<Point> = fixed.into_iter().flatten().collect();
    let qn: Vec<Point> = qn.into_iter().flatten().collect();
    let mut strict = Vec::new();
    for f in &fixed {
        let matches: Vec<&Point> = qn
            .iter()
            .filter(|q| q.bitops.0 <= f.bitops.0 && q.psnr.0 >= f.psnr.0 - 0.05)
            .collect();
        for q in &matches {
            let dp = q.psnr.0 - f.psnr.0;
            let saving = 1.0 - q.bitops.0 / f.bitops.0;
            // A net that some uniform net matches at no more BitOps lies on the uniform
            // frontier, not above it (e.g. a search that returns a fixed net).
            let on_frontier = fixed
                .iter()
                .any(|g| g.bitops.0 <= q.bitops.0 && g.psnr.0 >= q.psnr.0 - 0.05);
            if (dp >= 0.2 || saving >= 0.25) && !on_frontier {
                strict.push(format!(
                    "{} vs {}: {dp:+.3} dB, {:.0}% fewer BitOps",
                    q.name,
                    f.name,
                    100.0 * saving
                ));
            }
        }
        let best = matches
            .iter()
            .max_by(|a, b| a.psnr.0.total_cmp(&b.psnr.0))
            .map(|q| format!("best match {}", q.line()))
            .unwrap_or_else(|| "no qnas-qn net at <= its BitOps within 0.05 dB".to_string());
        c.case(!matches.is_empty(), format!("{}: {best}", f.line()));
        c.number(format!("{}.psnr", f.name), f.psnr.0);
        c.number(format!("{}.bitops", f.name), f.bitops.0);
        c.number(format!("{}.matches", f.name), matches.len() as f64);
    }
    for q in &qn {
        c.note(format!("{}; architectures {}", q.line(), q.archs()));
        c.number(format!("{}.psnr", q.name), q.psnr.0);
        c.number(format!("{}.bitops", q.name), q.bitops.0);
    }
    c.case(
        !strict.is_empty(),
        if strict.is_empty() {
            "strict improvement: no match gains >= 0.2 dB or saves >= 25% BitOps while lying \
             above the uniform frontier"
                .to_string()
        } else {
            format!("strict improvement: {}", strict.join("; "))
        },
    );
    c.number("strict_pairs", strict.len() as f64);
    finish(c, notes, false)
}

fn ste_check(runs: &[FinishedRun]) -> Check {
    let mut notes = Vec::new();
    let mut c = CheckBuilder::new(
        "2",
        Quantifier::Every,
        "QN vs straight-through search at mu 0.1: PSNR(qn) >= PSNR(ste) at BitOps(qn) <= 1.1 \
         BitOps(ste) (means over seeds)",
        "the QN-searched net is worse, or costs more than 1.1x the STE net's BitOps",
    );
    let (qn, ste) = (
        point(runs, "qnas-qn-mu0.1", &mut notes),
        point(runs, "qnas-ste-mu0.1", &mut notes),
    );
    let (Some(qn), Some(ste)) = (qn, ste) else {
        c.note("qnas-qn-mu0.1 or qnas-ste-mu0.1 has no usable runs: not compared");
        return finish(c, notes, true);
    };
    let seeds = |p: &Point| {
        let mut v: Vec<(u64, f64)> = p
            .runs
            .iter()
            .map(|r| (r.seed, r.value("arch_code")))
            .collect();
        v.sort_by_key(|a| a.0);
        v
    };
    let (aq, as_) = (seeds(&qn), seeds(&ste));
    if aq.len() == as_.len() && aq.iter().zip(&as_).all(|(a, b)| a.0 == b.0 && a.1 == b.1) {
        c.note(format!(
            "QN and STE derived the same architecture on every seed ({}): the searches are \
             indistinguishable here, not compared ({} vs {})",
            qn.archs(),
            qn.line(),
            ste.line()
        ));
        c.number("psnr_diff", qn.psnr.0 - ste.psnr.0);
        c.number("same_arch", 1.0);
        return finish(c, notes, true);
    }
    c.case(
        qn.psnr.0 >= ste.psnr.0,
        format!("PSNR: {} vs {}", qn.line(), ste.line()),
    );
    c.case(
        qn.bitops.0 <= 1.1 * ste.bitops.0,
        format!(
            "BitOps ratio qn / ste {:.3} (<= 1.1)",
            qn.bitops.0 / ste.bitops.0.max(1e-12)
        ),
    );
    c.note(format!(
        "architectures: qn {}; ste {}",
        qn.archs(),
        ste.archs()
    ));
    c.number("psnr_diff", qn.psnr.0 - ste.psnr.0);
    c.number("bitops_ratio", qn.bitops.0 / ste.bitops.0.max(1e-12));
    finish(c, notes, false)
}

fn entropy_check(runs: &[FinishedRun]) -> Check {
    let mut notes = Vec::new();
    let mut c = CheckBuilder::new(
        "3",
        Quantifier::Every,
        "reported: with the entropy penalty every qnas-qn search ends below 0.1 nats mean block \
         entropy, and its supernet-to-derived PSNR drop is smaller than without it (mu 0.1)",
        "reported only",
    )
    .informational();
    let mut gone = false;
    for name in QN {
        match point(runs, name, &mut notes) {
            Some(p) => {
                let e = stat(&p.runs, "entropy_end");
                c.case(
                    e.0 < 0.1,
                    format!("{name}: final entropy {} nats", fmt(e, 4)),
                );
                c.number(format!("{name}.entropy"), e.0);
            }
            None => gone = true,
        }
    }
    let (with, without) = (
        point(runs, "qnas-qn-mu0.1", &mut notes),
        point(runs, "qnas-noent-mu0.1", &mut notes),
    );
    match (with, without) {
        (Some(w), Some(o)) => {
            let (dw, dn) = (
                stat(&w.runs, "supernet_drop"),
                stat(&o.runs, "supernet_drop"),
            );
            c.case(
                dw.0 < dn.0,
                format!(
                    "supernet - derived PSNR: with entropy {} dB vs without {} dB (entropy \
                     without: {} nats); qnas-noent-mu0.1 after QAT {}",
                    fmt(dw, 3),
                    fmt(dn, 3),
                    fmt(stat(&o.runs, "entropy_end"), 3),
                    o.line()
                ),
            );
            c.number("drop_with", dw.0);
            c.number("drop_without", dn.0);
        }
        _ => gone = true,
    }
    finish(c, notes, gone)
}

fn report_check(runs: &[FinishedRun]) -> Check {
    let mut notes = Vec::new();
    let mut c = CheckBuilder::new(
        "4",
        Quantifier::Every,
        "reported: frontier_margin (PSNR minus the uniform frontier of fixed-{2,4,8}bit, \
         linear in log BitOps, flat beyond its ends) of every arm, the architectures, and the \
         search wall time QN vs STE",
        "reported only",
    )
    .informational();
    let frontier: Vec<(f64, f64)> = FIXED
        .iter()
        .filter_map(|a| point(runs, a, &mut notes))
        .map(|p| (p.bitops.0, p.psnr.0))
        .collect();
    let mut names: Vec<String> = runs.iter().map(|r| r.arm.clone()).collect();
    names.sort();
    names.dedup();
    for name in &names {
        let Some(p) = point(runs, name, &mut notes) else {
            continue;
        };
        let margins: Vec<f64> = p
            .runs
            .iter()
            .map(|r| r.value("psnr_test") - frontier_at(&frontier, r.value("bitops")))
            .collect();
        let m = mean_se(&margins);
        c.note(format!(
            "{}; frontier_margin {} dB; architectures {}",
            p.line(),
            fmt(m, 3),
            p.archs()
        ));
        c.number(format!("{name}.frontier_margin"), m.0);
    }
    let (qn, ste) = (
        point(runs, "qnas-qn-mu0.1", &mut notes),
        point(runs, "qnas-ste-mu0.1", &mut notes),
    );
    if let (Some(q), Some(s)) = (qn, ste) {
        let (tq, ts) = (stat(&q.runs, "search_s"), stat(&s.runs, "search_s"));
        c.note(format!(
            "search wall time: QN {} s vs STE {} s (QN / STE {:.2})",
            fmt(tq, 2),
            fmt(ts, 2),
            tq.0 / ts.0
        ));
        c.number("search_time_ratio", tq.0 / ts.0);
    }
    finish(c, notes, false)
}

pub fn compute(claim: &str, preset_id: &str, runs: &[FinishedRun]) -> Verdict {
    Verdict {
        preset: preset_id.to_string(),
        claim: claim.to_string(),
        checks: vec![
            frontier_check(runs),
            ste_check(runs),
            entropy_check(runs),
            report_check(runs),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiments::{Experiment, RunStatus};
    use crate::params::Params;

    /// A synthetic run: test PSNR (dB), BitOps (MBitOps), architecture code.
    fn run(arm: &str, seed: u64, psnr: f64, bitops: f64, code: f64) -> FinishedRun {
        let j = seed as f64 * 0.001;
        FinishedRun {
            arm: arm.to_string(),
            seed,
            params: Params::defaults(&super::super::QuantNasSr.params()),
            status: RunStatus::Completed { steps: 10 },
            final_values: [
                ("psnr_test", psnr + j),
                ("psnr_gain", psnr + j - 25.0),
                ("bitops", bitops),
                ("arch_code", code),
                ("entropy_end", 0.01),
                ("supernet_drop", 0.1),
                ("search_s", 1.0),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        }
    }

    /// Three seeds of every arm: the uniform frontier 28 / 29.5 / 30 dB at 6.25 / 25 / 100
    /// MBitOps; qnas-qn-mu0 at 60 MBitOps lies 0.1 dB above fixed-8bit (> 0.05 dB above the
    /// frontier, 40% fewer BitOps); `ste_code` is the STE search's architecture.
    fn launch(ste_code: f64, ste_psnr: f64) -> Vec<FinishedRun> {
        (0..3)
            .flat_map(|s| {
                [
                    run("fixed-8bit", s, 30.0, 100.0, 0.0),
                    run("fixed-4bit", s, 29.5, 25.0, 0.0),
                    run("fixed-2bit", s, 28.0, 6.25, 0.0),
                    run("qnas-qn-mu0", s, 30.1, 60.0, 11.0),
                    run("qnas-qn-mu0.03", s, 29.6, 20.0, 22.0),
                    run("qnas-qn-mu0.1", s, 28.1, 5.0, 33.0),
                    run("qnas-noent-mu0.1", s, 27.9, 5.0, 33.0),
                    run("qnas-ste-mu0.1", s, ste_psnr, 5.0, ste_code),
                ]
            })
            .collect()
    }

    fn outcome(runs: &[FinishedRun], id: &str) -> Outcome {
        compute("c", "quantnas-sr", runs).check(id).unwrap().outcome
    }

    #[test]
    fn a_net_above_the_uniform_frontier_at_fewer_bitops_holds() {
        let runs = launch(44.0, 28.0);
        assert_eq!(outcome(&runs, "1"), Outcome::Holds);
        assert_eq!(outcome(&runs, "2"), Outcome::Holds);
        // Shifted onto the frontier (the searched nets are fixed nets): no strict gain.
        let mut on = runs.clone();
        for r in on.iter_mut().filter(|r| r.arm.starts_with("qnas-qn")) {
            *r.final_values.get_mut("psnr_test").unwrap() -= 0.5;
        }
        assert_eq!(outcome(&on, "1"), Outcome::Fails);
    }

    #[test]
    fn identical_qn_and_ste_searches_are_inconclusive() {
        // Same architecture on every seed: a tie of indistinguishable searches, not a win.
        let runs = launch(33.0, 28.1);
        let v = compute("c", "quantnas-sr", &runs);
        let c = v.check("2").unwrap();
        assert_eq!(c.outcome, Outcome::Inconclusive);
        assert!(c.evidence.iter().any(|n| n.contains("same architecture")));
        // One seed differing is a comparison again.
        let mut one = runs.clone();
        one.iter_mut()
            .find(|r| r.arm == "qnas-ste-mu0.1" && r.seed == 2)
            .unwrap()
            .final_values
            .insert("arch_code".into(), 44.0);
        assert_eq!(outcome(&one, "2"), Outcome::Holds);
    }

    #[test]
    fn a_failed_or_empty_seed_voids_the_arm() {
        let mut failed = launch(44.0, 28.0);
        failed
            .iter_mut()
            .find(|r| r.arm == "qnas-qn-mu0" && r.seed == 1)
            .unwrap()
            .status = RunStatus::Failed {
            error: "boom".into(),
        };
        let v = compute("c", "quantnas-sr", &failed);
        let c = v.check("1").unwrap();
        assert_eq!(c.outcome, Outcome::Inconclusive);
        assert!(c
            .evidence
            .iter()
            .any(|n| n.contains("qnas-qn-mu0") && n.contains("left out")));
        assert!(c.evidence.iter().any(|n| n.contains("2 of 3 runs usable")));

        let mut empty = launch(44.0, 28.0);
        empty
            .iter_mut()
            .find(|r| r.arm == "qnas-ste-mu0.1" && r.seed == 0)
            .unwrap()
            .final_values
            .insert("psnr_gain".into(), -0.5);
        assert_eq!(outcome(&empty, "2"), Outcome::Inconclusive);
        assert_eq!(outcome(&empty, "1"), Outcome::Holds);
    }

    #[test]
    fn the_frontier_interpolates_in_log_bitops() {
        let f = [(4.0, 30.0), (1.0, 20.0), (16.0, 32.0)];
        assert_eq!(frontier_at(&f, 0.5), 20.0);
        assert_eq!(frontier_at(&f, 100.0), 32.0);
        assert!((frontier_at(&f, 2.0) - 25.0).abs() < 1e-12);
        assert!((frontier_at(&f, 8.0) - 31.0).abs() < 1e-12);
    }
}

//! The MSBReg verdict (final values, means with standard errors over seeds; `d = 64`):
//!
//! 1. (no collapse) `msbreg` ends with `emb_std >= 0.5 / sqrt(d)` and `eff_rank >= 0.5 d`.
//! 2. (the regularizer prevents collapse) the plain control `no-ema-no-pred` collapses
//!    (`emb_std < 0.1 / sqrt(d)` or `eff_rank < 5`) while `no-ema-msb` does not (check 1's
//!    bounds); INCONCLUSIVE when the control does not collapse (nothing to prevent).
//! 3. (good representation) `linear_probe(msbreg) >= linear_probe(centroid-only) - 0.01` and
//!    `>= linear_probe(random-init) + 0.01`.
//! 4. (reported) k-NN accuracy and collapse numbers of every arm.

use crate::experiments::FinishedRun;
use crate::verdict::{mean_se, mean_se_text, CheckBuilder, Quantifier, Verdict};

/// The projection width.
pub const D: f64 = super::PROJ as f64;
/// Check 1: `emb_std` at least this over `sqrt(d)`, `eff_rank` at least this times `d`.
pub const NO_COLLAPSE: f64 = 0.5;
/// Check 2: `emb_std` below this over `sqrt(d)` is complete collapse ...
pub const COLLAPSED_STD: f64 = 0.1;
/// ... and `eff_rank` below this dimensional collapse.
pub const COLLAPSED_RANK: f64 = 5.0;
/// Check 3's margins.
pub const PROBE_MARGIN: f64 = 0.01;

fn vals(rs: &[&FinishedRun], k: &str) -> Vec<f64> {
    rs.iter().map(|r| r.value(k)).collect()
}

fn collapsed(rs: &[&FinishedRun]) -> bool {
    let std = mean_se(&vals(rs, "emb_std")).0;
    let rank = mean_se(&vals(rs, "eff_rank")).0;
    std < COLLAPSED_STD / D.sqrt() || rank < COLLAPSED_RANK
}

fn spread(rs: &[&FinishedRun]) -> bool {
    let std = mean_se(&vals(rs, "emb_std")).0;
    let rank = mean_se(&vals(rs, "eff_rank")).0;
    std >= NO_COLLAPSE / D.sqrt() && rank >= NO_COLLAPSE * D
}

fn describe(name: &str, rs: &[&FinishedRun]) -> String {
    format!(
        "{name}: emb_std {} (uniform {:.4}), eff_rank {} ({} seeds)",
        mean_se_text(&vals(rs, "emb_std")),
        1.0 / D.sqrt(),
        mean_se_text(&vals(rs, "eff_rank")),
        rs.len()
    )
}

pub fn compute(claim: &str, preset_id: &str, runs: &[FinishedRun]) -> Verdict {
    let mut left_out = Vec::new();
    // The arms by name (the preset's; a test may switch an arm's regularizer off).
    let mut pick = |arm: &str| -> Vec<&FinishedRun> {
        runs.iter()
            .filter(|r| r.arm == arm)
            .filter(|r| {
                let ok = r.completed() && r.value("emb_std").is_finite();
                if !ok {
                    left_out.push(format!("{}: {}, left out", r.label(), r.status.describe()));
                }
                ok
            })
            .collect()
    };
    let msb = pick("msbreg");
    let centroid = pick("centroid-only");
    let control = pick("no-ema-no-pred");
    let control_reg = pick("no-ema-msb");
    let byol = pick("byol-2view");
    let init = pick("random-init");
    let mut checks = Vec::new();

    let mut c1 = CheckBuilder::new(
        "1",
        Quantifier::Every,
        format!(
            "no collapse: MSBReg ends with emb_std >= {NO_COLLAPSE}/sqrt(d) and eff_rank >= \
             {NO_COLLAPSE} d (d = {D})"
        ),
        "MSBReg's mean emb_std or effective rank is below the bound",
    );
    for why in &left_out {
        c1.note(why.clone());
    }
    if !msb.is_empty() {
        c1.case(spread(&msb), describe("msbreg", &msb));
        c1.number("msbreg.emb_std", mean_se(&vals(&msb, "emb_std")).0);
        c1.number("msbreg.eff_rank", mean_se(&vals(&msb, "eff_rank")).0);
    }
    checks.push(c1.finish());

    let mut c2 = CheckBuilder::new(
        "2",
        Quantifier::Every,
        format!(
            "the regularizer prevents collapse: without EMA and predictor the centroid loss \
             alone collapses (emb_std < {COLLAPSED_STD}/sqrt(d) or eff_rank < {COLLAPSED_RANK}) \
             while the same with B + S does not (check 1's bounds)"
        ),
        "the regularized control collapses too (INCONCLUSIVE when the plain control does not \
         collapse: nothing to prevent)",
    );
    if !control.is_empty() && !control_reg.is_empty() {
        let line = format!(
            "{}; {}",
            describe("no-ema-no-pred", &control),
            describe("no-ema-msb", &control_reg)
        );
        if collapsed(&control) {
            c2.note("the plain control collapsed".to_string());
            c2.case(spread(&control_reg), line);
        } else {
            c2.note(format!(
                "{line}: the plain control did not collapse (not decided)"
            ));
        }
        c2.number("control.emb_std", mean_se(&vals(&control, "emb_std")).0);
        c2.number("control.eff_rank", mean_se(&vals(&control, "eff_rank")).0);
        c2.number(
            "control_msb.emb_std",
            mean_se(&vals(&control_reg, "emb_std")).0,
        );
        c2.number(
            "control_msb.eff_rank",
            mean_se(&vals(&control_reg, "eff_rank")).0,
        );
    }
    checks.push(c2.finish());

    let mut c3 = CheckBuilder::new(
        "3",
        Quantifier::Every,
        format!(
            "good representation: MSBReg's linear probe is at least the centroid-only (BYOL-like) \
             arm's - {PROBE_MARGIN} and the random encoder's + {PROBE_MARGIN} (toy scale: a \
             random encoder's digits probe is already strong)"
        ),
        "MSBReg's mean probe is below either bound",
    );
    if !msb.is_empty() && !init.is_empty() {
        let m = mean_se(&vals(&msb, "linear_probe_acc")).0;
        let i = mean_se(&vals(&init, "linear_probe_acc")).0;
        let mut held = m >= i + PROBE_MARGIN;
        let mut line = format!(
            "msbreg {} vs random init {}",
            mean_se_text(&vals(&msb, "linear_probe_acc")),
            mean_se_text(&vals(&init, "linear_probe_acc"))
        );
        if !centroid.is_empty() {
            let c = mean_se(&vals(&centroid, "linear_probe_acc")).0;
            held &= m >= c - PROBE_MARGIN;
            line.push_str(&format!(
                " vs centroid-only {}",
                mean_se_text(&vals(&centroid, "linear_probe_acc"))
            ));
            c3.number("centroid.linear", c);
        }
        c3.case(held, format!("{line}: {held}"));
        c3.number("msbreg.linear", m);
        c3.number("init.linear", i);
    }
    checks.push(c3.finish());

    let mut c4 = CheckBuilder::new(
        "4",
        Quantifier::Every,
        "reported: every arm's collapse numbers, linear probe and 20-NN accuracy",
        "MSBReg's 20-NN accuracy is below the random encoder's",
    )
    .informational();
    for (name, rs) in [
        ("msbreg", &msb),
        ("centroid-only", &centroid),
        ("no-ema-no-pred", &control),
        ("no-ema-msb", &control_reg),
        ("byol-2view", &byol),
        ("random-init", &init),
    ] {
        if !rs.is_empty() {
            c4.note(format!(
                "{}; linear probe {}, 20-NN {}",
                describe(name, rs),
                mean_se_text(&vals(rs, "linear_probe_acc")),
                mean_se_text(&vals(rs, "knn_acc"))
            ));
        }
    }
    if !msb.is_empty() && !init.is_empty() {
        let (a, b) = (
            mean_se(&vals(&msb, "knn_acc")).0,
            mean_se(&vals(&init, "knn_acc")).0,
        );
        c4.case(
            a >= b,
            format!("20-NN: msbreg {a:.4} vs random init {b:.4}"),
        );
    }
    checks.push(c4.finish());
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

    fn run(arm: &str, std: f64, rank: f64, probe: f64) -> FinishedRun {
        let mut params = Params::defaults(&super::super::MsbReg.params());
        let set = |p: &mut Params, k: &str, v: &str| p.set(k, ParamValue::Text(v.into()));
        match arm {
            "msbreg" => {}
            "no-ema-no-pred" | "no-ema-msb" => {
                set(&mut params, "ema", "off");
                set(&mut params, "predictor", "off");
            }
            "random-init" => set(&mut params, "method", "none"),
            _ => unreachable!(),
        }
        if arm == "no-ema-no-pred" {
            params.set("lambda_b", ParamValue::Float(0.0));
            params.set("lambda_s", ParamValue::Float(0.0));
        }
        FinishedRun {
            arm: arm.into(),
            seed: 0,
            params,
            status: RunStatus::Completed { steps: 10 },
            final_values: [
                ("emb_std", std),
                ("eff_rank", rank),
                ("linear_probe_acc", probe),
                ("knn_acc", probe),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        }
    }

    #[test]
    fn holds_fails_and_is_inconclusive_without_a_collapsing_control() {
        let good = [
            run("msbreg", 0.12, 50.0, 0.95),
            run("no-ema-no-pred", 0.001, 1.2, 0.5),
            run("no-ema-msb", 0.11, 45.0, 0.93),
            run("random-init", 0.05, 10.0, 0.90),
        ];
        assert_eq!(compute("c", "p", &good).outcome(), Outcome::Holds);
        let reg_collapses = [
            run("msbreg", 0.12, 50.0, 0.95),
            run("no-ema-no-pred", 0.001, 1.2, 0.5),
            run("no-ema-msb", 0.01, 3.0, 0.93),
            run("random-init", 0.05, 10.0, 0.90),
        ];
        let v = compute("c", "p", &reg_collapses);
        assert_eq!(v.check("2").unwrap().outcome, Outcome::Fails);
        let no_collapse = [
            run("msbreg", 0.12, 50.0, 0.95),
            run("no-ema-no-pred", 0.1, 40.0, 0.9),
            run("no-ema-msb", 0.11, 45.0, 0.93),
            run("random-init", 0.05, 10.0, 0.90),
        ];
        let v = compute("c", "p", &no_collapse);
        assert_eq!(v.check("2").unwrap().outcome, Outcome::Inconclusive);
    }
}

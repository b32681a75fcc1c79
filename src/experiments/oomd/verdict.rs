//! The oomd-sea verdict, from the final regrets over seeds (means with standard errors):
//!
//! 1. The bound: for every arm, mean OOMD regret <= 1.5 x mean (D sqrt(sigma^2_1:T) +
//!    D sqrt(Sigma^2_1:T) + L D^2).
//! 2. Scaling with sigma: on the stochastic axis (fixed centre, rho = 0, s > 0) the least-squares
//!    slope of ln(mean regret) against ln sqrt(sigma^2_1:T) is in [0.7, 1.3], per family.
//! 3. Scaling with Sigma: on the i.i.d.-adversary axis (s = 0, rho > 0) the slope against
//!    ln sqrt(Sigma^2_1:T) is in [0.7, 1.3], per family.
//! 4. Easy case and interpolation: deterministic pseudo-Huber (s = rho = 0): R(T_max) <= 1.1
//!    R(T_min) + 0.1; with noise the slope of ln R against ln T is in [0.35, 0.65].
//! 5. (reported) OOMD against OGD and AdaOGD per arm; OOMD - OGD on the predictable paths.
//! 6. (reported) per-seed regret / bound ratios.
//!
//! A run that did not complete, or whose regret is not finite, is left out.

use std::collections::BTreeMap;

use crate::experiments::FinishedRun;
use crate::verdict::{mean_se, mean_se_text, CheckBuilder, Quantifier, Verdict};

/// Check 1: the bound's constant.
pub const BOUND_FACTOR: f64 = 1.5;
/// Checks 2 and 3: the slope's range.
pub const SLOPE: (f64, f64) = (0.7, 1.3);
/// Check 4: the growth exponent's range with noise.
pub const GROWTH: (f64, f64) = (0.35, 0.65);

/// One arm's runs.
struct Arm<'a> {
    name: String,
    runs: Vec<&'a FinishedRun>,
}

impl Arm<'_> {
    fn p(&self) -> &crate::params::Params {
        &self.runs[0].params
    }
    fn family(&self) -> &str {
        self.p().text("family")
    }
    fn path(&self) -> &str {
        self.p().text("path")
    }
    fn s(&self) -> f64 {
        self.p().f64("s")
    }
    fn rho(&self) -> f64 {
        self.p().f64("rho")
    }
    fn rounds(&self) -> usize {
        self.p().usize("steps")
    }
    fn vals(&self, key: &str) -> Vec<f64> {
        self.runs.iter().map(|r| r.value(key)).collect()
    }
    fn mean(&self, key: &str) -> f64 {
        mean_se(&self.vals(key)).0
    }
}

/// The least-squares slope of y against x.
pub fn slope(xs: &[f64], ys: &[f64]) -> f64 {
    let n = xs.len() as f64;
    let mx = xs.iter().sum::<f64>() / n;
    let my = ys.iter().sum::<f64>() / n;
    let sxy: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
    sxy / sxx
}

/// A fit: the slope of the means, the per-seed slopes, the (x, mean regret) points.
type Fit = (f64, Vec<f64>, Vec<(f64, f64)>);

/// Fits ln(regret) against ln(x) over `arms` (x from each arm's runs); the slope of the seed
/// means, the per-seed slopes and the points; Err says why it cannot.
fn fit(arms: &[&Arm], x_of: &dyn Fn(&Arm) -> f64) -> Result<Fit, String> {
    if arms.len() < 2 {
        return Err(format!("{} point(s): a slope needs two", arms.len()));
    }
    let pts: Vec<(f64, f64)> = arms
        .iter()
        .map(|a| (x_of(a), a.mean("regret_oomd")))
        .collect();
    if let Some(p) = pts.iter().find(|p| !(p.0 > 0.0 && p.1 > 0.0)) {
        return Err(format!(
            "a point with non-positive x or mean regret ({:.4}, {:.4}) has no logarithm",
            p.0, p.1
        ));
    }
    let lx: Vec<f64> = pts.iter().map(|p| p.0.ln()).collect();
    let ly: Vec<f64> = pts.iter().map(|p| p.1.ln()).collect();
    let m = slope(&lx, &ly);
    // Per-seed slopes, over the seeds every arm has with positive regret.
    let mut seeds: Vec<u64> = arms[0].runs.iter().map(|r| r.seed).collect();
    seeds.retain(|s| arms.iter().all(|a| a.runs.iter().any(|r| r.seed == *s)));
    let mut per_seed = Vec::new();
    for s in seeds {
        let ys: Vec<f64> = arms
            .iter()
            .map(|a| {
                a.runs
                    .iter()
                    .find(|r| r.seed == s)
                    .map(|r| r.value("regret_oomd"))
                    .unwrap_or(f64::NAN)
            })
            .collect();
        if ys.iter().all(|y| *y > 0.0) {
            let ly: Vec<f64> = ys.iter().map(|y| y.ln()).collect();
            per_seed.push(slope(&lx, &ly));
        }
    }
    Ok((m, per_seed, pts))
}

fn points(pts: &[(f64, f64)]) -> String {
    pts.iter()
        .map(|(x, y)| format!("({x:.3}, {y:.4})"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Groups the usable runs by arm (in the launch's order); the left-out runs' reasons.
fn arms(runs: &[FinishedRun]) -> (Vec<Arm<'_>>, Vec<String>) {
    let mut out: Vec<Arm> = Vec::new();
    let mut left = Vec::new();
    for r in runs {
        if !r.completed() {
            left.push(format!("{}: {}, left out", r.label(), r.status.describe()));
            continue;
        }
        if !r.value("regret_oomd").is_finite() || !r.value("bound").is_finite() {
            left.push(format!("{}: no finite regret, left out", r.label()));
            continue;
        }
        match out.iter_mut().find(|a| a.name == r.arm) {
            Some(a) => a.runs.push(r),
            None => out.push(Arm {
                name: r.arm.clone(),
                runs: vec![r],
            }),
        }
    }
    (out, left)
}

pub fn compute(claim: &str, preset_id: &str, runs: &[FinishedRun]) -> Verdict {
    let (arms, left) = arms(runs);
    let mut checks = Vec::new();

    // 1. The bound.
    let mut c1 = CheckBuilder::new(
        "1",
        Quantifier::Every,
        format!(
            "for every arm, OOMD's mean regret is at most {BOUND_FACTOR} x the mean bound D \
             sqrt(sigma^2_1:T) + D sqrt(Sigma^2_1:T) + L D^2"
        ),
        "some arm's mean regret exceeds the factor times its mean bound",
    );
    for why in &left {
        c1.note(why.clone());
    }
    for a in &arms {
        let (r, b) = (a.mean("regret_oomd"), a.mean("bound"));
        c1.case(
            r <= BOUND_FACTOR * b,
            format!(
                "{}: regret {} vs bound {:.4} (ratio {:.3})",
                a.name,
                mean_se_text(&a.vals("regret_oomd")),
                b,
                r / b
            ),
        );
        c1.number(format!("{}.ratio", a.name), r / b);
    }
    checks.push(c1.finish());

    // The rows of T = the most common horizon (the grid's default).
    let mut horizons: BTreeMap<usize, usize> = BTreeMap::new();
    arms.iter()
        .for_each(|a| *horizons.entry(a.rounds()).or_default() += 1);
    let main_t = horizons
        .iter()
        .max_by_key(|(t, n)| (**n, **t))
        .map(|(t, _)| *t)
        .unwrap_or(0);

    // 2 and 3. Scaling with sigma and with Sigma.
    for (id, axis, what, x_key) in [
        ("2", "stochastic", "sqrt(sigma^2_1:T)", "sigma2_cum"),
        ("3", "i.i.d.-adversary", "sqrt(Sigma^2_1:T)", "Sigma2_cum"),
    ] {
        let mut c = CheckBuilder::new(
            id,
            Quantifier::Every,
            format!(
                "on the {axis} axis (T = {main_t}) the least-squares slope of ln(mean OOMD \
                 regret) against ln {what} is in [{}, {}], for each loss family",
                SLOPE.0, SLOPE.1
            ),
            "a family's slope is outside the range",
        );
        for family in ["huber", "linear"] {
            let row: Vec<&Arm> = arms
                .iter()
                .filter(|a| a.family() == family && a.rounds() == main_t)
                .filter(|a| {
                    if id == "2" {
                        a.path() == "fixed" && a.rho() == 0.0 && a.s() > 0.0
                    } else {
                        a.path() == "iid" && a.s() == 0.0 && a.rho() > 0.0
                    }
                })
                .collect();
            if row.is_empty() {
                continue;
            }
            let x_of = |a: &Arm| a.mean(x_key).sqrt();
            match fit(&row, &x_of) {
                Ok((m, per_seed, pts)) => {
                    let ok = (SLOPE.0..=SLOPE.1).contains(&m);
                    c.case(
                        ok,
                        format!(
                            "{family}: slope {m:.3} (per seed {}) over (x, mean regret) {}",
                            if per_seed.len() > 1 {
                                mean_se_text(&per_seed)
                            } else {
                                format!("{per_seed:.3?}")
                            },
                            points(&pts)
                        ),
                    );
                    c.number(format!("{family}.slope"), m);
                }
                Err(why) => c.note(format!("{family}: not decided: {why}")),
            }
        }
        checks.push(c.finish());
    }

    // 4. The easy case and the interpolation in T.
    let mut c4 = CheckBuilder::new(
        "4",
        Quantifier::Every,
        format!(
            "deterministic pseudo-Huber (s = rho = 0): OOMD's regret does not grow with T \
             (R(T_max) <= 1.1 R(T_min) + 0.1); with noise (s > 0, rho = 0) it grows like \
             T^a with a in [{}, {}]",
            GROWTH.0, GROWTH.1
        ),
        "the deterministic regret grows, or the noisy exponent is outside the range",
    );
    let huber_fixed = |a: &&Arm| a.family() == "huber" && a.path() == "fixed" && a.rho() == 0.0;
    let det: Vec<&Arm> = arms
        .iter()
        .filter(huber_fixed)
        .filter(|a| a.s() == 0.0)
        .collect();
    if det.len() >= 2 {
        let lo = det.iter().min_by_key(|a| a.rounds()).unwrap();
        let hi = det.iter().max_by_key(|a| a.rounds()).unwrap();
        let (rl, rh) = (lo.mean("regret_oomd"), hi.mean("regret_oomd"));
        c4.case(
            rh <= 1.1 * rl + 0.1,
            format!(
                "deterministic: R({}) = {} vs R({}) = {} (limit {:.4})",
                hi.rounds(),
                mean_se_text(&hi.vals("regret_oomd")),
                lo.rounds(),
                mean_se_text(&lo.vals("regret_oomd")),
                1.1 * rl + 0.1
            ),
        );
        c4.number("det.growth", rh - rl);
    }
    let mut noise_levels: Vec<f64> = arms
        .iter()
        .filter(huber_fixed)
        .map(|a| a.s())
        .filter(|s| *s > 0.0)
        .collect();
    noise_levels.sort_by(f64::total_cmp);
    noise_levels.dedup();
    for s in noise_levels {
        let row: Vec<&Arm> = arms
            .iter()
            .filter(huber_fixed)
            .filter(|a| a.s() == s)
            .collect();
        if row.len() < 2 {
            continue;
        }
        match fit(&row, &|a: &Arm| a.rounds() as f64) {
            Ok((m, per_seed, pts)) => {
                c4.case(
                    (GROWTH.0..=GROWTH.1).contains(&m),
                    format!(
                        "s = {s}: exponent {m:.3} (per seed {}) over (T, mean regret) {}",
                        mean_se_text(&per_seed),
                        points(&pts)
                    ),
                );
                c4.number(format!("s{s}.exponent"), m);
            }
            Err(why) => c4.note(format!("s = {s}: not decided: {why}")),
        }
    }
    checks.push(c4.finish());

    // 5. Reported: the three learners.
    let mut c5 = CheckBuilder::new(
        "5",
        Quantifier::Every,
        "reported: on the predictable paths (drift, switch) OOMD's regret is at most OGD's \
         (optimism pays where the next gradient is predictable); every arm's three regrets",
        "OOMD's mean regret is above OGD's on a predictable path",
    )
    .informational();
    for a in &arms {
        let line = format!(
            "{}: OOMD {} | OGD {} | AdaOGD {}",
            a.name,
            mean_se_text(&a.vals("regret_oomd")),
            mean_se_text(&a.vals("regret_ogd")),
            mean_se_text(&a.vals("regret_adaogd"))
        );
        if matches!(a.path(), "drift" | "switch") {
            let diff = a.mean("regret_oomd") - a.mean("regret_ogd");
            c5.case(diff <= 0.0, format!("{line}; OOMD - OGD {diff:+.4}"));
            c5.number(format!("{}.oomd_minus_ogd", a.name), diff);
        } else {
            c5.note(line);
        }
    }
    checks.push(c5.finish());

    // 6. Reported: per-seed ratios.
    let mut c6 = CheckBuilder::new(
        "6",
        Quantifier::Every,
        format!(
            "reported: every seed's OOMD regret / bound is at most {BOUND_FACTOR} (the largest \
             per arm)"
        ),
        "some seed's ratio exceeds the factor",
    )
    .informational();
    for a in &arms {
        let ratios: Vec<f64> = a
            .runs
            .iter()
            .map(|r| r.value("regret_oomd") / r.value("bound"))
            .collect();
        let max = ratios.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        c6.case(
            max <= BOUND_FACTOR,
            format!("{}: max ratio {max:.3} over {} seeds", a.name, ratios.len()),
        );
    }
    checks.push(c6.finish());

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

    fn run(arm: &str, seed: u64, kv: &[(&str, &str)], regret: f64, bound: f64) -> FinishedRun {
        let mut params = Params::defaults(&super::super::OomdSea.params());
        for (k, v) in kv {
            let value = match *k {
                "family" | "path" => ParamValue::Text(v.to_string()),
                "steps" => ParamValue::Int(v.parse().unwrap()),
                _ => ParamValue::Float(v.parse().unwrap()),
            };
            params.set(k, value);
        }
        let s = params.f64("s");
        let t = params.usize("steps") as f64;
        FinishedRun {
            arm: arm.into(),
            seed,
            params,
            status: RunStatus::Completed { steps: 10 },
            final_values: [
                ("regret_oomd", regret),
                ("regret_ogd", regret),
                ("regret_adaogd", regret),
                ("bound", bound),
                ("sigma2_cum", t * s * s),
                ("Sigma2_cum", 0.0),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        }
    }

    #[test]
    fn slopes_and_bounds_decide() {
        let slope_one = |c: f64| {
            vec![
                run("a", 0, &[("s", "0.1")], c * 0.1, 10.0),
                run("b", 0, &[("s", "1")], c * 1.0, 10.0),
            ]
        };
        let v = compute("c", "p", &slope_one(2.0));
        let c2 = v.check("2").unwrap();
        assert_eq!(c2.outcome, Outcome::Holds);
        assert!((c2.numbers["huber.slope"] - 1.0).abs() < 1e-12);
        // Regret above 1.5 x bound fails check 1.
        let v = compute("c", "p", &slope_one(20.0));
        assert_eq!(v.check("1").unwrap().outcome, Outcome::Fails);
        // Quadratic scaling fails check 2.
        let quad = vec![
            run("a", 0, &[("s", "0.1")], 0.01, 10.0),
            run("b", 0, &[("s", "1")], 1.0, 10.0),
        ];
        assert_eq!(
            compute("c", "p", &quad).check("2").unwrap().outcome,
            Outcome::Fails
        );
        // Growth with T: deterministic flat, noisy sqrt(T).
        let t = vec![
            run("d5", 0, &[("steps", "500")], 0.5, 1.0),
            run("d8", 0, &[("steps", "8000")], 0.5, 1.0),
            run("n5", 0, &[("steps", "500"), ("s", "0.3")], 1.0, 10.0),
            run("n8", 0, &[("steps", "8000"), ("s", "0.3")], 4.0, 40.0),
        ];
        let c4 = compute("c", "p", &t).check("4").unwrap().clone();
        assert_eq!(c4.outcome, Outcome::Holds, "{c4:?}");
        let t = vec![
            run("d5", 0, &[("steps", "500")], 0.5, 1.0),
            run("d8", 0, &[("steps", "8000")], 2.0, 1.0),
        ];
        assert_eq!(
            compute("c", "p", &t).check("4").unwrap().outcome,
            Outcome::Fails
        );
        // Negative mean regret on an axis: not decided.
        let neg = vec![
            run("a", 0, &[("s", "0.1")], -0.1, 10.0),
            run("b", 0, &[("s", "1")], 1.0, 10.0),
        ];
        assert_eq!(
            compute("c", "p", &neg).check("2").unwrap().outcome,
            Outcome::Inconclusive
        );
    }
}

//! lr-batch-rmt's verdict: the curvature law (checks 1-2) and the learning-rate law (3-4) judged
//! separately from the per-batch-size values the runs reported; 5-8 are reported only.

use std::collections::BTreeMap;

use super::{log_slope, slope};
use crate::experiments::FinishedRun;
use crate::verdict::{mean_se, usable, CheckBuilder, Quantifier, Verdict};

/// Batch sizes at or below this are the fitting range S (the runs' `s_max`).
fn s_max(r: &FinishedRun) -> usize {
    r.params.usize("s_max")
}

/// The values of `prefix<B>` keys of a run, by B ascending.
pub fn series(r: &FinishedRun, prefix: &str) -> Vec<(usize, f64)> {
    let mut out: Vec<(usize, f64)> = r
        .final_values
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix(prefix)
                .and_then(|b| b.parse::<usize>().ok())
                .map(|b| (b, *v))
        })
        .collect();
    out.sort_by_key(|p| p.0);
    out
}

/// The stable-lr points of a run that did not hit the cap.
fn lr_points(r: &FinishedRun) -> Vec<(usize, f64)> {
    series(r, "max_lr_b")
        .into_iter()
        .filter(|(b, v)| v.is_finite() && r.value(&format!("capped_b{b}")) == 0.0)
        .collect()
}

/// Ranks (1-based, ties averaged).
fn ranks(xs: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..xs.len()).collect();
    idx.sort_by(|&a, &b| xs[a].total_cmp(&xs[b]));
    let mut out = vec![0.0; xs.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && xs[idx[j + 1]] == xs[idx[i]] {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for k in i..=j {
            out[idx[k]] = r;
        }
        i = j + 1;
    }
    out
}

/// Spearman's rank correlation.
pub fn spearman(xs: &[f64], ys: &[f64]) -> f64 {
    let (rx, ry) = (ranks(xs), ranks(ys));
    let n = xs.len() as f64;
    let (mx, my) = (rx.iter().sum::<f64>() / n, ry.iter().sum::<f64>() / n);
    let sxy: f64 = rx.iter().zip(&ry).map(|(a, b)| (a - mx) * (b - my)).sum();
    let sxx: f64 = rx.iter().map(|a| (a - mx).powi(2)).sum();
    let syy: f64 = ry.iter().map(|b| (b - my).powi(2)).sum();
    sxy / (sxx * syy).sqrt()
}

/// Student's t 0.975 quantile for `dof` degrees of freedom.
fn t975(dof: usize) -> f64 {
    const T: [f64; 10] = [
        f64::NAN,
        12.706,
        4.303,
        3.182,
        2.776,
        2.571,
        2.447,
        2.365,
        2.306,
        2.262,
    ];
    T.get(dof).copied().unwrap_or(2.0)
}

/// "m +- se (95% CI [lo, hi] over n seeds)".
pub fn stat(xs: &[f64]) -> String {
    let (m, se) = mean_se(xs);
    if se.is_nan() {
        return format!("{m:.3} (1 seed)");
    }
    let t = t975(xs.len() - 1);
    format!(
        "{m:.3} +- {se:.3} (95% CI [{:.3}, {:.3}] over {} seeds)",
        m - t * se,
        m + t * se,
        xs.len()
    )
}

fn part<'a>(runs: &[&'a FinishedRun], part: &str, width: usize) -> Vec<&'a FinishedRun> {
    runs.iter()
        .copied()
        .filter(|r| r.params.text("part") == part && r.params.usize("width") == width)
        .collect()
}

/// The excess slope of one curvature run: ln(lambda_B - lambda_N) on ln(1/B - 1/N) over B < N
/// with a positive excess (NaN with fewer than three such points).
fn excess_slope(r: &FinishedRun) -> (f64, usize) {
    let n = r.value("n_train") as usize;
    let pts = series(r, "lambda_h_b");
    let Some(ln) = pts.iter().find(|p| p.0 == n).map(|p| p.1) else {
        return (f64::NAN, 0);
    };
    let (xs, ys): (Vec<f64>, Vec<f64>) = pts
        .iter()
        .filter(|(b, l)| *b < n && *l > ln)
        .map(|(b, l)| ((1.0 / *b as f64 - 1.0 / n as f64).ln(), (l - ln).ln()))
        .unzip();
    if xs.len() < 3 {
        return (f64::NAN, xs.len());
    }
    (slope(&xs, &ys), xs.len())
}

/// Per-seed lr slopes over S of the runs (those with at least 4 uncapped points in S), with
/// notes for the others.
fn lr_slopes(runs: &[&FinishedRun], notes: &mut Vec<String>) -> Vec<f64> {
    let mut out = Vec::new();
    for r in runs {
        let (s, k) = log_slope(&lr_points(r), s_max(r));
        if k >= 4 && s.is_finite() {
            out.push(s);
        } else {
            notes.push(format!(
                "{}: only {k} stable batch sizes in S (B <= {}) below the cap: left out",
                r.label(),
                s_max(r)
            ));
        }
    }
    out
}

fn curve_line(r: &FinishedRun, prefix: &str) -> String {
    series(r, prefix)
        .iter()
        .map(|(b, v)| format!("{b}: {v:.4}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn compute(claim: &str, preset_id: &str, runs: &[FinishedRun]) -> Verdict {
    let mut left_out = Vec::new();
    let ok = usable(
        runs,
        "warm_acc",
        "warm-start training accuracy",
        0.5,
        &mut left_out,
    );
    let mut widths: Vec<usize> = ok.iter().map(|r| r.params.usize("width")).collect();
    widths.sort_unstable();
    widths.dedup();
    let narrow = widths.first().copied().unwrap_or(0);
    let wide = widths.last().copied().filter(|&w| w > narrow);
    let curv = part(&ok, "curvature", narrow);
    let mut checks = Vec::new();

    // (1) lambda_max grows as B shrinks.
    let mut c1 = CheckBuilder::new(
        "1",
        Quantifier::Every,
        "lambda_max of the batch Hessian grows as the batch shrinks: in every seed \
         Spearman(B, lambda_max(B)) <= -0.8 and lambda_max(B_min) / lambda_max(N) >= 2",
        "some seed has Spearman > -0.8 or a ratio below 2",
    );
    for l in &left_out {
        c1.note(l.clone());
    }
    let (mut sps, mut ratios) = (Vec::new(), Vec::new());
    for r in &curv {
        let n = r.value("n_train") as usize;
        let pts = series(r, "lambda_h_b");
        let Some(ln) = pts.iter().find(|p| p.0 == n).map(|p| p.1) else {
            c1.note(format!(
                "{}: no full-data point (B = N), left out",
                r.label()
            ));
            continue;
        };
        let (bs, ls): (Vec<f64>, Vec<f64>) = pts.iter().map(|(b, l)| (*b as f64, *l)).unzip();
        let sp = spearman(&bs, &ls);
        let ratio = pts[0].1 / ln;
        sps.push(sp);
        ratios.push(ratio);
        c1.case(
            sp <= -0.8 && ratio >= 2.0,
            format!(
                "{}: Spearman {sp:.3}, lambda_max(B={}) / lambda_max(N={n}) = {ratio:.2}; \
                 lambda_B / lambda_N per B: {}",
                r.label(),
                pts[0].0,
                pts.iter()
                    .map(|(b, l)| format!("{b}: {:.2}", l / ln))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }
    if !sps.is_empty() {
        c1.note(format!(
            "width {narrow}: Spearman {}, ratio {}",
            stat(&sps),
            stat(&ratios)
        ));
        c1.number("spearman", mean_se(&sps).0);
        c1.number("ratio_bmin_over_n", mean_se(&ratios).0);
    }
    if let Some(w) = wide {
        for r in part(&ok, "curvature", w) {
            c1.note(format!(
                "(width {w}, not judged) {}: lambda_max per B: {}",
                r.label(),
                curve_line(r, "lambda_h_b")
            ));
        }
    }
    checks.push(c1.finish());

    // (2) the excess follows (1/B - 1/N)^k with k in [0.5, 1.2].
    let mut c2 = CheckBuilder::new(
        "2",
        Quantifier::Every,
        "RMT form: the slope of ln(lambda_B - lambda_N) on ln(1/B - 1/N) over B < N, mean over \
         seeds, is in [0.5, 1.2] (1 in the outlier regime, 0.5 at the bulk edge)",
        "the mean slope is outside [0.5, 1.2]",
    );
    let mut ex = Vec::new();
    for r in &curv {
        let (s, k) = excess_slope(r);
        if s.is_finite() {
            ex.push(s);
            c2.note(format!("{}: slope {s:.3} over {k} batch sizes", r.label()));
        } else {
            c2.note(format!(
                "{}: only {k} batch sizes with lambda_B > lambda_N, left out",
                r.label()
            ));
        }
    }
    if !ex.is_empty() {
        let m = mean_se(&ex).0;
        c2.number("excess_slope", m);
        c2.case(
            (0.5..=1.2).contains(&m),
            format!("width {narrow}: excess slope {}", stat(&ex)),
        );
    }
    if let Some(w) = wide {
        let ws: Vec<f64> = part(&ok, "curvature", w)
            .iter()
            .map(|r| excess_slope(r).0)
            .filter(|s| s.is_finite())
            .collect();
        if !ws.is_empty() {
            c2.note(format!(
                "(width {w}, not judged) excess slope {}",
                stat(&ws)
            ));
            c2.number("excess_slope_wide", mean_se(&ws).0);
        }
    }
    checks.push(c2.finish());

    // (3) and (4): the learning-rate laws, on the wide arms when they ran.
    let judged = |p: &str| -> (usize, Vec<&FinishedRun>) {
        if let Some(w) = wide {
            let rs = part(&ok, p, w);
            if !rs.is_empty() {
                return (w, rs);
            }
        }
        (narrow, part(&ok, p, narrow))
    };
    let (w_sgd, sgd_runs) = judged("sgd");
    let (w_adam, adam_runs) = judged("adam");
    let mut c3 = CheckBuilder::new(
        "3",
        Quantifier::Every,
        "SGD linear scaling: the slope of ln max_lr_sgd on ln B over S, mean over seeds, is in \
         [0.75, 1.25]",
        "the mean SGD slope is outside [0.75, 1.25]",
    );
    let mut notes = Vec::new();
    let sgd = lr_slopes(&sgd_runs, &mut notes);
    for n in notes.drain(..) {
        c3.note(n);
    }
    for r in &sgd_runs {
        c3.note(format!(
            "{} (width {w_sgd}): max lr per B: {}",
            r.label(),
            curve_line(r, "max_lr_b")
        ));
    }
    let slopes_at = |p: &str, w: usize| -> Vec<f64> {
        part(&ok, p, w)
            .iter()
            .map(|r| log_slope(&lr_points(r), s_max(r)))
            .filter(|(s, k)| *k >= 4 && s.is_finite())
            .map(|(s, _)| s)
            .collect()
    };
    if !sgd.is_empty() {
        let m = mean_se(&sgd).0;
        c3.number("sgd_slope", m);
        c3.case(
            (0.75..=1.25).contains(&m),
            format!("width {w_sgd}: SGD exponent {} (claimed 1)", stat(&sgd)),
        );
    }
    checks.push(c3.finish());

    let mut c4 = CheckBuilder::new(
        "4",
        Quantifier::Every,
        "Adam square-root scaling: the slope of ln max_lr_adam on ln B over S, mean over seeds, \
         is in [0.3, 0.7] and at least 0.2 below the SGD slope",
        "the mean Adam slope is outside [0.3, 0.7], or not 0.2 below SGD's",
    );
    let adam = lr_slopes(&adam_runs, &mut notes);
    for n in notes.drain(..) {
        c4.note(n);
    }
    for r in &adam_runs {
        c4.note(format!(
            "{} (width {w_adam}): max lr per B: {}",
            r.label(),
            curve_line(r, "max_lr_b")
        ));
        let capped: Vec<String> = series(r, "capped_b")
            .iter()
            .filter(|(_, c)| *c > 0.0)
            .map(|(b, _)| b.to_string())
            .collect();
        if !capped.is_empty() {
            c4.note(format!(
                "{}: the search reached the cap at B = {} (inconclusive there, left out)",
                r.label(),
                capped.join(", ")
            ));
        }
    }
    if !adam.is_empty() && !sgd.is_empty() {
        let (ma, ms) = (mean_se(&adam).0, mean_se(&sgd).0);
        c4.number("adam_slope", ma);
        c4.case(
            (0.3..=0.7).contains(&ma) && ms - ma >= 0.2,
            format!(
                "width {w_adam}: Adam exponent {} (claimed 0.5); SGD - Adam = {:.3}",
                stat(&adam),
                ms - ma
            ),
        );
    }
    checks.push(c4.finish());

    // (5) Gauss-Newton against the Hessian.
    let mut c5 = CheckBuilder::new(
        "5",
        Quantifier::Every,
        "reported: the Gauss-Newton lambda_max tracks the Hessian's, |lambda_GN / lambda_H - 1| \
         per B (mean over seeds)",
        "reported only",
    )
    .informational();
    for &w in &widths {
        let rs = part(&ok, "curvature", w);
        let mut per_b: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
        for r in &rs {
            let h: BTreeMap<usize, f64> = series(r, "lambda_h_b").into_iter().collect();
            for (b, g) in series(r, "lambda_gn_b") {
                if let Some(hv) = h.get(&b) {
                    per_b.entry(b).or_default().push((g / hv - 1.0).abs());
                }
            }
        }
        if !per_b.is_empty() {
            c5.note(format!(
                "width {w}: {}",
                per_b
                    .iter()
                    .map(|(b, v)| format!("{b}: {:.3}", mean_se(v).0))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    checks.push(c5.finish());

    // (6) the curvature-predicted exponent and max_lr_sgd / (2 / lambda_B).
    let mut c6 = CheckBuilder::new(
        "6",
        Quantifier::Every,
        "reported: the exponent of 2/lambda_B over S (what a perfect lr = 2/lambda rule would \
         give) and max_lr_sgd / (2/lambda_B) per B",
        "reported only",
    )
    .informational();
    for &w in &widths {
        let rs = part(&ok, "curvature", w);
        let pred: Vec<f64> = rs
            .iter()
            .map(|r| {
                let two: Vec<(usize, f64)> = series(r, "lambda_h_b")
                    .iter()
                    .map(|(b, l)| (*b, 2.0 / l))
                    .collect();
                log_slope(&two, s_max(r)).0
            })
            .filter(|s| s.is_finite())
            .collect();
        if !pred.is_empty() {
            c6.note(format!(
                "width {w}: curvature-predicted exponent {}",
                stat(&pred)
            ));
            c6.number(format!("predicted_exponent_w{w}"), mean_se(&pred).0);
        }
        let mut per_b: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
        for s in part(&ok, "sgd", w) {
            if let Some(c) = rs.iter().find(|c| c.seed == s.seed) {
                let l: BTreeMap<usize, f64> = series(c, "lambda_h_b").into_iter().collect();
                for (b, lr) in lr_points(s) {
                    if let Some(lv) = l.get(&b) {
                        per_b.entry(b).or_default().push(lr / (2.0 / lv));
                    }
                }
            }
        }
        if !per_b.is_empty() {
            c6.note(format!(
                "width {w}: max_lr_sgd / (2/lambda_B): {}",
                per_b
                    .iter()
                    .map(|(b, v)| format!("{b}: {:.2}", mean_se(v).0))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    checks.push(c6.finish());

    // (7) saturation.
    let mut c7 = CheckBuilder::new(
        "7",
        Quantifier::Every,
        "reported: saturation, max_lr_sgd(N) / max_lr_sgd(s_max) (the linear rule predicts N / \
         s_max)",
        "reported only",
    )
    .informational();
    for &w in &widths {
        let mut sat = Vec::new();
        let mut predicted = f64::NAN;
        for r in part(&ok, "sgd", w) {
            let n = r.value("n_train") as usize;
            let pts: BTreeMap<usize, f64> = lr_points(r).into_iter().collect();
            if let (Some(a), Some(b)) = (pts.get(&n), pts.get(&s_max(r))) {
                sat.push(a / b);
                predicted = n as f64 / s_max(r) as f64;
            }
        }
        if !sat.is_empty() {
            c7.note(format!(
                "width {w}: {} (linear rule: {predicted:.0})",
                stat(&sat)
            ));
        }
    }
    checks.push(c7.finish());

    // (8) the width trend.
    let mut c8 = CheckBuilder::new(
        "8",
        Quantifier::Every,
        "reported: SGD and Adam exponents at each width (the theory predicts them to move towards \
         1 and 1/2 as P/B grows)",
        "reported only",
    )
    .informational();
    for &w in &widths {
        let (s, a) = (slopes_at("sgd", w), slopes_at("adam", w));
        let p = ok
            .iter()
            .find(|r| r.params.usize("width") == w)
            .map(|r| r.value("num_params"))
            .unwrap_or(f64::NAN);
        c8.note(format!(
            "width {w} (P = {p:.0}): SGD {}, Adam {}",
            if s.is_empty() { "-".into() } else { stat(&s) },
            if a.is_empty() { "-".into() } else { stat(&a) },
        ));
        if !s.is_empty() {
            c8.number(format!("sgd_slope_w{w}"), mean_se(&s).0);
        }
        if !a.is_empty() {
            c8.number(format!("adam_slope_w{w}"), mean_se(&a).0);
        }
    }
    checks.push(c8.finish());

    Verdict {
        preset: preset_id.to_string(),
        claim: claim.to_string(),
        checks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spearman_handles_ties_and_order() {
        assert!((spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        assert!((spearman(&[1.0, 2.0, 3.0, 4.0], &[1.0, 3.0, 2.0, 4.0]) - 0.8).abs() < 1e-12);
        assert_eq!(ranks(&[2.0, 1.0, 2.0]), vec![2.5, 1.0, 2.5]);
    }

    #[test]
    fn log_slopes_recover_power_laws() {
        let pts: Vec<(usize, f64)> = [2, 4, 8, 16, 32, 64, 128]
            .iter()
            .map(|&b| (b, 0.01 * (b as f64).powf(0.5)))
            .collect();
        let (s, k) = log_slope(&pts, 64);
        assert_eq!(k, 6);
        assert!((s - 0.5).abs() < 1e-12);
    }
}

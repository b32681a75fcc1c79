//! Test-set measures as the PS-KD code computes them (`utils/metric.py`), in f64 on the host:
//! ECE over 10 equal-width confidence bins `(k/10, (k+1)/10]` in percent, and AURC (area under
//! the risk-coverage curve) x 1000. Confidence is the largest softmax probability, the
//! prediction its argmax (the first on ties).

use crate::metrics::classification::argmax;

/// One bin of the reliability diagram.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Bin {
    pub count: usize,
    /// Mean confidence of the bin's points (0 when empty).
    pub confidence: f64,
    /// Their accuracy (0 when empty).
    pub accuracy: f64,
}

/// Everything one evaluation reports.
#[derive(Clone, Debug, PartialEq)]
pub struct TestMeasures {
    pub accuracy: f64,
    /// Mean `-ln p[label]` (probabilities floored at 1e-15).
    pub nll: f64,
    /// `100 * sum_bins |acc - conf| n_bin / n`.
    pub ece: f64,
    pub mean_confidence: f64,
    /// Area under the risk-coverage curve x 1000.
    pub aurc: f64,
    pub bins: Vec<Bin>,
}

/// Bins of the official ECE.
pub const BINS: usize = 10;

/// The bin of a confidence under the `(lo, hi]` convention (a confidence of 0 goes to the
/// first bin).
pub fn bin_of(conf: f64) -> usize {
    let mut b = (conf * BINS as f64).ceil() as usize;
    // Correct the float rounding of `conf * BINS` against the edges k / BINS themselves.
    while b > 0 && conf <= (b - 1) as f64 / BINS as f64 {
        b -= 1;
    }
    while b < BINS && conf > b as f64 / BINS as f64 {
        b += 1;
    }
    b.clamp(1, BINS) - 1
}

/// Measures of row-major `n x classes` probabilities against labels.
pub fn measure(probs: &[f64], labels: &[usize], classes: usize) -> TestMeasures {
    let n = labels.len();
    assert_eq!(probs.len(), n * classes, "one probability row per label");
    assert!(n > 0, "measures need points");
    let mut sums = vec![(0usize, 0.0f64, 0.0f64); BINS];
    let mut points = Vec::with_capacity(n);
    let (mut nll, mut conf_sum, mut hits) = (0.0, 0.0, 0.0);
    for (row, &label) in probs.chunks(classes).zip(labels) {
        let pred = argmax(row);
        let conf = row[pred];
        let hit = if pred == label { 1.0 } else { 0.0 };
        let b = &mut sums[bin_of(conf)];
        *b = (b.0 + 1, b.1 + conf, b.2 + hit);
        nll -= row[label].max(1e-15).ln();
        conf_sum += conf;
        hits += hit;
        points.push((conf, 1.0 - hit));
    }
    let bins: Vec<Bin> = sums
        .iter()
        .map(|&(count, c, h)| Bin {
            count,
            confidence: if count > 0 { c / count as f64 } else { 0.0 },
            accuracy: if count > 0 { h / count as f64 } else { 0.0 },
        })
        .collect();
    let ece = 100.0
        * bins
            .iter()
            .map(|b| (b.accuracy - b.confidence).abs() * b.count as f64 / n as f64)
            .sum::<f64>();
    TestMeasures {
        accuracy: hits / n as f64,
        nll: nll / n as f64,
        ece,
        mean_confidence: conf_sum / n as f64,
        aurc: aurc(&mut points) * 1000.0,
        bins,
    }
}

/// AURC of `(confidence, error)` points: sorted by confidence, highest first (a stable sort,
/// ties in input order), the mean over k of the error rate of the k most confident points.
pub fn aurc(points: &mut [(f64, f64)]) -> f64 {
    points.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut errors = 0.0;
    let mut total = 0.0;
    for (k, (_, e)) in points.iter().enumerate() {
        errors += e;
        total += errors / (k + 1) as f64;
    }
    total / points.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_are_closed_above() {
        assert_eq!(bin_of(0.0), 0);
        assert_eq!(bin_of(0.1), 0);
        assert_eq!(bin_of(0.1000001), 1);
        assert_eq!(bin_of(0.3), 2);
        assert_eq!(bin_of(0.7), 6);
        assert_eq!(bin_of(1.0), 9);
        assert_eq!(bin_of(0.95), 9);
    }

    #[test]
    fn ece_and_aurc_by_hand() {
        // Four points over two classes: confidences 0.9 (right), 0.8 (wrong), 0.6 (right),
        // 0.55 (wrong).
        let probs = [0.9, 0.1, 0.2, 0.8, 0.6, 0.4, 0.45, 0.55];
        let labels = [0, 0, 0, 0];
        let m = measure(&probs, &labels, 2);
        assert_eq!(m.accuracy, 0.5);
        // Bins: (0.8,0.9] {0.9 right}, (0.7,0.8] {0.8 wrong}, (0.5,0.6] {0.6 right, 0.55 wrong}.
        let want = 100.0 * ((1.0 - 0.9) + 0.8 + 2.0 * (0.575f64 - 0.5).abs()) / 4.0;
        assert!((m.ece - want).abs() < 1e-9, "{} vs {want}", m.ece);
        // Running error rates 0, 1/2, 1/3, 2/4: mean 1/3.
        assert!((m.aurc - 1000.0 / 3.0).abs() < 1e-9, "{}", m.aurc);
        let nll = -(0.9f64.ln() + 0.2f64.ln() + 0.6f64.ln() + 0.45f64.ln()) / 4.0;
        assert!((m.nll - nll).abs() < 1e-12);
    }
}

//! Classification metrics on host slices: softmax, mean cross-entropy from logits, accuracy and
//! calibration (equal-width expected calibration error, reliability bins, NLL). Scores are f64,
//! row-major `n x classes`, one row per sample; labels are class indices.

/// Row-wise softmax of row-major `n x classes` logits, computed stably (each row is shifted by
/// its maximum before exponentiating).
pub fn softmax_rows(logits: &[f64], classes: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(logits.len());
    for row in rows(logits, classes) {
        let max = row_max(row);
        let start = out.len();
        out.extend(row.iter().map(|v| (v - max).exp()));
        let total: f64 = out[start..].iter().sum();
        out[start..].iter_mut().for_each(|p| *p /= total);
    }
    out
}

/// Mean over samples of `-log softmax(logits)[label]`, with a stable log-sum-exp.
pub fn cross_entropy_from_logits(logits: &[f64], labels: &[usize], classes: usize) -> f64 {
    check_labels(logits, labels, classes);
    let total: f64 = rows(logits, classes)
        .zip(labels)
        .map(|(row, &label)| {
            let max = row_max(row);
            let log_sum_exp = max + row.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
            log_sum_exp - row[label]
        })
        .sum();
    total / labels.len() as f64
}

/// Index of the largest score in a row (the first one on ties).
pub fn argmax(row: &[f64]) -> usize {
    let mut best = 0;
    for (i, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = i;
        }
    }
    best
}

/// Fraction of rows whose argmax is the label. Works on logits and on probabilities alike.
pub fn accuracy(scores: &[f64], labels: &[usize], classes: usize) -> f64 {
    check_labels(scores, labels, classes);
    let correct = rows(scores, classes)
        .zip(labels)
        .filter(|(row, &label)| argmax(row) == label)
        .count();
    correct as f64 / labels.len() as f64
}

/// One equal-width confidence bin of a reliability diagram.
#[derive(Clone, Debug, PartialEq)]
pub struct CalibrationBin {
    pub lower: f64,
    pub upper: f64,
    /// Samples whose confidence falls in the bin.
    pub count: usize,
    /// Mean confidence of those samples (0 when the bin is empty).
    pub mean_confidence: f64,
    /// Fraction of those samples predicted correctly (0 when the bin is empty).
    pub accuracy: f64,
}

/// Calibration summary of predicted probabilities.
#[derive(Clone, Debug, PartialEq)]
pub struct Calibration {
    /// Expected calibration error: sum over bins of `count / n * |accuracy - mean_confidence|`.
    pub ece: f64,
    pub bins: Vec<CalibrationBin>,
    /// Mean negative log probability of the true class (probabilities clamped below at
    /// `NLL_FLOOR`, so a zero costs about 34.5 nats instead of infinity).
    pub nll: f64,
    pub mean_confidence: f64,
    pub accuracy: f64,
}

/// Smallest probability the NLL takes a logarithm of.
pub const NLL_FLOOR: f64 = 1e-15;

/// Calibration of row-major `n x classes` probabilities. A sample's confidence is its largest
/// probability and its prediction the argmax. Bins split `[0, 1]` into `n_bins` equal widths;
/// bin `b` holds confidences in `[b / n_bins, (b + 1) / n_bins)`, except the last one, which
/// also holds a confidence of exactly 1 (a confidence of 0 lands in the first bin).
pub fn calibration(probs: &[f64], labels: &[usize], classes: usize, n_bins: usize) -> Calibration {
    check_labels(probs, labels, classes);
    assert!(n_bins > 0, "calibration needs at least one bin");
    let edge = |b: usize| b as f64 / n_bins as f64;
    let mut sums = vec![(0usize, 0.0, 0.0); n_bins];
    let (mut nll, mut confidence, mut correct) = (0.0, 0.0, 0.0);
    for (row, &label) in rows(probs, classes).zip(labels) {
        let predicted = argmax(row);
        let conf = row[predicted];
        let hit = if predicted == label { 1.0 } else { 0.0 };
        let bin = &mut sums[bin_index(conf, n_bins)];
        *bin = (bin.0 + 1, bin.1 + conf, bin.2 + hit);
        nll -= row[label].max(NLL_FLOOR).ln();
        confidence += conf;
        correct += hit;
    }
    let n = labels.len() as f64;
    let bins: Vec<CalibrationBin> = sums
        .iter()
        .enumerate()
        .map(|(b, &(count, conf, hits))| {
            let per = |total: f64| {
                if count == 0 {
                    0.0
                } else {
                    total / count as f64
                }
            };
            CalibrationBin {
                lower: edge(b),
                upper: edge(b + 1),
                count,
                mean_confidence: per(conf),
                accuracy: per(hits),
            }
        })
        .collect();
    let ece = bins
        .iter()
        .map(|b| b.count as f64 / n * (b.accuracy - b.mean_confidence).abs())
        .sum();
    Calibration {
        ece,
        bins,
        nll: nll / n,
        mean_confidence: confidence / n,
        accuracy: correct / n,
    }
}

/// The bin of a confidence, compared against the same edges `b / n_bins` the bins report.
fn bin_index(conf: f64, n_bins: usize) -> usize {
    let edge = |b: usize| b as f64 / n_bins as f64;
    let mut b = ((conf * n_bins as f64).floor().max(0.0) as usize).min(n_bins - 1);
    while b > 0 && conf < edge(b) {
        b -= 1;
    }
    while b + 1 < n_bins && conf >= edge(b + 1) {
        b += 1;
    }
    b
}

fn rows(scores: &[f64], classes: usize) -> std::slice::Chunks<'_, f64> {
    assert!(classes > 0, "need at least one class");
    assert_eq!(scores.len() % classes, 0, "scores are not n x {classes}");
    scores.chunks(classes)
}

fn row_max(row: &[f64]) -> f64 {
    row.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

fn check_labels(scores: &[f64], labels: &[usize], classes: usize) {
    assert!(!labels.is_empty(), "need at least one sample");
    assert_eq!(
        scores.len(),
        labels.len() * classes,
        "one row of scores per label"
    );
    assert!(
        labels.iter().all(|&l| l < classes),
        "a label is not below {classes}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn softmax_rows_normalise_and_survive_large_logits() {
        let p = softmax_rows(&[0.0, 3f64.ln(), 1000.0, 1000.0], 2);
        assert!(close(p[0], 0.25) && close(p[1], 0.75));
        assert!(close(p[2], 0.5) && close(p[3], 0.5));
    }

    #[test]
    fn cross_entropy_of_uniform_logits_is_ln_classes() {
        for classes in [2, 3, 10] {
            let logits = vec![7.3; 4 * classes];
            let ce = cross_entropy_from_logits(&logits, &[0, 1, 0, 1], classes);
            assert!(close(ce, (classes as f64).ln()), "{ce}");
        }
    }

    #[test]
    fn cross_entropy_on_hand_cases() {
        // Probabilities (1/4, 3/4): label 1 costs ln(4/3), label 0 costs ln 4.
        let logits = [0.0, 3f64.ln(), 0.0, 3f64.ln()];
        let ce = cross_entropy_from_logits(&logits, &[1, 0], 2);
        assert!(close(ce, ((4.0f64 / 3.0).ln() + 4f64.ln()) / 2.0));
        // Large logits stay finite: about 0 for the right class, 1000 for the wrong one.
        assert!(close(
            cross_entropy_from_logits(&[1000.0, 0.0], &[0], 2),
            0.0
        ));
        assert!(close(
            cross_entropy_from_logits(&[1000.0, 0.0], &[1], 2),
            1000.0
        ));
    }

    #[test]
    fn accuracy_counts_argmax_hits() {
        let logits = [2.0, 1.0, 0.0, 0.0, 5.0, 1.0, 1.0, 1.0, 0.0, 3.0, 3.0, 9.0];
        // Argmaxes 0, 1, 0 (tie goes to the first), 2.
        assert!(close(accuracy(&logits, &[0, 1, 1, 2], 3), 0.75));
        assert_eq!(argmax(&[1.0, 4.0, 4.0]), 1);
    }

    #[test]
    fn ece_on_a_hand_computed_case() {
        // Confidences 0.9 (right), 0.85 (wrong), 0.7 (right), 0.55 (wrong); five bins of 0.2.
        let probs = [0.9, 0.1, 0.15, 0.85, 0.7, 0.3, 0.55, 0.45];
        let cal = calibration(&probs, &[0, 0, 0, 1], 2, 5);
        // Bin [0.8, 1]: 2 samples, conf 0.875, acc 0.5 -> 0.5 * 0.375 = 0.1875.
        // Bin [0.6, 0.8): 1 sample, conf 0.7, acc 1 -> 0.25 * 0.3 = 0.075.
        // Bin [0.4, 0.6): 1 sample, conf 0.55, acc 0 -> 0.25 * 0.55 = 0.1375.
        assert!(close(cal.ece, 0.4), "{}", cal.ece);
        let counts: Vec<usize> = cal.bins.iter().map(|b| b.count).collect();
        assert_eq!(counts, vec![0, 0, 1, 1, 2]);
        assert!(close(cal.bins[4].mean_confidence, 0.875) && close(cal.bins[4].accuracy, 0.5));
        assert!(close(cal.bins[2].lower, 0.4) && close(cal.bins[2].upper, 0.6));
        assert!(close(cal.mean_confidence, 0.75) && close(cal.accuracy, 0.5));
        let nll = -(0.9f64.ln() + 0.15f64.ln() + 0.7f64.ln() + 0.45f64.ln()) / 4.0;
        assert!(close(cal.nll, nll));
    }

    #[test]
    fn perfect_predictions_have_ece_one_minus_confidence() {
        let one_hot = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0];
        let cal = calibration(&one_hot, &[0, 1], 3, 10);
        assert!(close(cal.accuracy, 1.0) && close(cal.ece, 0.0) && close(cal.nll, 0.0));
        assert_eq!(cal.bins[9].count, 2);
        let soft = [0.8, 0.2, 0.2, 0.8, 0.8, 0.2];
        let cal = calibration(&soft, &[0, 1, 0], 2, 10);
        assert!(
            close(cal.accuracy, 1.0) && close(cal.ece, 0.2),
            "{}",
            cal.ece
        );
    }

    #[test]
    fn bin_edges_are_left_closed() {
        assert_eq!(bin_index(0.0, 10), 0);
        assert_eq!(bin_index(1.0, 10), 9);
        assert_eq!(bin_index(0.5, 2), 1);
        assert_eq!(bin_index(0.3, 10), 3);
        assert_eq!(bin_index(0.7, 10), 7);
        assert_eq!(bin_index(0.7 - 1e-12, 10), 6);
        let cal = calibration(&[0.0, 0.0], &[1], 2, 4);
        assert_eq!(cal.bins[0].count, 1);
        assert!(close(cal.nll, -NLL_FLOOR.ln()));
    }
}

//! Label utilities: one-hot encoding, synthetic label noise (symmetric and asymmetric, following
//! the convention of the ELR paper's official code) and stratified train/test splits.

use rand::seq::{index, SliceRandom};
use rand::Rng;

/// Labels after injecting noise, next to a mask of which ones now differ from the true label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoisyLabels {
    pub labels: Vec<usize>,
    /// `flipped[i]` is true when `labels[i]` differs from the true label of sample `i`.
    pub flipped: Vec<bool>,
}

impl NoisyLabels {
    fn compare(true_labels: &[usize], labels: Vec<usize>) -> NoisyLabels {
        let flipped = labels
            .iter()
            .zip(true_labels)
            .map(|(a, b)| a != b)
            .collect();
        NoisyLabels { labels, flipped }
    }

    /// Fraction of labels that differ from the true ones (0 for no labels).
    pub fn flipped_fraction(&self) -> f64 {
        if self.flipped.is_empty() {
            return 0.0;
        }
        self.flipped.iter().filter(|f| **f).count() as f64 / self.flipped.len() as f64
    }
}

/// Labels as one-hot rows, row-major `labels.len() x classes`.
///
/// # Panics
/// If a label is not below `classes`.
pub fn one_hot(labels: &[usize], classes: usize) -> Vec<f32> {
    let mut out = vec![0.0; labels.len() * classes];
    for (i, &label) in labels.iter().enumerate() {
        assert!(
            label < classes,
            "label {label} is not below {classes} classes"
        );
        out[i * classes + label] = 1.0;
    }
    out
}

/// How many of `n` items a `fraction` selects: `round(fraction * n)`, halves rounded up.
pub fn fraction_count(n: usize, fraction: f64) -> usize {
    assert!(
        (0.0..=1.0).contains(&fraction),
        "fraction {fraction} is outside [0, 1]"
    );
    (fraction * n as f64).round() as usize
}

/// Symmetric noise: `fraction_count(n, fraction)` samples, chosen without replacement, get a label
/// drawn uniformly from all `classes` classes, which may equal the true one. The expected
/// fraction of wrong labels is therefore `fraction * (classes - 1) / classes`.
pub fn symmetric_noise(
    labels: &[usize],
    classes: usize,
    fraction: f64,
    rng: &mut impl Rng,
) -> NoisyLabels {
    let mut noisy = labels.to_vec();
    for i in index::sample(rng, labels.len(), fraction_count(labels.len(), fraction)) {
        noisy[i] = rng.gen_range(0..classes);
    }
    NoisyLabels::compare(labels, noisy)
}

/// Asymmetric (class-dependent) noise: within each class `c`, `fraction_count(n_c, fraction)` of
/// its samples, chosen without replacement, get the label `map(c)`. A class that `map` sends to
/// itself keeps all its labels (as for the untouched classes of the CIFAR-10 flips).
///
/// # Panics
/// If `map` sends a class outside `0..classes`.
pub fn asymmetric_noise(
    labels: &[usize],
    classes: usize,
    fraction: f64,
    map: &dyn Fn(usize) -> usize,
    rng: &mut impl Rng,
) -> NoisyLabels {
    let mut noisy = labels.to_vec();
    for (class, members) in indices_by_class(labels, classes).iter().enumerate() {
        let target = map(class);
        assert!(
            target < classes,
            "class {class} maps to {target}, not below {classes}"
        );
        for j in index::sample(rng, members.len(), fraction_count(members.len(), fraction)) {
            noisy[members[j]] = target;
        }
    }
    NoisyLabels::compare(labels, noisy)
}

/// Indices of train and test samples: within each class, `round(train_fraction * n_c)` of its
/// samples (chosen at random) go to train and the rest to test, so both sets keep the class
/// proportions. Each returned list is shuffled, so classes come interleaved.
pub fn stratified_split(
    labels: &[usize],
    train_fraction: f64,
    rng: &mut impl Rng,
) -> (Vec<usize>, Vec<usize>) {
    let classes = labels.iter().max().map_or(0, |m| m + 1);
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for mut members in indices_by_class(labels, classes) {
        members.shuffle(rng);
        let n_train = fraction_count(members.len(), train_fraction);
        train.extend_from_slice(&members[..n_train]);
        test.extend_from_slice(&members[n_train..]);
    }
    train.shuffle(rng);
    test.shuffle(rng);
    (train, test)
}

/// For each class, the indices of the samples with that label, in increasing order.
fn indices_by_class(labels: &[usize], classes: usize) -> Vec<Vec<usize>> {
    let mut by_class = vec![Vec::new(); classes];
    for (i, &label) in labels.iter().enumerate() {
        assert!(
            label < classes,
            "label {label} is not below {classes} classes"
        );
        by_class[label].push(i);
    }
    by_class
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn balanced_labels(n: usize, classes: usize) -> Vec<usize> {
        (0..n).map(|i| i % classes).collect()
    }

    #[test]
    fn one_hot_marks_each_label() {
        assert_eq!(
            one_hot(&[2, 0, 1], 3),
            vec![0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        );
        assert!(one_hot(&[], 4).is_empty());
    }

    #[test]
    #[should_panic(expected = "not below")]
    fn one_hot_rejects_out_of_range_labels() {
        one_hot(&[3], 3);
    }

    #[test]
    fn fraction_count_rounds_half_up() {
        assert_eq!(fraction_count(10, 0.25), 3);
        assert_eq!(fraction_count(10, 0.24), 2);
        assert_eq!(fraction_count(7, 0.0), 0);
        assert_eq!(fraction_count(7, 1.0), 7);
    }

    #[test]
    fn symmetric_noise_flips_fraction_times_c_minus_one_over_c() {
        let labels = balanced_labels(100_000, 10);
        let noisy = symmetric_noise(&labels, 10, 0.4, &mut StdRng::seed_from_u64(0));
        // 40 000 resampled labels, each wrong with probability 0.9: 0.36 +- 0.0006 (1 sd).
        assert!((noisy.flipped_fraction() - 0.36).abs() < 0.003);
        assert!(noisy.labels.iter().all(|&l| l < 10));
        for ((noisy_label, flipped), label) in noisy.labels.iter().zip(&noisy.flipped).zip(&labels)
        {
            assert_eq!(*flipped, noisy_label != label);
        }
    }

    #[test]
    fn symmetric_noise_resamples_exactly_round_fraction_n() {
        // With a huge label space a resampled label essentially never equals the true one, so
        // the number of wrong labels is the number of resampled positions.
        let labels = balanced_labels(1000, 10);
        let noisy = symmetric_noise(&labels, 1 << 40, 0.3, &mut StdRng::seed_from_u64(1));
        assert_eq!(noisy.flipped.iter().filter(|f| **f).count(), 300);
        let none = symmetric_noise(&labels, 10, 0.0, &mut StdRng::seed_from_u64(1));
        assert_eq!(none.labels, labels);
        assert_eq!(none.flipped_fraction(), 0.0);
    }

    #[test]
    fn noise_is_deterministic_given_the_seed() {
        let labels = balanced_labels(500, 10);
        let run = |seed| symmetric_noise(&labels, 10, 0.5, &mut StdRng::seed_from_u64(seed));
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        let map = |c: usize| (c + 1) % 10;
        let asym =
            |seed| asymmetric_noise(&labels, 10, 0.4, &map, &mut StdRng::seed_from_u64(seed));
        assert_eq!(asym(3), asym(3));
        assert_ne!(asym(3), asym(4));
    }

    #[test]
    fn asymmetric_noise_flips_exact_counts_per_class() {
        // Class sizes 5, 4 and 3; class 2 maps to itself.
        let labels = vec![0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2];
        let map = |c: usize| [1, 0, 2][c];
        let noisy = asymmetric_noise(&labels, 3, 0.5, &map, &mut StdRng::seed_from_u64(2));
        let flipped_in = |class: usize| {
            (0..labels.len())
                .filter(|&i| labels[i] == class && noisy.flipped[i])
                .count()
        };
        // round(2.5) = 3, round(2.0) = 2, and class 2 never changes.
        assert_eq!(flipped_in(0), 3);
        assert_eq!(flipped_in(1), 2);
        assert_eq!(flipped_in(2), 0);
        for ((&noisy_label, &flipped), &label) in
            noisy.labels.iter().zip(&noisy.flipped).zip(&labels)
        {
            assert_eq!(noisy_label, if flipped { map(label) } else { label });
        }
    }

    #[test]
    fn stratified_split_keeps_class_proportions() {
        // 30 of class 0, 20 of class 1, 10 of class 2, interleaved.
        let labels: Vec<usize> = (0..60).map(|i| [0, 0, 0, 1, 1, 2][i % 6]).collect();
        let (train, test) = stratified_split(&labels, 0.7, &mut StdRng::seed_from_u64(5));
        let count = |idx: &[usize], class| idx.iter().filter(|&&i| labels[i] == class).count();
        assert_eq!(
            [count(&train, 0), count(&train, 1), count(&train, 2)],
            [21, 14, 7]
        );
        assert_eq!(
            [count(&test, 0), count(&test, 1), count(&test, 2)],
            [9, 6, 3]
        );
        let mut all: Vec<usize> = train.iter().chain(&test).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..60).collect::<Vec<_>>());
        let again = stratified_split(&labels, 0.7, &mut StdRng::seed_from_u64(5));
        assert_eq!((train, test), again);
    }
}

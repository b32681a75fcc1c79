//! Small data sets that a crate ships, so everything runs offline, plus the synthetic data the
//! presets generate: label utilities and label noise (`labels`), 2-D toy densities
//! (`densities`) and teacher-student regression (`teacher`).

pub mod densities;
pub mod labels;
pub mod teacher;

use rand::Rng;

/// The 8x8 digits (1797 images, 64 pixels scaled to [0, 1], labels 0-9) that `smartcore`
/// ships, shuffled with `rng` and split into train and test sets.
pub struct Digits {
    pub x_train: Vec<f32>,
    pub y_train: Vec<usize>,
    pub x_test: Vec<f32>,
    pub y_test: Vec<usize>,
}

impl Digits {
    /// Training labels one-hot encoded, row-major `n_train x DIGIT_CLASSES`.
    pub fn train_one_hot(&self) -> Vec<f32> {
        labels::one_hot(&self.y_train, DIGIT_CLASSES)
    }

    /// Test labels one-hot encoded, row-major `n_test x DIGIT_CLASSES`.
    pub fn test_one_hot(&self) -> Vec<f32> {
        labels::one_hot(&self.y_test, DIGIT_CLASSES)
    }
}

/// Pixels per image.
pub const DIGIT_PIXELS: usize = 64;
/// Classes.
pub const DIGIT_CLASSES: usize = 10;

/// The digits, `train_fraction` of them (after a seeded shuffle) in the training set.
pub fn digits(train_fraction: f64, rng: &mut impl Rng) -> Digits {
    let ds = smartcore::dataset::digits::load_dataset();
    let (n, p) = (ds.num_samples, ds.num_features);
    assert_eq!(p, DIGIT_PIXELS, "the digits have 64 pixels");
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, rng.gen_range(0..=i));
    }
    let n_train = ((n as f64) * train_fraction).round() as usize;
    let take = |idx: &[usize]| -> (Vec<f32>, Vec<usize>) {
        let x = idx
            .iter()
            .flat_map(|&i| ds.data[i * p..(i + 1) * p].iter().map(|v| v / 16.0))
            .collect();
        let y = idx.iter().map(|&i| ds.target[i] as usize).collect();
        (x, y)
    };
    let (x_train, y_train) = take(&order[..n_train]);
    let (x_test, y_test) = take(&order[n_train..]);
    Digits {
        x_train,
        y_train,
        x_test,
        y_test,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn digits_are_shipped_and_split() {
        let d = digits(0.8, &mut rand::rngs::StdRng::seed_from_u64(0));
        assert_eq!(d.y_train.len() + d.y_test.len(), 1797);
        assert_eq!(d.x_train.len(), d.y_train.len() * DIGIT_PIXELS);
        assert!(d.x_train.iter().all(|v| (0.0..=1.0).contains(v)));
        assert!(d.y_test.iter().all(|y| *y < DIGIT_CLASSES));
    }

    #[test]
    fn digit_one_hot_rows_mark_the_label() {
        let d = digits(0.8, &mut rand::rngs::StdRng::seed_from_u64(1));
        for (one_hot, labels) in [
            (d.train_one_hot(), &d.y_train),
            (d.test_one_hot(), &d.y_test),
        ] {
            assert_eq!(one_hot.len(), labels.len() * DIGIT_CLASSES);
            for (row, &label) in one_hot.chunks(DIGIT_CLASSES).zip(labels.iter()) {
                for (class, &v) in row.iter().enumerate() {
                    assert_eq!(v, if class == label { 1.0 } else { 0.0 });
                }
            }
        }
    }
}

//! The digits classifier harness the supervised-regularizer presets share: a seeded split of the
//! 8x8 digits (optionally a smaller training set), the training set on the device, shuffled
//! epochs of mini-batches gathered on the device (only the indices cross), the optimizer from a
//! preset's parameters, host-side augmentation, and evaluation as host probabilities (accuracy,
//! NLL, ECE). The model is the substrate's [`Mlp`]; each preset adds its own loss.

use dfdx::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

use crate::datasets::{self, DIGIT_CLASSES, DIGIT_PIXELS};
use crate::metrics::classification::{calibration, Calibration};
use crate::nn::models::{Matrix, Mlp};
use crate::nn::store::ParamStore;
use crate::nn::transfer::{Download, Upload};
use crate::nn::{Optimizer, Rule};
use crate::params::{ParamSpec, Params};

/// The digits split a run trains and tests on, on the host. `y_train` holds the labels the
/// network is trained with (noisy ones, if a preset corrupts them); `y_train_true` the real ones.
#[derive(Clone, Debug)]
pub struct DigitsSplit {
    pub x_train: Vec<f32>,
    pub y_train: Vec<usize>,
    pub y_train_true: Vec<usize>,
    pub x_test: Vec<f32>,
    pub y_test: Vec<usize>,
}

impl DigitsSplit {
    /// A seeded shuffle of the 1797 digits: `train_fraction` of them for training, the rest for
    /// testing; `n_train` (when given) keeps only the first that many training images.
    pub fn load(train_fraction: f64, n_train: Option<usize>, rng: &mut impl Rng) -> DigitsSplit {
        let d = datasets::digits(train_fraction, rng);
        let keep = n_train
            .unwrap_or(d.y_train.len())
            .min(d.y_train.len())
            .max(1);
        DigitsSplit {
            x_train: d.x_train[..keep * DIGIT_PIXELS].to_vec(),
            y_train: d.y_train[..keep].to_vec(),
            y_train_true: d.y_train[..keep].to_vec(),
            x_test: d.x_test,
            y_test: d.y_test,
        }
    }

    pub fn n_train(&self) -> usize {
        self.y_train.len()
    }

    pub fn n_test(&self) -> usize {
        self.y_test.len()
    }

    /// Training examples whose label differs from the true one.
    pub fn wrong_labels(&self) -> Vec<usize> {
        (0..self.n_train())
            .filter(|&i| self.y_train[i] != self.y_train_true[i])
            .collect()
    }
}

/// Shuffled epochs of mini-batches over `n` examples: every example once per epoch; the last
/// batch of an epoch is dropped when it would be shorter than `batch` (as PyTorch's
/// `drop_last`), unless an epoch holds fewer than `batch` examples.
#[derive(Clone, Debug)]
pub struct EpochBatches {
    n: usize,
    batch: usize,
    order: Vec<usize>,
    pos: usize,
    rng: StdRng,
}

impl EpochBatches {
    pub fn new(n: usize, batch: usize, seed: u64) -> EpochBatches {
        assert!(
            n > 0 && batch > 0,
            "an epoch needs examples and a batch size"
        );
        let mut b = EpochBatches {
            n,
            batch: batch.min(n),
            order: (0..n).collect(),
            pos: 0,
            rng: StdRng::seed_from_u64(seed),
        };
        b.shuffle();
        b
    }

    /// Mini-batches per epoch.
    pub fn per_epoch(&self) -> usize {
        (self.n / self.batch).max(1)
    }

    fn shuffle(&mut self) {
        for i in (1..self.n).rev() {
            let j = self.rng.gen_range(0..=i);
            self.order.swap(i, j);
        }
        self.pos = 0;
    }

    /// The next mini-batch's example indices.
    pub fn next_batch(&mut self) -> Vec<usize> {
        if self.pos + self.batch > self.n {
            self.shuffle();
        }
        let idx = self.order[self.pos..self.pos + self.batch].to_vec();
        self.pos += self.batch;
        idx
    }
}

/// Rows `idx` of a device matrix, gathered on the device (only the indices are uploaded).
pub fn rows<E: Dtype, D: Device<E>>(x: &Matrix<E, D>, idx: &[usize]) -> Matrix<E, D> {
    let dev = x.device().clone();
    let idx = dev.upload(idx.to_vec(), (idx.len(),));
    x.clone().gather(idx)
}

/// One-hot rows (`labels.len() x classes`) on the device.
pub fn one_hot<E: Dtype, D: Device<E>>(dev: &D, labels: &[usize], classes: usize) -> Matrix<E, D> {
    let mut v = vec![E::default(); labels.len() * classes];
    for (i, &l) in labels.iter().enumerate() {
        v[i * classes + l] = E::ONE;
    }
    dev.upload(v, (labels.len(), classes))
}

/// Host rows (`rows x cols`, f64) as a device matrix of the run's dtype.
pub fn upload_rows<E: Dtype, D: Device<E>>(dev: &D, values: &[f64], cols: usize) -> Matrix<E, D> {
    let v = values
        .iter()
        .map(|&x| E::from_f64(x).expect("representable"))
        .collect();
    dev.upload(v, (values.len() / cols, cols))
}

/// Row-wise softmax of a model's logits on `x`, brought to the host (`n x classes`, f64).
pub fn probabilities<E: Dtype, D: Device<E>>(
    mlp: &Mlp,
    store: &ParamStore<E, D>,
    x: &Matrix<E, D>,
) -> Vec<f64> {
    mlp.logits(store, x.clone())
        .softmax::<Axis<1>>()
        .download()
        .into_iter()
        .map(|v| v.to_f64().unwrap_or(f64::NAN))
        .collect()
}

/// Accuracy, NLL, ECE (15 bins, as most calibration papers) and the reliability diagram of
/// probabilities against labels.
pub fn judge(probs: &[f64], labels: &[usize]) -> Calibration {
    calibration(probs, labels, DIGIT_CLASSES, ECE_BINS)
}

/// Confidence bins of the ECE.
pub const ECE_BINS: usize = 15;

/// Parameters every classifier preset shares, with its defaults: hidden widths as a
/// comma-separated list, the optimizer, learning rate, momentum, weight decay, batch, epochs
/// and the size of the training set.
pub fn common_params(d: &CommonDefaults) -> Vec<ParamSpec> {
    vec![
        ParamSpec::choice(
            "optimizer",
            &["sgd", "adam"],
            d.optimizer,
            "SGD with momentum, or Adam",
        ),
        ParamSpec::float("lr", d.lr, 1e-7, 10.0, "learning rate"),
        ParamSpec::float("momentum", d.momentum, 0.0, 0.999, "SGD momentum"),
        ParamSpec::float(
            "weight_decay",
            d.weight_decay,
            0.0,
            1.0,
            "L2 weight decay added to the gradient",
        ),
        ParamSpec::int("batch", d.batch, 1, 4096, "examples per step"),
        ParamSpec::int(
            "epochs",
            d.epochs,
            1,
            100_000,
            "passes over the training set",
        ),
        ParamSpec::int(
            "n_train",
            d.n_train,
            1,
            1797,
            "training images kept (at most the 70% split, 1258)",
        ),
        ParamSpec::int("width", d.width, 1, 4096, "units of every hidden layer"),
        ParamSpec::int("depth", d.depth, 1, 16, "hidden layers"),
    ]
}

/// A preset's defaults for [`common_params`].
pub struct CommonDefaults {
    pub optimizer: &'static str,
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub batch: i64,
    pub epochs: i64,
    pub n_train: i64,
    pub width: i64,
    pub depth: i64,
}

/// The layer sizes `[64, width x depth, 10]`.
pub fn layer_sizes(p: &Params) -> Vec<usize> {
    let mut s = vec![DIGIT_PIXELS];
    s.extend(std::iter::repeat_n(p.usize("width"), p.usize("depth")));
    s.push(DIGIT_CLASSES);
    s
}

/// The optimizer the parameters ask for. Weight decay is L2 added to the gradient (PyTorch's
/// `weight_decay` in SGD and Adam).
pub fn optimizer<E: Dtype, D: Device<E>>(p: &Params) -> Optimizer<E, D> {
    let wd = p.f64("weight_decay");
    let rule = match p.text("optimizer") {
        "adam" => Rule::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: wd,
        },
        _ => Rule::Sgd {
            momentum: p.f64("momentum"),
            nesterov: false,
            weight_decay: wd,
        },
    };
    Optimizer::new(rule, p.f64("lr"))
}

/// The training images of the seeded 70% split of the 1797 digits.
pub const TRAIN_70: usize = 1258;

/// Checks the common sizes together: `n_train` at most `available` training images (the 70%
/// split's [`TRAIN_70`] unless a preset splits otherwise) and `batch` at most `n_train`.
pub fn validate_sizes(p: &Params, available: usize) -> Result<(), String> {
    let (n, batch) = (p.usize("n_train"), p.usize("batch"));
    if n > available {
        return Err(format!(
            "n_train {n} is more than the {available} training images of the split"
        ));
    }
    if batch > n {
        return Err(format!("batch {batch} is larger than n_train {n}"));
    }
    Ok(())
}

/// Training steps of `epochs` passes over `n_train` examples at `batch`.
pub fn steps_for(n_train: usize, batch: usize, epochs: usize) -> usize {
    (n_train / batch.clamp(1, n_train.max(1))).max(1) * epochs
}

/// Adds `N(0, sigma^2)` noise to every pixel of host rows.
pub fn add_gaussian_noise(x: &mut [f32], sigma: f64, rng: &mut impl Rng) {
    if sigma <= 0.0 {
        return;
    }
    let n = Normal::new(0.0, sigma).expect("positive sigma");
    for v in x.iter_mut() {
        *v += n.sample(rng) as f32;
    }
}

/// Shifts each 8x8 image of host rows by up to `max` pixels in each direction (zeros enter).
pub fn random_shift(x: &mut [f32], max: i32, rng: &mut impl Rng) {
    if max <= 0 {
        return;
    }
    for img in x.chunks_mut(DIGIT_PIXELS) {
        let (dy, dx) = (rng.gen_range(-max..=max), rng.gen_range(-max..=max));
        let src = img.to_vec();
        for r in 0..8i32 {
            for c in 0..8i32 {
                let (sr, sc) = (r - dy, c - dx);
                img[(r * 8 + c) as usize] = if (0..8).contains(&sr) && (0..8).contains(&sc) {
                    src[(sr * 8 + sc) as usize]
                } else {
                    0.0
                };
            }
        }
    }
}

/// The mini-batches of one shuffled epoch over `n` examples: every example exactly once, the
/// last batch shorter when `batch` does not divide `n` (PyTorch's default, `drop_last=False`).
pub fn epoch_batches(n: usize, batch: usize, rng: &mut impl Rng) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, rng.gen_range(0..=i));
    }
    order.chunks(batch.max(1)).map(|c| c.to_vec()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_visit_every_example_once() {
        let mut b = EpochBatches::new(10, 3, 7);
        assert_eq!(b.per_epoch(), 3);
        let mut seen: Vec<usize> = (0..3).flat_map(|_| b.next_batch()).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(
            seen.len(),
            9,
            "9 distinct examples in one epoch of 3 batches of 3"
        );
        // A batch larger than the data is the whole data.
        let mut b = EpochBatches::new(4, 10, 1);
        let mut all = b.next_batch();
        all.sort();
        assert_eq!(all, vec![0, 1, 2, 3]);
    }

    #[test]
    fn gathered_rows_and_probabilities() {
        let dev = Cpu::default();
        let x: Matrix<f32, Cpu> = dev.upload((0..12).map(|v| v as f32).collect(), (4, 3));
        assert_eq!(rows(&x, &[2, 0]).download(), vec![6., 7., 8., 0., 1., 2.]);
        let h = one_hot::<f32, Cpu>(&dev, &[1, 0], 2).download();
        assert_eq!(h, vec![0., 1., 1., 0.]);
        let mut rng = StdRng::seed_from_u64(0);
        let mut store = ParamStore::<f32, Cpu>::new(&dev);
        let mlp = Mlp::new(
            &mut store,
            "m",
            &[64, 8, 10],
            crate::nn::models::Activation::Relu,
            &mut rng,
        );
        let split = DigitsSplit::load(0.7, Some(50), &mut rng);
        assert_eq!(split.n_train(), 50);
        let xt: Matrix<f32, Cpu> = dev.upload(split.x_test.clone(), (split.n_test(), 64));
        let p = probabilities(&mlp, &store, &xt);
        for row in p.chunks(10) {
            assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-5);
        }
        let c = judge(&p, &split.y_test);
        assert!(c.accuracy < 0.5, "an untrained net is near chance");
    }

    #[test]
    fn shift_moves_pixels_and_fills_zeros() {
        let mut img = vec![0.0f32; 64];
        img[0] = 1.0;
        // With max 1 the shift is one of 9; the lit pixel lands in the top-left 2x2 or leaves.
        let mut rng = StdRng::seed_from_u64(3);
        random_shift(&mut img, 1, &mut rng);
        let lit: Vec<usize> = (0..64).filter(|&i| img[i] == 1.0).collect();
        assert!(lit.iter().all(|&i| [0, 1, 8, 9].contains(&i)), "{lit:?}");
        assert!(lit.len() <= 1);
    }
}

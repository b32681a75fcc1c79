//! The digits on the diffusion scale and the small digits classifier the generative presets
//! judge samples with: its accuracy on generated or restored images, and its penultimate layer
//! as the feature space of the Frechet distance and of feature distances (the stand-in for
//! Inception and LPIPS features). Trained once per seed and device, shared by a launch's runs.

use std::sync::Arc;

use dfdx::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::net::upload_f32;
use crate::datasets::{self, DIGIT_CLASSES, DIGIT_PIXELS};
use crate::experiments::classifier::{one_hot, rows};
use crate::experiments::{memo, RunStop};
use crate::nn::models::{accuracy_on_device, softmax_cross_entropy, Activation, Matrix, Mlp};
use crate::nn::store::ParamStore;
use crate::nn::transfer::Download;
use crate::nn::{Optimizer, Rule};

/// The digits scaled to [-1, 1] (`2 x - 1` of the [0, 1] pixels), a seeded split.
#[derive(Clone, Debug)]
pub struct SignedDigits {
    pub x_train: Vec<f32>,
    pub y_train: Vec<usize>,
    pub x_test: Vec<f32>,
    pub y_test: Vec<usize>,
}

/// Training images of the harness's split (the rest, 397, are held out).
pub const TRAIN_IMAGES: usize = 1400;

impl SignedDigits {
    /// The 1797 digits shuffled by `seed`: the first [`TRAIN_IMAGES`] for training.
    pub fn load(seed: u64) -> SignedDigits {
        let mut rng = StdRng::seed_from_u64(seed ^ 0xD1F5);
        let d = datasets::digits(TRAIN_IMAGES as f64 / 1797.0, &mut rng);
        SignedDigits {
            x_train: to_signed(&d.x_train),
            y_train: d.y_train,
            x_test: to_signed(&d.x_test),
            y_test: d.y_test,
        }
    }

    pub fn n_train(&self) -> usize {
        self.y_train.len()
    }

    pub fn n_test(&self) -> usize {
        self.y_test.len()
    }
}

/// [0, 1] pixels to [-1, 1].
pub fn to_signed(x: &[f32]) -> Vec<f32> {
    x.iter().map(|v| 2.0 * v - 1.0).collect()
}

/// [-1, 1] pixels to [0, 1] (clipped), for pictures.
pub fn to_unit(x: &[f32]) -> Vec<f32> {
    x.iter()
        .map(|v| ((v + 1.0) / 2.0).clamp(0.0, 1.0))
        .collect()
}

/// The feature classifier's layer sizes: its penultimate layer (64 units) is the feature space.
pub const FEATURE_SIZES: [usize; 4] = [DIGIT_PIXELS, 128, 64, DIGIT_CLASSES];

/// A trained feature classifier on the host.
#[derive(Clone, Debug)]
pub struct FeatureClassifier {
    pub named: Vec<(String, Vec<usize>, Vec<f64>)>,
    /// Its accuracy on the held-out digits of the split it was trained on.
    pub test_accuracy: f64,
}

/// A feature classifier loaded on a device.
pub struct Features<E: Dtype, D: Device<E>> {
    pub store: ParamStore<E, D>,
    pub mlp: Mlp,
}

impl FeatureClassifier {
    pub fn load<E: Dtype, D: Device<E>>(&self, dev: &D) -> Features<E, D> {
        let mut store = ParamStore::new(dev);
        let mut rng = StdRng::seed_from_u64(0);
        let mlp = Mlp::new(
            &mut store,
            "feat",
            &FEATURE_SIZES,
            Activation::Relu,
            &mut rng,
        );
        for (name, _, values) in &self.named {
            let id = store.id(name);
            let v = values
                .iter()
                .map(|&x| E::from_f64(x).expect("representable"))
                .collect();
            store.upload(id, v);
        }
        Features { store, mlp }
    }
}

impl<E: Dtype + num_traits::ToPrimitive, D: Device<E>> Features<E, D> {
    /// Penultimate features (`n x 64`, f64) of signed images (`n x 64`).
    pub fn features(&self, images: &[f32]) -> Vec<f64> {
        let x = upload_f32::<E, D>(self.store.device(), images, DIGIT_PIXELS);
        let hidden = self.mlp.activations(&self.store, x);
        hidden
            .last()
            .expect("hidden layers")
            .download()
            .into_iter()
            .map(|v| v.to_f64().unwrap_or(f64::NAN))
            .collect()
    }

    /// The predicted class of each signed image.
    pub fn predict(&self, images: &[f32]) -> Vec<usize> {
        let x = upload_f32::<E, D>(self.store.device(), images, DIGIT_PIXELS);
        let logits = self.mlp.logits(&self.store, x).download();
        logits
            .chunks(DIGIT_CLASSES)
            .map(|r| {
                let mut best = 0;
                for (i, v) in r.iter().enumerate() {
                    if v.to_f64() > r[best].to_f64() {
                        best = i;
                    }
                }
                best
            })
            .collect()
    }

    /// Fraction of `images` classified as `labels`.
    pub fn accuracy(&self, images: &[f32], labels: &[usize]) -> f64 {
        let hits = self
            .predict(images)
            .iter()
            .zip(labels)
            .filter(|(p, y)| p == y)
            .count();
        hits as f64 / labels.len().max(1) as f64
    }
}

/// Training steps of the feature classifier (Adam 1e-3, batch 128, random 1-pixel shifts off).
pub const FEATURE_STEPS: usize = 1500;

/// The feature classifier of `digits` (the split of `seed`) on `dev`: trained on its training
/// images once per process, seed and device (`device_name` goes into the key).
pub fn feature_classifier<E: Dtype + num_traits::ToPrimitive, D: Device<E>>(
    dev: &D,
    device_name: &str,
    digits: &SignedDigits,
    seed: u64,
) -> Result<Arc<FeatureClassifier>, RunStop> {
    let key = format!("diffusion-features/{device_name}/{seed}/{FEATURE_STEPS}");
    memo::shared(&key, || Ok(train_features::<E, D>(dev, digits, seed)))
}

fn train_features<E: Dtype + num_traits::ToPrimitive, D: Device<E>>(
    dev: &D,
    digits: &SignedDigits,
    seed: u64,
) -> FeatureClassifier {
    let mut rng = StdRng::seed_from_u64(seed ^ 0xFEA7);
    let mut store = ParamStore::<E, D>::new(dev);
    let mlp = Mlp::new(
        &mut store,
        "feat",
        &FEATURE_SIZES,
        Activation::Relu,
        &mut rng,
    );
    let mut opt = Optimizer::new(Rule::adam(), 1e-3);
    let x = upload_f32::<E, D>(dev, &digits.x_train, DIGIT_PIXELS);
    let y = one_hot::<E, D>(dev, &digits.y_train, DIGIT_CLASSES);
    let n = digits.n_train();
    for _ in 0..FEATURE_STEPS {
        let idx: Vec<usize> = (0..128.min(n)).map(|_| rng.gen_range(0..n)).collect();
        let logits = mlp.forward(&store, rows(&x, &idx).leaky_trace());
        let loss = softmax_cross_entropy(logits, rows(&y, &idx));
        let mut grads = loss.backward();
        opt.step(&mut store, &mut grads).expect("optimizer step");
    }
    let xt: Matrix<E, D> = upload_f32(dev, &digits.x_test, DIGIT_PIXELS);
    let logits = mlp.logits(&store, xt);
    let test_accuracy = accuracy_on_device(&logits, &digits.y_test);
    FeatureClassifier {
        named: store.named_values(),
        test_accuracy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_scale_and_a_classifier_that_separates_the_digits() {
        let d = SignedDigits::load(0);
        assert_eq!(d.n_train(), TRAIN_IMAGES);
        assert_eq!(d.n_train() + d.n_test(), 1797);
        let (lo, hi) = d
            .x_train
            .iter()
            .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        assert_eq!((lo, hi), (-1.0, 1.0));
        assert_eq!(to_unit(&[-1.0, 0.0, 1.0, 3.0]), vec![0.0, 0.5, 1.0, 1.0]);
        let dev = Cpu::default();
        let fc = feature_classifier::<f32, Cpu>(&dev, "cpu", &d, 0).unwrap();
        assert!(fc.test_accuracy > 0.9, "{}", fc.test_accuracy);
        let f = fc.load::<f32, Cpu>(&dev);
        let acc = f.accuracy(&d.x_test, &d.y_test);
        assert!((acc - fc.test_accuracy).abs() < 1e-9);
        assert_eq!(f.features(&d.x_test[..3 * 64]).len(), 3 * 64);
    }
}

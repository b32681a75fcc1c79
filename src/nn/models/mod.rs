//! Small models on runtime shapes, shared by the experiments: a multi-layer perceptron
//! ([`mlp::Mlp`]) and a two-convolution network for the 8x8 digits ([`cnn::SmallCnn`]), plus the
//! classification loss and accuracy they are trained and judged with.
//!
//! A model holds only [`ParamId`](crate::nn::ParamId)s: its parameters live in a
//! [`ParamStore`](crate::nn::ParamStore) under names that start with a prefix the caller chooses
//! (`"mlp.0.weight"`, `"cnn.conv1.bias"`, ...), so optimizers, Hessian estimators and artifacts
//! see them like any other parameter. The models are generic over the dtype (f32, f64) and the
//! device (CPU, CUDA).
//!
//! Initialization follows PyTorch's defaults for `nn.Linear` and `nn.Conv2d` (weights and biases
//! uniform in `[-1/sqrt(fan_in), 1/sqrt(fan_in)]`), so runs are comparable with PyTorch ones.

pub mod batchnorm;
pub mod cnn;
pub mod mlp;

pub use batchnorm::{BatchNorm1d, BnMode};
pub use cnn::{Conv2dShape, SmallCnn};
pub use mlp::{Activation, Mlp};

use dfdx::prelude::*;
use rand::Rng;

use super::store::Taped;

/// A runtime-shaped matrix (`rows x cols`), with the tape `T` (none unless given).
pub type Matrix<E, D, T = NoneTape> = Tensor<(usize, usize), E, D, T>;

/// A runtime-shaped matrix on the tape.
pub type TapedMatrix<E, D> = Taped<(usize, usize), E, D>;

/// `n` values uniform in `[-1/sqrt(fan_in), 1/sqrt(fan_in)]`: PyTorch's default initialization
/// of `nn.Linear` and `nn.Conv2d` weights (Kaiming-uniform with `a = sqrt(5)`) and biases.
pub fn uniform_fan_in<E: Dtype>(n: usize, fan_in: usize, rng: &mut impl Rng) -> Vec<E> {
    assert!(fan_in > 0, "fan-in must be positive");
    let bound = 1.0 / (fan_in as f64).sqrt();
    (0..n)
        .map(|_| E::from_f64(rng.gen_range(-bound..bound)).expect("representable"))
        .collect()
}

/// Mean over the batch of the cross-entropy between `softmax(logits)` and the target
/// distributions (one-hot rows for hard labels); both are `batch x classes`.
pub fn softmax_cross_entropy<E: Dtype, D: Device<E>>(
    logits: Taped<(usize, usize), E, D>,
    targets_one_hot: Tensor<(usize, usize), E, D>,
) -> Taped<(), E, D> {
    assert_eq!(
        logits.shape(),
        targets_one_hot.shape(),
        "logits and targets differ in shape"
    );
    cross_entropy_with_logits_loss(logits, targets_one_hot)
}

/// Fraction of the rows of `logits` (`batch x classes`) whose label has the largest logit,
/// computed on the device (only the count comes back). A row whose label ties for the largest
/// logit counts as correct; a row with a NaN at the label does not.
pub fn accuracy_on_device<E: Dtype, D: Device<E>>(
    logits: &Tensor<(usize, usize), E, D>,
    labels: &[usize],
) -> f64 {
    let (batch, classes) = *logits.shape();
    assert_eq!(labels.len(), batch, "one label per row");
    assert!(labels.iter().all(|&l| l < classes), "label out of range");
    if batch == 0 {
        return 0.0;
    }
    let dev = logits.device().clone();
    let idx = dev.tensor_from_vec(labels.to_vec(), (batch,));
    let at_label: Tensor<(usize,), E, D> = logits.clone().select(idx);
    let best: Tensor<(usize,), E, D> = logits.clone().max::<(usize,), Axis<1>>();
    let hits = at_label
        .ge(&best)
        .choose(dev.ones_like(&(batch,)), dev.zeros_like(&(batch,)));
    let correct = hits.sum::<Rank0, _>().as_vec()[0]
        .to_f64()
        .unwrap_or(f64::NAN);
    correct / batch as f64
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::metrics::classification::{accuracy, cross_entropy_from_logits};
    use crate::nn::ParamStore;
    use rand::SeedableRng;

    pub(crate) type LossFn<'a> = dyn Fn(&ParamStore<f64, Cpu>) -> Taped<(), f64, Cpu> + 'a;

    /// The largest difference between the gradient of `loss` and its central finite differences
    /// (one coordinate of every trainable parameter at a time), relative to the largest gradient
    /// entry.
    pub(crate) fn gradient_check(store: &mut ParamStore<f64, Cpu>, loss: &LossFn<'_>) -> f64 {
        let mut grads = loss(store).backward();
        let analytic = ParamStore::download_vec(&store.gradient_vec(&mut grads));
        let n = store.num_trainable();
        let h = 1e-5;
        let value = |s: &ParamStore<f64, Cpu>| loss(s).as_vec()[0];
        let mut diff = 0.0f64;
        let mut scale = 0.0f64;
        for i in 0..n {
            let mut e = vec![0.0; n];
            e[i] = 1.0;
            let e = store.upload_vec(&e);
            let base = store.snapshot();
            store.add_scaled(&e, h);
            let plus = value(store);
            store.restore(&base);
            store.add_scaled(&e, -h);
            let minus = value(store);
            store.restore(&base);
            let fd = (plus - minus) / (2.0 * h);
            diff = diff.max((fd - analytic[i]).abs());
            scale = scale.max(analytic[i].abs());
        }
        diff / scale
    }

    #[test]
    fn initialization_stays_in_the_fan_in_bound() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let v: Vec<f64> = uniform_fan_in(10_000, 16, &mut rng);
        assert!(v.iter().all(|x| x.abs() < 0.25));
        let max = v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        assert!(max > 0.24, "uniform draws should reach the bound: {max}");
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        assert!(mean.abs() < 0.01, "{mean}");
    }

    #[test]
    fn loss_and_accuracy_match_the_host_metrics() {
        let dev = Cpu::default();
        let logits = vec![
            2.0, 1.0, 0.0, //
            0.0, 3.0, -1.0, //
            0.5, 0.5, 0.4, //
            -1.0, 0.0, 2.5,
        ];
        let labels = [0, 2, 0, 2];
        let host_ce = cross_entropy_from_logits(&logits, &labels, 3);
        let host_acc = accuracy(&logits, &labels, 3);
        let lt: Tensor<(usize, usize), f64, Cpu> = dev.tensor_from_vec(logits, (4, 3));
        let one_hot: Vec<f64> = crate::datasets::labels::one_hot(&labels, 3)
            .iter()
            .map(|&v| v as f64)
            .collect();
        let targets = dev.tensor_from_vec(one_hot, (4, 3));
        let ce = softmax_cross_entropy(lt.leaky_trace(), targets).as_vec()[0];
        assert!((ce - host_ce).abs() < 1e-12, "{ce} vs {host_ce}");
        // Row 2 ties between classes 0 and 1: the host's argmax picks 0, as does the device.
        assert_eq!(accuracy_on_device(&lt, &labels), host_acc);
        assert_eq!(host_acc, 0.75);
    }
}

//! A multi-layer perceptron on runtime shapes: `sizes = [in, h1, ..., out]`, layer `i` computes
//! `x W_i + b_i` (`W_i` is `sizes[i] x sizes[i + 1]`, a batch is one row per sample), followed by
//! the activation on every layer but the last (the output is logits).
//!
//! Parameters are `"{prefix}.{i}.weight"` and `"{prefix}.{i}.bias"` in a store. Note that the
//! weights are stored `in x out`, the transpose of PyTorch's `nn.Linear.weight`.

use std::time::Instant;

use dfdx::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};

use super::{softmax_cross_entropy, uniform_fan_in, Matrix, TapedMatrix};
use crate::nn::optim::{Optimizer, Rule};
use crate::nn::store::{ParamId, ParamStore, Taped};

/// The nonlinearity between layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Relu,
    Tanh,
    /// The exact (erf) GELU, PyTorch's `nn.GELU()` default.
    Gelu,
    /// `x * sigmoid(x)` (SiLU, swish), PyTorch's `nn.SiLU()`.
    Silu,
}

impl Activation {
    pub fn apply<S: Shape, E: Dtype, D: Device<E>, T: Tape<E, D>>(
        self,
        x: Tensor<S, E, D, T>,
    ) -> Tensor<S, E, D, T> {
        match self {
            Activation::Relu => x.relu(),
            Activation::Tanh => x.tanh(),
            Activation::Gelu => gelu(x),
            Activation::Silu => silu(x),
        }
    }
}

/// The exact GELU, `x * Phi(x)`, with a correct gradient.
///
/// dfdx 0.13's `accurate_gelu` has the right value but a wrong derivative (CPU and CUDA alike):
/// its `x * pdf(x)` term is `x exp(-x^2/2) / sqrt(pi)` instead of `x exp(-x^2/2) / sqrt(2 pi)`,
/// sqrt(2) too large. Adding `k exp(-x^2/2)` on the tape and subtracting the same thing computed
/// off the tape leaves the value exactly as it was (the two copies are bit-identical) and, with
/// `k = (1 - 1/sqrt 2) / sqrt(pi)`, takes the excess off the gradient.
pub fn gelu<S: Shape, E: Dtype, D: Device<E>, T: Tape<E, D>>(
    x: Tensor<S, E, D, T>,
) -> Tensor<S, E, D, T> {
    if !T::OWNS_TAPE {
        return x.accurate_gelu();
    }
    let k = (1.0 - std::f64::consts::FRAC_1_SQRT_2) / std::f64::consts::PI.sqrt();
    let k = E::from_f64(k).expect("representable");
    let minus_half = E::from_f64(-0.5).expect("representable");
    let (x, tape) = x.split_tape();
    let bump_taped = (x.retaped::<T>().square() * minus_half).exp() * k;
    let bump_value = (x.clone().square() * minus_half).exp() * k;
    x.put_tape(tape).accurate_gelu() + (bump_taped - bump_value)
}

/// `x * sigmoid(x)`: the sigmoid is taken of a retaped copy, so both factors send their
/// gradient to `x`.
pub fn silu<S: Shape, E: Dtype, D: Device<E>, T: Tape<E, D>>(
    x: Tensor<S, E, D, T>,
) -> Tensor<S, E, D, T> {
    let (x, tape) = x.split_tape();
    let gate = x.retaped::<T>().sigmoid();
    x.put_tape(tape) * gate
}

/// A multi-layer perceptron whose parameters live in a [`ParamStore`].
#[derive(Clone, Debug, PartialEq)]
pub struct Mlp {
    /// `(W in x out, b)` of every layer, input to output.
    pub layers: Vec<(ParamId, ParamId)>,
    /// Widths, input first: layer `i` maps `sizes[i]` to `sizes[i + 1]`.
    pub sizes: Vec<usize>,
    pub activation: Activation,
}

impl Mlp {
    /// Adds the layers' parameters to `store` (named `"{prefix}.{i}.weight"` and
    /// `"{prefix}.{i}.bias"`), initialized like PyTorch's `nn.Linear`.
    pub fn new<E: Dtype, D: Device<E>>(
        store: &mut ParamStore<E, D>,
        prefix: &str,
        sizes: &[usize],
        activation: Activation,
        rng: &mut impl Rng,
    ) -> Mlp {
        assert!(sizes.len() >= 2, "an MLP needs an input and an output size");
        assert!(sizes.iter().all(|&s| s > 0), "sizes must be positive");
        let layers = sizes
            .windows(2)
            .enumerate()
            .map(|(i, w)| {
                let (fan_in, fan_out) = (w[0], w[1]);
                let weight = store.add(
                    &format!("{prefix}.{i}.weight"),
                    &[fan_in, fan_out],
                    uniform_fan_in(fan_in * fan_out, fan_in, rng),
                );
                let bias = store.add(
                    &format!("{prefix}.{i}.bias"),
                    &[fan_out],
                    uniform_fan_in(fan_out, fan_in, rng),
                );
                (weight, bias)
            })
            .collect();
        Mlp {
            layers,
            sizes: sizes.to_vec(),
            activation,
        }
    }

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// The weight (`sizes[i] x sizes[i + 1]`) of layer `i`.
    pub fn layer_weight(&self, i: usize) -> ParamId {
        self.layers[i].0
    }

    /// The bias of layer `i`.
    pub fn layer_bias(&self, i: usize) -> ParamId {
        self.layers[i].1
    }

    /// Logits (`batch x out`) of `x` (`batch x in`), on the tape.
    pub fn forward<E: Dtype, D: Device<E>>(
        &self,
        store: &ParamStore<E, D>,
        x: Taped<(usize, usize), E, D>,
    ) -> Taped<(usize, usize), E, D> {
        self.run(store, x, None, &mut |_| {})
    }

    /// Logits (`batch x out`) of `x` with the layer weights given (`sizes[i] x sizes[i + 1]`, one
    /// per layer, each with its own tape) instead of the stored ones; the biases are the store's.
    /// For reparameterized weights (`W = f(V)` built on the tape from other parameters).
    pub fn forward_with_weights<E: Dtype, D: Device<E>>(
        &self,
        store: &ParamStore<E, D>,
        x: Taped<(usize, usize), E, D>,
        weights: Vec<TapedMatrix<E, D>>,
    ) -> Taped<(usize, usize), E, D> {
        assert_eq!(weights.len(), self.layers.len(), "one weight per layer");
        self.run(store, x, Some(weights), &mut |_| {})
    }

    /// Logits and the post-activation of every hidden layer (`batch x sizes[i + 1]`, first hidden
    /// layer first). Each hidden tensor carries an empty tape of its own: a penalty built from it
    /// gets its gradient through the network once it is added to a loss built from the logits
    /// (the tapes merge, and dfdx replays their operations in creation order).
    pub fn forward_with_activations<E: Dtype, D: Device<E>>(
        &self,
        store: &ParamStore<E, D>,
        x: Taped<(usize, usize), E, D>,
    ) -> (TapedMatrix<E, D>, Vec<TapedMatrix<E, D>>) {
        let mut hidden = Vec::with_capacity(self.layers.len() - 1);
        let out = self.run(store, x, None, &mut |h| hidden.push(h.with_empty_tape()));
        (out, hidden)
    }

    /// Logits without a tape (evaluation).
    pub fn logits<E: Dtype, D: Device<E>>(
        &self,
        store: &ParamStore<E, D>,
        x: Tensor<(usize, usize), E, D>,
    ) -> Tensor<(usize, usize), E, D> {
        self.run(store, x, None, &mut |_| {})
    }

    /// The post-activation of every hidden layer, without a tape (metrics).
    pub fn activations<E: Dtype, D: Device<E>>(
        &self,
        store: &ParamStore<E, D>,
        x: Tensor<(usize, usize), E, D>,
    ) -> Vec<Tensor<(usize, usize), E, D>> {
        let mut hidden = Vec::with_capacity(self.layers.len() - 1);
        self.run(store, x, None, &mut |h| hidden.push(h.clone()));
        hidden
    }

    /// The network on `x` with the tape `T` (parameters join the tape when it records), handing
    /// every hidden post-activation to `keep`; `weights` replace the stored layer weights.
    fn run<E: Dtype, D: Device<E>, T: Tape<E, D>>(
        &self,
        store: &ParamStore<E, D>,
        x: Tensor<(usize, usize), E, D, T>,
        weights: Option<Vec<Matrix<E, D, T>>>,
        keep: &mut dyn FnMut(&Matrix<E, D, T>),
    ) -> Tensor<(usize, usize), E, D, T> {
        let mut given: Vec<Option<Matrix<E, D, T>>> = match weights {
            Some(ws) => ws.into_iter().map(Some).collect(),
            None => (0..self.layers.len()).map(|_| None).collect(),
        };
        let (batch, width) = *x.shape();
        assert_eq!(width, self.sizes[0], "input width");
        let last = self.layers.len() - 1;
        let mut h = x;
        for (i, &(w, b)) in self.layers.iter().enumerate() {
            let out = self.sizes[i + 1];
            let w = given[i]
                .take()
                .unwrap_or_else(|| store.matrix_value(w).retaped::<T>());
            let b = store
                .flat(b)
                .retaped::<T>()
                .broadcast_like::<_, Axis<0>>(&(batch, out));
            h = h.matmul(w) + b;
            if i < last {
                h = self.activation.apply(h);
                keep(&h);
            }
        }
        h
    }
}

/// Milliseconds per training step of an MLP 784-256-10 (ReLU, f32, CPU) at batch 128 with
/// softmax cross-entropy and Adam (lr 1e-3), on a fixed batch of Gaussian inputs and random
/// one-hot labels from a seeded generator: warm-up steps first, then the median over a few
/// repeats of `steps` steps. Matrix products use `threads_hint` threads (0: all cores); the
/// element-wise kernels of dfdx's CPU device use one. dfdx's matmul always computes both
/// operands' gradients, so each step also computes the input's gradient, which PyTorch skips.
pub fn time_mlp_step(threads_hint: usize, steps: usize) -> f64 {
    let mut builder = rayon::ThreadPoolBuilder::new();
    if threads_hint > 0 {
        builder = builder.num_threads(threads_hint);
    }
    let pool = builder.build().expect("thread pool");
    pool.install(|| mlp_step_ms(steps.max(1)))
}

fn mlp_step_ms(steps: usize) -> f64 {
    const BATCH: usize = 128;
    const SIZES: [usize; 3] = [784, 256, 10];
    let dev = Cpu::default();
    let mut rng = StdRng::seed_from_u64(0);
    let mut store = ParamStore::<f32, Cpu>::new(&dev);
    let mlp = Mlp::new(&mut store, "mlp", &SIZES, Activation::Relu, &mut rng);
    let x: Vec<f32> = (0..BATCH * SIZES[0])
        .map(|_| StandardNormal.sample(&mut rng))
        .collect();
    let labels: Vec<usize> = (0..BATCH).map(|_| rng.gen_range(0..SIZES[2])).collect();
    let x = dev.tensor_from_vec(x, (BATCH, SIZES[0]));
    let y = dev.tensor_from_vec(
        crate::datasets::labels::one_hot(&labels, SIZES[2]),
        (BATCH, SIZES[2]),
    );
    let mut opt = Optimizer::new(Rule::adam(), 1e-3);
    let mut step = || {
        let logits = mlp.forward(&store, x.leaky_trace());
        let mut grads = softmax_cross_entropy(logits, y.clone()).backward();
        opt.step(&mut store, &mut grads).expect("optimizer step");
    };
    for _ in 0..steps.clamp(5, 50) {
        step();
    }
    let mut per_step: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..steps {
                step();
            }
            t.elapsed().as_secs_f64() * 1e3 / steps as f64
        })
        .collect();
    per_step.sort_by(f64::total_cmp);
    per_step[per_step.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasets::{digits, DIGIT_CLASSES, DIGIT_PIXELS};
    use crate::metrics::classification::accuracy;
    use crate::nn::models::accuracy_on_device;
    use crate::nn::models::tests::gradient_check;

    fn gaussian(n: usize, rng: &mut impl Rng) -> Vec<f64> {
        (0..n).map(|_| StandardNormal.sample(rng)).collect()
    }

    #[test]
    fn parameters_are_named_and_shaped() {
        let mut rng = StdRng::seed_from_u64(0);
        let mut store = ParamStore::<f32, Cpu>::new(&Cpu::default());
        let mlp = Mlp::new(&mut store, "mlp", &[5, 7, 3], Activation::Relu, &mut rng);
        let other = Mlp::new(&mut store, "probe", &[3, 2], Activation::Tanh, &mut rng);
        let names: Vec<(String, Vec<usize>)> = store
            .params()
            .iter()
            .map(|p| (p.name.clone(), p.shape.clone()))
            .collect();
        let want = [
            ("mlp.0.weight", vec![5, 7]),
            ("mlp.0.bias", vec![7]),
            ("mlp.1.weight", vec![7, 3]),
            ("mlp.1.bias", vec![3]),
            ("probe.0.weight", vec![3, 2]),
            ("probe.0.bias", vec![2]),
        ];
        assert_eq!(names.len(), want.len());
        for ((name, shape), (wn, ws)) in names.iter().zip(want.iter()) {
            assert_eq!((name.as_str(), shape), (*wn, ws));
        }
        assert_eq!(mlp.layer_weight(1), store.id("mlp.1.weight"));
        assert_eq!(mlp.layer_bias(0), store.id("mlp.0.bias"));
        assert_eq!(other.num_layers(), 1);
        // PyTorch's bound: 1/sqrt(fan_in).
        let w0 = store.values(mlp.layer_weight(0));
        assert!(w0.iter().all(|v| v.abs() <= 1.0 / 5f32.sqrt()));
        let b1 = store.values(mlp.layer_bias(1));
        assert!(b1.iter().all(|v| v.abs() <= 1.0 / 7f32.sqrt()));
    }

    #[test]
    fn forward_matches_a_host_computation() {
        let mut rng = StdRng::seed_from_u64(3);
        let dev = Cpu::default();
        let mut store = ParamStore::<f64, Cpu>::new(&dev);
        let mlp = Mlp::new(&mut store, "m", &[3, 4, 2], Activation::Tanh, &mut rng);
        let x = gaussian(2 * 3, &mut rng);
        let (w0, b0) = (store.values(mlp.layers[0].0), store.values(mlp.layers[0].1));
        let (w1, b1) = (store.values(mlp.layers[1].0), store.values(mlp.layers[1].1));
        let xt = dev.tensor_from_vec(x.clone(), (2, 3));
        let logits = mlp.logits(&store, xt.clone()).as_vec();
        let hidden = mlp.activations(&store, xt.clone());
        let taped = mlp.forward(&store, xt.leaky_trace()).as_vec();
        assert_eq!(logits, taped);
        assert_eq!(hidden.len(), 1);
        let hv = hidden[0].as_vec();
        for r in 0..2 {
            let h: Vec<f64> = (0..4)
                .map(|j| (b0[j] + (0..3).map(|k| x[r * 3 + k] * w0[k * 4 + j]).sum::<f64>()).tanh())
                .collect();
            for j in 0..4 {
                assert!((hv[r * 4 + j] - h[j]).abs() < 1e-12);
            }
            for o in 0..2 {
                let want = b1[o] + (0..4).map(|j| h[j] * w1[j * 2 + o]).sum::<f64>();
                assert!((logits[r * 2 + o] - want).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        for activation in [
            Activation::Relu,
            Activation::Tanh,
            Activation::Gelu,
            Activation::Silu,
        ] {
            let mut rng = StdRng::seed_from_u64(7);
            let dev = Cpu::default();
            let mut store = ParamStore::<f64, Cpu>::new(&dev);
            let mlp = Mlp::new(&mut store, "mlp", &[5, 6, 4, 3], activation, &mut rng);
            let x = dev.tensor_from_vec(gaussian(4 * 5, &mut rng), (4, 5));
            let y = dev.tensor_from_vec(
                crate::datasets::labels::one_hot(&[0, 2, 1, 2], 3)
                    .iter()
                    .map(|&v| v as f64)
                    .collect(),
                (4, 3),
            );
            let loss = |s: &ParamStore<f64, Cpu>| {
                softmax_cross_entropy(mlp.forward(s, x.leaky_trace()), y.clone())
            };
            let rel = gradient_check(&mut store, &loss);
            assert!(rel < 1e-6, "{activation:?}: relative error {rel:e}");
        }
    }

    #[test]
    fn gelu_is_exact_with_the_right_derivative() {
        let dev = Cpu::default();
        let xs: Vec<f64> = (-40..=40).map(|i| i as f64 * 0.1).collect();
        let n = xs.len();
        let x = dev.tensor_from_vec(xs.clone(), (n,));
        let y = gelu(x.leaky_trace());
        assert_eq!(y.as_vec(), x.clone().accurate_gelu().as_vec());
        let g = y.sum::<Rank0, _>().backward();
        let dy = g.get(&x).as_vec();
        for (i, &v) in xs.iter().enumerate() {
            // d/dx x Phi(x) = Phi(x) + x phi(x), with Phi from the untouched forward value.
            let pdf = (-0.5 * v * v).exp() / (2.0 * std::f64::consts::PI).sqrt();
            let cdf = if v == 0.0 {
                0.5
            } else {
                x.clone().accurate_gelu().as_vec()[i] / v
            };
            let want = cdf + v * pdf;
            assert!((dy[i] - want).abs() < 1e-12, "x = {v}: {} vs {want}", dy[i]);
        }
    }

    #[test]
    fn silu_value_and_derivative_match_the_closed_form() {
        let dev = Cpu::default();
        let xs: Vec<f64> = (-40..=40).map(|i| i as f64 * 0.1).collect();
        let n = xs.len();
        let x = dev.tensor_from_vec(xs.clone(), (n,));
        let y = silu(x.leaky_trace());
        let values = y.as_vec();
        let g = y.sum::<Rank0, _>().backward();
        let dy = g.get(&x).as_vec();
        for (i, &v) in xs.iter().enumerate() {
            let s = 1.0 / (1.0 + (-v).exp());
            assert!((values[i] - v * s).abs() < 1e-12);
            let want = s * (1.0 + v * (1.0 - s));
            assert!((dy[i] - want).abs() < 1e-12, "x = {v}: {} vs {want}", dy[i]);
        }
    }

    #[test]
    fn hidden_activation_penalties_get_their_gradient() {
        // Loss + 0.3 * sum of squared hidden activations: the penalty's gradient reaches the
        // first layer only through the tapes the hidden tensors carry.
        let mut rng = StdRng::seed_from_u64(11);
        let dev = Cpu::default();
        let mut store = ParamStore::<f64, Cpu>::new(&dev);
        let mlp = Mlp::new(&mut store, "mlp", &[4, 5, 5, 3], Activation::Tanh, &mut rng);
        let x = dev.tensor_from_vec(gaussian(3 * 4, &mut rng), (3, 4));
        let y = dev.tensor_from_vec(
            crate::datasets::labels::one_hot(&[1, 0, 2], 3)
                .iter()
                .map(|&v| v as f64)
                .collect(),
            (3, 3),
        );
        let loss = |s: &ParamStore<f64, Cpu>| {
            let (logits, hidden) = mlp.forward_with_activations(s, x.leaky_trace());
            assert_eq!(hidden.len(), 2);
            let mut total = softmax_cross_entropy(logits, y.clone());
            for h in hidden {
                total = total + h.square().sum::<Rank0, _>() * 0.3;
            }
            total
        };
        let rel = gradient_check(&mut store, &loss);
        assert!(rel < 1e-6, "relative error {rel:e}");
    }

    #[test]
    fn adam_trains_an_mlp_on_the_digits() {
        let mut rng = StdRng::seed_from_u64(0);
        let data = digits(0.8, &mut rng);
        let dev = Cpu::default();
        let mut store = ParamStore::<f32, Cpu>::new(&dev);
        let mlp = Mlp::new(
            &mut store,
            "mlp",
            &[DIGIT_PIXELS, 64, DIGIT_CLASSES],
            Activation::Relu,
            &mut rng,
        );
        let n_train = data.y_train.len();
        let x_train = dev.tensor_from_vec(data.x_train.clone(), (n_train, DIGIT_PIXELS));
        let y_train = dev.tensor_from_vec(data.train_one_hot(), (n_train, DIGIT_CLASSES));
        let mut opt = Optimizer::new(Rule::adam(), 1e-2);
        // Minibatches of 128 drawn by index (a fresh shuffle each epoch).
        let batch = 128;
        let mut order: Vec<usize> = (0..n_train).collect();
        let mut at = n_train;
        for _ in 0..300 {
            if at + batch > n_train {
                for i in (1..n_train).rev() {
                    order.swap(i, rng.gen_range(0..=i));
                }
                at = 0;
            }
            let idx = dev.tensor_from_vec(order[at..at + batch].to_vec(), (batch,));
            at += batch;
            let xb = x_train.clone().gather(idx.clone());
            let yb = y_train.clone().gather(idx);
            let logits = mlp.forward(&store, xb.leaky_trace());
            let mut grads = softmax_cross_entropy(logits, yb).backward();
            opt.step(&mut store, &mut grads).unwrap();
        }
        let n_test = data.y_test.len();
        let x_test = dev.tensor_from_vec(data.x_test.clone(), (n_test, DIGIT_PIXELS));
        let logits = mlp.logits(&store, x_test);
        let acc = accuracy_on_device(&logits, &data.y_test);
        let host: Vec<f64> = logits.as_vec().iter().map(|&v| v as f64).collect();
        assert_eq!(acc, accuracy(&host, &data.y_test, DIGIT_CLASSES));
        assert!(acc > 0.9, "test accuracy {acc}");
    }

    #[test]
    fn the_timing_helper_returns_a_positive_figure() {
        let ms = time_mlp_step(1, 2);
        assert!(ms.is_finite() && ms > 0.0, "{ms}");
    }
}

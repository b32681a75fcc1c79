//! The two models of the stability paper, written with dfdx tensors in f64 over a parameter store
//! (the parameters stay on the run's device; the Hessian estimators perturb them there).
//!
//! - Two-layer ReLU network: `f(x) = sum_k a_k * relu(w_k . x)`, parameters `W` (m x d, rows
//!   `w_k`) then `a` (m), flattened as `[W row-major, a]`.
//! - Diagonal linear network: `f(x) = beta . x` with `beta = u*u - v*v`, parameters `[u, v]`.
//!
//! Loss on a set of n samples: `L = 1/(2n) sum_i (f(x_i) - y_i)^2`.

use dfdx::prelude::*;

use crate::nn::transfer::{Download, Upload};

use crate::nn::{ParamId, ParamStore, ParamVec, Taped};

use super::data::Dataset;

/// Which model, with its sizes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Model {
    /// Two-layer ReLU network with `width` hidden units on `dim` inputs.
    Relu { dim: usize, width: usize },
    /// Diagonal linear network on `dim` inputs.
    Diagonal { dim: usize },
}

/// Inputs of a batch, transposed for dfdx (`dim x batch`), and targets, on the device `D`.
pub struct Batch<D: Device<f64> = Cpu> {
    xt: Tensor<(usize, usize), f64, D>,
    y: Tensor<(usize,), f64, D>,
    len: usize,
}

impl<D: Device<f64>> Batch<D> {
    /// The samples `idx` of `data` (all samples when `idx` is None).
    pub fn from_dataset(dev: &D, data: &Dataset, idx: Option<&[usize]>) -> Batch<D> {
        let all: Vec<usize>;
        let idx = match idx {
            Some(i) => i,
            None => {
                all = (0..data.n).collect();
                &all
            }
        };
        let b = idx.len();
        let mut xt = vec![0.0; data.dim * b];
        for (col, &i) in idx.iter().enumerate() {
            for j in 0..data.dim {
                xt[j * b + col] = data.x[i * data.dim + j];
            }
        }
        let y: Vec<f64> = idx.iter().map(|&i| data.y[i]).collect();
        Batch {
            xt: dev.upload(xt, (data.dim, b)),
            y: dev.upload(y, (b,)),
            len: b,
        }
    }
}

impl Model {
    pub fn num_params(&self) -> usize {
        match *self {
            Model::Relu { dim, width } => width * dim + width,
            Model::Diagonal { dim } => 2 * dim,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Model::Relu { .. } => "relu",
            Model::Diagonal { .. } => "diagonal",
        }
    }

    /// A parameter store holding the flat parameters `theta` (`W`, `a` or `u`, `v`).
    pub fn store<D: Device<f64>>(&self, dev: &D, theta: &[f64]) -> ParamStore<f64, D> {
        assert_eq!(theta.len(), self.num_params(), "parameter vector size");
        let mut store = ParamStore::new(dev);
        match *self {
            Model::Relu { dim, width } => {
                store.add("W", &[width, dim], theta[..width * dim].to_vec());
                store.add("a", &[width], theta[width * dim..].to_vec());
            }
            Model::Diagonal { dim } => {
                store.add("u", &[dim], theta[..dim].to_vec());
                store.add("v", &[dim], theta[dim..].to_vec());
            }
        }
        store
    }

    /// The model's outputs on `batch`, traced.
    fn outputs<D: Device<f64>>(
        &self,
        store: &ParamStore<f64, D>,
        batch: &Batch<D>,
    ) -> Taped<(usize,), f64, D> {
        match *self {
            Model::Relu { .. } => {
                let w = store.matrix(ParamId(0));
                let a = store.vector(ParamId(1));
                a.matmul(w.matmul(batch.xt.clone()).relu())
            }
            Model::Diagonal { .. } => {
                let beta = store.vector(ParamId(0)).square() - store.vector(ParamId(1)).square();
                beta.matmul(batch.xt.clone())
            }
        }
    }

    /// Loss on `batch` and the gradients of the store's parameters.
    pub fn loss_and_grads<D: Device<f64>>(
        &self,
        store: &ParamStore<f64, D>,
        batch: &Batch<D>,
    ) -> (f64, Gradients<f64, D>) {
        let out = self.outputs(store, batch);
        let loss = (out - batch.y.clone()).square().mean::<Rank0, _>() * 0.5;
        let value = loss.download()[0];
        (value, loss.backward())
    }

    /// The gradient of the loss on `batch` as a device vector (for Hessian-vector products).
    pub fn gradient<D: Device<f64>>(
        &self,
        store: &ParamStore<f64, D>,
        batch: &Batch<D>,
    ) -> ParamVec<f64, D> {
        let mut g = self.loss_and_grads(store, batch).1;
        store.gradient_vec(&mut g)
    }

    /// The model's outputs on `batch`, without a tape.
    fn output_values<D: Device<f64>>(
        &self,
        store: &ParamStore<f64, D>,
        batch: &Batch<D>,
    ) -> Tensor<(usize,), f64, D> {
        match *self {
            Model::Relu { .. } => {
                let w = store.matrix_value(ParamId(0));
                store
                    .flat(ParamId(1))
                    .clone()
                    .matmul(w.matmul(batch.xt.clone()).relu())
            }
            Model::Diagonal { .. } => {
                let beta = store.flat(ParamId(0)).clone().square()
                    - store.flat(ParamId(1)).clone().square();
                beta.matmul(batch.xt.clone())
            }
        }
    }

    /// The model's outputs on every sample of `batch`, downloaded.
    pub fn predict<D: Device<f64>>(
        &self,
        store: &ParamStore<f64, D>,
        batch: &Batch<D>,
    ) -> Vec<f64> {
        self.output_values(store, batch).download()
    }

    /// `1/(2n) sum (f - y)^2` without gradients; one scalar comes back.
    pub fn loss<D: Device<f64>>(&self, store: &ParamStore<f64, D>, batch: &Batch<D>) -> f64 {
        let pred = self.output_values(store, batch);
        (pred - batch.y.clone())
            .square()
            .sum::<Rank0, _>()
            .download()[0]
            / (2.0 * batch.len as f64)
    }

    /// The Gauss-Newton trace `(1/n) sum_i |grad_theta f(x_i)|^2` on `batch`, in closed form on
    /// the device (equal to the Hessian trace at an interpolating minimum):
    /// ReLU: `|grad f(x)|^2 = sum_k relu(w_k.x)^2 + |x|^2 sum_k a_k^2 [w_k.x > 0]`;
    /// diagonal: `|grad f(x)|^2 = 4 sum_j (u_j^2 + v_j^2) x_j^2`.
    pub fn gauss_newton_trace<D: Device<f64>>(
        &self,
        store: &ParamStore<f64, D>,
        batch: &Batch<D>,
    ) -> f64 {
        let n = batch.len;
        let xsq = batch.xt.clone().square();
        let total = match *self {
            Model::Relu { width, .. } => {
                let pre = store.matrix_value(ParamId(0)).matmul(batch.xt.clone());
                let active = pre.clone().gt(0.0);
                let hidden = pre.relu();
                let x_norms = xsq
                    .sum::<(usize,), Axis<0>>()
                    .broadcast_like::<_, Axis<0>>(&(width, n));
                let a_sq = store
                    .flat(ParamId(1))
                    .clone()
                    .square()
                    .broadcast_like::<_, Axis<1>>(&(width, n));
                let zeros = store.device().zeros_like(&(width, n));
                let first = hidden.square().sum::<Rank0, _>();
                let second = active.choose(a_sq * x_norms, zeros).sum::<Rank0, _>();
                (first + second).download()[0]
            }
            Model::Diagonal { .. } => {
                let s = store.flat(ParamId(0)).clone().square()
                    + store.flat(ParamId(1)).clone().square();
                (s.matmul(xsq).sum::<Rank0, _>() * 4.0).download()[0]
            }
        };
        total / n as f64
    }

    /// The norm the paper ties to sharpness, on the device: the path norm `sum_k |a_k| |w_k|`
    /// for the ReLU network, `|beta|_1` for the diagonal network.
    pub fn param_norm_on<D: Device<f64>>(&self, store: &ParamStore<f64, D>) -> f64 {
        match *self {
            Model::Relu { .. } => {
                let row_norms = store
                    .matrix_value(ParamId(0))
                    .square()
                    .sum::<(usize,), Axis<1>>()
                    .sqrt();
                (row_norms * store.flat(ParamId(1)).clone().abs())
                    .sum::<Rank0, _>()
                    .download()[0]
            }
            Model::Diagonal { .. } => {
                let beta = store.flat(ParamId(0)).clone().square()
                    - store.flat(ParamId(1)).clone().square();
                beta.abs().sum::<Rank0, _>().download()[0]
            }
        }
    }

    /// Loss and gradient at host parameters `theta` (reference tests).
    pub fn loss_and_grad<D: Device<f64>>(
        &self,
        dev: &D,
        theta: &[f64],
        batch: &Batch<D>,
    ) -> (f64, Vec<f64>) {
        let store = self.store(dev, theta);
        let (value, mut g) = self.loss_and_grads(&store, batch);
        let grad = ParamStore::download_vec(&store.gradient_vec(&mut g));
        (value, grad)
    }

    /// Gradient of the summed outputs `sum_i f(x_i)` at host parameters; for a one-sample batch,
    /// `grad f(x)` (reference for the Gauss-Newton trace).
    pub fn output_grad<D: Device<f64>>(
        &self,
        dev: &D,
        theta: &[f64],
        batch: &Batch<D>,
    ) -> Vec<f64> {
        let store = self.store(dev, theta);
        let mut g = self.outputs(&store, batch).sum::<Rank0, _>().backward();
        ParamStore::download_vec(&store.gradient_vec(&mut g))
    }

    /// The diagonal network's regression vector `u*u - v*v` (empty for the ReLU network).
    pub fn beta(&self, theta: &[f64]) -> Vec<f64> {
        match *self {
            Model::Diagonal { dim } => (0..dim)
                .map(|j| theta[j] * theta[j] - theta[dim + j] * theta[dim + j])
                .collect(),
            Model::Relu { .. } => Vec::new(),
        }
    }

    /// The norm the paper ties to sharpness: the path norm `sum_k |a_k| |w_k|` for the ReLU
    /// network, `|beta|_1` for the diagonal network.
    pub fn param_norm(&self, theta: &[f64]) -> f64 {
        match *self {
            Model::Relu { dim, width } => (0..width)
                .map(|k| {
                    let row = &theta[k * dim..(k + 1) * dim];
                    theta[width * dim + k].abs() * row.iter().map(|x| x * x).sum::<f64>().sqrt()
                })
                .sum(),
            Model::Diagonal { .. } => self.beta(theta).iter().map(|b| b.abs()).sum(),
        }
    }

    /// Human description of the model and its parameter layout (written next to the
    /// parameters of every run).
    pub fn formula(&self) -> String {
        match *self {
            Model::Relu { dim, width } => format!(
                "two-layer ReLU network, d = {dim} inputs, m = {width} hidden units\n\
                 f(x) = sum_k a[k] * max(0, W[k,:] . x)\n\
                 tensors: W (m x d, row k is w_k), a (m)\n\
                 flat parameter order: W row-major, then a\n\
                 loss on n samples: L = 1/(2n) * sum_i (f(x_i) - y_i)^2\n\
                 path norm: sum_k |a[k]| * |W[k,:]|_2\n"
            ),
            Model::Diagonal { dim } => format!(
                "diagonal linear network, d = {dim}\n\
                 f(x) = beta . x, beta = u*u - v*v (elementwise)\n\
                 tensors: u (d), v (d), beta (d, derived)\n\
                 flat parameter order: u, then v\n\
                 loss on n samples: L = 1/(2n) * sum_i (f(x_i) - y_i)^2\n\
                 parameter norm: |beta|_1\n"
            ),
        }
    }
}

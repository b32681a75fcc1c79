//! The two models of the stability paper, written with dfdx tensors in f64, over a flat parameter
//! vector so that the Hessian estimators can perturb it.
//!
//! - Two-layer ReLU network: `f(x) = sum_k a_k * relu(w_k . x)`, parameters `W` (m x d, rows
//!   `w_k`) then `a` (m), flattened as `[W row-major, a]`.
//! - Diagonal linear network: `f(x) = beta . x` with `beta = u*u - v*v`, parameters `[u, v]`.
//!
//! Loss on a set of n samples: `L = 1/(2n) sum_i (f(x_i) - y_i)^2`.

use dfdx::prelude::*;

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
            xt: dev.tensor_from_vec(xt, (data.dim, b)),
            y: dev.tensor_from_vec(y, (b,)),
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

    /// Loss and its gradient with respect to the flat parameters, on `batch`.
    pub fn loss_and_grad<D: Device<f64>>(
        &self,
        dev: &D,
        theta: &[f64],
        batch: &Batch<D>,
    ) -> (f64, Vec<f64>) {
        self.objective_grad(dev, theta, batch, Objective::Loss)
    }

    /// Gradient of the summed outputs `sum_i f(x_i)`; for a one-sample batch, `grad f(x)`.
    pub fn output_grad<D: Device<f64>>(
        &self,
        dev: &D,
        theta: &[f64],
        batch: &Batch<D>,
    ) -> Vec<f64> {
        self.objective_grad(dev, theta, batch, Objective::SumOutputs)
            .1
    }

    fn objective_grad<D: Device<f64>>(
        &self,
        dev: &D,
        theta: &[f64],
        batch: &Batch<D>,
        objective: Objective,
    ) -> (f64, Vec<f64>) {
        assert_eq!(theta.len(), self.num_params(), "parameter vector size");
        let finish = |out: Tensor<(usize,), f64, D, OwnedTape<f64, D>>| {
            let scalar = match objective {
                Objective::Loss => (out - batch.y.clone()).square().mean::<Rank0, _>() * 0.5,
                Objective::SumOutputs => out.sum::<Rank0, _>(),
            };
            let value = scalar.as_vec()[0];
            (value, scalar.backward())
        };
        match *self {
            Model::Relu { dim, width } => {
                let w = dev.tensor_from_vec(theta[..width * dim].to_vec(), (width, dim));
                let a = dev.tensor_from_vec(theta[width * dim..].to_vec(), (width,));
                let hidden = w.leaky_trace().matmul(batch.xt.clone()).relu();
                let out = a.leaky_trace().matmul(hidden);
                let (value, grads) = finish(out);
                let mut g = grads.get(&w).as_vec();
                g.extend(grads.get(&a).as_vec());
                (value, g)
            }
            Model::Diagonal { dim } => {
                let u = dev.tensor_from_vec(theta[..dim].to_vec(), (dim,));
                let v = dev.tensor_from_vec(theta[dim..].to_vec(), (dim,));
                let beta = u.leaky_trace().square() - v.leaky_trace().square();
                let out = beta.matmul(batch.xt.clone());
                let (value, grads) = finish(out);
                let mut g = grads.get(&u).as_vec();
                g.extend(grads.get(&v).as_vec());
                (value, g)
            }
        }
    }

    /// Model outputs on every sample of `data` (no gradient tape).
    pub fn predict<D: Device<f64>>(&self, dev: &D, theta: &[f64], batch: &Batch<D>) -> Vec<f64> {
        match *self {
            Model::Relu { dim, width } => {
                let w = dev.tensor_from_vec(theta[..width * dim].to_vec(), (width, dim));
                let a = dev.tensor_from_vec(theta[width * dim..].to_vec(), (width,));
                a.matmul(w.matmul(batch.xt.clone()).relu()).as_vec()
            }
            Model::Diagonal { dim } => {
                let beta = self.beta(theta);
                dev.tensor_from_vec(beta, (dim,))
                    .matmul(batch.xt.clone())
                    .as_vec()
            }
        }
    }

    /// `1/(2n) sum (f - y)^2` without gradients.
    pub fn loss<D: Device<f64>>(&self, dev: &D, theta: &[f64], batch: &Batch<D>) -> f64 {
        let pred = self.predict(dev, theta, batch);
        let y = batch.y.as_vec();
        pred.iter()
            .zip(&y)
            .map(|(p, t)| (p - t).powi(2))
            .sum::<f64>()
            / (2.0 * batch.len as f64)
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

#[derive(Clone, Copy)]
enum Objective {
    Loss,
    SumOutputs,
}

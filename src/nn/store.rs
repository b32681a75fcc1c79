//! The parameter store: named, runtime-shaped parameter tensors that live on the run's device.
//!
//! Every parameter is kept as one flat tensor (`Tensor<(usize,), E, D>`) together with its
//! logical shape; a model asks for it by [`ParamId`] (or name) and gets it traced and reshaped
//! (a contiguous reshape is free in dfdx and keeps the tensor's id, so gradients land on the flat
//! tensor). Parameters are uploaded once when added; a training step uploads only its batch.
//!
//! The trainable parameters, in the order they were added, form the flat parameter vector the
//! Hessian estimators work on ([`ParamVec`]): perturbations are `axpy`s on the device and only
//! scalars (dot products) come back to the host.

use dfdx::prelude::*;

use crate::nn::transfer::{Download, Upload};
use num_traits::ToPrimitive;

/// A taped tensor (one backward pass).
pub type Taped<S, E, D> = Tensor<S, E, D, OwnedTape<E, D>>;

/// Which parameter of a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParamId(pub usize);

/// One parameter: its name, logical shape and flat device tensor.
#[derive(Clone, Debug)]
pub struct Param<E: Dtype, D: Device<E>> {
    pub name: String,
    pub shape: Vec<usize>,
    pub tensor: Tensor<(usize,), E, D>,
    /// Updated by optimizers and seen by the Hessian estimators.
    pub trainable: bool,
    /// Entries an optimizer may change (1) and those it must leave as they are (0).
    pub mask: Option<Tensor<(usize,), E, D>>,
    /// Optimizer parameter group (its own learning rate); 0 unless set.
    pub group: usize,
}

impl<E: Dtype, D: Device<E>> Param<E, D> {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Named parameters of one run, on one device.
#[derive(Clone, Debug)]
pub struct ParamStore<E: Dtype, D: Device<E>> {
    dev: D,
    params: Vec<Param<E, D>>,
}

/// A vector in the space of a store's trainable parameters: one flat tensor per parameter.
pub type ParamVec<E, D> = Vec<Tensor<(usize,), E, D>>;

impl<E: Dtype + ToPrimitive, D: Device<E>> ParamStore<E, D> {
    pub fn new(dev: &D) -> ParamStore<E, D> {
        ParamStore {
            dev: dev.clone(),
            params: Vec::new(),
        }
    }

    pub fn device(&self) -> &D {
        &self.dev
    }

    /// Adds a trainable parameter with the given shape and initial values (row-major); the
    /// values are uploaded once. Panics on a repeated name or a size mismatch (both are bugs).
    pub fn add(&mut self, name: &str, shape: &[usize], values: Vec<E>) -> ParamId {
        let numel: usize = shape.iter().product();
        assert_eq!(
            values.len(),
            numel,
            "parameter `{name}`: {shape:?} needs {numel} values"
        );
        assert!(self.find(name).is_none(), "parameter `{name}` added twice");
        self.params.push(Param {
            name: name.to_string(),
            shape: shape.to_vec(),
            tensor: self.dev.upload(values, (numel,)),
            trainable: true,
            mask: None,
            group: 0,
        });
        ParamId(self.params.len() - 1)
    }

    /// Adds a parameter filled with `value`.
    pub fn add_filled(&mut self, name: &str, shape: &[usize], value: E) -> ParamId {
        let numel: usize = shape.iter().product();
        self.add(name, shape, vec![value; numel])
    }

    pub fn find(&self, name: &str) -> Option<ParamId> {
        self.params.iter().position(|p| p.name == name).map(ParamId)
    }

    /// The id of `name`; panics when there is none (a bug in the model).
    pub fn id(&self, name: &str) -> ParamId {
        self.find(name)
            .unwrap_or_else(|| panic!("no parameter named `{name}`"))
    }

    pub fn param(&self, id: ParamId) -> &Param<E, D> {
        &self.params[id.0]
    }

    pub fn param_mut(&mut self, id: ParamId) -> &mut Param<E, D> {
        &mut self.params[id.0]
    }

    pub fn params(&self) -> &[Param<E, D>] {
        &self.params
    }

    pub fn params_mut(&mut self) -> &mut [Param<E, D>] {
        &mut self.params
    }

    /// Freezes (or unfreezes) a parameter: optimizers and estimators skip frozen ones.
    pub fn set_trainable(&mut self, id: ParamId, trainable: bool) {
        self.params[id.0].trainable = trainable;
    }

    /// Lets optimizers change only the entries where `mask` is 1 (fine-tuning a subset).
    pub fn set_mask(&mut self, id: ParamId, mask: Vec<E>) {
        let n = self.params[id.0].numel();
        assert_eq!(mask.len(), n, "mask of `{}`", self.params[id.0].name);
        self.params[id.0].mask = Some(self.dev.upload(mask, (n,)));
    }

    /// Puts a parameter into an optimizer group (see `Optimizer::with_group_lr`).
    pub fn set_group(&mut self, id: ParamId, group: usize) {
        self.params[id.0].group = group;
    }

    /// The flat tensor, untraced.
    pub fn flat(&self, id: ParamId) -> &Tensor<(usize,), E, D> {
        &self.params[id.0].tensor
    }

    /// The flat tensor, traced (its gradient is the parameter's).
    pub fn vector(&self, id: ParamId) -> Taped<(usize,), E, D> {
        self.params[id.0].tensor.leaky_trace()
    }

    /// A matrix parameter, traced: `(rows, cols)` row-major.
    pub fn matrix(&self, id: ParamId) -> Taped<(usize, usize), E, D> {
        let (r, c) = self.dims2(id);
        self.params[id.0].tensor.leaky_trace().reshape_like(&(r, c))
    }

    /// A matrix parameter without a tape (evaluation).
    pub fn matrix_value(&self, id: ParamId) -> Tensor<(usize, usize), E, D> {
        let (r, c) = self.dims2(id);
        self.params[id.0].tensor.clone().reshape_like(&(r, c))
    }

    /// A rank-4 parameter (convolution kernels), traced.
    pub fn rank4(&self, id: ParamId) -> Taped<(usize, usize, usize, usize), E, D> {
        let s = &self.params[id.0].shape;
        assert_eq!(s.len(), 4, "`{}` is not rank 4", self.params[id.0].name);
        let shape = (s[0], s[1], s[2], s[3]);
        self.params[id.0].tensor.leaky_trace().reshape_like(&shape)
    }

    fn dims2(&self, id: ParamId) -> (usize, usize) {
        let p = &self.params[id.0];
        match p.shape.as_slice() {
            [r, c] => (*r, *c),
            [n] => (1, *n),
            s => panic!("`{}` has shape {s:?}, not a matrix", p.name),
        }
    }

    /// Downloads a parameter (artifacts, host-side metrics).
    pub fn values(&self, id: ParamId) -> Vec<E> {
        self.params[id.0].tensor.download()
    }

    /// Replaces a parameter's values in place (the tensor keeps its id).
    pub fn assign(&mut self, id: ParamId, values: &Tensor<(usize,), E, D>) {
        self.params[id.0].tensor.axpy(0.0, values, 1.0);
    }

    /// Uploads new values for a parameter in place.
    pub fn upload(&mut self, id: ParamId, values: Vec<E>) {
        let n = self.params[id.0].numel();
        assert_eq!(values.len(), n, "values of `{}`", self.params[id.0].name);
        let t = self.dev.upload(values, (n,));
        self.assign(id, &t);
    }

    /// Number of trainable scalars.
    pub fn num_trainable(&self) -> usize {
        self.trainable().map(|p| p.numel()).sum()
    }

    fn trainable(&self) -> impl Iterator<Item = &Param<E, D>> {
        self.params.iter().filter(|p| p.trainable)
    }

    /// The trainable parameters as a vector (shares the buffers: cheap until one changes).
    pub fn snapshot(&self) -> ParamVec<E, D> {
        self.trainable().map(|p| p.tensor.clone()).collect()
    }

    /// Sets the trainable parameters to `v` (same layout as [`ParamStore::snapshot`]).
    pub fn restore(&mut self, v: &ParamVec<E, D>) {
        let mut it = v.iter();
        for p in self.params.iter_mut().filter(|p| p.trainable) {
            p.tensor.axpy(0.0, it.next().expect("vector layout"), 1.0);
        }
    }

    /// `theta += alpha * v` on the trainable parameters.
    pub fn add_scaled(&mut self, v: &ParamVec<E, D>, alpha: f64) {
        let mut it = v.iter();
        for p in self.params.iter_mut().filter(|p| p.trainable) {
            p.tensor.axpy(1.0, it.next().expect("vector layout"), alpha);
        }
    }

    /// The gradients of the trainable parameters as a vector (zero where a parameter got none).
    pub fn gradient_vec(&self, grads: &mut Gradients<E, D>) -> ParamVec<E, D> {
        self.trainable()
            .map(|p| {
                grads.try_alloc_for(&p.tensor).expect("gradient allocation");
                grads.get(&p.tensor)
            })
            .collect()
    }

    /// A host vector uploaded in the layout of the trainable parameters.
    pub fn upload_vec(&self, flat: &[E]) -> ParamVec<E, D> {
        assert_eq!(flat.len(), self.num_trainable(), "vector length");
        let mut out = Vec::new();
        let mut at = 0;
        for p in self.trainable() {
            let n = p.numel();
            out.push(self.dev.upload(flat[at..at + n].to_vec(), (n,)));
            at += n;
        }
        out
    }

    /// Downloads a vector in the layout of the trainable parameters (tests, artifacts).
    pub fn download_vec(v: &ParamVec<E, D>) -> Vec<E> {
        v.iter().flat_map(|t| t.download()).collect()
    }

    /// Every parameter as (name, shape, values in f64), for artifacts.
    pub fn named_values(&self) -> Vec<(String, Vec<usize>, Vec<f64>)> {
        self.params
            .iter()
            .map(|p| {
                let values = p.tensor.download();
                (
                    p.name.clone(),
                    p.shape.clone(),
                    values
                        .iter()
                        .map(|v| v.to_f64().unwrap_or(f64::NAN))
                        .collect(),
                )
            })
            .collect()
    }

    /// True when every trainable parameter is finite.
    pub fn all_finite(&self) -> bool {
        self.trainable().all(|p| {
            let s = p.tensor.clone().square().sum::<Rank0, _>().download()[0];
            s.to_f64().is_some_and(f64::is_finite)
        })
    }
}

/// Operations on [`ParamVec`]s: dot products come back as f64 scalars, the rest stays on the
/// device.
pub mod vec_ops {
    use super::*;

    pub fn dot<E: Dtype + ToPrimitive, D: Device<E>>(
        a: &ParamVec<E, D>,
        b: &ParamVec<E, D>,
    ) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| {
                (x.clone() * y.clone()).sum::<Rank0, _>().download()[0]
                    .to_f64()
                    .unwrap_or(f64::NAN)
            })
            .sum()
    }

    pub fn norm<E: Dtype + ToPrimitive, D: Device<E>>(a: &ParamVec<E, D>) -> f64 {
        dot(a, a).sqrt()
    }

    /// `y = alpha * y + beta * x`.
    pub fn axpby<E: Dtype, D: Device<E>>(
        y: &mut ParamVec<E, D>,
        alpha: f64,
        x: &ParamVec<E, D>,
        beta: f64,
    ) {
        for (a, b) in y.iter_mut().zip(x) {
            a.axpy(alpha, b, beta);
        }
    }

    pub fn scale<E: Dtype, D: Device<E>>(y: &mut ParamVec<E, D>, alpha: f64) {
        for a in y.iter_mut() {
            let c = a.clone();
            a.axpy(alpha, &c, 0.0);
        }
    }
}

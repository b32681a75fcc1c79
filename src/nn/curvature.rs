//! The Hessian estimators of `metrics::hessian` on a device store: vectors are [`ParamVec`]s on
//! the run's device, Hessian-vector products are central differences of gradients taken after
//! `axpy` perturbations of the parameters, and only dot products cross to the host.

use dfdx::prelude::*;

use crate::nn::transfer::Upload;

use super::store::{vec_ops, ParamStore, ParamVec};
use crate::metrics::hessian::VectorSpace;

/// The space of a store's trainable parameters.
pub struct DeviceSpace<E: Dtype, D: Device<E>> {
    dev: D,
    sizes: Vec<usize>,
    dtype: std::marker::PhantomData<E>,
}

impl<E: Dtype, D: Device<E>> DeviceSpace<E, D> {
    pub fn of(store: &ParamStore<E, D>) -> DeviceSpace<E, D> {
        DeviceSpace {
            dev: store.device().clone(),
            sizes: store
                .params()
                .iter()
                .filter(|p| p.trainable)
                .map(|p| p.numel())
                .collect(),
            dtype: std::marker::PhantomData,
        }
    }
}

impl<E: Dtype, D: Device<E>> VectorSpace for DeviceSpace<E, D> {
    type V = ParamVec<E, D>;
    fn dim(&self) -> usize {
        self.sizes.iter().sum()
    }
    fn dot(&self, a: &Self::V, b: &Self::V) -> f64 {
        vec_ops::dot(a, b)
    }
    fn axpby(&self, y: &mut Self::V, alpha: f64, x: &Self::V, beta: f64) {
        vec_ops::axpby(y, alpha, x, beta)
    }
    fn upload(&self, values: &[f64]) -> Self::V {
        let mut at = 0;
        self.sizes
            .iter()
            .map(|&n| {
                let part: Vec<E> = values[at..at + n]
                    .iter()
                    .map(|v| E::from_f64(*v).expect("representable"))
                    .collect();
                at += n;
                self.dev.upload(part, (n,))
            })
            .collect()
    }
}

/// A gradient oracle on a store: the gradient of the loss at the store's current parameters.
pub type GradientFn<'a, E, D> = dyn FnMut(&ParamStore<E, D>) -> ParamVec<E, D> + 'a;

/// `H v` by a central difference along `v / |v|` with step `h`; the parameters are put back
/// exactly (their buffers are restored, not un-perturbed).
pub fn fd_hvp<E: Dtype, D: Device<E>>(
    store: &mut ParamStore<E, D>,
    grad: &mut GradientFn<'_, E, D>,
    v: &ParamVec<E, D>,
    h: f64,
) -> ParamVec<E, D> {
    let nv = vec_ops::norm(v);
    if nv == 0.0 {
        return v.clone();
    }
    let base = store.snapshot();
    store.add_scaled(v, h / nv);
    let mut gp = grad(store);
    store.restore(&base);
    store.add_scaled(v, -h / nv);
    let gm = grad(store);
    store.restore(&base);
    vec_ops::axpby(&mut gp, nv / (2.0 * h), &gm, -nv / (2.0 * h));
    gp
}

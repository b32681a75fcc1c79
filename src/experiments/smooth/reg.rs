//! Step-wise variation regularization (Smooth Diffusion) without double backward.
//!
//! The one-step map of a training step is `eps -> x0_hat = (x_t - s eps_hat(x_t)) / a` with
//! `x_t = a x0 + s eps`, `a = sqrt(abar_t)`, `s = sqrt(1 - abar_t)`. The paper penalizes
//! `(||J^T n|| - m)^2` with `J = d x0_hat / d eps`, `n ~ N(0, I) s / sqrt(d)` and `m` a running
//! mean of the norm. dfdx has no double backward, so the norm is estimated by a forward finite
//! difference along an isotropic direction `v = s z / sqrt(d)` (`E ||J v||^2 = E ||J^T n||^2`):
//!
//! `r = ||x0_hat(eps + k v) - x0_hat(eps)|| / k`, with the step `k = h / s^2` chosen so that
//! `x_t` moves by `h z / sqrt(d)` (norm about `h`) whatever `t` is. Since `x0_hat` is affine in
//! `eps` apart from `eps_hat(x_t)`, this is
//!
//! `r = s^2 / (h a) * || h z / sqrt(d) - s (eps_hat(x_t + h z / sqrt(d)) - eps_hat(x_t)) ||`.
//!
//! Both passes are on the tape, so the penalty's gradient is exact for the finite-difference
//! estimate (first order in the parameters).

use dfdx::prelude::*;

use crate::experiments::classifier::upload_rows;
use crate::experiments::diffusion::net::upload_f32;
use crate::experiments::diffusion::{EpsNet, NoiseSchedule};
use crate::nn::models::{Matrix, TapedMatrix};
use crate::nn::store::ParamStore;

/// The host side of one estimate: the perturbed inputs and the per-row coefficients.
#[derive(Clone, Debug)]
pub struct Probe {
    /// `h z / sqrt(d)`, row-major.
    pub shift: Vec<f32>,
    /// `x_t + shift`.
    pub xt_shifted: Vec<f32>,
    /// `s` of each row, repeated over its `d` columns.
    pub s_rows: Vec<f32>,
    /// `s^2 / (h a)` per row.
    pub coef: Vec<f32>,
}

/// The probe for rows `x_t` at timesteps `t` along standard normal `z` with step `h`.
pub fn probe(
    schedule: &NoiseSchedule,
    xt: &[f32],
    t: &[usize],
    z: &[f32],
    h: f64,
    dim: usize,
) -> Probe {
    let scale = h / (dim as f64).sqrt();
    let shift: Vec<f32> = z.iter().map(|v| (*v as f64 * scale) as f32).collect();
    let xt_shifted = xt.iter().zip(&shift).map(|(x, d)| x + d).collect();
    let mut s_rows = Vec::with_capacity(xt.len());
    let mut coef = Vec::with_capacity(t.len());
    for &ti in t {
        let (a, s) = schedule.mix(ti);
        s_rows.extend(std::iter::repeat_n(s as f32, dim));
        coef.push((s * s / (h * a)) as f32);
    }
    Probe {
        shift,
        xt_shifted,
        s_rows,
        coef,
    }
}

/// `r` per row on the tape, from the prediction at `x_t` (`e1`, taped) and at the shifted
/// input (`e2`, taped).
pub fn variation<E: Dtype, D: Device<E>>(
    e1: TapedMatrix<E, D>,
    e2: TapedMatrix<E, D>,
    p: &Probe,
) -> Tensor<(usize,), E, D, OwnedTape<E, D>> {
    let dev = e1.device().clone();
    let (n, dim) = *e1.shape();
    let shift: Matrix<E, D> = upload_f32(&dev, &p.shift, dim);
    let s_rows: Matrix<E, D> = upload_f32(&dev, &p.s_rows, dim);
    let coef: Vec<E> = p
        .coef
        .iter()
        .map(|c| E::from_f32(*c).expect("representable"))
        .collect();
    let coef = dev.tensor_from_vec(coef, (n,));
    let diff = ((e2 - e1) * s_rows).negate() + shift;
    let eps = E::from_f64(1e-20).expect("representable");
    (diff.square().sum::<(usize,), Axis<1>>() + eps).sqrt() * coef
}

/// The one-step map `x0_hat(eps)` without a tape (for references and tests): rows `x0`, noise
/// `eps`, timesteps `t`.
pub fn x0_hat<E: Dtype + num_traits::ToPrimitive, D: Device<E>>(
    net: &EpsNet,
    store: &ParamStore<E, D>,
    schedule: &NoiseSchedule,
    x0: &[f64],
    eps: &[f64],
    t: &[usize],
) -> Vec<f64> {
    let dim = net.config.data_dim;
    let mut xt = Vec::with_capacity(x0.len());
    for (i, &ti) in t.iter().enumerate() {
        let (a, s) = schedule.mix(ti);
        for j in 0..dim {
            xt.push(a * x0[i * dim + j] + s * eps[i * dim + j]);
        }
    }
    let x: Matrix<E, D> = upload_rows(store.device(), &xt, dim);
    let e = net.eps(store, &x, None, t).as_vec();
    let mut out = Vec::with_capacity(xt.len());
    for (i, &ti) in t.iter().enumerate() {
        let (a, s) = schedule.mix(ti);
        for j in 0..dim {
            let k = i * dim + j;
            out.push((xt[k] - s * e[k].to_f64().unwrap_or(f64::NAN)) / a);
        }
    }
    out
}

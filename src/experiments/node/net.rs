//! The neural ODE: a dfdx dynamics network, solved on the host with the adaptive solver (which
//! picks the steps and counts evaluations), then replayed on the dfdx tape over the accepted
//! steps so that gradients flow back through the solver (discretize-then-optimize).
//!
//! Dynamics: `f(t, y) = tanh(y W1 + t w_t + b1) W2 + b2`, on a batch of states (`b x d`).

use dfdx::prelude::*;

use crate::nn::transfer::{Download, Upload};

use crate::nn::{ParamId, ParamStore};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::ode::{dp5, Step, Tolerances};

/// A taped batch of states.
pub type Taped<D = Cpu> = Tensor<(usize, usize), f64, D, OwnedTape<f64, D>>;
/// A taped scalar (a loss term).
pub type TapedScalar<D = Cpu> = Tensor<(), f64, D, OwnedTape<f64, D>>;

/// `n` handles on one taped tensor, each recording onto a tape that merges at the loss.
pub fn fork<D: Device<f64>>(t: Taped<D>, n: usize) -> Vec<Taped<D>> {
    let (t, tape) = t.split_tape();
    let mut v = Vec::with_capacity(n);
    v.push(t.clone().put_tape(tape));
    for _ in 1..n {
        v.push(t.retaped::<OwnedTape<f64, D>>());
    }
    v
}

/// Parameters of the dynamics network (flat, row-major).
#[derive(Clone, Debug)]
pub struct Dynamics {
    pub d: usize,
    pub hidden: usize,
    pub w1: Vec<f64>,
    pub wt: Vec<f64>,
    pub b1: Vec<f64>,
    pub w2: Vec<f64>,
    pub b2: Vec<f64>,
}

/// The dynamics' parameters as (untaped) tensors, built once per training step so that every
/// use on the tape shares their ids.
pub struct DynamicsTensors<D: Device<f64> = Cpu> {
    pub w1: Tensor<(usize, usize), f64, D>,
    pub wt: Tensor<(usize,), f64, D>,
    pub b1: Tensor<(usize,), f64, D>,
    pub w2: Tensor<(usize, usize), f64, D>,
    pub b2: Tensor<(usize,), f64, D>,
}

/// Where the dynamics' parameters sit in a store.
#[derive(Clone, Copy, Debug)]
pub struct DynamicsIds {
    pub w1: ParamId,
    pub wt: ParamId,
    pub b1: ParamId,
    pub w2: ParamId,
    pub b2: ParamId,
}

impl<D: Device<f64>> DynamicsTensors<D> {
    /// The store's tensors (shared buffers and ids: their gradients are the store's).
    pub fn from_store(store: &ParamStore<f64, D>, ids: DynamicsIds) -> DynamicsTensors<D> {
        DynamicsTensors {
            w1: store.matrix_value(ids.w1),
            wt: store.flat(ids.wt).clone(),
            b1: store.flat(ids.b1).clone(),
            w2: store.matrix_value(ids.w2),
            b2: store.flat(ids.b2).clone(),
        }
    }
}

impl Dynamics {
    pub fn new(d: usize, hidden: usize, scale: f64, rng: &mut impl Rng) -> Dynamics {
        let mut g = |n: usize, fan_in: usize| -> Vec<f64> {
            (0..n)
                .map(|_| {
                    let z: f64 = StandardNormal.sample(rng);
                    scale * z / (fan_in as f64).sqrt()
                })
                .collect()
        };
        Dynamics {
            d,
            hidden,
            w1: g(d * hidden, d),
            wt: g(hidden, 1),
            b1: vec![0.0; hidden],
            w2: g(hidden * d, hidden),
            b2: vec![0.0; d],
        }
    }

    pub fn params_mut(&mut self) -> Vec<&mut Vec<f64>> {
        vec![
            &mut self.w1,
            &mut self.wt,
            &mut self.b1,
            &mut self.w2,
            &mut self.b2,
        ]
    }

    pub fn tensors<D: Device<f64>>(&self, dev: &D) -> DynamicsTensors<D> {
        let (d, h) = (self.d, self.hidden);
        DynamicsTensors {
            w1: dev.upload(self.w1.clone(), (d, h)),
            wt: dev.upload(self.wt.clone(), (h,)),
            b1: dev.upload(self.b1.clone(), (h,)),
            w2: dev.upload(self.w2.clone(), (h, d)),
            b2: dev.upload(self.b2.clone(), (d,)),
        }
    }

    /// `f(t, y)` for a batch `y` (`b x d`) on the device, without a tape.
    pub fn eval_on<D: Device<f64>>(
        &self,
        p: &DynamicsTensors<D>,
        t: f64,
        y: &Tensor<(usize, usize), f64, D>,
    ) -> Tensor<(usize, usize), f64, D> {
        let b = y.shape().0;
        let (d, h) = (self.d, self.hidden);
        let pre = y.clone().matmul(p.w1.clone())
            + (p.b1.clone() + p.wt.clone() * t).broadcast_like::<_, Axis<0>>(&(b, h));
        pre.tanh().matmul(p.w2.clone()) + p.b2.clone().broadcast_like::<_, Axis<0>>(&(b, d))
    }

    /// `f(t, y)` for a flat host batch `y` (`b x d`): uploaded, evaluated, downloaded.
    pub fn eval<D: Device<f64>>(
        &self,
        p: &DynamicsTensors<D>,
        dev: &D,
        t: f64,
        y: &[f64],
    ) -> Vec<f64> {
        let yt = dev.upload(y.to_vec(), (y.len() / self.d, self.d));
        self.eval_on(p, t, &yt).download()
    }

    /// `f(t, y)` on the tape.
    pub fn eval_taped<D: Device<f64>>(
        &self,
        p: &DynamicsTensors<D>,
        t: f64,
        y: Taped<D>,
    ) -> Taped<D> {
        let b = y.shape().0;
        let (d, h) = (self.d, self.hidden);
        let bias = (p.b1.retaped::<OwnedTape<f64, D>>() + p.wt.retaped::<OwnedTape<f64, D>>() * t)
            .broadcast_like::<_, Axis<0>>(&(b, h));
        let pre = y.matmul(p.w1.retaped::<OwnedTape<f64, D>>()) + bias;
        pre.tanh().matmul(p.w2.retaped::<OwnedTape<f64, D>>())
            + p.b2
                .retaped::<OwnedTape<f64, D>>()
                .broadcast_like::<_, Axis<0>>(&(b, d))
    }

    /// Registers the parameters in a device store (`dyn.W1`, `dyn.wt`, `dyn.b1`, `dyn.W2`,
    /// `dyn.b2`); training then reads them from there.
    pub fn register<D: Device<f64>>(&self, store: &mut ParamStore<f64, D>) -> DynamicsIds {
        let (d, h) = (self.d, self.hidden);
        DynamicsIds {
            w1: store.add("dyn.W1", &[d, h], self.w1.clone()),
            wt: store.add("dyn.wt", &[h], self.wt.clone()),
            b1: store.add("dyn.b1", &[h], self.b1.clone()),
            w2: store.add("dyn.W2", &[h, d], self.w2.clone()),
            b2: store.add("dyn.b2", &[d], self.b2.clone()),
        }
    }

    /// Gradients of the dynamics' parameters, in the order of [`Dynamics::params_mut`].
    pub fn grads<D: Device<f64>>(p: &DynamicsTensors<D>, g: &Gradients<f64, D>) -> Vec<Vec<f64>> {
        vec![
            g.get(&p.w1).download(),
            g.get(&p.wt).download(),
            g.get(&p.b1).download(),
            g.get(&p.w2).download(),
            g.get(&p.b2).download(),
        ]
    }
}

/// One Dormand-Prince step on the tape. Returns the fifth-order state and, when asked, the
/// scaled error norm of the step (`sqrt(mean((err / scale)^2))` with the tolerance scale of the
/// solve held constant).
pub fn step_taped<D: Device<f64>>(
    net: &Dynamics,
    p: &DynamicsTensors<D>,
    y: Taped<D>,
    step: Step,
    with_error: Option<&Tensor<(usize, usize), f64, D>>,
) -> (Taped<D>, Option<TapedScalar<D>>) {
    let (t, h) = (step.t, step.h);
    // Uses of each stage k_i (i = 0..6): later stages, the error estimate.
    let stages = 7;
    let uses = |i: usize| -> usize {
        let later = (i + 1..stages).filter(|&s| dp5::A[s][i] != 0.0).count();
        let in_err = usize::from(with_error.is_some() && dp5::e(i) != 0.0);
        later + in_err
    };
    let mut ys = fork(y, stages);
    let mut ks: Vec<Vec<Taped<D>>> = Vec::with_capacity(stages);
    let k0 = net.eval_taped(p, t, ys.remove(0));
    ks.push(fork(k0, uses(0).max(1)));
    let mut y5 = None;
    for s in 1..stages {
        let mut acc = ys.remove(0);
        for (j, copies) in ks.iter_mut().enumerate() {
            let a = dp5::A[s][j];
            if a != 0.0 {
                acc = acc + copies.pop().expect("stage use") * (h * a);
            }
        }
        if s == stages - 1 {
            // The last stage's input is the fifth-order solution.
            if with_error.is_none() {
                return (acc, None);
            }
            let mut both = fork(acc, 2);
            let k6 = net.eval_taped(p, t + h, both.pop().unwrap());
            ks.push(vec![k6]);
            y5 = both.pop();
            break;
        }
        let k = net.eval_taped(p, t + dp5::C[s] * h, acc);
        ks.push(fork(k, uses(s).max(1)));
    }
    let y5 = y5.expect("fifth-order state");
    let scale = with_error.expect("scale");
    let mut err: Option<Taped<D>> = None;
    for (j, copies) in ks.iter_mut().enumerate() {
        let e = dp5::e(j);
        if e != 0.0 {
            let term = copies.pop().expect("error use") * (h * e);
            err = Some(match err {
                None => term,
                Some(acc) => acc + term,
            });
        }
    }
    let inv = scale.clone().recip();
    let norm = (err.expect("error terms") * inv)
        .square()
        .mean::<Rank0, _>()
        .sqrt();
    (y5, Some(norm))
}

/// The tolerance scale `atol + rtol * max(|y0|, |y1|)` of one step, on the device.
pub fn tolerance_scale<D: Device<f64>>(
    y0: &Tensor<(usize, usize), f64, D>,
    y1: &Tensor<(usize, usize), f64, D>,
    tol: Tolerances,
) -> Tensor<(usize, usize), f64, D> {
    y0.clone().abs().maximum(y1.clone().abs()) * tol.rtol + tol.atol
}

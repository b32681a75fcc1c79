//! Optimizers over a [`ParamStore`], through dfdx's update kernels (CPU and CUDA): SGD (with
//! classic or Nesterov momentum and L2 weight decay), Adam (L2 weight decay) and AdamW
//! (decoupled weight decay). Moments stay on the device, keyed by the parameters' tensors.
//!
//! Parameter groups: every parameter belongs to a group (0 unless set in the store); a group can
//! have its own learning rate. Masks: a parameter with a mask keeps its masked-out entries
//! exactly as they were (the update is computed, then those entries are put back), so weight
//! decay and momentum cannot move frozen entries either.

use std::collections::BTreeMap;

use dfdx::optim::{Momentum, WeightDecay};
use dfdx::prelude::*;
use num_traits::ToPrimitive;

use super::store::ParamStore;

/// Which update rule, with its hyper-parameters (the learning rate is the optimizer's).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rule {
    /// `v = g + momentum * v`, `theta -= lr * v` (or the Nesterov form); weight decay is L2
    /// (added to the gradient).
    Sgd {
        momentum: f64,
        nesterov: bool,
        weight_decay: f64,
    },
    /// Adam with bias correction; weight decay is L2 (added to the gradient).
    Adam {
        beta1: f64,
        beta2: f64,
        eps: f64,
        weight_decay: f64,
    },
    /// Adam with decoupled weight decay (Loshchilov & Hutter).
    AdamW {
        beta1: f64,
        beta2: f64,
        eps: f64,
        weight_decay: f64,
    },
}

impl Rule {
    pub fn sgd() -> Rule {
        Rule::Sgd {
            momentum: 0.0,
            nesterov: false,
            weight_decay: 0.0,
        }
    }

    pub fn adam() -> Rule {
        Rule::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }

    pub fn adamw(weight_decay: f64) -> Rule {
        Rule::AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
        }
    }
}

/// Cosine annealing to zero: `lr_i = lr (1 + cos(pi i / n)) / 2` at epoch (or step) `i` of `n`.
pub fn cosine_lr(lr: f64, i: usize, n: usize) -> f64 {
    0.5 * lr * (1.0 + (std::f64::consts::PI * i as f64 / n.max(1) as f64).cos())
}

/// An optimizer for the trainable parameters of one store.
pub struct Optimizer<E: Dtype, D: Device<E>> {
    pub rule: Rule,
    pub lr: f64,
    group_lr: BTreeMap<usize, f64>,
    t: i32,
    moment1: Gradients<E, D>,
    moment2: Gradients<E, D>,
}

impl<E: Dtype + ToPrimitive, D: Device<E>> Optimizer<E, D> {
    pub fn new(rule: Rule, lr: f64) -> Optimizer<E, D> {
        Optimizer {
            rule,
            lr,
            group_lr: BTreeMap::new(),
            t: 0,
            moment1: Gradients::leaky(),
            moment2: Gradients::leaky(),
        }
    }

    /// Gives parameter group `group` its own learning rate.
    pub fn with_group_lr(mut self, group: usize, lr: f64) -> Self {
        self.group_lr.insert(group, lr);
        self
    }

    pub fn set_group_lr(&mut self, group: usize, lr: f64) {
        self.group_lr.insert(group, lr);
    }

    /// Steps taken so far.
    pub fn steps(&self) -> i32 {
        self.t
    }

    /// One update of every trainable parameter from `grads` (a parameter that got no gradient
    /// sees zeros).
    pub fn step(
        &mut self,
        store: &mut ParamStore<E, D>,
        grads: &mut Gradients<E, D>,
    ) -> Result<(), D::Err> {
        self.t += 1;
        for p in store.params_mut().iter_mut().filter(|p| p.trainable) {
            let lr = self.group_lr.get(&p.group).copied().unwrap_or(self.lr);
            let before = p.mask.as_ref().map(|_| p.tensor.clone());
            let g = grads.get_or_alloc_mut(&p.tensor)?;
            let m1 = self.moment1.get_or_alloc_mut(&p.tensor)?;
            match self.rule {
                Rule::Sgd {
                    momentum,
                    nesterov,
                    weight_decay,
                } => {
                    let cfg = dfdx::optim::SgdConfig {
                        lr,
                        momentum: (momentum != 0.0).then_some(if nesterov {
                            Momentum::Nesterov(momentum)
                        } else {
                            Momentum::Classic(momentum)
                        }),
                        weight_decay: (weight_decay != 0.0)
                            .then_some(WeightDecay::L2(weight_decay)),
                    };
                    cfg.try_update(&mut p.tensor, m1, g)?;
                }
                Rule::Adam {
                    beta1,
                    beta2,
                    eps,
                    weight_decay,
                }
                | Rule::AdamW {
                    beta1,
                    beta2,
                    eps,
                    weight_decay,
                } => {
                    let decay = match self.rule {
                        Rule::AdamW { .. } => WeightDecay::Decoupled(weight_decay),
                        _ => WeightDecay::L2(weight_decay),
                    };
                    let cfg = dfdx::optim::AdamConfig {
                        lr,
                        betas: [beta1, beta2],
                        eps,
                        weight_decay: (weight_decay != 0.0).then_some(decay),
                    };
                    let m2 = self.moment2.get_or_alloc_mut(&p.tensor)?;
                    cfg.try_update(self.t, &mut p.tensor, m1, m2, g)?;
                }
            }
            if let (Some(mask), Some(before)) = (&p.mask, before) {
                // new * mask + before * (1 - mask), written back in place.
                let kept = p.tensor.clone() * mask.clone()
                    + before.clone() * (mask.clone().negate() + E::ONE);
                p.tensor.axpy(0.0, &kept, 1.0);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quadratic_grads(store: &ParamStore<f64, Cpu>) -> Gradients<f64, Cpu> {
        // L = 1/2 |x - c|^2 with c = (1, -2, 3).
        let x = store.vector(store.id("x"));
        let c = store.device().tensor_from_vec(vec![1.0, -2.0, 3.0], (3,));
        ((x - c).square().sum::<Rank0, _>() * 0.5).backward()
    }

    fn store() -> ParamStore<f64, Cpu> {
        let mut s = ParamStore::new(&Cpu::default());
        s.add("x", &[3], vec![0.0; 3]);
        s
    }

    #[test]
    fn sgd_step_matches_hand_computation() {
        let mut s = store();
        let mut opt = Optimizer::new(Rule::sgd(), 0.1);
        let mut g = quadratic_grads(&s);
        opt.step(&mut s, &mut g).unwrap();
        // x - 0.1 * (x - c) = 0.1 c
        assert_eq!(s.values(s.id("x")), vec![0.1, -0.2, 0.30000000000000004]);
    }

    #[test]
    fn momentum_and_nesterov_match_their_recurrences() {
        for nesterov in [false, true] {
            let mut s = store();
            let mut opt = Optimizer::new(
                Rule::Sgd {
                    momentum: 0.9,
                    nesterov,
                    weight_decay: 0.0,
                },
                0.1,
            );
            let (mut x, mut v) = (0.0f64, 0.0f64);
            for _ in 0..5 {
                let mut g = quadratic_grads(&s);
                opt.step(&mut s, &mut g).unwrap();
                let gr = x - 1.0;
                v = gr + 0.9 * v;
                x -= 0.1 * if nesterov { gr + 0.9 * v } else { v };
            }
            let got = s.values(s.id("x"))[0];
            assert!((got - x).abs() < 1e-12, "nesterov {nesterov}: {got} vs {x}");
        }
    }

    #[test]
    fn adam_first_step_moves_by_lr_and_adamw_decays() {
        let mut s = store();
        let mut opt = Optimizer::new(Rule::adam(), 0.5);
        let mut g = quadratic_grads(&s);
        opt.step(&mut s, &mut g).unwrap();
        let x = s.values(s.id("x"));
        for (v, want) in x.iter().zip([0.5, -0.5, 0.5]) {
            assert!((v - want).abs() < 1e-6, "{x:?}");
        }
        // AdamW with zero gradient: x <- x - lr * wd * x.
        let mut s = ParamStore::new(&Cpu::default());
        let id = s.add("x", &[2], vec![2.0, -4.0]);
        let mut opt = Optimizer::new(Rule::adamw(0.1), 0.5);
        let mut zero = Gradients::leaky();
        opt.step(&mut s, &mut zero).unwrap();
        assert_eq!(s.values(id), vec![2.0 * 0.95, -4.0 * 0.95]);
    }

    #[test]
    fn masks_and_groups() {
        let mut s = ParamStore::new(&Cpu::default());
        let x = s.add("x", &[3], vec![0.0; 3]);
        let y = s.add("y", &[1], vec![0.0]);
        s.set_mask(x, vec![1.0, 0.0, 1.0]);
        s.set_group(y, 1);
        let mut opt = Optimizer::new(
            Rule::Sgd {
                momentum: 0.5,
                nesterov: false,
                weight_decay: 0.1,
            },
            0.1,
        )
        .with_group_lr(1, 1.0);
        for _ in 0..3 {
            let xs = s.vector(x);
            let ys = s.vector(y);
            let c = s.device().tensor_from_vec(vec![1.0, 1.0, 1.0], (3,));
            let loss = (xs - c).square().sum::<Rank0, _>() + (ys - 1.0).square().sum::<Rank0, _>();
            let mut g = loss.backward();
            opt.step(&mut s, &mut g).unwrap();
        }
        let xv = s.values(x);
        assert_eq!(xv[1], 0.0, "masked entry moved: {xv:?}");
        assert!(xv[0] > 0.0 && xv[2] > 0.0);
        // Group 1 has its own learning rate: one plain SGD step from 0 on (p - 1)^2 moves x by
        // 0.1 * 2 and y by 1.0 * 2.
        let mut s = ParamStore::new(&Cpu::default());
        let x = s.add("x", &[1], vec![0.0]);
        let y = s.add("y", &[1], vec![0.0]);
        s.set_group(y, 1);
        let mut opt = Optimizer::new(Rule::sgd(), 0.1).with_group_lr(1, 1.0);
        let loss = (s.vector(x) - 1.0).square().sum::<Rank0, _>()
            + (s.vector(y) - 1.0).square().sum::<Rank0, _>();
        let mut g = loss.backward();
        opt.step(&mut s, &mut g).unwrap();
        assert_eq!((s.values(x)[0], s.values(y)[0]), (0.2, 2.0));
    }
}

//! The ELR loss (Liu et al. 2020, official `ELR/model/loss.py`): cross entropy on the (noisy)
//! label plus `lambda * mean_i log(1 - <t_i, p_i>)`, where `p_i = clamp(softmax(z_i), 1e-4,
//! 1 - 1e-4)` is on the tape and `t_i` is a per-example temporal ensemble of the network's own
//! detached, clamped and renormalised predictions, kept on the host and updated before the loss
//! of the step that sees example `i`.

use dfdx::prelude::*;

use crate::nn::store::Taped;

/// Lower clamp of the probabilities in the regularizer (official code: 1e-4).
pub const P_MIN: f64 = 1e-4;
/// Upper clamp of the probabilities in the regularizer (official code: 1 - 1e-4).
pub const P_MAX: f64 = 1.0 - 1e-4;

/// The per-example targets `t_i` (`n x classes`, row-major, starting at zeros).
#[derive(Clone, Debug, PartialEq)]
pub struct TargetEnsemble {
    pub beta: f64,
    pub classes: usize,
    pub t: Vec<f32>,
}

impl TargetEnsemble {
    pub fn new(n: usize, classes: usize, beta: f64) -> TargetEnsemble {
        TargetEnsemble {
            beta,
            classes,
            t: vec![0.0; n * classes],
        }
    }

    /// `t_i <- beta t_i + (1 - beta) q_i / sum(q_i)` with `q_i = clamp(p_i, P_MIN, P_MAX)` for
    /// every example `idx[r]` of a batch whose softmax rows are `probs` (`idx.len() x classes`);
    /// returns the updated rows of the batch, in batch order (the regularizer's constants).
    pub fn update(&mut self, idx: &[usize], probs: &[f32]) -> Vec<f32> {
        let c = self.classes;
        assert_eq!(
            probs.len(),
            idx.len() * c,
            "one probability row per example"
        );
        let mut out = Vec::with_capacity(probs.len());
        for (&i, row) in idx.iter().zip(probs.chunks(c)) {
            let q: Vec<f64> = row
                .iter()
                .map(|&p| (p as f64).clamp(P_MIN, P_MAX))
                .collect();
            let total: f64 = q.iter().sum();
            for (k, qk) in q.iter().enumerate() {
                let t = &mut self.t[i * c + k];
                *t = (self.beta * *t as f64 + (1.0 - self.beta) * qk / total) as f32;
                out.push(*t);
            }
        }
        out
    }
}

/// What one ELR loss evaluation produced: the loss on the tape and its two parts' values.
pub struct ElrLoss<E: Dtype, D: Device<E>> {
    pub loss: Taped<(), E, D>,
    /// Mean cross entropy against the labels.
    pub ce: f64,
    /// `mean_i log(1 - <t_i, p_i>)` (not multiplied by lambda; negative).
    pub reg: f64,
}

/// `CE(z, y) + lambda * mean_i log(1 - <t_i, clamp(softmax(z_i), P_MIN, P_MAX)>)` on the tape;
/// `labels` are one-hot rows and `targets` the ensemble rows (constants: no gradient flows
/// into them).
pub fn elr_loss<E: Dtype, D: Device<E>>(
    logits: Taped<(usize, usize), E, D>,
    labels: Tensor<(usize, usize), E, D>,
    targets: Tensor<(usize, usize), E, D>,
    lambda: f64,
) -> ElrLoss<E, D> {
    let (z, tape) = logits.split_tape();
    let for_ce = z.clone().put_tape(tape);
    let for_reg = z.retaped::<OwnedTape<E, D>>();
    let ce = cross_entropy_with_logits_loss(for_ce, labels);
    let e = |v: f64| E::from_f64(v).expect("representable");
    let p = for_reg.softmax::<Axis<1>>().clamp(P_MIN, P_MAX);
    let dot = (p * targets).sum::<(usize,), Axis<1>>();
    let reg = (dot.negate() + e(1.0)).ln().mean::<Rank0, _>();
    let (ce_v, ce_tape) = ce.split_tape();
    let (reg_v, reg_tape) = reg.split_tape();
    let value = |t: &Tensor<(), E, D>| t.as_vec()[0].to_f64().unwrap_or(f64::NAN);
    let (ce_value, reg_value) = (value(&ce_v), value(&reg_v));
    let loss = ce_v.put_tape(ce_tape) + reg_v.put_tape(reg_tape) * e(lambda);
    ElrLoss {
        loss,
        ce: ce_value,
        reg: reg_value,
    }
}

/// The regularizer's gradient with respect to the logits of one example in closed form, where
/// no clamp is active: `d/dz_c log(1 - <t, p>) = p_c (<t, p> - t_c) / (1 - <t, p>)`.
pub fn reg_gradient_closed_form(logits: &[f64], t: &[f64]) -> Vec<f64> {
    let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let ex: Vec<f64> = logits.iter().map(|z| (z - max).exp()).collect();
    let s: f64 = ex.iter().sum();
    let p: Vec<f64> = ex.iter().map(|v| v / s).collect();
    let dot: f64 = p.iter().zip(t).map(|(a, b)| a * b).sum();
    p.iter()
        .zip(t)
        .map(|(pc, tc)| pc * (dot - tc) / (1.0 - dot))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_update_is_the_renormalised_clamped_prediction_times_one_minus_beta() {
        let mut e = TargetEnsemble::new(3, 2, 0.7);
        let rows = e.update(&[2], &[1.0, 0.0]);
        // clamp to (1 - 1e-4, 1e-4): sum 1, so t = 0.3 * (0.9999, 0.0001).
        assert!((rows[0] as f64 - 0.3 * 0.9999).abs() < 1e-6);
        assert!((rows[1] as f64 - 0.3 * 1e-4).abs() < 1e-8);
        assert_eq!(&e.t[0..4], &[0.0; 4]);
        let again = e.update(&[2], &[0.5, 0.5]);
        assert!((again[1] as f64 - (0.7 * 0.3 * 1e-4 + 0.3 * 0.5)).abs() < 1e-6);
    }
}

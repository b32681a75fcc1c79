//! Sparse autoencoders in dfdx (f32): TopK SAE, TopK SAE with the AuxK dead-latent loss, and the
//! TopK variational SAE.
//!
//! Encoder: `pre = (x - b_dec) W_enc + b_enc` (`W_enc` is d x m). TopK SAE: `z = relu(topk(pre))`.
//! vSAE: `pre` is the posterior mean mu; the log-variance is `(x - b_dec) W_lv + b_lv` (learned per
//! latent) or 0 (fixed unit variance); a reparameterized sample `mu + sigma * eps` replaces the
//! deterministic gating and TopK keeps the k largest: `z = relu(topk(mu + sigma * eps))`; the loss
//! adds `kl_weight * KL(N(mu, sigma^2) || N(0, 1))`. Decoder: `x_hat = z W_dec + b_dec` with the
//! rows of `W_dec` (one per latent) kept at unit norm. AuxK (Gao et al. 2024): the top `k_aux`
//! dead latents reconstruct the main residual, `aux = |e - z_aux W_dec|^2`, added with a weight.

use dfdx::prelude::*;
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::metrics::topk::{topk, topk_mask};

type Taped<S, D> = Tensor<S, f32, D, OwnedTape<f32, D>>;

/// Which autoencoder.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Variant {
    TopK,
    AuxK {
        k_aux: usize,
        weight: f32,
    },
    Vsae {
        kl_weight: f32,
        learned_variance: bool,
    },
}

impl Variant {
    pub fn is_vsae(&self) -> bool {
        matches!(self, Variant::Vsae { .. })
    }
}

/// Uses a taped tensor twice: both copies keep recording onto tapes that merge at the loss.
fn dup<S: Shape, D: Device<f32>>(t: Taped<S, D>) -> (Taped<S, D>, Taped<S, D>) {
    let (t, tape) = t.split_tape();
    (t.clone().put_tape(tape), t.retaped())
}

/// Parameters, as flat row-major vectors.
#[derive(Clone, Debug)]
pub struct Sae {
    pub d: usize,
    pub m: usize,
    pub k: usize,
    pub variant: Variant,
    pub w_enc: Vec<f32>,
    pub b_enc: Vec<f32>,
    pub w_dec: Vec<f32>,
    pub b_dec: Vec<f32>,
    pub w_lv: Vec<f32>,
    pub b_lv: Vec<f32>,
}

/// What one training step computed.
pub struct StepOut {
    pub loss: f32,
    /// Mean over tokens of the squared reconstruction error summed over dimensions.
    pub recon: f32,
    /// Mean KL per token (vSAE), else 0.
    pub kl: f32,
    /// AuxK loss (0 when not used or no dead latents).
    pub aux: f32,
    /// The latent activations used for reconstruction (`b x m`).
    pub z: Vec<f32>,
    /// Gradients in the order of [`Sae::params_mut`].
    pub grads: Vec<Vec<f32>>,
}

impl Sae {
    /// Decoder rows random unit vectors; encoder initialized to the decoder's transpose.
    pub fn new(d: usize, m: usize, k: usize, variant: Variant, rng: &mut impl Rng) -> Sae {
        let mut w_dec = Vec::with_capacity(m * d);
        for _ in 0..m {
            let v: Vec<f32> = (0..d).map(|_| StandardNormal.sample(rng)).collect();
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
            w_dec.extend(v.into_iter().map(|x| x / n));
        }
        let mut w_enc = vec![0.0; d * m];
        for j in 0..m {
            for i in 0..d {
                w_enc[i * m + j] = w_dec[j * d + i];
            }
        }
        Sae {
            d,
            m,
            k,
            variant,
            w_enc,
            b_enc: vec![0.0; m],
            w_dec,
            b_dec: vec![0.0; d],
            w_lv: vec![0.0; d * m],
            b_lv: vec![0.0; m],
        }
    }

    fn learned_variance(&self) -> bool {
        matches!(
            self.variant,
            Variant::Vsae {
                learned_variance: true,
                ..
            }
        )
    }

    /// The trained parameters, in the order of [`StepOut::grads`].
    pub fn params_mut(&mut self) -> Vec<&mut Vec<f32>> {
        let learned = self.learned_variance();
        let mut v = vec![
            &mut self.w_enc,
            &mut self.b_enc,
            &mut self.w_dec,
            &mut self.b_dec,
        ];
        if learned {
            v.push(&mut self.w_lv);
            v.push(&mut self.b_lv);
        }
        v
    }

    /// Rescales every decoder row to unit norm.
    pub fn normalize_decoder(&mut self) {
        for j in 0..self.m {
            let row = &mut self.w_dec[j * self.d..(j + 1) * self.d];
            let n = row.iter().map(|x| x * x).sum::<f32>().sqrt();
            if n > 0.0 {
                row.iter_mut().for_each(|x| *x /= n);
            }
        }
    }

    /// One training step on `x` (`b x d`). `dead` marks the latents AuxK may use.
    pub fn train_step<D: Device<f32>>(
        &self,
        dev: &D,
        x: &[f32],
        b: usize,
        dead: Option<&[bool]>,
        rng: &mut impl Rng,
    ) -> StepOut {
        let (d, m) = (self.d, self.m);
        let xt = dev.tensor_from_vec(x.to_vec(), (b, d));
        let w_enc = dev.tensor_from_vec(self.w_enc.clone(), (d, m));
        let b_enc = dev.tensor_from_vec(self.b_enc.clone(), (m,));
        let w_dec = dev.tensor_from_vec(self.w_dec.clone(), (m, d));
        let b_dec = dev.tensor_from_vec(self.b_dec.clone(), (d,));
        let w_lv = dev.tensor_from_vec(self.w_lv.clone(), (d, m));
        let b_lv = dev.tensor_from_vec(self.b_lv.clone(), (m,));

        let (bd1, bd2) = dup(b_dec.leaky_trace().broadcast_like::<_, Axis<0>>(&(b, d)));
        let xc = bd1.negate() + xt.clone();
        let (xc, xc_lv) = dup(xc);
        let pre = xc.matmul(w_enc.leaky_trace())
            + b_enc.leaky_trace().broadcast_like::<_, Axis<0>>(&(b, m));

        let (z, kl) = match self.variant {
            Variant::Vsae {
                learned_variance, ..
            } => {
                let (mu, mu_kl) = dup(pre);
                let eps: Vec<f32> = (0..b * m).map(|_| StandardNormal.sample(rng)).collect();
                let eps = dev.tensor_from_vec(eps, (b, m));
                if learned_variance {
                    let lv = xc_lv.matmul(w_lv.leaky_trace())
                        + b_lv.leaky_trace().broadcast_like::<_, Axis<0>>(&(b, m));
                    let (lv, lv_kl) = dup(lv);
                    let (lv_kl, lv_kl2) = dup(lv_kl);
                    let sample = mu + (lv * 0.5).exp() * eps;
                    // KL = 1/2 sum (mu^2 + e^lv - lv - 1), mean over tokens.
                    let kl = (mu_kl.square() + lv_kl.exp() - lv_kl2 - 1.0).sum::<Rank0, _>()
                        * (0.5 / b as f32);
                    (topk(sample, self.k).relu(), Some(kl))
                } else {
                    // Unit variance: the KL reduces to a pull of the means towards 0.
                    let sample = mu + eps;
                    let kl = mu_kl.square().sum::<Rank0, _>() * (0.5 / b as f32);
                    (topk(sample, self.k).relu(), Some(kl))
                }
            }
            _ => (topk(pre, self.k).relu(), None),
        };
        let z_values = z.as_vec();
        let xhat = z.matmul(w_dec.leaky_trace()) + bd2;
        let xhat_values = xhat.as_vec();
        let recon = (xhat - xt).square().sum::<Rank0, _>() * (1.0 / b as f32);
        let recon_value = recon.as_vec()[0];
        let mut kl_value = 0.0;
        let mut loss = recon;
        if let Some(kl) = kl {
            kl_value = kl.as_vec()[0];
            if let Variant::Vsae { kl_weight, .. } = self.variant {
                loss = loss + kl * kl_weight;
            }
        }
        let loss_value = loss.as_vec()[0];
        let g = loss.backward();
        let mut grads = vec![
            g.get(&w_enc).as_vec(),
            g.get(&b_enc).as_vec(),
            g.get(&w_dec).as_vec(),
            g.get(&b_dec).as_vec(),
        ];
        if self.learned_variance() {
            grads.push(g.get(&w_lv).as_vec());
            grads.push(g.get(&b_lv).as_vec());
        }
        let mut loss_value = loss_value;
        let mut aux_value = 0.0;
        if let (Variant::AuxK { k_aux, weight }, Some(dead)) = (self.variant, dead) {
            // The residual of the main reconstruction is the aux path's constant target.
            let e: Vec<f32> = x.iter().zip(&xhat_values).map(|(a, h)| a - h).collect();
            if let Some((aux, aux_grads)) = self.aux_loss(dev, x, &e, b, dead, k_aux) {
                aux_value = aux;
                loss_value += weight * aux;
                for (g, a) in grads.iter_mut().zip(aux_grads) {
                    g.iter_mut().zip(a).for_each(|(g, a)| *g += weight * a);
                }
            }
        }
        StepOut {
            loss: loss_value,
            recon: recon_value,
            kl: kl_value,
            aux: aux_value,
            z: z_values,
            grads,
        }
    }

    /// The AuxK loss `|e - z_aux W_dec|^2` (mean over tokens) with its gradients in the order of
    /// [`Sae::params_mut`]: `z_aux` keeps the top `k_aux` pre-activations among the `dead`
    /// latents, and the residual `e` is a constant. None when no latent is dead.
    pub fn aux_loss<D: Device<f32>>(
        &self,
        dev: &D,
        x: &[f32],
        e: &[f32],
        b: usize,
        dead: &[bool],
        k_aux: usize,
    ) -> Option<(f32, Vec<Vec<f32>>)> {
        if !dead.iter().any(|d| *d) {
            return None;
        }
        let (d, m) = (self.d, self.m);
        let pre_values = self.pre_activations(dev, x, b);
        let masked: Vec<f32> = pre_values
            .iter()
            .enumerate()
            .map(|(i, v)| if dead[i % m] { *v } else { f32::NEG_INFINITY })
            .collect();
        let mut mask = topk_mask(&masked, b, m, k_aux);
        for (i, v) in mask.iter_mut().enumerate() {
            if !dead[i % m] {
                *v = 0.0;
            }
        }
        let xt = dev.tensor_from_vec(x.to_vec(), (b, d));
        let w_enc = dev.tensor_from_vec(self.w_enc.clone(), (d, m));
        let b_enc = dev.tensor_from_vec(self.b_enc.clone(), (m,));
        let w_dec = dev.tensor_from_vec(self.w_dec.clone(), (m, d));
        let b_dec = dev.tensor_from_vec(self.b_dec.clone(), (d,));
        let xc = b_dec
            .leaky_trace()
            .broadcast_like::<_, Axis<0>>(&(b, d))
            .negate()
            + xt;
        let pre = xc.matmul(w_enc.leaky_trace())
            + b_enc.leaky_trace().broadcast_like::<_, Axis<0>>(&(b, m));
        let z_aux = (pre * dev.tensor_from_vec(mask, (b, m))).relu();
        let e_hat = z_aux.matmul(w_dec.leaky_trace());
        let aux = (e_hat - dev.tensor_from_vec(e.to_vec(), (b, d)))
            .square()
            .sum::<Rank0, _>()
            * (1.0 / b as f32);
        let value = aux.as_vec()[0];
        let g = aux.backward();
        let mut grads = vec![
            g.get(&w_enc).as_vec(),
            g.get(&b_enc).as_vec(),
            g.get(&w_dec).as_vec(),
            g.get(&b_dec).as_vec(),
        ];
        if self.learned_variance() {
            grads.push(vec![0.0; self.w_lv.len()]);
            grads.push(vec![0.0; self.b_lv.len()]);
        }
        Some((value, grads))
    }

    /// `(x - b_dec) W_enc + b_enc` for `x` (`b x d`), without a tape.
    pub fn pre_activations<D: Device<f32>>(&self, dev: &D, x: &[f32], b: usize) -> Vec<f32> {
        let (d, m) = (self.d, self.m);
        let xc: Vec<f32> = x
            .iter()
            .enumerate()
            .map(|(i, v)| v - self.b_dec[i % d])
            .collect();
        let xc = dev.tensor_from_vec(xc, (b, d));
        let w = dev.tensor_from_vec(self.w_enc.clone(), (d, m));
        let mut pre = xc.matmul(w).as_vec();
        for (i, v) in pre.iter_mut().enumerate() {
            *v += self.b_enc[i % m];
        }
        pre
    }

    /// Deterministic encoding (the vSAE uses its means): `relu(topk(pre))`.
    pub fn encode<D: Device<f32>>(&self, dev: &D, x: &[f32], b: usize) -> Vec<f32> {
        let pre = self.pre_activations(dev, x, b);
        let mask = topk_mask(&pre, b, self.m, self.k);
        pre.iter()
            .zip(&mask)
            .map(|(p, k)| (p * k).max(0.0))
            .collect()
    }

    /// `z W_dec + b_dec`.
    pub fn decode<D: Device<f32>>(&self, dev: &D, z: &[f32], b: usize) -> Vec<f32> {
        let zt = dev.tensor_from_vec(z.to_vec(), (b, self.m));
        let w = dev.tensor_from_vec(self.w_dec.clone(), (self.m, self.d));
        let mut x = zt.matmul(w).as_vec();
        for (i, v) in x.iter_mut().enumerate() {
            *v += self.b_dec[i % self.d];
        }
        x
    }
}

/// KL(N(mu, e^lv) || N(0, 1)) for one latent, in closed form.
pub fn gaussian_kl(mu: f64, log_var: f64) -> f64 {
    0.5 * (mu * mu + log_var.exp() - log_var - 1.0)
}

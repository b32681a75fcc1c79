//! Sparse autoencoders in dfdx (f32) over a device parameter store: TopK SAE, TopK SAE with the
//! AuxK dead-latent loss, and the TopK variational SAE.
//!
//! Encoder: `pre = (x - b_dec) W_enc + b_enc` (`W_enc` is d x m). TopK SAE: `z = relu(topk(pre))`.
//! vSAE (as the authors' code): the posterior mean is `mu = relu(pre)`; with a learned variance
//! the log-variance is `clamp((x - b_dec) W_lv + b_lv, -6, 2)` and a reparameterized sample
//! `mu + exp(lv / 2) eps` is the latent, with a fixed variance the latent is `mu`; TopK keeps the
//! k largest `|z|` with their signs; the loss adds `kl_weight * KL(N(mu, sigma^2) || N(0, 1))`,
//! warmed up. Decoder: `x_hat = z W_dec + b_dec` with the rows of `W_dec` (one per latent) kept at
//! unit norm and `b_dec` starting at the data mean. AuxK (Gao et al. 2024): the top `k_aux` dead
//! latents reconstruct the main residual, `|e - z_aux W_dec|^2 / var(e)`, added with a weight.
//!
//! Parameters are named in the store (`W_enc`, `b_enc`, `W_dec`, `b_dec`, and `W_lv`, `b_lv` for
//! a learned variance); a step uploads its batch (and the vSAE's noise), everything else stays on
//! the device, and a few per-latent numbers come back for the dead-latent tracker.

use dfdx::prelude::*;

use crate::nn::transfer::{Download, Upload};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::metrics::topk::{topk_abs, topk_mask_on, topk_relu};
use crate::nn::{ParamId, ParamStore, Taped};

/// Which autoencoder.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Variant {
    /// `z = relu(topk(pre))`.
    TopK,
    /// The authors' TopK vSAE: mean `mu = relu(pre)`; with a learned variance the latent is a
    /// reparameterized sample `z = mu + exp(lv / 2) eps` (`lv` clamped to [-6, 2], its bias
    /// starting at `log_var_init`), with a fixed variance `z = mu`; TopK keeps the k largest
    /// `|z|` with their signs; the loss adds `kl_weight * KL` (warmed up linearly).
    Vsae {
        kl_weight: f32,
        learned_variance: bool,
        log_var_init: f32,
    },
}

/// The AuxK dead-latent loss of Gao et al. (2024): the top `k_aux` dead latents reconstruct the
/// main residual; the squared error is normalized by the residual's variance and added with
/// `weight`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AuxK {
    pub k_aux: usize,
    pub weight: f32,
}

impl Variant {
    pub fn is_vsae(&self) -> bool {
        matches!(self, Variant::Vsae { .. })
    }
}

type Matrix<D> = Tensor<(usize, usize), f32, D>;
type TapedMatrix<D> = Taped<(usize, usize), f32, D>;

/// Uses a taped tensor twice: both copies keep recording onto tapes that merge at the loss.
fn dup<S: Shape, D: Device<f32>>(t: Taped<S, f32, D>) -> (Taped<S, f32, D>, Taped<S, f32, D>) {
    let (t, tape) = t.split_tape();
    (t.clone().put_tape(tape), t.retaped())
}

/// The parameters' ids in the store.
#[derive(Clone, Copy, Debug)]
struct Ids {
    w_enc: ParamId,
    b_enc: ParamId,
    w_dec: ParamId,
    b_dec: ParamId,
    lv: Option<(ParamId, ParamId)>,
}

/// A sparse autoencoder whose parameters live on the device `D`.
#[derive(Clone, Debug)]
pub struct Sae<D: Device<f32> = Cpu> {
    pub d: usize,
    pub m: usize,
    pub k: usize,
    pub variant: Variant,
    /// The AuxK loss, when used.
    pub aux: Option<AuxK>,
    pub store: ParamStore<f32, D>,
    ids: Ids,
}

/// What one training step computed (scalars, and per-latent firing for the dead tracker).
pub struct StepOut<D: Device<f32>> {
    pub loss: f32,
    /// Mean over tokens of the squared reconstruction error summed over dimensions.
    pub recon: f32,
    /// Mean KL per token (vSAE), else 0.
    pub kl: f32,
    /// AuxK loss (0 when not used or no dead latents).
    pub aux: f32,
    /// Mean number of non-zero latents per token.
    pub l0: f64,
    /// Per latent: 1 + the last row of the batch on which it fired, or 0.
    pub last_fired_row: Vec<f32>,
    /// Gradients of the store's parameters.
    pub grads: Gradients<f32, D>,
}

impl<D: Device<f32>> Sae<D> {
    /// Decoder rows random unit vectors; encoder initialized to the decoder's transpose; the
    /// decoder bias at `b_dec` (the data mean, as SAEs usually start; zeros when empty); the
    /// log-variance encoder Kaiming-uniform (a = 0.01) with its bias at `log_var_init`, as in the
    /// authors' code.
    pub fn new(
        dev: &D,
        d: usize,
        m: usize,
        k: usize,
        variant: Variant,
        rng: &mut impl Rng,
    ) -> Sae<D> {
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
        let mut store = ParamStore::new(dev);
        let w_enc = store.add("W_enc", &[d, m], w_enc);
        let b_enc = store.add_filled("b_enc", &[m], 0.0);
        let w_dec = store.add("W_dec", &[m, d], w_dec);
        let b_dec = store.add_filled("b_dec", &[d], 0.0);
        let lv = match variant {
            Variant::Vsae {
                learned_variance: true,
                log_var_init,
                ..
            } => {
                let bound = (6.0 / ((1.0 + 0.01f32 * 0.01) * d as f32)).sqrt();
                let w: Vec<f32> = (0..d * m).map(|_| rng.gen_range(-bound..bound)).collect();
                Some((
                    store.add("W_lv", &[d, m], w),
                    store.add_filled("b_lv", &[m], log_var_init),
                ))
            }
            _ => None,
        };
        Sae {
            d,
            m,
            k,
            variant,
            aux: None,
            store,
            ids: Ids {
                w_enc,
                b_enc,
                w_dec,
                b_dec,
                lv,
            },
        }
    }

    /// With the AuxK loss.
    pub fn with_aux(mut self, aux: AuxK) -> Sae<D> {
        self.aux = Some(aux);
        self
    }

    /// Sets the decoder bias (the data mean, before training).
    pub fn set_decoder_bias(&mut self, b_dec: &[f32]) {
        self.store.upload(self.ids.b_dec, b_dec.to_vec());
    }

    fn upload(&self, x: &[f32], b: usize) -> Matrix<D> {
        self.store.device().upload(x.to_vec(), (b, self.d))
    }

    /// `(x - b_dec, traced)` twice, and `x - b_dec` fed to the encoder.
    fn encoder_pre(&self, x: &Matrix<D>) -> (TapedMatrix<D>, TapedMatrix<D>) {
        let (b, d, m) = (x.shape().0, self.d, self.m);
        let xc = self
            .store
            .vector(self.ids.b_dec)
            .broadcast_like::<_, Axis<0>>(&(b, d))
            .negate()
            + x.clone();
        let (xc, xc_lv) = dup(xc);
        let pre = xc.matmul(self.store.matrix(self.ids.w_enc))
            + self
                .store
                .vector(self.ids.b_enc)
                .broadcast_like::<_, Axis<0>>(&(b, m));
        (pre, xc_lv)
    }

    /// One training step on `x` (`b x d`, row-major). `dead` marks the latents AuxK may use.
    pub fn train_step(
        &self,
        x: &[f32],
        b: usize,
        dead: Option<&[bool]>,
        kl_scale: f32,
        rng: &mut impl Rng,
    ) -> StepOut<D> {
        let (d, m) = (self.d, self.m);
        let dev = self.store.device().clone();
        let xt = self.upload(x, b);
        let (pre, xc_lv) = self.encoder_pre(&xt);
        let (z, kl) = match self.variant {
            Variant::Vsae { .. } => {
                let (mu, mu_kl) = dup(pre.relu());
                let mu_kl = mu_kl.clamp(-10.0, 10.0);
                if let Some((w_lv, b_lv)) = self.ids.lv {
                    let eps: Vec<f32> = (0..b * m).map(|_| StandardNormal.sample(rng)).collect();
                    let eps = dev.upload(eps, (b, m));
                    let lv = (xc_lv.matmul(self.store.matrix(w_lv))
                        + self
                            .store
                            .vector(b_lv)
                            .broadcast_like::<_, Axis<0>>(&(b, m)))
                    .clamp(-6.0, 2.0);
                    let (lv, lv_kl) = dup(lv);
                    let (lv_kl, lv_kl2) = dup(lv_kl);
                    let sample = mu + (lv * 0.5).exp() * eps;
                    // KL = 1/2 sum (mu^2 + e^lv - lv - 1), mean over tokens.
                    let kl = (mu_kl.square() + lv_kl.exp() - lv_kl2 - 1.0).sum::<Rank0, _>()
                        * (0.5 / b as f32);
                    (topk_abs(sample, self.k), Some(kl))
                } else {
                    // Fixed variance (the authors' var_flag 0): the latent is the mean itself,
                    // and the KL reduces to a pull of the means towards 0.
                    drop(xc_lv);
                    let kl = mu_kl.square().sum::<Rank0, _>() * (0.5 / b as f32);
                    (topk_abs(mu, self.k), Some(kl))
                }
            }
            Variant::TopK => {
                drop(xc_lv);
                (topk_relu(pre, self.k), None)
            }
        };
        let (z_values, z_tape) = z.split_tape();
        let (l0, last_fired_row) = firing(&z_values);
        let z = z_values.put_tape(z_tape);
        let xhat = z.matmul(self.store.matrix(self.ids.w_dec))
            + self
                .store
                .vector(self.ids.b_dec)
                .broadcast_like::<_, Axis<0>>(&(b, d));
        let (xhat_values, xhat_tape) = xhat.split_tape();
        let xhat = xhat_values.clone().put_tape(xhat_tape);
        let recon = (xhat - xt.clone()).square().sum::<Rank0, _>() * (1.0 / b as f32);
        let (recon_values, recon_tape) = recon.split_tape();
        let recon_value = recon_values.download()[0];
        let mut loss = recon_values.put_tape(recon_tape);
        let mut kl_value = 0.0;
        if let Some(kl) = kl {
            let (kl_values, kl_tape) = kl.split_tape();
            kl_value = kl_values.download()[0];
            if let Variant::Vsae { kl_weight, .. } = self.variant {
                loss = loss + kl_values.put_tape(kl_tape) * (kl_weight * kl_scale);
            }
        }
        let mut aux_value = 0.0;
        if let (Some(AuxK { k_aux, weight }), Some(dead)) = (self.aux, dead) {
            // The residual of the main reconstruction is the aux path's constant target; the
            // aux graph traces the parameters again, so its gradients add to the main ones.
            let e = xt.clone() - xhat_values;
            if let Some(aux) = self.aux_graph(&xt, &e, dead, k_aux) {
                let (aux_values, aux_tape) = aux.split_tape();
                aux_value = aux_values.download()[0];
                loss = loss + aux_values.put_tape(aux_tape) * weight;
            }
        }
        let loss_value = loss.download()[0];
        StepOut {
            loss: loss_value,
            recon: recon_value,
            kl: kl_value,
            aux: aux_value,
            l0,
            last_fired_row,
            grads: loss.backward(),
        }
    }

    /// The AuxK loss graph `|e - z_aux W_dec|^2 / var(e)` (means over tokens; the variance
    /// summed over dimensions): `z_aux` keeps the top `k_aux` pre-activations among the `dead`
    /// latents; the residual `e` is a constant. None when no latent is dead.
    fn aux_graph(
        &self,
        xt: &Matrix<D>,
        e: &Matrix<D>,
        dead: &[bool],
        k_aux: usize,
    ) -> Option<Taped<(), f32, D>> {
        if !dead.iter().any(|d| *d) {
            return None;
        }
        let (b, m) = (xt.shape().0, self.m);
        let dev = self.store.device();
        let dead_f: Vec<f32> = dead.iter().map(|x| if *x { 1.0 } else { 0.0 }).collect();
        let dead_t = dev
            .upload(dead_f, (m,))
            .broadcast_like::<_, Axis<0>>(&(b, m));
        let is_dead = dead_t.gt(0.5);
        let (pre, xc_lv) = self.encoder_pre(xt);
        drop(xc_lv);
        let (pre_values, pre_tape) = pre.split_tape();
        let neg_inf = dev.zeros_like(&(b, m)) + f32::NEG_INFINITY;
        let masked = is_dead.clone().choose(pre_values.clone(), neg_inf);
        let mask = topk_mask_on(&masked, k_aux) * dead_t;
        let z_aux = (pre_values.put_tape(pre_tape) * mask).relu();
        let e_hat = z_aux.matmul(self.store.matrix(self.ids.w_dec));
        // Normalized by the residual's variance (summed over dimensions, mean over tokens).
        let d = self.d;
        let centred = e.clone()
            - e.clone()
                .mean::<(usize,), Axis<0>>()
                .broadcast_like::<_, Axis<0>>(&(b, d));
        let variance = centred.square().sum::<Rank0, _>().download()[0] / b as f32;
        Some(
            (e_hat - e.clone()).square().sum::<Rank0, _>() * (1.0 / (b as f32 * (variance + 1e-8))),
        )
    }

    /// The AuxK loss value and gradients alone (tests).
    pub fn aux_loss(
        &self,
        x: &[f32],
        e: &[f32],
        b: usize,
        dead: &[bool],
        k_aux: usize,
    ) -> Option<(f32, Gradients<f32, D>)> {
        let xt = self.upload(x, b);
        let e = self.upload(e, b);
        let aux = self.aux_graph(&xt, &e, dead, k_aux)?;
        Some((aux.download()[0], aux.backward()))
    }

    /// `(x - b_dec) W_enc + b_enc` for `x` (`b x d`) on the device, without a tape.
    pub fn pre_on(&self, x: &Matrix<D>) -> Matrix<D> {
        let (b, d, m) = (x.shape().0, self.d, self.m);
        let xc = x.clone()
            - self
                .store
                .flat(self.ids.b_dec)
                .clone()
                .broadcast_like::<_, Axis<0>>(&(b, d));
        xc.matmul(self.store.matrix_value(self.ids.w_enc))
            + self
                .store
                .flat(self.ids.b_enc)
                .clone()
                .broadcast_like::<_, Axis<0>>(&(b, m))
    }

    /// Deterministic encoding on the device (the vSAE uses its means): `relu(topk(pre))`.
    pub fn encode_on(&self, x: &Matrix<D>) -> Matrix<D> {
        let pre = self.pre_on(x);
        let mask = topk_mask_on(&pre, self.k);
        (pre * mask).relu()
    }

    /// `z W_dec + b_dec` on the device.
    pub fn decode_on(&self, z: &Matrix<D>) -> Matrix<D> {
        let b = z.shape().0;
        z.clone().matmul(self.store.matrix_value(self.ids.w_dec))
            + self
                .store
                .flat(self.ids.b_dec)
                .clone()
                .broadcast_like::<_, Axis<0>>(&(b, self.d))
    }

    /// Host versions (tests): pre-activations, encodings and reconstructions, downloaded.
    pub fn pre_activations(&self, x: &[f32], b: usize) -> Vec<f32> {
        self.pre_on(&self.upload(x, b)).download()
    }
    pub fn encode(&self, x: &[f32], b: usize) -> Vec<f32> {
        self.encode_on(&self.upload(x, b)).download()
    }
    pub fn decode(&self, z: &[f32], b: usize) -> Vec<f32> {
        let zt = self.store.device().upload(z.to_vec(), (b, self.m));
        self.decode_on(&zt).download()
    }

    /// Rescales every decoder row to unit norm, on the device.
    pub fn normalize_decoder(&mut self) {
        let (m, d) = (self.m, self.d);
        let w = self.store.matrix_value(self.ids.w_dec);
        let norms = w.clone().square().sum::<(usize,), Axis<1>>().sqrt();
        // Rows of norm 0 stay as they are.
        let safe = norms
            .clone()
            .gt(0.0)
            .choose(norms, self.store.device().ones_like(&(m,)));
        let unit = w / safe.broadcast_like::<_, Axis<1>>(&(m, d));
        let flat = unit.reshape_like(&(m * d,));
        self.store.assign(self.ids.w_dec, &flat);
    }

    /// The decoder's rows (`m x d`), downloaded.
    pub fn decoder_rows(&self) -> Vec<f32> {
        self.store.values(self.ids.w_dec)
    }
}

/// L0 per token and, per latent, 1 + the last row on which it fired (0: never). On a GPU from
/// dfdx ops (`m` numbers and one scalar come back); on the CPU by its host twin
/// [`firing_host`], which is faster there and gives the same numbers.
fn firing<D: Device<f32>>(z: &Matrix<D>) -> (f64, Vec<f32>) {
    if std::any::TypeId::of::<D>() == std::any::TypeId::of::<Cpu>() {
        let (b, m) = *z.shape();
        firing_host(&z.as_vec(), b, m)
    } else {
        firing_ops(z)
    }
}

/// [`firing`] from dfdx ops on the tensor's device.
pub fn firing_ops<D: Device<f32>>(z: &Matrix<D>) -> (f64, Vec<f32>) {
    let (b, m) = *z.shape();
    let dev = z.device();
    // 1-based row numbers, uploaded as one column and broadcast on the device.
    let rows: Vec<f32> = (0..b).map(|r| r as f32 + 1.0).collect();
    let rows = dev.upload(rows, (b,)).broadcast_like::<_, Axis<1>>(&(b, m));
    let fired = z.ne(&dev.zeros_like(&(b, m)));
    let count = fired
        .clone()
        .choose(dev.ones_like(&(b, m)), dev.zeros_like(&(b, m)))
        .sum::<Rank0, _>()
        .download()[0];
    let last = fired
        .choose(rows, dev.zeros_like(&(b, m)))
        .max::<(usize,), Axis<0>>()
        .download();
    (count as f64 / b as f64, last)
}

/// [`firing`] on host values (`b x m`, row-major).
pub fn firing_host(z: &[f32], b: usize, m: usize) -> (f64, Vec<f32>) {
    let mut last = vec![0.0f32; m];
    let mut count = 0usize;
    for (r, row) in z.chunks(m).enumerate().take(b) {
        for (j, v) in row.iter().enumerate() {
            if *v != 0.0 {
                count += 1;
                last[j] = r as f32 + 1.0;
            }
        }
    }
    (count as f64 / b as f64, last)
}

/// KL(N(mu, e^lv) || N(0, 1)) for one latent, in closed form.
pub fn gaussian_kl(mu: f64, log_var: f64) -> f64 {
    0.5 * (mu * mu + log_var.exp() - log_var - 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn firing_summary_from_ops_matches_its_host_twin() {
        let dev = Cpu::default();
        let (b, m) = (5, 7);
        let z: Vec<f32> = (0..b * m)
            .map(|i| {
                if (i * 7) % 3 == 0 {
                    (i % 5) as f32
                } else {
                    0.0
                }
            })
            .collect();
        let host = firing_host(&z, b, m);
        let ops = firing_ops(&dev.tensor_from_vec(z.clone(), (b, m)));
        assert_eq!(host, ops);
        let nonzero = z.iter().filter(|v| **v != 0.0).count();
        assert_eq!(host.0, nonzero as f64 / b as f64);
    }
}

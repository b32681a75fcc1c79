//! The network every arm shares and the losses: an MLP encoder over `[c_in(s) x, Fourier
//! features of log s]` (the noise level is an input, as rRCM's time token), a linear head, a
//! projection head for the contrastive pre-training; cross-entropy, Jeong & Shin's consistency
//! regularization over noisy copies, and InfoNCE with in-batch negatives.

use dfdx::prelude::*;
use rand::Rng;

use crate::experiments::classifier::upload_rows;
use crate::experiments::ssl::normalize_rows;
use crate::nn::models::mlp::gelu;
use crate::nn::models::{softmax_cross_entropy, Activation, Matrix, Mlp, TapedMatrix};
use crate::nn::store::{ParamStore, Taped};

/// Pixels of an 8x8 digit.
pub const PIXELS: usize = 64;
/// Fourier features of the noise level.
pub const FOURIER: usize = 8;
/// Encoder input width.
pub const INPUT: usize = PIXELS + FOURIER;
/// Representation width.
pub const REP: usize = 128;
/// Projection width (the contrastive space).
pub const PROJ: usize = 64;
pub const CLASSES: usize = 10;
/// Data standard deviation in EDM's input scaling (pixels in [0, 1]).
pub const SIGMA_DATA: f64 = 0.5;

/// EDM's input scaling `c_in(s) = 1 / sqrt(s^2 + sigma_data^2)`.
pub fn c_in(s: f64) -> f64 {
    1.0 / (s * s + SIGMA_DATA * SIGMA_DATA).sqrt()
}

/// The noise level's features: `sin(f u), cos(f u)` for `f` in 1, 2, 4, 8 with `u = ln(s) / 4`
/// (EDM's `c_noise`).
pub fn noise_features(s: f64) -> [f64; FOURIER] {
    let u = s.max(1e-12).ln() / 4.0;
    let mut f = [0.0; FOURIER];
    for k in 0..FOURIER / 2 {
        let w = (1u32 << k) as f64;
        f[2 * k] = (w * u).sin();
        f[2 * k + 1] = (w * u).cos();
    }
    f
}

/// Encoder inputs (`rows x INPUT`, host) of noisy images `x` (`rows x 64`) at noise levels `s`
/// (one per row).
pub fn inputs(x: &[f32], s: &[f64]) -> Vec<f64> {
    let n = x.len() / PIXELS;
    assert_eq!(s.len(), n, "one noise level per row");
    let mut out = Vec::with_capacity(n * INPUT);
    for (row, &si) in x.chunks(PIXELS).zip(s) {
        let c = c_in(si);
        out.extend(row.iter().map(|v| c * *v as f64));
        out.extend(noise_features(si));
    }
    out
}

/// Encoder `[72] -> 256 -> 256 -> 128` (GELU, the representation through a GELU), the linear
/// head `128 -> 10` and the projection head `128 -> 128 -> 64` (GELU).
#[derive(Clone, Debug)]
pub struct Encoder {
    pub body: Mlp,
    pub head: Mlp,
    pub proj: Mlp,
}

impl Encoder {
    pub fn new<E: Dtype, D: Device<E>>(
        store: &mut ParamStore<E, D>,
        hidden: usize,
        rng: &mut impl Rng,
    ) -> Encoder {
        let g = Activation::Gelu;
        Encoder {
            body: Mlp::new(store, "enc", &[INPUT, hidden, hidden, REP], g, rng),
            head: Mlp::new(store, "head", &[REP, CLASSES], g, rng),
            proj: Mlp::new(store, "proj", &[REP, REP, PROJ], g, rng),
        }
    }

    /// Logits on the tape.
    pub fn logits_taped<E: Dtype, D: Device<E>>(
        &self,
        store: &ParamStore<E, D>,
        x: TapedMatrix<E, D>,
    ) -> TapedMatrix<E, D> {
        self.head.forward(store, gelu(self.body.forward(store, x)))
    }

    /// Logits without a tape.
    pub fn logits<E: Dtype, D: Device<E>>(
        &self,
        store: &ParamStore<E, D>,
        x: Matrix<E, D>,
    ) -> Matrix<E, D> {
        self.head.logits(store, gelu(self.body.logits(store, x)))
    }

    /// The projection (contrastive space) on the tape.
    pub fn project_taped<E: Dtype, D: Device<E>>(
        &self,
        store: &ParamStore<E, D>,
        x: TapedMatrix<E, D>,
    ) -> TapedMatrix<E, D> {
        self.proj.forward(store, gelu(self.body.forward(store, x)))
    }

    /// The projection without a tape (stop-gradient keys).
    pub fn project<E: Dtype, D: Device<E>>(
        &self,
        store: &ParamStore<E, D>,
        x: Matrix<E, D>,
    ) -> Matrix<E, D> {
        self.proj.logits(store, gelu(self.body.logits(store, x)))
    }
}

/// Uploads values by name into a store that holds parameters of those names (a pre-trained
/// encoder into a fresh one). Names the store lacks are skipped.
pub fn load_named<E: Dtype, D: Device<E>>(
    store: &mut ParamStore<E, D>,
    named: &[(String, Vec<usize>, Vec<f64>)],
    prefixes: &[&str],
) {
    for (name, _, values) in named {
        if !prefixes.iter().any(|p| name.starts_with(&format!("{p}."))) {
            continue;
        }
        if let Some(id) = store.find(name) {
            let v = values
                .iter()
                .map(|&x| E::from_f64(x).expect("representable"))
                .collect();
            store.upload(id, v);
        }
    }
}

/// Jeong & Shin's consistency regularization over two noisy copies of a batch (logits `l1`,
/// `l2`, `batch x classes`): with `p_i = softmax(l_i)` and `pbar = (p_1 + p_2) / 2`,
/// `lbd * mean_i KL(pbar || p_i) + eta * H(pbar)`, averaged over the batch. Nothing is
/// detached (as in their code).
pub fn consistency_loss<E: Dtype, D: Device<E>>(
    l1: TapedMatrix<E, D>,
    l2: TapedMatrix<E, D>,
    lbd: f64,
    eta: f64,
) -> Taped<(), E, D> {
    type T<E, D> = OwnedTape<E, D>;
    let half = E::from_f64(0.5).expect("representable");
    let (a, ta) = l1.log_softmax::<Axis<1>>().split_tape();
    let (b, tb) = l2.log_softmax::<Axis<1>>().split_tape();
    let pbar = (a.retaped::<T<E, D>>().exp() + b.retaped::<T<E, D>>().exp()) * half;
    let (m, tm) = pbar.split_tape();
    let (lm, tlm) = m.retaped::<T<E, D>>().ln().split_tape();
    // sum_c pbar log pbar (its negative is the entropy)
    let (mlm, tmlm) = (m.retaped::<T<E, D>>() * lm.put_tape(tlm)).split_tape();
    // mean_i KL(pbar || p_i) = sum_c pbar log pbar - sum_c pbar (log p_1 + log p_2) / 2
    let cross = m.put_tape(tm) * ((a.put_tape(ta) + b.put_tape(tb)) * half);
    let kl = (mlm.retaped::<T<E, D>>() - cross)
        .sum::<(usize,), Axis<1>>()
        .mean::<Rank0, _>();
    let neg_entropy = mlm
        .put_tape(tmlm)
        .sum::<(usize,), Axis<1>>()
        .mean::<Rank0, _>();
    kl * E::from_f64(lbd).expect("representable")
        - neg_entropy * E::from_f64(eta).expect("representable")
}

/// The same loss on the host, in f64 (the reference the tests check the tape against).
pub fn consistency_reference(l1: &[f64], l2: &[f64], classes: usize, lbd: f64, eta: f64) -> f64 {
    let softmax = |row: &[f64]| -> Vec<f64> {
        let m = row.iter().cloned().fold(f64::MIN, f64::max);
        let e: Vec<f64> = row.iter().map(|v| (v - m).exp()).collect();
        let z: f64 = e.iter().sum();
        e.into_iter().map(|v| v / z).collect()
    };
    let n = l1.len() / classes;
    let mut total = 0.0;
    for i in 0..n {
        let p1 = softmax(&l1[i * classes..(i + 1) * classes]);
        let p2 = softmax(&l2[i * classes..(i + 1) * classes]);
        let pbar: Vec<f64> = p1.iter().zip(&p2).map(|(a, b)| 0.5 * (a + b)).collect();
        let kl = |p: &[f64]| -> f64 {
            pbar.iter()
                .zip(p)
                .map(|(m, q)| m * (m.ln() - q.ln()))
                .sum::<f64>()
        };
        let h: f64 = -pbar.iter().map(|m| m * m.ln()).sum::<f64>();
        total += lbd * 0.5 * (kl(&p1) + kl(&p2)) + eta * h;
    }
    total / n as f64
}

/// InfoNCE with in-batch negatives: queries `q` (on the tape) against keys `k` (no gradient),
/// both L2-normalized, logits `q k^T / tau`, the positive of row `i` is key `i`.
pub fn info_nce<E: Dtype, D: Device<E>>(
    q: TapedMatrix<E, D>,
    k: Matrix<E, D>,
    tau: f64,
) -> Taped<(), E, D> {
    let (b, _) = *q.shape();
    let dev = q.device().clone();
    let q = normalize_rows(q);
    let k = normalize_rows(k);
    let logits = q.matmul(k.permute::<_, Axes2<1, 0>>()) * E::from_f64(1.0 / tau).expect("tau");
    let mut eye = vec![0.0; b * b];
    for i in 0..b {
        eye[i * b + i] = 1.0;
    }
    softmax_cross_entropy(logits, upload_rows(&dev, &eye, b))
}

/// The same InfoNCE on the host (reference for the tests).
pub fn info_nce_reference(q: &[f64], k: &[f64], dim: usize, tau: f64) -> f64 {
    let norm = |v: &[f64]| -> Vec<f64> {
        let n = (v.iter().map(|x| x * x).sum::<f64>() + 1e-12).sqrt();
        v.iter().map(|x| x / n).collect()
    };
    let b = q.len() / dim;
    let qs: Vec<Vec<f64>> = q.chunks(dim).map(norm).collect();
    let ks: Vec<Vec<f64>> = k.chunks(dim).map(norm).collect();
    let mut total = 0.0;
    for i in 0..b {
        let s: Vec<f64> = ks
            .iter()
            .map(|kj| qs[i].iter().zip(kj).map(|(a, c)| a * c).sum::<f64>() / tau)
            .collect();
        let m = s.iter().cloned().fold(f64::MIN, f64::max);
        let lse = m + s.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
        total += lse - s[i];
    }
    total / b as f64
}

//! The token model of the layer-wise shuffle preset: the 8x8 digits as 16 patches of 2x2 plus a
//! class token, a residual stack of bidirectional gated linear recurrences (a Mamba stand-in
//! without the selective part), and the stochastic layer-wise shuffle around each block.
//!
//! Layout: hidden states are `d x (B T)` matrices (column `b T + t` is token `t` of image `b`),
//! so channel mixing is one matrix product and token mixing is one batched product over
//! channels, `(d, B, T) x (d, T, T)`, with the Toeplitz kernel
//! `K[c, t, s] = (1 - a_c) a_c^|t - s|` (causal part for the forward scan, anti-causal for the
//! backward one), `a_c = sigmoid(lambda_c)`, built on the tape from `lambda`.

use dfdx::prelude::*;
use rand::rngs::StdRng;
use rand::Rng;

use crate::datasets::{DIGIT_CLASSES, DIGIT_PIXELS};
use crate::nn::models::uniform_fan_in;
use crate::nn::store::{ParamId, ParamStore};
use crate::nn::transfer::{Download, Upload};

/// Patch tokens of an 8x8 digit (2x2 patches) plus the class token at position 0.
pub const TOKENS: usize = 17;
/// Values per patch.
pub const PATCH: usize = 4;
/// Input features of a token: the patch, a class-token flag, a one-hot position.
pub const FEATURES: usize = PATCH + 1 + TOKENS;
const LN_EPS: f64 = 1e-5;

/// One residual block `x <- x + W_o ((h_fwd + h_bwd) * silu(W_z LN(x)))`, `h` the scans of
/// `v = W_v LN(x)`.
#[derive(Clone, Debug)]
pub struct Block {
    pub ln_g: ParamId,
    pub ln_b: ParamId,
    pub w_v: ParamId,
    pub w_z: ParamId,
    pub w_o: ParamId,
    pub lam_f: ParamId,
    pub lam_b: ParamId,
}

/// The whole model in one store.
#[derive(Clone, Debug)]
pub struct TokenNet<D: Device<f32>> {
    pub store: ParamStore<f32, D>,
    pub dim: usize,
    /// `d x FEATURES`: patch embedding, class token and position embedding in one matrix.
    pub embed: ParamId,
    pub blocks: Vec<Block>,
    pub head_g: ParamId,
    pub head_b: ParamId,
    pub head_w: ParamId,
    pub head_bias: ParamId,
}

fn uniform(n: usize, bound: f64, rng: &mut StdRng) -> Vec<f32> {
    (0..n)
        .map(|_| (rng.gen::<f64>() * 2.0 - 1.0) as f32 * bound as f32)
        .collect()
}

/// `lambda` initialization: `linspace(0, 3.5)` over the channels.
pub fn lambda_init(d: usize) -> Vec<f32> {
    (0..d)
        .map(|c| (3.5 * c as f64 / (d.max(2) - 1) as f64) as f32)
        .collect()
}

impl<D: Device<f32>> TokenNet<D> {
    pub fn new(dev: &D, dim: usize, depth: usize, rng: &mut StdRng) -> TokenNet<D> {
        let mut store = ParamStore::new(dev);
        let d = dim;
        // Patch weights at fan-in 4; class token and positions small (std 0.02, uniform).
        let mut e = vec![0.0f32; d * FEATURES];
        for c in 0..d {
            for f in 0..FEATURES {
                let bound = if f < PATCH { 0.5 } else { 0.02 * 3f64.sqrt() };
                e[c * FEATURES + f] = uniform(1, bound, rng)[0];
            }
        }
        let embed = store.add("embed", &[d, FEATURES], e);
        let blocks = (0..depth)
            .map(|l| {
                let p = |s: &str| format!("block{l}.{s}");
                Block {
                    ln_g: store.add_filled(&p("ln.weight"), &[d], 1.0),
                    ln_b: store.add_filled(&p("ln.bias"), &[d], 0.0),
                    w_v: store.add(&p("w_v"), &[d, d], uniform_fan_in(d * d, d, rng)),
                    w_z: store.add(&p("w_z"), &[d, d], uniform_fan_in(d * d, d, rng)),
                    w_o: store.add(&p("w_o"), &[d, d], uniform_fan_in(d * d, d, rng)),
                    lam_f: store.add(&p("lambda_fwd"), &[d], lambda_init(d)),
                    lam_b: store.add(&p("lambda_bwd"), &[d], lambda_init(d)),
                }
            })
            .collect();
        let head_g = store.add_filled("head.ln.weight", &[d], 1.0);
        let head_b = store.add_filled("head.ln.bias", &[d], 0.0);
        let head_w = store.add(
            "head.weight",
            &[d, DIGIT_CLASSES],
            uniform_fan_in(d * DIGIT_CLASSES, d, rng),
        );
        let head_bias = store.add(
            "head.bias",
            &[DIGIT_CLASSES],
            uniform_fan_in(DIGIT_CLASSES, d, rng),
        );
        TokenNet {
            store,
            dim,
            embed,
            blocks,
            head_g,
            head_b,
            head_w,
            head_bias,
        }
    }

    pub fn depth(&self) -> usize {
        self.blocks.len()
    }

    fn mat<T: Tape<f32, D>>(&self, id: ParamId) -> Tensor<(usize, usize), f32, D, T> {
        self.store.matrix_value(id).retaped::<T>()
    }

    fn vec<T: Tape<f32, D>>(&self, id: ParamId) -> Tensor<(usize,), f32, D, T> {
        self.store.flat(id).clone().retaped::<T>()
    }

    /// LayerNorm over the channels (axis 0) of a `d x n` matrix, with its affine map.
    fn ln<T: Tape<f32, D>>(
        &self,
        x: Tensor<(usize, usize), f32, D, T>,
        g: ParamId,
        b: ParamId,
    ) -> Tensor<(usize, usize), f32, D, T> {
        let shape = *x.shape();
        let g = self.vec::<T>(g).broadcast_like::<_, Axis<1>>(&shape);
        let b = self.vec::<T>(b).broadcast_like::<_, Axis<1>>(&shape);
        x.normalize::<Axis<0>>(LN_EPS) * g + b
    }

    /// The scan kernel of one direction as `Kt[c, s, t] = K[c, t, s]` (`d x T x T`), so that
    /// `h[c, b, t] = sum_s v[c, b, s] Kt[c, s, t]`.
    fn kernel<T: Tape<f32, D>>(
        &self,
        lam: ParamId,
        forward: bool,
    ) -> Tensor<(usize, usize, usize), f32, D, T> {
        let d = self.dim;
        let dev = self.store.device().clone();
        let (dist, mask) = distances(forward);
        let sh = (d, TOKENS, TOKENS);
        let dist: Tensor<(usize, usize), f32, D> = dev.upload(dist, (TOKENS, TOKENS));
        let mask: Tensor<(usize, usize), f32, D> = dev.upload(mask, (TOKENS, TOKENS));
        let a = self.vec::<T>(lam).sigmoid();
        let one_minus = (a.with_empty_tape().negate() + 1.0).broadcast_like::<_, Axes2<1, 2>>(&sh);
        let log_a = a.ln().broadcast_like::<_, Axes2<1, 2>>(&sh);
        let powers = (log_a * dist.broadcast_like::<_, Axis<0>>(&sh)).exp();
        powers * mask.broadcast_like::<_, Axis<0>>(&sh) * one_minus
    }

    /// One block on `x` (`d x B T`).
    fn block<T: Tape<f32, D>>(
        &self,
        blk: &Block,
        x: Tensor<(usize, usize), f32, D, T>,
        batch: usize,
    ) -> Tensor<(usize, usize), f32, D, T> {
        let d = self.dim;
        let n = batch * TOKENS;
        let u = self.ln(x.with_empty_tape(), blk.ln_g, blk.ln_b);
        let v = self.mat::<T>(blk.w_v).matmul(u.with_empty_tape());
        let z = self.mat::<T>(blk.w_z).matmul(u);
        let k = self.kernel::<T>(blk.lam_f, true) + self.kernel::<T>(blk.lam_b, false);
        let h = v
            .reshape_like(&(d, batch, TOKENS))
            .matmul(k)
            .reshape_like(&(d, n));
        let zs = z.with_empty_tape();
        let y = h * (z.sigmoid() * zs);
        x + self.mat::<T>(blk.w_o).matmul(y)
    }

    /// Logits (`B x 10`) of token features `x` (`FEATURES x B T`, see [`features`]).
    /// `perms[l]`, when given, is the token permutation of layer `l` (training only): token
    /// slot `t'` of the shuffled sequence holds token `perm[t']`; the block runs on the shuffled
    /// sequence (hidden states and residual stream together) and the order is restored after.
    pub fn forward<T: Tape<f32, D>>(
        &self,
        x: Tensor<(usize, usize), f32, D, T>,
        batch: usize,
        perms: &[Option<Vec<usize>>],
    ) -> Tensor<(usize, usize), f32, D, T> {
        let d = self.dim;
        let n = batch * TOKENS;
        let dev = self.store.device().clone();
        let mut h = self.mat::<T>(self.embed).matmul(x);
        for (l, blk) in self.blocks.iter().enumerate() {
            match perms.get(l).and_then(|p| p.as_ref()) {
                Some(perm) => {
                    let (p, inv) = permutation_matrices(perm);
                    let p: Tensor<(usize, usize), f32, D> = dev.upload(p, (TOKENS, TOKENS));
                    let inv: Tensor<(usize, usize), f32, D> = dev.upload(inv, (TOKENS, TOKENS));
                    let shuffled = h
                        .reshape_like(&(d * batch, TOKENS))
                        .matmul(p)
                        .reshape_like(&(d, n));
                    let out = self.block(blk, shuffled, batch);
                    h = out
                        .reshape_like(&(d * batch, TOKENS))
                        .matmul(inv)
                        .reshape_like(&(d, n));
                }
                None => h = self.block(blk, h, batch),
            }
        }
        // The class token (slot 0) of every image.
        let mut e0 = vec![0.0f32; TOKENS];
        e0[0] = 1.0;
        let e0: Tensor<(usize, usize), f32, D> = dev.upload(e0, (TOKENS, 1));
        let cls = h
            .reshape_like(&(d * batch, TOKENS))
            .matmul(e0)
            .reshape_like(&(d, batch));
        let cls = self.ln(cls, self.head_g, self.head_b);
        let bias = self
            .vec::<T>(self.head_bias)
            .broadcast_like::<_, Axis<0>>(&(batch, DIGIT_CLASSES));
        cls.permute::<_, Axes2<1, 0>>()
            .matmul(self.mat::<T>(self.head_w))
            + bias
    }

    /// Logits without a tape, in chunks (evaluation: no shuffle, no augmentation).
    pub fn logits(&self, images: &[f32]) -> Vec<f32> {
        let dev = self.store.device().clone();
        let n = images.len() / DIGIT_PIXELS;
        let mut out = Vec::with_capacity(n * DIGIT_CLASSES);
        for chunk in images.chunks(EVAL_CHUNK * DIGIT_PIXELS) {
            let b = chunk.len() / DIGIT_PIXELS;
            let x: Tensor<(usize, usize), f32, D> =
                dev.upload(features(chunk), (FEATURES, b * TOKENS));
            out.extend(self.forward::<NoneTape>(x, b, &[]).download());
        }
        out
    }
}

/// Images per evaluation forward.
const EVAL_CHUNK: usize = 512;

/// Token features (`FEATURES x B T`, row-major) of `B` 8x8 images: token 0 is the class token
/// (flag 1), token `1 + 4 i + j` the 2x2 patch at patch-row `i`, patch-column `j` (pixels
/// `(2i + r) 8 + 2j + c` at feature `2r + c`); each token carries its one-hot position.
pub fn features(images: &[f32]) -> Vec<f32> {
    let b = images.len() / DIGIT_PIXELS;
    let n = b * TOKENS;
    let mut f = vec![0.0f32; FEATURES * n];
    for (bi, img) in images.chunks(DIGIT_PIXELS).enumerate() {
        for t in 0..TOKENS {
            let col = bi * TOKENS + t;
            f[(PATCH + 1 + t) * n + col] = 1.0;
            if t == 0 {
                f[PATCH * n + col] = 1.0;
                continue;
            }
            let (pi, pj) = ((t - 1) / 4, (t - 1) % 4);
            for r in 0..2 {
                for c in 0..2 {
                    f[(2 * r + c) * n + col] = img[(2 * pi + r) * 8 + 2 * pj + c];
                }
            }
        }
    }
    f
}

/// Distances and mask of one scan direction as `T x T` host matrices indexed `[s, t]`:
/// forward `t - s` where `t >= s`, backward `s - t` where `s >= t` (0 and masked elsewhere).
pub fn distances(forward: bool) -> (Vec<f32>, Vec<f32>) {
    let mut dist = vec![0.0f32; TOKENS * TOKENS];
    let mut mask = vec![0.0f32; TOKENS * TOKENS];
    for s in 0..TOKENS {
        for t in 0..TOKENS {
            let k = if forward {
                t as i64 - s as i64
            } else {
                s as i64 - t as i64
            };
            if k >= 0 {
                dist[s * TOKENS + t] = k as f32;
                mask[s * TOKENS + t] = 1.0;
            }
        }
    }
    (dist, mask)
}

/// The permutation as right-multiplied `T x T` matrices: `x P` puts token `perm[t']` in slot
/// `t'`; `x P^T` puts it back.
pub fn permutation_matrices(perm: &[usize]) -> (Vec<f32>, Vec<f32>) {
    let t = perm.len();
    let mut p = vec![0.0f32; t * t];
    let mut inv = vec![0.0f32; t * t];
    for (slot, &src) in perm.iter().enumerate() {
        p[src * t + slot] = 1.0;
        inv[slot * t + src] = 1.0;
    }
    (p, inv)
}

/// Shuffle probability of layer `l` of `depth`: `l / (depth - 1) p_max` (linear, the
/// paper's), or `p_max / 2` everywhere (constant, the same mean).
pub fn layer_probability(l: usize, depth: usize, p_max: f64, constant: bool) -> f64 {
    if constant {
        p_max / 2.0
    } else if depth <= 1 {
        0.0
    } else {
        l as f64 / (depth - 1) as f64 * p_max
    }
}

/// A uniformly random permutation of `n` (Fisher-Yates).
pub fn random_permutation(n: usize, rng: &mut impl Rng) -> Vec<usize> {
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        p.swap(i, rng.gen_range(0..=i));
    }
    p
}

/// The recurrence `h_t = a h_{t-1} + (1 - a) v_t` run step by step over one channel's
/// sequence, forward and backward, summed (the reference the Toeplitz product must match).
pub fn scan_reference(v: &[f64], a_fwd: f64, a_bwd: f64) -> Vec<f64> {
    let n = v.len();
    let mut out = vec![0.0; n];
    let mut h = 0.0;
    for t in 0..n {
        h = a_fwd * h + (1.0 - a_fwd) * v[t];
        out[t] += h;
    }
    h = 0.0;
    for t in (0..n).rev() {
        h = a_bwd * h + (1.0 - a_bwd) * v[t];
        out[t] += h;
    }
    out
}

/// The mixer's token-mixing output `h = h_fwd + h_bwd` of layer `l` for `v` (`d x B T`), as the
/// model computes it (tests compare it with [`scan_reference`]).
pub fn mix_on_device<D: Device<f32>>(
    net: &TokenNet<D>,
    l: usize,
    v: Vec<f32>,
    batch: usize,
) -> Vec<f32> {
    let d = net.dim;
    let dev = net.store.device().clone();
    let v: Tensor<(usize, usize, usize), f32, D> = dev.upload(v, (d, batch, TOKENS));
    let blk = &net.blocks[l];
    let k = net.kernel::<NoneTape>(blk.lam_f, true) + net.kernel::<NoneTape>(blk.lam_b, false);
    v.matmul(k).download()
}

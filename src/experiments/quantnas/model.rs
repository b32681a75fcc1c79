//! The 2x super-resolution network of the QuantNAS toy (4x4 -> 8x8 digits), as a supernet or
//! as one discrete architecture:
//!
//! ```text
//! h0 = head(x)                         conv3x3 1 -> C, 8 bits (fixed)
//! h_{k+1} = h_k + sum_i p_ki op_i(h_k)  3 body blocks; p_k = softmax(alpha_k) over the
//!                                       candidates (op, bits), op in {conv3x3, conv1x1,
//!                                       bottleneck 1x1 C->C/2, 3x3, 1x1 C/2->C, skip}
//! y = depth_to_space(tail(h_3)) + nearest(x)   tail conv3x3 C -> 4, 8 bits (fixed)
//! ```
//!
//! Every quantized convolution reads `relu(input)` quantized to the candidate's bits (the
//! activation) with its kernel quantized to the same bits (`b_w = b_a`); `skip` adds nothing
//! (the block is then the identity through its residual) and costs 0 BitOps. A discrete net
//! has one candidate per block (weight 1). Convolutions are im2col products
//! ([`crate::nn::models::cnn::conv2d`]); quantization happens on the host ([`super::quant`]) and
//! enters the tape as constants with the straight-through gradients.

use std::cell::RefCell;

use dfdx::prelude::*;
use rand::rngs::StdRng;
use rand::Rng;

use super::quant;
use crate::nn::models::cnn::{conv2d, Conv2dShape};
use crate::nn::models::uniform_fan_in;
use crate::nn::store::{ParamId, ParamStore};
use crate::nn::transfer::Upload;

/// Side of the low-resolution input and of the high-resolution output.
pub const LR: usize = 4;
pub const HR: usize = 8;
/// Bits that mean "full precision" (no quantization; BitOps at 32 x 32).
pub const FP: u32 = 32;
/// The bit-widths of the search space.
pub const BITS: [u32; 3] = [2, 4, 8];
/// Bits of the fixed head and tail.
pub const EDGE_BITS: u32 = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Conv3,
    Conv1,
    Bottleneck,
    Skip,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Conv3 => "conv3x3",
            Op::Conv1 => "conv1x1",
            Op::Bottleneck => "bottleneck",
            Op::Skip => "skip",
        }
    }
}

/// One candidate of a block: an operation at a bit-width (weights and activations).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cand {
    pub op: Op,
    pub bits: u32,
}

impl Cand {
    pub fn label(&self) -> String {
        match (self.op, self.bits) {
            (Op::Skip, _) => "skip".into(),
            (op, FP) => format!("{}@fp", op.name()),
            (op, b) => format!("{}@{b}", op.name()),
        }
    }
}

/// The candidates of every supernet block: the three convolutions at 2, 4 and 8 bits, then
/// skip (10 in all).
pub fn search_space() -> Vec<Cand> {
    let mut v = Vec::new();
    for op in [Op::Conv3, Op::Conv1, Op::Bottleneck] {
        for bits in BITS {
            v.push(Cand { op, bits });
        }
    }
    v.push(Cand {
        op: Op::Skip,
        bits: 0,
    });
    v
}

/// Multiply-accumulates per image of `op` with `c` channels on the 4x4 map (biases not
/// counted).
pub fn op_macs(op: Op, c: usize) -> f64 {
    let px = (LR * LR) as f64;
    let (c, h) = (c as f64, (c / 2) as f64);
    match op {
        Op::Conv3 => px * 9.0 * c * c,
        Op::Conv1 => px * c * c,
        Op::Bottleneck => px * (c * h + 9.0 * h * h + h * c),
        Op::Skip => 0.0,
    }
}

/// MACs of the head (conv3x3 1 -> C) and of the tail (conv3x3 C -> 4) per image.
pub fn edge_macs(c: usize) -> (f64, f64) {
    let px = (LR * LR) as f64;
    (px * 9.0 * c as f64, px * 9.0 * c as f64 * 4.0)
}

/// BitOps of a candidate per image: `MACs x b_w x b_a`.
pub fn cand_bitops(cand: Cand, c: usize) -> f64 {
    op_macs(cand.op, c) * (cand.bits as f64).powi(2)
}

/// BitOps of a discrete net per image: head and tail at `edge_bits`, the blocks' candidates.
pub fn net_bitops(arch: &[Cand], c: usize, edge_bits: u32) -> f64 {
    let (head, tail) = edge_macs(c);
    (head + tail) * (edge_bits as f64).powi(2)
        + arch.iter().map(|&k| cand_bitops(k, c)).sum::<f64>()
}

/// The expected body BitOps of the supernet, normalized to [0, 1] between the cheapest choice
/// (skip everywhere: 0) and the most expensive candidate in every block:
/// `sum_k sum_i p_ki BitOps_i / (blocks max_i BitOps_i)`.
pub fn expected_bitops_norm(probs: &[Vec<f64>], cands: &[Cand], c: usize) -> f64 {
    let costs: Vec<f64> = cands.iter().map(|&k| cand_bitops(k, c)).collect();
    let max = costs.iter().cloned().fold(0.0, f64::max).max(1e-12);
    probs
        .iter()
        .map(|p| p.iter().zip(&costs).map(|(a, b)| a * b).sum::<f64>())
        .sum::<f64>()
        / (max * probs.len().max(1) as f64)
}

/// How the quantized candidates compute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// No quantization anywhere.
    Fp,
    /// QuantNAS's quantization noise on weights and activations (search).
    Noise,
    /// Real min-max rounding (what the noise models; evaluating a noise-searched supernet).
    MinMax,
    /// LSQ weights and HWGQ activations with the straight-through estimator (training and
    /// evaluation alike: the forward rounds).
    Lsq,
}

/// A convolution with its LSQ steps (one per output channel) for every bit-width it may run at.
#[derive(Clone, Debug)]
pub struct QConv {
    pub w: ParamId,
    pub b: ParamId,
    pub shape: Conv2dShape,
    pub steps: Vec<(u32, ParamId)>,
}

impl QConv {
    fn new<D: Device<f32>>(
        store: &mut ParamStore<f32, D>,
        name: &str,
        (cin, cout, k): (usize, usize, usize),
        bits: &[u32],
        rng: &mut StdRng,
    ) -> QConv {
        let shape = Conv2dShape {
            in_channels: cin,
            out_channels: cout,
            height: LR,
            width: LR,
            kernel: k,
            stride: 1,
            padding: k / 2,
        };
        let fan = shape.patch_len();
        let ks = shape.kernel_shape();
        let values: Vec<f32> = uniform_fan_in(ks.iter().product(), fan, rng);
        let w = store.add(&format!("{name}.weight"), &ks, values.clone());
        let b = store.add(
            &format!("{name}.bias"),
            &[cout],
            uniform_fan_in(cout, fan, rng),
        );
        let steps = bits
            .iter()
            .filter(|&&b| b < FP)
            .map(|&bits| {
                let init: Vec<f32> = values
                    .chunks(fan)
                    .map(|ch| quant::lsq_init(ch, bits))
                    .collect();
                (
                    bits,
                    store.add(&format!("{name}.step{bits}"), &[cout], init),
                )
            })
            .collect();
        QConv { w, b, shape, steps }
    }

    fn step(&self, bits: u32) -> ParamId {
        self.steps
            .iter()
            .find(|s| s.0 == bits)
            .map(|s| s.1)
            .expect("an LSQ step for these bits")
    }

    /// Re-initializes the LSQ steps from the current kernel (`2 mean|w| / sqrt(Qp)`).
    fn reset_steps<D: Device<f32>>(&self, store: &mut ParamStore<f32, D>) {
        let w = store.values(self.w);
        let fan = self.shape.patch_len();
        for &(bits, id) in &self.steps {
            let init = w.chunks(fan).map(|ch| quant::lsq_init(ch, bits)).collect();
            store.upload(id, init);
        }
    }
}

/// One body block: its candidates, the layers they use and (with more than one candidate) the
/// architecture logits.
#[derive(Clone, Debug)]
pub struct Block {
    pub cands: Vec<Cand>,
    pub conv3: Option<QConv>,
    pub conv1: Option<QConv>,
    pub bottleneck: Option<[QConv; 3]>,
    pub alpha: Option<ParamId>,
}

/// The supernet or a discrete net: weights in `store`, architecture logits in `arch`.
pub struct SrNet<D: Device<f32>> {
    pub store: ParamStore<f32, D>,
    pub arch: ParamStore<f32, D>,
    pub head: QConv,
    pub blocks: Vec<Block>,
    pub tail: QConv,
    pub channels: usize,
    pub edge_bits: u32,
    hwgq: Vec<(u32, f64)>,
    idx: RefCell<IndexCache<D>>,
    pixel_shuffle: RefCell<Option<(usize, Index<D>)>>,
    rng: RefCell<StdRng>,
}

type M<D, T> = Tensor<(usize, usize), f32, D, T>;
type Index<D> = Tensor<(usize,), usize, D>;
/// im2col indices by (input channels, kernel, batch).
type IndexCache<D> = Vec<((usize, usize, usize), Index<D>)>;

/// The bit-widths an operation runs at and, in a supernet, their mixing weights
/// `q_b = p_(op,b) / sum_b' p_(op,b')` (None: one bit-width, weight 1).
pub struct Mix<D: Device<f32>, T> {
    pub bits: Vec<u32>,
    pub q: Option<Tensor<(usize,), f32, D, T>>,
}

impl<D: Device<f32>> SrNet<D> {
    /// A net whose block `k` chooses among `blocks[k]` (one candidate: a discrete net); head
    /// and tail at `edge_bits`. `noise_seed` seeds the quantization noise.
    pub fn new(
        dev: &D,
        channels: usize,
        blocks: &[Vec<Cand>],
        edge_bits: u32,
        rng: &mut StdRng,
        noise_seed: u64,
    ) -> SrNet<D> {
        use rand::SeedableRng;
        let c = channels;
        assert!(c >= 2 && c.is_multiple_of(2), "an even channel count");
        let mut store = ParamStore::new(dev);
        let mut arch = ParamStore::new(dev);
        let head = QConv::new(&mut store, "head", (1, c, 3), &[edge_bits], rng);
        let mut bs = Vec::new();
        for (k, cands) in blocks.iter().enumerate() {
            assert!(!cands.is_empty(), "a block needs a candidate");
            let bits_of = |op: Op| -> Vec<u32> {
                cands
                    .iter()
                    .filter(|x| x.op == op)
                    .map(|x| x.bits)
                    .collect()
            };
            let name = |s: &str| format!("block{k}.{s}");
            let b3 = bits_of(Op::Conv3);
            let b1 = bits_of(Op::Conv1);
            let bb = bits_of(Op::Bottleneck);
            let conv3 = (!b3.is_empty())
                .then(|| QConv::new(&mut store, &name("conv3x3"), (c, c, 3), &b3, rng));
            let conv1 = (!b1.is_empty())
                .then(|| QConv::new(&mut store, &name("conv1x1"), (c, c, 1), &b1, rng));
            let bottleneck = (!bb.is_empty()).then(|| {
                [
                    QConv::new(
                        &mut store,
                        &name("bottleneck.reduce"),
                        (c, c / 2, 1),
                        &bb,
                        rng,
                    ),
                    QConv::new(
                        &mut store,
                        &name("bottleneck.conv"),
                        (c / 2, c / 2, 3),
                        &bb,
                        rng,
                    ),
                    QConv::new(
                        &mut store,
                        &name("bottleneck.expand"),
                        (c / 2, c, 1),
                        &bb,
                        rng,
                    ),
                ]
            });
            let alpha = (cands.len() > 1).then(|| {
                arch.add(
                    &format!("alpha.block{k}"),
                    &[cands.len()],
                    vec![0.0; cands.len()],
                )
            });
            bs.push(Block {
                cands: cands.clone(),
                conv3,
                conv1,
                bottleneck,
                alpha,
            });
        }
        let tail = QConv::new(&mut store, "tail", (c, 4, 3), &[edge_bits], rng);
        let mut hw: Vec<u32> = blocks.iter().flatten().map(|k| k.bits).collect();
        hw.push(edge_bits);
        hw.sort_unstable();
        hw.dedup();
        let hwgq = hw
            .into_iter()
            .filter(|&b| b > 0 && b < FP)
            .map(|b| (b, quant::hwgq_step(b)))
            .collect();
        SrNet {
            store,
            arch,
            head,
            blocks: bs,
            tail,
            channels: c,
            edge_bits,
            hwgq,
            idx: RefCell::new(Vec::new()),
            pixel_shuffle: RefCell::new(None),
            rng: RefCell::new(StdRng::seed_from_u64(noise_seed)),
        }
    }

    /// Every QConv of the net.
    pub fn layers(&self) -> Vec<&QConv> {
        let mut v = vec![&self.head];
        for b in &self.blocks {
            v.extend(b.conv3.iter());
            v.extend(b.conv1.iter());
            if let Some(bn) = &b.bottleneck {
                v.extend(bn.iter());
            }
        }
        v.push(&self.tail);
        v
    }

    /// Re-initializes every LSQ step from the current kernels.
    pub fn reset_steps(&mut self) {
        let layers: Vec<QConv> = self.layers().into_iter().cloned().collect();
        for l in layers {
            l.reset_steps(&mut self.store);
        }
    }

    /// softmax(alpha) of every block (a single candidate: `[1]`), on the host.
    pub fn probabilities(&self) -> Vec<Vec<f64>> {
        self.blocks
            .iter()
            .map(|b| match b.alpha {
                None => vec![1.0],
                Some(id) => softmax(&self.arch.values(id)),
            })
            .collect()
    }

    /// The argmax candidate of every block.
    pub fn derived(&self) -> Vec<Cand> {
        self.probabilities()
            .iter()
            .zip(&self.blocks)
            .map(|(p, b)| {
                // The first of equal maxima (untouched logits give the first candidate).
                let mut i = 0;
                for (j, q) in p.iter().enumerate() {
                    if *q > p[i] {
                        i = j;
                    }
                }
                b.cands[i]
            })
            .collect()
    }

    fn hwgq_unit(&self, bits: u32) -> f64 {
        self.hwgq
            .iter()
            .find(|x| x.0 == bits)
            .map(|x| x.1)
            .unwrap_or_else(|| quant::hwgq_step(bits))
    }

    fn indices(&self, s: &Conv2dShape, batch: usize) -> Tensor<(usize,), usize, D> {
        let key = (s.in_channels, s.kernel, batch);
        let mut cache = self.idx.borrow_mut();
        if let Some((_, t)) = cache.iter().find(|(k, _)| *k == key) {
            return t.clone();
        }
        let idx = s.im2col_indices(batch);
        let t = self.store.device().upload(idx.clone(), (idx.len(),));
        if cache.len() > 16 {
            cache.remove(0);
        }
        cache.push((key, t.clone()));
        t
    }

    /// `q^T rows` for the `k x n` constant `rows` (one row per bit-width; `q` None: `k = 1`
    /// and the row itself), a flat `n` vector on the tape of `q`.
    fn mix_rows<T: Tape<f32, D>>(
        &self,
        q: Option<&Tensor<(usize,), f32, D, T>>,
        rows: Vec<f32>,
        k: usize,
        n: usize,
    ) -> Tensor<(usize,), f32, D, T> {
        let dev = self.store.device();
        match q {
            None => dev.upload(rows, (n,)).retaped::<T>(),
            Some(q) => q
                .retaped::<T>()
                .reshape_like(&(1, k))
                .matmul(dev.upload(rows, (k, n)))
                .reshape_like(&(n,)),
        }
    }

    /// The kernel of `l` mixed over bit-widths, `sum_b q_b Q_b(w)` (one bit-width: `Q_b(w)`),
    /// on the tape. Noise and min-max rounding add a constant `delta_b` to `w`; LSQ gives
    /// `Q_b(w) = w mask_b + s_b coef_b` (straight-through to `w`, LSQ's gradient to `s_b`).
    fn kernel_mix<T: Tape<f32, D>>(
        &self,
        l: &QConv,
        mix: &Mix<D, T>,
        mode: Mode,
    ) -> Tensor<(usize, usize, usize, usize), f32, D, T> {
        let [o, i, kk, _] = l.shape.kernel_shape();
        let n = o * i * kk * kk;
        let w = self.store.flat(l.w).retaped::<T>();
        let k = mix.bits.len();
        if mode == Mode::Fp || mix.bits.iter().all(|&b| b >= FP) {
            return w.reshape_like(&(o, i, kk, kk));
        }
        let host = self.store.values(l.w);
        let q = mix.q.as_ref();
        let wq = match mode {
            Mode::Fp => w,
            Mode::Noise | Mode::MinMax => {
                let mut rows = Vec::with_capacity(k * n);
                for &b in &mix.bits {
                    if mode == Mode::Noise {
                        rows.extend(quant::quantization_noise(
                            &host,
                            b,
                            &mut *self.rng.borrow_mut(),
                        ));
                    } else {
                        let r = quant::minmax_round(&host, b);
                        rows.extend(r.iter().zip(&host).map(|(a, b)| a - b));
                    }
                }
                w + self.mix_rows(q, rows, k, n)
            }
            Mode::Lsq => {
                let per = l.shape.patch_len();
                let mut masks = Vec::with_capacity(k * n);
                let mut out_terms = Vec::new();
                for (j, &b) in mix.bits.iter().enumerate() {
                    let sid = l.step(b);
                    let parts = quant::lsq(&host, &self.store.values(sid), per, b);
                    masks.extend(parts.mask);
                    let s = self
                        .store
                        .flat(sid)
                        .retaped::<T>()
                        .broadcast_like::<_, Axis<1>>(&(o, per))
                        .reshape_like(&(n,));
                    let term = s * self.store.device().upload(parts.coef, (n,));
                    out_terms.push(match q {
                        None => term,
                        Some(q) => {
                            term * q
                                .retaped::<T>()
                                .select(self.store.device().tensor(j))
                                .broadcast_like(&(n,))
                        }
                    });
                }
                let mut out = w * self.mix_rows(q, masks, k, n);
                for t in out_terms {
                    out = out + t;
                }
                out
            }
        };
        wq.reshape_like(&(o, i, kk, kk))
    }

    /// `relu(h)` mixed over bit-widths, `sum_b q_b A_b(relu(h))`: noise or min-max rounding
    /// add a constant; HWGQ gives `relu(h) mask_b + offset_b` (straight-through up to the top
    /// level, no gradient above it where the output is clipped).
    fn act_mix<T: Tape<f32, D>>(&self, h: M<D, T>, mix: &Mix<D, T>, mode: Mode) -> M<D, T> {
        let shape = *h.shape();
        let n = shape.0 * shape.1;
        let k = mix.bits.len();
        if mode == Mode::Fp || mix.bits.iter().all(|&b| b >= FP) {
            return h.relu();
        }
        let host: Vec<f32> = h.as_vec();
        let r: Vec<f32> = host.iter().map(|v| v.max(0.0)).collect();
        let a = h.relu();
        let q = mix.q.as_ref();
        match mode {
            Mode::Fp => a,
            Mode::Noise | Mode::MinMax => {
                let mut rows = Vec::with_capacity(k * n);
                for &b in &mix.bits {
                    if mode == Mode::Noise {
                        rows.extend(quant::quantization_noise(
                            &r,
                            b,
                            &mut *self.rng.borrow_mut(),
                        ));
                    } else {
                        let qv = quant::minmax_round(&r, b);
                        rows.extend(qv.iter().zip(&r).map(|(a, b)| a - b));
                    }
                }
                a + self.mix_rows(q, rows, k, n).reshape_like(&shape)
            }
            Mode::Lsq => {
                let mut masks = Vec::with_capacity(k * n);
                let mut offsets = Vec::with_capacity(k * n);
                for &b in &mix.bits {
                    let (qv, mask) = quant::hwgq(&host, self.hwgq_unit(b), b);
                    offsets.extend((0..n).map(|j| qv[j] - r[j] * mask[j]));
                    masks.extend(mask);
                }
                a * self.mix_rows(q, masks, k, n).reshape_like(&shape)
                    + self.mix_rows(q, offsets, k, n).reshape_like(&shape)
            }
        }
    }

    /// The kernel of `l` as the forward uses it at `bits` under `mode` (tests, artifacts).
    pub fn quantized_kernel(&self, l: &QConv, bits: u32, mode: Mode) -> Vec<f32> {
        let mix = Mix::<D, NoneTape> {
            bits: vec![bits],
            q: None,
        };
        self.kernel_mix(l, &mix, mode).as_vec()
    }

    fn conv<T: Tape<f32, D>>(&self, l: &QConv, a: M<D, T>, mix: &Mix<D, T>, mode: Mode) -> M<D, T> {
        let rows = a.shape().0;
        let batch = rows / (LR * LR);
        let kernel = self.kernel_mix::<T>(l, mix, mode);
        let bias = self.store.flat(l.b).retaped::<T>();
        let s = &l.shape;
        if s.kernel == 1 {
            let w = kernel
                .reshape_like(&(s.out_channels, s.in_channels))
                .permute::<_, Axes2<1, 0>>();
            a.matmul(w) + bias.broadcast_like::<_, Axis<0>>(&(rows, s.out_channels))
        } else {
            let idx = self.indices(s, batch);
            conv2d(a, kernel, bias, s, &idx)
        }
    }

    /// One operation on the block input `h` with its bit-widths mixed by `mix`.
    fn operation<T: Tape<f32, D>>(
        &self,
        block: &Block,
        op: Op,
        h: M<D, T>,
        mix: &Mix<D, T>,
        mode: Mode,
    ) -> M<D, T> {
        let a = self.act_mix(h, mix, mode);
        match op {
            Op::Conv3 => self.conv(block.conv3.as_ref().expect("conv3x3"), a, mix, mode),
            Op::Conv1 => self.conv(block.conv1.as_ref().expect("conv1x1"), a, mix, mode),
            Op::Bottleneck => {
                let [r, c, e] = block.bottleneck.as_ref().expect("bottleneck");
                let x = self.conv(r, a, mix, mode);
                let x = self.conv(c, self.act_mix(x, mix, mode), mix, mode);
                self.conv(e, self.act_mix(x, mix, mode), mix, mode)
            }
            Op::Skip => unreachable!("skip has no operation"),
        }
    }

    /// The super-resolved images (`batch x 64`, row-major 8x8) of the low-resolution inputs
    /// `lr` (`batch x 16`), on tape `T`.
    ///
    /// A supernet block computes each operation once, its weights and activations mixed over
    /// the operation's bit-widths by `q_b = p_(op,b) / sum_b' p_(op,b')` (QuantNAS's shared
    /// quantized convolution: one kernel `sum_b q_b Q_b(w)`, one activation
    /// `sum_b q_b A_b(relu(h))`), and weighs it by `P_op = sum_b p_(op,b)`:
    /// `h <- h + sum_op P_op op(h)`; skip's probability only scales the others down.
    pub fn forward<T: Tape<f32, D>>(&self, lr: &[f32], mode: Mode) -> M<D, T> {
        let batch = lr.len() / (LR * LR);
        let dev = self.store.device().clone();
        let x: M<D, T> = dev.upload(lr.to_vec(), (batch * LR * LR, 1)).retaped::<T>();
        // The LR input has 65 grey levels (j / 64, j = 0..64: the 2x2 mean of the digits'
        // k / 16 pixels), exact on an 8-bit grid of step 1/64: not quantized.
        let edge = Mix::<D, T> {
            bits: vec![self.edge_bits],
            q: None,
        };
        let mut h = self.conv(&self.head, x, &edge, mode);
        for block in &self.blocks {
            let rows = h.shape().0;
            let shape = (rows, self.channels);
            let mut side = T::default();
            let probs = block
                .alpha
                .map(|id| self.arch.flat(id).retaped::<T>().softmax::<Axis<0>>());
            let mut mix: Option<M<D, T>> = None;
            for op in [Op::Conv3, Op::Conv1, Op::Bottleneck] {
                let members: Vec<(usize, u32)> = block
                    .cands
                    .iter()
                    .enumerate()
                    .filter(|(_, k)| k.op == op)
                    .map(|(j, k)| (j, k.bits))
                    .collect();
                if members.is_empty() {
                    continue;
                }
                let bits: Vec<u32> = members.iter().map(|m| m.1).collect();
                let out = match &probs {
                    None => {
                        let m = Mix { bits, q: None };
                        self.operation(block, op, h.retaped::<T>(), &m, mode)
                    }
                    Some(p) => {
                        let k = members.len();
                        let idx = dev.upload(members.iter().map(|m| m.0).collect(), (k,));
                        let pv = p.retaped::<T>().gather(idx);
                        let total = pv.retaped::<T>().sum::<Rank0, _>();
                        // A tiny floor keeps q finite when every member's probability underflows
                        // (one-hot logits): the operation is then weighted by P_op = 0 anyway.
                        let q = pv / (total.retaped::<T>() + 1e-30).broadcast_like(&(k,));
                        let m = Mix { bits, q: Some(q) };
                        let out = self.operation(block, op, h.retaped::<T>(), &m, mode);
                        if let Some(q) = m.q {
                            let (_, tape) = q.split_tape();
                            side = side.merge(tape);
                        }
                        out * total.broadcast_like(&shape)
                    }
                };
                mix = Some(match mix {
                    None => out,
                    Some(m) => m + out,
                });
            }
            if let Some(p) = probs {
                let (_, tape) = p.split_tape();
                side = side.merge(tape);
            }
            let next = match mix {
                Some(m) => h + m,
                None => h,
            };
            let (t, tape) = next.split_tape();
            h = t.put_tape(tape.merge(side));
        }
        let a = self.act_mix(h, &edge, mode);
        let out = self.conv(&self.tail, a, &edge, mode); // (B*16, 4)
        let sr = out
            .reshape_like(&(batch * LR * LR * 4,))
            .gather(self.shuffle_indices(batch))
            .reshape_like(&(batch, HR * HR));
        sr + dev.upload(nearest(lr), (batch, HR * HR))
    }

    /// Depth-to-space: HR pixel (2y + dy, 2x + dx) of image b reads channel 2 dy + dx of LR
    /// pixel (y, x).
    fn shuffle_indices(&self, batch: usize) -> Tensor<(usize,), usize, D> {
        let mut cache = self.pixel_shuffle.borrow_mut();
        if let Some((b, t)) = cache.as_ref() {
            if *b == batch {
                return t.clone();
            }
        }
        let idx = pixel_shuffle_indices(batch);
        let t = self.store.device().upload(idx.clone(), (idx.len(),));
        *cache = Some((batch, t.clone()));
        t
    }

    /// Super-resolved images without a tape, in chunks, on the host.
    pub fn predict(&self, lr: &[f32], mode: Mode) -> Vec<f32> {
        let mut out = Vec::with_capacity(lr.len() * 4);
        for chunk in lr.chunks(512 * LR * LR) {
            out.extend(self.forward::<NoneTape>(chunk, mode).as_vec());
        }
        out
    }

    /// The architecture terms of the alpha loss on the tape:
    /// `mu * expected_bitops_norm + ent_w * sum_k H(softmax(alpha_k))`.
    pub fn arch_penalty<T: Tape<f32, D>>(&self, mu: f64, ent_w: f64) -> Tensor<(), f32, D, T> {
        let dev = self.store.device().clone();
        let searched: Vec<&Block> = self.blocks.iter().filter(|b| b.alpha.is_some()).collect();
        let mut total: Tensor<(), f32, D, T> = dev.zeros::<Rank0>().retaped::<T>();
        if searched.is_empty() {
            return total;
        }
        let all: Vec<Cand> = searched[0].cands.clone();
        let costs: Vec<f64> = all.iter().map(|&k| cand_bitops(k, self.channels)).collect();
        let max = costs.iter().cloned().fold(0.0, f64::max).max(1e-12);
        let norm = max * self.blocks.len() as f64;
        for b in searched {
            let id = b.alpha.expect("searched");
            let n = b.cands.len();
            let cost: Vec<f32> = b
                .cands
                .iter()
                .map(|&k| (cand_bitops(k, self.channels) / norm) as f32)
                .collect();
            let lsm = self.arch.flat(id).retaped::<T>().log_softmax::<Axis<0>>();
            let p = lsm.retaped::<T>().exp();
            let ent = (p.retaped::<T>() * lsm).sum::<Rank0, _>().negate();
            let bitops = (p * dev.upload(cost, (n,))).sum::<Rank0, _>();
            total = total + bitops * (mu as f32) + ent * (ent_w as f32);
        }
        total
    }

    /// Mean entropy (nats) of the blocks' architecture distributions.
    pub fn mean_entropy(&self) -> f64 {
        let p = self.probabilities();
        p.iter().map(|q| entropy(q)).sum::<f64>() / p.len().max(1) as f64
    }
}

/// For `batch` images, the flat `(batch*16, 4)` tail output index of every HR pixel.
pub fn pixel_shuffle_indices(batch: usize) -> Vec<usize> {
    let mut idx = Vec::with_capacity(batch * HR * HR);
    for b in 0..batch {
        for yy in 0..HR {
            for xx in 0..HR {
                let (y, dy, x, dx) = (yy / 2, yy % 2, xx / 2, xx % 2);
                idx.push(((b * LR + y) * LR + x) * 4 + 2 * dy + dx);
            }
        }
    }
    idx
}

/// 2x2 average pooling of 8x8 images to 4x4.
pub fn downsample(hr: &[f32]) -> Vec<f32> {
    let n = hr.len() / (HR * HR);
    let mut out = vec![0.0; n * LR * LR];
    for b in 0..n {
        for y in 0..LR {
            for x in 0..LR {
                let at = |yy: usize, xx: usize| hr[b * 64 + yy * HR + xx];
                out[b * 16 + y * LR + x] = 0.25
                    * (at(2 * y, 2 * x)
                        + at(2 * y, 2 * x + 1)
                        + at(2 * y + 1, 2 * x)
                        + at(2 * y + 1, 2 * x + 1));
            }
        }
    }
    out
}

/// Nearest-neighbour 2x upsampling of 4x4 images to 8x8.
pub fn nearest(lr: &[f32]) -> Vec<f32> {
    let n = lr.len() / (LR * LR);
    let mut out = vec![0.0; n * HR * HR];
    for b in 0..n {
        for yy in 0..HR {
            for xx in 0..HR {
                out[b * 64 + yy * HR + xx] = lr[b * 16 + (yy / 2) * LR + xx / 2];
            }
        }
    }
    out
}

pub fn softmax(x: &[f32]) -> Vec<f64> {
    let m = x.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let e: Vec<f64> = x.iter().map(|&v| (v as f64 - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

pub fn entropy(p: &[f64]) -> f64 {
    -p.iter()
        .filter(|&&q| q > 0.0)
        .map(|&q| q * q.ln())
        .sum::<f64>()
}

/// A uniform random pick of `n` indices in `0..m`.
pub fn sample(m: usize, n: usize, rng: &mut impl Rng) -> Vec<usize> {
    (0..n).map(|_| rng.gen_range(0..m)).collect()
}

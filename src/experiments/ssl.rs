//! The self-supervised harness the SSL presets share, on top of the digits classifier harness
//! (`experiments::classifier`: split, device gathers, augmentation): networks built from
//! linear, batch-norm and activation layers with batch norm in train or eval mode
//! ([`Net`]), parameter-store copies and the EMA target update, row normalization onto the unit
//! sphere, augmented views of the 8x8 digits (shift, Gaussian noise, pixel dropout), the probes
//! that judge a representation with the labels (linear probe, k-NN, few-shot linear probe) and
//! embedding statistics (per-dimension spread, singular values, effective rank, a 2-D
//! principal-component projection).

use dfdx::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};

use super::classifier;
use crate::datasets::DIGIT_CLASSES;
use crate::metrics::lowrank::Svd;
use crate::nn::models::batchnorm::{update_running, BatchStats};
use crate::nn::models::{accuracy_on_device, uniform_fan_in, Activation, BatchNorm1d, BnMode, Mlp};
use crate::nn::store::{ParamId, ParamStore};
use crate::nn::transfer::{Download, Upload};
use crate::nn::{Optimizer, Rule};

/// How a linear layer's weights start.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// PyTorch's `nn.Linear` default (uniform in `+-1/sqrt(fan_in)`, bias too).
    Torch,
    /// Normal with this standard deviation truncated to `[-2, 2]` (timm's `trunc_normal_`,
    /// DINO's head), bias zero.
    TruncNormal(f64),
}

/// A net's output and the train-mode batch statistics of its batch-norm layers.
pub type NetOutput<E, D, T> = (Tensor<(usize, usize), E, D, T>, Vec<BatchStats<E, D>>);

/// One layer of a [`Net`], as asked for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LayerSpec {
    /// A linear layer to this width, with or without a bias.
    Linear(usize, Init, bool),
    /// Batch norm over the current width.
    BatchNorm,
    Act(Activation),
}

/// One layer of a [`Net`], with its parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Layer {
    Linear { w: ParamId, b: Option<ParamId> },
    Norm(BatchNorm1d),
    Act(Activation),
}

/// A feed-forward network of linear, batch-norm and activation layers whose parameters live in
/// a store (`"{prefix}.{i}.weight"`, `"{prefix}.{i}.bias"`, batch norm's under `"{prefix}.{i}"`;
/// weights are `in x out`).
#[derive(Clone, Debug, PartialEq)]
pub struct Net {
    pub layers: Vec<Layer>,
    pub in_dim: usize,
    pub out_dim: usize,
    /// The layers in words (MODEL.txt).
    pub description: String,
}

/// The layer list of an MLP `sizes[0] -> ... -> sizes[last]`: every hidden layer is Linear,
/// then batch norm (when `batch_norm`), then `act`; the last layer is linear, followed by `act`
/// only when `act_last`.
pub fn mlp_layers(
    sizes: &[usize],
    act: Activation,
    batch_norm: bool,
    act_last: bool,
    init: Init,
) -> Vec<LayerSpec> {
    let mut v = Vec::new();
    for (i, &w) in sizes.iter().enumerate().skip(1) {
        v.push(LayerSpec::Linear(w, init, true));
        let last = i + 1 == sizes.len();
        if !last && batch_norm {
            v.push(LayerSpec::BatchNorm);
        }
        if !last || act_last {
            v.push(LayerSpec::Act(act));
        }
    }
    v
}

fn trunc_normal<E: Dtype>(n: usize, std: f64, rng: &mut impl Rng) -> Vec<E> {
    (0..n)
        .map(|_| loop {
            let v: f64 = StandardNormal.sample(rng);
            let v = v * std;
            if (-2.0..=2.0).contains(&v) {
                break E::from_f64(v).expect("representable");
            }
        })
        .collect()
}

impl Net {
    /// Adds the layers' parameters to `store` under `prefix`.
    pub fn new<E: Dtype, D: Device<E>>(
        store: &mut ParamStore<E, D>,
        prefix: &str,
        in_dim: usize,
        specs: &[LayerSpec],
        rng: &mut impl Rng,
    ) -> Net {
        let mut width = in_dim;
        let mut layers = Vec::new();
        let mut words = vec![format!("in {in_dim}")];
        for (i, spec) in specs.iter().enumerate() {
            match *spec {
                LayerSpec::Linear(out, init, bias) => {
                    let (wv, bv) = match init {
                        Init::Torch => (
                            uniform_fan_in(width * out, width, rng),
                            uniform_fan_in(out, width, rng),
                        ),
                        Init::TruncNormal(std) => {
                            (trunc_normal(width * out, std, rng), vec![E::default(); out])
                        }
                    };
                    let w = store.add(&format!("{prefix}.{i}.weight"), &[width, out], wv);
                    let b = bias.then(|| store.add(&format!("{prefix}.{i}.bias"), &[out], bv));
                    layers.push(Layer::Linear { w, b });
                    words.push(format!(
                        "Linear({width}, {out}{}{})",
                        if bias { "" } else { ", no bias" },
                        match init {
                            Init::Torch => String::new(),
                            Init::TruncNormal(s) => format!(", trunc-normal std {s}"),
                        }
                    ));
                    width = out;
                }
                LayerSpec::BatchNorm => {
                    layers.push(Layer::Norm(BatchNorm1d::new(
                        store,
                        &format!("{prefix}.{i}"),
                        width,
                    )));
                    words.push(format!("BatchNorm1d({width})"));
                }
                LayerSpec::Act(a) => {
                    layers.push(Layer::Act(a));
                    words.push(format!("{a:?}"));
                }
            }
        }
        Net {
            layers,
            in_dim,
            out_dim: width,
            description: words.join(" - "),
        }
    }

    /// Whether the net has batch-norm layers.
    pub fn has_batch_norm(&self) -> bool {
        self.layers.iter().any(|l| matches!(l, Layer::Norm(_)))
    }

    /// The net on `x` (`batch x in`) with batch norm in `mode`; in train mode also every
    /// batch-norm layer's batch statistics (apply them with [`Net::update_running`]).
    pub fn forward<E: Dtype, D: Device<E>, T: Tape<E, D>>(
        &self,
        store: &ParamStore<E, D>,
        x: Tensor<(usize, usize), E, D, T>,
        mode: BnMode,
    ) -> NetOutput<E, D, T> {
        assert_eq!(x.shape().1, self.in_dim, "input width");
        let mut stats = Vec::new();
        let mut h = x;
        for layer in &self.layers {
            h = match *layer {
                Layer::Linear { w, b } => {
                    let n = h.shape().0;
                    let out = h.matmul(store.matrix_value(w).retaped::<T>());
                    match b {
                        Some(b) => {
                            let d = out.shape().1;
                            out + store
                                .flat(b)
                                .retaped::<T>()
                                .broadcast_like::<_, Axis<0>>(&(n, d))
                        }
                        None => out,
                    }
                }
                Layer::Norm(bn) => {
                    let (y, s) = bn.forward(store, h, mode);
                    stats.extend(s);
                    y
                }
                Layer::Act(a) => a.apply(h),
            };
        }
        (h, stats)
    }

    /// The net without a tape (evaluation).
    pub fn apply<E: Dtype, D: Device<E>>(
        &self,
        store: &ParamStore<E, D>,
        x: Tensor<(usize, usize), E, D>,
        mode: BnMode,
    ) -> Tensor<(usize, usize), E, D> {
        self.forward(store, x, mode).0
    }

    /// Moves the running statistics towards a train-mode batch's (PyTorch momentum 0.1).
    pub fn update_running<E: Dtype, D: Device<E>>(
        store: &mut ParamStore<E, D>,
        stats: &[BatchStats<E, D>],
    ) {
        update_running(store, stats, 0.1);
    }

    /// Sets every batch-norm layer's running statistics from data, PyTorch's cumulative
    /// average (`momentum=None`): the rows of `x` go through the net in train mode in batches of
    /// `batch` (dropping a short last one), and each layer's running mean and variance become
    /// the averages of its batch means and unbiased batch variances.
    pub fn calibrate_batch_norm<E: Dtype, D: Device<E>>(
        &self,
        store: &mut ParamStore<E, D>,
        x: &Tensor<(usize, usize), E, D>,
        batch: usize,
    ) {
        let n = x.shape().0;
        let batch = batch.clamp(2, n.max(2));
        let batches = (n / batch).max(1);
        let mut sums: Vec<BatchStats<E, D>> = Vec::new();
        for k in 0..batches {
            let idx: Vec<usize> = (k * batch..((k + 1) * batch).min(n)).collect();
            let (_, stats) = self.forward(store, classifier::rows(x, &idx), BnMode::Train);
            if sums.is_empty() {
                sums = stats;
            } else {
                for (acc, s) in sums.iter_mut().zip(stats) {
                    acc.mean.axpy(1.0, &s.mean, 1.0);
                    acc.var.axpy(1.0, &s.var, 1.0);
                }
            }
        }
        let inv = 1.0 / batches as f64;
        for s in &sums {
            store
                .param_mut(s.layer.running_mean)
                .tensor
                .axpy(0.0, &s.mean, inv);
            store
                .param_mut(s.layer.running_var)
                .tensor
                .axpy(0.0, &s.var, inv);
        }
    }
}

/// Rows of `x` scaled to unit Euclidean norm (`x / sqrt(sum x^2 + 1e-12)`), on the tape.
pub fn normalize_rows<E: Dtype, D: Device<E>, T: Tape<E, D>>(
    x: Tensor<(usize, usize), E, D, T>,
) -> Tensor<(usize, usize), E, D, T> {
    let (n, d) = *x.shape();
    let eps = E::from_f64(1e-12).expect("representable");
    let norm = (x.with_empty_tape().square().sum::<(usize,), Axis<1>>() + eps).sqrt();
    x / norm.broadcast_like::<_, Axis<1>>(&(n, d))
}

/// A copy of a store with its own buffers (names, shapes, values and trainable flags).
pub fn copy_store<E: Dtype, D: Device<E>>(src: &ParamStore<E, D>) -> ParamStore<E, D> {
    let mut dst = ParamStore::new(src.device());
    for p in src.params() {
        let id = dst.add(&p.name, &p.shape, p.tensor.download());
        dst.set_trainable(id, p.trainable);
    }
    dst
}

/// The EMA target update `target = m target + (1 - m) online` of every parameter (running
/// statistics included); the stores have the same layout.
pub fn ema_update<E: Dtype, D: Device<E>>(
    target: &mut ParamStore<E, D>,
    online: &ParamStore<E, D>,
    momentum: f64,
) {
    for (t, o) in target.params_mut().iter_mut().zip(online.params()) {
        debug_assert_eq!(t.name, o.name);
        t.tensor.axpy(momentum, &o.tensor, 1.0 - momentum);
    }
}

/// `||theta_a - theta_b||` over the trainable parameters of two stores of the same layout.
pub fn param_distance<E: Dtype, D: Device<E>>(a: &ParamStore<E, D>, b: &ParamStore<E, D>) -> f64 {
    a.params()
        .iter()
        .zip(b.params())
        .filter(|(p, _)| p.trainable)
        .map(|(p, q)| {
            (p.tensor.clone() - q.tensor.clone())
                .square()
                .sum::<Rank0, _>()
                .download()[0]
                .to_f64()
                .unwrap_or(f64::NAN)
        })
        .sum::<f64>()
        .sqrt()
}

/// The augmentation of one view of an 8x8 digit: a random shift by up to `shift` pixels
/// (zeros enter), Gaussian pixel noise of standard deviation `noise`, then every pixel set to
/// zero with probability `dropout`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ViewAugment {
    pub shift: i32,
    pub noise: f64,
    pub dropout: f64,
}

impl ViewAugment {
    /// Augments host rows in place (each row its own draw).
    pub fn apply(&self, x: &mut [f32], rng: &mut impl Rng) {
        classifier::random_shift(x, self.shift, rng);
        classifier::add_gaussian_noise(x, self.noise, rng);
        if self.dropout > 0.0 {
            for v in x.iter_mut() {
                if rng.gen::<f64>() < self.dropout {
                    *v = 0.0;
                }
            }
        }
    }

    /// `views` augmented copies of host rows, view-major: rows `v * n .. (v + 1) * n` are view
    /// `v` of the `n` rows.
    pub fn views(&self, rows: &[f32], views: usize, rng: &mut impl Rng) -> Vec<f32> {
        let mut out = Vec::with_capacity(rows.len() * views);
        for _ in 0..views {
            let mut v = rows.to_vec();
            self.apply(&mut v, rng);
            out.extend(v);
        }
        out
    }
}

/// Host rows `idx` of a row-major matrix with `cols` columns.
pub fn host_rows(x: &[f32], idx: &[usize], cols: usize) -> Vec<f32> {
    idx.iter()
        .flat_map(|&i| x[i * cols..(i + 1) * cols].iter().copied())
        .collect()
}

/// How the probes are trained.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProbeConfig {
    /// Linear probes: Adam learning rate, full-batch steps, L2 weight decay.
    pub lr: f64,
    pub steps: usize,
    pub weight_decay: f64,
    /// Neighbours of the k-NN probe.
    pub k: usize,
    /// Labelled examples per class of the few-shot probe.
    pub shots: usize,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            lr: 0.01,
            steps: 300,
            weight_decay: 1e-4,
            k: 20,
            shots: 5,
        }
    }
}

/// A representation's test accuracies.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProbeScores {
    pub linear: f64,
    pub knn: f64,
    pub few_shot: f64,
}

/// Features of the training and test images (row-major, `dim` columns).
#[derive(Clone, Debug)]
pub struct Features {
    pub train: Vec<f32>,
    pub test: Vec<f32>,
    pub dim: usize,
}

/// Both sets standardized by the training set's per-feature mean and standard deviation
/// (a constant feature becomes 0).
pub fn standardize(f: &Features) -> Features {
    let d = f.dim;
    let n = (f.train.len() / d).max(1);
    let mut mean = vec![0.0f64; d];
    let mut var = vec![0.0f64; d];
    for row in f.train.chunks(d) {
        for j in 0..d {
            mean[j] += row[j] as f64 / n as f64;
        }
    }
    for row in f.train.chunks(d) {
        for j in 0..d {
            var[j] += (row[j] as f64 - mean[j]).powi(2) / n as f64;
        }
    }
    let scale: Vec<f64> = var
        .iter()
        .map(|v| if *v > 1e-12 { 1.0 / v.sqrt() } else { 0.0 })
        .collect();
    let s = |x: &[f32]| -> Vec<f32> {
        x.chunks(d)
            .flat_map(|row| {
                row.iter()
                    .enumerate()
                    .map(|(j, v)| ((*v as f64 - mean[j]) * scale[j]) as f32)
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    Features {
        train: s(&f.train),
        test: s(&f.test),
        dim: d,
    }
}

/// Test accuracy of multinomial logistic regression trained on `(x_train, y_train)`
/// (full-batch Adam with L2 weight decay, seeded PyTorch-default initialization), on `dev`.
pub fn linear_probe<D: Device<f32>>(
    dev: &D,
    (x_train, y_train): (&[f32], &[usize]),
    (x_test, y_test): (&[f32], &[usize]),
    dim: usize,
    cfg: &ProbeConfig,
    seed: u64,
) -> f64 {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x9B0E);
    let mut store = ParamStore::<f32, D>::new(dev);
    let mlp = Mlp::new(
        &mut store,
        "probe",
        &[dim, DIGIT_CLASSES],
        Activation::Relu,
        &mut rng,
    );
    let xt = dev.upload(x_train.to_vec(), (y_train.len(), dim));
    let yt = classifier::one_hot(dev, y_train, DIGIT_CLASSES);
    let mut opt = Optimizer::new(
        Rule::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: cfg.weight_decay,
        },
        cfg.lr,
    );
    for _ in 0..cfg.steps {
        let logits = mlp.forward(&store, xt.leaky_trace());
        let mut g = cross_entropy_with_logits_loss(logits, yt.clone()).backward();
        if opt.step(&mut store, &mut g).is_err() {
            return f64::NAN;
        }
    }
    let xe = dev.upload(x_test.to_vec(), (y_test.len(), dim));
    accuracy_on_device(&mlp.logits(&store, xe), y_test)
}

/// Test accuracy of the k-nearest-neighbour classifier under cosine similarity (majority vote
/// of the `k` most similar training rows; a tie goes to the class with the larger summed
/// similarity).
pub fn knn_accuracy(
    train: &[f32],
    y_train: &[usize],
    test: &[f32],
    y_test: &[usize],
    dim: usize,
    k: usize,
) -> f64 {
    let unit = |x: &[f32]| -> Vec<f32> {
        x.chunks(dim)
            .flat_map(|r| {
                let n = r.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
                r.iter().map(|v| v / n).collect::<Vec<_>>()
            })
            .collect()
    };
    let (a, b) = (unit(train), unit(test));
    let k = k.clamp(1, y_train.len());
    let mut hits = 0usize;
    let mut sims: Vec<(f32, usize)> = Vec::with_capacity(y_train.len());
    for (t, row) in b.chunks(dim).enumerate() {
        sims.clear();
        for (i, r) in a.chunks(dim).enumerate() {
            let s: f32 = r.iter().zip(row).map(|(x, y)| x * y).sum();
            sims.push((s, i));
        }
        sims.select_nth_unstable_by(k - 1, |x, y| y.0.total_cmp(&x.0));
        let mut votes = [(0usize, 0.0f32); DIGIT_CLASSES];
        for &(s, i) in &sims[..k] {
            votes[y_train[i]].0 += 1;
            votes[y_train[i]].1 += s;
        }
        let best = (0..DIGIT_CLASSES)
            .max_by(|&c, &d| {
                (votes[c].0, votes[c].1)
                    .partial_cmp(&(votes[d].0, votes[d].1))
                    .unwrap_or(std::cmp::Ordering::Equal)
            })
            .unwrap_or(0);
        hits += usize::from(best == y_test[t]);
    }
    hits as f64 / y_test.len().max(1) as f64
}

/// `shots` training examples of every class, the first of each in a seeded shuffle.
pub fn few_shot_indices(y_train: &[usize], shots: usize, seed: u64) -> Vec<usize> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5507);
    let mut order: Vec<usize> = (0..y_train.len()).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.gen_range(0..=i));
    }
    let mut taken = [0usize; DIGIT_CLASSES];
    let mut out = Vec::new();
    for i in order {
        if taken[y_train[i]] < shots {
            taken[y_train[i]] += 1;
            out.push(i);
        }
    }
    out.sort_unstable();
    out
}

/// The three probes of a representation on standardized features: the linear probe on every
/// training label, k-NN and the few-shot linear probe (a seeded draw of `shots` per class).
pub fn probe<D: Device<f32>>(
    dev: &D,
    f: &Features,
    y_train: &[usize],
    y_test: &[usize],
    cfg: &ProbeConfig,
    seed: u64,
) -> ProbeScores {
    let s = standardize(f);
    let d = s.dim;
    let linear = linear_probe(dev, (&s.train, y_train), (&s.test, y_test), d, cfg, seed);
    let knn = knn_accuracy(&s.train, y_train, &s.test, y_test, d, cfg.k);
    let few = few_shot_indices(y_train, cfg.shots, seed);
    let yf: Vec<usize> = few.iter().map(|&i| y_train[i]).collect();
    let few_shot = linear_probe(
        dev,
        (&host_rows(&s.train, &few, d), &yf),
        (&s.test, y_test),
        d,
        cfg,
        seed,
    );
    ProbeScores {
        linear,
        knn,
        few_shot,
    }
}

/// Mean over the columns of the (population) standard deviation of each column.
pub fn column_std(x: &[f32], cols: usize) -> f64 {
    let n = (x.len() / cols).max(1) as f64;
    (0..cols)
        .map(|j| {
            let col = x.chunks(cols).map(|r| r[j] as f64);
            let m = col.clone().sum::<f64>() / n;
            (col.map(|v| (v - m).powi(2)).sum::<f64>() / n).sqrt()
        })
        .sum::<f64>()
        / cols as f64
}

/// `x` minus its column means (row-major, f64).
pub fn centered(x: &[f32], cols: usize) -> Vec<f64> {
    let n = (x.len() / cols).max(1) as f64;
    let mut mean = vec![0.0f64; cols];
    for r in x.chunks(cols) {
        for j in 0..cols {
            mean[j] += r[j] as f64 / n;
        }
    }
    x.chunks(cols)
        .flat_map(|r| (0..cols).map(|j| r[j] as f64 - mean[j]).collect::<Vec<_>>())
        .collect()
}

/// Singular values (descending) of the centred matrix.
pub fn centered_singular_values(x: &[f32], cols: usize) -> Vec<f64> {
    let c = centered(x, cols);
    Svd::of(&c, c.len() / cols, cols).s
}

/// The effective rank `exp(H(p))` with `p = s / sum(s)` (Roy & Vetterli); 0 for a zero matrix.
pub fn effective_rank(s: &[f64]) -> f64 {
    let total: f64 = s.iter().sum();
    if total <= 0.0 || !total.is_finite() {
        return 0.0;
    }
    let h: f64 = s
        .iter()
        .map(|v| v / total)
        .filter(|p| *p > 0.0)
        .map(|p| -p * p.ln())
        .sum();
    h.exp()
}

/// The rows projected onto their first two principal components.
pub fn pca2(x: &[f32], cols: usize) -> Vec<[f32; 2]> {
    let c = centered(x, cols);
    let n = c.len() / cols;
    if n == 0 || cols == 0 {
        return Vec::new();
    }
    let svd = Svd::of(&c, n, cols);
    let k = svd.s.len().min(2);
    (0..n)
        .map(|i| {
            let mut p = [0.0f32; 2];
            for (j, slot) in p.iter_mut().enumerate().take(k) {
                *slot = (svd.u[(i, j)] * svd.s[j]) as f32;
            }
            p
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::models::tests::gradient_check;

    #[test]
    fn a_net_with_batch_norm_has_exact_gradients_in_both_modes() {
        for mode in [BnMode::Train, BnMode::Eval] {
            let dev = Cpu::default();
            let mut rng = StdRng::seed_from_u64(4);
            let mut store = ParamStore::<f64, Cpu>::new(&dev);
            let specs = mlp_layers(&[5, 6, 4], Activation::Gelu, true, false, Init::Torch);
            let net = Net::new(&mut store, "enc", 5, &specs, &mut rng);
            assert!(net.has_batch_norm());
            assert_eq!(net.out_dim, 4);
            let x: Vec<f64> = (0..7 * 5).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let x = dev.tensor_from_vec(x, (7, 5));
            let loss = |s: &ParamStore<f64, Cpu>| {
                let (y, _) = net.forward(s, x.leaky_trace(), mode);
                normalize_rows(y).sin().sum::<Rank0, _>()
            };
            let rel = gradient_check(&mut store, &loss);
            assert!(rel < 1e-6, "{mode:?}: {rel:e}");
        }
    }

    #[test]
    fn calibration_sets_the_running_statistics_to_the_data_average() {
        let dev = Cpu::default();
        let mut rng = StdRng::seed_from_u64(1);
        let mut store = ParamStore::<f64, Cpu>::new(&dev);
        let specs = vec![LayerSpec::BatchNorm];
        let net = Net::new(&mut store, "bn", 2, &specs, &mut rng);
        let x: Vec<f64> = (0..8).map(|i| i as f64).collect(); // rows (0,1), (2,3), ...
        let x = dev.tensor_from_vec(x, (4, 2));
        net.calibrate_batch_norm(&mut store, &x, 2);
        let Layer::Norm(bn) = net.layers[0] else {
            panic!()
        };
        // Batches {(0,1),(2,3)} and {(4,5),(6,7)}: means 1,2 and 5,6; unbiased variances 2.
        assert_eq!(store.values(bn.running_mean), vec![3.0, 4.0]);
        assert_eq!(store.values(bn.running_var), vec![2.0, 2.0]);
        // Copies are independent; EMA moves a target towards the online store.
        let mut target = copy_store(&store);
        store.upload(bn.gamma, vec![3.0, 3.0]);
        assert_eq!(target.values(bn.gamma), vec![1.0, 1.0]);
        ema_update(&mut target, &store, 0.75);
        assert_eq!(target.values(bn.gamma), vec![1.5, 1.5]);
        assert!((param_distance(&target, &store) - (2.0f64 * 1.5 * 1.5).sqrt()).abs() < 1e-12);
    }

    #[test]
    fn probes_and_statistics() {
        // Two well separated clusters per class are perfectly probed.
        let mut rng = StdRng::seed_from_u64(0);
        let make = |n: usize, rng: &mut StdRng| -> (Vec<f32>, Vec<usize>) {
            let mut x = Vec::new();
            let mut y = Vec::new();
            for i in 0..n {
                let c = i % DIGIT_CLASSES;
                for j in 0..12 {
                    let centre = if j == c { 5.0 } else { 0.0 };
                    x.push(centre + rng.gen_range(-0.5..0.5f32));
                }
                y.push(c);
            }
            (x, y)
        };
        let (xt, yt) = make(200, &mut rng);
        let (xe, ye) = make(100, &mut rng);
        let f = Features {
            train: xt,
            test: xe,
            dim: 12,
        };
        let s = probe(&Cpu::default(), &f, &yt, &ye, &ProbeConfig::default(), 0);
        assert_eq!((s.linear, s.knn, s.few_shot), (1.0, 1.0, 1.0));
        let few = few_shot_indices(&yt, 5, 3);
        assert_eq!(few.len(), 50);
        // Effective rank of equal singular values is their count; of one, 1.
        assert!((effective_rank(&[2.0; 7]) - 7.0).abs() < 1e-12);
        assert!((effective_rank(&[3.0, 0.0, 0.0]) - 1.0).abs() < 1e-12);
        assert!((column_std(&[0.0, 1.0, 2.0, 1.0], 2) - 0.5).abs() < 1e-12);
        // PCA of points on a line: the second component is zero.
        let line: Vec<f32> = (0..10).flat_map(|i| [i as f32, 2.0 * i as f32]).collect();
        let p = pca2(&line, 2);
        assert!(p.iter().all(|q| q[1].abs() < 1e-4));
        let span = p.iter().map(|q| q[0]).fold(f32::MIN, f32::max)
            - p.iter().map(|q| q[0]).fold(f32::MAX, f32::min);
        assert!((span - 9.0 * 5f32.sqrt()).abs() < 1e-3, "{span}");
    }

    #[test]
    fn views_are_fresh_augmentations() {
        let mut rng = StdRng::seed_from_u64(2);
        let rows = vec![0.5f32; 2 * 64];
        let aug = ViewAugment {
            shift: 1,
            noise: 0.2,
            dropout: 0.1,
        };
        let v = aug.views(&rows, 3, &mut rng);
        assert_eq!(v.len(), 3 * 2 * 64);
        assert_ne!(&v[..128], &v[128..256]);
        let none = ViewAugment {
            shift: 0,
            noise: 0.0,
            dropout: 0.0,
        };
        assert_eq!(
            none.views(&rows, 2, &mut rng),
            [rows.clone(), rows].concat()
        );
    }
}

//! Activations for the sparse autoencoders, offline and seeded: synthetic superposition with
//! known features, and the hidden layer of a small network trained on the 8x8 digits that
//! `smartcore` ships.

use dfdx::prelude::*;
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::nn::{Optimizer, ParamStore, Rule};

/// A source of activation vectors.
pub struct Activations {
    /// Training tokens (`n x d`, row-major); for the synthetic source, regenerated on demand.
    pub train: Vec<f32>,
    pub n_train: usize,
    /// Held-out tokens for evaluation.
    pub eval: Vec<f32>,
    pub n_eval: usize,
    pub d: usize,
    /// Ground-truth feature directions (`features x d`), when known.
    pub truth: Option<(Vec<f32>, usize)>,
}

impl Activations {
    /// A batch of `b` training rows drawn with replacement.
    /// The mean of the training tokens, per dimension.
    pub fn train_mean(&self) -> Vec<f32> {
        let mut mean = vec![0.0f64; self.d];
        for row in self.train.chunks(self.d) {
            for (m, x) in mean.iter_mut().zip(row) {
                *m += *x as f64;
            }
        }
        mean.iter()
            .map(|m| (*m / self.n_train.max(1) as f64) as f32)
            .collect()
    }

    pub fn batch(&self, b: usize, rng: &mut impl Rng) -> Vec<f32> {
        let mut out = Vec::with_capacity(b * self.d);
        for _ in 0..b {
            let i = rng.gen_range(0..self.n_train);
            out.extend_from_slice(&self.train[i * self.d..(i + 1) * self.d]);
        }
        out
    }
}

/// How synthetic superposition data is made.
#[derive(Clone, Copy, Debug)]
pub struct Superposition {
    pub d: usize,
    pub features: usize,
    pub tokens: usize,
    pub eval_tokens: usize,
    pub p_max: f64,
    pub alpha: f64,
    pub noise: f64,
}

/// Synthetic superposition: `features` unit directions in `d` dimensions (features > d); each
/// token activates feature i with probability `p_max * (i+1)^-alpha` (power-law frequencies),
/// with a coefficient uniform in [0.5, 1.5], plus Gaussian noise of std `noise`.
pub fn superposition(spec: Superposition, rng: &mut impl Rng) -> Activations {
    let Superposition {
        d,
        features,
        tokens,
        eval_tokens,
        p_max,
        alpha,
        noise,
    } = spec;
    let mut dirs = Vec::with_capacity(features * d);
    for _ in 0..features {
        let v: Vec<f32> = (0..d).map(|_| StandardNormal.sample(rng)).collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
        dirs.extend(v.into_iter().map(|x| x / n));
    }
    let probs: Vec<f64> = (0..features)
        .map(|i| (p_max * ((i + 1) as f64).powf(-alpha)).min(1.0))
        .collect();
    let mut make = |n: usize| {
        let mut x = vec![0.0f32; n * d];
        for t in 0..n {
            let row = &mut x[t * d..(t + 1) * d];
            for (i, p) in probs.iter().enumerate() {
                if rng.gen::<f64>() < *p {
                    let c = rng.gen_range(0.5..1.5f32);
                    for (r, f) in row.iter_mut().zip(&dirs[i * d..(i + 1) * d]) {
                        *r += c * f;
                    }
                }
            }
            for r in row.iter_mut() {
                let e: f32 = StandardNormal.sample(rng);
                *r += noise as f32 * e;
            }
        }
        x
    };
    let train = make(tokens);
    let eval = make(eval_tokens);
    Activations {
        train,
        n_train: tokens,
        eval,
        n_eval: eval_tokens,
        d,
        truth: Some((dirs, features)),
    }
}

/// The ReLU hidden layer (`hidden` units) of a 64-`hidden`-10 network trained with Adam on the
/// 8x8 digits (1797 images shipped by `smartcore`); 80% of the images for the network and the
/// SAE's training tokens, 20% held out. Returns the activations and the network's held-out
/// accuracy.
pub fn digits_hidden(hidden: usize, steps: usize, rng: &mut impl Rng) -> (Activations, f64) {
    let ds = crate::datasets::digits(0.8, rng);
    let p = crate::datasets::DIGIT_PIXELS;
    let (n_tr, n_te) = (ds.y_train.len(), ds.y_test.len());
    let x_of = |train: bool, idx: &[usize]| -> Vec<f32> {
        let x = if train { &ds.x_train } else { &ds.x_test };
        idx.iter()
            .flat_map(|&i| x[i * p..(i + 1) * p].iter().copied())
            .collect()
    };
    let tr: Vec<usize> = (0..n_tr).collect();
    let te: Vec<usize> = (0..n_te).collect();
    let dev = Cpu::default();
    let scale = |fan_in: usize| (1.0 / fan_in as f32).sqrt();
    let w1: Vec<f32> = (0..p * hidden)
        .map(|_| scale(p) * Distribution::<f32>::sample(&StandardNormal, rng))
        .collect();
    let w2: Vec<f32> = (0..hidden * 10)
        .map(|_| scale(hidden) * Distribution::<f32>::sample(&StandardNormal, rng))
        .collect();
    let mut store = ParamStore::new(&dev);
    let w1 = store.add("W1", &[p, hidden], w1);
    let b1 = store.add_filled("b1", &[hidden], 0.0);
    let w2 = store.add("W2", &[hidden, 10], w2);
    let b2 = store.add_filled("b2", &[10], 0.0);
    let mut opt = Optimizer::new(Rule::adam(), 3e-3);
    let batch = 64;
    for _ in 0..steps {
        let idx: Vec<usize> = (0..batch).map(|_| rng.gen_range(0..n_tr)).collect();
        let x = dev.tensor_from_vec(x_of(true, &idx), (batch, p));
        let mut onehot = vec![0.0f32; batch * 10];
        for (r, &i) in idx.iter().enumerate() {
            onehot[r * 10 + ds.y_train[i]] = 1.0;
        }
        let t = dev.tensor_from_vec(onehot, (batch, 10usize));
        let h = (x.leaky_trace().matmul(store.matrix(w1))
            + store
                .vector(b1)
                .broadcast_like::<_, Axis<0>>(&(batch, hidden)))
        .relu();
        let logits = h.matmul(store.matrix(w2))
            + store
                .vector(b2)
                .broadcast_like::<_, Axis<0>>(&(batch, 10usize));
        let mut g = cross_entropy_with_logits_loss(logits, t).backward();
        opt.step(&mut store, &mut g).expect("cpu update");
    }
    let hidden_of = |train: bool, idx: &[usize]| -> Vec<f32> {
        let m = idx.len();
        let x = dev.tensor_from_vec(x_of(train, idx), (m, p));
        (x.matmul(store.matrix_value(w1))
            + store
                .flat(b1)
                .clone()
                .broadcast_like::<_, Axis<0>>(&(m, hidden)))
        .relu()
        .as_vec()
    };
    let train = hidden_of(true, &tr);
    let eval = hidden_of(false, &te);
    // Held-out accuracy of the network, to show the activations are from a working model.
    let logits = {
        let m = te.len();
        let h = dev.tensor_from_vec(eval.clone(), (m, hidden));
        (h.matmul(store.matrix_value(w2))
            + store
                .flat(b2)
                .clone()
                .broadcast_like::<_, Axis<0>>(&(m, 10usize)))
        .as_vec()
    };
    let correct = ds
        .y_test
        .iter()
        .enumerate()
        .filter(|(r, y)| {
            let row = &logits[r * 10..(r + 1) * 10];
            let arg = (0..10).max_by(|a, b| row[*a].total_cmp(&row[*b])).unwrap();
            arg == **y
        })
        .count();
    let acts = Activations {
        train,
        n_train: tr.len(),
        eval,
        n_eval: te.len(),
        d: hidden,
        truth: None,
    };
    (acts, correct as f64 / te.len() as f64)
}

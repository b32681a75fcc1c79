//! Batch normalization over the rows of a `batch x features` matrix (PyTorch's `BatchNorm1d`)
//! with its two modes: in train mode every feature is normalized by the batch's own mean and
//! (biased) variance, and the running statistics move towards the batch's mean and unbiased
//! variance (`running = (1 - momentum) running + momentum batch`); in eval mode the running
//! statistics normalize. Then `y = gamma x_hat + beta`.
//!
//! `gamma` and `beta` are trainable parameters of the store (`"{prefix}.weight"`,
//! `"{prefix}.bias"`); the running statistics are frozen parameters (`"{prefix}.running_mean"`,
//! `"{prefix}.running_var"`), so they are saved with the others and copied with a store.

use dfdx::prelude::*;

use crate::nn::store::{ParamId, ParamStore};

/// Which statistics normalize.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BnMode {
    /// The batch's statistics (and the running ones are updated from them).
    Train,
    /// The running statistics.
    Eval,
}

/// A batch-norm layer's output and, in train mode, its batch statistics.
pub type BnOutput<E, D, T> = (Tensor<(usize, usize), E, D, T>, Option<BatchStats<E, D>>);

/// One batch-norm layer's parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNorm1d {
    pub gamma: ParamId,
    pub beta: ParamId,
    pub running_mean: ParamId,
    pub running_var: ParamId,
    pub features: usize,
    pub eps: f64,
}

/// A train-mode batch's statistics of one layer (mean and unbiased variance, on the device).
pub struct BatchStats<E: Dtype, D: Device<E>> {
    pub layer: BatchNorm1d,
    pub mean: Tensor<(usize,), E, D>,
    pub var: Tensor<(usize,), E, D>,
    pub rows: usize,
}

impl BatchNorm1d {
    /// Adds the layer to `store`: gamma 1, beta 0, running mean 0, running variance 1 (PyTorch's
    /// initialization), eps 1e-5.
    pub fn new<E: Dtype, D: Device<E>>(
        store: &mut ParamStore<E, D>,
        prefix: &str,
        features: usize,
    ) -> BatchNorm1d {
        let gamma = store.add_filled(&format!("{prefix}.weight"), &[features], E::ONE);
        let beta = store.add_filled(&format!("{prefix}.bias"), &[features], E::default());
        let running_mean =
            store.add_filled(&format!("{prefix}.running_mean"), &[features], E::default());
        let running_var = store.add_filled(&format!("{prefix}.running_var"), &[features], E::ONE);
        store.set_trainable(running_mean, false);
        store.set_trainable(running_var, false);
        BatchNorm1d {
            gamma,
            beta,
            running_mean,
            running_var,
            features,
            eps: 1e-5,
        }
    }

    /// The layer on `x` (`batch x features`) in `mode`; in train mode also the batch's
    /// statistics, for [`BatchNorm1d::update_running`].
    pub fn forward<E: Dtype, D: Device<E>, T: Tape<E, D>>(
        &self,
        store: &ParamStore<E, D>,
        x: Tensor<(usize, usize), E, D, T>,
        mode: BnMode,
    ) -> BnOutput<E, D, T> {
        let (n, d) = *x.shape();
        assert_eq!(d, self.features, "batch-norm width");
        let eps = E::from_f64(self.eps).expect("representable");
        let (x_hat, stats) = match mode {
            BnMode::Train => {
                assert!(n > 1, "train-mode batch norm needs more than one row");
                let inv_n = E::from_f64(1.0 / n as f64).expect("representable");
                // The statistics, off the tape, for the running averages.
                let xv: Tensor<(usize, usize), E, D> = x.retaped::<NoneTape>();
                let mean_v = xv.clone().sum::<(usize,), Axis<0>>() * inv_n;
                let unbiased = E::from_f64(1.0 / (n as f64 - 1.0)).expect("representable");
                let var_v = (xv - mean_v.clone().broadcast_like::<_, Axis<0>>(&(n, d)))
                    .square()
                    .sum::<(usize,), Axis<0>>()
                    * unbiased;
                // On the tape: normalize by the batch mean and biased variance.
                let mean = x.with_empty_tape().sum::<(usize,), Axis<0>>() * inv_n;
                let xc = x - mean.broadcast_like::<_, Axis<0>>(&(n, d));
                let var = xc.with_empty_tape().square().sum::<(usize,), Axis<0>>() * inv_n;
                let x_hat = xc / (var + eps).sqrt().broadcast_like::<_, Axis<0>>(&(n, d));
                let stats = BatchStats {
                    layer: *self,
                    mean: mean_v,
                    var: var_v,
                    rows: n,
                };
                (x_hat, Some(stats))
            }
            BnMode::Eval => {
                let rm = store.flat(self.running_mean).retaped::<T>();
                let rv = store.flat(self.running_var).retaped::<T>();
                let x_hat = (x - rm.broadcast_like::<_, Axis<0>>(&(n, d)))
                    / (rv + eps).sqrt().broadcast_like::<_, Axis<0>>(&(n, d));
                (x_hat, None)
            }
        };
        let gamma = store
            .flat(self.gamma)
            .retaped::<T>()
            .broadcast_like::<_, Axis<0>>(&(n, d));
        let beta = store
            .flat(self.beta)
            .retaped::<T>()
            .broadcast_like::<_, Axis<0>>(&(n, d));
        (x_hat * gamma + beta, stats)
    }
}

/// Moves the running statistics towards a batch's: `running = (1 - momentum) running +
/// momentum batch` (PyTorch's `momentum`, 0.1 by default).
pub fn update_running<E: Dtype, D: Device<E>>(
    store: &mut ParamStore<E, D>,
    stats: &[BatchStats<E, D>],
    momentum: f64,
) {
    for s in stats {
        let p = store.param_mut(s.layer.running_mean);
        p.tensor.axpy(1.0 - momentum, &s.mean, momentum);
        let p = store.param_mut(s.layer.running_var);
        p.tensor.axpy(1.0 - momentum, &s.var, momentum);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::models::tests::gradient_check;
    use crate::nn::transfer::Download;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn data(n: usize, d: usize, seed: u64) -> Vec<f64> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n * d).map(|_| rng.gen_range(-2.0..3.0)).collect()
    }

    #[test]
    fn train_mode_normalizes_by_the_batch_and_updates_the_running_statistics() {
        let dev = Cpu::default();
        let mut store = ParamStore::<f64, Cpu>::new(&dev);
        let bn = BatchNorm1d::new(&mut store, "bn", 3);
        let (n, d) = (5, 3);
        let xs = data(n, d, 1);
        let x: Tensor<(usize, usize), f64, Cpu> = dev.tensor_from_vec(xs.clone(), (n, d));
        let (y, stats) = bn.forward(&store, x.clone(), BnMode::Train);
        let y = y.download();
        let stats = stats.unwrap();
        for j in 0..d {
            let col: Vec<f64> = (0..n).map(|i| xs[i * d + j]).collect();
            let m = col.iter().sum::<f64>() / n as f64;
            let v = col.iter().map(|c| (c - m).powi(2)).sum::<f64>() / n as f64;
            for i in 0..n {
                let want = (col[i] - m) / (v + 1e-5).sqrt();
                assert!((y[i * d + j] - want).abs() < 1e-12);
            }
            assert!((stats.mean.download()[j] - m).abs() < 1e-12);
            let unbiased = v * n as f64 / (n as f64 - 1.0);
            assert!((stats.var.download()[j] - unbiased).abs() < 1e-12);
        }
        update_running(&mut store, &[stats], 0.1);
        let rm = store.values(bn.running_mean);
        let col0: f64 = (0..n).map(|i| xs[i * d]).sum::<f64>() / n as f64;
        assert!((rm[0] - 0.1 * col0).abs() < 1e-12);
        // Eval mode with the running statistics set to a column's own ones reproduces train
        // mode up to the biased/unbiased variance.
        let (ye, none) = bn.forward(&store, x, BnMode::Eval);
        assert!(none.is_none());
        let rv = store.values(bn.running_var);
        let want = (xs[0] - rm[0]) / (rv[0] + 1e-5).sqrt();
        assert!((ye.download()[0] - want).abs() < 1e-12);
    }

    #[test]
    fn train_and_eval_gradients_match_finite_differences() {
        for mode in [BnMode::Train, BnMode::Eval] {
            let dev = Cpu::default();
            let mut store = ParamStore::<f64, Cpu>::new(&dev);
            let bn = BatchNorm1d::new(&mut store, "bn", 3);
            let w = store.add("w", &[4, 3], data(4, 3, 5));
            store.upload(bn.gamma, vec![0.7, 1.3, -0.4]);
            store.upload(bn.beta, vec![0.1, -0.2, 0.3]);
            store.upload(bn.running_mean, vec![0.2, -0.1, 0.5]);
            store.upload(bn.running_var, vec![1.5, 0.4, 2.0]);
            let x: Tensor<(usize, usize), f64, Cpu> = dev.tensor_from_vec(data(6, 4, 2), (6, 4));
            let target: Tensor<(usize, usize), f64, Cpu> =
                dev.tensor_from_vec(data(6, 3, 3), (6, 3));
            let loss = |s: &ParamStore<f64, Cpu>| {
                let h = x.leaky_trace().matmul(s.matrix(w));
                let (y, _) = bn.forward(s, h, mode);
                // A nonlinear loss so the batch coupling of train mode matters.
                (y * target.clone()).sin().sum::<Rank0, _>()
            };
            let rel = gradient_check(&mut store, &loss);
            assert!(rel < 1e-6, "{mode:?}: relative error {rel:e}");
        }
    }
}

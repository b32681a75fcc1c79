//! Softmax regression on the host (f64, nalgebra) with the loss split into a cheap model
//! `z = X W` (the targets: logits) and the "expensive" loss over targets `l(z)` = mean
//! cross-entropy of a batch, whose target-space gradient `grad_z l = (softmax(z) - Y)/B` is the
//! one oracle call per outer step. The surrogate of outer step t (Lavington et al., ICML 2023):
//!
//! `h_t(W) = l(z^t) + <G, X_b W - z^t> + 1/(2 eta B) |X_b W - z^t|^2`,
//!
//! the proximity term a mean over the batch like the loss, so that with CE's per-example
//! Hessian in z below 1/2 I it majorises `l(X_b W)` when `eta <= 2`.

use nalgebra::{DMatrix, SymmetricEigen};

/// Row-wise softmax of `z`.
pub fn softmax(z: &DMatrix<f64>) -> DMatrix<f64> {
    let mut p = z.clone();
    for mut row in p.row_iter_mut() {
        let m = row.max();
        row.iter_mut().for_each(|v| *v = (*v - m).exp());
        let s: f64 = row.sum();
        row.iter_mut().for_each(|v| *v /= s);
    }
    p
}

/// Mean cross-entropy of logits `z` against labels.
pub fn cross_entropy(z: &DMatrix<f64>, labels: &[usize]) -> f64 {
    let mut total = 0.0;
    for (i, row) in z.row_iter().enumerate() {
        let m = row.max();
        let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
        total += lse - row[labels[i]];
    }
    total / labels.len() as f64
}

/// One-hot labels.
pub fn one_hot(labels: &[usize], classes: usize) -> DMatrix<f64> {
    DMatrix::from_fn(labels.len(), classes, |i, k| f64::from(labels[i] == k))
}

/// The expensive oracle: `grad_z l(z) = (softmax(z) - Y)/B` and `l(z)`.
pub fn target_gradient(z: &DMatrix<f64>, labels: &[usize]) -> (DMatrix<f64>, f64) {
    let b = labels.len() as f64;
    let mut g = softmax(z);
    for (i, &y) in labels.iter().enumerate() {
        g[(i, y)] -= 1.0;
    }
    (g / b, cross_entropy(z, labels))
}

/// The surrogate of one outer step.
pub struct Surrogate<'a> {
    pub x: &'a DMatrix<f64>,
    /// `z^t = X_b W_t`.
    pub z0: DMatrix<f64>,
    /// `G = grad_z l(z^t)`.
    pub g: DMatrix<f64>,
    /// `l(z^t)`.
    pub l0: f64,
    pub eta: f64,
}

impl Surrogate<'_> {
    fn scale(&self) -> f64 {
        1.0 / (self.eta * self.x.nrows() as f64)
    }

    /// `h_t(W)`.
    pub fn value(&self, w: &DMatrix<f64>) -> f64 {
        let d = self.x * w - &self.z0;
        self.l0 + self.g.dot(&d) + 0.5 * self.scale() * d.norm_squared()
    }

    /// `grad_W h_t = X_b' (G + (X_b W - z^t)/(eta B))`.
    pub fn gradient(&self, w: &DMatrix<f64>) -> DMatrix<f64> {
        let d = self.x * w - &self.z0;
        self.x.transpose() * (&self.g + d * self.scale())
    }

    /// `L_h = lambda_max(X_b' X_b)/(eta B)`: the surrogate's smoothness in W (exact: it is
    /// quadratic).
    pub fn smoothness(&self) -> f64 {
        let gram = self.x.transpose() * self.x;
        let top = SymmetricEigen::new(gram)
            .eigenvalues
            .iter()
            .cloned()
            .fold(0.0, f64::max);
        top * self.scale()
    }

    /// `m` gradient steps of size `1/L_h` from `w`.
    pub fn inner_steps(&self, w: &DMatrix<f64>, m: usize) -> DMatrix<f64> {
        let step = 1.0 / self.smoothness();
        let mut w = w.clone();
        for _ in 0..m {
            w -= self.gradient(&w) * step;
        }
        w
    }

    /// The exact minimiser nearest `w` (m = infinity): `W - eta B pinv(X_b) G`.
    pub fn exact(&self, w: &DMatrix<f64>) -> DMatrix<f64> {
        let b = self.x.nrows() as f64;
        let pinv = self
            .x
            .clone()
            .pseudo_inverse(1e-10)
            .expect("the SVD of a finite matrix");
        w - pinv * &self.g * (self.eta * b)
    }
}

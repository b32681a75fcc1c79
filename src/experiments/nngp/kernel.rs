//! The ReLU NNGP kernel in closed form (the arc-cosine recursion of Cho & Saul), on the host in
//! f64:
//!
//! ```text
//! K^0(x, x')     = s_b^2 + s_w^2 x.x' / d
//! K^(l+1)(x, x') = s_b^2 + s_w^2 / (2 pi) sqrt(K^l(x,x) K^l(x',x')) (sin t + (pi - t) cos t),
//!                  t = arccos(K^l(x,x') / sqrt(K^l(x,x) K^l(x',x')))
//! K^(l+1)(x, x)  = s_b^2 + s_w^2 / 2 K^l(x, x)
//! ```
//!
//! `depth` applications of the ReLU step give the kernel of a network with `depth` hidden ReLU
//! layers, before the last-layer scale sigma_v^2 (which the scale mixture puts a prior on).

use nalgebra::DMatrix;

/// The kernel's hyperparameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReluNngp {
    pub depth: usize,
    pub sw2: f64,
    pub sb2: f64,
}

impl ReluNngp {
    /// `E[relu(u) relu(v)]` scaled: one ReLU step of the recursion from the covariance
    /// `k12` and the variances `k11`, `k22`.
    pub fn step(&self, k12: f64, k11: f64, k22: f64) -> f64 {
        let norm = (k11 * k22).sqrt();
        if norm <= 0.0 {
            return self.sb2;
        }
        let c = (k12 / norm).clamp(-1.0, 1.0);
        let t = c.acos();
        let s = (1.0 - c * c).max(0.0).sqrt();
        self.sb2
            + self.sw2 / (2.0 * std::f64::consts::PI) * norm * (s + (std::f64::consts::PI - t) * c)
    }

    /// The input layer's diagonal for rows `x` (row-major, `d` columns).
    fn input_diag(&self, x: &[f64], d: usize) -> Vec<f64> {
        x.chunks(d)
            .map(|r| self.sb2 + self.sw2 * r.iter().map(|v| v * v).sum::<f64>() / d as f64)
            .collect()
    }

    /// `K(x, x)` for every row of `x`.
    pub fn diag(&self, x: &[f64], d: usize) -> Vec<f64> {
        let mut k = self.input_diag(x, d);
        for _ in 0..self.depth {
            for v in &mut k {
                *v = self.sb2 + self.sw2 / 2.0 * *v;
            }
        }
        k
    }

    /// The `n1 x n2` kernel matrix between the rows of `x1` and `x2` (row-major, `d` columns).
    pub fn matrix(&self, x1: &[f64], x2: &[f64], d: usize) -> DMatrix<f64> {
        let (n1, n2) = (x1.len() / d, x2.len() / d);
        let a = DMatrix::from_row_slice(n1, d, x1);
        let b = DMatrix::from_row_slice(n2, d, x2);
        let mut k = (a * b.transpose()) * (self.sw2 / d as f64);
        k.add_scalar_mut(self.sb2);
        let mut d1 = self.input_diag(x1, d);
        let mut d2 = self.input_diag(x2, d);
        for _ in 0..self.depth {
            for j in 0..n2 {
                for i in 0..n1 {
                    k[(i, j)] = self.step(k[(i, j)], d1[i], d2[j]);
                }
            }
            for v in d1.iter_mut().chain(d2.iter_mut()) {
                *v = self.sb2 + self.sw2 / 2.0 * *v;
            }
        }
        k
    }
}

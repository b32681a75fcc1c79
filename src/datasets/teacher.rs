//! Teacher-student regression data: inputs with i.i.d. standard normal coordinates, labelled by
//! a random teacher (linear, or a one-hidden-layer ReLU network) plus Gaussian label noise.
//! Teacher weights are scaled so that the clean outputs have variance of order one.

use rand::Rng;
use rand_distr::StandardNormal;

fn normals(len: usize, scale: f64, rng: &mut impl Rng) -> Vec<f64> {
    (0..len)
        .map(|_| scale * rng.sample::<f64, _>(StandardNormal))
        .collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(u, v)| u * v).sum()
}

/// Data labelled by a linear teacher `y = w . x + noise * e`.
#[derive(Clone, Debug)]
pub struct LinearTeacher {
    pub dim: usize,
    /// Inputs, row-major `n x dim`.
    pub x: Vec<f64>,
    pub y: Vec<f64>,
    /// Teacher weights `w`, entries drawn from `N(0, 1/dim)`.
    pub weights: Vec<f64>,
}

impl LinearTeacher {
    /// The teacher's clean output on one input row.
    pub fn predict(&self, x: &[f64]) -> f64 {
        dot(&self.weights, x)
    }
}

/// `n` samples in `dim` dimensions from a fresh linear teacher, with label noise of standard
/// deviation `noise`.
pub fn linear_teacher(dim: usize, n: usize, noise: f64, rng: &mut impl Rng) -> LinearTeacher {
    let weights = normals(dim, 1.0 / (dim as f64).sqrt(), rng);
    let x = normals(n * dim, 1.0, rng);
    let mut teacher = LinearTeacher {
        dim,
        x,
        y: Vec::new(),
        weights,
    };
    teacher.y = labels(&teacher.x, dim, noise, rng, |row| teacher.predict(row));
    teacher
}

/// Data labelled by a ReLU teacher `y = sum_h a_h relu(w_h . x) + noise * e` (no biases).
#[derive(Clone, Debug)]
pub struct ReluTeacher {
    pub dim: usize,
    pub hidden: usize,
    /// Inputs, row-major `n x dim`.
    pub x: Vec<f64>,
    pub y: Vec<f64>,
    /// First-layer weights `w_h`, row-major `hidden x dim`, entries from `N(0, 1/dim)`.
    pub first: Vec<f64>,
    /// Output weights `a_h`, entries from `N(0, 1/hidden)`.
    pub second: Vec<f64>,
}

impl ReluTeacher {
    /// The teacher's clean output on one input row.
    pub fn predict(&self, x: &[f64]) -> f64 {
        self.first
            .chunks(self.dim)
            .zip(&self.second)
            .map(|(w, a)| a * dot(w, x).max(0.0))
            .sum()
    }
}

/// `n` samples in `dim` dimensions from a fresh ReLU teacher with `hidden` units, with label
/// noise of standard deviation `noise`.
pub fn relu_teacher(
    dim: usize,
    hidden: usize,
    n: usize,
    noise: f64,
    rng: &mut impl Rng,
) -> ReluTeacher {
    let first = normals(hidden * dim, 1.0 / (dim as f64).sqrt(), rng);
    let second = normals(hidden, 1.0 / (hidden as f64).sqrt(), rng);
    let x = normals(n * dim, 1.0, rng);
    let mut teacher = ReluTeacher {
        dim,
        hidden,
        x,
        y: Vec::new(),
        first,
        second,
    };
    teacher.y = labels(&teacher.x, dim, noise, rng, |row| teacher.predict(row));
    teacher
}

fn labels(
    x: &[f64],
    dim: usize,
    noise: f64,
    rng: &mut impl Rng,
    clean: impl Fn(&[f64]) -> f64,
) -> Vec<f64> {
    assert!(dim > 0, "a teacher needs at least one input dimension");
    x.chunks(dim)
        .map(|row| {
            let e = if noise == 0.0 {
                0.0
            } else {
                noise * rng.sample::<f64, _>(StandardNormal)
            };
            clean(row) + e
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn noiseless_linear_labels_are_the_teacher_output() {
        let t = linear_teacher(5, 50, 0.0, &mut StdRng::seed_from_u64(0));
        assert_eq!((t.x.len(), t.y.len(), t.weights.len()), (250, 50, 5));
        for (row, y) in t.x.chunks(5).zip(&t.y) {
            let by_hand: f64 = (0..5).map(|j| t.weights[j] * row[j]).sum();
            assert_eq!(*y, by_hand);
        }
    }

    #[test]
    fn noiseless_relu_labels_are_the_teacher_output() {
        let t = relu_teacher(4, 3, 40, 0.0, &mut StdRng::seed_from_u64(1));
        assert_eq!((t.first.len(), t.second.len()), (12, 3));
        for (row, y) in t.x.chunks(4).zip(&t.y) {
            let mut by_hand = 0.0;
            for h in 0..3 {
                let pre: f64 = (0..4).map(|j| t.first[h * 4 + j] * row[j]).sum();
                by_hand += t.second[h] * pre.max(0.0);
            }
            assert_eq!(*y, by_hand);
        }
    }

    #[test]
    fn relu_teacher_on_a_hand_case() {
        let t = ReluTeacher {
            dim: 2,
            hidden: 2,
            x: vec![],
            y: vec![],
            first: vec![1.0, -1.0, 2.0, 1.0],
            second: vec![3.0, -0.5],
        };
        // Pre-activations 1 - 2 = -1 (cut) and 2 + 2 = 4: output -0.5 * 4.
        assert_eq!(t.predict(&[1.0, 2.0]), -2.0);
        // Pre-activations 2 + 1 = 3 and 4 - 1 = 3: 3 * 3 - 0.5 * 3.
        assert_eq!(t.predict(&[2.0, -1.0]), 7.5);
    }

    #[test]
    fn label_noise_has_the_requested_spread() {
        let t = linear_teacher(3, 40_000, 0.5, &mut StdRng::seed_from_u64(2));
        let residuals: Vec<f64> =
            t.x.chunks(3)
                .zip(&t.y)
                .map(|(r, y)| y - t.predict(r))
                .collect();
        let var = residuals.iter().map(|e| e * e).sum::<f64>() / residuals.len() as f64;
        assert!((var - 0.25).abs() < 0.01, "residual variance {var}");
        let again = linear_teacher(3, 40_000, 0.5, &mut StdRng::seed_from_u64(2));
        assert_eq!((t.x, t.y), (again.x, again.y));
    }
}

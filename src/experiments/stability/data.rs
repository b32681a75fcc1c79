//! Generated, seeded data for the stability experiment: a ReLU teacher and sparse linear
//! regression. Inputs are standard Gaussian.

use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

/// `n` samples of `dim` inputs (row-major) and their targets.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub x: Vec<f64>,
    pub y: Vec<f64>,
    pub n: usize,
    pub dim: usize,
}

fn gaussian_inputs(n: usize, dim: usize, rng: &mut impl Rng) -> Vec<f64> {
    (0..n * dim).map(|_| StandardNormal.sample(rng)).collect()
}

/// A teacher `f*(x) = sum_j c_j relu(t_j . x)` with `units` unit-norm directions `t_j` and
/// weights `c_j = +-1` (alternating), labelling Gaussian inputs. Returns (train, test).
pub fn relu_teacher(
    dim: usize,
    units: usize,
    n_train: usize,
    n_test: usize,
    rng: &mut impl Rng,
) -> (Dataset, Dataset) {
    let mut dirs = Vec::with_capacity(units);
    for _ in 0..units {
        let t: Vec<f64> = (0..dim).map(|_| StandardNormal.sample(rng)).collect();
        let nt = t.iter().map(|x: &f64| x * x).sum::<f64>().sqrt().max(1e-12);
        dirs.push(t.into_iter().map(|x| x / nt).collect::<Vec<f64>>());
    }
    let label = |x: &[f64]| -> f64 {
        dirs.iter()
            .enumerate()
            .map(|(j, t)| {
                let c = if j % 2 == 0 { 1.0 } else { -1.0 };
                c * t.iter().zip(x).map(|(a, b)| a * b).sum::<f64>().max(0.0)
            })
            .sum()
    };
    let mut make = |n: usize| {
        let x = gaussian_inputs(n, dim, rng);
        let y = (0..n).map(|i| label(&x[i * dim..(i + 1) * dim])).collect();
        Dataset { x, y, n, dim }
    };
    let train = make(n_train);
    let test = make(n_test);
    (train, test)
}

/// Sparse linear regression: `y = beta* . x` with `sparsity` non-zero entries of `beta*` equal to
/// +-1 at random positions. Returns (train, test, beta*).
pub fn sparse_regression(
    dim: usize,
    sparsity: usize,
    n_train: usize,
    n_test: usize,
    rng: &mut impl Rng,
) -> (Dataset, Dataset, Vec<f64>) {
    let mut beta = vec![0.0; dim];
    let mut placed = 0;
    while placed < sparsity.min(dim) {
        let j = rng.gen_range(0..dim);
        if beta[j] == 0.0 {
            beta[j] = if rng.gen::<bool>() { 1.0 } else { -1.0 };
            placed += 1;
        }
    }
    let mut make = |n: usize| {
        let x = gaussian_inputs(n, dim, rng);
        let y = (0..n)
            .map(|i| {
                x[i * dim..(i + 1) * dim]
                    .iter()
                    .zip(&beta)
                    .map(|(a, b)| a * b)
                    .sum()
            })
            .collect();
        Dataset { x, y, n, dim }
    };
    let train = make(n_train);
    let test = make(n_test);
    (train, test, beta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn generators_are_seeded_and_shaped() {
        let mut r1 = rand::rngs::StdRng::seed_from_u64(7);
        let mut r2 = rand::rngs::StdRng::seed_from_u64(7);
        let (a, b) = relu_teacher(4, 2, 10, 20, &mut r1);
        let (c, _) = relu_teacher(4, 2, 10, 20, &mut r2);
        assert_eq!(a, c);
        assert_eq!((a.n, a.x.len(), b.n, b.y.len()), (10, 40, 20, 20));
        let (tr, _, beta) = sparse_regression(30, 3, 10, 5, &mut r1);
        assert_eq!(beta.iter().filter(|b| **b != 0.0).count(), 3);
        let y0: f64 = tr.x[..30].iter().zip(&beta).map(|(a, b)| a * b).sum();
        assert!((y0 - tr.y[0]).abs() < 1e-12);
    }
}

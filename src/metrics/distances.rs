//! Distances between two samples of points: squared MMD with a Gaussian (RBF) kernel, the median
//! heuristic for its bandwidth, the exact 1-D Wasserstein-p distance between equal-size samples
//! and the sliced Wasserstein distance. Samples are flat row-major f64 slices with `dim`
//! coordinates per point, so `x.len()` must be a multiple of `dim`.

use rand::Rng;
use rand_distr::StandardNormal;

fn points(x: &[f64], dim: usize) -> std::slice::Chunks<'_, f64> {
    assert!(dim > 0, "points need at least one coordinate");
    assert_eq!(
        x.len() % dim,
        0,
        "sample length is not a multiple of dim {dim}"
    );
    x.chunks(dim)
}

fn squared_distance(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(u, v)| (u - v).powi(2)).sum()
}

/// Mean of `k(a, b) = exp(-|a - b|^2 / (2 bandwidth^2))` over pairs `a` in `x`, `b` in `y`,
/// leaving out pairs with the same index when `skip_diagonal` (for a sample against itself).
fn mean_kernel(x: &[f64], y: &[f64], dim: usize, bandwidth: f64, skip_diagonal: bool) -> f64 {
    let scale = -0.5 / (bandwidth * bandwidth);
    let (mut total, mut pairs) = (0.0, 0usize);
    for (i, a) in points(x, dim).enumerate() {
        for (j, b) in points(y, dim).enumerate() {
            if !(skip_diagonal && i == j) {
                total += (scale * squared_distance(a, b)).exp();
                pairs += 1;
            }
        }
    }
    total / pairs as f64
}

/// Squared maximum mean discrepancy with the Gaussian kernel of `bandwidth`. With `unbiased`,
/// the U-statistic (within-sample means leave out `i = j`; needs at least 2 points per
/// sample); otherwise the biased V-statistic (all pairs), which is never negative and is 0 for
/// a sample against itself.
pub fn mmd2_rbf(x: &[f64], y: &[f64], dim: usize, bandwidth: f64, unbiased: bool) -> f64 {
    assert!(bandwidth > 0.0, "the bandwidth must be positive");
    let (m, n) = (points(x, dim).len(), points(y, dim).len());
    assert!(m >= 1 && n >= 1, "MMD needs points in both samples");
    if unbiased {
        assert!(
            m >= 2 && n >= 2,
            "the unbiased MMD needs 2 points per sample"
        );
    }
    mean_kernel(x, x, dim, bandwidth, unbiased) + mean_kernel(y, y, dim, bandwidth, unbiased)
        - 2.0 * mean_kernel(x, y, dim, bandwidth, false)
}

/// Median Euclidean distance between distinct points of the pooled sample (`x` and `y`
/// together), the usual default RBF bandwidth; the mean of the two middle values for an even
/// number of pairs. Falls back to 1 when the median is 0 (e.g. most points coincide). Costs
/// memory for all `N (N - 1) / 2` pairs of the `N` pooled points.
pub fn median_heuristic_bandwidth(x: &[f64], y: &[f64], dim: usize) -> f64 {
    let pooled: Vec<&[f64]> = points(x, dim).chain(points(y, dim)).collect();
    let mut distances = Vec::with_capacity(pooled.len() * pooled.len().saturating_sub(1) / 2);
    for (i, a) in pooled.iter().enumerate() {
        for b in &pooled[i + 1..] {
            distances.push(squared_distance(a, b).sqrt());
        }
    }
    assert!(!distances.is_empty(), "the median heuristic needs 2 points");
    distances.sort_unstable_by(f64::total_cmp);
    let mid = distances.len() / 2;
    let median = if distances.len() % 2 == 1 {
        distances[mid]
    } else {
        (distances[mid - 1] + distances[mid]) / 2.0
    };
    if median > 0.0 {
        median
    } else {
        1.0
    }
}

/// Exact Wasserstein-p distance (not its p-th power) between two equal-size 1-D samples, each
/// an empirical measure with equal weights: `(mean_i |a_(i) - b_(i)|^p)^(1/p)` over the sorted
/// values. `p >= 1`.
///
/// # Panics
/// If the samples are empty or differ in size (unequal sizes need fractional matching, which
/// this does not do).
pub fn wasserstein_1d(a: &[f64], b: &[f64], p: f64) -> f64 {
    wasserstein_1d_pow(a.to_vec(), b.to_vec(), p).powf(1.0 / p)
}

/// `W_p^p` between two 1-D samples, sorting them in place.
fn wasserstein_1d_pow(mut a: Vec<f64>, mut b: Vec<f64>, p: f64) -> f64 {
    assert!(p >= 1.0, "Wasserstein-p needs p >= 1");
    assert!(!a.is_empty(), "Wasserstein needs points");
    assert_eq!(
        a.len(),
        b.len(),
        "Wasserstein here needs equal sample sizes"
    );
    a.sort_unstable_by(f64::total_cmp);
    b.sort_unstable_by(f64::total_cmp);
    a.iter()
        .zip(&b)
        .map(|(u, v)| (u - v).abs().powf(p))
        .sum::<f64>()
        / a.len() as f64
}

/// A direction drawn uniformly from the unit sphere in `dim` dimensions.
pub fn random_unit_vector(dim: usize, rng: &mut impl Rng) -> Vec<f64> {
    loop {
        let v: Vec<f64> = (0..dim).map(|_| rng.sample(StandardNormal)).collect();
        let norm = v.iter().map(|c| c * c).sum::<f64>().sqrt();
        if norm > 1e-12 {
            return v.into_iter().map(|c| c / norm).collect();
        }
    }
}

/// Monte Carlo sliced Wasserstein-p distance: `(mean over directions of W_p^p)^(1/p)`, with
/// `projections` directions drawn uniformly from the unit sphere and each `W_p` the exact 1-D
/// distance between the projected samples.
///
/// # Panics
/// If `x` and `y` hold different numbers of points, or none (see `wasserstein_1d`).
pub fn sliced_wasserstein(
    x: &[f64],
    y: &[f64],
    dim: usize,
    projections: usize,
    p: f64,
    rng: &mut impl Rng,
) -> f64 {
    assert!(
        projections > 0,
        "sliced Wasserstein needs at least one projection"
    );
    assert_eq!(
        x.len(),
        y.len(),
        "sliced Wasserstein needs equal sample sizes"
    );
    let project = |s: &[f64], theta: &[f64]| -> Vec<f64> {
        points(s, dim)
            .map(|pt| pt.iter().zip(theta).map(|(u, v)| u * v).sum())
            .collect()
    };
    let total: f64 = (0..projections)
        .map(|_| {
            let theta = random_unit_vector(dim, rng);
            wasserstein_1d_pow(project(x, &theta), project(y, &theta), p)
        })
        .sum();
    (total / projections as f64).powf(1.0 / p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn normal_sample(n: usize, seed: u64) -> Vec<f64> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n).map(|_| rng.sample(StandardNormal)).collect()
    }

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() < tol
    }

    #[test]
    fn biased_mmd_of_a_sample_with_itself_is_zero() {
        let x = normal_sample(200, 0);
        assert!(close(mmd2_rbf(&x, &x, 2, 1.0, false), 0.0, 1e-12));
    }

    #[test]
    fn mmd_matches_closed_forms() {
        // One point each, 1-D, at distance c: 2 - 2 exp(-c^2 / (2 s^2)).
        let (c, s) = (1.5f64, 0.7f64);
        let k = |d: f64| (-d * d / (2.0 * s * s)).exp();
        assert!(close(
            mmd2_rbf(&[0.0], &[c], 1, s, false),
            2.0 - 2.0 * k(c),
            1e-12
        ));
        // x = {0, a}, y = {c, c + a}: within-sample off-diagonal terms are k(a) each, the
        // cross terms k(c) twice, k(c + a) and k(c - a).
        let a = 0.4;
        let cross = (2.0 * k(c) + k(c + a) + k(c - a)) / 4.0;
        let (x, y) = ([0.0, a], [c, c + a]);
        let unbiased = 2.0 * k(a) - 2.0 * cross;
        let biased = 2.0 * (1.0 + k(a)) / 2.0 - 2.0 * cross;
        assert!(close(mmd2_rbf(&x, &y, 1, s, true), unbiased, 1e-12));
        assert!(close(mmd2_rbf(&x, &y, 1, s, false), biased, 1e-12));
    }

    #[test]
    fn mmd_grows_with_a_mean_shift() {
        let x = normal_sample(300, 1);
        let y0 = normal_sample(300, 2);
        let mut last = f64::NEG_INFINITY;
        for shift in [0.0, 0.5, 1.0, 2.0] {
            let y: Vec<f64> = y0.iter().map(|v| v + shift).collect();
            let mmd = mmd2_rbf(&x, &y, 1, 1.0, true);
            assert!(mmd > last, "MMD {mmd} at shift {shift} is not above {last}");
            last = mmd;
        }
        // Same distribution: the unbiased estimate is near 0.
        assert!(mmd2_rbf(&x, &y0, 1, 1.0, true).abs() < 0.02);
    }

    #[test]
    fn median_heuristic_on_hand_cases() {
        // Pairwise distances 1, 3, 2.
        assert_eq!(median_heuristic_bandwidth(&[0.0, 1.0], &[3.0], 1), 2.0);
        // Pairwise distances 1, 3, 6, 2, 5, 3: median (3 + 3) / 2.
        assert_eq!(median_heuristic_bandwidth(&[0.0, 1.0], &[3.0, 6.0], 1), 3.0);
        // 2-D: (0,0), (3,4), (0,4) -> distances 5, 4, 3.
        assert_eq!(
            median_heuristic_bandwidth(&[0.0, 0.0, 3.0, 4.0], &[0.0, 4.0], 2),
            4.0
        );
        assert_eq!(median_heuristic_bandwidth(&[1.0, 1.0], &[1.0], 1), 1.0);
    }

    #[test]
    fn wasserstein_1d_of_a_shift_is_the_shift() {
        let x = normal_sample(1000, 3);
        let shifted: Vec<f64> = x.iter().map(|v| v + 0.75).collect();
        assert!(close(wasserstein_1d(&x, &shifted, 1.0), 0.75, 1e-12));
        assert!(close(wasserstein_1d(&x, &shifted, 2.0), 0.75, 1e-12));
        // Sorted {0, 1, 2} against {0, 2, 4}: gaps 0, 1, 2.
        let (a, b) = ([0.0, 1.0, 2.0], [2.0, 0.0, 4.0]);
        assert!(close(wasserstein_1d(&a, &b, 1.0), 1.0, 1e-12));
        assert!(close(
            wasserstein_1d(&a, &b, 2.0),
            (5.0f64 / 3.0).sqrt(),
            1e-12
        ));
    }

    #[test]
    #[should_panic(expected = "equal sample sizes")]
    fn wasserstein_1d_rejects_unequal_sizes() {
        wasserstein_1d(&[0.0, 1.0], &[0.0], 1.0);
    }

    #[test]
    fn sliced_wasserstein_of_identical_sets_is_zero() {
        let x = normal_sample(400, 4);
        let sw = sliced_wasserstein(&x, &x, 2, 50, 2.0, &mut StdRng::seed_from_u64(0));
        assert_eq!(sw, 0.0);
    }

    #[test]
    fn sliced_w2_of_shifted_point_masses_is_half_the_squared_shift() {
        // E[(theta . v)^2] = |v|^2 / 2 for theta uniform on the circle.
        let (x, y) = ([1.0, -2.0], [1.0 + 3.0, -2.0 + 4.0]);
        let sw = sliced_wasserstein(&x, &y, 2, 20_000, 2.0, &mut StdRng::seed_from_u64(1));
        assert!(close(sw * sw, 12.5, 0.25), "SW_2^2 = {}", sw * sw);
    }

    #[test]
    fn random_unit_vectors_have_unit_norm() {
        let mut rng = StdRng::seed_from_u64(2);
        for dim in [1, 2, 5] {
            let v = random_unit_vector(dim, &mut rng);
            assert!(close(v.iter().map(|c| c * c).sum::<f64>(), 1.0, 1e-12));
        }
    }
}

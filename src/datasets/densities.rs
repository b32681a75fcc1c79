//! 2-D toy densities for generative-model and density-estimation presets: Gaussian mixtures, a
//! ring of Gaussians, two moons, a checkerboard and spirals. Each generator returns `n` points
//! as `[x, y]` pairs; where a density has components (mixture centers, moons, arms), sample `i`
//! comes from component `i % k`, so the components are balanced and a caller can recover them.

use rand::Rng;
use rand_distr::StandardNormal;
use std::f64::consts::{PI, TAU};

/// Turns each spiral arm makes between its center and its outer end.
pub const SPIRAL_TURNS: f64 = 1.5;

fn gaussian(rng: &mut impl Rng) -> [f64; 2] {
    [rng.sample(StandardNormal), rng.sample(StandardNormal)]
}

fn add_noise(p: [f64; 2], std: f64, rng: &mut impl Rng) -> [f64; 2] {
    if std == 0.0 {
        return p;
    }
    let z = gaussian(rng);
    [p[0] + std * z[0], p[1] + std * z[1]]
}

/// Equal-weight mixture of isotropic Gaussians with standard deviation `std` around `centers`.
/// Support: the whole plane (exactly the centers when `std` is 0). Sample `i` comes from
/// `centers[i % centers.len()]`.
pub fn gaussian_mixture(
    centers: &[[f64; 2]],
    std: f64,
    n: usize,
    rng: &mut impl Rng,
) -> Vec<[f64; 2]> {
    assert!(!centers.is_empty(), "a mixture needs at least one center");
    (0..n)
        .map(|i| add_noise(centers[i % centers.len()], std, rng))
        .collect()
}

/// `k` points equally spaced on the circle of `radius`, the first on the positive x axis.
pub fn ring_centers(k: usize, radius: f64) -> Vec<[f64; 2]> {
    (0..k)
        .map(|j| {
            let angle = TAU * j as f64 / k as f64;
            [radius * angle.cos(), radius * angle.sin()]
        })
        .collect()
}

/// The mixture of `k` Gaussians centered on `ring_centers(k, radius)`. Support: the whole
/// plane, concentrated within a few `std` of the circle.
pub fn ring_of_gaussians(
    k: usize,
    radius: f64,
    std: f64,
    n: usize,
    rng: &mut impl Rng,
) -> Vec<[f64; 2]> {
    gaussian_mixture(&ring_centers(k, radius), std, n, rng)
}

/// Two interleaved half circles of radius 1, plus isotropic Gaussian `noise`. Even samples lie
/// on the upper moon `(cos t, sin t)`, odd samples on the lower moon `(1 - cos t, 0.5 - sin t)`,
/// with `t` uniform in `[0, pi]`. Without noise the support is those two arcs, and the mean of
/// an even number of samples tends to `(0.5, 0.25)`.
pub fn two_moons(n: usize, noise: f64, rng: &mut impl Rng) -> Vec<[f64; 2]> {
    (0..n)
        .map(|i| {
            let t = rng.gen_range(0.0..=PI);
            let p = if i % 2 == 0 {
                [t.cos(), t.sin()]
            } else {
                [1.0 - t.cos(), 0.5 - t.sin()]
            };
            add_noise(p, noise, rng)
        })
        .collect()
}

/// Whether `p` falls in a black cell of the `cells x cells` checkerboard on `[-1, 1]^2`:
/// columns and rows are counted from the lower left, and a cell is black when its column plus
/// its row is even (so the lower-left cell is black).
pub fn in_black_cell(p: [f64; 2], cells: usize) -> bool {
    let index = |v: f64| (((v + 1.0) / 2.0 * cells as f64).floor() as usize).min(cells - 1);
    p.iter().all(|v| (-1.0..=1.0).contains(v)) && (index(p[0]) + index(p[1])) % 2 == 0
}

/// Uniform on the black cells of the `cells x cells` checkerboard on `[-1, 1]^2` (see
/// `in_black_cell`). Support: exactly those cells.
pub fn checkerboard(n: usize, cells: usize, rng: &mut impl Rng) -> Vec<[f64; 2]> {
    assert!(cells > 0, "a checkerboard needs at least one cell");
    let black: Vec<(usize, usize)> = (0..cells)
        .flat_map(|col| (0..cells).map(move |row| (col, row)))
        .filter(|(col, row)| (col + row) % 2 == 0)
        .collect();
    let width = 2.0 / cells as f64;
    (0..n)
        .map(|_| {
            let (col, row) = black[rng.gen_range(0..black.len())];
            [
                -1.0 + width * (col as f64 + rng.gen::<f64>()),
                -1.0 + width * (row as f64 + rng.gen::<f64>()),
            ]
        })
        .collect()
}

/// `arms` spiral arms in the unit disk, plus isotropic Gaussian `noise`. Arm `a` (taken by
/// sample `i` with `a = i % arms`) is the curve `r = t`, angle `TAU * (a / arms +
/// SPIRAL_TURNS * t)` for `t` in `[0, 1]`; `t` is the square root of a uniform draw, so points
/// spread roughly evenly along the arm. Without noise the support is those curves.
pub fn spirals(n: usize, arms: usize, noise: f64, rng: &mut impl Rng) -> Vec<[f64; 2]> {
    assert!(arms > 0, "spirals need at least one arm");
    (0..n)
        .map(|i| {
            let t = rng.gen::<f64>().sqrt();
            let angle = TAU * ((i % arms) as f64 / arms as f64 + SPIRAL_TURNS * t);
            add_noise([t * angle.cos(), t * angle.sin()], noise, rng)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn rng(seed: u64) -> StdRng {
        StdRng::seed_from_u64(seed)
    }

    /// Per-coordinate mean and (population) variance.
    fn moments(points: &[[f64; 2]]) -> ([f64; 2], [f64; 2]) {
        let n = points.len() as f64;
        let mean = [0, 1].map(|d| points.iter().map(|p| p[d]).sum::<f64>() / n);
        let var = [0, 1].map(|d| points.iter().map(|p| (p[d] - mean[d]).powi(2)).sum::<f64>() / n);
        (mean, var)
    }

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() < tol
    }

    #[test]
    fn mixture_moments_match_the_centers() {
        let centers = [[0.0, 0.0], [4.0, 0.0], [0.0, 2.0]];
        let (mean, var) = moments(&gaussian_mixture(&centers, 0.5, 60_000, &mut rng(0)));
        assert!(close(mean[0], 4.0 / 3.0, 0.03) && close(mean[1], 2.0 / 3.0, 0.02));
        // Within-component 0.25 plus the variance of the centers (32/9 and 8/9).
        assert!(close(var[0], 0.25 + 32.0 / 9.0, 0.06));
        assert!(close(var[1], 0.25 + 8.0 / 9.0, 0.03));
        let exact = gaussian_mixture(&centers, 0.0, 5, &mut rng(0));
        assert_eq!(
            exact,
            vec![centers[0], centers[1], centers[2], centers[0], centers[1]]
        );
    }

    #[test]
    fn ring_centers_lie_on_the_circle() {
        let centers = ring_centers(8, 2.0);
        assert_eq!(centers[0], [2.0, 0.0]);
        assert!(close(centers[2][0], 0.0, 1e-12) && close(centers[2][1], 2.0, 1e-12));
        for p in ring_of_gaussians(8, 2.0, 0.0, 16, &mut rng(1)) {
            assert!(close(p[0].hypot(p[1]), 2.0, 1e-12));
        }
        let (mean, var) = moments(&ring_of_gaussians(8, 2.0, 0.1, 40_000, &mut rng(1)));
        assert!(close(mean[0], 0.0, 0.01) && close(mean[1], 0.0, 0.01));
        // Centers contribute radius^2 / 2 per coordinate, the noise 0.01.
        assert!(close(var[0], 2.01, 0.03) && close(var[1], 2.01, 0.03));
    }

    #[test]
    fn two_moons_lie_on_their_arcs() {
        let points = two_moons(1000, 0.0, &mut rng(2));
        for (i, p) in points.iter().enumerate() {
            if i % 2 == 0 {
                assert!(close(p[0].hypot(p[1]), 1.0, 1e-12) && p[1] >= 0.0);
            } else {
                assert!(close((p[0] - 1.0).hypot(p[1] - 0.5), 1.0, 1e-12) && p[1] <= 0.5);
            }
        }
        let (mean, _) = moments(&two_moons(100_000, 0.0, &mut rng(3)));
        assert!(close(mean[0], 0.5, 0.01) && close(mean[1], 0.25, 0.01));
    }

    #[test]
    fn checkerboard_fills_only_black_cells() {
        for cells in [1, 2, 3, 4] {
            let points = checkerboard(5000, cells, &mut rng(4));
            assert!(points.iter().all(|p| in_black_cell(*p, cells)));
        }
        assert!(in_black_cell([-0.9, -0.9], 4) && !in_black_cell([-0.4, -0.9], 4));
        assert!(!in_black_cell([1.5, 0.0], 4));
        // For an even board every column is half black: each marginal is uniform on [-1, 1].
        let (mean, var) = moments(&checkerboard(60_000, 4, &mut rng(5)));
        for d in 0..2 {
            assert!(close(mean[d], 0.0, 0.01) && close(var[d], 1.0 / 3.0, 0.01));
        }
    }

    #[test]
    fn spirals_follow_their_arms() {
        let arms = 3;
        for (i, p) in spirals(600, arms, 0.0, &mut rng(6)).iter().enumerate() {
            let r = p[0].hypot(p[1]);
            assert!(r <= 1.0 + 1e-12);
            let expected = TAU * ((i % arms) as f64 / arms as f64 + SPIRAL_TURNS * r);
            let gap = (p[1].atan2(p[0]) - expected).rem_euclid(TAU);
            assert!(gap.min(TAU - gap) < 1e-9, "sample {i} is off its arm");
        }
        let (mean, _) = moments(&spirals(60_000, 2, 0.0, &mut rng(7)));
        assert!(close(mean[0], 0.0, 0.01) && close(mean[1], 0.0, 0.01));
    }
}

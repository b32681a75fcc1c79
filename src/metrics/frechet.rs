//! The Frechet distance between two Gaussians fitted to samples (the FID formula, here on the
//! features of a small digits classifier):
//! `FD = |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a^{1/2} S_b S_a^{1/2})^{1/2})`.
//! Square roots of the symmetric positive semi-definite matrices come from nalgebra's symmetric
//! eigen-decomposition (negative round-off eigenvalues clipped to zero).

use nalgebra::DMatrix;

/// Mean and (biased, `1/n`) covariance of `x`, `n x dim` row-major.
pub fn mean_cov(x: &[f64], dim: usize) -> (Vec<f64>, DMatrix<f64>) {
    assert!(
        dim > 0 && x.len().is_multiple_of(dim),
        "rows of {dim} values"
    );
    let n = x.len() / dim;
    assert!(n > 0, "at least one sample");
    let mut mu = vec![0.0; dim];
    for row in x.chunks(dim) {
        for (m, v) in mu.iter_mut().zip(row) {
            *m += v / n as f64;
        }
    }
    let mut cov = DMatrix::zeros(dim, dim);
    for row in x.chunks(dim) {
        for i in 0..dim {
            let di = row[i] - mu[i];
            for j in i..dim {
                cov[(i, j)] += di * (row[j] - mu[j]) / n as f64;
            }
        }
    }
    for i in 0..dim {
        for j in 0..i {
            cov[(i, j)] = cov[(j, i)];
        }
    }
    (mu, cov)
}

/// The square root of a symmetric positive semi-definite matrix.
pub fn sqrt_psd(a: &DMatrix<f64>) -> DMatrix<f64> {
    let sym = (a + a.transpose()) * 0.5;
    let eig = sym.symmetric_eigen();
    let roots = eig.eigenvalues.map(|l| l.max(0.0).sqrt());
    &eig.eigenvectors * DMatrix::from_diagonal(&roots) * eig.eigenvectors.transpose()
}

/// The Frechet distance between `N(mu_a, s_a)` and `N(mu_b, s_b)`.
pub fn frechet_gaussians(
    mu_a: &[f64],
    s_a: &DMatrix<f64>,
    mu_b: &[f64],
    s_b: &DMatrix<f64>,
) -> f64 {
    let mean_term: f64 = mu_a.iter().zip(mu_b).map(|(a, b)| (a - b).powi(2)).sum();
    let ra = sqrt_psd(s_a);
    let cross = sqrt_psd(&(&ra * s_b * &ra));
    (mean_term + s_a.trace() + s_b.trace() - 2.0 * cross.trace()).max(0.0)
}

/// The Frechet distance between Gaussians fitted to samples `a` and `b` (`dim` columns each).
pub fn frechet_distance(a: &[f64], b: &[f64], dim: usize) -> f64 {
    let (ma, sa) = mean_cov(a, dim);
    let (mb, sb) = mean_cov(b, dim);
    frechet_gaussians(&ma, &sa, &mb, &sb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_dimension_is_the_wasserstein_2_closed_form() {
        // N(1, 4) vs N(-2, 9): (1 + 2)^2 + (2 - 3)^2 = 10.
        let s_a = DMatrix::from_element(1, 1, 4.0);
        let s_b = DMatrix::from_element(1, 1, 9.0);
        let fd = frechet_gaussians(&[1.0], &s_a, &[-2.0], &s_b);
        assert!((fd - 10.0).abs() < 1e-12, "{fd}");
    }

    #[test]
    fn commuting_covariances_reduce_to_the_square_root_difference() {
        // Both diagonal in a rotated basis: FD = sum (sqrt(a_i) - sqrt(b_i))^2.
        let (c, s) = (0.6f64, 0.8f64);
        let q = DMatrix::from_row_slice(2, 2, &[c, -s, s, c]);
        let da = DMatrix::from_diagonal(&nalgebra::DVector::from_vec(vec![4.0, 0.25]));
        let db = DMatrix::from_diagonal(&nalgebra::DVector::from_vec(vec![1.0, 2.25]));
        let sa = &q * da * q.transpose();
        let sb = &q * db * q.transpose();
        let fd = frechet_gaussians(&[0.0, 0.0], &sa, &[0.0, 0.0], &sb);
        let want = (2.0f64 - 1.0).powi(2) + (0.5f64 - 1.5).powi(2);
        assert!((fd - want).abs() < 1e-10, "{fd} vs {want}");
    }

    #[test]
    fn sample_moments_and_self_distance() {
        let x = [1.0, 2.0, 3.0, 6.0, 5.0, 10.0];
        let (mu, cov) = mean_cov(&x, 2);
        assert_eq!(mu, vec![3.0, 6.0]);
        assert!((cov[(0, 0)] - 8.0 / 3.0).abs() < 1e-12);
        assert!((cov[(0, 1)] - 16.0 / 3.0).abs() < 1e-12);
        assert!(frechet_distance(&x, &x, 2).abs() < 1e-9);
        let r = sqrt_psd(&cov);
        assert!((&r * &r - &cov).norm() < 1e-9);
    }
}

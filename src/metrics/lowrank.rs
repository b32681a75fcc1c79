//! Low-rank tools on the host (f64, through nalgebra's SVD): the thin SVD of a row-major
//! matrix with singular values in descending order, the energy rank (the smallest `k` whose
//! leading squared singular values hold a share `e` of the total), the rank by a value
//! threshold, the rank-`k` truncation `U_k diag(s_k) V_k^T`, the nuclear norm and its
//! sub-gradient `U_k V_k^T`, and the parameters of a rank-`k` factorization. [`Svd::of_gram`]
//! reaches the same factors faster through the eigendecomposition of the Gram matrix.

use nalgebra::DMatrix;

/// The thin SVD `A = U diag(s) V^T` of an `m x n` matrix, `s` descending; `U` is `m x r`, `V^T`
/// is `r x n` with `r = min(m, n)`.
#[derive(Clone, Debug)]
pub struct Svd {
    pub rows: usize,
    pub cols: usize,
    pub u: DMatrix<f64>,
    pub s: Vec<f64>,
    pub vt: DMatrix<f64>,
}

impl Svd {
    /// The SVD of a row-major `rows x cols` matrix (any float convertible to f64).
    pub fn of<T: Copy + Into<f64>>(values: &[T], rows: usize, cols: usize) -> Svd {
        assert_eq!(values.len(), rows * cols, "a {rows} x {cols} matrix");
        let a = DMatrix::from_row_iterator(rows, cols, values.iter().map(|&v| v.into()));
        let svd = nalgebra::linalg::SVD::new(a, true, true);
        Svd {
            rows,
            cols,
            u: svd.u.expect("U requested"),
            s: svd.singular_values.iter().copied().collect(),
            vt: svd.v_t.expect("V^T requested"),
        }
    }

    /// The same decomposition through the symmetric eigendecomposition of the smaller Gram
    /// matrix (`A^T A` when `rows >= cols`): `s_i = sqrt(lambda_i)`, `V` its eigenvectors,
    /// `u_i = A v_i / s_i` (the transpose for wide matrices). About four times faster than
    /// [`Svd::of`] at 256x256; a singular value is accurate to about `1e-8 s_1` in absolute
    /// terms, and the `U` column of one below `1e-7 s_1` is left zero (those directions carry
    /// nothing: the truncations and the sub-gradient then skip them). Enough for energy ranks,
    /// truncations and sub-gradients of weights whose leading directions matter.
    pub fn of_gram<T: Copy + Into<f64>>(values: &[T], rows: usize, cols: usize) -> Svd {
        assert_eq!(values.len(), rows * cols, "a {rows} x {cols} matrix");
        let a = DMatrix::from_row_iterator(rows, cols, values.iter().map(|&v| v.into()));
        if rows >= cols {
            Svd::gram_tall(&a)
        } else {
            // A^T = U' S V'^T, so A = V' S U'^T.
            let t = Svd::gram_tall(&a.transpose());
            Svd {
                rows,
                cols,
                u: t.vt.transpose(),
                s: t.s,
                vt: t.u.transpose(),
            }
        }
    }

    fn gram_tall(a: &DMatrix<f64>) -> Svd {
        let (rows, cols) = a.shape();
        let eig = nalgebra::linalg::SymmetricEigen::new(a.tr_mul(a));
        let mut order: Vec<usize> = (0..cols).collect();
        order.sort_by(|&i, &j| eig.eigenvalues[j].total_cmp(&eig.eigenvalues[i]));
        let s: Vec<f64> = order
            .iter()
            .map(|&i| eig.eigenvalues[i].max(0.0).sqrt())
            .collect();
        let v = DMatrix::from_fn(cols, cols, |r, c| eig.eigenvectors[(r, order[c])]);
        let mut u = a * &v;
        let floor = 1e-7 * s.first().copied().unwrap_or(0.0);
        for (j, &sj) in s.iter().enumerate() {
            if sj > floor && sj > 0.0 {
                u.column_mut(j).scale_mut(1.0 / sj);
            } else {
                u.column_mut(j).fill(0.0);
            }
        }
        Svd {
            rows,
            cols,
            u,
            s,
            vt: v.transpose(),
        }
    }

    /// The smallest `k` with `sum_{i<k} s_i^2 >= energy * sum_i s_i^2` (TRP's energy
    /// threshold on squared singular values); 0 for a zero matrix.
    pub fn energy_rank(&self, energy: f64) -> usize {
        energy_rank(&self.s, energy)
    }

    /// The number of singular values above `threshold`.
    pub fn value_rank(&self, threshold: f64) -> usize {
        self.s.iter().filter(|&&s| s > threshold).count()
    }

    /// `U_k diag(s_k) V_k^T`, row-major.
    pub fn truncate(&self, k: usize) -> Vec<f64> {
        let k = k.min(self.s.len());
        let mut us = self.u.columns(0, k).into_owned();
        for (j, s) in self.s.iter().take(k).enumerate() {
            us.column_mut(j).scale_mut(*s);
        }
        row_major(&(us * self.vt.rows(0, k)))
    }

    /// `U_k V_k^T`, row-major: the sub-gradient of the nuclear norm restricted to the leading
    /// `k` directions (the full sub-gradient of `||A||_*` when `k` is the rank).
    pub fn nuclear_subgradient(&self, k: usize) -> Vec<f64> {
        let k = k.min(self.s.len());
        row_major(&(self.u.columns(0, k) * self.vt.rows(0, k)))
    }

    /// The sum of the singular values.
    pub fn nuclear_norm(&self) -> f64 {
        self.s.iter().sum()
    }
}

/// [`Svd::energy_rank`] of descending singular values.
pub fn energy_rank(s: &[f64], energy: f64) -> usize {
    let total: f64 = s.iter().map(|x| x * x).sum();
    if total <= 0.0 {
        return 0;
    }
    let mut acc = 0.0;
    for (i, x) in s.iter().enumerate() {
        acc += x * x;
        if acc >= energy * total {
            return i + 1;
        }
    }
    s.len()
}

/// Parameters of an `m x n` matrix factored at rank `k` (`k (m + n)`), and the ratio of the
/// dense count to it (above 1: the factorization is smaller).
pub fn factor_params(m: usize, n: usize, k: usize) -> (usize, f64) {
    let p = k * (m + n);
    (p, (m * n) as f64 / p.max(1) as f64)
}

fn row_major(a: &DMatrix<f64>) -> Vec<f64> {
    let mut out = Vec::with_capacity(a.nrows() * a.ncols());
    for r in 0..a.nrows() {
        out.extend(a.row(r).iter());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// `Q diag(s) P^T` with orthonormal `Q`, `P` from Gram-Schmidt: a matrix with known
    /// singular values.
    fn with_singular_values(m: usize, n: usize, s: &[f64], rng: &mut StdRng) -> Vec<f64> {
        let orth = |rows: usize, cols: usize, rng: &mut StdRng| {
            let a = DMatrix::from_fn(rows, cols, |_, _| rng.gen::<f64>() - 0.5);
            a.qr().q()
        };
        let q = orth(m, s.len(), rng);
        let p = orth(n, s.len(), rng);
        let d = DMatrix::from_diagonal(&nalgebra::DVector::from_column_slice(s));
        row_major(&(q * d * p.transpose()))
    }

    #[test]
    fn known_singular_values_and_reconstruction() {
        let mut rng = StdRng::seed_from_u64(1);
        let s = [5.0, 3.0, 2.0, 1.0, 0.5];
        let a = with_singular_values(9, 7, &s, &mut rng);
        let svd = Svd::of(&a, 9, 7);
        assert_eq!(svd.s.len(), 7);
        for (got, want) in svd.s.iter().zip(s.iter().chain([0.0, 0.0].iter())) {
            assert!((got - want).abs() < 1e-12, "{:?}", svd.s);
        }
        // Full rank reconstructs; the truncation at k leaves the Frobenius error
        // sqrt(sum_{i>=k} s_i^2) (Eckart-Young).
        let full = svd.truncate(7);
        assert!(a.iter().zip(&full).all(|(x, y)| (x - y).abs() < 1e-12));
        for k in 0..=5 {
            let t = svd.truncate(k);
            let err: f64 = a.iter().zip(&t).map(|(x, y)| (x - y).powi(2)).sum::<f64>();
            let want: f64 = s[k..].iter().map(|x| x * x).sum();
            assert!((err - want).abs() < 1e-10, "k {k}: {err} vs {want}");
            let t_svd = Svd::of(&t, 9, 7);
            assert_eq!(t_svd.value_rank(1e-9), k);
        }
        assert!((svd.nuclear_norm() - 11.5).abs() < 1e-12);
    }

    #[test]
    fn the_gram_route_matches_the_svd() {
        let mut rng = StdRng::seed_from_u64(3);
        for (m, n) in [(40, 30), (30, 40), (64, 64)] {
            // Spread singular values (1e-3 to 4) plus an exactly low-rank case.
            let r = m.min(n);
            let s: Vec<f64> = (0..r).map(|i| 4.0 * 0.8f64.powi(i as i32)).collect();
            let a = with_singular_values(m, n, &s, &mut rng);
            let (x, y) = (Svd::of(&a, m, n), Svd::of_gram(&a, m, n));
            for (p, q) in x.s.iter().zip(&y.s) {
                assert!((p - q).abs() < 1e-8, "{m}x{n}: {p} vs {q}");
            }
            for k in [1, 5, 12] {
                assert_eq!(x.energy_rank(0.9), y.energy_rank(0.9));
                let (tx, ty) = (x.truncate(k), y.truncate(k));
                let (gx, gy) = (x.nuclear_subgradient(k), y.nuclear_subgradient(k));
                for (p, q) in tx.iter().zip(&ty).chain(gx.iter().zip(&gy)) {
                    assert!((p - q).abs() < 1e-8, "{m}x{n} k {k}: {p} vs {q}");
                }
            }
            let full = y.truncate(r);
            assert!(a.iter().zip(&full).all(|(p, q)| (p - q).abs() < 1e-9));
            // Rank 3: the other U columns are zero, the sub-gradient is U_3 V_3^T.
            let low = with_singular_values(m, n, &[3.0, 2.0, 1.0], &mut rng);
            let (x, y) = (Svd::of(&low, m, n), Svd::of_gram(&low, m, n));
            assert_eq!(y.value_rank(1e-6), 3);
            let (gx, gy) = (x.nuclear_subgradient(3), y.nuclear_subgradient(r));
            assert!(gx.iter().zip(&gy).all(|(p, q)| (p - q).abs() < 1e-8));
        }
    }

    #[test]
    fn energy_rank_counts_squared_singular_values() {
        // Energies 25, 9, 4, 1, 0.25 of 39.25.
        let s = [5.0, 3.0, 2.0, 1.0, 0.5];
        assert_eq!(energy_rank(&s, 0.5), 1); // 25 / 39.25 = 0.637
        assert_eq!(energy_rank(&s, 0.9), 3); // 34 / 39.25 = 0.866 < 0.9 <= 38 / 39.25
        assert_eq!(energy_rank(&s, 25.0 / 39.25), 1); // reaching the share exactly is enough
        assert_eq!(energy_rank(&s, 1.0), 5);
        assert_eq!(energy_rank(&[0.0, 0.0], 0.9), 0);
        assert_eq!(factor_params(256, 256, 32), (16384, 4.0));
    }

    #[test]
    fn the_nuclear_subgradient_is_u_v_transposed() {
        let mut rng = StdRng::seed_from_u64(2);
        let (m, n) = (6, 4);
        let a: Vec<f64> = (0..m * n).map(|_| rng.gen::<f64>() - 0.5).collect();
        let svd = Svd::of(&a, m, n);
        let g = svd.nuclear_subgradient(n);
        // A directional derivative of ||A||_* (all singular values distinct and positive)
        // against <G, D>.
        let d: Vec<f64> = (0..m * n).map(|_| rng.gen::<f64>() - 0.5).collect();
        let h = 1e-6;
        let nuc = |t: f64| {
            let x: Vec<f64> = a.iter().zip(&d).map(|(a, d)| a + t * d).collect();
            Svd::of(&x, m, n).nuclear_norm()
        };
        let fd = (nuc(h) - nuc(-h)) / (2.0 * h);
        let dot: f64 = g.iter().zip(&d).map(|(g, d)| g * d).sum();
        assert!((fd - dot).abs() < 1e-7, "{fd} vs {dot}");
        // Rank-k part: orthonormal directions, so ||U_k V_k^T||_F^2 = k.
        let g2 = svd.nuclear_subgradient(2);
        assert!((g2.iter().map(|x| x * x).sum::<f64>() - 2.0).abs() < 1e-12);
    }
}

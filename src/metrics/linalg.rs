//! Small dense linear algebra on `f64` slices: what the estimators and their reference tests need.

pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

pub fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

/// `A v` for a square row-major matrix `A`.
pub fn mat_vec(a: &[f64], v: &[f64]) -> Vec<f64> {
    let n = v.len();
    assert_eq!(a.len(), n * n, "matrix and vector sizes differ");
    (0..n).map(|i| dot(&a[i * n..(i + 1) * n], v)).collect()
}

/// Builds the dense matrix of a linear operator column by column: column j is `op(e_j)`.
/// The result is row-major and symmetrized, `(M + M^T) / 2`.
pub fn dense_from_operator(op: &mut dyn FnMut(&[f64]) -> Vec<f64>, n: usize) -> Vec<f64> {
    let mut m = vec![0.0; n * n];
    let mut e = vec![0.0; n];
    for j in 0..n {
        e[j] = 1.0;
        let col = op(&e);
        e[j] = 0.0;
        for i in 0..n {
            m[i * n + j] = col[i];
        }
    }
    for i in 0..n {
        for j in (i + 1)..n {
            let s = 0.5 * (m[i * n + j] + m[j * n + i]);
            m[i * n + j] = s;
            m[j * n + i] = s;
        }
    }
    m
}

/// All eigenvalues of a symmetric row-major matrix by cyclic Jacobi rotations, largest first.
pub fn symmetric_eigenvalues(a: &[f64], n: usize) -> Vec<f64> {
    let mut m = a.to_vec();
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| m[i * n + j].powi(2))
            .sum();
        if off < 1e-22 {
            break;
        }
        for p in 0..n {
            for q in (p + 1)..n {
                let apq = m[p * n + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (m[q * n + q] - m[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let mkp = m[k * n + p];
                    let mkq = m[k * n + q];
                    m[k * n + p] = c * mkp - s * mkq;
                    m[k * n + q] = s * mkp + c * mkq;
                }
                for k in 0..n {
                    let mpk = m[p * n + k];
                    let mqk = m[q * n + k];
                    m[p * n + k] = c * mpk - s * mqk;
                    m[q * n + k] = s * mpk + c * mqk;
                }
            }
        }
    }
    let mut eig: Vec<f64> = (0..n).map(|i| m[i * n + i]).collect();
    eig.sort_by(|a, b| b.total_cmp(a));
    eig
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jacobi_on_known_matrix() {
        // [[2,1],[1,2]] has eigenvalues 3 and 1.
        let e = symmetric_eigenvalues(&[2.0, 1.0, 1.0, 2.0], 2);
        assert!(
            (e[0] - 3.0).abs() < 1e-12 && (e[1] - 1.0).abs() < 1e-12,
            "{e:?}"
        );
        let d = dense_from_operator(&mut |v: &[f64]| mat_vec(&[2.0, 1.0, 1.0, 2.0], v), 2);
        assert_eq!(d, vec![2.0, 1.0, 1.0, 2.0]);
    }
}

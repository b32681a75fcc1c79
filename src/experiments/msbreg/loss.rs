//! MSBReg's three forces as gradients with respect to the unit-sphere embeddings `z` (rows of
//! a `rows x d` matrix), computed on the host. Each term is linear in `z` once its constants
//! are fixed (the target centroids, the Brownian direction) or has a closed-form gradient (the
//! singular values: `d s_k / dZ = u_k v_k^T`), so the training step puts the single surrogate
//! `sum(z * W)` on the tape, with `W` the sum of the terms' gradients; the terms' values are
//! logged separately.

use crate::metrics::lowrank::Svd;

/// The multiview centroid loss `L_M = mean_{i,v} (2 - 2 <z_{i,v}, c_i>)` with
/// `c_i = normalize(mean_v t_{i,v})` from the target rows `t` (view-major: row `v * n + i` is
/// view `v` of image `i`): its value and its gradient with respect to `z`.
pub fn centroid_loss(z: &[f32], t: &[f32], views: usize, d: usize) -> (f64, Vec<f64>) {
    let rows = z.len() / d;
    let n = rows / views;
    let mut c = vec![0.0f64; n * d];
    for v in 0..views {
        for i in 0..n {
            for j in 0..d {
                c[i * d + j] += t[(v * n + i) * d + j] as f64;
            }
        }
    }
    for row in c.chunks_mut(d) {
        let norm = row.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
        row.iter_mut().for_each(|x| *x /= norm);
    }
    let scale = 1.0 / rows as f64;
    let mut loss = 0.0;
    let mut grad = vec![0.0f64; rows * d];
    for v in 0..views {
        for i in 0..n {
            let r = v * n + i;
            let dot: f64 = (0..d).map(|j| z[r * d + j] as f64 * c[i * d + j]).sum();
            loss += (2.0 - 2.0 * dot) * scale;
            for j in 0..d {
                grad[r * d + j] = -2.0 * c[i * d + j] * scale;
            }
        }
    }
    (loss, grad)
}

/// BYOL's symmetric loss of two views: `mean_i (2 - 2 <z_{1,i}, t_{2,i}>) + (2 - 2 <z_{2,i},
/// t_{1,i}>)` (rows of view 1 first, then view 2; `t` unit rows): value and gradient.
pub fn byol_loss(z: &[f32], t: &[f32], d: usize) -> (f64, Vec<f64>) {
    let rows = z.len() / d;
    let n = rows / 2;
    let mut loss = 0.0;
    let mut grad = vec![0.0f64; rows * d];
    for r in 0..rows {
        let other = if r < n { r + n } else { r - n };
        let dot: f64 = (0..d)
            .map(|j| z[r * d + j] as f64 * t[other * d + j] as f64)
            .sum();
        loss += (2.0 - 2.0 * dot) / n as f64;
        for j in 0..d {
            grad[r * d + j] = -2.0 * t[other * d + j] as f64 / n as f64;
        }
    }
    (loss, grad)
}

/// The Brownian diffusive loss `L_B = mean_i <z_i, g>` for one random unit direction `g` (the
/// rows are unit vectors, so this is the mean cosine): value and gradient.
pub fn brownian_loss(z: &[f32], g: &[f64]) -> (f64, Vec<f64>) {
    let d = g.len();
    let rows = z.len() / d;
    let loss = z
        .chunks(d)
        .map(|r| r.iter().zip(g).map(|(a, b)| *a as f64 * b).sum::<f64>())
        .sum::<f64>()
        / rows as f64;
    let grad = (0..rows * d).map(|k| g[k % d] / rows as f64).collect();
    (loss, grad)
}

/// The singular-value loss `L_S = mean_k (s_k / mean(s) - 1)^2` over the singular values of the
/// centred embedding matrix `Z - mean(Z)` (`rows x d`; equal singular values = an isotropic
/// cloud): value, gradient with respect to `Z` and the singular values.
pub fn singular_value_loss(z: &[f64], rows: usize, d: usize) -> (f64, Vec<f64>, Vec<f64>) {
    let mut mean = vec![0.0f64; d];
    for r in z.chunks(d) {
        for j in 0..d {
            mean[j] += r[j] / rows as f64;
        }
    }
    let c: Vec<f64> = z
        .chunks(d)
        .flat_map(|r| (0..d).map(|j| r[j] - mean[j]).collect::<Vec<_>>())
        .collect();
    let svd = Svd::of(&c, rows, d);
    let s = &svd.s;
    let r = s.len() as f64;
    let m = s.iter().sum::<f64>() / r;
    if m <= 1e-12 {
        return (f64::NAN, vec![0.0; rows * d], s.clone());
    }
    let f: Vec<f64> = s.iter().map(|x| x / m - 1.0).collect();
    let loss = f.iter().map(|x| x * x).sum::<f64>() / r;
    // dL/ds_j = (2/r) [f_j / m - sum_k f_k s_k / (r m^2)].
    let cross: f64 = f.iter().zip(s).map(|(a, b)| a * b).sum::<f64>() / (r * m * m);
    let ds: Vec<f64> = f.iter().map(|fj| 2.0 / r * (fj / m - cross)).collect();
    // dL/dC = U diag(ds) V^T; centring projects it: dL/dZ = dL/dC minus its column means.
    let k = s.len();
    let mut us = svd.u.columns(0, k).into_owned();
    for (j, v) in ds.iter().enumerate() {
        us.column_mut(j).scale_mut(*v);
    }
    let g = us * svd.vt.rows(0, k);
    let mut grad = vec![0.0f64; rows * d];
    let mut col_mean = vec![0.0f64; d];
    for i in 0..rows {
        for j in 0..d {
            grad[i * d + j] = g[(i, j)];
            col_mean[j] += g[(i, j)] / rows as f64;
        }
    }
    for i in 0..rows {
        for j in 0..d {
            grad[i * d + j] -= col_mean[j];
        }
    }
    (loss, grad, s.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn unit_rows(rows: usize, d: usize, rng: &mut StdRng) -> Vec<f32> {
        let mut z: Vec<f32> = (0..rows * d).map(|_| rng.gen_range(-1.0..1.0)).collect();
        for r in z.chunks_mut(d) {
            let n = r.iter().map(|x| x * x).sum::<f32>().sqrt();
            r.iter_mut().for_each(|x| *x /= n);
        }
        z
    }

    #[test]
    fn singular_value_gradient_matches_finite_differences() {
        let mut rng = StdRng::seed_from_u64(1);
        let (rows, d) = (9, 4);
        let z: Vec<f64> = (0..rows * d).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let (l, g, s) = singular_value_loss(&z, rows, d);
        assert_eq!(s.len(), d);
        assert!(l > 0.0);
        let h = 1e-6;
        for k in 0..rows * d {
            let mut p = z.clone();
            p[k] += h;
            let mut m = z.clone();
            m[k] -= h;
            let fd = (singular_value_loss(&p, rows, d).0 - singular_value_loss(&m, rows, d).0)
                / (2.0 * h);
            assert!((fd - g[k]).abs() < 1e-6, "entry {k}: {fd} vs {}", g[k]);
        }
        // An isotropic cloud (orthogonal centred columns of equal norm) has loss 0.
        let iso = [1.0, 0.0, -1.0, 0.0, 0.0, 1.0, 0.0, -1.0];
        assert!(singular_value_loss(&iso, 4, 2).0.abs() < 1e-20);
    }

    #[test]
    fn linear_terms_have_their_closed_form_values_and_gradients() {
        let mut rng = StdRng::seed_from_u64(2);
        let (n, views, d) = (3, 4, 5);
        let z = unit_rows(n * views, d, &mut rng);
        // Targets equal to z: every view is pulled to the normalized mean of its image's views.
        let (l, g) = centroid_loss(&z, &z, views, d);
        assert!(l > 0.0 && l < 2.0);
        let h = 1e-3f32;
        for k in [0, 7, 33] {
            let mut p = z.clone();
            p[k] += h;
            let fd = (centroid_loss(&p, &z, views, d).0 - l) / h as f64;
            assert!((fd - g[k]).abs() < 1e-4, "{fd} vs {}", g[k]);
        }
        // A single view equal to its own target gives zero loss.
        assert!(centroid_loss(&z, &z, 1, d).0.abs() < 1e-6);
        let (lb, gb) = brownian_loss(&z, &[1.0, 0.0, 0.0, 0.0, 0.0]);
        let want = z.chunks(d).map(|r| r[0] as f64).sum::<f64>() / (n * views) as f64;
        assert!((lb - want).abs() < 1e-9);
        assert!((gb[0] - 1.0 / (n * views) as f64).abs() < 1e-12 && gb[1] == 0.0);
        let two = unit_rows(2 * n, d, &mut rng);
        let (lbyol, gbyol) = byol_loss(&two, &two, d);
        let mut p = two.clone();
        p[2] += h;
        let fd = (byol_loss(&p, &two, d).0 - lbyol) / h as f64;
        assert!((fd - gbyol[2]).abs() < 1e-4);
    }
}

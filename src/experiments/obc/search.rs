//! The pieces of the boundary-condition search: the SR degradation (2x2 average pooling, nearest
//! upsampling), the deterministic solver `x_0 = h_theta(x_T, y)` batched over many
//! (boundary condition, LR image) pairs, the per-candidate scores on a reference set, and the
//! Spearman rank correlation used to ask whether a candidate's rank transfers to other images.

use dfdx::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::experiments::diffusion::net::upload_f32;
use crate::experiments::diffusion::{ddim_sample, EpsNet, NoiseSchedule};
use crate::metrics::psnr::psnr;
use crate::nn::models::Matrix;
use crate::nn::store::ParamStore;
use crate::nn::transfer::Download;

/// Pixels of a high-resolution digit (8 x 8).
pub const HR: usize = 64;
/// Pixels of its low-resolution version (4 x 4).
pub const LR: usize = 16;
/// Rows one device batch of the solver holds at most.
pub const BATCH_ROWS: usize = 4096;

/// 2x2 average pooling of one 8x8 image (row-major) to 4x4.
pub fn pool(x: &[f32]) -> [f32; LR] {
    let mut y = [0.0f32; LR];
    for (i, v) in y.iter_mut().enumerate() {
        let (r, c) = (2 * (i / 4), 2 * (i % 4));
        *v = 0.25 * (x[r * 8 + c] + x[r * 8 + c + 1] + x[(r + 1) * 8 + c] + x[(r + 1) * 8 + c + 1]);
    }
    y
}

/// Nearest upsampling of a 4x4 image to 8x8 (each value fills its 2x2 block).
pub fn upsample(y: &[f32]) -> [f32; HR] {
    let mut x = [0.0f32; HR];
    for (j, v) in x.iter_mut().enumerate() {
        *v = y[(j / 8 / 2) * 4 + (j % 8) / 2];
    }
    x
}

/// The condition of every image in `images` (rows of 64): `up(pool(x))`.
pub fn conditions(images: &[f32]) -> Vec<f32> {
    images.chunks(HR).flat_map(|x| upsample(&pool(x))).collect()
}

/// PSNR of a restored image against its HR image on the [-1, 1] scale (peak-to-peak 2), the
/// output clipped to that range.
pub fn psnr_signed(out: &[f32], hr: &[f32]) -> f64 {
    let clipped: Vec<f32> = out.iter().map(|v| v.clamp(-1.0, 1.0)).collect();
    psnr(&clipped, hr, 2.0)
}

/// Ranks (1-based, ties averaged).
pub fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            r[k] = avg;
        }
        i = j + 1;
    }
    r
}

/// Spearman's rank correlation: Pearson's correlation of the ranks (NaN when either side is
/// constant).
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "paired values");
    let (ra, rb) = (ranks(a), ranks(b));
    let n = ra.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in ra.iter().zip(&rb) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma).powi(2);
        sbb += (y - mb).powi(2);
    }
    sab / (saa * sbb).sqrt()
}

/// The conditional prior on a device.
pub struct Prior<D: Device<f32>> {
    pub store: ParamStore<f32, D>,
    pub net: EpsNet,
    pub schedule: NoiseSchedule,
}

impl<D: Device<f32>> Prior<D> {
    /// `x_0` for each row pair (`x_top` row i, condition row i): DDIM over `timesteps` with
    /// `eta` (0: the probability-flow ODE's deterministic solver) and the x0 prediction clipped
    /// to [-1, 1], in device batches of at most [`BATCH_ROWS`] rows. Stochastic steps draw their
    /// noise from `noise_seed`.
    pub fn solve(
        &self,
        timesteps: &[usize],
        x_top: &[f32],
        cond: &[f32],
        eta: f64,
        noise_seed: u64,
    ) -> Vec<f32> {
        assert_eq!(x_top.len(), cond.len(), "one condition per row");
        let dev = self.store.device().clone();
        let mut rng = StdRng::seed_from_u64(noise_seed);
        let mut out = Vec::with_capacity(x_top.len());
        for (xs, cs) in x_top
            .chunks(BATCH_ROWS * HR)
            .zip(cond.chunks(BATCH_ROWS * HR))
        {
            let n = xs.len() / HR;
            let c: Matrix<f32, D> = upload_f32(&dev, cs, HR);
            let x: Matrix<f32, D> = upload_f32(&dev, xs, HR);
            // The predicted clean image is clipped to the data range [-1, 1] at every step
            // (as SR3's and DDPM's samplers do) through the noise the DDIM step sees:
            // `e' = (x_t - sqrt(abar) clip(x0_hat)) / sqrt(1 - abar)` gives back exactly
            // `clip(x0_hat)` as the step's x0 prediction.
            let mut eps = |x: &Matrix<f32, D>, t: usize| {
                let e = self.net.eps(&self.store, x, Some(&c), &vec![t; n]);
                let a = self.schedule.abar[t];
                let (sa, sn) = (a.sqrt() as f32, (1.0 - a).sqrt() as f32);
                let x0 = ((x.clone() - e * sn) / sa).clamp(-1.0, 1.0);
                (x.clone() - x0 * sa) / sn
            };
            out.extend(
                ddim_sample(&self.schedule, timesteps, x, eta, &mut eps, &mut rng).download(),
            );
        }
        out
    }

    /// The outputs of candidates `cands` (rows of 64) on every image of a set with conditions
    /// `cond` (rows of 64): candidate-major, `cands x images` rows.
    pub fn solve_grid(&self, timesteps: &[usize], cands: &[f32], cond: &[f32]) -> Vec<f32> {
        let n_img = cond.len() / HR;
        let mut tops = Vec::with_capacity(cands.len() * n_img);
        let mut conds = Vec::with_capacity(cands.len() * n_img);
        for c in cands.chunks(HR) {
            for y in cond.chunks(HR) {
                tops.extend_from_slice(c);
                conds.extend_from_slice(y);
            }
        }
        self.solve(timesteps, &tops, &conds, 0.0, 0)
    }
}

/// Mean PSNR over the images of each candidate's block of outputs (`outputs`: candidate-major,
/// `images` rows per candidate).
pub fn psnr_scores(outputs: &[f32], hr: &[f32]) -> Vec<f64> {
    let n_img = hr.len() / HR;
    outputs
        .chunks(n_img * HR)
        .map(|block| {
            block
                .chunks(HR)
                .zip(hr.chunks(HR))
                .map(|(o, x)| psnr_signed(o, x))
                .sum::<f64>()
                / n_img as f64
        })
        .collect()
}

/// Mean Euclidean distance between each candidate's output features and the HR images'
/// features (`out_feats`: candidate-major rows of `dim`; `hr_feats`: one row per image).
pub fn feature_scores(out_feats: &[f64], hr_feats: &[f64], dim: usize) -> Vec<f64> {
    let n_img = hr_feats.len() / dim;
    out_feats
        .chunks(n_img * dim)
        .map(|block| {
            block
                .chunks(dim)
                .zip(hr_feats.chunks(dim))
                .map(|(a, b)| {
                    a.iter()
                        .zip(b)
                        .map(|(u, v)| (u - v).powi(2))
                        .sum::<f64>()
                        .sqrt()
                })
                .sum::<f64>()
                / n_img as f64
        })
        .collect()
}

/// A text histogram of `v` in `bins` bins (eighth blocks, tallest bin full).
pub fn sparkline(v: &[f64], bins: usize) -> String {
    let (lo, hi) = v
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
    let mut counts = vec![0usize; bins.max(1)];
    for &x in v {
        let i = if hi > lo {
            (((x - lo) / (hi - lo)) * bins as f64).floor() as usize
        } else {
            0
        };
        counts[i.min(bins - 1)] += 1;
    }
    let top = *counts.iter().max().unwrap_or(&1).max(&1);
    const BARS: [char; 9] = [' ', '▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    counts
        .iter()
        .map(|&c| BARS[((c * 8) as f64 / top as f64).ceil() as usize])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_and_upsampling_on_a_hand_image() {
        let x: Vec<f32> = (0..64).map(|i| i as f32).collect();
        let y = pool(&x);
        // Block (0, 0): pixels 0, 1, 8, 9.
        assert_eq!(y[0], 4.5);
        // Block (3, 3): pixels 54, 55, 62, 63.
        assert_eq!(y[15], 58.5);
        let up = upsample(&y);
        assert_eq!(up[0], 4.5);
        assert_eq!(up[9], 4.5);
        assert_eq!(up[63], 58.5);
        assert_eq!(up[2], y[1]);
        // Pooling the upsampled image gives it back.
        assert_eq!(pool(&up), y);
    }

    #[test]
    fn spearman_on_hand_cases() {
        assert!((spearman(&[1.0, 2.0, 3.0, 4.0], &[10.0, 20.0, 30.0, 40.0]) - 1.0).abs() < 1e-12);
        assert!((spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        // d = (0, 1, -1, 0): rho = 1 - 6 * 2 / (4 * 15) = 0.8.
        assert!((spearman(&[1.0, 2.0, 3.0, 4.0], &[1.0, 3.0, 2.0, 4.0]) - 0.8).abs() < 1e-12);
        assert_eq!(ranks(&[5.0, 1.0, 5.0]), vec![2.5, 1.0, 2.5]);
    }

    #[test]
    fn scores_and_sparkline() {
        let hr = vec![0.0f32; 128];
        // Candidate 0: every pixel off by 0.2 -> MSE 0.04, PSNR 10 log10(4 / 0.04) = 20 dB.
        let mut out = vec![0.2f32; 128];
        out.extend(vec![0.0f32; 127]);
        out.push(2.0); // clipped to 1: MSE 1/64.
        let s = psnr_scores(&out, &hr);
        assert!((s[0] - 20.0).abs() < 1e-5, "{s:?}");
        assert!(s[1].is_infinite());
        let f = feature_scores(&[3.0, 4.0, 0.0, 0.0], &[0.0, 0.0, 0.0, 0.0], 2);
        assert_eq!(f, vec![2.5]);
        assert_eq!(sparkline(&[0.0, 0.0, 1.0], 2), "█▄");
    }
}

//! The inverse problems on the 8x8 digits (pixels in [-1, 1]): `y = A x0 + sigma_y v`, with the
//! measurement operator `A`, its adjoint `A^T` and its pseudo-inverse `A^+` on the host.
//!
//! - `inpaint-random`: keep a random 40% of the pixels (26 of 64, a mask per image);
//! - `inpaint-box`: the centre 4x4 box is missing (48 pixels kept);
//! - `sr2x`: `A` is 2x2 average pooling (64 -> 16), `A^+` nearest upsampling (`A A^+ = I`),
//!   `A^T` spreads each measurement over its block divided by 4.

use rand::seq::SliceRandom;
use rand::Rng;
use rand_distr::StandardNormal;

/// Pixels per image and the image side.
pub const PIXELS: usize = 64;
pub const SIDE: usize = 8;

/// The three tasks, in the order every run reports them.
pub const TASKS: [&str; 3] = ["inpaint-random", "inpaint-box", "sr2x"];

/// Metric-name forms of the tasks (`psnr_<task>`).
pub const TASK_KEYS: [&str; 3] = ["inpaint_random", "inpaint_box", "sr2x"];

/// A measurement operator.
#[derive(Clone, Debug, PartialEq)]
pub enum Operator {
    /// Keeps the listed pixels (ascending indices): `A` selects, `A^T = A^+` scatters.
    Mask(Vec<usize>),
    /// 2x2 average pooling of the 8x8 image (16 measurements, block-row-major).
    Pool2,
}

impl Operator {
    /// Keeps a random `keep` of the 64 pixels.
    pub fn random_mask(keep: usize, rng: &mut impl Rng) -> Operator {
        let mut idx: Vec<usize> = (0..PIXELS).collect();
        idx.shuffle(rng);
        let mut kept = idx[..keep].to_vec();
        kept.sort_unstable();
        Operator::Mask(kept)
    }

    /// Every pixel but the centre 4x4 box (rows and columns 2..6).
    pub fn centre_box() -> Operator {
        Operator::Mask(
            (0..PIXELS)
                .filter(|i| {
                    let (r, c) = (i / SIDE, i % SIDE);
                    !((2..6).contains(&r) && (2..6).contains(&c))
                })
                .collect(),
        )
    }

    /// Measurements per image (`m`).
    pub fn rows(&self) -> usize {
        match self {
            Operator::Mask(k) => k.len(),
            Operator::Pool2 => PIXELS / 4,
        }
    }

    /// `A x`.
    pub fn apply(&self, x: &[f32]) -> Vec<f32> {
        match self {
            Operator::Mask(k) => k.iter().map(|&i| x[i]).collect(),
            Operator::Pool2 => (0..SIDE / 2)
                .flat_map(|br| (0..SIDE / 2).map(move |bc| (br, bc)))
                .map(|(br, bc)| {
                    let p = |r: usize, c: usize| x[(2 * br + r) * SIDE + 2 * bc + c];
                    (p(0, 0) + p(0, 1) + p(1, 0) + p(1, 1)) / 4.0
                })
                .collect(),
        }
    }

    /// `A^T r`.
    pub fn adjoint(&self, r: &[f32]) -> Vec<f32> {
        match self {
            Operator::Mask(_) => self.pinv(r),
            Operator::Pool2 => self.pinv(r).into_iter().map(|v| v / 4.0).collect(),
        }
    }

    /// `A^+ y`: zeros (grey) at missing pixels; nearest upsampling for pooling.
    pub fn pinv(&self, y: &[f32]) -> Vec<f32> {
        let mut x = vec![0.0f32; PIXELS];
        match self {
            Operator::Mask(k) => {
                for (&i, &v) in k.iter().zip(y) {
                    x[i] = v;
                }
            }
            Operator::Pool2 => {
                for (i, v) in x.iter_mut().enumerate() {
                    let (r, c) = (i / SIDE, i % SIDE);
                    *v = y[(r / 2) * (SIDE / 2) + c / 2];
                }
            }
        }
        x
    }

    /// The observation drawn as an image: measured pixels, missing ones at -1 (blank);
    /// pooling shown upsampled.
    pub fn show(&self, y: &[f32]) -> Vec<f32> {
        match self {
            Operator::Mask(k) => {
                let mut x = vec![-1.0f32; PIXELS];
                for (&i, &v) in k.iter().zip(y) {
                    x[i] = v;
                }
                x
            }
            Operator::Pool2 => self.pinv(y),
        }
    }
}

/// One restoration problem: the image, its operator and its noisy measurement.
#[derive(Clone, Debug)]
pub struct Problem {
    /// Index into [`TASKS`].
    pub task: usize,
    /// Index of the test image.
    pub image: usize,
    pub x: Vec<f32>,
    pub op: Operator,
    pub y: Vec<f32>,
}

impl Problem {
    /// `||y - A x_hat|| / sqrt(m)`.
    pub fn meas_err(&self, x_hat: &[f32]) -> f64 {
        let ax = self.op.apply(x_hat);
        let ss: f64 = ax
            .iter()
            .zip(&self.y)
            .map(|(a, y)| (*y as f64 - *a as f64).powi(2))
            .sum();
        (ss / self.y.len() as f64).sqrt()
    }
}

/// The problems of every task for `n` images of `x_test` (64 values each), task-major:
/// rows `task * n + i`. Random masks and measurement noise come from `rng`.
pub fn problems(x_test: &[f32], n: usize, sigma_y: f64, rng: &mut impl Rng) -> Vec<Problem> {
    assert!(x_test.len() >= n * PIXELS, "{n} test images needed");
    let keep = (0.4 * PIXELS as f64).round() as usize;
    let mut out = Vec::with_capacity(3 * n);
    for task in 0..TASKS.len() {
        for i in 0..n {
            let x = x_test[i * PIXELS..(i + 1) * PIXELS].to_vec();
            let op = match task {
                0 => Operator::random_mask(keep, rng),
                1 => Operator::centre_box(),
                _ => Operator::Pool2,
            };
            let y = op
                .apply(&x)
                .into_iter()
                .map(|v| v + (sigma_y * rng.sample::<f64, _>(StandardNormal)) as f32)
                .collect();
            out.push(Problem {
                task,
                image: i,
                x,
                op,
                y,
            });
        }
    }
    out
}

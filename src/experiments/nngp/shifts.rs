//! The shifted test sets: additive Gaussian pixel noise (clipped to [0, 1]), rotation about the
//! image centre with bilinear interpolation (zero outside), and the left-right flip of 8x8
//! digits in [0, 1] (row-major rows of 64 pixels).

use rand::Rng;
use rand_distr::{Distribution, Normal};

/// Image side.
pub const SIDE: usize = 8;

/// Adds N(0, sigma^2) to every pixel and clips to [0, 1].
pub fn noisy(x: &[f64], sigma: f64, rng: &mut impl Rng) -> Vec<f64> {
    let normal = Normal::new(0.0, sigma).expect("a finite sigma");
    x.iter()
        .map(|v| (v + normal.sample(rng)).clamp(0.0, 1.0))
        .collect()
}

/// Mirrors every image left-right.
pub fn flipped(x: &[f64]) -> Vec<f64> {
    x.chunks(SIDE)
        .flat_map(|row| row.iter().rev().copied())
        .collect()
}

/// The pixel at (row, col) with zero outside the image.
fn pixel(img: &[f64], r: i64, c: i64) -> f64 {
    if (0..SIDE as i64).contains(&r) && (0..SIDE as i64).contains(&c) {
        img[r as usize * SIDE + c as usize]
    } else {
        0.0
    }
}

/// Rotates every image by `degrees` (counter-clockwise as displayed) about its centre: each
/// output pixel reads the input at the inversely rotated position, bilinearly.
pub fn rotated(x: &[f64], degrees: f64) -> Vec<f64> {
    let (s, c) = degrees.to_radians().sin_cos();
    let centre = (SIDE as f64 - 1.0) / 2.0;
    let mut out = Vec::with_capacity(x.len());
    for img in x.chunks(SIDE * SIDE) {
        for r in 0..SIDE {
            for col in 0..SIDE {
                // Output offsets (y down, x right); rotating the image by +theta (as displayed,
                // y pointing down) means reading the input at the offset rotated by -theta.
                let (dy, dx) = (r as f64 - centre, col as f64 - centre);
                let sx = c * dx - s * dy;
                let sy = s * dx + c * dy;
                let (fy, fx) = (sy + centre, sx + centre);
                let (y0, x0) = (fy.floor(), fx.floor());
                let (wy, wx) = (fy - y0, fx - x0);
                let (y0, x0) = (y0 as i64, x0 as i64);
                let v = (1.0 - wy) * (1.0 - wx) * pixel(img, y0, x0)
                    + (1.0 - wy) * wx * pixel(img, y0, x0 + 1)
                    + wy * (1.0 - wx) * pixel(img, y0 + 1, x0)
                    + wy * wx * pixel(img, y0 + 1, x0 + 1);
                out.push(v);
            }
        }
    }
    out
}

//! Pictures a run can show besides its scalar metrics: a grid of small grayscale images (8x8
//! digits: samples, restorations, the examples a network memorized) and a 2-D scatter of samples
//! against reference points. A run keeps the latest picture of each name (`pictures.json` in
//! its folder); the workbench draws them with half-blocks and braille.

use serde::{Deserialize, Serialize};

/// One picture.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Picture {
    /// Grayscale images of `height x width` pixels, row-major one after another, values in
    /// [0, 1] (0 black, 1 white); `captions` (optional, one per image) label them.
    Images {
        width: usize,
        height: usize,
        pixels: Vec<f32>,
        #[serde(default)]
        captions: Vec<String>,
    },
    /// 2-D points (`points`) drawn over reference points (`reference`, e.g. the target's
    /// samples), each `[x, y]`.
    Scatter {
        points: Vec<[f32; 2]>,
        #[serde(default)]
        reference: Vec<[f32; 2]>,
    },
}

/// Most images or points a picture keeps (memory stays bounded, drawing stays fast).
pub const MAX_IMAGES: usize = 64;
pub const MAX_POINTS: usize = 4096;

impl Picture {
    /// Images from rows of raw values, each row scaled to [0, 1] by `lo..hi` (values outside are
    /// clipped); keeps the first [`MAX_IMAGES`].
    pub fn images(
        width: usize,
        height: usize,
        rows: &[f32],
        lo: f32,
        hi: f32,
        captions: Vec<String>,
    ) -> Picture {
        let per = width * height;
        assert!(per > 0, "an image has pixels");
        let n = (rows.len() / per).min(MAX_IMAGES);
        let span = if hi > lo { hi - lo } else { 1.0 };
        let pixels = rows[..n * per]
            .iter()
            .map(|v| ((v - lo) / span).clamp(0.0, 1.0))
            .map(|v| if v.is_nan() { 0.0 } else { v })
            .collect();
        let mut captions = captions;
        captions.truncate(n);
        Picture::Images {
            width,
            height,
            pixels,
            captions,
        }
    }

    /// A scatter of `points` over `reference`, each thinned to at most [`MAX_POINTS`] by even
    /// strides.
    pub fn scatter(points: &[[f32; 2]], reference: &[[f32; 2]]) -> Picture {
        let thin = |p: &[[f32; 2]]| -> Vec<[f32; 2]> {
            let stride = p.len().div_ceil(MAX_POINTS).max(1);
            p.iter()
                .step_by(stride)
                .copied()
                .filter(|q| q[0].is_finite() && q[1].is_finite())
                .collect()
        };
        Picture::Scatter {
            points: thin(points),
            reference: thin(reference),
        }
    }

    /// Images in the picture.
    pub fn image_count(&self) -> usize {
        match self {
            Picture::Images {
                width,
                height,
                pixels,
                ..
            } => pixels.len() / (width * height).max(1),
            Picture::Scatter { .. } => 0,
        }
    }

    /// The bounding box `[x0, x1, y0, y1]` of a scatter's points and reference (None for images
    /// or when empty).
    pub fn bounds(&self) -> Option<[f64; 4]> {
        let Picture::Scatter { points, reference } = self else {
            return None;
        };
        let mut b = [f64::MAX, f64::MIN, f64::MAX, f64::MIN];
        for p in points.iter().chain(reference) {
            b[0] = b[0].min(p[0] as f64);
            b[1] = b[1].max(p[0] as f64);
            b[2] = b[2].min(p[1] as f64);
            b[3] = b[3].max(p[1] as f64);
        }
        (b[0] <= b[1]).then_some(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_scale_clip_and_count() {
        let rows: Vec<f32> = vec![-1.0, 0.0, 1.0, 3.0, 0.5, 0.5, 0.5, f32::NAN];
        let p = Picture::images(2, 2, &rows, -1.0, 1.0, vec!["a".into()]);
        match &p {
            Picture::Images {
                pixels, captions, ..
            } => {
                assert_eq!(&pixels[..4], &[0.0, 0.5, 1.0, 1.0]);
                assert_eq!(pixels[7], 0.0, "NaN draws black");
                assert_eq!(captions, &vec!["a".to_string()]);
            }
            _ => unreachable!(),
        }
        assert_eq!(p.image_count(), 2);
        let many = Picture::images(1, 1, &vec![0.0; 1000], 0.0, 1.0, vec![]);
        assert_eq!(many.image_count(), MAX_IMAGES);
    }

    #[test]
    fn scatter_thins_and_bounds() {
        let pts: Vec<[f32; 2]> = (0..10_000).map(|i| [i as f32, -(i as f32)]).collect();
        let p = Picture::scatter(&pts, &[[5.0, 5.0]]);
        match &p {
            Picture::Scatter { points, reference } => {
                assert!(points.len() <= MAX_POINTS);
                assert_eq!(reference.len(), 1);
            }
            _ => unreachable!(),
        }
        let b = p.bounds().unwrap();
        assert_eq!(b[0], 0.0);
        assert!(b[1] > 9000.0 && b[2] < -9000.0 && b[3] == 5.0);
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.contains("\"kind\":\"scatter\""));
        assert_eq!(serde_json::from_str::<Picture>(&json).unwrap(), p);
    }
}

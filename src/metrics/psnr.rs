//! Mean squared error and peak signal-to-noise ratio between two images (or any two equal-length
//! signals), for f32 or f64 values; sums are taken in f64.

/// Mean of the squared differences.
///
/// # Panics
/// If the inputs differ in length or are empty.
pub fn mse<T: Copy + Into<f64>>(a: &[T], b: &[T]) -> f64 {
    assert_eq!(a.len(), b.len(), "MSE needs equal lengths");
    assert!(!a.is_empty(), "MSE needs values");
    let total: f64 = a
        .iter()
        .zip(b)
        .map(|(u, v)| {
            let d = (*u).into() - (*v).into();
            d * d
        })
        .sum();
    total / a.len() as f64
}

/// Peak signal-to-noise ratio in decibels, `10 log10(max_value^2 / mse)`, where `max_value` is
/// the largest possible pixel value (1 for images in [0, 1], 255 for bytes). Infinite for
/// identical inputs.
pub fn psnr<T: Copy + Into<f64>>(a: &[T], b: &[T], max_value: f64) -> f64 {
    let error = mse(a, b);
    if error == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (max_value * max_value / error).log10()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mse_on_a_hand_case() {
        assert_eq!(mse(&[1.0, 2.0, 3.0], &[1.0, 4.0, 0.0]), 13.0 / 3.0);
        assert_eq!(mse(&[0.5f32, 0.0], &[0.0f32, 0.0]), 0.125);
    }

    #[test]
    fn psnr_takes_exact_values() {
        // MSE 1e-2 with peak 1: 10 log10(100) = 20 dB.
        let (a, b) = (vec![0.0; 8], vec![0.1; 8]);
        assert!((psnr(&a, &b, 1.0) - 20.0).abs() < 1e-9);
        // MSE 1 with peak 255: 20 log10(255).
        let expected = 20.0 * 255f64.log10();
        assert!((psnr(&[10.0, 20.0], &[11.0, 19.0], 255.0) - expected).abs() < 1e-12);
        assert!((expected - 48.130_803_608_679_1).abs() < 1e-9);
        // MSE 0.25 with peak 1 in f32: 10 log10(4).
        let got = psnr(&[0.5f32, 0.5], &[0.0f32, 1.0], 1.0);
        assert!((got - 10.0 * 4f64.log10()).abs() < 1e-12);
    }

    #[test]
    fn psnr_of_identical_inputs_is_infinite() {
        assert_eq!(psnr(&[0.3, 0.7], &[0.3, 0.7], 1.0), f64::INFINITY);
    }
}

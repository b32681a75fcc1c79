//! Host-side quantization for QuantNAS (dfdx has no rounding and no straight-through op):
//! uniform min-max rounding and its quantization-noise model, LSQ weight quantization
//! (per-channel learnable step, straight-through estimator) and HWGQ activation quantization
//! (half-wave Gaussian quantizer, step scaled by the tensor's RMS). Each quantizer returns the
//! quantized values together with what the taped forward needs to reproduce them with the
//! right gradient: `q = x * mask + offset` (gradient `mask` with respect to `x`) and, for LSQ,
//! `q = w * mask + step * coef` (gradient `coef` with respect to the step).

use rand::Rng;

/// Levels of a `bits`-bit unsigned quantizer minus one: `2^b - 1`.
pub fn levels(bits: u32) -> f64 {
    ((1u64 << bits) - 1) as f64
}

/// The range `max - min` of `x` (0 for an empty slice).
pub fn range(x: &[f32]) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    let (lo, hi) = x
        .iter()
        .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    (hi - lo) as f64
}

/// Uniform min-max rounding to `2^b` levels between the tensor's minimum and maximum:
/// `min + round((x - min) / delta) * delta`, `delta = (max - min) / (2^b - 1)`.
pub fn minmax_round(x: &[f32], bits: u32) -> Vec<f32> {
    let r = range(x);
    if r == 0.0 {
        return x.to_vec();
    }
    let lo = x.iter().fold(f32::MAX, |a, &b| a.min(b)) as f64;
    let delta = r / levels(bits);
    x.iter()
        .map(|&v| (lo + ((v as f64 - lo) / delta).round() * delta) as f32)
        .collect()
}

/// The quantization noise QuantNAS adds instead of rounding (detached: a constant on the
/// tape): `(max(x) - min(x)) / (2^b - 1) * u`, `u ~ U(-1/2, 1/2)`, the tensor's range taken
/// per tensor at every call.
pub fn quantization_noise(x: &[f32], bits: u32, rng: &mut impl Rng) -> Vec<f32> {
    let delta = range(x) / levels(bits);
    x.iter()
        .map(|_| (delta * (rng.gen::<f64>() - 0.5)) as f32)
        .collect()
}

/// LSQ's integer range for signed `bits`-bit weights: `(Qn, Qp) = (2^(b-1), 2^(b-1) - 1)`.
pub fn lsq_range(bits: u32) -> (f64, f64) {
    let half = (1u64 << (bits - 1)) as f64;
    (half, half - 1.0)
}

/// LSQ's initial step of one channel: `2 mean|w| / sqrt(Qp)`.
pub fn lsq_init(w: &[f32], bits: u32) -> f32 {
    let (_, qp) = lsq_range(bits);
    let mean = w.iter().map(|v| v.abs() as f64).sum::<f64>() / w.len().max(1) as f64;
    (2.0 * mean / qp.max(1.0).sqrt()).max(1e-8) as f32
}

/// LSQ quantization of a kernel with one step per output channel (`per` weights each):
/// `v = w / |s|`, `q = |s| * clamp(round(v), -Qn, Qp)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Lsq {
    pub q: Vec<f32>,
    /// 1 where `-Qn <= v <= Qp` (the straight-through gradient to the weight), else 0.
    pub mask: Vec<f32>,
    /// `dq / ds`: `sign(s) (round(v) - v)` inside the range, `sign(s)` times the clip level
    /// (`-Qn` or `Qp`) outside (the host rounds with `|s|`: `q = |s| round(w / |s|)`, whose
    /// derivative in the signed step `s` carries `sign(s)`).
    pub coef: Vec<f32>,
}

pub fn lsq(w: &[f32], steps: &[f32], per: usize, bits: u32) -> Lsq {
    assert_eq!(w.len(), steps.len() * per, "one step per output channel");
    let (qn, qp) = lsq_range(bits);
    let n = w.len();
    let (mut q, mut mask, mut coef) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    for (i, &wi) in w.iter().enumerate() {
        let signed = steps[i / per] as f64;
        let sign = if signed < 0.0 { -1.0 } else { 1.0 };
        let s = signed.abs().max(1e-8);
        let v = wi as f64 / s;
        let (m, c, level) = if v < -qn {
            (0.0, -qn, -qn)
        } else if v > qp {
            (0.0, qp, qp)
        } else {
            (1.0, v.round() - v, v.round())
        };
        q[i] = (s * level) as f32;
        mask[i] = m as f32;
        coef[i] = (sign * c) as f32;
    }
    Lsq { q, mask, coef }
}

/// `E[(q(z) - z)^2; z > 0]` for `z ~ N(0, 1)` and the uniform quantizer with levels
/// `{0, s, ..., (2^b - 1) s}` (midpoint rule on [0, 8]).
pub fn hwgq_mse(s: f64, bits: u32) -> f64 {
    let top = levels(bits);
    let n = 4000;
    let h = 8.0 / n as f64;
    let mut acc = 0.0;
    for i in 0..n {
        let z = (i as f64 + 0.5) * h;
        let q = (z / s).round().min(top) * s;
        let pdf = (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt();
        acc += (q - z) * (q - z) * pdf * h;
    }
    acc
}

/// The step of the optimal uniform quantizer with levels `{0, s, ..., (2^b - 1) s}` for
/// `ReLU(z)`, `z ~ N(0, 1)` (the half-wave Gaussian quantizer), minimizing the mean squared
/// error; found by golden-section search over a numerical integral.
pub fn hwgq_step(bits: u32) -> f64 {
    let mse = |s: f64| hwgq_mse(s, bits);
    let (mut a, mut b) = (1e-3, 3.0);
    let g = (5f64.sqrt() - 1.0) / 2.0;
    for _ in 0..80 {
        let (c, d) = (b - g * (b - a), a + g * (b - a));
        if mse(c) < mse(d) {
            b = d;
        } else {
            a = c;
        }
    }
    0.5 * (a + b)
}

/// HWGQ of `relu(h)`: the step is `hwgq_step(bits) * sigma` with `sigma` the RMS of the
/// pre-activation `h` (a Gaussian scale estimated per tensor; there is no normalization layer
/// to fix it at 1). Returns `(q, mask)`: mask 1 where `relu(h)` is at most the top level
/// `(2^b - 1) step`, 0 above it, where the output is clipped (straight-through only where the
/// quantizer is not saturated).
pub fn hwgq(h: &[f32], step_unit: f64, bits: u32) -> (Vec<f32>, Vec<f32>) {
    let sigma = (h.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / h.len().max(1) as f64)
        .sqrt()
        .max(1e-8);
    let step = step_unit * sigma;
    let top = levels(bits);
    let mut q = Vec::with_capacity(h.len());
    let mut mask = Vec::with_capacity(h.len());
    for &v in h {
        let r = (v as f64).max(0.0);
        if r > top * step {
            q.push((top * step) as f32);
            mask.push(0.0);
        } else {
            q.push(((r / step).round() * step) as f32);
            mask.push(1.0);
        }
    }
    (q, mask)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn minmax_rounding_hits_exact_levels() {
        // Range [0, 3], 2 bits: delta 1, levels 0 1 2 3.
        let x = [0.0, 0.4, 0.6, 1.49, 2.51, 3.0];
        assert_eq!(minmax_round(&x, 2), vec![0.0, 0.0, 1.0, 1.0, 3.0, 3.0]);
        // Range [-1, 1], 1 bit: levels -1 and 1.
        assert_eq!(
            minmax_round(&[-1.0, -0.1, 0.1, 1.0], 1),
            vec![-1.0, -1.0, 1.0, 1.0]
        );
    }

    #[test]
    fn noise_is_bounded_by_half_a_step_with_the_right_variance() {
        let x: Vec<f32> = (0..=100).map(|i| i as f32 / 100.0).collect();
        let mut rng = StdRng::seed_from_u64(0);
        let mut all = Vec::new();
        for _ in 0..200 {
            all.extend(quantization_noise(&x, 4, &mut rng));
        }
        let delta = 1.0 / 15.0;
        assert!(all.iter().all(|n| (n.abs() as f64) <= delta / 2.0 + 1e-7));
        let var = all.iter().map(|n| (*n as f64).powi(2)).sum::<f64>() / all.len() as f64;
        assert!((var / (delta * delta / 12.0) - 1.0).abs() < 0.03, "{var}");
    }

    #[test]
    fn lsq_matches_a_hand_computation() {
        // 2 bits: Qn 2, Qp 1; channel steps 0.5 and 1.
        let w = [0.3, -0.7, 2.0, -3.0, 0.4, 1.6];
        let l = lsq(&w, &[0.5, 1.0], 3, 2);
        // v = 0.6 -1.4 4 | -3 0.4 1.6
        assert_eq!(l.q, vec![0.5, -0.5, 0.5, -2.0, 0.0, 1.0]);
        assert_eq!(l.mask, vec![1.0, 1.0, 0.0, 0.0, 1.0, 0.0]);
        let want = [1.0 - 0.6, -1.0 + 1.4, 1.0, -2.0, -0.4, 1.0];
        for (c, w) in l.coef.iter().zip(want) {
            assert!((*c as f64 - w).abs() < 1e-6, "{c} vs {w}");
        }
        // q = w * mask + s * coef reproduces the quantized values.
        for i in 0..6 {
            let s = [0.5f32, 1.0][i / 3];
            assert!((w[i] * l.mask[i] + s * l.coef[i] - l.q[i]).abs() < 1e-6);
        }
        assert_eq!(lsq_range(8), (128.0, 127.0));
        assert!((lsq_init(&[1.0, -1.0], 8) - 2.0 / 127f32.sqrt()).abs() < 1e-7);
    }

    #[test]
    fn lsq_with_a_negative_step_matches_the_positive_one_and_its_derivative() {
        // The host rounds with |s|; the tape's q = w mask + s coef must reproduce q and give
        // dq/ds = d/ds (|s| clamp(round(w / |s|))) = sign(s) (round(v) - v) (or sign(s) level).
        let w = [0.3f32, -0.7, 2.0, -3.0, 0.4, 1.6];
        let (pos, neg) = (lsq(&w, &[0.5, 1.0], 3, 2), lsq(&w, &[-0.5, -1.0], 3, 2));
        assert_eq!(pos.q, neg.q);
        assert_eq!(pos.mask, neg.mask);
        for i in 0..6 {
            let s = [-0.5f32, -1.0][i / 3];
            assert_eq!(neg.coef[i], -pos.coef[i]);
            assert!((w[i] * neg.mask[i] + s * neg.coef[i] - neg.q[i]).abs() < 1e-6);
            // Central difference of the host quantizer in the signed step (no rounding
            // boundary within +-1e-4 of these points): with the integer held fixed it is
            // sign(s) level; the straight-through estimator adds d/ds of the rounding residual,
            // -sign(s) v inside the range (v = w / |s|).
            let h = 1e-4f64;
            let at = |st: f64| {
                let mut steps = [-0.5f32, -1.0];
                steps[i / 3] = st as f32;
                lsq(&w, &steps, 3, 2).q[i] as f64
            };
            let fd = (at(s as f64 + h) - at(s as f64 - h)) / (2.0 * h);
            let v = w[i] as f64 / s.abs() as f64;
            let ste = fd + neg.mask[i] as f64 * v;
            assert!(
                (ste - neg.coef[i] as f64).abs() < 1e-2,
                "{i}: {ste} vs {}",
                neg.coef[i]
            );
        }
    }

    #[test]
    fn hwgq_passes_gradient_only_below_the_clip() {
        // One large value fixes sigma; the step is `unit * sigma`, the top level 3 steps (2 bits).
        let big = 1000.0f32;
        let probe = |r: f32| {
            let h = [big, r];
            let sigma = ((big as f64).powi(2) + (r as f64).powi(2)) / 2.0;
            let step = 0.001 * sigma.sqrt();
            let (q, mask) = hwgq(&h, 0.001, 2);
            (q[1] as f64, mask[1], step)
        };
        let step = 0.001 * (big as f64 / 2f64.sqrt());
        let top = 3.0 * step;
        // Just below the top level: passes; just above (output clipped; rounding would also
        // give the top level up to 3.5 steps): blocked.
        let (q, m, s) = probe((top * 0.999) as f32);
        assert_eq!(m, 1.0);
        assert!((q - 3.0 * s).abs() < 1e-4);
        let (q, m, s) = probe((top * 1.01) as f32);
        assert_eq!(m, 0.0);
        assert!((q - 3.0 * s).abs() < 1e-4);
        let (_, m, _) = probe((top * 1.4) as f32);
        assert_eq!(m, 0.0);
        let (q, m, _) = probe(-1.0);
        assert_eq!((q, m), (0.0, 1.0));
    }

    #[test]
    fn hwgq_steps_are_optimal_and_shrink_with_bits() {
        let s: Vec<f64> = [1, 2, 3, 4, 8].iter().map(|&b| hwgq_step(b)).collect();
        assert!(s.windows(2).all(|w| w[1] < w[0]), "{s:?}");
        for (b, step) in [1, 2, 3, 4, 8].iter().zip(&s) {
            let at = hwgq_mse(*step, *b);
            assert!(at < hwgq_mse(step * 1.02, *b) && at < hwgq_mse(step * 0.98, *b));
        }
        // 1 bit, levels {0, s}: E[(q - z)^2] by hand at s = 1 (threshold 1/2):
        // int_0^.5 z^2 phi + int_.5^inf (1 - z)^2 phi, from Phi and phi.
        let phi = |z: f64| (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt();
        // int_0^a z^2 phi = (Phi(a) - 1/2) - a phi(a); Phi(0.5) = 0.691462461274013.
        let big = 0.691462461274013;
        let first = (big - 0.5) - 0.5 * phi(0.5);
        // int_a^inf (1 - z)^2 phi = (1 - Phi(a)) - 2 phi(a) + [a phi(a) + 1 - Phi(a)].
        let second = (1.0 - big) - 2.0 * phi(0.5) + 0.5 * phi(0.5) + (1.0 - big);
        assert!((hwgq_mse(1.0, 1) - (first + second)).abs() < 1e-5);
        let (q, mask) = hwgq(&[-1.0, 0.0, 0.1, 100.0], 0.5, 2);
        // sigma = sqrt((1 + 0.01 + 10000) / 4) = 50.00..., step 25.0: levels 0 25 50 75.
        assert_eq!(mask, vec![1.0, 1.0, 1.0, 0.0]);
        assert_eq!(q[0], 0.0);
        assert!((q[3] as f64 - 75.0 * (10001.01f64 / 4.0).sqrt() / 50.0).abs() < 1e-3);
    }
}

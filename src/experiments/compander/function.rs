//! The weight compander `w = Psi(v) = a * arctan(v / b)` (Cakaj, Mehnert & Yang, Eq. 1), its
//! derivative `dPsi/dv = a b / (b^2 + v^2)` (Eq. 3), its inverse `v = b * tan(w / a)` (Eq. 4, the
//! initialization) and the derivatives in `a` and `b` (the learnable version).
//!
//! dfdx 0.13 has no arctangent, so [`atan`] builds one from its ops (any device): three
//! half-angle reductions `atan x = 2 atan(x / (1 + sqrt(1 + x^2)))` bring the argument into
//! `|t| <= tan(pi/16) = 0.199`, where the odd Taylor series to `t^21` is exact to below f64
//! rounding (`0.199^23 / 23 < 4e-18`). Host twins in f64 are used by the tests.

use dfdx::prelude::*;

/// Half-angle reductions before the series.
const REDUCTIONS: usize = 3;
/// Odd Taylor terms `t^(2k+1) / (2k+1)`, k = 0..TERMS.
const TERMS: usize = 11;

fn lit<E: Dtype>(x: f64) -> E {
    E::from_f64(x).expect("representable")
}

/// `arctan(x)` elementwise, from dfdx ops (no tape).
pub fn atan<S: Shape, E: Dtype, D: Device<E>>(x: Tensor<S, E, D>) -> Tensor<S, E, D> {
    let mut t = x;
    for _ in 0..REDUCTIONS {
        let den = (t.clone().square() + E::ONE).sqrt() + E::ONE;
        t = t / den;
    }
    let t2 = t.clone().square();
    let coef = |k: usize| {
        let sign = if k.is_multiple_of(2) { 1.0 } else { -1.0 };
        lit::<E>(sign / (2 * k + 1) as f64)
    };
    let mut p = t2.clone() * coef(TERMS - 1) + coef(TERMS - 2);
    for k in (0..TERMS - 2).rev() {
        p = p * t2.clone() + coef(k);
    }
    t * p * lit::<E>((1u32 << REDUCTIONS) as f64)
}

/// The compander's scalars: `w = a * arctan(v / b)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Compander {
    pub a: f64,
    pub b: f64,
}

impl Compander {
    /// `Psi(v)`, elementwise on the device.
    pub fn apply<S: Shape, E: Dtype, D: Device<E>>(&self, v: Tensor<S, E, D>) -> Tensor<S, E, D> {
        atan(v * lit::<E>(1.0 / self.b)) * lit::<E>(self.a)
    }

    /// `dPsi/dv = a b / (b^2 + v^2)`, elementwise on the device.
    pub fn slope<S: Shape, E: Dtype, D: Device<E>>(&self, v: Tensor<S, E, D>) -> Tensor<S, E, D> {
        (v.square() + lit::<E>(self.b * self.b)).recip() * lit::<E>(self.a * self.b)
    }

    /// `dPsi/db = -a v / (b^2 + v^2)`, elementwise on the device (`dPsi/da = Psi / a`).
    pub fn slope_b<S: Shape, E: Dtype, D: Device<E>>(&self, v: Tensor<S, E, D>) -> Tensor<S, E, D> {
        let den = v.clone().square() + lit::<E>(self.b * self.b);
        v / den * lit::<E>(-self.a)
    }

    /// The bound `|Psi(v)| < a pi / 2`.
    pub fn bound(&self) -> f64 {
        self.a * std::f64::consts::FRAC_PI_2
    }

    /// `Psi(v)` on the host.
    pub fn value(&self, v: f64) -> f64 {
        self.a * (v / self.b).atan()
    }

    /// `dPsi/dv` on the host.
    pub fn derivative(&self, v: f64) -> f64 {
        self.a * self.b / (self.b * self.b + v * v)
    }

    /// `v = Psi^{-1}(w) = b tan(w / a)` (Eq. 4): the latent weight that makes the network start
    /// at `w`. None when `|w| >= a pi / 2` (the compander cannot reach it).
    pub fn inverse(&self, w: f64) -> Option<f64> {
        (w.abs() < self.bound()).then(|| self.b * (w / self.a).tan())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_arctangent_matches_the_host_in_f64() {
        let dev = Cpu::default();
        let xs: Vec<f64> = (-400..=400)
            .map(|i| (i as f64 / 20.0).powi(3))
            .chain([0.0, 1e-300, -1e-12, 1e6, -1e9, 3.0f64.sqrt()])
            .collect();
        let n = xs.len();
        let got = atan(dev.tensor_from_vec(xs.clone(), (n,))).as_vec();
        for (x, g) in xs.iter().zip(got) {
            let want = x.atan();
            assert!(
                (g - want).abs() <= 4.0 * f64::EPSILON * want.abs().max(1e-300),
                "atan({x}) = {g}, want {want}"
            );
        }
    }

    #[test]
    fn device_arctangent_is_exact_in_f32() {
        let dev = Cpu::default();
        let xs: Vec<f32> = (-300..=300).map(|i| i as f32 * 0.037).collect();
        let got = atan(dev.tensor_from_vec(xs.clone(), (xs.len(),))).as_vec();
        for (x, g) in xs.iter().zip(got) {
            let want = (*x as f64).atan();
            assert!(
                (g as f64 - want).abs() <= 4e-7 * want.abs().max(1e-6),
                "atan({x})"
            );
        }
    }

    #[test]
    fn derivatives_and_inverse_match_their_definitions() {
        let c = Compander { a: 1.0, b: 0.6 };
        let dev = Cpu::default();
        let vs: Vec<f64> = (-50..=50).map(|i| i as f64 * 0.07).collect();
        let n = vs.len();
        let v = dev.tensor_from_vec(vs.clone(), (n,));
        let slope = c.slope(v.clone()).as_vec();
        let slope_b = c.slope_b(v.clone()).as_vec();
        let value = c.apply(v).as_vec();
        let h = 1e-6;
        for (i, &x) in vs.iter().enumerate() {
            assert!((value[i] - c.value(x)).abs() < 1e-15);
            let fd = (c.value(x + h) - c.value(x - h)) / (2.0 * h);
            assert!((slope[i] - fd).abs() < 1e-8, "dPsi/dv at {x}");
            assert!((c.derivative(x) - slope[i]).abs() < 1e-15);
            let cb = |b: f64| Compander { a: c.a, b }.value(x);
            let fd_b = (cb(c.b + h) - cb(c.b - h)) / (2.0 * h);
            assert!((slope_b[i] - fd_b).abs() < 1e-8, "dPsi/db at {x}");
            let w = c.value(x);
            assert!((c.inverse(w).unwrap() - x).abs() < 1e-12 * (1.0 + x.abs()));
        }
        // Slope a/b at zero, bound a pi/2, nothing beyond it.
        assert!((c.derivative(0.0) - 1.0 / 0.6).abs() < 1e-15);
        assert_eq!(c.inverse(c.bound()), None);
    }
}

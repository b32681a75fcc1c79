//! Special functions the closed forms need (dfdx has none): ln Gamma, the regularized
//! incomplete gamma and beta functions, the standard normal CDF and its inverse.

/// `ln Gamma(x)` for `x > 0` (Lanczos, g = 7, nine coefficients; about 1e-15 relative).
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Gamma(x) Gamma(1 - x) = pi / sin(pi x).
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + G + 0.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// The regularized lower incomplete gamma function `P(a, x) = gamma(a, x) / Gamma(a)`
/// (series below `a + 1`, Lentz's continued fraction of `Q` above; about 1e-14 relative).
pub fn gamma_p(a: f64, x: f64) -> f64 {
    assert!(a > 0.0, "gamma_p needs a > 0");
    if x <= 0.0 {
        return 0.0;
    }
    if x < a + 1.0 {
        (gamma_series(a, x).ln() - x + a * x.ln() - ln_gamma(a)).exp()
    } else {
        1.0 - gamma_q_fraction(a, x)
    }
}

/// `Q(a, x) = 1 - P(a, x)`, without the cancellation of `1 - P` for large `x`.
pub fn gamma_q(a: f64, x: f64) -> f64 {
    if x < a + 1.0 {
        1.0 - gamma_p(a, x)
    } else {
        gamma_q_fraction(a, x)
    }
}

/// `Q(a, x) e^x` (a > 0, x >= 0), finite where `Q` alone underflows (large `x`): the series of
/// `P` below `a + 1` (as `e^x - x^a sum / Gamma(a)`), the continued fraction above.
pub fn gamma_q_times_exp(a: f64, x: f64) -> f64 {
    assert!(a > 0.0, "gamma_q_times_exp needs a > 0");
    if x <= 0.0 {
        return 1.0;
    }
    if x < a + 1.0 {
        x.exp() - (a * x.ln() - ln_gamma(a)).exp() * gamma_series(a, x)
    } else {
        gamma_q_fraction_times_exp(a, x)
    }
}

/// `sum_n x^n / (a (a + 1) ... (a + n))`, so that `P(a, x) = e^-x x^a sum / Gamma(a)`.
fn gamma_series(a: f64, x: f64) -> f64 {
    let (mut ap, mut sum, mut del) = (a, 1.0 / a, 1.0 / a);
    for _ in 0..10_000 {
        ap += 1.0;
        del *= x / ap;
        sum += del;
        if del.abs() < sum.abs() * 1e-16 {
            break;
        }
    }
    sum
}

fn gamma_q_fraction(a: f64, x: f64) -> f64 {
    gamma_q_fraction_times_exp(a, x) * (-x).exp()
}

/// `Q(a, x) e^x` by Lentz's continued fraction (x >= a + 1).
fn gamma_q_fraction_times_exp(a: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let mut b = x + 1.0 - a;
    let mut c = 1.0 / TINY;
    let mut d = 1.0 / b;
    let mut h = d;
    for i in 1..10_000 {
        let an = -(i as f64) * (i as f64 - a);
        b += 2.0;
        d = an * d + b;
        if d.abs() < TINY {
            d = TINY;
        }
        c = b + an / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < 1e-16 {
            break;
        }
    }
    (a * x.ln() - ln_gamma(a)).exp() * h
}

/// The standard normal CDF `Phi(x)`, through `erfc(|x| / sqrt 2) = Q(1/2, x^2 / 2)` (accurate
/// in both tails).
pub fn normal_cdf(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    let tail = 0.5 * gamma_q(0.5, 0.5 * x * x);
    if x >= 0.0 {
        1.0 - tail
    } else {
        tail
    }
}

/// The standard normal quantile `Phi^{-1}(p)`: Acklam's rational approximation (1e-9)
/// refined by Newton steps on [`normal_cdf`]; `-inf` at 0, `+inf` at 1.
pub fn normal_quantile(p: f64) -> f64 {
    if p.is_nan() || !(0.0..=1.0).contains(&p) {
        return f64::NAN;
    }
    if p == 0.0 {
        return f64::NEG_INFINITY;
    }
    if p == 1.0 {
        return f64::INFINITY;
    }
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    let mut x = if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    };
    for _ in 0..3 {
        let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
        if pdf <= 0.0 {
            break;
        }
        // Newton on the smaller tail, where the CDF keeps its relative accuracy.
        let err = if x > 0.0 {
            (1.0 - p) - (1.0 - normal_cdf(x))
        } else {
            normal_cdf(x) - p
        };
        x -= err / pdf;
    }
    x
}

/// The regularized incomplete beta function `I_x(a, b)` (Lentz's continued fraction, with the
/// symmetry `I_x(a, b) = 1 - I_{1-x}(b, a)` where it converges faster).
pub fn beta_inc(a: f64, b: f64, x: f64) -> f64 {
    assert!(a > 0.0 && b > 0.0, "beta_inc needs a, b > 0");
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    if x < (a + 1.0) / (a + b + 2.0) {
        ln_front.exp() * beta_fraction(a, b, x) / a
    } else {
        1.0 - ln_front.exp() * beta_fraction(b, a, 1.0 - x) / b
    }
}

fn beta_fraction(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..10_000 {
        let m = m as f64;
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < 1e-16 {
            break;
        }
    }
    h
}

/// The `q` quantile of Beta(a, b): the `x` with `I_x(a, b) = q`, by bisection (`I` increases
/// in `x`) to 1e-15.
pub fn beta_quantile(q: f64, a: f64, b: f64) -> f64 {
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if beta_inc(a, b, mid) < q {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo < 1e-15 {
            break;
        }
    }
    0.5 * (lo + hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaled_upper_gamma_matches_q_and_stays_finite() {
        for &a in &[0.3, 1.0, 2.5, 7.0] {
            for &x in &[0.0, 0.1, 1.0, 3.0, 8.0, 20.0] {
                let q = gamma_q(a, x);
                let scaled = gamma_q_times_exp(a, x) * (-x).exp();
                assert!((scaled - q).abs() < 1e-12 * q.max(1e-300), "a {a} x {x}");
            }
        }
        // Q(1, x) = e^-x exactly; for large x, Q(a, x) e^x ~ x^(a-1) / Gamma(a).
        assert!((gamma_q_times_exp(1.0, 900.0) - 1.0).abs() < 1e-12);
        let (a, x) = (0.3, 900.0);
        let asym = ((a - 1.0) * f64::ln(x) - ln_gamma(a)).exp();
        assert!((gamma_q_times_exp(a, x) / asym - 1.0).abs() < 1e-3);
    }

    #[test]
    fn factorials_half_and_reflection() {
        for (n, f) in [(1.0, 1.0), (2.0, 1.0), (5.0, 24.0), (11.0, 3_628_800.0)] {
            assert!((ln_gamma(n) - f64::ln(f)).abs() < 1e-12, "{n}");
        }
        let pi = std::f64::consts::PI;
        assert!((ln_gamma(0.5) - pi.sqrt().ln()).abs() < 1e-13);
        // Gamma(0.25) Gamma(0.75) = pi sqrt(2).
        assert!((ln_gamma(0.25) + ln_gamma(0.75) - (pi * 2f64.sqrt()).ln()).abs() < 1e-12);
    }
    #[test]
    fn incomplete_gamma_and_normal_cdf_against_known_values() {
        // P(1, x) = 1 - exp(-x); Phi at a few points (Abramowitz & Stegun tables).
        for x in [0.1, 1.0, 3.0, 20.0] {
            assert!(
                (gamma_p(1.0, x) - (1.0 - f64::exp(-x))).abs() < 1e-14,
                "{x}"
            );
        }
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-15);
        assert!((normal_cdf(1.0) - 0.841_344_746_068_542_9).abs() < 1e-14);
        assert!((normal_cdf(-1.959_963_984_540_054) - 0.025).abs() < 1e-14);
        assert!((normal_cdf(-5.0) - 2.866_515_718_791_939e-7).abs() < 1e-20);
    }

    #[test]
    fn normal_quantile_against_known_values() {
        for (p, z) in [
            (0.5, 0.0),
            (0.9, 1.281_551_565_544_600_4),
            (0.975, 1.959_963_984_540_054),
            (0.999, 3.090_232_306_167_813_5),
            (1e-6, -4.753_424_308_822_899),
        ] {
            assert!(
                (normal_quantile(p) - z).abs() < 1e-12,
                "{p}: {}",
                normal_quantile(p)
            );
        }
        for p in [1e-10, 0.01, 0.3, 0.7, 0.99, 1.0 - 1e-9] {
            assert!(
                (normal_cdf(normal_quantile(p)) - p).abs() < 1e-13 * p.max(1e-3),
                "{p}"
            );
        }
    }

    #[test]
    fn incomplete_beta_against_closed_forms_and_its_quantile() {
        // I_x(1, b) = 1 - (1 - x)^b; I_x(a, 1) = x^a; I_x(2, 2) = 3x^2 - 2x^3.
        for x in [0.01, 0.3, 0.5, 0.9, 0.999] {
            assert!((beta_inc(1.0, 7.0, x) - (1.0 - f64::powi(1.0 - x, 7))).abs() < 1e-14);
            assert!((beta_inc(5.0, 1.0, x) - x.powi(5)).abs() < 1e-14);
            assert!((beta_inc(2.0, 2.0, x) - (3.0 * x * x - 2.0 * x * x * x)).abs() < 1e-14);
        }
        // The quantile inverts it where the density is not vanishing.
        for x in [0.02, 0.05, 0.08, 0.12, 0.2] {
            let q = beta_inc(3.5, 40.0, x);
            assert!((beta_quantile(q, 3.5, 40.0) - x).abs() < 1e-10, "{x}");
        }
    }
}

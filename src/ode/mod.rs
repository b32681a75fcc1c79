//! Adaptive explicit Runge-Kutta: Dormand-Prince 5(4) with an embedded error estimate, absolute
//! and relative tolerances, step-size control and statistics (function evaluations, accepted and
//! rejected steps). The state is any [`State`]: a host `Vec<f64>` (a batch is one flat state),
//! or an `f64` device tensor, with which the whole solve stays on the device and only the error
//! norm of each attempted step (and a finiteness flag) comes back.
//!
//! Every requested output time caps the step size (there is no dense output), so a solve with
//! many output times spends more evaluations than one asked only for its end point.

/// Dormand-Prince 5(4) coefficients (Dormand & Prince 1980).
pub mod dp5 {
    pub const C: [f64; 7] = [0.0, 1.0 / 5.0, 3.0 / 10.0, 4.0 / 5.0, 8.0 / 9.0, 1.0, 1.0];
    pub const A: [[f64; 6]; 7] = [
        [0.0; 6],
        [1.0 / 5.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        [3.0 / 40.0, 9.0 / 40.0, 0.0, 0.0, 0.0, 0.0],
        [44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0, 0.0, 0.0, 0.0],
        [
            19372.0 / 6561.0,
            -25360.0 / 2187.0,
            64448.0 / 6561.0,
            -212.0 / 729.0,
            0.0,
            0.0,
        ],
        [
            9017.0 / 3168.0,
            -355.0 / 33.0,
            46732.0 / 5247.0,
            49.0 / 176.0,
            -5103.0 / 18656.0,
            0.0,
        ],
        [
            35.0 / 384.0,
            0.0,
            500.0 / 1113.0,
            125.0 / 192.0,
            -2187.0 / 6784.0,
            11.0 / 84.0,
        ],
    ];
    /// Fifth-order weights (equal to the last row of A: first same as last).
    pub const B: [f64; 7] = [
        35.0 / 384.0,
        0.0,
        500.0 / 1113.0,
        125.0 / 192.0,
        -2187.0 / 6784.0,
        11.0 / 84.0,
        0.0,
    ];
    /// Fourth-order embedded weights.
    pub const B_HAT: [f64; 7] = [
        5179.0 / 57600.0,
        0.0,
        7571.0 / 16695.0,
        393.0 / 640.0,
        -92097.0 / 339200.0,
        187.0 / 2100.0,
        1.0 / 40.0,
    ];
    /// `B - B_HAT`: the error estimate is `h * sum_i E[i] k_i`.
    pub const fn e(i: usize) -> f64 {
        B[i] - B_HAT[i]
    }
}

/// What the solver needs of a state: linear combinations, the scaled RMS norm of the step
/// control and a finiteness test.
pub trait State: Clone {
    /// `self + c_1 v_1 + c_2 v_2 + ...`, added in order.
    fn plus(&self, terms: &[(f64, &Self)]) -> Self;
    /// `c_1 v_1 + c_2 v_2 + ...` (at least one term), added in order.
    fn combination(terms: &[(f64, &Self)]) -> Self;
    /// `sqrt(mean((self_i / (atol + rtol max(|a_i|, |b_i|)))^2))`.
    fn scaled_rms(&self, a: &Self, b: &Self, tol: Tolerances) -> f64;
    /// True when every entry is finite.
    fn is_finite(&self) -> bool;
}

impl State for Vec<f64> {
    fn plus(&self, terms: &[(f64, &Self)]) -> Self {
        let mut out = self.clone();
        for (c, v) in terms {
            out.iter_mut().zip(v.iter()).for_each(|(o, x)| *o += c * x);
        }
        out
    }
    fn combination(terms: &[(f64, &Self)]) -> Self {
        vec![0.0; terms[0].1.len()].plus(terms)
    }
    fn scaled_rms(&self, a: &Self, b: &Self, tol: Tolerances) -> f64 {
        error_norm(self, a, b, tol)
    }
    fn is_finite(&self) -> bool {
        self.iter().all(|v| v.is_finite())
    }
}

/// A batch of states (`batch x d`) on a dfdx device: combinations are `axpy`s on the device,
/// and only the step-control norm and the finiteness test come back (one scalar each).
impl<D: dfdx::prelude::Device<f64>> State for dfdx::prelude::Tensor<(usize, usize), f64, D> {
    fn plus(&self, terms: &[(f64, &Self)]) -> Self {
        let mut out = self.clone();
        for (c, v) in terms {
            out.axpy(1.0, *v, *c);
        }
        out
    }
    fn combination(terms: &[(f64, &Self)]) -> Self {
        let (c0, v0) = terms[0];
        let mut out = v0.clone();
        out.axpy(c0, v0, 0.0);
        out.plus(&terms[1..])
    }
    fn scaled_rms(&self, a: &Self, b: &Self, tol: Tolerances) -> f64 {
        use crate::nn::transfer::Download;
        use dfdx::prelude::*;
        let scale = a.clone().abs().maximum(b.clone().abs()) * tol.rtol + tol.atol;
        (self.clone() / scale)
            .square()
            .mean::<Rank0, _>()
            .sqrt()
            .download()[0]
    }
    fn is_finite(&self) -> bool {
        use crate::nn::transfer::Download;
        use dfdx::prelude::*;
        // 0 * x is 0 for a finite x and NaN for NaN or infinity.
        (self.clone() * 0.0).sum::<Rank0, _>().download()[0] == 0.0
    }
}

/// Tolerances of the step-size control.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerances {
    pub atol: f64,
    pub rtol: f64,
}

/// What a solve cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Function evaluations.
    pub nfe: usize,
    pub accepted: usize,
    pub rejected: usize,
}

/// An accepted step: from `t` with size `h`, and its scaled error estimate (at most 1).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Step {
    pub t: f64,
    pub h: f64,
    pub err: f64,
}

/// The states at the requested output times, with the accepted steps and statistics.
#[derive(Clone, Debug)]
pub struct Solution<S = Vec<f64>> {
    pub ys: Vec<S>,
    pub steps: Vec<Step>,
    /// The state at the start of every accepted step, then the final state
    /// (`steps.len() + 1` entries).
    pub states: Vec<S>,
    pub stats: Stats,
}

/// The scaled RMS norm of an error estimate: `sqrt(mean((err_i / (atol + rtol max(|y0_i|,
/// |y1_i|)))^2))`. A step is accepted when it is at most 1.
pub fn error_norm(err: &[f64], y0: &[f64], y1: &[f64], tol: Tolerances) -> f64 {
    let n = err.len().max(1) as f64;
    (err.iter()
        .zip(y0.iter().zip(y1))
        .map(|(e, (a, b))| (e / (tol.atol + tol.rtol * a.abs().max(b.abs()))).powi(2))
        .sum::<f64>()
        / n)
        .sqrt()
}

/// One Dormand-Prince step from `(t, y)` with `k1 = f(t, y)` given. Returns the fifth-order
/// solution, the error estimate `y5 - y4` and `f(t + h, y5)` (the next step's `k1`). Six new
/// function evaluations.
pub fn dp5_step<S: State>(
    f: &mut dyn FnMut(f64, &S) -> S,
    t: f64,
    y: &S,
    k1: &S,
    h: f64,
) -> (S, S, S) {
    let mut k: Vec<S> = Vec::with_capacity(7);
    k.push(k1.clone());
    for s in 1..7 {
        let terms: Vec<(f64, &S)> = k
            .iter()
            .enumerate()
            .filter(|(j, _)| dp5::A[s][*j] != 0.0)
            .map(|(j, kj)| (h * dp5::A[s][j], kj))
            .collect();
        let ys = y.plus(&terms);
        if s == 6 {
            // The last stage is evaluated at the fifth-order solution itself.
            let k7 = f(t + h, &ys);
            let mut terms: Vec<(f64, &S)> = k
                .iter()
                .enumerate()
                .map(|(j, kj)| (h * dp5::e(j), kj))
                .collect();
            terms.push((h * dp5::e(6), &k7));
            let err = S::combination(&terms);
            return (ys, err, k7);
        }
        k.push(f(t + dp5::C[s] * h, &ys));
    }
    unreachable!()
}

/// Initial step size (Hairer, Norsett & Wanner, II.4), one extra function evaluation.
pub fn initial_step<S: State>(
    f: &mut dyn FnMut(f64, &S) -> S,
    t0: f64,
    y0: &S,
    f0: &S,
    tol: Tolerances,
) -> f64 {
    let rms = |v: &S| v.scaled_rms(y0, y0, tol);
    let (d0, d1) = (rms(y0), rms(f0));
    let h0 = if d0 < 1e-5 || d1 < 1e-5 {
        1e-6
    } else {
        0.01 * d0 / d1
    };
    let y1 = y0.plus(&[(h0, f0)]);
    let f1 = f(t0 + h0, &y1);
    let diff = f1.plus(&[(-1.0, f0)]);
    let d2 = rms(&diff) / h0;
    let h1 = if d1.max(d2) <= 1e-15 {
        (h0 * 1e-3).max(1e-6)
    } else {
        (0.01 / d1.max(d2)).powf(1.0 / 5.0)
    };
    (100.0 * h0).min(h1)
}

/// Step-size control: the step grows or shrinks by `SAFETY * err^(-1/5)`, clamped to
/// `[MIN_FACTOR, MAX_FACTOR]` (Hairer, Norsett & Wanner II.4; scipy's RK45 and torchdiffeq use
/// the same constants); the step accepted right after a rejection does not grow.
pub const SAFETY: f64 = 0.9;
pub const MIN_FACTOR: f64 = 0.2;
pub const MAX_FACTOR: f64 = 10.0;

/// The factor by which a step of scaled error `e` changes the next step size.
pub fn step_factor(e: f64) -> f64 {
    if e == 0.0 {
        MAX_FACTOR
    } else {
        (SAFETY * e.powf(-1.0 / 5.0)).clamp(MIN_FACTOR, MAX_FACTOR)
    }
}

/// Solves `y' = f(t, y)` from `(t0, y0)`, returning the states at each of `t_out` (increasing,
/// after `t0`). Fails after `max_steps` step attempts or on a non-finite state.
pub fn solve<S: State>(
    f: &mut dyn FnMut(f64, &S) -> S,
    t0: f64,
    y0: &S,
    t_out: &[f64],
    tol: Tolerances,
    max_steps: usize,
) -> Result<Solution<S>, String> {
    let mut stats = Stats::default();
    let mut count = |t: f64, y: &S, stats: &mut Stats| {
        stats.nfe += 1;
        f(t, y)
    };
    let mut t = t0;
    let mut y = y0.clone();
    let mut k1 = count(t, &y, &mut stats);
    let mut h = {
        let mut g = |t: f64, y: &S| count(t, y, &mut stats);
        initial_step(&mut g, t0, y0, &k1, tol)
    };
    let mut ys = Vec::with_capacity(t_out.len());
    let mut steps = Vec::new();
    let mut states = vec![y.clone()];
    let mut rejected = false;
    for &target in t_out {
        while t < target {
            if stats.accepted + stats.rejected >= max_steps {
                return Err(format!("more than {max_steps} steps (t = {t:.4})"));
            }
            let last = target - t <= h * (1.0 + 1e-12);
            let h_try = if last { target - t } else { h };
            let (y_new, err, k7) = {
                let mut g = |t: f64, y: &S| count(t, y, &mut stats);
                dp5_step(&mut g, t, &y, &k1, h_try)
            };
            let e = err.scaled_rms(&y, &y_new, tol);
            if !e.is_finite() || !y_new.is_finite() {
                return Err(format!("non-finite state at t = {t:.4}"));
            }
            let factor = step_factor(e);
            if e <= 1.0 {
                steps.push(Step {
                    t,
                    h: h_try,
                    err: e,
                });
                stats.accepted += 1;
                t = if last { target } else { t + h_try };
                y = y_new;
                states.push(y.clone());
                k1 = k7;
                // No growth on the step right after a rejection.
                let factor = if rejected { factor.min(1.0) } else { factor };
                rejected = false;
                // A step cut short by an output time does not shrink the next one.
                h = if last {
                    h.max(h_try * factor)
                } else {
                    h_try * factor
                };
            } else {
                stats.rejected += 1;
                rejected = true;
                h = h_try * factor.min(1.0);
            }
        }
        ys.push(y.clone());
    }
    Ok(Solution {
        ys,
        steps,
        states,
        stats,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::ptr_arg)] // the closures' state type is Vec<f64>
    use super::*;

    fn decay(_t: f64, y: &Vec<f64>) -> Vec<f64> {
        y.iter().map(|v| -v).collect()
    }

    fn oscillator(_t: f64, y: &Vec<f64>) -> Vec<f64> {
        // y'' = -y as a system: (x, v)' = (v, -x).
        vec![y[1], -y[0]]
    }

    #[test]
    fn exponential_decay_within_tolerance_and_nfe_rises_as_tolerance_tightens() {
        let mut last_nfe = 0;
        for tol in [1e-3, 1e-5, 1e-7, 1e-9] {
            let t = Tolerances {
                atol: tol,
                rtol: tol,
            };
            let s = solve(&mut decay, 0.0, &vec![1.0, 2.0], &[5.0], t, 100_000).unwrap();
            let exact = [(-5.0f64).exp(), 2.0 * (-5.0f64).exp()];
            for (a, b) in s.ys[0].iter().zip(exact) {
                // Global error stays within a small multiple of the tolerance.
                assert!((a - b).abs() < 10.0 * tol, "tol {tol}: {a} vs {b}");
            }
            assert!(s.stats.nfe > last_nfe, "tol {tol}: nfe {}", s.stats.nfe);
            assert_eq!(s.stats.nfe, 2 + 6 * (s.stats.accepted + s.stats.rejected));
            last_nfe = s.stats.nfe;
        }
    }

    #[test]
    fn harmonic_oscillator_over_several_periods() {
        let mut last_nfe = 0;
        for tol in [1e-4, 1e-6, 1e-8] {
            let t = Tolerances {
                atol: tol,
                rtol: tol,
            };
            let t_end = 4.0 * std::f64::consts::PI;
            let s = solve(&mut oscillator, 0.0, &vec![1.0, 0.0], &[t_end], t, 100_000).unwrap();
            let (x, v) = (s.ys[0][0], s.ys[0][1]);
            assert!((x - t_end.cos()).abs() < 50.0 * tol, "tol {tol}: x {x}");
            assert!((v + t_end.sin()).abs() < 50.0 * tol, "tol {tol}: v {v}");
            assert!(s.stats.nfe > last_nfe);
            last_nfe = s.stats.nfe;
        }
    }

    #[test]
    fn output_times_cap_the_step_size() {
        let t = Tolerances {
            atol: 1e-6,
            rtol: 1e-6,
        };
        let sparse = solve(&mut decay, 0.0, &vec![1.0], &[4.0], t, 10_000).unwrap();
        let times: Vec<f64> = (1..=80).map(|i| i as f64 * 0.05).collect();
        let dense = solve(&mut decay, 0.0, &vec![1.0], &times, t, 10_000).unwrap();
        assert!(dense.stats.nfe > sparse.stats.nfe);
        assert!((dense.ys.last().unwrap()[0] - (-4.0f64).exp()).abs() < 1e-5);
        for (ti, y) in times.iter().zip(&dense.ys) {
            assert!((y[0] - (-ti).exp()).abs() < 1e-5);
        }
    }

    #[test]
    fn error_estimate_matches_the_difference_from_an_accurate_step() {
        // The embedded estimate y5 - y4 approximates the local error of the fourth-order
        // solution, exact - y4 (the reference is the closed-form step of the oscillator). The
        // mismatch is the fifth-order solution's own error, O(h^6) against O(h^5): its relative
        // size shrinks with h.
        let y0 = vec![1.0, 0.3];
        let mut last = f64::INFINITY;
        for h in [0.4, 0.2, 0.1, 0.05] {
            let k1 = oscillator(0.0, &y0);
            let (y5, err, _) = dp5_step(&mut oscillator, 0.0, &y0, &k1, h);
            let exact = [
                y0[0] * h.cos() + y0[1] * h.sin(),
                -y0[0] * h.sin() + y0[1] * h.cos(),
            ];
            let y4: Vec<f64> = y5.iter().zip(&err).map(|(a, e)| a - e).collect();
            let true_err4: Vec<f64> = y4.iter().zip(&exact).map(|(a, b)| b - a).collect();
            let mismatch = err
                .iter()
                .zip(&true_err4)
                .map(|(e, t)| (e - t).abs())
                .fold(0.0, f64::max);
            let size = true_err4.iter().map(|t| t.abs()).fold(0.0, f64::max);
            let rel = mismatch / size;
            assert!(rel < last, "h {h}: relative mismatch {rel} did not shrink");
            last = rel;
        }
        assert!(last < 0.1, "relative mismatch {last} at h = 0.05");
    }

    #[test]
    fn device_states_solve_like_host_states() {
        // The same decay, with the state a dfdx tensor: the same steps, NFE and end state.
        use dfdx::prelude::*;
        let dev = Cpu::default();
        let t = Tolerances {
            atol: 1e-8,
            rtol: 1e-8,
        };
        let host = solve(&mut decay, 0.0, &vec![1.0, 2.0], &[1.0, 3.0], t, 100_000).unwrap();
        let mut f = |_t: f64, y: &Tensor<(usize, usize), f64, Cpu>| y.clone().negate();
        let y0 = dev.tensor_from_vec(vec![1.0, 2.0], (1usize, 2usize));
        let on_device = solve(&mut f, 0.0, &y0, &[1.0, 3.0], t, 100_000).unwrap();
        assert_eq!(on_device.stats, host.stats);
        assert_eq!(on_device.states.len(), host.states.len());
        for (a, b) in on_device.ys.iter().zip(&host.ys) {
            for (x, y) in a.as_vec().iter().zip(b) {
                assert!((x - y).abs() < 1e-14, "{x} vs {y}");
            }
        }
    }

    /// Function evaluations of scipy 1.x's `solve_ivp(method="RK45", rtol=1e-6, atol=1e-6)`
    /// (`sol.nfev`, scipy 1.17.1), asked only for the end point: exponential decay `y' = -y`
    /// from (1, 2) over [0, 5]; the spiral `y' = A y^3`, `A = [[-0.1, 2], [-2, -0.1]]`, from
    /// (2, 0) over [0, 5]; van der Pol with mu = 1 from (2, 0) over [0, 10]; and `y' = 0` from 1
    /// over [0, 1] and [0, 5].
    const SCIPY_RK45_NFE: [(&str, usize); 5] = [
        ("decay", 104),
        ("spiral", 674),
        ("van der Pol", 572),
        ("zero over [0, 1]", 44),
        ("zero over [0, 5]", 50),
    ];

    #[test]
    fn nfe_matches_scipy_rk45() {
        let t = Tolerances {
            atol: 1e-6,
            rtol: 1e-6,
        };
        let mut spiral = |_t: f64, y: &Vec<f64>| {
            let (a, b) = (y[0].powi(3), y[1].powi(3));
            vec![-0.1 * a + 2.0 * b, -2.0 * a - 0.1 * b]
        };
        let mut vdp = |_t: f64, y: &Vec<f64>| vec![y[1], (1.0 - y[0] * y[0]) * y[1] - y[0]];
        let mut zero = |_t: f64, y: &Vec<f64>| vec![0.0; y.len()];
        let ours = [
            solve(&mut decay, 0.0, &vec![1.0, 2.0], &[5.0], t, 100_000),
            solve(&mut spiral, 0.0, &vec![2.0, 0.0], &[5.0], t, 100_000),
            solve(&mut vdp, 0.0, &vec![2.0, 0.0], &[10.0], t, 100_000),
            solve(&mut zero, 0.0, &vec![1.0], &[1.0], t, 100_000),
            solve(&mut zero, 0.0, &vec![1.0], &[5.0], t, 100_000),
        ];
        for ((name, want), got) in SCIPY_RK45_NFE.iter().zip(ours) {
            let got = got.unwrap().stats.nfe;
            let rel = (got as f64 - *want as f64).abs() / *want as f64;
            assert!(rel <= 0.07, "{name}: NFE {got} vs scipy's {want}");
            println!("{name}: NFE {got} vs scipy RK45 {want}");
        }
    }

    #[test]
    fn blow_up_is_an_error_not_a_panic() {
        let mut f = |_t: f64, y: &Vec<f64>| y.iter().map(|v| v * v).collect::<Vec<_>>();
        let t = Tolerances {
            atol: 1e-6,
            rtol: 1e-6,
        };
        // y' = y^2 from 1 blows up at t = 1.
        assert!(solve(&mut f, 0.0, &vec![1.0], &[2.0], t, 2_000).is_err());
    }
}

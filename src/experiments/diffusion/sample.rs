//! Samplers on the device: DDIM (any `eta`, respaced to K steps; `eta = 1` on the full schedule
//! is DDPM's ancestral sampler) and DDIM inversion. The noise prediction comes from a closure
//! `eps(x_t, t)`, so a caller can add a condition, guidance or a correction; the fresh noise of
//! stochastic steps is drawn on the host from a seeded generator (the same on every device).

use dfdx::prelude::*;
use rand::Rng;
use rand_distr::StandardNormal;

use super::net::upload_f32;
use super::schedule::NoiseSchedule;
use crate::nn::models::Matrix;

/// A noise prediction `eps(x_t, t)` for a batch of rows at one timestep.
pub type NoisePredictor<'a, E, D> = dyn FnMut(&Matrix<E, D>, usize) -> Matrix<E, D> + 'a;

/// `n x dim` standard normal values from `rng`.
pub fn gaussian_rows(n: usize, dim: usize, rng: &mut impl Rng) -> Vec<f32> {
    (0..n * dim)
        .map(|_| rng.sample::<f64, _>(StandardNormal) as f32)
        .collect()
}

/// `a x + b e + c z` (`z` uploaded from the host when `c != 0`).
fn combine<E: Dtype, D: Device<E>>(
    x: Matrix<E, D>,
    e: Matrix<E, D>,
    a: f64,
    b: f64,
    c: f64,
    rng: &mut impl Rng,
) -> Matrix<E, D> {
    let e_of = |v: f64| E::from_f64(v).expect("representable");
    let (n, dim) = *x.shape();
    let mut out = x * e_of(a) + e * e_of(b);
    if c != 0.0 {
        let z = upload_f32::<E, D>(out.device(), &gaussian_rows(n, dim, rng), dim);
        out = out + z * e_of(c);
    }
    out
}

/// Runs the reverse process from `x_top` (at the last of `timesteps`, ascending) down to clean
/// data: one DDIM step per timestep, `eps` evaluated once per step (K = `timesteps.len()`
/// network evaluations). `after_step(t, x)` sees every intermediate state (guidance, pictures).
pub fn ddim_sample<E: Dtype, D: Device<E>>(
    schedule: &NoiseSchedule,
    timesteps: &[usize],
    x_top: Matrix<E, D>,
    eta: f64,
    eps: &mut NoisePredictor<'_, E, D>,
    rng: &mut impl Rng,
) -> Matrix<E, D> {
    let mut x = x_top;
    for i in (0..timesteps.len()).rev() {
        let t = timesteps[i];
        let to = (i > 0).then(|| timesteps[i - 1]);
        let e = eps(&x, t);
        let c = schedule.ddim(Some(t), to, eta);
        x = combine(x, e, c.x_coef, c.eps_coef, c.noise_std, rng);
    }
    x
}

/// DDIM inversion (`eta = 0`): from clean data `x0` up to the last of `timesteps`, the noise
/// at each step predicted at the current point with the target timestep's label.
pub fn ddim_invert<E: Dtype, D: Device<E>>(
    schedule: &NoiseSchedule,
    timesteps: &[usize],
    x0: Matrix<E, D>,
    eps: &mut NoisePredictor<'_, E, D>,
) -> Matrix<E, D> {
    let mut x = x0;
    let mut unused = rand::rngs::mock::StepRng::new(0, 0);
    for i in 0..timesteps.len() {
        let from = (i > 0).then(|| timesteps[i - 1]);
        let to = timesteps[i];
        let e = eps(&x, to);
        let c = schedule.ddim(from, Some(to), 0.0);
        x = combine(x, e, c.x_coef, c.eps_coef, 0.0, &mut unused);
    }
    x
}

/// Spherical interpolation between two latents (rows of the same length), as used for
/// interpolating Gaussian noise: `sin((1 - a) th) / sin th * p + sin(a th) / sin th * q`.
pub fn slerp(p: &[f32], q: &[f32], a: f64) -> Vec<f32> {
    let dot: f64 = p.iter().zip(q).map(|(x, y)| *x as f64 * *y as f64).sum();
    let np = p.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nq = q.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let cos = (dot / (np * nq).max(1e-300)).clamp(-1.0, 1.0);
    let th = cos.acos();
    if th.abs() < 1e-6 {
        return p
            .iter()
            .zip(q)
            .map(|(x, y)| ((1.0 - a) * *x as f64 + a * *y as f64) as f32)
            .collect();
    }
    let (wp, wq) = (((1.0 - a) * th).sin() / th.sin(), (a * th).sin() / th.sin());
    p.iter()
        .zip(q)
        .map(|(x, y)| (wp * *x as f64 + wq * *y as f64) as f32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::transfer::Download;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    /// Data `N(m, s^2 I)`: the exact noise prediction is
    /// `E[eps | x_t] = sqrt(1 - abar) (x_t - sqrt(abar) m) / (abar s^2 + 1 - abar)`.
    fn exact_eps(
        schedule: &NoiseSchedule,
        m: f64,
        s: f64,
    ) -> impl FnMut(&Matrix<f64, Cpu>, usize) -> Matrix<f64, Cpu> + '_ {
        move |x, t| {
            let a = schedule.abar[t];
            let k = (1.0 - a).sqrt() / (a * s * s + 1.0 - a);
            (x.clone() - a.sqrt() * m) * k
        }
    }

    fn moments(v: &[f64]) -> (f64, f64) {
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        (mean, v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n)
    }

    #[test]
    fn samplers_reach_the_gaussian_target_with_the_exact_noise_prediction() {
        let schedule = NoiseSchedule::ddpm();
        let dev = Cpu::default();
        let mut rng = StdRng::seed_from_u64(5);
        let (m, s) = (0.5, 0.3);
        let n = 4000;
        for (k, eta, tol) in [(100usize, 0.0, 0.01), (1000, 1.0, 0.01)] {
            let ts = schedule.respaced(k);
            let top: Vec<f64> = (0..n).map(|_| rng.sample(StandardNormal)).collect();
            let x = dev.tensor_from_vec(top, (n, 1));
            let mut eps = exact_eps(&schedule, m, s);
            let out = ddim_sample(&schedule, &ts, x, eta, &mut eps, &mut rng).download();
            let (mean, var) = moments(&out);
            assert!((mean - m).abs() < 0.03, "K {k}: mean {mean}");
            assert!((var - s * s).abs() < tol + 0.1 * s * s, "K {k}: var {var}");
        }
    }

    #[test]
    fn inversion_then_sampling_returns_the_data() {
        // With the exact field and many steps, the deterministic sampler undoes inversion up to
        // the first-order error of evaluating the noise at the step's start (about 1/K).
        let schedule = NoiseSchedule::ddpm();
        let dev = Cpu::default();
        let ts = schedule.respaced(500);
        let x0 = vec![0.2, 0.9, 0.5, 0.1];
        let x = dev.tensor_from_vec(x0.clone(), (4, 1));
        let mut eps = exact_eps(&schedule, 0.5, 0.3);
        let latent = ddim_invert(&schedule, &ts, x, &mut eps);
        // The latent of a Gaussian's point is its standardized value (the probability-flow
        // map of N(m, s^2) to N(0, 1) is affine).
        for (z, x) in latent.download().iter().zip(&x0) {
            assert!(
                (z - (x - 0.5) / 0.3).abs() < 0.02,
                "{z} vs {}",
                (x - 0.5) / 0.3
            );
        }
        let mut rng = StdRng::seed_from_u64(0);
        let back = ddim_sample(&schedule, &ts, latent, 0.0, &mut eps, &mut rng).download();
        for (b, x) in back.iter().zip(&x0) {
            assert!((b - x).abs() < 0.012, "{b} vs {x}");
        }
    }

    #[test]
    fn slerp_keeps_the_norm_of_equal_norm_endpoints() {
        let p = [1.0f32, 0.0];
        let q = [0.0f32, 1.0];
        let mid = slerp(&p, &q, 0.5);
        assert!((mid[0] - mid[1]).abs() < 1e-6);
        assert!(((mid[0] * mid[0] + mid[1] * mid[1]).sqrt() - 1.0).abs() < 1e-6);
        assert_eq!(slerp(&p, &q, 0.0), p.to_vec());
    }
}

//! The DDPM noise schedule and the DDIM update as coefficients on the host.
//!
//! Timesteps are `0..T`; `abar(t) = prod_{s <= t} (1 - beta_s)` and level "clean" (`None`) has
//! `abar = 1`. The forward process is `x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps`. One DDIM
//! step (Song, Meng, Ermon 2021, eq. 12) from level `t` to an earlier level `s`, given the
//! predicted noise `e`:
//! `x_s = sqrt(abar_s) x0_hat + sqrt(1 - abar_s - sigma^2) e + sigma z`,
//! `x0_hat = (x_t - sqrt(1 - abar_t) e) / sqrt(abar_t)`,
//! `sigma = eta sqrt((1 - abar_s) / (1 - abar_t)) sqrt(1 - abar_t / abar_s)`.
//! With `eta = 1` on the full schedule this is DDPM's ancestral step; with `eta = 0` it is the
//! deterministic sampler, and the same map run from `s` up to `t` is DDIM inversion.

/// A noise schedule.
#[derive(Clone, Debug, PartialEq)]
pub struct NoiseSchedule {
    pub betas: Vec<f64>,
    /// `abar[t] = prod_{s <= t} (1 - betas[s])`.
    pub abar: Vec<f64>,
}

/// The linear map of one step: `x_next = x_coef x + eps_coef e + noise_std z`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepCoefficients {
    pub x_coef: f64,
    pub eps_coef: f64,
    pub noise_std: f64,
}

impl NoiseSchedule {
    /// `steps` betas spaced linearly from `beta_start` to `beta_end`.
    pub fn linear(steps: usize, beta_start: f64, beta_end: f64) -> NoiseSchedule {
        assert!(steps >= 2, "a schedule needs at least two steps");
        assert!(
            0.0 < beta_start && beta_start <= beta_end && beta_end < 1.0,
            "betas in (0, 1), increasing"
        );
        let betas: Vec<f64> = (0..steps)
            .map(|i| beta_start + (beta_end - beta_start) * i as f64 / (steps - 1) as f64)
            .collect();
        let mut abar = Vec::with_capacity(steps);
        let mut prod = 1.0;
        for b in &betas {
            prod *= 1.0 - b;
            abar.push(prod);
        }
        NoiseSchedule { betas, abar }
    }

    /// DDPM's schedule: T = 1000, beta from 1e-4 to 0.02.
    pub fn ddpm() -> NoiseSchedule {
        NoiseSchedule::linear(1000, 1e-4, 0.02)
    }

    pub fn steps(&self) -> usize {
        self.betas.len()
    }

    /// `abar` at a level (`None`: clean data, 1).
    pub fn abar_at(&self, t: Option<usize>) -> f64 {
        t.map_or(1.0, |t| self.abar[t])
    }

    /// `(sqrt(abar_t), sqrt(1 - abar_t))`: how `x_t` mixes data and noise.
    pub fn mix(&self, t: usize) -> (f64, f64) {
        (self.abar[t].sqrt(), (1.0 - self.abar[t]).sqrt())
    }

    /// The `k` timesteps a respaced sampler visits, ascending and evenly spaced in
    /// `[0, T - 1]` (rounded), so the sampler starts at the last level whatever `k` is.
    pub fn respaced(&self, k: usize) -> Vec<usize> {
        let t = self.steps();
        assert!(k >= 1 && k <= t, "between 1 and {t} sampling steps");
        if k == 1 {
            return vec![t - 1];
        }
        (0..k)
            .map(|i| ((i * (t - 1)) as f64 / (k - 1) as f64).round() as usize)
            .collect()
    }

    /// The DDIM map from level `from` to level `to` (either direction; `None` is clean data).
    /// `eta > 0` only when going down (`to` earlier than `from`).
    pub fn ddim(&self, from: Option<usize>, to: Option<usize>, eta: f64) -> StepCoefficients {
        let a_from = self.abar_at(from);
        let a_to = self.abar_at(to);
        let sigma = if eta > 0.0 {
            assert!(a_to >= a_from, "stochastic steps go towards the data");
            eta * ((1.0 - a_to) / (1.0 - a_from)).sqrt() * (1.0 - a_from / a_to).max(0.0).sqrt()
        } else {
            0.0
        };
        let dir = (1.0 - a_to - sigma * sigma).max(0.0).sqrt();
        let ratio = (a_to / a_from).sqrt();
        StepCoefficients {
            x_coef: ratio,
            eps_coef: dir - ratio * (1.0 - a_from).sqrt(),
            noise_std: sigma,
        }
    }

    /// The predicted clean data from `x_t` and the predicted noise: `(x0_coef, eps_coef)` with
    /// `x0_hat = x0_coef x_t + eps_coef e`.
    pub fn x0_coefficients(&self, t: usize) -> (f64, f64) {
        let a = self.abar[t];
        (1.0 / a.sqrt(), -(1.0 - a).sqrt() / a.sqrt())
    }

    /// The signal-to-noise ratio `abar_t / (1 - abar_t)`.
    pub fn snr(&self, t: usize) -> f64 {
        self.abar[t] / (1.0 - self.abar[t])
    }
}

/// The sinusoidal embedding of timestep `t` (`dim` values, even): `sin(t w_k)` then
/// `cos(t w_k)` with `w_k = 10000^(-k / (dim / 2))`, as in the Transformer and DDPM.
pub fn time_embedding(t: f64, dim: usize) -> Vec<f64> {
    assert!(dim >= 2 && dim.is_multiple_of(2), "an even embedding width");
    let half = dim / 2;
    let freqs = (0..half).map(|k| (-(10000f64.ln()) * k as f64 / half as f64).exp());
    let (s, c): (Vec<f64>, Vec<f64>) = freqs.map(|w| ((t * w).sin(), (t * w).cos())).unzip();
    s.into_iter().chain(c).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ddpm_schedule_values() {
        let s = NoiseSchedule::ddpm();
        assert_eq!(s.steps(), 1000);
        assert!((s.betas[0] - 1e-4).abs() < 1e-15 && (s.betas[999] - 0.02).abs() < 1e-15);
        assert!((s.abar[0] - (1.0 - 1e-4)).abs() < 1e-15);
        // log abar_T = sum log(1 - beta): about -10.1 for this schedule, abar_T ~ 4e-5.
        let direct: f64 = s.betas.iter().map(|b| (1.0 - b).ln()).sum();
        assert!((s.abar[999].ln() - direct).abs() < 1e-9);
        assert!(s.abar[999] > 3e-5 && s.abar[999] < 5e-5, "{}", s.abar[999]);
        assert_eq!(s.respaced(4), vec![0, 333, 666, 999]);
        assert_eq!(s.respaced(1), vec![999]);
        assert_eq!(s.respaced(1000), (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn deterministic_step_with_the_true_noise_recovers_the_data() {
        // x_t built from x0 and eps; a DDIM step to "clean" with the true eps gives x0 back,
        // and a step to any level s gives exactly the forward-process point at s.
        let s = NoiseSchedule::ddpm();
        let (x0, eps) = (0.7, -1.3);
        for &t in &[10usize, 400, 999] {
            let (a, b) = s.mix(t);
            let xt = a * x0 + b * eps;
            let c = s.ddim(Some(t), None, 0.0);
            assert!((c.x_coef * xt + c.eps_coef * eps - x0).abs() < 1e-9);
            let c = s.ddim(Some(t), Some(5), 0.0);
            let (a5, b5) = s.mix(5);
            assert!((c.x_coef * xt + c.eps_coef * eps - (a5 * x0 + b5 * eps)).abs() < 1e-9);
            // Inversion is the same map upwards: from level 5 back to t.
            let up = s.ddim(Some(5), Some(t), 0.0);
            let x5 = a5 * x0 + b5 * eps;
            assert!((up.x_coef * x5 + up.eps_coef * eps - xt).abs() < 1e-9);
            let (p, q) = s.x0_coefficients(t);
            assert!((p * xt + q * eps - x0).abs() < 1e-9);
        }
    }

    #[test]
    fn eta_one_on_the_full_schedule_is_the_ddpm_posterior_variance() {
        // sigma^2 = (1 - abar_{t-1}) / (1 - abar_t) beta_t: DDPM's beta-tilde.
        let s = NoiseSchedule::ddpm();
        for &t in &[1usize, 50, 999] {
            let c = s.ddim(Some(t), Some(t - 1), 1.0);
            let tilde = (1.0 - s.abar[t - 1]) / (1.0 - s.abar[t]) * s.betas[t];
            assert!((c.noise_std.powi(2) - tilde).abs() < 1e-12);
            // The mean is DDPM's: (x_t - beta_t / sqrt(1 - abar_t) e) / sqrt(1 - beta_t).
            let alpha = 1.0 - s.betas[t];
            assert!((c.x_coef - 1.0 / alpha.sqrt()).abs() < 1e-9);
            let want = -s.betas[t] / (1.0 - s.abar[t]).sqrt() / alpha.sqrt();
            assert!((c.eps_coef - want).abs() < 1e-9, "{} vs {want}", c.eps_coef);
        }
    }

    #[test]
    fn embedding_layout() {
        let e = time_embedding(3.0, 8);
        assert_eq!(e.len(), 8);
        assert!((e[0] - 3f64.sin()).abs() < 1e-15 && (e[4] - 3f64.cos()).abs() < 1e-15);
        let w1 = 10000f64.powf(-0.25);
        assert!((e[1] - (3.0 * w1).sin()).abs() < 1e-12);
    }
}

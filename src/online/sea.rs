//! The SEA environment: at round t nature fixes a centre (or mean) `c_t` by a path chosen before
//! the game (oblivious) and draws additive gradient noise `xi_t ~ N(0, s^2/d I)`; the learner's
//! loss is `f_t(x) = F(x; c_t) + <xi_t, x>`. Because the noise enters only linearly,
//! `sigma_t^2 = sup_x E|grad f_t(x) - grad F_t(x)|^2 = E|xi_t|^2 = s^2` exactly, and the
//! adversarial variation `sup_x |grad F_t(x) - grad F_(t-1)(x)|^2` has a closed form per family.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

/// The smooth convex family `F(x; c)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// Pseudo-Huber: `F(x; c) = sum_i (sqrt(1 + (x_i - c_i)^2) - 1)`: convex, 1-smooth.
    Huber,
    /// Linear: `F(x; mu) = <mu, x>` (0-smooth).
    Linear,
}

impl Family {
    pub fn parse(s: &str) -> Family {
        match s {
            "linear" => Family::Linear,
            _ => Family::Huber,
        }
    }

    /// Smoothness constant L of `F` in x.
    pub fn smoothness(self) -> f64 {
        match self {
            Family::Huber => 1.0,
            Family::Linear => 0.0,
        }
    }

    pub fn value(self, x: &[f64], c: &[f64]) -> f64 {
        match self {
            Family::Huber => x.iter().zip(c).map(|(a, b)| huber(a - b)).sum::<f64>(),
            Family::Linear => super::dot(x, c),
        }
    }

    pub fn grad(self, x: &[f64], c: &[f64]) -> Vec<f64> {
        match self {
            Family::Huber => x.iter().zip(c).map(|(a, b)| huber_d(a - b)).collect(),
            Family::Linear => c.to_vec(),
        }
    }

    /// `sup_x |grad F(x; a) - grad F(x; b)|^2` over all of R^d. Linear: `|a - b|^2`. Pseudo-Huber:
    /// per coordinate the difference `phi'(u - a_i) - phi'(u - b_i)` peaks at the midpoint
    /// `u = (a_i + b_i)/2` (phi'' is even and peaks at 0), where it is
    /// `delta / sqrt(1 + delta^2/4)`, `delta = a_i - b_i`; the coordinates peak independently.
    /// Over the ball this is exact when the midpoint (0 on coordinates with `delta = 0`) lies
    /// in it, and an upper bound otherwise.
    pub fn variation(self, a: &[f64], b: &[f64]) -> f64 {
        match self {
            Family::Linear => super::dist2(a, b),
            Family::Huber => a
                .iter()
                .zip(b)
                .map(|(x, y)| {
                    let d = x - y;
                    d * d / (1.0 + 0.25 * d * d)
                })
                .sum(),
        }
    }

    /// `sup_(|x| <= radius) |grad F(x; c)|` bounded over all centres the path can produce
    /// (pseudo-Huber: each coordinate of the gradient is below 1, so sqrt(d); linear: the
    /// largest |mu|): the worst-case gradient bound G of textbook OGD, before noise.
    pub fn gradient_bound(self, d: usize, largest_centre: f64) -> f64 {
        match self {
            Family::Huber => (d as f64).sqrt(),
            Family::Linear => largest_centre,
        }
    }
}

/// `phi(u) = sqrt(1 + u^2) - 1`, computed without cancellation.
pub fn huber(u: f64) -> f64 {
    let u2 = u * u;
    u2 / ((1.0 + u2).sqrt() + 1.0)
}

/// `phi'(u) = u / sqrt(1 + u^2)`.
pub fn huber_d(u: f64) -> f64 {
    u / (1.0 + u * u).sqrt()
}

/// How the centre moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// `c_t = c_0`.
    Fixed,
    /// `c_t = c_0 + rho r_t / sqrt(d)`, `r_t` i.i.d. random signs drawn before the game.
    Iid,
    /// `c_t = c_0 + rho (cos(2 pi t/P), sin(2 pi t/P), 0, ...)`.
    Drift,
    /// `c_t = c_0 +- rho 1/sqrt(d)`, the sign flipping every `switch_every` rounds.
    Switch,
}

impl Path {
    pub fn parse(s: &str) -> Path {
        match s {
            "iid" => Path::Iid,
            "drift" => Path::Drift,
            "switch" => Path::Switch,
            _ => Path::Fixed,
        }
    }
}

/// One environment's description.
#[derive(Clone, Debug)]
pub struct SeaConfig {
    pub family: Family,
    pub path: Path,
    pub dim: usize,
    /// Noise level: `E|xi_t|^2 = s^2`.
    pub s: f64,
    /// Amplitude of the centre's movement.
    pub rho: f64,
    /// Every coordinate of `c_0`.
    pub c0: f64,
    pub drift_period: usize,
    pub switch_every: usize,
}

impl SeaConfig {
    /// The largest |c_t| the path can produce.
    pub fn largest_centre(&self) -> f64 {
        (self.c0.abs() * (self.dim as f64).sqrt()) + self.rho
    }
}

/// One round: the centre and the noise.
#[derive(Clone, Debug)]
pub struct Round {
    pub c: Vec<f64>,
    pub xi: Vec<f64>,
}

impl Round {
    pub fn loss(&self, family: Family, x: &[f64]) -> f64 {
        family.value(x, &self.c) + super::dot(&self.xi, x)
    }

    pub fn grad(&self, family: Family, x: &[f64]) -> Vec<f64> {
        let mut g = family.grad(x, &self.c);
        g.iter_mut().zip(&self.xi).for_each(|(a, b)| *a += b);
        g
    }
}

/// The environment: the centre path's signs and the noise come from two generators of the
/// seed, so arms of one seed share them (different `s` scale the same standard normals).
pub struct SeaEnv {
    pub cfg: SeaConfig,
    signs: StdRng,
    noise: StdRng,
    t: usize,
}

impl SeaEnv {
    pub fn new(cfg: SeaConfig, seed: u64) -> SeaEnv {
        SeaEnv {
            cfg,
            signs: StdRng::seed_from_u64(seed ^ 0x5164_5EA0),
            noise: StdRng::seed_from_u64(seed ^ 0x0015_E0A1),
            t: 0,
        }
    }

    /// The next round (rounds are numbered from 1).
    pub fn next_round(&mut self) -> Round {
        self.t += 1;
        let t = self.t;
        let cfg = &self.cfg;
        let d = cfg.dim;
        let mut c = vec![cfg.c0; d];
        let unit = 1.0 / (d as f64).sqrt();
        match cfg.path {
            Path::Fixed => {}
            Path::Iid => {
                for v in c.iter_mut() {
                    let r = if self.signs.gen::<bool>() { 1.0 } else { -1.0 };
                    *v += cfg.rho * r * unit;
                }
            }
            Path::Drift => {
                // Exactly periodic (the phase from t mod P), so the comparator's bins repeat.
                let phase = 2.0 * std::f64::consts::PI * (t % cfg.drift_period) as f64
                    / cfg.drift_period as f64;
                c[0] += cfg.rho * phase.cos();
                if d > 1 {
                    c[1] += cfg.rho * phase.sin();
                }
            }
            Path::Switch => {
                let sign = if ((t - 1) / cfg.switch_every).is_multiple_of(2) {
                    1.0
                } else {
                    -1.0
                };
                c.iter_mut().for_each(|v| *v += sign * cfg.rho * unit);
            }
        }
        let scale = cfg.s / (d as f64).sqrt();
        let xi = (0..d)
            .map(|_| {
                let z: f64 = self.noise.sample(StandardNormal);
                scale * z
            })
            .collect();
        Round { c, xi }
    }
}

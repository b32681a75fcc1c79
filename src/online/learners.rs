//! First-order learners on the ball of radius `D` (the regret bounds' "D"): each plays a point,
//! then sees the gradient of the revealed loss at that point.

use super::{dist2, norm, projected_step};

/// An online learner.
pub trait Learner {
    /// The point played this round.
    fn play(&mut self) -> Vec<f64>;
    /// The gradient of this round's loss at the point played.
    fn update(&mut self, g: &[f64]);
    /// The step size of the last round.
    fn eta(&self) -> f64;
}

/// How optimistic OMD picks its step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum StepRule {
    /// `eta_t = min(D / sqrt(delta + sum_(s<t) |g_s - M_s|^2), 1/(4L))`.
    Adaptive,
    /// A constant step (the mechanism switched off).
    Fixed(f64),
}

/// Optimistic OMD with the Euclidean regulariser (optimistic OGD):
/// `x_t = Proj(x^_t - eta_t M_t)`, `x^_(t+1) = Proj(x^_t - eta_t g_t)`, `M_t = g_(t-1)`, `M_1 = 0`.
pub struct Oomd {
    pub radius: f64,
    pub delta: f64,
    /// `1/(4L)` (infinite when L = 0).
    pub cap: f64,
    pub rule: StepRule,
    /// The auxiliary iterate `x^_t`.
    pub xhat: Vec<f64>,
    /// The hint `M_t`.
    pub hint: Vec<f64>,
    /// `V_t = sum_(s<t) |g_s - M_s|^2`.
    pub v: f64,
    eta: f64,
}

impl Oomd {
    pub fn new(dim: usize, radius: f64, delta: f64, smoothness: f64, rule: StepRule) -> Oomd {
        Oomd {
            radius,
            delta,
            cap: if smoothness > 0.0 {
                1.0 / (4.0 * smoothness)
            } else {
                f64::INFINITY
            },
            rule,
            xhat: vec![0.0; dim],
            hint: vec![0.0; dim],
            v: 0.0,
            eta: 0.0,
        }
    }
}

impl Learner for Oomd {
    fn play(&mut self) -> Vec<f64> {
        self.eta = match self.rule {
            StepRule::Adaptive => (self.radius / (self.delta + self.v).sqrt()).min(self.cap),
            StepRule::Fixed(eta) => eta,
        };
        projected_step(&self.xhat, &self.hint, self.eta, self.radius)
    }

    fn update(&mut self, g: &[f64]) {
        self.xhat = projected_step(&self.xhat, g, self.eta, self.radius);
        self.v += dist2(g, &self.hint);
        self.hint = g.to_vec();
    }

    fn eta(&self) -> f64 {
        self.eta
    }
}

/// Textbook projected OGD, `eta_t = D / (G sqrt t)` with G the worst-case gradient bound.
pub struct Ogd {
    pub radius: f64,
    pub g_bound: f64,
    pub x: Vec<f64>,
    t: usize,
    eta: f64,
}

impl Ogd {
    pub fn new(dim: usize, radius: f64, g_bound: f64) -> Ogd {
        Ogd {
            radius,
            g_bound: g_bound.max(1e-12),
            x: vec![0.0; dim],
            t: 0,
            eta: 0.0,
        }
    }
}

impl Learner for Ogd {
    fn play(&mut self) -> Vec<f64> {
        self.x.clone()
    }

    fn update(&mut self, g: &[f64]) {
        self.t += 1;
        self.eta = self.radius / (self.g_bound * (self.t as f64).sqrt());
        self.x = projected_step(&self.x, g, self.eta, self.radius);
    }

    fn eta(&self) -> f64 {
        self.eta
    }
}

/// AdaGrad-norm OGD, `eta_t = D / sqrt(delta + sum_(s<=t) |g_s|^2)`: adaptive, not optimistic.
pub struct AdaOgd {
    pub radius: f64,
    pub delta: f64,
    pub x: Vec<f64>,
    sum: f64,
    eta: f64,
}

impl AdaOgd {
    pub fn new(dim: usize, radius: f64, delta: f64) -> AdaOgd {
        AdaOgd {
            radius,
            delta,
            x: vec![0.0; dim],
            sum: 0.0,
            eta: 0.0,
        }
    }
}

impl Learner for AdaOgd {
    fn play(&mut self) -> Vec<f64> {
        self.x.clone()
    }

    fn update(&mut self, g: &[f64]) {
        let n = norm(g);
        self.sum += n * n;
        self.eta = self.radius / (self.delta + self.sum).sqrt();
        self.x = projected_step(&self.x, g, self.eta, self.radius);
    }

    fn eta(&self) -> f64 {
        self.eta
    }
}

//! The upper-level methods over one [`Bilevel`] problem, all spending lower-level work from one
//! budget: MAID (adaptive accuracies and an inexact backtracking line search, Salehi,
//! Mukherjee, Roberts & Ehrhardt) with its accuracies adapted or frozen, and HOAG (Pedregosa
//! 2016) with an a-priori accuracy schedule and the step `1/L_lambda`.

use nalgebra::DMatrix;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

use super::problem::{self, Bilevel, Cost, OutOfBudget};

/// MAID's sufficient-decrease constant (squared in the test, as in the official code).
pub const ETA: f64 = 1e-4;
/// Backtracking factor.
pub const RHO: f64 = 0.9;
/// Accuracy tightening on a failed certificate or line search.
pub const TAU: f64 = 0.5;
/// Accuracy loosening after a successful line search.
pub const NU: f64 = 1.05;
/// Step growth after a successful line search.
pub const GROW: f64 = 10.0 / 9.0;
/// Line-search rounds per outer iteration (round j tries 10 + j steps).
pub const ROUNDS: usize = 3;
/// Accuracies are not tightened below this.
pub const EPS_FLOOR: f64 = 1e-12;
/// HOAG: a new upper loss above this factor of the last accepted one is rejected.
pub const HOAG_REJECT: f64 = 1.2;
/// Loss levels whose first crossing is recorded: `LEVEL_TOP * LEVEL_RATIO^k`.
pub const LEVEL_TOP: f64 = 3.0;
pub const LEVEL_RATIO: f64 = 0.995;
pub const LEVELS: usize = 2000;
/// Gradients at most per lower-level solve.
const MAX_SOLVE: u64 = 200_000;

/// The loss level of index `k`.
pub fn level(k: usize) -> f64 {
    LEVEL_TOP * LEVEL_RATIO.powi(k as i32)
}

/// The first level index at or below `target`.
pub fn level_at_or_below(target: f64) -> usize {
    let mut k = ((target / LEVEL_TOP).ln() / LEVEL_RATIO.ln())
        .ceil()
        .max(0.0) as usize;
    while k > 0 && level(k - 1) <= target {
        k -= 1;
    }
    while level(k) > target {
        k += 1;
    }
    k
}

/// HOAG's a-priori accuracy sequence.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Schedule {
    /// `eps0 0.9^k`.
    Geometric,
    /// `eps0 / k^2`.
    Quadratic,
    /// `eps0 / k^3`.
    Cubic,
}

impl Schedule {
    pub fn at(self, eps0: f64, k: u64) -> f64 {
        let k = k.max(1) as f64;
        match self {
            Schedule::Geometric => eps0 * 0.9f64.powf(k),
            Schedule::Quadratic => eps0 / (k * k),
            Schedule::Cubic => eps0 / (k * k * k),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Method {
    /// MAID; `adaptive: false` freezes eps and delta (the line search stays).
    Maid {
        adaptive: bool,
    },
    Hoag(Schedule),
}

/// Starting values.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    pub eps0: f64,
    pub beta0: f64,
    pub theta0: f64,
    pub theta_lo: f64,
    pub theta_hi: f64,
    pub budget: u64,
}

/// HOAG's last accepted point.
struct HoagPoint {
    theta: Vec<f64>,
    w: DMatrix<f64>,
    p: Vec<f64>,
    g: f64,
}

/// One run of one method.
pub struct Outer {
    pub prob: Bilevel,
    pub method: Method,
    pub set: Settings,
    pub cost: Cost,
    pub theta: Vec<f64>,
    /// The lower-level solution at the accepted `theta` (the warm start of the next solve).
    pub w: DMatrix<f64>,
    /// The adjoint (warm start of the next CG).
    pub q: DMatrix<f64>,
    pub eps: f64,
    pub delta: f64,
    /// MAID: the base step beta; HOAG: 1 / L_lambda.
    pub step: f64,
    /// The accepted step of the last successful line search.
    pub accepted_step: f64,
    /// Running max of the sensitivity estimates (MAID's `c`).
    pub c_est: f64,
    pub omega_over_p: f64,
    /// `|p|` of the last hypergradient.
    pub p_norm: f64,
    /// The upper loss at the accepted iterate, and the lowest so far.
    pub upper_loss: f64,
    pub best_loss: f64,
    /// The upper loss after the first lower-level solve (at `theta0`).
    pub first_loss: f64,
    pub outer_iters: u64,
    pub accepted: u64,
    pub failed_searches: u64,
    pub last_outer_cost: u64,
    /// (level index, cost) at each first crossing of a loss level by the best loss.
    pub reach: Vec<(usize, u64)>,
    next_level: usize,
    c_fresh: bool,
    rng: StdRng,
    hoag_k: u64,
    hoag_prev: Option<HoagPoint>,
    pub done: bool,
}

fn clip(v: f64, lo: f64, hi: f64) -> f64 {
    v.max(lo).min(hi)
}

fn vnorm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

impl Outer {
    pub fn new(prob: Bilevel, method: Method, set: Settings, seed: u64) -> Outer {
        let w = problem::zeros();
        let (g0, _) = prob.upper(&w);
        let mut o = Outer {
            prob,
            method,
            set,
            cost: Cost::new(set.budget),
            theta: vec![set.theta0; problem::FEATURES],
            q: problem::zeros(),
            w,
            eps: set.eps0,
            delta: set.eps0,
            step: set.beta0,
            accepted_step: f64::NAN,
            c_est: 0.0,
            omega_over_p: f64::NAN,
            p_norm: f64::NAN,
            upper_loss: f64::NAN,
            best_loss: f64::INFINITY,
            first_loss: f64::NAN,
            outer_iters: 0,
            accepted: 0,
            failed_searches: 0,
            last_outer_cost: 0,
            reach: Vec::new(),
            next_level: 0,
            c_fresh: false,
            rng: StdRng::seed_from_u64(seed ^ 0x3A1D),
            hoag_k: 0,
            hoag_prev: None,
            done: false,
        };
        o.record_loss(g0);
        o.first_loss = f64::NAN;
        o
    }

    pub fn exp_theta(theta: &[f64]) -> Vec<f64> {
        theta.iter().map(|t| t.exp()).collect()
    }

    fn record_loss(&mut self, g: f64) {
        if self.first_loss.is_nan() && self.cost.used > 0 {
            self.first_loss = g;
        }
        self.upper_loss = g;
        if g < self.best_loss {
            self.best_loss = g;
        }
        while self.next_level < LEVELS && self.best_loss <= level(self.next_level) {
            self.reach.push((self.next_level, self.cost.used));
            self.next_level += 1;
        }
    }

    /// The cost at which the best loss first reached `target` (through the level grid: the
    /// first level at or below it), if it did.
    pub fn cost_to(&self, target: f64) -> Option<u64> {
        let k = level_at_or_below(target);
        self.reach.iter().find(|r| r.0 == k).map(|r| r.1)
    }

    /// Outer iterations until the cost reaches `target` or the budget is gone.
    pub fn advance_to(&mut self, target: u64) {
        while !self.done && self.cost.used < target {
            self.outer_step();
        }
    }

    /// One outer iteration.
    pub fn outer_step(&mut self) {
        let before = self.cost.used;
        let r = match self.method {
            Method::Maid { adaptive } => self.maid_step(adaptive),
            Method::Hoag(s) => self.hoag_step(s),
        };
        self.outer_iters += 1;
        self.last_outer_cost = self.cost.used - before;
        if r.is_err() || self.cost.exhausted() {
            self.done = true;
        }
    }

    fn project(&self, theta: &[f64], p: &[f64], s: f64) -> Vec<f64> {
        theta
            .iter()
            .zip(p)
            .map(|(t, g)| clip(t - s * g, self.set.theta_lo, self.set.theta_hi))
            .collect()
    }

    fn maid_step(&mut self, adaptive: bool) -> Result<(), OutOfBudget> {
        for j in 0..ROUNDS {
            let e = Self::exp_theta(&self.theta);
            // The inexact hypergradient, its accuracies tightened until the a-posteriori
            // bound certifies a descent direction (omega / |p| <= 1 - eta).
            let (g0, gg0, p) = loop {
                let sol = self
                    .prob
                    .fista(&e, &self.w, self.eps, MAX_SOLVE, &mut self.cost)?;
                self.w = sol.w;
                let (g0, gg0) = self.prob.upper(&self.w);
                self.record_loss(g0);
                let (q, _) =
                    self.prob
                        .cg(&self.w, &e, &gg0, &self.q, self.delta, &mut self.cost)?;
                self.q = q;
                let p = self.prob.hypergradient(&self.w, &e, &self.q);
                let pn = vnorm(&p);
                self.p_norm = pn;
                if adaptive {
                    if !self.c_fresh {
                        let mut u = DMatrix::from_fn(self.w.nrows(), self.w.ncols(), |_, _| {
                            StandardNormal.sample(&mut self.rng)
                        });
                        u /= u.norm();
                        let c = self
                            .prob
                            .sensitivity(&self.w, &e, &self.q, &u, &mut self.cost)?;
                        self.c_est = self.c_est.max(c);
                        self.c_fresh = true;
                    }
                    let (mu, _) = self.prob.constants(&e);
                    let bx = self.prob.b_norm(&self.w, &e);
                    let omega = self.c_est * self.eps + bx / mu * self.delta;
                    self.omega_over_p = omega / pn;
                    if self.omega_over_p > 1.0 - ETA && self.eps > EPS_FLOOR {
                        self.eps *= TAU;
                        self.delta *= TAU;
                        continue;
                    }
                }
                break (g0, gg0.norm(), p);
            };
            // Inexact backtracking: an upper bound of the new loss minus a lower bound of the
            // old one must show a decrease.
            let eps = self.eps;
            let mut success = false;
            // Some trial decreased the loss itself and only its certification failed.
            let mut plain_decrease = false;
            for i in 0..(10 + j) {
                let s = self.step * RHO.powi(i as i32);
                let theta = self.project(&self.theta, &p, s);
                let e1 = Self::exp_theta(&theta);
                let sol = self
                    .prob
                    .fista(&e1, &self.w, eps, MAX_SOLVE, &mut self.cost)?;
                let (g1, gg1) = self.prob.upper(&sol.w);
                let upper_new = g1 + gg1.norm() * eps + self.prob.l_g * eps * eps / 2.0;
                let lower_old = g0 - gg0 * eps;
                let moved: f64 = theta
                    .iter()
                    .zip(&self.theta)
                    .map(|(a, b)| (a - b).powi(2))
                    .sum();
                let needed = -ETA * ETA * moved / s;
                plain_decrease |= g1 - g0 <= needed;
                if upper_new - lower_old <= needed {
                    self.theta = theta;
                    self.w = sol.w;
                    self.step = s;
                    self.accepted_step = s;
                    self.accepted += 1;
                    self.c_fresh = false;
                    self.record_loss(g1);
                    success = true;
                    break;
                }
            }
            if success {
                if adaptive {
                    self.eps *= NU;
                    self.delta *= NU;
                }
                self.step *= GROW;
                return Ok(());
            }
            self.failed_searches += 1;
            if adaptive {
                self.eps = (self.eps * TAU).max(EPS_FLOOR);
                self.delta = (self.delta * TAU).max(EPS_FLOOR);
            }
            // The official code keeps beta. Departure: when no trial decreased even the
            // measured loss, the steps were too large, and the base step shrinks to below the
            // last trial, so that a much too large beta cannot stall the run; when some trial
            // did and only the certification failed, beta stays (the accuracies tighten).
            if !plain_decrease {
                self.step *= RHO.powi(10 + j as i32);
            }
        }
        Ok(())
    }

    fn hoag_step(&mut self, schedule: Schedule) -> Result<(), OutOfBudget> {
        self.hoag_k += 1;
        self.eps = schedule.at(self.set.eps0, self.hoag_k);
        self.delta = self.eps;
        let e = Self::exp_theta(&self.theta);
        let sol = self
            .prob
            .fista(&e, &self.w, self.eps, MAX_SOLVE, &mut self.cost)?;
        let (g, gg) = self.prob.upper(&sol.w);
        if let Some(prev) = &self.hoag_prev {
            if g > HOAG_REJECT * prev.g {
                // Rejected: back to the last accepted point with half the step.
                self.step *= 0.5;
                self.w = prev.w.clone();
                self.theta = self.project(&prev.theta, &prev.p, self.step);
                self.failed_searches += 1;
                return Ok(());
            }
            self.step /= 0.95;
        }
        self.w = sol.w;
        self.record_loss(g);
        let (q, _) = self
            .prob
            .cg(&self.w, &e, &gg, &self.q, self.delta, &mut self.cost)?;
        self.q = q;
        let p = self.prob.hypergradient(&self.w, &e, &self.q);
        let pn = vnorm(&p);
        self.p_norm = pn;
        if self.hoag_prev.is_none() {
            // L_lambda = |p_0| / sqrt(dim).
            self.step = (p.len() as f64).sqrt() / pn.max(1e-300);
        }
        self.accepted += 1;
        self.accepted_step = self.step;
        let theta = self.project(&self.theta, &p, self.step);
        self.hoag_prev = Some(HoagPoint {
            theta: std::mem::replace(&mut self.theta, theta),
            w: self.w.clone(),
            p,
            g,
        });
        Ok(())
    }

    /// `f(theta)` to high accuracy (outside the budget): the upper loss and test accuracy at
    /// the lower-level solution certified to `eps`, and that solution.
    pub fn exact_upper(&self, eps: f64) -> (f64, f64, DMatrix<f64>) {
        let e = Self::exp_theta(&self.theta);
        let mut free = Cost::new(u64::MAX);
        let sol = self
            .prob
            .fista(&e, &self.w, eps, 1_000_000, &mut free)
            .expect("no budget");
        let (g, _) = self.prob.upper(&sol.w);
        (g, self.prob.test_accuracy(&sol.w), sol.w)
    }
}

//! The best fixed point in hindsight: `min_(|x| <= D) sum_(s<=t) f_s(x)` on the realised losses
//! (noise included). Linear part in closed form; the pseudo-Huber sum is separable per
//! coordinate, so it is kept as per-coordinate bins `(centre value, count)` (a fixed, switching
//! or i.i.d.-sign path has two values per coordinate, a periodic drift at most its period) and
//! minimised over the ball by FISTA with adaptive restart, warm-started at the last solution.

use std::collections::HashMap;

use super::sea::{huber, huber_d, Family, Round};
use super::{dot, norm, project_ball};

/// The running sum of the losses and its minimiser over the ball.
pub struct Comparator {
    pub family: Family,
    pub radius: f64,
    pub rounds: usize,
    /// Per coordinate: (centre value, number of rounds with it).
    bins: Vec<Vec<(f64, f64)>>,
    index: Vec<HashMap<u64, usize>>,
    /// The sum of the linear coefficients (`xi_t`, and `mu_t` for the linear family).
    pub linear: Vec<f64>,
    /// The last solution (warm start).
    pub x: Vec<f64>,
    /// FISTA iterations the last solve used.
    pub last_iters: usize,
}

impl Comparator {
    pub fn new(family: Family, dim: usize, radius: f64) -> Comparator {
        Comparator {
            family,
            radius,
            rounds: 0,
            bins: vec![Vec::new(); dim],
            index: vec![HashMap::new(); dim],
            linear: vec![0.0; dim],
            x: vec![0.0; dim],
            last_iters: 0,
        }
    }

    pub fn add(&mut self, r: &Round) {
        self.rounds += 1;
        for (i, xi) in r.xi.iter().enumerate() {
            self.linear[i] += xi;
        }
        match self.family {
            Family::Linear => {
                for (i, c) in r.c.iter().enumerate() {
                    self.linear[i] += c;
                }
            }
            Family::Huber => {
                for (i, &c) in r.c.iter().enumerate() {
                    let k = *self.index[i].entry(c.to_bits()).or_insert_with(|| {
                        self.bins[i].push((c, 0.0));
                        self.bins[i].len() - 1
                    });
                    self.bins[i][k].1 += 1.0;
                }
            }
        }
    }

    /// `sum_s f_s(x)`.
    pub fn objective(&self, x: &[f64]) -> f64 {
        let mut v = dot(&self.linear, x);
        if self.family == Family::Huber {
            for (i, bins) in self.bins.iter().enumerate() {
                v += bins.iter().map(|(c, n)| n * huber(x[i] - c)).sum::<f64>();
            }
        }
        v
    }

    /// `grad sum_s f_s(x)`.
    pub fn gradient(&self, x: &[f64]) -> Vec<f64> {
        let mut g = self.linear.clone();
        if self.family == Family::Huber {
            for (i, bins) in self.bins.iter().enumerate() {
                g[i] += bins.iter().map(|(c, n)| n * huber_d(x[i] - c)).sum::<f64>();
            }
        }
        g
    }

    /// The minimiser and minimum over the ball: `-D |sum g|` in closed form for linear losses,
    /// up to `iters` FISTA iterations (step 1/(t L)) otherwise.
    pub fn solve(&mut self, iters: usize) -> (Vec<f64>, f64) {
        let d = self.radius;
        if self.family == Family::Linear || self.rounds == 0 {
            let n = norm(&self.linear);
            let x: Vec<f64> = if n > 0.0 {
                self.linear.iter().map(|a| -d * a / n).collect()
            } else {
                vec![0.0; self.linear.len()]
            };
            self.x = x.clone();
            self.last_iters = 0;
            return (x, -d * n);
        }
        let step = 1.0 / (self.rounds as f64 * self.family.smoothness());
        let mut x = self.x.clone();
        let mut y = x.clone();
        let mut t = 1.0f64;
        self.last_iters = iters;
        for k in 0..iters {
            let g = self.gradient(&y);
            let mut xn: Vec<f64> = y.iter().zip(&g).map(|(a, b)| a - step * b).collect();
            project_ball(&mut xn, d);
            let moved: Vec<f64> = xn.iter().zip(&x).map(|(a, b)| a - b).collect();
            // Restart the momentum when it points uphill (O'Donoghue & Candes).
            let uphill = y
                .iter()
                .zip(&xn)
                .zip(&moved)
                .map(|((yy, xx), m)| (yy - xx) * m)
                .sum::<f64>()
                > 0.0;
            let tn = if uphill {
                1.0
            } else {
                (1.0 + (1.0 + 4.0 * t * t).sqrt()) / 2.0
            };
            let beta = if uphill { 0.0 } else { (t - 1.0) / tn };
            y = xn.iter().zip(&moved).map(|(a, m)| a + beta * m).collect();
            x = xn;
            t = tn;
            if norm(&moved) < 1e-15 {
                self.last_iters = k + 1;
                break;
            }
        }
        self.x = x.clone();
        let v = self.objective(&x);
        (x, v)
    }
}

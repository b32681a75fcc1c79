//! The bilevel problem on the host (f64, nalgebra): softmax regression on the digits whose L2
//! weights are hyperparameters, one log-weight per input feature.
//!
//! Lower level: `h(W, theta) = CE_train(X W) + 1/2 sum_{j,c} exp(theta_j) W_jc^2`, `W` 65 x 10,
//! mu-strongly convex with `mu = min_j exp(theta_j)` and `L = 1/2 lambda_max(X'X/n) +
//! max_j exp(theta_j)` (the softmax Hessian is below 1/2 I). Upper level: `g(W) =
//! CE_val(X_val W)`. Hypergradient: `grad f = -(d^2 h / d theta dW) q` with `q = A^-1 grad g`,
//! `A = grad_WW h`: `p_j = -exp(theta_j) sum_c W_jc q_jc`.
//!
//! Solvers: FISTA with the strongly convex momentum `(sqrt L - sqrt mu)/(sqrt L + sqrt mu)` and
//! the certificate `|W - W*| <= |grad h(W)| / mu <= eps` (it certifies the point whose
//! gradient it evaluated and returns that point), and conjugate gradients on `A q = b` to
//! residual `<= delta`. Both spend from one [`Cost`]: one unit = one pass over the training set
//! (a gradient of h or a Hessian-vector product).

use nalgebra::{DMatrix, SymmetricEigen};

use crate::datasets::{DIGIT_CLASSES, DIGIT_PIXELS};

/// Features: 64 pixels and a bias column.
pub const FEATURES: usize = DIGIT_PIXELS + 1;

/// Rows of x/16 with a trailing bias column of ones.
pub fn features(pixels: &[f32]) -> DMatrix<f64> {
    let n = pixels.len() / DIGIT_PIXELS;
    DMatrix::from_fn(n, FEATURES, |i, j| {
        if j < DIGIT_PIXELS {
            pixels[i * DIGIT_PIXELS + j] as f64
        } else {
            1.0
        }
    })
}

/// Row-wise softmax of the logits `x w`.
pub fn probabilities(x: &DMatrix<f64>, w: &DMatrix<f64>) -> DMatrix<f64> {
    let mut z = x * w;
    let (n, k) = z.shape();
    for i in 0..n {
        let mut m = f64::NEG_INFINITY;
        for c in 0..k {
            m = m.max(z[(i, c)]);
        }
        let mut s = 0.0;
        for c in 0..k {
            let e = (z[(i, c)] - m).exp();
            z[(i, c)] = e;
            s += e;
        }
        for c in 0..k {
            z[(i, c)] /= s;
        }
    }
    z
}

/// Mean cross-entropy of the probabilities `p` against labels.
pub fn cross_entropy(p: &DMatrix<f64>, y: &[usize]) -> f64 {
    let n = y.len();
    y.iter()
        .enumerate()
        .map(|(i, &c)| -p[(i, c)].max(1e-300).ln())
        .sum::<f64>()
        / n as f64
}

/// `X'(P - Y)/n`: the gradient of the mean cross-entropy in `W` (`xt` = `X'`, stored, so that
/// both products are plain matrix products).
pub fn ce_gradient(xt: &DMatrix<f64>, p: &DMatrix<f64>, y: &[usize]) -> DMatrix<f64> {
    let mut r = p.clone();
    for (i, &c) in y.iter().enumerate() {
        r[(i, c)] -= 1.0;
    }
    xt * r / y.len() as f64
}

/// `X'(P .* U - P .* rowsum(P .* U))/n` with `U = X v`: the cross-entropy's Hessian at the
/// probabilities `p` applied to `v` (`xt` = `X'`).
pub fn ce_hvp(
    x: &DMatrix<f64>,
    xt: &DMatrix<f64>,
    p: &DMatrix<f64>,
    v: &DMatrix<f64>,
) -> DMatrix<f64> {
    let mut u = x * v;
    let (n, k) = u.shape();
    for i in 0..n {
        let mut s = 0.0;
        for c in 0..k {
            u[(i, c)] *= p[(i, c)];
            s += u[(i, c)];
        }
        for c in 0..k {
            u[(i, c)] -= p[(i, c)] * s;
        }
    }
    xt * u / n as f64
}

/// Half the largest eigenvalue of `X'X/n`: the cross-entropy's smoothness constant in `W`.
pub fn ce_smoothness(x: &DMatrix<f64>) -> f64 {
    let gram = x.tr_mul(x) / x.nrows() as f64;
    let top = SymmetricEigen::new(gram)
        .eigenvalues
        .iter()
        .cloned()
        .fold(0.0, f64::max);
    0.5 * top
}

/// The Frobenius norm.
pub fn norm(m: &DMatrix<f64>) -> f64 {
    m.norm()
}

/// Products at most per CG solve.
pub const CG_MAX: u64 = 100_000;

/// Lower-level work: FISTA gradients and CG Hessian products, one unit each, under a budget.
#[derive(Clone, Copy, Debug)]
pub struct Cost {
    pub used: u64,
    pub budget: u64,
}

impl Cost {
    pub fn new(budget: u64) -> Cost {
        Cost { used: 0, budget }
    }
    /// Spends one unit; false when the budget is gone.
    pub fn spend(&mut self) -> bool {
        if self.used >= self.budget {
            return false;
        }
        self.used += 1;
        true
    }
    pub fn exhausted(&self) -> bool {
        self.used >= self.budget
    }
}

/// A lower-level solve ran out of budget.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OutOfBudget;

/// The data and constants of one seed's problem.
pub struct Bilevel {
    pub x_train: DMatrix<f64>,
    /// `x_train'` and `x_val'`.
    pub xt_train: DMatrix<f64>,
    pub xt_val: DMatrix<f64>,
    pub y_train: Vec<usize>,
    pub x_val: DMatrix<f64>,
    pub y_val: Vec<usize>,
    pub x_test: DMatrix<f64>,
    pub y_test: Vec<usize>,
    /// `1/2 lambda_max(X'X/n)` of the training features.
    pub ce_smooth: f64,
    /// `L_g`: the smoothness of the upper level, `1/2 lambda_max(X_val'X_val/n_val)`.
    pub l_g: f64,
}

/// What a certified lower-level solve returns.
pub struct LowerSolution {
    pub w: DMatrix<f64>,
    /// `|grad h(w)|`.
    pub grad_norm: f64,
    pub iters: u64,
}

impl Bilevel {
    pub fn new(
        x_train: DMatrix<f64>,
        y_train: Vec<usize>,
        x_val: DMatrix<f64>,
        y_val: Vec<usize>,
        x_test: DMatrix<f64>,
        y_test: Vec<usize>,
    ) -> Bilevel {
        let ce_smooth = ce_smoothness(&x_train);
        let l_g = ce_smoothness(&x_val);
        Bilevel {
            xt_train: x_train.transpose(),
            xt_val: x_val.transpose(),
            x_train,
            y_train,
            x_val,
            y_val,
            x_test,
            y_test,
            ce_smooth,
            l_g,
        }
    }

    /// `h(w, theta)` with `e = exp(theta)`.
    pub fn lower_value(&self, w: &DMatrix<f64>, e: &[f64]) -> f64 {
        let p = probabilities(&self.x_train, w);
        let reg: f64 = (0..w.nrows())
            .map(|j| 0.5 * e[j] * w.row(j).norm_squared())
            .sum();
        cross_entropy(&p, &self.y_train) + reg
    }

    /// `grad_W h(w, theta)`.
    pub fn lower_gradient(&self, w: &DMatrix<f64>, e: &[f64]) -> DMatrix<f64> {
        let p = probabilities(&self.x_train, w);
        let mut g = ce_gradient(&self.xt_train, &p, &self.y_train);
        add_scaled_rows(&mut g, e, w);
        g
    }

    /// `grad_WW h(w, theta) v` with the training probabilities `p` at `w`.
    pub fn lower_hvp(&self, p: &DMatrix<f64>, e: &[f64], v: &DMatrix<f64>) -> DMatrix<f64> {
        let mut out = ce_hvp(&self.x_train, &self.xt_train, p, v);
        add_scaled_rows(&mut out, e, v);
        out
    }

    /// `g(w)` and `grad g(w)`.
    pub fn upper(&self, w: &DMatrix<f64>) -> (f64, DMatrix<f64>) {
        let p = probabilities(&self.x_val, w);
        (
            cross_entropy(&p, &self.y_val),
            ce_gradient(&self.xt_val, &p, &self.y_val),
        )
    }

    /// `grad^2 g(w) u`.
    pub fn upper_hvp(&self, w: &DMatrix<f64>, u: &DMatrix<f64>) -> DMatrix<f64> {
        let p = probabilities(&self.x_val, w);
        ce_hvp(&self.x_val, &self.xt_val, &p, u)
    }

    /// Test accuracy of `w`.
    pub fn test_accuracy(&self, w: &DMatrix<f64>) -> f64 {
        let z = &self.x_test * w;
        let hits = (0..z.nrows())
            .filter(|&i| {
                let row = z.row(i);
                let mut best = 0;
                for c in 1..row.len() {
                    if row[c] > row[best] {
                        best = c;
                    }
                }
                best == self.y_test[i]
            })
            .count();
        hits as f64 / self.y_test.len() as f64
    }

    /// `(mu, L)` of the lower level at `e = exp(theta)`.
    pub fn constants(&self, e: &[f64]) -> (f64, f64) {
        let lo = e.iter().cloned().fold(f64::INFINITY, f64::min);
        let hi = e.iter().cloned().fold(0.0, f64::max);
        (lo, self.ce_smooth + hi)
    }

    /// FISTA from `w0` until `|grad h| / mu <= eps` (at most `max_iters` gradients).
    pub fn fista(
        &self,
        e: &[f64],
        w0: &DMatrix<f64>,
        eps: f64,
        max_iters: u64,
        cost: &mut Cost,
    ) -> Result<LowerSolution, OutOfBudget> {
        let (mu, l) = self.constants(e);
        let momentum = (l.sqrt() - mu.sqrt()) / (l.sqrt() + mu.sqrt());
        let mut y = w0.clone();
        let mut prev = w0.clone();
        let mut iters = 0;
        loop {
            if !cost.spend() {
                return Err(OutOfBudget);
            }
            iters += 1;
            let g = self.lower_gradient(&y, e);
            let gn = norm(&g);
            if gn / mu <= eps || iters >= max_iters {
                return Ok(LowerSolution {
                    w: y,
                    grad_norm: gn,
                    iters,
                });
            }
            let next = &y - g / l;
            y = &next + (&next - &prev) * momentum;
            prev = next;
        }
    }

    /// Conjugate gradients on `grad_WW h(w) q = b` from `q0` until the residual is at most
    /// `tol` (at most `CG_MAX` products); returns `q` and the products spent.
    pub fn cg(
        &self,
        w: &DMatrix<f64>,
        e: &[f64],
        b: &DMatrix<f64>,
        q0: &DMatrix<f64>,
        tol: f64,
        cost: &mut Cost,
    ) -> Result<(DMatrix<f64>, u64), OutOfBudget> {
        let max_iters = CG_MAX;
        let p_train = probabilities(&self.x_train, w);
        let mut q = q0.clone();
        let mut iters = 0;
        let mut r = if q0.iter().all(|v| *v == 0.0) {
            b.clone()
        } else {
            if !cost.spend() {
                return Err(OutOfBudget);
            }
            iters += 1;
            b - self.lower_hvp(&p_train, e, &q)
        };
        let mut d = r.clone();
        let mut rr = r.norm_squared();
        while rr.sqrt() > tol && iters < max_iters {
            if !cost.spend() {
                return Err(OutOfBudget);
            }
            iters += 1;
            let ad = self.lower_hvp(&p_train, e, &d);
            let alpha = rr / d.dot(&ad);
            q += &d * alpha;
            r -= &ad * alpha;
            let next = r.norm_squared();
            d = &r + &d * (next / rr);
            rr = next;
        }
        Ok((q, iters))
    }

    /// The hypergradient `p_j = -exp(theta_j) sum_c w_jc q_jc`.
    pub fn hypergradient(&self, w: &DMatrix<f64>, e: &[f64], q: &DMatrix<f64>) -> Vec<f64> {
        (0..w.nrows())
            .map(|j| -e[j] * w.row(j).dot(&q.row(j)))
            .collect()
    }

    /// `B_x`: the operator norm of `q -> exp(theta_j) sum_c w_jc q_jc`, `max_j exp(theta_j)
    /// |w_j.|` (block diagonal).
    pub fn b_norm(&self, w: &DMatrix<f64>, e: &[f64]) -> f64 {
        (0..w.nrows())
            .map(|j| e[j] * w.row(j).norm())
            .fold(0.0, f64::max)
    }

    /// The directional derivative of `w -> p(w) = -B(w) A(w)^-1 grad g(w)` along the unit
    /// direction `u` (at the adjoint `q`): `-(dB[u] q + B A^-1 (grad^2 g u - dA[u] q))`, its norm
    /// (an estimate of the constant `c` in `|p - grad f| <= c eps`). `dA[u] q` by a central
    /// difference of Hessian products (2 units), `A^-1` by CG to a relative residual 0.1.
    pub fn sensitivity(
        &self,
        w: &DMatrix<f64>,
        e: &[f64],
        q: &DMatrix<f64>,
        u: &DMatrix<f64>,
        cost: &mut Cost,
    ) -> Result<f64, OutOfBudget> {
        let t = 1e-4;
        let pp = probabilities(&self.x_train, &(w + u * t));
        let pm = probabilities(&self.x_train, &(w - u * t));
        if !cost.spend() || !cost.spend() {
            return Err(OutOfBudget);
        }
        let da_q = (ce_hvp(&self.x_train, &self.xt_train, &pp, q)
            - ce_hvp(&self.x_train, &self.xt_train, &pm, q))
            / (2.0 * t);
        let rhs = self.upper_hvp(w, u) - da_q;
        let zero = DMatrix::zeros(w.nrows(), w.ncols());
        let tol = 0.1 * rhs.norm();
        let (dq, _) = self.cg(w, e, &rhs, &zero, tol, cost)?;
        let dp: Vec<f64> = (0..w.nrows())
            .map(|j| -e[j] * (u.row(j).dot(&q.row(j)) + w.row(j).dot(&dq.row(j))))
            .collect();
        Ok(dp.iter().map(|v| v * v).sum::<f64>().sqrt())
    }
}

/// `m += diag(e) v` (row j scaled by `e_j`).
fn add_scaled_rows(m: &mut DMatrix<f64>, e: &[f64], v: &DMatrix<f64>) {
    for c in 0..m.ncols() {
        for j in 0..m.nrows() {
            m[(j, c)] += e[j] * v[(j, c)];
        }
    }
}

/// `W` zeros of the problem's shape.
pub fn zeros() -> DMatrix<f64> {
    DMatrix::zeros(FEATURES, DIGIT_CLASSES)
}

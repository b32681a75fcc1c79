//! Online convex optimization on the host (f64): the stochastically extended adversarial (SEA)
//! environment of Sachs et al. (NeurIPS 2022) with exactly known stochastic variance and
//! adversarial variation, first-order learners on a Euclidean ball (optimistic OMD, OGD,
//! AdaGrad-norm OGD) and the regret tracker with its comparator solve (closed form for linear
//! losses, FISTA on the summed losses otherwise).

pub mod comparator;
pub mod learners;
pub mod sea;

/// Euclidean norm.
pub fn norm(v: &[f64]) -> f64 {
    v.iter().map(|a| a * a).sum::<f64>().sqrt()
}

/// Squared distance `|a - b|^2`.
pub fn dist2(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Inner product.
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Projects `v` onto the Euclidean ball of `radius` around the origin, in place.
pub fn project_ball(v: &mut [f64], radius: f64) {
    let n = norm(v);
    if n > radius {
        let s = radius / n;
        v.iter_mut().for_each(|a| *a *= s);
    }
}

/// `Proj(x - eta g)` onto the ball.
pub fn projected_step(x: &[f64], g: &[f64], eta: f64, radius: f64) -> Vec<f64> {
    let mut y: Vec<f64> = x.iter().zip(g).map(|(a, b)| a - eta * b).collect();
    project_ball(&mut y, radius);
    y
}

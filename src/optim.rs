//! Adam on host parameter vectors (the experiments keep parameters as flat `Vec`s and rebuild
//! dfdx tensors from them each step).

/// Adam (Kingma & Ba) with bias correction.
#[derive(Clone, Debug)]
pub struct Adam {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    t: i32,
}

impl Adam {
    pub fn new(lr: f32) -> Adam {
        Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            m: Vec::new(),
            v: Vec::new(),
            t: 0,
        }
    }

    /// Updates every parameter vector with its gradient (same order every call).
    pub fn step(&mut self, params: &mut [&mut Vec<f32>], grads: &[Vec<f32>]) {
        assert_eq!(params.len(), grads.len(), "one gradient per parameter");
        if self.m.is_empty() {
            self.m = grads.iter().map(|g| vec![0.0; g.len()]).collect();
            self.v = self.m.clone();
        }
        self.t += 1;
        let c1 = 1.0 - self.beta1.powi(self.t);
        let c2 = 1.0 - self.beta2.powi(self.t);
        for (k, (p, g)) in params.iter_mut().zip(grads).enumerate() {
            let (m, v) = (&mut self.m[k], &mut self.v[k]);
            for i in 0..g.len() {
                m[i] = self.beta1 * m[i] + (1.0 - self.beta1) * g[i];
                v[i] = self.beta2 * v[i] + (1.0 - self.beta2) * g[i] * g[i];
                p[i] -= self.lr * (m[i] / c1) / ((v[i] / c2).sqrt() + self.eps);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimizes_a_quadratic() {
        let mut x = vec![3.0f32, -2.0];
        let mut opt = Adam::new(0.1);
        for _ in 0..500 {
            let g = vec![2.0 * x[0], 2.0 * (x[1] - 1.0)];
            opt.step(&mut [&mut x], &[g]);
        }
        assert!(x[0].abs() < 1e-2 && (x[1] - 1.0).abs() < 1e-2, "{x:?}");
    }

    #[test]
    fn first_step_moves_by_lr() {
        // With bias correction the first step is lr * sign(g).
        let mut x = vec![0.0f32];
        Adam::new(0.5).step(&mut [&mut x], &[vec![10.0]]);
        assert!((x[0] + 0.5).abs() < 1e-6);
    }
}

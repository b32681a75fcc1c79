//! The second-order estimators against references with known answers: an analytic
//! Hessian-vector product of the diagonal linear network, a tiny ReLU network whose full Hessian
//! is built column by column, and the Gauss-Newton trace at an interpolating point.

use dfdx::prelude::Cpu;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

use reglab::experiments::stability::data::Dataset;
use reglab::experiments::stability::models::{Batch, Model};
use reglab::metrics::hessian::{
    fd_hvp as host_fd_hvp, gauss_newton_trace, hutchinson_trace, lanczos, power_iteration,
};
use reglab::metrics::linalg::{mat_vec, symmetric_eigenvalues};
use reglab::nn::curvature::{fd_hvp, DeviceSpace};
use reglab::nn::{ParamStore, ParamVec};

fn gaussian(n: usize, rng: &mut StdRng) -> Vec<f64> {
    (0..n).map(|_| StandardNormal.sample(rng)).collect()
}

fn random_data(n: usize, dim: usize, rng: &mut StdRng) -> Dataset {
    Dataset {
        x: gaussian(n * dim, rng),
        y: gaussian(n, rng),
        n,
        dim,
    }
}

/// The analytic Hessian of L = 1/(2n) sum_i (x_i . (u*u - v*v) - y_i)^2 with respect to [u, v]:
/// H = 1/n sum_i (g_i g_i^T + r_i D_i), g_i = [2u*x_i, -2v*x_i], D_i = diag(2x_i, -2x_i).
fn diagonal_hessian(theta: &[f64], data: &Dataset) -> Vec<f64> {
    let d = data.dim;
    let p = 2 * d;
    let mut h = vec![0.0; p * p];
    for i in 0..data.n {
        let x = &data.x[i * d..(i + 1) * d];
        let f: f64 = (0..d)
            .map(|j| x[j] * (theta[j].powi(2) - theta[d + j].powi(2)))
            .sum();
        let r = f - data.y[i];
        let g: Vec<f64> = (0..p)
            .map(|k| {
                if k < d {
                    2.0 * theta[k] * x[k]
                } else {
                    -2.0 * theta[k] * x[k - d]
                }
            })
            .collect();
        for a in 0..p {
            for b in 0..p {
                h[a * p + b] += g[a] * g[b] / data.n as f64;
            }
            let diag = if a < d { 2.0 * x[a] } else { -2.0 * x[a - d] };
            h[a * p + a] += r * diag / data.n as f64;
        }
    }
    h
}

#[test]
fn fd_hvp_matches_analytic_hessian_of_diagonal_network() {
    let mut rng = StdRng::seed_from_u64(11);
    let dev = Cpu::default();
    let data = random_data(7, 5, &mut rng);
    let model = Model::Diagonal { dim: 5 };
    let theta = gaussian(10, &mut rng);
    let batch = Batch::from_dataset(&dev, &data, None);
    let h = diagonal_hessian(&theta, &data);
    let mut grad = |t: &[f64]| model.loss_and_grad(&dev, t, &batch).1;
    for _ in 0..3 {
        let v = gaussian(10, &mut rng);
        let exact = mat_vec(&h, &v);
        // Central differences err by O(step^2) on this quartic loss.
        for (step, tol) in [(1e-2, 1e-4), (1e-4, 1e-7)] {
            let approx = host_fd_hvp(&mut grad, &theta, &v, step);
            let scale = exact.iter().map(|x| x.abs()).fold(1.0, f64::max);
            for (a, e) in approx.iter().zip(&exact) {
                assert!(
                    (a - e).abs() < tol * scale,
                    "step {step}: {a} vs {e} (scale {scale})"
                );
            }
        }
    }
}

#[test]
fn dfdx_gradient_matches_analytic_gradient() {
    // grad L = 1/n sum_i r_i g_i for the diagonal network.
    let mut rng = StdRng::seed_from_u64(12);
    let dev = Cpu::default();
    let data = random_data(6, 4, &mut rng);
    let model = Model::Diagonal { dim: 4 };
    let theta = gaussian(8, &mut rng);
    let batch = Batch::from_dataset(&dev, &data, None);
    let (loss, g) = model.loss_and_grad(&dev, &theta, &batch);
    let mut exact = vec![0.0; 8];
    let mut exact_loss = 0.0;
    for i in 0..6 {
        let x = &data.x[i * 4..(i + 1) * 4];
        let f: f64 = (0..4)
            .map(|j| x[j] * (theta[j].powi(2) - theta[4 + j].powi(2)))
            .sum();
        let r = f - data.y[i];
        exact_loss += r * r / 12.0;
        for j in 0..4 {
            exact[j] += r * 2.0 * theta[j] * x[j] / 6.0;
            exact[4 + j] -= r * 2.0 * theta[4 + j] * x[j] / 6.0;
        }
    }
    assert!((loss - exact_loss).abs() < 1e-12);
    for (a, b) in g.iter().zip(&exact) {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }
}

/// The Hessian of L = 1/(2n) sum_i (f(x_i) - y_i)^2 for f(x) = sum_k a_k relu(w_k . x), with
/// respect to [W row-major, a], in closed form: H = 1/n sum_i (g_i g_i^T + r_i D_i), where
/// g_i = [a_k [z_ik > 0] x_i ; relu(z_ik)] and D_i couples w_k and a_k by [z_ik > 0] x_i
/// (relu's second derivative is 0 away from the kink).
#[allow(clippy::needless_range_loop)]
fn relu_hessian(theta: &[f64], data: &Dataset, width: usize) -> Vec<f64> {
    let d = data.dim;
    let p = width * d + width;
    let (w, a) = theta.split_at(width * d);
    let mut h = vec![0.0; p * p];
    for i in 0..data.n {
        let x = &data.x[i * d..(i + 1) * d];
        let z: Vec<f64> = (0..width)
            .map(|k| (0..d).map(|j| w[k * d + j] * x[j]).sum())
            .collect();
        let f: f64 = (0..width).map(|k| a[k] * z[k].max(0.0)).sum();
        let r = f - data.y[i];
        let mut g = vec![0.0; p];
        for k in 0..width {
            let on = if z[k] > 0.0 { 1.0 } else { 0.0 };
            for j in 0..d {
                g[k * d + j] = a[k] * on * x[j];
            }
            g[width * d + k] = z[k].max(0.0);
        }
        for u in 0..p {
            for v in 0..p {
                h[u * p + v] += g[u] * g[v] / data.n as f64;
            }
        }
        for k in 0..width {
            if z[k] > 0.0 {
                for j in 0..d {
                    let (u, v) = (k * d + j, width * d + k);
                    h[u * p + v] += r * x[j] / data.n as f64;
                    h[v * p + u] += r * x[j] / data.n as f64;
                }
            }
        }
    }
    h
}

#[test]
fn device_estimators_match_a_tiny_relu_network_hessian_in_closed_form() {
    let mut rng = StdRng::seed_from_u64(13);
    let dev = Cpu::default();
    let data = random_data(5, 3, &mut rng);
    let model = Model::Relu { dim: 3, width: 4 }; // 16 parameters
    let theta = gaussian(model.num_params(), &mut rng);
    let batch = Batch::from_dataset(&dev, &data, None);
    let p = model.num_params();
    // The reference is exact (closed form), not built with the estimator under test.
    let dense = relu_hessian(&theta, &data, 4);
    let exact_trace: f64 = (0..p).map(|i| dense[i * p + i]).sum();
    let eig = symmetric_eigenvalues(&dense, p);
    assert!((eig.iter().sum::<f64>() - exact_trace).abs() < 1e-8);

    // The run's path: parameters in a device store, HVPs by axpy perturbations.
    let mut store = model.store(&dev, &theta);
    let space = DeviceSpace::of(&store);
    let mut dgrad = |s: &ParamStore<f64, Cpu>| model.gradient(s, &batch);
    let mut hvp = |v: &ParamVec<f64, Cpu>| fd_hvp(&mut store, &mut dgrad, v, 1e-4);
    let tr = hutchinson_trace(&space, &mut hvp, 3000, &mut rng);
    assert!(
        (tr.value - exact_trace).abs() < 4.0 * tr.std_err + 1e-6,
        "Hutchinson {tr:?} vs exact {exact_trace}"
    );

    let top_magnitude = eig
        .iter()
        .copied()
        .max_by(|a, b| a.abs().total_cmp(&b.abs()))
        .unwrap();
    let lam = power_iteration(&space, &mut hvp, 2000, 1e-12, &mut rng);
    assert!(
        (lam.value - top_magnitude).abs() < 1e-4 * top_magnitude.abs().max(1.0),
        "power iteration {lam:?} vs {top_magnitude} (spectrum {eig:?})"
    );
    // lambda_max is the algebraically largest eigenvalue: Lanczos to 1e-4 relative.
    let top = eig.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let s = lanczos(&space, &mut hvp, 100, 1e-10, &mut rng);
    assert!(
        (s.top().value - top).abs() <= 1e-4 * top.abs().max(1.0),
        "Lanczos {:?} vs {top} (spectrum {eig:?})",
        s.top()
    );
    // The store's parameters are exactly as before the perturbations.
    assert_eq!(ParamStore::download_vec(&store.snapshot()), theta);
}

#[test]
fn gauss_newton_trace_equals_hessian_trace_at_an_interpolating_point() {
    // Choose theta, then set y = f(x; theta): every residual is zero, so H = G exactly.
    let mut rng = StdRng::seed_from_u64(14);
    let dev = Cpu::default();
    for model in [Model::Diagonal { dim: 6 }, Model::Relu { dim: 3, width: 5 }] {
        let mut data = random_data(8, model_dim(&model), &mut rng);
        let theta = gaussian(model.num_params(), &mut rng);
        let store = model.store(&dev, &theta);
        let all = Batch::from_dataset(&dev, &data, None);
        data.y = model.predict(&store, &all);
        let batch = Batch::from_dataset(&dev, &data, None);
        assert!(model.loss(&store, &batch) < 1e-28);

        // Per-sample output gradients (one backward each) against the batched closed form.
        let per_sample = gauss_newton_trace((0..data.n).map(|i| {
            let one = Batch::from_dataset(&dev, &data, Some(&[i]));
            model.output_grad(&dev, &theta, &one)
        }));
        let gn = model.gauss_newton_trace(&store, &batch);
        assert!(
            (gn - per_sample).abs() < 1e-12 * per_sample.abs().max(1.0),
            "{model:?}: closed form {gn} vs per-sample {per_sample}"
        );
        let p = model.num_params();
        let dense = match model {
            Model::Relu { width, .. } => relu_hessian(&theta, &data, width),
            Model::Diagonal { .. } => diagonal_hessian(&theta, &data),
        };
        let trace: f64 = (0..p).map(|i| dense[i * p + i]).sum();
        assert!(
            (gn - trace).abs() < 1e-9 * trace.abs().max(1.0),
            "{model:?}: Gauss-Newton {gn} vs Hessian {trace}"
        );
        if let Model::Diagonal { .. } = model {
            let exact = diagonal_hessian(&theta, &data);
            let exact_trace: f64 = (0..p).map(|i| exact[i * p + i]).sum();
            assert!((gn - exact_trace).abs() < 1e-9 * exact_trace.abs().max(1.0));
        }
    }
}

fn model_dim(m: &Model) -> usize {
    match *m {
        Model::Relu { dim, .. } | Model::Diagonal { dim } => dim,
    }
}

#[test]
fn a_runs_lambda_max_matches_the_exact_spectrum_of_its_saved_parameters() {
    // Train a GD run of the diagonal network, then recompute its Hessian in closed form from
    // the saved artifacts alone and compare the reported lambda_max with the exact top
    // eigenvalue (power iteration with 40 steps was up to 1.4% low on such runs).
    use reglab::experiments::{self, MemorySink, RunContext};
    use reglab::params::{Override, Params};
    let dir = tempfile::tempdir().unwrap();
    let exp = experiments::find("sgd-stability").unwrap();
    let mut params = Params::defaults(&exp.params());
    let set = |k: &str, v: &str| Override {
        key: k.into(),
        value: v.into(),
    };
    params
        .apply_overrides(
            &exp.params(),
            &[
                set("model", "diagonal"),
                set("dim", "40"),
                set("n_train", "20"),
                set("optimizer", "gd"),
                set("eta", "0.04"),
                set("steps", "20000"),
                set("log_every", "20000"),
                set("final_probes", "4"),
            ],
        )
        .unwrap();
    let mut sink = MemorySink::default();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let mut ctx = RunContext::new(&params, 3, Some(dir.path().to_path_buf()), &mut sink, &stop);
    let end = exp.run(&mut ctx).unwrap();
    let saved = reglab::artifacts::read(&dir.path().join("params.safetensors")).unwrap();
    let data = reglab::artifacts::read(&dir.path().join("data.safetensors")).unwrap();
    let mut theta = saved["u"].data.clone();
    theta.extend(&saved["v"].data);
    let train = Dataset {
        x: data["x_train"].data.clone(),
        y: data["y_train"].data.clone(),
        n: 20,
        dim: 40,
    };
    let exact = symmetric_eigenvalues(&diagonal_hessian(&theta, &train), 80);
    let top = exact.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (lam, res) = (
        end.final_values["lambda_max"],
        end.final_values["lambda_residual"],
    );
    eprintln!("lambda_max {lam} (residual {res:.1e}), exact {top}");
    assert!(
        (lam - top).abs() <= 1e-3 * top,
        "lambda_max {lam} (residual {res}) vs exact {top}"
    );
}

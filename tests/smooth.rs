//! Smooth Diffusion: the finite-difference variation estimate against a central-difference
//! reference of the Jacobian-vector product, its gradient against finite differences of the
//! penalty, ISTD on known paths, and the claim check on the quick profile with the penalty on
//! and switched off.

use dfdx::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

use reglab::experiments::diffusion::{EpsNet, EpsNetConfig, NoiseSchedule};
use reglab::experiments::smooth::{istd, reg};
use reglab::headless;
use reglab::nn::store::ParamStore;
use reglab::verdict::Outcome;

fn small_net(rng: &mut StdRng) -> (ParamStore<f64, Cpu>, EpsNet) {
    let dev = Cpu::default();
    let mut store = ParamStore::<f64, Cpu>::new(&dev);
    let cfg = EpsNetConfig {
        data_dim: 6,
        cond_dim: 0,
        hidden: 16,
        depth: 2,
        emb_dim: 8,
    };
    let net = EpsNet::new(&mut store, "eps", cfg, rng);
    (store, net)
}

fn normal(n: usize, rng: &mut StdRng) -> Vec<f64> {
    (0..n).map(|_| rng.sample(StandardNormal)).collect()
}

#[test]
fn finite_difference_variation_matches_a_central_difference_jvp() {
    let mut rng = StdRng::seed_from_u64(4);
    let (store, net) = small_net(&mut rng);
    let schedule = NoiseSchedule::ddpm();
    let dim = 6;
    let t = vec![0usize, 30, 250, 600, 999];
    let n = t.len();
    let x0: Vec<f64> = (0..n * dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let eps = normal(n * dim, &mut rng);
    let z = normal(n * dim, &mut rng);
    let mut xt = Vec::new();
    for (i, &ti) in t.iter().enumerate() {
        let (a, s) = schedule.mix(ti);
        for j in 0..dim {
            xt.push((a * x0[i * dim + j] + s * eps[i * dim + j]) as f32);
        }
    }
    let z32: Vec<f32> = z.iter().map(|v| *v as f32).collect();
    let h = 0.01;
    let p = reg::probe(&schedule, &xt, &t, &z32, h, dim);
    // The estimator on the tape, as training uses it.
    let dev = Cpu::default();
    let up =
        |v: &[f32]| dev.tensor_from_vec(v.iter().map(|x| *x as f64).collect::<Vec<_>>(), (n, dim));
    let e1 = net.eps_taped(&store, up(&xt).leaky_trace(), None, &t);
    let e2 = net.eps_taped(&store, up(&p.xt_shifted).leaky_trace(), None, &t);
    let r = reg::variation(e1, e2, &p).as_vec();
    // Reference: || J v || with v = s z / sqrt(d), J = d x0_hat / d eps, by central differences
    // of the one-step map in f64 with a tiny step.
    let xt64: Vec<f64> = xt.iter().map(|v| *v as f64).collect();
    for (i, &ti) in t.iter().enumerate() {
        let (a, s) = schedule.mix(ti);
        // x0 such that x_t (as stored in f32) is exactly reproduced: eps given, x0 from x_t.
        let row = |v: &[f64]| v[i * dim..(i + 1) * dim].to_vec();
        let e = row(&eps);
        let x0i: Vec<f64> = row(&xt64)
            .iter()
            .zip(&e)
            .map(|(x, e)| (x - s * e) / a)
            .collect();
        let v: Vec<f64> = row(&z)
            .iter()
            .map(|z| s * z / (dim as f64).sqrt())
            .collect();
        let delta = 1e-4;
        let at = |sign: f64| {
            let ep: Vec<f64> = e
                .iter()
                .zip(&v)
                .map(|(e, v)| e + sign * delta * v)
                .collect();
            reg::x0_hat(&net, &store, &schedule, &x0i, &ep, &[ti])
        };
        let (plus, minus) = (at(1.0), at(-1.0));
        let jv = plus
            .iter()
            .zip(&minus)
            .map(|(p, m)| ((p - m) / (2.0 * delta)).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!(
            (r[i] - jv).abs() <= 1e-2 * jv + 1e-9,
            "t = {ti}: finite-difference r {} vs central-difference ||J v|| {jv}",
            r[i]
        );
    }
}

#[test]
fn penalty_gradient_matches_finite_differences_of_the_penalty() {
    let mut rng = StdRng::seed_from_u64(8);
    let (store, net) = small_net(&mut rng);
    let schedule = NoiseSchedule::ddpm();
    let (dim, t) = (6, vec![10usize, 400, 900]);
    let n = t.len();
    let xt: Vec<f32> = (0..n * dim).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
    let z: Vec<f32> = normal(n * dim, &mut rng)
        .iter()
        .map(|v| *v as f32)
        .collect();
    let p = reg::probe(&schedule, &xt, &t, &z, 0.01, dim);
    let dev = Cpu::default();
    let up =
        |v: &[f32]| dev.tensor_from_vec(v.iter().map(|x| *x as f64).collect::<Vec<_>>(), (n, dim));
    let m = 0.3;
    let penalty = |store: &ParamStore<f64, Cpu>| {
        let e1 = net.eps_taped(store, up(&xt).leaky_trace(), None, &t);
        let e2 = net.eps_taped(store, up(&p.xt_shifted).leaky_trace(), None, &t);
        (reg::variation(e1, e2, &p) - m).square().mean::<Rank0, _>()
    };
    let loss = penalty(&store);
    let value = loss.as_vec()[0];
    let mut grads = loss.backward();
    let g = store.gradient_vec(&mut grads);
    let names: Vec<String> = store
        .params()
        .iter()
        .filter(|p| p.trainable)
        .map(|p| p.name.clone())
        .collect();
    let mut checked = 0;
    for (name, grad) in names.iter().zip(g) {
        let grad = grad.as_vec();
        for i in (0..grad.len()).step_by(11) {
            let shifted = |d: f64| {
                let mut s = store.clone();
                let id = s.id(name);
                let mut v = s.values(id);
                v[i] += d;
                s.upload(id, v);
                penalty(&s).as_vec()[0]
            };
            let eps = 1e-6;
            let fd = (shifted(eps) - shifted(-eps)) / (2.0 * eps);
            assert!(
                (fd - grad[i]).abs() <= 1e-4 * (1.0 + fd.abs()),
                "{name}[{i}]: finite difference {fd} vs tape {} (penalty {value})",
                grad[i]
            );
            checked += 1;
        }
    }
    assert!(checked > 20);
}

#[test]
fn istd_is_zero_on_evenly_spaced_paths_and_scale_free_when_relative() {
    // Two paths of 5 points on a line: evenly spaced (std 0), and with steps 1, 1, 1, 3.
    let even: Vec<f64> = (0..5).flat_map(|k| [k as f64, 0.0]).collect();
    let uneven: Vec<f64> = [0.0, 1.0, 2.0, 3.0, 6.0]
        .iter()
        .flat_map(|&x| [x, 0.0])
        .collect();
    let (sd, rel) = istd(&even, 2, 5);
    assert!(sd.abs() < 1e-12 && rel.abs() < 1e-12);
    let (sd, rel) = istd(&uneven, 2, 5);
    // Steps 1, 1, 1, 3: mean 1.5, population std sqrt(0.75).
    assert!((sd - 0.75f64.sqrt()).abs() < 1e-12, "{sd}");
    assert!((rel - 0.75f64.sqrt() / 1.5).abs() < 1e-12, "{rel}");
    let scaled: Vec<f64> = uneven.iter().map(|x| 10.0 * x).collect();
    let both: Vec<f64> = even.iter().chain(&scaled).copied().collect();
    let (sd2, rel2) = istd(&both, 2, 5);
    assert!((sd2 - 10.0 * 0.75f64.sqrt() / 2.0).abs() < 1e-9);
    assert!((rel2 - rel / 2.0).abs() < 1e-12);
}

async fn quick(extra: &[(&str, &str)]) -> (reglab::verdict::Verdict, String) {
    let root = tempfile::tempdir().unwrap();
    let (res, text) = headless::run_quick("smooth-diffusion", None, extra, root.path())
        .await
        .unwrap();
    (res.verdict, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_profile_measures_the_claim_and_it_fails_with_the_penalty_off() {
    let (v, text) = quick(&[]).await;
    for id in ["1", "2", "3"] {
        assert_ne!(
            v.check(id).unwrap().outcome,
            Outcome::Inconclusive,
            "({id}) {text}"
        );
    }
    // At this size the penalty's direction shows: the claim's first check holds.
    assert_eq!(v.check("1").unwrap().outcome, Outcome::Holds, "{text}");
    // Mechanism off: the claim arm trains exactly like base, so its ISTD is not lower.
    let (v, text) = quick(&[("lambda_reg", "0")]).await;
    assert_eq!(v.check("1").unwrap().outcome, Outcome::Fails, "{text}");
}

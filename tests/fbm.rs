//! fbm-sde-vi: ln Gamma and the incomplete gamma against closed forms, the Markov
//! approximation's correlation against the exact fBM's, its variance scaling, the Van Loan
//! discretisation against the OU closed form, the Kalman likelihood against the dense Gaussian
//! likelihood, the variational H / theta / sigma gradients against finite differences of the
//! ELBO (common random numbers), the claim on the quick profile, and the claim not holding with
//! the mechanism switched off (one OU component: no fractional noise to fit).

use dfdx::prelude::Cpu;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use reglab::experiments::fbm::markov::{
    fbm_cov, gamma_grid, gamma_q, ln_gamma, ma_cov, omega, StateModel,
};
use reglab::experiments::fbm::vi::ViRun;
use reglab::experiments::fbm::{Dataset, FbmSdeVi};
use reglab::experiments::Experiment;
use reglab::headless;
use reglab::params::{ParamValue, Params};
use reglab::verdict::Outcome;

#[test]
fn gamma_functions_match_closed_forms() {
    let pi = std::f64::consts::PI;
    assert!((ln_gamma(5.0) - 24f64.ln()).abs() < 1e-12);
    assert!((ln_gamma(0.5) - pi.sqrt().ln()).abs() < 1e-12);
    assert!((ln_gamma(1.7) - 0.908_638_732_853_290_2f64.ln()).abs() < 1e-12);
    for &x in &[0.1, 0.8, 1.9, 3.0, 12.0, 60.0] {
        // Q(1, x) = e^{-x}; Q(a + 1, x) = Q(a, x) + x^a e^{-x} / Gamma(a + 1).
        assert!((gamma_q(1.0, x) / (-x).exp() - 1.0).abs() < 1e-12, "{x}");
        for &a in &[0.6, 0.85, 1.2] {
            let lhs = gamma_q(a + 1.0, x);
            let rhs = gamma_q(a, x) + (a * x.ln() - x - ln_gamma(a + 1.0)).exp();
            assert!(
                (lhs / rhs - 1.0).abs() < 1e-10,
                "a {a}, x {x}: {lhs} vs {rhs}"
            );
        }
    }
}

#[test]
fn the_markov_approximation_has_the_fbm_correlation_and_scaling() {
    let g = gamma_grid(5, 20.0);
    assert!((g[0] * g[4] - 1.0).abs() < 1e-12 && (g[4] - 20.0).abs() < 1e-9);
    for &h in &[0.3, 0.5, 0.7] {
        let w = omega(h, &g, 5.0);
        let ts = [0.5, 1.0, 2.0, 3.5, 5.0];
        let mut worst = 0.0f64;
        for &s in &ts {
            for &t in &ts {
                let c = ma_cov(&w, &g, s, t) / (ma_cov(&w, &g, s, s) * ma_cov(&w, &g, t, t)).sqrt();
                let e = fbm_cov(h, s, t) / (fbm_cov(h, s, s) * fbm_cov(h, t, t)).sqrt();
                worst = worst.max((c - e).abs());
            }
        }
        assert!(worst < 0.03, "H {h}: correlation off by {worst}");
        // Var / t^{2H} nearly constant over [1, 5].
        let r: Vec<f64> = [1.0, 2.5, 5.0]
            .iter()
            .map(|&t| ma_cov(&w, &g, t, t) / t.powf(2.0 * h))
            .collect();
        let spread = r.iter().cloned().fold(0.0, f64::max) / r.iter().cloned().fold(9.0, f64::min);
        assert!(spread < 1.2, "H {h}: ratios {r:?}");
    }
    // At H = 1/2 the approximation is close to a standard Brownian motion.
    let w = omega(0.5, &g, 5.0);
    assert!((ma_cov(&w, &g, 2.0, 2.0) / 2.0 - 1.0).abs() < 0.1);
}

fn model(k: usize) -> StateModel {
    let g = gamma_grid(k, 20.0);
    StateModel {
        theta: 0.7,
        sigma: 0.9,
        omega: if k == 0 { vec![] } else { omega(0.3, &g, 5.0) },
        gammas: if k == 0 { vec![] } else { g },
        r: 0.05f64.powi(2),
    }
}

#[test]
fn van_loan_matches_the_ou_closed_form_and_kalman_matches_the_dense_likelihood() {
    let ou = model(0);
    let dt = 0.05;
    let (f, q) = ou.discretise(dt);
    assert!((f[(0, 0)] - (-ou.theta * dt).exp()).abs() < 1e-12);
    let exact = ou.sigma.powi(2) * (1.0 - (-2.0 * ou.theta * dt).exp()) / (2.0 * ou.theta);
    assert!((q[(0, 0)] - exact).abs() < 1e-12);
    let mut rng = StdRng::seed_from_u64(3);
    for k in [0usize, 3, 5] {
        let m = model(k);
        let mut ys = Vec::new();
        let mut v = 0.0;
        for _ in 0..30 {
            v += 0.2 * (rng.gen::<f64>() - 0.5);
            ys.push(v);
        }
        let (f, q) = m.discretise(dt);
        let kalman = m.loglik_path(&f, &q, &ys);
        let dense = m.loglik_dense(&ys, dt);
        assert!(
            (kalman - dense).abs() < 1e-7 * dense.abs().max(1.0),
            "K {k}: {kalman} vs {dense}"
        );
    }
}

fn vi_params() -> Params {
    let exp = FbmSdeVi;
    let mut p = Params::defaults(&exp.params());
    for (k, v) in [
        ("grid", ParamValue::Int(200)),
        ("every", ParamValue::Int(10)),
        ("paths", ParamValue::Int(2)),
        ("samples", ParamValue::Int(3)),
        ("em_steps", ParamValue::Int(40)),
        ("hidden", ParamValue::Int(8)),
        ("hurst", ParamValue::Float(0.3)),
    ] {
        p.set(k, v);
    }
    p
}

#[test]
fn the_model_gradients_of_the_elbo_match_finite_differences() {
    let p = vi_params();
    let data = Dataset::generate(&p, 0);
    let dev = Cpu::default();
    let mut run = ViRun::new(&dev, &p, data, 0);
    let (h, th, sg) = (0.4, 0.8, 1.1);
    run.set_model(h, th, sg);
    run.reseed(7);
    let (g, _) = run.model_gradient();
    let z = [(h / (1.0 - h)).ln(), th.ln(), sg.ln()];
    let eps = 1e-2;
    for i in 0..3 {
        let at = |d: f64, run: &mut ViRun<Cpu>| {
            let mut zz = z;
            zz[i] += d;
            let hh = 1.0 / (1.0 + (-zz[0]).exp());
            run.set_model(hh, zz[1].exp(), zz[2].exp());
            run.reseed(7);
            run.estimate().loss
        };
        let fd = (at(eps, &mut run) - at(-eps, &mut run)) / (2.0 * eps);
        assert!(
            (fd - g[i]).abs() <= 0.03 * fd.abs().max(g[i].abs()) + 1e-3,
            "parameter {i}: finite difference {fd} vs tape {}",
            g[i]
        );
    }
}

async fn quick_launch(extra: &[(&str, &str)]) -> (reglab::verdict::Verdict, String) {
    let root = tempfile::tempdir().unwrap();
    let (res, text) = headless::run_quick("fbm-sde-vi", None, extra, root.path())
        .await
        .unwrap();
    (res.verdict, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_quick_profile_h_is_recovered_and_fbm_beats_bm() {
    let (v, text) = quick_launch(&[]).await;
    for id in ["1", "2"] {
        assert_eq!(
            v.check(id).unwrap().outcome,
            Outcome::Holds,
            "({id}) {text}"
        );
    }
    let n = &v.check("2").unwrap().numbers;
    assert!(n["h0.2.gain"] > 0.005, "{text}");
    // The variational arm reports its numbers (it decides check 3 either way).
    assert_ne!(
        v.check("3").unwrap().outcome,
        Outcome::Inconclusive,
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_ou_component_the_claim_does_not_hold() {
    // The mechanism off: one OU component cannot carry fractional noise; H only rescales it.
    let (v, text) = quick_launch(&[("components", "1")]).await;
    assert_ne!(v.check("1").unwrap().outcome, Outcome::Holds, "{text}");
    assert_ne!(v.outcome(), Outcome::Holds, "{text}");
}

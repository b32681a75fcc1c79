//! sso-surrogate: the target-space gradient against finite differences of the cross-entropy,
//! the surrogate's gradient against finite differences, its value at the anchor, majorisation
//! at eta = 2, one inner step = SGD with lr eta B / lambda_max (to 1e-12), the exact minimiser's
//! stationarity, the claim on the quick profile, and the claim not holding with the mechanism
//! switched off (one inner step per expensive call).

use nalgebra::DMatrix;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use reglab::experiments::sso::surrogate::{cross_entropy, target_gradient, Surrogate};
use reglab::headless;
use reglab::verdict::Outcome;

fn case(seed: u64) -> (DMatrix<f64>, Vec<usize>, DMatrix<f64>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let (b, f, c) = (12, 6, 4);
    let x = DMatrix::from_fn(b, f, |_, j| if j == f - 1 { 1.0 } else { rng.gen::<f64>() });
    let y: Vec<usize> = (0..b).map(|_| rng.gen_range(0..c)).collect();
    let w = DMatrix::from_fn(f, c, |_, _| rng.gen::<f64>() - 0.5);
    (x, y, w)
}

#[test]
fn the_target_gradient_and_the_surrogate_gradient_match_finite_differences() {
    let (x, y, w) = case(1);
    let z = &x * &w;
    let (g, l) = target_gradient(&z, &y);
    assert!((l - cross_entropy(&z, &y)).abs() < 1e-15);
    let h = 1e-6;
    for i in 0..z.nrows() {
        for k in 0..z.ncols() {
            let (mut zp, mut zm) = (z.clone(), z.clone());
            zp[(i, k)] += h;
            zm[(i, k)] -= h;
            let fd = (cross_entropy(&zp, &y) - cross_entropy(&zm, &y)) / (2.0 * h);
            assert!((fd - g[(i, k)]).abs() < 1e-9, "{fd} vs {}", g[(i, k)]);
        }
    }
    let s = Surrogate {
        x: &x,
        z0: z.clone(),
        g,
        l0: l,
        eta: 8.0,
    };
    // At the anchor the surrogate equals the loss, and its gradient is the loss's.
    assert!((s.value(&w) - l).abs() < 1e-15);
    let w2 = w.map(|v| v + 0.3);
    let grad = s.gradient(&w2);
    for j in 0..w.nrows() {
        for k in 0..w.ncols() {
            let (mut wp, mut wm) = (w2.clone(), w2.clone());
            wp[(j, k)] += h;
            wm[(j, k)] -= h;
            let fd = (s.value(&wp) - s.value(&wm)) / (2.0 * h);
            assert!((fd - grad[(j, k)]).abs() < 1e-8, "{fd} vs {}", grad[(j, k)]);
        }
    }
}

#[test]
fn at_eta_two_the_surrogate_majorises_and_one_step_is_sgd() {
    let mut rng = StdRng::seed_from_u64(2);
    for seed in 0..5 {
        let (x, y, w) = case(10 + seed);
        let z = &x * &w;
        let (g, l0) = target_gradient(&z, &y);
        let s = Surrogate {
            x: &x,
            z0: z,
            g: g.clone(),
            l0,
            eta: 2.0,
        };
        for _ in 0..50 {
            let scale = 3.0 * rng.gen::<f64>();
            let v = w.map(|a| a + scale * (rng.gen::<f64>() - 0.5));
            assert!(s.value(&v) >= cross_entropy(&(&x * &v), &y) - 1e-12);
        }
        // m = 1 with step 1/L_h is SGD with lr = eta B / lambda_max(X'X).
        let gram = x.transpose() * &x;
        let top = nalgebra::SymmetricEigen::new(gram)
            .eigenvalues
            .iter()
            .cloned()
            .fold(0.0, f64::max);
        let lr = 2.0 * x.nrows() as f64 / top;
        let sgd = &w - x.transpose() * &g * lr;
        let one = s.inner_steps(&w, 1);
        assert!((one - sgd).abs().max() < 1e-12);
        // The exact minimiser is stationary, and no worse than many inner steps.
        let e = s.exact(&w);
        assert!(s.gradient(&e).abs().max() < 1e-9);
        assert!(s.value(&e) <= s.value(&s.inner_steps(&w, 200)) + 1e-12);
    }
}

async fn quick_launch(extra: &[(&str, &str)]) -> (reglab::verdict::Verdict, String) {
    let root = tempfile::tempdir().unwrap();
    let (res, text) = headless::run_quick("sso-surrogate", None, extra, root.path())
        .await
        .unwrap();
    (res.verdict, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_quick_profile_sso_needs_fewer_expensive_calls() {
    let (v, text) = quick_launch(&[]).await;
    for id in ["1", "2", "3"] {
        assert_eq!(
            v.check(id).unwrap().outcome,
            Outcome::Holds,
            "({id}) {text}"
        );
    }
    assert!(v.check("1").unwrap().numbers["ratio_0.15"] < 0.5, "{text}");
    assert_eq!(v.outcome(), Outcome::Holds, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_inner_step_the_claim_does_not_hold() {
    // The mechanism off: one cheap step per expensive call makes every SSO arm SGD with the
    // small step eta B / lambda_max: no arm has m >= 5 and none saves calls over tuned SGD.
    let (v, text) = quick_launch(&[("inner_steps", "1")]).await;
    assert_ne!(v.check("1").unwrap().outcome, Outcome::Holds, "{text}");
    let savings = &v.check("4").unwrap().numbers;
    assert!(!savings.is_empty());
    for (k, s) in savings {
        assert!(*s < 1.0, "{k}: saving {s}\n{text}");
    }
    assert_ne!(v.outcome(), Outcome::Holds, "{text}");
}

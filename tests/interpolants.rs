//! stochastic-interpolants: the 2-D harness's numerics live in `diffusion::plane`'s unit tests
//! (exact fields against the transport equation and the score by finite differences, W1 against
//! closed forms). Here: the networks learn their regression targets, the claim's direction on
//! the quick profile, and the claim not holding with the SDE's diffusion switched off.

use dfdx::prelude::Cpu;
use rand::rngs::StdRng;
use rand::SeedableRng;

use reglab::experiments::diffusion::plane::{self, Mixture, PlaneNet, P2};
use reglab::headless;
use reglab::nn::store::ParamStore;
use reglab::nn::{Optimizer, Rule};
use reglab::verdict::Outcome;

#[test]
fn a_plane_net_learns_the_exact_ring_velocity() {
    // Regression on x1 - z: the learned b approaches the exact conditional expectation.
    let ring = Mixture::ring(8, 3.0, 0.25);
    let dev = Cpu::default();
    let mut rng = StdRng::seed_from_u64(1);
    let mut store = ParamStore::new(&dev);
    let net = PlaneNet::new(&mut store, "b", 64, 3, &mut rng);
    let mut opt = Optimizer::new(Rule::adam(), 2e-3);
    let draw = |n: usize, rng: &mut StdRng| {
        let x1 = ring.sample(n, rng);
        let z = plane::normals(n, rng);
        let t: Vec<f64> = (0..n).map(|_| rand::Rng::gen(rng)).collect();
        let xt: Vec<P2> = (0..n)
            .map(|i| {
                let (a, b) = (1.0 - t[i], t[i]);
                [a * z[i][0] + b * x1[i][0], a * z[i][1] + b * x1[i][1]]
            })
            .collect();
        let target: Vec<P2> = (0..n)
            .map(|i| [x1[i][0] - z[i][0], x1[i][1] - z[i][1]])
            .collect();
        (t, xt, target)
    };
    let err = |store: &ParamStore<f32, Cpu>, rng: &mut StdRng| {
        let (t, x, _) = draw(1000, rng);
        let hat = net.predict(store, &t, &x);
        t.iter()
            .zip(&x)
            .zip(&hat)
            .map(|((t, p), h)| {
                let b = ring.fields(*t, *p).0;
                (h[0] - b[0]).powi(2) + (h[1] - b[1]).powi(2)
            })
            .sum::<f64>()
            / 1000.0
    };
    let before = err(&store, &mut StdRng::seed_from_u64(9));
    for _ in 0..600 {
        let (t, x, y) = draw(256, &mut rng);
        net.regression_step(&mut store, &mut opt, &t, &x, &y)
            .unwrap();
    }
    let after = err(&store, &mut StdRng::seed_from_u64(9));
    assert!(after < 0.3 * before, "velocity error {before} -> {after}");
}

async fn quick(
    arms: Option<&[&str]>,
    extra: &[(&str, &str)],
) -> (reglab::verdict::Verdict, String) {
    let root = tempfile::tempdir().unwrap();
    let (res, text) = headless::run_quick("stochastic-interpolants", arms, extra, root.path())
        .await
        .unwrap();
    (res.verdict, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_quick_profile_the_sde_is_robust_to_the_velocity_error() {
    let (v, text) = quick(None, &[]).await;
    for id in ["1", "2"] {
        assert_eq!(
            v.check(id).unwrap().outcome,
            Outcome::Holds,
            "({id}) {text}"
        );
    }
    // The SDE at least lowers the under-trained arms' MMD^2 (the 0.7 threshold is the verdict's).
    for t in ["ring", "checker"] {
        let n = &v.check(&format!("3-{t}")).unwrap().numbers;
        let ode = n[&format!("undertrained-{t}.s0.mmd_ode")];
        let sde = n[&format!("undertrained-{t}.s0.mmd_sde")];
        assert!(sde < ode, "{t}: SDE {sde} vs ODE {ode}\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_diffusion_switched_off_the_robustness_check_fails() {
    // eps_scale 0: the "SDE" is the drift b alone (Euler), so it inherits the velocity error.
    let (v, text) = quick(Some(&["exact-d0.5", "exact-d1"]), &[("eps_scale", "0")]).await;
    assert_eq!(v.check("2").unwrap().outcome, Outcome::Fails, "{text}");
    assert_ne!(v.outcome(), Outcome::Holds, "{text}");
}

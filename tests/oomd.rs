//! oomd-sea: the losses' gradients against finite differences, the adversarial variation's
//! closed form against a search over x, the comparator against closed forms and its optimality
//! conditions, the learners' updates by hand, the exact noise level, the regret recomputed from
//! a run's artifacts, the claim on the quick profile, and the claim failing with the mechanism
//! switched off (a constant step instead of the adaptive one).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use reglab::headless;
use reglab::online::comparator::Comparator;
use reglab::online::learners::{AdaOgd, Learner, Ogd, Oomd, StepRule};
use reglab::online::sea::{Family, Path, Round, SeaConfig, SeaEnv};
use reglab::online::{dot, norm};
use reglab::verdict::Outcome;

fn random_vec(rng: &mut StdRng, d: usize, scale: f64) -> Vec<f64> {
    (0..d)
        .map(|_| scale * (2.0 * rng.gen::<f64>() - 1.0))
        .collect()
}

#[test]
fn loss_gradients_match_finite_differences() {
    let mut rng = StdRng::seed_from_u64(1);
    for family in [Family::Huber, Family::Linear] {
        for _ in 0..20 {
            let x = random_vec(&mut rng, 5, 1.5);
            let r = Round {
                c: random_vec(&mut rng, 5, 1.0),
                xi: random_vec(&mut rng, 5, 0.5),
            };
            let g = r.grad(family, &x);
            let h = 1e-6;
            for i in 0..5 {
                let (mut xp, mut xm) = (x.clone(), x.clone());
                xp[i] += h;
                xm[i] -= h;
                let fd = (r.loss(family, &xp) - r.loss(family, &xm)) / (2.0 * h);
                assert!((fd - g[i]).abs() < 1e-8, "{family:?} {i}: {fd} vs {}", g[i]);
            }
        }
    }
    // The pseudo-Huber value without cancellation: sqrt(1 + u^2) - 1 ~ u^2/2 for small u.
    let u = 1e-9;
    assert!((reglab::online::sea::huber(u) / (0.5 * u * u) - 1.0).abs() < 1e-12);
}

#[test]
fn the_variation_is_the_sup_of_the_gradient_difference() {
    let mut rng = StdRng::seed_from_u64(2);
    for _ in 0..10 {
        let a = random_vec(&mut rng, 1, 1.0);
        let b = random_vec(&mut rng, 1, 1.0);
        let closed = Family::Huber.variation(&a, &b);
        // A fine search over x in 1-D.
        let mut best = 0.0f64;
        for k in 0..=200_000 {
            let x = [-3.0 + 6.0 * k as f64 / 200_000.0];
            let ga = Family::Huber.grad(&x, &a);
            let gb = Family::Huber.grad(&x, &b);
            best = best.max((ga[0] - gb[0]).powi(2));
        }
        assert!(
            (best - closed).abs() < 1e-9 * (1.0 + closed),
            "{best} vs {closed}"
        );
        assert!(closed <= (a[0] - b[0]).powi(2) + 1e-15, "below |dc|^2");
    }
    // Linear: the gradient difference is constant, |a - b|^2.
    let (a, b) = ([0.1, -0.2, 0.3], [0.0, 0.1, 0.5]);
    let d2: f64 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
    assert!((Family::Linear.variation(&a, &b) - d2).abs() < 1e-15);
}

#[test]
fn the_comparator_matches_closed_forms_and_its_optimality_conditions() {
    let mut rng = StdRng::seed_from_u64(3);
    // Linear: -D |sum g| at x = -D sum g / |sum g|, and no point of the ball does better.
    let mut c = Comparator::new(Family::Linear, 4, 1.0);
    let mut sum = vec![0.0; 4];
    for _ in 0..50 {
        let r = Round {
            c: random_vec(&mut rng, 4, 1.0),
            xi: random_vec(&mut rng, 4, 0.3),
        };
        for (i, v) in sum.iter_mut().enumerate() {
            *v += r.c[i] + r.xi[i];
        }
        c.add(&r);
    }
    let (x, v) = c.solve(10);
    assert!((v + norm(&sum)).abs() < 1e-12);
    assert!((c.objective(&x) - v).abs() < 1e-12);
    for _ in 0..1000 {
        let mut y = random_vec(&mut rng, 4, 1.0);
        reglab::online::project_ball(&mut y, 1.0);
        assert!(c.objective(&y) >= v - 1e-12);
    }
    // Pseudo-Huber with a fixed centre inside the ball and no noise: the centre, value 0.
    let mut c = Comparator::new(Family::Huber, 5, 1.0);
    for _ in 0..100 {
        c.add(&Round {
            c: vec![0.3; 5],
            xi: vec![0.0; 5],
        });
    }
    let (x, v) = c.solve(3000);
    assert!(x.iter().all(|a| (a - 0.3).abs() < 1e-9), "{x:?}");
    assert!(v.abs() < 1e-12);
    // Pseudo-Huber with noise and moving centres: the KKT conditions, interior (gradient 0)
    // or on the boundary (gradient = -lambda x, lambda >= 0), and no random point does better.
    for (s, rho) in [(0.2, 0.3), (3.0, 1.0)] {
        let cfg = SeaConfig {
            family: Family::Huber,
            path: Path::Iid,
            dim: 5,
            s,
            rho,
            c0: 0.3,
            drift_period: 500,
            switch_every: 250,
        };
        let mut env = SeaEnv::new(cfg, 7);
        let mut c = Comparator::new(Family::Huber, 5, 1.0);
        for _ in 0..400 {
            c.add(&env.next_round());
        }
        let (x, v) = c.solve(3000);
        let g = c.gradient(&x);
        let scale = c.rounds as f64;
        if norm(&x) < 1.0 - 1e-9 {
            assert!(norm(&g) < 1e-8 * scale, "interior: |grad| {}", norm(&g));
        } else {
            let lambda = -dot(&g, &x);
            assert!(lambda >= 0.0, "boundary: lambda {lambda}");
            let resid: Vec<f64> = g.iter().zip(&x).map(|(a, b)| a + lambda * b).collect();
            assert!(norm(&resid) < 1e-8 * scale, "boundary: residual {resid:?}");
        }
        for _ in 0..500 {
            let mut y: Vec<f64> = x
                .iter()
                .map(|a| a + 0.05 * (rng.gen::<f64>() - 0.5))
                .collect();
            reglab::online::project_ball(&mut y, 1.0);
            assert!(c.objective(&y) >= v - 1e-9);
        }
    }
}

#[test]
fn the_noise_level_is_exact_and_the_paths_are_as_described() {
    let cfg = SeaConfig {
        family: Family::Huber,
        path: Path::Fixed,
        dim: 5,
        s: 0.7,
        rho: 0.0,
        c0: 0.3,
        drift_period: 500,
        switch_every: 250,
    };
    let mut env = SeaEnv::new(cfg.clone(), 0);
    let n = 40_000;
    let mean_sq = (0..n)
        .map(|_| norm(&env.next_round().xi).powi(2))
        .sum::<f64>()
        / n as f64;
    // E|xi|^2 = s^2; the estimate's s.e. is s^2 sqrt(2/(d n)).
    assert!((mean_sq - 0.49).abs() < 5.0 * 0.49 * (2.0 / (5.0 * n as f64)).sqrt());
    // Switch: c_0 + rho/sqrt(d) for rounds 1..250, then c_0 - rho/sqrt(d).
    let mut env = SeaEnv::new(
        SeaConfig {
            path: Path::Switch,
            rho: 0.5,
            ..cfg.clone()
        },
        0,
    );
    let cs: Vec<Vec<f64>> = (0..251).map(|_| env.next_round().c).collect();
    let up = 0.3 + 0.5 / 5f64.sqrt();
    assert!((cs[249][0] - up).abs() < 1e-15);
    assert!((cs[250][0] - (0.6 - up)).abs() < 1e-15);
    // Iid: every coordinate is c_0 +- rho/sqrt(d), so |c_t - c_0| = rho.
    let mut env = SeaEnv::new(
        SeaConfig {
            path: Path::Iid,
            rho: 0.4,
            ..cfg
        },
        0,
    );
    for _ in 0..10 {
        let c = env.next_round().c;
        let d: Vec<f64> = c.iter().map(|v| v - 0.3).collect();
        assert!((norm(&d) - 0.4).abs() < 1e-12);
    }
}

#[test]
fn learners_update_as_written() {
    let g1 = [0.4, -0.2];
    let g2 = [-0.1, 0.3];
    // OOMD, L = 1: eta = min(1/sqrt(1 + V), 1/4) = 1/4 while V < 15.
    let mut o = Oomd::new(2, 1.0, 1.0, 1.0, StepRule::Adaptive);
    let x1 = o.play();
    assert_eq!(x1, vec![0.0, 0.0], "M_1 = 0 plays x^_1 = 0");
    o.update(&g1);
    assert_eq!(o.xhat, vec![-0.1, 0.05]);
    assert!((o.v - 0.2).abs() < 1e-15);
    let x2 = o.play();
    // x_2 = x^_2 - eta M_2 = (-0.1, 0.05) - 0.25 (0.4, -0.2).
    assert!((x2[0] + 0.2).abs() < 1e-15 && (x2[1] - 0.1).abs() < 1e-15);
    o.update(&g2);
    assert!((o.v - 0.2 - 0.25 - 0.25).abs() < 1e-15);
    // Without smoothness the cap is gone: eta = 1/sqrt(1 + V).
    let mut o = Oomd::new(2, 1.0, 1.0, 0.0, StepRule::Adaptive);
    o.play();
    o.update(&[3.0, 4.0]);
    o.play();
    assert!((o.eta() - 1.0 / 26f64.sqrt()).abs() < 1e-15);
    // A play outside the ball is projected.
    let mut o = Oomd::new(2, 1.0, 1.0, 0.0, StepRule::Fixed(10.0));
    o.play();
    o.update(&[1.0, 0.0]);
    assert!((norm(&o.xhat) - 1.0).abs() < 1e-15 && o.xhat[0] < 0.0);
    // OGD: eta_1 = D/G; AdaOGD: eta_1 = D/sqrt(1 + |g_1|^2).
    let mut ogd = Ogd::new(2, 1.0, 2.0);
    ogd.update(&g1);
    assert_eq!(ogd.x, vec![-0.2, 0.1]);
    ogd.update(&g2);
    assert!((ogd.eta() - 0.5 / 2f64.sqrt()).abs() < 1e-15);
    let mut ada = AdaOgd::new(2, 1.0, 1.0);
    ada.update(&g1);
    assert!((ada.eta() - 1.0 / 1.2f64.sqrt()).abs() < 1e-15);
}

async fn quick_launch(
    extra: &[(&str, &str)],
) -> (
    reglab::verdict::Verdict,
    String,
    std::path::PathBuf,
    tempfile::TempDir,
) {
    let root = tempfile::tempdir().unwrap();
    let (res, text) = headless::run_quick("oomd-sea", None, extra, root.path())
        .await
        .unwrap();
    (res.verdict, text, res.launch_dir, root)
}

/// `sum_t f_t(x_t) - min_x sum_t f_t(x)` from a run's data.safetensors.
fn regret_from_artifacts(dir: &std::path::Path, family: Family, key: &str) -> f64 {
    let data = reglab::artifacts::read(&dir.join("data.safetensors")).unwrap();
    let (c, xi, x) = (&data["centres"], &data["noise"], &data[key]);
    let d = c.shape[1];
    let mut comparator = Comparator::new(family, d, 1.0);
    let mut total = 0.0;
    for t in 0..c.shape[0] {
        let r = Round {
            c: c.data[t * d..(t + 1) * d].to_vec(),
            xi: xi.data[t * d..(t + 1) * d].to_vec(),
        };
        total += r.loss(family, &x.data[t * d..(t + 1) * d]);
        comparator.add(&r);
    }
    total - comparator.solve(3000).1
}

fn final_value(dir: &std::path::Path, key: &str) -> f64 {
    let text = std::fs::read_to_string(dir.join("summary.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["final_values"][key].as_f64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_quick_profile_the_regret_stays_within_the_bound_and_scales() {
    let (v, text, dir, _root) = quick_launch(&[]).await;
    for id in ["1", "2", "3", "4"] {
        assert_eq!(
            v.check(id).unwrap().outcome,
            Outcome::Holds,
            "({id}) {text}"
        );
    }
    assert_eq!(v.outcome(), Outcome::Holds, "{text}");
    // The summary's regrets are recomputed from the artifacts.
    for (run, family) in [
        ("stoch-s0.3-s0", Family::Huber),
        ("lin-adv-rho0.3-s1", Family::Linear),
    ] {
        for (key, plays) in [("regret_oomd", "plays_oomd"), ("regret_ogd", "plays_ogd")] {
            let got = final_value(&dir.join(run), key);
            let want = regret_from_artifacts(&dir.join(run), family, plays);
            assert!(
                (got - want).abs() < 1e-9 * (1.0 + want.abs()),
                "{run} {key}: {got} vs {want}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_constant_step_the_claim_fails() {
    // The mechanism off: OOMD keeps the constant step 1/(4L) = 0.25 instead of shrinking it
    // with V_t, so with noise its regret grows linearly in T and quadratically in s.
    let (v, text, _, _root) = quick_launch(&[("step_rule", "fixed")]).await;
    for id in ["2", "3", "4"] {
        assert_eq!(
            v.check(id).unwrap().outcome,
            Outcome::Fails,
            "({id}) {text}"
        );
    }
    assert!(
        v.check("4").unwrap().numbers["s0.3.exponent"] > 0.9,
        "{text}"
    );
    assert_eq!(v.outcome(), Outcome::Fails, "{text}");
}

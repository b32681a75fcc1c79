//! SaRA: the nuclear-norm sub-gradient of the masked matrix against finite differences of the
//! nuclear norm, the setting and the budget on the quick profile, and the claim failing with the
//! mechanism switched off (a trainable set of 0.1% of the weights cannot adapt).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use reglab::headless;
use reglab::metrics::lowrank::Svd;
use reglab::verdict::{Outcome, Verdict};

#[test]
fn masked_nuclear_subgradient_matches_finite_differences() {
    let (m, n) = (12, 9);
    let mut rng = StdRng::seed_from_u64(2);
    let w: Vec<f64> = (0..m * n).map(|_| rng.gen::<f64>() - 0.5).collect();
    let mask: Vec<f64> = (0..m * n)
        .map(|_| if rng.gen::<f64>() < 0.4 { 1.0 } else { 0.0 })
        .collect();
    let nuc = |w: &[f64]| {
        let v: Vec<f64> = w.iter().zip(&mask).map(|(a, b)| a * b).collect();
        Svd::of(&v, m, n).nuclear_norm()
    };
    let v: Vec<f64> = w.iter().zip(&mask).map(|(a, b)| a * b).collect();
    let svd = Svd::of(&v, m, n);
    let g: Vec<f64> = svd
        .nuclear_subgradient(svd.value_rank(1e-9))
        .iter()
        .zip(&mask)
        .map(|(g, k)| g * k)
        .collect();
    let h = 1e-6;
    for i in 0..m * n {
        let (mut p, mut q) = (w.clone(), w.clone());
        p[i] += h;
        q[i] -= h;
        let fd = (nuc(&p) - nuc(&q)) / (2.0 * h);
        assert!((fd - g[i]).abs() < 1e-6, "entry {i}: {fd} vs {}", g[i]);
    }
}

async fn quick_launch(extra: &[(&str, &str)], arms: Option<&[&str]>) -> (Verdict, String) {
    let root = tempfile::tempdir().unwrap();
    let (res, text) = headless::run_quick("sara", arms, extra, root.path())
        .await
        .unwrap();
    (res.verdict, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_quick_profile_the_checks_are_decided() {
    let (v, text) = quick_launch(&[], None).await;
    // The domain shift exists (the setting note), so every claim check is decided.
    for id in ["1", "2", "3"] {
        assert_ne!(
            v.check(id).unwrap().outcome,
            Outcome::Inconclusive,
            "({id}) {text}"
        );
    }
    assert!(text.contains("pretrained: original digits"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_almost_nothing_trainable_sara_does_not_adapt() {
    // The mechanism off: a budget of 0.1% of the weights leaves SaRA (and the random set)
    // essentially frozen, so it cannot match LoRA on the rotated digits.
    let (v, text) = quick_launch(
        &[("budget", "0.001")],
        Some(&["frozen", "full", "lora-r4", "sara", "random-sparse"]),
    )
    .await;
    assert_eq!(v.check("1").unwrap().outcome, Outcome::Fails, "{text}");
    let n = &v.check("1").unwrap().numbers;
    assert!(n["sara.new_acc"] < 0.3, "{n:?}");
    assert_eq!(v.outcome(), Outcome::Fails, "{text}");
}

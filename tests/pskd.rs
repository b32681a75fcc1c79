//! PS-KD: the official ECE / AURC against the shared calibration code and by hand, the alpha and
//! learning-rate schedules, the soft-target loss's gradient, the claim on the quick profile, the
//! claim failing with the mechanism off (alpha_T 0), and the effect vanishing without the
//! stochastic training pass (no augmentation).

use dfdx::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use reglab::engine::LaunchRequest;
use reglab::experiments::pskd::calib::{bin_of, measure};
use reglab::experiments::pskd::{alpha_at, cosine_lr};
use reglab::headless;
use reglab::metrics::classification::calibration;
use reglab::params::Override;
use reglab::verdict::{Outcome, Verdict};

fn random_probs(n: usize, c: usize, rng: &mut StdRng) -> Vec<f64> {
    let mut p = Vec::with_capacity(n * c);
    for _ in 0..n {
        let sharp = rng.gen::<f64>() * 6.0;
        let row: Vec<f64> = (0..c).map(|_| (sharp * rng.gen::<f64>()).exp()).collect();
        let s: f64 = row.iter().sum();
        p.extend(row.iter().map(|v| v / s));
    }
    p
}

#[test]
fn official_ece_matches_the_shared_calibration_away_from_bin_edges() {
    let mut rng = StdRng::seed_from_u64(11);
    let (n, c) = (2000, 10);
    let probs = random_probs(n, c, &mut rng);
    let labels: Vec<usize> = (0..n).map(|_| rng.gen_range(0..c)).collect();
    let ours = measure(&probs, &labels, c);
    let shared = calibration(&probs, &labels, c, 10);
    // Random f64 confidences never sit exactly on an edge k/10, where the conventions differ.
    assert!(
        (ours.ece - 100.0 * shared.ece).abs() < 1e-9,
        "{} vs {}",
        ours.ece,
        shared.ece
    );
    assert!((ours.nll - shared.nll).abs() < 1e-12);
    assert!((ours.mean_confidence - shared.mean_confidence).abs() < 1e-12);
    assert_eq!(ours.accuracy, shared.accuracy);
    for (a, b) in ours.bins.iter().zip(&shared.bins) {
        assert_eq!(a.count, b.count);
    }
    // On an edge the official convention puts the point in the lower bin.
    assert_eq!(bin_of(0.5), 4);
    // AURC of a perfect ranking (all errors least confident) vs the reverse.
    let mut good = vec![(0.9, 0.0), (0.8, 0.0), (0.3, 1.0)];
    let mut bad = vec![(0.9, 1.0), (0.8, 0.0), (0.3, 0.0)];
    let a = reglab::experiments::pskd::calib::aurc(&mut good);
    let b = reglab::experiments::pskd::calib::aurc(&mut bad);
    assert!((a - (1.0 / 3.0) / 3.0).abs() < 1e-12, "{a}");
    assert!((b - (1.0 + 0.5 + 1.0 / 3.0) / 3.0).abs() < 1e-12, "{b}");
}

#[test]
fn alpha_grows_linearly_to_alpha_t_and_the_lr_follows_a_cosine() {
    assert!((alpha_at(0.8, 0, 200) - 0.004).abs() < 1e-15);
    assert!((alpha_at(0.8, 99, 200) - 0.4).abs() < 1e-15);
    assert!((alpha_at(0.8, 199, 200) - 0.8).abs() < 1e-15);
    assert_eq!(cosine_lr(0.05, 0, 200), 0.05);
    assert!((cosine_lr(0.05, 100, 200) - 0.025).abs() < 1e-15);
    assert!(cosine_lr(0.05, 199, 200) < 1e-5);
}

#[test]
fn soft_target_cross_entropy_gradient_is_softmax_minus_target() {
    let (b, c) = (3, 4);
    let mut rng = StdRng::seed_from_u64(2);
    let z: Vec<f64> = (0..b * c).map(|_| rng.gen::<f64>() * 4.0 - 2.0).collect();
    let t = random_probs(b, c, &mut rng);
    let dev = Cpu::default();
    let loss = |z: &[f64]| -> f64 {
        let zt: Tensor<(usize, usize), f64, Cpu> = dev.tensor_from_vec(z.to_vec(), (b, c));
        let tt = dev.tensor_from_vec(t.clone(), (b, c));
        cross_entropy_with_logits_loss(zt, tt).as_vec()[0]
    };
    let zt: Tensor<(usize, usize), f64, Cpu> = dev.tensor_from_vec(z.clone(), (b, c));
    let tt = dev.tensor_from_vec(t.clone(), (b, c));
    let g = cross_entropy_with_logits_loss(zt.leaky_trace(), tt).backward();
    let g = g.get(&zt).as_vec();
    for r in 0..b {
        let row = &z[r * c..(r + 1) * c];
        let s: f64 = row.iter().map(|v| v.exp()).sum();
        for k in 0..c {
            let want = (row[k].exp() / s - t[r * c + k]) / b as f64;
            assert!((g[r * c + k] - want).abs() < 1e-12);
            let mut zp = z.clone();
            zp[r * c + k] += 1e-6;
            let mut zm = z.clone();
            zm[r * c + k] -= 1e-6;
            let fd = (loss(&zp) - loss(&zm)) / 2e-6;
            assert!((fd - want).abs() < 1e-8, "{fd} vs {want}");
        }
    }
}

async fn launch(arms: &[&str], seeds: Option<&[u64]>, extra: &[(&str, &str)]) -> (Verdict, String) {
    let root = tempfile::tempdir().unwrap();
    let profile = reglab::experiments::find("ps-kd").unwrap().quick_profile();
    let p = profile.preset().unwrap();
    let mut req = LaunchRequest::from(&profile);
    req.arms = arms.iter().map(|a| a.to_string()).collect();
    if let Some(s) = seeds {
        req.seeds = s.to_vec();
    }
    for (k, v) in extra {
        req.overrides.push(Override {
            key: k.to_string(),
            value: v.to_string(),
        });
    }
    let (res, text) = headless::run_captured(&p, &req, root.path(), 2)
        .await
        .unwrap();
    (res.verdict, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_quick_profile_pskd_is_better_calibrated_and_the_gain_needs_augmentation() {
    let profile = reglab::experiments::find("ps-kd").unwrap().quick_profile();
    let (v, text) = launch(profile.arms, None, &[]).await;
    for id in ["0", "1", "2", "3"] {
        assert_eq!(
            v.check(id).unwrap().outcome,
            Outcome::Holds,
            "({id}) {text}"
        );
    }
    assert_eq!(v.outcome(), Outcome::Holds, "{text}");
    // Outside the regime (no stochastic training pass: the stored predictions are near
    // one-hot) the ECE gain over CE shrinks to a fraction of the augmented one.
    let c5 = v.check("5").unwrap();
    assert_eq!(c5.outcome, Outcome::Holds, "{text}");
    let (gain, gain0) = (c5.numbers["gain.aug"], c5.numbers["gain.noaug"]);
    assert!(
        gain0 < 0.5 * gain,
        "gain without augmentation {gain0} vs with {gain}\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_alpha_zero_pskd_is_cross_entropy_and_the_claim_fails() {
    let (v, text) = launch(&["ce", "pskd"], Some(&[0]), &[("alpha_T", "0")]).await;
    assert_eq!(v.check("0").unwrap().outcome, Outcome::Holds, "{text}");
    let c1 = v.check("1").unwrap();
    assert_eq!(c1.outcome, Outcome::Fails, "{text}");
    assert_eq!(c1.numbers["pskd.ece"], c1.numbers["ce.ece"], "{text}");
    assert_eq!(v.outcome(), Outcome::Fails, "{text}");
}

//! rrcm-smoothing: the Clopper-Pearson bound against exact binomial sums and published
//! quantiles, CERTIFY's coverage on a base classifier with a known top-class probability, the
//! consistency and InfoNCE losses (value and gradient) against host references and finite
//! differences, the collapse guard on a one-class classifier, and the claim on the quick
//! profile with the mechanism switched off.

use dfdx::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use reglab::experiments::diffusion::NoiseSchedule;
use reglab::experiments::rrcm::model::{
    consistency_loss, consistency_reference, info_nce, info_nce_reference,
};
use reglab::experiments::rrcm::{karras_levels, matching_timestep};
use reglab::experiments::{FinishedRun, RunStatus};
use reglab::headless;
use reglab::metrics::smoothing::{binomial_upper_tail, certify, clopper_pearson_lower, max_radius};
use reglab::metrics::special::normal_quantile;
use reglab::params::{ParamValue, Params};
use reglab::verdict::Outcome;

#[test]
fn clopper_pearson_matches_binomial_quantiles() {
    // The bound is the p at which P(Bin(n, p) >= k) = alpha: exact sums for small n.
    for (k, n) in [(1, 1), (3, 7), (12, 20), (99, 100), (450, 500)] {
        let p = clopper_pearson_lower(k, n, 0.001);
        assert!(
            (binomial_upper_tail(k, n, p) - 0.001).abs() < 1e-9,
            "{k}/{n}"
        );
        // Any larger p makes k successes more likely than alpha.
        assert!(binomial_upper_tail(k, n, p + 1e-6) > 0.001);
    }
    // Published two-sided 95% Clopper-Pearson intervals (lower ends): 1/10 -> 0.00253,
    // 9/10 -> 0.5550, 2/20 -> 0.01235.
    assert!((clopper_pearson_lower(1, 10, 0.025) - 0.002_53).abs() < 1e-5);
    assert!((clopper_pearson_lower(9, 10, 0.025) - 0.555_0).abs() < 1e-4);
    assert!((clopper_pearson_lower(2, 20, 0.025) - 0.012_35).abs() < 1e-5);
    // The spec's largest radius with n = 500, alpha = 0.001: 2.2 sigma.
    let r = max_radius(500, 0.001, 1.0);
    assert!((r - normal_quantile(0.001f64.powf(1.0 / 500.0))).abs() < 1e-12);
    assert!((r - 2.205).abs() < 2e-3, "{r}");
}

#[test]
fn certify_bounds_the_true_probability_with_the_promised_confidence() {
    // A base classifier that answers class 0 with probability 0.8: CERTIFY's lower bound
    // exceeds 0.8 in at most about alpha of the trials (alpha 0.05, 2000 trials).
    let mut rng = StdRng::seed_from_u64(7);
    let (p_true, alpha, trials) = (0.8, 0.05, 2000);
    let mut over = 0;
    for _ in 0..trials {
        let mut sample = |k: usize| {
            let mut c = vec![0usize; 3];
            for _ in 0..k {
                c[if rng.gen::<f64>() < p_true {
                    0
                } else {
                    1 + rng.gen_range(0..2)
                }] += 1;
            }
            c
        };
        let cert = certify(16, 100, alpha, 0.5, &mut sample);
        if cert.p_lower > p_true {
            over += 1;
        }
        if let Some(c) = cert.class {
            assert_eq!(c, 0);
            assert!((cert.radius - 0.5 * normal_quantile(cert.p_lower)).abs() < 1e-12);
        }
    }
    let rate = over as f64 / trials as f64;
    assert!(rate <= alpha + 0.015, "{rate}");
    assert!(
        rate > 0.0,
        "a conservative bound should still fail sometimes"
    );
}

fn random(n: usize, rng: &mut StdRng, scale: f64) -> Vec<f64> {
    (0..n)
        .map(|_| scale * (rng.gen::<f64>() * 2.0 - 1.0))
        .collect()
}

#[test]
fn consistency_loss_value_and_gradient_match_the_host_reference() {
    let dev = Cpu::default();
    let mut rng = StdRng::seed_from_u64(3);
    let (b, c, lbd, eta) = (4, 5, 2.0, 0.5);
    let l1 = random(b * c, &mut rng, 2.0);
    let l2 = random(b * c, &mut rng, 2.0);
    let t1: Tensor<(usize, usize), f64, Cpu> = dev.tensor_from_vec(l1.clone(), (b, c));
    let t2: Tensor<(usize, usize), f64, Cpu> = dev.tensor_from_vec(l2.clone(), (b, c));
    let loss = consistency_loss(t1.leaky_trace(), t2.leaky_trace(), lbd, eta);
    let (v, tape) = loss.split_tape();
    let value = v.as_vec()[0];
    assert!((value - consistency_reference(&l1, &l2, c, lbd, eta)).abs() < 1e-12);
    let g = v.put_tape(tape).backward();
    let (g1, g2) = (g.get(&t1).as_vec(), g.get(&t2).as_vec());
    let h = 1e-6;
    for i in 0..b * c {
        for (which, grad) in [(0, &g1), (1, &g2)] {
            let (mut p, mut m) = ((l1.clone(), l2.clone()), (l1.clone(), l2.clone()));
            if which == 0 {
                p.0[i] += h;
                m.0[i] -= h;
            } else {
                p.1[i] += h;
                m.1[i] -= h;
            }
            let fd = (consistency_reference(&p.0, &p.1, c, lbd, eta)
                - consistency_reference(&m.0, &m.1, c, lbd, eta))
                / (2.0 * h);
            assert!(
                (fd - grad[i]).abs() < 1e-7,
                "{which} {i}: {fd} vs {}",
                grad[i]
            );
        }
    }
}

#[test]
fn info_nce_value_and_gradient_match_the_host_reference() {
    let dev = Cpu::default();
    let mut rng = StdRng::seed_from_u64(5);
    let (b, d, tau) = (5, 3, 0.2);
    let q = random(b * d, &mut rng, 1.0);
    let k = random(b * d, &mut rng, 1.0);
    let tq: Tensor<(usize, usize), f64, Cpu> = dev.tensor_from_vec(q.clone(), (b, d));
    let tk: Tensor<(usize, usize), f64, Cpu> = dev.tensor_from_vec(k.clone(), (b, d));
    let loss = info_nce(tq.leaky_trace(), tk.clone(), tau);
    let (v, tape) = loss.split_tape();
    assert!((v.as_vec()[0] - info_nce_reference(&q, &k, d, tau)).abs() < 1e-12);
    let g = v.put_tape(tape).backward().get(&tq).as_vec();
    let h = 1e-6;
    for i in 0..b * d {
        let (mut p, mut m) = (q.clone(), q.clone());
        p[i] += h;
        m[i] -= h;
        let fd =
            (info_nce_reference(&p, &k, d, tau) - info_nce_reference(&m, &k, d, tau)) / (2.0 * h);
        assert!((fd - g[i]).abs() < 1e-7, "{i}: {fd} vs {}", g[i]);
    }
}

#[test]
fn karras_levels_and_the_matching_timestep() {
    let s = karras_levels(20, 2.0, 0.002, 7.0);
    assert!((s[0] - 2.0).abs() < 1e-12 && (s[19] - 0.002).abs() < 1e-12);
    assert!(s.windows(2).all(|w| w[0] > w[1]));
    let sched = NoiseSchedule::ddpm();
    for sigma in [0.25, 0.5] {
        let t = matching_timestep(&sched, 2.0 * sigma);
        let ratio = |t: usize| {
            let ab = sched.abar_at(Some(t));
            ((1.0 - ab) / ab).sqrt()
        };
        assert!(
            ratio(t - 1) < 2.0 * sigma && ratio(t + 1) > 2.0 * sigma,
            "{t}"
        );
    }
}

fn finished(arm: &str, seed: u64, clean: f64, top: f64, cert: [f64; 5], ms: f64) -> FinishedRun {
    let exp = reglab::experiments::find("rrcm-smoothing").unwrap();
    let mut params = Params::defaults(&exp.params());
    let (method, sigma) = arm.split_once("-s").unwrap();
    params.set("method", ParamValue::Text(method.into()));
    params.set("sigma", ParamValue::Float(sigma.parse().unwrap()));
    let mut v = std::collections::BTreeMap::new();
    for ((_, k), x) in reglab::experiments::rrcm::RADIUS_METRICS.iter().zip(cert) {
        v.insert(k.to_string(), x);
    }
    v.insert("clean_acc".into(), clean);
    v.insert("top_class_share".into(), top);
    v.insert("abstain_rate".into(), 0.0);
    v.insert("acr".into(), 0.3);
    v.insert("ms_per_certificate".into(), ms);
    v.insert(
        "forwards_per_sample".into(),
        if method == "denoise" { 2.0 } else { 1.0 },
    );
    FinishedRun {
        arm: arm.into(),
        seed,
        params,
        status: RunStatus::Completed { steps: 1 },
        final_values: v,
    }
}

fn launch(rrcm_collapsed: bool, denoise_collapsed: bool) -> Vec<FinishedRun> {
    launch_with(
        rrcm_collapsed,
        denoise_collapsed,
        [0.8, 0.5, 0.3, 0.1, 0.05],
    )
}

/// A launch whose healthy denoise runs certify `denoise_curve` (at r = 0, 0.25, 0.5, 0.75, 1).
fn launch_with(
    rrcm_collapsed: bool,
    denoise_collapsed: bool,
    denoise_curve: [f64; 5],
) -> Vec<FinishedRun> {
    let mut runs = Vec::new();
    for seed in 0..3 {
        for s in ["0.25", "0.5"] {
            runs.push(if denoise_collapsed {
                finished(&format!("denoise-s{s}"), seed, 0.1, 1.0, [0.1; 5], 8.0)
            } else {
                finished(
                    &format!("denoise-s{s}"),
                    seed,
                    0.8,
                    0.15,
                    denoise_curve,
                    8.0,
                )
            });
            runs.push(if rrcm_collapsed {
                // One class everywhere: "certified" at every radius, at chance accuracy, which
                // beats the denoiser's certified accuracy at the largest radii.
                finished(&format!("rrcm-s{s}"), seed, 0.11, 1.0, [0.11; 5], 3.0)
            } else {
                finished(
                    &format!("rrcm-s{s}"),
                    seed,
                    0.9,
                    0.15,
                    [0.9, 0.7, 0.5, 0.3, 0.2],
                    3.0,
                )
            });
        }
    }
    runs
}

#[test]
fn a_collapsed_classifier_fails_the_claim_and_a_collapsed_baseline_voids_it() {
    let exp = reglab::experiments::find("rrcm-smoothing").unwrap();
    let v = exp.verdict("claim", "rrcm-smoothing", &launch(false, false));
    assert_eq!(v.outcome(), Outcome::Holds, "{:#?}", v.checks);
    let v = exp.verdict("claim", "rrcm-smoothing", &launch(true, false));
    assert_eq!(v.check("0").unwrap().outcome, Outcome::Fails);
    assert_eq!(v.check("1").unwrap().outcome, Outcome::Fails);
    assert_eq!(v.outcome(), Outcome::Fails);
    let text = format!("{:?}", v.checks);
    assert!(text.contains("COLLAPSED"), "{text}");
    let v = exp.verdict("claim", "rrcm-smoothing", &launch(false, true));
    assert_eq!(v.check("0").unwrap().outcome, Outcome::Inconclusive);
    assert_eq!(v.check("1").unwrap().outcome, Outcome::Inconclusive);
    assert_eq!(v.outcome(), Outcome::Inconclusive);
    // A denoiser that certifies almost nothing beyond r = 0: the collapsed rrcm's chance-level
    // "certified" accuracy is above it at every claim radius, and only the guard fails it.
    let weak = [0.8, 0.05, 0.05, 0.05, 0.05];
    assert_eq!(
        exp.verdict("claim", "rrcm-smoothing", &launch_with(false, false, weak))
            .outcome(),
        Outcome::Holds
    );
    let v = exp.verdict("claim", "rrcm-smoothing", &launch_with(true, false, weak));
    assert_eq!(v.check("0").unwrap().outcome, Outcome::Fails);
    assert_eq!(v.check("1").unwrap().outcome, Outcome::Fails);
    assert_eq!(v.outcome(), Outcome::Fails);
    // An rrcm seed that diverged counts against the method; a run stopped (or failed) voids
    // the comparison, so the means never cover different seeds.
    let with_status = |arm: &str, status: RunStatus| -> Vec<FinishedRun> {
        let mut runs = launch(false, false);
        let r = runs
            .iter_mut()
            .find(|r| r.arm == arm && r.seed == 1)
            .unwrap();
        r.status = status;
        runs
    };
    let diverged = RunStatus::Diverged {
        step: 7,
        reason: "loss is NaN".into(),
    };
    let v = exp.verdict(
        "claim",
        "rrcm-smoothing",
        &with_status("rrcm-s0.5", diverged),
    );
    assert_eq!(v.check("0").unwrap().outcome, Outcome::Fails);
    assert_eq!(v.outcome(), Outcome::Fails);
    for arm in ["rrcm-s0.25", "denoise-s0.5"] {
        let v = exp.verdict(
            "claim",
            "rrcm-smoothing",
            &with_status(arm, RunStatus::Stopped { step: 3 }),
        );
        assert_eq!(
            v.check("0").unwrap().outcome,
            Outcome::Inconclusive,
            "{arm}"
        );
        assert_eq!(v.outcome(), Outcome::Inconclusive, "{arm}");
    }
    // A missing arm: inconclusive too.
    let runs: Vec<FinishedRun> = launch(false, false)
        .into_iter()
        .filter(|r| r.arm != "denoise-s0.5")
        .collect();
    assert_eq!(
        exp.verdict("claim", "rrcm-smoothing", &runs).outcome(),
        Outcome::Inconclusive
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quick_profile_decides_and_the_mechanism_off_does_not_hold() {
    let root = tempfile::tempdir().unwrap();
    let (res, text) = headless::run_quick("rrcm-smoothing", None, &[], root.path())
        .await
        .unwrap();
    let v = &res.verdict;
    for id in ["0", "1", "2"] {
        assert_ne!(
            v.check(id).unwrap().outcome,
            Outcome::Inconclusive,
            "{id}: {text}"
        );
    }
    assert_eq!(v.check("0").unwrap().outcome, Outcome::Holds, "{text}");
    // The mechanism off: no pre-training, no consistency term, no noise in training (the one
    // network only ever sees clean digits). It must not certify better than the denoiser.
    let root = tempfile::tempdir().unwrap();
    let off = [
        ("pretrain_steps", "0"),
        ("lbd", "0"),
        ("eta", "0"),
        ("train_noise", "0"),
    ];
    let (res, text) = headless::run_quick("rrcm-smoothing", None, &off, root.path())
        .await
        .unwrap();
    let v = &res.verdict;
    assert_eq!(v.check("1").unwrap().outcome, Outcome::Fails, "{text}");
    assert_ne!(v.outcome(), Outcome::Holds, "{text}");
}

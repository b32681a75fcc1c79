//! Sparse autoencoders: gradients of every variant against finite differences, the KL term
//! against its closed form, and the vSAE paper's finding at small scale on synthetic data.

#![allow(clippy::needless_range_loop)]

use dfdx::prelude::{Cpu, Gradients};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use reglab::engine::LaunchRequest;
use reglab::experiments::sae::model::{gaussian_kl, AuxK, Sae, Variant};
use reglab::headless;
use reglab::verdict::Outcome;

fn random_sae(variant: Variant, rng: &mut StdRng) -> Sae {
    let mut s = Sae::new(&Cpu::default(), 6, 10, 3, variant, rng);
    // Draws for every parameter a learned variance would have, so each variant sees the same
    // random configuration.
    let (d, m) = (s.d, s.m);
    for (name, n) in [("b_enc", m), ("b_dec", d), ("W_lv", d * m), ("b_lv", m)] {
        let v: Vec<f32> = (0..n).map(|_| rng.gen::<f32>() * 0.4 - 0.2).collect();
        if let Some(id) = s.store.find(name) {
            s.store.upload(id, v);
        }
    }
    s
}

fn host(sae: &Sae, name: &str) -> Vec<f32> {
    sae.store.values(sae.store.id(name))
}

/// Every trainable parameter's gradient, by name, downloaded.
fn named_grads(sae: &Sae, g: &mut Gradients<f32, Cpu>) -> Vec<(String, Vec<f32>)> {
    let v = sae.store.gradient_vec(g);
    sae.store
        .params()
        .iter()
        .filter(|p| p.trainable)
        .zip(v)
        .map(|(p, t)| (p.name.clone(), t.as_vec()))
        .collect()
}

fn perturbed(sae: &Sae, name: &str, i: usize, delta: f32) -> Sae {
    let mut s = sae.clone();
    let id = s.store.id(name);
    let mut v = s.store.values(id);
    v[i] += delta;
    s.store.upload(id, v);
    s
}

/// Central differences of the loss against the analytic gradient, for a sample of parameters.
fn check_gradients(variant: Variant, dead: Option<Vec<bool>>) {
    let mut rng = StdRng::seed_from_u64(21);
    let sae = random_sae(variant, &mut rng);
    let b = 5;
    let x: Vec<f32> = (0..b * sae.d)
        .map(|_| rng.gen::<f32>() * 2.0 - 1.0)
        .collect();
    // The same noise for every evaluation.
    let noise = StdRng::seed_from_u64(99);
    let mut out = sae.train_step(&x, b, dead.as_deref(), 1.0, &mut noise.clone());
    let h = 1e-2f32;
    let mut checked = 0;
    for (name, grad) in named_grads(&sae, &mut out.grads) {
        for i in (0..grad.len()).step_by(7) {
            let loss_at = |delta: f32| {
                perturbed(&sae, &name, i, delta)
                    .train_step(&x, b, dead.as_deref(), 1.0, &mut noise.clone())
                    .loss as f64
            };
            let fd = (loss_at(h) - loss_at(-h)) / (2.0 * h as f64);
            let g = grad[i] as f64;
            assert!(
                (fd - g).abs() <= 2e-2 * (1.0 + g.abs()),
                "{variant:?}: parameter {name}[{i}]: finite difference {fd} vs gradient {g}"
            );
            checked += 1;
        }
    }
    assert!(checked > 20);
}

#[test]
fn topk_sae_gradients_match_finite_differences() {
    check_gradients(Variant::TopK, None);
}

#[test]
fn vsae_gradients_match_finite_differences() {
    check_gradients(
        Variant::Vsae {
            kl_weight: 0.5,
            learned_variance: true,
            log_var_init: -2.0,
        },
        None,
    );
    check_gradients(
        Variant::Vsae {
            kl_weight: 1.0,
            learned_variance: false,
            log_var_init: -2.0,
        },
        None,
    );
}

#[test]
fn auxk_gradients_match_finite_differences() {
    let mut rng = StdRng::seed_from_u64(8);
    let sae = random_sae(Variant::TopK, &mut rng).with_aux(AuxK {
        k_aux: 2,
        weight: 0.5,
    });
    let b = 5;
    let x: Vec<f32> = (0..b * sae.d)
        .map(|_| rng.gen::<f32>() * 2.0 - 1.0)
        .collect();
    let e: Vec<f32> = (0..b * sae.d).map(|_| rng.gen::<f32>() - 0.5).collect();
    let dead: Vec<bool> = (0..sae.m).map(|j| j % 3 == 0).collect();
    // The aux loss against central differences, with its target held fixed.
    let (_, mut g) = sae.aux_loss(&x, &e, b, &dead, 2).unwrap();
    let grads = named_grads(&sae, &mut g);
    let h = 1e-2f32;
    let mut checked = 0;
    for (name, grad) in &grads {
        for i in (0..grad.len()).step_by(5) {
            let at = |delta: f32| {
                perturbed(&sae, name, i, delta)
                    .aux_loss(&x, &e, b, &dead, 2)
                    .unwrap()
                    .0 as f64
            };
            let fd = (at(h) - at(-h)) / (2.0 * h as f64);
            let gr = grad[i] as f64;
            assert!(
                (fd - gr).abs() <= 2e-2 * (1.0 + gr.abs()),
                "{name}[{i}]: {fd} vs {gr}"
            );
            checked += 1;
        }
    }
    assert!(checked > 20);
    // A training step's gradient is the TopK gradient plus the weighted aux gradient, whose
    // target is the step's own residual.
    let mut plain = sae.clone();
    plain.aux = None;
    let noise = StdRng::seed_from_u64(1);
    let mut base = plain.train_step(&x, b, None, 1.0, &mut noise.clone());
    let mut with_aux = sae.train_step(&x, b, Some(&dead), 1.0, &mut noise.clone());
    let xhat = sae.decode(&sae.encode(&x, b), b);
    let resid: Vec<f32> = x.iter().zip(&xhat).map(|(a, h)| a - h).collect();
    let (aux, mut aux_g) = sae.aux_loss(&x, &resid, b, &dead, 2).unwrap();
    assert!((with_aux.aux - aux).abs() < 1e-5);
    assert!((with_aux.loss - (base.loss + 0.5 * aux)).abs() < 1e-4);
    let base_g = named_grads(&sae, &mut base.grads);
    let with_g = named_grads(&sae, &mut with_aux.grads);
    let aux_g = named_grads(&sae, &mut aux_g);
    for ((bg, wg), ag) in base_g.iter().zip(&with_g).zip(&aux_g) {
        for i in 0..bg.1.len() {
            let want = bg.1[i] + 0.5 * ag.1[i];
            assert!((wg.1[i] - want).abs() < 1e-4, "{}[{i}]", bg.0);
        }
    }
}

#[test]
fn kl_term_matches_its_closed_form() {
    // Known values.
    assert_eq!(gaussian_kl(0.0, 0.0), 0.0);
    assert!((gaussian_kl(2.0, 0.0) - 2.0).abs() < 1e-12);
    let s2: f64 = 0.25;
    assert!((gaussian_kl(0.0, s2.ln()) - 0.5 * (s2 - s2.ln() - 1.0)).abs() < 1e-12);
    // The model's KL equals the closed form summed over latents, averaged over tokens.
    let mut rng = StdRng::seed_from_u64(5);
    let sae = random_sae(
        Variant::Vsae {
            kl_weight: 1.0,
            learned_variance: true,
            log_var_init: -2.0,
        },
        &mut rng,
    );
    let b = 4;
    let x: Vec<f32> = (0..b * sae.d).map(|_| rng.gen::<f32>() - 0.5).collect();
    let out = sae.train_step(&x, b, None, 1.0, &mut rng);
    let mu = sae.pre_activations(&x, b);
    let (b_lv, b_dec, w_lv) = (host(&sae, "b_lv"), host(&sae, "b_dec"), host(&sae, "W_lv"));
    let mut want = 0.0;
    for r in 0..b {
        for j in 0..sae.m {
            let lv: f64 = b_lv[j] as f64
                + (0..sae.d)
                    .map(|i| (x[r * sae.d + i] - b_dec[i]) as f64 * w_lv[i * sae.m + j] as f64)
                    .sum::<f64>();
            // The authors' form: mean relu(pre), log-variance clamped to [-6, 2].
            let mean = (mu[r * sae.m + j] as f64).max(0.0);
            want += gaussian_kl(mean, lv.clamp(-6.0, 2.0));
        }
    }
    want /= b as f64;
    assert!(
        (out.kl as f64 - want).abs() < 1e-3 * want.max(1.0),
        "{} vs {want}",
        out.kl
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kl_term_is_tested_as_the_cause_and_runs_that_learned_nothing_are_left_out() {
    // The quick profile: TopK, the vSAE with KL weight 0.1 and 1, and the same vSAE without the
    // KL term, on synthetic data. At this scale the KL-free vSAE leaves more latents dead than
    // the one with the KL term (the sampling noise kills them, not the KL): check (iii) FAILS,
    // which is what the run measured. The KL-1 vSAE explains no variance on held-out
    // deterministic encodings, so its comparisons are left out instead of counting as support.
    let root = tempfile::tempdir().unwrap();
    let profile = reglab::experiments::find("vsae").unwrap().quick_profile();
    let p = profile.preset().unwrap();
    let req = LaunchRequest::from(&profile);
    let (res, text) = headless::run_captured(&p, &req, root.path(), 2)
        .await
        .unwrap();
    let v = &res.verdict;
    let iii = v.check("iii").unwrap();
    assert_eq!(iii.outcome, Outcome::Fails, "{text}");
    let n = &iii.numbers;
    assert!(
        n["vsae-kl0.s0.dead_eval"] > n["vsae-kl0.1.s0.dead_eval"],
        "{n:?}\n{text}"
    );
    assert!(
        text.contains("learned no representation, left out"),
        "{text}"
    );
    assert_ne!(v.outcome(), Outcome::Holds, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_kl_term_no_check_of_the_claim_can_hold() {
    // The mechanism removed: every vSAE arm at KL weight 0. The checks that compare vSAEs with a
    // KL term have nothing to compare: INCONCLUSIVE, never HOLDS.
    let root = tempfile::tempdir().unwrap();
    let profile = reglab::experiments::find("vsae").unwrap().quick_profile();
    let p = profile.preset().unwrap();
    let mut req = LaunchRequest::from(&profile);
    req.overrides.push(reglab::params::Override {
        key: "kl_weight".into(),
        value: "0".into(),
    });
    req.overrides.push(reglab::params::Override {
        key: "steps".into(),
        value: "200".into(),
    });
    let (res, text) = headless::run_captured(&p, &req, root.path(), 2)
        .await
        .unwrap();
    for c in &res.verdict.checks {
        assert_ne!(c.outcome, Outcome::Holds, "({}) {text}", c.id);
    }
}

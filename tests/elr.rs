//! ELR (early-learning regularization): the loss's gradient against finite differences and its
//! closed form, the target ensemble's update, the claim on the quick profile, and the claim
//! failing with the mechanism switched off (lambda 0).

use dfdx::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use reglab::experiments::elr::loss::{elr_loss, reg_gradient_closed_form, TargetEnsemble};
use reglab::headless;
use reglab::verdict::Outcome;

const B: usize = 4;
const C: usize = 5;

/// The ELR loss of fixed logits, labels and targets, in f64 on the CPU.
fn loss_at(logits: &[f64], labels: &[f64], targets: &[f64], lambda: f64) -> f64 {
    let dev = Cpu::default();
    let z: Tensor<(usize, usize), f64, Cpu> = dev.tensor_from_vec(logits.to_vec(), (B, C));
    let y = dev.tensor_from_vec(labels.to_vec(), (B, C));
    let t = dev.tensor_from_vec(targets.to_vec(), (B, C));
    elr_loss(z.leaky_trace(), y, t, lambda).loss.as_vec()[0]
}

fn gradient(logits: &[f64], labels: &[f64], targets: &[f64], lambda: f64) -> Vec<f64> {
    let dev = Cpu::default();
    let z: Tensor<(usize, usize), f64, Cpu> = dev.tensor_from_vec(logits.to_vec(), (B, C));
    let y = dev.tensor_from_vec(labels.to_vec(), (B, C));
    let t = dev.tensor_from_vec(targets.to_vec(), (B, C));
    let out = elr_loss(z.leaky_trace(), y, t, lambda);
    let g = out.loss.backward();
    g.get(&z).as_vec()
}

fn random_case(rng: &mut StdRng, scale: f64) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let logits: Vec<f64> = (0..B * C)
        .map(|_| scale * (rng.gen::<f64>() * 2.0 - 1.0))
        .collect();
    let mut labels = vec![0.0; B * C];
    let mut targets = vec![0.0; B * C];
    for r in 0..B {
        labels[r * C + rng.gen_range(0..C)] = 1.0;
        // A target row as the ensemble makes it: (1 - beta^k) times a distribution.
        let raw: Vec<f64> = (0..C).map(|_| rng.gen::<f64>()).collect();
        let s: f64 = raw.iter().sum();
        let mass = 0.3 + 0.6 * rng.gen::<f64>();
        for k in 0..C {
            targets[r * C + k] = mass * raw[k] / s;
        }
    }
    (logits, labels, targets)
}

#[test]
fn elr_gradient_matches_finite_differences_and_the_closed_form() {
    let mut rng = StdRng::seed_from_u64(3);
    for lambda in [0.0, 3.0, 7.0] {
        let (z, y, t) = random_case(&mut rng, 2.0);
        let g = gradient(&z, &y, &t, lambda);
        let h = 1e-6;
        for i in 0..B * C {
            let mut zp = z.clone();
            zp[i] += h;
            let mut zm = z.clone();
            zm[i] -= h;
            let fd = (loss_at(&zp, &y, &t, lambda) - loss_at(&zm, &y, &t, lambda)) / (2.0 * h);
            assert!(
                (fd - g[i]).abs() < 1e-7 * (1.0 + g[i].abs()),
                "lambda {lambda}, logit {i}: finite difference {fd} vs gradient {}",
                g[i]
            );
        }
        // Minus the CE part (softmax - onehot) / B leaves lambda times the regularizer's
        // gradient, which has a closed form (no clamp active at these logits).
        for r in 0..B {
            let row = &z[r * C..(r + 1) * C];
            let closed = reg_gradient_closed_form(row, &t[r * C..(r + 1) * C]);
            let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = row.iter().map(|v| (v - m).exp()).sum();
            for k in 0..C {
                let p = (row[k] - m).exp() / s;
                let ce = (p - y[r * C + k]) / B as f64;
                let want = ce + lambda * closed[k] / B as f64;
                assert!(
                    (g[r * C + k] - want).abs() < 1e-12,
                    "row {r} class {k}: {} vs closed form {want}",
                    g[r * C + k]
                );
            }
        }
    }
}

#[test]
fn the_regularizer_pulls_towards_the_targets_and_the_clamp_stops_it_at_saturation() {
    // With no label signal (uniform "labels" cancel nothing), a step down the regularizer's
    // gradient raises <t, p>: the gradient on the target's class is negative.
    let z = vec![0.0; B * C];
    let y = vec![1.0 / C as f64; B * C];
    let mut t = vec![0.0; B * C];
    for r in 0..B {
        t[r * C + r] = 0.9;
    }
    let g = gradient(&z, &y, &t, 3.0);
    for r in 0..B {
        assert!(g[r * C + r] < 0.0, "row {r}: {}", g[r * C + r]);
    }
    // A saturated row (softmax above 1 - 1e-4 at the target's class) gets no gradient from the
    // regularizer: only CE's remains.
    let mut z = vec![0.0; B * C];
    z[0] = 20.0;
    let g3 = gradient(&z, &y, &t, 3.0);
    let g0 = gradient(&z, &y, &t, 0.0);
    for k in 0..C {
        assert!(
            (g3[k] - g0[k]).abs() < 1e-12,
            "class {k}: {} vs {}",
            g3[k],
            g0[k]
        );
    }
    assert!(
        (g3[C] - g0[C]).abs() > 1e-3,
        "an unsaturated row does feel the regularizer"
    );
}

#[test]
fn the_ensemble_update_is_a_running_average_of_renormalised_predictions() {
    let mut e = TargetEnsemble::new(2, 3, 0.7);
    let p = [0.2f32, 0.3, 0.5];
    let mut want = [0.0f64; 3];
    for _ in 0..5 {
        let rows = e.update(&[1], &p);
        for k in 0..3 {
            want[k] = 0.7 * want[k] + 0.3 * p[k] as f64;
            assert!((rows[k] as f64 - want[k]).abs() < 1e-6);
        }
    }
    // After k updates the row sums to 1 - beta^k; row 0 was never touched.
    let s: f32 = e.t[3..6].iter().sum();
    assert!((s as f64 - (1.0 - 0.7f64.powi(5))).abs() < 1e-5);
    assert_eq!(&e.t[0..3], &[0.0; 3]);
}

async fn quick_launch(
    extra: &[(&str, &str)],
    arms: Option<&[&str]>,
) -> (
    reglab::verdict::Verdict,
    String,
    std::collections::BTreeMap<String, reglab::metrics::picture::Picture>,
) {
    let root = tempfile::tempdir().unwrap();
    let (res, text) = headless::run_quick("elr-noisy-labels", arms, extra, root.path())
        .await
        .unwrap();
    let pictures = reglab::engine::store::read_pictures(&res.launch_dir.join("ce-n60-s0"));
    (res.verdict, text, pictures)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_quick_profile_ce_memorizes_and_elr_does_not() {
    let (v, text, pictures) = quick_launch(&[], None).await;
    // CE's picture: training digits it predicts as their wrong label, "label (true)".
    match &pictures["memorized wrong labels: label (true)"] {
        reglab::metrics::picture::Picture::Images { captions, .. } => {
            assert_eq!(captions.len(), 24, "CE memorized many: the grid is full");
            for c in captions {
                let (label, truth) = (c.chars().next(), c.chars().nth(3));
                assert_ne!(label, truth, "{c}");
            }
        }
        other => panic!("{other:?}"),
    }
    for tag in ["n40", "n60"] {
        for i in 1..=4 {
            let id = format!("{i}-{tag}");
            assert_eq!(
                v.check(&id).unwrap().outcome,
                Outcome::Holds,
                "({id}) {text}"
            );
        }
    }
    assert_eq!(v.outcome(), Outcome::Holds, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_lambda_zero_the_claim_fails() {
    // The mechanism off: the ELR arm at lambda 0 is cross entropy with the same seed, data and
    // batches, so it memorizes exactly as CE does.
    let (v, text, _) = quick_launch(&[("lambda", "0")], Some(&["ce-n60", "elr-n60"])).await;
    assert_eq!(v.check("1-n60").unwrap().outcome, Outcome::Holds, "{text}");
    for id in ["2-n60", "3-n60", "4-n60"] {
        assert_eq!(
            v.check(id).unwrap().outcome,
            Outcome::Fails,
            "({id}) {text}"
        );
    }
    let n = &v.check("3-n60").unwrap().numbers;
    assert!(n["n60.advantage"].abs() < 1e-12, "{n:?}");
    assert_eq!(v.outcome(), Outcome::Fails, "{text}");
}

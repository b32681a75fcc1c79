//! Trained rank pruning: the TRP step's projection and sub-gradient against their exact answers
//! (the SVD of the weight before the step), the quick profile deciding every check with a plain
//! twin that reproduces the baseline arm, and the claim's checks with TRP switched off.

use dfdx::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use reglab::engine::LaunchRequest;
use reglab::experiments::classifier::EpochBatches;
use reglab::experiments::trp::{Regime, TrpNet};
use reglab::headless;
use reglab::metrics::lowrank::Svd;
use reglab::nn::{Optimizer, Rule};
use reglab::params::ParamValue;
use reglab::verdict::Outcome;

type Batch = Tensor<(usize, usize), f32, Cpu>;

const SIZES: [usize; 5] = [64, 24, 20, 16, 10];

fn regime(project: bool, lambda: f64, full: bool) -> Regime {
    Regime {
        project,
        energy: 0.8,
        period: 3,
        lambda,
        full_subgradient: full,
    }
}

/// Plain SGD (no momentum, no decay), so one step moves the weights by `-lr` times the
/// gradient exactly.
fn net(r: Regime) -> TrpNet<Cpu> {
    TrpNet::new(
        &Cpu::default(),
        "mlp",
        &SIZES,
        r,
        Optimizer::new(Rule::sgd(), 0.1),
        7,
        EpochBatches::new(40, 8, 3),
    )
}

fn data() -> (Batch, Batch) {
    let mut rng = StdRng::seed_from_u64(1);
    let dev = Cpu::default();
    let x: Vec<f32> = (0..40 * 64).map(|_| rng.gen::<f32>()).collect();
    let mut y = vec![0.0f32; 40 * 10];
    for i in 0..40 {
        y[i * 10 + rng.gen_range(0..10)] = 1.0;
    }
    (
        dev.tensor_from_vec(x, (40, 64)),
        dev.tensor_from_vec(y, (40, 10)),
    )
}

fn weight(n: &TrpNet<Cpu>, i: usize) -> Vec<f32> {
    n.store.values(n.mlp.layer_weight(i))
}

#[test]
fn the_sub_gradient_moves_the_weights_by_lr_lambda_u_v_transposed() {
    // Same initialization and batches; one step with and one without the sub-gradient differ
    // in the decomposable layers by exactly -lr lambda G, G = U V^T (full) or U_k V_k^T of the
    // weight before the step, and nowhere else.
    let (x, y) = data();
    let lambda = 0.05;
    for full in [true, false] {
        let mut plain = net(regime(false, 0.0, false));
        let mut nuc = net(regime(false, lambda, full));
        assert_eq!(nuc.decomposed, vec![1, 2]);
        let before: Vec<Vec<f32>> = (0..4).map(|i| weight(&nuc, i)).collect();
        plain.step(&x, &y, 0, 0.1).unwrap();
        nuc.step(&x, &y, 0, 0.1).unwrap();
        for i in 0..4 {
            let (a, b) = (weight(&plain, i), weight(&nuc, i));
            if i == 1 || i == 2 {
                let (r, c) = (SIZES[i], SIZES[i + 1]);
                let svd = Svd::of(&before[i], r, c);
                let k = if full { r.min(c) } else { svd.energy_rank(0.8) };
                assert!(k < r.min(c) || full);
                let g = svd.nuclear_subgradient(k);
                for ((a, b), g) in a.iter().zip(&b).zip(&g) {
                    let want = -0.1 * lambda * g;
                    assert!(
                        ((b - a) as f64 - want).abs() < 2e-6,
                        "layer {i}: {} vs {want}",
                        b - a
                    );
                }
            } else {
                assert_eq!(a, b, "layer {i} is not decomposed");
            }
        }
    }
}

#[test]
fn a_trp_step_replaces_the_weight_by_its_energy_truncation() {
    let mut n = net(regime(true, 0.0, false));
    let before: Vec<Vec<f32>> = n.decomposed.iter().map(|&i| weight(&n, i)).collect();
    n.trp_step();
    for (j, &i) in n.decomposed.clone().iter().enumerate() {
        let (r, c) = (SIZES[i], SIZES[i + 1]);
        let svd = Svd::of(&before[j], r, c);
        let k = svd.energy_rank(0.8);
        assert_eq!(n.step_ranks[j], k);
        assert!(k > 1 && k < r.min(c), "a non-trivial rank: {k}");
        let want = svd.truncate(k);
        let got = weight(&n, i);
        for (g, w) in got.iter().zip(&want) {
            assert!((*g as f64 - w).abs() < 1e-6, "layer {i}: {g} vs {w}");
        }
        // The projected weight has rank k and keeps the leading singular values.
        let after = Svd::of(&got, r, c);
        assert_eq!(after.value_rank(1e-5), k);
        for (a, b) in after.s.iter().zip(&svd.s).take(k) {
            assert!((a - b).abs() < 1e-5);
        }
    }
    // The first and last layers are left alone.
    assert_eq!(n.decomposed, vec![1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quick_profile_decides_the_claim_and_the_twin_is_the_baseline() {
    let root = tempfile::tempdir().unwrap();
    let profile = reglab::experiments::find("trained-rank-pruning")
        .unwrap()
        .quick_profile();
    let p = profile.preset().unwrap();
    let req = LaunchRequest::from(&profile);
    let (res, text) = headless::run_captured(&p, &req, root.path(), 2)
        .await
        .unwrap();
    let v = &res.verdict;
    for id in ["1", "2", "3"] {
        let c = v.check(id).unwrap();
        assert_ne!(c.outcome, Outcome::Inconclusive, "check {id}: {text}");
    }
    let one = v.check("1").unwrap();
    assert!(
        one.numbers["trp.rank_sum"] < one.numbers["twin.rank_sum"],
        "{text}"
    );
    assert!(v.check("3").unwrap().numbers.contains_key("advantage"));
    // Each trp run's plain twin is the baseline arm's network of its seed.
    let six = v.check("6").unwrap();
    let same = six
        .evidence
        .iter()
        .filter(|l| l.ends_with("the same network"))
        .count();
    assert_eq!(same, 3, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_projections_and_sub_gradient_the_claim_cannot_hold() {
    // The trp arm with its mechanism off (no projection, lambda 0) trains exactly like its plain
    // twin: its ranks are the twin's, its truncation at them is the twin's post-hoc truncation.
    let root = tempfile::tempdir().unwrap();
    let profile = reglab::experiments::find("trained-rank-pruning")
        .unwrap()
        .quick_profile();
    let mut p = profile.preset().unwrap();
    for arm in p.arms.iter_mut().filter(|a| a.name == "trp") {
        arm.params
            .set("trp_project", ParamValue::Text("off".into()));
        arm.params.set("nuclear_weight", ParamValue::Float(0.0));
    }
    let mut req = LaunchRequest::from(&profile);
    req.arms = vec!["trp".into()];
    let (res, text) = headless::run_captured(&p, &req, root.path(), 2)
        .await
        .unwrap();
    let v = &res.verdict;
    let three = v.check("3").unwrap();
    assert_ne!(three.outcome, Outcome::Holds, "{text}");
    assert_ne!(v.outcome(), Outcome::Holds, "{text}");
    let one = v.check("1").unwrap();
    assert_eq!(
        one.numbers["trp.rank_sum"], one.numbers["twin.rank_sum"],
        "{text}"
    );
    assert_eq!(three.numbers["advantage"], 0.0, "{text}");
}

//! Layer-wise shuffle: the Toeplitz token mixing against the step-by-step recurrence, the
//! gradient in the decays against finite differences, the order restoration, the probability
//! allocation and schedule, and the claim's checks with the shuffle switched off (p_max 0).

use dfdx::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use reglab::experiments::shuffle::model::{
    self, features, layer_probability, mix_on_device, scan_reference, TokenNet, FEATURES, TOKENS,
};
use reglab::experiments::shuffle::one_cycle;
use reglab::headless;
use reglab::nn::models::softmax_cross_entropy;
use reglab::verdict::Outcome;

fn images(n: usize, rng: &mut StdRng) -> Vec<f32> {
    (0..n * 64).map(|_| rng.gen::<f32>()).collect()
}

fn input(net: &TokenNet<Cpu>, imgs: &[f32]) -> Tensor<(usize, usize), f32, Cpu> {
    let b = imgs.len() / 64;
    net.store
        .device()
        .tensor_from_vec(features(imgs), (FEATURES, b * TOKENS))
}

#[test]
fn toeplitz_mixing_matches_the_sequential_scan() {
    let mut rng = StdRng::seed_from_u64(1);
    let (d, b) = (3, 2);
    let mut net = TokenNet::new(&Cpu::default(), d, 1, &mut rng);
    let lf: Vec<f32> = (0..d).map(|_| rng.gen::<f32>() * 6.0 - 3.0).collect();
    let lb: Vec<f32> = (0..d).map(|_| rng.gen::<f32>() * 6.0 - 3.0).collect();
    let blk = net.blocks[0].clone();
    net.store.upload(blk.lam_f, lf.clone());
    net.store.upload(blk.lam_b, lb.clone());
    let v: Vec<f32> = (0..d * b * TOKENS)
        .map(|_| rng.gen::<f32>() - 0.5)
        .collect();
    let got = mix_on_device(&net, 0, v.clone(), b);
    let sig = |x: f32| 1.0 / (1.0 + (-(x as f64)).exp());
    for c in 0..d {
        for bi in 0..b {
            let at = (c * b + bi) * TOKENS;
            let seq: Vec<f64> = v[at..at + TOKENS].iter().map(|&x| x as f64).collect();
            let want = scan_reference(&seq, sig(lf[c]), sig(lb[c]));
            for t in 0..TOKENS {
                assert!(
                    (got[at + t] as f64 - want[t]).abs() < 1e-5,
                    "c {c} b {bi} t {t}: {} vs {}",
                    got[at + t],
                    want[t]
                );
            }
        }
    }
}

fn loss(net: &TokenNet<Cpu>, imgs: &[f32], labels: &[usize]) -> f64 {
    let b = labels.len();
    let y = reglab::experiments::classifier::one_hot(net.store.device(), labels, 10);
    let logits = net.forward::<NoneTape>(input(net, imgs), b, &[]);
    softmax_cross_entropy(logits.leaky_trace(), y).array() as f64
}

#[test]
fn decay_gradients_match_finite_differences() {
    let mut rng = StdRng::seed_from_u64(2);
    let net = TokenNet::new(&Cpu::default(), 4, 2, &mut rng);
    let imgs = images(3, &mut rng);
    let labels = [1usize, 4, 7];
    let y = reglab::experiments::classifier::one_hot(net.store.device(), &labels, 10);
    let logits = net.forward(input(&net, &imgs).leaky_trace(), 3, &[]);
    let mut grads = softmax_cross_entropy(logits, y).backward();
    for blk in net.blocks.clone() {
        for id in [blk.lam_f, blk.lam_b, blk.w_v] {
            let g = grads.get_or_alloc_mut(net.store.flat(id)).unwrap().clone();
            for i in (0..g.len()).step_by(3) {
                let h = 1e-2f32;
                let at = |delta: f32| {
                    let mut m = net.clone();
                    let mut v = m.store.values(id);
                    v[i] += delta;
                    m.store.upload(id, v);
                    loss(&m, &imgs, &labels)
                };
                let fd = (at(h) - at(-h)) / (2.0 * h as f64);
                assert!(
                    (fd - g[i] as f64).abs() < 2e-3 + 0.03 * fd.abs(),
                    "{} [{i}]: tape {} vs finite difference {fd}",
                    net.store.param(id).name,
                    g[i]
                );
            }
        }
    }
}

#[test]
fn the_order_is_restored_after_each_shuffled_block() {
    let mut rng = StdRng::seed_from_u64(3);
    let mut net = TokenNet::new(&Cpu::default(), 8, 3, &mut rng);
    let imgs = images(4, &mut rng);
    let plain = net.forward::<NoneTape>(input(&net, &imgs), 4, &[]).as_vec();
    let perms: Vec<Option<Vec<usize>>> = (0..3)
        .map(|_| Some(model::random_permutation(TOKENS, &mut rng)))
        .collect();
    let ident: Vec<Option<Vec<usize>>> = (0..3).map(|_| Some((0..TOKENS).collect())).collect();
    let same = net
        .forward::<NoneTape>(input(&net, &imgs), 4, &ident)
        .as_vec();
    for (a, b) in plain.iter().zip(&same) {
        assert!((a - b).abs() < 1e-5, "identity permutation: {a} vs {b}");
    }
    // The scans mix tokens in order: a shuffle changes what the class token sees.
    let shuffled = net
        .forward::<NoneTape>(input(&net, &imgs), 4, &perms)
        .as_vec();
    let moved = plain
        .iter()
        .zip(&shuffled)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(moved > 1e-3, "the shuffle had no effect ({moved})");
    // With the decays at a ~ 0 every block acts token by token: shuffling and restoring must
    // give the unshuffled output exactly (a missing restoration would move the class token).
    for blk in net.blocks.clone() {
        net.store.upload(blk.lam_f, vec![-30.0; 8]);
        net.store.upload(blk.lam_b, vec![-30.0; 8]);
    }
    let plain = net.forward::<NoneTape>(input(&net, &imgs), 4, &[]).as_vec();
    let shuffled = net
        .forward::<NoneTape>(input(&net, &imgs), 4, &perms)
        .as_vec();
    for (a, b) in plain.iter().zip(&shuffled) {
        assert!((a - b).abs() < 1e-4, "token-local blocks: {a} vs {b}");
    }
}

#[test]
fn features_probabilities_and_schedule() {
    let mut img = vec![0.0f32; 64];
    img[2 * 8 + 3] = 1.0; // row 2, column 3: patch (1, 1), r 0, c 1 -> token 6, feature 1
    let f = features(&img);
    let n = TOKENS;
    assert_eq!(f[n + 6], 1.0);
    assert_eq!(f.iter().take(4 * n).sum::<f32>(), 1.0);
    assert_eq!(f[4 * n], 1.0, "class flag on token 0");
    assert_eq!(layer_probability(0, 8, 0.5, false), 0.0);
    assert!((layer_probability(7, 8, 0.5, false) - 0.5).abs() < 1e-12);
    assert!((layer_probability(3, 8, 0.5, true) - 0.25).abs() < 1e-12);
    assert!((one_cycle(1.0, 0, 100) - 0.04).abs() < 1e-12);
    assert!((one_cycle(1.0, 30, 100) - 1.0).abs() < 1e-12);
    assert!(one_cycle(1.0, 100, 100) < 1e-5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_shuffle_switched_off_the_claim_cannot_hold() {
    // p_max 0: the slws arms train exactly like their pairs (same split, init, batches,
    // shifts), so the gap cannot shrink, the loss cannot rise and accuracy cannot gain.
    let root = tempfile::tempdir().unwrap();
    let (res, text) =
        headless::run_quick("layerwise-shuffle", None, &[("p_max", "0")], root.path())
            .await
            .unwrap();
    let v = &res.verdict;
    let one = v.check("1").unwrap();
    assert_eq!(one.outcome, Outcome::Fails, "{text}");
    assert_eq!(one.numbers["large.gap_change"], 0.0, "{text}");
    assert_eq!(v.check("2").unwrap().outcome, Outcome::Fails, "{text}");
    assert_ne!(v.outcome(), Outcome::Holds, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quick_profile_decides_the_claim_from_runs_that_learned() {
    let root = tempfile::tempdir().unwrap();
    let (res, text) = headless::run_quick("layerwise-shuffle", None, &[], root.path())
        .await
        .unwrap();
    let v = &res.verdict;
    for id in ["1", "2", "3"] {
        assert_ne!(
            v.check(id).unwrap().outcome,
            Outcome::Inconclusive,
            "{id}: {text}"
        );
    }
    // The shuffle fired (layer 0 never, the last layer half the time): rate near mean p_l.
    assert!(text.contains("large-aug-slws"), "{text}");
}

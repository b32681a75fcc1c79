//! QuantNAS: BitOps against hand counts, fake quantization against exact levels, the resampling
//! maps against their definitions, the supernet's weight and architecture gradients against
//! finite differences, and the claim's checks with the search switched off (alpha lr 0: every
//! block keeps its first candidate, conv3x3 at 2 bits, so the searched nets are the fixed
//! 2-bit net).

use dfdx::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use reglab::experiments::quantnas::model::{
    self, cand_bitops, downsample, nearest, net_bitops, pixel_shuffle_indices, search_space, Cand,
    Mode, Op, SrNet,
};
use reglab::experiments::quantnas::{arch_code, decode_arch, fixed_arch};
use reglab::headless;
use reglab::verdict::Outcome;

#[test]
fn bitops_match_hand_counts() {
    // C = 16 on the 4x4 map: conv3x3 16 * 9 * 16 * 16 = 36864 MACs, conv1x1 16 * 16 * 16 =
    // 4096, bottleneck 16 * (16 * 8 + 9 * 8 * 8 + 8 * 16) = 13312; head 16 * 9 = 2304, tail
    // 16 * 9 * 16 * 4 = 9216.
    let c = 16;
    let at = |op, bits| cand_bitops(Cand { op, bits }, c);
    assert_eq!(at(Op::Conv3, 8), 36864.0 * 64.0);
    assert_eq!(at(Op::Conv1, 4), 4096.0 * 16.0);
    assert_eq!(at(Op::Bottleneck, 2), 13312.0 * 4.0);
    assert_eq!(at(Op::Skip, 0), 0.0);
    let edges = (2304.0 + 9216.0) * 64.0;
    assert_eq!(
        net_bitops(&fixed_arch(3, 8), c, 8),
        edges + 3.0 * 36864.0 * 64.0
    );
    assert_eq!(net_bitops(&fixed_arch(3, 4), c, 8), 2_506_752.0);
    assert_eq!(net_bitops(&fixed_arch(3, 2), c, 8), 1_179_648.0);
    assert_eq!(
        net_bitops(&fixed_arch(3, 32), c, 32),
        (2304.0 + 9216.0 + 3.0 * 36864.0) * 1024.0
    );
    // Skip everywhere: only head and tail.
    let skip = Cand {
        op: Op::Skip,
        bits: 0,
    };
    assert_eq!(net_bitops(&[skip; 3], c, 8), edges);
    // Normalized expectation: uniform probabilities over the 10 candidates.
    let space = search_space();
    let p = vec![vec![0.1; 10]; 3];
    let mean: f64 = space.iter().map(|&k| cand_bitops(k, c)).sum::<f64>() / 10.0;
    let e = model::expected_bitops_norm(&p, &space, c);
    assert!((e - mean / (36864.0 * 64.0)).abs() < 1e-12);
    // Architecture codes round-trip.
    let arch = vec![space[4], space[9], space[0]];
    assert_eq!(arch_code(&arch), 490.0);
    assert_eq!(decode_arch(490.0, 3), arch);
}

#[test]
fn resampling_maps_match_their_definitions() {
    let hr: Vec<f32> = (0..128).map(|i| i as f32).collect();
    let lr = downsample(&hr);
    // Image 1, LR pixel (1, 2): HR rows 2-3, columns 4-5 of image 1.
    let want = (64 + 2 * 8 + 4 + 64 + 2 * 8 + 5 + 64 + 3 * 8 + 4 + 64 + 3 * 8 + 5) as f32 / 4.0;
    assert_eq!(lr[16 + 4 + 2], want);
    let up = nearest(&lr);
    assert_eq!(up[64 + 3 * 8 + 5], lr[16 + 4 + 2]);
    // Depth-to-space: HR (3, 5) of image 1 reads LR (1, 2), channel 2 * 1 + 1.
    let idx = pixel_shuffle_indices(2);
    assert_eq!(idx[64 + 3 * 8 + 5], ((4 + 1) * 4 + 2) * 4 + 3);
    let mut sorted = idx.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..128).collect::<Vec<_>>(), "a permutation");
}

fn supernet(seed: u64) -> SrNet<Cpu> {
    let mut rng = StdRng::seed_from_u64(seed);
    SrNet::new(&Cpu::default(), 4, &vec![search_space(); 2], 8, &mut rng, 7)
}

#[test]
fn fake_quantized_kernels_sit_on_exact_levels() {
    let net = supernet(1);
    let l = net.blocks[0].conv3.clone().unwrap();
    let w = net.store.values(l.w);
    let fan = l.shape.patch_len();
    // LSQ at 2 bits: per output channel, integers -2..1 times that channel's step.
    let steps = net
        .store
        .values(l.steps.iter().find(|s| s.0 == 2).unwrap().1);
    let q = net.quantized_kernel(&l, 2, Mode::Lsq);
    for (ch, (qs, ws)) in q.chunks(fan).zip(w.chunks(fan)).enumerate() {
        let s = steps[ch];
        let mean = ws.iter().map(|v| v.abs()).sum::<f32>() / fan as f32;
        assert!(
            (s - 2.0 * mean).abs() < 1e-6,
            "LSQ init 2 mean|w| / sqrt(1)"
        );
        for (&v, &x) in qs.iter().zip(ws) {
            let k = (x / s).round().clamp(-2.0, 1.0);
            assert!((v - k * s).abs() < 1e-6, "{v} vs {}", k * s);
        }
    }
    // Min-max rounding at 2 bits: at most 4 values, the extremes kept.
    let q = net.quantized_kernel(&l, 2, Mode::MinMax);
    let mut levels: Vec<f32> = q.clone();
    levels.sort_by(f32::total_cmp);
    levels.dedup_by(|a, b| (*a - *b).abs() < 1e-6);
    assert!(levels.len() <= 4, "{levels:?}");
    let (lo, hi) = w
        .iter()
        .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    assert!((levels[0] - lo).abs() < 1e-6 && (levels[levels.len() - 1] - hi).abs() < 1e-6);
    // Quantization noise: within half a step of the weights, not equal to them.
    let q = net.quantized_kernel(&l, 4, Mode::Noise);
    let half = (hi - lo) / 15.0 / 2.0;
    assert!(q.iter().zip(&w).all(|(a, b)| (a - b).abs() <= half + 1e-6));
    assert!(q.iter().zip(&w).any(|(a, b)| a != b));
    // Full precision and 32 bits: the weights themselves.
    assert_eq!(net.quantized_kernel(&l, 32, Mode::Lsq), w);
    assert_eq!(net.quantized_kernel(&l, 2, Mode::Fp), w);
}

fn loss(net: &SrNet<Cpu>, lr: &[f32], hr: &[f32]) -> f64 {
    let out = net.predict(lr, Mode::Fp);
    out.iter()
        .zip(hr)
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum::<f64>()
        / hr.len() as f64
}

#[test]
fn supernet_gradients_match_finite_differences() {
    let mut rng = StdRng::seed_from_u64(3);
    let mut net = supernet(2);
    // Move the logits off uniform so the softmax Jacobian is not symmetric.
    for b in net.blocks.clone() {
        let id = b.alpha.unwrap();
        net.arch
            .upload(id, (0..10).map(|_| rng.gen::<f32>() * 2.0 - 1.0).collect());
    }
    let hr: Vec<f32> = (0..3 * 64).map(|_| rng.gen::<f32>()).collect();
    let lr = downsample(&hr);
    let dev = Cpu::default();
    let out = net.forward::<OwnedTape<f32, Cpu>>(&lr, Mode::Fp);
    let y = dev.tensor_from_vec(hr.clone(), (3, 64));
    let grads = (out - y).square().mean().backward();
    let h = 1e-2f32;
    let mut checked = 0;
    for b in net.blocks.clone() {
        let id = b.alpha.unwrap();
        let g = grads.get(net.arch.flat(id)).as_vec();
        for i in 0..10 {
            let base = net.arch.values(id);
            let mut at = |d: f32| {
                let mut v = base.clone();
                v[i] += d;
                net.arch.upload(id, v);
                let l = loss(&net, &lr, &hr);
                net.arch.upload(id, base.clone());
                l
            };
            let fd = (at(h) - at(-h)) / (2.0 * h as f64);
            assert!(
                (fd - g[i] as f64).abs() < 1e-4 + 0.03 * fd.abs(),
                "alpha {i}: tape {} vs finite difference {fd}",
                g[i]
            );
            checked += 1;
        }
    }
    for l in [
        net.head.clone(),
        net.blocks[1].bottleneck.clone().unwrap()[1].clone(),
        net.blocks[0].conv1.clone().unwrap(),
        net.tail.clone(),
    ] {
        let g = grads.get(net.store.flat(l.w)).as_vec();
        for i in (0..g.len()).step_by(7) {
            let base = net.store.values(l.w);
            let mut at = |d: f32| {
                let mut v = base.clone();
                v[i] += d;
                net.store.upload(l.w, v);
                let r = loss(&net, &lr, &hr);
                net.store.upload(l.w, base.clone());
                r
            };
            // A smaller step for the kernels: ReLU kinks downstream bend larger ones.
            let hw = 3e-4f32;
            let fd = (at(hw) - at(-hw)) / (2.0 * hw as f64);
            assert!(
                (fd - g[i] as f64).abs() < 2e-4 + 0.03 * fd.abs(),
                "{} [{i}]: tape {} vs finite difference {fd}",
                net.store.param(l.w).name,
                g[i]
            );
            checked += 1;
        }
    }
    assert!(checked > 30);
}

#[test]
fn the_penalties_have_their_closed_forms() {
    let mut net = supernet(4);
    let id = net.blocks[0].alpha.unwrap();
    net.arch
        .upload(id, vec![3.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    let p = net.probabilities();
    let ent = p.iter().map(|q| model::entropy(q)).sum::<f64>();
    let e = model::expected_bitops_norm(&p, &search_space(), 4);
    let got = net.arch_penalty::<NoneTape>(0.3, 0.01).as_vec()[0] as f64;
    assert!((got - (0.3 * e + 0.01 * ent)).abs() < 1e-5, "{got}");
    // Derived architecture: the argmax, ties to the first candidate.
    assert_eq!(net.derived()[0], search_space()[0]);
    assert_eq!(net.derived()[1], search_space()[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_search_switched_off_the_claim_cannot_hold() {
    // alpha lr 0: every block keeps conv3x3 at 2 bits, so each qnas-qn net is the fixed 2-bit
    // net (same initialization and batches): no fixed net is beaten.
    let root = tempfile::tempdir().unwrap();
    let arms = [
        "qnas-qn-mu0",
        "qnas-qn-mu0.03",
        "qnas-qn-mu0.1",
        "fixed-8bit",
        "fixed-4bit",
        "fixed-2bit",
    ];
    let (res, text) = headless::run_quick(
        "quantnas-sr",
        Some(&arms),
        &[("alpha_lr", "0"), ("search_steps", "40"), ("warmup", "10")],
        root.path(),
    )
    .await
    .unwrap();
    let v = &res.verdict;
    let one = v.check("1").unwrap();
    assert_eq!(one.outcome, Outcome::Fails, "{text}");
    let n = &one.numbers;
    assert_eq!(n["qnas-qn-mu0.1.psnr"], n["fixed-2bit.psnr"], "{text}");
    assert_eq!(n["qnas-qn-mu0.1.bitops"], n["fixed-2bit.bitops"], "{text}");
    assert_ne!(v.outcome(), Outcome::Holds, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quick_profile_decides_the_claim_from_runs_that_learned() {
    let root = tempfile::tempdir().unwrap();
    let (res, text) = headless::run_quick("quantnas-sr", None, &[], root.path())
        .await
        .unwrap();
    let v = &res.verdict;
    for id in ["1", "2"] {
        assert_ne!(
            v.check(id).unwrap().outcome,
            Outcome::Inconclusive,
            "{id}: {text}"
        );
    }
    assert!(text.contains("frontier_margin"), "{text}");
}

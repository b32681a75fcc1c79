//! "QuantNAS for super resolution: searching for efficient quantization-friendly architectures
//! against quantization noise" (Shvetsov et al., 2022; IEEE Access 2024): a DARTS-style search
//! over a supernet whose blocks mix (operation, bit-width) candidates, with quantization noise
//! (QN) in place of rounding during the search, an entropy penalty that drives each block to one
//! candidate and an expected-BitOps penalty; the argmax architecture is then trained from scratch
//! with quantization-aware training (LSQ weights, HWGQ activations). Claim: a better PSNR /
//! BitOps trade-off than uniformly quantized fixed architectures, and QN a better search proxy
//! than straight-through quantization.
//!
//! Here: 2x super-resolution of the 8x8 digits (4x4 average-pooled inputs), a 3-block supernet
//! with 16 channels ([`model`]), host-side quantization ([`quant`]).

pub mod bench;
pub mod model;
pub mod quant;
mod verdict;

use std::collections::BTreeMap;
use std::time::Instant;

use dfdx::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::driver::{self, Evaluation, Schedule, Trainer};
use super::profile::{DeviceCase, Profile};
use super::{Experiment, FinishedRun, RunContext, RunEnd, RunStop};
use crate::artifacts::{self, NamedTensor};
use crate::metrics::picture::Picture;
use crate::metrics::psnr::psnr;
use crate::metrics::MetricSpec;
use crate::nn::transfer::{Download, Upload};
use crate::nn::{optim::cosine_lr, Optimizer, Rule};
use crate::params::{ParamSpec, Params};
use crate::verdict::Verdict;
use model::{Cand, Mode, Op, SrNet, FP, HR, LR};

pub struct QuantNasSr;

impl Experiment for QuantNasSr {
    fn kind(&self) -> &'static str {
        "quantnas-sr"
    }

    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::choice(
                "search",
                &["noise", "ste", "fixed"],
                "noise",
                "architecture search with quantization noise, with straight-through \
                 quantization (LSQ + HWGQ), or none (the fixed all-conv3x3 net)",
            ),
            ParamSpec::int(
                "fixed_bits",
                4,
                2,
                32,
                "bits of the fixed net (search = fixed; 32: full precision)",
            ),
            ParamSpec::float(
                "mu",
                0.1,
                0.0,
                100.0,
                "BitOps penalty weight (normalized expected BitOps)",
            ),
            ParamSpec::float(
                "entropy_coef",
                0.05,
                0.0,
                10.0,
                "entropy penalty weight at the end of its linear ramp (0: off)",
            ),
            ParamSpec::int("channels", 16, 2, 128, "channels C (even)"),
            ParamSpec::int("blocks", 3, 1, 8, "body blocks"),
            ParamSpec::int("search_steps", 600, 0, 100_000, "search steps"),
            ParamSpec::int(
                "warmup",
                200,
                0,
                100_000,
                "search steps of weights only before the alphas move",
            ),
            ParamSpec::int("qat_steps", 1000, 1, 100_000, "QAT steps of the final net"),
            ParamSpec::float("lr", 1e-3, 1e-6, 1.0, "Adam lr of the weights (cosine)"),
            ParamSpec::float(
                "alpha_lr",
                3e-2,
                0.0,
                10.0,
                "Adam lr of the architecture logits (betas 0.5, 0.999)",
            ),
            ParamSpec::int("batch", 64, 1, 1024, "images per step"),
            ParamSpec::int(
                "n_train",
                1400,
                100,
                1700,
                "training images (the rest of the 1797 test)",
            ),
            ParamSpec::int("log_every", 150, 1, 100_000, "steps between measurements"),
        ]
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        vec![
            MetricSpec::new("psnr_test", "test PSNR, real quantization (after QAT)")
                .unit("dB")
                .reference("psnr_nearest"),
            MetricSpec::new("psnr_nearest", "nearest-upsampling PSNR").unit("dB"),
            MetricSpec::new("loss_l1", "L1 loss (search, then QAT)"),
            MetricSpec::new("entropy", "mean block entropy of softmax(alpha)")
                .unit("nats")
                .reference("entropy_line"),
            MetricSpec::new("entropy_line", "0.1 nats").unit("nats"),
            MetricSpec::new("exp_bitops", "expected body BitOps (normalized)"),
            MetricSpec::new("supernet_psnr_val", "supernet PSNR on the alpha split").unit("dB"),
            MetricSpec::new("bitops", "final BitOps").unit("MBitOps per image"),
            MetricSpec::new("psnr_fp_gap", "final net, full precision - quantized").unit("dB"),
            MetricSpec::new("arch_code", "argmax candidate per block (base-10 digits)"),
        ]
    }

    fn table_metrics(&self) -> Vec<&'static str> {
        vec![
            "psnr_test",
            "bitops",
            "psnr_fp_gap",
            "entropy_end",
            "supernet_drop",
            "search_s",
        ]
    }

    fn total_steps(&self, p: &Params) -> u64 {
        (search_steps(p) + p.usize("qat_steps")) as u64
    }

    fn memory(&self, p: &Params) -> crate::engine::memory::Estimate {
        let (c, b) = (p.usize("channels"), p.usize("batch"));
        let weights = (p.usize("blocks") * 12 * c * c + 50 * c) as f64;
        crate::engine::memory::Estimate::of(&[
            (
                4.0 * 4.0 * weights,
                "supernet weights, LSQ steps, moments".to_string(),
            ),
            (
                4.0 * 60.0 * (p.usize("blocks") * b.max(512) * 16 * 9 * c) as f64,
                "im2col patches and activations of every candidate".to_string(),
            ),
        ])
    }

    fn validate(&self, p: &Params) -> Result<(), String> {
        if !p.usize("channels").is_multiple_of(2) {
            return Err("channels must be even (the bottleneck halves them)".into());
        }
        if p.text("search") != "fixed" && p.usize("warmup") > p.usize("search_steps") {
            return Err("warmup is longer than search_steps".into());
        }
        let b = p.usize("fixed_bits");
        if p.text("search") == "fixed" && ![2, 4, 8, 32].contains(&b) {
            return Err(format!("fixed_bits {b}: one of 2, 4, 8, 32"));
        }
        Ok(())
    }

    fn builtin_presets(&self) -> &'static [(&'static str, &'static str)] {
        &[(
            "presets/quantnas-sr.toml",
            include_str!("../../../presets/quantnas-sr.toml"),
        )]
    }

    fn verdict_plane(&self) -> Option<crate::experiments::VerdictPlane> {
        Some(crate::experiments::VerdictPlane {
            x: "bitops",
            y: "psnr_test",
            log_x: true,
        })
    }

    fn verdict_bar(&self) -> Option<(&'static str, Option<&'static str>)> {
        Some(("psnr_test", None))
    }

    fn quick_profile(&self) -> Profile {
        Profile {
            preset: "quantnas-sr",
            arms: QUICK_ARMS,
            seeds: &[0],
            overrides: &[
                ("search_steps", "120"),
                ("warmup", "40"),
                ("qat_steps", "200"),
                ("log_every", "160"),
            ],
        }
    }

    fn device_cases(&self) -> Vec<DeviceCase> {
        let small = Profile {
            preset: "quantnas-sr",
            arms: &[],
            seeds: &[0],
            overrides: &[
                ("search_steps", "20"),
                ("warmup", "10"),
                ("qat_steps", "20"),
                ("log_every", "20"),
            ],
        };
        let large = Profile {
            overrides: &[
                ("search_steps", "20"),
                ("warmup", "10"),
                ("qat_steps", "20"),
                ("log_every", "20"),
                ("channels", "64"),
                ("batch", "256"),
            ],
            ..small
        };
        vec![
            DeviceCase {
                size: "preset",
                arm: "qnas-qn-mu0.1",
                profile: small,
            },
            DeviceCase {
                size: "large",
                arm: "qnas-ste-mu0.1",
                profile: large,
            },
        ]
    }

    fn bench(&self, quick: bool, out: &mut String) {
        bench::report(quick, out)
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<RunEnd, RunStop> {
        crate::on_device!(ctx, |dev| train(ctx, &dev))
    }

    fn verdict(&self, claim: &str, preset_id: &str, runs: &[FinishedRun]) -> Verdict {
        verdict::compute(claim, preset_id, runs)
    }
}

/// The quick profile's arms: the uniform frontier and the searched nets of checks 1 and 2.
pub const QUICK_ARMS: &[&str] = &[
    "qnas-qn-mu0",
    "qnas-qn-mu0.03",
    "qnas-qn-mu0.1",
    "qnas-ste-mu0.1",
    "fixed-8bit",
    "fixed-4bit",
    "fixed-2bit",
];

/// Search steps of a run (0 for the fixed nets).
pub fn search_steps(p: &Params) -> usize {
    if p.text("search") == "fixed" {
        0
    } else {
        p.usize("search_steps")
    }
}

/// The digits as HR / LR pairs: the weight half and the alpha half of the training set (the
/// search), all of it (QAT), and the test set.
pub struct SrData {
    pub hr_train: Vec<f32>,
    pub lr_train: Vec<f32>,
    pub hr_test: Vec<f32>,
    pub lr_test: Vec<f32>,
    /// Training images `0..half` train the weights during the search, `half..` the alphas.
    pub half: usize,
}

impl SrData {
    pub fn load(n_train: usize, seed: u64) -> SrData {
        let mut rng = StdRng::seed_from_u64(seed ^ 0xD161);
        let d = crate::datasets::digits(n_train as f64 / 1797.0, &mut rng);
        let n = d.x_train.len() / 64;
        SrData {
            lr_train: model::downsample(&d.x_train),
            hr_train: d.x_train,
            lr_test: model::downsample(&d.x_test),
            hr_test: d.x_test,
            half: n / 2,
        }
    }

    pub fn n_train(&self) -> usize {
        self.hr_train.len() / (HR * HR)
    }

    pub fn n_test(&self) -> usize {
        self.hr_test.len() / (HR * HR)
    }

    /// The (LR, HR) images of training rows `idx`.
    pub fn batch(&self, idx: &[usize]) -> (Vec<f32>, Vec<f32>) {
        let mut lr = Vec::with_capacity(idx.len() * 16);
        let mut hr = Vec::with_capacity(idx.len() * 64);
        for &i in idx {
            lr.extend_from_slice(&self.lr_train[i * 16..(i + 1) * 16]);
            hr.extend_from_slice(&self.hr_train[i * 64..(i + 1) * 64]);
        }
        (lr, hr)
    }
}

/// PSNR over a whole set of images in [0, 1] (outputs clipped to [0, 1]).
pub fn set_psnr(sr: &[f32], hr: &[f32]) -> f64 {
    let clipped: Vec<f32> = sr.iter().map(|v| v.clamp(0.0, 1.0)).collect();
    psnr(&clipped, hr, 1.0)
}

/// The fixed architecture: conv3x3 at `bits` in every block.
pub fn fixed_arch(blocks: usize, bits: u32) -> Vec<Cand> {
    vec![
        Cand {
            op: Op::Conv3,
            bits
        };
        blocks
    ]
}

/// Architecture code: the candidate index of block k as the k-th decimal digit (most
/// significant first); skip is 9.
pub fn arch_code(arch: &[Cand]) -> f64 {
    let space = model::search_space();
    arch.iter().fold(0.0, |acc, c| {
        let i = space.iter().position(|k| k == c).unwrap_or(0);
        acc * 10.0 + i as f64
    })
}

/// The architecture of a code (inverse of [`arch_code`]).
pub fn decode_arch(code: f64, blocks: usize) -> Vec<Cand> {
    let space = model::search_space();
    let mut c = code.round().max(0.0) as u64;
    let mut v = vec![space[0]; blocks];
    for k in (0..blocks).rev() {
        v[k] = space[(c % 10) as usize % space.len()];
        c /= 10;
    }
    v
}

fn train<D: Device<f32>>(ctx: &mut RunContext<'_>, dev: &D) -> Result<RunEnd, RunStop> {
    let p = ctx.params.clone();
    let seed = ctx.seed;
    let data = SrData::load(p.usize("n_train"), seed);
    let blocks = p.usize("blocks");
    let c = p.usize("channels");
    let mode = match p.text("search") {
        "noise" => Some(Mode::Noise),
        "ste" => Some(Mode::Lsq),
        _ => None,
    };
    let search = mode.map(|m| {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5E4C);
        let net = SrNet::new(
            dev,
            c,
            &vec![model::search_space(); blocks],
            model::EDGE_BITS,
            &mut rng,
            seed ^ 0x9015E,
        );
        Search {
            net,
            mode: m,
            opt_w: Optimizer::new(Rule::adam(), p.f64("lr")),
            opt_a: Optimizer::new(
                Rule::Adam {
                    beta1: 0.5,
                    beta2: 0.999,
                    eps: 1e-8,
                    weight_decay: 0.0,
                },
                p.f64("alpha_lr"),
            ),
        }
    });
    let nearest_psnr = set_psnr(&model::nearest(&data.lr_test), &data.hr_test);
    ctx.log(format!(
        "{} training ({} weights / {} alphas during the search) / {} test digits; nearest \
         upsampling {nearest_psnr:.2} dB; {} search + {} QAT steps",
        data.n_train(),
        data.half,
        data.n_train() - data.half,
        data.n_test(),
        search_steps(&p),
        p.usize("qat_steps"),
    ));
    let mut run = QnasRun {
        dev: dev.clone(),
        p: p.clone(),
        seed,
        data,
        search,
        qat: None,
        arch: Vec::new(),
        nearest_psnr,
        batch_rng: StdRng::seed_from_u64(seed ^ 0xBA7C),
        loss_sum: (0.0, 0),
        search_s: 0.0,
        search_end: BTreeMap::new(),
        trajectory: Vec::new(),
    };
    if run.search.is_none() {
        let bits = p.usize("fixed_bits") as u32;
        run.start_qat(
            fixed_arch(blocks, bits),
            if bits >= FP { FP } else { model::EDGE_BITS },
        );
    }
    let schedule = Schedule {
        steps: (search_steps(&p) + p.usize("qat_steps")) as u64,
        log_every: p.usize("log_every") as u64,
        blowup: None,
    };
    let r = driver::drive(ctx, schedule, &mut run);
    if r.is_ok() {
        ctx.log(format!(
            "final architecture: {}",
            run.arch
                .iter()
                .map(|k| k.label())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    r
}

struct Search<D: Device<f32>> {
    net: SrNet<D>,
    mode: Mode,
    opt_w: Optimizer<f32, D>,
    opt_a: Optimizer<f32, D>,
}

struct Qat<D: Device<f32>> {
    net: SrNet<D>,
    opt: Optimizer<f32, D>,
    mode: Mode,
    steps: usize,
    done: usize,
    /// QAT batches, seeded by the seed only (equal architectures see equal batches).
    rng: StdRng,
}

struct QnasRun<D: Device<f32>> {
    dev: D,
    p: Params,
    seed: u64,
    data: SrData,
    search: Option<Search<D>>,
    qat: Option<Qat<D>>,
    arch: Vec<Cand>,
    nearest_psnr: f64,
    batch_rng: StdRng,
    loss_sum: (f64, usize),
    search_s: f64,
    /// What the search left (entropy, supernet and derived PSNR), for the final values.
    search_end: BTreeMap<String, f64>,
    /// (log10 expected BitOps, supernet PSNR) at every measurement of the search.
    trajectory: Vec<[f32; 2]>,
}

impl<D: Device<f32>> QnasRun<D> {
    /// Builds the discrete net `arch` from a fresh initialization (seeded by the seed only, so
    /// equal architectures train identically) for quantization-aware training.
    fn start_qat(&mut self, arch: Vec<Cand>, edge_bits: u32) {
        let dev = self.dev.clone();
        let mut rng = StdRng::seed_from_u64(self.seed ^ 0x0A7);
        let blocks: Vec<Vec<Cand>> = arch.iter().map(|&k| vec![k]).collect();
        let net = SrNet::new(
            &dev,
            self.p.usize("channels"),
            &blocks,
            edge_bits,
            &mut rng,
            1,
        );
        let fp = edge_bits >= FP;
        self.arch = arch;
        self.qat = Some(Qat {
            net,
            opt: Optimizer::new(Rule::adam(), self.p.f64("lr")),
            mode: if fp { Mode::Fp } else { Mode::Lsq },
            steps: self.p.usize("qat_steps"),
            done: 0,
            rng: StdRng::seed_from_u64(self.seed ^ 0x0A7B),
        });
    }

    fn bitops(&self) -> f64 {
        let edge = self.qat.as_ref().map(|q| q.net.edge_bits).unwrap_or(8);
        model::net_bitops(&self.arch, self.p.usize("channels"), edge)
    }

    /// The supernet's PSNR on the alpha split with real quantization (min-max rounding after a
    /// noise search, LSQ / HWGQ after a straight-through one).
    fn supernet_psnr(s: &Search<D>, data: &SrData) -> f64 {
        let eval = if s.mode == Mode::Noise {
            Mode::MinMax
        } else {
            Mode::Lsq
        };
        let lr = &data.lr_train[data.half * 16..];
        let hr = &data.hr_train[data.half * 64..];
        set_psnr(&s.net.predict(lr, eval), hr)
    }

    fn end_search(&mut self) {
        let Some(mut s) = self.search.take() else {
            return;
        };
        let supernet = Self::supernet_psnr(&s, &self.data);
        let entropy = s.net.mean_entropy();
        let derived = s.net.derived();
        // The derived net with the supernet's weights: one-hot logits (softmax exactly 1 / 0).
        let ids: Vec<_> = s.net.blocks.iter().filter_map(|b| b.alpha).collect();
        for (id, k) in ids.iter().zip(&derived) {
            let pos = model::search_space()
                .iter()
                .position(|x| x == k)
                .unwrap_or(0);
            let mut v = vec![-1e4f32; model::search_space().len()];
            v[pos] = 0.0;
            s.net.arch.upload(*id, v);
        }
        let derived_psnr = Self::supernet_psnr(&s, &self.data);
        self.search_end.insert("supernet_psnr_end".into(), supernet);
        self.search_end
            .insert("derived_psnr_end".into(), derived_psnr);
        self.search_end
            .insert("supernet_drop".into(), supernet - derived_psnr);
        self.search_end.insert("entropy_end".into(), entropy);
        self.search_end.insert("search_s".into(), self.search_s);
        self.start_qat(derived, model::EDGE_BITS);
    }

    fn search_step(&mut self, step: usize) -> Result<f64, RunStop> {
        let t0 = Instant::now();
        let (b, half, n) = (self.p.usize("batch"), self.data.half, self.data.n_train());
        let total = self.p.usize("search_steps");
        let warmup = self.p.usize("warmup");
        let lr = self.p.f64("lr");
        let s = self.search.as_mut().expect("searching");
        // Weights on the first half.
        let idx = model::sample(half, b, &mut self.batch_rng);
        let (x, y) = self.data.batch(&idx);
        let dev = s.net.store.device().clone();
        let out = s.net.forward::<OwnedTape<f32, D>>(&x, s.mode);
        let loss = (out - dev.upload(y, (b, HR * HR))).abs().mean();
        let value = loss.download()[0] as f64;
        if !value.is_finite() {
            return Ok(value);
        }
        let mut grads = loss.backward();
        s.opt_w.lr = cosine_lr(lr, step, total);
        s.opt_w
            .step(&mut s.net.store, &mut grads)
            .map_err(|e| RunStop::Failed(format!("weight update: {e:?}")))?;
        // Then the alphas on the second half (first-order DARTS), after the warm-up.
        if step >= warmup {
            let ramp = (step - warmup + 1) as f64 / (total - warmup).max(1) as f64;
            let idx: Vec<usize> = model::sample(n - half, b, &mut self.batch_rng)
                .into_iter()
                .map(|i| i + half)
                .collect();
            let (x, y) = self.data.batch(&idx);
            let out = s.net.forward::<OwnedTape<f32, D>>(&x, s.mode);
            let l1 = (out - dev.upload(y, (b, HR * HR))).abs().mean();
            let pen = s.net.arch_penalty::<OwnedTape<f32, D>>(
                self.p.f64("mu"),
                self.p.f64("entropy_coef") * ramp,
            );
            let mut grads = (l1 + pen).backward();
            s.opt_a
                .step(&mut s.net.arch, &mut grads)
                .map_err(|e| RunStop::Failed(format!("alpha update: {e:?}")))?;
        }
        self.search_s += t0.elapsed().as_secs_f64();
        Ok(value)
    }

    fn qat_step(&mut self) -> Result<f64, RunStop> {
        let b = self.p.usize("batch");
        let n = self.data.n_train();
        let lr = self.p.f64("lr");
        let q = self.qat.as_mut().expect("QAT");
        let idx = model::sample(n, b, &mut q.rng);
        let (x, y) = self.data.batch(&idx);
        let dev = q.net.store.device().clone();
        let out = q.net.forward::<OwnedTape<f32, D>>(&x, q.mode);
        let loss = (out - dev.upload(y, (b, HR * HR))).abs().mean();
        let value = loss.download()[0] as f64;
        if !value.is_finite() {
            return Ok(value);
        }
        let mut grads = loss.backward();
        q.opt.lr = cosine_lr(lr, q.done, q.steps);
        q.opt
            .step(&mut q.net.store, &mut grads)
            .map_err(|e| RunStop::Failed(format!("QAT update: {e:?}")))?;
        q.done += 1;
        Ok(value)
    }

    fn picture(&self, sr: &[f32]) -> Picture {
        let k = 8.min(self.data.n_test());
        let mut rows = Vec::new();
        let mut captions = Vec::new();
        let near = model::nearest(&self.data.lr_test[..k * 16]);
        for i in 0..k {
            rows.extend_from_slice(&self.data.hr_test[i * 64..(i + 1) * 64]);
            rows.extend_from_slice(&near[i * 64..(i + 1) * 64]);
            rows.extend_from_slice(&sr[i * 64..(i + 1) * 64]);
            captions.extend(["HR".to_string(), "LR".to_string(), "SR".to_string()]);
        }
        Picture::images(HR, HR, &rows, 0.0, 1.0, captions)
    }
}

impl<D: Device<f32>> Trainer for QnasRun<D> {
    fn evaluate(&mut self, _step: u64, _last: bool) -> Result<Evaluation, RunStop> {
        let mut values = vec![("psnr_nearest", self.nearest_psnr), ("entropy_line", 0.1)];
        let mut pictures = Vec::new();
        if self.loss_sum.1 > 0 {
            values.push(("loss_l1", self.loss_sum.0 / self.loss_sum.1 as f64));
            self.loss_sum = (0.0, 0);
        }
        let c = self.p.usize("channels");
        if let Some(s) = &self.search {
            let probs = s.net.probabilities();
            let space = model::search_space();
            let e = model::expected_bitops_norm(&probs, &space, c);
            let psnr = Self::supernet_psnr(s, &self.data);
            values.push(("entropy", s.net.mean_entropy()));
            values.push(("exp_bitops", e));
            values.push(("supernet_psnr_val", psnr));
            values.push(("arch_code", arch_code(&s.net.derived())));
            let (head, tail) = model::edge_macs(c);
            let max = space
                .iter()
                .map(|&k| model::cand_bitops(k, c))
                .fold(0.0, f64::max);
            let abs = (head + tail) * 64.0 + e * max * probs.len() as f64;
            self.trajectory.push([abs.log10() as f32, psnr as f32]);
        }
        if let Some(q) = &self.qat {
            let sr = q.net.predict(&self.data.lr_test, q.mode);
            let psnr_q = set_psnr(&sr, &self.data.hr_test);
            let fp = set_psnr(
                &q.net.predict(&self.data.lr_test, Mode::Fp),
                &self.data.hr_test,
            );
            values.push(("psnr_test", psnr_q));
            values.push(("psnr_fp_gap", fp - psnr_q));
            values.push(("bitops", self.bitops() / 1e6));
            values.push(("arch_code", arch_code(&self.arch)));
            pictures.push(("sr_digits", self.picture(&sr)));
            let mut pts = self.trajectory.clone();
            pts.push([self.bitops().log10() as f32, psnr_q as f32]);
            pictures.push((
                "psnr_vs_log10_bitops",
                Picture::scatter(&pts, &[[pts[0][0], self.nearest_psnr as f32]]),
            ));
        }
        Ok(Evaluation {
            values,
            pictures,
            stop_early: false,
        })
    }

    fn step(&mut self, step: u64) -> Result<f64, RunStop> {
        let step = step as usize;
        let value = if self.search.is_some() && step < search_steps(&self.p) {
            self.search_step(step)?
        } else {
            if self.search.is_some() {
                self.end_search();
            }
            self.qat_step()?
        };
        self.loss_sum = (self.loss_sum.0 + value, self.loss_sum.1 + 1);
        Ok(value)
    }

    fn finish(&mut self, final_values: &mut BTreeMap<String, f64>, _steps: u64) {
        for (k, v) in &self.search_end {
            final_values.insert(k.clone(), *v);
        }
        final_values.insert("bitops".into(), self.bitops() / 1e6);
        if let Some(p) = final_values.get("psnr_test").copied() {
            final_values.insert("psnr_gain".into(), p - self.nearest_psnr);
        }
        final_values.insert("arch_code".into(), arch_code(&self.arch));
        for (k, cand) in self.arch.iter().enumerate() {
            final_values.insert(format!("block{k}_bits"), cand.bits as f64);
        }
    }

    fn write_artifacts(&self, dir: &std::path::Path) -> std::io::Result<()> {
        let Some(q) = &self.qat else {
            return Ok(());
        };
        let params = artifacts::store_tensors(&q.net.store);
        let d = &self.data;
        let sr = q.net.predict(&d.lr_test, q.mode);
        let n = d.n_test();
        let data = vec![
            NamedTensor::from_f32("lr_test", &[n, LR * LR], &d.lr_test),
            NamedTensor::from_f32("hr_test", &[n, HR * HR], &d.hr_test),
            NamedTensor::from_f32("sr_test", &[n, HR * HR], &sr),
            NamedTensor::new(
                "arch_bits",
                &[self.arch.len()],
                self.arch.iter().map(|k| k.bits as f64).collect(),
            ),
        ];
        let text = format!(
            "2x super-resolution of the 8x8 digits (pixels / 16): lr = 2x2 average pooling (4x4). \
             Maps are NHWC rows (batch*16 x channels), kernels PyTorch's out x in x k x k.\n\
             h = conv3x3(lr; head) ; block k: h = h + op_k(h), op_k in order: {}\n\
             every conv reads relu(input) quantized to its bits (HWGQ: step = s_b * rms(pre-activation), \
             s_b the optimal half-Gaussian uniform step; levels 0..2^b-1) and uses its kernel \
             quantized by LSQ (per output channel step `<layer>.step<bits>`, q = |s| clamp(round(w/|s|), \
             -2^(b-1), 2^(b-1)-1)); head and tail at {} bits ({} = full precision, no quantization)\n\
             bottleneck: reduce (1x1 C->C/2), conv (3x3), expand (1x1 C/2->C), each after relu+quantization\n\
             sr = depth_to_space(tail(relu_q(h))) + nearest(lr): HR pixel (2y+dy, 2x+dx) = channel 2dy+dx \
             at (y, x)\n\
             psnr_test = 10 log10(1 / mean((clip(sr_test, 0, 1) - hr_test)^2)); BitOps = MACs x b_w x b_a \
             (head {h} MACs, tail {t} MACs per image)\n",
            self.arch
                .iter()
                .map(|k| k.label())
                .collect::<Vec<_>>()
                .join(", "),
            q.net.edge_bits,
            FP,
            h = model::edge_macs(q.net.channels).0,
            t = model::edge_macs(q.net.channels).1,
        );
        artifacts::write_run(dir, &params, &data, &text)
    }
}

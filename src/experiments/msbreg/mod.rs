//! MSBReg, "An Embedding-Dynamic Approach to Self-supervised Learning" (Moon, Buracas, Park,
//! Kim, Canny, 2022): embeddings are particles on the unit sphere moved by three forces: a
//! multiview centroid attraction (M) towards the normalized mean of an image's target views,
//! a Brownian diffusive force (B, a fresh random direction every step) and a singular-value
//! force (S) that pushes the batch towards an isotropic cloud. Claim: together they avoid
//! complete and dimensional collapse without negative pairs and give a good representation.
//!
//! Digits SSL from the shared harness (`experiments::ssl`): augmented views, an MLP encoder,
//! projector and predictor, an EMA target, probes. The three terms' gradients with respect to
//! the online embeddings are computed on the host (`loss`) and enter the tape as one linear
//! surrogate `sum(z * W)`.

pub mod bench;
pub mod loss;
mod verdict;

use dfdx::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

use super::classifier::{self, DigitsSplit, EpochBatches};
use super::driver::{self, Evaluation, Schedule, Trainer};
use super::profile::{DeviceCase, Profile};
use super::ssl::{self, Features, Init, Net, ProbeConfig, ViewAugment};
use super::{Experiment, FinishedRun, RunContext, RunEnd, RunStop};
use crate::artifacts::{self, NamedTensor};
use crate::datasets::DIGIT_PIXELS;
use crate::metrics::picture::Picture;
use crate::metrics::MetricSpec;
use crate::nn::models::{Activation, BnMode, Matrix};
use crate::nn::store::ParamStore;
use crate::nn::transfer::{Download, Upload};
use crate::nn::{Optimizer, Rule};
use crate::params::{ParamSpec, Params};
use crate::verdict::Verdict;

pub struct MsbReg;

const PRESET: &str = "msbreg";
/// Width of the projections (the sphere the particles live on).
pub const PROJ: usize = 64;
/// Width of the probed representation.
pub const REPR: usize = 256;

impl Experiment for MsbReg {
    fn kind(&self) -> &'static str {
        PRESET
    }

    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::choice(
                "method",
                &["msb", "byol", "none"],
                "msb",
                "multiview centroid loss (+ B + S), BYOL's symmetric 2-view loss, or no training \
                 (the random encoder's probes)",
            ),
            ParamSpec::int("views", 4, 2, 16, "augmented views per image (msb)"),
            ParamSpec::choice(
                "ema",
                &["on", "off"],
                "on",
                "targets from an EMA copy of the online network, or from the online network \
                 itself (stop-gradient)",
            ),
            ParamSpec::choice(
                "predictor",
                &["on", "off"],
                "on",
                "a predictor MLP on the online side",
            ),
            ParamSpec::float("momentum", 0.99, 0.0, 1.0, "EMA momentum of the target"),
            ParamSpec::float(
                "lambda_b",
                0.1,
                0.0,
                100.0,
                "weight of the Brownian term mean cos(z, g)",
            ),
            ParamSpec::float(
                "lambda_s",
                1.0,
                0.0,
                100.0,
                "weight of the singular-value term mean (s / mean s - 1)^2",
            ),
            ParamSpec::int("shift", 1, 0, 4, "augmentation: random shift in pixels"),
            ParamSpec::float("noise", 0.2, 0.0, 5.0, "augmentation: Gaussian pixel noise"),
            ParamSpec::float("dropout", 0.1, 0.0, 1.0, "augmentation: pixel dropout"),
            ParamSpec::float("lr", 1e-3, 1e-7, 10.0, "Adam learning rate"),
            ParamSpec::int("batch", 128, 2, 1258, "images per step"),
            ParamSpec::int("steps", 600, 0, 1_000_000, "training steps"),
            ParamSpec::int("log_every", 100, 1, 1_000_000, "steps between measurements"),
            ParamSpec::int(
                "probe_every",
                300,
                1,
                1_000_000,
                "steps between probes (and at the end)",
            ),
        ]
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        vec![
            MetricSpec::new(
                "emb_std",
                "std of the normalized projections (mean over dims)",
            )
            .reference("emb_std_uniform"),
            MetricSpec::new(
                "emb_std_uniform",
                "1/sqrt(d): a uniform cloud on the sphere",
            ),
            MetricSpec::new("eff_rank", "effective rank of the test projections")
                .unit("count (max 64)"),
            MetricSpec::new("linear_probe_acc", "linear probe on the encoder")
                .unit("fraction")
                .reference("linear_probe_init"),
            MetricSpec::new("linear_probe_init", "linear probe of the untrained encoder")
                .unit("fraction"),
            MetricSpec::new("knn_acc", "20-NN accuracy on the encoder").unit("fraction"),
            MetricSpec::new("few_shot_acc", "5-shot linear probe").unit("fraction"),
            MetricSpec::new("loss_m", "centroid (or BYOL) term"),
            MetricSpec::new("loss_b", "Brownian term"),
            MetricSpec::new("loss_s", "singular-value term"),
        ]
    }

    fn table_metrics(&self) -> Vec<&'static str> {
        vec![
            "emb_std",
            "eff_rank",
            "linear_probe_acc",
            "knn_acc",
            "loss_m",
        ]
    }

    fn total_steps(&self, p: &Params) -> u64 {
        steps(p)
    }

    fn builtin_presets(&self) -> &'static [(&'static str, &'static str)] {
        &[(
            "presets/msbreg.toml",
            include_str!("../../../presets/msbreg.toml"),
        )]
    }

    fn verdict_bar(&self) -> Option<(&'static str, Option<&'static str>)> {
        Some(("emb_std", Some("emb_std_uniform")))
    }

    fn quick_profile(&self) -> Profile {
        Profile {
            preset: PRESET,
            arms: &["msbreg", "no-ema-no-pred", "no-ema-msb", "random-init"],
            seeds: &[0],
            overrides: &[("steps", "300"), ("probe_every", "300")],
        }
    }

    fn device_cases(&self) -> Vec<DeviceCase> {
        let preset_size = Profile {
            preset: PRESET,
            arms: &[],
            seeds: &[0],
            overrides: &[("steps", "30"), ("probe_every", "30"), ("log_every", "10")],
        };
        let large = Profile {
            overrides: &[("steps", "20"), ("probe_every", "20"), ("batch", "1024")],
            ..preset_size
        };
        vec![
            DeviceCase {
                size: "preset",
                arm: "msbreg",
                profile: preset_size,
            },
            DeviceCase {
                size: "preset",
                arm: "byol-2view",
                profile: preset_size,
            },
            DeviceCase {
                size: "large",
                arm: "msbreg",
                profile: large,
            },
        ]
    }

    fn bench(&self, quick: bool, out: &mut String) {
        bench::report(quick, out)
    }

    fn validate(&self, p: &Params) -> Result<(), String> {
        if p.text("method") == "byol" && p.usize("views") != 2 {
            return Err("BYOL's symmetric loss takes views = 2".into());
        }
        Ok(())
    }

    fn memory(&self, p: &Params) -> crate::engine::memory::Estimate {
        let weights = (64 * 256 + 256 * 256 + 256 * 256 + 256 * 64 + 2 * 64 * 64) as f64;
        let rows = (p.usize("batch") * p.usize("views")) as f64;
        crate::engine::memory::Estimate::of(&[
            (
                4.0 * weights * 5.0,
                "online + target weights, grads, Adam moments".to_string(),
            ),
            (
                4.0 * rows * 900.0 * 3.0,
                format!("activations of {rows} rows"),
            ),
        ])
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<RunEnd, RunStop> {
        crate::on_device!(ctx, |dev| train(ctx, &dev))
    }

    fn verdict(&self, claim: &str, preset_id: &str, runs: &[FinishedRun]) -> Verdict {
        verdict::compute(claim, preset_id, runs)
    }
}

fn steps(p: &Params) -> u64 {
    if p.text("method") == "none" {
        0
    } else {
        p.usize("steps") as u64
    }
}

/// The online network: encoder (probed), projector, optional predictor.
#[derive(Clone, Debug)]
struct Nets {
    encoder: Net,
    projector: Net,
    predictor: Option<Net>,
}

impl Nets {
    fn new<D: Device<f32>>(store: &mut ParamStore<f32, D>, p: &Params, rng: &mut StdRng) -> Nets {
        fn mk<D: Device<f32>>(
            store: &mut ParamStore<f32, D>,
            name: &str,
            sizes: &[usize],
            last: bool,
            rng: &mut StdRng,
        ) -> Net {
            let l = ssl::mlp_layers(sizes, Activation::Relu, false, last, Init::Torch);
            Net::new(store, name, sizes[0], &l, rng)
        }
        let encoder = mk(store, "encoder", &[DIGIT_PIXELS, REPR, REPR], true, rng);
        let projector = mk(store, "projector", &[REPR, REPR, PROJ], false, rng);
        let predictor = if p.text("predictor") == "on" {
            Some(mk(store, "predictor", &[PROJ, PROJ, PROJ], false, rng))
        } else {
            None
        };
        Nets {
            encoder,
            projector,
            predictor,
        }
    }

    /// Normalized projections (no predictor) of `x`, without a tape.
    fn project<D: Device<f32>>(&self, store: &ParamStore<f32, D>, x: Matrix<f32, D>) -> Vec<f32> {
        let e = self.encoder.apply(store, x, BnMode::Eval);
        ssl::normalize_rows(self.projector.apply(store, e, BnMode::Eval)).download()
    }
}

fn train<D: Device<f32>>(ctx: &mut RunContext<'_>, dev: &D) -> Result<RunEnd, RunStop> {
    let p = ctx.params.clone();
    let seed = ctx.seed;
    let mut rng = StdRng::seed_from_u64(seed ^ 0x3B5E);
    let split = DigitsSplit::load(0.7, None, &mut rng);
    let n = split.n_train();
    let mut store = ParamStore::<f32, D>::new(dev);
    let nets = Nets::new(&mut store, &p, &mut StdRng::seed_from_u64(seed ^ 0x1417));
    let target = (p.text("ema") == "on").then(|| ssl::copy_store(&store));
    let x_train = dev.upload(split.x_train.clone(), (n, DIGIT_PIXELS));
    let x_test = dev.upload(split.x_test.clone(), (split.n_test(), DIGIT_PIXELS));
    let cfg = ProbeConfig::default();
    let feats = |store: &ParamStore<f32, D>| Features {
        train: nets
            .encoder
            .apply(store, x_train.clone(), BnMode::Eval)
            .download(),
        test: nets
            .encoder
            .apply(store, x_test.clone(), BnMode::Eval)
            .download(),
        dim: REPR,
    };
    let init = ssl::probe(
        dev,
        &feats(&store),
        &split.y_train,
        &split.y_test,
        &cfg,
        seed,
    );
    let views = if p.text("method") == "byol" {
        2
    } else {
        p.usize("views")
    };
    ctx.log(format!(
        "{n} training images x {views} views, {} test images; untrained encoder: linear probe \
         {:.4}, 20-NN {:.4}",
        split.n_test(),
        init.linear,
        init.knn
    ));
    let mut run = MsbRun {
        opt: Optimizer::new(Rule::adam(), p.f64("lr")),
        batches: EpochBatches::new(n, p.usize("batch").min(n), seed ^ 0xBA7C),
        aug: ViewAugment {
            shift: p.usize("shift") as i32,
            noise: p.f64("noise"),
            dropout: p.f64("dropout"),
        },
        rng: StdRng::seed_from_u64(seed ^ 0xA06),
        byol: p.text("method") == "byol",
        views,
        lambda_b: p.f64("lambda_b"),
        lambda_s: p.f64("lambda_s"),
        momentum: p.f64("momentum"),
        probe_every: p.usize("probe_every").max(1) as u64,
        init_probe: init.linear,
        sums: [0.0; 3],
        since: 0,
        spectrum: Vec::new(),
        nets,
        store,
        target,
        x_train,
        x_test,
        split,
        cfg,
        seed,
    };
    let schedule = Schedule {
        steps: steps(&p),
        log_every: p.usize("log_every").max(1) as u64,
        blowup: None,
    };
    driver::drive(ctx, schedule, &mut run)
}

struct MsbRun<D: Device<f32>> {
    nets: Nets,
    store: ParamStore<f32, D>,
    target: Option<ParamStore<f32, D>>,
    opt: Optimizer<f32, D>,
    batches: EpochBatches,
    aug: ViewAugment,
    rng: StdRng,
    byol: bool,
    views: usize,
    lambda_b: f64,
    lambda_s: f64,
    momentum: f64,
    probe_every: u64,
    init_probe: f64,
    split: DigitsSplit,
    x_train: Matrix<f32, D>,
    x_test: Matrix<f32, D>,
    cfg: ProbeConfig,
    seed: u64,
    /// Sums of the three terms since the last measurement, and how many steps.
    sums: [f64; 3],
    since: u64,
    /// The test projections' singular values at the last measurement.
    spectrum: Vec<f64>,
}

impl<D: Device<f32>> MsbRun<D> {
    fn features(&self) -> Features {
        Features {
            train: self
                .nets
                .encoder
                .apply(&self.store, self.x_train.clone(), BnMode::Eval)
                .download(),
            test: self
                .nets
                .encoder
                .apply(&self.store, self.x_test.clone(), BnMode::Eval)
                .download(),
            dim: REPR,
        }
    }
}

impl<D: Device<f32>> Trainer for MsbRun<D> {
    fn evaluate(&mut self, step: u64, last: bool) -> Result<Evaluation, RunStop> {
        let z = self.nets.project(&self.store, self.x_test.clone());
        let emb_std = ssl::column_std(&z, PROJ);
        // Singular values of the centred test projections (what the S force acts on).
        let s = ssl::centered_singular_values(&z, PROJ);
        let eff_rank = ssl::effective_rank(&s);
        let mut values = vec![
            ("emb_std", emb_std),
            ("emb_std_uniform", 1.0 / (PROJ as f64).sqrt()),
            ("eff_rank", eff_rank),
            ("linear_probe_init", self.init_probe),
        ];
        if self.since > 0 {
            let m = self.since as f64;
            values.push(("loss_m", self.sums[0] / m));
            values.push(("loss_b", self.sums[1] / m));
            values.push(("loss_s", self.sums[2] / m));
            self.sums = [0.0; 3];
            self.since = 0;
        }
        let mut e = Evaluation::new(Vec::new());
        let top = s.first().copied().unwrap_or(1.0).max(1e-30);
        let spectrum: Vec<[f32; 2]> = s
            .iter()
            .enumerate()
            .map(|(k, v)| [(k + 1) as f32, (v / top).max(1e-8).log10() as f32])
            .collect();
        self.spectrum = s;
        e.pictures.push((
            "singular values of the test projections: log10(s_k / s_1) against k",
            Picture::scatter(&spectrum, &[]),
        ));
        if step.is_multiple_of(self.probe_every) || last {
            let f = self.features();
            let sc = ssl::probe(
                self.store.device(),
                &f,
                &self.split.y_train,
                &self.split.y_test,
                &self.cfg,
                self.seed,
            );
            values.push(("linear_probe_acc", sc.linear));
            values.push(("knn_acc", sc.knn));
            values.push(("few_shot_acc", sc.few_shot));
            e.pictures.push((
                "test projections on the sphere, first two principal components",
                Picture::scatter(&ssl::pca2(&z, PROJ), &[]),
            ));
        }
        e.values = values;
        Ok(e)
    }

    fn step(&mut self, _step: u64) -> Result<f64, RunStop> {
        let idx = self.batches.next_batch();
        let n = idx.len();
        let rows = ssl::host_rows(&self.split.x_train, &idx, DIGIT_PIXELS);
        let v = self.aug.views(&rows, self.views, &mut self.rng);
        let dev = self.store.device().clone();
        let x = dev.upload(v, (n * self.views, DIGIT_PIXELS));
        // Targets: the EMA network's normalized projections, or the online one's (no tape).
        let t = match &self.target {
            Some(target) => self.nets.project(target, x.clone()),
            None => self.nets.project(&self.store, x.clone()),
        };
        // Online embeddings on the tape.
        let (e, _) = self
            .nets
            .encoder
            .forward(&self.store, x.leaky_trace(), BnMode::Train);
        let (mut h, _) = self.nets.projector.forward(&self.store, e, BnMode::Train);
        if let Some(pred) = &self.nets.predictor {
            h = pred.forward(&self.store, h, BnMode::Train).0;
        }
        let z = ssl::normalize_rows(h);
        let zh = z.retaped::<NoneTape>().download();
        let (lm, mut w) = if self.byol {
            loss::byol_loss(&zh, &t, PROJ)
        } else {
            loss::centroid_loss(&zh, &t, self.views, PROJ)
        };
        let mut lb = 0.0;
        let mut ls = 0.0;
        if self.lambda_b > 0.0 {
            // A fresh uniform direction on the sphere every step.
            let mut g: Vec<f64> = (0..PROJ)
                .map(|_| StandardNormal.sample(&mut self.rng))
                .collect();
            let norm = g.iter().map(|x| x * x).sum::<f64>().sqrt();
            g.iter_mut().for_each(|x| *x /= norm);
            let (l, gb) = loss::brownian_loss(&zh, &g);
            lb = l;
            w.iter_mut()
                .zip(gb)
                .for_each(|(a, b)| *a += self.lambda_b * b);
        }
        if self.lambda_s > 0.0 {
            let z64: Vec<f64> = zh.iter().map(|&v| v as f64).collect();
            let (l, gs, _) = loss::singular_value_loss(&z64, zh.len() / PROJ, PROJ);
            if l.is_finite() {
                ls = l;
                w.iter_mut()
                    .zip(gs)
                    .for_each(|(a, b)| *a += self.lambda_s * b);
            }
        }
        let total = lm + self.lambda_b * lb + self.lambda_s * ls;
        if !total.is_finite() {
            return Ok(total);
        }
        let w = classifier::upload_rows(&dev, &w, PROJ);
        let surrogate = (z * w).sum::<Rank0, _>();
        let mut grads = surrogate.backward();
        self.opt
            .step(&mut self.store, &mut grads)
            .map_err(|e| RunStop::Failed(format!("optimizer update: {e:?}")))?;
        if let Some(target) = self.target.as_mut() {
            ssl::ema_update(target, &self.store, self.momentum);
        }
        self.sums[0] += lm;
        self.sums[1] += lb;
        self.sums[2] += ls;
        self.since += 1;
        Ok(total)
    }

    fn write_artifacts(&self, dir: &std::path::Path) -> std::io::Result<()> {
        let params = artifacts::store_tensors(&self.store);
        let s = &self.split;
        let (n, m) = (s.n_train(), s.n_test());
        let labels = |v: &[usize]| v.iter().map(|&l| l as f64).collect::<Vec<f64>>();
        let f = self.features();
        let z = self.nets.project(&self.store, self.x_test.clone());
        let data = vec![
            NamedTensor::from_f32("x_train", &[n, DIGIT_PIXELS], &s.x_train),
            NamedTensor::new("y_train", &[n], labels(&s.y_train)),
            NamedTensor::from_f32("x_test", &[m, DIGIT_PIXELS], &s.x_test),
            NamedTensor::new("y_test", &[m], labels(&s.y_test)),
            NamedTensor::from_f32("repr_train", &[n, REPR], &f.train),
            NamedTensor::from_f32("repr_test", &[m, REPR], &f.test),
            NamedTensor::from_f32("proj_test", &[m, PROJ], &z),
            NamedTensor::new(
                "proj_test_singular_values",
                &[self.spectrum.len()],
                self.spectrum.clone(),
            ),
        ];
        let text = format!(
            "MSBReg on the digits (online network; the EMA target is not saved)\n\
             encoder: {}\nprojector: {}\npredictor: {}\n\
             weights are in x out; repr_* = encoder(x); proj_test = normalize(projector(repr_test))\n\
             metrics: emb_std = mean over the 64 columns of the std of proj_test; eff_rank = \
             exp(H(s / sum s)) with s = proj_test_singular_values (of proj_test minus its column means); probes on \
             standardized repr_*: logistic regression (Adam lr {}, wd {}, {} full-batch steps), \
             {}-NN cosine majority vote, {}-shot logistic regression\n\
             loss per step ({} views of a batch): L_M = mean (2 - 2 <z, c>) with c the \
             normalized mean of the target views (BYOL arm: the symmetric 2-view loss) + \
             lambda_b mean <z, g> (g a fresh random unit vector) + lambda_s mean_k (s_k / mean \
             s - 1)^2 over the singular values of the centred batch of z\n",
            self.nets.encoder.description,
            self.nets.projector.description,
            self.nets
                .predictor
                .as_ref()
                .map(|p| p.description.clone())
                .unwrap_or_else(|| "none".into()),
            self.cfg.lr,
            self.cfg.weight_decay,
            self.cfg.steps,
            self.cfg.k,
            self.cfg.shots,
            self.views,
        );
        artifacts::write_run(dir, &params, &data, &text)
    }
}

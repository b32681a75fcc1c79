//! "Trained Rank Pruning for Efficient Deep Neural Networks" (Xu et al., IJCAI 2020; arXiv
//! 1812.02402): low-rank approximation folded into training. Every `m` steps each decomposable
//! layer's weight is replaced by its truncated SVD at the energy rank `k` (the smallest `k`
//! whose leading squared singular values hold a share `e` of the total), and every step the
//! nuclear-norm sub-gradient `lambda U_k V_k^T` is added to the weight's gradient before the
//! SGD step. Claim: the trained network is low rank, so truncating it removes most of the
//! parameters of those layers at a small accuracy loss without fine-tuning, and better than
//! truncating a normally trained network at the same ranks.
//!
//! On the digits MLP 64-256-256-256-10 the two 256x256 hidden-to-hidden layers are the
//! decomposable ones (the input layer and the classifier stay dense, as the paper leaves the
//! first convolution and the final FC). The SVDs run on the host (nalgebra, f64,
//! [`crate::metrics::lowrank`]); the truncation is written back into the device tensor and the
//! sub-gradient is added to the device gradient. The sub-gradient is recomputed at each TRP
//! step and reused for the next `m` steps.
//!
//! The post-hoc comparison needs the baseline's weights truncated at the ranks this run ends
//! with. A verdict only sees final values, so a run that compares (`posthoc_twins`) trains, in
//! lockstep, its plain twin (and optionally its nuclear-only twin): the same initialization,
//! the same mini-batches, the same optimizer, without the projections (and without the
//! sub-gradient); each measurement truncates the twin at this run's current ranks. The plain
//! twin is the `baseline` arm's network of the same seed (a test checks it).

pub mod bench;
mod verdict;

use std::collections::BTreeMap;

use dfdx::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::classifier::{self, CommonDefaults, DigitsSplit, EpochBatches};
use super::driver::{self, Evaluation, Schedule, Trainer};
use super::profile::{DeviceCase, Profile};
use super::{Experiment, FinishedRun, RunContext, RunEnd, RunStop};
use crate::artifacts::{self, NamedTensor};
use crate::datasets::{DIGIT_CLASSES, DIGIT_PIXELS};
use crate::metrics::lowrank::{self, Svd};
use crate::metrics::MetricSpec;
use crate::nn::models::{accuracy_on_device, softmax_cross_entropy, Activation, Matrix, Mlp};
use crate::nn::store::ParamStore;
use crate::nn::transfer::{Download, Upload};
use crate::nn::Optimizer;
use crate::params::{ParamSpec, Params};
use crate::verdict::Verdict;

pub struct TrainedRankPruning;

/// Hidden layers of the preset's MLP: the two between them are the decomposable layers.
pub const DEPTH: usize = 3;

/// How one network is trained: the projections, the nuclear sub-gradient, and at which energy
/// its ranks are measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Regime {
    /// Replace every decomposable weight by its energy-`e` truncation every `period` steps.
    pub project: bool,
    /// The energy threshold `e` (projection and measurement).
    pub energy: f64,
    /// Steps between TRP steps (`m`).
    pub period: usize,
    /// `lambda` of the nuclear sub-gradient (0: none).
    pub lambda: f64,
    /// Sub-gradient `U V^T` over every direction (the nuclear-only baseline) instead of the
    /// energy-rank factors `U_k V_k^T` (TRP).
    pub full_subgradient: bool,
}

impl Regime {
    pub fn of(p: &Params) -> Regime {
        Regime {
            project: p.text("trp_project") == "on",
            energy: p.f64("trp_energy"),
            period: p.usize("trp_period").max(1),
            lambda: p.f64("nuclear_weight"),
            full_subgradient: p.text("nuclear_subgradient") == "full",
        }
    }

    /// The plain twin: the same measurement, nothing else.
    pub fn plain(self) -> Regime {
        Regime {
            project: false,
            lambda: 0.0,
            ..self
        }
    }

    /// Whether training needs SVDs at all.
    pub fn needs_svd(&self) -> bool {
        self.project || self.lambda > 0.0
    }
}

impl Experiment for TrainedRankPruning {
    fn kind(&self) -> &'static str {
        "trained-rank-pruning"
    }

    fn params(&self) -> Vec<ParamSpec> {
        let mut v = classifier::common_params(&CommonDefaults {
            optimizer: "sgd",
            lr: 0.05,
            momentum: 0.9,
            weight_decay: 1e-4,
            batch: 64,
            epochs: 60,
            n_train: 1258,
            width: 256,
            depth: DEPTH as i64,
        });
        v.extend([
            ParamSpec::choice(
                "trp_project",
                &["off", "on"],
                "off",
                "every trp_period steps, replace each decomposable weight by its truncated SVD at the energy rank",
            ),
            ParamSpec::float("trp_energy", 0.9, 0.01, 1.0, "energy threshold e: the rank keeps a share e of the squared singular values (projection and the measured ranks)"),
            ParamSpec::int("trp_period", 10, 1, 100_000, "steps between TRP steps (m); the sub-gradient is recomputed there"),
            ParamSpec::float("nuclear_weight", 0.0, 0.0, 1.0, "lambda: lambda U V^T added to each decomposable weight's gradient (nuclear-norm sub-gradient)"),
            ParamSpec::choice(
                "nuclear_subgradient",
                &["truncated", "full"],
                "truncated",
                "sub-gradient from the energy-rank factors U_k V_k^T (TRP) or from every direction U V^T",
            ),
            ParamSpec::choice(
                "posthoc_twins",
                &["none", "plain", "plain+nuclear"],
                "none",
                "train in lockstep the plain twin (and the nuclear-only twin), truncated at this run's ranks at every measurement (post-hoc, no fine-tuning)",
            ),
            ParamSpec::int("lr_drop1", 30, 0, 100_000, "epoch at which the learning rate is divided by 10 (0: never)"),
            ParamSpec::int("lr_drop2", 45, 0, 100_000, "epoch at which it is divided by 10 again (0: never)"),
            ParamSpec::int("eval_every", 1, 1, 100_000, "epochs between measurements"),
        ]);
        v
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        vec![
            MetricSpec::new(
                "test_acc_trunc",
                "test accuracy, decomposable layers truncated at energy e (no fine-tuning)",
            )
            .unit("fraction")
            .reference("test_acc"),
            MetricSpec::new("rank_l2", "energy-e rank of layer 2 (256x256)").unit("count"),
            MetricSpec::new("rank_l3", "energy-e rank of layer 3 (256x256)").unit("count"),
            MetricSpec::new(
                "posthoc_acc",
                "plain twin truncated at this run's ranks (post-hoc, no fine-tuning)",
            )
            .unit("fraction")
            .reference("test_acc_trunc"),
            MetricSpec::new("test_acc", "test accuracy of the dense network").unit("fraction"),
            MetricSpec::new(
                "compression",
                "parameters of the decomposable layers: dense / rank-k factors",
            )
            .unit("x"),
            MetricSpec::new(
                "nuclear_norm",
                "nuclear norm (sum over decomposable layers)",
            ),
            MetricSpec::new("train_loss", "training CE (since the last measurement)")
                .unit("nats")
                .log(),
            MetricSpec::new("twin_test_acc", "plain twin: dense test accuracy").unit("fraction"),
            MetricSpec::new("twin_rank_l2", "plain twin: energy-e rank of layer 2").unit("count"),
            MetricSpec::new("twin_rank_l3", "plain twin: energy-e rank of layer 3").unit("count"),
            MetricSpec::new(
                "nuc_posthoc_acc",
                "nuclear-only twin truncated at this run's ranks",
            )
            .unit("fraction"),
            MetricSpec::new(
                "nuc_twin_test_acc",
                "nuclear-only twin: dense test accuracy",
            )
            .unit("fraction"),
        ]
    }

    fn table_metrics(&self) -> Vec<&'static str> {
        vec![
            "test_acc_trunc",
            "test_acc",
            "posthoc_acc",
            "rank_l2",
            "rank_l3",
            "compression",
        ]
    }

    fn total_steps(&self, p: &Params) -> u64 {
        steps(p) as u64
    }

    fn memory(&self, p: &Params) -> crate::engine::memory::Estimate {
        let sizes = classifier::layer_sizes(p);
        let weights: f64 = sizes.windows(2).map(|w| (w[0] * w[1] + w[1]) as f64).sum();
        let nets = match p.text("posthoc_twins") {
            "plain" => 2.0,
            "plain+nuclear" => 3.0,
            _ => 1.0,
        };
        let width = p.usize("width") as f64;
        crate::engine::memory::Estimate::of(&[
            (
                nets * 4.0 * 4.0 * weights,
                format!(
                    "{nets} network(s) {sizes:?} (weights, momentum, gradients, sub-gradients)"
                ),
            ),
            (
                8.0 * 6.0 * width * width,
                format!("host SVD of a {width}x{width} layer (f64: A, U, V^T, the truncation)"),
            ),
            (
                4.0 * 1797.0 * width * 4.0,
                format!("every digit through a layer of width {width}"),
            ),
        ])
    }

    fn validate(&self, p: &Params) -> Result<(), String> {
        if p.usize("depth") != DEPTH {
            return Err(format!(
                "depth must be {DEPTH}: the preset decomposes the two hidden-to-hidden layers \
                 (rank_l2, rank_l3)"
            ));
        }
        classifier::validate_sizes(p, classifier::TRAIN_70)?;
        if p.text("optimizer") != "sgd" {
            return Err("optimizer must be sgd (TRP's setting: SGD with momentum)".into());
        }
        Ok(())
    }

    fn builtin_presets(&self) -> &'static [(&'static str, &'static str)] {
        &[(
            "presets/trained-rank-pruning.toml",
            include_str!("../../../presets/trained-rank-pruning.toml"),
        )]
    }

    fn verdict_bar(&self) -> Option<(&'static str, Option<&'static str>)> {
        Some(("test_acc_trunc", None))
    }

    fn quick_profile(&self) -> Profile {
        Profile {
            preset: "trained-rank-pruning",
            arms: &["baseline", "trp"],
            seeds: &[0, 1, 2],
            overrides: QUICK,
        }
    }

    fn device_cases(&self) -> Vec<DeviceCase> {
        let small = Profile {
            preset: "trained-rank-pruning",
            arms: &[],
            seeds: &[0],
            overrides: &[("epochs", "3"), ("eval_every", "3")],
        };
        let large = Profile {
            overrides: &[
                ("epochs", "1"),
                ("eval_every", "1"),
                ("width", "768"),
                ("batch", "256"),
            ],
            ..small
        };
        vec![
            DeviceCase {
                size: "preset",
                arm: "trp",
                profile: small,
            },
            DeviceCase {
                size: "preset",
                arm: "nuclear",
                profile: small,
            },
            DeviceCase {
                size: "large",
                arm: "trp",
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

/// The quick profile's overrides: 20 epochs with the learning-rate drops at the same fractions.
pub const QUICK: &[(&str, &str)] = &[
    ("epochs", "20"),
    ("lr_drop1", "10"),
    ("lr_drop2", "15"),
    ("eval_every", "5"),
];

/// Training steps of a run (`drop_last` epochs).
pub fn steps(p: &Params) -> usize {
    classifier::steps_for(p.usize("n_train"), p.usize("batch"), p.usize("epochs"))
}

/// The learning rate at `epoch`: `lr` divided by 10 at each drop passed.
pub fn lr_at(lr: f64, epoch: usize, drops: &[usize]) -> f64 {
    let passed = drops.iter().filter(|&&d| d > 0 && epoch >= d).count();
    lr * 0.1f64.powi(passed as i32)
}

/// One network with its own optimizer and mini-batches, trained under a [`Regime`].
pub struct TrpNet<D: Device<f32>> {
    pub store: ParamStore<f32, D>,
    pub mlp: Mlp,
    pub regime: Regime,
    /// Layer indices of the decomposable layers.
    pub decomposed: Vec<usize>,
    /// The sub-gradient of each decomposable layer (`U_k V_k^T` or `U V^T`), row-major like the
    /// weight, from the last TRP step.
    pub subgradients: Vec<Option<Tensor<(usize,), f32, D>>>,
    /// The energy ranks of the last TRP step.
    pub step_ranks: Vec<usize>,
    opt: Optimizer<f32, D>,
    batches: EpochBatches,
    ce_sum: (f64, usize),
}

impl<D: Device<f32>> TrpNet<D> {
    /// The MLP at PyTorch's initialization from `init_seed` (parameters named `{prefix}.{i}.*`),
    /// mini-batches from `batch_seed`.
    pub fn new(
        dev: &D,
        prefix: &str,
        sizes: &[usize],
        regime: Regime,
        opt: Optimizer<f32, D>,
        init_seed: u64,
        batches: EpochBatches,
    ) -> TrpNet<D> {
        let mut store = ParamStore::new(dev);
        let mut rng = StdRng::seed_from_u64(init_seed);
        let mlp = Mlp::new(&mut store, prefix, sizes, Activation::Relu, &mut rng);
        let n = mlp.num_layers();
        let decomposed: Vec<usize> = (1..n.saturating_sub(1)).collect();
        TrpNet {
            store,
            mlp,
            regime,
            subgradients: vec![None; decomposed.len()],
            step_ranks: vec![0; decomposed.len()],
            decomposed,
            opt,
            batches,
            ce_sum: (0.0, 0),
        }
    }

    /// `(rows, cols)` of layer `i`'s weight (`in x out`).
    pub fn shape(&self, i: usize) -> (usize, usize) {
        (self.mlp.sizes[i], self.mlp.sizes[i + 1])
    }

    /// The SVD of every decomposable layer's weight.
    pub fn svds(&self) -> Vec<Svd> {
        self.decomposed
            .iter()
            .map(|&i| {
                let (r, c) = self.shape(i);
                Svd::of_gram(&self.store.values(self.mlp.layer_weight(i)), r, c)
            })
            .collect()
    }

    /// A TRP step: the SVD of every decomposable weight, its energy rank, the projection
    /// `W <- U_k S_k V_k^T` (when projecting) and the sub-gradient for the next `m` steps (when
    /// `lambda > 0`). The momentum is left as it is.
    pub fn trp_step(&mut self) {
        let svds = self.svds();
        for (j, svd) in svds.iter().enumerate() {
            let w = self.mlp.layer_weight(self.decomposed[j]);
            let k = svd.energy_rank(self.regime.energy);
            self.step_ranks[j] = k;
            if self.regime.project {
                let t: Vec<f32> = svd.truncate(k).iter().map(|&x| x as f32).collect();
                self.store.upload(w, t);
            }
            self.subgradients[j] = (self.regime.lambda > 0.0).then(|| {
                let kk = if self.regime.full_subgradient {
                    svd.s.len()
                } else {
                    k
                };
                let g: Vec<f32> = svd
                    .nuclear_subgradient(kk)
                    .iter()
                    .map(|&x| x as f32)
                    .collect();
                let n = g.len();
                self.store.device().upload(g, (n,))
            });
        }
    }

    /// One training step on the mini-batch its own batcher draws (a TRP step first when `step`
    /// is a multiple of the period); returns the mean cross-entropy.
    pub fn step(
        &mut self,
        x_train: &Matrix<f32, D>,
        y_train: &Matrix<f32, D>,
        step: u64,
        lr: f64,
    ) -> Result<f64, RunStop> {
        if self.regime.needs_svd() && step.is_multiple_of(self.regime.period as u64) {
            self.trp_step();
        }
        let idx = self.batches.next_batch();
        let x = classifier::rows(x_train, &idx);
        let y = classifier::rows(y_train, &idx);
        let loss = softmax_cross_entropy(self.mlp.forward(&self.store, x.leaky_trace()), y);
        let ce = loss.download()[0] as f64;
        if !ce.is_finite() {
            return Ok(ce);
        }
        // The sub-gradient enters as the linear term lambda <W, G> with G held constant: its
        // gradient in W is exactly lambda G (the nuclear norm itself is not on the tape).
        let mut total = loss;
        if self.regime.lambda > 0.0 {
            for (j, &i) in self.decomposed.iter().enumerate() {
                if let Some(g) = &self.subgradients[j] {
                    let w = self.store.vector(self.mlp.layer_weight(i));
                    total = total + (w * g.clone()).sum::<Rank0, _>() * self.regime.lambda as f32;
                }
            }
        }
        let mut grads = total.backward();
        self.opt.lr = lr;
        self.opt
            .step(&mut self.store, &mut grads)
            .map_err(|e| RunStop::Failed(format!("optimizer update: {e:?}")))?;
        self.ce_sum = (self.ce_sum.0 + ce, self.ce_sum.1 + 1);
        Ok(ce)
    }

    /// Test accuracy of the network as it is.
    pub fn accuracy(&self, x: &Matrix<f32, D>, y: &[usize]) -> f64 {
        accuracy_on_device(&self.mlp.logits(&self.store, x.clone()), y)
    }

    /// Accuracy with every decomposable layer `j` truncated at `ranks[j]` (from `svds`), the
    /// other layers as they are; the stored weights are put back afterwards.
    pub fn truncated_accuracy(
        &mut self,
        svds: &[Svd],
        ranks: &[usize],
        x: &Matrix<f32, D>,
        y: &[usize],
    ) -> f64 {
        let saved: Vec<Vec<f32>> = self
            .decomposed
            .iter()
            .map(|&i| self.store.values(self.mlp.layer_weight(i)))
            .collect();
        for (j, &i) in self.decomposed.iter().enumerate() {
            let t = svds[j]
                .truncate(ranks[j])
                .iter()
                .map(|&x| x as f32)
                .collect();
            self.store.upload(self.mlp.layer_weight(i), t);
        }
        let acc = self.accuracy(x, y);
        for (j, &i) in self.decomposed.iter().enumerate() {
            self.store
                .upload(self.mlp.layer_weight(i), saved[j].clone());
        }
        acc
    }

    /// Mean training CE since the last call (None before any step).
    pub fn take_train_loss(&mut self) -> Option<f64> {
        let (s, n) = std::mem::replace(&mut self.ce_sum, (0.0, 0));
        (n > 0).then(|| s / n as f64)
    }

    /// `sum(m n) / sum(k (m + n))` over the decomposable layers at `ranks`.
    pub fn compression(&self, ranks: &[usize]) -> f64 {
        let (mut dense, mut factored) = (0usize, 0usize);
        for (j, &i) in self.decomposed.iter().enumerate() {
            let (m, n) = self.shape(i);
            dense += m * n;
            factored += lowrank::factor_params(m, n, ranks[j]).0;
        }
        dense as f64 / factored.max(1) as f64
    }
}

/// The optimizer of every network of a run: SGD with momentum and L2 weight decay.
fn optimizer<D: Device<f32>>(p: &Params) -> Optimizer<f32, D> {
    classifier::optimizer::<f32, D>(p)
}

/// Trains one run on the device `dev`.
fn train<D: Device<f32>>(ctx: &mut RunContext<'_>, dev: &D) -> Result<RunEnd, RunStop> {
    let p = ctx.params.clone();
    let seed = ctx.seed;
    let mut rng = StdRng::seed_from_u64(seed ^ 0x7A1D);
    let split = DigitsSplit::load(0.7, Some(p.usize("n_train")), &mut rng);
    let sizes = classifier::layer_sizes(&p);
    let regime = Regime::of(&p);
    let init_seed = seed ^ 0x1217;
    let batches = || EpochBatches::new(split.n_train(), p.usize("batch"), seed ^ 0xBA7C);
    let net = |prefix: &str, r: Regime| {
        TrpNet::new(dev, prefix, &sizes, r, optimizer(&p), init_seed, batches())
    };
    let main = net("mlp", regime);
    let twins = p.text("posthoc_twins");
    let plain = (twins != "none").then(|| net("plain_twin", regime.plain()));
    let nuclear = (twins == "plain+nuclear").then(|| {
        net(
            "nuclear_twin",
            Regime {
                project: false,
                full_subgradient: true,
                ..regime
            },
        )
    });
    let per_epoch = main.batches.per_epoch();
    ctx.log(format!(
        "{} training / {} test images; {} steps ({} per epoch); {}; {}",
        split.n_train(),
        split.n_test(),
        steps(&p),
        per_epoch,
        describe(&regime),
        match twins {
            "plain" => "with its plain twin (post-hoc truncation at this run's ranks)",
            "plain+nuclear" =>
                "with its plain and nuclear-only twins (post-hoc truncation at this run's ranks)",
            _ => "no twins",
        }
    ));
    let mut run = TrpRun {
        x_train: dev.upload(split.x_train.clone(), (split.n_train(), DIGIT_PIXELS)),
        y_train: classifier::one_hot(dev, &split.y_train, DIGIT_CLASSES),
        x_test: dev.upload(split.x_test.clone(), (split.n_test(), DIGIT_PIXELS)),
        lr: p.f64("lr"),
        drops: [p.usize("lr_drop1"), p.usize("lr_drop2")],
        per_epoch,
        main,
        plain,
        nuclear,
        split,
        last: None,
    };
    let schedule = Schedule {
        steps: steps(&p) as u64,
        log_every: (per_epoch * p.usize("eval_every")) as u64,
        blowup: None,
    };
    driver::drive(ctx, schedule, &mut run)
}

/// One line on how a network is trained.
pub fn describe(r: &Regime) -> String {
    let mut parts = Vec::new();
    if r.project {
        parts.push(format!(
            "truncated SVD at energy {} every {} steps",
            r.energy, r.period
        ));
    }
    if r.lambda > 0.0 {
        parts.push(format!(
            "nuclear sub-gradient {} {} every step (recomputed every {} steps)",
            r.lambda,
            if r.full_subgradient {
                "U V^T"
            } else {
                "U_k V_k^T"
            },
            r.period
        ));
    }
    if parts.is_empty() {
        "plain training".into()
    } else {
        parts.join(" + ")
    }
}

/// What the last measurement saw, for the end of the run.
struct LastMeasure {
    spectra: Vec<Vec<f64>>,
    ranks: Vec<usize>,
    twin_spectra: Vec<Vec<f64>>,
}

/// One run's state between steps.
struct TrpRun<D: Device<f32>> {
    main: TrpNet<D>,
    plain: Option<TrpNet<D>>,
    nuclear: Option<TrpNet<D>>,
    split: DigitsSplit,
    x_train: Matrix<f32, D>,
    y_train: Matrix<f32, D>,
    x_test: Matrix<f32, D>,
    lr: f64,
    drops: [usize; 2],
    per_epoch: usize,
    last: Option<LastMeasure>,
}

impl<D: Device<f32>> Trainer for TrpRun<D> {
    fn evaluate(&mut self, _step: u64, _last: bool) -> Result<Evaluation, RunStop> {
        let (xt, yt) = (&self.x_test, &self.split.y_test);
        let energy = self.main.regime.energy;
        let svds = self.main.svds();
        let ranks: Vec<usize> = svds.iter().map(|s| s.energy_rank(energy)).collect();
        let mut values = vec![
            ("test_acc", self.main.accuracy(xt, yt)),
            (
                "test_acc_trunc",
                self.main.truncated_accuracy(&svds, &ranks, xt, yt),
            ),
            ("rank_l2", ranks[0] as f64),
            ("rank_l3", ranks[1] as f64),
            ("compression", self.main.compression(&ranks)),
            (
                "nuclear_norm",
                svds.iter().map(|s| s.nuclear_norm()).sum::<f64>(),
            ),
        ];
        if let Some(l) = self.main.take_train_loss() {
            values.push(("train_loss", l));
        }
        let mut twin_spectra = Vec::new();
        if let Some(twin) = self.plain.as_mut() {
            let ts = twin.svds();
            values.push(("twin_test_acc", twin.accuracy(xt, yt)));
            values.push(("posthoc_acc", twin.truncated_accuracy(&ts, &ranks, xt, yt)));
            values.push(("twin_rank_l2", ts[0].energy_rank(energy) as f64));
            values.push(("twin_rank_l3", ts[1].energy_rank(energy) as f64));
            twin.take_train_loss();
            twin_spectra = ts.into_iter().map(|s| s.s).collect();
        }
        if let Some(twin) = self.nuclear.as_mut() {
            let ts = twin.svds();
            values.push(("nuc_twin_test_acc", twin.accuracy(xt, yt)));
            values.push((
                "nuc_posthoc_acc",
                twin.truncated_accuracy(&ts, &ranks, xt, yt),
            ));
            twin.take_train_loss();
        }
        self.last = Some(LastMeasure {
            spectra: svds.into_iter().map(|s| s.s).collect(),
            ranks,
            twin_spectra,
        });
        Ok(Evaluation::new(values))
    }

    fn step(&mut self, step: u64) -> Result<f64, RunStop> {
        let lr = lr_at(self.lr, step as usize / self.per_epoch, &self.drops);
        let ce = self.main.step(&self.x_train, &self.y_train, step, lr)?;
        for twin in [self.plain.as_mut(), self.nuclear.as_mut()]
            .into_iter()
            .flatten()
        {
            twin.step(&self.x_train, &self.y_train, step, lr)?;
        }
        Ok(ce)
    }

    fn finish(&mut self, final_values: &mut BTreeMap<String, f64>, _steps: u64) {
        let Some(last) = &self.last else {
            return;
        };
        for (j, s) in last.spectra.iter().enumerate() {
            for (i, v) in s.iter().enumerate() {
                final_values.insert(format!("sv_l{}_{i:03}", j + 2), *v);
            }
        }
        for (j, s) in last.twin_spectra.iter().enumerate() {
            for (i, v) in s.iter().enumerate() {
                final_values.insert(format!("twin_sv_l{}_{i:03}", j + 2), *v);
            }
        }
        if let Some(acc) = final_values.get("posthoc_acc").copied() {
            final_values.insert("posthoc_acc_at_trp_ranks".into(), acc);
        }
        final_values.insert("trp_energy".into(), self.main.regime.energy);
        let (mut dense, mut factored) = (0usize, 0usize);
        for (j, &i) in self.main.decomposed.iter().enumerate() {
            let (m, n) = self.main.shape(i);
            dense += m * n;
            factored += lowrank::factor_params(m, n, last.ranks[j]).0;
        }
        let total: usize = self.main.store.params().iter().map(|p| p.numel()).sum();
        final_values.insert("params_dense".into(), total as f64);
        final_values.insert("params_factored".into(), (total - dense + factored) as f64);
    }

    fn write_artifacts(&self, dir: &std::path::Path) -> std::io::Result<()> {
        let mut params = artifacts::store_tensors(&self.main.store);
        for twin in [self.plain.as_ref(), self.nuclear.as_ref()]
            .into_iter()
            .flatten()
        {
            params.extend(artifacts::store_tensors(&twin.store));
        }
        let s = &self.split;
        let labels = |y: &[usize]| y.iter().map(|&v| v as f64).collect::<Vec<_>>();
        let mut data = vec![
            NamedTensor::from_f32("x_train", &[s.n_train(), DIGIT_PIXELS], &s.x_train),
            NamedTensor::new("y_train", &[s.n_train()], labels(&s.y_train)),
            NamedTensor::from_f32("x_test", &[s.n_test(), DIGIT_PIXELS], &s.x_test),
            NamedTensor::new("y_test", &[s.n_test()], labels(&s.y_test)),
        ];
        if let Some(last) = &self.last {
            data.push(NamedTensor::new(
                "ranks",
                &[last.ranks.len()],
                last.ranks.iter().map(|&k| k as f64).collect(),
            ));
            for (j, sv) in last.spectra.iter().enumerate() {
                data.push(NamedTensor::new(
                    &format!("sv_l{}", j + 2),
                    &[sv.len()],
                    sv.clone(),
                ));
            }
        }
        let r = &self.main.regime;
        let twins = match (&self.plain, &self.nuclear) {
            (Some(_), Some(_)) => "plain_twin.* (plain training) and nuclear_twin.* (full nuclear sub-gradient, no projection)",
            (Some(_), None) => "plain_twin.* (plain training)",
            _ => "none",
        };
        let text = format!(
            "digits MLP {:?}, ReLU: h = relu(h @ mlp.{{i}}.weight + mlp.{{i}}.bias) (weights stored \
             in x out), logits from the last layer without ReLU; decomposable layers: mlp.1, mlp.2 \
             (metrics rank_l2, rank_l3)\n\
             training: {}\n\
             twins (same initialization and mini-batches): {twins}\n\
             test_acc: argmax of the logits on x_test against y_test (pixels / 16)\n\
             rank_l2 / rank_l3 (data: ranks): smallest k with sum_{{i<=k}} s_i^2 >= {} sum_i s_i^2 \
             of the SVD of mlp.1.weight / mlp.2.weight (sv_l2, sv_l3: their singular values)\n\
             test_acc_trunc: test_acc with mlp.1.weight, mlp.2.weight replaced by U_k diag(s_k) V_k^T \
             at those ranks; posthoc_acc: the same for plain_twin.1.weight, plain_twin.2.weight \
             at this run's ranks; nuc_posthoc_acc: for nuclear_twin.*\n\
             compression: sum(m n) / sum(k (m + n)) over the two layers\n",
            self.main.mlp.sizes,
            describe(r),
            r.energy
        );
        artifacts::write_run(dir, &params, &data, &text)
    }
}

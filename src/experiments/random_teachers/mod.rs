//! "Random Teachers are Good Teachers" (Sarnthein, Bachmann, Anagnostidis, Hofmann, ICML 2023):
//! a student distilled, without labels or augmentations, into a teacher frozen at its random
//! initialization learns a representation whose linear probe beats the teacher's; the gain
//! depends on the data (distilling on noise inputs gives less) and on the student starting
//! close to the teacher.
//!
//! DINO-style networks from the SSL harness (`experiments::ssl`): an encoder MLP with batch
//! norm (the probed embedding), a head, an L2 bottleneck and weight-normalized prototypes. As in
//! the official code (`t_bn_mode = "from_data"`, `t_eval = true`) the teacher's batch-norm
//! statistics are computed once from the training inputs and the teacher is always in eval
//! mode, while the student (a copy of the teacher) is in train mode: that difference is the only
//! thing that gives the student a gradient when `tau_t = tau_s`. The teacher's targets are
//! computed on the student's batch every step, so without batch norm a copied student gets an
//! exactly zero gradient (the trap the official code avoids with its batch-norm modes).

pub mod bench;
mod verdict;

use dfdx::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

use super::classifier::{self, DigitsSplit, EpochBatches};
use super::driver::{self, Evaluation, Schedule, Trainer};
use super::profile::{DeviceCase, Profile};
use super::ssl::{self, Features, Init, LayerSpec, Net, ProbeConfig, ProbeScores};
use super::{Experiment, FinishedRun, RunContext, RunEnd, RunStop};
use crate::artifacts::{self, NamedTensor};
use crate::datasets::DIGIT_PIXELS;
use crate::metrics::picture::Picture;
use crate::metrics::MetricSpec;
use crate::nn::models::{Activation, BnMode, Matrix};
use crate::nn::store::{ParamId, ParamStore};
use crate::nn::transfer::{Download, Upload};
use crate::nn::{Optimizer, Rule};
use crate::params::{ParamSpec, Params};
use crate::verdict::Verdict;

pub struct RandomTeachers;

const PRESET: &str = "random-teachers";

impl Experiment for RandomTeachers {
    fn kind(&self) -> &'static str {
        PRESET
    }

    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::choice(
                "method",
                &["distill", "teacher"],
                "distill",
                "distill a student into the frozen random teacher, or only probe the teacher",
            ),
            ParamSpec::choice(
                "inputs",
                &["digits", "noise"],
                "digits",
                "training inputs: the digits, or Gaussian noise with the digits' per-pixel mean \
                 and standard deviation (probes always use the digits)",
            ),
            ParamSpec::choice(
                "student_init",
                &["teacher", "random"],
                "teacher",
                "the student starts as a copy of the teacher, or from an independent draw",
            ),
            ParamSpec::choice(
                "batch_norm",
                &["on", "off"],
                "on",
                "batch norm in the encoder (teacher eval mode, student train mode)",
            ),
            ParamSpec::float(
                "student_eps",
                0.0,
                0.0,
                10.0,
                "student = (teacher + eps * fresh init) / sqrt(1 + eps^2) (student_init teacher)",
            ),
            ParamSpec::float("tau_t", 1.0, 1e-3, 100.0, "teacher temperature"),
            ParamSpec::float("tau_s", 1.0, 1e-3, 100.0, "student temperature"),
            ParamSpec::int("prototypes", 1024, 2, 65536, "K: outputs of the DINO head"),
            ParamSpec::int("emb", 32, 2, 1024, "width of the probed embedding"),
            ParamSpec::int("width", 256, 2, 4096, "hidden width of encoder and head"),
            ParamSpec::float("lr", 1e-3, 1e-7, 10.0, "AdamW learning rate"),
            ParamSpec::float(
                "weight_decay",
                0.0,
                0.0,
                1.0,
                "AdamW decoupled weight decay",
            ),
            ParamSpec::int("batch", 256, 2, 1258, "images per step"),
            ParamSpec::int("steps", 1000, 0, 1_000_000, "training steps"),
            ParamSpec::int(
                "log_every",
                50,
                1,
                1_000_000,
                "steps between loss measurements",
            ),
            ParamSpec::int(
                "probe_every",
                500,
                1,
                1_000_000,
                "steps between probes (and at the end)",
            ),
        ]
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        vec![
            MetricSpec::new("probe_linear", "linear probe accuracy of the student")
                .unit("fraction")
                .reference("probe_linear_teacher"),
            MetricSpec::new(
                "probe_linear_teacher",
                "linear probe accuracy of the teacher",
            )
            .unit("fraction"),
            MetricSpec::new("gain", "student - teacher linear probe").unit("fraction"),
            MetricSpec::new("probe_knn", "20-NN accuracy of the student")
                .unit("fraction")
                .reference("probe_knn_teacher"),
            MetricSpec::new("probe_knn_teacher", "20-NN accuracy of the teacher").unit("fraction"),
            MetricSpec::new("probe_5shot", "5-shot linear probe of the student")
                .unit("fraction")
                .reference("probe_5shot_teacher"),
            MetricSpec::new("probe_5shot_teacher", "5-shot linear probe of the teacher")
                .unit("fraction"),
            MetricSpec::new("kl", "KL(teacher || student) = CE - H(teacher)")
                .unit("nats")
                .log(),
            MetricSpec::new("loss", "distillation cross entropy").unit("nats"),
            MetricSpec::new("dist_to_teacher", "||theta_S - theta_T||"),
        ]
    }

    fn table_metrics(&self) -> Vec<&'static str> {
        vec![
            "probe_linear",
            "probe_linear_teacher",
            "gain",
            "probe_knn",
            "probe_5shot",
            "dist_to_teacher",
        ]
    }

    fn total_steps(&self, p: &Params) -> u64 {
        steps(p)
    }

    fn builtin_presets(&self) -> &'static [(&'static str, &'static str)] {
        &[(
            "presets/random-teachers.toml",
            include_str!("../../../presets/random-teachers.toml"),
        )]
    }

    fn verdict_bar(&self) -> Option<(&'static str, Option<&'static str>)> {
        Some(("probe_linear", Some("probe_linear_teacher")))
    }

    fn quick_profile(&self) -> Profile {
        Profile {
            preset: PRESET,
            arms: &["distill-digits", "distill-noise"],
            seeds: &[0],
            overrides: &[("steps", "400"), ("probe_every", "400")],
        }
    }

    fn device_cases(&self) -> Vec<DeviceCase> {
        let preset_size = Profile {
            preset: PRESET,
            arms: &[],
            seeds: &[0],
            overrides: &[("steps", "50"), ("probe_every", "50")],
        };
        let large = Profile {
            overrides: &[
                ("steps", "20"),
                ("probe_every", "20"),
                ("width", "2048"),
                ("prototypes", "65536"),
            ],
            ..preset_size
        };
        vec![
            DeviceCase {
                size: "preset",
                arm: "distill-digits",
                profile: preset_size,
            },
            DeviceCase {
                size: "preset",
                arm: "distill-nobn-eps0.1",
                profile: preset_size,
            },
            DeviceCase {
                size: "large",
                arm: "distill-digits",
                profile: large,
            },
        ]
    }

    fn bench(&self, quick: bool, out: &mut String) {
        bench::report(quick, out)
    }

    fn validate(&self, p: &Params) -> Result<(), String> {
        if p.usize("batch") < 2 && p.text("batch_norm") == "on" {
            return Err("train-mode batch norm needs a batch of at least 2".into());
        }
        Ok(())
    }

    fn memory(&self, p: &Params) -> crate::engine::memory::Estimate {
        let w = p.usize("width") as f64;
        let k = p.usize("prototypes") as f64;
        let e = p.usize("emb") as f64;
        let weights = 64.0 * w + 2.0 * w * w + w * e + e * w + w * w + w * e + e * k;
        let b = p.usize("batch") as f64;
        crate::engine::memory::Estimate::of(&[
            (
                4.0 * weights * 6.0,
                "teacher + student weights, grads, Adam moments".to_string(),
            ),
            (
                4.0 * b * k * 2.0,
                "the teacher's targets of a batch".to_string(),
            ),
            (
                4.0 * b * (6.0 * w + 3.0 * k) * 3.0,
                "activations of a batch".to_string(),
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
    if p.text("method") == "teacher" {
        0
    } else {
        p.usize("steps") as u64
    }
}

/// Teacher / student networks: encoder (probed), DINO head, prototypes `V` (`emb_head x K`,
/// column-normalized in the forward pass, no bias).
#[derive(Clone, Debug)]
pub struct Dino {
    pub encoder: Net,
    pub head: Net,
    pub prototypes: ParamId,
}

/// Width of the head's L2 bottleneck.
pub const BOTTLENECK: usize = 32;

impl Dino {
    /// Encoder `64 - width x 3 (Linear, [BatchNorm], ReLU) - emb`, head `emb - width - width -
    /// 32` (GELU, trunc-normal 0.02), prototypes `32 x K` (trunc-normal 0.02).
    pub fn new<E: Dtype, D: Device<E>>(
        store: &mut ParamStore<E, D>,
        p: &Params,
        rng: &mut StdRng,
    ) -> Dino {
        let (w, e) = (p.usize("width"), p.usize("emb"));
        let bn = p.text("batch_norm") == "on";
        let enc = ssl::mlp_layers(
            &[DIGIT_PIXELS, w, w, w, e],
            Activation::Relu,
            bn,
            false,
            Init::Torch,
        );
        let encoder = Net::new(store, "encoder", DIGIT_PIXELS, &enc, rng);
        let head_layers = ssl::mlp_layers(
            &[e, w, w, BOTTLENECK],
            Activation::Gelu,
            false,
            false,
            Init::TruncNormal(0.02),
        );
        let head = Net::new(store, "head", e, &head_layers, rng);
        let k = p.usize("prototypes");
        let v = Net::new(
            store,
            "prototypes",
            BOTTLENECK,
            &[LayerSpec::Linear(k, Init::TruncNormal(0.02), false)],
            rng,
        );
        let prototypes = match v.layers[0] {
            ssl::Layer::Linear { w, .. } => w,
            _ => unreachable!("one linear layer"),
        };
        Dino {
            encoder,
            head,
            prototypes,
        }
    }

    /// The logits (`batch x K`) and the train-mode batch statistics.
    pub fn logits<E: Dtype, D: Device<E>, T: Tape<E, D>>(
        &self,
        store: &ParamStore<E, D>,
        x: Tensor<(usize, usize), E, D, T>,
        mode: BnMode,
    ) -> ssl::NetOutput<E, D, T> {
        let (e, stats) = self.encoder.forward(store, x, mode);
        let (h, _) = self.head.forward(store, e, mode);
        let z = ssl::normalize_rows(h);
        // Weight normalization with g = 1: every prototype (a column of V) has unit norm.
        let v = store.matrix_value(self.prototypes).retaped::<T>();
        let (b, k) = *v.shape();
        let eps = E::from_f64(1e-12).expect("representable");
        let norm = (v.with_empty_tape().square().sum::<(usize,), Axis<0>>() + eps).sqrt();
        let v = v / norm.broadcast_like::<_, Axis<0>>(&(b, k));
        (z.matmul(v), stats)
    }

    /// The probed embedding (eval mode), on the host.
    pub fn embed<E: Dtype, D: Device<E>>(
        &self,
        store: &ParamStore<E, D>,
        x: &Matrix<E, D>,
    ) -> Vec<f32> {
        self.encoder
            .apply(store, x.clone(), BnMode::Eval)
            .download()
            .into_iter()
            .map(|v| v.to_f32().unwrap_or(f32::NAN))
            .collect()
    }
}

/// The distillation loss `mean_x -sum_k t_k log softmax(logits / tau_s)_k` against targets `t`
/// (rows summing to 1): a tape term whose gradient with respect to the logits is the loss's,
/// `(softmax(logits / tau_s) - t) / (tau_s batch)`, built from the same `softmax` that made
/// the teacher's targets, so a student whose logits equal the teacher's gets exactly zero (a
/// log-softmax backward would leave rounding residue that Adam turns into full steps); and the
/// loss's value.
pub fn distillation_loss<E: Dtype, D: Device<E>>(
    logits: crate::nn::store::Taped<(usize, usize), E, D>,
    targets: Matrix<E, D>,
    inv_tau_s: f64,
) -> (crate::nn::store::Taped<(), E, D>, f64) {
    let n = logits.shape().0;
    let (z, tape) = logits.split_tape();
    let scaled = z.clone() * E::from_f64(inv_tau_s).expect("representable");
    let ce = -(scaled.clone().log_softmax::<Axis<1>>() * targets.clone())
        .sum::<Rank0, _>()
        .download()[0]
        .to_f64()
        .unwrap_or(f64::NAN)
        / n as f64;
    let g = (scaled.softmax::<Axis<1>>() - targets)
        * E::from_f64(inv_tau_s / n as f64).expect("representable");
    ((z.put_tape(tape) * g).sum::<Rank0, _>(), ce)
}

/// Gaussian noise images with the per-pixel mean and standard deviation of `x` (rows of 64).
pub fn noise_like(x: &[f32], rows: usize, rng: &mut StdRng) -> Vec<f32> {
    let n = (x.len() / DIGIT_PIXELS).max(1) as f64;
    let mut mean = [0.0f64; DIGIT_PIXELS];
    let mut var = [0.0f64; DIGIT_PIXELS];
    for r in x.chunks(DIGIT_PIXELS) {
        for j in 0..DIGIT_PIXELS {
            mean[j] += r[j] as f64 / n;
        }
    }
    for r in x.chunks(DIGIT_PIXELS) {
        for j in 0..DIGIT_PIXELS {
            var[j] += (r[j] as f64 - mean[j]).powi(2) / n;
        }
    }
    (0..rows * DIGIT_PIXELS)
        .map(|i| {
            let j = i % DIGIT_PIXELS;
            let g: f64 = StandardNormal.sample(rng);
            (mean[j] + var[j].sqrt() * g) as f32
        })
        .collect()
}

fn train<D: Device<f32>>(ctx: &mut RunContext<'_>, dev: &D) -> Result<RunEnd, RunStop> {
    let p = ctx.params.clone();
    let seed = ctx.seed;
    let mut rng = StdRng::seed_from_u64(seed ^ 0x7EAC);
    let split = DigitsSplit::load(0.7, None, &mut rng);
    let n = split.n_train();
    let inputs = if p.text("inputs") == "noise" {
        noise_like(&split.x_train, n, &mut StdRng::seed_from_u64(seed ^ 0x0153))
    } else {
        split.x_train.clone()
    };
    let x_in = dev.upload(inputs.clone(), (n, DIGIT_PIXELS));
    let x_train = dev.upload(split.x_train.clone(), (n, DIGIT_PIXELS));
    let x_test = dev.upload(split.x_test.clone(), (split.n_test(), DIGIT_PIXELS));

    // The teacher: a seeded random network, batch-norm statistics from the training inputs.
    let mut teacher = ParamStore::<f32, D>::new(dev);
    let mut init_rng = StdRng::seed_from_u64(seed ^ 0x1417);
    let net = Dino::new(&mut teacher, &p, &mut init_rng);
    let batch = p.usize("batch").min(n);
    net.encoder.calibrate_batch_norm(&mut teacher, &x_in, batch);
    for prm in teacher.params_mut() {
        prm.trainable = prm.trainable && !prm.name.contains("running");
    }
    // The student.
    let student = match p.text("student_init") {
        "random" => {
            let mut s = ParamStore::<f32, D>::new(dev);
            let mut other = StdRng::seed_from_u64(seed ^ 0xD1FF);
            let _ = Dino::new(&mut s, &p, &mut other);
            net.encoder.calibrate_batch_norm(&mut s, &x_in, batch);
            s
        }
        _ => {
            let mut s = ssl::copy_store(&teacher);
            let eps = p.f64("student_eps");
            if eps > 0.0 {
                let mut fresh = ParamStore::<f32, D>::new(dev);
                let _ = Dino::new(&mut fresh, &p, &mut StdRng::seed_from_u64(seed ^ 0xE95));
                let scale = 1.0 / (1.0 + eps * eps).sqrt();
                for (a, b) in s.params_mut().iter_mut().zip(fresh.params()) {
                    if a.trainable {
                        a.tensor.axpy(scale, &b.tensor, eps * scale);
                    }
                }
            }
            s
        }
    };

    let k = p.usize("prototypes");
    let cfg = ProbeConfig::default();
    let teacher_probe = ssl::probe(
        dev,
        &Features {
            train: net.embed(&teacher, &x_train),
            test: net.embed(&teacher, &x_test),
            dim: net.encoder.out_dim,
        },
        &split.y_train,
        &split.y_test,
        &cfg,
        seed,
    );
    ctx.log(format!(
        "{} training inputs ({}), {} test digits; teacher: linear probe {:.4}, 20-NN {:.4}, \
         5-shot {:.4}; ln K = {:.4}",
        n,
        p.text("inputs"),
        split.n_test(),
        teacher_probe.linear,
        teacher_probe.knn,
        teacher_probe.few_shot,
        (k as f64).ln()
    ));
    let teacher_emb = net.embed(&teacher, &x_test);
    let mut run = DistillRun {
        opt: Optimizer::new(Rule::adamw(p.f64("weight_decay")), p.f64("lr")),
        batches: EpochBatches::new(n, batch, seed ^ 0xBA7C),
        inv_tau_s: 1.0 / p.f64("tau_s"),
        probe_every: p.usize("probe_every").max(1) as u64,
        inv_tau_t: 1.0 / p.f64("tau_t"),
        x_in,
        x_train,
        x_test,
        net,
        teacher,
        student,
        split,
        cfg,
        teacher_probe,
        teacher_emb,
        seed,
        ce_sum: 0.0,
        kl_sum: 0.0,
        steps_since: 0,
        last_probe: None,
        inputs,
    };
    let schedule = Schedule {
        steps: steps(&p),
        log_every: p.usize("log_every").max(1) as u64,
        blowup: None,
    };
    driver::drive(ctx, schedule, &mut run)
}

struct DistillRun<D: Device<f32>> {
    net: Dino,
    teacher: ParamStore<f32, D>,
    student: ParamStore<f32, D>,
    opt: Optimizer<f32, D>,
    batches: EpochBatches,
    inv_tau_s: f64,
    probe_every: u64,
    split: DigitsSplit,
    /// The training inputs (digits or noise), host and device.
    inputs: Vec<f32>,
    x_in: Matrix<f32, D>,
    inv_tau_t: f64,
    x_train: Matrix<f32, D>,
    x_test: Matrix<f32, D>,
    cfg: ProbeConfig,
    teacher_probe: ProbeScores,
    teacher_emb: Vec<f32>,
    seed: u64,
    ce_sum: f64,
    kl_sum: f64,
    steps_since: u64,
    last_probe: Option<ProbeScores>,
}

impl<D: Device<f32>> DistillRun<D> {
    fn features(&self) -> Features {
        Features {
            train: self.net.embed(&self.student, &self.x_train),
            test: self.net.embed(&self.student, &self.x_test),
            dim: self.net.encoder.out_dim,
        }
    }
}

impl<D: Device<f32>> Trainer for DistillRun<D> {
    fn evaluate(&mut self, step: u64, last: bool) -> Result<Evaluation, RunStop> {
        let t = self.teacher_probe;
        let mut values = vec![
            ("probe_linear_teacher", t.linear),
            ("probe_knn_teacher", t.knn),
            ("probe_5shot_teacher", t.few_shot),
            (
                "dist_to_teacher",
                ssl::param_distance(&self.student, &self.teacher),
            ),
        ];
        if self.steps_since > 0 {
            let m = self.steps_since as f64;
            values.push(("loss", self.ce_sum / m));
            values.push(("kl", (self.kl_sum / m).max(1e-12)));
            self.ce_sum = 0.0;
            self.kl_sum = 0.0;
            self.steps_since = 0;
        }
        let mut e = Evaluation::new(Vec::new());
        if step.is_multiple_of(self.probe_every) || last {
            let f = self.features();
            let s = ssl::probe(
                self.student.device(),
                &f,
                &self.split.y_train,
                &self.split.y_test,
                &self.cfg,
                self.seed,
            );
            values.push(("probe_linear", s.linear));
            values.push(("probe_knn", s.knn));
            values.push(("probe_5shot", s.few_shot));
            values.push(("gain", s.linear - t.linear));
            self.last_probe = Some(s);
            e.pictures.push((
                "test embeddings, first two principal components: student (points), teacher \
                 (reference)",
                Picture::scatter(
                    &ssl::pca2(&f.test, f.dim),
                    &ssl::pca2(&self.teacher_emb, f.dim),
                ),
            ));
        }
        e.values = values;
        Ok(e)
    }

    fn step(&mut self, _step: u64) -> Result<f64, RunStop> {
        let idx = self.batches.next_batch();
        let x = classifier::rows(&self.x_in, &idx);
        // The teacher's targets on the same batch (eval mode, no tape): with a student that is
        // an exact copy and no batch norm, the two forward passes are bit-identical and the
        // gradient is exactly zero (precomputed targets would differ in the last bits, and Adam
        // turns any nonzero gradient into an lr-sized step).
        let t_logits = self.net.logits(&self.teacher, x.clone(), BnMode::Eval).0;
        let t = (t_logits * self.inv_tau_t as f32).softmax::<Axis<1>>();
        let h = -((t.clone() + 1e-30).ln() * t.clone())
            .sum::<Rank0, _>()
            .download()[0] as f64
            / idx.len() as f64;
        let (logits, stats) = self
            .net
            .logits(&self.student, x.leaky_trace(), BnMode::Train);
        let (loss, ce) = distillation_loss(logits, t, self.inv_tau_s);
        if !ce.is_finite() {
            return Ok(ce);
        }
        let mut grads = loss.backward();
        self.opt
            .step(&mut self.student, &mut grads)
            .map_err(|e| RunStop::Failed(format!("optimizer update: {e:?}")))?;
        Net::update_running(&mut self.student, &stats);
        self.ce_sum += ce;
        self.kl_sum += ce - h;
        self.steps_since += 1;
        Ok(ce)
    }

    fn write_artifacts(&self, dir: &std::path::Path) -> std::io::Result<()> {
        let mut params = Vec::new();
        for (name, store) in [("teacher", &self.teacher), ("student", &self.student)] {
            for t in artifacts::store_tensors(store) {
                params.push(NamedTensor {
                    name: format!("{name}.{}", t.name),
                    ..t
                });
            }
        }
        let s = &self.split;
        let (n, m) = (s.n_train(), s.n_test());
        let labels = |v: &[usize]| v.iter().map(|&l| l as f64).collect::<Vec<f64>>();
        let f = self.features();
        let d = f.dim;
        let data = vec![
            NamedTensor::from_f32("inputs", &[n, DIGIT_PIXELS], &self.inputs),
            NamedTensor::from_f32("x_train", &[n, DIGIT_PIXELS], &s.x_train),
            NamedTensor::new("y_train", &[n], labels(&s.y_train)),
            NamedTensor::from_f32("x_test", &[m, DIGIT_PIXELS], &s.x_test),
            NamedTensor::new("y_test", &[m], labels(&s.y_test)),
            NamedTensor::from_f32("student_emb_train", &[n, d], &f.train),
            NamedTensor::from_f32("student_emb_test", &[m, d], &f.test),
            NamedTensor::from_f32(
                "teacher_emb_train",
                &[n, d],
                &self.net.embed(&self.teacher, &self.x_train),
            ),
            NamedTensor::from_f32("teacher_emb_test", &[m, d], &self.teacher_emb),
        ];
        let text = format!(
            "random-teacher distillation (DINO-style, no labels, no augmentation)\n\
             encoder: {}\nhead: {}\nz = h / ||h||; logits = z @ (V / column norms of V), V = \
             prototypes.0.weight ({} x K, in x out)\n\
             parameters: teacher.* (frozen at its seeded init; batch-norm running statistics \
             from the training inputs, eval mode) and student.* (trained; running statistics \
             with momentum 0.1); weights are in x out; batch norm y = (x - running_mean) / \
             sqrt(running_var + 1e-5) * weight + bias in eval mode\n\
             loss: mean over the batch of -sum_k softmax(logits_T / tau_t)_k log_softmax(logits_S \
             / tau_s)_k, student in train mode (batch statistics)\n\
             inputs: the training inputs (digits, or per-pixel Gaussian noise)\n\
             probes (on *_emb_*, the encoder output in eval mode, standardized by the training \
             features): logistic regression, Adam lr {} wd {}, {} full-batch steps; {}-NN cosine \
             majority vote; {}-shot logistic regression\n",
            self.net.encoder.description,
            self.net.head.description,
            BOTTLENECK,
            self.cfg.lr,
            self.cfg.weight_decay,
            self.cfg.steps,
            self.cfg.k,
            self.cfg.shots,
        );
        artifacts::write_run(dir, &params, &data, &text)
    }
}

//! "Analysis of Variational Sparse Autoencoders" (2025): a TopK variational SAE (Gaussian
//! posterior per latent, reparameterized sample, TopK, KL to N(0, I)) against a TopK SAE, with
//! TopK + AuxK as a third arm. Finding: the vSAE has many more dead features and a worse
//! reconstruction; the KL term is the cause.

pub mod bench;
pub mod data;
pub mod model;
mod verdict;

use dfdx::prelude::*;

use crate::nn::transfer::{Download, Upload};
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::driver::{self, Evaluation, Schedule, Trainer};
use super::profile::{DeviceCase, Profile};
use super::{Experiment, FinishedRun, RunContext, RunEnd, RunStop};
use crate::artifacts::{self, NamedTensor};
use crate::metrics::dead_features::DeadFeatureTracker;
use crate::metrics::recovery::recovery_score;
use crate::metrics::MetricSpec;
use crate::nn::{Optimizer, Rule};
use crate::params::{ParamSpec, Params};
use crate::verdict::Verdict;
use data::Activations;
use model::{AuxK, Sae, Variant};

pub struct VariationalSae;

fn variant_of(p: &Params) -> Variant {
    match p.text("variant") {
        "vsae" => Variant::Vsae {
            kl_weight: p.f64("kl_weight") as f32,
            learned_variance: p.text("variance") == "learned",
            log_var_init: p.f64("log_var_init") as f32,
        },
        _ => Variant::TopK,
    }
}

fn aux_of(p: &Params) -> Option<AuxK> {
    (p.text("auxk") == "on").then(|| AuxK {
        k_aux: p.usize("k_aux"),
        weight: p.f64("aux_weight") as f32,
    })
}

/// Loads the activations a run trains on.
fn activations(p: &Params, seed: u64, ctx: &mut RunContext<'_>) -> Activations {
    let mut rng = StdRng::seed_from_u64(seed ^ 0xDA7A);
    match p.text("data") {
        "digits" => {
            let (acts, acc) =
                data::digits_hidden(p.usize("digits_hidden"), p.usize("mlp_steps"), &mut rng);
            ctx.log(format!(
                "digits network: held-out accuracy {:.3}; SAE on its {} hidden units ({} train / {} held-out images)",
                acc, acts.d, acts.n_train, acts.n_eval
            ));
            acts
        }
        _ => data::superposition(
            data::Superposition {
                d: p.usize("dim"),
                features: p.usize("features"),
                tokens: p.usize("tokens"),
                eval_tokens: p.usize("eval_tokens"),
                p_max: p.f64("p_max"),
                alpha: p.f64("alpha"),
                noise: p.f64("noise"),
            },
            &mut rng,
        ),
    }
}

/// Evaluation on the held-out tokens with deterministic encodings (the vSAE's means).
struct Eval {
    mse: f64,
    fvu: f64,
    dead: f64,
    /// Mean number of non-zero latents per held-out token (deterministic encodings).
    l0: f64,
    recovery: Option<f64>,
}

/// The held-out tokens on the device, with their per-dimension mean.
struct EvalSet<D: Device<f32>> {
    x: Tensor<(usize, usize), f32, D>,
    mean: Tensor<(usize, usize), f32, D>,
}

impl<D: Device<f32>> EvalSet<D> {
    fn new(dev: &D, acts: &Activations) -> EvalSet<D> {
        let (n, d) = (acts.n_eval, acts.d);
        let mut mean = vec![0.0f64; d];
        for row in acts.eval.chunks(d) {
            for (m, x) in mean.iter_mut().zip(row) {
                *m += *x as f64 / n as f64;
            }
        }
        let mean: Vec<f32> = (0..n)
            .flat_map(|_| mean.iter().map(|v| *v as f32))
            .collect();
        EvalSet {
            x: dev.upload(acts.eval.clone(), (n, d)),
            mean: dev.upload(mean, (n, d)),
        }
    }
}

fn evaluate<D: Device<f32>>(sae: &Sae<D>, set: &EvalSet<D>, acts: &Activations) -> Eval {
    let (n, d) = (acts.n_eval, acts.d);
    let z = sae.encode_on(&set.x);
    let xhat = sae.decode_on(&z);
    let err = (set.x.clone() - xhat).square().sum::<Rank0, _>().download()[0] as f64;
    let var = (set.x.clone() - set.mean.clone())
        .square()
        .sum::<Rank0, _>()
        .download()[0] as f64;
    // A latent is dead on the held-out set when it never fires there.
    let fired = z.gt(0.0).choose(
        set.x.device().ones_like(&(n, sae.m)),
        set.x.device().zeros_like(&(n, sae.m)),
    );
    let l0 = fired.clone().sum::<Rank0, _>().download()[0] as f64 / n as f64;
    let per_latent = fired.max::<(usize,), Axis<0>>().download();
    let dead = per_latent.iter().filter(|v| **v == 0.0).count() as f64 / sae.m as f64;
    Eval {
        mse: err / (n * d) as f64,
        fvu: if var > 0.0 { err / var } else { f64::NAN },
        dead,
        l0,
        recovery: acts
            .truth
            .as_ref()
            .map(|(t, nf)| recovery_score(t, *nf, &sae.decoder_rows(), sae.m, d)),
    }
}

impl Experiment for VariationalSae {
    fn kind(&self) -> &'static str {
        "vsae"
    }

    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::choice("variant", &["topk", "vsae"], "topk", "TopK SAE, or TopK variational SAE (the authors' form)"),
            ParamSpec::choice("auxk", &["on", "off"], "on", "the AuxK dead-latent loss (Gao et al.; both of the authors' arms use it)"),
            ParamSpec::float("log_var_init", -2.0, -20.0, 10.0, "vSAE: initial bias of the log-variance (the authors' -2: sigma 0.37)"),
            ParamSpec::float("kl_warmup", 0.1, 0.0, 1.0, "vSAE: fraction of the steps over which the KL weight rises linearly from 0"),
            ParamSpec::choice("data", &["synthetic", "digits"], "synthetic", "superposition with known features, or hidden activations of a digits network"),
            ParamSpec::float("kl_weight", 1.0, 0.0, 1e4, "vSAE: weight of the KL term"),
            ParamSpec::choice("variance", &["learned", "fixed"], "learned", "vSAE posterior variance: learned per latent (a sampled latent), or fixed (the latent is the mean, the KL an L2 pull on it; the authors' var_flag 0)"),
            ParamSpec::int("latents", 192, 1, 1_000_000, "dictionary size m"),
            ParamSpec::int("k", 8, 1, 100_000, "latents kept by TopK"),
            ParamSpec::int("k_aux", 16, 1, 100_000, "AuxK: dead latents used to model the residual (d/2, as the authors)"),
            ParamSpec::float("aux_weight", 0.03125, 0.0, 1e4, "AuxK: weight of the auxiliary loss"),
            ParamSpec::int("steps", 3000, 1, 1_000_000_000, "training steps"),
            ParamSpec::int("batch", 256, 1, 1_000_000, "tokens per step"),
            ParamSpec::float("lr", 1e-3, 1e-9, 10.0, "Adam learning rate"),
            ParamSpec::int("log_every", 100, 1, 1_000_000_000, "steps between measurements"),
            ParamSpec::int("dead_window", 25_600, 1, 1_000_000_000_000, "training tokens without firing after which a latent counts as dead"),
            ParamSpec::int("dim", 32, 1, 100_000, "synthetic: activation dimension d"),
            ParamSpec::int("features", 96, 1, 1_000_000, "synthetic: ground-truth features (more than d: superposition)"),
            ParamSpec::int("tokens", 50_000, 1, 100_000_000, "synthetic: training tokens"),
            ParamSpec::int("eval_tokens", 4096, 1, 10_000_000, "synthetic: held-out tokens"),
            ParamSpec::float("p_max", 0.25, 0.0, 1.0, "synthetic: firing probability of the most frequent feature"),
            ParamSpec::float("alpha", 0.5, 0.0, 10.0, "synthetic: power-law exponent of feature frequencies"),
            ParamSpec::float("noise", 0.01, 0.0, 100.0, "synthetic: Gaussian noise std"),
            ParamSpec::int("digits_hidden", 32, 1, 4096, "digits: hidden units of the network whose activations the SAE reads"),
            ParamSpec::int("mlp_steps", 1500, 1, 10_000_000, "digits: training steps of that network"),
        ]
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        vec![
            MetricSpec::new("mse", "reconstruction MSE").log(),
            MetricSpec::new("fvu", "fraction of variance unexplained").log(),
            MetricSpec::new("dead_eval", "dead fraction (held-out means)").unit("fraction"),
            MetricSpec::new("dead_train", "dead fraction (training window)").unit("fraction"),
            MetricSpec::new("alive_eval", "alive fraction (held-out means)").unit("fraction"),
            MetricSpec::new("l0", "L0 (training samples)"),
            MetricSpec::new("l0_eval", "L0 (held-out, deterministic)"),
            MetricSpec::new("kl", "KL per token"),
            MetricSpec::new("recovery", "feature recovery").unit("mean best cosine"),
            MetricSpec::new("loss", "training loss").log(),
        ]
    }

    fn table_metrics(&self) -> Vec<&'static str> {
        vec![
            "mse",
            "fvu",
            "dead_eval",
            "dead_train",
            "l0_eval",
            "kl",
            "recovery",
        ]
    }

    fn memory(&self, p: &Params) -> crate::engine::memory::Estimate {
        let d = p.usize("dim") as f64;
        let m = p.usize("latents") as f64;
        let b = p.usize("batch") as f64;
        let tokens = (p.usize("tokens") + p.usize("eval_tokens")) as f64;
        crate::engine::memory::Estimate::of(&[
            (4.0 * tokens * d, format!("tokens {tokens} x dim {d}")),
            (
                4.0 * m * d * 2.0 * 6.0,
                format!("latents {m} x dim {d} (weights, moments)"),
            ),
            (
                4.0 * (b + p.usize("eval_tokens") as f64) * m * 12.0,
                format!("(batch {b} + eval_tokens) x latents {m}"),
            ),
        ])
    }

    fn builtin_presets(&self) -> &'static [(&'static str, &'static str)] {
        &[(
            "presets/vsae.toml",
            include_str!("../../../presets/vsae.toml"),
        )]
    }

    fn verdict_bar(&self) -> Option<(&'static str, Option<&'static str>)> {
        Some(("dead_eval", None))
    }

    fn quick_profile(&self) -> Profile {
        Profile {
            preset: "vsae",
            arms: &["topk", "vsae-kl1", "vsae-kl0.1", "vsae-kl0"],
            seeds: &[0],
            overrides: &[("steps", "1000")],
        }
    }

    fn device_cases(&self) -> Vec<DeviceCase> {
        let preset_size = Profile {
            preset: "vsae",
            arms: &[],
            seeds: &[0],
            overrides: &[("steps", "100"), ("log_every", "50")],
        };
        let large = Profile {
            overrides: &[
                ("dim", "512"),
                ("features", "2048"),
                ("tokens", "8192"),
                ("eval_tokens", "1024"),
                ("latents", "8192"),
                ("batch", "2048"),
                ("k", "32"),
                ("steps", "10"),
                ("log_every", "5"),
            ],
            ..preset_size
        };
        vec![
            DeviceCase {
                size: "preset",
                arm: "topk",
                profile: preset_size,
            },
            DeviceCase {
                size: "preset",
                arm: "vsae-kl1",
                profile: preset_size,
            },
            DeviceCase {
                size: "large",
                arm: "topk",
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

/// Trains one run on the device `dev`.
fn train<D: Device<f32>>(ctx: &mut RunContext<'_>, dev: &D) -> Result<RunEnd, RunStop> {
    let p = ctx.params.clone();
    let seed = ctx.seed;
    let acts = activations(&p, seed, ctx);
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5AE);
    let variant = variant_of(&p);
    let mut sae = Sae::new(
        dev,
        acts.d,
        p.usize("latents"),
        p.usize("k"),
        variant,
        &mut rng,
    );
    if let Some(aux) = aux_of(&p) {
        sae = sae.with_aux(aux);
    }
    // The decoder bias starts at the training data's mean (the usual SAE practice).
    sae.set_decoder_bias(&acts.train_mean());
    let steps = p.usize("steps") as f64;
    let mut run = SaeRun {
        kl_warmup_steps: (p.f64("kl_warmup") * steps).round(),
        opt: Optimizer::new(Rule::adam(), p.f64("lr")),
        tracker: DeadFeatureTracker::new(sae.m, p.usize("dead_window") as u64),
        eval_set: EvalSet::new(dev, &acts),
        batch: p.usize("batch"),
        last_step: (f64::NAN, f64::NAN, f64::NAN),
        sae,
        acts,
        rng,
    };
    driver::drive(ctx, Schedule::from_params(&p), &mut run)
}

/// One run's state between steps.
struct SaeRun<D: Device<f32>> {
    sae: Sae<D>,
    opt: Optimizer<f32, D>,
    tracker: DeadFeatureTracker,
    acts: Activations,
    eval_set: EvalSet<D>,
    batch: usize,
    rng: StdRng,
    /// L0, KL and loss of the last training step.
    last_step: (f64, f64, f64),
    /// Steps over which the KL weight rises linearly from 0 (vSAE).
    kl_warmup_steps: f64,
}

impl<D: Device<f32>> Trainer for SaeRun<D> {
    fn evaluate(&mut self, _step: u64, _last: bool) -> Result<Evaluation, RunStop> {
        let e = evaluate(&self.sae, &self.eval_set, &self.acts);
        let (l0, kl, loss) = self.last_step;
        let mut values = vec![
            ("mse", e.mse),
            ("fvu", e.fvu),
            ("dead_eval", e.dead),
            ("dead_train", self.tracker.dead_fraction()),
            ("alive_eval", 1.0 - e.dead),
            ("l0", l0),
            ("l0_eval", e.l0),
            ("loss", loss),
        ];
        if self.sae.variant.is_vsae() {
            values.push(("kl", kl));
        }
        if let Some(r) = e.recovery {
            values.push(("recovery", r));
        }
        Ok(Evaluation::new(values))
    }

    fn step(&mut self, step: u64) -> Result<f64, RunStop> {
        let x = self.acts.batch(self.batch, &mut self.rng);
        let dead = self.sae.aux.is_some().then(|| self.tracker.dead_mask());
        let kl_scale = if self.kl_warmup_steps > 0.0 {
            (step as f64 / self.kl_warmup_steps).min(1.0) as f32
        } else {
            1.0
        };
        let mut out = self
            .sae
            .train_step(&x, self.batch, dead.as_deref(), kl_scale, &mut self.rng);
        if !out.loss.is_finite() {
            return Ok(out.loss as f64);
        }
        self.tracker
            .observe_last_rows(&out.last_fired_row, self.batch);
        self.last_step = (out.l0, out.kl as f64, out.loss as f64);
        self.opt
            .step(&mut self.sae.store, &mut out.grads)
            .map_err(|e| RunStop::Failed(format!("optimizer update: {e:?}")))?;
        self.sae.normalize_decoder();
        Ok(out.loss as f64)
    }

    fn write_artifacts(&self, dir: &std::path::Path) -> std::io::Result<()> {
        let params = artifacts::store_tensors(&self.sae.store);
        let a = &self.acts;
        let mut data = vec![
            NamedTensor::from_f32("x_train", &[a.n_train, a.d], &a.train),
            NamedTensor::from_f32("x_eval", &[a.n_eval, a.d], &a.eval),
        ];
        if let Some((t, nf)) = &a.truth {
            data.push(NamedTensor::from_f32("true_features", &[*nf, a.d], t));
        }
        let s = &self.sae;
        let text = format!(
            "sparse autoencoder ({:?}), d = {}, m = {} latents, k = {}\n\
             encoder: pre = (x - b_dec) @ W_enc + b_enc   (W_enc d x m)\n\
             evaluation encoding (the vSAE uses its means): z = relu(topk_k(pre)), keeping each \
             row's entries >= its k-th largest value\n\
             decoder: x_hat = z @ W_dec + b_dec   (W_dec m x d, rows of unit norm)\n\
             vSAE log-variance (learned variance only): (x - b_dec) @ W_lv + b_lv\n\
             metrics: mse = mean over x_eval entries of (x - x_hat)^2; fvu = sum (x - x_hat)^2 / \
             sum (x - mean(x_eval))^2; dead_eval = fraction of latents never non-zero on x_eval\n\
             true_features (synthetic data): rows are the ground-truth unit directions\n",
            s.variant, s.d, s.m, s.k
        );
        artifacts::write_run(dir, &params, &data, &text)
    }
}

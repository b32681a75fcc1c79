//! "Analysis of Variational Sparse Autoencoders" (2025): a TopK variational SAE (Gaussian
//! posterior per latent, reparameterized sample, TopK, KL to N(0, I)) against a TopK SAE, with
//! TopK + AuxK as a third arm. Finding: the vSAE has many more dead features and a worse
//! reconstruction; the KL term is the cause.

pub mod data;
pub mod model;
mod verdict;

use std::collections::BTreeMap;

use dfdx::prelude::Device;
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::{Experiment, FinishedRun, RunContext, RunEnd, RunStop};
use crate::metrics::dead_features::{dead_fraction_on_batch, DeadFeatureTracker};
use crate::metrics::recovery::recovery_score;
use crate::metrics::MetricSpec;
use crate::optim::Adam;
use crate::params::{ParamSpec, Params};
use crate::verdict::Verdict;
use data::Activations;
use model::{Sae, Variant};

pub struct VariationalSae;

fn variant_of(p: &Params) -> Variant {
    match p.text("variant") {
        "vsae" => Variant::Vsae {
            kl_weight: p.f64("kl_weight") as f32,
            learned_variance: p.text("variance") == "learned",
        },
        "auxk" => Variant::AuxK {
            k_aux: p.usize("k_aux"),
            weight: p.f64("aux_weight") as f32,
        },
        _ => Variant::TopK,
    }
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
    recovery: Option<f64>,
}

fn evaluate<D: Device<f32>>(dev: &D, sae: &Sae, acts: &Activations) -> Eval {
    let (n, d) = (acts.n_eval, acts.d);
    let z = sae.encode(dev, &acts.eval, n);
    let xhat = sae.decode(dev, &z, n);
    let mut mean = vec![0.0f64; d];
    for row in acts.eval.chunks(d) {
        for (m, x) in mean.iter_mut().zip(row) {
            *m += *x as f64 / n as f64;
        }
    }
    let (mut err, mut var) = (0.0f64, 0.0f64);
    for (i, (x, h)) in acts.eval.iter().zip(&xhat).enumerate() {
        err += ((x - h) as f64).powi(2);
        var += (*x as f64 - mean[i % d]).powi(2);
    }
    Eval {
        mse: err / (n * d) as f64,
        fvu: if var > 0.0 { err / var } else { f64::NAN },
        dead: dead_fraction_on_batch(&z, n, sae.m),
        recovery: acts
            .truth
            .as_ref()
            .map(|(t, nf)| recovery_score(t, *nf, &sae.w_dec, sae.m, d)),
    }
}

impl Experiment for VariationalSae {
    fn kind(&self) -> &'static str {
        "vsae"
    }

    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::choice("variant", &["topk", "auxk", "vsae"], "topk", "TopK SAE, TopK + AuxK, or TopK variational SAE"),
            ParamSpec::choice("data", &["synthetic", "digits"], "synthetic", "superposition with known features, or hidden activations of a digits network"),
            ParamSpec::float("kl_weight", 1.0, 0.0, 1e4, "vSAE: weight of the KL term"),
            ParamSpec::choice("variance", &["learned", "fixed"], "learned", "vSAE posterior variance: learned per latent (arXiv version) or fixed at 1 (blog version)"),
            ParamSpec::int("latents", 192, 1, 1_000_000, "dictionary size m"),
            ParamSpec::int("k", 8, 1, 100_000, "latents kept by TopK"),
            ParamSpec::int("k_aux", 32, 1, 100_000, "AuxK: dead latents used to model the residual"),
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
            MetricSpec::new("l0", "L0 (latents per token)"),
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
            "l0",
            "kl",
            "recovery",
        ]
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
    let dev = dev.clone();
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5AE);
    let variant = variant_of(&p);
    let mut sae = Sae::new(acts.d, p.usize("latents"), p.usize("k"), variant, &mut rng);
    let mut adam = Adam::new(p.f64("lr") as f32);
    let mut tracker = DeadFeatureTracker::new(sae.m, p.usize("dead_window") as u64);
    let (steps, batch, log_every) = (
        p.usize("steps") as u64,
        p.usize("batch"),
        p.usize("log_every").max(1) as u64,
    );
    let (mut l0, mut kl, mut loss) = (f64::NAN, f64::NAN, f64::NAN);
    let mut last = BTreeMap::new();
    let mut step = 0u64;
    loop {
        if step.is_multiple_of(log_every) || step == steps {
            let e = evaluate(&dev, &sae, &acts);
            let mut values = vec![
                ("mse", e.mse),
                ("fvu", e.fvu),
                ("dead_eval", e.dead),
                ("dead_train", tracker.dead_fraction()),
                ("alive_eval", 1.0 - e.dead),
                ("l0", l0),
                ("loss", loss),
            ];
            if variant.is_vsae() {
                values.push(("kl", kl));
            }
            if let Some(r) = e.recovery {
                values.push(("recovery", r));
            }
            ctx.record(step, &values);
            last = values.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        }
        if step >= steps {
            break;
        }
        if ctx.stop_requested() {
            return Err(RunStop::Stopped { step });
        }
        let x = acts.batch(batch, &mut rng);
        let dead = matches!(variant, Variant::AuxK { .. }).then(|| tracker.dead_mask());
        let out = sae.train_step(&dev, &x, batch, dead.as_deref(), &mut rng);
        if !out.loss.is_finite() || out.grads.iter().flatten().any(|g| !g.is_finite()) {
            return Err(RunStop::Diverged {
                step,
                reason: format!("non-finite loss or gradient ({})", out.loss),
            });
        }
        tracker.observe(&out.z, batch);
        l0 = out.z.iter().filter(|v| **v != 0.0).count() as f64 / batch as f64;
        kl = out.kl as f64;
        loss = out.loss as f64;
        adam.step(&mut sae.params_mut(), &out.grads);
        sae.normalize_decoder();
        step += 1;
    }
    Ok(RunEnd {
        steps: step,
        final_values: last,
    })
}

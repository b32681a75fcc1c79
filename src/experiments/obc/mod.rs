//! Ma et al., "Solving Diffusion ODEs with Optimal Boundary Conditions for Better Image
//! Super-Resolution" (ICLR 2024): the deterministic sampler of a conditional diffusion SR model
//! maps a boundary condition x_T and an LR image y to `x_0 = h_theta(x_T, y)`; one x_T, searched
//! once on a reference set of (HR, LR) pairs among M random candidates, is reused for every test
//! image. Compared with random x_T (mean and draw-to-draw spread of PSNR), with x_T = 0 and with
//! the mean of the random outputs, so that "less noise" is not credited to the method.
//!
//! Every arm of a seed shares one prior (a conditional noise-predicting MLP on the 8x8 digits,
//! 4x4 -> 8x8), one candidate search and one set of random draws through
//! [`crate::experiments::memo`]; the run that computes a shared result streams its progress,
//! the others replay its curves.

pub mod search;
mod verdict;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use dfdx::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::diffusion::features::Features;
use super::diffusion::{
    feature_classifier, gaussian_rows, train_eps_net, EpsNetConfig, NoiseSchedule, SignedDigits,
    TrainConfig, TrainedEpsNet,
};
use super::profile::{DeviceCase, Profile};
use super::{memo, Experiment, FinishedRun, RunContext, RunEnd, RunStop};
use crate::artifacts::{self, NamedTensor};
use crate::metrics::picture::Picture;
use crate::metrics::MetricSpec;
use crate::params::{ParamSpec, Params};
use crate::verdict::Verdict;
use search::{conditions, feature_scores, psnr_scores, psnr_signed, sparkline, Prior, HR};

pub struct ObcSr;

/// The step counts a launch may sample with (the `ks` choices are subsets; 10 is in each).
pub const KS: [usize; 3] = [5, 10, 20];
/// The step count the headline metrics (`psnr`, `psnr_std`, `clf_acc`, `norm_xT`) use.
pub const MAIN_K: usize = 10;
const PSNR_K: [&str; 3] = ["psnr_k5", "psnr_k10", "psnr_k20"];
const STD_K: [&str; 3] = ["psnr_std_k5", "psnr_std_k10", "psnr_std_k20"];
const ACC_K: [&str; 3] = ["clf_acc_k5", "clf_acc_k10", "clf_acc_k20"];
const NORM_K: [&str; 3] = ["norm_xT_k5", "norm_xT_k10", "norm_xT_k20"];
const SCORE_K: [&str; 3] = ["score_R_k5", "score_R_k10", "score_R_k20"];
const TRANSFER_K: [&str; 3] = ["rank_transfer_k5", "rank_transfer_k10", "rank_transfer_k20"];

/// The names of a per-K metric family at `k`.
pub fn psnr_key(k: usize) -> &'static str {
    PSNR_K[slot(k)]
}
pub fn std_key(k: usize) -> &'static str {
    STD_K[slot(k)]
}
pub fn transfer_key(k: usize) -> &'static str {
    TRANSFER_K[slot(k)]
}
pub fn norm_key(k: usize) -> &'static str {
    NORM_K[slot(k)]
}

fn slot(k: usize) -> usize {
    KS.iter().position(|&x| x == k).expect("a step count of KS")
}

/// The step counts of a run (`ks` parameter).
pub fn ks_of(p: &Params) -> Vec<usize> {
    p.text("ks")
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

/// How a run chooses its starting noise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Start {
    /// The candidate with the best mean PSNR on R.
    Obc,
    /// The candidate with the smallest mean classifier-feature distance on R.
    ObcFeat,
    /// The candidate with the worst mean PSNR on R.
    Worst,
    /// x_T = 0.
    Zero,
    /// Fresh N(0, I) draws per test image.
    Random,
    /// The mean of the random draws' outputs (a reference, not a sampler).
    Mmse,
}

fn start_of(p: &Params) -> Start {
    match p.text("start") {
        "obc-feat" => Start::ObcFeat,
        "worst" => Start::Worst,
        "zero" => Start::Zero,
        "random" => Start::Random,
        "mmse" => Start::Mmse,
        _ => Start::Obc,
    }
}

impl Start {
    fn searched(self) -> bool {
        matches!(self, Start::Obc | Start::ObcFeat | Start::Worst)
    }
    fn short(self) -> &'static str {
        match self {
            Start::Obc => "obc",
            Start::ObcFeat => "feat",
            Start::Worst => "worst",
            Start::Zero => "zero",
            Start::Random => "rand",
            Start::Mmse => "mmse",
        }
    }
}

impl Experiment for ObcSr {
    fn kind(&self) -> &'static str {
        "obc-sr"
    }

    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::choice("start", &["obc", "obc-feat", "worst", "zero", "random", "mmse"], "obc", "starting noise x_T: searched on R by PSNR (obc) or by classifier-feature distance (obc-feat), the worst candidate, zero, random draws, or the mean of the random outputs (mmse)"),
            ParamSpec::int("candidates", 256, 1, 100_000, "M: random candidates x_T scored on the reference set (1 switches the search off)"),
            ParamSpec::int("reference", 64, 1, 1400, "|R|: reference (HR, LR) pairs from the training split"),
            ParamSpec::int("test", 200, 1, 397, "held-out test images"),
            ParamSpec::int("transfer_images", 64, 2, 397, "test images on which every candidate is scored again (rank transfer, obc arm)"),
            ParamSpec::int("draws", 16, 2, 1000, "random x_T draws per test image (random, mmse)"),
            ParamSpec::choice("ks", &["5,10,20", "5,10", "10"], "5,10,20", "DDIM (eta 0) step counts; the search is run per K"),
            ParamSpec::int("ddpm_steps", 100, 0, 1000, "random arm: steps of the DDPM ancestral reference sampler (0: off)"),
            ParamSpec::int("steps", 5000, 1, 1_000_000, "training steps of the conditional prior"),
            ParamSpec::int("batch", 128, 1, 100_000, "prior training batch"),
            ParamSpec::float("lr", 1e-3, 1e-7, 1.0, "Adam peak learning rate of the prior (cosine decay)"),
        ]
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        let mut m = vec![
            MetricSpec::new("psnr", "test PSNR at K = 10 (this arm's start)")
                .unit("dB")
                .reference("psnr_nearest"),
            MetricSpec::new(
                "psnr_std",
                "PSNR std over x_T draws, mean over images (K = 10)",
            )
            .unit("dB"),
            MetricSpec::new(
                "best_score_R",
                "best candidate PSNR on R so far (per K in turn)",
            )
            .unit("dB"),
            MetricSpec::new("psnr_nearest", "PSNR of nearest upsampling").unit("dB"),
            MetricSpec::new("psnr_ddpm", "PSNR of DDPM ancestral sampling (random arm)").unit("dB"),
            MetricSpec::new("clf_acc", "classifier accuracy on the outputs (K = 10)")
                .unit("fraction"),
            MetricSpec::new("norm_xT", "|x_T| / sqrt(64) of the start (K = 10)"),
            MetricSpec::new("loss_eps", "prior training loss").log(),
        ];
        for i in 0..KS.len() {
            m.push(MetricSpec::new(PSNR_K[i], "test PSNR at this K").unit("dB"));
            m.push(MetricSpec::new(STD_K[i], "PSNR std over draws at this K").unit("dB"));
            m.push(MetricSpec::new(ACC_K[i], "classifier accuracy at this K").unit("fraction"));
            m.push(MetricSpec::new(NORM_K[i], "|x_T| / sqrt(64) at this K"));
            m.push(MetricSpec::new(SCORE_K[i], "chosen candidate's PSNR on R").unit("dB"));
            m.push(
                MetricSpec::new(TRANSFER_K[i], "Spearman of candidate scores, R vs test")
                    .unit("rho"),
            );
        }
        m
    }

    fn table_metrics(&self) -> Vec<&'static str> {
        vec![
            "psnr_k5",
            "psnr_k10",
            "psnr_k20",
            "psnr_std",
            "psnr_nearest",
            "clf_acc",
            "norm_xT",
            "rank_transfer_k10",
        ]
    }

    fn total_steps(&self, p: &Params) -> u64 {
        (p.usize("steps") + ks_of(p).len() * p.usize("candidates")) as u64
    }

    fn builtin_presets(&self) -> &'static [(&'static str, &'static str)] {
        &[(
            "presets/obc-sr.toml",
            include_str!("../../../presets/obc-sr.toml"),
        )]
    }

    fn verdict_bar(&self) -> Option<(&'static str, Option<&'static str>)> {
        Some(("psnr", None))
    }

    fn quick_profile(&self) -> Profile {
        Profile {
            preset: "obc-sr",
            arms: &["obc", "random", "zero", "mmse"],
            seeds: &[0],
            overrides: QUICK,
        }
    }

    fn device_cases(&self) -> Vec<DeviceCase> {
        let small = Profile {
            preset: "obc-sr",
            arms: &[],
            seeds: &[0],
            overrides: &[
                ("steps", "200"),
                ("candidates", "32"),
                ("reference", "16"),
                ("test", "32"),
                ("transfer_images", "16"),
                ("draws", "4"),
                ("ks", "10"),
                ("ddpm_steps", "20"),
            ],
        };
        let large = Profile {
            overrides: &[
                ("steps", "200"),
                ("batch", "1024"),
                ("candidates", "1024"),
                ("reference", "64"),
                ("ks", "10"),
            ],
            ..small
        };
        vec![
            DeviceCase {
                size: "preset",
                arm: "obc",
                profile: small,
            },
            DeviceCase {
                size: "preset",
                arm: "random",
                profile: small,
            },
            DeviceCase {
                size: "large",
                arm: "obc",
                profile: large,
            },
        ]
    }

    fn bench(&self, quick: bool, out: &mut String) {
        bench(quick, out)
    }

    fn validate(&self, p: &Params) -> Result<(), String> {
        if p.usize("transfer_images") > p.usize("test") {
            return Err("transfer_images must be at most test".into());
        }
        Ok(())
    }

    fn memory(&self, p: &Params) -> crate::engine::memory::Estimate {
        let rows = (p.usize("candidates") * p.usize("reference"))
            .max(p.usize("test") * p.usize("draws")) as f64;
        crate::engine::memory::Estimate::of(&[
            (
                4.0 * 64.0 * rows * 3.0,
                format!("{rows} solver rows (outputs kept per K)"),
            ),
            (
                4.0 * 4096.0 * (160.0 + 3.0 * 256.0) * 4.0,
                "one solver batch of 4096 rows through the MLP".to_string(),
            ),
            (
                4.0 * 160_000.0 * 6.0,
                "prior weights, gradients, Adam moments".to_string(),
            ),
        ])
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<RunEnd, RunStop> {
        let device = ctx.device.to_string();
        crate::on_device!(ctx, |dev| run_on(ctx, &dev, &device))
    }

    fn verdict(&self, claim: &str, preset_id: &str, runs: &[FinishedRun]) -> Verdict {
        verdict::compute(claim, preset_id, runs)
    }
}

/// The quick profile's overrides (tests and `verify --quick`).
pub const QUICK: &[(&str, &str)] = &[
    ("steps", "1500"),
    ("candidates", "64"),
    ("reference", "32"),
    ("test", "64"),
    ("transfer_images", "32"),
    ("draws", "8"),
    ("ks", "5,10"),
    ("ddpm_steps", "0"),
];

/// The final value of every metric recorded, kept beside the records.
struct Recorder<'c, 'a> {
    ctx: &'c mut RunContext<'a>,
    finals: BTreeMap<String, f64>,
}

impl Recorder<'_, '_> {
    fn record(&mut self, step: u64, values: &[(&'static str, f64)]) {
        self.ctx.record(step, values);
        for (k, v) in values {
            self.finals.insert(k.to_string(), *v);
        }
    }
}

/// The result of the candidate search of one seed: per K, every candidate's scores on R.
struct SearchResult {
    candidates: Vec<f32>,
    /// Per K (in the run's order): mean PSNR on R per candidate.
    psnr: Vec<Vec<f64>>,
    /// Per K: mean classifier-feature distance on R per candidate.
    feat: Vec<Vec<f64>>,
    /// (step, best PSNR on R so far).
    curve: Vec<(u64, f64)>,
    lines: Vec<String>,
}

/// Per K: the outputs of every (test image, draw) row, image-major.
struct RandomDraws {
    x_top: Vec<f32>,
    outputs: Vec<Vec<f32>>,
}

fn prior_of(
    ctx: &mut RunContext<'_>,
    dev: &impl Device<f32>,
    device: &str,
    digits: &SignedDigits,
    rec_finals: &mut BTreeMap<String, f64>,
) -> Result<Arc<TrainedEpsNet>, RunStop> {
    let p = ctx.params.clone();
    let cfg = EpsNetConfig {
        cond_dim: HR,
        ..EpsNetConfig::digits()
    };
    let train = TrainConfig {
        steps: p.usize("steps"),
        batch: p.usize("batch"),
        lr: p.f64("lr"),
        seed: ctx.seed ^ 0x0BC5,
    };
    let key = format!(
        "obc-sr/prior/{device}/{}/{}/{}/{}",
        ctx.seed, train.steps, train.batch, train.lr
    );
    let cond = conditions(&digits.x_train);
    let mut computed = false;
    let trained = memo::shared(&key, || {
        computed = true;
        train_eps_net::<f32, _>(
            dev,
            &NoiseSchedule::ddpm(),
            cfg,
            train,
            &digits.x_train,
            &cond,
            &mut |step, loss| {
                ctx.record(step as u64, &[("loss_eps", loss)]);
                !ctx.stop_requested()
            },
        )
    })?;
    if !computed {
        let every = (train.steps / 20).max(1);
        for (i, l) in trained.loss_curve.iter().enumerate() {
            let step = ((i + 1) * every).min(train.steps);
            ctx.record(step as u64, &[("loss_eps", *l)]);
        }
    }
    rec_finals.insert("loss_eps".into(), trained.final_loss());
    Ok(trained)
}

/// The data of one seed: reference set R (training split) and test images, with conditions.
struct Split {
    r_hr: Vec<f32>,
    r_cond: Vec<f32>,
    t_hr: Vec<f32>,
    t_cond: Vec<f32>,
    t_labels: Vec<usize>,
}

/// A picture of 8 images of a set: for each, HR, LR (nearest-upsampled) and the given rows.
fn strip(hr: &[f32], cond: &[f32], extra: &[(&str, &[f32])], n: usize) -> Picture {
    let mut rows = Vec::new();
    let mut caps = Vec::new();
    for i in 0..n {
        let pick = |v: &[f32]| v[i * HR..(i + 1) * HR].to_vec();
        rows.extend(pick(hr));
        caps.push("HR".to_string());
        rows.extend(pick(cond));
        caps.push("LR".to_string());
        for (name, v) in extra {
            rows.extend(pick(v));
            caps.push(name.to_string());
        }
    }
    Picture::images(8, 8, &rows, -1.0, 1.0, caps)
}

fn run_on<D: Device<f32>>(
    ctx: &mut RunContext<'_>,
    dev: &D,
    device: &str,
) -> Result<RunEnd, RunStop> {
    let started = std::time::Instant::now();
    let p = ctx.params.clone();
    let seed = ctx.seed;
    let start = start_of(&p);
    let ks = ks_of(&p);
    let steps = p.usize("steps");
    let m = p.usize("candidates");
    let digits = SignedDigits::load(seed);
    let (nr, nt) = (p.usize("reference"), p.usize("test"));
    let split = Split {
        r_hr: digits.x_train[..nr * HR].to_vec(),
        r_cond: conditions(&digits.x_train[..nr * HR]),
        t_hr: digits.x_test[..nt * HR].to_vec(),
        t_cond: conditions(&digits.x_test[..nt * HR]),
        t_labels: digits.y_test[..nt].to_vec(),
    };
    let mut finals = BTreeMap::new();
    let trained = prior_of(ctx, dev, device, &digits, &mut finals)?;
    let fc = feature_classifier::<f32, D>(dev, device, &digits, seed)?;
    let feats = fc.load::<f32, D>(dev);
    let (store, net) = trained.load::<f32, D>(dev);
    let prior = Prior {
        store,
        net,
        schedule: NoiseSchedule::ddpm(),
    };
    let mut rec = Recorder { ctx, finals };
    let nearest = split
        .t_cond
        .chunks(HR)
        .zip(split.t_hr.chunks(HR))
        .map(|(o, x)| psnr_signed(o, x))
        .sum::<f64>()
        / nt as f64;
    rec.record(steps as u64, &[("psnr_nearest", nearest)]);
    rec.ctx.log(format!(
        "prior: final L_simple {:.4}; feature classifier held-out accuracy {:.3}; nearest \
         upsampling PSNR {nearest:.2} dB on {nt} test images",
        trained.final_loss(),
        fc.test_accuracy
    ));

    let searched = if start.searched() {
        Some(search_of(&mut rec, &prior, &feats, &split, &ks, device)?)
    } else {
        None
    };
    let random = if matches!(start, Start::Random | Start::Mmse) {
        Some(random_of(&mut rec, &prior, &split, &ks, device)?)
    } else {
        None
    };

    let mut data = vec![
        NamedTensor::from_f32("reference_hr", &[nr, HR], &split.r_hr),
        NamedTensor::from_f32("reference_cond", &[nr, HR], &split.r_cond),
        NamedTensor::from_f32("test_hr", &[nt, HR], &split.t_hr),
        NamedTensor::from_f32("test_cond", &[nt, HR], &split.t_cond),
        NamedTensor::new(
            "test_labels",
            &[nt],
            split.t_labels.iter().map(|&y| y as f64).collect(),
        ),
    ];
    if let Some(s) = &searched {
        data.push(NamedTensor::from_f32("candidates", &[m, HR], &s.candidates));
    }
    if let Some(r) = &random {
        let draws = p.usize("draws");
        data.push(NamedTensor::from_f32(
            "random_x_T",
            &[nt, draws, HR],
            &r.x_top,
        ));
    }
    let mut main_out = Vec::new();
    for (ki, &k) in ks.iter().enumerate() {
        if rec.ctx.stop_requested() {
            return Err(RunStop::Stopped {
                step: (steps + ki * m) as u64,
            });
        }
        let ts = prior.schedule.respaced(k);
        let step = (steps + (ki + 1) * m) as u64;
        let mut values: Vec<(&'static str, f64)> = Vec::new();
        let (outputs, per_image): (Vec<f32>, Vec<f64>) = match start {
            Start::Random => {
                let draws = p.usize("draws");
                let out = &random.as_ref().expect("draws").outputs[ki];
                let mut means = Vec::new();
                let mut stds = Vec::new();
                for (i, block) in out.chunks(draws * HR).enumerate() {
                    let hr = &split.t_hr[i * HR..(i + 1) * HR];
                    let ps: Vec<f64> = block.chunks(HR).map(|o| psnr_signed(o, hr)).collect();
                    let (mean, _) = crate::verdict::mean_se(&ps);
                    let var =
                        ps.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (draws as f64 - 1.0);
                    means.push(mean);
                    stds.push(var.sqrt());
                }
                values.push((STD_K[slot(k)], stds.iter().sum::<f64>() / nt as f64));
                let labels: Vec<usize> = split
                    .t_labels
                    .iter()
                    .flat_map(|&y| std::iter::repeat_n(y, draws))
                    .collect();
                values.push((ACC_K[slot(k)], feats.accuracy(out, &labels)));
                data.push(NamedTensor::from_f32(
                    &format!("outputs_k{k}"),
                    &[nt, draws, HR],
                    out,
                ));
                // The first draw of each image, for the picture.
                let first: Vec<f32> = out
                    .chunks(draws * HR)
                    .flat_map(|b| b[..HR].to_vec())
                    .collect();
                (first, means)
            }
            Start::Mmse => {
                let draws = p.usize("draws");
                let out = &random.as_ref().expect("draws").outputs[ki];
                let mean: Vec<f32> = out
                    .chunks(draws * HR)
                    .flat_map(|b| {
                        (0..HR)
                            .map(|j| {
                                b.chunks(HR).map(|o| o[j].clamp(-1.0, 1.0)).sum::<f32>()
                                    / draws as f32
                            })
                            .collect::<Vec<_>>()
                    })
                    .collect();
                let ps = mean
                    .chunks(HR)
                    .zip(split.t_hr.chunks(HR))
                    .map(|(o, x)| psnr_signed(o, x))
                    .collect();
                values.push((STD_K[slot(k)], 0.0));
                values.push((ACC_K[slot(k)], feats.accuracy(&mean, &split.t_labels)));
                (mean, ps)
            }
            _ => {
                let x_top: Vec<f32> = match (start, &searched) {
                    (Start::Zero, _) => vec![0.0; HR],
                    (_, Some(s)) => {
                        let scores_p = &s.psnr[ki];
                        let i = match start {
                            Start::Obc => argbest(scores_p, true),
                            Start::Worst => argbest(scores_p, false),
                            _ => argbest(&s.feat[ki], false),
                        };
                        values.push((SCORE_K[slot(k)], scores_p[i]));
                        s.candidates[i * HR..(i + 1) * HR].to_vec()
                    }
                    _ => unreachable!("searched arms have a search"),
                };
                let norm = x_top
                    .iter()
                    .map(|v| (*v as f64).powi(2))
                    .sum::<f64>()
                    .sqrt()
                    / (HR as f64).sqrt();
                values.push((NORM_K[slot(k)], norm));
                if k == MAIN_K {
                    values.push(("norm_xT", norm));
                }
                data.push(NamedTensor::from_f32(&format!("x_T_k{k}"), &[HR], &x_top));
                let tops: Vec<f32> = (0..nt).flat_map(|_| x_top.iter().copied()).collect();
                let out = prior.solve(&ts, &tops, &split.t_cond, 0.0, 0);
                let ps = out
                    .chunks(HR)
                    .zip(split.t_hr.chunks(HR))
                    .map(|(o, x)| psnr_signed(o, x))
                    .collect();
                // One boundary condition for every image: no draw-to-draw spread.
                values.push((STD_K[slot(k)], 0.0));
                values.push((ACC_K[slot(k)], feats.accuracy(&out, &split.t_labels)));
                if start == Start::Obc {
                    let s = searched.as_ref().expect("search");
                    let n = p.usize("transfer_images");
                    let (hr, cond) = (&split.t_hr[..n * HR], &split.t_cond[..n * HR]);
                    let test_scores = psnr_scores(&prior.solve_grid(&ts, &s.candidates, cond), hr);
                    let rho = search::spearman(&s.psnr[ki], &test_scores);
                    values.push((TRANSFER_K[slot(k)], rho));
                    rec.ctx.log(format!(
                        "K={k}: Spearman of the {m} candidates' PSNR on R vs on {n} test images: {rho:.3}"
                    ));
                    data.push(NamedTensor::new(
                        &format!("candidate_psnr_transfer_k{k}"),
                        &[m],
                        test_scores,
                    ));
                }
                (out, ps)
            }
        };
        let mean = per_image.iter().sum::<f64>() / nt as f64;
        values.push((PSNR_K[slot(k)], mean));
        if let Some(s) = &searched {
            data.push(NamedTensor::new(
                &format!("candidate_psnr_R_k{k}"),
                &[m],
                s.psnr[ki].clone(),
            ));
            data.push(NamedTensor::new(
                &format!("candidate_feat_R_k{k}"),
                &[m],
                s.feat[ki].clone(),
            ));
        }
        if start != Start::Random {
            data.push(NamedTensor::from_f32(
                &format!("outputs_k{k}"),
                &[nt, HR],
                &outputs,
            ));
        }
        data.push(NamedTensor::new(
            &format!("psnr_per_image_k{k}"),
            &[nt],
            per_image,
        ));
        if k == MAIN_K {
            let main: Vec<(&'static str, f64)> = values
                .iter()
                .filter_map(|(name, v)| {
                    let alias = match *name {
                        n if n == PSNR_K[slot(k)] => "psnr",
                        n if n == STD_K[slot(k)] => "psnr_std",
                        n if n == ACC_K[slot(k)] => "clf_acc",
                        _ => return None,
                    };
                    Some((alias, *v))
                })
                .collect();
            values.extend(main);
            main_out = outputs.clone();
        }
        rec.record(step, &values);
    }
    if start == Start::Random && p.usize("ddpm_steps") > 0 {
        let ts = prior.schedule.respaced(p.usize("ddpm_steps"));
        let tops = gaussian_rows(nt, HR, &mut StdRng::seed_from_u64(seed ^ 0x0BC5_0D0D));
        let out = prior.solve(&ts, &tops, &split.t_cond, 1.0, seed ^ 0x0BC5_0E0E);
        let ps = psnr_scores(&out, &split.t_hr);
        // psnr_scores of one block of nt images: the mean over them.
        rec.record((steps + ks.len() * m) as u64, &[("psnr_ddpm", ps[0])]);
    }
    // The picture: 8 test images, each with HR, LR, this arm's output (K = 10), x_T = 0 and
    // three random x_T.
    let n = 8.min(nt);
    let ts = prior.schedule.respaced(MAIN_K);
    let zero = prior.solve(&ts, &vec![0.0; n * HR], &split.t_cond[..n * HR], 0.0, 0);
    let mut extra: Vec<(&str, Vec<f32>)> = vec![(start.short(), main_out), ("zero", zero)];
    let mut rng = StdRng::seed_from_u64(seed ^ 0x0BC5_0F0F);
    for _ in 0..3 {
        let tops = gaussian_rows(n, HR, &mut rng);
        extra.push((
            "rand",
            prior.solve(&ts, &tops, &split.t_cond[..n * HR], 0.0, 0),
        ));
    }
    let borrowed: Vec<(&str, &[f32])> = extra.iter().map(|(a, v)| (*a, v.as_slice())).collect();
    rec.ctx
        .picture("samples", strip(&split.t_hr, &split.t_cond, &borrowed, n));
    let total = (steps + ks.len() * m) as u64;
    let mut finals = rec.finals;
    finals.insert("wall_s".into(), started.elapsed().as_secs_f64());
    if let Some(dir) = ctx.dir.clone() {
        let text = model_text(&p, start);
        artifacts::write_run(&dir, &artifacts::store_tensors(&prior.store), &data, &text)
            .map_err(|e| RunStop::Failed(format!("writing artifacts: {e}")))?;
    }
    Ok(RunEnd {
        steps: total,
        final_values: finals,
    })
}

/// The index of the largest (`max`) or smallest value.
fn argbest(v: &[f64], max: bool) -> usize {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if (max && *x > v[best]) || (!max && *x < v[best]) {
            best = i;
        }
    }
    best
}

/// The candidate search of the run's seed (shared by the searched arms): every candidate's
/// outputs on R for each K, scored by mean PSNR and by mean feature distance.
fn search_of<D: Device<f32>>(
    rec: &mut Recorder<'_, '_>,
    prior: &Prior<D>,
    feats: &Features<f32, D>,
    split: &Split,
    ks: &[usize],
    device: &str,
) -> Result<Arc<SearchResult>, RunStop> {
    let p = rec.ctx.params.clone();
    let (m, nr, steps) = (
        p.usize("candidates"),
        p.usize("reference"),
        p.usize("steps"),
    );
    let key = format!(
        "obc-sr/search/{device}/{}/{steps}/{}/{}/{m}/{nr}/{}",
        rec.ctx.seed,
        p.usize("batch"),
        p.f64("lr"),
        p.text("ks")
    );
    let seed = rec.ctx.seed;
    let mut computed = false;
    let result = memo::shared(&key, || {
        computed = true;
        let candidates = gaussian_rows(m, HR, &mut StdRng::seed_from_u64(seed ^ 0x0BC5_0002));
        let hr_feats = feats.features(&split.r_hr);
        let chunk = (search::BATCH_ROWS / nr).max(1);
        let mut res = SearchResult {
            candidates,
            psnr: Vec::new(),
            feat: Vec::new(),
            curve: Vec::new(),
            lines: Vec::new(),
        };
        for (ki, &k) in ks.iter().enumerate() {
            let ts = prior.schedule.respaced(k);
            let (mut ps, mut fs) = (Vec::with_capacity(m), Vec::with_capacity(m));
            let mut best = f64::NEG_INFINITY;
            for (ci, cands) in res.candidates.chunks(chunk * HR).enumerate() {
                if rec.ctx.stop_requested() {
                    return Err(RunStop::Stopped {
                        step: (steps + ki * m + ci * chunk) as u64,
                    });
                }
                let out = prior.solve_grid(&ts, cands, &split.r_cond);
                let clipped: Vec<f32> = out.iter().map(|v| v.clamp(-1.0, 1.0)).collect();
                let block_p = psnr_scores(&out, &split.r_hr);
                fs.extend(feature_scores(
                    &feats.features(&clipped),
                    &hr_feats,
                    hr_feats.len() / nr,
                ));
                let (bi, bv) =
                    block_p
                        .iter()
                        .enumerate()
                        .fold(
                            (0, f64::NEG_INFINITY),
                            |a, (i, &v)| if v > a.1 { (i, v) } else { a },
                        );
                ps.extend(block_p);
                let step = (steps + ki * m + ps.len()) as u64;
                if bv > best {
                    best = bv;
                    let n = 8.min(nr);
                    let rows = &out[bi * nr * HR..(bi * nr + n) * HR];
                    rec.ctx.picture(
                        "search",
                        strip(&split.r_hr, &split.r_cond, &[("best", rows)], n),
                    );
                }
                rec.ctx.record(step, &[("best_score_R", best)]);
                res.curve.push((step, best));
            }
            let (lo, hi) = ps
                .iter()
                .fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
            let line = format!(
                "K={k}: {m} candidates' mean PSNR on R: {lo:.2}..{hi:.2} dB  [{}]",
                sparkline(&ps, 16)
            );
            rec.ctx.log(line.clone());
            res.lines.push(line);
            res.psnr.push(ps);
            res.feat.push(fs);
        }
        Ok(res)
    })?;
    if !computed {
        for (step, v) in &result.curve {
            rec.ctx.record(*step, &[("best_score_R", *v)]);
        }
        for l in &result.lines {
            rec.ctx.log(l.clone());
        }
    }
    if let Some((_, v)) = result.curve.last() {
        rec.finals.insert("best_score_R".into(), *v);
    }
    Ok(result)
}

/// The random draws of the run's seed (shared by the random and mmse arms): `draws` x_T per test
/// image, solved at every K.
fn random_of<D: Device<f32>>(
    rec: &mut Recorder<'_, '_>,
    prior: &Prior<D>,
    split: &Split,
    ks: &[usize],
    device: &str,
) -> Result<Arc<RandomDraws>, RunStop> {
    let p = rec.ctx.params.clone();
    let (nt, draws, steps) = (p.usize("test"), p.usize("draws"), p.usize("steps"));
    let key = format!(
        "obc-sr/random/{device}/{}/{steps}/{}/{}/{nt}/{draws}/{}",
        rec.ctx.seed,
        p.usize("batch"),
        p.f64("lr"),
        p.text("ks")
    );
    let seed = rec.ctx.seed;
    memo::shared(&key, || {
        let x_top = gaussian_rows(
            nt * draws,
            HR,
            &mut StdRng::seed_from_u64(seed ^ 0x0BC5_0001),
        );
        let cond: Vec<f32> = split
            .t_cond
            .chunks(HR)
            .flat_map(|c| (0..draws).flat_map(move |_| c.iter().copied()))
            .collect();
        let mut outputs = Vec::new();
        for &k in ks {
            if rec.ctx.stop_requested() {
                return Err(RunStop::Stopped { step: steps as u64 });
            }
            outputs.push(prior.solve(&prior.schedule.respaced(k), &x_top, &cond, 0.0, 0));
        }
        Ok(RandomDraws { x_top, outputs })
    })
}

fn model_text(p: &Params, start: Start) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "conditional noise predictor eps_theta(x_t, t, c) for 2x super-resolution of the 8x8 \
         digits on [-1, 1] (arm start = {:?})\n\
         input [x_t (64), c (64), emb(t) (32)] -> 3 x 256 SiLU -> 64; layers eps.{{i}}.weight \
         (in x out) and eps.{{i}}.bias, h = silu(h @ W + b) but the last layer linear\n\
         emb(t) = [sin(t w_k), cos(t w_k)], w_k = 10000^(-k/16), k = 0..15\n\
         condition c = nearest upsampling of the 2x2 average pooling of the HR image \
         (reference_cond, test_cond)\n\
         schedule: DDPM, T = 1000, beta linear 1e-4..0.02, abar_t = prod (1 - beta)\n\
         sampler: DDIM eta 0 over K timesteps round(i (T - 1) / (K - 1)), i = 0..K-1: \
         x0_hat = (x_t - sqrt(1 - abar_t) e) / sqrt(abar_t), x_s = sqrt(abar_s) x0_hat + \
         sqrt(1 - abar_s) e, the last step to abar = 1\n\
         x_T: x_T_k{{K}} (searched / zero arms: one for all test images), random_x_T \
         (random and mmse arms: test x draws x 64); candidates (M x 64) with their mean PSNR \
         and feature distance on the reference set (candidate_psnr_R_k{{K}}, \
         candidate_feat_R_k{{K}}) and, for obc, on the first transfer_images test images \
         (candidate_psnr_transfer_k{{K}})\n\
         metrics: PSNR = 10 log10(4 / mean((clip(out, -1, 1) - hr)^2)) per image, averaged \
         over the test images (psnr_per_image_k{{K}}); random: mean over draws and images, \
         psnr_std = sample std over draws, averaged over images; mmse: the mean of the clipped \
         random outputs; steps K = {}",
        start,
        p.text("ks")
    );
    s
}

/// obc-sr's speed figures: prior training steps per second and solver rows per second.
pub fn bench(quick: bool, out: &mut String) {
    let dev = Cpu::default();
    let _ = writeln!(out, "\nobc-sr (conditional digits prior, CPU):");
    let profile = Profile {
        preset: "obc-sr",
        arms: &[],
        seeds: &[],
        overrides: &[
            ("candidates", "1"),
            ("reference", "1"),
            ("test", "2"),
            ("transfer_images", "2"),
            ("ks", "10"),
        ],
    };
    let steps = if quick { 20 } else { 100 };
    // The feature classifier is trained once per process: train it before timing.
    if feature_classifier::<f32, Cpu>(&dev, "cpu", &SignedDigits::load(0), 0).is_err() {
        return;
    }
    // Every arm trains the same prior (shared within a launch): time one.
    profile.speed_lines(("steps", "steps"), steps, &[], |a| a.name != "zero", out);
    let trained = train_eps_net::<f32, Cpu>(
        &dev,
        &NoiseSchedule::ddpm(),
        EpsNetConfig {
            cond_dim: HR,
            ..EpsNetConfig::digits()
        },
        TrainConfig {
            steps: 1,
            batch: 8,
            lr: 1e-3,
            seed: 0,
        },
        &vec![0.0; 8 * HR],
        &vec![0.0; 8 * HR],
        &mut |_, _| true,
    );
    let Ok(trained) = trained else { return };
    let (store, net) = trained.load::<f32, Cpu>(&dev);
    let prior = Prior {
        store,
        net,
        schedule: NoiseSchedule::ddpm(),
    };
    let rows = if quick { 1024 } else { 4096 };
    let x = vec![0.1f32; rows * HR];
    let ts = prior.schedule.respaced(10);
    let t = std::time::Instant::now();
    let _ = prior.solve(&ts, &x, &x, 0.0, 0);
    let secs = t.elapsed().as_secs_f64();
    let _ = writeln!(
        out,
        "  solver: {:.0} network rows/s ({rows} rows x K 10 in {secs:.2} s; the default search \
         is 256 x 64 x (5 + 10 + 20) rows per seed)",
        (rows * 10) as f64 / secs
    );
}

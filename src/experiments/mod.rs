//! Experiments: one module per paper, each behind the [`Experiment`] trait. An experiment trains
//! one arm of a preset through a [`RunContext`] (which streams its metrics) and, once every run of
//! a launch has ended, computes the preset's verdict from what the runs measured.

pub mod classifier;
pub mod compander;
pub mod diffusion;
pub mod driver;
pub mod elr;
pub mod fbm;
pub mod ftwt;
pub mod interpolants;
pub mod lr_batch;
pub mod maid;
pub mod memo;
pub mod msbreg;
pub mod nngp;
pub mod node;
pub mod obc;
pub mod oomd;
pub mod profile;
pub mod pskd;
pub mod quantnas;
pub mod random_teachers;
pub mod reddiff;
pub mod rrcm;
pub mod sae;
pub mod sara;
pub mod shuffle;
pub mod smooth;
pub mod ssl;
pub mod sso;
pub mod stability;
pub mod trp;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

use crate::metrics::MetricSpec;
use crate::params::{ParamSpec, Params};
use crate::verdict::Verdict;

/// One paper's experiment.
pub trait Experiment: Send + Sync {
    /// The `experiment = "..."` name preset files use.
    fn kind(&self) -> &'static str;
    /// Every parameter it understands, with defaults.
    fn params(&self) -> Vec<ParamSpec>;
    /// Every metric it emits, with display hints.
    fn metrics(&self) -> Vec<MetricSpec>;
    /// The metrics shown in the end-of-run table, in order.
    fn table_metrics(&self) -> Vec<&'static str>;
    /// Training steps one run will take (for progress and ETA): its `steps` parameter unless
    /// the experiment says otherwise.
    fn total_steps(&self, params: &Params) -> u64 {
        match params.get("steps") {
            Some(crate::params::ParamValue::Int(n)) => (*n).max(0) as u64,
            _ => 0,
        }
    }
    /// Its built-in preset files, (path, contents), usually one:
    /// `&[("presets/<id>.toml", include_str!("../../../presets/<id>.toml"))]`.
    fn builtin_presets(&self) -> &'static [(&'static str, &'static str)];
    /// A small seeded configuration that still exercises the claim's direction (tests and
    /// `verify --quick`).
    fn quick_profile(&self) -> profile::Profile;
    /// The arms `reglab device-check` trains on the CPU and on CUDA.
    fn device_cases(&self) -> Vec<profile::DeviceCase>;
    /// The per-arm bars the verdict panel draws: a metric, divided by a reference metric when
    /// given (e.g. the trace over 2/eta), mean over seeds of the final values.
    fn verdict_bar(&self) -> Option<(&'static str, Option<&'static str>)> {
        None
    }
    /// The plane the verdict panel draws every arm's point in (mean over seeds of two final
    /// values), e.g. PSNR against BitOps for a cost-quality frontier.
    fn verdict_plane(&self) -> Option<VerdictPlane> {
        None
    }
    /// Appends this experiment's speed figures to `reglab bench`'s report.
    fn bench(&self, _quick: bool, _out: &mut String) {}
    /// Checks a run's parameters together (each one alone was checked against its range); the
    /// error names the parameters.
    fn validate(&self, _params: &Params) -> Result<(), String> {
        Ok(())
    }
    /// The peak memory one run with these parameters needs, about (checked before a launch).
    fn memory(&self, params: &Params) -> crate::engine::memory::Estimate;
    /// Trains one arm. Returns its final values, or how it stopped early.
    fn run(&self, ctx: &mut RunContext<'_>) -> Result<RunEnd, RunStop>;
    /// The verdict over the runs of one launch.
    fn verdict(&self, claim: &str, preset_id: &str, runs: &[FinishedRun]) -> Verdict;
}

static STABILITY: stability::SgdStability = stability::SgdStability;
static VSAE: sae::VariationalSae = sae::VariationalSae;
static NODE: node::LocalRegNode = node::LocalRegNode;
static ELR: elr::ElrNoisyLabels = elr::ElrNoisyLabels;
static PSKD: pskd::PsKd = pskd::PsKd;
static COMPANDER: compander::WeightCompander = compander::WeightCompander;
static TRP: trp::TrainedRankPruning = trp::TrainedRankPruning;
static FTWT: ftwt::FtwtDynamicPruning = ftwt::FtwtDynamicPruning;
static SARA: sara::Sara = sara::Sara;
static OOMD: oomd::OomdSea = oomd::OomdSea;
static SSO: sso::SsoSurrogate = sso::SsoSurrogate;
static MSBREG: msbreg::MsbReg = msbreg::MsbReg;
static LR_BATCH: lr_batch::LrBatchRmt = lr_batch::LrBatchRmt;
static MAID: maid::MaidBilevel = maid::MaidBilevel;
static FBM: fbm::FbmSdeVi = fbm::FbmSdeVi;
static OBC_SR: obc::ObcSr = obc::ObcSr;
static RANDOM_TEACHERS: random_teachers::RandomTeachers = random_teachers::RandomTeachers;
static SM_NNGP: nngp::SmNngp = nngp::SmNngp;
static RED_DIFF: reddiff::RedDiff = reddiff::RedDiff;
static INTERPOLANTS: interpolants::StochasticInterpolants = interpolants::StochasticInterpolants;
static SMOOTH: smooth::SmoothDiffusion = smooth::SmoothDiffusion;
static SHUFFLE: shuffle::LayerwiseShuffle = shuffle::LayerwiseShuffle;
static RRCM: rrcm::RrcmSmoothing = rrcm::RrcmSmoothing;
static QUANTNAS: quantnas::QuantNasSr = quantnas::QuantNasSr;

/// Two final values a verdict compares arms by, as a plane: `y` against `x` (log10 of `x` when
/// `log_x`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VerdictPlane {
    pub x: &'static str,
    pub y: &'static str,
    pub log_x: bool,
}

/// Every experiment compiled in.
pub fn all() -> Vec<&'static dyn Experiment> {
    vec![
        &STABILITY,
        &VSAE,
        &NODE,
        &ELR,
        &PSKD,
        &COMPANDER,
        &TRP,
        &FTWT,
        &SARA,
        &OOMD,
        &SSO,
        &RANDOM_TEACHERS,
        &MSBREG,
        &SM_NNGP,
        &LR_BATCH,
        &MAID,
        &FBM,
        &RED_DIFF,
        &OBC_SR,
        &INTERPOLANTS,
        &SMOOTH,
        &SHUFFLE,
        &RRCM,
        &QUANTNAS,
    ]
}

pub fn find(kind: &str) -> Option<&'static dyn Experiment> {
    all().into_iter().find(|e| e.kind() == kind)
}

pub fn kinds() -> Vec<&'static str> {
    all().iter().map(|e| e.kind()).collect()
}

/// Runs `$body` with `$dev` bound to the dfdx device the context asks for: the CPU, or (in
/// binaries built with the `cuda` feature) GPU 0. Without a GPU the run fails with one line.
#[macro_export]
macro_rules! on_device {
    ($ctx:expr, |$dev:ident| $body:expr) => {
        match $ctx.device {
            $crate::device::DeviceChoice::Cpu => {
                let $dev = dfdx::prelude::Cpu::default();
                $body
            }
            $crate::device::DeviceChoice::Cuda => {
                #[cfg(feature = "cuda")]
                {
                    let $dev = $crate::device::cuda::shared()
                        .map_err($crate::experiments::RunStop::Failed)?;
                    $body
                }
                #[cfg(not(feature = "cuda"))]
                {
                    Err($crate::experiments::RunStop::Failed(
                        $crate::device::BUILD_HINT.to_string(),
                    ))
                }
            }
        }
    };
}

/// Where a run's measurements go: the engine writes them to the run store and streams them.
pub trait MetricSink: Send {
    fn record(&mut self, step: u64, values: &[(&'static str, f64)]);
    fn log(&mut self, line: String);
    /// The latest picture named `name` (a digit grid, a scatter); replaces the previous one.
    fn picture(&mut self, _name: &'static str, _picture: crate::metrics::picture::Picture) {}
}

/// A sink that keeps everything in memory (tests, benchmarks).
#[derive(Default)]
pub struct MemorySink {
    pub points: Vec<(u64, Vec<(&'static str, f64)>)>,
    pub lines: Vec<String>,
    pub pictures: BTreeMap<&'static str, crate::metrics::picture::Picture>,
}

impl MetricSink for MemorySink {
    fn record(&mut self, step: u64, values: &[(&'static str, f64)]) {
        self.points.push((step, values.to_vec()));
    }
    fn log(&mut self, line: String) {
        self.lines.push(line);
    }
    fn picture(&mut self, name: &'static str, picture: crate::metrics::picture::Picture) {
        self.pictures.insert(name, picture);
    }
}

/// What an experiment sees while it trains one run.
pub struct RunContext<'a> {
    pub params: &'a Params,
    pub seed: u64,
    /// Where to train (the CPU unless asked otherwise).
    pub device: crate::device::DeviceChoice,
    /// The run's directory, for artifacts (final parameters, data). None in memory-only runs.
    pub dir: Option<PathBuf>,
    sink: &'a mut dyn MetricSink,
    stop: &'a AtomicBool,
}

impl<'a> RunContext<'a> {
    pub fn new(
        params: &'a Params,
        seed: u64,
        dir: Option<PathBuf>,
        sink: &'a mut dyn MetricSink,
        stop: &'a AtomicBool,
    ) -> RunContext<'a> {
        RunContext {
            params,
            seed,
            device: crate::device::DeviceChoice::Cpu,
            dir,
            sink,
            stop,
        }
    }

    /// Trains on `device` instead of the CPU.
    pub fn on_device(mut self, device: crate::device::DeviceChoice) -> RunContext<'a> {
        self.device = device;
        self
    }

    pub fn record(&mut self, step: u64, values: &[(&'static str, f64)]) {
        self.sink.record(step, values);
    }

    pub fn log(&mut self, line: impl Into<String>) {
        self.sink.log(line.into());
    }

    /// Shows `picture` as the run's latest `name` picture.
    pub fn picture(&mut self, name: &'static str, picture: crate::metrics::picture::Picture) {
        self.sink.picture(name, picture);
    }

    /// True once someone asked this run to stop; the experiment ends with [`RunStop::Stopped`].
    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// A run that reached its end.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunEnd {
    pub steps: u64,
    pub final_values: BTreeMap<String, f64>,
}

/// A run that ended early.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RunStop {
    /// A loss became NaN/Inf or blew up.
    Diverged { step: u64, reason: String },
    /// Someone asked it to stop.
    Stopped { step: u64 },
    /// Anything else (an I/O error writing artifacts, a device error).
    Failed(String),
}

/// How a run ended, as stored in `summary.json` and fed to verdicts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum RunStatus {
    Completed { steps: u64 },
    Diverged { step: u64, reason: String },
    Stopped { step: u64 },
    Failed { error: String },
}

impl RunStatus {
    pub fn from_result(r: &Result<RunEnd, RunStop>) -> RunStatus {
        match r {
            Ok(end) => RunStatus::Completed { steps: end.steps },
            Err(RunStop::Diverged { step, reason }) => RunStatus::Diverged {
                step: *step,
                reason: reason.clone(),
            },
            Err(RunStop::Stopped { step }) => RunStatus::Stopped { step: *step },
            Err(RunStop::Failed(e)) => RunStatus::Failed { error: e.clone() },
        }
    }

    /// One short phrase: "completed", "diverged at step 120", ...
    pub fn describe(&self) -> String {
        match self {
            RunStatus::Completed { steps } => format!("completed ({steps} steps)"),
            RunStatus::Diverged { step, .. } => format!("diverged at step {step}"),
            RunStatus::Stopped { step } => format!("stopped at step {step}"),
            RunStatus::Failed { error } => format!("failed: {error}"),
        }
    }
}

/// A finished run as a verdict sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FinishedRun {
    pub arm: String,
    pub seed: u64,
    pub params: Params,
    pub status: RunStatus,
    pub final_values: BTreeMap<String, f64>,
}

impl FinishedRun {
    /// A final value (NaN when the run did not report it).
    pub fn value(&self, key: &str) -> f64 {
        self.final_values.get(key).copied().unwrap_or(f64::NAN)
    }

    pub fn completed(&self) -> bool {
        matches!(self.status, RunStatus::Completed { .. })
    }

    /// "arm (seed N)".
    pub fn label(&self) -> String {
        format!("{} (seed {})", self.arm, self.seed)
    }
}

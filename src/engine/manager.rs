//! The run manager: launches each arm of a preset as a background task, at most `jobs` at once,
//! streams typed events, stops one run or all, and computes the verdict when a launch ends.
//!
//! Training runs on tokio's blocking pool (`spawn_blocking`), never on the reactor threads or the
//! UI. Each run writes its own files from its training thread, so a dropped consumer never loses
//! a metric.

use std::collections::{BTreeMap, HashMap};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::events::{EventReceiver, EventSender};
use super::store::{self, MetricPoint, MetricsWriter, RunConfig, RunStore, RunSummary};
use crate::device::DeviceChoice;
use crate::experiments::{
    self, Experiment, FinishedRun, MetricSink, RunContext, RunEnd, RunStatus, RunStop,
};
use crate::params::{Override, Params};
use crate::presets::Preset;
use crate::verdict::Verdict;

pub type RunId = u64;
pub type LaunchId = u64;

/// What the engine tells its consumers (the headless printer, the terminal UI).
#[derive(Clone, Debug)]
pub enum EngineEvent {
    /// A run left the queue and began training.
    Started { run: RunId },
    /// A measurement.
    Metrics { run: RunId, point: MetricPoint },
    /// A line of the run's log.
    Log { run: RunId, line: String },
    /// The run's latest picture of this name.
    Picture {
        run: RunId,
        name: String,
        picture: crate::metrics::picture::Picture,
    },
    /// A run ended (completed, diverged, stopped or failed).
    Ended {
        run: RunId,
        status: RunStatus,
        final_values: BTreeMap<String, f64>,
    },
    /// Every run of a launch ended; the verdict is computed and written.
    LaunchEnded { launch: LaunchId, verdict: Verdict },
}

/// One run of a launch.
#[derive(Clone, Debug)]
pub struct RunInfo {
    pub id: RunId,
    pub launch: LaunchId,
    pub preset: String,
    pub arm: String,
    pub seed: u64,
    pub params: Params,
    pub total_steps: u64,
    pub dir: PathBuf,
    pub device: DeviceChoice,
}

/// What to launch: a preset, some of its arms (all when empty), seeds (the preset's when empty)
/// and parameter overrides applied to every arm.
#[derive(Clone, Debug, Default)]
pub struct LaunchRequest {
    pub arms: Vec<String>,
    pub seeds: Vec<u64>,
    pub overrides: Vec<Override>,
    pub device: DeviceChoice,
}

impl From<&crate::experiments::profile::Profile> for LaunchRequest {
    /// The launch a profile describes (on the CPU).
    fn from(p: &crate::experiments::profile::Profile) -> LaunchRequest {
        LaunchRequest {
            arms: p.arms.iter().map(|a| a.to_string()).collect(),
            seeds: p.seeds.to_vec(),
            overrides: p.overrides(),
            device: DeviceChoice::Cpu,
        }
    }
}

/// A launch in progress.
pub struct Launch {
    pub id: LaunchId,
    pub dir: PathBuf,
    pub runs: Vec<RunInfo>,
    /// Resolves to the verdict once every run has ended.
    pub done: JoinHandle<Verdict>,
}

/// The resolved (arm, seed, params) triples of a request, validated. Errors are one line.
pub fn resolve(preset: &Preset, req: &LaunchRequest) -> Result<Vec<(String, u64, Params)>, String> {
    let exp = experiments::find(&preset.experiment)
        .ok_or_else(|| format!("unknown experiment `{}`", preset.experiment))?;
    let specs = exp.params();
    let arms: Vec<_> = if req.arms.is_empty() {
        preset.arms.iter().collect()
    } else {
        req.arms
            .iter()
            .map(|name| {
                preset.arm(name).ok_or_else(|| {
                    let names: Vec<&str> = preset.arms.iter().map(|a| a.name.as_str()).collect();
                    format!(
                        "preset `{}` has no arm `{name}` (arms: {})",
                        preset.id,
                        names.join(", ")
                    )
                })
            })
            .collect::<Result<_, _>>()?
    };
    let mut seeds = if req.seeds.is_empty() {
        preset.seeds.clone()
    } else {
        req.seeds.clone()
    };
    // A repeated seed or arm would share a run folder: keep the first of each.
    let mut seen = std::collections::HashSet::new();
    seeds.retain(|s| seen.insert(*s));
    let mut seen_arms = std::collections::HashSet::new();
    let arms: Vec<_> = arms
        .into_iter()
        .filter(|a| seen_arms.insert(a.name.clone()))
        .collect();
    let mut out = Vec::new();
    for arm in arms {
        let mut p = arm.params.clone();
        p.apply_overrides(&specs, &req.overrides)?;
        exp.validate(&p)
            .map_err(|e| format!("arm {}: {e}", arm.name))?;
        for &s in &seeds {
            out.push((arm.name.clone(), s, p.clone()));
        }
    }
    Ok(out)
}

/// Launches and supervises runs.
pub struct RunManager {
    store: RunStore,
    limit: Arc<Semaphore>,
    events: EventSender,
    stops: Mutex<HashMap<RunId, Arc<AtomicBool>>>,
    next_id: AtomicU64,
    runtime: tokio::runtime::Handle,
    /// Launches whose verdict is not written yet.
    unfinished: Arc<std::sync::atomic::AtomicUsize>,
    /// Runs at once.
    jobs: usize,
}

impl RunManager {
    /// A manager running at most `jobs` runs at once on `runtime`, with its event stream.
    pub fn new(
        store: RunStore,
        jobs: usize,
        runtime: tokio::runtime::Handle,
    ) -> (RunManager, EventReceiver) {
        let (tx, rx) = super::events::channel();
        (
            RunManager {
                store,
                limit: Arc::new(Semaphore::new(jobs.max(1))),
                events: tx,
                stops: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
                runtime,
                unfinished: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
                jobs: jobs.max(1),
            },
            rx,
        )
    }

    pub fn store(&self) -> &RunStore {
        &self.store
    }

    /// Validates the request, creates the run directories and queues every run.
    pub fn launch(&self, preset: &Preset, req: &LaunchRequest) -> Result<Launch, String> {
        let exp = experiments::find(&preset.experiment)
            .ok_or_else(|| format!("unknown experiment `{}`", preset.experiment))?;
        let planned = resolve(preset, req)?;
        crate::device::check_available(req.device)?;
        let estimates: Vec<(String, super::memory::Estimate)> = planned
            .iter()
            .map(|(arm, _, params)| (arm.clone(), exp.memory(params)))
            .collect();
        super::memory::check(&estimates, self.jobs)?;
        let launch_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let dir = self.store.create_launch(&preset.id).map_err(|e| {
            format!(
                "cannot create a run folder under {}: {e}",
                self.store.root.display()
            )
        })?;
        // Every folder first: a launch that cannot write one starts nothing.
        let mut runs = Vec::new();
        for (arm, seed, params) in planned {
            let config = RunConfig {
                preset: preset.id.clone(),
                experiment: preset.experiment.clone(),
                arm: arm.clone(),
                seed,
                params: params.clone(),
                reglab_version: env!("CARGO_PKG_VERSION").to_string(),
                started_utc: store::utc_stamp(),
                device: req.device,
            };
            let run_dir = match self.store.create_run(&dir, &config) {
                Ok(d) => d,
                Err(e) => {
                    // Nothing started: leave no half-made launch behind.
                    let _ = std::fs::remove_dir_all(&dir);
                    return Err(format!("cannot write {}: {e}", dir.display()));
                }
            };
            runs.push(RunInfo {
                id: self.next_id.fetch_add(1, Ordering::Relaxed),
                launch: launch_id,
                preset: preset.id.clone(),
                arm,
                seed,
                total_steps: exp.total_steps(&params),
                params,
                dir: run_dir,
                device: req.device,
            });
        }
        let mut handles = Vec::new();
        for info in &runs {
            let stop = Arc::new(AtomicBool::new(false));
            self.stops.lock().unwrap().insert(info.id, stop.clone());
            handles.push(self.spawn_run(exp, info.clone(), stop));
        }
        let events = self.events.clone();
        let unfinished = self.unfinished.clone();
        unfinished.fetch_add(1, Ordering::SeqCst);
        let claim = preset.claim.clone();
        let preset_id = preset.id.clone();
        let launch_dir = dir.clone();
        let done = self.runtime.spawn(async move {
            let mut finished = Vec::new();
            for h in handles {
                if let Ok(f) = h.await {
                    finished.push(f);
                }
            }
            let verdict = exp.verdict(&claim, &preset_id, &finished);
            let _ = store::write_verdict(&launch_dir, &verdict);
            for f in &finished {
                let run_dir = launch_dir.join(format!("{}-s{}", f.arm, f.seed));
                if let Ok(mut r) = store::open_run(&run_dir) {
                    if let Some(mut s) = r.summary.take() {
                        s.verdict = Some(verdict.clone());
                        let _ = store::write_summary(&run_dir, &s);
                    }
                }
            }
            unfinished.fetch_sub(1, Ordering::SeqCst);
            events.send(EngineEvent::LaunchEnded {
                launch: launch_id,
                verdict: verdict.clone(),
            });
            verdict
        });
        Ok(Launch {
            id: launch_id,
            dir,
            runs,
            done,
        })
    }

    fn spawn_run(
        &self,
        exp: &'static dyn Experiment,
        info: RunInfo,
        stop: Arc<AtomicBool>,
    ) -> JoinHandle<FinishedRun> {
        let limit = self.limit.clone();
        let events = self.events.clone();
        self.runtime.spawn(async move {
            // Wait for a free slot, but end at once when stopped while queued.
            let permit = loop {
                if stop.load(Ordering::Relaxed) {
                    break None;
                }
                match limit.clone().try_acquire_owned() {
                    Ok(p) => break Some(p),
                    Err(tokio::sync::TryAcquireError::Closed) => break None,
                    Err(tokio::sync::TryAcquireError::NoPermits) => {
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await
                    }
                }
            };
            let (status, final_values) = if permit.is_none() || stop.load(Ordering::Relaxed) {
                // Stopped while queued: it never trained, but its folder says so.
                let status = RunStatus::Stopped { step: 0 };
                let _ = store::write_summary(
                    &info.dir,
                    &RunSummary {
                        status: status.clone(),
                        final_values: BTreeMap::new(),
                        wall_s: 0.0,
                        verdict: None,
                    },
                );
                (status, BTreeMap::new())
            } else {
                events.send(EngineEvent::Started { run: info.id });
                let (i, ev, st) = (info.clone(), events.clone(), stop.clone());
                match tokio::task::spawn_blocking(move || train(exp, &i, ev, &st)).await {
                    Ok(r) => r,
                    Err(e) => (
                        RunStatus::Failed {
                            error: format!("training task ended abnormally: {e}"),
                        },
                        BTreeMap::new(),
                    ),
                }
            };
            drop(permit);
            events.send(EngineEvent::Ended {
                run: info.id,
                status: status.clone(),
                final_values: final_values.clone(),
            });
            FinishedRun {
                arm: info.arm,
                seed: info.seed,
                params: info.params,
                status,
                final_values,
            }
        })
    }

    /// Asks one run to stop (a queued run ends without training).
    pub fn stop(&self, run: RunId) {
        if let Some(s) = self.stops.lock().unwrap().get(&run) {
            s.store(true, Ordering::Relaxed);
        }
    }

    /// True when every launch has ended and its verdict is written (everything is on disk).
    pub fn idle(&self) -> bool {
        self.unfinished.load(Ordering::SeqCst) == 0
    }

    /// Asks every run to stop.
    pub fn stop_all(&self) {
        for s in self.stops.lock().unwrap().values() {
            s.store(true, Ordering::Relaxed);
        }
    }
}

/// What a launch folder was made for (`launch.json`): enough to compute its verdict later from
/// the runs' folders alone (a Slurm job that ends the launch).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct LaunchNote {
    pub preset: String,
    pub experiment: String,
    pub claim: String,
    /// The grid's parameter names, for a sweep.
    #[serde(default)]
    pub grid: Vec<String>,
}

/// Creates a launch folder with every run's folder (config.json) and `launch.json`, starting
/// nothing: for schedulers that run each folder elsewhere (`reglab run-folder`).
pub fn prepare_launch(
    store: &RunStore,
    preset: &Preset,
    req: &LaunchRequest,
    grid: &[String],
) -> Result<(PathBuf, Vec<PathBuf>), String> {
    let exp = experiments::find(&preset.experiment)
        .ok_or_else(|| format!("unknown experiment `{}`", preset.experiment))?;
    let planned = resolve(preset, req)?;
    let estimates: Vec<(String, super::memory::Estimate)> = planned
        .iter()
        .map(|(arm, _, params)| (arm.clone(), exp.memory(params)))
        .collect();
    super::memory::check(&estimates, 1)?;
    let dir = store.create_launch(&preset.id).map_err(|e| {
        format!(
            "cannot create a run folder under {}: {e}",
            store.root.display()
        )
    })?;
    let note = LaunchNote {
        preset: preset.id.clone(),
        experiment: preset.experiment.clone(),
        claim: preset.claim.clone(),
        grid: grid.to_vec(),
    };
    let write = || -> std::io::Result<Vec<PathBuf>> {
        std::fs::write(
            dir.join("launch.json"),
            serde_json::to_string_pretty(&note).unwrap_or_default(),
        )?;
        let mut runs = Vec::new();
        for (arm, seed, params) in planned {
            let config = RunConfig {
                preset: preset.id.clone(),
                experiment: preset.experiment.clone(),
                arm,
                seed,
                params,
                reglab_version: env!("CARGO_PKG_VERSION").to_string(),
                started_utc: store::utc_stamp(),
                device: req.device,
            };
            let run = store.create_run(&dir, &config)?;
            // Its writer is the scheduler's task, not this process.
            let _ = std::fs::remove_file(run.join(store::WRITER_PID));
            runs.push(run);
        }
        Ok(runs)
    };
    match write() {
        Ok(runs) => Ok((dir, runs)),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            Err(format!("cannot write {}: {e}", dir.display()))
        }
    }
}

/// Trains the run a folder describes (its config.json), in this process, writing its metrics,
/// log and summary there. Returns how it ended.
pub fn run_folder(dir: &std::path::Path) -> Result<RunStatus, String> {
    let config = store::read_config(dir)?;
    let exp = experiments::find(&config.experiment)
        .ok_or_else(|| format!("unknown experiment `{}`", config.experiment))?;
    let _ = std::fs::write(dir.join(store::WRITER_PID), store::writer_note());
    let info = RunInfo {
        id: 0,
        launch: 0,
        preset: config.preset.clone(),
        arm: config.arm.clone(),
        seed: config.seed,
        total_steps: exp.total_steps(&config.params),
        params: config.params.clone(),
        dir: dir.to_path_buf(),
        device: config.device,
    };
    let (events, _) = super::events::channel();
    // SIGTERM (scancel, a time limit) or SIGINT stops the run at its next step: it ends as
    // stopped, with its summary and every metric written so far.
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    #[cfg(unix)]
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        let _ = signal_hook::flag::register(sig, stop.clone());
    }
    Ok(train(exp, &info, events, &stop).0)
}

/// Computes a launch's verdict from its runs' folders (every run must have ended) and writes it
/// like a local launch does: `verdict.json`, and into each summary.
pub fn finish_launch(launch_dir: &std::path::Path) -> Result<Verdict, String> {
    finish_launch_with(launch_dir, true).map(|(v, _)| v)
}

/// Like [`finish_launch`]; with `require_all` false, runs that never ended (cancelled, killed)
/// are left out of the verdict instead of stopping it, and their folders are returned.
pub fn finish_launch_with(
    launch_dir: &std::path::Path,
    require_all: bool,
) -> Result<(Verdict, Vec<PathBuf>), String> {
    let note: LaunchNote = serde_json::from_str(
        &std::fs::read_to_string(launch_dir.join("launch.json"))
            .map_err(|e| format!("{}: {e}", launch_dir.join("launch.json").display()))?,
    )
    .map_err(|e| format!("launch.json: {e}"))?;
    let exp = experiments::find(&note.experiment)
        .ok_or_else(|| format!("unknown experiment `{}`", note.experiment))?;
    let mut finished = Vec::new();
    let mut missing = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(launch_dir)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("config.json").is_file())
        .collect();
    dirs.sort();
    for d in &dirs {
        let run = store::open_run(d)?;
        let Some(s) = run.summary else {
            if !require_all {
                missing.push(d.clone());
                continue;
            }
            return Err(format!(
                "{}: no summary (the run has not ended)",
                d.display()
            ));
        };
        finished.push(FinishedRun {
            arm: run.config.arm,
            seed: run.config.seed,
            params: run.config.params,
            status: s.status,
            final_values: s.final_values,
        });
    }
    let verdict = exp.verdict(&note.claim, &note.preset, &finished);
    store::write_verdict(launch_dir, &verdict).map_err(|e| e.to_string())?;
    for d in &dirs {
        if let Ok(mut r) = store::open_run(d) {
            if let Some(mut s) = r.summary.take() {
                s.verdict = Some(verdict.clone());
                let _ = store::write_summary(d, &s);
            }
        }
    }
    Ok((verdict, missing))
}

/// Writes each measurement to `metrics.jsonl`, then streams it.
struct EngineSink {
    run: RunId,
    writer: Option<MetricsWriter>,
    /// `log.txt` in the run's folder: every log line, also those the screen never shows.
    log_file: Option<std::fs::File>,
    write_error: Option<String>,
    events: EventSender,
    started: Instant,
    /// The latest picture of each name, and when `pictures.json` was last written (at most
    /// once a second while training; once more at the end).
    pictures: BTreeMap<String, crate::metrics::picture::Picture>,
    pictures_written: Option<Instant>,
    dir: Option<PathBuf>,
}

impl EngineSink {
    fn new(
        run: RunId,
        writer: Option<MetricsWriter>,
        log_file: Option<std::fs::File>,
        write_error: Option<String>,
        events: EventSender,
        dir: Option<PathBuf>,
    ) -> EngineSink {
        EngineSink {
            run,
            writer,
            log_file,
            write_error,
            events,
            started: Instant::now(),
            pictures: BTreeMap::new(),
            pictures_written: None,
            dir,
        }
    }

    /// Writes `pictures.json` if a picture came since it was last written.
    fn flush_pictures(&mut self) {
        if let (Some(dir), false) = (&self.dir, self.pictures.is_empty()) {
            if let Err(e) = store::write_pictures(dir, &self.pictures) {
                self.write_error
                    .get_or_insert(format!("writing pictures.json: {e}"));
            }
            self.pictures_written = Some(Instant::now());
        }
    }
}

impl MetricSink for EngineSink {
    fn record(&mut self, step: u64, values: &[(&'static str, f64)]) {
        let point = MetricPoint {
            step,
            elapsed_s: self.started.elapsed().as_secs_f64(),
            metrics: values.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        };
        if let Some(w) = self.writer.as_mut() {
            if let Err(e) = w.append(&point) {
                self.write_error
                    .get_or_insert(format!("writing metrics.jsonl: {e}"));
            }
        }
        self.events.send(EngineEvent::Metrics {
            run: self.run,
            point,
        });
    }

    fn log(&mut self, line: String) {
        if let Some(f) = self.log_file.as_mut() {
            use std::io::Write;
            let _ = writeln!(f, "{line}").and_then(|_| f.flush());
        }
        self.events.send(EngineEvent::Log {
            run: self.run,
            line,
        });
    }

    fn picture(&mut self, name: &'static str, picture: crate::metrics::picture::Picture) {
        self.pictures.insert(name.to_string(), picture.clone());
        if self
            .pictures_written
            .is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(1))
        {
            self.flush_pictures();
        }
        self.events.send(EngineEvent::Picture {
            run: self.run,
            name: name.to_string(),
            picture,
        });
    }
}

/// Trains one run on the calling (blocking) thread and writes its summary.
fn train(
    exp: &'static dyn Experiment,
    info: &RunInfo,
    events: EventSender,
    stop: &AtomicBool,
) -> (RunStatus, BTreeMap<String, f64>) {
    let started = Instant::now();
    let (writer, write_error) = match MetricsWriter::create(&info.dir.join("metrics.jsonl")) {
        Ok(w) => (Some(w), None),
        Err(e) => (None, Some(format!("cannot create metrics.jsonl: {e}"))),
    };
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(info.dir.join("log.txt"))
        .ok();
    let mut sink = EngineSink::new(
        info.id,
        writer,
        log_file,
        write_error,
        events,
        Some(info.dir.clone()),
    );
    let result: Result<RunEnd, RunStop> = {
        let mut ctx = RunContext::new(
            &info.params,
            info.seed,
            Some(info.dir.clone()),
            &mut sink,
            stop,
        )
        .on_device(info.device);
        match std::panic::catch_unwind(AssertUnwindSafe(|| exp.run(&mut ctx))) {
            Ok(r) => r,
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown panic".into());
                Err(RunStop::Failed(format!("training panicked: {msg}")))
            }
        }
    };
    sink.flush_pictures();
    let mut status = RunStatus::from_result(&result);
    if let (Some(e), RunStatus::Completed { .. }) = (&sink.write_error, &status) {
        status = RunStatus::Failed { error: e.clone() };
    }
    let final_values = result.map(|r| r.final_values).unwrap_or_default();
    let summary = RunSummary {
        status: status.clone(),
        final_values: final_values.clone(),
        wall_s: started.elapsed().as_secs_f64(),
        verdict: None,
    };
    if let Err(e) = store::write_summary(&info.dir, &summary) {
        sink.log(format!("cannot write summary.json: {e}"));
    }
    (status, final_values)
}

/// Seconds per metric point spent by the engine's recording path (append and flush one line of
/// `metrics.jsonl`, build and send the event) for points of `width` metrics, measured over
/// `points` points written into `dir`. For benchmarks.
pub fn record_cost_per_point(dir: &std::path::Path, points: usize, width: usize) -> f64 {
    const NAMES: [&str; 8] = ["m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7"];
    let (tx, mut rx) = super::events::channel();
    let mut sink = EngineSink::new(
        0,
        MetricsWriter::create(&dir.join("metrics.jsonl")).ok(),
        None,
        None,
        tx,
        None,
    );
    let values: Vec<(&'static str, f64)> = (0..width.min(8))
        .map(|i| (NAMES[i], i as f64 * 0.1))
        .collect();
    let t = Instant::now();
    for step in 0..points {
        sink.record(step as u64, &values);
        while rx.try_recv().is_ok() {}
    }
    t.elapsed().as_secs_f64() / points.max(1) as f64
}

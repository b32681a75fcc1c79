//! The headless runner: launches a preset, prints progress lines as metrics arrive (at most one
//! per run per second), then the table of runs and the verdict.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::engine::{EngineEvent, LaunchRequest, RunManager};
use crate::experiments::{self, RunStatus};
use crate::presets::Preset;
use crate::report::{fmt_num, runs_table, verdict_text, RunRow};
use crate::verdict::Verdict;

/// What a headless launch ended with.
pub struct HeadlessOutcome {
    pub verdict: Verdict,
    pub statuses: Vec<(String, u64, RunStatus)>,
    pub launch_dir: std::path::PathBuf,
}

/// Runs `preset` to the end, writing progress and the final report to `out`.
/// Errors (bad arms or parameters, an unwritable runs folder) are one line.
pub async fn run(
    manager: Arc<RunManager>,
    events: &mut crate::engine::EventReceiver,
    preset: &Preset,
    req: &LaunchRequest,
    out: &mut (dyn Write + Send),
) -> Result<HeadlessOutcome, String> {
    let exp = experiments::find(&preset.experiment)
        .ok_or_else(|| format!("unknown experiment `{}`", preset.experiment))?;
    let launch = manager.launch(preset, req)?;
    let _ = writeln!(
        out,
        "reglab: {} ({} runs) -> {}",
        preset.id,
        launch.runs.len(),
        launch.dir.display()
    );
    let info: HashMap<u64, _> = launch.runs.iter().map(|r| (r.id, r.clone())).collect();
    let label = |id: u64| {
        info.get(&id)
            .map(|r| format!("{} s{}", r.arm, r.seed))
            .unwrap_or_else(|| format!("run {id}"))
    };
    let mut last_print: HashMap<u64, Instant> = HashMap::new();
    let mut ended: HashMap<u64, (RunStatus, std::collections::BTreeMap<String, f64>)> =
        HashMap::new();
    let table = exp.table_metrics();
    let verdict = loop {
        let Some(ev) = events.recv().await else {
            return Err("the engine stopped unexpectedly".into());
        };
        match ev {
            EngineEvent::Started { run } => {
                let _ = writeln!(out, "[{}] started", label(run));
            }
            // Pictures are for the workbench (and stay in the run's pictures.json).
            EngineEvent::Picture { .. } => {}
            EngineEvent::Metrics { run, point } => {
                let due = last_print
                    .get(&run)
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
                if due {
                    last_print.insert(run, Instant::now());
                    let total = info.get(&run).map(|r| r.total_steps).unwrap_or(0);
                    let vals: Vec<String> = table
                        .iter()
                        .take(4)
                        .filter_map(|k| {
                            point
                                .metrics
                                .get(*k)
                                .map(|v| format!("{k}={}", fmt_num(*v)))
                        })
                        .collect();
                    let _ = writeln!(
                        out,
                        "[{}] step {}/{} {}",
                        label(run),
                        point.step,
                        total,
                        vals.join(" ")
                    );
                }
            }
            EngineEvent::Log { run, line } => {
                let _ = writeln!(out, "[{}] {line}", label(run));
            }
            EngineEvent::Ended {
                run,
                status,
                final_values,
            } => {
                let _ = writeln!(out, "[{}] {}", label(run), status.describe());
                ended.insert(run, (status, final_values));
            }
            EngineEvent::LaunchEnded { launch: l, verdict } if l == launch.id => break verdict,
            EngineEvent::LaunchEnded { .. } => {}
        }
        let _ = out.flush();
    };
    let rows: Vec<RunRow> = launch
        .runs
        .iter()
        .filter_map(|r| {
            ended.get(&r.id).map(|(s, f)| RunRow {
                arm: &r.arm,
                seed: r.seed,
                status: s,
                final_values: f,
            })
        })
        .collect();
    let _ = writeln!(out, "\n{}", runs_table(&rows, &table));
    let _ = writeln!(out, "{}", verdict_text(&verdict));
    let _ = writeln!(out, "runs written to {}", launch.dir.display());
    let statuses = launch
        .runs
        .iter()
        .filter_map(|r| {
            ended
                .get(&r.id)
                .map(|(s, _)| (r.arm.clone(), r.seed, s.clone()))
        })
        .collect();
    Ok(HeadlessOutcome {
        verdict,
        statuses,
        launch_dir: launch.dir,
    })
}

/// Runs experiment `kind`'s quick profile to the end under `runs` (two at a time), with only
/// `arms` when given and `extra` `--set` overrides after the profile's own; returns the outcome
/// and everything it printed. For the presets' claim tests.
pub async fn run_quick(
    kind: &str,
    arms: Option<&[&str]>,
    extra: &[(&str, &str)],
    runs: &std::path::Path,
) -> Result<(HeadlessOutcome, String), String> {
    let profile = crate::experiments::find(kind)
        .ok_or_else(|| format!("no experiment `{kind}`"))?
        .quick_profile();
    let preset = profile.preset()?;
    let mut req = LaunchRequest::from(&profile);
    if let Some(arms) = arms {
        req.arms = arms.iter().map(|a| a.to_string()).collect();
    }
    req.overrides
        .extend(extra.iter().map(|(k, v)| crate::params::Override {
            key: k.to_string(),
            value: v.to_string(),
        }));
    run_captured(&preset, &req, runs, 2).await
}

/// Runs `req` of `preset` to the end with a fresh run manager (at most `jobs` runs at once,
/// writing under `runs`) on the current tokio runtime, returning the outcome and everything it
/// printed. For tests and scripts.
pub async fn run_captured(
    preset: &Preset,
    req: &LaunchRequest,
    runs: &std::path::Path,
    jobs: usize,
) -> Result<(HeadlessOutcome, String), String> {
    let (m, mut events) = RunManager::new(
        crate::engine::RunStore::new(runs),
        jobs,
        tokio::runtime::Handle::current(),
    );
    let mut out: Vec<u8> = Vec::new();
    let res = run(Arc::new(m), &mut events, preset, req, &mut out).await?;
    Ok((res, String::from_utf8_lossy(&out).into_owned()))
}

//! What the workbench knows of each run: its identity, status, chart histories, speed and ETA.
//! Runs come from this process's engine or from the run store (earlier sessions, or another
//! reglab process writing now: those are read-only and follow their files as they grow).

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::engine::store::{self, MetricPoint, RunStore};
use crate::engine::{RunId, RunInfo};
use crate::experiments::RunStatus;

use super::history::History;

/// Points kept per chart series.
pub const HISTORY_CAP: usize = 1024;

/// Where a run lives.
#[derive(Clone, Debug, PartialEq)]
pub enum Origin {
    /// Launched by this process.
    Own(RunId),
    /// Found in the run store (read-only).
    Stored,
}

/// A run's state as the workbench shows it.
#[derive(Clone, Debug, PartialEq)]
pub enum Phase {
    Queued,
    Running,
    /// Stored, without a summary, its writer alive: another process is writing it.
    Elsewhere,
    /// Stored, submitted to Slurm, its task not started yet.
    Waiting,
    Ended(RunStatus),
    /// Stored, without a summary and without a live writer (killed), or with files that cannot
    /// be read: why.
    Stale(String),
}

impl Phase {
    /// A stored run's phase from its folder's state.
    pub fn of(state: store::RunState) -> Phase {
        match state {
            store::RunState::Ended(s) => Phase::Ended(s),
            store::RunState::Running => Phase::Elsewhere,
            store::RunState::Queued => Phase::Waiting,
            other => Phase::Stale(other.describe()),
        }
    }

    pub fn word(&self) -> String {
        match self {
            Phase::Queued => "queued".into(),
            Phase::Running => "running".into(),
            Phase::Elsewhere => "running elsewhere".into(),
            Phase::Waiting => "queued on Slurm".into(),
            Phase::Stale(why) => why.clone(),
            Phase::Ended(RunStatus::Completed { .. }) => "done".into(),
            Phase::Ended(s) => s.describe(),
        }
    }

    pub fn is_active(&self) -> bool {
        matches!(self, Phase::Queued | Phase::Running)
    }

    /// Another process (or a Slurm task) will write this run: its folder is followed.
    pub fn is_followed(&self) -> bool {
        matches!(self, Phase::Elsewhere | Phase::Waiting)
    }
}

#[derive(Clone, Debug)]
pub struct RunView {
    pub origin: Origin,
    pub preset: String,
    pub arm: String,
    pub seed: u64,
    pub dir: PathBuf,
    pub total_steps: u64,
    pub params: crate::params::Params,
    pub phase: Phase,
    pub series: BTreeMap<String, History>,
    pub step: u64,
    pub elapsed_s: f64,
    /// Steps per second, smoothed.
    pub rate: Option<f64>,
    /// The latest picture of each name the run drew.
    pub pictures: BTreeMap<String, crate::metrics::picture::Picture>,
    /// When `pictures.json` was last read (stored runs).
    pictures_read: Option<std::time::SystemTime>,
    /// Bytes of `metrics.jsonl` already read (stored runs).
    read_offset: u64,
}

impl RunView {
    pub fn from_launch(info: &RunInfo) -> RunView {
        RunView {
            origin: Origin::Own(info.id),
            preset: info.preset.clone(),
            arm: info.arm.clone(),
            seed: info.seed,
            dir: info.dir.clone(),
            total_steps: info.total_steps,
            params: info.params.clone(),
            phase: Phase::Queued,
            series: BTreeMap::new(),
            step: 0,
            elapsed_s: 0.0,
            rate: None,
            pictures: BTreeMap::new(),
            pictures_read: None,
            read_offset: 0,
        }
    }

    /// A run read from its directory (metrics so far, and its status if it has ended).
    pub fn from_store(dir: &Path) -> Option<RunView> {
        let config = store::read_config(dir).ok()?;
        let total = config
            .params
            .get("steps")
            .and_then(|v| match v {
                crate::params::ParamValue::Int(i) => Some(*i as u64),
                _ => None,
            })
            .unwrap_or(0);
        let mut v = RunView {
            origin: Origin::Stored,
            preset: config.preset.clone(),
            arm: config.arm.clone(),
            seed: config.seed,
            dir: dir.to_path_buf(),
            total_steps: total,
            params: config.params.clone(),
            phase: Phase::of(store::run_state(dir)),
            series: BTreeMap::new(),
            step: 0,
            elapsed_s: 0.0,
            rate: None,
            pictures: BTreeMap::new(),
            pictures_read: None,
            read_offset: 0,
        };
        v.follow_file();
        Some(v)
    }

    pub fn label(&self) -> String {
        format!("{} s{}", self.arm, self.seed)
    }

    pub fn push(&mut self, p: &MetricPoint) {
        if p.elapsed_s > self.elapsed_s && p.step > self.step {
            let r = (p.step - self.step) as f64 / (p.elapsed_s - self.elapsed_s);
            self.rate = Some(match self.rate {
                Some(old) => 0.7 * old + 0.3 * r,
                None => r,
            });
        }
        self.step = self.step.max(p.step);
        self.elapsed_s = self.elapsed_s.max(p.elapsed_s);
        for (k, v) in &p.metrics {
            self.series
                .entry(k.clone())
                .or_insert_with(|| History::new(HISTORY_CAP))
                .push(p.step as f64, *v);
        }
    }

    /// Reads the complete lines appended to `metrics.jsonl` since the last call, and notices a
    /// `summary.json` that appeared. For stored runs only.
    pub fn follow_file(&mut self) {
        if self.origin != Origin::Stored {
            return;
        }
        let path = self.dir.join("metrics.jsonl");
        if let Ok(mut f) = File::open(&path) {
            if f.seek(SeekFrom::Start(self.read_offset)).is_ok() {
                let mut buf = Vec::new();
                if f.read_to_end(&mut buf).is_ok() {
                    // Only whole lines; a partial last line is read next time.
                    let upto = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                    for line in buf[..upto].split(|&b| b == b'\n') {
                        if let Ok(p) = serde_json::from_slice::<MetricPoint>(line) {
                            self.push(&p);
                        }
                    }
                    self.read_offset += upto as u64;
                }
            }
        }
        let modified = std::fs::metadata(self.dir.join(store::PICTURES))
            .and_then(|m| m.modified())
            .ok();
        if modified.is_some() && modified != self.pictures_read {
            self.pictures = store::read_pictures(&self.dir);
            self.pictures_read = modified;
        }
        if self.phase.is_followed() {
            self.phase = Phase::of(store::run_state(&self.dir));
        }
    }

    /// Fraction of the planned steps done, in [0, 1].
    pub fn progress(&self) -> f64 {
        match &self.phase {
            Phase::Ended(RunStatus::Completed { .. }) => 1.0,
            _ if self.total_steps == 0 => 0.0,
            _ => (self.step as f64 / self.total_steps as f64).clamp(0.0, 1.0),
        }
    }

    /// Seconds left at the current speed, while running.
    pub fn eta_s(&self) -> Option<f64> {
        if !matches!(self.phase, Phase::Running | Phase::Elsewhere) {
            return None;
        }
        let r = self.rate.filter(|r| *r > 0.0)?;
        Some(self.total_steps.saturating_sub(self.step) as f64 / r)
    }

    pub fn last(&self, metric: &str) -> Option<f64> {
        self.series.get(metric).and_then(|h| h.last()).map(|p| p.1)
    }
}

/// Finds runs in the store that this process did not launch, and follows the unfinished ones.
pub fn scan_store(store: &RunStore, runs: &mut Vec<RunView>) {
    let known: HashSet<PathBuf> = runs.iter().map(|r| r.dir.clone()).collect();
    for r in runs.iter_mut() {
        if r.origin == Origin::Stored && r.phase.is_followed() {
            r.follow_file();
        }
    }
    // Only directories not seen before are opened.
    for dir in store.run_dirs() {
        if !known.contains(&dir) {
            if let Some(v) = RunView::from_store(&dir) {
                runs.push(v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::store::{MetricsWriter, RunConfig};
    use crate::params::Params;

    #[test]
    fn stored_runs_follow_their_growing_files() {
        let root = tempfile::tempdir().unwrap();
        let store = RunStore::new(root.path());
        let launch = store.create_launch("p").unwrap();
        let config = RunConfig {
            preset: "p".into(),
            experiment: "sgd-stability".into(),
            arm: "a".into(),
            seed: 1,
            params: Params::default(),
            reglab_version: "0".into(),
            started_utc: "x".into(),
            device: Default::default(),
        };
        let dir = store.create_run(&launch, &config).unwrap();
        let mut w = MetricsWriter::create(&dir.join("metrics.jsonl")).unwrap();
        let point = |s: u64| MetricPoint {
            step: s,
            elapsed_s: s as f64,
            metrics: [("loss".to_string(), 1.0 / (s as f64 + 1.0))]
                .into_iter()
                .collect(),
        };
        w.append(&point(0)).unwrap();
        let mut runs = Vec::new();
        scan_store(&store, &mut runs);
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].phase, Phase::Elsewhere);
        assert_eq!(runs[0].series["loss"].total(), 1);
        w.append(&point(10)).unwrap();
        scan_store(&store, &mut runs);
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].step, 10);
        assert_eq!(runs[0].series["loss"].total(), 2);
        store::write_summary(
            &dir,
            &store::RunSummary {
                status: RunStatus::Completed { steps: 10 },
                final_values: BTreeMap::new(),
                wall_s: 1.0,
                verdict: None,
            },
        )
        .unwrap();
        scan_store(&store, &mut runs);
        assert_eq!(
            runs[0].phase,
            Phase::Ended(RunStatus::Completed { steps: 10 })
        );
    }
}

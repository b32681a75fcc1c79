//! The run store: one directory per run under the runs folder.
//!
//! ```text
//! runs/<preset>-<UTC time>[-k]/            one launch
//!   verdict.json                           the launch's verdict (when every run has ended)
//!   <arm>-s<seed>/                         one run
//!     config.json                          resolved parameters, preset, arm, seed, version
//!     metrics.jsonl                        {"step":N,"elapsed_s":T,"metrics":{name:value,...}} per line
//!     summary.json                         status, final values and the verdict
//!     ...                                  experiment artifacts (parameters, data)
//! ```
//! Lines of `metrics.jsonl` are appended and flushed as they come; a truncated last line (a run
//! killed mid-write) is skipped when reading.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::experiments::RunStatus;
use crate::params::Params;
use crate::verdict::Verdict;

/// `config.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    pub preset: String,
    pub experiment: String,
    pub arm: String,
    pub seed: u64,
    pub params: Params,
    pub reglab_version: String,
    pub started_utc: String,
    /// Where it trained (cpu when absent, for runs written before the choice existed).
    #[serde(default)]
    pub device: crate::device::DeviceChoice,
}

/// `summary.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    #[serde(flatten)]
    pub status: RunStatus,
    pub final_values: BTreeMap<String, f64>,
    pub wall_s: f64,
    /// The launch's verdict, added once every run of the launch has ended.
    #[serde(default)]
    pub verdict: Option<Verdict>,
}

/// One line of `metrics.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricPoint {
    pub step: u64,
    pub elapsed_s: f64,
    /// NaN and infinities are written as null and read back as NaN.
    #[serde(with = "nan_as_null")]
    pub metrics: BTreeMap<String, f64>,
}

mod nan_as_null {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(m: &BTreeMap<String, f64>, s: S) -> Result<S::Ok, S::Error> {
        let m: BTreeMap<&String, Option<f64>> = m
            .iter()
            .map(|(k, v)| (k, v.is_finite().then_some(*v)))
            .collect();
        m.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, f64>, D::Error> {
        let m: BTreeMap<String, Option<f64>> = BTreeMap::deserialize(d)?;
        Ok(m.into_iter()
            .map(|(k, v)| (k, v.unwrap_or(f64::NAN)))
            .collect())
    }
}

/// The metrics of a run as read back from disk.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetricsLog {
    pub points: Vec<MetricPoint>,
    /// True when the last line was incomplete and skipped.
    pub truncated_tail: bool,
}

/// Appends metric points to `metrics.jsonl`, flushing each line.
pub struct MetricsWriter {
    file: File,
}

impl MetricsWriter {
    pub fn create(path: &Path) -> std::io::Result<MetricsWriter> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(MetricsWriter { file })
    }

    pub fn append(&mut self, point: &MetricPoint) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(point)?;
        line.push(b'\n');
        // One write per line: a reader sees whole lines or a truncated last one.
        self.file.write_all(&line)?;
        self.file.flush()
    }
}

/// Reads `metrics.jsonl`, tolerating a truncated last line. A malformed line elsewhere is an
/// error naming the line.
pub fn read_metrics(path: &Path) -> Result<MetricsLog, String> {
    // One read: the lines and whether the last one is complete come from the same bytes.
    let bytes = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let complete_last = bytes.last().is_none_or(|b| *b == b'\n');
    let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    let mut log = MetricsLog::default();
    let count = lines.len();
    for (i, line) in lines.iter().enumerate() {
        let text = String::from_utf8_lossy(line);
        if text.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<MetricPoint>(&text) {
            Ok(p) => log.points.push(p),
            Err(_) if i + 1 == count && !complete_last => log.truncated_tail = true,
            Err(e) => return Err(format!("{}:{}: {e}", path.display(), i + 1)),
        }
    }
    Ok(log)
}

fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    fs::write(&tmp, serde_json::to_vec_pretty(value)?)?;
    fs::rename(tmp, path)
}

/// The latest picture of each name a run drew (`pictures.json` in its folder).
pub fn write_pictures(
    dir: &Path,
    pictures: &BTreeMap<String, crate::metrics::picture::Picture>,
) -> std::io::Result<()> {
    write_json_atomic(&dir.join(PICTURES), pictures)
}

/// The pictures of the run in `dir` (none when it drew none).
pub fn read_pictures(dir: &Path) -> BTreeMap<String, crate::metrics::picture::Picture> {
    read_json(&dir.join(PICTURES)).unwrap_or_default()
}

/// A run's pictures file.
pub const PICTURES: &str = "pictures.json";

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

pub fn write_config(dir: &Path, c: &RunConfig) -> std::io::Result<()> {
    write_json_atomic(&dir.join("config.json"), c)
}

/// Writes the run's summary; the run's writer is done with it (its `writer.pid` goes).
pub fn write_summary(dir: &Path, s: &RunSummary) -> std::io::Result<()> {
    write_json_atomic(&dir.join("summary.json"), s)?;
    let _ = fs::remove_file(dir.join(WRITER_PID));
    Ok(())
}

/// A run folder's writer: the id of the process that will write its summary, present until it
/// has. A folder without a summary whose writer is gone was interrupted (killed).
pub const WRITER_PID: &str = "writer.pid";

/// Whether a process with this id is alive (Linux: `/proc/<pid>`; elsewhere assumed alive).
fn process_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true
    }
}

/// What a run folder holds, as a listing shows it.
#[derive(Clone, Debug, PartialEq)]
pub enum RunState {
    /// Its summary: how it ended.
    Ended(RunStatus),
    /// Its writer is alive (this or another process, here or on a Slurm node).
    Running,
    /// No summary and no live writer: the process was killed.
    Interrupted,
    /// Submitted to Slurm, its task not started.
    Queued,
    /// Its Slurm task ended (cancelled, failed, timed out) without a summary: how.
    Cancelled(String),
    /// A file could not be read: the reason.
    Unreadable(String),
}

impl RunState {
    pub fn describe(&self) -> String {
        match self {
            RunState::Ended(s) => s.describe(),
            RunState::Running => "running".into(),
            RunState::Interrupted => "interrupted (its process ended without a summary)".into(),
            RunState::Queued => "queued on Slurm".into(),
            RunState::Cancelled(why) => why.clone(),
            RunState::Unreadable(e) => format!("unreadable: {e}"),
        }
    }
}

/// This machine's name (a run's writer note records it: a process id means nothing elsewhere).
pub fn this_host() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_default()
}

/// The text of a `writer.pid`: this process's id and this machine's name.
pub fn writer_note() -> String {
    format!("{} {}", std::process::id(), this_host())
}

/// How a run's Slurm task ended without a summary, from `squeue`, when it was one.
fn slurm_end(dir: &Path, started: bool) -> Option<RunState> {
    use crate::slurm::TaskState;
    let (task, state) = crate::slurm::run_task(dir)?;
    let what = if started {
        "ended without a summary"
    } else {
        "never started the run"
    };
    match state? {
        TaskState::Pending => Some(RunState::Queued),
        TaskState::Running => Some(RunState::Running),
        TaskState::Ended(word) => Some(RunState::Cancelled(format!(
            "Slurm task {task} {}: {what}",
            word.to_lowercase()
        ))),
        TaskState::Gone => Some(RunState::Cancelled(format!(
            "Slurm task {task} is over and {what} (scancel-ed or killed)"
        ))),
    }
}

/// The state of the run in `dir`, never failing: what cannot be read says why. Runs submitted
/// to Slurm are looked up with `squeue` (once per launch every two seconds).
pub fn run_state(dir: &Path) -> RunState {
    let summary_path = dir.join("summary.json");
    if summary_path.exists() {
        return match read_json::<RunSummary>(&summary_path) {
            Ok(s) => RunState::Ended(s.status),
            Err(e) => RunState::Unreadable(e),
        };
    }
    match fs::read_to_string(dir.join(WRITER_PID)) {
        Ok(text) => {
            let mut words = text.split_whitespace();
            let pid = words.next().and_then(|p| p.parse::<u32>().ok());
            let here = words.next().is_none_or(|h| h == this_host());
            match pid {
                Some(pid) if here && process_alive(pid) => RunState::Running,
                Some(_) if here => match slurm_end(dir, true) {
                    // Its process is gone whatever Slurm still says.
                    Some(RunState::Cancelled(why)) => RunState::Cancelled(why),
                    _ => RunState::Interrupted,
                },
                // Written on another machine: only Slurm can say.
                Some(_) => match slurm_end(dir, true) {
                    Some(RunState::Queued) | None => RunState::Running,
                    Some(s) => s,
                },
                None => RunState::Interrupted,
            }
        }
        Err(_) => match slurm_end(dir, false) {
            Some(s) => s,
            // Submitted to Slurm (squeue cannot be asked here).
            None if dir.parent().is_some_and(|l| l.join("slurm.json").is_file()) => {
                RunState::Queued
            }
            None => RunState::Interrupted,
        },
    }
}

pub fn write_verdict(launch_dir: &Path, v: &Verdict) -> std::io::Result<()> {
    write_json_atomic(&launch_dir.join("verdict.json"), v)
}

/// Current UTC time as `YYYYMMDDTHHMMSSZ`.
pub fn utc_stamp() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// A run found on disk.
#[derive(Clone, Debug)]
pub struct StoredRun {
    pub dir: PathBuf,
    pub config: RunConfig,
    /// None while the run is still going (or was killed before it ended).
    pub summary: Option<RunSummary>,
}

/// The runs folder.
#[derive(Clone, Debug)]
pub struct RunStore {
    pub root: PathBuf,
}

impl RunStore {
    pub fn new(root: impl Into<PathBuf>) -> RunStore {
        RunStore { root: root.into() }
    }

    /// Creates a fresh launch directory `<preset>-<stamp>[-k]`.
    pub fn create_launch(&self, preset_id: &str) -> std::io::Result<PathBuf> {
        fs::create_dir_all(&self.root)?;
        let base = format!("{preset_id}-{}", utc_stamp());
        for k in 1.. {
            let name = if k == 1 {
                base.clone()
            } else {
                format!("{base}-{k}")
            };
            let dir = self.root.join(name);
            match fs::create_dir(&dir) {
                Ok(()) => return Ok(dir),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        unreachable!()
    }

    /// Creates the directory of one run inside a launch and writes its `config.json`.
    pub fn create_run(&self, launch_dir: &Path, config: &RunConfig) -> std::io::Result<PathBuf> {
        let dir = launch_dir.join(format!("{}-s{}", config.arm, config.seed));
        fs::create_dir_all(&dir)?;
        write_config(&dir, config)?;
        fs::write(dir.join(WRITER_PID), writer_note())?;
        Ok(dir)
    }

    /// Every run folder under the root with its state, including those whose files cannot be
    /// read (with the reason), oldest launch first.
    pub fn list_all(&self) -> Vec<(PathBuf, RunState)> {
        self.run_dirs()
            .into_iter()
            .map(|d| {
                let state = match read_json::<RunConfig>(&d.join("config.json")) {
                    Ok(_) => run_state(&d),
                    Err(e) => RunState::Unreadable(e),
                };
                (d, state)
            })
            .collect()
    }

    /// Every readable run under the root (launch folders one level down), oldest launch first.
    pub fn list(&self) -> Vec<StoredRun> {
        self.run_dirs()
            .into_iter()
            .filter_map(|d| open_run(&d).ok())
            .collect()
    }

    /// The directories of every run (those holding a `config.json`), oldest launch first,
    /// without reading them.
    pub fn run_dirs(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let Ok(launches) = fs::read_dir(&self.root) else {
            return out;
        };
        let mut launches: Vec<PathBuf> = launches
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        launches.sort();
        for l in launches {
            let Ok(runs) = fs::read_dir(&l) else { continue };
            let mut runs: Vec<PathBuf> = runs
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.join("config.json").is_file())
                .collect();
            runs.sort();
            out.extend(runs);
        }
        out
    }
}

/// Reads a run's `config.json`.
pub fn read_config(dir: &Path) -> Result<RunConfig, String> {
    read_json(&dir.join("config.json"))
}

/// Opens one run directory.
pub fn open_run(dir: &Path) -> Result<StoredRun, String> {
    let config: RunConfig = read_json(&dir.join("config.json"))?;
    let summary_path = dir.join("summary.json");
    let summary = if summary_path.is_file() {
        Some(read_json(&summary_path)?)
    } else {
        None
    };
    Ok(StoredRun {
        dir: dir.to_path_buf(),
        config,
        summary,
    })
}

/// Reads a launch's `verdict.json`, if it has one.
pub fn read_verdict(launch_dir: &Path) -> Option<Verdict> {
    read_json(&launch_dir.join("verdict.json")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_has_fixed_shape() {
        let s = utc_stamp();
        assert_eq!(s.len(), 16, "{s}");
        assert!(s.starts_with("20") && s.ends_with('Z') && &s[8..9] == "T");
    }

    #[test]
    fn nan_round_trips_as_null() {
        let p = MetricPoint {
            step: 3,
            elapsed_s: 0.5,
            metrics: [("a".to_string(), f64::NAN), ("b".to_string(), 2.0)]
                .into_iter()
                .collect(),
        };
        let s = serde_json::to_string(&p).unwrap();
        assert!(s.contains("\"a\":null"), "{s}");
        let back: MetricPoint = serde_json::from_str(&s).unwrap();
        assert!(back.metrics["a"].is_nan());
        assert_eq!(back.metrics["b"], 2.0);
    }
}

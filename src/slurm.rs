//! Sweeps on Slurm: the launch folder and every run's folder are made here, then one job array
//! runs them (task i trains the i-th folder with `reglab run-folder`, on a shared filesystem) and
//! a final job, after every task succeeded (`--dependency=afterok`), writes the verdict and the
//! sweep summary (`reglab finish-launch`). `reglab runs` and the workbench follow the folders as
//! the tasks fill them.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `sbatch` options for the array's tasks.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SlurmOptions {
    pub partition: Option<String>,
    pub time: Option<String>,
    pub cpus_per_task: Option<u32>,
    pub gres: Option<String>,
}

/// The submitted jobs (`slurm.json` in the folder they were submitted from, and in every launch
/// folder whose runs they train).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Submitted {
    pub array_job: String,
    pub finish_job: String,
    pub tasks: usize,
    /// The run folder of each array task, task 0 first.
    #[serde(default)]
    pub runs: Vec<PathBuf>,
}

/// The job that ends a submission once the array is over: `dependency` is `afterok` (only when
/// every task succeeded: a sweep's verdict) or `afterany` (whatever happened: `verify`, whose
/// table reports failed runs), and `args` are `reglab`'s arguments.
pub struct FinishJob<'a> {
    pub name: &'a str,
    pub dependency: &'a str,
    pub args: Vec<String>,
}

fn quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}

/// The job-array script for `runs` (also written to `job.sbatch` in the launch folder).
pub fn script(launch: &Path, runs: usize, opts: &SlurmOptions, reglab: &Path) -> String {
    let mut s = String::from("#!/bin/bash\n");
    s += &format!(
        "#SBATCH --job-name=reglab\n#SBATCH --array=0-{}\n",
        runs.saturating_sub(1)
    );
    s += &format!("#SBATCH --output={}/slurm-%A_%a.out\n", launch.display());
    if let Some(p) = &opts.partition {
        s += &format!("#SBATCH --partition={p}\n");
    }
    if let Some(t) = &opts.time {
        s += &format!("#SBATCH --time={t}\n");
    }
    if let Some(c) = opts.cpus_per_task {
        s += &format!("#SBATCH --cpus-per-task={c}\n");
    }
    if let Some(g) = &opts.gres {
        s += &format!("#SBATCH --gres={g}\n");
    }
    s += &format!(
        "RUN=$(sed -n \"$((SLURM_ARRAY_TASK_ID + 1))p\" {})\nexec {} run-folder \"$RUN\"\n",
        quote(&launch.join("runs.txt")),
        quote(reglab)
    );
    s
}

fn sbatch(args: &[String]) -> Result<String, String> {
    let out = Command::new("sbatch")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run sbatch: {e} (is Slurm installed and SLURM_CONF set?)"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "sbatch failed: {}",
            err.lines().next().unwrap_or("").trim()
        ));
    }
    let id = String::from_utf8_lossy(&out.stdout)
        .trim()
        .split(';')
        .next()
        .unwrap_or("")
        .to_string();
    if id.is_empty() {
        return Err("sbatch printed no job id".into());
    }
    Ok(id)
}

/// Writes `runs.txt` and `job.sbatch` into `launch`, submits the array and the final job that
/// computes the verdict and the sweep summary once every task succeeded, and records both in
/// `slurm.json`.
pub fn submit(launch: &Path, runs: &[PathBuf], opts: &SlurmOptions) -> Result<Submitted, String> {
    let finish = FinishJob {
        name: "reglab-finish",
        dependency: "afterok",
        args: vec!["finish-launch".into(), launch.display().to_string()],
    };
    submit_with(launch, runs, opts, &finish)
}

/// Writes `runs.txt` and `job.sbatch` into `folder`, submits one array task per run and then
/// `finish`, and records both in `slurm.json` there and in every launch folder of the runs.
pub fn submit_with(
    folder: &Path,
    runs: &[PathBuf],
    opts: &SlurmOptions,
    finish: &FinishJob<'_>,
) -> Result<Submitted, String> {
    let reglab = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let list: String = runs.iter().map(|r| format!("{}\n", r.display())).collect();
    std::fs::write(folder.join("runs.txt"), list).map_err(|e| e.to_string())?;
    let job = folder.join("job.sbatch");
    std::fs::write(&job, script(folder, runs.len(), opts, &reglab)).map_err(|e| e.to_string())?;
    let array_job = sbatch(&["--parsable".into(), job.display().to_string()])?;
    let mut args = vec![
        "--parsable".to_string(),
        format!("--job-name={}", finish.name),
        format!("--dependency={}:{array_job}", finish.dependency),
        format!("--output={}/slurm-finish.out", folder.display()),
    ];
    if let Some(p) = &opts.partition {
        args.push(format!("--partition={p}"));
    }
    let mut wrap = quote(&reglab);
    for a in &finish.args {
        wrap += " ";
        wrap += &quote(Path::new(a));
    }
    args.push(format!("--wrap={wrap}"));
    let finish_job = sbatch(&args)?;
    let s = Submitted {
        array_job,
        finish_job,
        tasks: runs.len(),
        runs: runs.to_vec(),
    };
    let text = serde_json::to_string_pretty(&s).unwrap_or_default();
    let mut folders: Vec<&Path> = runs.iter().filter_map(|r| r.parent()).collect();
    folders.push(folder);
    folders.dedup();
    for f in folders {
        std::fs::write(f.join("slurm.json"), &text).map_err(|e| e.to_string())?;
    }
    Ok(s)
}

/// Where an array task stands, as `squeue` reports it.
#[derive(Clone, Debug, PartialEq)]
pub enum TaskState {
    /// Waiting for resources or its turn.
    Pending,
    /// Started (or finishing).
    Running,
    /// Over, in this Slurm state (`COMPLETED`, `CANCELLED`, `FAILED`, `TIMEOUT`, ...).
    Ended(String),
    /// `squeue` no longer lists it: over, long enough ago that Slurm forgot it.
    Gone,
}

impl TaskState {
    fn parse(word: &str) -> TaskState {
        match word {
            "PENDING" | "CONFIGURING" | "REQUEUED" | "REQUEUE_HOLD" | "RESV_DEL_HOLD" => {
                TaskState::Pending
            }
            "RUNNING" | "COMPLETING" | "SUSPENDED" | "STAGE_OUT" | "SIGNALING" | "RESIZING" => {
                TaskState::Running
            }
            other => TaskState::Ended(other.to_string()),
        }
    }
}

/// Parses `squeue -h -r -o "%K %T"` output: one "task state" line per array task (`%K` is
/// `N/A` for a job that is not an array).
pub fn parse_task_states(text: &str) -> std::collections::BTreeMap<usize, TaskState> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let task = it.next()?.parse().ok()?;
            Some((task, TaskState::parse(it.next()?)))
        })
        .collect()
}

type StateCache = std::collections::HashMap<
    String,
    (
        std::time::Instant,
        Option<std::collections::BTreeMap<usize, TaskState>>,
    ),
>;

thread_local! {
    static CACHE: std::cell::RefCell<StateCache> = std::cell::RefCell::new(StateCache::new());
}

/// The state of every task of `array_job` that `squeue` still lists, or None where `squeue`
/// cannot be asked. Answers are kept for two seconds, so a listing asks once per launch.
pub fn task_states(array_job: &str) -> Option<std::collections::BTreeMap<usize, TaskState>> {
    let fresh = |t: &std::time::Instant| t.elapsed() < std::time::Duration::from_secs(2);
    if let Some(hit) = CACHE.with(|c| {
        c.borrow()
            .get(array_job)
            .filter(|(t, _)| fresh(t))
            .map(|(_, v)| v.clone())
    }) {
        return hit;
    }
    let out = Command::new("squeue")
        .args(["-h", "-r", "-j", array_job, "-o", "%K %T"])
        .output()
        .ok();
    let states = match out {
        Some(o) if o.status.success() => {
            Some(parse_task_states(&String::from_utf8_lossy(&o.stdout)))
        }
        // A job Slurm has forgotten: squeue refuses its id.
        Some(o) if String::from_utf8_lossy(&o.stderr).contains("Invalid job id") => {
            Some(Default::default())
        }
        _ => None,
    };
    CACHE.with(|c| {
        c.borrow_mut().insert(
            array_job.to_string(),
            (std::time::Instant::now(), states.clone()),
        )
    });
    states
}

/// The Slurm task of the run in `dir` and its state, when its launch was submitted to Slurm:
/// `(task, state)`; the state is None where `squeue` cannot be asked.
pub fn run_task(dir: &Path) -> Option<(usize, Option<TaskState>)> {
    let launch = dir.parent()?;
    let s: Submitted =
        serde_json::from_str(&std::fs::read_to_string(launch.join("slurm.json")).ok()?).ok()?;
    let task = s.runs.iter().position(|r| r == dir)?;
    let state = task_states(&s.array_job).map(|m| m.get(&task).cloned().unwrap_or(TaskState::Gone));
    Some((task, state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squeue_lines_become_task_states() {
        let m = parse_task_states("0 RUNNING\n1 PENDING\n2 CANCELLED\nN/A RUNNING\n\n");
        assert_eq!(m.len(), 3);
        assert_eq!(m[&0], TaskState::Running);
        assert_eq!(m[&1], TaskState::Pending);
        assert_eq!(m[&2], TaskState::Ended("CANCELLED".into()));
    }
}

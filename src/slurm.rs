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

/// The submitted jobs.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Submitted {
    pub array_job: String,
    pub finish_job: String,
    pub tasks: usize,
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

/// Writes `runs.txt` and `job.sbatch`, submits the array and the final job, and records both
/// in `slurm.json`.
pub fn submit(launch: &Path, runs: &[PathBuf], opts: &SlurmOptions) -> Result<Submitted, String> {
    let reglab = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let list: String = runs.iter().map(|r| format!("{}\n", r.display())).collect();
    std::fs::write(launch.join("runs.txt"), list).map_err(|e| e.to_string())?;
    let job = launch.join("job.sbatch");
    std::fs::write(&job, script(launch, runs.len(), opts, &reglab)).map_err(|e| e.to_string())?;
    let array_job = sbatch(&["--parsable".into(), job.display().to_string()])?;
    let mut finish = vec![
        "--parsable".to_string(),
        "--job-name=reglab-finish".into(),
        format!("--dependency=afterok:{array_job}"),
        format!("--output={}/slurm-finish.out", launch.display()),
    ];
    if let Some(p) = &opts.partition {
        finish.push(format!("--partition={p}"));
    }
    finish.push(format!(
        "--wrap={} finish-launch {}",
        quote(&reglab),
        quote(launch)
    ));
    let finish_job = sbatch(&finish)?;
    let s = Submitted {
        array_job,
        finish_job,
        tasks: runs.len(),
    };
    std::fs::write(
        launch.join("slurm.json"),
        serde_json::to_string_pretty(&s).unwrap_or_default(),
    )
    .map_err(|e| e.to_string())?;
    Ok(s)
}

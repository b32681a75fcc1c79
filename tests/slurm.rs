//! A sweep through a real single-node Slurm (scripts/start-slurm.sh): one job array, then the
//! final job (afterok) writes the verdict and the sweep summary. Where Slurm is not installed or
//! cannot start (not root), the test says "skipped" visibly.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn skipped(reason: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "skipped: {reason}");
}

#[test]
fn a_sweep_runs_as_a_slurm_job_array_and_its_final_job_writes_the_summary() {
    if Command::new("sbatch").arg("--version").output().is_err() {
        skipped("Slurm (sbatch) is not installed: the Slurm sweep test did not run");
        return;
    }
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts");
    let slurm_root = tempfile::tempdir().unwrap();
    let start = Command::new("bash")
        .arg(scripts.join("start-slurm.sh"))
        .env("SLURM_ROOT", slurm_root.path())
        .output()
        .unwrap();
    if !start.status.success() {
        skipped(&format!(
            "the Slurm cluster did not start: {}",
            String::from_utf8_lossy(&start.stderr)
                .lines()
                .last()
                .unwrap_or("")
        ));
        return;
    }
    let conf = slurm_root.path().join("etc/slurm.conf");
    let runs = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_reglab"))
        .args([
            "sweep",
            "sgd-stability",
            "--arm",
            "diag-sgd1-eta0.01",
            "--grid",
            "eta=0.01,0.035",
            "--seed",
            "0",
            "--seed",
            "1",
            "--set",
            "steps=5000",
            "--slurm",
            "--time",
            "10",
            "--runs",
        ])
        .arg(runs.path())
        .env("SLURM_CONF", &conf)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let stop = || {
        let _ = Command::new("bash")
            .arg(scripts.join("stop-slurm.sh"))
            .env("SLURM_ROOT", slurm_root.path())
            .output();
    };
    if !out.status.success() {
        stop();
        panic!("{text}{}", String::from_utf8_lossy(&out.stderr));
    }
    assert!(
        text.contains("Slurm job array") && text.contains("4 tasks"),
        "{text}"
    );
    let launch = std::fs::read_dir(runs.path())
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let t = Instant::now();
    while !launch.join("sweep.md").is_file() && t.elapsed() < Duration::from_secs(180) {
        std::thread::sleep(Duration::from_millis(500));
    }
    stop();
    assert!(
        launch.join("verdict.json").is_file(),
        "no verdict from the final job"
    );
    let rows: Vec<reglab::sweep::SweepRow> =
        serde_json::from_str(&std::fs::read_to_string(launch.join("sweep.json")).unwrap()).unwrap();
    assert_eq!(rows.len(), 2);
    for r in &rows {
        assert_eq!((r.seeds, r.completed), (2, 2), "{r:?}");
    }
    // Every run was written by its own array task.
    for i in 0..4 {
        let found = std::fs::read_dir(&launch).unwrap().flatten().any(|e| {
            e.file_name()
                .to_string_lossy()
                .ends_with(&format!("_{i}.out"))
        });
        assert!(found, "no output of task {i}");
    }
}

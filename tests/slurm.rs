//! Sweeps and verification through a real single-node Slurm (scripts/start-slurm.sh): one job
//! array, then the final job writes the verdict and the sweep summary (afterok) or the verify
//! table (afterany); a task cancelled while running ends as stopped with its metrics, one
//! cancelled before it started says so. Where Slurm is not installed or cannot start (not root),
//! the test says "skipped" visibly. One cluster serves the three scenarios, in turn.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn skipped(reason: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "skipped: {reason}");
}

fn reglab(conf: &Path, args: &[&str], runs: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_reglab"))
        .args(args)
        .arg("--runs")
        .arg(runs)
        .env("SLURM_CONF", conf)
        .output()
        .unwrap()
}

fn wait_for(path: &Path, secs: u64) -> bool {
    let t = Instant::now();
    while !path.is_file() && t.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_millis(300));
    }
    path.is_file()
}

fn only_launch(runs: &Path, prefix: &str) -> std::path::PathBuf {
    std::fs::read_dir(runs)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} folder"))
}

#[test]
fn sweeps_and_verification_run_as_slurm_job_arrays() {
    if Command::new("sbatch").arg("--version").output().is_err() {
        skipped("Slurm (sbatch) is not installed: the Slurm tests did not run");
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
    let outcome = std::panic::catch_unwind(|| {
        sweep_with_afterok_summary(&conf);
        verify_with_afterany_table(&conf);
        cancelled_tasks_say_so(&conf);
    });
    let _ = Command::new("bash")
        .arg(scripts.join("stop-slurm.sh"))
        .env("SLURM_ROOT", slurm_root.path())
        .output();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e);
    }
}

fn sweep_with_afterok_summary(conf: &Path) {
    let runs = tempfile::tempdir().unwrap();
    let out = reglab(
        conf,
        &[
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
        ],
        runs.path(),
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("Slurm job array") && text.contains("4 tasks"),
        "{text}"
    );
    let launch = only_launch(runs.path(), "sgd-stability");
    assert!(wait_for(&launch.join("sweep.md"), 180), "no sweep.md");
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

fn verify_with_afterany_table(conf: &Path) {
    let runs = tempfile::tempdir().unwrap();
    let out = reglab(
        conf,
        &["verify", "--quick", "--preset", "sgd-stability", "--slurm"],
        runs.path(),
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("(afterany)"), "{text}");
    let dir = only_launch(runs.path(), "verify");
    assert!(wait_for(&dir.join("verify.md"), 240), "no verify.md");
    let report: reglab::verify::VerifyReport =
        serde_json::from_str(&std::fs::read_to_string(dir.join("verify.json")).unwrap()).unwrap();
    assert_eq!(report.rows.len(), 1);
    let row = &report.rows[0];
    assert_eq!(row.preset, "sgd-stability");
    assert_eq!(row.failed_runs, 0, "{row:?}");
    assert!(row.runs > 1 && row.wall_s > 0.0, "{row:?}");
    // The same verdict a local `verify --quick` reaches (sgd-stability's quick claim holds).
    assert_eq!(row.outcome, reglab::verdict::Outcome::Holds, "{row:?}");
    assert!(row.launch_dir.join("verdict.json").is_file());
    let md = std::fs::read_to_string(dir.join("verify.md")).unwrap();
    assert!(md.contains("| sgd-stability |"), "{md}");
}

fn squeue_states(conf: &Path, job: &str) -> String {
    let o = Command::new("squeue")
        .args(["-h", "-r", "-j", job, "-o", "%K %T"])
        .env("SLURM_CONF", conf)
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn cancelled_tasks_say_so(conf: &Path) {
    let runs = tempfile::tempdir().unwrap();
    // Long runs: one task per core trains while the others wait.
    let out = reglab(
        conf,
        &[
            "sweep",
            "vsae",
            "--arm",
            "topk",
            "--grid",
            "lr=0.001,0.002",
            "--seed",
            "0",
            "--seed",
            "1",
            "--set",
            "steps=1000000",
            "--slurm",
        ],
        runs.path(),
    );
    assert!(out.status.success());
    let launch = only_launch(runs.path(), "vsae");
    let submitted: reglab::slurm::Submitted =
        serde_json::from_str(&std::fs::read_to_string(launch.join("slurm.json")).unwrap()).unwrap();
    let job = submitted.array_job.clone();
    // Wait until task 0 trains (its metrics appear) while the last task still waits.
    let first = submitted.runs[0].clone();
    let last = submitted.runs[3].clone();
    assert!(
        wait_for(&first.join("metrics.jsonl"), 60),
        "task 0 never started"
    );
    let states = squeue_states(conf, &job);
    assert!(states.contains("3 PENDING"), "{states}");
    let cancel = |task: &str| {
        Command::new("scancel")
            .arg(format!("{job}_{task}"))
            .env("SLURM_CONF", conf)
            .status()
            .unwrap()
    };
    cancel("3");
    cancel("0");
    // The running task stops at its next step and writes its summary.
    assert!(
        wait_for(&first.join("summary.json"), 60),
        "no summary after scancel"
    );
    let listing = reglab(conf, &["runs"], runs.path());
    let text = String::from_utf8_lossy(&listing.stdout).into_owned();
    let line = |dir: &Path| {
        text.lines()
            .find(|l| l.contains(&*dir.to_string_lossy()))
            .unwrap_or_else(|| panic!("{} not listed:\n{text}", dir.display()))
            .to_string()
    };
    assert!(line(&first).contains("stopped at step"), "{text}");
    assert!(line(&last).contains("Slurm task 3"), "{text}");
    assert!(line(&last).contains("never started"), "{text}");
    // The metrics written before the cancel are kept.
    let metrics = std::fs::read_to_string(first.join("metrics.jsonl")).unwrap();
    assert!(metrics.lines().count() >= 1);
    let _ = Command::new("scancel")
        .arg(&job)
        .arg(&submitted.finish_job)
        .env("SLURM_CONF", conf)
        .status();
}

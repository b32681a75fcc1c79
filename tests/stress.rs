//! Bad input and faults, headless: what a launch refuses before it starts, what an interrupted
//! launch exits with, that a blocked stdout neither grows memory without bound nor keeps an
//! interrupted process alive, and that every run folder is listed with its state.

use std::io::Read;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn reglab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_reglab"))
        .args(args)
        .output()
        .expect("run reglab")
}

fn spawn(args: &[&str], stdout: Stdio) -> Child {
    Command::new(env!("CARGO_BIN_EXE_reglab"))
        .args(args)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start reglab")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn signal(child: &Child, name: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "kill -{name}");
}

/// Waits for the child to exit, at most `limit`; None when it did not.
fn wait_for(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if let Some(s) = child.try_wait().expect("wait") {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Waits until `dir` holds a metrics file with at least one line.
fn wait_for_metrics(dir: &std::path::Path) {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(30) {
        let found = walk(dir).iter().any(|p| {
            p.ends_with("metrics.jsonl")
                && std::fs::metadata(p).map(|m| m.len() > 0).unwrap_or(false)
        });
        if found {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no metrics written under {}", dir.display());
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// A long sgd-stability launch into `runs`.
fn long_run(runs: &str, log_every: &str) -> Vec<String> {
    [
        "run",
        "sgd-stability",
        "--arm",
        "diag-sgd1-eta0.01",
        "--arm",
        "relu-sgd1-eta0.01",
        "--set",
        "steps=1000000000",
        "--set",
        &format!("log_every={log_every}"),
        "--set",
        "stop_loss=0",
        "--set",
        "probes=1",
        "--set",
        "lanczos_iters=1",
        "--seed",
        "0",
        "--runs",
        runs,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[test]
fn launches_that_cannot_fit_are_refused_before_anything_starts() {
    let runs = tempfile::tempdir().unwrap();
    let dir = runs.path().to_str().unwrap();
    for (args, needles) in [
        (
            vec![
                "run",
                "sgd-stability",
                "--set",
                "width=100000",
                "--set",
                "dim=100000",
                "--set",
                "steps=100",
                "--seed",
                "0",
                "--arm",
                "relu-gd-eta0.02",
                "--runs",
                dir,
            ],
            vec![
                "relu-gd-eta0.02",
                "needs about",
                "width 100000 x dim 100000",
            ],
        ),
        (
            vec![
                "run",
                "sgd-stability",
                "--set",
                "n_test=10000000",
                "--set",
                "dim=100000",
                "--arm",
                "diag-gd-eta0.04",
                "--runs",
                dir,
            ],
            vec!["needs about", "TB"],
        ),
        (
            vec![
                "run",
                "sgd-stability",
                "--arm",
                "relu-gd-eta0.02",
                "--max-memory",
                "10K",
                "--runs",
                dir,
            ],
            vec!["more than the 10 kB of --max-memory"],
        ),
        (
            vec![
                "run",
                "sgd-stability",
                "--set",
                "batch=100000",
                "--runs",
                dir,
            ],
            vec!["batch 100000 is larger than n_train 16"],
        ),
    ] {
        let o = reglab(&args);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        for n in needles {
            assert!(err.contains(n), "{args:?}: {err}");
        }
    }
    // Nothing was started: no launch folder.
    assert!(walk(runs.path()).is_empty(), "{:?}", walk(runs.path()));
}

#[test]
fn meaningless_flags_empty_folders_and_bad_names_are_refused() {
    for (args, needle) in [
        (
            vec!["list", "--device", "cuda"],
            "--device means nothing to `reglab list`",
        ),
        (vec!["list", "--arm", "nope"], "--arm means nothing"),
        (vec!["runs", "--set", "x=1"], "--set means nothing"),
        (vec!["runs", "--runs", ""], "--runs needs a folder"),
        (
            vec!["bench", "--device", "cpu"],
            "means nothing to `reglab bench`",
        ),
    ] {
        let o = reglab(&args);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    // A preset id must start with a letter; an arm name must be short enough for a folder.
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/good_presets/tiny.toml"
    ))
    .unwrap();
    let id_line = good
        .lines()
        .find(|l| l.starts_with("id"))
        .unwrap()
        .to_string();
    for (bad, needle) in [
        (
            good.replace(&id_line, "id = \"-help\""),
            "must start with a letter",
        ),
        (
            good.replacen("name = \"", &format!("name = \"{}", "a".repeat(300)), 1),
            "1 to 64",
        ),
    ] {
        std::fs::write(dir.path().join("bad.toml"), bad).unwrap();
        let o = reglab(&["list", "--presets", dir.path().to_str().unwrap()]);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(needle) && err.contains("bad.toml"), "{err}");
    }
}

#[test]
fn interrupted_launches_exit_130_or_143_and_keep_their_metrics() {
    for (sig, code) in [("INT", 130), ("TERM", 143)] {
        let runs = tempfile::tempdir().unwrap();
        let args = long_run(runs.path().to_str().unwrap(), "200");
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut child = spawn(&args, Stdio::null());
        wait_for_metrics(runs.path());
        signal(&child, sig);
        let status = wait_for(&mut child, Duration::from_secs(30)).expect("exits after the signal");
        assert_eq!(status.code(), Some(code), "SIG{sig}");
        // Every run ended with a summary saying it was stopped, and the verdict was written.
        let files = walk(runs.path());
        let summaries: Vec<_> = files
            .iter()
            .filter(|p| p.ends_with("summary.json"))
            .collect();
        assert_eq!(summaries.len(), 2, "{files:?}");
        for s in summaries {
            assert!(std::fs::read_to_string(s).unwrap().contains("stopped"));
        }
        assert!(files.iter().any(|p| p.ends_with("verdict.json")));
        assert!(files.iter().any(|p| p.ends_with("log.txt")));
    }
}

#[test]
fn a_blocked_stdout_neither_grows_memory_nor_keeps_an_interrupted_process_alive() {
    let runs = tempfile::tempdir().unwrap();
    // A metric point every step, into a pipe nobody reads.
    let args = long_run(runs.path().to_str().unwrap(), "1");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = spawn(&args, Stdio::piped());
    wait_for_metrics(runs.path());
    let rss = |pid: u32| -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        s.lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    std::thread::sleep(Duration::from_secs(2));
    let early = rss(child.id());
    std::thread::sleep(Duration::from_secs(4));
    let late = rss(child.id());
    // The screen backlog is bounded (a few thousand points): RSS may not keep climbing.
    assert!(
        late < early + 8 * 1024,
        "RSS grew from {early} kB to {late} kB with stdout blocked"
    );
    signal(&child, "INT");
    let status = wait_for(&mut child, Duration::from_secs(30));
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(130),
        "did not exit after Ctrl-C with stdout blocked: {err}"
    );
}

#[test]
fn every_run_folder_is_listed_with_its_state_even_unreadable_or_killed() {
    let runs = tempfile::tempdir().unwrap();
    let dir = runs.path().to_str().unwrap();
    // Two finished runs, then damage one summary.
    let o = reglab(&[
        "run",
        "sgd-stability",
        "--arm",
        "diag-gd-eta0.04",
        "--arm",
        "diag-gd-eta0.12",
        "--steps",
        "50",
        "--seed",
        "0",
        "--runs",
        dir,
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let summaries: Vec<_> = walk(runs.path())
        .into_iter()
        .filter(|p| p.ends_with("summary.json"))
        .collect();
    std::fs::write(&summaries[0], "{\"status\": \"exploded\"").unwrap();
    // A third run killed with SIGKILL: no summary, and its writer is gone.
    let args = long_run(dir, "200");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = spawn(&args, Stdio::null());
    // Wait until the new launch has written metrics into a run without a summary.
    let t = Instant::now();
    while !walk(runs.path()).iter().any(|p| {
        p.ends_with("metrics.jsonl")
            && std::fs::metadata(p).map(|m| m.len() > 0).unwrap_or(false)
            && !p.with_file_name("summary.json").exists()
    }) {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "no metrics from the new launch"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    signal(&child, "KILL");
    wait_for(&mut child, Duration::from_secs(10)).expect("killed");
    let o = reglab(&["runs", "--runs", dir]);
    let out = text(&o.stdout);
    assert!(o.status.success());
    assert_eq!(out.lines().count(), 4, "{out}");
    assert!(out.contains("unreadable"), "{out}");
    assert!(out.contains("completed"), "{out}");
    assert_eq!(out.matches("interrupted").count(), 2, "{out}");
}

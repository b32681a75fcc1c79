//! The workbench on a real pseudo-terminal (through `script`): quitting, SIGTERM and SIGHUP
//! restore the terminal, SIGTERM keeps every metric written so far, and SIGHUP (a dropped SSH
//! session) lets the runs finish.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reglab::engine::store;
use reglab::experiments::RunStatus;

const LEAVE_ALT_SCREEN: &str = "\x1b[?1049l";

/// Says visibly (past the test harness's capture) that a test was skipped, and why.
fn skipped(reason: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "skipped: {reason}");
}

fn have_script() -> bool {
    Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The workbench under `script`, with everything it printed so far.
struct Session {
    child: Child,
    output: Arc<Mutex<Vec<u8>>>,
}

impl Session {
    fn printed(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }
}

/// Starts the workbench on a 120x40 pseudo-terminal and waits until it has drawn its first
/// screen.
fn start(runs: &Path) -> Session {
    start_with_jobs(runs, 2)
}

/// [`start`] with at most `jobs` runs training at once (the rest queue).
fn start_with_jobs(runs: &Path, jobs: usize) -> Session {
    let mut child = spawn(runs, jobs);
    let output = Arc::new(Mutex::new(Vec::new()));
    let mut stdout = child.stdout.take().unwrap();
    let sink = output.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let session = Session { child, output };
    assert!(
        wait_for(
            || session.printed().contains("Presets"),
            Duration::from_secs(30)
        ),
        "the workbench never drew:\n{}",
        session.printed()
    );
    session
}

fn spawn(runs: &Path, jobs: usize) -> Child {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tui_presets");
    let cmd = format!(
        "stty cols 120 rows 40; exec {} --runs {} --presets {fixtures} --jobs {jobs}",
        env!("CARGO_BIN_EXE_reglab"),
        runs.display()
    );
    Command::new("script")
        .args(["-qfec", &cmd, "/dev/null"])
        .env("TERM", "xterm-256color")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start script")
}

/// The keys that select a fixture preset in the picker: its 1-based position, or (past key 9,
/// when built-in presets come first) the filter typed as its id.
fn preset_key(id: &str) -> String {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tui_presets");
    let all = reglab::presets::load_all(&[fixtures]).unwrap();
    // Digits follow the picker's order (grouped by theme), not the load order.
    let store = tempfile::tempdir().unwrap();
    let app = reglab::tui::app::App::new(all, reglab::engine::RunStore::new(store.path()));
    let i = app
        .picker_order()
        .iter()
        .position(|&i| app.presets[i].id == id)
        .unwrap();
    if i < 9 {
        (i + 1).to_string()
    } else {
        format!("/{id}\r")
    }
}

fn send(session: &mut Session, keys: &str) {
    let stdin = session.child.stdin.as_mut().unwrap();
    stdin.write_all(keys.as_bytes()).unwrap();
    stdin.flush().unwrap();
}

/// The pid of the reglab process writing under `runs`.
fn reglab_pid(runs: &Path) -> Option<u32> {
    let needle = runs.to_string_lossy().into_owned();
    for entry in std::fs::read_dir("/proc").ok()? {
        let Ok(entry) = entry else { continue };
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if comm.trim() == "reglab" && String::from_utf8_lossy(&cmdline).contains(&needle) {
            return Some(pid);
        }
    }
    None
}

/// Waits (up to 10 s) for the reglab process writing under `runs`.
fn wait_for_pid(runs: &Path) -> u32 {
    let mut pid = None;
    wait_for(
        || {
            pid = reglab_pid(runs);
            pid.is_some()
        },
        Duration::from_secs(10),
    );
    pid.expect("reglab pid")
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

fn wait_for(mut cond: impl FnMut() -> bool, limit: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn finish(mut session: Session) -> String {
    let child = &mut session.child;
    let ok = wait_for(
        || child.try_wait().ok().flatten().is_some(),
        Duration::from_secs(60),
    );
    if !ok {
        let _ = child.kill();
    }
    let _ = child.wait();
    // Let the reader thread take the last bytes.
    std::thread::sleep(Duration::from_millis(200));
    let out = session.printed();
    assert!(ok, "the workbench did not exit:\n{out}");
    out
}

fn signal(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

fn stored_statuses(runs: &Path) -> Vec<(String, Option<RunStatus>, usize)> {
    store::RunStore::new(runs)
        .list()
        .into_iter()
        .map(|r| {
            let points = store::read_metrics(&r.dir.join("metrics.jsonl"))
                .map(|l| l.points.len())
                .unwrap_or(0);
            (r.config.arm, r.summary.map(|s| s.status), points)
        })
        .collect()
}

#[test]
fn quit_restores_the_terminal() {
    if !have_script() {
        skipped("`script` is not installed: the pseudo-terminal test did not run");
        return;
    }
    let runs = tempfile::tempdir().unwrap();
    let mut child = start(runs.path());
    send(&mut child, "?");
    std::thread::sleep(Duration::from_millis(300));
    // Esc then q in one burst arrives as Alt-q: it closes the help and quits.
    send(&mut child, "\x1bq");
    let out = finish(child);
    assert!(
        out.contains("\x1b[?1049h"),
        "never entered the alternate screen:\n{out}"
    );
    assert!(
        out.contains(LEAVE_ALT_SCREEN),
        "terminal not restored:\n{out}"
    );
    assert!(out.contains("Presets"), "{out}");
}

#[test]
fn sigterm_stops_runs_keeps_metrics_and_restores_the_terminal() {
    if !have_script() {
        skipped("`script` is not installed: the pseudo-terminal test did not run");
        return;
    }
    let runs = tempfile::tempdir().unwrap();
    let mut child = start(runs.path());
    // Launch the long-running fixture.
    send(&mut child, &format!("{}\r", preset_key("slow-stability")));
    let pid = wait_for_pid(runs.path());
    assert!(
        wait_for(
            || stored_statuses(runs.path()).iter().any(|s| s.2 >= 2),
            Duration::from_secs(20)
        ),
        "no metrics arrived"
    );
    signal(pid, "-TERM");
    let out = finish(child);
    assert!(
        out.contains(LEAVE_ALT_SCREEN),
        "terminal not restored:\n{out}"
    );
    let statuses = stored_statuses(runs.path());
    assert_eq!(statuses.len(), 2, "{statuses:?}");
    for (arm, status, points) in statuses {
        assert!(
            matches!(status, Some(RunStatus::Stopped { step }) if step > 0),
            "{arm}: {status:?}"
        );
        assert!(points >= 1, "{arm}: no metrics kept");
    }
}

#[test]
fn sighup_lets_the_runs_finish() {
    if !have_script() {
        skipped("`script` is not installed: the pseudo-terminal test did not run");
        return;
    }
    let runs = tempfile::tempdir().unwrap();
    // One job: the second run is still queued when the session drops.
    let mut child = start_with_jobs(runs.path(), 1);
    // This fixture runs for a few seconds: launch it, then drop the "SSH session".
    send(&mut child, &format!("{}\r", preset_key("short-stability")));
    let pid = wait_for_pid(runs.path());
    assert!(
        wait_for(
            || !stored_statuses(runs.path()).is_empty(),
            Duration::from_secs(10)
        ),
        "nothing launched"
    );
    // Drop the "SSH session": the pseudo-terminal's other end goes away, the kernel sends
    // SIGHUP and every later write to the terminal fails.
    let _ = child.child.kill();
    let _ = child.child.wait();
    assert!(
        wait_for(|| !alive(pid), Duration::from_secs(120)),
        "reglab did not finish after the hang-up"
    );
    let statuses = stored_statuses(runs.path());
    assert_eq!(statuses.len(), 2, "{statuses:?}");
    for (arm, status, _) in &statuses {
        assert_eq!(
            *status,
            Some(RunStatus::Completed { steps: 400_000 }),
            "{arm} did not run to completion: {statuses:?}"
        );
    }
    let launch = store::RunStore::new(runs.path()).list()[0]
        .dir
        .parent()
        .unwrap()
        .to_path_buf();
    assert!(store::read_verdict(&launch).is_some(), "no verdict written");
}

#[test]
fn ctrl_c_stops_runs_and_restores_the_terminal() {
    if !have_script() {
        skipped("`script` is not installed: the pseudo-terminal test did not run");
        return;
    }
    let runs = tempfile::tempdir().unwrap();
    let mut child = start(runs.path());
    send(&mut child, &format!("{}\r", preset_key("slow-stability")));
    assert!(
        wait_for(
            || stored_statuses(runs.path()).iter().any(|s| s.2 >= 1),
            Duration::from_secs(20)
        ),
        "no metrics arrived"
    );
    send(&mut child, "\x03");
    let out = finish(child);
    assert!(
        out.contains(LEAVE_ALT_SCREEN),
        "terminal not restored:\n{out}"
    );
    for (arm, status, points) in stored_statuses(runs.path()) {
        assert!(
            matches!(status, Some(RunStatus::Stopped { .. })),
            "{arm}: {status:?}"
        );
        assert!(points >= 1, "{arm}");
    }
}

//! The `reglab` binary: exit codes, one-line errors on bad input, headless runs, stored runs.

use std::process::{Command, Output};

fn reglab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_reglab"))
        .args(args)
        .output()
        .expect("run reglab")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn no_arguments_lists_presets_and_how_to_run_one() {
    let o = reglab(&[]);
    assert!(o.status.success());
    let out = text(&o.stdout);
    assert!(
        out.contains("sgd-stability") && out.contains("reglab run"),
        "{out}"
    );
    let o = reglab(&["list"]);
    assert!(text(&o.stdout).contains("Wu"));
}

#[test]
fn bad_input_is_one_line_and_exit_code_2() {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/bad_presets");
    for (args, needle) in [
        (vec!["run", "nope"], "no preset `nope`"),
        (
            vec!["run", "sgd-stability", "--set", "eta=abc"],
            "must be a number",
        ),
        (
            vec!["run", "sgd-stability", "--set", "etaa=1"],
            "unknown parameter `etaa`",
        ),
        (vec!["run", "sgd-stability", "--arm", "x"], "no arm `x`"),
        (vec!["run", "sgd-stability", "--steps", "0"], "steps"),
        (vec!["run", "sgd-stability", "--presets", fixtures], ".toml"),
        (vec!["frobnicate"], "unknown command"),
    ] {
        let o = reglab(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = text(&o.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn headless_run_prints_progress_table_and_verdict_then_runs_are_listed() {
    let runs = tempfile::tempdir().unwrap();
    let dir = runs.path().to_str().unwrap();
    let o = reglab(&[
        "run",
        "sgd-stability",
        "--arm",
        "diag-gd-eta0.12",
        "--arm",
        "diag-sgd1-eta0.035",
        "--arm",
        "diag-sgd1-eta0.06",
        "--seed",
        "0",
        "--runs",
        dir,
    ]);
    let out = text(&o.stdout);
    assert!(o.status.success(), "{out}{}", text(&o.stderr));
    assert!(out.contains("[diag-gd-eta0.12 s0] started"), "{out}");
    assert!(out.contains("hessian_trace"), "{out}");
    assert!(out.contains("diverged at step"), "{out}");
    assert!(out.contains("(i) every converged SGD run"), "{out}");
    assert!(out.contains("verdict: the claim"), "{out}");

    let o = reglab(&["runs", "--runs", dir]);
    let listed = text(&o.stdout);
    assert_eq!(listed.lines().count(), 3, "{listed}");
    assert!(listed.contains("diverged at step"), "{listed}");

    let run_dir = listed
        .lines()
        .find(|l| l.contains("diag-gd-eta0.12"))
        .unwrap()
        .split("  ")
        .next()
        .unwrap()
        .to_string();
    let o = reglab(&["show", &run_dir]);
    let shown = text(&o.stdout);
    assert!(o.status.success(), "{shown}");
    assert!(
        shown.contains("preset sgd-stability, arm diag-gd-eta0.12"),
        "{shown}"
    );
    assert!(shown.contains("verdict of its launch"), "{shown}");
}

#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_without_the_feature_says_how_to_build_it() {
    let o = reglab(&["run", "sgd-stability", "--device", "cuda"]);
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("built without CUDA") && err.contains("build-cuda.sh"),
        "{err}"
    );
    let o = reglab(&["device-check", "--quick"]);
    assert!(o.status.success());
    let out = text(&o.stdout);
    assert!(
        out.contains("cuda: not used") && out.contains("local-reg-node"),
        "{out}"
    );
}

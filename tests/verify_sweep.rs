//! `reglab verify` and `reglab sweep` end to end through the binary.

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
fn verify_quick_prints_one_row_per_preset_and_writes_its_files() {
    // Three presets with fast quick profiles: every preset's own tests already run its quick
    // profile and check its verdict, so the whole list would only repeat them.
    let chosen = ["sgd-stability", "oomd-sea", "sso-surrogate"];
    let runs = tempfile::tempdir().unwrap();
    let dir = runs.path().to_str().unwrap();
    let mut args = vec!["verify", "--quick", "--runs", dir, "--jobs", "2"];
    for id in chosen {
        args.extend(["--preset", id]);
    }
    let o = reglab(&args);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}{}", text(&o.stderr));
    let all = reglab::presets::load_all(&[]).unwrap();
    let presets: Vec<_> = chosen
        .iter()
        .map(|id| all.iter().find(|p| p.id == *id).expect("a built-in preset"))
        .collect();
    let verify_dir = std::fs::read_dir(runs.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("verify-")
        })
        .expect("a verify folder");
    let report: reglab::verify::VerifyReport =
        serde_json::from_str(&std::fs::read_to_string(verify_dir.join("verify.json")).unwrap())
            .unwrap();
    assert!(report.quick);
    assert_eq!(report.rows.len(), presets.len());
    for (row, p) in report.rows.iter().zip(presets.iter().copied()) {
        assert_eq!(row.preset, p.id);
        assert!(out.contains(&p.id), "{out}");
        assert_eq!(row.failed_runs, 0);
        // The row's outcome is the launch's own verdict.
        let v: reglab::verdict::Verdict = serde_json::from_str(
            &std::fs::read_to_string(row.launch_dir.join("verdict.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(row.outcome, v.outcome(), "{}", p.id);
        assert!(out.contains(&row.outcome.word().to_uppercase()), "{out}");
    }
    let md = std::fs::read_to_string(verify_dir.join("verify.md")).unwrap();
    assert_eq!(
        md.lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| preset"))
            .count(),
        presets.len()
    );
    // A preset that does not exist is one line and exit 2.
    let o = reglab(&["verify", "--preset", "nope", "--runs", dir]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("no preset `nope`"));
}

#[test]
fn a_sweep_runs_every_grid_point_and_seed_and_summarizes_them() {
    let runs = tempfile::tempdir().unwrap();
    let dir = runs.path().to_str().unwrap();
    let o = reglab(&[
        "sweep",
        "sgd-stability",
        "--arm",
        "diag-sgd1-eta0.01",
        "--grid",
        "eta=0.01,0.035",
        "--grid",
        "init_scale=0.4,0.5",
        "--seed",
        "0",
        "--seed",
        "1",
        "--set",
        "steps=20000",
        "--runs",
        dir,
    ]);
    let out = text(&o.stdout);
    assert!(o.status.success(), "{out}{}", text(&o.stderr));
    let launch = std::fs::read_dir(runs.path())
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let runs_made = std::fs::read_dir(&launch)
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("config.json").is_file())
        .count();
    assert_eq!(runs_made, 2 * 2 * 2);
    let rows: Vec<reglab::sweep::SweepRow> =
        serde_json::from_str(&std::fs::read_to_string(launch.join("sweep.json")).unwrap()).unwrap();
    assert_eq!(rows.len(), 4);
    for r in &rows {
        assert_eq!(r.seeds, 2, "{r:?}");
    }
    // The paper's figure at this size: a larger eta ends at a smaller trace.
    let trace = |eta: &str, init: &str| {
        rows.iter()
            .find(|r| r.grid["eta"] == eta && r.grid["init_scale"] == init)
            .and_then(|r| r.means.get("hessian_trace").copied())
            .unwrap()
    };
    assert!(trace("0.035", "0.5") < trace("0.01", "0.5"), "{rows:?}");
    assert!(
        out.contains("sweep (final values, mean over seeds)"),
        "{out}"
    );
    // A grid over an unknown parameter is refused before anything starts.
    let o = reglab(&[
        "sweep",
        "sgd-stability",
        "--grid",
        "etaa=1,2",
        "--runs",
        dir,
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("etaa"));
}

//! The engine end to end on the CPU: the paper's claim at small scale, divergence handling,
//! determinism, stopping, and the run store.

use std::collections::BTreeMap;
use std::sync::Arc;

use reglab::engine::store::{self, read_metrics};
use reglab::engine::{EngineEvent, LaunchRequest, RunManager, RunStore};
use reglab::experiments::RunStatus;
use reglab::headless;
use reglab::params::Override;
use reglab::presets::{self, Preset};
use reglab::verdict::Outcome;

fn preset(id: &str) -> Preset {
    presets::load_all(&[])
        .unwrap()
        .into_iter()
        .find(|p| p.id == id)
        .unwrap()
}

fn set(k: &str, v: &str) -> Override {
    Override {
        key: k.into(),
        value: v.into(),
    }
}

/// A run manager writing under `root`, at most `jobs` runs at once, on the test's runtime.
fn manager(root: &std::path::Path, jobs: usize) -> (RunManager, reglab::engine::EventReceiver) {
    RunManager::new(RunStore::new(root), jobs, tokio::runtime::Handle::current())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sgd_stability_claim_holds_at_small_scale() {
    let root = tempfile::tempdir().unwrap();
    let profile = reglab::experiments::find("sgd-stability")
        .unwrap()
        .quick_profile();
    let p = preset(profile.preset);
    let req = LaunchRequest::from(&profile);
    let (res, text) = headless::run_captured(&p, &req, root.path(), 2)
        .await
        .unwrap();
    let v = &res.verdict;
    for id in ["i", "ii", "iia", "iii"] {
        let c = v.check(id).unwrap();
        assert_eq!(c.outcome, Outcome::Holds, "check ({id}):\n{text}");
    }
    // (i) with numbers: every batch-1 SGD run's trace is within 2 s.e. of at most 2/eta.
    let i = v.check("i").unwrap();
    let traces: Vec<(&String, &f64)> = i
        .numbers
        .iter()
        .filter(|(k, _)| k.contains("sgd1") && k.ends_with(".trace"))
        .collect();
    assert!(!traces.is_empty());
    // (iii) with size: on the diagonal network the largest batch-1 learning rate at least halves
    // the trace and lowers the test loss.
    let iii = &v.check("iii").unwrap().numbers;
    let tr_small = iii["diagonal.b1.hessian_trace.small_eta"];
    let tr_large = iii["diagonal.b1.hessian_trace.large_eta"];
    assert!(
        tr_large < 0.5 * tr_small,
        "{tr_large} vs {tr_small}\n{text}"
    );
    assert!(iii["diagonal.b1.test_loss.large_eta"] < iii["diagonal.b1.test_loss.small_eta"]);
    // The GD contrast: some GD run's trace is more than twice 2/eta.
    let iia = &v.check("iia").unwrap().numbers;
    assert!(iia.values().any(|r| *r > 2.0), "{iia:?}");
    // The verdict is written next to the runs, and into each summary.
    assert!(res.launch_dir.join("verdict.json").is_file());
    assert!(text.contains("verdict: the claim HOLDS"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_diverging_run_ends_at_its_step_while_the_others_finish() {
    let root = tempfile::tempdir().unwrap();
    let (m, mut events) = manager(root.path(), 2);
    let p = preset("sgd-stability");
    let req = LaunchRequest {
        arms: vec![
            "diag-gd-eta0.04".into(),
            "diag-sgd1-eta0.06".into(),
            "relu-sgd4-eta0.1".into(),
        ],
        seeds: vec![0],
        overrides: vec![],
        device: Default::default(),
    };
    let mut out: Vec<u8> = Vec::new();
    let res = headless::run(Arc::new(m), &mut events, &p, &req, &mut out)
        .await
        .unwrap();
    let by_arm: BTreeMap<&str, &RunStatus> = res
        .statuses
        .iter()
        .map(|(a, _, s)| (a.as_str(), s))
        .collect();
    match by_arm["diag-sgd1-eta0.06"] {
        RunStatus::Diverged { step, .. } => assert!(*step > 0 && *step < 1000, "{step}"),
        other => panic!("expected divergence, got {other:?}"),
    }
    assert!(matches!(
        by_arm["diag-gd-eta0.04"],
        RunStatus::Completed { .. }
    ));
    assert!(matches!(
        by_arm["relu-sgd4-eta0.1"],
        RunStatus::Completed { .. }
    ));
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("diverged at step"), "{text}");
    // The diverged run's directory still holds its metrics and a summary saying so.
    let dir = res.launch_dir.join("diag-sgd1-eta0.06-s0");
    let s = store::open_run(&dir).unwrap().summary.unwrap();
    assert!(matches!(s.status, RunStatus::Diverged { .. }));
    assert!(!read_metrics(&dir.join("metrics.jsonl"))
        .unwrap()
        .points
        .is_empty());
}

/// Collects every metric event of one launch until it ends.
async fn collect(
    events: &mut reglab::engine::EventReceiver,
) -> (
    BTreeMap<u64, Vec<reglab::engine::MetricPoint>>,
    BTreeMap<u64, RunStatus>,
) {
    let mut points: BTreeMap<u64, Vec<_>> = BTreeMap::new();
    let mut ended = BTreeMap::new();
    while let Some(ev) = events.recv().await {
        match ev {
            EngineEvent::Metrics { run, point } => points.entry(run).or_default().push(point),
            EngineEvent::Ended { run, status, .. } => {
                ended.insert(run, status);
            }
            EngineEvent::LaunchEnded { .. } => break,
            _ => {}
        }
    }
    (points, ended)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_store_reopens_what_was_streamed_and_runs_are_deterministic() {
    let root = tempfile::tempdir().unwrap();
    let (m, mut events) = manager(root.path(), 2);
    let p = preset("sgd-stability");
    let req = LaunchRequest {
        arms: vec!["relu-sgd1-eta0.02".into()],
        seeds: vec![5],
        overrides: vec![set("steps", "3000"), set("log_every", "500")],
        device: Default::default(),
    };
    let a = m.launch(&p, &req).unwrap();
    let (streamed, _) = collect(&mut events).await;
    let b = m.launch(&p, &req).unwrap();
    let (again, _) = collect(&mut events).await;

    let run = &a.runs[0];
    let log = read_metrics(&run.dir.join("metrics.jsonl")).unwrap();
    assert!(!log.truncated_tail);
    let s = &streamed[&run.id];
    assert_eq!(log.points.len(), s.len());
    assert_eq!(log.points.len(), 7); // steps 0, 500, ..., 3000
    for (x, y) in log.points.iter().zip(s) {
        assert_eq!(x.step, y.step);
        assert_eq!(x.metrics, y.metrics);
    }
    // Same preset, parameters and seed: the same metrics.
    let s2 = &again[&b.runs[0].id];
    for (x, y) in s.iter().zip(s2) {
        assert_eq!(x.metrics, y.metrics);
    }
    // config.json holds the resolved parameters and the version; summary.json the final values.
    let stored = store::open_run(&run.dir).unwrap();
    assert_eq!(stored.config.params.usize("steps"), 3000);
    assert_eq!(stored.config.seed, 5);
    assert_eq!(stored.config.reglab_version, env!("CARGO_PKG_VERSION"));
    let summary = stored.summary.unwrap();
    assert_eq!(
        summary.final_values["hessian_trace"],
        log.points.last().unwrap().metrics["hessian_trace"]
    );
    // Artifacts to recompute the Hessian elsewhere.
    let params = reglab::artifacts::read(&run.dir.join("params.safetensors")).unwrap();
    assert_eq!(params["W"].shape, vec![20, 5]);
    assert_eq!(params["a"].shape, vec![20]);
    let data = reglab::artifacts::read(&run.dir.join("data.safetensors")).unwrap();
    assert_eq!(data["x_train"].shape, vec![16, 5]);
    assert!(std::fs::read_to_string(run.dir.join("MODEL.txt"))
        .unwrap()
        .contains("f(x) = sum_k a[k] * max(0, W[k,:] . x)"));

    // A run killed mid-write leaves a truncated last line: it is skipped, the rest is read.
    let path = run.dir.join("metrics.jsonl");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(b"{\"step\":3500,\"elapsed_s\":0.1,\"metr");
    std::fs::write(&path, &bytes).unwrap();
    let log2 = read_metrics(&path).unwrap();
    assert!(log2.truncated_tail);
    assert_eq!(log2.points, log.points);
    // `reglab runs` sees both launches.
    assert_eq!(m.store().list().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_all_ends_runs_early_and_keeps_their_metrics() {
    let root = tempfile::tempdir().unwrap();
    let (m, mut events) = manager(root.path(), 1);
    let p = preset("sgd-stability");
    let req = LaunchRequest {
        arms: vec!["relu-gd-eta0.02".into(), "relu-sgd1-eta0.005".into()],
        seeds: vec![0],
        // Never converge early, and run far longer than the test waits.
        overrides: vec![
            set("steps", "100000000"),
            set("log_every", "200"),
            set("stop_loss", "0"),
        ],
        device: Default::default(),
    };
    let launch = m.launch(&p, &req).unwrap();
    // Wait for the first measurements, then stop everything.
    let mut seen = 0;
    while let Some(ev) = events.recv().await {
        if let EngineEvent::Metrics { .. } = ev {
            seen += 1;
            if seen == 3 {
                break;
            }
        }
    }
    m.stop_all();
    let (_, ended) = collect(&mut events).await;
    assert_eq!(ended.len(), 2);
    for status in ended.values() {
        assert!(matches!(status, RunStatus::Stopped { .. }), "{status:?}");
    }
    let first = &launch.runs[0];
    let log = read_metrics(&first.dir.join("metrics.jsonl")).unwrap();
    assert!(log.points.len() >= 3);
    let s = store::open_run(&first.dir).unwrap().summary.unwrap();
    assert!(matches!(s.status, RunStatus::Stopped { .. }));
    // Stopped runs did not converge: nothing to decide.
    let v = launch.done.await.unwrap();
    assert_eq!(v.outcome(), Outcome::Inconclusive, "{v:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_arms_and_seeds_run_once() {
    let root = tempfile::tempdir().unwrap();
    let (m, mut events) = manager(root.path(), 1);
    let p = preset("sgd-stability");
    let req = LaunchRequest {
        arms: vec!["diag-gd-eta0.04".into(), "diag-gd-eta0.04".into()],
        seeds: vec![1, 1],
        overrides: vec![set("steps", "200")],
        device: Default::default(),
    };
    let launch = m.launch(&p, &req).unwrap();
    assert_eq!(launch.runs.len(), 1);
    collect(&mut events).await;
    let log = read_metrics(&launch.runs[0].dir.join("metrics.jsonl")).unwrap();
    let steps: Vec<u64> = log.points.iter().map(|p| p.step).collect();
    assert!(steps.windows(2).all(|w| w[0] < w[1]), "{steps:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_launch_requests_are_one_line_errors() {
    let root = tempfile::tempdir().unwrap();
    let (m, _events) = manager(root.path(), 1);
    let p = preset("sgd-stability");
    let e = m
        .launch(
            &p,
            &LaunchRequest {
                arms: vec!["nope".into()],
                ..Default::default()
            },
        )
        .err()
        .unwrap();
    assert!(e.contains("no arm `nope`") && !e.contains('\n'), "{e}");
    let e = m
        .launch(
            &p,
            &LaunchRequest {
                overrides: vec![set("eta", "fast")],
                ..Default::default()
            },
        )
        .err()
        .unwrap();
    assert!(
        e.contains("--set eta=fast") && e.contains("must be a number"),
        "{e}"
    );
}

#[test]
fn without_sgd_noise_the_trace_bound_does_not_hold() {
    // The theorem's mechanism is the noise of batch-1 SGD. Switched off (full-batch GD at the
    // same learning rates), the minima it reaches break tr(H) <= 2/eta: check (i), applied to
    // those runs as if they were its batch-1 runs, FAILS.
    use reglab::experiments::{self, FinishedRun};
    use reglab::params::ParamValue;
    let exp = experiments::find("sgd-stability").unwrap();
    let profile = exp.quick_profile();
    let mut runs = Vec::new();
    for arm in ["diag-gd-eta0.04", "diag-gd-eta0.12"] {
        let (end, _) = profile
            .run_arm(arm, 0, &[], reglab::device::DeviceChoice::Cpu)
            .unwrap();
        let mut params = profile.arm_params(arm, &[]).unwrap();
        params.set("optimizer", ParamValue::Text("sgd".into()));
        params.set("batch", ParamValue::Int(1));
        runs.push(FinishedRun {
            arm: arm.into(),
            seed: 0,
            params,
            status: RunStatus::Completed { steps: end.steps },
            final_values: end.final_values,
        });
    }
    let v = exp.verdict("claim", "sgd-stability", &runs);
    let c = v.check("i").unwrap();
    assert_eq!(c.outcome, Outcome::Fails, "{:?}", c.evidence);
}

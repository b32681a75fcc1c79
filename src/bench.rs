//! Speed figures (printed, never asserted): each experiment's own figures (`Experiment::bench`:
//! steps per second per arm and what its paper measures), then the run manager's overhead per
//! metric point and the workbench's drawing costs. `reglab bench` and `cargo bench` print the
//! same.

use std::fmt::Write as _;
use std::time::Instant;

use crate::experiments;
use crate::params::{Override, Params};
use crate::presets;

fn set(k: &str, v: impl ToString) -> Override {
    Override {
        key: k.into(),
        value: v.to_string(),
    }
}

fn manager_overhead(quick: bool, out: &mut String) {
    let points = if quick { 2_000 } else { 20_000 };
    let dir = std::env::temp_dir().join(format!("reglab-bench-{}", std::process::id()));
    if std::fs::create_dir_all(&dir).is_err() {
        out.push_str("\nrun manager overhead: cannot create a temporary folder\n");
        return;
    }
    let per = crate::engine::manager::record_cost_per_point(&dir, points, 8);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = writeln!(
        out,
        "\nrun manager overhead per metric point (8 metrics: append + flush a JSON line, send the \
         event): {:.1} us ({points} points)",
        per * 1e6
    );
}

/// Mean time to draw the dashboard with 8 runs x 8 metrics of full (bounded) history.
fn frame_render(quick: bool, out: &mut String) {
    use crate::engine::store::MetricPoint;
    use crate::engine::{EngineEvent, RunInfo};
    use crate::tui::app::{App, Panel};
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    let Ok(presets) = presets::load_all(&[]) else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("reglab-bench-ui-{}", std::process::id()));
    let mut app = App::new(presets, crate::engine::RunStore::new(&dir));
    let launch = dir.join("sgd-stability-bench");
    let infos: Vec<RunInfo> = (0..8u64)
        .map(|i| RunInfo {
            id: 100 + i,
            launch: 1,
            preset: "sgd-stability".into(),
            arm: format!("arm{i}"),
            seed: 0,
            params: Params::default(),
            total_steps: 1_000_000,
            dir: launch.join(format!("arm{i}-s0")),
            device: Default::default(),
        })
        .collect();
    app.add_launch("sgd-stability", 1, &launch, &infos);
    let points = if quick { 20_000u64 } else { 200_000 };
    let names = [
        "train_loss",
        "test_loss",
        "hessian_trace",
        "hessian_trace_se",
        "gn_trace",
        "lambda_max",
        "two_over_eta",
        "param_norm",
    ];
    for info in &infos {
        app.apply(EngineEvent::Started { run: info.id });
        for k in 0..points {
            let metrics = names
                .iter()
                .enumerate()
                .map(|(j, n)| (n.to_string(), 1.0 + ((k + j as u64) as f64 * 0.001).sin()))
                .collect();
            app.apply(EngineEvent::Metrics {
                run: info.id,
                point: MetricPoint {
                    step: k * 5,
                    elapsed_s: k as f64 * 1e-3,
                    metrics,
                },
            });
        }
    }
    app.focus = Panel::Dashboard;
    app.metric_idx = 2;
    app.smoothing_idx = 2;
    let frames = if quick { 30 } else { 200 };
    for (w, h) in [(120u16, 40u16), (200, 60)] {
        let Ok(mut terminal) = Terminal::new(TestBackend::new(w, h));
        let t = Instant::now();
        for _ in 0..frames {
            let _ = terminal.draw(|f| crate::tui::view::render(&app, f));
        }
        let _ = writeln!(
            out,
            "\nframe render, dashboard {w}x{h}, 8 runs x 8 metrics, {points} points each \
             (bounded history): {:.2} ms per frame (TestBackend, {frames} frames)",
            t.elapsed().as_secs_f64() * 1e3 / frames as f64
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Training throughput of one sgd-stability arm headless and with the workbench loop drawing
/// the dashboard at full frame rate (on a TestBackend).
fn tui_overhead(quick: bool, out: &mut String) {
    use crate::engine::{EngineEvent, LaunchRequest, RunManager, RunStore};
    use crate::tui::app::{Action, App, Panel};
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    let steps = if quick { 100_000 } else { 1_000_000 };
    let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    else {
        return;
    };
    let Ok(presets) = presets::load_all(&[]) else {
        return;
    };
    let Some(idx) = presets.iter().position(|p| p.id == "sgd-stability") else {
        return;
    };
    let overrides = vec![
        set("steps", steps),
        set("log_every", 500),
        set("stop_loss", 0),
        set("probes", 2),
        set("lanczos_iters", 2),
        set("final_probes", 2),
    ];
    let req = LaunchRequest {
        arms: vec!["relu-gd-eta0.1".into()],
        seeds: vec![0],
        overrides: overrides.clone(),
        device: Default::default(),
    };
    let root = std::env::temp_dir().join(format!("reglab-bench-tui-{}", std::process::id()));
    let wall = |dir: &std::path::Path| {
        crate::engine::store::open_run(dir)
            .ok()
            .and_then(|r| r.summary)
            .map(|s| s.wall_s)
    };
    // Headless: the events are consumed and dropped.
    let headless = || {
        rt.block_on(async {
            let (m, mut events) = RunManager::new(RunStore::new(&root), 1, rt.handle().clone());
            let launch = m.launch(&presets[idx], &req).ok()?;
            while let Some(ev) = events.recv().await {
                if matches!(ev, EngineEvent::LaunchEnded { .. }) {
                    break;
                }
            }
            wall(&launch.runs[0].dir)
        })
    };
    // With the workbench loop drawing the dashboard.
    let with_tui = || {
        rt.block_on(async {
            let (m, mut events) = RunManager::new(RunStore::new(&root), 1, rt.handle().clone());
            let mut app = App::new(presets.clone(), RunStore::new(&root));
            app.focus = Panel::Dashboard;
            crate::tui::perform(
                &mut app,
                &m,
                &Action::Launch {
                    preset: idx,
                    arms: req.arms.clone(),
                    overrides: overrides.clone(),
                    seeds: vec![0],
                    device: Default::default(),
                },
            );
            let dir = app.runs.last()?.dir.clone();
            let mut terminal = Terminal::new(TestBackend::new(160, 48)).ok()?;
            let (keys, mut input) = tokio::sync::mpsc::unbounded_channel();
            let (_sig, mut signals) = tokio::sync::mpsc::unbounded_channel();
            let watch = dir.clone();
            tokio::spawn(async move {
                while !watch.join("summary.json").exists() {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                let _ = keys.send(crossterm::event::Event::Key(
                    crossterm::event::KeyEvent::from(crossterm::event::KeyCode::Char('q')),
                ));
                keys
            });
            // Keep redrawing every tick, as if data arrived all the time.
            let _ = crate::tui::run_loop_with(
                &mut terminal,
                &mut app,
                &m,
                &mut input,
                &mut events,
                &mut signals,
                true,
            )
            .await;
            wall(&dir)
        })
    };
    // Interleaved repeats; the medians are compared.
    let reps = if quick { 1 } else { 3 };
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        a.extend(headless());
        b.extend(with_tui());
    }
    let _ = std::fs::remove_dir_all(&root);
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied()
    };
    if let (Some(a), Some(b)) = (median(&mut a), median(&mut b)) {
        let _ = writeln!(
            out,
            "\ntraining throughput, relu-gd-eta0.1, {steps} steps, measurement every 500 steps, \
             median of {reps}: headless {:.0} steps/s, with the workbench drawing every frame \
             {:.0} steps/s (the workbench costs {:.1}% of the throughput; target: within 3%)",
            steps as f64 / a,
            steps as f64 / b,
            (1.0 - a / b) * 100.0
        );
    }
}

/// The whole report.
pub fn report(quick: bool) -> String {
    let mut out = String::new();
    for exp in experiments::all() {
        exp.bench(quick, &mut out);
    }
    manager_overhead(quick, &mut out);
    frame_render(quick, &mut out);
    tui_overhead(quick, &mut out);
    out
}

/// The training steps `scripts/compare-pytorch.py` times against PyTorch, one JSON object per
/// line (`{"case": ..., "ms_per_step": ...}`), on the CPU; matrix products use `threads`
/// threads (0: all cores).
pub fn torch_cases(threads: usize) -> String {
    let mut out = String::new();
    let mut pool = rayon::ThreadPoolBuilder::new();
    if threads > 0 {
        pool = pool.num_threads(threads);
    }
    let sae_ms = match pool.build() {
        Ok(pool) => pool.install(|| crate::experiments::sae::bench::topk_step_ms(50)),
        Err(_) => crate::experiments::sae::bench::topk_step_ms(50),
    };
    let cases: Vec<(&str, f64)> = vec![
        ("sae-topk-d32-m192-k8-b256", sae_ms),
        (
            "mlp-784-256-10-b128",
            crate::nn::models::mlp::time_mlp_step(threads, 50),
        ),
    ];
    for (case, ms) in cases {
        let _ = writeln!(
            out,
            "{}",
            serde_json::json!({"case": case, "ms_per_step": ms})
        );
    }
    out
}

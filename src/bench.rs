//! Speed figures (printed, never asserted): training steps per second for each arm of
//! `sgd-stability`, the cost of one Hutchinson estimate in gradient evaluations per probe, and the
//! run manager's overhead per metric point. `reglab bench` and `cargo bench` print the same.

use std::fmt::Write as _;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use dfdx::prelude::Cpu;
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::experiments::sae::model::{Sae, Variant};
use crate::experiments::stability::data;
use crate::experiments::stability::models::{Batch, Model};
use crate::experiments::{self, MemorySink, RunContext};
use crate::metrics::hessian::hutchinson_trace;
use crate::nn::curvature::{fd_hvp, DeviceSpace};
use crate::nn::{ParamStore, ParamVec};
use crate::params::{Override, Params};
use crate::presets;

fn set(k: &str, v: impl ToString) -> Override {
    Override {
        key: k.into(),
        value: v.to_string(),
    }
}

/// Wall seconds of one run of `params` with measurements only at the start and the end.
fn run_seconds(params: &Params, seed: u64) -> Result<f64, String> {
    let exp = experiments::find("sgd-stability").ok_or("no sgd-stability experiment")?;
    let stop = AtomicBool::new(false);
    let mut sink = MemorySink::default();
    let mut ctx = RunContext::new(params, seed, None, &mut sink, &stop);
    let t = Instant::now();
    let r = exp.run(&mut ctx);
    if r.is_err() {
        return Err(crate::experiments::RunStatus::from_result(&r).describe());
    }
    Ok(t.elapsed().as_secs_f64())
}

/// Training steps per second of every arm: the difference of runs of S and 2S steps, so the two
/// measurements (and set-up) cancel out.
fn steps_per_second(quick: bool, out: &mut String) {
    let steps = if quick { 2_000 } else { 20_000 };
    let Some(preset) = presets::load_all(&[])
        .ok()
        .and_then(|p| p.into_iter().find(|p| p.id == "sgd-stability"))
    else {
        out.push_str("sgd-stability preset not found\n");
        return;
    };
    let exp = experiments::find("sgd-stability").unwrap();
    let specs = exp.params();
    let _ = writeln!(
        out,
        "training steps per second, sgd-stability arms ({steps} vs {} steps, seed 0, one thread):",
        2 * steps
    );
    let _ = writeln!(out, "  {:<22} {:>12} {:>14}", "arm", "steps/s", "us/step");
    for arm in &preset.arms {
        let timed = |n: usize| -> Result<f64, String> {
            let mut p = arm.params.clone();
            p.apply_overrides(
                &specs,
                &[
                    set("steps", n),
                    set("log_every", n),
                    set("stop_loss", 0),
                    set("final_probes", 4),
                    set("lanczos_iters", 2),
                ],
            )?;
            run_seconds(&p, 0)
        };
        match (timed(steps), timed(2 * steps)) {
            (Ok(a), Ok(b)) if b > a => {
                let per_step = (b - a) / steps as f64;
                let _ = writeln!(
                    out,
                    "  {:<22} {:>12.0} {:>14.2}",
                    arm.name,
                    1.0 / per_step,
                    per_step * 1e6
                );
            }
            (Err(e), _) | (_, Err(e)) => {
                let _ = writeln!(out, "  {:<22} {:>12} ({e})", arm.name, "-");
            }
            _ => {
                let _ = writeln!(out, "  {:<22} {:>12} (too fast to time)", arm.name, "-");
            }
        }
    }
}

/// Gradient evaluations and time per Hutchinson probe on the preset's two models.
fn hutchinson_cost(quick: bool, out: &mut String) {
    let probes = if quick { 50 } else { 500 };
    let dev = Cpu::default();
    let mut rng = StdRng::seed_from_u64(0);
    out.push_str("\nHutchinson trace estimate (central-difference HVPs of dfdx gradients, f64):\n");
    let cases = [
        ("relu d=5 m=20, n=16", Model::Relu { dim: 5, width: 20 }, 16),
        ("diagonal d=40, n=20", Model::Diagonal { dim: 40 }, 20),
    ];
    for (name, model, n) in cases {
        let dim = match model {
            Model::Relu { dim, .. } | Model::Diagonal { dim } => dim,
        };
        let (train, _) = data::relu_teacher(dim, 2, n, 1, &mut rng);
        let batch = Batch::from_dataset(&dev, &train, None);
        let theta: Vec<f64> = (0..model.num_params())
            .map(|i| ((i * 37 % 11) as f64 - 5.0) * 0.1)
            .collect();
        let mut store = model.store(&dev, &theta);
        let space = DeviceSpace::of(&store);
        let t0 = Instant::now();
        let _ = model.gradient(&store, &batch);
        let grad_s = t0.elapsed().as_secs_f64();
        let mut evals = 0usize;
        let mut grad = |s: &ParamStore<f64, Cpu>| {
            evals += 1;
            model.gradient(s, &batch)
        };
        let t = Instant::now();
        let mut hvp = |v: &ParamVec<f64, Cpu>| fd_hvp(&mut store, &mut grad, v, 1e-2);
        let est = hutchinson_trace(&space, &mut hvp, probes, &mut rng);
        let secs = t.elapsed().as_secs_f64();
        let _ = writeln!(
            out,
            "  {name}: {:.2} gradient evaluations per probe (floor 2), {:.1} us per probe, \
             one full-batch gradient {:.1} us; trace {:.3} +- {:.3} from {probes} probes",
            evals as f64 / probes as f64,
            secs / probes as f64 * 1e6,
            grad_s * 1e6,
            est.value,
            est.std_err
        );
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

/// Tokens per second of every vsae arm, and the cost of dead-feature tracking relative to one
/// training step.
fn sae_throughput(quick: bool, out: &mut String) {
    use crate::metrics::dead_features::DeadFeatureTracker;

    let Some(preset) = presets::load_all(&[])
        .ok()
        .and_then(|p| p.into_iter().find(|p| p.id == "vsae"))
    else {
        return;
    };
    let exp = experiments::find("vsae").unwrap();
    let specs = exp.params();
    let steps = if quick { 50 } else { 300 };
    let _ = writeln!(
        out,
        "\nvsae: tokens per second per arm ({steps} vs {} steps, seed 0, one thread):",
        2 * steps
    );
    for arm in &preset.arms {
        let timed = |n: usize| -> Result<f64, String> {
            let mut p = arm.params.clone();
            p.apply_overrides(
                &specs,
                &[set("steps", n), set("log_every", n), set("mlp_steps", 1)],
            )?;
            let stop = AtomicBool::new(false);
            let mut sink = MemorySink::default();
            let mut ctx = RunContext::new(&p, 0, None, &mut sink, &stop);
            let t = Instant::now();
            exp.run(&mut ctx).map_err(|e| format!("{e:?}"))?;
            Ok(t.elapsed().as_secs_f64())
        };
        let batch = arm.params.usize("batch") as f64;
        match (timed(steps), timed(2 * steps)) {
            (Ok(a), Ok(b)) if b > a => {
                let _ = writeln!(
                    out,
                    "  {:<20} {:>10.0} tokens/s  ({:.2} ms/step)",
                    arm.name,
                    steps as f64 * batch / (b - a),
                    (b - a) / steps as f64 * 1e3
                );
            }
            _ => {
                let _ = writeln!(out, "  {:<20} (could not be timed)", arm.name);
            }
        }
    }
    // Tracking cost against a TopK step at the preset's size.
    let reps = if quick { 20 } else { 200 };
    let step_s = sae_topk_step_ms(reps) / 1e3;
    let (m, b) = (192, 256);
    let last: Vec<f32> = (0..m).map(|j| (j % 7) as f32).collect();
    let mut tracker = DeadFeatureTracker::new(m, 25_600);
    let t = Instant::now();
    for _ in 0..reps {
        tracker.observe_last_rows(std::hint::black_box(&last), b);
        std::hint::black_box(tracker.dead_fraction());
    }
    let track_s = t.elapsed().as_secs_f64() / reps as f64;
    let _ = writeln!(
        out,
        "  dead-feature tracking: {:.1} us per batch of {b} tokens x {m} latents, {:.2}% of a \
         TopK training step ({:.2} ms; target under 5%)",
        track_s * 1e6,
        track_s / step_s * 100.0,
        step_s * 1e3
    );
}

/// NFE, wall time per prediction and training speed of every local-reg-node arm.
fn node_costs(quick: bool, out: &mut String) {
    let Some(preset) = presets::load_all(&[])
        .ok()
        .and_then(|p| p.into_iter().find(|p| p.id == "local-reg-node"))
    else {
        return;
    };
    let exp = experiments::find("local-reg-node").unwrap();
    let specs = exp.params();
    let _ = writeln!(
        out,
        "\nlocal-reg-node: per arm after training (seed 0{}):",
        if quick {
            ", 50 steps"
        } else {
            ", the preset's steps"
        }
    );
    let _ = writeln!(
        out,
        "  {:<14} {:>9} {:>16} {:>14} {:>10}",
        "arm", "test NFE", "us/prediction", "train steps/s", "accuracy"
    );
    for arm in &preset.arms {
        let mut p = arm.params.clone();
        if quick && p.apply_overrides(&specs, &[set("steps", 50)]).is_err() {
            continue;
        }
        let stop = AtomicBool::new(false);
        let mut sink = MemorySink::default();
        let mut ctx = RunContext::new(&p, 0, None, &mut sink, &stop);
        match exp.run(&mut ctx) {
            Ok(end) => {
                let v = |k: &str| end.final_values.get(k).copied().unwrap_or(f64::NAN);
                let score = if v("test_acc").is_finite() {
                    format!("{:.4}", v("test_acc"))
                } else {
                    format!("mse {:.4}", v("test_mse"))
                };
                let _ = writeln!(
                    out,
                    "  {:<14} {:>9.0} {:>16.1} {:>14.0} {:>10}",
                    arm.name,
                    v("nfe_test"),
                    v("us_per_prediction"),
                    1e3 / v("step_ms"),
                    score
                );
            }
            Err(e) => {
                let _ = writeln!(out, "  {:<14} ({e:?})", arm.name);
            }
        }
    }
}

/// The whole report.
pub fn report(quick: bool) -> String {
    let mut out = String::new();
    steps_per_second(quick, &mut out);
    sae_throughput(quick, &mut out);
    node_costs(quick, &mut out);
    hutchinson_cost(quick, &mut out);
    manager_overhead(quick, &mut out);
    frame_render(quick, &mut out);
    tui_overhead(quick, &mut out);
    out
}

/// Milliseconds per TopK SAE training step at the vsae preset's size (d 32, m 192, k 8,
/// batch 256, Adam, decoder renormalized): forward, TopK, backward, update, on the CPU.
pub fn sae_topk_step_ms(reps: usize) -> f64 {
    use crate::nn::{Optimizer, Rule};
    let dev = Cpu::default();
    let mut rng = StdRng::seed_from_u64(0);
    let (d, m, k, b) = (32, 192, 8, 256);
    let mut sae = Sae::new(&dev, d, m, k, Variant::TopK, &mut rng);
    let mut opt = Optimizer::new(Rule::adam(), 1e-3);
    let x: Vec<f32> = (0..b * d)
        .map(|_| rand_distr::Distribution::<f32>::sample(&rand_distr::StandardNormal, &mut rng))
        .collect();
    let mut step = |sae: &mut Sae<Cpu>| {
        let mut out = sae.train_step(&x, b, None, &mut rng);
        opt.step(&mut sae.store, &mut out.grads)
            .expect("cpu update");
        sae.normalize_decoder();
    };
    for _ in 0..5 {
        step(&mut sae);
    }
    let mut times: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..reps.max(1) {
                step(&mut sae);
            }
            t.elapsed().as_secs_f64() * 1e3 / reps.max(1) as f64
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[2]
}

/// The training steps `scripts/compare-pytorch.py` times against PyTorch, one JSON object per
/// line (`{"case": ..., "ms_per_step": ...}`), on the CPU with dfdx's threads.
pub fn torch_cases() -> String {
    let mut out = String::new();
    let cases: Vec<(&str, f64)> = vec![
        ("sae-topk-d32-m192-k8-b256", sae_topk_step_ms(50)),
        (
            "mlp-784-256-10-b128",
            crate::nn::models::mlp::time_mlp_step(0, 50),
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

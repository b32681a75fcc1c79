//! The terminal workbench: screens rendered on ratatui's TestBackend at fixed sizes, every size
//! without a panic, and the app loop driven by key events on a small configuration.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use tokio::sync::mpsc;

use reglab::engine::store::MetricPoint;
use reglab::engine::{EngineEvent, RunInfo, RunManager, RunStore};
use reglab::experiments::RunStatus;
use reglab::params::Params;
use reglab::presets;
use reglab::tui::app::{Action, App, Overlay, Panel, QuitMode};
use reglab::tui::view::{self, MIN_HEIGHT, MIN_WIDTH};
use reglab::tui::{run_loop, LoopExit};
use reglab::verdict::{Check, Outcome, Verdict};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tui_presets")
}

fn app(root: &Path) -> App {
    let presets = presets::load_all(&[fixtures()]).unwrap();
    App::new(presets, RunStore::new(root))
}

/// An app whose built-in presets lack `missing`: those papers show as not built.
fn app_missing(root: &Path, missing: &[&str]) -> App {
    let mut presets = presets::load_all(&[fixtures()]).unwrap();
    presets.retain(|p| !missing.contains(&p.id.as_str()));
    App::new(presets, RunStore::new(root))
}

fn screen(app: &App, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| view::render(app, f)).unwrap();
    let buf = t.backend().buffer().clone();
    let mut out = String::new();
    for y in 0..buf.area.height {
        for x in 0..buf.area.width {
            out.push_str(buf[(x, y)].symbol());
        }
        out.push('\n');
    }
    out
}

fn key(c: KeyCode) -> KeyEvent {
    KeyEvent::new(c, KeyModifiers::NONE)
}

/// An app with two finished runs of the built-in preset and a verdict, from synthetic events.
fn app_with_data(root: &Path) -> App {
    let mut a = app(root);
    let p = a.presets[0].clone();
    let launch_dir = root.join("sgd-stability-x");
    let infos: Vec<RunInfo> = ["diag-sgd1-eta0.035", "diag-gd-eta0.12"]
        .iter()
        .enumerate()
        .map(|(i, arm)| RunInfo {
            id: 10 + i as u64,
            launch: 1,
            preset: p.id.clone(),
            arm: arm.to_string(),
            seed: 0,
            params: Params::default(),
            total_steps: 1000,
            dir: launch_dir.join(format!("{arm}-s0")),
            device: Default::default(),
        })
        .collect();
    a.add_launch(&p.id, 1, &launch_dir, &infos);
    for info in &infos {
        a.apply(EngineEvent::Started { run: info.id });
        for k in 0..=10u64 {
            let step = k * 100;
            let metrics: BTreeMap<String, f64> = [
                ("train_loss", 1.0 / (1.0 + k as f64)),
                ("test_loss", 0.5),
                ("hessian_trace", 80.0 - 5.0 * k as f64),
                ("hessian_trace_se", 1.0),
                ("gn_trace", 79.0 - 5.0 * k as f64),
                ("lambda_max", 12.0),
                ("two_over_eta", 57.1),
                ("param_norm", 5.0),
            ]
            .into_iter()
            .map(|(n, v)| (n.to_string(), v))
            .collect();
            a.apply(EngineEvent::Metrics {
                run: info.id,
                point: MetricPoint {
                    step,
                    elapsed_s: k as f64 * 0.01,
                    metrics,
                },
            });
        }
    }
    a.apply(EngineEvent::Ended {
        run: infos[0].id,
        status: RunStatus::Completed { steps: 1000 },
        final_values: BTreeMap::new(),
    });
    a
}

#[test]
fn picker_lists_presets_with_status_and_details() {
    let root = tempfile::tempdir().unwrap();
    let a = app(root.path());
    // Tall enough for the whole roadmap (the list scrolls otherwise).
    let s = screen(&a, 120, 80);
    assert!(
        s.contains("1 sgd-stability") && s.contains("never run"),
        "{s}"
    );
    assert!(
        numbered_line(&s, "vsae").is_some()
            && s.contains("short-stability")
            && s.contains("slow-stability"),
        "{s}"
    );
    assert!(s.contains("Claim") && s.contains("Arms (23)"), "{s}");
    assert!(s.contains("Lei Wu (2023)"), "{s}");
}

#[test]
fn dashboard_charts_the_focused_metric_with_reference_and_rows_per_run() {
    let root = tempfile::tempdir().unwrap();
    let mut a = app_with_data(root.path());
    a.focus = Panel::Dashboard;
    let s = screen(&a, 140, 40);
    assert!(s.contains("train loss (1/7)"), "{s}");
    assert!(
        s.contains("diag-sgd1-eta0.035 s0") && s.contains("diag-gd-eta0.12 s0"),
        "{s}"
    );
    assert!(s.contains("██████████ 100%"), "{s}");
    assert!(s.contains("running"), "{s}");
    // Right arrow moves to the Hessian trace, drawn with 2/eta as a reference line.
    a.on_key(key(KeyCode::Right));
    a.on_key(key(KeyCode::Right));
    let s = screen(&a, 140, 40);
    assert!(
        s.contains("Hessian trace (3/7)") && s.contains("dotted: two_over_eta"),
        "{s}"
    );
    assert!(s.contains("hessian_trace"), "{s}");
    a.on_key(key(KeyCode::Char('l')));
    a.on_key(key(KeyCode::Char('+')));
    let s = screen(&a, 140, 40);
    assert!(
        s.contains("log scale") && s.contains("smoothing 0.3"),
        "{s}"
    );
}

#[test]
fn verdict_panel_shows_claim_and_each_check() {
    let root = tempfile::tempdir().unwrap();
    let mut a = app_with_data(root.path());
    let check = |id: &str, outcome| Check {
        id: id.into(),
        statement: format!("statement {id}"),
        outcome,
        evidence: vec![format!("numbers of {id}")],
        ..Check::default()
    };
    a.apply(EngineEvent::LaunchEnded {
        launch: 1,
        verdict: Verdict {
            preset: "sgd-stability".into(),
            claim: "the claim".into(),
            checks: vec![check("i", Outcome::Holds), check("iii", Outcome::Fails)],
        },
    });
    a.focus = Panel::Verdict;
    let s = screen(&a, 120, 30);
    assert!(s.contains("Overall: the claim FAILS"), "{s}");
    assert!(s.contains("(i) HOLDS") && s.contains("statement i"), "{s}");
    assert!(
        s.contains("(iii) FAILS") && s.contains("numbers of iii"),
        "{s}"
    );
    // Per-arm bars of the experiment's verdict metric: the trace over 2/eta.
    assert!(s.contains("Per arm: hessian_trace / two_over_eta"), "{s}");
    assert!(s.contains("diag-sgd1-eta0.035") && s.contains("█"), "{s}");
    // One run is still going: the picker says so, then shows the verdict once it ends.
    assert!(a.preset_status("sgd-stability").starts_with("running"));
    a.apply(EngineEvent::Ended {
        run: 11,
        status: RunStatus::Completed { steps: 1000 },
        final_values: BTreeMap::new(),
    });
    assert_eq!(a.preset_status("sgd-stability"), "last: fails");
}

#[test]
fn verdict_panel_plots_every_arm_in_the_experiments_plane() {
    let root = tempfile::tempdir().unwrap();
    let mut a = app(root.path());
    let i = a
        .presets
        .iter()
        .position(|p| p.id == "quantnas-sr")
        .unwrap();
    let p = a.presets[i].clone();
    a.select_preset(i);
    let dir = root.path().join("quantnas-sr-x");
    let arms = [("fixed-4bit", 2.5, 17.4), ("qnas-qn-mu0", 6.6, 17.3)];
    let infos: Vec<RunInfo> = arms
        .iter()
        .enumerate()
        .map(|(k, (arm, _, _))| RunInfo {
            id: 40 + k as u64,
            launch: 3,
            preset: p.id.clone(),
            arm: arm.to_string(),
            seed: 0,
            params: Params::default(),
            total_steps: 10,
            dir: dir.join(format!("{arm}-s0")),
            device: Default::default(),
        })
        .collect();
    a.add_launch(&p.id, 3, &dir, &infos);
    for (info, (_, bitops, psnr)) in infos.iter().zip(arms) {
        a.apply(EngineEvent::Started { run: info.id });
        a.apply(EngineEvent::Metrics {
            run: info.id,
            point: MetricPoint {
                step: 10,
                elapsed_s: 1.0,
                metrics: [("bitops", bitops), ("psnr_test", psnr)]
                    .into_iter()
                    .map(|(n, v)| (n.to_string(), v))
                    .collect(),
            },
        });
        a.apply(EngineEvent::Ended {
            run: info.id,
            status: RunStatus::Completed { steps: 10 },
            final_values: BTreeMap::new(),
        });
    }
    a.apply(EngineEvent::LaunchEnded {
        launch: 3,
        verdict: Verdict {
            preset: p.id.clone(),
            claim: "the claim".into(),
            checks: vec![],
        },
    });
    a.focus = Panel::Verdict;
    let s = screen(&a, 140, 44);
    assert!(
        s.contains("Per arm: psnr_test against bitops, log scale"),
        "{s}"
    );
    // Each arm is a legend entry; the x labels are BitOps (not their log).
    assert!(s.contains("fixed-4bit") && s.contains("qnas-qn-mu0"), "{s}");
    assert!(s.contains("bitops") && s.contains("psnr_test"), "{s}");
    // Too short a panel keeps the text only; no size panics.
    for (w, h) in [(80, 24), (60, 20), (200, 60)] {
        screen(&a, w, h);
    }
}

#[test]
fn help_overlay_lists_every_key() {
    use reglab::tui::keymap::{help_rows, lookup, KEYMAP};
    let root = tempfile::tempdir().unwrap();
    let mut a = app(root.path());
    a.on_key(key(KeyCode::Char('?')));
    assert_eq!(a.overlay, Overlay::Help);
    let s = screen(&a, 120, 30);
    for (k, _) in help_rows() {
        assert!(s.contains(k), "{k} missing:\n{s}");
    }
    a.on_key(key(KeyCode::Esc));
    assert_eq!(a.overlay, Overlay::None);
    // The handler accepts exactly the table's keys: any other key changes nothing.
    let mut others: Vec<KeyCode> = (b' '..=b'~').map(|c| KeyCode::Char(c as char)).collect();
    others.extend([
        KeyCode::Home,
        KeyCode::End,
        KeyCode::PageUp,
        KeyCode::PageDown,
        KeyCode::Delete,
        KeyCode::Insert,
        KeyCode::Backspace,
        KeyCode::F(1),
    ]);
    for k in others.into_iter().filter(|k| lookup(*k).is_none()) {
        let mut b = app_with_data(root.path());
        let before = (
            b.focus,
            b.overlay.clone(),
            b.selected,
            b.message.clone(),
            b.log_scale,
        );
        assert!(b.on_key(key(k)).is_none(), "{k:?} acted");
        let after = (
            b.focus,
            b.overlay.clone(),
            b.selected,
            b.message.clone(),
            b.log_scale,
        );
        assert_eq!(before, after, "{k:?} is handled but not in the key table");
    }
    // Every bound key is in the help, and the README lists the same keys.
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    for b in KEYMAP {
        assert!(
            help_rows().iter().any(|(l, _)| *l == b.label),
            "{}",
            b.label
        );
    }
    for (k, _) in help_rows() {
        assert!(readme.contains(&format!("| {k} |")), "README lacks key {k}");
    }
}

#[test]
fn too_small_message_and_no_panic_at_any_size() {
    let root = tempfile::tempdir().unwrap();
    let mut a = app_with_data(root.path());
    let s = screen(&a, MIN_WIDTH - 1, MIN_HEIGHT + 5);
    assert!(s.contains("terminal too small"), "{s}");
    let s = screen(&a, MIN_WIDTH, MIN_HEIGHT);
    assert!(!s.contains("terminal too small"), "{s}");
    let overlays = [
        Overlay::None,
        Overlay::Help,
        Overlay::Quit,
        Overlay::Arms {
            checked: vec![true; 20],
            cursor: 19,
        },
    ];
    for panel in Panel::ALL {
        for o in &overlays {
            a.focus = panel;
            a.overlay = o.clone();
            for w in [1u16, 2, 10, 59, 60, 61, 80, 133, 200] {
                for h in [1u16, 2, 5, 14, 15, 16, 24, 50] {
                    screen(&a, w, h);
                }
            }
        }
    }
    // The picker while a filter is typed, with and without matches.
    a.overlay = Overlay::None;
    a.focus = Panel::Presets;
    for filter in ["", "vsae", "no such paper"] {
        a.filtering = true;
        a.filter = filter.to_string();
        for w in [1u16, 10, 59, 60, 61, 133] {
            for h in [1u16, 5, 15, 16, 50] {
                screen(&a, w, h);
            }
        }
    }
    a.filtering = false;
    a.filter.clear();
    a.on_key(key(KeyCode::Char('e')));
    assert!(matches!(a.overlay, Overlay::Params { .. }));
    for (w, h) in [(60, 15), (30, 8), (200, 60)] {
        screen(&a, w, h);
    }
}

#[test]
fn quitting_with_active_runs_asks_first() {
    let root = tempfile::tempdir().unwrap();
    let mut a = app_with_data(root.path());
    assert!(a.active_runs() > 0);
    assert_eq!(a.on_key(key(KeyCode::Char('q'))), None);
    assert_eq!(a.overlay, Overlay::Quit);
    let s = screen(&a, 100, 30);
    assert!(s.contains("keep them running headless"), "{s}");
    assert_eq!(a.on_key(key(KeyCode::Esc)), None);
    assert_eq!(a.overlay, Overlay::None);
    a.on_key(key(KeyCode::Char('q')));
    assert_eq!(
        a.on_key(key(KeyCode::Char('k'))),
        Some(Action::Quit(QuitMode::KeepRunning))
    );
    a.overlay = Overlay::None;
    a.on_key(key(KeyCode::Char('q')));
    assert_eq!(
        a.on_key(key(KeyCode::Char('s'))),
        Some(Action::Quit(QuitMode::StopRuns))
    );
    // Ctrl-C stops the runs and quits at once.
    a.overlay = Overlay::None;
    assert_eq!(
        a.on_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
        Some(Action::Quit(QuitMode::StopRuns))
    );
}

#[test]
fn parameter_editor_validates_like_set() {
    let root = tempfile::tempdir().unwrap();
    let mut a = app(root.path());
    a.on_key(key(KeyCode::Char('e')));
    let Overlay::Params { fields, .. } = a.overlay.clone() else {
        panic!("no editor")
    };
    let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(&names[..4], &["eta", "steps", "batch", "seeds"]);
    // Type a bad learning rate: the same message as --set.
    for c in "fast".chars() {
        a.on_key(key(KeyCode::Char(c)));
    }
    a.on_key(key(KeyCode::Enter));
    let Overlay::Params { error, .. } = a.overlay.clone() else {
        panic!("editor closed on bad input")
    };
    let e = error.unwrap();
    assert!(
        e.contains("--set eta=fast") && e.contains("must be a number"),
        "{e}"
    );
    for _ in 0..4 {
        a.on_key(key(KeyCode::Backspace));
    }
    for c in "0.02".chars() {
        a.on_key(key(KeyCode::Char(c)));
    }
    a.on_key(key(KeyCode::Down));
    for c in "500".chars() {
        a.on_key(key(KeyCode::Char(c)));
    }
    a.on_key(key(KeyCode::Enter));
    assert_eq!(a.overlay, Overlay::None);
    let staged = &a.staged["sgd-stability"];
    assert_eq!(staged.len(), 2);
    assert_eq!(
        (staged[0].key.as_str(), staged[0].value.as_str()),
        ("eta", "0.02")
    );
    assert_eq!(
        (staged[1].key.as_str(), staged[1].value.as_str()),
        ("steps", "500")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_loop_launches_streams_stops_and_quits_from_keys() {
    let root = tempfile::tempdir().unwrap();
    let (manager, mut engine) = RunManager::new(
        RunStore::new(root.path()),
        2,
        tokio::runtime::Handle::current(),
    );
    let mut a = app(root.path());
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
    let slow = a
        .presets
        .iter()
        .position(|p| p.id == "slow-stability")
        .unwrap();
    // The keys that select the slow preset: a filter on its id (digits reach only 1-9).
    let select: Vec<KeyCode> = std::iter::once('/')
        .chain("slow-stability".chars())
        .map(KeyCode::Char)
        .chain([KeyCode::Enter])
        .collect();
    let (keys, mut input) = mpsc::unbounded_channel();
    let (_sig_tx, mut signals) = mpsc::unbounded_channel();
    let feeder = tokio::spawn(async move {
        let press = |c: KeyCode| Event::Key(key(c));
        // Select the slow preset, launch, look at the dashboard.
        for k in select {
            keys.send(press(k)).unwrap();
        }
        keys.send(press(KeyCode::Enter)).unwrap();
        keys.send(press(KeyCode::Tab)).unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        keys.send(press(KeyCode::Char('S'))).unwrap();
        tokio::time::sleep(Duration::from_millis(1000)).await;
        keys.send(press(KeyCode::Char('q'))).unwrap();
        // If a run were still active, q opens the dialog: s stops and quits.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _ = keys.send(press(KeyCode::Char('s')));
        keys
    });
    let exit = tokio::time::timeout(
        Duration::from_secs(30),
        run_loop(
            &mut terminal,
            &mut a,
            &manager,
            &mut input,
            &mut engine,
            &mut signals,
        ),
    )
    .await
    .expect("the loop ends")
    .unwrap();
    let _keys = feeder.await.unwrap();
    assert!(
        matches!(
            exit,
            LoopExit::Quit(QuitMode::Now) | LoopExit::Quit(QuitMode::StopRuns)
        ),
        "{exit:?}"
    );
    assert_eq!(a.selected, slow);
    let own: Vec<_> = a
        .runs
        .iter()
        .filter(|r| r.preset == "slow-stability")
        .collect();
    assert_eq!(own.len(), 2);
    for r in &own {
        assert!(
            r.series.get("train_loss").is_some_and(|h| h.total() >= 1),
            "{}",
            r.label()
        );
        assert!(
            matches!(
                r.phase,
                reglab::tui::runs::Phase::Ended(RunStatus::Stopped { .. })
            ),
            "{:?}",
            r.phase
        );
    }
    // The screen was drawn with live data.
    let buf = terminal.backend().buffer().clone();
    let text: String = buf.content().iter().map(|c| c.symbol()).collect();
    assert!(text.contains("relu-gd s0"), "{text}");
}

#[test]
fn relative_nfe_is_derived_live_from_the_baseline_arm() {
    let root = tempfile::tempdir().unwrap();
    let mut a = app(root.path());
    let idx = a
        .presets
        .iter()
        .position(|p| p.id == "local-reg-node")
        .unwrap();
    a.select_preset(idx);
    let p = a.presets[idx].clone();
    let launch_dir = root.path().join("local-reg-node-x");
    let infos: Vec<RunInfo> = ["digits-none", "digits-local"]
        .iter()
        .enumerate()
        .map(|(i, arm)| RunInfo {
            id: 20 + i as u64,
            launch: 2,
            preset: p.id.clone(),
            arm: arm.to_string(),
            seed: 0,
            params: p.arm(arm).unwrap().params.clone(),
            total_steps: 100,
            dir: launch_dir.join(format!("{arm}-s0")),
            device: Default::default(),
        })
        .collect();
    a.add_launch(&p.id, 2, &launch_dir, &infos);
    for (info, nfe) in infos.iter().zip([50.0, 26.0]) {
        for step in [0u64, 50] {
            a.apply(EngineEvent::Metrics {
                run: info.id,
                point: MetricPoint {
                    step,
                    elapsed_s: step as f64,
                    metrics: [("nfe_test".to_string(), nfe)].into_iter().collect(),
                },
            });
        }
    }
    let local = a.runs.iter().position(|r| r.arm == "digits-local").unwrap();
    let rel = a.series_points(local, "nfe_test_relative").unwrap();
    assert_eq!(rel, vec![(0.0, 0.52), (50.0, 0.52)]);
    let names: Vec<&str> = a.chart_metrics().iter().map(|m| m.name).collect();
    let i = names
        .iter()
        .position(|n| *n == "nfe_test_relative")
        .unwrap();
    a.focus = Panel::Dashboard;
    a.metric_idx = i;
    let s = screen(&a, 140, 40);
    assert!(
        s.contains("test NFE relative to the unregularized arm"),
        "{s}"
    );
    assert!(s.contains("0.5200"), "{s}");
}

#[test]
fn many_runs_are_charted_as_one_mean_line_per_arm() {
    let root = tempfile::tempdir().unwrap();
    let mut a = app(root.path());
    let p = a.presets[0].clone();
    let launch_dir = root.path().join("sgd-stability-many");
    let arms = ["diag-gd-eta0.01", "diag-gd-eta0.04", "diag-gd-eta0.12"];
    let infos: Vec<RunInfo> = (0..15u64)
        .map(|i| {
            let arm = arms[(i / 5) as usize];
            RunInfo {
                id: 100 + i,
                launch: 3,
                preset: p.id.clone(),
                arm: arm.to_string(),
                seed: i % 5,
                params: Params::default(),
                total_steps: 10,
                dir: launch_dir.join(format!("{arm}-s{}", i % 5)),
                device: Default::default(),
            }
        })
        .collect();
    a.add_launch(&p.id, 3, &launch_dir, &infos);
    for info in &infos {
        a.apply(EngineEvent::Metrics {
            run: info.id,
            point: MetricPoint {
                step: 0,
                elapsed_s: 0.0,
                metrics: [("train_loss".to_string(), 1.0 + info.seed as f64)]
                    .into_iter()
                    .collect(),
            },
        });
    }
    a.focus = Panel::Dashboard;
    let s = screen(&a, 140, 50);
    assert!(
        s.contains("mean and min-max band over seeds per arm"),
        "{s}"
    );
    // The legend names the three arms (the table below still lists every run).
    for arm in arms {
        assert!(
            s.contains(&format!("│{arm}│")),
            "{arm} missing from the legend:\n{s}"
        );
    }
}

/// The line of `s` listing preset `id` under some number (the numbers shift as presets are
/// added to a theme listed before it).
fn numbered_line(s: &str, id: &str) -> Option<usize> {
    s.lines()
        .position(|l| (1..=40).any(|n| l.contains(&format!("{n} {id}  "))))
}

/// The line of `s` holding `needle` (panics with the screen when absent).
fn line_of(s: &str, needle: &str) -> usize {
    s.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle} not on screen:\n{s}"))
}

#[test]
fn picker_groups_presets_by_theme_with_papers_not_built_dimmed() {
    let root = tempfile::tempdir().unwrap();
    let every = screen(&app(root.path()), 140, 64);
    let built = presets::builtin_files().len();
    assert!(
        every.contains(&format!("roadmap: {built} of 24 papers built")),
        "{every}"
    );
    // A built paper is a preset line (with its run status) under its theme.
    let rrcm = line_of(&every, "rrcm-smoothing  never run");
    assert!(line_of(&every, "generative models") < rrcm, "{every}");
    let quantnas = line_of(&every, "quantnas-sr  never run");
    assert!(
        line_of(&every, "sparse and compressed models") < quantnas,
        "{every}"
    );
    // Two papers without a preset, as before they are built (every other paper is built).
    let mut a = app_missing(root.path(), &["quantnas-sr", "rrcm-smoothing"]);
    let s = screen(&a, 140, 60);
    assert!(s.contains("roadmap: 22 of 24 papers built"), "{s}");
    // A theme header per group, in the roadmap's order, each preset under its theme.
    let sparse = line_of(&s, "sparse and compressed models");
    let supervised = line_of(&s, "supervised regularizers");
    let vsae = numbered_line(&s, "vsae").unwrap_or_else(|| panic!("vsae not listed:\n{s}"));
    assert!(sparse < vsae && vsae < supervised, "{s}");
    assert!(line_of(&s, "stability and curvature") < line_of(&s, "1 sgd-stability"));
    let odes = line_of(&s, "ODEs and probabilistic models");
    assert!(odes < line_of(&s, "local-reg-node  never run"), "{s}");
    // Papers not built yet are listed under their theme; presets off the roadmap come last.
    let quantnas = line_of(&s, "quantnas-sr");
    assert!(sparse < quantnas && quantnas < supervised, "{s}");
    assert!(!s.contains("quantnas-sr  never run"), "{s}");
    assert!(s.contains("rrcm-smoothing"), "{s}");
    assert!(line_of(&s, "other presets") < line_of(&s, "short-stability  never run"));
    // Papers not built are not selectable: Down goes from preset to preset.
    assert_eq!(a.preset().unwrap().id, "sgd-stability");
    a.on_key(key(KeyCode::Down));
    assert_eq!(a.preset().unwrap().id, "lr-batch-rmt");
    a.on_key(key(KeyCode::Down));
    assert_eq!(a.preset().unwrap().id, "layerwise-shuffle");
    a.on_key(key(KeyCode::Down));
    assert_eq!(a.preset().unwrap().id, "vsae");
    a.on_key(key(KeyCode::Down));
    let below = a.preset().unwrap().id.clone();
    assert_ne!(below, "vsae");
    assert!(
        line_of(&s, &format!("{below}  never run")) > vsae,
        "Down goes to the next built preset shown: {below}\n{s}"
    );
    a.on_key(key(KeyCode::Up));
    assert_eq!(a.preset().unwrap().id, "vsae");
    // 1-9 jump to the presets in the order shown (the one below vsae is the fifth).
    let number = number_of(&s, &below);
    assert_eq!(number, '5', "{s}");
    a.on_key(key(KeyCode::Char(number)));
    assert_eq!(a.preset().unwrap().id, below);
    a.on_key(key(KeyCode::Char('1')));
    assert_eq!(a.preset().unwrap().id, "sgd-stability");
}

/// The digit the picker shows before the built preset `id`.
fn number_of(s: &str, id: &str) -> char {
    let line = s
        .lines()
        .nth(line_of(s, &format!(" {id}  never run")))
        .unwrap();
    let before = line.split(&format!(" {id}  never run")).next().unwrap();
    before.trim_end().chars().last().unwrap()
}

fn type_str(a: &mut App, text: &str) {
    for c in text.chars() {
        assert!(a.on_key(key(KeyCode::Char(c))).is_none(), "{c} acted");
    }
}

#[test]
fn filter_narrows_the_picker_as_you_type() {
    let root = tempfile::tempdir().unwrap();
    let mut a = app_missing(root.path(), &["quantnas-sr", "rrcm-smoothing"]);
    a.focus = Panel::Runs;
    a.on_key(key(KeyCode::Char('/')));
    assert!(a.filtering);
    assert_eq!(a.focus, Panel::Presets);
    // Letters go to the filter, not to commands (q would quit, e would open the editor).
    type_str(&mut a, "Stab");
    assert_eq!(a.filter, "Stab");
    assert_eq!(a.overlay, Overlay::None);
    let s = screen(&a, 140, 40);
    assert!(s.contains("/Stab_"), "{s}");
    assert!(
        s.contains("sgd-stability")
            && s.contains("short-stability")
            && s.contains("slow-stability"),
        "{s}"
    );
    assert!(!s.contains("vsae") && !s.contains("local-reg-node"), "{s}");
    assert!(!s.contains("sparse and compressed models"), "{s}");
    // Backspace edits; a filter that matches nothing shows so and launches nothing.
    type_str(&mut a, "qx");
    let s = screen(&a, 140, 40);
    assert!(s.contains("nothing matches"), "{s}");
    a.on_key(key(KeyCode::Backspace));
    a.on_key(key(KeyCode::Backspace));
    assert_eq!(a.filter, "Stab");
    // Esc clears the filter and the whole list is back.
    a.on_key(key(KeyCode::Esc));
    assert!(!a.filtering && a.filter.is_empty());
    let s = screen(&a, 140, 80);
    assert!(
        numbered_line(&s, "vsae").is_some() && s.contains("local-reg-node  never run"),
        "{s}"
    );
    // An author's name filters; Enter keeps the filter and keys act again.
    a.on_key(key(KeyCode::Char('/')));
    type_str(&mut a, "baker");
    assert_eq!(a.preset().unwrap().id, "vsae");
    a.on_key(key(KeyCode::Enter));
    assert!(!a.filtering);
    assert_eq!(a.filter, "baker");
    let s = screen(&a, 140, 40);
    assert!(s.contains("1 vsae") && s.contains("filter: baker"), "{s}");
    assert!(!s.contains("sgd-stability"), "{s}");
    a.on_key(key(KeyCode::Char('1')));
    assert_eq!(a.preset().unwrap().id, "vsae");
    a.on_key(key(KeyCode::Down));
    assert_eq!(a.preset().unwrap().id, "vsae");
    a.on_key(key(KeyCode::Char('e')));
    assert!(matches!(a.overlay, Overlay::Params { .. }));
    a.on_key(key(KeyCode::Esc));
    a.on_key(key(KeyCode::Esc));
    assert!(a.filter.is_empty());
    let s = screen(&a, 140, 40);
    assert!(
        s.contains("1 sgd-stability") && numbered_line(&s, "vsae").is_some(),
        "{s}"
    );
    assert_eq!(a.preset().unwrap().id, "vsae");
    // A paper not built yet is found by its title.
    a.on_key(key(KeyCode::Char('/')));
    type_str(&mut a, "rrcm-smoothing");
    let s = screen(&a, 140, 40);
    assert!(
        s.contains("rrcm-smoothing") && s.contains("generative models"),
        "{s}"
    );
    assert!(a.on_key(key(KeyCode::Enter)).is_none());
    assert!(
        a.on_key(key(KeyCode::Enter)).is_none(),
        "launched a hidden preset"
    );
    assert!(a.message.contains("no preset matches"), "{}", a.message);
}

/// The selected picker line of the preset at `pos`: only 1-9 carry their digit; the narrowest
/// picker shows the first 20 characters of a line (long ids are cut).
fn picker_line(pos: usize, id: &str) -> String {
    if pos < 9 {
        format!("> {} {id}", pos + 1)
    } else {
        format!(">   {id}")
    }
    .chars()
    .take(20)
    .collect()
}

#[test]
fn picker_scrolls_with_the_cursor_at_a_small_height() {
    let root = tempfile::tempdir().unwrap();
    let mut a = app(root.path());
    let order: Vec<String> = a
        .picker_order()
        .iter()
        .map(|&i| a.presets[i].id.clone())
        .collect();
    assert!(order.len() >= 5);
    for (w, h) in [(MIN_WIDTH, MIN_HEIGHT), (80, 20)] {
        a.on_key(key(KeyCode::Char('1')));
        for step in 0..order.len() + 2 {
            let pos = step.min(order.len() - 1);
            assert_eq!(a.preset().unwrap().id, order[pos]);
            let s = screen(&a, w, h);
            let shown = picker_line(pos, &order[pos]);
            assert!(s.contains(&shown), "{shown} not visible at {w}x{h}:\n{s}");
            a.on_key(key(KeyCode::Down));
        }
        for pos in (0..order.len()).rev() {
            assert_eq!(a.preset().unwrap().id, order[pos]);
            let s = screen(&a, w, h);
            let shown = picker_line(pos, &order[pos]);
            assert!(s.contains(&shown), "{shown} not visible at {w}x{h}:\n{s}");
            a.on_key(key(KeyCode::Up));
        }
    }
    // The first preset's theme header comes back into view at the top.
    let s = screen(&a, MIN_WIDTH, MIN_HEIGHT);
    assert!(s.contains("stability and"), "{s}");
}

#[test]
fn header_counts_running_and_queued_runs_apart() {
    let root = tempfile::tempdir().unwrap();
    let mut a = app(root.path());
    let p = a.presets[0].clone();
    let dir = root.path().join("launch");
    let infos: Vec<RunInfo> = (0..3u64)
        .map(|i| RunInfo {
            id: 20 + i,
            launch: 2,
            preset: p.id.clone(),
            arm: format!("arm{i}"),
            seed: 0,
            params: Params::default(),
            total_steps: 100,
            dir: dir.join(format!("arm{i}-s0")),
            device: Default::default(),
        })
        .collect();
    a.add_launch(&p.id, 2, &dir, &infos);
    let header = |a: &App| screen(a, 140, 30).lines().next().unwrap().to_string();
    let h = header(&a);
    assert!(h.contains("3 queued") && !h.contains("running"), "{h}");
    assert_eq!(a.preset_status(&p.id), "queued (3)");
    a.apply(EngineEvent::Started { run: 20 });
    let h = header(&a);
    assert!(h.contains("1 running") && h.contains("2 queued"), "{h}");
    assert_eq!(a.preset_status(&p.id), "running (1), queued (2)");
    a.apply(EngineEvent::Started { run: 21 });
    a.apply(EngineEvent::Started { run: 22 });
    let h = header(&a);
    assert!(h.contains("3 running") && !h.contains("queued"), "{h}");
    a.apply(EngineEvent::Ended {
        run: 20,
        status: RunStatus::Completed { steps: 100 },
        final_values: BTreeMap::new(),
    });
    let h = header(&a);
    assert!(h.contains("2 running"), "{h}");
}

#[test]
fn the_verify_table_opens_from_the_runs_folder() {
    let root = tempfile::tempdir().unwrap();
    let mut a = app(root.path());
    // Without a verify folder: a message says how to make one.
    a.on_key(key(KeyCode::Char('V')));
    assert_eq!(a.overlay, Overlay::None);
    assert!(a.message.contains("reglab verify --quick"), "{}", a.message);
    let dir = root.path().join("verify-x");
    std::fs::create_dir_all(&dir).unwrap();
    let report = reglab::verify::VerifyReport {
        quick: true,
        rows: vec![reglab::verify::VerifyRow {
            preset: "sgd-stability".into(),
            paper: "The paper (Wu 2023)".into(),
            outcome: reglab::verdict::Outcome::Holds,
            decided_by: "(i) holds: trace 23.9 <= 2/eta = 400".into(),
            wall_s: 3.0,
            runs: 23,
            failed_runs: 0,
            launch_dir: dir.clone(),
        }],
        dir: dir.clone(),
    };
    std::fs::write(
        dir.join("verify.json"),
        serde_json::to_string(&report).unwrap(),
    )
    .unwrap();
    a.on_key(key(KeyCode::Char('V')));
    assert!(matches!(a.overlay, Overlay::Verify(_)));
    let s = screen(&a, 140, 30);
    assert!(
        s.contains("sgd-stability") && s.contains("HOLDS") && s.contains("trace 23.9"),
        "{s}"
    );
    a.on_key(key(KeyCode::Esc));
    assert_eq!(a.overlay, Overlay::None);
}

#[test]
fn g_toggles_a_mean_line_and_band_per_arm() {
    let root = tempfile::tempdir().unwrap();
    let mut a = app_with_data(root.path());
    a.focus = Panel::Dashboard;
    assert!(!screen(&a, 140, 40).contains("band over seeds"));
    a.on_key(key(KeyCode::Char('g')));
    let s = screen(&a, 140, 40);
    assert!(
        s.contains("mean and min-max band over seeds per arm"),
        "{s}"
    );
    a.on_key(key(KeyCode::Char('g')));
    assert!(!screen(&a, 140, 40).contains("band over seeds"));
}

#[test]
fn a_runs_pictures_are_drawn_beside_the_chart() {
    use reglab::metrics::picture::Picture;
    let root = tempfile::tempdir().unwrap();
    let mut a = app_with_data(root.path());
    a.focus = Panel::Dashboard;
    assert!(!screen(&a, 140, 40).contains('▀'));
    let digits: Vec<f32> = (0..64 * 6).map(|i| (i % 7) as f32 / 6.0).collect();
    let captions = (0..6).map(|i| format!("y{i}")).collect();
    a.apply(EngineEvent::Picture {
        run: 10,
        name: "memorized".into(),
        picture: Picture::images(8, 8, &digits, 0.0, 1.0, captions),
    });
    let s = screen(&a, 140, 40);
    assert!(s.contains("memorized"), "{s}");
    assert!(s.matches('▀').count() >= 8 * 4 * 3, "{s}");
    assert!(s.contains("y0") && s.contains("y2"), "{s}");
    // A narrow terminal keeps the chart alone; no size panics.
    assert!(!screen(&a, 60, 30).contains('▀'));
    for (w, h) in [(1, 1), (70, 8), (71, 12), (200, 60)] {
        screen(&a, w, h);
    }
}

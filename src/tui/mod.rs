//! The terminal workbench: pick presets, launch and watch runs live, keyboard-driven, SSH-safe.
//!
//! One input thread turns terminal events into messages; the loop folds input, engine events
//! and signals into [`App`] and redraws at most [`FPS`] times a second, only when something
//! changed. Training never runs here: the engine's tasks do it.

pub mod app;
pub mod history;
pub mod keymap;
pub mod runs;
pub mod view;

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossterm::event::Event;
use crossterm::execute;
use crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::backend::{Backend, CrosstermBackend};
use ratatui::Terminal;
use tokio::sync::mpsc;

use crate::engine::{EngineEvent, LaunchRequest, RunManager};
use app::{Action, App, QuitMode};

/// Frames per second at most.
pub const FPS: u64 = 15;
/// Seconds between scans of the run store for runs of other processes.
const STORE_SCAN: Duration = Duration::from_secs(2);

/// Signals the workbench reacts to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM: stop every run, restore the terminal, exit.
    Terminate,
    /// SIGHUP (the SSH session dropped): restore what can be restored and let every run finish,
    /// writing to the run store.
    Hangup,
}

/// How the loop ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoopExit {
    Quit(QuitMode),
    Signal(Signal),
    /// The input stream closed.
    InputClosed,
}

/// Carries out an action on the engine.
pub fn perform(app: &mut App, manager: &RunManager, action: &Action) {
    match action {
        Action::Launch {
            preset,
            arms,
            overrides,
            seeds,
            device,
        } => {
            let Some(p) = app.presets.get(*preset).cloned() else {
                return;
            };
            let req = LaunchRequest {
                arms: arms.clone(),
                seeds: seeds.clone(),
                overrides: overrides.clone(),
                device: *device,
            };
            match manager.launch(&p, &req) {
                Ok(l) => app.add_launch(&p.id, l.id, &l.dir, &l.runs),
                Err(e) => app.message = format!("not launched: {e}"),
            }
        }
        Action::Stop(id) => manager.stop(*id),
        Action::StopAll => {
            manager.stop_all();
            app.message = "stopping every run (their metrics are kept)".into();
        }
        Action::Quit(_) => {}
    }
    app.dirty = true;
}

/// The event loop, generic over the backend so tests drive it with a `TestBackend`.
pub async fn run_loop<B: Backend>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    manager: &RunManager,
    input: &mut mpsc::UnboundedReceiver<Event>,
    engine: &mut crate::engine::EventReceiver,
    signals: &mut mpsc::UnboundedReceiver<Signal>,
) -> io::Result<LoopExit> {
    run_loop_with(terminal, app, manager, input, engine, signals, false).await
}

/// [`run_loop`], optionally redrawing on every tick even when nothing changed (benchmarks).
pub async fn run_loop_with<B: Backend>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    manager: &RunManager,
    input: &mut mpsc::UnboundedReceiver<Event>,
    engine: &mut crate::engine::EventReceiver,
    signals: &mut mpsc::UnboundedReceiver<Signal>,
    always_draw: bool,
) -> io::Result<LoopExit> {
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / FPS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_scan = Instant::now();
    loop {
        tokio::select! {
            ev = input.recv() => {
                let Some(ev) = ev else { return Ok(LoopExit::InputClosed) };
                match ev {
                    Event::Key(key) => {
                        if let Some(action) = app.on_key(key) {
                            if let Action::Quit(mode) = action {
                                return Ok(LoopExit::Quit(mode));
                            }
                            perform(app, manager, &action);
                        }
                    }
                    Event::Resize(..) => app.dirty = true,
                    _ => {}
                }
            }
            Some(ev) = engine.recv() => {
                app.apply(ev);
                // Fold a burst of events at once, so a fast run never floods the loop.
                for _ in 0..1024 {
                    match engine.try_recv() {
                        Ok(ev) => app.apply(ev),
                        Err(_) => break,
                    }
                }
            }
            Some(sig) = signals.recv() => return Ok(LoopExit::Signal(sig)),
            _ = tick.tick() => {
                if last_scan.elapsed() >= STORE_SCAN {
                    app.scan_store();
                    last_scan = Instant::now();
                }
                if app.dirty || always_draw {
                    terminal
                        .draw(|f| view::render(app, f))
                        .map_err(|e| io::Error::other(e.to_string()))?;
                    app.dirty = false;
                }
            }
        }
    }
}

static TUI_ACTIVE: AtomicBool = AtomicBool::new(false);

/// Leaves raw mode and the alternate screen (idempotent; errors ignored: the terminal may be
/// gone after a hangup).
pub fn restore_terminal() {
    if TUI_ACTIVE.swap(false, Ordering::SeqCst) {
        let _ = disable_raw_mode();
        let _ = execute!(io::stdout(), LeaveAlternateScreen, crossterm::cursor::Show);
    }
}

/// Restores the terminal when dropped (normal exit, early return, panic unwinding).
struct TerminalGuard;

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// A panic hook that restores the terminal before the previous hook prints, for panics on the
/// UI thread. Panics of training threads are caught by the engine (the run ends as failed);
/// they print nothing while the workbench owns the screen.
fn install_panic_hook() {
    let ui_thread = std::thread::current().id();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().id() == ui_thread || !TUI_ACTIVE.load(Ordering::SeqCst) {
            restore_terminal();
            previous(info);
        }
    }));
}

fn spawn_input_thread() -> mpsc::UnboundedReceiver<Event> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("reglab-input".into())
        .spawn(move || {
            while let Ok(ev) = crossterm::event::read() {
                if tx.send(ev).is_err() {
                    break;
                }
            }
        })
        .expect("spawn the input thread");
    rx
}

fn spawn_signal_task() -> mpsc::UnboundedReceiver<Signal> {
    let (tx, rx) = mpsc::unbounded_channel();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        for (kind, sig) in [
            (SignalKind::terminate(), Signal::Terminate),
            (SignalKind::hangup(), Signal::Hangup),
            (SignalKind::interrupt(), Signal::Terminate),
        ] {
            if let Ok(mut s) = signal(kind) {
                let tx = tx.clone();
                tokio::spawn(async move {
                    while s.recv().await.is_some() {
                        if tx.send(sig).is_err() {
                            break;
                        }
                    }
                });
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tx;
    rx
}

/// Waits until every launch of this session has ended (their verdicts are then written),
/// printing progress when `print` is set. SIGTERM or SIGINT stops every run (their metrics are
/// kept); a second one exits at once. A hang-up changes nothing: the runs go on.
pub async fn drain_launches(
    app: &mut App,
    manager: &RunManager,
    engine: &mut crate::engine::EventReceiver,
    signals: &mut mpsc::UnboundedReceiver<Signal>,
    print: bool,
) {
    let mut out = io::stdout();
    let mut stopping = false;
    while !app.active_launches.is_empty() {
        let ev = tokio::select! {
            ev = engine.recv() => ev,
            Some(sig) = signals.recv() => {
                if sig == Signal::Terminate {
                    if stopping {
                        std::process::exit(130);
                    }
                    stopping = true;
                    manager.stop_all();
                }
                continue;
            }
        };
        let Some(ev) = ev else { break };
        if print {
            match &ev {
                EngineEvent::Ended { run, status, .. } => {
                    let label = app
                        .runs
                        .iter()
                        .find(|r| r.origin == runs::Origin::Own(*run))
                        .map(|r| r.label())
                        .unwrap_or_default();
                    let _ = writeln!(out, "[{label}] {}", status.describe());
                }
                EngineEvent::LaunchEnded { verdict, .. } => {
                    let _ = writeln!(out, "{}", crate::report::verdict_text(verdict));
                }
                _ => {}
            }
        }
        app.apply(ev);
    }
}

/// Runs the workbench on the real terminal until the user quits. Returns the process exit code.
///
/// Nothing here may print with `println!`/`eprintln!` once the terminal may be gone (after a
/// hang-up they panic on the dead descriptor): every write ignores its error.
pub fn run(
    app: App,
    manager: Arc<RunManager>,
    engine: crate::engine::EventReceiver,
    rt: &tokio::runtime::Runtime,
) -> io::Result<u8> {
    let mut app = app;
    let mut engine = engine;
    install_panic_hook();
    enable_raw_mode()?;
    TUI_ACTIVE.store(true, Ordering::SeqCst);
    let guard = TerminalGuard;
    // Clear directly: ratatui's `clear` asks the terminal for the cursor position, which a
    // terminal that does not answer would turn into a two-second stall and an error.
    execute!(
        io::stdout(),
        EnterAlternateScreen,
        crossterm::terminal::Clear(crossterm::terminal::ClearType::All),
        crossterm::cursor::Hide
    )?;
    let mut terminal = Terminal::new(CrosstermBackend::new(io::stdout()))?;
    let mut input = spawn_input_thread();
    // Signals are watched for the whole life of the process, also while runs finish headless.
    let mut signals = rt.block_on(async { spawn_signal_task() });
    let exit = rt.block_on(run_loop(
        &mut terminal,
        &mut app,
        &manager,
        &mut input,
        &mut engine,
        &mut signals,
    ));
    drop(guard);
    // ratatui's Terminal prints to stderr when it cannot restore the cursor on drop, which
    // panics on a hung-up terminal: the terminal was restored above, so it is not dropped.
    std::mem::forget(terminal);
    // A drawing error means the terminal went away: finish the runs as after a hang-up.
    let exit = exit.unwrap_or(LoopExit::InputClosed);
    let say = |line: String| {
        let _ = writeln!(io::stdout(), "{line}");
    };
    let mut code = 0u8;
    match exit {
        LoopExit::Quit(QuitMode::Now) => {
            // Nothing is running, but a verdict may still be being written.
            rt.block_on(drain_launches(
                &mut app,
                &manager,
                &mut engine,
                &mut signals,
                false,
            ));
        }
        LoopExit::Quit(QuitMode::StopRuns) | LoopExit::Signal(Signal::Terminate) => {
            // Runs stopped on request: an interrupted launch exits non-zero (130 for the user's
            // Ctrl-C or quit-and-stop, 143 for SIGTERM), so scripts can tell.
            if matches!(exit, LoopExit::Signal(Signal::Terminate)) {
                code = 143;
            } else if app.active_runs() > 0 {
                code = 130;
            }
            manager.stop_all();
            say(format!(
                "reglab: stopping every run; metrics written so far are kept in {}",
                app.store.root.display()
            ));
            rt.block_on(drain_launches(
                &mut app,
                &manager,
                &mut engine,
                &mut signals,
                false,
            ));
        }
        LoopExit::Quit(QuitMode::KeepRunning) => {
            say(format!(
                "reglab: {} run(s) continue headless; results go to {} (Ctrl-C stops them)",
                app.active_runs(),
                app.store.root.display()
            ));
            rt.block_on(drain_launches(
                &mut app,
                &manager,
                &mut engine,
                &mut signals,
                true,
            ));
        }
        LoopExit::Signal(Signal::Hangup) | LoopExit::InputClosed => {
            // The terminal is gone: finish every run quietly, writing to the run store.
            rt.block_on(drain_launches(
                &mut app,
                &manager,
                &mut engine,
                &mut signals,
                false,
            ));
        }
    }
    Ok(code)
}

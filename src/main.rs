//! The `reglab` binary: parse the command line, then run headless or list/show stored runs.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;

use reglab::cli::{self, Command};
use reglab::engine::{store, LaunchRequest, RunManager, RunStore};
use reglab::presets::{self, Preset};
use reglab::report::{fmt_num, runs_table, verdict_text, RunRow};
use reglab::{bench, experiments, headless};

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("reglab: {msg}");
    ExitCode::from(2)
}

fn print_presets(presets: &[Preset]) {
    for (i, p) in presets.iter().enumerate() {
        println!(
            "{:>2}. {:<16} {} ({} {}, {} arms)",
            i + 1,
            p.id,
            p.title,
            p.paper.authors.first().map(String::as_str).unwrap_or(""),
            p.paper.year,
            p.arms.len()
        );
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cli = match cli::parse(&args) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    match &cli.command {
        Command::Help => {
            print!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Command::Version => {
            println!("reglab {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let presets = match presets::load_all(&cli.presets_dirs) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let store = RunStore::new(&cli.runs_dir);
    reglab::engine::memory::set_limit(cli.max_memory);
    match cli.command {
        Command::Home => {
            if std::io::stdout().is_terminal() && std::io::stdin().is_terminal() {
                return workbench(presets, store, cli.jobs);
            }
            // Not a terminal: the headless listing.
            println!("reglab {}: presets\n", env!("CARGO_PKG_VERSION"));
            print_presets(&presets);
            println!(
                "\nrun one headless:  reglab run <preset-id>   (e.g. reglab run {})",
                presets
                    .first()
                    .map(|p| p.id.as_str())
                    .unwrap_or("sgd-stability")
            );
            println!("more:              reglab --help");
            ExitCode::SUCCESS
        }
        Command::List => {
            print_presets(&presets);
            ExitCode::SUCCESS
        }
        Command::Runs => {
            // Every run folder, also those that cannot be read (with the reason).
            let runs = store.list_all();
            if runs.is_empty() {
                println!("no runs under {}", store.root.display());
            }
            for (dir, state) in runs {
                println!("{}  {}", dir.display(), state.describe());
            }
            ExitCode::SUCCESS
        }
        Command::Show { dir } => show(&dir),
        Command::Help | Command::Version => ExitCode::SUCCESS,
        Command::Bench {
            torch_cases: true,
            threads,
            ..
        } => {
            print!("{}", bench::torch_cases(threads));
            ExitCode::SUCCESS
        }
        Command::Bench { quick, .. } => {
            print!("{}", bench::report(quick));
            ExitCode::SUCCESS
        }
        Command::Verify {
            presets: ids,
            quick,
            slurm: Some(opts),
        } => match reglab::verify::submit_slurm(&presets, &ids, quick, &store, &opts) {
            Ok((dir, plan, s)) => {
                for l in &plan.launches {
                    println!(
                        "{:<24} {:>3} runs -> {}",
                        l.preset,
                        l.runs,
                        l.launch_dir.display()
                    );
                }
                println!(
                    "Slurm job array {} ({} tasks); the table (verify.md) comes with job {} \
                     (afterany) in {}",
                    s.array_job,
                    s.tasks,
                    s.finish_job,
                    dir.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Command::FinishVerify { dir } => match reglab::verify::finish_slurm(&dir) {
            Ok(report) => {
                print!("{}", reglab::verify::table(&report));
                if report.all_ran() {
                    ExitCode::SUCCESS
                } else {
                    eprintln!("reglab: some runs failed or never ended (see the table)");
                    ExitCode::from(1)
                }
            }
            Err(e) => fail(e),
        },
        Command::Verify {
            presets: ids,
            quick,
            slurm: None,
        } => {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return fail(format!("cannot start the runtime: {e}")),
            };
            match rt.block_on(reglab::verify::verify(
                &presets, &ids, quick, store, cli.jobs,
            )) {
                Ok(report) => {
                    print!("{}", reglab::verify::table(&report));
                    println!("\nwritten: {}", report.dir.join("verify.md").display());
                    if report.all_ran() {
                        ExitCode::SUCCESS
                    } else {
                        eprintln!("reglab: some runs failed (see the table)");
                        ExitCode::from(1)
                    }
                }
                Err(e) => fail(e),
            }
        }
        Command::Export { path, csv, svg } => {
            match reglab::export::export(&path, csv.as_deref(), svg.as_deref()) {
                Ok(summary) => {
                    println!("{summary}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        Command::RunFolder { dir } => match reglab::engine::manager::run_folder(&dir) {
            // A diverged run is a result; a failed one fails the task (and the final job).
            Ok(reglab::experiments::RunStatus::Failed { error }) => fail(error),
            Ok(status @ reglab::experiments::RunStatus::Stopped { .. }) => {
                eprintln!("reglab: {}: {}", dir.display(), status.describe());
                ExitCode::from(143)
            }
            Ok(status) => {
                println!("{}: {}", dir.display(), status.describe());
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Command::FinishLaunch { dir } => match reglab::engine::manager::finish_launch(&dir) {
            Ok(v) => {
                println!("{}", verdict_text(&v));
                let note: Option<reglab::engine::manager::LaunchNote> =
                    std::fs::read_to_string(dir.join("launch.json"))
                        .ok()
                        .and_then(|t| serde_json::from_str(&t).ok());
                if let Some(n) = note.filter(|n| !n.grid.is_empty()) {
                    match reglab::sweep::summarize(&dir, &n.experiment, &n.grid) {
                        Ok(md) => println!("{md}"),
                        Err(e) => return fail(e),
                    }
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Command::Sweep {
            preset,
            arms,
            grid,
            overrides,
            seeds,
            slurm,
        } => {
            let Some(base) = presets.iter().find(|p| p.id == preset) else {
                return fail(format!("no preset `{preset}` (see reglab list)"));
            };
            let swept = match reglab::sweep::expand(base, &arms, &grid) {
                Ok(p) => p,
                Err(e) => return fail(e),
            };
            let req = LaunchRequest {
                arms: Vec::new(),
                seeds,
                overrides,
                device: Default::default(),
            };
            if let Err(e) = reglab::engine::manager::resolve(&swept, &req) {
                return fail(e);
            }
            if let Some(opts) = slurm {
                let keys: Vec<String> = grid.iter().map(|(k, _)| k.clone()).collect();
                let (dir, runs) =
                    match reglab::engine::manager::prepare_launch(&store, &swept, &req, &keys) {
                        Ok(x) => x,
                        Err(e) => return fail(e),
                    };
                return match reglab::slurm::submit(&dir, &runs, &opts) {
                    Ok(s) => {
                        println!(
                            "reglab: {} runs -> {}\nSlurm job array {} ({} tasks); the verdict \
                             and sweep.md come with job {} (afterok)",
                            runs.len(),
                            dir.display(),
                            s.array_job,
                            s.tasks,
                            s.finish_job
                        );
                        ExitCode::SUCCESS
                    }
                    Err(e) => fail(e),
                };
            }
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return fail(format!("cannot start the runtime: {e}")),
            };
            let (manager, mut events) = RunManager::new(store, cli.jobs, rt.handle().clone());
            let manager = Arc::new(manager);
            rt.block_on(async {
                spawn_signal_handlers(manager.clone());
                let mut out = std::io::stdout();
                match headless::run(manager, &mut events, &swept, &req, &mut out).await {
                    Ok(res) => {
                        let keys: Vec<String> = grid.iter().map(|(k, _)| k.clone()).collect();
                        match reglab::sweep::summarize(&res.launch_dir, &swept.experiment, &keys) {
                            Ok(md) => println!("\nsweep (final values, mean over seeds):\n{md}"),
                            Err(e) => eprintln!("reglab: {e}"),
                        }
                        match INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
                            0 => ExitCode::SUCCESS,
                            code => ExitCode::from(code),
                        }
                    }
                    Err(e) => fail(e),
                }
            })
        }
        Command::DeviceCheck { quick } => {
            print!("{}", reglab::devcheck::report(quick));
            ExitCode::SUCCESS
        }
        Command::Run {
            preset,
            arms,
            overrides,
            seeds,
            device,
        } => {
            let Some(preset) = presets.iter().find(|p| p.id == preset) else {
                let ids: Vec<&str> = presets.iter().map(|p| p.id.as_str()).collect();
                return fail(format!(
                    "no preset `{preset}` (presets: {})",
                    ids.join(", ")
                ));
            };
            let req = LaunchRequest {
                arms,
                seeds,
                overrides,
                device,
            };
            if let Err(e) = reglab::engine::manager::resolve(preset, &req) {
                return fail(e);
            }
            if let Err(e) = reglab::device::check_available(device) {
                return fail(e);
            }
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return fail(format!("cannot start the runtime: {e}")),
            };
            let (manager, mut events) = RunManager::new(store, cli.jobs, rt.handle().clone());
            let manager = Arc::new(manager);
            rt.block_on(async {
                spawn_signal_handlers(manager.clone());
                let mut out = std::io::stdout();
                match headless::run(manager, &mut events, preset, &req, &mut out).await {
                    Ok(_) => {
                        let _ = out.flush();
                        match INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
                            0 => ExitCode::SUCCESS,
                            code => ExitCode::from(code),
                        }
                    }
                    Err(e) => fail(e),
                }
            })
        }
    }
}

/// The terminal workbench.
fn workbench(presets: Vec<Preset>, store: RunStore, jobs: usize) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the runtime: {e}")),
    };
    let (manager, events) = RunManager::new(store.clone(), jobs, rt.handle().clone());
    let app = reglab::tui::app::App::new(presets, store);
    match reglab::tui::run(app, Arc::new(manager), events, &rt) {
        Ok(code) => ExitCode::from(code),
        Err(e) => fail(format!("terminal error: {e}")),
    }
}

/// The exit code an interrupting signal asks for (0: none arrived): 130 after SIGINT, 143 after
/// SIGTERM, as shells report them.
static INTERRUPTED: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Ctrl-C and SIGTERM stop every run (each keeps the metrics written so far); once every launch
/// has written its verdict the process exits with 130 or 143, even when stdout is blocked (a
/// pager not being read). A second one exits at once. SIGHUP, a dropped SSH session, is
/// ignored: the runs go on to completion.
fn spawn_signal_handlers(manager: Arc<RunManager>) {
    #[cfg(unix)]
    {
        use std::sync::atomic::Ordering;
        use tokio::signal::unix::{signal, SignalKind};
        let kinds = [
            (SignalKind::interrupt(), 130u8),
            (SignalKind::terminate(), 143u8),
        ];
        for (kind, code) in kinds {
            let m = manager.clone();
            if let Ok(mut s) = signal(kind) {
                tokio::spawn(async move {
                    s.recv().await;
                    let _ =
                        INTERRUPTED.compare_exchange(0, code, Ordering::SeqCst, Ordering::SeqCst);
                    eprintln!(
                        "reglab: stopping every run (metrics so far are kept); again to quit now"
                    );
                    m.stop_all();
                    // Everything is on disk once the manager is idle: leave then, whatever the
                    // printer is waiting for.
                    let watch = m.clone();
                    tokio::spawn(async move {
                        while !watch.idle() {
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                        std::process::exit(INTERRUPTED.load(Ordering::SeqCst) as i32);
                    });
                    s.recv().await;
                    std::process::exit(code as i32);
                });
            }
        }
        if let Ok(mut s) = signal(SignalKind::hangup()) {
            tokio::spawn(async move { while s.recv().await.is_some() {} });
        }
    }
    #[cfg(not(unix))]
    {
        let m = manager;
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            m.stop_all();
        });
    }
}

fn show(dir: &std::path::Path) -> ExitCode {
    let run = match store::open_run(dir) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let c = &run.config;
    println!(
        "{}: preset {}, arm {}, seed {}",
        dir.display(),
        c.preset,
        c.arm,
        c.seed
    );
    let params: Vec<String> = c.params.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("params: {}", params.join(" "));
    match store::read_metrics(&dir.join("metrics.jsonl")) {
        Ok(log) => println!(
            "metrics.jsonl: {} points{}",
            log.points.len(),
            if log.truncated_tail {
                " (truncated last line skipped)"
            } else {
                ""
            }
        ),
        Err(e) => println!("metrics.jsonl: {e}"),
    }
    let Some(s) = &run.summary else {
        println!("no summary.json: the run is still going or was interrupted");
        return ExitCode::SUCCESS;
    };
    let columns: Vec<&str> = experiments::find(&c.experiment)
        .map(|e| e.table_metrics())
        .unwrap_or_else(|| s.final_values.keys().map(String::as_str).collect());
    println!(
        "\n{}",
        runs_table(
            &[RunRow {
                arm: &c.arm,
                seed: c.seed,
                status: &s.status,
                final_values: &s.final_values,
            }],
            &columns
        )
    );
    println!("wall time {} s", fmt_num(s.wall_s));
    if let Some(v) = &s.verdict {
        println!("\nverdict of its launch:\n{}", verdict_text(v));
    }
    ExitCode::SUCCESS
}

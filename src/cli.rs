//! Command-line parsing. Bad input is a one-line message (the caller exits with code 2).

use std::path::PathBuf;

use crate::device::DeviceChoice;
use crate::params::Override;

#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// No subcommand: the workbench (for now: the preset list and how to run one).
    Home,
    List,
    Run {
        preset: String,
        arms: Vec<String>,
        overrides: Vec<Override>,
        seeds: Vec<u64>,
        device: DeviceChoice,
    },
    Runs,
    Show {
        dir: PathBuf,
    },
    Bench {
        quick: bool,
        /// Only the steps compared with PyTorch, one JSON object per line.
        torch_cases: bool,
        /// Threads for the matrix products of those steps (0: all cores).
        threads: usize,
    },
    DeviceCheck {
        quick: bool,
    },
    /// Every preset's claim (or the chosen ones), one table.
    Verify {
        presets: Vec<String>,
        quick: bool,
        /// Submit every run as one Slurm job array instead of running here.
        slurm: Option<crate::slurm::SlurmOptions>,
    },
    /// One run per grid point and seed.
    Sweep {
        preset: String,
        arms: Vec<String>,
        grid: Vec<(String, Vec<String>)>,
        overrides: Vec<Override>,
        seeds: Vec<u64>,
        /// Submit to Slurm instead of running here.
        slurm: Option<crate::slurm::SlurmOptions>,
    },
    /// Metrics of a run or launch as long-form CSV and SVG charts.
    Export {
        path: PathBuf,
        csv: Option<PathBuf>,
        svg: Option<PathBuf>,
    },
    /// (Slurm tasks) train the run a folder describes.
    RunFolder {
        dir: PathBuf,
    },
    /// (Slurm's final job) the verdict and sweep summary of a launch folder.
    FinishLaunch {
        dir: PathBuf,
    },
    /// (Slurm's final job of `verify --slurm`) every launch's verdict and the table.
    FinishVerify {
        dir: PathBuf,
    },
    Help,
    Version,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Cli {
    pub command: Command,
    pub presets_dirs: Vec<PathBuf>,
    pub runs_dir: PathBuf,
    pub jobs: usize,
    /// `--max-memory`: launches whose runs would need more are refused.
    pub max_memory: Option<u64>,
}

pub const USAGE: &str = "\
reglab: a terminal lab workbench for regularization and training-dynamics papers

usage:
  reglab                          list the presets and how to run one
  reglab list                     list the presets
  reglab run PRESET [options]     run a preset headless, print progress and its verdict
  reglab runs                     list the runs in the runs folder
  reglab show RUN_DIR             print a stored run's config, final values and verdict
  reglab bench [--quick]          print speed figures (steps/s per arm, Hutchinson cost, overhead)
  reglab bench --torch-cases [--threads N]  the steps scripts/compare-pytorch.py times (JSON)
  reglab export PATH [--csv FILE] [--svg DIR]
                                  a run's or launch's metrics as long-form CSV and SVG charts
  reglab verify [--quick] [--preset ID]...  every preset's claim at its default (or quick)
                                  configuration, one table; verify.json and verify.md
       [--slurm [--partition P] [--time T] [--cpus-per-task N] [--gres G]]
                                  one Slurm array task per run; a final job (afterany)
                                  writes the table
  reglab sweep PRESET --grid KEY=V1,V2 [--grid ...] [--arm NAME] [--seed S]...
                                  one run per grid point and seed; sweep.md with the final
                                  metrics against the grid
       [--slurm [--partition P] [--time T] [--cpus-per-task N] [--gres G]]
                                  submit the runs as one Slurm job array, and a final job
                                  (afterok) that writes the verdict and sweep.md
  reglab device-check [--quick]   train each preset on the CPU and on CUDA, compare and time them

options:
  --arm NAME        run only this arm (repeatable; default: every arm)
  --set KEY=VALUE   override a parameter of every arm (repeatable; validated)
  --steps N         same as --set steps=N
  --seed S          run with seed S (repeatable; default: the preset's seeds)
  --runs DIR        runs folder (default ./runs)
  --presets DIR     also load the presets in DIR (repeatable)
  --jobs N          run at most N runs at once (default: number of cores)
  --device D        cpu (default) or cuda (binaries built with the cuda feature)
  --max-memory SIZE refuse launches whose runs would need more (e.g. 8G; default: the
                    memory available now)
";

/// A byte count: a number with an optional K, M, G or T suffix (powers of 1024).
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim().to_ascii_uppercase();
    let t = t.strip_suffix('B').unwrap_or(&t);
    let (num, mult) = match t.chars().last()? {
        'K' => (&t[..t.len() - 1], 1u64 << 10),
        'M' => (&t[..t.len() - 1], 1 << 20),
        'G' => (&t[..t.len() - 1], 1 << 30),
        'T' => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num.trim().parse().ok()?;
    (n.is_finite() && n > 0.0).then_some((n * mult as f64) as u64)
}

fn value<'a>(flag: &str, it: &mut impl Iterator<Item = &'a String>) -> Result<&'a String, String> {
    it.next()
        .ok_or_else(|| format!("{flag} needs a value (see reglab --help)"))
}

pub fn parse(args: &[String]) -> Result<Cli, String> {
    // `export` has its own arguments.
    if args.first().map(String::as_str) == Some("export") {
        let (path, csv, svg) = crate::export::parse_args(&args[1..])?;
        return Ok(Cli {
            command: Command::Export { path, csv, svg },
            presets_dirs: Vec::new(),
            runs_dir: PathBuf::from("runs"),
            jobs: 1,
            max_memory: None,
        });
    }
    let mut cli = Cli {
        command: Command::Home,
        presets_dirs: Vec::new(),
        runs_dir: PathBuf::from("runs"),
        jobs: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        max_memory: None,
    };
    let mut positional: Vec<&String> = Vec::new();
    let mut arms = Vec::new();
    let mut overrides = Vec::new();
    let mut seeds = Vec::new();
    let mut quick = false;
    let mut torch_cases = false;
    let mut threads = 0usize;
    let mut verify_presets: Vec<String> = Vec::new();
    let mut grid: Vec<(String, Vec<String>)> = Vec::new();
    let mut slurm = false;
    let mut slurm_opts = crate::slurm::SlurmOptions::default();
    let mut device = DeviceChoice::Cpu;
    let mut flags: Vec<&str> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a.starts_with("--") {
            flags.push(a.as_str());
        }
        match a.as_str() {
            "-h" | "--help" => cli.command = Command::Help,
            "-V" | "--version" => cli.command = Command::Version,
            "--arm" => arms.push(value(a, &mut it)?.clone()),
            "--set" => overrides.push(Override::parse(value(a, &mut it)?)?),
            "--steps" => {
                let v = value(a, &mut it)?;
                overrides.push(Override {
                    key: "steps".into(),
                    value: v.clone(),
                });
            }
            "--seed" => {
                let v = value(a, &mut it)?;
                seeds.push(
                    v.parse::<u64>()
                        .map_err(|_| format!("--seed {v}: expected a non-negative integer"))?,
                );
            }
            "--runs" => {
                let v = value(a, &mut it)?;
                if v.trim().is_empty() {
                    return Err("--runs needs a folder (it was empty)".into());
                }
                cli.runs_dir = PathBuf::from(v);
            }
            "--max-memory" => {
                let v = value(a, &mut it)?;
                cli.max_memory = Some(parse_size(v).ok_or_else(|| {
                    format!("--max-memory {v}: expected a size such as 8G, 512M or 1000000")
                })?);
            }
            "--presets" => cli.presets_dirs.push(PathBuf::from(value(a, &mut it)?)),
            "--jobs" => {
                let v = value(a, &mut it)?;
                cli.jobs = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| format!("--jobs {v}: expected a positive integer"))?;
            }
            "--quick" => quick = true,
            "--preset" => verify_presets.push(value(a, &mut it)?.clone()),
            "--slurm" => slurm = true,
            "--partition" => slurm_opts.partition = Some(value(a, &mut it)?.clone()),
            "--time" => slurm_opts.time = Some(value(a, &mut it)?.clone()),
            "--gres" => slurm_opts.gres = Some(value(a, &mut it)?.clone()),
            "--cpus-per-task" => {
                let v = value(a, &mut it)?;
                slurm_opts.cpus_per_task =
                    Some(v.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                        format!("--cpus-per-task {v}: expected a positive integer")
                    })?);
            }
            "--grid" => {
                let v = value(a, &mut it)?;
                let (k, vals) = v
                    .split_once('=')
                    .ok_or_else(|| format!("--grid {v}: expected KEY=V1,V2,..."))?;
                let vals: Vec<String> = vals
                    .split(',')
                    .map(|x| x.trim().to_string())
                    .filter(|x| !x.is_empty())
                    .collect();
                if k.trim().is_empty() || vals.is_empty() {
                    return Err(format!("--grid {v}: expected KEY=V1,V2,..."));
                }
                grid.push((k.trim().to_string(), vals));
            }
            "--torch-cases" => torch_cases = true,
            "--threads" => {
                let v = value(a, &mut it)?;
                threads = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| format!("--threads {v}: expected a positive integer"))?;
            }
            "--device" => device = value(a, &mut it)?.parse()?,
            s if s.starts_with('-') => {
                return Err(format!("unknown option `{s}` (see reglab --help)"))
            }
            _ => positional.push(a),
        }
    }
    if matches!(cli.command, Command::Help | Command::Version) {
        return Ok(cli);
    }
    let sub = positional.first().map(|s| s.as_str());
    let extra = |n: usize| -> Result<(), String> {
        match positional.get(n) {
            Some(x) => Err(format!("unexpected argument `{x}` (see reglab --help)")),
            None => Ok(()),
        }
    };
    // A flag that means nothing to the command is refused, not ignored.
    let allowed: &[&str] = match sub {
        None => &["--runs", "--presets", "--jobs", "--max-memory"],
        Some("list") => &["--presets"],
        Some("runs") => &["--runs"],
        Some("show") => &[],
        Some("bench") => &["--quick", "--torch-cases", "--threads"],
        Some("device-check") => &["--quick"],
        Some("verify") => &[
            "--slurm",
            "--partition",
            "--time",
            "--gres",
            "--cpus-per-task",
            "--quick",
            "--preset",
            "--runs",
            "--presets",
            "--jobs",
            "--max-memory",
        ],
        Some("run-folder") | Some("finish-launch") | Some("finish-verify") => &[],
        Some("sweep") => &[
            "--slurm",
            "--partition",
            "--time",
            "--gres",
            "--cpus-per-task",
            "--arm",
            "--grid",
            "--set",
            "--steps",
            "--seed",
            "--runs",
            "--presets",
            "--jobs",
            "--max-memory",
        ],
        Some("run") => &[
            "--arm",
            "--set",
            "--steps",
            "--seed",
            "--runs",
            "--presets",
            "--jobs",
            "--device",
            "--max-memory",
        ],
        Some(_) => &[],
    };
    if let Some(f) = flags.iter().find(|f| !allowed.contains(f)) {
        let what = sub.map_or("the workbench".to_string(), |s| format!("`reglab {s}`"));
        return Err(format!("{f} means nothing to {what} (see reglab --help)"));
    }
    cli.command = match sub {
        None => Command::Home,
        Some("list") => {
            extra(1)?;
            Command::List
        }
        Some("runs") => {
            extra(1)?;
            Command::Runs
        }
        Some("bench") => {
            extra(1)?;
            Command::Bench {
                quick,
                torch_cases,
                threads,
            }
        }
        Some("device-check") => {
            extra(1)?;
            Command::DeviceCheck { quick }
        }
        Some("verify") => {
            extra(1)?;
            if !slurm && slurm_opts != crate::slurm::SlurmOptions::default() {
                return Err(
                    "--partition, --time, --gres and --cpus-per-task go with --slurm".into(),
                );
            }
            Command::Verify {
                presets: verify_presets,
                quick,
                slurm: slurm.then_some(slurm_opts),
            }
        }
        Some("sweep") => {
            let preset = positional
                .get(1)
                .ok_or("sweep needs a preset id (see reglab list)")?;
            extra(2)?;
            if grid.is_empty() {
                return Err("sweep needs at least one --grid KEY=V1,V2,...".into());
            }
            if !slurm && slurm_opts != crate::slurm::SlurmOptions::default() {
                return Err(
                    "--partition, --time, --gres and --cpus-per-task go with --slurm".into(),
                );
            }
            Command::Sweep {
                preset: preset.to_string(),
                arms,
                grid,
                overrides,
                seeds,
                slurm: slurm.then_some(slurm_opts),
            }
        }
        Some(cmd @ ("run-folder" | "finish-launch" | "finish-verify")) => {
            let dir = PathBuf::from(positional.get(1).ok_or("needs a folder")?.as_str());
            extra(2)?;
            match cmd {
                "run-folder" => Command::RunFolder { dir },
                "finish-launch" => Command::FinishLaunch { dir },
                _ => Command::FinishVerify { dir },
            }
        }
        Some("show") => {
            let dir = positional
                .get(1)
                .ok_or("show needs a run directory (see reglab runs)")?;
            extra(2)?;
            Command::Show {
                dir: PathBuf::from(dir),
            }
        }
        Some("run") => {
            let preset = positional
                .get(1)
                .ok_or("run needs a preset id (see reglab list)")?;
            extra(2)?;
            Command::Run {
                preset: preset.to_string(),
                arms,
                overrides,
                seeds,
                device,
            }
        }
        Some(other) => return Err(format!("unknown command `{other}` (see reglab --help)")),
    };
    Ok(cli)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_run() {
        let c = parse(&args(
            "run sgd-stability --arm a --arm b --set eta=0.1 --steps 10 --seed 3 --runs r --jobs 2",
        ))
        .unwrap();
        assert_eq!(c.runs_dir, PathBuf::from("r"));
        assert_eq!(c.jobs, 2);
        match c.command {
            Command::Run {
                preset,
                arms,
                overrides,
                seeds,
                ..
            } => {
                assert_eq!(preset, "sgd-stability");
                assert_eq!(arms, vec!["a", "b"]);
                assert_eq!(overrides.len(), 2);
                assert_eq!(overrides[1].key, "steps");
                assert_eq!(seeds, vec![3]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rejects_bad_input() {
        assert!(parse(&args("run")).is_err());
        assert!(parse(&args("run p --jobs 0")).is_err());
        assert!(parse(&args("run p --seed x")).is_err());
        assert!(parse(&args("run p --set eta")).is_err());
        assert!(parse(&args("frobnicate")).is_err());
        assert!(parse(&args("run p --device tpu")).is_err());
        assert!(parse(&args("list --bogus")).is_err());
        assert_eq!(parse(&[]).unwrap().command, Command::Home);
    }
}

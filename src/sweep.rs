//! Sweeps: `reglab sweep PRESET --grid eta=0.01,0.02 --grid batch=1,4 --seed 0 --seed 1`
//! expands to one arm per base arm and grid point (each a normal arm, validated like `--set`),
//! launched with the seeds as one normal launch; when every run has ended, the launch folder gets
//! `sweep.json` and `sweep.md`: the final value of each of the experiment's table metrics against
//! the grid values, averaged over seeds (the papers' "metric against hyper-parameter" figures).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::experiments;
use crate::params::Override;
use crate::presets::{Arm, Preset};

/// The arms of a sweep: each base arm (the preset's first arm when none is named) at every grid
/// point. Arm names say the point (`<arm>-eta0.01-batch4`).
pub fn expand(
    preset: &Preset,
    arms: &[String],
    grid: &[(String, Vec<String>)],
) -> Result<Preset, String> {
    let exp = experiments::find(&preset.experiment)
        .ok_or_else(|| format!("unknown experiment `{}`", preset.experiment))?;
    let specs = exp.params();
    let base: Vec<&Arm> = if arms.is_empty() {
        preset.arms.iter().take(1).collect()
    } else {
        arms.iter()
            .map(|a| {
                preset
                    .arm(a)
                    .ok_or_else(|| format!("preset `{}` has no arm `{a}`", preset.id))
            })
            .collect::<Result<_, _>>()?
    };
    // Every combination of the grid's values.
    let mut points: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for (key, values) in grid {
        crate::params::find_spec(&specs, key).map_err(|e| format!("--grid {key}: {e}"))?;
        points = points
            .into_iter()
            .flat_map(|p| {
                values.iter().map(move |v| {
                    let mut q = p.clone();
                    q.push((key.clone(), v.clone()));
                    q
                })
            })
            .collect();
    }
    let mut out = Vec::new();
    for arm in base {
        for point in &points {
            let mut params = arm.params.clone();
            let overrides: Vec<Override> = point
                .iter()
                .map(|(k, v)| Override {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect();
            params.apply_overrides(&specs, &overrides)?;
            exp.validate(&params)
                .map_err(|e| format!("grid point {}: {e}", describe(point)))?;
            let mut name = arm.name.clone();
            for (k, v) in point {
                name.push('-');
                name.push_str(k);
                name.push_str(v);
            }
            let name: String = name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                        c
                    } else {
                        '_'
                    }
                })
                .take(64)
                .collect();
            out.push(Arm {
                name,
                description: format!("{} at {}", arm.name, describe(point)),
                params,
            });
        }
    }
    let mut names: Vec<&str> = out.iter().map(|a| a.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    if names.len() != out.len() {
        return Err("the grid's arm names collide (shorten the values)".into());
    }
    let mut swept = preset.clone();
    swept.arms = out;
    Ok(swept)
}

fn describe(point: &[(String, String)]) -> String {
    point
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One grid point's row of the summary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepRow {
    pub arm: String,
    pub grid: BTreeMap<String, String>,
    pub seeds: usize,
    pub completed: usize,
    /// Mean over the completed seeds of each table metric's final value.
    pub means: BTreeMap<String, f64>,
}

/// Writes `sweep.json` and `sweep.md` into the launch folder from its runs' folders (config and
/// summary), one row per arm (grid point); returns the Markdown table.
pub fn summarize(
    launch_dir: &Path,
    experiment: &str,
    grid_keys: &[String],
) -> Result<String, String> {
    let exp = experiments::find(experiment).ok_or("unknown experiment")?;
    let metrics = exp.table_metrics();
    let mut dirs: Vec<std::path::PathBuf> = std::fs::read_dir(launch_dir)
        .map_err(|e| format!("{}: {e}", launch_dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("config.json").is_file())
        .collect();
    dirs.sort();
    // arm -> (grid values, seeds, completed, sums)
    type Acc = (
        BTreeMap<String, String>,
        usize,
        usize,
        BTreeMap<String, (f64, usize)>,
    );
    let mut by_arm: BTreeMap<String, Acc> = BTreeMap::new();
    for d in dirs {
        let Ok(config) = crate::engine::store::read_config(&d) else {
            continue;
        };
        let e = by_arm.entry(config.arm.clone()).or_insert_with(|| {
            let grid = grid_keys
                .iter()
                .map(|k| {
                    (
                        k.clone(),
                        config
                            .params
                            .get(k)
                            .map(|v| v.to_string())
                            .unwrap_or_default(),
                    )
                })
                .collect();
            (grid, 0, 0, BTreeMap::new())
        });
        e.1 += 1;
        let Ok(run) = crate::engine::store::open_run(&d) else {
            continue;
        };
        let Some(s) = run.summary else { continue };
        if !matches!(s.status, crate::experiments::RunStatus::Completed { .. }) {
            continue;
        }
        e.2 += 1;
        for m in &metrics {
            if let Some(v) = s.final_values.get(*m).filter(|v| v.is_finite()) {
                let acc = e.3.entry(m.to_string()).or_insert((0.0, 0));
                acc.0 += v;
                acc.1 += 1;
            }
        }
    }
    let rows: Vec<SweepRow> = by_arm
        .into_iter()
        .map(|(arm, (grid, seeds, completed, sums))| SweepRow {
            arm,
            grid,
            seeds,
            completed,
            means: sums
                .into_iter()
                .map(|(k, (s, n))| (k, s / n as f64))
                .collect(),
        })
        .collect();
    let mut md = String::new();
    let keys: Vec<&String> = grid_keys.iter().collect();
    let _ = write!(md, "|");
    for k in &keys {
        let _ = write!(md, " {k} |");
    }
    let _ = write!(md, " completed |");
    for m in &metrics {
        let _ = write!(md, " {m} |");
    }
    let _ = writeln!(md);
    let _ = writeln!(
        md,
        "{}",
        "|---".repeat(keys.len() + 1 + metrics.len()) + "|"
    );
    for r in &rows {
        let _ = write!(md, "|");
        for k in &keys {
            let _ = write!(
                md,
                " {} |",
                r.grid.get(*k).map(String::as_str).unwrap_or("")
            );
        }
        let _ = write!(md, " {}/{} |", r.completed, r.seeds);
        for m in &metrics {
            match r.means.get(*m) {
                Some(v) => {
                    let _ = write!(md, " {} |", crate::report::fmt_num(*v));
                }
                None => {
                    let _ = write!(md, " - |");
                }
            }
        }
        let _ = writeln!(md);
    }
    std::fs::write(
        launch_dir.join("sweep.json"),
        serde_json::to_string_pretty(&rows).unwrap_or_default(),
    )
    .map_err(|e| format!("writing sweep.json: {e}"))?;
    std::fs::write(launch_dir.join("sweep.md"), &md)
        .map_err(|e| format!("writing sweep.md: {e}"))?;
    Ok(md)
}

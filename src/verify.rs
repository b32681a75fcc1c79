//! `reglab verify`: every built preset (or the chosen ones) at its default configuration, or at
//! its experiment's quick profile, launched together on one run manager (all `--jobs` busy),
//! then one table: preset, paper, the claim's verdict, the check and numbers that decided it,
//! wall time. Each preset's launch is a normal launch folder; `verify-<time>/` holds
//! `verify.json` and `verify.md`.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::engine::{LaunchRequest, RunManager, RunStore};
use crate::experiments::{self, RunStatus};
use crate::presets::Preset;
use crate::verdict::{Outcome, Verdict};

/// One preset's line of the table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VerifyRow {
    pub preset: String,
    pub paper: String,
    pub outcome: Outcome,
    /// The check that decided the outcome and its first numbers.
    pub decided_by: String,
    pub wall_s: f64,
    pub runs: usize,
    /// Runs that failed (an error, not a finding): the launch did not fully run.
    pub failed_runs: usize,
    pub launch_dir: PathBuf,
}

/// The whole verification.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VerifyReport {
    pub quick: bool,
    pub rows: Vec<VerifyRow>,
    pub dir: PathBuf,
}

impl VerifyReport {
    /// True when every run of every preset ran (whatever the verdicts).
    pub fn all_ran(&self) -> bool {
        self.rows.iter().all(|r| r.failed_runs == 0)
    }
}

/// The check that decides a verdict (the first failing check of the claim, else the first
/// inconclusive one, else the first), as "(id) outcome: first evidence".
fn deciding(v: &Verdict) -> String {
    let claim: Vec<_> = v.checks.iter().filter(|c| !c.informational).collect();
    let pick = claim
        .iter()
        .find(|c| c.outcome == Outcome::Fails)
        .or_else(|| claim.iter().find(|c| c.outcome == Outcome::Inconclusive))
        .or_else(|| claim.first());
    match pick {
        Some(c) => {
            // A failing check quotes the case that failed; others their first number.
            let failed = c
                .first_failed
                .filter(|_| c.outcome == Outcome::Fails)
                .and_then(|i| c.evidence.get(i));
            let ev = failed
                .or_else(|| c.evidence.iter().find(|e| !e.contains("left out")))
                .or(c.evidence.first());
            let mut ev = ev.cloned().unwrap_or_default();
            if ev.chars().count() > 110 {
                ev = ev.chars().take(107).collect::<String>() + "...";
            }
            format!("({}) {}: {ev}", c.id, c.outcome.word())
        }
        None => "no checks".into(),
    }
}

/// The presets `ids` name (all of them when empty).
fn choose<'a>(presets: &'a [Preset], ids: &[String]) -> Result<Vec<&'a Preset>, String> {
    if ids.is_empty() {
        return Ok(presets.iter().collect());
    }
    ids.iter()
        .map(|id| {
            presets
                .iter()
                .find(|p| &p.id == id)
                .ok_or_else(|| format!("no preset `{id}` (see reglab list)"))
        })
        .collect()
}

/// What a preset is launched with: its default configuration, or its experiment's quick
/// profile (a user's preset of that experiment keeps its own default).
fn request(p: &Preset, quick: bool) -> Result<LaunchRequest, String> {
    let exp = experiments::find(&p.experiment)
        .ok_or_else(|| format!("unknown experiment `{}`", p.experiment))?;
    let profile = exp.quick_profile();
    Ok(if quick && profile.preset == p.id {
        LaunchRequest::from(&profile)
    } else {
        LaunchRequest::default()
    })
}

fn paper_of(p: &Preset) -> String {
    format!(
        "{} ({} {})",
        p.paper.title,
        p.paper.authors.first().map(String::as_str).unwrap_or(""),
        p.paper.year
    )
}

/// Runs the verification: `ids` empty means every preset.
pub async fn verify(
    presets: &[Preset],
    ids: &[String],
    quick: bool,
    store: RunStore,
    jobs: usize,
) -> Result<VerifyReport, String> {
    let chosen = choose(presets, ids)?;
    let (manager, mut events) =
        RunManager::new(store.clone(), jobs, tokio::runtime::Handle::current());
    let manager = Arc::new(manager);
    // Nothing on screen here: keep the event stream drained.
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    let mut launches = Vec::new();
    for p in &chosen {
        let req = request(p, quick)?;
        let launch = manager.launch(p, &req)?;
        launches.push((p, launch, Instant::now()));
    }
    let mut rows = Vec::new();
    for (p, launch, started) in launches {
        let runs = launch.runs.clone();
        let verdict = launch
            .done
            .await
            .map_err(|e| format!("{}: the launch ended abnormally: {e}", p.id))?;
        let failed_runs = runs
            .iter()
            .filter(|r| {
                matches!(
                    crate::engine::store::run_state(&r.dir),
                    crate::engine::store::RunState::Ended(RunStatus::Failed { .. })
                        | crate::engine::store::RunState::Unreadable(_)
                )
            })
            .count();
        rows.push(VerifyRow {
            preset: p.id.clone(),
            paper: paper_of(p),
            outcome: verdict.outcome(),
            decided_by: deciding(&verdict),
            wall_s: started.elapsed().as_secs_f64(),
            runs: runs.len(),
            failed_runs,
            launch_dir: launch.dir.clone(),
        });
    }
    let dir = store
        .create_launch("verify")
        .map_err(|e| format!("cannot create the verify folder: {e}"))?;
    let report = VerifyReport { quick, rows, dir };
    write_report(&report)?;
    Ok(report)
}

fn write_report(report: &VerifyReport) -> Result<(), String> {
    std::fs::write(
        report.dir.join("verify.json"),
        serde_json::to_string_pretty(&report).unwrap_or_default(),
    )
    .map_err(|e| format!("writing verify.json: {e}"))?;
    std::fs::write(report.dir.join("verify.md"), markdown(report))
        .map_err(|e| format!("writing verify.md: {e}"))
}

/// One preset's launch in a verification submitted to Slurm.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlannedLaunch {
    pub preset: String,
    pub paper: String,
    pub launch_dir: PathBuf,
    pub runs: usize,
}

/// A verification submitted to Slurm (`verify-plan.json` in its folder): the final job reads it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VerifyPlan {
    pub quick: bool,
    pub launches: Vec<PlannedLaunch>,
}

/// Writes every chosen preset's launch folder, then submits one Slurm array task per run (of
/// all presets together) and a final job that, once the array is over whatever happened
/// (`afterany`), computes each verdict and writes the table ([`finish_slurm`]). Returns the
/// verification folder, its plan and the jobs.
pub fn submit_slurm(
    presets: &[Preset],
    ids: &[String],
    quick: bool,
    store: &RunStore,
    opts: &crate::slurm::SlurmOptions,
) -> Result<(PathBuf, VerifyPlan, crate::slurm::Submitted), String> {
    let chosen = choose(presets, ids)?;
    let mut launches = Vec::new();
    let mut all_runs = Vec::new();
    for p in &chosen {
        let req = request(p, quick)?;
        let (dir, runs) = crate::engine::manager::prepare_launch(store, p, &req, &[])?;
        launches.push(PlannedLaunch {
            preset: p.id.clone(),
            paper: paper_of(p),
            launch_dir: dir,
            runs: runs.len(),
        });
        all_runs.extend(runs);
    }
    let dir = store
        .create_launch("verify")
        .map_err(|e| format!("cannot create the verify folder: {e}"))?;
    let plan = VerifyPlan { quick, launches };
    std::fs::write(
        dir.join("verify-plan.json"),
        serde_json::to_string_pretty(&plan).unwrap_or_default(),
    )
    .map_err(|e| format!("writing verify-plan.json: {e}"))?;
    let finish = crate::slurm::FinishJob {
        name: "reglab-verify",
        dependency: "afterany",
        args: vec!["finish-verify".into(), dir.display().to_string()],
    };
    let submitted = crate::slurm::submit_with(&dir, &all_runs, opts, &finish)?;
    Ok((dir, plan, submitted))
}

/// The final job of [`submit_slurm`]: every launch's verdict over the runs that ended (a run
/// that never ended counts as failed), and the table in `verify.json` / `verify.md`. A row's
/// wall time is its longest run's (the tasks ran side by side).
pub fn finish_slurm(dir: &std::path::Path) -> Result<VerifyReport, String> {
    let plan: VerifyPlan = serde_json::from_str(
        &std::fs::read_to_string(dir.join("verify-plan.json"))
            .map_err(|e| format!("{}: {e}", dir.join("verify-plan.json").display()))?,
    )
    .map_err(|e| format!("verify-plan.json: {e}"))?;
    let mut rows = Vec::new();
    for l in &plan.launches {
        let (verdict, missing) = crate::engine::manager::finish_launch_with(&l.launch_dir, false)?;
        let mut failed = missing.len();
        let mut wall: f64 = 0.0;
        let runs = std::fs::read_dir(&l.launch_dir).map_err(|e| e.to_string())?;
        for run in runs.flatten().map(|e| e.path()) {
            if let Ok(r) = crate::engine::store::open_run(&run) {
                if let Some(s) = r.summary {
                    wall = wall.max(s.wall_s);
                    failed += matches!(s.status, RunStatus::Failed { .. }) as usize;
                }
            }
        }
        rows.push(VerifyRow {
            preset: l.preset.clone(),
            paper: l.paper.clone(),
            outcome: verdict.outcome(),
            decided_by: deciding(&verdict),
            wall_s: wall,
            runs: l.runs,
            failed_runs: failed,
            launch_dir: l.launch_dir.clone(),
        });
    }
    let report = VerifyReport {
        quick: plan.quick,
        rows,
        dir: dir.to_path_buf(),
    };
    write_report(&report)?;
    Ok(report)
}

/// The table as plain text.
pub fn table(r: &VerifyReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<22} {:<13} {:>7} {:>5}  decided by",
        "preset", "claim", "wall s", "runs"
    );
    let _ = writeln!(out, "{}", "-".repeat(100));
    for row in &r.rows {
        let _ = writeln!(
            out,
            "{:<22} {:<13} {:>7.1} {:>5}  {}{}",
            row.preset,
            row.outcome.word().to_uppercase(),
            row.wall_s,
            row.runs,
            row.decided_by,
            if row.failed_runs > 0 {
                format!("  [{} run(s) FAILED]", row.failed_runs)
            } else {
                String::new()
            }
        );
        let _ = writeln!(out, "{:<22} {}", "", row.paper);
    }
    out
}

/// The table as Markdown.
pub fn markdown(r: &VerifyReport) -> String {
    let mut out = format!(
        "# reglab verify{}\n\n| preset | paper | claim | decided by | wall s | runs | failed |\n|---|---|---|---|---|---|---|\n",
        if r.quick { " --quick" } else { "" }
    );
    for row in &r.rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.1} | {} | {} |",
            row.preset,
            row.paper.replace('|', "/"),
            row.outcome.word(),
            row.decided_by.replace('|', "/"),
            row.wall_s,
            row.runs,
            row.failed_runs
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::{CheckBuilder, Quantifier};

    #[test]
    fn a_failing_check_is_summarized_by_the_case_that_failed() {
        let mut b = CheckBuilder::new("i", Quantifier::Every, "s", "f");
        b.case(true, "setup holds");
        b.case(false, "arm x: 0.3 < 0.5");
        let v = Verdict {
            preset: "p".into(),
            claim: "c".into(),
            checks: vec![b.finish()],
        };
        assert_eq!(deciding(&v), "(i) fails: arm x: 0.3 < 0.5");
        let mut b = CheckBuilder::new("i", Quantifier::Every, "s", "f");
        b.note("r: left out");
        b.case(true, "first number");
        let v = Verdict {
            preset: "p".into(),
            claim: "c".into(),
            checks: vec![b.finish()],
        };
        assert_eq!(deciding(&v), "(i) holds: first number");
    }
}

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
            let ev = c
                .evidence
                .iter()
                .find(|e| !e.contains("left out"))
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

/// Runs the verification: `ids` empty means every preset.
pub async fn verify(
    presets: &[Preset],
    ids: &[String],
    quick: bool,
    store: RunStore,
    jobs: usize,
) -> Result<VerifyReport, String> {
    let chosen: Vec<&Preset> = if ids.is_empty() {
        presets.iter().collect()
    } else {
        ids.iter()
            .map(|id| {
                presets
                    .iter()
                    .find(|p| &p.id == id)
                    .ok_or_else(|| format!("no preset `{id}` (see reglab list)"))
            })
            .collect::<Result<_, _>>()?
    };
    let (manager, mut events) =
        RunManager::new(store.clone(), jobs, tokio::runtime::Handle::current());
    let manager = Arc::new(manager);
    // Nothing on screen here: keep the event stream drained.
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    let mut launches = Vec::new();
    for p in &chosen {
        let exp = experiments::find(&p.experiment)
            .ok_or_else(|| format!("unknown experiment `{}`", p.experiment))?;
        let req = if quick {
            let profile = exp.quick_profile();
            if profile.preset != p.id {
                // A user's preset of this experiment: its own default configuration.
                LaunchRequest::default()
            } else {
                LaunchRequest::from(&profile)
            }
        } else {
            LaunchRequest::default()
        };
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
            paper: format!(
                "{} ({} {})",
                p.paper.title,
                p.paper.authors.first().map(String::as_str).unwrap_or(""),
                p.paper.year
            ),
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
    std::fs::write(
        report.dir.join("verify.json"),
        serde_json::to_string_pretty(&report).unwrap_or_default(),
    )
    .map_err(|e| format!("writing verify.json: {e}"))?;
    std::fs::write(report.dir.join("verify.md"), markdown(&report))
        .map_err(|e| format!("writing verify.md: {e}"))?;
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

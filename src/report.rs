//! Plain-text reports: the end-of-launch table of runs and the verdict, shared by the headless
//! runner and `reglab show`.

use std::collections::BTreeMap;

use crate::experiments::RunStatus;
use crate::verdict::{Outcome, Verdict};

/// One row of the runs table.
pub struct RunRow<'a> {
    pub arm: &'a str,
    pub seed: u64,
    pub status: &'a RunStatus,
    pub final_values: &'a BTreeMap<String, f64>,
}

/// Formats a number compactly for tables.
///
/// ```
/// use reglab::report::fmt_num;
/// assert_eq!(fmt_num(0.5), "0.5000");
/// assert_eq!(fmt_num(2.5e-7), "2.50e-7");
/// assert_eq!(fmt_num(f64::NAN), "-");
/// ```
pub fn fmt_num(x: f64) -> String {
    if x.is_nan() {
        "-".into()
    } else if x == 0.0 {
        "0".into()
    } else if x.abs() >= 1e4 || x.abs() < 1e-3 {
        format!("{x:.2e}")
    } else {
        format!("{x:.4}")
    }
}

/// A fixed-width table: arm, seed, status, then `columns` from the final values.
pub fn runs_table(rows: &[RunRow], columns: &[&str]) -> String {
    let mut cells: Vec<Vec<String>> = vec![["arm", "seed", "status"]
        .iter()
        .map(|s| s.to_string())
        .chain(columns.iter().map(|c| c.to_string()))
        .collect()];
    for r in rows {
        let status = match r.status {
            RunStatus::Completed { .. } => "completed".to_string(),
            other => other.describe(),
        };
        let mut line = vec![r.arm.to_string(), r.seed.to_string(), status];
        for c in columns {
            line.push(fmt_num(r.final_values.get(*c).copied().unwrap_or(f64::NAN)));
        }
        cells.push(line);
    }
    let widths: Vec<usize> = (0..cells[0].len())
        .map(|j| {
            cells
                .iter()
                .map(|r| r[j].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (i, row) in cells.iter().enumerate() {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(j, (c, w))| {
                if j < 3 {
                    format!("{c:<w$}")
                } else {
                    format!("{c:>w$}")
                }
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
        if i == 0 {
            out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1)));
            out.push('\n');
        }
    }
    out
}

/// The verdict: the claim, then each check with its outcome and evidence.
pub fn verdict_text(v: &Verdict) -> String {
    let mut out = format!("claim: {}\n", v.claim.trim());
    for c in &v.checks {
        out.push_str(&format!(
            "\n({}) {}: {}{}\n",
            c.id,
            c.statement,
            c.outcome_label(),
            if c.informational {
                " (not part of the claim)"
            } else {
                ""
            }
        ));
        if !c.fails_when.is_empty() {
            out.push_str(&format!("    fails when: {}\n", c.fails_when));
        }
        for e in &c.evidence {
            out.push_str(&format!("    {e}\n"));
        }
    }
    let overall = v.outcome();
    out.push_str(&format!(
        "\nverdict: the claim {} in this run{}\n",
        match overall {
            Outcome::Holds => "HOLDS",
            Outcome::Fails => "FAILS",
            Outcome::Inconclusive => "is INCONCLUSIVE",
        },
        if overall == Outcome::Holds {
            ""
        } else {
            " (see the checks above)"
        }
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_and_marks_missing() {
        let fv: BTreeMap<String, f64> = [("loss".to_string(), 0.5)].into_iter().collect();
        let st = RunStatus::Diverged {
            step: 12,
            reason: "x".into(),
        };
        let t = runs_table(
            &[RunRow {
                arm: "a",
                seed: 0,
                status: &st,
                final_values: &fv,
            }],
            &["loss", "trace"],
        );
        assert!(t.contains("diverged at step 12"), "{t}");
        assert!(t.contains("0.5000") && t.contains(" -"), "{t}");
        assert_eq!(fmt_num(12345.0), "1.23e4");
    }
}

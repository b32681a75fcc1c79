//! The verdict panel: the claim, then each check with its numbers, holds or fails.

use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use ratatui::Frame;

use crate::tui::app::App;
use crate::verdict::Outcome;

fn outcome_style(o: Outcome) -> Style {
    let c = match o {
        Outcome::Holds => Color::Green,
        Outcome::Fails => Color::Red,
        Outcome::Inconclusive => Color::Yellow,
    };
    Style::default().fg(c).add_modifier(Modifier::BOLD)
}

/// A check's outcome style; one that only reports numbers is grey.
fn check_style(c: &crate::verdict::Check) -> Style {
    if c.outcome_label() == "REPORTED" {
        Style::default()
            .fg(Color::DarkGray)
            .add_modifier(Modifier::BOLD)
    } else {
        outcome_style(c.outcome)
    }
}

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let block = Block::default().borders(Borders::ALL).title(" Verdict ");
    let Some(p) = app.preset() else {
        frame.render_widget(Paragraph::new("no preset").block(block), area);
        return;
    };
    let mut lines = vec![
        Line::from(Span::styled(
            "Claim",
            Style::default().add_modifier(Modifier::BOLD),
        )),
        Line::from(p.claim.trim().to_string()),
        Line::from(""),
    ];
    match app.verdicts.get(&p.id) {
        None => {
            let running = app
                .runs
                .iter()
                .filter(|r| r.preset == p.id && r.phase.is_active())
                .count();
            lines.push(Line::from(if running > 0 {
                format!("No verdict yet: {running} run(s) still going. It appears when every run of the launch has ended.")
            } else {
                "No verdict yet: press Enter on the Presets panel to launch this preset.".into()
            }));
        }
        Some((v, dir)) => {
            lines.push(Line::from(vec![
                Span::raw("Overall: the claim "),
                Span::styled(
                    v.outcome().word().to_uppercase(),
                    outcome_style(v.outcome()),
                ),
                Span::styled(
                    format!("   ({})", dir.display()),
                    Style::default().fg(Color::DarkGray),
                ),
            ]));
            lines.extend(arm_bars(app, &p.experiment, dir));
            // Every check on one line first, then the numbers behind each.
            for c in &v.checks {
                lines.push(Line::from(vec![
                    Span::styled(format!("({}) ", c.id), Style::default().fg(Color::Cyan)),
                    Span::styled(format!("{:<13}", c.outcome_label()), check_style(c)),
                    Span::raw(c.statement.clone()),
                ]));
            }
            for c in &v.checks {
                lines.push(Line::from(""));
                lines.push(Line::from(vec![
                    Span::styled(format!("({}) ", c.id), Style::default().fg(Color::Cyan)),
                    Span::styled(c.outcome_label(), check_style(c)),
                    Span::styled("  the numbers:", Style::default().fg(Color::DarkGray)),
                ]));
                if !c.fails_when.is_empty() {
                    lines.push(Line::from(Span::styled(
                        format!("    fails when: {}", c.fails_when),
                        Style::default().fg(Color::DarkGray),
                    )));
                }
                for e in &c.evidence {
                    lines.push(Line::from(Span::styled(
                        format!("    {e}"),
                        Style::default().fg(Color::Gray),
                    )));
                }
            }
        }
    }
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .scroll((app.verdict_scroll, 0))
            .block(block),
        area,
    );
}

/// One bar per arm of the launch in `dir`: the experiment's verdict metric (over its reference),
/// mean over the arm's seeds of the last values.
fn arm_bars(app: &App, experiment: &str, dir: &std::path::Path) -> Vec<Line<'static>> {
    let Some((metric, reference)) =
        crate::experiments::find(experiment).and_then(|e| e.verdict_bar())
    else {
        return Vec::new();
    };
    let mut by_arm: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    for r in app.runs.iter().filter(|r| r.dir.parent() == Some(dir)) {
        let v = r.last(metric);
        let v = match reference {
            Some(rf) => v.zip(r.last(rf)).map(|(a, b)| a / b),
            None => v,
        };
        if let Some(v) = v.filter(|v| v.is_finite()) {
            by_arm.entry(r.arm.clone()).or_default().push(v);
        }
    }
    if by_arm.is_empty() {
        return Vec::new();
    }
    let means: Vec<(String, f64)> = by_arm
        .into_iter()
        .map(|(a, v)| (a, v.iter().sum::<f64>() / v.len() as f64))
        .collect();
    let max = means
        .iter()
        .map(|m| m.1.abs())
        .fold(0.0, f64::max)
        .max(1e-300);
    let width = means.iter().map(|m| m.0.len()).max().unwrap_or(0);
    let mut lines = vec![
        Line::from(""),
        Line::from(Span::styled(
            match reference {
                Some(rf) => format!("Per arm: {metric} / {rf} (mean over seeds)"),
                None => format!("Per arm: {metric} (mean over seeds)"),
            },
            Style::default().add_modifier(Modifier::BOLD),
        )),
    ];
    for (arm, v) in means {
        let n = ((v.abs() / max) * 30.0).round() as usize;
        lines.push(Line::from(vec![
            Span::raw(format!("  {arm:<width$} ")),
            Span::styled("█".repeat(n.max(1)), Style::default().fg(Color::Cyan)),
            Span::raw(format!(" {}", crate::report::fmt_num(v))),
        ]));
    }
    lines
}

//! The verdict panel: the claim, then each check with its numbers, holds or fails.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Axis, Block, Borders, Chart, Dataset, GraphType, LegendPosition, Paragraph, Wrap,
};
use ratatui::Frame;

use super::run_color;
use crate::experiments::VerdictPlane;
use crate::report::fmt_num;
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
    let points = match app.verdicts.get(&p.id) {
        Some((_, dir)) => plane_points(app, &p.experiment, dir),
        None => None,
    };
    let text_area = match points {
        Some((plane, points)) if area.height >= 24 && area.width >= 40 => {
            let chart_rows = (area.height / 2).min(18);
            let [top, bottom] =
                Layout::vertical([Constraint::Min(0), Constraint::Length(chart_rows)]).areas(area);
            render_plane(frame, bottom, plane, &points);
            top
        }
        _ => area,
    };
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .scroll((app.verdict_scroll, 0))
            .block(block),
        text_area,
    );
}

/// Every arm's point in the experiment's verdict plane: `(arm, x, y)`, the means over the arm's
/// seeds of the last values (log10 of x when the plane says so); None without a plane or a point.
#[allow(clippy::type_complexity)]
fn plane_points(
    app: &App,
    experiment: &str,
    dir: &std::path::Path,
) -> Option<(VerdictPlane, Vec<(String, f64, f64)>)> {
    let plane = crate::experiments::find(experiment)?.verdict_plane()?;
    let mut by_arm: std::collections::BTreeMap<String, Vec<(f64, f64)>> = Default::default();
    for r in app.runs.iter().filter(|r| r.dir.parent() == Some(dir)) {
        let x = r.last(plane.x).filter(|x| !plane.log_x || *x > 0.0);
        let x = x.map(|x| if plane.log_x { x.log10() } else { x });
        if let Some((x, y)) = x.zip(r.last(plane.y)) {
            if x.is_finite() && y.is_finite() {
                by_arm.entry(r.arm.clone()).or_default().push((x, y));
            }
        }
    }
    let points: Vec<(String, f64, f64)> = by_arm
        .into_iter()
        .map(|(arm, v)| {
            let n = v.len() as f64;
            let x = v.iter().map(|p| p.0).sum::<f64>() / n;
            let y = v.iter().map(|p| p.1).sum::<f64>() / n;
            (arm, x, y)
        })
        .collect();
    (!points.is_empty()).then_some((plane, points))
}

/// `lo..hi` widened by 8% each side (by 1 when the points share one value).
fn padded(values: impl Iterator<Item = f64> + Clone) -> [f64; 2] {
    let lo = values.clone().fold(f64::INFINITY, f64::min);
    let hi = values.fold(f64::NEG_INFINITY, f64::max);
    let pad = if hi > lo { 0.08 * (hi - lo) } else { 1.0 };
    [lo - pad, hi + pad]
}

/// The arms' points as a scatter, one colour and legend entry per arm.
fn render_plane(frame: &mut Frame, area: Rect, plane: VerdictPlane, points: &[(String, f64, f64)]) {
    let data: Vec<[(f64, f64); 1]> = points.iter().map(|p| [(p.1, p.2)]).collect();
    let datasets: Vec<Dataset> = points
        .iter()
        .zip(&data)
        .enumerate()
        .map(|(i, (p, d))| {
            Dataset::default()
                .name(p.0.clone())
                .data(d)
                .graph_type(GraphType::Scatter)
                .marker(Marker::Block)
                .style(Style::default().fg(run_color(i)))
        })
        .collect();
    let [x0, x1] = padded(points.iter().map(|p| p.1));
    let [y0, y1] = padded(points.iter().map(|p| p.2));
    let xlabel = |v: f64| {
        if plane.log_x {
            fmt_num(10f64.powf(v))
        } else {
            fmt_num(v)
        }
    };
    let chart = Chart::new(datasets)
        .block(Block::default().borders(Borders::ALL).title(format!(
            " Per arm: {} against {}{} (mean over seeds) ",
            plane.y,
            plane.x,
            if plane.log_x { ", log scale" } else { "" }
        )))
        .legend_position(Some(LegendPosition::TopRight))
        .hidden_legend_constraints((Constraint::Ratio(1, 2), Constraint::Ratio(1, 1)))
        .x_axis(Axis::default().title(plane.x).bounds([x0, x1]).labels(vec![
            Line::from(xlabel(x0)),
            Line::from(xlabel((x0 + x1) / 2.0)),
            Line::from(xlabel(x1)),
        ]))
        .y_axis(Axis::default().title(plane.y).bounds([y0, y1]).labels(vec![
            Line::from(fmt_num(y0)),
            Line::from(fmt_num((y0 + y1) / 2.0)),
            Line::from(fmt_num(y1)),
        ]));
    frame.render_widget(chart, area);
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

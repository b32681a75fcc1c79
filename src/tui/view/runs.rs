//! The runs panel: this session's runs, runs from earlier sessions and runs another process is
//! writing (read-only).

use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::widgets::{Block, Borders, Cell, Row, Table, TableState};
use ratatui::Frame;

use crate::tui::app::App;
use crate::tui::runs::{Origin, Phase};

use super::fmt_duration;

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let header = Row::new(["", "run", "preset", "status", "step", "where"])
        .style(Style::default().add_modifier(Modifier::BOLD));
    let rows: Vec<Row> = app
        .runs
        .iter()
        .map(|r| {
            let picked = if app.compare.contains(&r.dir) {
                "*"
            } else if app.opened.as_ref() == Some(&r.dir) {
                ">"
            } else {
                ""
            };
            let color = match &r.phase {
                Phase::Running | Phase::Queued => Color::Green,
                Phase::Elsewhere | Phase::Waiting => Color::Yellow,
                Phase::Ended(s) if s.describe().starts_with("completed") => Color::Gray,
                Phase::Ended(_) | Phase::Stale(_) => Color::Red,
            };
            let place = match r.origin {
                Origin::Own(_) => "this session".to_string(),
                Origin::Stored => {
                    let launch = r
                        .dir
                        .parent()
                        .and_then(|p| p.file_name())
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    format!("stored {launch} (read-only)")
                }
            };
            Row::new(vec![
                Cell::from(picked),
                Cell::from(r.label()),
                Cell::from(r.preset.clone()),
                Cell::from(r.phase.word()).style(Style::default().fg(color)),
                Cell::from(format!(
                    "{}/{}{}",
                    r.step,
                    r.total_steps,
                    r.eta_s()
                        .map(|e| format!(" eta {}", fmt_duration(e)))
                        .unwrap_or_default()
                )),
                Cell::from(place),
            ])
        })
        .collect();
    let title = format!(
        " Runs ({}; Space picks up to two to overlay, Enter opens one) ",
        app.runs.len()
    );
    let mut state = TableState::default().with_selected(Some(app.runs_cursor));
    frame.render_stateful_widget(
        Table::new(
            rows,
            [
                Constraint::Length(1),
                Constraint::Min(18),
                Constraint::Length(14),
                Constraint::Length(20),
                Constraint::Length(18),
                Constraint::Min(10),
            ],
        )
        .header(header)
        .row_highlight_style(Style::default().bg(Color::DarkGray))
        .block(Block::default().borders(Borders::ALL).title(title)),
        area,
        &mut state,
    );
}

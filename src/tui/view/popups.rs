//! Popups: help, quit confirmation, arm picker, parameter editor.

use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};
use ratatui::Frame;

use crate::tui::app::{App, Field};

/// Every key of the workbench, as the help overlay and the README list them.
fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let [v] = Layout::vertical([Constraint::Length(h.min(area.height))])
        .flex(Flex::Center)
        .areas(area);
    let [c] = Layout::horizontal([Constraint::Length(w.min(area.width))])
        .flex(Flex::Center)
        .areas(v);
    c
}

/// A popup holding preformatted text (no wrapping: tables keep their columns).
pub fn text(frame: &mut Frame, area: Rect, title: &str, text: &str) {
    let lines: Vec<Line> = text.lines().map(|l| Line::from(l.to_string())).collect();
    let r = centered(area, area.width, lines.len() as u16 + 2);
    frame.render_widget(Clear, r);
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(title.to_string()),
        ),
        r,
    );
}

pub fn help(frame: &mut Frame, area: Rect) {
    let rows = crate::tui::keymap::help_rows();
    let lines: Vec<Line> = rows
        .iter()
        .map(|(k, d)| {
            Line::from(vec![
                Span::styled(format!("{k:<16}"), Style::default().fg(Color::Cyan)),
                Span::raw(*d),
            ])
        })
        .collect();
    let r = centered(area, 100, rows.len() as u16 + 2);
    frame.render_widget(Clear, r);
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" Keys (Esc closes) "),
        ),
        r,
    );
}

pub fn quit(app: &App, frame: &mut Frame, area: Rect) {
    let r = centered(area, 58, 7);
    frame.render_widget(Clear, r);
    let text = vec![
        Line::from(format!("{} run(s) are still going.", app.active_runs())),
        Line::from(""),
        Line::from("s  stop them and quit (metrics so far are kept)"),
        Line::from("k  keep them running headless until they finish"),
        Line::from("Esc  cancel"),
    ];
    frame.render_widget(
        Paragraph::new(text).block(Block::default().borders(Borders::ALL).title(" Quit? ")),
        r,
    );
}

pub fn arms(app: &App, frame: &mut Frame, area: Rect, checked: &[bool], cursor: usize) {
    let Some(p) = app.preset() else { return };
    let h = (p.arms.len() as u16 + 3).min(area.height);
    let r = centered(area, 70, h);
    frame.render_widget(Clear, r);
    let visible = r.height.saturating_sub(2) as usize;
    let start = cursor.saturating_sub(visible.saturating_sub(1));
    let lines: Vec<Line> = p
        .arms
        .iter()
        .zip(checked)
        .enumerate()
        .skip(start)
        .take(visible)
        .map(|(i, (a, c))| {
            let style = if i == cursor {
                Style::default().bg(Color::DarkGray)
            } else {
                Style::default()
            };
            Line::from(Span::styled(
                format!(
                    "[{}] {:<22} {}",
                    if *c { "x" } else { " " },
                    a.name,
                    a.description
                ),
                style,
            ))
        })
        .collect();
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" Arms: Space toggles, a all, Enter launches, Esc cancels "),
        ),
        r,
    );
}

pub fn params(
    app: &App,
    frame: &mut Frame,
    area: Rect,
    fields: &[Field],
    cursor: usize,
    error: Option<&str>,
) {
    let _ = app;
    let h = (fields.len() as u16 + 4).min(area.height);
    let r = centered(area, 72, h);
    frame.render_widget(Clear, r);
    let inner = r.height.saturating_sub(3) as usize;
    let start = cursor.saturating_sub(inner.saturating_sub(1));
    let mut lines: Vec<Line> = fields
        .iter()
        .enumerate()
        .skip(start)
        .take(inner)
        .map(|(i, f)| {
            let value = if f.text.is_empty() {
                Span::styled(
                    format!("{} (preset)", f.original),
                    Style::default().fg(Color::DarkGray),
                )
            } else {
                Span::styled(f.text.clone(), Style::default().fg(Color::White))
            };
            let mut spans = vec![Span::styled(
                format!("{:<16}", f.name),
                Style::default().fg(Color::Cyan),
            )];
            spans.push(value);
            if i == cursor {
                spans.push(Span::styled(
                    "_",
                    Style::default().add_modifier(Modifier::SLOW_BLINK),
                ));
                Line::from(spans).style(Style::default().bg(Color::DarkGray))
            } else {
                Line::from(spans)
            }
        })
        .collect();
    lines.push(match error {
        Some(e) => Line::from(Span::styled(e.to_string(), Style::default().fg(Color::Red))),
        None => Line::from(Span::styled(
            "type a value (empty keeps the preset's); Enter applies; Esc cancels",
            Style::default().fg(Color::DarkGray),
        )),
    });
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" Parameters for the next launch "),
        ),
        r,
    );
}

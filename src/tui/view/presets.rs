//! The preset picker and the selected preset's details.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, List, ListItem, ListState, Paragraph, Wrap};
use ratatui::Frame;

use crate::tui::app::App;

/// Papers on the roadmap (one preset each).
const ROADMAP: usize = 24;

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(40), Constraint::Percentage(60)]).areas(area);
    let items: Vec<ListItem> = app
        .presets
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let status = app.preset_status(&p.id);
            let color = if status.contains("holds") {
                Color::Green
            } else if status.contains("fails") {
                Color::Red
            } else if status.starts_with("running") {
                Color::Yellow
            } else {
                Color::Gray
            };
            ListItem::new(vec![
                Line::from(vec![
                    Span::styled(format!("{} ", i + 1), Style::default().fg(Color::DarkGray)),
                    Span::styled(p.id.clone(), Style::default().add_modifier(Modifier::BOLD)),
                    Span::styled(format!("  {status}"), Style::default().fg(color)),
                ]),
                Line::from(Span::styled(
                    format!(
                        "  {} ({})",
                        p.paper.authors.first().cloned().unwrap_or_default(),
                        p.paper.year
                    ),
                    Style::default().fg(Color::DarkGray),
                )),
            ])
        })
        .collect();
    let mut state = ListState::default().with_selected(Some(app.selected));
    frame.render_stateful_widget(
        List::new(items)
            .block(Block::default().borders(Borders::ALL).title(format!(
                " Presets ({} more papers on the roadmap are not built yet) ",
                ROADMAP.saturating_sub(crate::presets::builtin_files().len())
            )))
            .highlight_style(Style::default().bg(Color::DarkGray))
            .highlight_symbol("> "),
        left,
        &mut state,
    );

    let Some(p) = app.preset() else {
        frame.render_widget(
            Paragraph::new("no presets loaded").block(Block::default().borders(Borders::ALL)),
            right,
        );
        return;
    };
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let dim = Style::default().fg(Color::DarkGray);
    let mut lines = vec![
        Line::from(Span::styled(p.title.clone(), bold)),
        Line::from(Span::styled(
            format!(
                "{} ({}), {}",
                p.paper.title,
                p.paper.year,
                p.paper.authors.join(", ")
            ),
            dim,
        )),
        Line::from(Span::styled(p.paper.link.clone(), dim)),
        Line::from(""),
        Line::from(Span::styled("Claim", bold)),
        Line::from(p.claim.trim().to_string()),
        Line::from(""),
        Line::from(Span::styled("Summary", bold)),
        Line::from(p.summary.trim().to_string()),
        Line::from(""),
    ];
    let staged = app.staged.get(&p.id).cloned().unwrap_or_default();
    let seeds = app.staged_seeds.get(&p.id).unwrap_or(&p.seeds);
    lines.push(Line::from(Span::styled(
        format!(
            "Parameters (seeds {:?}{})",
            seeds,
            if staged.is_empty() {
                String::new()
            } else {
                format!(
                    "; next launch: {}",
                    staged
                        .iter()
                        .map(|o| format!("{}={}", o.key, o.value))
                        .collect::<Vec<_>>()
                        .join(" ")
                )
            }
        ),
        bold,
    )));
    let params: Vec<String> = p.params.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
    lines.push(Line::from(params.join("  ")));
    lines.push(Line::from(""));
    lines.push(Line::from(Span::styled(
        format!("Arms ({})", p.arms.len()),
        bold,
    )));
    for a in &p.arms {
        lines.push(Line::from(vec![
            Span::styled(format!("{:<22}", a.name), Style::default().fg(Color::Cyan)),
            Span::styled(a.description.clone(), dim),
        ]));
    }
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(Block::default().borders(Borders::ALL).title(" Preset ")),
        right,
    );
}

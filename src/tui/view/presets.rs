//! The preset picker and the selected preset's details.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, List, ListItem, ListState, Paragraph, Wrap};
use ratatui::Frame;

use crate::roadmap::Roadmap;
use crate::tui::app::{App, PickerRow};

/// The picker: presets grouped by the roadmap's themes, papers not built yet dimmed, scrolled
/// to keep the selection (and a line around it) in view.
fn render_list(app: &App, frame: &mut Frame, area: Rect) {
    let dim = Style::default().fg(Color::DarkGray);
    let rows = app.picker_rows();
    let mut number = 0;
    let mut selected_row = None;
    let items: Vec<ListItem> = rows
        .iter()
        .enumerate()
        .map(|(row, r)| match *r {
            PickerRow::Theme {
                name,
                built,
                papers,
            } => {
                let count = if name == crate::tui::app::OTHER_PRESETS {
                    format!(" ({built})")
                } else {
                    format!(" ({built}/{papers} built)")
                };
                ListItem::new(Line::from(vec![
                    Span::styled(
                        name.to_string(),
                        Style::default()
                            .fg(Color::Cyan)
                            .add_modifier(Modifier::BOLD),
                    ),
                    Span::styled(count, dim),
                ]))
            }
            PickerRow::Paper(p) => ListItem::new(Line::from(Span::styled(
                format!("   {}  {} ({})", p.id, p.title, p.year),
                dim,
            ))),
            PickerRow::Preset(i) => {
                number += 1;
                if i == app.selected {
                    selected_row = Some(row);
                }
                let p = &app.presets[i];
                let status = app.preset_status(&p.id);
                let color = if status.contains("holds") {
                    Color::Green
                } else if status.contains("fails") {
                    Color::Red
                } else if status.starts_with("running") || status.starts_with("queued") {
                    Color::Yellow
                } else {
                    Color::Gray
                };
                let label = if number <= 9 {
                    format!("{number} ")
                } else {
                    "  ".into()
                };
                ListItem::new(vec![
                    Line::from(vec![
                        Span::styled(label, dim),
                        Span::styled(p.id.clone(), Style::default().add_modifier(Modifier::BOLD)),
                        Span::styled(format!("  {status}"), Style::default().fg(color)),
                    ]),
                    Line::from(Span::styled(
                        format!(
                            "  {} ({})",
                            p.paper.authors.first().cloned().unwrap_or_default(),
                            p.paper.year
                        ),
                        dim,
                    )),
                ])
            }
        })
        .collect();
    let roadmap = Roadmap::get();
    let mut block = Block::default().borders(Borders::ALL).title(format!(
        " Presets (roadmap: {} of {} papers built) ",
        app.papers_built(),
        roadmap.papers.len()
    ));
    if app.filtering || !app.filter.is_empty() {
        let (text, style) = if app.filtering {
            (
                format!(" /{}_ (Enter keeps, Esc clears) ", app.filter),
                Style::default().fg(Color::Yellow),
            )
        } else {
            (
                format!(" filter: {} (Esc clears) ", app.filter),
                Style::default().fg(Color::Yellow),
            )
        };
        block = block.title_bottom(Line::from(Span::styled(text, style)));
    }
    let empty = items.is_empty();
    let mut state = ListState::default().with_selected(selected_row);
    frame.render_stateful_widget(
        List::new(items)
            .block(block)
            .highlight_style(Style::default().bg(Color::DarkGray))
            .highlight_symbol("> ")
            .scroll_padding(1),
        area,
        &mut state,
    );
    if empty && area.width > 2 && area.height > 2 {
        frame.render_widget(
            Paragraph::new(format!("nothing matches `{}`", app.filter)).style(dim),
            Rect {
                x: area.x + 1,
                y: area.y + 1,
                width: area.width - 2,
                height: 1,
            },
        );
    }
}

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(40), Constraint::Percentage(60)]).areas(area);
    render_list(app, frame, left);

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

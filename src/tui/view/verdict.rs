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
            // Every check on one line first, then the numbers behind each.
            for c in &v.checks {
                lines.push(Line::from(vec![
                    Span::styled(format!("({}) ", c.id), Style::default().fg(Color::Cyan)),
                    Span::styled(
                        format!("{:<13}", c.outcome.word().to_uppercase()),
                        outcome_style(c.outcome),
                    ),
                    Span::raw(c.statement.clone()),
                ]));
            }
            for c in &v.checks {
                lines.push(Line::from(""));
                lines.push(Line::from(vec![
                    Span::styled(format!("({}) ", c.id), Style::default().fg(Color::Cyan)),
                    Span::styled(c.outcome.word().to_uppercase(), outcome_style(c.outcome)),
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

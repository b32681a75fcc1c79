//! Drawing: a pure function of [`App`] onto a ratatui frame. No I/O happens here.

mod dashboard;
pub mod pictures;
pub mod popups;
mod presets;
mod runs;
mod verdict;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::Frame;

use super::app::{App, Overlay, Panel};

/// Below this size the workbench shows only a message.
pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 15;

/// Colors for runs, from the 16-color palette every SSH terminal has.
pub const RUN_COLORS: [Color; 12] = [
    Color::Cyan,
    Color::Yellow,
    Color::Magenta,
    Color::Green,
    Color::LightRed,
    Color::LightBlue,
    Color::LightYellow,
    Color::LightMagenta,
    Color::LightGreen,
    Color::LightCyan,
    Color::Red,
    Color::Blue,
];

pub fn run_color(i: usize) -> Color {
    RUN_COLORS[i % RUN_COLORS.len()]
}

/// Draws the whole screen.
pub fn render(app: &App, frame: &mut Frame) {
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let msg = format!(
            "terminal too small: {}x{} (needs at least {MIN_WIDTH}x{MIN_HEIGHT}); enlarge it, or q to quit",
            area.width, area.height
        );
        frame.render_widget(
            Paragraph::new(msg)
                .wrap(Wrap { trim: true })
                .style(Style::default().fg(Color::Yellow)),
            area,
        );
        return;
    }
    let [header, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(5),
        Constraint::Length(1),
    ])
    .areas(area);
    render_header(app, frame, header);
    match app.focus {
        Panel::Presets => presets::render(app, frame, body),
        Panel::Dashboard => dashboard::render(app, frame, body),
        Panel::Runs => runs::render(app, frame, body),
        Panel::Verdict => verdict::render(app, frame, body),
    }
    render_footer(app, frame, footer);
    match &app.overlay {
        Overlay::None => {}
        Overlay::Help => popups::help(frame, area),
        Overlay::Verify(text) => popups::text(frame, area, " reglab verify (Esc closes) ", text),
        Overlay::Quit => popups::quit(app, frame, area),
        Overlay::Arms { checked, cursor } => popups::arms(app, frame, area, checked, *cursor),
        Overlay::Params {
            fields,
            cursor,
            error,
        } => popups::params(app, frame, area, fields, *cursor, error.as_deref()),
    }
}

fn render_header(app: &App, frame: &mut Frame, area: Rect) {
    let mut spans = vec![Span::styled(
        " reglab ",
        Style::default()
            .fg(Color::Black)
            .bg(Color::Cyan)
            .add_modifier(Modifier::BOLD),
    )];
    for p in Panel::ALL {
        let style = if p == app.focus {
            Style::default()
                .fg(Color::Black)
                .bg(Color::White)
                .add_modifier(Modifier::BOLD)
        } else {
            Style::default().fg(Color::Gray)
        };
        spans.push(Span::raw(" "));
        spans.push(Span::styled(format!(" {} ", p.title()), style));
    }
    if let Some(p) = app.preset() {
        spans.push(Span::styled(
            format!("  {}", p.id),
            Style::default().fg(Color::Cyan),
        ));
    }
    let (running, queued) = app.running_and_queued();
    if running > 0 {
        spans.push(Span::styled(
            format!("  {running} running"),
            Style::default().fg(Color::Green),
        ));
    }
    if queued > 0 {
        spans.push(Span::styled(
            format!("  {queued} queued"),
            Style::default().fg(Color::Yellow),
        ));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn render_footer(app: &App, frame: &mut Frame, area: Rect) {
    let hint = crate::tui::keymap::footer(app.focus);
    let line = Line::from(vec![
        Span::styled(hint, Style::default().fg(Color::DarkGray)),
        Span::raw("  "),
        Span::styled(app.message.clone(), Style::default().fg(Color::Yellow)),
    ]);
    frame.render_widget(Paragraph::new(line), area);
}

/// Formats seconds as "1h02m", "3m05s" or "42s".
pub fn fmt_duration(s: f64) -> String {
    if !s.is_finite() || s < 0.0 {
        return "-".into();
    }
    let s = s.round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s / 60 % 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

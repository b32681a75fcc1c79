//! The live dashboard: a large chart of the focused metric with the runs overlaid (and reference
//! lines such as 2/eta), then one row per run with its progress, speed, ETA and a sparkline per
//! metric. Everything is driven by the experiment's metric metadata.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Axis, Block, Borders, Cell, Chart, Dataset, GraphType, LegendPosition, Paragraph, Row, Table,
    TableState,
};
use ratatui::Frame;

use crate::report::fmt_num;
use crate::tui::app::App;
use crate::tui::history::{smooth, sparkline};

use super::{fmt_duration, run_color};

/// Sparkline characters per metric cell.
const SPARK: usize = 8;

/// The mean of several series at each step they share (steps seen in only some series use the
/// series that have them).
fn mean_by_step(series: &[Vec<(f64, f64)>]) -> Vec<(f64, f64)> {
    if series.len() == 1 {
        return series[0].clone();
    }
    by_step(series)
        .into_iter()
        .map(|(x, ys)| (x, ys.iter().sum::<f64>() / ys.len() as f64))
        .collect()
}

/// The finite values of several series at each step, steps in order.
fn by_step(series: &[Vec<(f64, f64)>]) -> Vec<(f64, Vec<f64>)> {
    let mut acc: std::collections::BTreeMap<u64, (f64, Vec<f64>)> = Default::default();
    for s in series {
        for &(x, y) in s {
            if y.is_finite() {
                acc.entry(x.to_bits()).or_insert((x, Vec::new())).1.push(y);
            }
        }
    }
    let mut out: Vec<(f64, Vec<f64>)> = acc.into_values().collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// Points of a line: (step, value).
type Points = Vec<(f64, f64)>;

/// The lowest and the highest value over several series at each step two or more of them
/// share: the edges of a band around their mean.
pub fn band_by_step(series: &[Vec<(f64, f64)>]) -> (Points, Points) {
    by_step(series)
        .into_iter()
        .filter(|(_, ys)| ys.len() >= 2)
        .map(|(x, ys)| {
            let lo = ys.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = ys.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            ((x, lo), (x, hi))
        })
        .unzip()
}

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let shown = app.shown_runs();
    if shown.is_empty() {
        frame.render_widget(
            Paragraph::new(
                "No runs to show for this preset yet. Go to Presets (Tab) and press Enter to \
                 launch, or open a stored run from the Runs panel.",
            )
            .wrap(ratatui::widgets::Wrap { trim: true })
            .block(Block::default().borders(Borders::ALL).title(" Dashboard ")),
            area,
        );
        return;
    }
    let table_height = (shown.len() as u16 + 3).min(area.height / 2).max(4);
    let [top_area, table_area] =
        Layout::vertical([Constraint::Min(6), Constraint::Length(table_height)]).areas(area);
    // The focused run's pictures (digit grids, scatters) beside the chart, when there is room.
    let focused = &app.runs[shown[0]];
    let chart_area = if !focused.pictures.is_empty() && top_area.width >= 70 {
        let [chart_area, picture_area] = Layout::horizontal([
            Constraint::Min(40),
            Constraint::Length((top_area.width * 2 / 5).min(48)),
        ])
        .areas(top_area);
        render_pictures(focused, frame, picture_area);
        chart_area
    } else {
        top_area
    };
    render_chart(app, frame, chart_area, &shown);
    render_table(app, frame, table_area, &shown);
}

/// The run's pictures stacked, each in an equal share of the height.
fn render_pictures(run: &crate::tui::runs::RunView, frame: &mut Frame, area: Rect) {
    let n = run.pictures.len().min(3);
    let parts = Layout::vertical(vec![Constraint::Ratio(1, n as u32); n]).split(area);
    for ((name, picture), part) in run.pictures.iter().zip(parts.iter()) {
        frame.render_widget(
            super::pictures::PictureView {
                title: format!("{name} ({})", run.label()),
                picture,
            },
            *part,
        );
    }
}

fn to_scale(points: &[(f64, f64)], log: bool) -> Vec<(f64, f64)> {
    points
        .iter()
        .filter(|p| p.1.is_finite() && (!log || p.1 > 0.0))
        .map(|&(x, y)| (x, if log { y.log10() } else { y }))
        .collect()
}

/// One line of the chart: the run's (or arm's) position among those shown, what it is, and its
/// points (already smoothed and scaled).
type Series = (usize, Trace, Vec<(f64, f64)>);

/// What a line of the chart draws.
#[derive(Clone, Copy, PartialEq)]
enum Trace {
    /// A run, or the mean of an arm's runs.
    Mean,
    /// A reference (e.g. 2/eta).
    Reference,
    /// An edge of an arm's min-max band over seeds.
    Band,
}

fn render_chart(app: &App, frame: &mut Frame, area: Rect, shown: &[usize]) {
    let metrics = app.chart_metrics();
    if metrics.is_empty() {
        return;
    }
    let m = &metrics[app.metric_idx % metrics.len()];
    let log = app.log_scale;
    let w = app.smoothing();
    // Many runs (or asked with `g`): one line per arm, the mean over its seeds, between the
    // edges of a min-max band; otherwise one line per run.
    let grouped = app.grouped(shown.len());
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    for &ri in shown {
        let label = if grouped {
            app.runs[ri].arm.clone()
        } else {
            app.runs[ri].label()
        };
        match groups.iter_mut().find(|g| g.0 == label) {
            Some(g) => g.1.push(ri),
            None => groups.push((label, vec![ri])),
        }
    }
    // Owned series first: datasets borrow them.
    let mut series: Vec<Series> = Vec::new();
    for (ci, (_, members)) in groups.iter().enumerate() {
        let own: Vec<Vec<(f64, f64)>> = members
            .iter()
            .filter_map(|&ri| app.series_points(ri, m.name))
            .collect();
        if !own.is_empty() {
            series.push((
                ci,
                Trace::Mean,
                to_scale(&smooth(&mean_by_step(&own), w), log),
            ));
        }
        if grouped && own.len() >= 2 {
            let (lo, hi) = band_by_step(&own);
            series.push((ci, Trace::Band, to_scale(&smooth(&lo, w), log)));
            series.push((ci, Trace::Band, to_scale(&smooth(&hi, w), log)));
        }
        let refs: Vec<Vec<(f64, f64)>> = members
            .iter()
            .filter_map(|&ri| m.reference.and_then(|r| app.runs[ri].series.get(r)))
            .map(|h| h.points())
            .collect();
        if !refs.is_empty() {
            series.push((ci, Trace::Reference, to_scale(&mean_by_step(&refs), log)));
        }
    }
    for (_, _, s) in &mut series {
        for p in s.iter_mut() {
            p.0 = m.x_of(p.0);
        }
    }
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (_, _, s) in &series {
        for &(x, y) in s {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if x1 - x0 < 1e-12 {
        x1 = x0 + 1.0;
    }
    if y1 - y0 < 1e-12 {
        y0 -= 0.5;
        y1 += 0.5;
    }
    let pad = (y1 - y0) * 0.05;
    let (y0, y1) = (y0 - pad, y1 + pad);
    let named = groups.len() <= 8;
    let datasets: Vec<Dataset> = series
        .iter()
        .map(|(ci, kind, pts)| {
            let style = Style::default().fg(run_color(*ci));
            let mut d = Dataset::default()
                .data(pts)
                .graph_type(GraphType::Line)
                .marker(match kind {
                    Trace::Mean => Marker::Braille,
                    Trace::Reference => Marker::Dot,
                    Trace::Band => Marker::Braille,
                })
                .style(if *kind == Trace::Band {
                    style.add_modifier(Modifier::DIM)
                } else {
                    style
                });
            if named && *kind == Trace::Mean {
                d = d.name(groups[*ci].0.clone());
            }
            d
        })
        .collect();
    let ylabel = |v: f64| {
        if log {
            fmt_num(10f64.powf(v))
        } else {
            fmt_num(v)
        }
    };
    let reference = m
        .reference
        .map(|r| format!(", dotted: {r}"))
        .unwrap_or_default();
    let title = format!(
        " {} ({}/{}){}{}{}{} ",
        m.label,
        app.metric_idx % metrics.len() + 1,
        metrics.len(),
        if grouped {
            ", mean and min-max band over seeds per arm"
        } else {
            ""
        },
        if log { ", log scale" } else { "" },
        if w > 0.0 {
            format!(", smoothing {w}")
        } else {
            String::new()
        },
        reference
    );
    let chart = Chart::new(datasets)
        .block(Block::default().borders(Borders::ALL).title(title))
        .legend_position(if named {
            Some(LegendPosition::TopRight)
        } else {
            None
        })
        .hidden_legend_constraints((Constraint::Ratio(1, 3), Constraint::Ratio(1, 2)))
        .x_axis(
            Axis::default()
                .title(m.x_name())
                .bounds([x0, x1])
                .labels(vec![
                    Line::from(fmt_num(x0)),
                    Line::from(fmt_num((x0 + x1) / 2.0)),
                    Line::from(fmt_num(x1)),
                ])
                .style(Style::default().fg(Color::Gray)),
        )
        .y_axis(
            Axis::default()
                .bounds([y0, y1])
                .labels(vec![
                    Line::from(ylabel(y0)),
                    Line::from(ylabel((y0 + y1) / 2.0)),
                    Line::from(ylabel(y1)),
                ])
                .style(Style::default().fg(Color::Gray)),
        );
    frame.render_widget(chart, area);
}

fn render_table(app: &App, frame: &mut Frame, area: Rect, shown: &[usize]) {
    let metrics = app.chart_metrics();
    // How many metric columns fit after the fixed ones.
    let longest = shown
        .iter()
        .map(|&i| app.runs[i].label().chars().count())
        .max()
        .unwrap_or(3) as u16;
    let fixed = longest + 47;
    let per = SPARK as u16 + 10;
    let fit = (area.width.saturating_sub(fixed + 2) / per) as usize;
    let focused = app.metric_idx % metrics.len().max(1);
    // The focused metric first, then the others in order.
    let mut order: Vec<usize> = (0..metrics.len()).collect();
    order.retain(|&i| i != focused);
    order.insert(0, focused.min(metrics.len().saturating_sub(1)));
    order.truncate(fit.min(metrics.len()));

    let mut header = vec![
        Cell::from("run"),
        Cell::from("status"),
        Cell::from("progress"),
        Cell::from("steps/s"),
        Cell::from("ETA"),
    ];
    for &i in &order {
        header.push(Cell::from(metrics[i].name));
    }
    let rows: Vec<Row> = shown
        .iter()
        .enumerate()
        .map(|(ci, &ri)| {
            let r = &app.runs[ri];
            let filled = (r.progress() * 10.0).round() as usize;
            let bar = format!(
                "{}{} {:>3.0}%",
                "█".repeat(filled),
                "░".repeat(10 - filled),
                r.progress() * 100.0
            );
            let mut cells = vec![
                Cell::from(Span::styled(
                    r.label(),
                    Style::default()
                        .fg(run_color(ci))
                        .add_modifier(Modifier::BOLD),
                )),
                Cell::from(r.phase.word()),
                Cell::from(bar),
                Cell::from(r.rate.map(|v| format!("{v:.0}")).unwrap_or("-".into())),
                Cell::from(r.eta_s().map(fmt_duration).unwrap_or("-".into())),
            ];
            for &i in &order {
                let name = metrics[i].name;
                let cell = match app.series_points(ri, name) {
                    Some(points) if !points.is_empty() => {
                        let ys: Vec<f64> = points.iter().map(|p| p.1).collect();
                        format!(
                            "{} {}",
                            sparkline(&ys, SPARK),
                            fmt_num(ys.last().copied().unwrap_or(f64::NAN))
                        )
                    }
                    _ => "-".into(),
                };
                cells.push(Cell::from(cell));
            }
            Row::new(cells)
        })
        .collect();
    let label_width = shown
        .iter()
        .map(|&i| app.runs[i].label().chars().count())
        .max()
        .unwrap_or(3) as u16;
    let mut widths = vec![
        Constraint::Length(label_width.max(3)),
        Constraint::Length(12),
        Constraint::Length(15),
        Constraint::Length(8),
        Constraint::Length(7),
    ];
    widths.extend(order.iter().map(|_| Constraint::Length(per)));
    let mut state = TableState::default().with_selected(Some(app.dash_cursor));
    let title = format!(
        " {} run(s): step {} {} ",
        shown.len(),
        shown.iter().map(|&i| app.runs[i].step).max().unwrap_or(0),
        if fit < metrics.len() {
            "(widen the terminal for more metric columns)"
        } else {
            ""
        }
    );
    frame.render_stateful_widget(
        Table::new(rows, widths)
            .header(Row::new(header).style(Style::default().add_modifier(Modifier::BOLD)))
            .row_highlight_style(Style::default().bg(Color::DarkGray))
            .block(Block::default().borders(Borders::ALL).title(title)),
        area,
        &mut state,
    );
}

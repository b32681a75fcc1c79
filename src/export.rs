//! `reglab export PATH [--csv FILE] [--svg DIR]`: the metrics of a launch (or of one run) as a
//! long-form CSV and as one SVG chart per metric.
//!
//! The CSV has one row per metric per logged point, with the header
//! `launch,run,arm,seed,step,metric,value`; fields are quoted only when they must be, numbers are
//! written plainly (shortest form that reads back to the same value) and a missing value (NaN,
//! a diverged step) is an empty field, which pandas, polars and R read as NaN.
//!
//! Each chart puts the step on x and overlays the arms in distinct colours: one line per arm
//! (the mean over seeds, with a min-max band when there are several), the metric's reference
//! series dashed in the arm's colour when its [`MetricSpec`](crate::metrics::MetricSpec)
//! declares one, and a log y axis when the spec asks for one and every value is positive.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;

use crate::engine::store::{self, MetricPoint};

/// How the command is called (the arguments after `export`).
pub const USAGE: &str = "usage: reglab export PATH [--csv FILE] [--svg DIR]";

/// The CSV header.
pub const CSV_HEADER: &str = "launch,run,arm,seed,step,metric,value";

/// Chart size in pixels.
const CHART_SIZE: (u32, u32) = (960, 600);

/// The colours of the arms, in the order of their names (then repeating).
pub const ARM_COLOURS: [(u8, u8, u8); 10] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
];

/// The colour of the `i`-th arm (arms sorted by name).
pub fn arm_colour(i: usize) -> (u8, u8, u8) {
    ARM_COLOURS[i % ARM_COLOURS.len()]
}

/// Parses the arguments after `export`: `PATH [--csv FILE] [--svg DIR]` (also `--csv=FILE`).
/// At least one of `--csv` and `--svg` is required. Errors are one line.
pub fn parse_args(args: &[String]) -> Result<(PathBuf, Option<PathBuf>, Option<PathBuf>), String> {
    let mut path: Option<PathBuf> = None;
    let mut csv: Option<PathBuf> = None;
    let mut svg: Option<PathBuf> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        let slot = match flag {
            "--csv" => &mut csv,
            "--svg" => &mut svg,
            "-h" | "--help" => return Err(USAGE.to_string()),
            f if f.starts_with('-') && f.len() > 1 => {
                return Err(format!("export: unknown option {f} ({USAGE})"))
            }
            _ => {
                if path.is_some() {
                    return Err(format!("export: one PATH only, got another: {a} ({USAGE})"));
                }
                path = Some(PathBuf::from(a));
                continue;
            }
        };
        let value = match inline {
            Some(v) => v,
            None => it
                .next()
                .cloned()
                .ok_or_else(|| format!("export: {flag} needs a value ({USAGE})"))?,
        };
        if value.is_empty() {
            return Err(format!("export: {flag} needs a value ({USAGE})"));
        }
        if slot.is_some() {
            return Err(format!("export: {flag} given twice"));
        }
        *slot = Some(PathBuf::from(value));
    }
    let path = path.ok_or_else(|| format!("export: no PATH given ({USAGE})"))?;
    if csv.is_none() && svg.is_none() {
        return Err(format!(
            "export: nothing to write: give --csv FILE, --svg DIR or both ({USAGE})"
        ));
    }
    Ok((path, csv, svg))
}

/// One run as exported.
struct Run {
    launch: String,
    run: String,
    arm: String,
    seed: u64,
    experiment: String,
    points: Vec<MetricPoint>,
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn read_run(dir: &Path, launch: &str) -> Result<Run, String> {
    let config = store::read_config(dir)?;
    let metrics = dir.join("metrics.jsonl");
    // A run that has not logged yet has no metrics file: it has no points.
    let points = if metrics.is_file() {
        store::read_metrics(&metrics)?.points
    } else {
        Vec::new()
    };
    Ok(Run {
        launch: launch.to_string(),
        run: file_name(dir),
        arm: config.arm,
        seed: config.seed,
        experiment: config.experiment,
        points,
    })
}

/// The runs under `path`: the run itself (a folder with `config.json`) or every run folder of a
/// launch, sorted by folder name.
fn read_runs(path: &Path) -> Result<Vec<Run>, String> {
    let abs = fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if abs.join("config.json").is_file() {
        let launch = abs.parent().map(file_name).unwrap_or_default();
        return Ok(vec![read_run(&abs, &launch)?]);
    }
    if !abs.is_dir() {
        return Err(format!(
            "{}: not a run folder (no config.json) nor a launch folder",
            path.display()
        ));
    }
    let mut dirs: Vec<PathBuf> = fs::read_dir(&abs)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("config.json").is_file())
        .collect();
    dirs.sort();
    if dirs.is_empty() {
        return Err(format!(
            "{}: not a run folder (no config.json) nor a launch folder (no run folders in it)",
            path.display()
        ));
    }
    let launch = file_name(&abs);
    dirs.iter().map(|d| read_run(d, &launch)).collect()
}

/// A CSV field, quoted only when it holds a comma, a quote or a line break.
fn csv_field(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\"")).into()
    } else {
        s.into()
    }
}

/// A value as the CSV writes it: the shortest text that reads back to the same number, in
/// scientific notation when very large or small; NaN (and infinities) as an empty field.
fn csv_number(v: f64) -> String {
    if v.is_finite() {
        format!("{v:?}")
    } else {
        String::new()
    }
}

/// The long-form CSV of the runs.
fn csv_text(runs: &[Run]) -> (String, usize) {
    let mut out = String::with_capacity(64 * 1024);
    out.push_str(CSV_HEADER);
    out.push('\n');
    let mut rows = 0;
    for r in runs {
        let prefix = format!(
            "{},{},{},{}",
            csv_field(&r.launch),
            csv_field(&r.run),
            csv_field(&r.arm),
            r.seed
        );
        for p in &r.points {
            for (name, v) in &p.metrics {
                let _ = writeln!(
                    out,
                    "{prefix},{},{},{}",
                    p.step,
                    csv_field(name),
                    csv_number(*v)
                );
                rows += 1;
            }
        }
    }
    (out, rows)
}

/// What a chart needs to know about a metric.
struct Spec {
    label: String,
    unit: String,
    log: bool,
    reference: Option<String>,
    /// The x axis's name and steps per unit (`MetricSpec::x_axis`).
    x_axis: (String, f64),
}

fn spec_of(experiment: &str, name: &str) -> Spec {
    let found = crate::experiments::find(experiment)
        .and_then(|e| e.metrics().into_iter().find(|m| m.name == name));
    match found {
        Some(m) => Spec {
            label: m.label.to_string(),
            unit: m.unit.to_string(),
            log: m.log_scale,
            reference: m.reference.map(str::to_string),
            x_axis: (m.x_name().to_string(), m.x_of(1.0).recip()),
        },
        None => Spec {
            label: name.to_string(),
            unit: String::new(),
            log: false,
            reference: None,
            x_axis: ("step".into(), 1.0),
        },
    }
}

/// One arm's series on a chart: stretches without gaps, each a list of
/// (step, mean, min, max) over the seeds that have a usable value at that step.
struct ArmSeries {
    arm: String,
    colour: RGBColor,
    seeds: usize,
    main: Vec<Vec<(f64, f64, f64, f64)>>,
    reference: Vec<Vec<(f64, f64, f64, f64)>>,
}

/// Mean, min and max over the seeds of `metric` at each step, split where no seed has a usable
/// value.
fn aggregate(
    runs: &[&Run],
    metric: &str,
    usable: impl Fn(f64) -> bool,
) -> Vec<Vec<(f64, f64, f64, f64)>> {
    let per_run: Vec<BTreeMap<u64, f64>> = runs
        .iter()
        .map(|r| {
            r.points
                .iter()
                .filter_map(|p| p.metrics.get(metric).map(|v| (p.step, *v)))
                .collect()
        })
        .collect();
    let steps: BTreeSet<u64> = per_run.iter().flat_map(|m| m.keys().copied()).collect();
    let mut segments = Vec::new();
    let mut current = Vec::new();
    for step in steps {
        let vals: Vec<f64> = per_run
            .iter()
            .filter_map(|m| m.get(&step).copied())
            .filter(|v| usable(*v))
            .collect();
        if vals.is_empty() {
            if !current.is_empty() {
                segments.push(std::mem::take(&mut current));
            }
            continue;
        }
        let mean = vals.iter().sum::<f64>() / vals.len() as f64;
        let lo = vals.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        current.push((step as f64, mean, lo, hi));
    }
    if !current.is_empty() {
        segments.push(current);
    }
    segments
}

fn draw_err<E: std::fmt::Display>(path: &Path) -> impl Fn(E) -> String + '_ {
    move |e| format!("{}: {e}", path.display())
}

/// What one chart shows, whatever its y axis.
struct Chart<'a> {
    /// The file it is written to (for errors).
    out: &'a Path,
    title: &'a str,
    y_desc: &'a str,
    x: Range<f64>,
    x_desc: &'a str,
    arms: &'a [ArmSeries],
    /// The name of the reference series, when drawn.
    reference: Option<&'a str>,
}

/// Draws one chart into `root`, on the y axis `y` (linear or log).
fn draw_chart<YR>(
    root: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    c: &Chart<'_>,
    y: YR,
) -> Result<(), String>
where
    YR: AsRangedCoord<Value = f64>,
    YR::CoordDescType: ValueFormatter<f64>,
{
    let (out, arms, reference) = (c.out, c.arms, c.reference);
    let err = draw_err(out);
    root.fill(&WHITE).map_err(&err)?;
    let mut chart = ChartBuilder::on(root)
        .caption(c.title, ("sans-serif", 22))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(80)
        .build_cartesian_2d(c.x.clone(), y)
        .map_err(&err)?;
    chart
        .configure_mesh()
        .x_desc(c.x_desc)
        .y_desc(c.y_desc)
        .x_label_formatter(&|v| {
            let s = format!("{v:.3}");
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        })
        .light_line_style(BLACK.mix(0.06))
        .draw()
        .map_err(&err)?;

    // Bands first, under every line.
    for a in arms.iter().filter(|a| a.seeds > 1) {
        for seg in a.main.iter().filter(|s| s.len() > 1) {
            let mut pts: Vec<(f64, f64)> = seg.iter().map(|p| (p.0, p.3)).collect();
            pts.extend(seg.iter().rev().map(|p| (p.0, p.2)));
            chart
                .draw_series(std::iter::once(Polygon::new(
                    pts,
                    a.colour.mix(0.18).filled(),
                )))
                .map_err(&err)?;
        }
    }
    let mut reference_labelled = false;
    for a in arms {
        let colour = a.colour;
        let style = colour.stroke_width(2);
        let label = if a.seeds > 1 {
            format!("{} (mean of {} seeds, min-max band)", a.arm, a.seeds)
        } else {
            a.arm.clone()
        };
        let mut labelled = false;
        for seg in &a.main {
            if seg.len() == 1 {
                let (x, m, _, _) = seg[0];
                chart
                    .draw_series(std::iter::once(Circle::new((x, m), 3, colour.filled())))
                    .map_err(&err)?;
                continue;
            }
            let anno = chart
                .draw_series(LineSeries::new(seg.iter().map(|p| (p.0, p.1)), style))
                .map_err(&err)?;
            if !labelled {
                anno.label(label.clone()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
                });
                labelled = true;
            }
        }
    }
    // The references after every arm's line, so the legend lists the arms first.
    for a in arms {
        for seg in &a.reference {
            let dashed = DashedLineSeries::new(
                seg.iter().map(|p| (p.0, p.1)),
                8,
                5,
                a.colour.stroke_width(1),
            );
            let anno = chart.draw_series(dashed).map_err(&err)?;
            if !reference_labelled {
                if let Some(r) = reference {
                    anno.label(format!("{r} (dashed, per arm)"))
                        .legend(|(x, y)| {
                            let dash = |x0, x1| {
                                PathElement::new(vec![(x0, 0), (x1, 0)], BLACK.stroke_width(1))
                            };
                            EmptyElement::at((x, y)) + dash(0, 7) + dash(12, 20)
                        });
                    reference_labelled = true;
                }
            }
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(&err)?;
    root.present().map_err(&err)?;
    Ok(())
}

/// A metric name as a file name: anything but letters, digits, `-`, `_` and `.` becomes `_`.
fn safe_file_stem(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Writes one chart per metric into `dir`; returns how many.
fn write_charts(runs: &[Run], dir: &Path) -> Result<usize, String> {
    fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let metrics: BTreeSet<&str> = runs
        .iter()
        .flat_map(|r| r.points.iter().flat_map(|p| p.metrics.keys()))
        .map(String::as_str)
        .collect();
    let mut by_arm: BTreeMap<&str, Vec<&Run>> = BTreeMap::new();
    for r in runs {
        by_arm.entry(r.arm.as_str()).or_default().push(r);
    }
    let experiment = runs.first().map(|r| r.experiment.as_str()).unwrap_or("");
    let launch = runs.first().map(|r| r.launch.as_str()).unwrap_or("");
    let mut written = 0;
    for metric in metrics {
        let spec = spec_of(experiment, metric);
        let reference = spec.reference.as_deref().filter(|r| {
            runs.iter()
                .any(|run| run.points.iter().any(|p| p.metrics.contains_key(*r)))
        });
        let values = || {
            runs.iter().flat_map(|r| {
                r.points.iter().flat_map(|p| {
                    [Some(metric), reference]
                        .into_iter()
                        .flatten()
                        .filter_map(|m| p.metrics.get(m).copied())
                })
            })
        };
        let log = spec.log && values().filter(|v| v.is_finite()).all(|v| v > 0.0);
        let usable = |v: f64| v.is_finite() && (!log || v > 0.0);
        let mut arms: Vec<ArmSeries> = by_arm
            .iter()
            .enumerate()
            .map(|(i, (arm, rs))| {
                let (r, g, b) = arm_colour(i);
                ArmSeries {
                    arm: arm.to_string(),
                    colour: RGBColor(r, g, b),
                    seeds: rs.len(),
                    main: aggregate(rs, metric, usable),
                    reference: reference
                        .map(|m| aggregate(rs, m, usable))
                        .unwrap_or_default(),
                }
            })
            .collect();
        let per_unit = spec.x_axis.1;
        for seg in arms
            .iter_mut()
            .flat_map(|a| a.main.iter_mut().chain(a.reference.iter_mut()))
        {
            for p in seg.iter_mut() {
                p.0 /= per_unit;
            }
        }
        let all = arms
            .iter()
            .flat_map(|a| a.main.iter().chain(&a.reference).flatten());
        let (mut x0, mut x1, mut y0, mut y1) = (
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
        );
        for &(x, _, lo, hi) in all {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(lo);
            y1 = y1.max(hi);
        }
        if !x0.is_finite() {
            // No usable value at all: an empty chart with a unit range.
            (x0, x1, y0, y1) = (0.0, 1.0, if log { 0.1 } else { 0.0 }, 1.0);
        }
        if x1 <= x0 {
            x1 = x0 + 1.0;
        }
        let mut title = format!("{} ({metric})", spec.label);
        if spec.label == metric {
            title = metric.to_string();
        }
        if !launch.is_empty() {
            title = format!("{title} - {launch}");
        }
        let mut y_desc = metric.to_string();
        if !spec.unit.is_empty() {
            y_desc = format!("{y_desc} [{}]", spec.unit);
        }
        if log {
            y_desc.push_str(" (log scale)");
        }
        let out = dir.join(format!("{}.svg", safe_file_stem(metric)));
        let chart = Chart {
            out: &out,
            title: &title,
            y_desc: &y_desc,
            x: x0..x1,
            x_desc: &spec.x_axis.0,
            arms: &arms,
            reference,
        };
        let mut buf = String::new();
        {
            let root = SVGBackend::with_string(&mut buf, CHART_SIZE).into_drawing_area();
            if log {
                let (lo, hi) = if y1 > y0 {
                    (y0 / 1.15, y1 * 1.15)
                } else {
                    (y0 / 2.0, y0 * 2.0)
                };
                draw_chart(&root, &chart, (lo..hi).log_scale())?;
            } else {
                // A flat series gets a range around it: 10% of its size, or 1 around zero.
                let pad = if y1 > y0 {
                    0.05 * (y1 - y0)
                } else if y0 == 0.0 {
                    1.0
                } else {
                    0.1 * y0.abs()
                };
                draw_chart(&root, &chart, (y0 - pad)..(y1 + pad))?;
            }
        }
        fs::write(&out, buf).map_err(|e| format!("{}: {e}", out.display()))?;
        written += 1;
    }
    Ok(written)
}

/// Exports the run or launch folder `path`: the long-form CSV to `csv`, one chart per metric
/// into the directory `svg` (created if needed). Returns a short summary of what was written;
/// errors are one line.
pub fn export(path: &Path, csv: Option<&Path>, svg: Option<&Path>) -> Result<String, String> {
    if csv.is_none() && svg.is_none() {
        return Err("export: nothing to write: give a CSV file, an SVG folder or both".into());
    }
    let runs = read_runs(path)?;
    let arms: BTreeSet<&str> = runs.iter().map(|r| r.arm.as_str()).collect();
    let mut done = Vec::new();
    if let Some(csv) = csv {
        let (text, rows) = csv_text(&runs);
        fs::write(csv, text).map_err(|e| format!("{}: {e}", csv.display()))?;
        done.push(format!("{rows} rows to {}", csv.display()));
    }
    if let Some(dir) = svg {
        let n = write_charts(&runs, dir)?;
        done.push(format!("{n} charts to {}", dir.display()));
    }
    Ok(format!(
        "exported {} run{} ({} arm{}): {}",
        runs.len(),
        if runs.len() == 1 { "" } else { "s" },
        arms.len(),
        if arms.len() == 1 { "" } else { "s" },
        done.join("; ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn parses_path_and_outputs() {
        let (p, c, s) = parse_args(&args(&["runs/x", "--csv", "o.csv", "--svg=plots"])).unwrap();
        assert_eq!(p, PathBuf::from("runs/x"));
        assert_eq!(c, Some(PathBuf::from("o.csv")));
        assert_eq!(s, Some(PathBuf::from("plots")));
        for bad in [
            &["runs/x"][..],
            &["--csv", "o.csv"],
            &["runs/x", "--csv"],
            &["runs/x", "--png", "a"],
            &["a", "b", "--csv", "o"],
            &["a", "--csv", "o", "--csv", "p"],
        ] {
            let e = parse_args(&args(bad)).unwrap_err();
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn csv_fields_and_numbers() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("a\"b"), "\"a\"\"b\"");
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_number(f64::NAN), "");
        assert_eq!(csv_number(1.0), "1.0");
        for v in [0.1, 1e-12, 3.5e20, -2.25, 1.0 / 3.0] {
            assert_eq!(csv_number(v).parse::<f64>().unwrap(), v);
        }
    }
}

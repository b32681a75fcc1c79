//! `reglab export` on a real small launch: the CSV holds exactly what `metrics.jsonl` holds, the
//! charts are valid SVG with a line per arm, a single run folder exports, a wrong path is one line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use reglab::engine::store::read_metrics;
use reglab::engine::LaunchRequest;
use reglab::export::{self, arm_colour, CSV_HEADER};
use reglab::headless;
use reglab::params::Override;
use reglab::presets;

const ARMS: [&str; 2] = ["relu-gd-eta0.1", "relu-sgd1-eta0.02"];

/// A launch of two arms and two seeds, 200 steps, logged every 20.
async fn small_launch(root: &Path) -> PathBuf {
    let p = presets::load_all(&[])
        .unwrap()
        .into_iter()
        .find(|p| p.id == "sgd-stability")
        .unwrap();
    let set = |k: &str, v: &str| Override {
        key: k.into(),
        value: v.into(),
    };
    let req = LaunchRequest {
        arms: ARMS.iter().map(|a| a.to_string()).collect(),
        seeds: vec![0, 1],
        overrides: vec![set("steps", "200"), set("log_every", "20")],
        device: Default::default(),
    };
    let (res, text) = headless::run_captured(&p, &req, root, 2).await.unwrap();
    assert_eq!(res.statuses.len(), 4, "{text}");
    res.launch_dir
}

/// Splits one CSV line into its fields (quoted fields may hold commas and doubled quotes).
fn split_csv(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    fields.push(cur);
    fields
}

fn colour_hex(i: usize) -> String {
    let (r, g, b) = arm_colour(i);
    format!("#{r:02x}{g:02x}{b:02x}")
}

/// The stroke colours (lower case) of the `polyline` and `path` elements of an SVG document.
fn line_colours(svg: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(svg).expect("valid SVG");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    doc.descendants()
        .filter(|n| matches!(n.tag_name().name(), "polyline" | "path"))
        .filter_map(|n| n.attribute("stroke").map(|s| s.to_ascii_lowercase()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_writes_the_metrics_as_csv_and_charts() {
    let root = tempfile::tempdir().unwrap();
    let launch = small_launch(root.path()).await;
    let out = tempfile::tempdir().unwrap();
    let csv = out.path().join("metrics.csv");
    let plots = out.path().join("plots");
    let summary = export::export(&launch, Some(&csv), Some(&plots)).unwrap();
    assert!(
        summary.contains("4 runs") && !summary.contains('\n'),
        "{summary}"
    );

    // The CSV: every metric of every point of every run, nothing else.
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(CSV_HEADER));
    let rows: Vec<Vec<String>> = lines.map(split_csv).collect();
    assert!(rows.iter().all(|r| r.len() == 7));
    let launch_name = launch.file_name().unwrap().to_str().unwrap();
    let mut expected = 0;
    let mut by_key: BTreeMap<(String, u64, String), &Vec<String>> = BTreeMap::new();
    for r in &rows {
        assert_eq!(r[0], launch_name);
        let key = (r[1].clone(), r[4].parse().unwrap(), r[5].clone());
        assert!(by_key.insert(key, r).is_none(), "duplicate row {r:?}");
    }
    let mut checked = 0;
    for arm in ARMS {
        for seed in [0, 1] {
            let run = format!("{arm}-s{seed}");
            let log = read_metrics(&launch.join(&run).join("metrics.jsonl")).unwrap();
            assert_eq!(log.points.len(), 11, "{run}: steps 0, 20, ..., 200");
            for p in &log.points {
                for (name, v) in &p.metrics {
                    expected += 1;
                    let row = by_key[&(run.clone(), p.step, name.clone())];
                    assert_eq!(row[2], arm);
                    assert_eq!(row[3], seed.to_string());
                    if v.is_finite() {
                        // Exactly the stored value.
                        assert_eq!(row[6].parse::<f64>().unwrap(), *v, "{row:?}");
                        checked += 1;
                    } else {
                        assert_eq!(row[6], "", "{row:?}");
                    }
                }
            }
        }
    }
    assert_eq!(rows.len(), expected);
    assert!(checked > 100, "{checked}");

    // The charts: one valid SVG per metric; on the Hessian trace, a line per arm and the 2/eta
    // reference of each arm.
    let first = read_metrics(&launch.join("relu-gd-eta0.1-s0/metrics.jsonl")).unwrap();
    for m in first.points[0].metrics.keys() {
        let svg = std::fs::read_to_string(plots.join(format!("{m}.svg"))).unwrap();
        let colours = line_colours(&svg);
        for i in 0..ARMS.len() {
            assert!(
                colours.contains(&colour_hex(i)),
                "{m}: arm {i}: {colours:?}"
            );
        }
    }
    let trace = std::fs::read_to_string(plots.join("hessian_trace.svg")).unwrap();
    let colours = line_colours(&trace);
    for i in 0..ARMS.len() {
        // The mean line and many dashes of the reference.
        let n = colours.iter().filter(|c| **c == colour_hex(i)).count();
        assert!(n >= 3, "arm {i}: {n} lines");
    }
    assert!(
        trace.contains("two_over_eta"),
        "the reference is in the legend"
    );
    assert!(trace.contains("Hessian trace"), "the title");
    assert!(trace.contains("step"), "the x label");
    // Two seeds: a min-max band per arm.
    let doc = roxmltree::Document::parse(&trace).unwrap();
    let bands = doc
        .descendants()
        .filter(|n| n.tag_name().name() == "polygon")
        .count();
    assert!(bands >= ARMS.len(), "{bands} bands");

    // One run folder.
    let one = out.path().join("one.csv");
    let summary = export::export(
        &launch.join("relu-sgd1-eta0.02-s1"),
        Some(&one),
        Some(&out.path().join("one")),
    )
    .unwrap();
    assert!(summary.contains("1 run "), "{summary}");
    let text = std::fs::read_to_string(&one).unwrap();
    let rows: Vec<Vec<String>> = text.lines().skip(1).map(split_csv).collect();
    assert!(!rows.is_empty());
    assert!(rows
        .iter()
        .all(|r| r[0] == launch_name && r[1] == "relu-sgd1-eta0.02-s1" && r[3] == "1"));
    assert_eq!(
        rows.len(),
        by_key
            .keys()
            .filter(|k| k.0 == "relu-sgd1-eta0.02-s1")
            .count()
    );
    let svg = std::fs::read_to_string(out.path().join("one/hessian_trace.svg")).unwrap();
    assert!(line_colours(&svg).contains(&colour_hex(0)));

    // Not a run: one line naming the path.
    for bad in [root.path().to_path_buf(), out.path().join("missing")] {
        let e = export::export(&bad, Some(&out.path().join("x.csv")), None).unwrap_err();
        assert!(
            !e.contains('\n') && e.contains(bad.to_str().unwrap()),
            "{e}"
        );
    }
}

#[test]
fn arguments_parse_or_fail_in_one_line() {
    let a = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let (p, c, s) = export::parse_args(&a(&["runs/l", "--svg", "plots/"])).unwrap();
    assert_eq!(
        (p, c, s),
        (PathBuf::from("runs/l"), None, Some(PathBuf::from("plots/")))
    );
    let e = export::parse_args(&a(&["runs/l"])).unwrap_err();
    assert!(!e.contains('\n') && e.contains("--csv"), "{e}");
}

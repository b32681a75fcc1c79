//! The workbench's state and what each key does to it. Drawing lives in `view/`; side effects on
//! the engine (launch, stop) are returned as [`Action`]s for the loop to carry out.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::device::DeviceChoice;
use crate::engine::manager::{EngineEvent, LaunchId};
use crate::engine::store::{self, RunStore};
use crate::engine::{RunId, RunInfo};
use crate::experiments::{self};
use crate::metrics::MetricSpec;
use crate::params::{find_spec, Override};
use crate::presets::Preset;
use crate::roadmap::{Paper, Roadmap};
use crate::verdict::Verdict;

use super::runs::{scan_store, Origin, Phase, RunView};

/// The panels Tab cycles through.
/// With more runs than this on the chart, the dashboard draws one mean line and band per arm.
pub const GROUP_ABOVE: usize = 12;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Panel {
    Presets,
    Dashboard,
    Runs,
    Verdict,
}

impl Panel {
    pub const ALL: [Panel; 4] = [
        Panel::Presets,
        Panel::Dashboard,
        Panel::Runs,
        Panel::Verdict,
    ];
    pub fn title(self) -> &'static str {
        match self {
            Panel::Presets => "Presets",
            Panel::Dashboard => "Dashboard",
            Panel::Runs => "Runs",
            Panel::Verdict => "Verdict",
        }
    }
}

/// How to leave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuitMode {
    /// Nothing is running.
    Now,
    /// Stop every run (metrics written so far are kept), then quit.
    StopRuns,
    /// Leave the terminal; runs go on headless until they finish.
    KeepRunning,
}

/// What the loop should do for the app.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Launch {
        preset: usize,
        arms: Vec<String>,
        overrides: Vec<Override>,
        seeds: Vec<u64>,
        device: DeviceChoice,
    },
    Stop(RunId),
    StopAll,
    Quit(QuitMode),
}

/// A text field of the parameter editor.
#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    pub name: String,
    pub text: String,
    pub original: String,
}

/// Popups over the panels.
#[derive(Clone, Debug, PartialEq)]
pub enum Overlay {
    None,
    Help,
    /// The latest `reglab verify` table of the runs folder (its text).
    Verify(String),
    Quit,
    Arms {
        checked: Vec<bool>,
        cursor: usize,
    },
    Params {
        fields: Vec<Field>,
        cursor: usize,
        error: Option<String>,
    },
}

/// One line of the preset picker, in the order drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PickerRow {
    /// A theme of the roadmap (or the presets that are not on it): its name, and how many of
    /// its papers are built out of how many.
    Theme {
        name: &'static str,
        built: usize,
        papers: usize,
    },
    /// A loaded preset (index into `App::presets`): selectable.
    Preset(usize),
    /// A paper of the roadmap without a loaded preset: shown, not selectable.
    Paper(&'static Paper),
}

/// The group of presets that are not on the roadmap (a user's own, test fixtures).
pub const OTHER_PRESETS: &str = "other presets";

/// A `&'static str` for a metric name read from disk, leaked once per distinct name.
fn intern(name: String) -> &'static str {
    static NAMES: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    let mut names = NAMES.lock().unwrap();
    if let Some(n) = names.iter().find(|n| **n == name) {
        return n;
    }
    let n: &'static str = Box::leak(name.into_boxed_str());
    names.push(n);
    n
}

/// Smoothing weights `+` and `-` step through.
pub const SMOOTHING: [f64; 7] = [0.0, 0.3, 0.6, 0.8, 0.9, 0.95, 0.99];

pub struct App {
    pub presets: Vec<Preset>,
    /// The selected preset (index into `presets`).
    pub selected: usize,
    /// The preset filter: matched against id, title and authors, case-insensitive.
    pub filter: String,
    /// The filter is being typed: keys edit it instead of acting.
    pub filtering: bool,
    pub focus: Panel,
    pub overlay: Overlay,
    pub runs: Vec<RunView>,
    pub runs_cursor: usize,
    pub dash_cursor: usize,
    /// Runs picked in the Runs panel to overlay on the dashboard (at most two).
    pub compare: Vec<PathBuf>,
    /// A run opened from the Runs panel.
    pub opened: Option<PathBuf>,
    pub metric_idx: usize,
    pub log_scale: bool,
    /// Mean and band per arm (Some(true)), a line per run (Some(false)), or by the number of
    /// runs shown (None).
    pub group_seeds: Option<bool>,
    pub smoothing_idx: usize,
    pub verdict_scroll: u16,
    /// Latest verdict per preset id, with the launch folder it belongs to.
    pub verdicts: HashMap<String, (Verdict, PathBuf)>,
    /// Launches of this session still running: id -> (preset id, launch folder).
    pub active_launches: HashMap<LaunchId, (String, PathBuf)>,
    /// Latest launch folder per preset id in this session.
    pub latest_launch: HashMap<String, PathBuf>,
    /// Parameter overrides staged in the editor, per preset id.
    pub staged: HashMap<String, Vec<Override>>,
    /// Seeds staged in the editor, per preset id.
    pub staged_seeds: HashMap<String, Vec<u64>>,
    /// Device staged in the editor, per preset id (the CPU when absent).
    pub staged_device: HashMap<String, DeviceChoice>,
    pub message: String,
    pub dirty: bool,
    pub store: RunStore,
}

impl App {
    pub fn new(presets: Vec<Preset>, store: RunStore) -> App {
        let mut app = App {
            presets,
            selected: 0,
            filter: String::new(),
            filtering: false,
            focus: Panel::Presets,
            overlay: Overlay::None,
            runs: Vec::new(),
            runs_cursor: 0,
            dash_cursor: 0,
            compare: Vec::new(),
            opened: None,
            metric_idx: 0,
            log_scale: false,
            group_seeds: None,
            smoothing_idx: 0,
            verdict_scroll: 0,
            verdicts: HashMap::new(),
            active_launches: HashMap::new(),
            latest_launch: HashMap::new(),
            staged: HashMap::new(),
            staged_seeds: HashMap::new(),
            staged_device: HashMap::new(),
            message: "Enter launches the selected preset; ? lists every key".into(),
            dirty: true,
            store,
        };
        app.scan_store();
        if let Some(&first) = app.picker_order().first() {
            app.selected = first;
        }
        app
    }

    /// Whether a preset matches the filter (an empty filter matches everything).
    pub fn preset_matches(&self, p: &Preset) -> bool {
        let f = self.filter.trim().to_lowercase();
        f.is_empty()
            || [&p.id, &p.title, &p.paper.title]
                .into_iter()
                .chain(&p.paper.authors)
                .any(|t| t.to_lowercase().contains(&f))
    }

    fn paper_matches(&self, p: &Paper) -> bool {
        let f = self.filter.trim().to_lowercase();
        f.is_empty() || p.id.to_lowercase().contains(&f) || p.title.to_lowercase().contains(&f)
    }

    /// Whether a preset with this id is loaded.
    pub fn has_preset(&self, id: &str) -> bool {
        self.presets.iter().any(|p| p.id == id)
    }

    /// How many papers of the roadmap have a loaded preset.
    pub fn papers_built(&self) -> usize {
        Roadmap::get()
            .papers
            .iter()
            .filter(|p| self.has_preset(&p.id))
            .count()
    }

    /// The picker's lines: per theme of the roadmap, a header, then its papers by number (a
    /// loaded preset, or the paper dimmed when none is loaded), then the presets that are not on
    /// the roadmap. Only what matches the filter; a theme without a match has no header.
    pub fn picker_rows(&self) -> Vec<PickerRow> {
        let roadmap = Roadmap::get();
        let mut rows = Vec::new();
        for theme in &roadmap.themes {
            let papers: Vec<&'static Paper> = roadmap.in_theme(theme).collect();
            let mut group = Vec::new();
            for paper in &papers {
                match self.presets.iter().position(|p| p.id == paper.id) {
                    Some(i) if self.preset_matches(&self.presets[i]) => {
                        group.push(PickerRow::Preset(i))
                    }
                    Some(_) => {}
                    None if self.paper_matches(paper) => group.push(PickerRow::Paper(paper)),
                    None => {}
                }
            }
            if !group.is_empty() {
                rows.push(PickerRow::Theme {
                    name: theme.as_str(),
                    built: papers.iter().filter(|p| self.has_preset(&p.id)).count(),
                    papers: papers.len(),
                });
                rows.extend(group);
            }
        }
        let others: Vec<PickerRow> = (0..self.presets.len())
            .filter(|&i| roadmap.paper(&self.presets[i].id).is_none())
            .filter(|&i| self.preset_matches(&self.presets[i]))
            .map(PickerRow::Preset)
            .collect();
        if !others.is_empty() {
            rows.push(PickerRow::Theme {
                name: OTHER_PRESETS,
                built: others.len(),
                papers: others.len(),
            });
            rows.extend(others);
        }
        rows
    }

    /// The selectable presets in the order the picker shows them (1-9 jump to the first nine).
    pub fn picker_order(&self) -> Vec<usize> {
        self.picker_rows()
            .into_iter()
            .filter_map(|r| match r {
                PickerRow::Preset(i) => Some(i),
                _ => None,
            })
            .collect()
    }

    /// After the filter changed: keep the selection when it still matches, else select the
    /// first match.
    fn refilter(&mut self) {
        let order = self.picker_order();
        if !order.contains(&self.selected) {
            if let Some(&first) = order.first() {
                self.select_preset(first);
            }
        }
    }

    /// The selected preset is hidden by a filter that matches no preset.
    fn nothing_matches(&mut self) -> bool {
        if !self.filter.is_empty() && !self.picker_order().contains(&self.selected) {
            self.message = format!(
                "no preset matches `{}` (Esc clears the filter)",
                self.filter
            );
            return true;
        }
        false
    }

    fn on_filter_key(&mut self, key: KeyEvent) -> Option<Action> {
        match key.code {
            KeyCode::Esc => {
                self.filter.clear();
                self.filtering = false;
                self.refilter();
                self.message = "filter cleared".into();
            }
            KeyCode::Enter => {
                self.filtering = false;
                let n = self.picker_order().len();
                self.message = if self.filter.is_empty() {
                    "no filter".into()
                } else {
                    format!("filter `{}`: {n} preset(s); Esc clears it", self.filter)
                };
            }
            KeyCode::Backspace => {
                self.filter.pop();
                self.refilter();
            }
            KeyCode::Up => self.move_cursor(-1),
            KeyCode::Down => self.move_cursor(1),
            KeyCode::Char(c) if !c.is_control() => {
                self.filter.push(c);
                self.refilter();
            }
            _ => {}
        }
        None
    }

    pub fn preset(&self) -> Option<&Preset> {
        self.presets.get(self.selected)
    }

    pub fn smoothing(&self) -> f64 {
        SMOOTHING[self.smoothing_idx]
    }

    /// Picks up stored runs (earlier sessions, other processes) and stored verdicts.
    pub fn scan_store(&mut self) {
        let before = (
            self.runs.len(),
            self.runs.iter().map(|r| r.step).sum::<u64>(),
        );
        scan_store(&self.store, &mut self.runs);
        for p in &self.presets {
            if self.verdicts.contains_key(&p.id) {
                continue;
            }
            let latest = self
                .runs
                .iter()
                .filter(|r| r.preset == p.id)
                .filter_map(|r| r.dir.parent().map(PathBuf::from))
                .max();
            if let Some(dir) = latest {
                if let Some(v) = store::read_verdict(&dir) {
                    self.verdicts.insert(p.id.clone(), (v, dir));
                }
            }
        }
        let after = (
            self.runs.len(),
            self.runs.iter().map(|r| r.step).sum::<u64>(),
        );
        if before != after {
            self.dirty = true;
        }
    }

    /// Records the runs of a launch this process started.
    pub fn add_launch(&mut self, preset_id: &str, id: LaunchId, dir: &Path, runs: &[RunInfo]) {
        self.active_launches
            .insert(id, (preset_id.to_string(), dir.to_path_buf()));
        self.latest_launch
            .insert(preset_id.to_string(), dir.to_path_buf());
        for info in runs {
            self.runs.push(RunView::from_launch(info));
        }
        self.opened = None;
        self.compare.clear();
        self.dash_cursor = 0;
        self.message = format!(
            "launched {} runs of {} -> {}",
            runs.len(),
            preset_id,
            dir.display()
        );
        self.dirty = true;
    }

    fn own_run(&mut self, id: RunId) -> Option<&mut RunView> {
        self.runs.iter_mut().find(|r| r.origin == Origin::Own(id))
    }

    /// Folds one engine event into the state.
    pub fn apply(&mut self, ev: EngineEvent) {
        match ev {
            EngineEvent::Started { run } => {
                if let Some(r) = self.own_run(run) {
                    r.phase = Phase::Running;
                }
            }
            EngineEvent::Metrics { run, point } => {
                if let Some(r) = self.own_run(run) {
                    r.push(&point);
                }
            }
            EngineEvent::Log { .. } => {}
            EngineEvent::Picture { run, name, picture } => {
                if let Some(r) = self.own_run(run) {
                    r.pictures.insert(name, picture);
                }
            }
            EngineEvent::Ended { run, status, .. } => {
                if let Some(r) = self.own_run(run) {
                    r.phase = Phase::Ended(status);
                }
            }
            EngineEvent::LaunchEnded { launch, verdict } => {
                if let Some((preset, dir)) = self.active_launches.remove(&launch) {
                    self.message = format!(
                        "{preset}: every run ended; the claim {} (Tab to the Verdict panel)",
                        verdict.outcome().word()
                    );
                    self.verdicts.insert(preset, (verdict, dir));
                }
            }
        }
        self.dirty = true;
    }

    pub fn active_runs(&self) -> usize {
        self.runs.iter().filter(|r| r.phase.is_active()).count()
    }

    /// Whether the dashboard draws one mean line and band per arm for `shown` runs.
    pub fn grouped(&self, shown: usize) -> bool {
        self.group_seeds.unwrap_or(shown > GROUP_ABOVE)
    }

    /// Runs of this process training now, and runs waiting for their turn.
    pub fn running_and_queued(&self) -> (usize, usize) {
        let count = |ph: Phase| self.runs.iter().filter(|r| r.phase == ph).count();
        (count(Phase::Running), count(Phase::Queued))
    }

    /// Indices of the runs the dashboard shows: the runs picked to compare, else the opened run,
    /// else the selected preset's latest launch (this session's, else the newest stored one).
    pub fn shown_runs(&self) -> Vec<usize> {
        if !self.compare.is_empty() {
            return self
                .compare
                .iter()
                .filter_map(|d| self.runs.iter().position(|r| &r.dir == d))
                .collect();
        }
        if let Some(d) = &self.opened {
            return self
                .runs
                .iter()
                .position(|r| &r.dir == d)
                .into_iter()
                .collect();
        }
        let Some(p) = self.preset() else {
            return Vec::new();
        };
        let launch = self.latest_launch.get(&p.id).cloned().or_else(|| {
            self.runs
                .iter()
                .filter(|r| r.preset == p.id)
                .filter_map(|r| r.dir.parent().map(PathBuf::from))
                .max()
        });
        match launch {
            Some(l) => (0..self.runs.len())
                .filter(|&i| self.runs[i].dir.parent() == Some(l.as_path()))
                .collect(),
            None => Vec::new(),
        }
    }

    /// The metrics the dashboard charts, from the experiment's metadata (references and standard
    /// errors are drawn on their metric's chart, not charted alone). Runs of unknown experiments
    /// fall back to the names in their data.
    pub fn chart_metrics(&self) -> Vec<MetricSpec> {
        let shown = self.shown_runs();
        let kind = shown
            .first()
            .and_then(|&i| self.presets.iter().find(|p| p.id == self.runs[i].preset))
            .or(self.preset())
            .map(|p| p.experiment.clone());
        if let Some(exp) = kind.as_deref().and_then(experiments::find) {
            let all = exp.metrics();
            let secondary: Vec<&str> = all
                .iter()
                .flat_map(|m| m.reference.into_iter().chain(m.std_err))
                .collect();
            let mut out = Vec::new();
            for m in all.iter().filter(|m| !secondary.contains(&m.name)) {
                out.push(m.clone());
                out.extend(m.relative_spec());
            }
            return out;
        }
        let mut names: Vec<String> = shown
            .iter()
            .flat_map(|&i| self.runs[i].series.keys().cloned())
            .collect();
        names.sort();
        names.dedup();
        names
            .into_iter()
            .map(|n| MetricSpec::new(intern(n), "metric"))
            .collect()
    }

    fn focused_run_index(&self) -> Option<usize> {
        match self.focus {
            Panel::Runs => (self.runs_cursor < self.runs.len()).then_some(self.runs_cursor),
            _ => self.shown_runs().get(self.dash_cursor).copied(),
        }
    }

    /// The keys that act everywhere (outside popups). Returns an action for the loop.
    pub fn on_key(&mut self, mut key: KeyEvent) -> Option<Action> {
        if key.kind != KeyEventKind::Press {
            return None;
        }
        // Esc followed quickly by a key arrives as Alt+key: treat it as both.
        if key.modifiers.contains(KeyModifiers::ALT) {
            self.overlay = Overlay::None;
            if self.filtering {
                self.filtering = false;
                self.filter.clear();
                self.refilter();
            }
            key.modifiers.remove(KeyModifiers::ALT);
        }
        self.dirty = true;
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return Some(Action::Quit(if self.active_runs() > 0 {
                QuitMode::StopRuns
            } else {
                QuitMode::Now
            }));
        }
        match self.overlay.clone() {
            Overlay::None => {}
            Overlay::Help => {
                if matches!(
                    key.code,
                    KeyCode::Esc | KeyCode::Char('?') | KeyCode::Char('q') | KeyCode::Enter
                ) {
                    self.overlay = Overlay::None;
                }
                return None;
            }
            Overlay::Verify(_) => {
                if matches!(key.code, KeyCode::Esc | KeyCode::Char('V') | KeyCode::Enter) {
                    self.overlay = Overlay::None;
                }
                return None;
            }
            Overlay::Quit => return self.on_quit_key(key),
            Overlay::Arms { .. } => return self.on_arms_key(key),
            Overlay::Params { .. } => return self.on_params_key(key),
        }
        // While the filter is typed, keys edit it (letters are not commands).
        if self.filtering {
            return self.on_filter_key(key);
        }
        // Every key goes through the one key table (help and footer are drawn from it).
        let command = super::keymap::lookup(key.code)?;
        use super::keymap::Command as C;
        match command {
            C::Help => self.overlay = Overlay::Help,
            C::Quit => {
                if self.active_runs() > 0 {
                    self.overlay = Overlay::Quit;
                } else {
                    return Some(Action::Quit(QuitMode::Now));
                }
            }
            C::NextPanel => self.cycle_focus(1),
            C::PrevPanel => self.cycle_focus(-1),
            C::Up => self.move_cursor(-1),
            C::Down => self.move_cursor(1),
            C::Preset => {
                if let KeyCode::Char(c @ '1'..='9') = key.code {
                    let i = c as usize - '1' as usize;
                    if let Some(&p) = self.picker_order().get(i) {
                        self.select_preset(p);
                    }
                }
            }
            C::Filter => {
                self.focus = Panel::Presets;
                self.filtering = true;
                self.refilter();
                self.message =
                    "filter: type an id, a title or an author; Enter keeps it, Esc clears it"
                        .into();
            }
            C::PrevMetric => self.cycle_metric(-1),
            C::NextMetric => self.cycle_metric(1),
            C::ToggleLog => self.log_scale = !self.log_scale,
            C::GroupSeeds => {
                let now = self.grouped(self.shown_runs().len());
                self.group_seeds = Some(!now);
            }
            C::MoreSmoothing => {
                self.smoothing_idx = (self.smoothing_idx + 1).min(SMOOTHING.len() - 1)
            }
            C::LessSmoothing => self.smoothing_idx = self.smoothing_idx.saturating_sub(1),
            C::StopAll => return Some(Action::StopAll),
            C::StopRun => {
                let run = self.focused_run_index().map(|i| &self.runs[i]);
                match run {
                    Some(r) if r.phase.is_active() => {
                        if let Origin::Own(id) = r.origin {
                            self.message = format!("stopping {}", r.label());
                            return Some(Action::Stop(id));
                        }
                    }
                    Some(r) => self.message = format!("{} is not running here", r.label()),
                    None => self.message = "no run selected".into(),
                }
            }
            C::ChooseArms => {
                if self.nothing_matches() {
                    return None;
                }
                if let Some(p) = self.preset() {
                    self.overlay = Overlay::Arms {
                        checked: vec![true; p.arms.len()],
                        cursor: 0,
                    };
                }
            }
            C::EditParams => {
                if !self.nothing_matches() {
                    self.open_params_editor()
                }
            }
            C::PickRun => {
                if self.focus == Panel::Runs {
                    self.toggle_compare()
                }
            }
            C::ClearPicks => {
                self.compare.clear();
                self.opened = None;
                self.message = "dashboard shows the selected preset's latest launch".into();
            }
            C::Enter => match self.focus {
                Panel::Runs => {
                    if let Some(r) = self.runs.get(self.runs_cursor) {
                        self.opened = Some(r.dir.clone());
                        self.compare.clear();
                        self.dash_cursor = 0;
                        self.focus = Panel::Dashboard;
                    }
                }
                _ => return self.launch_action(None),
            },
            C::Close => {
                self.overlay = Overlay::None;
                if !self.filter.is_empty() {
                    self.filter.clear();
                    self.refilter();
                    self.message = "filter cleared".into();
                }
            }
            C::ExportChart => self.export_charts(),
            C::ShowVerify => self.show_verify(),
        }
        None
    }

    /// Opens the latest `reglab verify` table found in the runs folder.
    fn show_verify(&mut self) {
        let latest = std::fs::read_dir(&self.store.root).ok().and_then(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.join("verify.json").is_file())
                .max()
        });
        let report = latest.and_then(|d| {
            serde_json::from_str::<crate::verify::VerifyReport>(
                &std::fs::read_to_string(d.join("verify.json")).ok()?,
            )
            .ok()
        });
        match report {
            Some(r) => self.overlay = Overlay::Verify(crate::verify::table(&r)),
            None => {
                self.message = format!(
                    "no verify table under {}: run `reglab verify --quick` (headless) first",
                    self.store.root.display()
                )
            }
        }
    }

    fn launch_action(&mut self, arms: Option<Vec<String>>) -> Option<Action> {
        if self.nothing_matches() {
            return None;
        }
        let p = self.preset()?;
        Some(Action::Launch {
            preset: self.selected,
            arms: arms.unwrap_or_default(),
            overrides: self.staged.get(&p.id).cloned().unwrap_or_default(),
            seeds: self.staged_seeds.get(&p.id).cloned().unwrap_or_default(),
            device: self.staged_device.get(&p.id).copied().unwrap_or_default(),
        })
    }

    pub fn select_preset(&mut self, i: usize) {
        self.selected = i.min(self.presets.len().saturating_sub(1));
        self.opened = None;
        self.compare.clear();
        self.dash_cursor = 0;
        self.metric_idx = 0;
        self.verdict_scroll = 0;
    }

    /// Writes the focused run's launch as SVG charts and CSV into `<launch>/export/` and says
    /// which file holds the chart on screen.
    fn export_charts(&mut self) {
        let Some(run) = self.focused_run_index().map(|i| &self.runs[i]) else {
            self.message = "no run to export".into();
            return;
        };
        let Some(launch) = run.dir.parent().map(|p| p.to_path_buf()) else {
            return;
        };
        let out = launch.join("export");
        let metric = self
            .chart_metrics()
            .get(self.metric_idx)
            .map(|m| m.name.to_string())
            .unwrap_or_default();
        self.message =
            match crate::export::export(&launch, Some(&out.join("metrics.csv")), Some(&out)) {
                Ok(_) => format!("exported: {}", out.join(format!("{metric}.svg")).display()),
                Err(e) => format!("export failed: {e}"),
            };
    }

    fn cycle_focus(&mut self, d: i32) {
        let i = Panel::ALL
            .iter()
            .position(|p| *p == self.focus)
            .unwrap_or(0) as i32;
        self.focus = Panel::ALL[(i + d).rem_euclid(Panel::ALL.len() as i32) as usize];
    }

    fn cycle_metric(&mut self, d: i32) {
        let n = self.chart_metrics().len() as i32;
        if n > 0 {
            self.metric_idx = (self.metric_idx as i32 + d).rem_euclid(n) as usize;
        }
    }

    fn move_cursor(&mut self, d: i32) {
        let step = |v: usize, len: usize| -> usize {
            if len == 0 {
                0
            } else {
                (v as i32 + d).clamp(0, len as i32 - 1) as usize
            }
        };
        match self.focus {
            Panel::Presets => {
                let order = self.picker_order();
                let i = match order.iter().position(|&p| p == self.selected) {
                    Some(pos) => order[step(pos, order.len())],
                    None => match order.first() {
                        Some(&first) => first,
                        None => return,
                    },
                };
                self.select_preset(i);
            }
            Panel::Dashboard => self.dash_cursor = step(self.dash_cursor, self.shown_runs().len()),
            Panel::Runs => self.runs_cursor = step(self.runs_cursor, self.runs.len()),
            Panel::Verdict => {
                self.verdict_scroll = (self.verdict_scroll as i32 + d).max(0) as u16;
            }
        }
    }

    fn toggle_compare(&mut self) {
        let Some(r) = self.runs.get(self.runs_cursor) else {
            return;
        };
        if let Some(i) = self.compare.iter().position(|d| d == &r.dir) {
            self.compare.remove(i);
        } else {
            if self.compare.len() == 2 {
                self.compare.remove(0);
            }
            self.compare.push(r.dir.clone());
        }
        self.message = format!(
            "{} run(s) picked to overlay on the dashboard (c clears)",
            self.compare.len()
        );
    }

    fn on_quit_key(&mut self, key: KeyEvent) -> Option<Action> {
        match key.code {
            KeyCode::Char('s') | KeyCode::Char('y') => Some(Action::Quit(QuitMode::StopRuns)),
            KeyCode::Char('k') => Some(Action::Quit(QuitMode::KeepRunning)),
            KeyCode::Esc | KeyCode::Char('c') | KeyCode::Char('n') => {
                self.overlay = Overlay::None;
                None
            }
            _ => None,
        }
    }

    fn on_arms_key(&mut self, key: KeyEvent) -> Option<Action> {
        let Overlay::Arms {
            mut checked,
            mut cursor,
        } = self.overlay.clone()
        else {
            return None;
        };
        match key.code {
            KeyCode::Esc => {
                self.overlay = Overlay::None;
                return None;
            }
            KeyCode::Up | KeyCode::Char('k') => cursor = cursor.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => {
                cursor = (cursor + 1).min(checked.len().saturating_sub(1))
            }
            KeyCode::Char(' ') => {
                if let Some(c) = checked.get_mut(cursor) {
                    *c = !*c;
                }
            }
            KeyCode::Char('a') => {
                let all = checked.iter().all(|c| *c);
                checked.iter_mut().for_each(|c| *c = !all);
            }
            KeyCode::Enter => {
                let p = self.preset()?;
                let arms: Vec<String> = p
                    .arms
                    .iter()
                    .zip(&checked)
                    .filter(|(_, c)| **c)
                    .map(|(a, _)| a.name.clone())
                    .collect();
                self.overlay = Overlay::None;
                if arms.is_empty() {
                    self.message = "no arm checked: nothing launched".into();
                    return None;
                }
                return self.launch_action(Some(arms));
            }
            _ => {}
        }
        self.overlay = Overlay::Arms { checked, cursor };
        None
    }

    /// The editor lists the parameters most often changed first (learning rate, steps, batch
    /// size, seeds), then every other parameter of the experiment. An empty field keeps the
    /// preset's value (shown greyed).
    fn open_params_editor(&mut self) {
        let Some(p) = self.preset() else { return };
        let Some(exp) = experiments::find(&p.experiment) else {
            return;
        };
        let join = |s: &[u64]| s.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
        let staged = self.staged.get(&p.id).cloned().unwrap_or_default();
        let mut specs = exp.params();
        let first = ["eta", "steps", "batch"];
        specs.sort_by_key(|s| {
            first
                .iter()
                .position(|f| *f == s.name)
                .unwrap_or(first.len())
        });
        let mut fields: Vec<Field> = specs
            .iter()
            .map(|s| Field {
                name: s.name.to_string(),
                text: staged
                    .iter()
                    .rev()
                    .find(|o| o.key == s.name)
                    .map(|o| o.value.clone())
                    .unwrap_or_default(),
                original: p
                    .params
                    .get(s.name)
                    .map(|v| v.to_string())
                    .unwrap_or_default(),
            })
            .collect();
        let seeds = Field {
            name: "seeds".into(),
            text: join(self.staged_seeds.get(&p.id).unwrap_or(&p.seeds)),
            original: join(&p.seeds),
        };
        fields.insert(fields.len().min(3), seeds);
        let device = self.staged_device.get(&p.id).copied().unwrap_or_default();
        fields.insert(
            fields.len().min(4),
            Field {
                name: "device".into(),
                text: if device == DeviceChoice::Cpu {
                    String::new()
                } else {
                    device.to_string()
                },
                original: "cpu".into(),
            },
        );
        self.overlay = Overlay::Params {
            fields,
            cursor: 0,
            error: None,
        };
    }

    fn on_params_key(&mut self, key: KeyEvent) -> Option<Action> {
        let Overlay::Params {
            mut fields,
            mut cursor,
            mut error,
        } = self.overlay.clone()
        else {
            return None;
        };
        match key.code {
            KeyCode::Esc => {
                self.overlay = Overlay::None;
                return None;
            }
            KeyCode::Up => cursor = cursor.saturating_sub(1),
            KeyCode::Down | KeyCode::Tab => cursor = (cursor + 1).min(fields.len() - 1),
            KeyCode::Backspace => {
                fields[cursor].text.pop();
            }
            KeyCode::Char(c) => fields[cursor].text.push(c),
            KeyCode::Enter => match self.validate_fields(&fields) {
                Ok((overrides, seeds, device)) => {
                    let id = self.preset()?.id.clone();
                    self.message = if overrides.is_empty() {
                        "no parameter overrides: the preset's values apply".into()
                    } else {
                        let s: Vec<String> = overrides
                            .iter()
                            .map(|o| format!("{}={}", o.key, o.value))
                            .collect();
                        format!("next launch of {id} uses {}", s.join(" "))
                    };
                    self.staged.insert(id.clone(), overrides);
                    self.staged_seeds.insert(id.clone(), seeds);
                    self.staged_device.insert(id, device);
                    self.overlay = Overlay::None;
                    return None;
                }
                Err(e) => error = Some(e),
            },
            _ => {}
        }
        self.overlay = Overlay::Params {
            fields,
            cursor,
            error,
        };
        None
    }

    /// Validates the editor's fields exactly as `--set` is validated.
    pub fn validate_fields(
        &self,
        fields: &[Field],
    ) -> Result<(Vec<Override>, Vec<u64>, DeviceChoice), String> {
        let p = self.preset().ok_or("no preset")?;
        let exp = experiments::find(&p.experiment).ok_or("unknown experiment")?;
        let specs = exp.params();
        let mut overrides = Vec::new();
        let mut seeds = p.seeds.clone();
        let mut device = DeviceChoice::Cpu;
        for f in fields {
            let text = f.text.trim();
            if f.name == "device" {
                if !text.is_empty() {
                    device = text.parse()?;
                    crate::device::check_available(device)?;
                }
                continue;
            }
            if f.name == "seeds" {
                let parsed: Result<Vec<u64>, _> = text
                    .split(',')
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| s.trim().parse::<u64>())
                    .collect();
                seeds = parsed
                    .ok()
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| format!("seeds `{text}`: expected numbers like 0,1,2"))?;
                continue;
            }
            if text.is_empty() {
                continue;
            }
            let o = Override {
                key: f.name.clone(),
                value: text.to_string(),
            };
            find_spec(&specs, &o.key).map_err(|e| format!("--set {}: {e}", o.key))?;
            let mut check = p.params.clone();
            check.apply_overrides(&specs, std::slice::from_ref(&o))?;
            overrides.push(o);
        }
        Ok((overrides, seeds, device))
    }

    /// Status of a preset in the picker: never run, running, or its last verdict.
    pub fn preset_status(&self, id: &str) -> String {
        let count = |ph: Phase| {
            self.runs
                .iter()
                .filter(|r| r.preset == id && r.phase == ph)
                .count()
        };
        let (running, queued) = (count(Phase::Running), count(Phase::Queued));
        match (running, queued) {
            (0, 0) => {}
            (r, 0) => return format!("running ({r})"),
            (0, q) => return format!("queued ({q})"),
            (r, q) => return format!("running ({r}), queued ({q})"),
        }
        match self.verdicts.get(id) {
            Some((v, _)) => format!("last: {}", v.outcome().word()),
            None if self.runs.iter().any(|r| r.preset == id) => "ran, no verdict".into(),
            None => "never run".into(),
        }
    }

    /// The points of `metric` for run `i`: its own series, or a derived relative series (the
    /// metric divided by the baseline run's at the nearest earlier step).
    pub fn series_points(&self, i: usize, metric: &str) -> Option<Vec<(f64, f64)>> {
        let run = &self.runs[i];
        if let Some(h) = run.series.get(metric) {
            return Some(h.points());
        }
        let exp = self
            .presets
            .iter()
            .find(|p| p.id == run.preset)
            .and_then(|p| experiments::find(&p.experiment))?;
        let spec = exp
            .metrics()
            .into_iter()
            .find(|m| m.relative.is_some_and(|r| r.name == metric))?;
        let rel = spec.relative?;
        let base = self.runs.iter().find(|b| {
            b.dir.parent() == run.dir.parent()
                && b.seed == run.seed
                && b.params.get(rel.param)
                    == Some(&crate::params::ParamValue::Text(rel.value.to_string()))
                && b.params.get("task") == run.params.get("task")
        })?;
        let num = run.series.get(spec.name)?.points();
        let den = base.series.get(spec.name)?.points();
        Some(
            num.iter()
                .filter_map(|&(x, y)| {
                    let d = den.iter().rev().find(|p| p.0 <= x)?.1;
                    (d != 0.0 && d.is_finite()).then_some((x, y / d))
                })
                .collect(),
        )
    }

    /// Final values per run of the shown runs, for tests and the verdict panel.
    pub fn shown_last_values(&self, metric: &str) -> BTreeMap<String, f64> {
        self.shown_runs()
            .iter()
            .filter_map(|&i| self.runs[i].last(metric).map(|v| (self.runs[i].label(), v)))
            .collect()
    }
}

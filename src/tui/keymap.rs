//! The one key table: the handler dispatches through it, the help overlay and the footer are
//! drawn from it, so a key cannot be handled without being documented.

use crossterm::event::KeyCode;

use super::app::Panel;

/// What a key asks for (outside popups).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Up,
    Down,
    /// Jump to preset 1-9 (the digit is in the key).
    Preset,
    /// Start typing a filter of the preset list.
    Filter,
    NextPanel,
    PrevPanel,
    Enter,
    ChooseArms,
    EditParams,
    StopRun,
    StopAll,
    PrevMetric,
    NextMetric,
    ToggleLog,
    /// One mean line and a min-max band per arm instead of a line per run.
    GroupSeeds,
    MoreSmoothing,
    LessSmoothing,
    PickRun,
    ClearPicks,
    ExportChart,
    ShowVerify,
    Help,
    Close,
    Quit,
}

/// One binding: its keys, how help shows them, what they do, and in which panels the footer
/// mentions them (with a short word).
pub struct Binding {
    pub keys: &'static [KeyCode],
    pub label: &'static str,
    pub help: &'static str,
    pub command: Command,
    pub footer: &'static [(Panel, &'static str)],
}

use Panel::*;

const DIGITS: &[KeyCode] = &[
    KeyCode::Char('1'),
    KeyCode::Char('2'),
    KeyCode::Char('3'),
    KeyCode::Char('4'),
    KeyCode::Char('5'),
    KeyCode::Char('6'),
    KeyCode::Char('7'),
    KeyCode::Char('8'),
    KeyCode::Char('9'),
];

pub const KEYMAP: &[Binding] = &[
    Binding {
        keys: &[KeyCode::Up, KeyCode::Char('k')],
        label: "Up/Down, j/k",
        help: "move in the focused panel (presets, runs, dashboard rows, verdict)",
        command: Command::Up,
        footer: &[(Verdict, "j/k scroll")],
    },
    Binding {
        keys: &[KeyCode::Down, KeyCode::Char('j')],
        label: "Up/Down, j/k",
        help: "",
        command: Command::Down,
        footer: &[],
    },
    Binding {
        keys: DIGITS,
        label: "1-9",
        help: "jump to preset 1-9",
        command: Command::Preset,
        footer: &[(Presets, "1-9 preset")],
    },
    Binding {
        keys: &[KeyCode::Char('/')],
        label: "/",
        help: "filter presets by id, title or author as you type (Enter keeps it, Esc clears)",
        command: Command::Filter,
        footer: &[(Presets, "/ filter")],
    },
    Binding {
        keys: &[KeyCode::Tab],
        label: "Tab, Shift-Tab",
        help: "next / previous panel: Presets, Dashboard, Runs, Verdict",
        command: Command::NextPanel,
        footer: &[(Presets, "Tab panel"), (Verdict, "Tab panel")],
    },
    Binding {
        keys: &[KeyCode::BackTab],
        label: "Tab, Shift-Tab",
        help: "",
        command: Command::PrevPanel,
        footer: &[],
    },
    Binding {
        keys: &[KeyCode::Enter],
        label: "Enter",
        help: "launch every arm of the selected preset (Runs panel: open the run)",
        command: Command::Enter,
        footer: &[(Presets, "Enter launch"), (Runs, "Enter open")],
    },
    Binding {
        keys: &[KeyCode::Char('a')],
        label: "a",
        help: "choose arms, then launch (Space toggles, a toggles all, Enter launches)",
        command: Command::ChooseArms,
        footer: &[(Presets, "a arms")],
    },
    Binding {
        keys: &[KeyCode::Char('e')],
        label: "e",
        help: "edit parameters before launch (eta, steps, batch, seeds, ...)",
        command: Command::EditParams,
        footer: &[(Presets, "e params")],
    },
    Binding {
        keys: &[KeyCode::Char('s')],
        label: "s",
        help: "stop the selected run",
        command: Command::StopRun,
        footer: &[(Dashboard, "s stop"), (Runs, "s stop")],
    },
    Binding {
        keys: &[KeyCode::Char('S')],
        label: "S",
        help: "stop every run",
        command: Command::StopAll,
        footer: &[(Dashboard, "S stop all")],
    },
    Binding {
        keys: &[KeyCode::Left],
        label: "Left/Right",
        help: "previous / next metric on the dashboard chart",
        command: Command::PrevMetric,
        footer: &[(Dashboard, "<-/-> metric")],
    },
    Binding {
        keys: &[KeyCode::Right],
        label: "Left/Right",
        help: "",
        command: Command::NextMetric,
        footer: &[],
    },
    Binding {
        keys: &[KeyCode::Char('l')],
        label: "l",
        help: "toggle log scale",
        command: Command::ToggleLog,
        footer: &[(Dashboard, "l log")],
    },
    Binding {
        keys: &[KeyCode::Char('g')],
        label: "g",
        help: "per arm: the mean over seeds and a min-max band (on by default above 12 runs)",
        command: Command::GroupSeeds,
        footer: &[(Dashboard, "g seeds")],
    },
    Binding {
        keys: &[KeyCode::Char('+'), KeyCode::Char('=')],
        label: "+ / -",
        help: "more / less smoothing (debiased EMA)",
        command: Command::MoreSmoothing,
        footer: &[(Dashboard, "+/- smooth")],
    },
    Binding {
        keys: &[KeyCode::Char('-')],
        label: "+ / -",
        help: "",
        command: Command::LessSmoothing,
        footer: &[],
    },
    Binding {
        keys: &[KeyCode::Char(' ')],
        label: "Space",
        help: "Runs panel: pick a run to overlay (up to two)",
        command: Command::PickRun,
        footer: &[(Runs, "Space pick to overlay")],
    },
    Binding {
        keys: &[KeyCode::Char('c')],
        label: "c",
        help: "clear picked or opened runs",
        command: Command::ClearPicks,
        footer: &[(Runs, "c clear")],
    },
    Binding {
        keys: &[KeyCode::Char('x')],
        label: "x",
        help: "export the charts of the focused run's launch (SVG, and a long-form CSV)",
        command: Command::ExportChart,
        footer: &[(Dashboard, "x export")],
    },
    Binding {
        keys: &[KeyCode::Char('V')],
        label: "V",
        help: "the latest `reglab verify` table: every preset's claim, its verdict and numbers",
        command: Command::ShowVerify,
        footer: &[(Presets, "V verify")],
    },
    Binding {
        keys: &[KeyCode::Char('?')],
        label: "?",
        help: "this help",
        command: Command::Help,
        footer: &[(Presets, "? help"), (Dashboard, "? help"), (Runs, "? help")],
    },
    Binding {
        keys: &[KeyCode::Esc],
        label: "Esc",
        help: "close a popup; clear the preset filter",
        command: Command::Close,
        footer: &[],
    },
    Binding {
        keys: &[KeyCode::Char('q')],
        label: "q",
        help: "quit; with runs active, asks: stop them, or keep them running headless",
        command: Command::Quit,
        footer: &[(Presets, "q quit"), (Verdict, "q quit")],
    },
];

/// Ctrl-C is handled before the table (it works in every popup too); help lists it.
pub const CTRL_C: (&str, &str) = ("Ctrl-C", "stop every run and quit");

/// The command a key asks for, if any.
pub fn lookup(code: KeyCode) -> Option<Command> {
    KEYMAP
        .iter()
        .find(|b| b.keys.contains(&code))
        .map(|b| b.command)
}

/// The help overlay's rows: one per label, in table order, then Ctrl-C.
pub fn help_rows() -> Vec<(&'static str, &'static str)> {
    let mut rows: Vec<(&str, &str)> = Vec::new();
    for b in KEYMAP {
        if !b.help.is_empty() {
            rows.push((b.label, b.help));
        }
    }
    rows.push(CTRL_C);
    rows
}

/// The footer's hint for a panel.
pub fn footer(panel: Panel) -> String {
    KEYMAP
        .iter()
        .flat_map(|b| b.footer.iter())
        .filter(|(p, _)| *p == panel)
        .map(|(_, w)| *w)
        .collect::<Vec<_>>()
        .join("  ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_bound_once_and_every_binding_is_in_the_help() {
        let mut seen = Vec::new();
        for b in KEYMAP {
            for k in b.keys {
                assert!(!seen.contains(k), "{k:?} bound twice");
                seen.push(*k);
                assert_eq!(lookup(*k), Some(b.command));
            }
            let rows = help_rows();
            assert!(
                rows.iter().any(|(l, _)| *l == b.label),
                "{} not in help",
                b.label
            );
        }
        assert_eq!(lookup(KeyCode::Char('z')), None);
    }
}

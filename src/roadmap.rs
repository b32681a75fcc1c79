//! The roadmap: the papers reglab reproduces, one preset each, grouped by theme
//! (`presets/ROADMAP.toml`, compiled in). A paper is built when a built-in preset with its id
//! exists.

use std::collections::HashSet;
use std::sync::OnceLock;

use serde::Deserialize;

/// `presets/ROADMAP.toml` (skipped when a folder of presets is loaded).
const TEXT: &str = include_str!("../presets/ROADMAP.toml");

/// One paper of the roadmap.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Paper {
    pub number: u32,
    /// The id of its preset.
    pub id: String,
    pub title: String,
    pub year: u16,
    pub theme: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Roadmap {
    /// Themes in the order the picker shows them.
    pub themes: Vec<String>,
    #[serde(rename = "paper")]
    pub papers: Vec<Paper>,
}

impl Roadmap {
    /// Parses and checks a roadmap: every paper has a listed theme, ids and numbers are unique.
    pub fn parse(text: &str) -> Result<Roadmap, String> {
        let mut r: Roadmap = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut ids = HashSet::new();
        let mut numbers = HashSet::new();
        for p in &r.papers {
            if !r.themes.contains(&p.theme) {
                return Err(format!(
                    "paper {} `{}`: unknown theme `{}`",
                    p.number, p.id, p.theme
                ));
            }
            if !ids.insert(p.id.as_str()) {
                return Err(format!("id `{}` listed twice", p.id));
            }
            if !numbers.insert(p.number) {
                return Err(format!("number {} listed twice", p.number));
            }
        }
        r.papers.sort_by_key(|p| p.number);
        Ok(r)
    }

    /// The roadmap compiled into the binary.
    pub fn get() -> &'static Roadmap {
        static ROADMAP: OnceLock<Roadmap> = OnceLock::new();
        ROADMAP.get_or_init(|| Roadmap::parse(TEXT).expect("presets/ROADMAP.toml is valid"))
    }

    pub fn paper(&self, id: &str) -> Option<&Paper> {
        self.papers.iter().find(|p| p.id == id)
    }

    /// The papers of a theme, by number.
    pub fn in_theme<'a>(&'a self, theme: &'a str) -> impl Iterator<Item = &'a Paper> + 'a {
        self.papers.iter().filter(move |p| p.theme == theme)
    }

    /// Whether a built-in preset reproduces this paper.
    pub fn is_built(&self, id: &str) -> bool {
        builtin_ids().iter().any(|b| b == id)
    }

    /// How many papers have no built-in preset yet.
    pub fn not_built(&self) -> usize {
        self.papers.iter().filter(|p| !self.is_built(&p.id)).count()
    }
}

/// The ids of the built-in presets (read from their files, without validating them).
pub fn builtin_ids() -> &'static [String] {
    static IDS: OnceLock<Vec<String>> = OnceLock::new();
    IDS.get_or_init(|| {
        crate::presets::builtin_files()
            .iter()
            .filter_map(|(_, text)| {
                let t: toml::Table = toml::from_str(text).ok()?;
                t.get("id")?.as_str().map(str::to_string)
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_24_distinct_papers_and_every_builtin_preset() {
        let r = Roadmap::get();
        assert_eq!(r.papers.len(), 24);
        let ids: HashSet<&str> = r.papers.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids.len(), 24);
        let numbers: Vec<u32> = r.papers.iter().map(|p| p.number).collect();
        assert_eq!(numbers, (1..=24).collect::<Vec<_>>());
        let builtin = crate::presets::load_all(&[]).unwrap();
        assert_eq!(builtin_ids().len(), builtin.len());
        for p in &builtin {
            assert!(r.paper(&p.id).is_some(), "{} is not on the roadmap", p.id);
            assert!(r.is_built(&p.id));
        }
        assert_eq!(r.not_built(), 24 - builtin.len());
        for t in &r.themes {
            assert!(r.in_theme(t).count() > 0, "theme `{t}` has no paper");
        }
    }

    #[test]
    fn rejects_unknown_themes_and_duplicates() {
        let paper = |n: u32, id: &str, theme: &str| {
            format!(
                "[[paper]]\nnumber = {n}\nid = \"{id}\"\ntitle = \"t\"\nyear = 2020\ntheme = \"{theme}\"\n"
            )
        };
        let head = "themes = [\"a\"]\n";
        assert!(Roadmap::parse(&format!("{head}{}", paper(1, "x", "a"))).is_ok());
        let e = Roadmap::parse(&format!("{head}{}", paper(1, "x", "b"))).unwrap_err();
        assert!(e.contains("unknown theme `b`"), "{e}");
        let e = Roadmap::parse(&format!(
            "{head}{}{}",
            paper(1, "x", "a"),
            paper(2, "x", "a")
        ))
        .unwrap_err();
        assert!(e.contains("`x` listed twice"), "{e}");
        let e = Roadmap::parse(&format!(
            "{head}{}{}",
            paper(1, "x", "a"),
            paper(1, "y", "a")
        ))
        .unwrap_err();
        assert!(e.contains("number 1 listed twice"), "{e}");
    }
}

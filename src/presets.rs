//! Preset files: one TOML file per paper, parsed with serde and validated against the
//! experiment's parameter schema. Every error names the file, the line and the key.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::experiments;
use crate::params::{find_spec, ParamSpec, ParamValue, Params};

/// The preset files compiled into the binary (each experiment declares its own), so `reglab`
/// works from any folder: (path, contents).
pub fn builtin_files() -> Vec<(&'static str, &'static str)> {
    experiments::all()
        .iter()
        .flat_map(|e| e.builtin_presets().iter().copied())
        .collect()
}

/// The paper a preset reproduces.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaperRef {
    pub title: String,
    pub authors: Vec<String>,
    pub year: u16,
    pub link: String,
}

/// One variant the paper compares, with its parameters fully resolved.
#[derive(Clone, Debug)]
pub struct Arm {
    pub name: String,
    pub description: String,
    pub params: Params,
}

/// A loaded, validated preset.
#[derive(Clone, Debug)]
pub struct Preset {
    pub id: String,
    pub title: String,
    pub paper: PaperRef,
    pub summary: String,
    pub claim: String,
    pub experiment: String,
    pub seeds: Vec<u64>,
    /// Defaults of the experiment with the preset's `[params]` applied.
    pub params: Params,
    pub arms: Vec<Arm>,
    /// Where it came from (a built-in path or a user's file).
    pub source: PathBuf,
}

impl Preset {
    pub fn arm(&self, name: &str) -> Option<&Arm> {
        self.arms.iter().find(|a| a.name == name)
    }
}

/// A preset file that failed to load.
#[derive(Clone, Debug, PartialEq)]
pub struct PresetError {
    pub file: PathBuf,
    /// 1-based line, when the error points at one.
    pub line: Option<usize>,
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for PresetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": key `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for PresetError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PresetFile {
    id: String,
    title: String,
    paper: PaperRef,
    summary: String,
    claim: String,
    experiment: Spanned<String>,
    #[serde(default = "default_seeds")]
    seeds: Vec<u64>,
    #[serde(default)]
    params: BTreeMap<String, Spanned<toml::Value>>,
    arms: Vec<ArmFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ArmFile {
    name: Spanned<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    params: BTreeMap<String, Spanned<toml::Value>>,
}

fn default_seeds() -> Vec<u64> {
    vec![0]
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        + 1
}

/// The key written on a line such as `year = "x"` or `eta = 0.1,`.
fn key_on_line(text: &str, line: usize) -> Option<String> {
    let l = text.lines().nth(line.checked_sub(1)?)?;
    let (left, _) = l.split_once('=')?;
    let key = left.trim().trim_start_matches('{').trim();
    let key = key.rsplit([',', '{']).next().unwrap_or(key).trim();
    (!key.is_empty() && !key.starts_with('#')).then(|| key.trim_matches('"').to_string())
}

/// Pulls a key name out of serde messages such as "unknown field `titel`" or
/// "missing field `claim`".
fn key_in_message(msg: &str) -> Option<String> {
    for prefix in ["unknown field `", "missing field `", "duplicate key `"] {
        if let Some(rest) = msg.split(prefix).nth(1) {
            return rest.split('`').next().map(str::to_string);
        }
    }
    None
}

fn toml_to_param(v: &toml::Value) -> Option<ParamValue> {
    match v {
        toml::Value::Boolean(b) => Some(ParamValue::Bool(*b)),
        toml::Value::Integer(i) => Some(ParamValue::Int(*i)),
        toml::Value::Float(x) => Some(ParamValue::Float(*x)),
        toml::Value::String(s) => Some(ParamValue::Text(s.clone())),
        _ => None,
    }
}

/// Parses and validates one preset file's text.
pub fn parse_preset(file: &Path, text: &str) -> Result<Preset, PresetError> {
    let err = |line: Option<usize>, key: Option<String>, message: String| PresetError {
        file: file.to_path_buf(),
        line,
        key,
        message,
    };
    let raw: PresetFile = toml::from_str(text).map_err(|e| {
        let msg = e.message().to_string();
        let line = e.span().map(|s| line_of(text, s.start));
        let key = key_in_message(&msg).or_else(|| line.and_then(|l| key_on_line(text, l)));
        err(line, key, msg)
    })?;

    let experiment = experiments::find(raw.experiment.get_ref()).ok_or_else(|| {
        err(
            Some(line_of(text, raw.experiment.span().start)),
            Some("experiment".into()),
            format!(
                "unknown experiment `{}` (known: {})",
                raw.experiment.get_ref(),
                experiments::kinds().join(", ")
            ),
        )
    })?;
    let specs = experiment.params();

    let apply = |params: &mut Params,
                 table: &BTreeMap<String, Spanned<toml::Value>>,
                 section: &str|
     -> Result<(), PresetError> {
        for (key, value) in table {
            let line = Some(line_of(text, value.span().start));
            let full_key = format!("{section}.{key}");
            let spec: &ParamSpec =
                find_spec(&specs, key).map_err(|m| err(line, Some(full_key.clone()), m))?;
            let v = toml_to_param(value.get_ref()).ok_or_else(|| {
                err(
                    line,
                    Some(full_key.clone()),
                    format!("`{key}` must be a single value, not a table or array"),
                )
            })?;
            let v = spec
                .check(&v)
                .map_err(|m| err(line, Some(full_key.clone()), m))?;
            params.set(spec.name, v);
        }
        Ok(())
    };

    let mut params = Params::defaults(&specs);
    apply(&mut params, &raw.params, "params")?;

    if raw.arms.is_empty() {
        return Err(err(
            None,
            Some("arms".into()),
            "a preset needs at least one arm".into(),
        ));
    }
    let mut arms: Vec<Arm> = Vec::new();
    for a in &raw.arms {
        let line = Some(line_of(text, a.name.span().start));
        if arms.iter().any(|b| &b.name == a.name.get_ref()) {
            return Err(err(
                line,
                Some("arms.name".into()),
                format!("two arms are named `{}`", a.name.get_ref()),
            ));
        }
        if a.name.get_ref().is_empty()
            || a.name.get_ref().len() > 64
            || !a
                .name
                .get_ref()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(err(
                line,
                Some("arms.name".into()),
                format!(
                    "arm name `{}` must be 1 to 64 letters, digits, '-', '_' or '.'",
                    a.name.get_ref()
                ),
            ));
        }
        let mut p = params.clone();
        apply(&mut p, &a.params, "arms.params")?;
        arms.push(Arm {
            name: a.name.get_ref().clone(),
            description: a.description.clone(),
            params: p,
        });
    }
    if raw.id.len() > 64
        || !raw.id.starts_with(|c: char| c.is_ascii_alphabetic())
        || !raw
            .id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(err(
            Some(1),
            Some("id".into()),
            format!(
                "id `{}` must start with a letter and hold at most 64 letters, digits and '-'",
                raw.id
            ),
        ));
    }
    if raw.seeds.is_empty() {
        return Err(err(
            None,
            Some("seeds".into()),
            "give at least one seed".into(),
        ));
    }
    Ok(Preset {
        id: raw.id,
        title: raw.title,
        paper: raw.paper,
        summary: raw.summary,
        claim: raw.claim,
        experiment: raw.experiment.into_inner(),
        seeds: raw.seeds,
        params,
        arms,
        source: file.to_path_buf(),
    })
}

/// Reads and parses one preset file from disk.
pub fn load_preset_file(path: &Path) -> Result<Preset, PresetError> {
    let text = std::fs::read_to_string(path).map_err(|e| PresetError {
        file: path.to_path_buf(),
        line: None,
        key: None,
        message: format!("cannot read: {e}"),
    })?;
    parse_preset(path, &text)
}

/// The built-in preset with this id.
pub fn builtin(id: &str) -> Option<Preset> {
    load_all(&[]).ok()?.into_iter().find(|p| p.id == id)
}

/// The roadmap's file name in a preset folder: not a preset (see `roadmap.rs`).
pub const ROADMAP_FILE: &str = "ROADMAP.toml";

/// The built-in presets plus every `*.toml` in `extra_dirs` (but a roadmap file). A user's preset with the id of a
/// built-in one replaces it; two user files with one id are an error.
pub fn load_all(extra_dirs: &[PathBuf]) -> Result<Vec<Preset>, PresetError> {
    let mut presets: Vec<Preset> = Vec::new();
    for (name, text) in builtin_files() {
        presets.push(parse_preset(Path::new(name), text)?);
    }
    let builtin_count = presets.len();
    for dir in extra_dirs {
        let entries = std::fs::read_dir(dir).map_err(|e| PresetError {
            file: dir.clone(),
            line: None,
            key: None,
            message: format!("cannot read preset folder: {e}"),
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .filter(|p| p.file_name().is_some_and(|n| n != ROADMAP_FILE))
            .collect();
        files.sort();
        for f in files {
            let p = load_preset_file(&f)?;
            if let Some(i) = presets.iter().position(|q| q.id == p.id) {
                if i < builtin_count {
                    presets[i] = p;
                } else {
                    return Err(PresetError {
                        file: f,
                        line: None,
                        key: Some("id".into()),
                        message: format!(
                            "id `{}` is also used by {}",
                            p.id,
                            presets[i].source.display()
                        ),
                    });
                }
            } else {
                presets.push(p);
            }
        }
    }
    Ok(presets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_key_helpers() {
        let t = "a = 1\nyear = \"x\"\n";
        assert_eq!(line_of(t, 7), 2);
        assert_eq!(key_on_line(t, 2).as_deref(), Some("year"));
        assert_eq!(
            key_in_message("unknown field `titel`, expected one of").as_deref(),
            Some("titel")
        );
        let t = "params = { eta = 0.1, steps = \"x\" }\n";
        assert_eq!(key_on_line(t, 1).as_deref(), Some("params"));
    }
}

//! Experiment parameters: typed values, the schema an experiment declares, and the resolved set
//! a run trains with.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// One parameter value as it appears in a preset file, on the command line or in `config.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Bool(b) => write!(f, "{b}"),
            ParamValue::Int(i) => write!(f, "{i}"),
            ParamValue::Float(x) => write!(f, "{x}"),
            ParamValue::Text(s) => write!(f, "\"{s}\""),
        }
    }
}

/// The type (and allowed range or choices) of a parameter.
#[derive(Clone, Debug, PartialEq)]
pub enum ParamKind {
    Bool,
    /// An integer in `[min, max]`.
    Int {
        min: i64,
        max: i64,
    },
    /// A finite float in `[min, max]`.
    Float {
        min: f64,
        max: f64,
    },
    /// One of a fixed list of words.
    Choice(&'static [&'static str]),
}

impl ParamKind {
    fn describe(&self) -> String {
        match self {
            ParamKind::Bool => "true or false".into(),
            ParamKind::Int { min, max } => format!("an integer in [{min}, {max}]"),
            ParamKind::Float { min, max } => format!("a number in [{min}, {max}]"),
            ParamKind::Choice(c) => format!("one of {}", c.join(", ")),
        }
    }
}

/// A parameter an experiment understands, with its default.
#[derive(Clone, Debug)]
pub struct ParamSpec {
    pub name: &'static str,
    pub kind: ParamKind,
    pub default: ParamValue,
    pub help: &'static str,
}

impl ParamSpec {
    /// A float parameter in `[min, max]`.
    pub fn float(name: &'static str, default: f64, min: f64, max: f64, help: &'static str) -> Self {
        ParamSpec {
            name,
            kind: ParamKind::Float { min, max },
            default: ParamValue::Float(default),
            help,
        }
    }

    /// An integer parameter in `[min, max]`.
    pub fn int(name: &'static str, default: i64, min: i64, max: i64, help: &'static str) -> Self {
        ParamSpec {
            name,
            kind: ParamKind::Int { min, max },
            default: ParamValue::Int(default),
            help,
        }
    }

    /// One of a fixed list of words.
    pub fn choice(
        name: &'static str,
        choices: &'static [&'static str],
        default: &str,
        help: &'static str,
    ) -> Self {
        ParamSpec {
            name,
            kind: ParamKind::Choice(choices),
            default: ParamValue::Text(default.to_string()),
            help,
        }
    }

    /// Checks `value` against this spec, converting an integer given for a float parameter.
    pub fn check(&self, value: &ParamValue) -> Result<ParamValue, String> {
        let bad = || {
            format!(
                "`{}` must be {}, got {value}",
                self.name,
                self.kind.describe()
            )
        };
        match (&self.kind, value) {
            (ParamKind::Bool, ParamValue::Bool(_)) => Ok(value.clone()),
            (ParamKind::Int { min, max }, ParamValue::Int(i)) => {
                if i < min || i > max {
                    Err(bad())
                } else {
                    Ok(value.clone())
                }
            }
            (ParamKind::Float { min, max }, ParamValue::Float(_) | ParamValue::Int(_)) => {
                let x = match value {
                    ParamValue::Float(x) => *x,
                    ParamValue::Int(i) => *i as f64,
                    _ => unreachable!(),
                };
                if !x.is_finite() || x < *min || x > *max {
                    Err(bad())
                } else {
                    Ok(ParamValue::Float(x))
                }
            }
            (ParamKind::Choice(choices), ParamValue::Text(s)) => {
                if choices.contains(&s.as_str()) {
                    Ok(value.clone())
                } else {
                    Err(bad())
                }
            }
            _ => Err(bad()),
        }
    }

    /// Parses a command-line string (`--set name=TEXT`) into a value of this spec's type.
    pub fn parse_text(&self, text: &str) -> Result<ParamValue, String> {
        let text = text.trim();
        let value = match self.kind {
            ParamKind::Bool => match text {
                "true" => ParamValue::Bool(true),
                "false" => ParamValue::Bool(false),
                _ => ParamValue::Text(text.to_string()),
            },
            ParamKind::Int { .. } => match text.replace('_', "").parse::<i64>() {
                Ok(i) => ParamValue::Int(i),
                Err(_) => ParamValue::Text(text.to_string()),
            },
            ParamKind::Float { .. } => match text.parse::<f64>() {
                Ok(x) => ParamValue::Float(x),
                Err(_) => ParamValue::Text(text.to_string()),
            },
            ParamKind::Choice(_) => ParamValue::Text(text.trim_matches('"').to_string()),
        };
        self.check(&value)
    }
}

/// Finds `name` among `specs`, or says which names exist.
pub fn find_spec<'a>(specs: &'a [ParamSpec], name: &str) -> Result<&'a ParamSpec, String> {
    specs.iter().find(|s| s.name == name).ok_or_else(|| {
        let names: Vec<&str> = specs.iter().map(|s| s.name).collect();
        format!("unknown parameter `{name}` (known: {})", names.join(", "))
    })
}

/// A `key=value` override from the command line (or the terminal UI's parameter editor).
#[derive(Clone, Debug, PartialEq)]
pub struct Override {
    pub key: String,
    pub value: String,
}

impl Override {
    /// ```
    /// use reglab::params::Override;
    /// let o = Override::parse("eta=0.1").unwrap();
    /// assert_eq!((o.key.as_str(), o.value.as_str()), ("eta", "0.1"));
    /// assert!(Override::parse("eta").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Override, String> {
        match text.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok(Override {
                key: k.trim().to_string(),
                value: v.trim().to_string(),
            }),
            _ => Err(format!("`--set {text}`: expected key=value")),
        }
    }
}

/// The complete, validated parameters of one run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Params(pub BTreeMap<String, ParamValue>);

impl Params {
    /// The defaults of every spec.
    pub fn defaults(specs: &[ParamSpec]) -> Params {
        Params(
            specs
                .iter()
                .map(|s| (s.name.to_string(), s.default.clone()))
                .collect(),
        )
    }

    pub fn set(&mut self, name: &str, value: ParamValue) {
        self.0.insert(name.to_string(), value);
    }

    pub fn get(&self, name: &str) -> Option<&ParamValue> {
        self.0.get(name)
    }

    /// A float parameter (integers are widened). Panics on a name the schema lacks: that is a bug
    /// in the experiment, not bad input, since every run's parameters were validated.
    pub fn f64(&self, name: &str) -> f64 {
        match self.0.get(name) {
            Some(ParamValue::Float(x)) => *x,
            Some(ParamValue::Int(i)) => *i as f64,
            other => panic!("parameter `{name}` is not a number: {other:?}"),
        }
    }

    pub fn usize(&self, name: &str) -> usize {
        match self.0.get(name) {
            Some(ParamValue::Int(i)) if *i >= 0 => *i as usize,
            other => panic!("parameter `{name}` is not a count: {other:?}"),
        }
    }

    pub fn text(&self, name: &str) -> &str {
        match self.0.get(name) {
            Some(ParamValue::Text(s)) => s,
            other => panic!("parameter `{name}` is not text: {other:?}"),
        }
    }

    pub fn bool(&self, name: &str) -> bool {
        match self.0.get(name) {
            Some(ParamValue::Bool(b)) => *b,
            other => panic!("parameter `{name}` is not a bool: {other:?}"),
        }
    }

    /// Applies command-line overrides, validating each against `specs`.
    pub fn apply_overrides(
        &mut self,
        specs: &[ParamSpec],
        overrides: &[Override],
    ) -> Result<(), String> {
        for o in overrides {
            let spec = find_spec(specs, &o.key).map_err(|e| format!("--set {}: {e}", o.key))?;
            let value = spec
                .parse_text(&o.value)
                .map_err(|e| format!("--set {}={}: {e}", o.key, o.value))?;
            self.set(spec.name, value);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs() -> Vec<ParamSpec> {
        vec![
            ParamSpec {
                name: "eta",
                kind: ParamKind::Float {
                    min: 0.0,
                    max: 10.0,
                },
                default: ParamValue::Float(0.1),
                help: "",
            },
            ParamSpec {
                name: "steps",
                kind: ParamKind::Int { min: 1, max: 1000 },
                default: ParamValue::Int(10),
                help: "",
            },
            ParamSpec {
                name: "model",
                kind: ParamKind::Choice(&["relu", "diag"]),
                default: ParamValue::Text("relu".into()),
                help: "",
            },
        ]
    }

    #[test]
    fn overrides_are_validated() {
        let s = specs();
        let mut p = Params::defaults(&s);
        p.apply_overrides(&s, &[Override::parse("eta=0.5").unwrap()])
            .unwrap();
        assert_eq!(p.f64("eta"), 0.5);
        p.apply_overrides(&s, &[Override::parse("eta=2").unwrap()])
            .unwrap();
        assert_eq!(p.get("eta"), Some(&ParamValue::Float(2.0)));
        let e = p
            .apply_overrides(&s, &[Override::parse("etta=1").unwrap()])
            .unwrap_err();
        assert!(e.contains("unknown parameter `etta`"), "{e}");
        let e = p
            .apply_overrides(&s, &[Override::parse("steps=abc").unwrap()])
            .unwrap_err();
        assert!(e.contains("must be an integer"), "{e}");
        let e = p
            .apply_overrides(&s, &[Override::parse("steps=0").unwrap()])
            .unwrap_err();
        assert!(e.contains("[1, 1000]"), "{e}");
        let e = p
            .apply_overrides(&s, &[Override::parse("model=mlp").unwrap()])
            .unwrap_err();
        assert!(e.contains("one of relu, diag"), "{e}");
        assert!(Override::parse("novalue").is_err());
    }
}

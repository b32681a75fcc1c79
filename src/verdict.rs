//! Verdicts: the check of a paper's claim, computed from what the runs measured.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How one check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Holds,
    Fails,
    /// Not enough finished runs to decide (for example, every relevant arm diverged).
    Inconclusive,
}

impl Outcome {
    pub fn word(self) -> &'static str {
        match self {
            Outcome::Holds => "holds",
            Outcome::Fails => "fails",
            Outcome::Inconclusive => "inconclusive",
        }
    }
}

/// One check of the claim, with the numbers that decided it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// Short id, e.g. "i".
    pub id: String,
    /// What is checked, in one sentence.
    pub statement: String,
    pub outcome: Outcome,
    /// One line per number that entered the decision.
    pub evidence: Vec<String>,
    /// The same numbers, machine-readable.
    pub numbers: BTreeMap<String, f64>,
    /// Reported alongside the claim but not part of it: it does not decide the verdict.
    #[serde(default)]
    pub informational: bool,
}

/// The verdict of one launch of a preset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub preset: String,
    pub claim: String,
    pub checks: Vec<Check>,
}

impl Verdict {
    /// Holds when every check of the claim holds; fails when any fails; otherwise inconclusive.
    /// Informational checks do not count.
    pub fn outcome(&self) -> Outcome {
        let claim: Vec<&Check> = self.checks.iter().filter(|c| !c.informational).collect();
        if claim.iter().any(|c| c.outcome == Outcome::Fails) {
            Outcome::Fails
        } else if !claim.is_empty() && claim.iter().all(|c| c.outcome == Outcome::Holds) {
            Outcome::Holds
        } else {
            Outcome::Inconclusive
        }
    }

    pub fn check(&self, id: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(id: &str, outcome: Outcome) -> Check {
        Check {
            id: id.into(),
            statement: String::new(),
            outcome,
            evidence: vec![],
            numbers: BTreeMap::new(),
            informational: false,
        }
    }

    #[test]
    fn overall_outcome() {
        let mut v = Verdict {
            preset: "p".into(),
            claim: "c".into(),
            checks: vec![check("a", Outcome::Holds), check("b", Outcome::Holds)],
        };
        assert_eq!(v.outcome(), Outcome::Holds);
        v.checks.push(check("c", Outcome::Inconclusive));
        assert_eq!(v.outcome(), Outcome::Inconclusive);
        v.checks.push(check("d", Outcome::Fails));
        assert_eq!(v.outcome(), Outcome::Fails);
        v.checks.last_mut().unwrap().informational = true;
        assert_eq!(v.outcome(), Outcome::Inconclusive);
        v.checks.clear();
        assert_eq!(v.outcome(), Outcome::Inconclusive);
    }
}

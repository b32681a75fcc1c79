//! Verdicts: the check of a paper's claim, computed from what the runs measured.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How one check came out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Holds,
    Fails,
    #[default]
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
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// Short id, e.g. "i".
    pub id: String,
    /// What is checked, in one sentence.
    pub statement: String,
    /// What the runs would have to show for it to fail (every check of a claim must be able to).
    #[serde(default)]
    pub fails_when: String,
    pub outcome: Outcome,
    /// One line per number that entered the decision.
    pub evidence: Vec<String>,
    /// The same numbers, machine-readable.
    pub numbers: BTreeMap<String, f64>,
    /// Reported alongside the claim but not part of it: it does not decide the verdict.
    #[serde(default)]
    pub informational: bool,
    /// The evidence line of the first case that did not hold (what a one-line summary quotes
    /// when the check fails).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_failed: Option<usize>,
}

impl Check {
    /// The outcome as shown: "HOLDS", "FAILS", "INCONCLUSIVE", or "REPORTED" for a check that
    /// only reports numbers (informational, with no case to decide).
    pub fn outcome_label(&self) -> String {
        if self.informational && self.outcome == Outcome::Inconclusive {
            "REPORTED".into()
        } else {
            self.outcome.word().to_uppercase()
        }
    }
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

/// How a check's cases decide it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quantifier {
    /// Holds when every case held (fails on one that did not).
    Every,
    /// Holds when some case held (fails when none did).
    Some,
}

/// A check built from its statement, the condition under which it fails, and the cases the
/// runs supplied; without a case it is inconclusive.
#[derive(Clone, Debug)]
pub struct CheckBuilder {
    check: Check,
    quantifier: Quantifier,
    cases: usize,
    held: usize,
}

impl CheckBuilder {
    pub fn new(
        id: impl Into<String>,
        quantifier: Quantifier,
        statement: impl Into<String>,
        fails_when: impl Into<String>,
    ) -> CheckBuilder {
        CheckBuilder {
            check: Check {
                id: id.into(),
                statement: statement.into(),
                fails_when: fails_when.into(),
                ..Check::default()
            },
            quantifier,
            cases: 0,
            held: 0,
        }
    }

    /// Reported alongside the claim, not counted towards it.
    pub fn informational(mut self) -> CheckBuilder {
        self.check.informational = true;
        self
    }

    /// One case that held or not, with its evidence line.
    pub fn case(&mut self, held: bool, line: impl Into<String>) {
        self.cases += 1;
        self.held += usize::from(held);
        if !held && self.check.first_failed.is_none() {
            self.check.first_failed = Some(self.check.evidence.len());
        }
        self.check.evidence.push(line.into());
    }

    /// An evidence line that decides nothing (a run left out, a summary).
    pub fn note(&mut self, line: impl Into<String>) {
        self.check.evidence.push(line.into());
    }

    pub fn number(&mut self, key: impl Into<String>, value: f64) {
        self.check.numbers.insert(key.into(), value);
    }

    pub fn cases(&self) -> usize {
        self.cases
    }

    pub fn finish(mut self) -> Check {
        self.check.outcome = match (self.cases, self.quantifier) {
            (0, _) => Outcome::Inconclusive,
            (n, Quantifier::Every) if self.held == n => Outcome::Holds,
            (_, Quantifier::Some) if self.held > 0 => Outcome::Holds,
            _ => Outcome::Fails,
        };
        self.check
    }
}

/// Why a run cannot enter a comparison, if it cannot: it did not complete, or its `metric`
/// (described as `what`, e.g. "test accuracy") is below `floor` or NaN, so it learned nothing.
/// The line ends in "left out".
pub fn unusable(
    r: &crate::experiments::FinishedRun,
    metric: &str,
    what: &str,
    floor: f64,
) -> Option<String> {
    if !r.completed() {
        return Some(format!("{}: {}, left out", r.label(), r.status.describe()));
    }
    let v = r.value(metric);
    (v.is_nan() || v < floor).then(|| {
        format!(
            "{}: {what} {v:.3} < {floor}: learned nothing, left out",
            r.label()
        )
    })
}

/// The runs among `runs` that can enter a comparison ([`unusable`] says why the others cannot,
/// into `notes`).
pub fn usable<'a>(
    runs: impl IntoIterator<Item = &'a crate::experiments::FinishedRun>,
    metric: &str,
    what: &str,
    floor: f64,
    notes: &mut Vec<String>,
) -> Vec<&'a crate::experiments::FinishedRun> {
    runs.into_iter()
        .filter(|r| match unusable(r, metric, what, floor) {
            Some(why) => {
                notes.push(why);
                false
            }
            None => true,
        })
        .collect()
}

/// The mean and its standard error (sample standard deviation over sqrt(n); NaN for one value).
pub fn mean_se(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    if xs.len() < 2 {
        return (mean, f64::NAN);
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, (var / n).sqrt())
}

/// "mean +- se" of a (mean, standard error) pair to 4 decimals; the mean alone when the standard
/// error is undefined (one seed).
pub fn fmt_mean_se((m, se): (f64, f64)) -> String {
    if se.is_nan() {
        format!("{m:.4}")
    } else {
        format!("{m:.4} +- {se:.4}")
    }
}

/// [`fmt_mean_se`] of the values `xs`.
pub fn mean_se_text(xs: &[f64]) -> String {
    fmt_mean_se(mean_se(xs))
}

/// Mean and standard error over `runs` of the summary value `key`.
pub fn runs_mean_se(runs: &[&crate::experiments::FinishedRun], key: &str) -> (f64, f64) {
    let xs: Vec<f64> = runs.iter().map(|r| r.value(key)).collect();
    mean_se(&xs)
}

/// The seeds both `a` and `b` have, each with the difference of `key` (a's minus b's), in a's order.
pub fn paired_by_seed(
    a: &[&crate::experiments::FinishedRun],
    b: &[&crate::experiments::FinishedRun],
    key: &str,
) -> Vec<(u64, f64)> {
    a.iter()
        .filter_map(|x| {
            b.iter()
                .find(|y| y.seed == x.seed)
                .map(|y| (x.seed, x.value(key) - y.value(key)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(id: &str, outcome: Outcome) -> Check {
        Check {
            id: id.into(),
            outcome,
            ..Check::default()
        }
    }

    #[test]
    fn builder_remembers_the_first_case_that_failed() {
        let mut b = CheckBuilder::new("a", Quantifier::Every, "s", "f");
        b.note("a run left out");
        b.case(true, "fine");
        b.case(false, "this one failed");
        b.case(false, "and this");
        let c = b.finish();
        assert_eq!(c.outcome, Outcome::Fails);
        assert_eq!(c.first_failed, Some(2));
        assert_eq!(c.evidence[2], "this one failed");
    }

    #[test]
    fn builder_decides_from_its_cases() {
        let empty = CheckBuilder::new("a", Quantifier::Every, "s", "f").finish();
        assert_eq!(empty.outcome, Outcome::Inconclusive);
        let mut every = CheckBuilder::new("b", Quantifier::Every, "s", "f");
        every.case(true, "x");
        every.note("left out");
        assert_eq!(every.clone().finish().outcome, Outcome::Holds);
        every.case(false, "y");
        let c = every.finish();
        assert_eq!(c.outcome, Outcome::Fails);
        assert_eq!(c.evidence.len(), 3);
        let mut some = CheckBuilder::new("c", Quantifier::Some, "s", "f");
        some.case(false, "x");
        assert_eq!(some.clone().finish().outcome, Outcome::Fails);
        some.case(true, "y");
        assert_eq!(some.finish().outcome, Outcome::Holds);
    }

    #[test]
    fn mean_and_standard_error() {
        let (m, se) = mean_se(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(m, 2.5);
        // s.d. sqrt(5/3), over sqrt(4).
        assert!((se - (5.0f64 / 3.0).sqrt() / 2.0).abs() < 1e-15);
        assert!(mean_se(&[3.0]).1.is_nan());
    }

    #[test]
    fn mean_se_text_and_pairs_by_seed() {
        assert_eq!(mean_se_text(&[1.0, 3.0]), "2.0000 +- 1.0000");
        assert_eq!(mean_se_text(&[0.5]), "0.5000");
        let run = |seed: u64, v: f64| crate::experiments::FinishedRun {
            arm: "a".into(),
            seed,
            params: Default::default(),
            status: crate::experiments::RunStatus::Completed { steps: 1 },
            final_values: [("x".to_string(), v)].into_iter().collect(),
        };
        let a = [run(0, 1.0), run(1, 2.0), run(2, 5.0)];
        let b = [run(2, 1.0), run(0, 0.5)];
        let (a, b): (Vec<_>, Vec<_>) = (a.iter().collect(), b.iter().collect());
        assert_eq!(paired_by_seed(&a, &b, "x"), vec![(0, 0.5), (2, 4.0)]);
        let (m, se) = runs_mean_se(&a, "x");
        assert_eq!(m, 8.0 / 3.0);
        assert!(se > 0.0);
    }

    #[test]
    fn a_check_without_cases_that_only_reports_is_labelled_reported() {
        let reported = CheckBuilder::new("r", Quantifier::Every, "numbers", "never")
            .informational()
            .finish();
        assert_eq!(reported.outcome_label(), "REPORTED");
        let mut counted = CheckBuilder::new("c", Quantifier::Every, "x", "y").informational();
        counted.case(false, "z");
        assert_eq!(counted.finish().outcome_label(), "FAILS");
        let open = CheckBuilder::new("o", Quantifier::Every, "x", "y").finish();
        assert_eq!(open.outcome_label(), "INCONCLUSIVE");
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

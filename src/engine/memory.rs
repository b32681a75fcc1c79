//! Memory a launch will need, checked before anything starts: each experiment estimates a run's
//! peak from its parameters (naming the parameters that dominate), and a launch whose runs cannot
//! fit, `--jobs` of them at once, in the limit (`--max-memory`, else the memory available now) is
//! refused with one line. An allocation failure aborts the whole process in Rust, so refusing up
//! front is what keeps one oversized run from taking the others down.

use std::sync::atomic::{AtomicU64, Ordering};

/// `--max-memory`, in bytes (0: not set).
static LIMIT: AtomicU64 = AtomicU64::new(0);

/// Sets the limit for this process's launches.
pub fn set_limit(bytes: Option<u64>) {
    LIMIT.store(bytes.unwrap_or(0), Ordering::Relaxed);
}

/// The memory available now (Linux: `MemAvailable` in /proc/meminfo), if known.
pub fn available_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The limit launches are checked against, and where it comes from.
pub fn limit() -> Option<(u64, &'static str)> {
    match LIMIT.load(Ordering::Relaxed) {
        0 => available_bytes().map(|b| (b, "memory available now")),
        b => Some((b, "--max-memory")),
    }
}

/// A run's estimated peak memory and the parameters behind it.
#[derive(Clone, Debug, PartialEq)]
pub struct Estimate {
    pub bytes: u64,
    /// The dominant term, in the parameters' own words (e.g. "width 100000 x dim 100000").
    pub because: String,
}

impl Estimate {
    /// The largest of several (bytes, description) terms plus the rest, in bytes.
    pub fn of(terms: &[(f64, String)]) -> Estimate {
        let total: f64 = terms.iter().map(|t| t.0.max(0.0)).sum();
        let because = terms
            .iter()
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|t| t.1.clone())
            .unwrap_or_default();
        Estimate {
            bytes: total.min(u64::MAX as f64) as u64,
            because,
        }
    }
}

/// "12.3 GB".
pub fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e12 {
        format!("{:.1} TB", b / 1e12)
    } else if b >= 1e9 {
        format!("{:.1} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else {
        format!("{:.0} kB", b / 1e3)
    }
}

/// Checks runs (arm, estimate) of which `jobs` run at once against the limit.
pub fn check(runs: &[(String, Estimate)], jobs: usize) -> Result<(), String> {
    let Some((limit, source)) = limit() else {
        return Ok(());
    };
    if let Some((arm, e)) = runs.iter().max_by_key(|r| r.1.bytes) {
        if e.bytes > limit {
            return Err(format!(
                "run {arm} needs about {} ({}), more than the {} of {source}",
                human(e.bytes),
                e.because,
                human(limit)
            ));
        }
    }
    let mut sizes: Vec<u64> = runs.iter().map(|r| r.1.bytes).collect();
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    let together: u64 = sizes.iter().take(jobs.max(1)).sum();
    if together > limit {
        return Err(format!(
            "{} runs at once (--jobs) need about {}, more than the {} of {source}; lower --jobs",
            jobs.min(runs.len()),
            human(together),
            human(limit)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_name_their_dominant_term_and_launches_are_checked() {
        let e = Estimate::of(&[(8e10, "width x dim".into()), (1e3, "data".into())]);
        assert_eq!(e.because, "width x dim");
        set_limit(Some(1 << 30));
        let runs = vec![
            ("big".to_string(), e),
            ("small".to_string(), Estimate::of(&[(1e8, "x".into())])),
        ];
        let err = check(&runs, 1).unwrap_err();
        assert!(
            err.contains("run big needs about 80.0 GB (width x dim)"),
            "{err}"
        );
        assert!(err.contains("--max-memory"), "{err}");
        let ok = vec![("a".to_string(), Estimate::of(&[(4e8, "x".into())])); 4];
        assert!(check(&ok, 2).is_ok());
        let err = check(&ok, 4).unwrap_err();
        assert!(err.contains("lower --jobs"), "{err}");
        set_limit(None);
    }
}

//! Results that every arm of a launch shares and that take a while to compute (a diffusion prior
//! or a feature classifier trained once per seed), kept in memory for the process.
//!
//! Runs of one launch train on tokio's blocking pool in one process, so the first run that asks
//! for a key computes it and the others with the same key wait for it and share it; a run on
//! another node (a Slurm task) computes its own. A failed or stopped computation is not kept.
//! The key must name everything the value depends on (the seed, the configuration, the device).
//! At most [`CAPACITY`] values are kept; the oldest goes first.

use std::any::Any;
use std::sync::{Arc, Mutex};

use super::RunStop;

/// Values kept at most.
pub const CAPACITY: usize = 16;

type Slot = Arc<Mutex<Option<Arc<dyn Any + Send + Sync>>>>;

static SLOTS: Mutex<Vec<(String, Slot)>> = Mutex::new(Vec::new());

/// The value under `key`, computed by `make` if no run of this process has computed it yet.
pub fn shared<T: Send + Sync + 'static>(
    key: &str,
    make: impl FnOnce() -> Result<T, RunStop>,
) -> Result<Arc<T>, RunStop> {
    let slot = {
        let mut slots = SLOTS.lock().unwrap_or_else(|e| e.into_inner());
        match slots.iter().find(|(k, _)| k == key) {
            Some((_, s)) => s.clone(),
            None => {
                if slots.len() >= CAPACITY {
                    slots.remove(0);
                }
                let s: Slot = Arc::new(Mutex::new(None));
                slots.push((key.to_string(), s.clone()));
                s
            }
        }
    };
    // Held while computing: runs with the same key wait here.
    let mut value = slot.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(v) = value.as_ref() {
        if let Ok(t) = v.clone().downcast::<T>() {
            return Ok(t);
        }
    }
    let t = Arc::new(make()?);
    *value = Some(t.clone());
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn computes_once_per_key_and_forgets_failures() {
        static CALLS: AtomicUsize = AtomicUsize::new(0);
        let make = || {
            CALLS.fetch_add(1, Ordering::SeqCst);
            Ok(41usize)
        };
        let threads: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(move || *shared("memo-test-a", make).unwrap()))
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap(), 41);
        }
        assert_eq!(CALLS.load(Ordering::SeqCst), 1);
        let failed: Result<Arc<usize>, _> =
            shared("memo-test-b", || Err(RunStop::Failed("no".into())));
        assert!(failed.is_err());
        assert_eq!(*shared("memo-test-b", || Ok(7usize)).unwrap(), 7);
    }
}

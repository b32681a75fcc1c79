//! The engine's event stream, with a bound on what waits for the screen. Control events (a run
//! started or ended, a launch's verdict) are always delivered. Metric points and log lines are
//! written to the run's folder first; the copies for the screen are dropped while more than
//! [`SCREEN_BACKLOG`] of them wait for a slow consumer (a blocked stdout, a stalled SSH session),
//! so memory stays bounded and training never waits on the screen. The consumer sees how many it
//! missed in [`EventReceiver::dropped`] and can read the folder for the full record.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc::{self, error::TryRecvError};

use super::manager::EngineEvent;

/// Metric points and log lines that may wait for the consumer at once.
pub const SCREEN_BACKLOG: usize = 4096;

#[derive(Default)]
struct Counters {
    waiting: AtomicUsize,
    dropped: AtomicU64,
}

/// The engine's side.
#[derive(Clone)]
pub struct EventSender {
    tx: mpsc::UnboundedSender<EngineEvent>,
    counters: Arc<Counters>,
}

/// The consumer's side (the headless printer, the workbench).
pub struct EventReceiver {
    rx: mpsc::UnboundedReceiver<EngineEvent>,
    counters: Arc<Counters>,
}

/// A connected pair.
pub fn channel() -> (EventSender, EventReceiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    let counters = Arc::new(Counters::default());
    (
        EventSender {
            tx,
            counters: counters.clone(),
        },
        EventReceiver { rx, counters },
    )
}

fn for_screen_only(ev: &EngineEvent) -> bool {
    matches!(
        ev,
        EngineEvent::Metrics { .. } | EngineEvent::Log { .. } | EngineEvent::Picture { .. }
    )
}

impl EventSender {
    /// Sends `ev`; a metric point or log line is dropped instead when the backlog is full.
    pub fn send(&self, ev: EngineEvent) {
        if for_screen_only(&ev) {
            if self.counters.waiting.load(Ordering::Relaxed) >= SCREEN_BACKLOG {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            self.counters.waiting.fetch_add(1, Ordering::Relaxed);
        }
        let _ = self.tx.send(ev);
    }
}

impl EventReceiver {
    fn took(&self, ev: &EngineEvent) {
        if for_screen_only(ev) {
            self.counters.waiting.fetch_sub(1, Ordering::Relaxed);
        }
    }

    pub async fn recv(&mut self) -> Option<EngineEvent> {
        let ev = self.rx.recv().await;
        if let Some(e) = &ev {
            self.took(e);
        }
        ev
    }

    pub fn try_recv(&mut self) -> Result<EngineEvent, TryRecvError> {
        let ev = self.rx.try_recv();
        if let Ok(e) = &ev {
            self.took(e);
        }
        ev
    }

    /// Metric points and log lines dropped for the screen so far (all are on disk).
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    /// Metric points and log lines waiting now.
    pub fn waiting(&self) -> usize {
        self.counters.waiting.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::store::MetricPoint;

    fn point(run: u64) -> EngineEvent {
        EngineEvent::Metrics {
            run,
            point: MetricPoint {
                step: 0,
                elapsed_s: 0.0,
                metrics: Default::default(),
            },
        }
    }

    #[test]
    fn a_stalled_consumer_bounds_the_backlog_but_never_loses_control_events() {
        let (tx, mut rx) = channel();
        for _ in 0..3 * SCREEN_BACKLOG {
            tx.send(point(1));
        }
        tx.send(EngineEvent::Started { run: 1 });
        assert_eq!(rx.waiting(), SCREEN_BACKLOG);
        assert_eq!(rx.dropped(), 2 * SCREEN_BACKLOG as u64);
        let mut points = 0;
        let mut started = false;
        while let Ok(ev) = rx.try_recv() {
            match ev {
                EngineEvent::Metrics { .. } => points += 1,
                EngineEvent::Started { .. } => started = true,
                _ => {}
            }
        }
        assert_eq!(points, SCREEN_BACKLOG);
        assert!(started);
        // Drained: points flow again.
        tx.send(point(1));
        assert_eq!(rx.waiting(), 1);
    }
}

//! The run loop every experiment shares: measurement cadence, stop requests, divergence
//! detection, records, artifacts, wall time and the host <-> device bytes of a training step. An experiment supplies a [`Trainer`]: its
//! training step, its evaluation and its artifacts.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use super::{RunContext, RunEnd, RunStop};
use crate::nn::transfer;

/// When to measure.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    /// Training steps.
    pub steps: u64,
    /// Steps between measurements (the first step and the last are always measured).
    pub log_every: u64,
    /// A step loss above this ends the run as diverged (None: only NaN/Inf do).
    pub blowup: Option<f64>,
}

impl Schedule {
    /// `steps` and `log_every` from a run's parameters.
    pub fn from_params(p: &crate::params::Params) -> Schedule {
        Schedule {
            steps: p.usize("steps") as u64,
            log_every: p.usize("log_every").max(1) as u64,
            blowup: None,
        }
    }
}

/// What one measurement produced.
#[derive(Clone, Debug, Default)]
pub struct Evaluation {
    pub values: Vec<(&'static str, f64)>,
    /// Pictures to show (the latest of each name is kept).
    pub pictures: Vec<(&'static str, crate::metrics::picture::Picture)>,
    /// End the run after this measurement (e.g. the loss fell below a stopping threshold).
    pub stop_early: bool,
}

impl Evaluation {
    pub fn new(values: Vec<(&'static str, f64)>) -> Evaluation {
        Evaluation {
            values,
            pictures: Vec::new(),
            stop_early: false,
        }
    }
}

/// One experiment's training, as the driver sees it.
pub trait Trainer {
    /// Measures at `step`; `last` is true at the final step (an experiment may measure harder
    /// there). Returning `Err` ends the run (for example as diverged).
    fn evaluate(&mut self, step: u64, last: bool) -> Result<Evaluation, RunStop>;
    /// One training step; returns its training loss (NaN or Inf ends the run as diverged).
    fn step(&mut self, step: u64) -> Result<f64, RunStop>;
    /// Writes the run's artifacts (final parameters, evaluation data, MODEL.txt) into `dir`.
    fn write_artifacts(&self, dir: &Path) -> std::io::Result<()>;
    /// Adds values to the final ones after the last measurement (default: nothing).
    fn finish(&mut self, _final_values: &mut BTreeMap<String, f64>, _steps: u64) {}
}

/// Runs `trainer` to the end of `schedule`, recording every measurement through `ctx`.
pub fn drive(
    ctx: &mut RunContext<'_>,
    schedule: Schedule,
    trainer: &mut dyn Trainer,
) -> Result<RunEnd, RunStop> {
    let started = Instant::now();
    let mut step_bytes = 0u64;
    let mut last: BTreeMap<String, f64>;
    let mut step = 0u64;
    loop {
        let at_end = step >= schedule.steps;
        if step.is_multiple_of(schedule.log_every.max(1)) || at_end {
            let e = trainer.evaluate(step, at_end)?;
            ctx.record(step, &e.values);
            for (name, p) in e.pictures {
                ctx.picture(name, p);
            }
            last = e.values.iter().map(|(k, v)| (k.to_string(), *v)).collect();
            if at_end || e.stop_early {
                if e.stop_early && !at_end {
                    ctx.log(format!("stopping criterion met at step {step}"));
                }
                break;
            }
        }
        if ctx.stop_requested() {
            return Err(RunStop::Stopped { step });
        }
        let before = transfer::bytes();
        let loss = trainer.step(step)?;
        step_bytes += transfer::bytes() - before;
        if !loss.is_finite() {
            return Err(RunStop::Diverged {
                step,
                reason: format!("non-finite training loss ({loss})"),
            });
        }
        if let Some(limit) = schedule.blowup {
            if loss > limit {
                return Err(RunStop::Diverged {
                    step,
                    reason: format!("training loss {loss:.3e} above {limit:.3e}"),
                });
            }
        }
        step += 1;
    }
    trainer.finish(&mut last, step);
    last.insert("wall_s".into(), started.elapsed().as_secs_f64());
    if step > 0 {
        // Host <-> device bytes of a training step (measurements excluded).
        last.insert("bytes_per_step".into(), step_bytes as f64 / step as f64);
    }
    if let Some(dir) = ctx.dir.clone() {
        trainer
            .write_artifacts(&dir)
            .map_err(|e| RunStop::Failed(format!("writing artifacts: {e}")))?;
    }
    Ok(RunEnd {
        steps: step,
        final_values: last,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiments::MemorySink;
    use crate::params::Params;
    use std::sync::atomic::AtomicBool;

    /// x <- x - lr * x on L = x^2 / 2; `lr` > 2 diverges.
    struct Toy {
        x: f64,
        lr: f64,
    }

    impl Trainer for Toy {
        fn evaluate(&mut self, _step: u64, _last: bool) -> Result<Evaluation, RunStop> {
            Ok(Evaluation::new(vec![("loss", 0.5 * self.x * self.x)]))
        }
        fn step(&mut self, _step: u64) -> Result<f64, RunStop> {
            self.x -= self.lr * self.x;
            Ok(0.5 * self.x * self.x)
        }
        fn write_artifacts(&self, _dir: &Path) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn run(lr: f64, blowup: Option<f64>) -> (Result<RunEnd, RunStop>, Vec<u64>) {
        let params = Params::default();
        let mut sink = MemorySink::default();
        let stop = AtomicBool::new(false);
        let mut ctx = RunContext::new(&params, 0, None, &mut sink, &stop);
        let schedule = Schedule {
            steps: 10,
            log_every: 4,
            blowup,
        };
        let r = drive(&mut ctx, schedule, &mut Toy { x: 1.0, lr });
        let steps = sink.points.iter().map(|p| p.0).collect();
        (r, steps)
    }

    #[test]
    fn measures_on_cadence_and_at_the_end() {
        let (r, steps) = run(0.5, None);
        assert_eq!(steps, vec![0, 4, 8, 10]);
        let end = r.unwrap();
        assert_eq!(end.steps, 10);
        assert!((end.final_values["loss"] - 0.5 * 0.25f64.powi(10)).abs() < 1e-15);
    }

    #[test]
    fn blow_up_and_non_finite_losses_diverge_at_their_step() {
        // |1 - 3| = 2: the loss grows 4x per step, past 100 at step 3 (loss 0.5 * 4^4).
        let (r, _) = run(3.0, Some(100.0));
        assert!(matches!(r, Err(RunStop::Diverged { step: 3, .. })), "{r:?}");
        let (r, _) = run(f64::NAN, None);
        assert!(matches!(r, Err(RunStop::Diverged { step: 0, .. })), "{r:?}");
    }
}

//! Named configurations of an experiment's preset: the quick profile (a small seeded launch that
//! still exercises the claim, for tests and `verify --quick`), the device-check cases and the
//! benchmark cases. An experiment declares them; the tools that use them know no preset by name.

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use super::{MemorySink, RunContext, RunEnd};
use crate::device::DeviceChoice;
use crate::params::{Override, Params};
use crate::presets::{self, Preset};

/// Which arms and seeds of a built-in preset, with which parameter overrides.
#[derive(Clone, Copy, Debug)]
pub struct Profile {
    pub preset: &'static str,
    /// Empty: every arm.
    pub arms: &'static [&'static str],
    /// Empty: the preset's seeds.
    pub seeds: &'static [u64],
    pub overrides: &'static [(&'static str, &'static str)],
}

impl Profile {
    pub fn overrides(&self) -> Vec<Override> {
        self.overrides
            .iter()
            .map(|(k, v)| Override {
                key: k.to_string(),
                value: v.to_string(),
            })
            .collect()
    }

    /// The built-in preset it names.
    pub fn preset(&self) -> Result<Preset, String> {
        presets::builtin(self.preset).ok_or_else(|| format!("no built-in preset `{}`", self.preset))
    }

    /// The parameters of `arm` with the profile's overrides, then `extra`.
    pub fn arm_params(&self, arm: &str, extra: &[Override]) -> Result<Params, String> {
        let preset = self.preset()?;
        let exp = super::find(&preset.experiment)
            .ok_or_else(|| format!("unknown experiment `{}`", preset.experiment))?;
        let arm = preset
            .arm(arm)
            .ok_or_else(|| format!("preset `{}` has no arm `{arm}`", self.preset))?;
        let mut p = arm.params.clone();
        p.apply_overrides(&exp.params(), &self.overrides())?;
        p.apply_overrides(&exp.params(), extra)?;
        Ok(p)
    }

    /// Trains one arm in memory on `device`: how it ended and its wall seconds.
    pub fn run_arm(
        &self,
        arm: &str,
        seed: u64,
        extra: &[Override],
        device: DeviceChoice,
    ) -> Result<(RunEnd, f64), String> {
        let params = self.arm_params(arm, extra)?;
        let exp = super::find(&self.preset()?.experiment).ok_or("unknown experiment")?;
        let stop = AtomicBool::new(false);
        let mut sink = MemorySink::default();
        let mut ctx = RunContext::new(&params, seed, None, &mut sink, &stop).on_device(device);
        let t = Instant::now();
        let r = exp.run(&mut ctx);
        let secs = t.elapsed().as_secs_f64();
        r.map(|end| (end, secs))
            .map_err(|e| super::RunStatus::from_result(&Err(e)).describe())
    }
}

impl Profile {
    /// Seconds per training step of `arm` on the CPU: the difference of runs of `steps` and
    /// `2 * steps` steps (measured only at their ends), so set-up and measurements cancel.
    pub fn seconds_per_step(
        &self,
        arm: &str,
        steps: usize,
        extra: &[Override],
    ) -> Result<f64, String> {
        self.seconds_per_step_by(arm, ("steps", "log_every"), steps, extra)
    }

    /// Like [`Profile::seconds_per_step`] for runs whose length is another parameter
    /// (`length.0`, e.g. "epochs", measured every `length.1` units): runs of `n` and `2 n`
    /// units, their steps counted by the experiment's `total_steps`.
    pub fn seconds_per_step_by(
        &self,
        arm: &str,
        length: (&str, &str),
        n: usize,
        extra: &[Override],
    ) -> Result<f64, String> {
        let exp = super::find(self.preset().map(|p| p.experiment)?.as_str())
            .ok_or("unknown experiment")?;
        let timed = |n: usize| {
            let mut o = extra.to_vec();
            for k in [length.0, length.1] {
                o.push(Override {
                    key: k.into(),
                    value: n.to_string(),
                });
            }
            let steps = exp.total_steps(&self.arm_params(arm, &o)?);
            self.run_arm(arm, 0, &o, DeviceChoice::Cpu)
                .map(|r| (r.1, steps))
        };
        let ((a, sa), (b, sb)) = (timed(n)?, timed(2 * n)?);
        if b > a && sb > sa {
            Ok((b - a) / (sb - sa) as f64)
        } else {
            Err("too fast to time".into())
        }
    }

    /// Appends one line per arm of the preset (but those `skip` names): its training steps per
    /// second on the CPU ([`Profile::seconds_per_step_by`] at `n` units of `length`, with
    /// `extra` overrides).
    pub fn speed_lines(
        &self,
        length: (&str, &str),
        n: usize,
        extra: &[Override],
        skip: impl Fn(&crate::presets::Arm) -> bool,
        out: &mut String,
    ) {
        use std::fmt::Write as _;
        let Ok(preset) = self.preset() else {
            return;
        };
        for arm in preset.arms.iter().filter(|a| !skip(a)) {
            let _ = match self.seconds_per_step_by(&arm.name, length, n, extra) {
                Ok(s) => writeln!(
                    out,
                    "  {:<22} {:>8.0} steps/s  ({:.3} ms/step)",
                    arm.name,
                    1.0 / s,
                    s * 1e3
                ),
                Err(e) => writeln!(out, "  {:<22} (could not be timed: {e})", arm.name),
            };
        }
    }
}

/// One arm that `reglab device-check` trains on the CPU and on CUDA from the same seed.
#[derive(Clone, Copy, Debug)]
pub struct DeviceCase {
    /// "preset" (the preset's size) or "large" (a size that fills a GPU).
    pub size: &'static str,
    pub arm: &'static str,
    pub profile: Profile,
}

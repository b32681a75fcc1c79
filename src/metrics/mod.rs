//! Metrics: display metadata for the named time series a run emits, and the estimators that
//! compute them (Hessian trace and top eigenvalue, Gauss-Newton trace).

pub mod classification;
pub mod dead_features;
pub mod distances;
pub mod frechet;
pub mod hessian;
pub mod linalg;
pub mod lowrank;
pub mod picture;
pub mod psnr;
pub mod recovery;
pub mod smoothing;
pub mod special;
pub mod topk;

use serde::Serialize;

/// A named series an experiment emits, with the hints a chart needs.
#[derive(Clone, Debug, Serialize)]
pub struct MetricSpec {
    /// Key in `metrics.jsonl`, e.g. `hessian_trace`.
    pub name: &'static str,
    /// Human label, e.g. "Hessian trace".
    pub label: &'static str,
    /// Unit or short description of the scale ("" when none).
    pub unit: &'static str,
    /// Draw on a log scale by default.
    pub log_scale: bool,
    /// Another metric drawn as a reference line on this one's chart (e.g. `two_over_eta`).
    pub reference: Option<&'static str>,
    /// A metric holding this one's standard error, for error bars.
    pub std_err: Option<&'static str>,
    /// Also chart this metric relative to a baseline arm of the same launch and seed.
    pub relative: Option<Relative>,
    /// What the step means for a metric recorded against something else (e.g. a radius, a
    /// batch size): the x axis's name and how many steps make one of its units.
    pub x_axis: Option<(&'static str, f64)>,
}

/// A derived series: a metric divided by the same metric of the baseline run (the run of the
/// same launch and seed whose parameter `param` equals `value`), at the nearest earlier step.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Relative {
    /// Name of the derived series.
    pub name: &'static str,
    pub label: &'static str,
    pub param: &'static str,
    pub value: &'static str,
}

impl MetricSpec {
    pub const fn new(name: &'static str, label: &'static str) -> MetricSpec {
        MetricSpec {
            name,
            label,
            unit: "",
            log_scale: false,
            reference: None,
            std_err: None,
            relative: None,
            x_axis: None,
        }
    }
    pub const fn log(mut self) -> MetricSpec {
        self.log_scale = true;
        self
    }
    pub const fn unit(mut self, unit: &'static str) -> MetricSpec {
        self.unit = unit;
        self
    }
    pub const fn reference(mut self, other: &'static str) -> MetricSpec {
        self.reference = Some(other);
        self
    }
    pub const fn std_err(mut self, other: &'static str) -> MetricSpec {
        self.std_err = Some(other);
        self
    }
    /// Charts this metric against `name` = step / `steps_per_unit` instead of the step.
    pub const fn x_axis(mut self, name: &'static str, steps_per_unit: f64) -> MetricSpec {
        self.x_axis = Some((name, steps_per_unit));
        self
    }
    /// The x axis's name and the x of a step.
    pub fn x_of(&self, step: f64) -> f64 {
        match self.x_axis {
            Some((_, per)) => step / per,
            None => step,
        }
    }
    pub fn x_name(&self) -> &'static str {
        self.x_axis.map_or("step", |a| a.0)
    }
    pub const fn relative(mut self, r: Relative) -> MetricSpec {
        self.relative = Some(r);
        self
    }

    /// The spec of the derived relative series, if any.
    pub fn relative_spec(&self) -> Option<MetricSpec> {
        self.relative.map(|r| MetricSpec {
            name: r.name,
            label: r.label,
            unit: "ratio",
            log_scale: false,
            reference: None,
            std_err: None,
            relative: None,
            x_axis: self.x_axis,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_metric_recorded_against_another_axis_maps_its_steps() {
        let plain = MetricSpec::new("loss", "loss");
        assert_eq!((plain.x_name(), plain.x_of(250.0)), ("step", 250.0));
        let curve = MetricSpec::new("cert", "certified accuracy").x_axis("radius r", 100.0);
        assert_eq!((curve.x_name(), curve.x_of(25.0)), ("radius r", 0.25));
        let rel = curve
            .relative(Relative {
                name: "cert_rel",
                label: "relative",
                param: "arm",
                value: "base",
            })
            .relative_spec()
            .unwrap();
        assert_eq!(rel.x_name(), "radius r");
    }
}

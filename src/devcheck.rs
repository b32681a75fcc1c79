//! `reglab device-check`: trains each implemented preset on the CPU and on CUDA from the same
//! seed, prints the relative difference of their final metrics, and times both at the preset's
//! size and at a size large enough to fill a GPU. Without a GPU it does the CPU half and says
//! why CUDA was skipped.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use crate::device::{self, DeviceChoice};
use crate::experiments::{self, MemorySink, RunContext};
use crate::params::Override;
use crate::presets;

struct Case {
    preset: &'static str,
    arm: &'static str,
    size: &'static str,
    overrides: &'static [(&'static str, &'static str)],
}

const CASES: &[Case] = &[
    Case {
        preset: "sgd-stability",
        arm: "relu-gd-eta0.1",
        size: "preset",
        overrides: &[("steps", "300"), ("log_every", "100"), ("stop_loss", "0")],
    },
    Case {
        preset: "sgd-stability",
        arm: "relu-gd-eta0.1",
        size: "large",
        overrides: &[
            ("dim", "64"),
            ("width", "2048"),
            ("n_train", "2048"),
            ("n_test", "2048"),
            ("steps", "20"),
            ("log_every", "10"),
            ("probes", "4"),
            ("final_probes", "4"),
            ("lanczos_iters", "4"),
            ("stop_loss", "0"),
            ("eta", "0.01"),
        ],
    },
    Case {
        preset: "vsae",
        arm: "topk",
        size: "preset",
        overrides: &[("steps", "100"), ("log_every", "50")],
    },
    Case {
        preset: "vsae",
        arm: "vsae-kl1",
        size: "preset",
        overrides: &[("steps", "100"), ("log_every", "50")],
    },
    Case {
        preset: "vsae",
        arm: "topk",
        size: "large",
        overrides: &[
            ("dim", "512"),
            ("features", "2048"),
            ("tokens", "8192"),
            ("eval_tokens", "1024"),
            ("latents", "8192"),
            ("batch", "2048"),
            ("k", "32"),
            ("steps", "10"),
            ("log_every", "5"),
        ],
    },
    Case {
        preset: "local-reg-node",
        arm: "digits-local",
        size: "preset",
        overrides: &[("steps", "20"), ("log_every", "10")],
    },
    Case {
        preset: "local-reg-node",
        arm: "digits-local",
        size: "large",
        overrides: &[
            ("state_dim", "64"),
            ("hidden", "1024"),
            ("batch", "1024"),
            ("steps", "5"),
            ("log_every", "5"),
        ],
    },
];

/// Metrics that measure time, not the model: left out of the CPU/CUDA comparison.
const TIMING: &[&str] = &["us_per_prediction", "step_ms"];

fn run_case(
    case: &Case,
    device: DeviceChoice,
) -> Result<(BTreeMap<String, f64>, f64, u64), String> {
    let all = presets::load_all(&[]).map_err(|e| e.to_string())?;
    let preset = all
        .iter()
        .find(|p| p.id == case.preset)
        .ok_or("preset missing")?;
    let arm = preset.arm(case.arm).ok_or("arm missing")?;
    let exp = experiments::find(&preset.experiment).ok_or("experiment missing")?;
    let mut params = arm.params.clone();
    let overrides: Vec<Override> = case
        .overrides
        .iter()
        .map(|(k, v)| Override {
            key: k.to_string(),
            value: v.to_string(),
        })
        .collect();
    params.apply_overrides(&exp.params(), &overrides)?;
    let stop = AtomicBool::new(false);
    let mut sink = MemorySink::default();
    let mut ctx = RunContext::new(&params, 0, None, &mut sink, &stop).on_device(device);
    let t = Instant::now();
    let end = exp.run(&mut ctx).map_err(|e| format!("{e:?}"))?;
    Ok((end.final_values, t.elapsed().as_secs_f64(), end.steps))
}

fn max_rel_diff(a: &BTreeMap<String, f64>, b: &BTreeMap<String, f64>) -> (f64, String) {
    let mut worst = (0.0, String::from("-"));
    for (k, x) in a {
        if TIMING.contains(&k.as_str()) {
            continue;
        }
        if let Some(y) = b.get(k) {
            if x.is_nan() && y.is_nan() {
                continue;
            }
            let d = (x - y).abs() / x.abs().max(y.abs()).max(1e-12);
            if d > worst.0 || d.is_nan() {
                worst = (d, k.clone());
            }
        }
    }
    worst
}

/// The whole check, as printed text.
pub fn report(quick: bool) -> String {
    let mut out = String::new();
    let cuda = device::check_available(DeviceChoice::Cuda);
    if let Err(e) = &cuda {
        let _ = writeln!(out, "cuda: not used ({e})");
    }
    let _ = writeln!(
        out,
        "{:<15} {:<15} {:<7} {:>12} {:>12} {:>8}  max rel. diff (metric)",
        "preset", "arm", "size", "cpu steps/s", "cuda steps/s", "speedup"
    );
    for case in CASES.iter().filter(|c| !quick || c.size == "preset") {
        let cpu = run_case(case, DeviceChoice::Cpu);
        let gpu = cuda
            .as_ref()
            .ok()
            .map(|_| run_case(case, DeviceChoice::Cuda));
        let rate = |r: &Result<(BTreeMap<String, f64>, f64, u64), String>| match r {
            Ok((_, s, steps)) => format!("{:.1}", *steps as f64 / s),
            Err(_) => "failed".into(),
        };
        let (speed, diff) = match (&cpu, &gpu) {
            (Ok((a, sa, _)), Some(Ok((b, sb, _)))) => {
                let (d, k) = max_rel_diff(a, b);
                (format!("{:.2}x", sa / sb), format!("{d:.2e} ({k})"))
            }
            (_, Some(Err(e))) => ("-".into(), format!("cuda failed: {e}")),
            (Err(e), _) => ("-".into(), format!("cpu failed: {e}")),
            _ => ("-".into(), "-".into()),
        };
        let _ = writeln!(
            out,
            "{:<15} {:<15} {:<7} {:>12} {:>12} {:>8}  {}",
            case.preset,
            case.arm,
            case.size,
            rate(&cpu),
            gpu.as_ref().map(rate).unwrap_or_else(|| "-".into()),
            speed,
            diff
        );
    }
    #[cfg(feature = "cuda")]
    kernel_check(&mut out);
    out
}

#[cfg(feature = "cuda")]
fn kernel_check(out: &mut String) {
    use crate::kernels::TopKKernel;
    use crate::metrics::topk::topk_mask;
    use rand::{Rng, SeedableRng};

    let kernel = match TopKKernel::new() {
        Ok(k) => k,
        Err(e) => {
            let _ = writeln!(out, "topk kernel: not run ({e})");
            return;
        }
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let (rows, cols, k) = (2048, 4096, 32);
    let values: Vec<f32> = (0..rows * cols)
        .map(|_| rng.gen_range(0..64) as f32 * 0.5)
        .collect();
    let t = Instant::now();
    let cpu = topk_mask(&values, rows, cols, k);
    let cpu_s = t.elapsed().as_secs_f64();
    let _ = kernel.mask(&values, 4, cols, k); // warm up
    let t = Instant::now();
    let gpu = kernel.mask(&values, rows, cols, k);
    let gpu_s = t.elapsed().as_secs_f64();
    match gpu {
        Ok(g) => {
            let mismatches = g.iter().zip(&cpu).filter(|(a, b)| a != b).count();
            let _ = writeln!(
                out,
                "topk kernel {rows}x{cols}, k={k}: {mismatches} mismatches against the CPU twin; \
                 cpu {:.1} ms, gpu {:.1} ms (with copies)",
                cpu_s * 1e3,
                gpu_s * 1e3
            );
        }
        Err(e) => {
            let _ = writeln!(out, "topk kernel: failed ({e})");
        }
    }
}

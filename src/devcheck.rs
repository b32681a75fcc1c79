//! `reglab device-check`: trains each implemented preset on the CPU and on CUDA from the same
//! seed, prints the relative difference of their final metrics, and times both at the preset's
//! size and at a size large enough to fill a GPU. Without a GPU it does the CPU half and says
//! why CUDA was skipped.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

use crate::device::{self, DeviceChoice};
use crate::experiments;
use crate::experiments::profile::DeviceCase;

/// Values that measure the machine, not the model: left out of the CPU/CUDA comparison.
const TIMING: &[&str] = &["us_per_prediction", "step_ms", "wall_s", "bytes_per_step"];

fn run_case(
    case: &DeviceCase,
    device: DeviceChoice,
) -> Result<(BTreeMap<String, f64>, f64, u64), String> {
    let (end, secs) = case.profile.run_arm(case.arm, 0, &[], device)?;
    Ok((end.final_values, secs, end.steps))
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
        "{:<15} {:<15} {:<7} {:>12} {:>12} {:>8} {:>12}  max rel. diff (metric)",
        "preset", "arm", "size", "cpu steps/s", "cuda steps/s", "speedup", "bytes/step"
    );
    let cases: Vec<DeviceCase> = experiments::all()
        .iter()
        .flat_map(|e| e.device_cases())
        .filter(|c| !quick || c.size == "preset")
        .collect();
    for case in &cases {
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
        // Host <-> device bytes per training step (counted where the code copies).
        let bytes = match &cpu {
            Ok((v, _, _)) => v
                .get("bytes_per_step")
                .map(|b| format!("{b:.0}"))
                .unwrap_or_else(|| "-".into()),
            Err(_) => "-".into(),
        };
        let _ = writeln!(
            out,
            "{:<15} {:<15} {:<7} {:>12} {:>12} {:>8} {:>12}  {}",
            case.profile.preset,
            case.arm,
            case.size,
            rate(&cpu),
            gpu.as_ref().map(rate).unwrap_or_else(|| "-".into()),
            speed,
            bytes,
            diff
        );
    }
    topk_check(&mut out, DeviceChoice::Cpu);
    if cuda.is_ok() {
        topk_check(&mut out, DeviceChoice::Cuda);
    }
    out
}

/// The vsae TopK mask built from dfdx ops on `device` against its host twin, on tie-heavy
/// values.
fn topk_check(out: &mut String, device: DeviceChoice) {
    let r: Result<(usize, usize, f64), String> = match device {
        DeviceChoice::Cpu => Ok(topk_mismatches(&dfdx::prelude::Cpu::default(), 256)),
        DeviceChoice::Cuda => {
            #[cfg(feature = "cuda")]
            {
                device::cuda::shared().map(|dev| topk_mismatches(&dev, 2048))
            }
            #[cfg(not(feature = "cuda"))]
            {
                Err(device::BUILD_HINT.to_string())
            }
        }
    };
    match r {
        Ok((rows, mismatches, secs)) => {
            let _ = writeln!(
                out,
                "topk on {device} (dfdx ops, {rows}x4096, k=32): {mismatches} mismatches against \
                 the host twin, {:.1} ms",
                secs * 1e3
            );
        }
        Err(e) => {
            let _ = writeln!(out, "topk on {device}: not run ({e})");
        }
    }
}

fn topk_mismatches<D: dfdx::prelude::Device<f32>>(dev: &D, rows: usize) -> (usize, usize, f64) {
    use crate::metrics::topk::{topk_mask, topk_mask_ops};
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let (cols, k) = (4096, 32);
    let values: Vec<f32> = (0..rows * cols)
        .map(|_| rng.gen_range(0..64) as f32 * 0.5)
        .collect();
    let host = topk_mask(&values, rows, cols, k);
    let x = dev.tensor_from_vec(values, (rows, cols));
    let t = Instant::now();
    let ops = topk_mask_ops(&x, k).as_vec();
    let secs = t.elapsed().as_secs_f64();
    (
        rows,
        ops.iter().zip(&host).filter(|(a, b)| a != b).count(),
        secs,
    )
}

//! Where a run trains: the CPU (always) or an NVIDIA GPU through dfdx's Cuda device (binaries
//! built with the `cuda` feature). Experiments are generic over the dfdx device; this module
//! picks it and turns "no GPU" into a clear error instead of a panic.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    #[default]
    Cpu,
    Cuda,
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeviceChoice::Cpu => "cpu",
            DeviceChoice::Cuda => "cuda",
        })
    }
}

impl FromStr for DeviceChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" | "gpu" => Ok(DeviceChoice::Cuda),
            other => Err(format!("--device {other}: expected cpu or cuda")),
        }
    }
}

/// How to get a binary that can train on the GPU.
pub const BUILD_HINT: &str = "this reglab was built without CUDA; on a machine with the CUDA \
    libraries run scripts/build-cuda.sh (or cargo build --release --features cuda)";

/// Checks that the chosen device can be used here, before any run starts. The error is one line.
pub fn check_available(choice: DeviceChoice) -> Result<(), String> {
    match choice {
        DeviceChoice::Cpu => Ok(()),
        DeviceChoice::Cuda => cuda::probe(),
    }
}

#[cfg(feature = "cuda")]
pub mod cuda {
    use std::sync::OnceLock;

    use dfdx::prelude::Cuda;

    /// This thread's CUDA device on GPU 0, built on first use and reused by every later run on
    /// the thread. dfdx's `Cuda` is neither `Send` nor `Sync` (it owns CUDA streams), so one
    /// handle per process cannot be shared across the engine's worker threads; every handle
    /// retains the same primary context, and a pool of `--jobs` workers holds at most that many.
    /// Experiments draw their random numbers on the host from their own seeds, so which handle
    /// a run gets changes no result.
    pub fn shared() -> Result<Cuda, String> {
        thread_local! {
            static DEVICE: std::cell::RefCell<Option<Cuda>> = const { std::cell::RefCell::new(None) };
        }
        driver_ready()?;
        DEVICE.with(|d| {
            let mut d = d.borrow_mut();
            if d.is_none() {
                *d = Some(Cuda::try_build(0, 0).map_err(|e| format!("no CUDA device: {e:?}"))?);
            }
            Ok(d.as_ref().expect("built").clone())
        })
    }

    /// Asks the driver once per process, without cudarc's unwraps (cudarc 0.9 panics when
    /// `cuInit` fails): with a driver that answers and a GPU present, building a device does
    /// not panic, so no panic hook is swapped (that would race with the workbench's
    /// terminal-restoring hook).
    fn driver_ready() -> Result<(), String> {
        static READY: OnceLock<Result<(), String>> = OnceLock::new();
        READY
            .get_or_init(|| {
                use cudarc::driver::result;
                result::init().map_err(|e| format!("no CUDA device: cuInit returned {:?}", e.0))?;
                let count = result::device::get_count()
                    .map_err(|e| format!("no CUDA device: cuDeviceGetCount returned {:?}", e.0))?;
                if count < 1 {
                    return Err("no CUDA device: the driver sees no GPU".into());
                }
                Ok(())
            })
            .clone()
    }

    pub fn probe() -> Result<(), String> {
        shared().map(|_| ())
    }
}

#[cfg(not(feature = "cuda"))]
pub mod cuda {
    pub fn probe() -> Result<(), String> {
        Err(super::BUILD_HINT.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_checks() {
        assert_eq!("cpu".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cpu);
        assert_eq!("cuda".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cuda);
        assert!("tpu".parse::<DeviceChoice>().is_err());
        assert!(check_available(DeviceChoice::Cpu).is_ok());
        #[cfg(not(feature = "cuda"))]
        assert!(check_available(DeviceChoice::Cuda)
            .unwrap_err()
            .contains("built without CUDA"));
    }
}

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
    use dfdx::prelude::Cuda;

    /// Builds dfdx's Cuda device on GPU 0. cudarc 0.9 panics (instead of returning an error)
    /// when the driver cannot initialize; that panic is caught and reported as an error.
    pub fn build(seed: u64) -> Result<Cuda, String> {
        // Ask the driver first, without cudarc's unwraps.
        use cudarc::driver::result;
        result::init().map_err(|e| format!("no CUDA device: cuInit returned {:?}", e.0))?;
        let count = result::device::get_count()
            .map_err(|e| format!("no CUDA device: cuDeviceGetCount returned {:?}", e.0))?;
        if count < 1 {
            return Err("no CUDA device: the driver sees no GPU".into());
        }
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let result = std::panic::catch_unwind(|| Cuda::try_build(0, seed));
        std::panic::set_hook(previous);
        match result {
            Ok(Ok(dev)) => Ok(dev),
            Ok(Err(e)) => Err(format!("no CUDA device: {e:?}")),
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "the CUDA driver did not initialize".into());
                Err(format!(
                    "no CUDA device: {}",
                    msg.lines().next().unwrap_or("")
                ))
            }
        }
    }

    pub fn probe() -> Result<(), String> {
        build(0).map(|_| ())
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

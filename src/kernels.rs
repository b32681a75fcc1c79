//! Our own CUDA kernels (kernels/*.cu, compiled to PTX by build.rs), launched through cudarc.
//! dfdx keeps its tensors' device buffers private, so these work on their own cudarc buffers
//! (host copies in, host copies out). Each has a CPU twin that the tests compare it with.

use std::sync::Arc;

use cudarc::driver::{CudaDevice, LaunchAsync, LaunchConfig};
use cudarc::nvrtc::Ptx;

const TOPK_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/topk.ptx"));

/// The TopK-mask kernel on GPU 0.
pub struct TopKKernel {
    dev: Arc<CudaDevice>,
}

impl TopKKernel {
    /// Loads the kernel (retaining the primary context dfdx also uses). One-line errors.
    pub fn new() -> Result<TopKKernel, String> {
        if TOPK_PTX.trim().is_empty() {
            return Err("this binary was type-checked only (cuda-ci-check): no PTX inside".into());
        }
        crate::device::cuda::probe()?;
        let dev = std::panic::catch_unwind(|| CudaDevice::new(0))
            .map_err(|_| "no CUDA device: the CUDA driver did not initialize".to_string())?
            .map_err(|e| format!("no CUDA device: {e:?}"))?;
        dev.load_ptx(Ptx::from_src(TOPK_PTX), "reglab_topk", &["topk_mask_f32"])
            .map_err(|e| format!("loading topk PTX: {e:?}"))?;
        Ok(TopKKernel { dev })
    }

    /// The GPU twin of [`crate::metrics::topk::topk_mask`].
    pub fn mask(
        &self,
        values: &[f32],
        rows: usize,
        cols: usize,
        k: usize,
    ) -> Result<Vec<f32>, String> {
        assert_eq!(values.len(), rows * cols, "values are rows x cols");
        let f = self
            .dev
            .get_func("reglab_topk", "topk_mask_f32")
            .ok_or("topk_mask_f32 not loaded")?;
        let input = self
            .dev
            .htod_copy(values.to_vec())
            .map_err(|e| format!("{e:?}"))?;
        let mut out = self
            .dev
            .alloc_zeros::<f32>(rows * cols)
            .map_err(|e| format!("{e:?}"))?;
        let cfg = LaunchConfig {
            grid_dim: (rows as u32, 1, 1),
            block_dim: (cols.clamp(1, 256) as u32, 1, 1),
            shared_mem_bytes: 0,
        };
        unsafe { f.launch(cfg, (&input, &mut out, rows as i32, cols as i32, k as i32)) }
            .map_err(|e| format!("launching topk: {e:?}"))?;
        self.dev.dtoh_sync_copy(&out).map_err(|e| format!("{e:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::topk::topk_mask;
    use rand::{Rng, SeedableRng};

    #[test]
    fn topk_kernel_matches_its_cpu_twin() {
        let kernel = match TopKKernel::new() {
            Ok(k) => k,
            Err(e) => {
                eprintln!("skipping the GPU comparison: {e}");
                return;
            }
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        for (rows, cols, k) in [
            (1, 1, 1),
            (7, 13, 3),
            (64, 192, 8),
            (5, 1000, 32),
            (3, 10, 12),
        ] {
            // Few distinct values, so ties are common; a NaN now and then.
            let values: Vec<f32> = (0..rows * cols)
                .map(|_| {
                    if rng.gen_ratio(1, 50) {
                        f32::NAN
                    } else {
                        rng.gen_range(0..6) as f32 - 2.0
                    }
                })
                .collect();
            let gpu = kernel.mask(&values, rows, cols, k).unwrap();
            let cpu = topk_mask(&values, rows, cols, k);
            assert_eq!(gpu, cpu, "rows {rows} cols {cols} k {k}");
        }
    }
}

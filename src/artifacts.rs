//! Run artifacts that other tools can reload: tensors in the safetensors format (through the
//! `safetensors` crate; every tensor stored as F64, which holds f32 values exactly) and a
//! `MODEL.txt` that gives the model's formula and the tensor names, so any number a run reports
//! can be recomputed outside reglab (`safetensors.numpy.load_file`, PyTorch, ...).

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

/// A named f64 tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

impl NamedTensor {
    pub fn new(name: &str, shape: &[usize], data: Vec<f64>) -> NamedTensor {
        assert_eq!(
            shape.iter().product::<usize>(),
            data.len(),
            "tensor `{name}`: shape and data length differ"
        );
        NamedTensor {
            name: name.to_string(),
            shape: shape.to_vec(),
            data,
        }
    }

    /// From f32 values (stored exactly as F64).
    pub fn from_f32(name: &str, shape: &[usize], data: &[f32]) -> NamedTensor {
        NamedTensor::new(name, shape, data.iter().map(|v| *v as f64).collect())
    }
}

/// Every parameter of a store, by name, as F64 tensors.
pub fn store_tensors<E: dfdx::prelude::Dtype, D: dfdx::prelude::Device<E>>(
    store: &crate::nn::ParamStore<E, D>,
) -> Vec<NamedTensor> {
    store
        .named_values()
        .into_iter()
        .map(|(name, shape, v)| NamedTensor::new(&name, &shape, v))
        .collect()
}

/// Writes `tensors` to `path` (through a temporary file, so a reader never sees half a file).
pub fn write(path: &Path, tensors: &[NamedTensor]) -> std::io::Result<()> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|t| t.data.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .zip(&bytes)
        .map(|(t, b)| {
            let view = TensorView::new(Dtype::F64, t.shape.clone(), b)
                .map_err(|e| std::io::Error::other(format!("tensor `{}`: {e:?}", t.name)))?;
            Ok((t.name.clone(), view))
        })
        .collect::<std::io::Result<_>>()?;
    let tmp = path.with_extension("safetensors.tmp");
    safetensors::serialize_to_file(views, &None, &tmp)
        .map_err(|e| std::io::Error::other(format!("{}: {e:?}", path.display())))?;
    std::fs::rename(tmp, path)
}

/// Reads every tensor of a safetensors file (F64 or F32), by name. A malformed file is an
/// error naming the file, never a panic.
pub fn read(path: &Path) -> Result<BTreeMap<String, NamedTensor>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let bad = |m: String| format!("{}: not a readable safetensors file: {m}", path.display());
    let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(format!("{e:?}")))?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let data: Vec<f64> = match view.dtype() {
            Dtype::F64 => view
                .data()
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect(),
            Dtype::F32 => view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")) as f64)
                .collect(),
            other => return Err(bad(format!("tensor `{name}` has dtype {other:?}"))),
        };
        out.insert(name.clone(), NamedTensor::new(&name, view.shape(), data));
    }
    Ok(out)
}

/// The files every run leaves: `params.safetensors` (final parameters), `data.safetensors`
/// (the evaluation data) and `MODEL.txt` (formula, tensor names, how to recompute).
pub fn write_run(
    dir: &Path,
    params: &[NamedTensor],
    data: &[NamedTensor],
    model_text: &str,
) -> std::io::Result<()> {
    write(&dir.join("params.safetensors"), params)?;
    write(&dir.join("data.safetensors"), data)?;
    let names = |ts: &[NamedTensor]| {
        ts.iter()
            .map(|t| format!("{} {:?}", t.name, t.shape))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let text = format!(
        "{}\nfiles (all F64, row-major):\n  params.safetensors: {}\n  data.safetensors: {}\n",
        model_text.trim_end(),
        names(params),
        names(data)
    );
    std::fs::write(dir.join("MODEL.txt"), text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_malformed_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.safetensors");
        let a = NamedTensor::new("W", &[2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, -6.5]);
        let b = NamedTensor::new("a", &[2], vec![0.25, f64::MAX]);
        write(&p, &[a.clone(), b.clone()]).unwrap();
        let back = read(&p).unwrap();
        assert_eq!(back["W"], a);
        assert_eq!(back["a"], b);
        // Truncated and garbage files are errors, not panics.
        let bytes = std::fs::read(&p).unwrap();
        for cut in [0, 4, 8, 20, bytes.len() - 3] {
            std::fs::write(&p, &bytes[..cut]).unwrap();
            assert!(read(&p).is_err(), "cut at {cut}");
        }
        let mut huge = bytes.clone();
        huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        std::fs::write(&p, &huge).unwrap();
        assert!(read(&p)
            .unwrap_err()
            .contains("not a readable safetensors file"));
    }
}

//! A small writer and reader for the safetensors format (F64 tensors only), so that every run's
//! parameters and data can be loaded by other tools (`safetensors.numpy.load_file`, PyTorch, ...).
//!
//! Layout: 8-byte little-endian header length N, N bytes of JSON header
//! `{"name": {"dtype": "F64", "shape": [...], "data_offsets": [begin, end]}, ...}`, then the raw
//! little-endian data.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde_json::{json, Map, Value};

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
}

/// Writes `tensors` to `path` (through a temporary file, so a reader never sees half a file).
pub fn write(path: &Path, tensors: &[NamedTensor]) -> std::io::Result<()> {
    let mut header = Map::new();
    let mut offset = 0usize;
    for t in tensors {
        let end = offset + t.data.len() * 8;
        header.insert(
            t.name.clone(),
            json!({"dtype": "F64", "shape": t.shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    let mut head = serde_json::to_vec(&Value::Object(header))?;
    // Pad the header with spaces to a multiple of 8 bytes, as the format recommends.
    while head.len() % 8 != 0 {
        head.push(b' ');
    }
    let mut bytes = Vec::with_capacity(8 + head.len() + offset);
    bytes.extend_from_slice(&(head.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&head);
    for t in tensors {
        for x in &t.data {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
    }
    let tmp = path.with_extension("safetensors.tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(tmp, path)
}

/// Reads every tensor of a file written by [`write`] (F64 only), by name.
pub fn read(path: &Path) -> Result<BTreeMap<String, NamedTensor>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let bad = |m: &str| format!("{}: not a safetensors file: {m}", path.display());
    if bytes.len() < 8 {
        return Err(bad("too short"));
    }
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let head = bytes
        .get(8..8 + n)
        .ok_or_else(|| bad("header past the end"))?;
    let header: Map<String, Value> =
        serde_json::from_slice(head).map_err(|e| bad(&e.to_string()))?;
    let data = &bytes[8 + n..];
    let mut out = BTreeMap::new();
    for (name, info) in header {
        if name == "__metadata__" {
            continue;
        }
        if info["dtype"] != "F64" {
            return Err(bad(&format!("tensor `{name}` is not F64")));
        }
        let shape: Vec<usize> =
            serde_json::from_value(info["shape"].clone()).map_err(|e| bad(&e.to_string()))?;
        let offs: [usize; 2] = serde_json::from_value(info["data_offsets"].clone())
            .map_err(|e| bad(&e.to_string()))?;
        let raw = data
            .get(offs[0]..offs[1])
            .ok_or_else(|| bad("data offsets past the end"))?;
        let values = raw
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        out.insert(name.clone(), NamedTensor::new(&name, &shape, values));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let dir = std::env::temp_dir().join(format!("reglab-st-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("t.safetensors");
        let a = NamedTensor::new("W", &[2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, -6.5]);
        let b = NamedTensor::new("a", &[2], vec![0.25, f64::MAX]);
        write(&p, &[a.clone(), b.clone()]).unwrap();
        let back = read(&p).unwrap();
        assert_eq!(back["W"], a);
        assert_eq!(back["a"], b);
        let bytes = std::fs::read(&p).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap());
        assert_eq!(n % 8, 0);
        std::fs::remove_dir_all(dir).unwrap();
    }
}

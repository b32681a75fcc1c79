//! Counted copies between the host and a run's device. Experiments and the substrate copy
//! through [`Upload::upload`] and [`Download::download`] instead of dfdx's `tensor_from_vec` and
//! `as_vec`, so the bytes that cross (over PCIe on a GPU) are counted per thread; the run driver
//! reports them per training step (`bytes_per_step`) and `reglab device-check` prints them.
//! On the CPU nothing really crosses; the count is what a GPU run would move.

use std::cell::Cell;

use dfdx::prelude::*;

thread_local! {
    static BYTES: Cell<u64> = const { Cell::new(0) };
}

/// Bytes copied between host and device on this thread so far.
pub fn bytes() -> u64 {
    BYTES.with(|b| b.get())
}

fn add<E>(n: usize) {
    BYTES.with(|b| b.set(b.get() + (n * std::mem::size_of::<E>()) as u64));
}

/// A counted host-to-device copy.
pub trait Upload<E>: TensorFromVec<E> {
    fn upload<S: Shape>(&self, values: Vec<E>, shape: S) -> Tensor<S, E, Self> {
        add::<E>(values.len());
        self.tensor_from_vec(values, shape)
    }
}

impl<E, D: TensorFromVec<E>> Upload<E> for D {}

/// A counted device-to-host copy.
pub trait Download<E> {
    fn download(&self) -> Vec<E>;
}

impl<S: Shape, E, D: Storage<E>, T> Download<E> for Tensor<S, E, D, T> {
    fn download(&self) -> Vec<E> {
        let v = self.as_vec();
        add::<E>(v.len());
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_are_counted_in_bytes() {
        let dev = Cpu::default();
        let before = bytes();
        let t = dev.upload(vec![1.0f32; 10], (10,));
        assert_eq!(bytes() - before, 40);
        let _ = (t.clone() * 2.0).sum::<Rank0, _>().download();
        assert_eq!(bytes() - before, 44);
        let _ = dev.upload(vec![0.0f64; 3], (3,)).download();
        assert_eq!(bytes() - before, 44 + 48);
    }
}

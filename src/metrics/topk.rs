//! TopK activation: keep each row's entries that are at least its k-th largest value, zero the
//! rest. Ties are broken by value: every entry equal to the k-th largest is kept (so a row with
//! ties at the threshold keeps more than k), which is what a per-row threshold computes and is
//! the same on every device. NaN is never kept.
//!
//! The selection is a constant 0/1 mask applied in the graph as a product, so the gradient flows
//! only through kept entries. [`topk_mask_on`] builds the mask from dfdx ops on the tensor's own
//! device (per-row maxima, comparisons, counts: nothing crosses to the host); on the CPU the host
//! twin [`topk_mask`] computes the same mask faster and the tests compare the two.

use std::any::TypeId;

use dfdx::prelude::*;

/// The k-th largest value of `row` (ignoring NaN); +inf when k is 0 or the row is all NaN.
/// `scratch` is reused between calls.
fn kth_largest(row: &[f32], k: usize, scratch: &mut Vec<f32>) -> f32 {
    scratch.clear();
    scratch.extend(row.iter().copied().filter(|x| !x.is_nan()));
    if k == 0 || scratch.is_empty() {
        return f32::INFINITY;
    }
    let k = k.min(scratch.len());
    scratch.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
    scratch[k - 1]
}

/// A row-major 0/1 mask of shape `rows x cols` marking each row's entries `>=` its k-th
/// largest value (host twin of [`topk_mask_on`]); with `positive`, only those also above 0.
fn host_mask(values: &[f32], rows: usize, cols: usize, k: usize, positive: bool) -> Vec<f32> {
    let mut mask = vec![0.0; rows * cols];
    let mut scratch = Vec::with_capacity(cols);
    for r in 0..rows {
        let row = &values[r * cols..(r + 1) * cols];
        let t = kth_largest(row, k, &mut scratch);
        for (m, x) in mask[r * cols..(r + 1) * cols].iter_mut().zip(row) {
            if *x >= t && (!positive || *x > 0.0) {
                *m = 1.0;
            }
        }
    }
    mask
}

/// A row-major 0/1 mask of shape `rows x cols` marking each row's entries `>=` its k-th
/// largest value (host twin of [`topk_mask_on`]).
pub fn topk_mask(values: &[f32], rows: usize, cols: usize, k: usize) -> Vec<f32> {
    host_mask(values, rows, cols, k, false)
}

/// The TopK mask of `x` built from dfdx ops on its device: k rounds of a per-row maximum over
/// the entries not yet taken, with a count of how many entries are at least each maximum; the
/// threshold is the first maximum whose count reaches k.
pub fn topk_mask_ops<D: Device<f32>>(
    x: &Tensor<(usize, usize), f32, D>,
    k: usize,
) -> Tensor<(usize, usize), f32, D> {
    let (rows, cols) = *x.shape();
    let dev = x.device().clone();
    let ones = dev.ones_like(&(rows, cols));
    let zeros = dev.zeros_like(&(rows, cols));
    if k == 0 {
        return zeros;
    }
    let neg_inf = dev.zeros_like(&(rows, cols)) + f32::NEG_INFINITY;
    // NaN never wins: replace it by -inf before searching.
    let clean = x.clone().nans_to(f32::NEG_INFINITY);
    let mut work = clean.clone();
    let mut threshold: Option<Tensor<(usize,), f32, D>> = None;
    let mut count_before: Tensor<(usize,), f32, D> = dev.zeros_like(&(rows,));
    for _ in 0..k.min(cols) {
        let t = work.clone().max::<(usize,), Axis<1>>();
        let at_least = clean.ge(&t.clone().broadcast_like::<_, Axis<1>>(&(rows, cols)));
        let count = at_least
            .clone()
            .choose(ones.clone(), zeros.clone())
            .sum::<(usize,), Axis<1>>();
        threshold = Some(match threshold {
            None => t,
            // Rows that already had k entries keep their threshold.
            Some(old) => count_before.clone().lt(k as f32).choose(t, old),
        });
        count_before = count;
        work = at_least.choose(neg_inf.clone(), work);
    }
    let t = threshold
        .expect("k >= 1")
        .broadcast_like::<_, Axis<1>>(&(rows, cols));
    // x >= -inf would keep the rows' -inf entries when k exceeds the finite ones; exclude NaN.
    x.ge(&t).choose(ones, zeros)
}

/// The TopK mask of `x` on its device: the host twin on the CPU (same result, faster), dfdx ops
/// elsewhere.
pub fn topk_mask_on<D: Device<f32>>(
    x: &Tensor<(usize, usize), f32, D>,
    k: usize,
) -> Tensor<(usize, usize), f32, D> {
    if TypeId::of::<D>() == TypeId::of::<Cpu>() {
        let (rows, cols) = *x.shape();
        let mask = topk_mask(&x.as_vec(), rows, cols, k);
        x.device().tensor_from_vec(mask, (rows, cols))
    } else {
        topk_mask_ops(x, k)
    }
}

/// TopK of a `(rows, cols)` tensor on the tape: `x * mask(x)`.
pub fn topk<D: Device<f32>, T: Tape<f32, D> + Merge<NoneTape>>(
    x: Tensor<(usize, usize), f32, D, T>,
    k: usize,
) -> Tensor<(usize, usize), f32, D, T> {
    let (values, tape) = x.split_tape();
    let mask = topk_mask_on(&values, k);
    values.put_tape(tape) * mask
}

/// TopK by magnitude with signs kept: `x * mask(|x|)` (the vSAE's selection).
pub fn topk_abs<D: Device<f32>, T: Tape<f32, D> + Merge<NoneTape>>(
    x: Tensor<(usize, usize), f32, D, T>,
    k: usize,
) -> Tensor<(usize, usize), f32, D, T> {
    let (values, tape) = x.split_tape();
    let mask = topk_mask_on(&values.clone().abs(), k);
    values.put_tape(tape) * mask
}

/// `relu(topk(x))` in one product: the mask keeps the TopK entries that are also above 0. The
/// values and the gradient are those of `topk(x, k).relu()` (relu's gradient at 0 is 0, and an
/// entry at 0 is dropped by both).
pub fn topk_relu<D: Device<f32>, T: Tape<f32, D> + Merge<NoneTape>>(
    x: Tensor<(usize, usize), f32, D, T>,
    k: usize,
) -> Tensor<(usize, usize), f32, D, T> {
    let (values, tape) = x.split_tape();
    let mask = if TypeId::of::<D>() == TypeId::of::<Cpu>() {
        let (rows, cols) = *values.shape();
        let mask = host_mask(&values.as_vec(), rows, cols, k, true);
        values.device().tensor_from_vec(mask, (rows, cols))
    } else {
        let dev = values.device().clone();
        let (rows, cols) = *values.shape();
        let top = topk_mask_ops(&values, k);
        values.gt(0.0).choose(top, dev.zeros_like(&(rows, cols)))
    };
    values.put_tape(tape) * mask
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Brute force: the entries that fewer than k others strictly beat... by value: an entry is
    /// kept when at most k-1 distinct-position entries are strictly larger than the k-th value.
    fn reference(row: &[f32], k: usize) -> Vec<bool> {
        let mut sorted: Vec<f32> = row.to_vec();
        sorted.sort_by(|a, b| b.total_cmp(a));
        let t = if k == 0 {
            f32::INFINITY
        } else {
            sorted[k.min(row.len()) - 1]
        };
        row.iter().map(|x| *x >= t).collect()
    }

    #[test]
    fn host_twin_and_device_ops_match_brute_force_with_ties() {
        let dev = Cpu::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for trial in 0..300 {
            let cols = 1 + trial % 17;
            let rows = 1 + trial % 4;
            let k = trial % (cols + 2);
            // Few distinct values: many ties.
            let vals: Vec<f32> = (0..rows * cols)
                .map(|_| rng.gen_range(0..4) as f32 - 1.0)
                .collect();
            let host = topk_mask(&vals, rows, cols, k);
            let ops = topk_mask_ops(&dev.tensor_from_vec(vals.clone(), (rows, cols)), k).as_vec();
            assert_eq!(host, ops, "rows {rows} cols {cols} k {k}: {vals:?}");
            for r in 0..rows {
                let want = reference(&vals[r * cols..(r + 1) * cols], k);
                for j in 0..cols {
                    assert_eq!(host[r * cols + j] == 1.0, want[j], "{vals:?} k {k}");
                }
                // Without ties exactly min(k, cols) are kept; with ties at least that.
                let kept = host[r * cols..(r + 1) * cols]
                    .iter()
                    .filter(|v| **v == 1.0)
                    .count();
                assert!(kept >= k.min(cols));
            }
        }
        // Distinct values: exactly k kept; NaN never kept; -inf entries only when k exceeds
        // the finite ones.
        let row = vec![0.3f32, f32::NAN, -2.0, 5.0, f32::NEG_INFINITY, 1.0];
        let t = dev.tensor_from_vec(row.clone(), (1usize, 6usize));
        assert_eq!(topk_mask(&row, 1, 6, 2), vec![0.0, 0.0, 0.0, 1.0, 0.0, 1.0]);
        assert_eq!(
            topk_mask_ops(&t, 2).as_vec(),
            vec![0.0, 0.0, 0.0, 1.0, 0.0, 1.0]
        );
        assert_eq!(topk_mask(&row, 1, 6, 6), topk_mask_ops(&t, 6).as_vec());
    }

    #[test]
    fn fused_topk_relu_equals_topk_then_relu() {
        let dev = Cpu::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        for k in [0, 1, 3, 9] {
            // Ties and zeros included.
            let vals: Vec<f32> = (0..6 * 9)
                .map(|_| rng.gen_range(-3..4) as f32 * 0.5)
                .collect();
            let x = dev.tensor_from_vec(vals, (6usize, 9usize));
            let w = dev.tensor_from_vec((0..54).map(|i| i as f32).collect(), (6usize, 9usize));
            let a = topk(x.leaky_trace(), k).relu();
            let b = topk_relu(x.leaky_trace(), k);
            assert_eq!(a.as_vec(), b.as_vec(), "k {k}");
            let ga = (a * w.clone())
                .sum::<Rank0, _>()
                .backward()
                .get(&x)
                .as_vec();
            let gb = (b * w.clone())
                .sum::<Rank0, _>()
                .backward()
                .get(&x)
                .as_vec();
            assert_eq!(ga, gb, "k {k}");
            // The device-op mask agrees with the host twin.
            let (values, _) = topk_relu(x.leaky_trace(), k).split_tape();
            let top = topk_mask_ops(&x, k);
            let ops = x.gt(0.0).choose(top, dev.zeros_like(&(6usize, 9usize)));
            assert_eq!((x.clone() * ops).as_vec(), values.as_vec());
        }
    }

    #[test]
    fn gradient_flows_only_through_kept_entries() {
        let dev = Cpu::default();
        let x = dev.tensor_from_vec(vec![3.0f32, -1.0, 2.0, 2.5, 0.5, 4.0], (2usize, 3usize));
        let w = dev.tensor_from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], (2usize, 3usize));
        let y = topk(x.leaky_trace(), 2);
        assert_eq!(y.as_vec(), vec![3.0, 0.0, 2.0, 2.5, 0.0, 4.0]);
        let loss = (y * w.clone()).sum::<Rank0, _>();
        let g = loss.backward().get(&x).as_vec();
        assert_eq!(g, vec![1.0, 0.0, 3.0, 4.0, 0.0, 6.0]);
    }
}

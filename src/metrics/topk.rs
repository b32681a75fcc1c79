//! TopK activation: keep the k largest entries of each row, zero the rest. dfdx has no topk, so
//! the selection is computed here and applied in the graph as a product with a constant 0/1 mask:
//! the forward pass keeps the k largest entries and the gradient flows only through them.
//! Ties are broken towards the lower index, so the result is deterministic.

use dfdx::prelude::*;

/// Indices of the `k` largest entries of `row` (ties: lower index first), in decreasing order.
pub fn topk_indices(row: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    let k = k.min(row.len());
    // Larger value first; on equal values the lower index wins. NaN sorts last.
    let cmp = |a: &usize, b: &usize| {
        let (x, y) = (row[*a], row[*b]);
        match (x.is_nan(), y.is_nan()) {
            (true, false) => std::cmp::Ordering::Greater,
            (false, true) => std::cmp::Ordering::Less,
            _ => y
                .partial_cmp(&x)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(a.cmp(b)),
        }
    };
    if k < idx.len() && k > 0 {
        idx.select_nth_unstable_by(k - 1, cmp);
    }
    idx.truncate(k);
    idx.sort_by(cmp);
    idx
}

/// A row-major 0/1 mask of shape `rows x cols` marking each row's top `k` entries.
pub fn topk_mask(values: &[f32], rows: usize, cols: usize, k: usize) -> Vec<f32> {
    let mut mask = vec![0.0; rows * cols];
    for r in 0..rows {
        for j in topk_indices(&values[r * cols..(r + 1) * cols], k) {
            mask[r * cols + j] = 1.0;
        }
    }
    mask
}

/// TopK of a `(rows, cols)` tensor on the tape: `x * mask(x)`.
pub fn topk<D: Device<f32>, T: Tape<f32, D> + Merge<NoneTape>>(
    x: Tensor<(usize, usize), f32, D, T>,
    k: usize,
) -> Tensor<(usize, usize), f32, D, T> {
    let (rows, cols) = *x.shape();
    let mask = topk_mask(&x.as_vec(), rows, cols, k);
    let dev = x.device().clone();
    x * dev.tensor_from_vec(mask, (rows, cols))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Brute force: the entries whose value is beaten by fewer than k others (counting equal
    /// values at lower indices as beating).
    fn reference(row: &[f32], k: usize) -> Vec<bool> {
        (0..row.len())
            .map(|i| {
                let beaten = (0..row.len())
                    .filter(|&j| row[j] > row[i] || (row[j] == row[i] && j < i))
                    .count();
                beaten < k
            })
            .collect()
    }

    #[test]
    fn forward_matches_brute_force_with_ties() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for trial in 0..200 {
            let cols = 1 + trial % 17;
            let k = trial % (cols + 2);
            // Few distinct values: many ties.
            let row: Vec<f32> = (0..cols)
                .map(|_| rng.gen_range(0..4) as f32 - 1.0)
                .collect();
            let m = topk_mask(&row, 1, cols, k);
            let want = reference(&row, k);
            for j in 0..cols {
                assert_eq!(m[j] == 1.0, want[j], "row {row:?} k {k}");
            }
            assert_eq!(m.iter().filter(|v| **v == 1.0).count(), k.min(cols));
        }
    }

    #[test]
    fn gradient_flows_only_through_kept_entries() {
        let dev = Cpu::default();
        let x = dev.tensor_from_vec(vec![3.0f32, -1.0, 2.0, 2.0, 0.5, 4.0], (2usize, 3usize));
        let w = dev.tensor_from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], (2usize, 3usize));
        let y = topk(x.leaky_trace(), 2);
        assert_eq!(y.as_vec(), vec![3.0, 0.0, 2.0, 2.0, 0.0, 4.0]);
        let loss = (y * w.clone()).sum::<Rank0, _>();
        let g = loss.backward().get(&x).as_vec();
        // d/dx sum(w * topk(x)) = w on kept entries, 0 elsewhere.
        assert_eq!(g, vec![1.0, 0.0, 3.0, 4.0, 0.0, 6.0]);
    }
}

//! FTWT's host-side pieces: the self-supervised "top mass" target of a layer's activations
//! (dfdx has no sort), MAC counting of a gated MLP with the previous layer's active units as the
//! fan-in, and the static (input-independent) unit choice of the ablation.

/// The official target (`get_gt_mask_ratio`, mass mode) of one layer's activations, row-major
/// `rows x width`: per row, `heat_j = |a_j|`, `share_j = heat_j / sum_k heat_k`; sorted by
/// heat (descending), a unit is kept (1) when the cumulative share at its position is at most
/// `r` (+1e-5), so the unit at which the cumulative share exceeds `r` is dropped. Units with zero
/// heat are never kept (for `r = 1` this keeps exactly the non-zero units, the official special
/// case); a row of zeros keeps nothing.
pub fn top_mass(acts: &[f32], width: usize, r: f64) -> Vec<f32> {
    assert!(
        width > 0 && acts.len().is_multiple_of(width),
        "rows of {width}"
    );
    let mut out = vec![0.0f32; acts.len()];
    let mut order: Vec<usize> = Vec::with_capacity(width);
    for (row, t) in acts.chunks(width).zip(out.chunks_mut(width)) {
        let heat: Vec<f64> = row.iter().map(|v| (*v as f64).abs()).collect();
        let total: f64 = heat.iter().sum();
        if total <= 0.0 || !total.is_finite() {
            continue;
        }
        order.clear();
        order.extend(0..width);
        // Descending heat; ties by index (stable, deterministic).
        order.sort_by(|&a, &b| heat[b].total_cmp(&heat[a]).then(a.cmp(&b)));
        let mut cum = 0.0;
        for &j in &order {
            if heat[j] <= 0.0 {
                break;
            }
            cum += heat[j] / total;
            if cum - r > 1e-5 {
                break;
            }
            t[j] = 1.0;
        }
    }
    out
}

/// Active (1) units per row of a `rows x width` 0/1 mask.
pub fn row_counts(mask: &[f32], width: usize) -> Vec<usize> {
    mask.chunks(width)
        .map(|r| r.iter().filter(|&&v| v > 0.5).count())
        .collect()
}

/// MACs of one sample through an MLP with `sizes = [in, h1, .., hL, out]` whose hidden layer `l`
/// computes `active[l]` of its units: layer `l` costs `fan_in x active_out`, with the previous
/// layer's active units as the fan-in (the input is dense; the output layer computes all of its
/// units).
pub fn sample_macs(sizes: &[usize], active: &[usize]) -> f64 {
    assert_eq!(active.len() + 2, sizes.len(), "one count per hidden layer");
    let mut fan_in = sizes[0];
    let mut total = 0.0;
    for &a in active {
        total += (fan_in * a) as f64;
        fan_in = a;
    }
    total + (fan_in * sizes[sizes.len() - 1]) as f64
}

/// MACs of one sample through the dense MLP.
pub fn dense_macs(sizes: &[usize]) -> f64 {
    sizes.windows(2).map(|w| (w[0] * w[1]) as f64).sum()
}

/// MACs of one sample through the mask predictors: predictor `l` is `fan_in -> rank -> width`
/// (low rank, linear) on the previous layer's active units.
pub fn predictor_macs(sizes: &[usize], active: &[usize], rank: usize) -> f64 {
    assert_eq!(active.len() + 2, sizes.len(), "one count per hidden layer");
    let mut fan_in = sizes[0];
    let mut total = 0.0;
    for (l, &a) in active.iter().enumerate() {
        total += (fan_in * rank + rank * sizes[l + 1]) as f64;
        fan_in = a;
    }
    total
}

/// Per-sample active counts of every hidden layer (`masks[l]` is `rows x sizes[l + 1]`), as
/// `rows` vectors of one count per layer.
pub fn per_sample_counts(masks: &[Vec<f32>], sizes: &[usize]) -> Vec<Vec<usize>> {
    let counts: Vec<Vec<usize>> = masks
        .iter()
        .enumerate()
        .map(|(l, m)| row_counts(m, sizes[l + 1]))
        .collect();
    let rows = counts.first().map(|c| c.len()).unwrap_or(0);
    (0..rows)
        .map(|i| counts.iter().map(|c| c[i]).collect())
        .collect()
}

/// `1 - mean MACs / dense MACs` over the samples of per-layer masks, without and with the
/// predictors' cost (`rank` 0: no predictors).
pub fn reductions(masks: &[Vec<f32>], sizes: &[usize], rank: usize) -> (f64, f64) {
    let dense = dense_macs(sizes);
    let per = per_sample_counts(masks, sizes);
    if per.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let n = per.len() as f64;
    let net: f64 = per.iter().map(|a| sample_macs(sizes, a)).sum::<f64>() / n;
    let pred: f64 = if rank > 0 {
        per.iter()
            .map(|a| predictor_macs(sizes, a, rank))
            .sum::<f64>()
            / n
    } else {
        0.0
    };
    (1.0 - net / dense, 1.0 - (net + pred) / dense)
}

/// The static ablation's units: the `k` units with the largest mean heat share over the rows
/// (share as in [`top_mass`]), as a 0/1 vector of `width`.
pub fn top_mean_share(acts: &[f32], width: usize, k: usize) -> Vec<f32> {
    let mut mean = vec![0.0f64; width];
    let mut rows = 0usize;
    for row in acts.chunks(width) {
        let total: f64 = row.iter().map(|v| (*v as f64).abs()).sum();
        rows += 1;
        if total > 0.0 {
            for (m, v) in mean.iter_mut().zip(row) {
                *m += (*v as f64).abs() / total;
            }
        }
    }
    let _ = rows;
    let mut order: Vec<usize> = (0..width).collect();
    order.sort_by(|&a, &b| mean[b].total_cmp(&mean[a]).then(a.cmp(&b)));
    let mut keep = vec![0.0f32; width];
    for &j in order.iter().take(k.min(width)) {
        keep[j] = 1.0;
    }
    keep
}

/// Share of entries where two 0/1 masks agree.
pub fn agreement(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    if a.is_empty() {
        return f64::NAN;
    }
    let same = a
        .iter()
        .zip(b)
        .filter(|(x, y)| (**x > 0.5) == (**y > 0.5))
        .count();
    same as f64 / a.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_mass_keeps_the_units_below_the_cumulative_share() {
        // Shares 0.4, 0.3, 0.2, 0.1, 0 (units 2, 0, 3, 1, 4).
        let row = [3.0f32, 1.0, 4.0, 2.0, 0.0];
        let t = |r| top_mass(&row, 5, r);
        // Cumulative 0.4, 0.7, 0.9, 1.0: r = 0.7 keeps the first two (0.7 is not exceeded).
        assert_eq!(t(0.7), vec![1.0, 0.0, 1.0, 0.0, 0.0]);
        assert_eq!(t(0.69), vec![0.0, 0.0, 1.0, 0.0, 0.0]);
        assert_eq!(t(0.9), vec![1.0, 0.0, 1.0, 1.0, 0.0]);
        // r = 1 keeps exactly the non-zero units; a tiny r keeps nothing.
        assert_eq!(t(1.0), vec![1.0, 1.0, 1.0, 1.0, 0.0]);
        assert_eq!(t(0.1), vec![0.0; 5]);
        // Negative activations count by magnitude; a zero row keeps nothing.
        assert_eq!(
            top_mass(&[-4.0, 0.0, 0.0, 0.0, 0.0, 0.0], 3, 1.0),
            vec![1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
        );
    }

    #[test]
    fn macs_count_the_previous_active_units_as_fan_in() {
        let sizes = [64, 256, 256, 256, 10];
        assert_eq!(dense_macs(&sizes), 150_016.0);
        assert_eq!(sample_macs(&sizes, &[256, 256, 256]), 150_016.0);
        // 64 * 100 + 100 * 50 + 50 * 20 + 20 * 10.
        assert_eq!(sample_macs(&sizes, &[100, 50, 20]), 12_600.0);
        // Predictors: (64 + 256) * 32 + (100 + 256) * 32 + (50 + 256) * 32.
        assert_eq!(predictor_macs(&sizes, &[100, 50, 20], 32), 31_424.0);
        let m = vec![vec![1.0f32; 256], vec![1.0; 256], vec![1.0; 256]];
        let (r, rp) = reductions(&m, &sizes, 32);
        assert_eq!(r, 0.0);
        assert!(rp < 0.0);
    }

    #[test]
    fn static_choice_ranks_mean_shares() {
        let acts = [1.0f32, 3.0, 0.0, 2.0, 2.0, 0.0];
        // Shares (0.25, 0.75, 0) and (0.5, 0.5, 0): means 0.375, 0.625, 0.
        assert_eq!(top_mean_share(&acts, 3, 1), vec![0.0, 1.0, 0.0]);
        assert_eq!(top_mean_share(&acts, 3, 2), vec![1.0, 1.0, 0.0]);
        assert_eq!(agreement(&[1.0, 0.0], &[1.0, 1.0]), 0.5);
    }
}

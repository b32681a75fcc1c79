//! Feature recovery: how well a dictionary (decoder columns) recovers known ground-truth
//! directions. Score = mean over true features of the best signed cosine similarity with any
//! dictionary atom (an atom pointing the opposite way does not recover a feature: SAE latents
//! are non-negative); 1 means every true feature has an exact atom.

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

/// `truth`: ground-truth directions as rows (`n x d`); `atoms`: dictionary atoms as rows
/// (`m x d`).
pub fn recovery_score(truth: &[f32], n: usize, atoms: &[f32], m: usize, d: usize) -> f64 {
    if n == 0 {
        return 0.0;
    }
    (0..n)
        .map(|i| {
            let t = &truth[i * d..(i + 1) * d];
            (0..m)
                .map(|j| cosine(t, &atoms[j * d..(j + 1) * d]))
                .fold(f64::NEG_INFINITY, f64::max)
        })
        .sum::<f64>()
        / n as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn exact_dictionary_scores_one_random_scores_low() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let (n, m, d) = (20, 40, 16);
        let truth: Vec<f32> = (0..n * d).map(|_| rng.gen::<f32>() - 0.5).collect();
        // A dictionary holding the truth (scaled) plus random atoms.
        let mut atoms: Vec<f32> = truth.iter().map(|x| 2.0 * x).collect();
        atoms.extend((0..(m - n) * d).map(|_| rng.gen::<f32>() - 0.5));
        let s = recovery_score(&truth, n, &atoms, m, d);
        assert!((s - 1.0).abs() < 1e-6, "{s}");
        // A sign-flipped atom points away from its feature: the signed score is -1 (the
        // absolute cosine would call it recovered).
        let flipped: Vec<f32> = truth[..d].iter().map(|x| -x).collect();
        let f = recovery_score(&truth[..d], 1, &flipped, 1, d);
        assert!((f + 1.0).abs() < 1e-6, "{f}");
        let random: Vec<f32> = (0..m * d).map(|_| rng.gen::<f32>() - 0.5).collect();
        let r = recovery_score(&truth, n, &random, m, d);
        assert!(r < 0.75, "{r}");
    }
}

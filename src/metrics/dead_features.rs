//! Dead latents of a sparse autoencoder, counted two ways: during training, a latent is dead
//! when it has not fired in the last `window` tokens (as SAELens counts); at evaluation, when it
//! never fires on a held-out batch.

/// Tracks, per latent, the token index at which it last fired.
#[derive(Clone, Debug)]
pub struct DeadFeatureTracker {
    last_fired: Vec<Option<u64>>,
    tokens: u64,
    window: u64,
}

impl DeadFeatureTracker {
    pub fn new(latents: usize, window: u64) -> DeadFeatureTracker {
        DeadFeatureTracker {
            last_fired: vec![None; latents],
            tokens: 0,
            window: window.max(1),
        }
    }

    /// Records a batch of activations (`rows x latents`, row-major): a latent fires on a token
    /// when its activation is non-zero.
    pub fn observe(&mut self, acts: &[f32], rows: usize) {
        let m = self.last_fired.len();
        for r in 0..rows {
            let t = self.tokens + r as u64;
            for (j, a) in acts[r * m..(r + 1) * m].iter().enumerate() {
                if *a != 0.0 {
                    self.last_fired[j] = Some(t);
                }
            }
        }
        self.tokens += rows as u64;
    }

    /// Records a batch of `rows` tokens from a per-latent summary: `last_row[j]` is 1 + the last
    /// row of the batch on which latent j fired, or 0 when it did not fire (computed on the
    /// device, so only `latents` numbers cross to the host).
    pub fn observe_last_rows(&mut self, last_row: &[f32], rows: usize) {
        for (j, r) in last_row.iter().enumerate() {
            if *r > 0.0 {
                self.last_fired[j] = Some(self.tokens + *r as u64 - 1);
            }
        }
        self.tokens += rows as u64;
    }

    /// A latent is dead when it has not fired in the last `window` tokens. Before `window`
    /// tokens have been seen, nothing is counted dead.
    pub fn is_dead(&self, j: usize) -> bool {
        if self.tokens < self.window {
            return false;
        }
        match self.last_fired[j] {
            None => true,
            Some(t) => self.tokens - 1 - t >= self.window,
        }
    }

    pub fn dead_count(&self) -> usize {
        (0..self.last_fired.len())
            .filter(|&j| self.is_dead(j))
            .count()
    }

    pub fn dead_fraction(&self) -> f64 {
        self.dead_count() as f64 / self.last_fired.len().max(1) as f64
    }

    pub fn dead_mask(&self) -> Vec<bool> {
        (0..self.last_fired.len())
            .map(|j| self.is_dead(j))
            .collect()
    }

    pub fn tokens(&self) -> u64 {
        self.tokens
    }
}

/// Fraction of latents that never fire on a batch of activations (`rows x latents`).
pub fn dead_fraction_on_batch(acts: &[f32], rows: usize, latents: usize) -> f64 {
    let mut fired = vec![false; latents];
    for r in 0..rows {
        for (j, a) in acts[r * latents..(r + 1) * latents].iter().enumerate() {
            fired[j] |= *a != 0.0;
        }
    }
    fired.iter().filter(|f| !**f).count() as f64 / latents.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_counting_on_a_hand_made_stream() {
        // 3 latents, window 4 tokens.
        let mut t = DeadFeatureTracker::new(3, 4);
        // Tokens 0..2: latent 0 fires on every token, latent 1 on token 1 only, latent 2 never.
        t.observe(&[1.0, 0.0, 0.0, 2.0, 5.0, 0.0, 1.0, 0.0, 0.0], 3);
        assert_eq!(t.dead_count(), 0, "fewer than `window` tokens seen");
        // Token 3.
        t.observe(&[1.0, 0.0, 0.0], 1);
        // Seen 4 tokens: latent 2 never fired -> dead; latent 1 fired 2 tokens ago -> alive.
        assert_eq!(t.dead_mask(), vec![false, false, true]);
        // Tokens 4, 5: latent 1 last fired at token 1, now 4 tokens ago -> dead.
        t.observe(&[1.0, 0.0, 0.0, 1.0, 0.0, 0.0], 2);
        assert_eq!(t.dead_mask(), vec![false, true, true]);
        // Latent 2 fires once: alive again.
        t.observe(&[0.0, 0.0, 3.0], 1);
        assert_eq!(t.dead_mask(), vec![false, true, false]);
        assert!((t.dead_fraction() - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(t.tokens(), 7);
    }

    #[test]
    fn batch_dead_fraction() {
        let acts = [0.0, 1.0, 0.0, 0.0, 2.0, 0.0];
        assert!((dead_fraction_on_batch(&acts, 2, 3) - 2.0 / 3.0).abs() < 1e-12);
    }
}

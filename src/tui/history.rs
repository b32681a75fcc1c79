//! Chart history with bounded memory, and the smoothing the charts apply.
//!
//! A [`History`] keeps at most `cap` points. When it fills up, neighbouring points are averaged
//! in pairs and later points are averaged in buckets twice as wide, so a million-step run keeps
//! its whole shape in a constant amount of memory.

/// A bounded, progressively downsampled series of `(step, value)` points.
#[derive(Clone, Debug)]
pub struct History {
    points: Vec<(f64, f64)>,
    cap: usize,
    /// Raw points per stored point.
    stride: usize,
    /// The bucket being filled: sums of x and y and the count.
    bucket: (f64, f64, usize),
    last: Option<(f64, f64)>,
    total: u64,
}

impl History {
    /// A history of at most `cap` points (at least 4).
    pub fn new(cap: usize) -> History {
        History {
            points: Vec::with_capacity(cap.max(4)),
            cap: cap.max(4),
            stride: 1,
            bucket: (0.0, 0.0, 0),
            last: None,
            total: 0,
        }
    }

    pub fn push(&mut self, x: f64, y: f64) {
        self.total += 1;
        self.last = Some((x, y));
        self.bucket.0 += x;
        self.bucket.1 += y;
        self.bucket.2 += 1;
        if self.bucket.2 < self.stride {
            return;
        }
        let n = self.bucket.2 as f64;
        self.points.push((self.bucket.0 / n, self.bucket.1 / n));
        self.bucket = (0.0, 0.0, 0);
        if self.points.len() >= self.cap {
            let halved: Vec<(f64, f64)> = self
                .points
                .chunks(2)
                .map(|c| {
                    let k = c.len() as f64;
                    (
                        c.iter().map(|p| p.0).sum::<f64>() / k,
                        c.iter().map(|p| p.1).sum::<f64>() / k,
                    )
                })
                .collect();
            self.points.clear();
            self.points.extend(halved);
            self.stride *= 2;
        }
    }

    /// The stored points plus the latest raw point, so charts always reach the current step.
    pub fn points(&self) -> Vec<(f64, f64)> {
        let mut v = self.points.clone();
        if let Some(last) = self.last {
            if v.last().is_none_or(|p| p.0 < last.0) {
                v.push(last);
            }
        }
        v
    }

    pub fn last(&self) -> Option<(f64, f64)> {
        self.last
    }

    /// Stored points (excluding the open bucket).
    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.last.is_none()
    }

    /// Raw points pushed so far.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Bytes held by the point buffer (its capacity), for the memory test and benchmark.
    pub fn heap_bytes(&self) -> usize {
        self.points.capacity() * std::mem::size_of::<(f64, f64)>()
    }
}

/// Debiased exponential moving average, as TensorBoard smooths: with weight `w` in [0, 1),
/// `m_t = w m_{t-1} + (1 - w) y_t` starting from 0, reported as `m_t / (1 - w^t)`. Non-finite
/// values pass through without entering the average.
pub fn smooth(points: &[(f64, f64)], w: f64) -> Vec<(f64, f64)> {
    if w <= 0.0 {
        return points.to_vec();
    }
    let mut m = 0.0;
    let mut debias = 1.0;
    points
        .iter()
        .map(|&(x, y)| {
            if !y.is_finite() {
                return (x, y);
            }
            m = w * m + (1.0 - w) * y;
            debias *= w;
            (x, m / (1.0 - debias))
        })
        .collect()
}

/// A one-line sparkline of `values` in `width` characters (the latest values on the right).
pub fn sparkline(values: &[f64], width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    if width == 0 {
        return String::new();
    }
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if finite.is_empty() {
        return " ".repeat(width);
    }
    // Resample to `width` columns by averaging.
    let cols: Vec<f64> = if finite.len() <= width {
        finite.clone()
    } else {
        (0..width)
            .map(|c| {
                let a = c * finite.len() / width;
                let b = ((c + 1) * finite.len() / width).max(a + 1);
                finite[a..b].iter().sum::<f64>() / (b - a) as f64
            })
            .collect()
    };
    let lo = cols.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = cols.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut s: String = cols
        .iter()
        .map(|v| {
            if hi > lo {
                BARS[(((v - lo) / (hi - lo)) * 7.0).round() as usize]
            } else {
                BARS[3]
            }
        })
        .collect();
    while s.chars().count() < width {
        s.insert(0, ' ');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_stays_bounded_over_a_million_points() {
        let mut h = History::new(1024);
        for i in 0..1_000_000u64 {
            h.push(i as f64, (i as f64).sin());
        }
        assert!(h.len() < 1024, "{}", h.len());
        assert!(h.heap_bytes() <= 1024 * 16 * 2, "{}", h.heap_bytes());
        assert_eq!(h.total(), 1_000_000);
        let pts = h.points();
        // The whole range is still covered, in order.
        assert!(pts[0].0 < 1000.0 && pts.last().unwrap().0 == 999_999.0);
        assert!(pts.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn downsampling_keeps_the_mean_shape() {
        let mut h = History::new(8);
        for i in 0..64 {
            h.push(i as f64, i as f64 * 2.0);
        }
        for (x, y) in h.points() {
            assert!((y - 2.0 * x).abs() < 1e-9, "{x} {y}");
        }
    }

    #[test]
    fn debiased_ema_matches_hand_computation() {
        let s = smooth(&[(0.0, 1.0), (1.0, 3.0)], 0.5);
        // m1 = 0.5, debiased 0.5/0.5 = 1; m2 = 0.25 + 1.5 = 1.75, debiased 1.75/0.75.
        assert!((s[0].1 - 1.0).abs() < 1e-12);
        assert!((s[1].1 - 1.75 / 0.75).abs() < 1e-12);
        assert_eq!(smooth(&[(0.0, 5.0)], 0.0), vec![(0.0, 5.0)]);
        let c = smooth(&[(0.0, 2.0), (1.0, 2.0), (2.0, 2.0)], 0.9);
        assert!(c.iter().all(|p| (p.1 - 2.0).abs() < 1e-12));
    }

    #[test]
    fn sparkline_has_fixed_width() {
        let s = sparkline(&[1.0, 2.0, 3.0, f64::NAN], 6);
        assert_eq!(s.chars().count(), 6);
        assert!(s.ends_with('█') && s.contains('▁'));
        assert_eq!(sparkline(&[], 3), "   ");
        assert_eq!(
            sparkline(&(0..100).map(f64::from).collect::<Vec<_>>(), 5)
                .chars()
                .count(),
            5
        );
    }
}

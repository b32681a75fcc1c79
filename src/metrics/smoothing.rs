//! Randomized-smoothing certification (Cohen, Rosenfeld & Kolter, "Certified Adversarial
//! Robustness via Randomized Smoothing", ICML 2019) on the host: CERTIFY's decision from
//! Monte-Carlo class counts, the one-sided Clopper-Pearson lower bound, the certified radius
//! `R = sigma Phi^{-1}(p_A)`, certified accuracy at a radius and the average certified radius.
//! The noisy forward passes that produce the counts belong to the caller (on any device).

use super::special::{beta_quantile, ln_gamma, normal_quantile};

/// The one-sided `1 - alpha` Clopper-Pearson lower bound on a binomial proportion after `k`
/// successes in `n` trials: the `alpha` quantile of Beta(k, n - k + 1) (0 when `k = 0`).
/// Equivalently the `p` at which `P(Bin(n, p) >= k) = alpha`.
pub fn clopper_pearson_lower(k: usize, n: usize, alpha: f64) -> f64 {
    assert!(k <= n && n > 0, "need 0 <= k <= n, n > 0");
    if k == 0 {
        return 0.0;
    }
    if k == n {
        // Beta(n, 1) has CDF x^n.
        return alpha.powf(1.0 / n as f64);
    }
    beta_quantile(alpha, k as f64, (n - k + 1) as f64)
}

/// `P(Bin(n, p) >= k)`, summed exactly term by term in log space (a reference for tests and
/// small `n`).
pub fn binomial_upper_tail(k: usize, n: usize, p: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    let nf = n as f64;
    (k..=n)
        .map(|j| {
            let jf = j as f64;
            (ln_gamma(nf + 1.0) - ln_gamma(jf + 1.0) - ln_gamma(nf - jf + 1.0)
                + jf * p.ln()
                + (nf - jf) * (1.0 - p).ln())
            .exp()
        })
        .sum()
}

/// CERTIFY's answer for one input.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Certificate {
    /// The predicted class, or None when CERTIFY abstains (`p_A < 1/2`).
    pub class: Option<usize>,
    /// The certified L2 radius (0 when abstaining).
    pub radius: f64,
    /// The lower confidence bound on the top class's probability.
    pub p_lower: f64,
    /// The class the selection samples chose (kept when abstaining).
    pub guess: usize,
    /// Its count among the estimation samples.
    pub count: usize,
}

/// CERTIFY from the class counts of the selection samples (`counts0`, n0 of them) and of
/// separate estimation samples (`counts`, n of them): the top class of the selection counts
/// (ties to the lower index), the Clopper-Pearson lower bound of its estimation count at level
/// `1 - alpha`, abstention below 1/2, otherwise the radius `sigma Phi^{-1}(p_A)`.
pub fn certify_counts(counts0: &[usize], counts: &[usize], alpha: f64, sigma: f64) -> Certificate {
    assert_eq!(counts0.len(), counts.len(), "one count per class in both");
    let guess = counts0
        .iter()
        .enumerate()
        .fold(0, |best, (c, &k)| if k > counts0[best] { c } else { best });
    let n: usize = counts.iter().sum();
    let count = counts[guess];
    let p_lower = clopper_pearson_lower(count, n, alpha);
    if p_lower < 0.5 {
        Certificate {
            class: None,
            radius: 0.0,
            p_lower,
            guess,
            count,
        }
    } else {
        Certificate {
            class: Some(guess),
            radius: sigma * normal_quantile(p_lower),
            p_lower,
            guess,
            count,
        }
    }
}

/// Cohen et al.'s CERTIFY around a sampler: `sample(k)` draws `k` fresh noisy copies of the
/// input and returns the base classifier's class counts; the selection draw (`n0`) and the
/// estimation draw (`n`) are separate calls, never reused.
pub fn certify(
    n0: usize,
    n: usize,
    alpha: f64,
    sigma: f64,
    sample: &mut dyn FnMut(usize) -> Vec<usize>,
) -> Certificate {
    let counts0 = sample(n0);
    let counts = sample(n);
    certify_counts(&counts0, &counts, alpha, sigma)
}

/// The largest radius CERTIFY can give with `n` estimation samples at level `1 - alpha`:
/// every sample in the top class, `sigma Phi^{-1}(alpha^{1/n})`.
pub fn max_radius(n: usize, alpha: f64, sigma: f64) -> f64 {
    sigma * normal_quantile(clopper_pearson_lower(n, n, alpha))
}

/// The share of inputs certified correct at radius `r`: predicted class = label and certified
/// radius >= r (at r = 0: the smoothed classifier's accuracy, abstentions counting as wrong).
pub fn certified_accuracy(certs: &[Certificate], labels: &[usize], r: f64) -> f64 {
    if certs.is_empty() {
        return f64::NAN;
    }
    let hits = certs
        .iter()
        .zip(labels)
        .filter(|(c, &y)| c.class == Some(y) && c.radius >= r)
        .count();
    hits as f64 / certs.len() as f64
}

/// The average certified radius: the mean over inputs of the radius when the prediction is
/// correct, 0 otherwise.
pub fn average_certified_radius(certs: &[Certificate], labels: &[usize]) -> f64 {
    if certs.is_empty() {
        return f64::NAN;
    }
    certs
        .iter()
        .zip(labels)
        .map(|(c, &y)| if c.class == Some(y) { c.radius } else { 0.0 })
        .sum::<f64>()
        / certs.len() as f64
}

/// The share of inputs CERTIFY abstained on.
pub fn abstain_rate(certs: &[Certificate]) -> f64 {
    if certs.is_empty() {
        return f64::NAN;
    }
    certs.iter().filter(|c| c.class.is_none()).count() as f64 / certs.len() as f64
}

/// The share of the most frequent non-abstaining prediction among all inputs (a classifier
/// collapsed to one class gives 1).
pub fn top_class_share(certs: &[Certificate], classes: usize) -> f64 {
    if certs.is_empty() {
        return f64::NAN;
    }
    let mut count = vec![0usize; classes];
    for c in certs.iter().filter_map(|c| c.class) {
        count[c] += 1;
    }
    *count.iter().max().unwrap_or(&0) as f64 / certs.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clopper_pearson_solves_the_exact_binomial_tail() {
        for n in [1usize, 2, 5, 10, 30] {
            for k in 1..=n {
                for alpha in [0.001, 0.05, 0.3] {
                    let p = clopper_pearson_lower(k, n, alpha);
                    let tail = binomial_upper_tail(k, n, p);
                    assert!(
                        (tail - alpha).abs() < 1e-10,
                        "n {n} k {k} alpha {alpha}: {tail}"
                    );
                }
            }
        }
    }

    #[test]
    fn clopper_pearson_against_published_intervals() {
        // Two-sided 95% Clopper-Pearson intervals (lower end = one-sided alpha 0.025):
        // 8/10 -> (0.4439, 0.9748), 5/10 -> (0.1871, 0.8129), 0/10 upper 0.3085.
        assert!((clopper_pearson_lower(8, 10, 0.025) - 0.443_9).abs() < 1e-4);
        assert!((clopper_pearson_lower(5, 10, 0.025) - 0.187_1).abs() < 1e-4);
        assert!((1.0 - clopper_pearson_lower(10, 10, 0.025) - 0.308_5).abs() < 1e-4);
        assert_eq!(clopper_pearson_lower(0, 10, 0.05), 0.0);
    }

    #[test]
    fn certify_decides_abstains_and_bounds_the_radius() {
        let (alpha, sigma) = (0.001, 0.5);
        // Every estimation sample in the top class: the largest radius, 2.2 sigma at n 500.
        let c = certify_counts(&[0, 64, 0], &[0, 500, 0], alpha, sigma);
        assert_eq!(c.class, Some(1));
        assert!((c.radius - max_radius(500, alpha, sigma)).abs() < 1e-12);
        assert!((c.radius / sigma - 2.205).abs() < 2e-3, "{}", c.radius);
        // 260 of 500: the lower bound falls below 1/2, CERTIFY abstains.
        let c = certify_counts(&[10, 54, 0], &[240, 260, 0], alpha, sigma);
        assert_eq!(c.class, None);
        assert_eq!(c.guess, 1);
        // The selection samples pick the class, not the estimation counts.
        let c = certify_counts(&[40, 24, 0], &[10, 490, 0], alpha, sigma);
        assert_eq!((c.guess, c.count, c.class), (0, 10, None));
        // 450 / 500: radius sigma * Phi^-1(CP lower).
        let c = certify_counts(&[0, 0, 64], &[20, 30, 450], alpha, sigma);
        let p = clopper_pearson_lower(450, 500, alpha);
        assert!((c.radius - sigma * normal_quantile(p)).abs() < 1e-12 && p > 0.85 && p < 0.9);
        let labels = [2, 1];
        let certs = [c, certify_counts(&[0, 64, 0], &[0, 500, 0], alpha, sigma)];
        assert_eq!(certified_accuracy(&certs, &labels, 0.0), 1.0);
        assert_eq!(certified_accuracy(&certs, &labels, 1.0), 0.5);
        let acr = average_certified_radius(&certs, &labels);
        assert!((acr - 0.5 * (certs[0].radius + certs[1].radius)).abs() < 1e-12);
        assert_eq!(top_class_share(&certs, 3), 0.5);
    }
}

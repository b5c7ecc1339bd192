//! The Beta distribution, as far as FREE's estimator needs it: method-of-moments fits, log
//! densities and tail probabilities. ln Γ by Lanczos' approximation (g = 7, 9 terms),
//! accurate to about 1e-14 relative for the positive arguments that occur here; the
//! regularized incomplete beta function by its continued fraction (Lentz's method).

/// Parameters of Beta(alpha, beta), both positive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BetaParams {
    pub alpha: f64,
    pub beta: f64,
}

/// Samples are clipped into [EPS, 1 - EPS] before fitting, as FREE does.
pub const EPS: f64 = 1e-4;

impl BetaParams {
    /// Method of moments on samples in [0, 1] (clipped): with mean m and population variance
    /// v, alpha = m (m (1 - m) / v - 1) and beta = alpha (1 - m) / m. None when there are
    /// no samples or the variance is not in (1e-12, m (1 - m)) — no Beta has those moments.
    pub fn fit_moments(samples: &[f64]) -> Option<BetaParams> {
        if samples.is_empty() {
            return None;
        }
        let n = samples.len() as f64;
        let clipped = || samples.iter().map(|x| x.clamp(EPS, 1.0 - EPS));
        let m = clipped().sum::<f64>() / n;
        let v = clipped().map(|x| (x - m) * (x - m)).sum::<f64>() / n;
        // A variance at rounding level means equal samples: no Beta is that narrow.
        if !(v > 1e-12 && v < m * (1.0 - m)) {
            return None;
        }
        let alpha = m * (m * (1.0 - m) / v - 1.0);
        Some(BetaParams { alpha, beta: alpha * (1.0 - m) / m })
    }

    /// ln of the density at x (clipped into [EPS, 1 - EPS]).
    pub fn ln_pdf(&self, x: f64) -> f64 {
        let x = x.clamp(EPS, 1.0 - EPS);
        (self.alpha - 1.0) * x.ln() + (self.beta - 1.0) * (1.0 - x).ln() - ln_beta(self.alpha, self.beta)
    }

    /// P(X > x), the upper tail: the share of the class a threshold at x lets exit.
    pub fn sf(&self, x: f64) -> f64 {
        if x <= 0.0 {
            return 1.0;
        }
        if x >= 1.0 {
            return 0.0;
        }
        let (a, b) = (self.alpha, self.beta);
        // x^a (1-x)^b / B(a, b), the factor in front of both continued fractions.
        let front = (a * x.ln() + b * (1.0 - x).ln() - ln_beta(a, b)).exp();
        // The fraction converges fast for x below the mean-ish point (a+1)/(a+b+2); above
        // it, use I_x(a, b) = 1 - I_{1-x}(b, a), which also keeps a small tail accurate.
        if x < (a + 1.0) / (a + b + 2.0) {
            1.0 - front * beta_fraction(x, a, b) / a
        } else {
            front * beta_fraction(1.0 - x, b, a) / b
        }
    }
}

/// The continued fraction of the regularized incomplete beta function I_x(a, b) =
/// x^a (1-x)^b / (a B(a, b)) * 1 / (1 + d1 / (1 + d2 / (1 + ...))), with
/// d_2m = m (b - m) x / ((a + 2m - 1)(a + 2m)) and
/// d_2m+1 = -(a + m)(a + b + m) x / ((a + 2m)(a + 2m + 1)), evaluated by the modified
/// Lentz method.
fn beta_fraction(x: f64, a: f64, b: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let nonzero = |v: f64| if v.abs() < TINY { TINY } else { v };
    let (mut c, mut d) = (1.0, 1.0 / nonzero(1.0 - (a + b) * x / (a + 1.0)));
    let mut h = d;
    for m in 1..=500 {
        let m = m as f64;
        for coefficient in [
            m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0)),
        ] {
            d = 1.0 / nonzero(1.0 + coefficient * d);
            c = nonzero(1.0 + coefficient / c);
            h *= d * c;
        }
        if (d * c - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

pub fn ln_beta(a: f64, b: f64) -> f64 {
    ln_gamma(a) + ln_gamma(b) - ln_gamma(a + b)
}

/// ln Γ(x) for x > 0.
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x) Γ(1 - x) = π / sin(π x).
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let t = x + G + 0.5;
    let series = C[1..].iter().enumerate().fold(C[0], |acc, (i, c)| acc + c / (x + i as f64 + 1.0));
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + series.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_gamma_hits_known_values() {
        // Γ(1) = Γ(2) = 1, Γ(0.5) = sqrt(π), Γ(10) = 9!
        assert!(ln_gamma(1.0).abs() < 1e-13);
        assert!(ln_gamma(2.0).abs() < 1e-13);
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-13);
        assert!((ln_gamma(10.0) - 362_880f64.ln()).abs() < 1e-11);
        assert!((ln_gamma(1e-3) - 6.907_178_885_383_853).abs() < 1e-10);
    }

    #[test]
    fn moments_fit_recovers_a_known_beta() {
        // Beta(2, 5) has mean 2/7 and variance 10/392; samples with exactly those moments:
        let (m, v): (f64, f64) = (2.0 / 7.0, 10.0 / 392.0);
        let s = [m - v.sqrt(), m + v.sqrt()];
        let p = BetaParams::fit_moments(&s).unwrap();
        assert!((p.alpha - 2.0).abs() < 1e-9 && (p.beta - 5.0).abs() < 1e-9, "{p:?}");
    }

    /// Tails over the parameters a fit can produce (moments of clipped samples put alpha and
    /// beta within about [1e-4, 1e8]): probabilities, finite, never rising with x.
    #[test]
    fn tails_are_probabilities_that_fall_for_any_parameters() {
        let params = [1e-4, 1e-2, 0.3, 1.0, 2.5, 40.0, 1e3, 1e6, 1e8];
        for &alpha in &params {
            for &beta in &params {
                let p = BetaParams { alpha, beta };
                let mut last = 1.0;
                for i in 0..=400 {
                    let x = i as f64 / 400.0;
                    let s = p.sf(x);
                    assert!((0.0..=1.0).contains(&s), "Beta({alpha}, {beta}) tail at {x}: {s}");
                    assert!(s <= last + 1e-9, "Beta({alpha}, {beta}) tail rose at {x}: {last} -> {s}");
                    last = s;
                }
            }
        }
    }

    #[test]
    fn degenerate_samples_have_no_fit() {
        assert_eq!(BetaParams::fit_moments(&[]), None);
        assert_eq!(BetaParams::fit_moments(&[0.7; 20]), None, "zero variance");
        // Half at 0 and half at 1: variance m(1-m) after clipping is just below the bound,
        // so this still fits, as a U-shaped Beta.
        let p = BetaParams::fit_moments(&[0.0, 1.0, 0.0, 1.0]).unwrap();
        assert!(p.alpha < 1e-3 && p.beta < 1e-3, "{p:?}");
    }
}

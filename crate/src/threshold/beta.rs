//! The Beta distribution, as far as FREE's estimator needs it: method-of-moments fits, log
//! densities and tail probabilities. ln Γ by Lanczos' approximation (g = 7, 9 terms),
//! accurate to about 1e-14 relative for the positive arguments that occur here; the
//! regularized incomplete beta function by its continued fraction (Lentz's method).

use serde::Serialize;

/// Parameters of Beta(alpha, beta), both positive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BetaParams {
    pub alpha: f64,
    pub beta: f64,
}

/// Samples are clipped into [EPS, 1 - EPS] before fitting, as FREE does.
pub const EPS: f64 = 1e-4;

/// Count, mean and population variance of clipped confidences: all the method of moments
/// needs, so a class's data can be summarised (the calibration free.json ships) and later
/// data still combines with it as if every point had been kept (to rounding).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[cfg_attr(all(test, not(target_arch = "wasm32")), derive(ts_rs::TS))]
pub struct Moments {
    /// How many points; a real number because a sliding window may keep a share of a
    /// summarised class (`AdaptiveThreshold`).
    pub points: f64,
    pub mean: f64,
    pub variance: f64,
}

impl Moments {
    pub const EMPTY: Moments = Moments { points: 0.0, mean: 0.0, variance: 0.0 };

    /// The moments of `samples`, each clipped into [EPS, 1 - EPS] (two passes: the mean,
    /// then the squared deviations from it).
    pub fn of(samples: impl Iterator<Item = f64> + Clone) -> Moments {
        let clipped = samples.map(|x| x.clamp(EPS, 1.0 - EPS));
        let n = clipped.clone().count();
        if n == 0 {
            return Moments::EMPTY;
        }
        let points = n as f64;
        let mean = clipped.clone().sum::<f64>() / points;
        let variance = clipped.map(|x| (x - mean) * (x - mean)).sum::<f64>() / points;
        Moments { points, mean, variance }
    }

    /// The moments of both sets of points together (Chan, Golub and LeVeque's pairwise
    /// update, which stays accurate where sums of squares would cancel). An empty side
    /// returns the other unchanged, bit for bit.
    pub fn merge(self, other: Moments) -> Moments {
        if other.points == 0.0 {
            return self;
        }
        if self.points == 0.0 {
            return other;
        }
        let points = self.points + other.points;
        let delta = other.mean - self.mean;
        let mean = self.mean + delta * other.points / points;
        let squares = self.variance * self.points + other.variance * other.points + delta * delta * self.points * other.points / points;
        Moments { points, mean, variance: squares / points }
    }

    /// The same distribution counted as `share` of its points.
    pub fn scaled(self, share: f64) -> Moments {
        if share >= 1.0 {
            return self;
        }
        Moments { points: self.points * share, ..self }
    }
}

impl BetaParams {
    /// The method of moments: with mean m and population variance v, alpha =
    /// m (m (1 - m) / v - 1) and beta = alpha (1 - m) / m. None when there are no points or
    /// the variance is not in (1e-12, m (1 - m)) — no Beta has those moments.
    pub fn from_moments(Moments { points, mean: m, variance: v }: Moments) -> Option<BetaParams> {
        // A variance at rounding level means equal samples: no Beta is that narrow.
        if points == 0.0 || !(v > 1e-12 && v < m * (1.0 - m)) {
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
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;
    use super::*;

    /// Method of moments on samples in [0, 1] (clipped).
    fn fit(samples: &[f64]) -> Option<BetaParams> {
        BetaParams::from_moments(Moments::of(samples.iter().copied()))
    }

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
        let p = fit(&s).unwrap();
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

    /// Worked by hand: {0.2, 0.4} has mean 0.3 and variance 0.01, {0.9} mean 0.9 and
    /// variance 0; together, mean 0.5 and variance (0.09 + 0.01 + 0.16) / 3.
    #[test]
    fn moments_merge_as_if_the_points_were_pooled() {
        let (a, b) = (Moments::of([0.2, 0.4].into_iter()), Moments::of([0.9].into_iter()));
        assert!((a.mean - 0.3).abs() < 1e-15 && (a.variance - 0.01).abs() < 1e-15, "{a:?}");
        let pooled = a.merge(b);
        assert_eq!(pooled.points, 3.0);
        assert!((pooled.mean - 0.5).abs() < 1e-15 && (pooled.variance - 0.26 / 3.0).abs() < 1e-15, "{pooled:?}");
        let direct = Moments::of([0.2, 0.4, 0.9].into_iter());
        assert!((direct.mean - pooled.mean).abs() < 1e-15 && (direct.variance - pooled.variance).abs() < 1e-15);
        // Nothing merged changes nothing, bit for bit.
        assert_eq!(a.merge(Moments::EMPTY), a);
        assert_eq!(Moments::EMPTY.merge(a), a);
        // Clipped first: 0 and 1 count as 1e-4 and 1 - 1e-4 (mean 0.5, variance 0.4999^2).
        let ends = Moments::of([0.0, 1.0].into_iter());
        assert!((ends.mean - 0.5).abs() < 1e-15 && (ends.variance - 0.4999 * 0.4999).abs() < 1e-15, "{ends:?}");
        assert_eq!(BetaParams::from_moments(Moments { points: 10.0, mean: 2.0 / 7.0, variance: 10.0 / 392.0 }).map(|p| (p.alpha - 2.0).abs() < 1e-12 && (p.beta - 5.0).abs() < 1e-12), Some(true));
    }

    #[test]
    fn degenerate_samples_have_no_fit() {
        assert_eq!(fit(&[]), None);
        assert_eq!(fit(&[0.7; 20]), None, "zero variance");
        // Half at 0 and half at 1: variance m(1-m) after clipping is just below the bound,
        // so this still fits, as a U-shaped Beta.
        let p = fit(&[0.0, 1.0, 0.0, 1.0]).unwrap();
        assert!(p.alpha < 1e-3 && p.beta < 1e-3, "{p:?}");
    }
}

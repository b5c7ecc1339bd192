"""Test vectors for the Beta-mixture threshold (crate/src/threshold), computed with scipy.

Run by hand: python tools/make_bmm_vectors.py > tests/fixtures/bmm_vectors.json
For each case: the two classes' confidences, scipy's method-of-moments Beta fits
(scipy.stats.beta.fit(..., method="MM") with loc 0, scale 1), log densities at probe points,
the equal-prior posterior, upper tail probabilities, and the thresholds of every rule
computed here independently.
"""

import json

import numpy as np
from scipy import stats

EPS = 1e-4
PROBES = [0.0, 0.05, 0.2, 0.5, 0.8, 0.95, 1.0]


def mm_fit(x):
    x = np.clip(np.asarray(x, dtype=np.float64), EPS, 1 - EPS)
    a, b, _, _ = stats.beta.fit(x, floc=0, fscale=1, method="MM")
    return float(a), float(b)


def posterior(c, fc, fi, prior=0.5):
    c = min(max(c, EPS), 1 - EPS)
    l1 = stats.beta.logpdf(c, *fc) + np.log(prior)
    l0 = stats.beta.logpdf(c, *fi) + np.log(1 - prior)
    return float(1 / (1 + np.exp(l0 - l1)))


def reference_threshold(fc, fi, zeta):
    for c in np.linspace(0.3, 0.9, 10):
        if posterior(c, fc, fi) > zeta:
            return float(c)
    return 0.9


def fine_threshold(fc, fi, zeta, lo, hi, prior):
    lowest = None
    for i in range(1000, -1, -1):
        c = i / 1000
        if posterior(c, fc, fi, prior) > zeta:
            lowest = c
        else:
            break
    return float(min(max(hi if lowest is None else lowest, lo), hi))


def budget_threshold(fc, fi, rate, lo, hi, prior):
    """The lowest grid point from which up the share of inconsistent tokens among those
    above it stays within `rate` (a grid point with no tokens above it counts as within)."""
    lowest = None
    for i in range(1000, -1, -1):
        c = i / 1000
        above_i = (1 - prior) * stats.beta.sf(c, *fi)
        above = above_i + prior * stats.beta.sf(c, *fc)
        if above <= 0 or above_i / above <= rate:
            lowest = c
        else:
            break
    return float(min(max(hi if lowest is None else lowest, lo), hi))


def main():
    rng = np.random.default_rng(7)
    cases = []
    shapes = [((8, 1.5), (1.5, 3), 300, 120), ((3, 1), (1, 1.2), 80, 200), ((20, 2), (2, 2), 500, 60)]
    for (ca, cb), (ia, ib), nc, ni in shapes:
        cons = rng.beta(ca, cb, nc).round(6).tolist()
        incons = rng.beta(ia, ib, ni).round(6).tolist()
        fc, fi = mm_fit(cons), mm_fit(incons)
        prior = nc / (nc + ni)
        cases.append({
            "consistent": cons, "inconsistent": incons,
            "fit_consistent": fc, "fit_inconsistent": fi,
            "probes": PROBES,
            "ln_pdf_consistent": [float(stats.beta.logpdf(min(max(p, EPS), 1 - EPS), *fc)) for p in PROBES],
            "posterior_equal_priors": [posterior(p, fc, fi) for p in PROBES],
            "threshold_reference": reference_threshold(fc, fi, 0.4),
            "threshold_fine": fine_threshold(fc, fi, 0.4, 0.05, 0.99, 0.5),
            "threshold_fine_priors": fine_threshold(fc, fi, 0.4, 0.05, 0.99, prior),
            "sf_consistent": [float(stats.beta.sf(p, *fc)) for p in PROBES],
            "sf_inconsistent": [float(stats.beta.sf(p, *fi)) for p in PROBES],
            "threshold_budget": budget_threshold(fc, fi, 0.05, 0.0, 0.99, prior),
        })
    print(json.dumps({"zeta": 0.4, "min": 0.05, "max": 0.99, "budget": 0.05, "cases": cases}))


if __name__ == "__main__":
    main()

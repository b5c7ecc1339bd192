// Unit tests of src/view/beta.ts against independent values: log-gamma identities and
// scipy.stats.beta's log densities and posteriors (tests/fixtures/bmm_vectors.json, made
// by tools/make_bmm_vectors.py for the Rust estimator).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { densityCurves, logBetaPdf, logGamma, posterior } from "./dist/beta.js";

const close = (actual, expected, tol, what) =>
  assert.ok(Math.abs(actual - expected) <= tol * Math.max(1, Math.abs(expected)), `${what}: ${actual} vs ${expected}`);

test("logGamma matches known values", () => {
  close(logGamma(1), 0, 1e-13, "lnΓ(1)");
  close(logGamma(2), 0, 1e-13, "lnΓ(2)");
  close(logGamma(0.5), 0.5 * Math.log(Math.PI), 1e-13, "lnΓ(1/2)");
  close(logGamma(10), Math.log(362880), 1e-13, "lnΓ(10)");
  // Python math.lgamma values.
  close(logGamma(0.1), 2.2527126517342055, 1e-12, "lnΓ(0.1)");
  close(logGamma(30.25), 72.104204742008, 1e-12, "lnΓ(30.25)");
  close(logGamma(171.5), 709.1431630309282, 1e-12, "lnΓ(171.5)");
});

test("logBetaPdf: closed forms", () => {
  close(Math.exp(logBetaPdf(0.5, { alpha: 2, beta: 3 })), 1.5, 1e-12, "Beta(2,3) at 0.5"); // 12 x (1-x)^2
  close(Math.exp(logBetaPdf(0.5, { alpha: 0.5, beta: 0.5 })), 2 / Math.PI, 1e-12, "arcsine at 0.5");
  close(Math.exp(logBetaPdf(0.3, { alpha: 1, beta: 1 })), 1, 1e-12, "uniform");
});

test("logBetaPdf and posterior equal scipy's on the committed vectors", () => {
  const vectors = JSON.parse(readFileSync(new URL("../../../tests/fixtures/bmm_vectors.json", import.meta.url), "utf8"));
  let checked = 0;
  for (const c of vectors.cases) {
    if (!c.fit_consistent || !c.fit_inconsistent || !c.ln_pdf_consistent) continue;
    const consistent = { alpha: c.fit_consistent[0], beta: c.fit_consistent[1] };
    const inconsistent = { alpha: c.fit_inconsistent[0], beta: c.fit_inconsistent[1] };
    c.probes.forEach((p, i) => {
      close(logBetaPdf(p, consistent), c.ln_pdf_consistent[i], 1e-9, `ln pdf at ${p}`);
      close(posterior(p, consistent, inconsistent), c.posterior_equal_priors[i], 1e-9, `posterior at ${p}`);
      checked++;
    });
  }
  assert.ok(checked >= 7, `only ${checked} probes checked`);
});

test("densityCurves: none without a fit; the fitted densities with a capped maximum", () => {
  const state = { threshold: 0.4, rule: { kind: "fine", min: 0.05, max: 0.99, priors_from_counts: false }, zeta: 0.4, fit: null, consistentPoints: 3, inconsistentPoints: 0, fits: 0 };
  assert.equal(densityCurves(state), null);
  const fitted = { ...state, fit: { consistent: { alpha: 5, beta: 2 }, inconsistent: { alpha: 2, beta: 5 }, priorConsistent: 0.5 } };
  const curves = densityCurves(fitted, 11);
  assert.equal(curves.x.length, 11);
  assert.equal(curves.x[0], 1e-4);
  assert.equal(curves.x[10], 1 - 1e-4);
  close(curves.consistent[5], 30 * 0.5 ** 4 * 0.5, 1e-12, "Beta(5,2) at 0.5"); // 30 x^4 (1-x)
  close(curves.inconsistent[8], 30 * 0.8 * 0.2 ** 4, 1e-12, "Beta(2,5) at 0.8");
  close(curves.yMax, Math.max(...curves.consistent, ...curves.inconsistent), 1e-12, "yMax");
  const spiky = densityCurves({ ...state, fit: { consistent: { alpha: 0.3, beta: 1 }, inconsistent: { alpha: 2, beta: 2 }, priorConsistent: 0.5 } });
  assert.equal(spiky.yMax, 12);
});

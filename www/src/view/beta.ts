// Beta densities for the adaptive-threshold chart (pure): log-gamma, the Beta log density and
// the mixture's posterior, evaluated in log space as the estimator does
// (docs/method.md#data-and-fit).
// Unit-tested against scipy.stats.beta values in test/unit/beta.test.mjs.

import type { AdaptiveState, BetaParams } from "free-wasm";

/** Confidences are clipped to [EPS, 1 - EPS] before any density, as the estimator does. */
export const EPS = 1e-4;

// Lanczos approximation, g = 7, 9 coefficients (about 15 significant digits for x > 0).
const G = 7;
const LANCZOS = [
  0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
  12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
];

/** ln Γ(x) for x > 0. */
export function logGamma(x: number): number {
  if (x < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * x)) - logGamma(1 - x); // reflection
  const z = x - 1;
  let sum = LANCZOS[0];
  for (let i = 1; i < LANCZOS.length; i++) sum += LANCZOS[i] / (z + i);
  const t = z + G + 0.5;
  return 0.5 * Math.log(2 * Math.PI) + (z + 0.5) * Math.log(t) - t + Math.log(sum);
}

export function clip(c: number): number {
  return Math.min(Math.max(c, EPS), 1 - EPS);
}

/** ln of the Beta(alpha, beta) density at c (clipped). */
export function logBetaPdf(c: number, { alpha, beta }: BetaParams): number {
  const x = clip(c);
  const logB = logGamma(alpha) + logGamma(beta) - logGamma(alpha + beta);
  return (alpha - 1) * Math.log(x) + (beta - 1) * Math.log1p(-x) - logB;
}

/** P(consistent | c) of the two-class mixture with the given prior for "consistent". */
export function posterior(c: number, consistent: BetaParams, inconsistent: BetaParams, prior = 0.5): number {
  const l1 = logBetaPdf(c, consistent) + Math.log(prior);
  const l0 = logBetaPdf(c, inconsistent) + Math.log(1 - prior);
  return 1 / (1 + Math.exp(l0 - l1));
}

export interface Curve {
  x: number[];
  consistent: number[];
  inconsistent: number[];
  /** The largest density on the curves, capped (densities near 0 or 1 can be huge). */
  yMax: number;
}

/** Both fitted densities on `n` points across (0, 1), for the chart; null without a fit. */
export function densityCurves(state: AdaptiveState, n = 101, cap = 12): Curve | null {
  if (state.fit === null) return null;
  const { consistent, inconsistent } = state.fit;
  const x = Array.from({ length: n }, (_, i) => clip(i / (n - 1)));
  const f1 = x.map((c) => Math.exp(logBetaPdf(c, consistent)));
  const f0 = x.map((c) => Math.exp(logBetaPdf(c, inconsistent)));
  const yMax = Math.min(cap, Math.max(...f1, ...f0, 1));
  return { x, consistent: f1, inconsistent: f0, yMax };
}

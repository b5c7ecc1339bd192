// The two charts, drawn as plain SVG from the trace and the adaptive state: each token's
// exit confidence against the threshold in force (a step line), and the adaptive
// estimator's two fitted Beta densities with its threshold and the points seen so far.
// The drawing is as wide (in SVG units) as the chart is on screen, up to 600, so its text
// stays readable on a phone.

import type { AdaptiveState, TraceEntry } from "free-wasm";
import { densityCurves } from "../view/beta.js";
import { EXIT_WORDS, exitKind, type ModelShape, type Observation } from "../view/trace.js";

const H = 220;
const PAD = { left: 40, right: 10, top: 12, bottom: 30 };
const PLOT_H = H - PAD.top - PAD.bottom;

/** Sets the chart's viewBox to its width on screen (320 to 600 units); returns the width. */
function fit(svg: SVGSVGElement): number {
  const W = Math.round(Math.min(600, Math.max(320, svg.clientWidth || 600)));
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  return W;
}
const COLOURS = { shallow: "#15803d", deep: "#1d4ed8", mid: "#b45309", consistent: "#15803d", inconsistent: "#b91c1c", threshold: "#111" };

const f = (x: number) => x.toFixed(1);
const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/"/g, "&quot;");

/** Axes with ticks: y from 0 to yMax, x labels given. */
function axes(W: number, yMax: number, yLabel: string, xTicks: Array<[number, string]>, xLabel: string): string {
  const PLOT_W = W - PAD.left - PAD.right;
  const y = (v: number) => PAD.top + PLOT_H * (1 - v / yMax);
  let out = `<rect x="${PAD.left}" y="${PAD.top}" width="${PLOT_W}" height="${PLOT_H}" fill="none" stroke="#ccc"/>`;
  for (const v of [0, yMax / 2, yMax]) {
    out += `<text x="${PAD.left - 4}" y="${f(y(v) + 4)}" text-anchor="end">${+v.toFixed(2)}</text>`;
  }
  for (const [x, label] of xTicks) out += `<text x="${f(x)}" y="${H - 14}" text-anchor="middle">${esc(label)}</text>`;
  out += `<text x="${W / 2}" y="${H - 2}" text-anchor="middle" fill="#555">${esc(xLabel)}</text>`;
  out += `<text x="10" y="${PAD.top + PLOT_H / 2}" transform="rotate(-90 10 ${PAD.top + PLOT_H / 2})" text-anchor="middle" fill="#555">${esc(yLabel)}</text>`;
  return out;
}

/** Confidence per token (dots coloured by exit; hollow when rolled back) and the threshold. */
export function drawConfidence(svg: SVGSVGElement, trace: TraceEntry[], shape: ModelShape): void {
  const W = fit(svg);
  const PLOT_W = W - PAD.left - PAD.right;
  const n = Math.max(trace.length, 8);
  const x = (i: number) => PAD.left + (PLOT_W * (i + 0.5)) / n;
  const y = (v: number) => PAD.top + PLOT_H * (1 - v);
  const step = Math.max(1, Math.ceil(n / (W < 450 ? 5 : 8)));
  const ticks: Array<[number, string]> = [];
  for (let i = 0; i < n; i += step) ticks.push([x(i), String(i)]);
  let out = axes(W, 1, "confidence", ticks, "token (in decision order)");
  // The threshold as a step line through each token's slot.
  let path = "";
  trace.forEach((e, i) => {
    if (e.threshold === null) return;
    const x0 = PAD.left + (PLOT_W * i) / n;
    const x1 = PAD.left + (PLOT_W * (i + 1)) / n;
    path += `${path === "" || trace[i - 1]?.threshold === null ? "M" : "L"}${f(x0)},${f(y(e.threshold))}L${f(x1)},${f(y(e.threshold))}`;
  });
  if (path !== "") out += `<path class="threshold-line" d="${path}" fill="none" stroke="${COLOURS.threshold}" stroke-dasharray="5 3" stroke-width="1.5"/>`;
  trace.forEach((e, i) => {
    if (e.confidence === null) return;
    const kind = exitKind(e, shape);
    const colour = COLOURS[kind];
    const fill = e.rolledBack ? "none" : colour;
    // The colour is not the only carrier: the title says the exit in words.
    out += `<circle class="point exit-${kind}" cx="${f(x(i))}" cy="${f(y(e.confidence))}" r="4" fill="${fill}" stroke="${colour}" stroke-width="1.5"><title>${esc(
      `${i}: "${e.text}", ${EXIT_WORDS[kind]}${e.rolledBack ? ", rolled back" : ""}, confidence ${e.confidence.toFixed(3)}${e.threshold === null ? "" : `, threshold ${e.threshold.toFixed(3)}`}`,
    )}</title></circle>`;
  });
  if (trace.every((e) => e.confidence === null)) {
    out += `<text x="${W / 2}" y="${H / 2}" text-anchor="middle" fill="#555">${trace.length === 0 ? "no tokens yet" : "this strategy measures no confidence"}</text>`;
  }
  svg.innerHTML = out;
}

/** The fitted densities (if any), the threshold, and this generation's observations as ticks. */
export function drawBeta(svg: SVGSVGElement, state: AdaptiveState | null, seen: Observation[]): void {
  const W = fit(svg);
  const PLOT_W = W - PAD.left - PAD.right;
  const curves = state ? densityCurves(state) : null;
  const yMax = curves ? curves.yMax : 1;
  const x = (c: number) => PAD.left + PLOT_W * c;
  const y = (v: number) => PAD.top + PLOT_H * (1 - Math.min(v, yMax) / yMax);
  let out = axes(W, yMax, "density", [0, 0.25, 0.5, 0.75, 1].map((c) => [x(c), String(c)]), "shallow confidence");
  if (curves) {
    for (const cls of ["consistent", "inconsistent"] as const) {
      const d = curves.x.map((c, i) => `${i === 0 ? "M" : "L"}${f(x(c))},${f(y(curves[cls][i]))}`).join("");
      out += `<path class="density ${cls}" d="${d}" fill="none" stroke="${COLOURS[cls]}" stroke-width="2"${cls === "inconsistent" ? ' stroke-dasharray="6 3"' : ""}/>`;
    }
  } else {
    out += `<text x="${W / 2}" y="${f(PAD.top + PLOT_H * 0.75)}" text-anchor="middle" fill="#555">no fit yet: too few checked tokens</text>`;
  }
  for (const o of seen) {
    const colour = o.agrees ? COLOURS.consistent : COLOURS.inconsistent;
    const base = PAD.top + PLOT_H;
    out += `<line class="seen ${o.agrees ? "consistent" : "inconsistent"}" x1="${f(x(o.confidence))}" x2="${f(x(o.confidence))}" y1="${base}" y2="${base - (o.agrees ? 10 : 18)}" stroke="${colour}" stroke-width="1.5"/>`;
  }
  if (state) {
    const t = state.threshold;
    out += `<line class="threshold-line" x1="${f(x(t))}" x2="${f(x(t))}" y1="${PAD.top}" y2="${PAD.top + PLOT_H}" stroke="${COLOURS.threshold}" stroke-dasharray="5 3" stroke-width="1.5"/>`;
    const right = x(t) > W - 130; // keep the label inside the plot, below the legend
    out += `<text class="halo" x="${f(right ? x(t) - 4 : x(t) + 4)}" y="${PAD.top + PLOT_H / 2}" text-anchor="${right ? "end" : "start"}" fill="#111">threshold ${t.toFixed(3)}</text>`;
  }
  out += `<text class="halo" x="${W - PAD.right - 6}" y="${PAD.top + 14}" text-anchor="end" fill="${COLOURS.consistent}">— consistent</text>`;
  out += `<text class="halo" x="${W - PAD.right - 6}" y="${PAD.top + 30}" text-anchor="end" fill="${COLOURS.inconsistent}">- - inconsistent</text>`;
  svg.innerHTML = out;
}

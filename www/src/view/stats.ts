// The live numbers (pure): tokens/s, exit rate, decoder blocks per token, and the speedup of
// a run against the full model. Unit-tested in test/unit/stats.test.mjs.

import type { Counters, TraceEntry } from "free-wasm";
import type { ModelShape } from "./trace.js";

/** The decided tokens that stand: the trace without rolled-back entries (EOS included). */
export function standing(trace: TraceEntry[]): TraceEntry[] {
  return trace.filter((e) => !e.rolledBack);
}

/** Share of standing tokens an early exit emitted (fewer than L blocks), or null for none. */
export function exitRate(trace: TraceEntry[], shape: ModelShape): number | null {
  const out = standing(trace);
  if (out.length === 0) return null;
  return out.filter((e) => e.exit < shape.decoderBlocks).length / out.length;
}

/**
 * Decoder blocks run so far, counting each row of a multi-row deep pass
 * (docs/method.md#how-results-are-measured),
 * from the trace alone, whatever the strategy, for the numbers shown while generating: the
 * blocks of each token's exit (full: L; static and CALM: where it exited; FREE: S for a token
 * still on the stack), and L for every token a deep pass checked. Equals the package's `counters.blockRows` except after exact mode's
 * final flush rolls back (that correction ran no shallow step) and, on WebGPU, for steps run
 * ahead and thrown away (`counters.aheadDiscarded`), so the final figure comes from the
 * counters.
 */
export function estimateBlockRows(trace: TraceEntry[], shape: ModelShape): number {
  // a token a deep pass checked ran all L (S in its shallow step, L - S in the pass)
  return trace.reduce((n, e) => n + (e.sync === null ? e.exit : shape.decoderBlocks), 0);
}

/** Blocks per standing token, from the counters once the package returns them. */
export function blocksPerToken(blockRows: number, trace: TraceEntry[]): number | null {
  const n = standing(trace).length;
  return n === 0 ? null : blockRows / n;
}

/** When a generation's events arrived (performance.now() milliseconds). */
export interface Timing {
  /** generate was called. */
  start: number;
  /** The first token event. */
  first: number | null;
  /** The latest token event (or the end). */
  last: number | null;
}

/** Milliseconds per standing token after the first (decoding only), or null before two. */
export function decodeMsPerToken(tokens: number, timing: Timing): number | null {
  if (timing.first === null || timing.last === null || tokens < 2 || timing.last <= timing.first) return null;
  return (timing.last - timing.first) / (tokens - 1);
}

/** Standing tokens per second after the first token, or null before two. */
export function decodeTokensPerSecond(tokens: number, timing: Timing): number | null {
  const ms = decodeMsPerToken(tokens, timing);
  return ms === null ? null : 1000 / ms;
}

/** Milliseconds per standing token over the whole generation (the encoder and first step included). */
export function msPerToken(tokens: number, timing: Timing): number | null {
  if (timing.last === null || tokens === 0) return null;
  return (timing.last - timing.start) / tokens;
}

/** The speedup of a run against `full` on the same input: full's time per token over the run's. */
export function speedup(fullMsPerToken: number | null, runMsPerToken: number | null): number | null {
  if (fullMsPerToken === null || runMsPerToken === null || runMsPerToken <= 0) return null;
  return fullMsPerToken / runMsPerToken;
}

/** The deep passes' sizes in words, e.g. "5 deep passes, 1.8 rows each". */
export function deepPassSummary(counters: Counters): string {
  const n = counters.deepPasses.length;
  if (n === 0) return "no deep passes";
  const rows = counters.deepPasses.reduce((a, b) => a + b, 0) / n;
  return `${n} deep pass${n === 1 ? "" : "es"}, ${rows.toFixed(1)} rows each`;
}

// Unit tests of src/view/stats.ts: exit rate, blocks per token (the trace estimate against
// the counters' definition), tokens/s, time per token and speedup.
import assert from "node:assert/strict";
import { test } from "node:test";
import { blocksPerToken, decodeMsPerToken, decodeTokensPerSecond, deepPassSummary, estimateBlockRows, exitRate, msPerToken, speedup, standing } from "./dist/stats.js";
import { SHAPE, entry, shallow } from "./entries.mjs";

test("exitRate counts standing tokens emitted before the last block", () => {
  const trace = [shallow(), shallow({ rolledBack: true }), entry(), entry({ exit: 5 })];
  assert.equal(standing(trace).length, 3);
  assert.equal(exitRate(trace, SHAPE), 2 / 3);
  assert.equal(exitRate([], SHAPE), null);
});

test("estimateBlockRows from the trace alone, for every strategy", () => {
  const deep = [entry(), entry(), entry()];
  assert.equal(estimateBlockRows(deep, SHAPE), 24);
  assert.equal(estimateBlockRows([entry({ exit: 2 }), entry({ exit: 2 })], SHAPE), 4);
  assert.equal(estimateBlockRows([entry({ exit: 3 }), entry({ exit: 8 })], SHAPE), 11);
  // FREE: two stacked tokens and a deep token, checked in one 3-row pass: 3 steps of 2 blocks
  // and 3 rows through the 6 deep blocks, as counters.blockRows counts them.
  const free = [shallow({ sync: 0, deepToken: 100 }), shallow({ sync: 0, deepToken: 100 }), entry({ sync: 0, deepToken: 100 })];
  assert.equal(estimateBlockRows(free, SHAPE), 3 * 2 + 3 * 6);
  // A token still on the stack has paid its shallow step only.
  assert.equal(estimateBlockRows([...free, shallow()], SHAPE), 3 * 2 + 3 * 6 + 2);
});

test("blocksPerToken divides by standing tokens", () => {
  assert.equal(blocksPerToken(24, [entry(), entry(), entry()]), 8);
  assert.equal(blocksPerToken(30, [shallow(), shallow({ rolledBack: true }), entry()]), 15);
  assert.equal(blocksPerToken(0, []), null);
});

test("tokens per second, time per token and speedup", () => {
  const timing = { start: 1000, first: 1100, last: 1500 };
  assert.equal(decodeMsPerToken(5, timing), 100); // 4 tokens after the first in 400 ms
  assert.equal(decodeTokensPerSecond(5, timing), 10);
  assert.equal(decodeTokensPerSecond(1, timing), null);
  assert.equal(decodeTokensPerSecond(5, { start: 0, first: null, last: null }), null);
  assert.equal(msPerToken(5, timing), 100);
  assert.equal(msPerToken(0, timing), null);
  assert.equal(speedup(100, 50), 2);
  assert.equal(speedup(null, 50), null);
});

test("deepPassSummary", () => {
  assert.equal(deepPassSummary({ blockRows: 0, headRows: 0, deepPasses: [], rollbacks: 0 }), "no deep passes");
  assert.equal(deepPassSummary({ blockRows: 0, headRows: 0, deepPasses: [1, 3, 2, 1], rollbacks: 0 }), "4 deep passes, 1.8 rows each");
  assert.equal(deepPassSummary({ blockRows: 0, headRows: 0, deepPasses: [2], rollbacks: 0 }), "1 deep pass, 2.0 rows each");
});

// Unit tests of src/view/trace.ts: rebuilding the trace from events, exit classes, deep-pass
// groups and their captions, the tooltip's lines, the estimator's observations.
import assert from "node:assert/strict";
import { test } from "node:test";
import { applyEvent, describeToken, exitKind, groupLabel, groupTrace, observations, tokenClasses, displayText } from "./dist/trace.js";
import { SHAPE, entry, shallow } from "./entries.mjs";

test("applyEvent appends new tokens and replaces from `from` on", () => {
  const trace = [];
  const a = shallow({ index: 0, token: 5 });
  const b = shallow({ index: 1, token: 6 });
  applyEvent(trace, { from: 0, entries: [a] });
  applyEvent(trace, { from: 1, entries: [b] });
  assert.deepEqual(trace.map((e) => e.token), [5, 6]);
  // A deep pass rewrites both stacked tokens and adds its own.
  const checked = [{ ...a, sync: 0, deepToken: 5 }, { ...b, sync: 0, deepToken: 6 }, entry({ index: 2, token: 7, sync: 0, deepToken: 7 })];
  applyEvent(trace, { from: 0, entries: checked });
  assert.deepEqual(trace.map((e) => [e.token, e.sync]), [[5, 0], [6, 0], [7, 0]]);
  applyEvent(trace, { from: 3, entries: [] });
  assert.equal(trace.length, 3);
});

test("exitKind: the shallow exit, the deep model, and CALM's exits between", () => {
  assert.equal(exitKind(entry({ exit: 2 }), SHAPE), "shallow");
  assert.equal(exitKind(entry({ exit: 8 }), SHAPE), "deep");
  assert.equal(exitKind(entry({ exit: 5 }), SHAPE), "mid");
  assert.equal(exitKind(entry({ exit: 2 }), { decoderBlocks: 8, shallowExit: null }), "mid");
});

test("tokenClasses marks stacked, unchecked, rolled-back and disputed tokens", () => {
  assert.deepEqual(tokenClasses(entry({ sync: 0, deepToken: 100 }), SHAPE), ["tok", "exit-deep"]);
  assert.deepEqual(tokenClasses(shallow(), SHAPE), ["tok", "exit-shallow", "stacked", "unchecked"]);
  assert.deepEqual(tokenClasses(shallow({ sync: 1, deepToken: 100 }), SHAPE), ["tok", "exit-shallow", "stacked"]);
  assert.deepEqual(tokenClasses(shallow({ sync: 1, deepToken: 9 }), SHAPE), ["tok", "exit-shallow", "stacked", "disagreed"]);
  assert.deepEqual(tokenClasses(shallow({ sync: 1, deepToken: 9, rolledBack: true }), SHAPE), ["tok", "exit-shallow", "stacked", "rolled-back"]);
  assert.deepEqual(tokenClasses(entry({ exit: 5 }), SHAPE), ["tok", "exit-mid"]);
  assert.deepEqual(tokenClasses(entry({ text: " " }), SHAPE), ["tok", "exit-deep", "space"]);
});

test("groupTrace: stacked tokens and their deep pass form one group; lone tokens stay single", () => {
  const trace = [
    entry({ sync: 0, deepToken: 100 }), // a deep pass with an empty stack
    shallow({ sync: 1, deepToken: 100 }),
    shallow({ sync: 1, deepToken: 100 }),
    entry({ sync: 1, deepToken: 100 }),
    entry(), // full/static/CALM style: no deep pass
    shallow(),
    shallow(),
  ];
  const groups = groupTrace(trace);
  assert.deepEqual(
    groups.map((g) => [g.kind, g.sync, g.start, g.entries.length]),
    [["single", 0, 0, 1], ["sync", 1, 1, 3], ["single", null, 4, 1], ["waiting", null, 5, 2]],
  );
  assert.equal(groups.reduce((n, g) => n + g.entries.length, 0), trace.length);
  assert.equal(groupLabel(groups[1], false), "deep pass 1: 2 stacked tokens checked");
  assert.equal(groupLabel(groups[3], false), "2 tokens waiting on the stack");
  assert.equal(groupLabel(groups[3], true), "2 tokens never checked: generation ended with them on the stack");
  assert.equal(groupLabel(groups[0], true), "");
});

test("groupTrace: an exact-mode rollback stays inside its deep pass's group", () => {
  // Three stacked tokens; the deep model disagrees with the second: it and the third are
  // rolled back and the deep model's token takes the second's position.
  const trace = [
    shallow({ index: 0, token: 1, sync: 0, deepToken: 1 }),
    shallow({ index: 1, token: 2, sync: 0, deepToken: 9, rolledBack: true }),
    shallow({ index: 2, token: 3, sync: 0, deepToken: 4, rolledBack: true }),
    entry({ index: 1, token: 9, sync: 0, deepToken: 9, confidence: null, threshold: null }),
    shallow({ index: 2, token: 10 }),
  ];
  const groups = groupTrace(trace);
  assert.deepEqual(groups.map((g) => [g.kind, g.entries.length]), [["sync", 4], ["waiting", 1]]);
  assert.equal(groupLabel(groups[0], false), "deep pass 0: 3 stacked tokens checked, 2 rolled back");
  assert.deepEqual(tokenClasses(trace[1], SHAPE), ["tok", "exit-shallow", "stacked", "rolled-back"]);
});

test("describeToken names the exit, confidence, threshold and the deep model's choice", () => {
  assert.deepEqual(describeToken(shallow({ index: 3, confidence: 0.91234, threshold: 0.3, sync: 2, deepToken: 9, deepText: " nine" }), SHAPE), [
    '" tok" (token 100) at position 3',
    "decided by the shallow exit after 2 of 8 decoder blocks",
    "confidence 0.912, threshold in force 0.300",
    'deep model\'s choice: " nine" (disagrees)',
    "waited on the stack until deep pass 2",
  ]);
  const deep = describeToken(entry({ index: 0, confidence: null, threshold: null, sync: 0, deepToken: 100, deepText: " tok" }), SHAPE);
  assert.equal(deep[1], "decided by the deep model after 8 of 8 decoder blocks");
  assert.equal(deep[2], "confidence not measured, threshold in force none");
  assert.equal(deep[3], 'deep model\'s choice: " tok" (agrees)');
  const rolled = describeToken(shallow({ sync: 0, deepToken: 9, deepText: " nine", rolledBack: true }), SHAPE);
  assert.equal(rolled.at(-1), "rolled back: the deep model chose another token here (exact mode)");
  assert.equal(describeToken(shallow(), SHAPE)[3], "deep model: not run here (no deep pass checked it)");
});

test("displayText shows the end token and line breaks", () => {
  assert.equal(displayText(entry({ text: "" })), "⟨end⟩");
  assert.equal(displayText(entry({ text: "a\nb" })), "a⏎b");
  assert.equal(displayText(entry({ text: " word" })), " word");
  assert.equal(displayText(entry({ text: " " })), "␣");
});

test("observations: stacked tokens a deep pass checked, with agreement", () => {
  const trace = [
    shallow({ confidence: 0.8, sync: 0, deepToken: 100 }),
    shallow({ confidence: 0.4, sync: 0, deepToken: 7 }),
    entry({ confidence: 0.2, sync: 0, deepToken: 100 }), // the deep pass's own row: agreement unknown
    shallow({ confidence: 0.95 }), // not checked yet
  ];
  assert.deepEqual(observations(trace), [
    { confidence: 0.8, agrees: true },
    { confidence: 0.4, agrees: false },
  ]);
});

// Unit tests of src/view/diff.ts: the longest common subsequence marks of both sides.
import assert from "node:assert/strict";
import { test } from "node:test";
import { diffTokens } from "./dist/diff.js";

const marks = (side) => side.map((t) => (t.changed ? `[${t.text}]` : t.text)).join("|");

test("identical outputs have nothing marked", () => {
  const d = diffTokens(["a", "b"], ["a", "b"]);
  assert.equal(d.same, 2);
  assert.equal(marks(d.left), "a|b");
  assert.equal(marks(d.right), "a|b");
});

test("a replaced token and an extra one are marked on their own side", () => {
  const d = diffTokens(["the", " cat", " sat", "."], ["the", " dog", " sat", " down", "."]);
  assert.equal(d.same, 3);
  assert.equal(marks(d.left), "the|[ cat]| sat|.");
  assert.equal(marks(d.right), "the|[ dog]| sat|[ down]|.");
});

test("empty sides", () => {
  assert.equal(marks(diffTokens([], ["x"]).right), "[x]");
  assert.equal(diffTokens([], []).same, 0);
});

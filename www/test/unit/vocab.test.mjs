// Unit tests of src/view/vocab.ts, on a small vocabulary and on the demo model's tokenizer.json.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { vocabulary } from "./dist/vocab.js";

test("Unigram pieces by position, word marks as spaces, added tokens, unknown ids", () => {
  const text = vocabulary({ model: { vocab: [["<pad>", 0], ["</s>", 0], ["▁the", -1], ["s", -2]] }, added_tokens: [{ id: 1, content: "</s>" }], decoder: { replacement: "▁" } });
  assert.equal(text(2), " the");
  assert.equal(text(3), "s");
  assert.equal(text(1), "</s>");
  assert.equal(text(99), "#99");
});

test("BPE-style vocabularies map piece -> id", () => {
  const text = vocabulary({ model: { vocab: { hello: 0, "▁world": 1 } } });
  assert.equal(text(0), "hello");
  assert.equal(text(1), " world");
});

test("the demo model's tokenizer.json", () => {
  const json = JSON.parse(readFileSync(new URL("../../../models/free-t5-mini/tokenizer.json", import.meta.url), "utf8"));
  const text = vocabulary(json);
  assert.equal(text(0), "<pad>");
  assert.equal(text(1), "</s>");
  assert.equal(text(json.model.vocab.length - 1), json.model.vocab.at(-1)[0].split("▁").join(" "));
  assert.equal(text(json.model.vocab.length), `#${json.model.vocab.length}`);
});

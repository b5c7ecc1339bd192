// Picks the demo page's built-in examples from the test split (../data/test.jsonl) and writes
// src/examples.json: per task, the first 5 rows in file order whose source is of a size that
// reads well in the page (summarize: 25-60 words; translate: 6-25 words) and holds no list
// lines. Deterministic: the same data gives the same file.
// Usage (from www/): node scripts/pick-examples.mjs
import { readFileSync, writeFileSync } from "node:fs";

const PER_TASK = 5;
const WORDS = { summarize: [25, 60], translate: [6, 25] };

const rows = readFileSync(new URL("../../data/test.jsonl", import.meta.url), "utf8")
  .split("\n")
  .filter((line) => line.trim() !== "")
  .map((line) => JSON.parse(line));

const picked = [];
for (const [task, [min, max]] of Object.entries(WORDS)) {
  const fits = rows.filter((r) => {
    if (r.task !== task || /^\s*[*-]/m.test(r.source)) return false;
    const words = r.source.split(/\s+/).length;
    return words >= min && words <= max;
  });
  if (fits.length < PER_TASK) throw new Error(`only ${fits.length} ${task} rows fit; loosen WORDS`);
  for (const r of fits.slice(0, PER_TASK)) picked.push({ id: r.id, task: r.task, source: r.source, target: r.target });
}
writeFileSync(new URL("../src/examples.json", import.meta.url), JSON.stringify(picked, null, 2) + "\n");
console.log(`pick-examples: ${picked.length} examples written to src/examples.json`);

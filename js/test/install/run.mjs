// Drives the install test's page (built by Vite into DIST) in Debian's Chromium through
// playwright-core, and checks it against the native CLI: for each case the page's tokens
// must equal `free generate --json`'s, on the main thread and in the worker, from the
// network and then from Cache Storage with the network to the model cut off; and that
// faults are handled: a download that breaks off resumes (or fails saying what to do), and
// a full Cache Storage quota leaves a loaded model and a warning.
// Usage: node run.mjs DIST MODEL_DIR FREE_CLI   (prints "N passed, M failed")
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { cpSync, readFileSync, statSync } from "node:fs";
import { createServer } from "node:http";
import { join, resolve } from "node:path";
import { chromium } from "playwright-core";
import { serve } from "../../../scripts/serve-child.mjs";

const [dist, modelDir, cli] = process.argv.slice(2).map((p) => resolve(p));
if (!cli) throw new Error("usage: node run.mjs DIST MODEL_DIR FREE_CLI");

/** @type {import("./main.ts").Case[]} */
const cases = [
  // The adaptive threshold: the page's model and the CLI both start from free.json's (its
  // calibration, when it ships one).
  { text: "This package provides tools to read and write compressed archives in many formats.", options: { task: "summarize", strategy: "free", maxNewTokens: 24 } },
  { text: "A small library for parsing command line options.", options: { task: "translate", strategy: "free-exact", threshold: 0.3, maxNewTokens: 24 } },
  { text: "Utilities to manage disk partitions.", options: { task: "summarize", strategy: "full", maxNewTokens: 16 } },
];

function cliTokens({ text, options }, dtype) {
  const args = ["generate", "--model", modelDir, "--json", "--task", options.task, "--strategy", options.strategy, "--max-new-tokens", String(options.maxNewTokens)];
  if (dtype !== undefined) args.push("--dtype", dtype);
  if (options.threshold !== undefined) args.push("--threshold", String(options.threshold));
  return JSON.parse(execFileSync(cli, [...args, text], { encoding: "utf8" })).tokens;
}
const expected = cases.map((c) => cliTokens(c));
// A generation long enough for calls made meanwhile to land while it runs: snapshot 7's full
// model loops to the 96-token cap on it, and a faithful translation would still take dozens
// of decoder steps.
const longCase = {
  text: "This package provides a library and command line tools to read, write, compress and convert archives in many formats, with support for encryption, streaming and large files.",
  options: { task: "translate", strategy: "full", maxNewTokens: 96 },
};
const expectedLong = cliTokens(longCase);
console.log(`free generate: ${expected.map((t, i) => `${cases[i].options.strategy} ${t.length} tokens`).join(", ")}`);

// The model is served from dist/model/ beside the page.
cpSync(modelDir, join(dist, "model"), { recursive: true, filter: (src) => !src.endsWith(".log") });
const weightsSize = statSync(join(modelDir, "model.safetensors")).size;

/**
 * A second model server, on another origin, with faults on demand: it answers Range
 * requests (exposing Content-Range, as a CDN would) unless `flaky.ranges` is false, and on
 * the next `flaky.cuts` requests for model.safetensors it sends `flaky.cutAt` bytes of the
 * body and then drops the connection. `weightRequests`: the byte each weights answer began at.
 * Each file's ETag is a hash of what `served` holds now (a test changes a file there).
 */
const flaky = { cuts: 0, cutAt: 0, ranges: true, validators: true, weightRequests: [], afterCut: null };
const served = Object.fromEntries(["config.json", "model.safetensors", "tokenizer.json", "free.json"].map((f) => [f, readFileSync(join(modelDir, f))]));
/** What the exporter's checksums.json says of `weights` (the folder's declaration of its weights). */
const checksums = (weights) => Buffer.from(JSON.stringify({ "model.safetensors": { bytes: weights.length, sha256: createHash("sha256").update(weights).digest("hex") } }));
served["checksums.json"] = checksums(served["model.safetensors"]);
/** The weights under a header that differs in one byte: another file of the same size (another ETag and hash), as valid. */
function otherWeights(original) {
  const replaced = Buffer.from(original);
  const headerEnd = 8 + Number(original.readBigUInt64LE(0));
  const at = original.subarray(8, headerEnd).indexOf('"pt"');
  assert.ok(at >= 0, "the weights' header names its format");
  replaced.write('"PT"', 8 + at);
  return replaced;
}
const flakyServer = createServer((req, res) => {
  const headers = { "access-control-allow-origin": "*", "access-control-allow-headers": "range", "access-control-expose-headers": "content-range, etag", "accept-ranges": "bytes", "cache-control": "no-store" };
  if (req.method === "OPTIONS") return void res.writeHead(204, headers).end();
  const name = new URL(req.url, "http://x").pathname.split("/").pop();
  const data = served[name];
  if (!data) return void res.writeHead(404, headers).end();
  const range = flaky.ranges ? /^bytes=(\d+)-$/.exec(req.headers.range ?? "") : null;
  const from = range ? Number(range[1]) : 0;
  const body = data.subarray(from);
  if (range) headers["content-range"] = `bytes ${from}-${data.length - 1}/${data.length}`;
  if (flaky.validators) headers.etag = `"${createHash("sha256").update(data).digest("hex").slice(0, 16)}"`;
  res.writeHead(range ? 206 : 200, { ...headers, "content-type": "application/octet-stream", "content-length": body.length });
  if (req.method === "HEAD") return void res.end();
  if (name !== "model.safetensors") return void res.end(body);
  flaky.weightRequests.push(from);
  if (flaky.cuts === 0) return void res.end(body);
  flaky.cuts--;
  res.write(body.subarray(0, flaky.cutAt), () => res.destroy());
  flaky.afterCut?.();
});
await new Promise((resolve) => flakyServer.listen(0, "127.0.0.1", resolve));
const flakyUrl = `http://127.0.0.1:${flakyServer.address().port}/model/`;

const server = await serve(dist);
const port = server.port;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  // WebGPU through SwiftShader (a software adapter), as in ../../../webdriver.json.
  args: ["--no-sandbox", "--enable-unsafe-webgpu", "--enable-features=Vulkan", "--use-webgpu-adapter=swiftshader", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});

let passed = 0;
let failed = 0;
async function check(name, fn) {
  try {
    await fn();
    passed++;
    console.log(`ok   ${name}`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}\n${e instanceof Error ? e.message : e}`);
  }
}

/** Checks a scenario's report; `fromCache` says where the files must have come from. */
function checkReport(report, fromCache) {
  report.results.forEach((r, i) => {
    assert.deepEqual(r.tokens, expected[i], `case ${i} (${cases[i].options.strategy}): tokens differ from free generate's`);
    assert.ok(r.streamMatchesTrace, `case ${i}: the trace rebuilt from onToken events differs from the returned trace`);
    assert.ok(r.events >= r.tokens.length, `case ${i}: ${r.events} token events for ${r.tokens.length} tokens`);
    const { encodeMs, decodeMs } = r.timings;
    assert.ok(encodeMs > 0 && decodeMs > 0, `case ${i}: timings should be positive: ${JSON.stringify(r.timings)}`);
    assert.ok(encodeMs + decodeMs <= r.wallMs, `case ${i}: timings ${JSON.stringify(r.timings)} exceed the call's ${r.wallMs} ms`);
  });
  const files = Object.fromEntries(report.progress.map((p) => [p.file, p]));
  assert.deepEqual(Object.keys(files).sort(), ["config.json", "free.json", "model.safetensors", "tokenizer.json"]);
  assert.deepEqual(files["model.safetensors"], { file: "model.safetensors", loaded: weightsSize, total: weightsSize, fromCache });
  assert.ok(report.progress.every((p) => p.fromCache === fromCache), `every file should come ${fromCache ? "from the cache" : "from the network"}`);
  assert.equal(report.aborted, "AbortError: stopped by the test");
  assert.ok(report.rejectedWithReason, "generate should reject with the reason given to abort()");
  assert.equal(report.eventsBeforeAbort, 2, "no token event after the abort");
  assert.equal(report.decoderBlocks, 8);
  assert.equal(report.shallowExitLayer, 2);
  assert.ok(report.threshold >= 0 && report.threshold <= 1);
}

try {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(`http://127.0.0.1:${port}/index.html`);
  await page.waitForFunction(() => document.getElementById("status")?.textContent === "ready", null, { timeout: 30_000 });
  const baseUrl = "model/";

  await check("main thread: load with progress, tokens equal free generate's, streaming, abort, dispose", async () => {
    const report = await page.evaluate(([b, c]) => window.freeTest.mainThread(b, c), [baseUrl, cases]);
    checkReport(report, false);
    assert.equal(report.afterDispose, "Error: this FreeModel was disposed; load the model again with FreeModel.load to use it");
  });
  await check("the table of strategies is the Rust one, and the options follow it on the main thread and in the wasm layer", async () => {
    const r = await page.evaluate((b) => window.freeTest.strategies(b), baseUrl);
    assert.deepEqual(r.table.map((s) => [s.name, s.threshold, s.exitsEarly, s.exact]), [
      ["free", "fixedOrAdaptive", true, false],
      ["free-exact", "fixedOrAdaptive", true, true],
      ["full", "none", false, true],
      ["static", "none", true, false],
      ["calm", "fixed", true, false],
    ]);
    assert.equal(r.sameInWorker, true);
    for (const { name, threshold } of r.table) {
      assert.equal(r.adaptive[name] === "ok", threshold === "fixedOrAdaptive", `${name} with threshold "adaptive": ${r.adaptive[name]}`);
      assert.equal(r.fixed[name] === "ok", threshold !== "none", `${name} with a fixed threshold: ${r.fixed[name]}`);
    }
    assert.equal(r.adaptive.calm, 'TypeError: threshold "adaptive" applies to the free and free-exact strategies, not calm; give a number in [0, 1]');
    assert.match(r.fixed.full, /full runs every block for every token and has no threshold; drop it/);
  });
  await check('device "webgpu": the model runs on WebGPU (SwiftShader) and gives free generate\'s tokens', async () => {
    const result = await page.evaluate(([b, c]) => window.freeTest.webgpu(b, c), [baseUrl, cases[1]]);
    assert.equal(typeof result, "object", `loading or generating on WebGPU failed: ${result}`);
    assert.equal(result.device, "webgpu");
    assert.deepEqual(result.tokens, expected[1], "free-exact on WebGPU: tokens differ from free generate's");
  });
  await check('device "auto" keeps the CPU on a software adapter and says why', async () => {
    const result = await page.evaluate((b) => window.freeTest.auto(b), baseUrl);
    assert.equal(result.device, "cpu");
    assert.match(result.note ?? "", /software renderer/);
  });

  await check('dtype "q8": "auto" keeps the CPU on a software adapter, "webgpu" takes it, and both WebGPU and a worker decode as free generate --dtype q8 does', async () => {
    const result = await page.evaluate(([b, c]) => window.freeTest.eightBit(b, c), [baseUrl, cases[2]]);
    assert.equal(result.auto.device, "cpu");
    assert.match(result.auto.note ?? "", /software renderer/);
    assert.equal(typeof result.webgpu, "object", `device "webgpu" with dtype "q8" did not load: ${result.webgpu}`);
    assert.equal(result.webgpu.device, "webgpu");
    const want = cliTokens(cases[2], "q8");
    assert.deepEqual(result.webgpu.tokens, want, "q8 on WebGPU: tokens differ from free generate --dtype q8's");
    assert.deepEqual(result.tokens, want, "q8 in a worker: tokens differ from free generate --dtype q8's");
  });

  await check("a download that breaks off mid-file resumes where it stopped (Range) and gives the same tokens", async () => {
    Object.assign(flaky, { cuts: 1, cutAt: Math.floor(weightsSize * 0.4), weightRequests: [] });
    const result = await page.evaluate(([b, c]) => window.freeTest.loadAndGenerate(b, "main", null, c), [flakyUrl, cases[2]]);
    assert.equal(typeof result, "object", `the load failed: ${result}`);
    assert.deepEqual(result.tokens, expected[2]);
    assert.equal(flaky.weightRequests.length, 2, `weights requested from bytes ${flaky.weightRequests}`);
    assert.ok(flaky.weightRequests[1] > 0 && flaky.weightRequests[1] <= flaky.cutAt, `resumed from byte ${flaky.weightRequests[1]}, cut at ${flaky.cutAt}`);
    assert.deepEqual(result.weights, { file: "model.safetensors", loaded: weightsSize, total: weightsSize, fromCache: false });
    assert.deepEqual(result.warnings, []);
  });
  await check("a download that breaks off while the file is replaced by one of the same size is fetched whole again, never stitched from both", async () => {
    const original = served["model.safetensors"];
    const declared = served["checksums.json"];
    const replaced = otherWeights(original);
    // A folder without checksums.json: what is checked here is the resume alone.
    delete served["checksums.json"];
    Object.assign(flaky, { cuts: 1, cutAt: Math.floor(weightsSize * 0.4), weightRequests: [], afterCut: () => (served["model.safetensors"] = replaced) });
    try {
      const result = await page.evaluate(([b, c]) => window.freeTest.loadAndGenerate(b, "main", null, c), [flakyUrl, cases[2]]);
      assert.equal(typeof result, "object", `the load failed: ${result}`);
      assert.deepEqual(result.tokens, expected[2]);
      // The resume asked from where it stopped, saw another version and took the whole new file.
      assert.equal(flaky.weightRequests.length, 3, `weights requested from bytes ${flaky.weightRequests}`);
      assert.ok(flaky.weightRequests[0] === 0 && flaky.weightRequests[1] > 0 && flaky.weightRequests[2] === 0, `weights requested from bytes ${flaky.weightRequests}`);
    } finally {
      served["model.safetensors"] = original;
      served["checksums.json"] = declared;
      flaky.afterCut = null;
    }
  });
  await check("weights that do not match the folder's checksums.json, or outgrow its size, are refused", async () => {
    const original = served["model.safetensors"];
    try {
      served["model.safetensors"] = otherWeights(original);
      const other = await page.evaluate(([b, c]) => window.freeTest.loadAndGenerate(b, "main", null, c), [flakyUrl, cases[2]]);
      assert.match(String(other), /^Error: http:\/\/127\.0\.0\.1:\d+\/model\/model\.safetensors does not match checksums\.json \(SHA-256 [0-9a-f]{16}…, declared [0-9a-f]{16}…\): the download is corrupt or the folder holds files of two versions; load again$/);
      served["model.safetensors"] = Buffer.concat([original, Buffer.alloc(1 << 20)]);
      flaky.weightRequests = [];
      const larger = await page.evaluate(([b, c]) => window.freeTest.loadAndGenerate(b, "worker", null, c), [flakyUrl, cases[2]]);
      assert.equal(String(larger), `Error: model.safetensors has more than ${original.length} bytes (${original.length + (1 << 20)} or more), the size checksums.json declares for it; the server sends another file than the folder declares`);
      assert.equal(flaky.weightRequests.length, 1, "no resume of a file too large");
    } finally {
      served["model.safetensors"] = original;
    }
  });
  await check("a download that keeps breaking off fails after 3 resumes with an error that says what to do", async () => {
    Object.assign(flaky, { cuts: 100, cutAt: 1_000_000, weightRequests: [] });
    const result = await page.evaluate(([b, c]) => window.freeTest.loadAndGenerate(b, "main", null, c), [flakyUrl, cases[2]]);
    flaky.cuts = 0;
    assert.match(String(result), /^Error: the download of http:\/\/127\.0\.0\.1:\d+\/model\/model\.safetensors broke off at [\d.]+ MB of [\d.]+ MB \(.+\) and 3 attempts to resume it failed; check the connection and load again$/);
    assert.equal(flaky.weightRequests.length, 4);
  });
  await check("a download that breaks off from a server without Range support is fetched whole again", async () => {
    Object.assign(flaky, { cuts: 1, cutAt: Math.floor(weightsSize * 0.4), ranges: false, weightRequests: [] });
    try {
      const result = await page.evaluate(([b, c]) => window.freeTest.loadAndGenerate(b, "main", null, c), [flakyUrl, cases[2]]);
      assert.equal(typeof result, "object", `the load failed: ${result}`);
      assert.deepEqual(result.tokens, expected[2]);
      assert.deepEqual(flaky.weightRequests, [0, 0]);
      assert.deepEqual(result.weights, { file: "model.safetensors", loaded: weightsSize, total: weightsSize, fromCache: false });
    } finally {
      flaky.ranges = true;
    }
  });
  await check("a model folder on another origin is refused unless the caller allows it", async () => {
    const refused = await page.evaluate((b) => window.freeTest.crossOriginRefused(b), flakyUrl);
    const message = `SecurityError: the model folder ${flakyUrl} is on another origin than this page (http://127.0.0.1:${port}); load with allowCrossOrigin: true to allow it, from servers you trust`;
    assert.deepEqual(refused, [message, message]);
  });
  await check("a worker load aborted midway rejects with the abort reason", async () => {
    assert.equal(await page.evaluate((b) => window.freeTest.abortedWorkerLoad(b), flakyUrl), "the abort reason");
  });
  for (const where of ["main", "worker"]) {
    await check(`${where}: while a generation runs, bad options and an abort reject at once, adaptiveState() waits, a throwing onToken ends only its own call`, async () => {
      const r = await page.evaluate(([b, w, l, s]) => window.freeTest.whileGenerating(b, w, l, s), [baseUrl, where, longCase, cases[2]]);
      assert.match(r.badOption, /^TypeError: invalid generate options: unknown field "maxTokens"/);
      assert.equal(r.badOptionWhileRunning, true, "bad options should reject before the running generation ends");
      assert.equal(r.queuedResult, "the abort reason");
      assert.equal(r.abortedWhileRunning, true, "an abort of a queued call should reject before the running generation ends");
      assert.deepEqual(r.tokens, expectedLong);
      assert.equal(typeof r.threshold, "number", `adaptiveState() asked for mid-generation: ${r.threshold}`);
      assert.equal(r.thrown, "Error: from onToken");
      assert.deepEqual(r.after, expected[2]);
    });
  }
  // A lost GPU: the generation moves to the CPU and ends as an uninterrupted CPU run does.
  const warmCase = { text: "A tool to resize images from the command line.", options: { task: "summarize", strategy: "free", maxNewTokens: 24 } };
  const carryCases = [
    [cases[2], ["start", "mid", "eos"]],
    [cases[0], ["start", "stack", "sync", "half", "eos"]],
    [{ text: cases[1].text, options: { task: "translate", strategy: "free-exact", maxNewTokens: 24 } }, ["start", "stack", "sync", "half", "eos"]],
  ];
  /** Equal decisions; thresholds equal within 1e-4 (the warm-up's confidences differ by float rounding between devices). */
  const sameDecisions = (got, want, what) => {
    assert.deepEqual(got.tokens, want.tokens, `${what}: tokens`);
    assert.deepEqual(got.steps, want.steps, `${what}: token, exit, stacked, sync, deepToken, rolledBack per entry`);
    got.thresholds.forEach((t, i) => {
      const w = want.thresholds[i];
      assert.ok(t === w || (t !== null && w !== null && Math.abs(t - w) < 1e-4), `${what}: threshold of entry ${i}: ${t} vs ${w}`);
    });
  };
  for (const [c, points] of carryCases) {
    for (const point of points) {
      await check(`a GPU lost at ${point} (${c.options.strategy}): the generation finishes on the CPU as an uninterrupted CPU run does, and so does the next`, async () => {
        const r = await page.evaluate(([b, w, cc, pt]) => window.freeTest.carryOver(b, w, cc, pt), [baseUrl, warmCase, c, point]);
        assert.equal(typeof r, "object", `the check failed: ${r}`);
        assert.equal(r.deviceBefore, "webgpu");
        assert.notEqual(r.lostAt, null, `the CPU's trace has no ${point} point: ${JSON.stringify(r.reference.steps)}`);
        assert.equal(r.deviceChanges.length, 1, `one device change: ${JSON.stringify(r.deviceChanges)}`);
        assert.deepEqual(r.events, r.deviceChanges, "onDeviceChange heard each change the results report");
        assert.match(r.deviceChanges[0].reason, /WebGPU: the GPU device was lost/);
        assert.ok(r.deviceChanges[0].afterTokens <= r.reference.tokens.length + 1);
        assert.equal(r.deviceAfter, "cpu");
        assert.ok(r.streamMatchesTrace, "the trace rebuilt from onToken events differs from the returned trace");
        sameDecisions(r.carried, r.reference, "the carried generation");
        assert.deepEqual(r.carriedCounts, r.referenceCounts, "the adaptive threshold's consistent and inconsistent points and fits after the generation");
        sameDecisions(r.carriedAgain, r.referenceAgain, "the next generation");
      });
    }
  }
  await check("a worker's lost GPU: the generation finishes on the CPU with its tokens; with carryOver false the loss rejects", async () => {
    const r = await page.evaluate(([b, cc]) => window.freeTest.carryOverWorker(b, cc), [baseUrl, cases[0]]);
    assert.equal(r.failed, undefined, `the check failed: ${r.failed}`);
    assert.equal(r.deviceBefore, "webgpu");
    assert.equal(r.lost, true);
    assert.equal(r.deviceChanges.length, 1);
    assert.deepEqual(r.events, r.deviceChanges);
    assert.equal(r.deviceAfter, "cpu");
    sameDecisions(r.carried, r.reference, "the worker's carried generation");
    assert.match(r.refused, /^DeviceLostError: WebGPU: the GPU device was lost/);
    assert.equal(r.strictDevice, "webgpu");
  });

  await check("a full Cache Storage quota: the model still loads (in a worker), a warning names the file and the fix", async () => {
    const cdp = await page.context().newCDPSession(page);
    const origin = `http://127.0.0.1:${port}`;
    // Room for the small files, not for the weights, beside what earlier checks cached. The
    // usage is read once it has settled: a cache deleted just before (the previous check's)
    // is still counted for a while, and a quota above that stale figure let the weights in.
    let usage = (await cdp.send("Storage.getUsageAndQuota", { origin })).usage;
    for (let i = 0; i < 40; i++) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      const now = (await cdp.send("Storage.getUsageAndQuota", { origin })).usage;
      if (now === usage) break;
      usage = now;
    }
    await cdp.send("Storage.overrideQuotaForOrigin", { origin, quotaSize: usage + 2_000_000 });
    try {
      const result = await page.evaluate(([b, c]) => window.freeTest.loadAndGenerate(b, "worker", "free-wasm-quota-test", c), [flakyUrl, cases[2]]);
      assert.equal(typeof result, "object", `the load failed: ${result}`);
      assert.deepEqual(result.tokens, expected[2]);
      assert.equal(result.warnings.length, 1, `warnings: ${JSON.stringify(result.warnings)}`);
      assert.match(result.warnings[0], /^model\.safetensors could not be kept in Cache Storage \(QuotaExceededError: .*\), so the next load downloads it again; free some of this site's storage/);
      assert.deepEqual(result.cached, ["config.json", "free.json", "tokenizer.json"]);
    } finally {
      await page.evaluate(() => caches.delete("free-wasm-quota-test"));
      await cdp.send("Storage.overrideQuotaForOrigin", { origin });
    }
  });

  await check("two loads at once (main thread and worker, one cache) both finish and give the same tokens", async () => {
    const results = await page.evaluate(
      ([b, c]) => Promise.all([window.freeTest.loadAndGenerate(b, "main", "free-wasm-twice", c), window.freeTest.loadAndGenerate(b, "worker", "free-wasm-twice", c)]),
      [baseUrl, cases[1]],
    );
    await page.evaluate(() => caches.delete("free-wasm-twice"));
    for (const r of results) {
      assert.equal(typeof r, "object", `a load failed: ${r}`);
      assert.deepEqual(r.tokens, expected[1]);
      assert.deepEqual(r.warnings, []);
    }
  });
  await check("a cached file that changed on the server is downloaded again, the unchanged ones come from the cache", async () => {
    const cacheName = "free-wasm-revalidate";
    const original = served["free.json"];
    try {
      const first = await page.evaluate(([b, n]) => window.freeTest.cachedLoad(b, n), [flakyUrl, cacheName]);
      assert.deepEqual(first.fromCache, { "config.json": false, "free.json": false, "model.safetensors": false, "tokenizer.json": false });
      // The start threshold: the calibration's, if free.json ships one, else free.json's.
      const settings = JSON.parse(original);
      assert.equal(first.threshold, settings.calibration?.threshold ?? settings.threshold);
      served["free.json"] = Buffer.from(JSON.stringify({ ...settings, calibration: undefined, threshold: 0.25 }));
      const second = await page.evaluate(([b, n]) => window.freeTest.cachedLoad(b, n), [flakyUrl, cacheName]);
      assert.deepEqual(second.fromCache, { "config.json": true, "free.json": false, "model.safetensors": true, "tokenizer.json": true });
      assert.equal(second.threshold, 0.25);
      const third = await page.evaluate(([b, n]) => window.freeTest.cachedLoad(b, n), [flakyUrl, cacheName]);
      assert.deepEqual(third, { ...second, fromCache: { ...second.fromCache, "free.json": true } });
    } finally {
      served["free.json"] = original;
      await page.evaluate((n) => caches.delete(n), cacheName);
    }
  });

  await check("without ETag or Last-Modified, a cached file is told from a changed one of the same size by checksums.json's hash", async () => {
    const cacheName = "free-wasm-revalidate-hash";
    const original = served["model.safetensors"];
    const declared = served["checksums.json"];
    flaky.validators = false;
    try {
      const first = await page.evaluate(([b, n]) => window.freeTest.cachedLoad(b, n), [flakyUrl, cacheName]);
      assert.deepEqual(first.fromCache, { "config.json": false, "free.json": false, "model.safetensors": false, "tokenizer.json": false });
      const second = await page.evaluate(([b, n]) => window.freeTest.cachedLoad(b, n), [flakyUrl, cacheName]);
      assert.deepEqual(second.fromCache, { "config.json": true, "free.json": true, "model.safetensors": true, "tokenizer.json": true });
      served["model.safetensors"] = otherWeights(original);
      served["checksums.json"] = checksums(served["model.safetensors"]);
      const third = await page.evaluate(([b, n]) => window.freeTest.cachedLoad(b, n), [flakyUrl, cacheName]);
      assert.deepEqual(third.fromCache, { "config.json": true, "free.json": true, "model.safetensors": false, "tokenizer.json": true });
    } finally {
      flaky.validators = true;
      served["model.safetensors"] = original;
      served["checksums.json"] = declared;
      await page.evaluate((n) => caches.delete(n), cacheName);
    }
  });

  // From here on the model folder is unreachable: only Cache Storage can provide it. Loads
  // still ask whether a cached file changed (HEAD) and for the folder's checksums.json (GET,
  // never cached), and use the copies when nobody answers.
  const blocked = [];
  await page.context().route("**/model/**", (route) => {
    blocked.push(`${route.request().method()} ${new URL(route.request().url()).pathname.split("/").pop()}`);
    return route.abort("internetdisconnected");
  });
  await check("main thread, offline: the model comes from Cache Storage and generates the same tokens", async () => {
    const report = await page.evaluate(([b, c]) => window.freeTest.mainThread(b, c), [baseUrl, cases]);
    checkReport(report, true);
    assert.ok(blocked.every((r) => r.startsWith("HEAD ") || r === "GET checksums.json"), `only the revalidation should have asked the network: ${blocked}`);
  });
  await check("worker, offline: same API, same tokens, files from Cache Storage", async () => {
    const report = await page.evaluate(([b, c]) => window.freeTest.worker(b, c), [baseUrl, cases]);
    checkReport(report, true);
    assert.equal(report.afterDispose, "Error: this FreeWorkerModel was disposed; load the model again with FreeWorkerModel.load to use it");
  });
  await check("no uncaught errors on the page", async () => assert.deepEqual(errors, []));
} finally {
  await browser.close();
  server.stop();
  flakyServer.close();
}
console.log(`npm-install-test: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);

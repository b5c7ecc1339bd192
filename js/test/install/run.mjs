// Drives the install test's page (built by Vite into DIST) in Debian's Chromium through
// playwright-core, and checks it against the native CLI: for each case the page's tokens
// must equal `free generate --json`'s, on the main thread and in the worker, from the
// network and then from Cache Storage with the network to the model cut off.
// Usage: node run.mjs DIST MODEL_DIR FREE_CLI   (prints "N passed, M failed")
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { cpSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { chromium } from "playwright-core";

const [dist, modelDir, cli] = process.argv.slice(2).map((p) => resolve(p));
if (!cli) throw new Error("usage: node run.mjs DIST MODEL_DIR FREE_CLI");

/** @type {import("./main.ts").Case[]} */
const cases = [
  // The adaptive threshold: the page's model and the CLI both start from free.json's.
  { text: "This package provides tools to read and write compressed archives in many formats.", options: { task: "summarize", strategy: "free", maxNewTokens: 24 } },
  { text: "A small library for parsing command line options.", options: { task: "translate", strategy: "free-exact", threshold: 0.3, maxNewTokens: 24 } },
  { text: "Utilities to manage disk partitions.", options: { task: "summarize", strategy: "full", maxNewTokens: 16 } },
];

function cliTokens({ text, options }) {
  const args = ["generate", "--model", modelDir, "--json", "--task", options.task, "--strategy", options.strategy, "--max-new-tokens", String(options.maxNewTokens)];
  if (options.threshold !== undefined) args.push("--threshold", String(options.threshold));
  return JSON.parse(execFileSync(cli, [...args, text], { encoding: "utf8" })).tokens;
}
const expected = cases.map(cliTokens);
console.log(`free generate: ${expected.map((t, i) => `${cases[i].options.strategy} ${t.length} tokens`).join(", ")}`);

// The model is served from dist/model/ beside the page.
cpSync(modelDir, join(dist, "model"), { recursive: true, filter: (src) => !src.endsWith(".log") });
const weightsSize = statSync(join(modelDir, "model.safetensors")).size;

const port = 20000 + Math.floor(Math.random() * 20000);
const server = spawn(process.execPath, [resolve(import.meta.dirname, "../../../scripts/serve.mjs"), dist], { env: { ...process.env, PORT: String(port) }, stdio: "ignore" });
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

  // From here on the model folder is unreachable: only Cache Storage can provide it.
  let blocked = 0;
  await page.context().route("**/model/**", (route) => {
    blocked++;
    return route.abort("internetdisconnected");
  });
  await check("main thread, offline: the model comes from Cache Storage and generates the same tokens", async () => {
    const report = await page.evaluate(([b, c]) => window.freeTest.mainThread(b, c), [baseUrl, cases]);
    checkReport(report, true);
    assert.equal(blocked, 0, "no request should have reached the network");
  });
  await check("worker, offline: same API, same tokens, files from Cache Storage", async () => {
    const report = await page.evaluate(([b, c]) => window.freeTest.worker(b, c), [baseUrl, cases]);
    checkReport(report, true);
    assert.equal(report.afterDispose, "Error: this FreeWorkerModel was disposed; load the model again with FreeWorkerModel.load to use it");
  });
  await check("no uncaught errors on the page", async () => assert.deepEqual(errors, []));
} finally {
  await browser.close();
  server.kill();
}
console.log(`npm-install-test: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);

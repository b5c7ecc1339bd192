// End-to-end tests of the demo page: the built page (www/dist, `npm run build`) served on
// 127.0.0.1 with a real model, driven in Debian's headless Chromium by playwright-core (WebGPU
// through SwiftShader), using the npm package free-wasm as built into ../pkg. Every check
// asserts values read from the page; a screenshot of each state goes to SHOTS.
// Usage (from www/): node test/e2e/run.mjs [MODEL_DIR] [SHOTS]
//   MODEL_DIR default ../models/free-t5-mini; SHOTS default ../target/demo-e2e.
// FREE_CLI: the native `free` binary, whose `generate --dtype q8` the page's 8-bit weights
// must match (scripts/page-test.sh builds and sets it).
// Prints "N passed, M failed"; exits 1 on any failure.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, symlinkSync } from "node:fs";
import { resolve } from "node:path";
import { chromium } from "playwright-core";
import { serve } from "../../../scripts/serve-child.mjs";
import { Page } from "./page.mjs";

const www = resolve(import.meta.dirname, "../..");
const dist = resolve(www, "dist");
const modelDir = resolve(process.argv[2] ?? resolve(www, "../models/free-t5-mini"));
const shots = resolve(process.argv[3] ?? resolve(www, "../target/demo-e2e"));
if (!existsSync(resolve(dist, "index.html"))) throw new Error(`${dist}/index.html is missing: run \`npm run build\` in www/ first`);
const freeCli = process.env.FREE_CLI;
if (!freeCli || !existsSync(freeCli)) throw new Error("FREE_CLI must name the native `free` binary (scripts/page-test.sh builds it)");
mkdirSync(shots, { recursive: true });
// The page loads its model from model/ beside it (its default ?model=).
rmSync(resolve(dist, "model"), { force: true, recursive: true });
symlinkSync(modelDir, resolve(dist, "model"));
// Six sentences to translate: the full model's answer is long whatever its quality (snapshot 7
// repeats itself up to the 128-token cap; the text is 114 tokens, and the test split's French
// references are 1.32x their English in tokens, so a faithful translation is about 150), so
// the checks that look at a generation mid-way do not depend on how a given snapshot behaves.
const longText =
  "This package provides a library and command-line tools to read, write and convert images in many formats. " +
  "It supports colour management, metadata and large files, and it can be used from C, Python and Perl programs. " +
  "The documentation is in a separate package. The tools can resize, crop, rotate and sharpen images, draw text " +
  "and shapes on them, and combine several images into one. They work on single files or on whole directories, " +
  "from scripts or from the shell. This package also contains the development headers and the static library.";
const weightsMB = (statSync(resolve(modelDir, "model.safetensors")).size / 1e6).toFixed(1);

const server = await serve(dist);
const url = server.url;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: [
    "--no-sandbox", "--enable-unsafe-webgpu", "--enable-features=Vulkan", "--use-webgpu-adapter=swiftshader",
    "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});

let passed = 0;
let failed = 0;
async function check(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
    passed++;
    console.log(`ok   ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}\n     ${(e instanceof Error ? e.message : String(e)).split("\n").join("\n     ")}`);
  }
}

try {
  await new Promise((r) => setTimeout(r, 300)); // the server's listen
  // Wide enough for the two-column layout: the mid-generation shot (README's docs/demo.png) shows it all.
  const context = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
  const p = new Page(await context.newPage(), shots);
  await p.open(url);

  await check("the page loads the model with per-file progress from the network", async () => {
    await p.ready();
    const files = await p.progress();
    assert.deepEqual(Object.keys(files).sort(), ["config.json", "free.json", "model.safetensors", "tokenizer.json"]);
    for (const [file, row] of Object.entries(files)) {
      assert.equal(row.source, "network", `${file} should come from the network`);
      assert.equal(row.done, "true", `${file} should be complete`);
    }
    assert.match(files["model.safetensors"].text, new RegExp(`${weightsMB} MB of ${weightsMB} MB from the network, done`));
    assert.match(await p.text("#files-summary"), /^Model files: 4, [\d.]+ MB from the network$/);
    assert.equal(await p.page.locator("#files").getAttribute("open"), null, "the file list folds away once loaded");
    assert.match(await p.text("#status"), /^Model ready: 8 decoder blocks, shallow exit after 2, on CPU \(WebAssembly\), weights as stored\.$/);
    assert.equal(await p.attr("#device-now", "data-device"), "cpu");
    // A package that can use WebGPU says why "auto" chose the CPU; one that cannot says nothing.
    if (await p.page.locator("#device-why").isVisible()) assert.match(await p.text("#device-why"), /^Why not WebGPU: .+\.$/);
    assert.deepEqual(await p.options("#task"), ["summarize", "translate"]);
    assert.equal((await p.options("#example")).length, 6, "5 examples and 'your own text'");
    // SwiftShader gives this Chromium a WebGPU adapter: the note names it.
    assert.equal(await p.attr("#gpu-note", "data-webgpu"), "true");
    assert.match(await p.text("#gpu-note"), /^WebGPU adapter found: /);
    await p.shot("01-loaded");
  });

  let freeRun;
  await check("an example runs with free at a fixed threshold: tokens carry exit classes, numbers and the confidence chart agree with them", async () => {
    await p.configure({ task: "summarize", example: 0, strategy: "free", threshold: 0.3, maxTokens: 48 });
    await p.generate();
    freeRun = await p.tokens();
    p.assertFreeRule(freeRun, 0.3);
    assert.ok(freeRun.some((t) => t.kind === "shallow") && freeRun.some((t) => t.kind === "deep"), "both exits should occur at 0.3");
    await p.assertNumbers(freeRun, "free");
    await p.assertConfidenceChart(freeRun);
    await p.assertGroups(freeRun);
    await p.shot("02-free-done-0.3");
  });

  await check("hovering and focusing a token shows its confidence, threshold and the deep model's choice", async () => {
    const shallow = freeRun.findIndex((t) => t.kind === "shallow" && t.sync !== null);
    await p.page.hover(`#output .tok[data-pos="${shallow}"]`);
    const hovered = await p.tooltip();
    assert.match(hovered, new RegExp(`confidence ${freeRun[shallow].confidence.toFixed(3)}, threshold in force 0\\.300`));
    assert.match(hovered, new RegExp(`deep model's choice: ".*" \\(${freeRun[shallow].deep === freeRun[shallow].token ? "agrees" : "disagrees"}\\)`));
    assert.match(hovered, /waited on the stack until deep pass \d+/);
    // Keyboard: the output is one tab stop; End goes to the last token, Home to the first.
    await p.page.focus("#output .tok[tabindex='0']");
    await p.page.keyboard.press("End");
    assert.equal(await p.page.evaluate(() => document.activeElement?.dataset.pos), String(freeRun.length - 1));
    await p.page.keyboard.press("Home");
    await p.page.keyboard.press("ArrowRight");
    assert.equal(await p.page.evaluate(() => document.activeElement?.dataset.pos), "1");
    const focused = await p.tooltip();
    assert.match(focused, new RegExp(`at position ${freeRun[1].index}`));
    assert.match(focused, new RegExp(`confidence ${freeRun[1].confidence.toFixed(3)}`));
    await p.shot("03-tooltip");
    await p.page.keyboard.press("Tab");
  });

  await check("tokens stream in while the page stays responsive (screenshot mid-generation)", async () => {
    await p.configure({ task: "translate", strategy: "free-exact", threshold: 0.1, maxTokens: 128 });
    await p.page.fill("#text", longText);
    const seen = await p.generate({ midShot: "04-mid-generation" });
    assert.ok(seen.tokens >= 24, `${seen.tokens} tokens drawn mid-way`);
    const final = await p.tokens();
    assert.ok(final.length > seen.tokens, `${final.length} tokens at the end, ${seen.tokens} mid-way: the page drew tokens as they came`);
    assert.ok(seen.pingMs < 250, `the main thread answered in ${seen.pingMs} ms while generating`);
    assert.match(seen.numbers, /^\d+ \| \d+ \| [\d.]+% \| [\d.]+ \| \d+ ms \| \d+$/, `live numbers: ${seen.numbers}`);
    p.assertFreeRule(final, 0.1);
    await p.shot("05-streamed-done");
    await p.configure({ task: "summarize", example: 0, strategy: "free", threshold: 0.3, maxTokens: 48 });
  });

  await check("Stop ends a generation mid-way and keeps the tokens decided so far", async () => {
    // free-exact gives the full model's long output; plain free may end early on a shallow
    // exit's EOS (snapshot 7 on a shorter input: after 12 tokens, before the click landed).
    // The page's largest token limit leaves the click the most room on a busy machine.
    await p.configure({ task: "translate", strategy: "free-exact", threshold: 0.1, maxTokens: 256 });
    await p.page.fill("#text", longText);
    const before = await p.runs();
    await p.page.click("#run");
    await p.page.waitForFunction(() => document.querySelectorAll("#output .tok").length >= 4, null, { polling: "raf" });
    await p.page.click("#stop");
    await p.ended(before);
    const [, n] = /^Stopped by you after (\d+) tokens\.$/.exec(await p.text("#status")) ?? [];
    assert.ok(Number(n) >= 4 && Number(n) < 256, `status: ${await p.text("#status")}`);
    const kept = await p.tokens();
    assert.equal(kept.filter((t) => !t.rolledBack).length, Number(n));
    assert.equal(await p.page.locator("#error").isHidden(), true);
    assert.equal(await p.page.locator("#compare").isDisabled(), true, "no comparison without the package's counters");
    await p.shot("06-stopped");
    await p.configure({ task: "summarize", example: 0, maxTokens: 48 });
  });

  await check("switching strategy changes the trace: static exits every token early, full none", async () => {
    // The whole configuration, so a failed check before this one cannot change what it runs.
    await p.configure({ task: "summarize", example: 0, strategy: "static", maxTokens: 48 });
    await p.generate();
    const stat = await p.tokens();
    assert.ok(stat.length > 0 && stat.every((t) => t.kind === "shallow" && t.exit === 2), "static: every token from the shallow exit");
    assert.equal(await p.text("#n-exit"), "100.0%");
    assert.equal(await p.text("#n-blocks"), "2.00");
    await p.shot("07-static");
    await p.configure({ strategy: "calm", threshold: 0.3 });
    await p.generate();
    const calm = await p.tokens();
    for (const t of calm) {
      // CALM exits at the first block whose confidence beats the threshold, else runs all 8.
      if (t.exit < 8) assert.ok(t.confidence > 0.3 && t.threshold === 0.3, `calm token ${t.pos}: exit ${t.exit} at ${t.confidence}`);
      else assert.equal(t.kind, "deep");
      assert.equal(t.stacked, false);
    }
    assert.equal(await p.page.locator("#mode-adaptive").isDisabled(), true, "calm has no adaptive threshold");
    await p.configure({ strategy: "full" });
    await p.generate();
    const full = await p.tokens();
    assert.ok(full.length > 0 && full.every((t) => t.kind === "deep" && t.exit === 8), "full: every token from the deep model");
    assert.equal(await p.text("#n-exit"), "0.0%");
    assert.equal(await p.text("#n-blocks"), "8.00");
    assert.equal(await p.text("#n-passes"), "no deep passes");
    assert.equal(await p.page.locator("#conf-chart circle").count(), 0, "full measures no confidence");
    assert.match(await p.page.locator("#conf-chart").textContent(), /this strategy measures no confidence/);
    p.fullText = full.filter((t) => !t.rolledBack).map((t) => t.text).join("");
  });

  await check("switching the threshold changes the trace: 0 exits (almost) every token, 1 none", async () => {
    await p.configure({ strategy: "free", threshold: 0 });
    await p.generate();
    const low = await p.tokens();
    p.assertFreeRule(low, 0);
    if (low.every((t) => t.kind === "shallow")) {
      // Nothing fell to the threshold, so no deep pass ran: FREE's ceiling, every token on the stack.
      assert.ok(low.every((t) => t.stacked && t.sync === null && t.group === "waiting:"), "one group, all unchecked");
      assert.equal(await p.text("#n-blocks"), "2.00");
      assert.equal(await p.text("#n-passes"), "no deep passes");
    } else {
      await p.assertGroups(low);
    }
    const lowRate = low.filter((t) => t.kind === "shallow").length / low.length;
    await p.configure({ threshold: 1 });
    await p.generate();
    const high = await p.tokens();
    p.assertFreeRule(high, 1);
    assert.ok(high.every((t) => t.kind === "deep"), "nothing exceeds a threshold of 1");
    assert.equal(await p.text("#n-exit"), "0.0%");
    const midRate = freeRun.filter((t) => t.kind === "shallow").length / freeRun.length;
    assert.ok(lowRate > midRate && midRate > 0, `exit rates: ${lowRate} at 0, ${midRate} at 0.3`);
  });

  await check("free-exact rolls back (struck through) and ends with exactly the full model's output; the comparison says so", async () => {
    await p.configure({ strategy: "free-exact", threshold: 0 });
    await p.generate();
    const exact = await p.tokens();
    const rolled = exact.filter((t) => t.rolledBack);
    assert.ok(rolled.length > 0, "at threshold 0 the young model's shallow exit errs, so tokens are rolled back");
    assert.equal(await p.page.locator("#output .tok.rolled-back").evaluateAll((els) => els.every((e) => getComputedStyle(e).textDecorationLine.includes("line-through"))), true);
    assert.equal(exact.filter((t) => !t.rolledBack).map((t) => t.text).join(""), p.fullText);
    assert.match(await p.text("#n-passes"), /\d+ deep pass(es)?, [\d.]+ rows each, \d+ rollbacks?/);
    await p.shot("08-free-exact-rollbacks");
    await p.compare();
    assert.match(await p.text("#speedup"), /^free-exact: decoding \d+\.\d\d× as fast as full \([\d.]+ against [\d.]+ ms per token after the first\); end to end, encoder included, \d+\.\d\d×\. One run each, measured here\. The outputs are identical\.$/);
    assert.ok(Number(await p.attr("#speedup", "data-speedup")) > 0);
    assert.equal(await p.page.locator("#comparison mark").count(), 0);
    assert.equal(await p.text("#right"), p.fullText.replace(/\n/g, "⏎"));
    await p.shot("09-compare-exact");
  });

  await check("comparing static with full marks the differences side by side", async () => {
    await p.configure({ strategy: "static" });
    await p.generate();
    await p.compare();
    // One run each on a shared machine: the ratio is reported, not bounded; it must be the
    // ratio of the two times the page shows.
    const speed = Number(await p.attr("#speedup", "data-speedup"));
    const said = await p.text("#speedup");
    const [, shown, mine, full] = /^static: decoding (\d+\.\d\d)× as fast as full \(([\d.]+) against ([\d.]+) ms per token after the first\)/.exec(said) ?? [];
    assert.ok(shown, `speedup text: ${said}`);
    assert.equal(Number(shown), Number(speed.toFixed(2)));
    // The times are shown rounded: the ratio must lie between the ratios their roundings allow.
    const half = (s) => 0.5 * 10 ** -((s.split(".")[1] ?? "").length);
    const [lo, hi] = [(Number(full) - half(full)) / (Number(mine) + half(mine)), (Number(full) + half(full)) / (Number(mine) - half(mine))];
    assert.ok(speed >= lo && speed <= hi, `${full} / ${mine} allows ${lo.toFixed(4)}-${hi.toFixed(4)}, not ${speed}`);
    console.log(`     static decodes ${speed.toFixed(2)}x as fast as full here`);
    assert.match(said, /tokens in common; \d+ only in this run, \d+ only in full \(marked\)\.$/);
    assert.ok((await p.page.locator("#left mark").count()) > 0, "the young model's static exit differs from full");
    assert.equal(await p.text("#right"), p.fullText.replace(/\n/g, "⏎"));
    await p.shot("10-compare-static");
  });

  await check("the adaptive threshold: both fitted Beta densities and the threshold are drawn, and move as data arrives", async () => {
    await p.page.click("#reset-adaptive");
    // A model whose free.json ships a calibration starts (and resets to) its fit and
    // threshold; one without starts empty, at free.json's threshold.
    const { calibration, threshold: initial } = JSON.parse(readFileSync(resolve(modelDir, "free.json"), "utf8"));
    if (calibration) {
      const count = (c) => c.points.toLocaleString("en");
      const data = `calibrated on ${count(calibration.consistent)} consistent and ${count(calibration.inconsistent)} inconsistent points (free.json), then 0 consistent and 0 inconsistent points from this page, 0 refits.`;
      await p.page.waitForFunction((d) => document.getElementById("beta-note")?.textContent.includes(d), data);
      assert.ok((await p.text("#beta-note")).startsWith(`Threshold ${calibration.threshold.toFixed(3)} (the lowest confidence`), await p.text("#beta-note"));
      assert.equal(await p.page.locator("#beta-chart path.density").count(), 2);
      assert.equal(await p.text("#adaptive-now"), `, now ${calibration.threshold.toFixed(3)}`);
    } else {
      await p.page.waitForFunction(() => /no fit yet/.test(document.getElementById("beta-note")?.textContent ?? ""));
      assert.equal(await p.text("#beta-note"), `Threshold ${initial.toFixed(3)} (no fit yet); 0 consistent and 0 inconsistent points, 0 fits. Ticks: this run's checked tokens.`);
      assert.equal(await p.page.locator("#beta-chart path.density").count(), 0);
      assert.equal(await p.text("#adaptive-now"), `, now ${initial.toFixed(3)}`);
    }
    await p.configure({ strategy: "free", adaptive: true });
    const seen = [];
    for (let i = 0; i < 14 && seen.filter((s) => s.fit).length < 2; i++) {
      await p.configure({ task: i % 2 ? "translate" : "summarize", example: Math.floor(i / 2) % 5, maxTokens: 64 });
      await p.generate();
      seen.push(await p.betaState());
    }
    const fitted = seen.filter((s) => s.fit);
    assert.ok(fitted.length >= 2, `the estimator should have fitted twice in 14 runs: ${JSON.stringify(seen.map((s) => s.note))}`);
    const [a, b] = fitted.slice(-2);
    assert.equal(a.curves, 2);
    assert.equal(await p.text("#adaptive-now"), `, now ${b.threshold.toFixed(3)}`);
    // The fit moves with the new data: visibly without a calibration; with one, a page's few
    // dozen points barely move a fit of thousands, so the refit count says it happened.
    if (calibration) assert.ok(b.fits > a.fits, `a refit should follow the new data: ${a.note} / ${b.note}`);
    else assert.notEqual(a.consistentPath, b.consistentPath, "the densities should change with the new data");
    // The threshold line sits where the note says (x = 40 + (width - 50) t in the chart's coordinates).
    assert.ok(Math.abs(b.lineX - (40 + (b.width - 50) * b.threshold)) < 0.3, `threshold line at ${b.lineX} for ${b.threshold} in ${b.width}`);
    // The trace's thresholds are the adaptive one in force, and the ticks are the checked stacked tokens.
    const run = await p.tokens();
    p.assertFreeRule(run, null);
    assert.equal(b.ticks, run.filter((t) => t.stacked && t.sync !== null).length);
    assert.match(b.note, /\(the lowest confidence from which up P\(consistent\) > 0\.4\)/);
    await p.shot("11-adaptive-beta");
    // The error-budget reading of the same data: the note names the rule, the run uses the
    // threshold the note shows, and the data points carry over.
    await p.page.check("#mode-budget");
    await p.generate();
    const budget = await p.betaState();
    assert.match(budget.note, /\(the lowest confidence above which at most 5% of exiting tokens are inconsistent\)/);
    const budgetRun = await p.tokens();
    p.assertFreeRule(budgetRun, null);
    const inForce = [...new Set(budgetRun.filter((t) => t.threshold !== null).map((t) => t.threshold))];
    assert.equal(inForce.length, 1, `one threshold in force: ${inForce}`);
    assert.ok(Math.abs(inForce[0] - budget.threshold) < 6e-4, `${inForce[0]} vs the note's ${budget.threshold}`);
    // The number beside each mode belongs to that mode's rule.
    assert.equal(await p.text("#budget-now"), `, now ${budget.threshold.toFixed(3)}`);
    assert.equal(await p.text("#adaptive-now"), "");
    await p.configure({ adaptive: true });
    await p.generate();
    const zeta = await p.betaState();
    assert.match(zeta.note, /P\(consistent\) > 0\.4/);
    assert.equal(await p.text("#adaptive-now"), `, now ${zeta.threshold.toFixed(3)}`);
    assert.equal(await p.text("#budget-now"), "");
  });

  /** The tokens of the WebGPU check's input on the CPU, also what the lost-GPU check must give. */
  let onCpu = null;
  await check('device "webgpu": the model moves to WebGPU (SwiftShader) and gives the CPU\'s tokens', async () => {
    // SwiftShader runs WebGPU on the CPU, slowly: a short output keeps the check quick.
    await p.configure({ strategy: "free-exact", threshold: 0.3, task: "translate", example: 0, maxTokens: 16 });
    await p.generate();
    onCpu = (await p.tokens()).map((t) => [t.text, t.exit, t.stacked, t.rolledBack].join("|"));
    await p.page.fill("#text", "A tool to resize images from the command line.");
    await p.page.selectOption("#device", "webgpu");
    await p.page.waitForFunction(() => document.body.dataset.state === "ready");
    assert.equal(await p.page.inputValue("#text"), "A tool to resize images from the command line.", "a device switch keeps the input");
    assert.equal(await p.attr("#device-now", "data-device"), "webgpu", `not on WebGPU: ${await p.text("#device-error")}`);
    assert.equal(await p.page.locator("#device-error").isHidden(), true);
    await p.shot("12-webgpu-switch");
    // The same input on WebGPU: the same tokens, exits, stacking and rollbacks as on the CPU.
    await p.configure({ strategy: "free-exact", threshold: 0.3, task: "translate", example: 0, maxTokens: 16 });
    await p.generate();
    assert.deepEqual((await p.tokens()).map((t) => [t.text, t.exit, t.stacked, t.rolledBack].join("|")), onCpu);
  });

  await check("a lost GPU (Chromium's GPU process crashes): the generation finishes on the CPU with the same tokens, and the page says so", async () => {
    assert.equal(await p.attr("#device-now", "data-device"), "webgpu", "this check needs the model on WebGPU, where the previous check put it");
    assert.ok(onCpu !== null, "this check needs the CPU's tokens from the previous check");
    const cdp = await browser.newBrowserCDPSession();
    await cdp.send("Browser.crashGpuProcess");
    await cdp.detach();
    await p.generate();
    assert.match(await p.text("#status"), /The WebGPU device was lost after \d+ tokens? \(.+\); the model moved to the CPU/);
    assert.equal(await p.attr("#device-now", "data-device"), "cpu");
    assert.equal(await p.page.inputValue("#device"), "cpu");
    assert.deepEqual((await p.tokens()).map((t) => [t.text, t.exit, t.stacked, t.rolledBack].join("|")), onCpu);
    await p.shot("12b-device-lost");
    await p.generate();
    assert.deepEqual((await p.tokens()).map((t) => [t.text, t.exit, t.stacked, t.rolledBack].join("|")), onCpu, "the next generation runs on the CPU");
    assert.doesNotMatch(await p.text("#status"), /lost/);
  });

  await check("weights 8-bit (q8): the model reloads with them and gives free generate --dtype q8's tokens, exits and rollbacks", async () => {
    const input = "A tool to resize images from the command line.";
    const settings = ["--task", "translate", "--strategy", "free-exact", "--threshold", "0.3", "--max-new-tokens", "16"];
    const native = JSON.parse(execFileSync(freeCli, ["generate", "--model", modelDir, "--dtype", "q8", ...settings, "--json", input], { encoding: "utf8" }));
    const view = (trace) => trace.map((t) => [t.text, t.exit, t.rolledBack].join("|"));
    await p.page.selectOption("#weights", "q8");
    await p.page.waitForFunction(() => document.body.dataset.state === "ready");
    assert.equal(await p.page.locator("#device-error").isHidden(), true, await p.text("#device-error"));
    assert.match(await p.text("#status"), /on CPU \(WebAssembly\), q8 weights\.$/);
    await p.configure({ strategy: "free-exact", threshold: 0.3, task: "translate", maxTokens: 16 });
    await p.page.fill("#text", input);
    await p.generate();
    assert.deepEqual(view(await p.tokens()), view(native.trace));
    await p.shot("12c-weights-q8");
    await p.page.selectOption("#weights", "");
    await p.page.waitForFunction(() => document.body.dataset.state === "ready");
    assert.match(await p.text("#status"), /, weights as stored\.$/);
  });

  await check("a second visit loads every file from Cache Storage, with the network to the model cut off", async () => {
    // The package still asks whether a cached file changed (HEAD); unanswered, it uses the copy.
    const blocked = [];
    await context.route("**/model/**", (route) => {
      blocked.push(`${route.request().method()} ${new URL(route.request().url()).pathname.split("/").pop()}`);
      return route.abort("internetdisconnected");
    });
    await p.open(url);
    await p.ready();
    const files = await p.progress();
    assert.deepEqual(Object.keys(files).sort(), ["config.json", "free.json", "model.safetensors", "tokenizer.json"]);
    for (const [file, row] of Object.entries(files)) assert.equal(row.source, "cache", `${file} should come from the cache`);
    assert.match(files["model.safetensors"].text, new RegExp(`${weightsMB} MB of ${weightsMB} MB from the cache, done`));
    assert.match(await p.text("#files-summary"), /^Model files: 4, [\d.]+ MB from the cache$/);
    await p.configure({ task: "summarize", example: 1, strategy: "free", threshold: 0.3 });
    await p.generate();
    const run = await p.tokens();
    assert.ok(run.length > 0);
    p.assertFreeRule(run, 0.3);
    // The tooltips' token texts come with the trace: nothing else is fetched for them.
    await p.page.hover('#output .tok[data-pos="0"]');
    assert.match(await p.tooltip(), /deep model/);
    // HEADs ask whether a cached file changed; checksums.json is asked for afresh (never cached).
    assert.ok(blocked.every((r) => r.startsWith("HEAD ") || r === "GET checksums.json"), `only the revalidation should have asked the network: ${blocked}`);
    await p.shot("13-from-cache");
    await context.unroute("**/model/**");
  });

  await check("the keyboard drives the form, every control is labelled, and 375 px needs no sideways scrolling", async () => {
    const unlabelled = await p.page.locator("select, input, textarea, button").evaluateAll((els) =>
      els.filter((e) => !(e.labels && e.labels.length) && !e.getAttribute("aria-label") && !(e.textContent ?? "").trim()).map((e) => e.id || e.outerHTML),
    );
    assert.deepEqual(unlabelled, []);
    await p.page.setViewportSize({ width: 375, height: 800 });
    await p.configure({ task: "summarize", example: 0, strategy: "free-exact", threshold: 0.3, maxTokens: 48 });
    const before = await p.runs();
    await p.page.focus("#max-tokens");
    await p.page.keyboard.press("Enter"); // submits the form
    await p.ended(before);
    const exact = await p.tokens();
    assert.equal(exact.filter((t) => !t.rolledBack).map((t) => t.text).join(""), p.fullText, "free-exact gives full's output");
    const width = await p.page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 375, `the page is ${width} px wide at a 375 px viewport`);
    // The charts draw at their screen width, so their 13 px text stays 13 px.
    const charts = await p.page.locator("svg.chart").evaluateAll((svgs) => svgs.map((s) => [s.viewBox.baseVal.width, s.clientWidth]));
    for (const [units, px] of charts) assert.ok(Math.abs(units - px) <= 1 && px < 375, `a chart ${px} px wide draws ${units} units`);
    await p.shot("14-phone", { fullPage: true });
  });

  await check("no WebGPU: a visible note, and the model runs on the CPU", async () => {
    const bare = await browser.newContext({ viewport: { width: 1000, height: 1400 } });
    await bare.addInitScript(() => delete Navigator.prototype.gpu);
    const q = new Page(await bare.newPage(), shots);
    await q.open(url);
    await q.ready();
    assert.equal(await q.page.locator("#gpu-note").isVisible(), true);
    assert.equal(await q.text("#gpu-note"), "This browser offers no WebGPU (navigator.gpu is missing), so the model runs on the CPU (WebAssembly with SIMD).");
    assert.equal(await q.attr("#device-now", "data-device"), "cpu");
    await q.configure({ strategy: "free", threshold: 0.3, maxTokens: 16 });
    await q.generate();
    q.assertFreeRule(await q.tokens(), 0.3);
    await q.shot("15-no-webgpu");
    assert.deepEqual(q.errors, []);
    await bare.close();
  });

  await check("the form keeps what the user chose: their own text across a task change, the adaptive mode across a strategy without one; an empty token limit does not submit", async () => {
    await p.configure({ task: "summarize", strategy: "free", adaptive: true });
    const own = "A tool to resize images from the command line.";
    await p.page.fill("#text", own);
    await p.page.selectOption("#task", "translate");
    assert.equal(await p.page.inputValue("#text"), own);
    assert.equal(await p.page.inputValue("#example"), "");
    await p.page.selectOption("#strategy", "static");
    assert.ok(await p.page.isChecked("#mode-fixed"), "static has no adaptive threshold");
    await p.page.selectOption("#strategy", "free");
    assert.ok(await p.page.isChecked("#mode-adaptive"), "back on free, the adaptive mode the user chose");
    await p.page.fill("#max-tokens", "");
    const before = await p.runs();
    await p.page.click("#run");
    assert.ok(await p.page.locator("#max-tokens").evaluate((el) => el.matches(":invalid")));
    assert.equal(await p.page.evaluate(() => document.body.dataset.state), "ready");
    assert.equal(await p.runs(), before);
    await p.page.fill("#max-tokens", "48");
  });

  await check("a pasted 10 MB text and a limit of a million tokens: the form names the token limit, the text is cut before tokenizing, the page stays responsive and the next run works", async () => {
    const sentence = "This package provides tools to read and write compressed archives in many formats. ";
    const size = 10 * 1024 * 1024;
    await p.page.locator("#text").evaluate((el, [s, n]) => {
      el.value = s.repeat(Math.ceil(n / s.length)).slice(0, n);
      el.dispatchEvent(new Event("input", { bubbles: true }));
    }, [sentence, size]);
    await p.configure({ strategy: "full", maxTokens: 1_000_000 });
    const before = await p.runs();
    await p.page.click("#run");
    // The browser's form validation answers (the field's max is the page's limit); nothing runs.
    const field = await p.page.locator("#max-tokens").evaluate((el) => ({ over: el.validity.rangeOverflow, message: el.validationMessage, max: el.max }));
    assert.equal(field.over, true);
    assert.match(field.message, new RegExp(field.max), `the message names the limit: ${field.message}`);
    assert.equal(await p.runs(), before, "a run started with a million tokens asked for");
    await p.configure({ maxTokens: 8 });
    const started = Date.now();
    await p.page.click("#run");
    // The main thread answers while the worker takes the 10 MB text.
    const t0 = Date.now();
    await p.page.evaluate(() => document.body.dataset.state);
    const pingMs = Date.now() - t0;
    await p.ended(before);
    const tookMs = Date.now() - started;
    const [, bytes] = /its last \d+ tokens and ([\d,]+) bytes of text after them were left out\.$/.exec(await p.text("#status")) ?? [];
    assert.equal(bytes, (size - 512 * 64).toLocaleString("en"), `status: ${await p.text("#status")}`);
    // Generous bounds that only a hang or a tokenizer run over the whole text would break.
    assert.ok(pingMs < 5_000 && tookMs < 30_000, `round trip ${pingMs} ms, the run ${tookMs} ms`);
    console.log(`     (10 MB input, 8 tokens: ${tookMs} ms; a round trip to the page meanwhile: ${pingMs} ms)`);
    await p.configure({ strategy: "free", task: "summarize", example: 0, maxTokens: 16 });
    await p.generate();
    assert.ok((await p.tokens()).length > 0, "no tokens in the run after the 10 MB one");
    assert.doesNotMatch(await p.text("#status"), /left out/);
  });

  await check("errors are shown in words: an empty input, an input too long, a model folder that does not exist and one on another origin", async () => {
    await p.page.fill("#text", "   ");
    await p.page.click("#run");
    assert.equal(await p.text("#error"), "Type a text or pick an example first.");
    await p.page.fill("#text", "This package provides tools to read and write compressed archives in many formats. ".repeat(60));
    await p.configure({ strategy: "full", maxTokens: 8 });
    await p.generate();
    const [, cut] = /The input was longer than the model takes: its last (\d+) tokens were left out\.$/.exec(await p.text("#status")) ?? [];
    assert.ok(Number(cut) > 0, `status: ${await p.text("#status")}`);
    // Past 64 bytes a position (32,768 for the model's 512) the text is not tokenized at all.
    const sentence = "This package provides tools to read and write compressed archives in many formats. ";
    await p.page.fill("#text", sentence.repeat(500));
    await p.generate();
    const [, tokens, bytes] = /its last (\d+) tokens and ([\d,]+) bytes of text after them were left out\.$/.exec(await p.text("#status")) ?? [];
    assert.ok(Number(tokens) > 0, `status: ${await p.text("#status")}`);
    assert.equal(bytes, (sentence.length * 500 - 512 * 64).toLocaleString("en"));
    const lost = new Page(await context.newPage(), shots);
    await lost.open(`${url}?model=no-such-model/`);
    await lost.page.waitForFunction(() => document.body.dataset.state === "error", null, { timeout: 60_000 });
    assert.match(await lost.text("#device-error"), /^Could not load the model: could not download http:\/\/127\.0\.0\.1:\d+\/no-such-model\/(config\.json|model\.safetensors|tokenizer\.json): HTTP 404 Not Found; the model folder must serve \1$/);
    await lost.shot("16-load-error");
    // A ?model= on another origin (localhost is not 127.0.0.1 to the browser) is refused.
    const foreign = `http://localhost:${new URL(url).port}/model/`;
    await lost.open(`${url}?model=${encodeURIComponent(foreign)}`);
    await lost.page.waitForFunction(() => document.body.dataset.state === "error", null, { timeout: 60_000 });
    assert.equal(await lost.text("#device-error"), `Could not load the model: SecurityError: the model folder ${foreign} is on another origin than this page (${new URL(url).origin}); load with allowCrossOrigin: true to allow it, from servers you trust`);
  });

  await check("no uncaught errors on the page", async () => assert.deepEqual(p.errors, []));
} finally {
  await browser.close();
  server.stop();
}
console.log(`page e2e: ${passed} passed, ${failed} failed; screenshots in ${shots}`);
process.exit(failed === 0 ? 0 : 1);

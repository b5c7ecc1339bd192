// Drives the browser bench page (built by Vite into DIST) in Debian's Chromium through
// playwright-core: for each device, the same test inputs through every contender,
// interleaved; prints a table per device and task and writes the records as JSON. The
// columns are those of `free bench`: exit rate, agreement with full (identical outputs),
// decoder tokens/s, and speedups over full of the decoder time and of the whole call; the
// mean times of tokenizing + encoding and to the first token; and the megabytes of weights
// the row's model downloads.
//
//   node run.mjs DIST MODEL_DIR DATA_JSONL [--limit N] [--devices cpu,webgpu]
//       [--only free-adaptive,free-budget,free-fixed] [--threshold T] [--max-new-tokens N] [--json OUT]
//       [--dtypes stored,q8 [--q8-model DIR]] [--onnx EXPORT_DIR [--tjs-dtypes fp32,fp16,q8] [--assert-agree]]
// (contenders: full, free-fixed, free-adaptive, free-budget, free-exact, free-exact-adaptive,
// and full-waiting / free-adaptive-waiting: WebGPU without run-ahead)
//
// --dtypes: the weight formats free-wasm runs every contender with (`LoadOptions.dtype`;
// `stored`: as model.safetensors stores them, the reference row `full`); the others' rows are
// named `<contender> <dtype>`. A format the device does not take is reported and skipped.
// --q8-model: the same model stored in 8 bits (python -m free_train.export MODEL_DIR DIR
// --dtype q8), which the q8 rows then download instead of quantizing MODEL_DIR's weights as
// they load (the same integers: the same tokens, half the download).
// --onnx: the same checkpoint exported by tools/export_onnx.py; adds transformers.js (greedy,
// full model) as a contender per --tjs-dtypes on each device (`transformers.js <dtype>`), with
// its load time, and two columns against transformers.js at its own default for the device
// (q8 on the wasm CPU, fp32 on WebGPU: its dtypes.js): decoder tokens/s over its decoder
// tokens/s, and its whole-call time over the row's. --assert-agree: exit non-zero unless
// every transformers.js row's outputs equal free-wasm full's on every input (the smoke test
// in scripts/test.sh runs it with fp32).
//
// Every file comes from the local server: requests elsewhere are refused and fail the run.
// WebGPU runs on SwiftShader (Chromium's software adapter), as in ../../webdriver.json.
import { cpSync, existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { chromium } from "playwright-core";
import { serve } from "../../scripts/serve-child.mjs";

const { values: opt, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    limit: { type: "string", default: "10" },
    devices: { type: "string", default: "cpu,webgpu" },
    only: { type: "string" },
    threshold: { type: "string", default: "0.2" },
    "max-new-tokens": { type: "string", default: "64" },
    json: { type: "string" },
    dtypes: { type: "string", default: "stored,q8" },
    "q8-model": { type: "string" },
    onnx: { type: "string" },
    "tjs-dtypes": { type: "string", default: "fp32,fp16,q8" },
    "assert-agree": { type: "boolean", default: false },
  },
});
const [dist, modelDir, dataFile] = positionals.map((p) => resolve(p));
if (!dataFile) throw new Error("usage: node run.mjs DIST MODEL_DIR DATA_JSONL [options]");
const maxNewTokens = Number(opt["max-new-tokens"]);
const limit = Number(opt.limit);

/** The first `limit` examples of each task, in file order (as `free bench --limit`). */
const examples = [];
const perTask = new Map();
for (const line of readFileSync(dataFile, "utf8").split("\n")) {
  if (!line.trim()) continue;
  const { task, source } = JSON.parse(line);
  const n = perTask.get(task) ?? 0;
  if (n < limit) {
    examples.push({ task, source });
    perTask.set(task, n + 1);
  }
}

// The native bench's names; `full` is the reference and always runs.
const all = [
  { name: "full", options: { strategy: "full", maxNewTokens } },
  { name: "free-fixed", options: { strategy: "free", threshold: Number(opt.threshold), maxNewTokens } },
  { name: "free-adaptive", options: { strategy: "free", threshold: "adaptive", maxNewTokens } },
  // The error-budget reading of the same estimator (its data does not depend on the rule).
  { name: "free-budget", options: { strategy: "free", threshold: "adaptive", maxDisagreement: 0.05, maxNewTokens } },
  { name: "free-exact", options: { strategy: "free-exact", threshold: Number(opt.threshold), maxNewTokens } },
  // Lossless FREE with the adaptive threshold: the threshold decides how much is stacked, not quality.
  { name: "free-exact-adaptive", options: { strategy: "free-exact", threshold: "adaptive", maxNewTokens } },
  // Waiting for every token instead of recording the next step first (WebGPU's default).
  { name: "full-waiting", options: { strategy: "full", runAhead: false, maxNewTokens } },
  { name: "free-adaptive-waiting", options: { strategy: "free", threshold: "adaptive", runAhead: false, maxNewTokens } },
];
const tjsName = "transformers.js";
const only = opt.only?.split(",");
const unknown = only?.filter((n) => n !== tjsName && !all.some((c) => c.name === n)) ?? [];
if (unknown.length) throw new Error(`unknown contender ${unknown.join(", ")}; known: ${all.map((c) => c.name).join(", ")}, ${tjsName}`);
const freeDtypes = opt.dtypes.split(",");
const tjsDtypes = opt["tjs-dtypes"].split(",");
const badDtype = [...freeDtypes.filter((d) => !["stored", "f32", "f16", "q8"].includes(d)), ...tjsDtypes.filter((d) => !["fp32", "fp16", "q8"].includes(d))];
if (badDtype.length) throw new Error(`unknown dtype ${badDtype.join(", ")}: --dtypes takes stored, f32, f16, q8; --tjs-dtypes fp32, fp16, q8`);
if (!freeDtypes.includes("stored")) throw new Error("--dtypes must include stored: its full row is the reference of every ratio");
const kept = all.filter((c) => c.name === "full" || !only || only.includes(c.name));
const q8Model = opt["q8-model"] && resolve(opt["q8-model"]);
const modelOf = (d) => (d === "q8" && q8Model ? { baseUrl: "model-q8/" } : {});
const contenders = freeDtypes.flatMap((d) => kept.map((c) => (d === "stored" ? c : { ...c, name: `${c.name} ${d}`, dtype: d, ...modelOf(d) })));
if (opt.onnx) contenders.push(...tjsDtypes.map((d) => ({ name: `${tjsName} ${d}`, library: tjsName, dtype: d, options: { maxNewTokens } })));
if (opt["assert-agree"] && !opt.onnx) throw new Error("--assert-agree compares with transformers.js: give --onnx DIR");
// transformers.js's default dtype per device (src/utils/dtypes.js: q8 on wasm, else fp32).
const tjsDefault = { cpu: "q8", webgpu: "fp32" };

cpSync(modelDir, join(dist, "model"), { recursive: true, filter: (src) => !src.endsWith(".log") });
if (q8Model) cpSync(q8Model, join(dist, "model-q8"), { recursive: true, filter: (src) => !src.endsWith(".log") });
let onnx = null;
if (opt.onnx) {
  cpSync(resolve(opt.onnx), join(dist, "onnx-model"), { recursive: true });
  // The runtime build transformers.js picks (backends/onnx.js), served here instead of its CDN.
  const ortDist = resolve(import.meta.dirname, "../node_modules/onnxruntime-web/dist");
  for (const f of ["ort-wasm-simd-threaded.asyncify.mjs", "ort-wasm-simd-threaded.asyncify.wasm"]) cpSync(join(ortDist, f), join(dist, "ort", f));
  // The engine's task prefixes: free.json's `tasks`, else T5's own (crate/src/config.rs default_tasks).
  const freeJson = join(modelDir, "free.json");
  const tasks = existsSync(freeJson) ? JSON.parse(readFileSync(freeJson, "utf8")).tasks : undefined;
  const config = JSON.parse(readFileSync(join(modelDir, "config.json"), "utf8"));
  onnx = {
    baseUrl: "onnx-model/",
    ortUrl: "/ort/",
    prefixes: tasks ?? { summarize: "summarize: ", translate: "translate English to French: " },
    maxInputTokens: config.n_positions ?? 512,
  };
}
/** Megabytes of weights each row's model downloads: free-wasm's model.safetensors (whatever
 * the dtype: q8 is made from it as it loads), transformers.js's two ONNX files of its dtype. */
const mb = (path) => statSync(path).size / 1e6;
const suffix = { fp32: "", fp16: "_fp16", q8: "_quantized" };
const downloadMb = (c) =>
  c.library === tjsName
    ? mb(join(opt.onnx, "onnx", `encoder_model${suffix[c.dtype]}.onnx`)) + mb(join(opt.onnx, "onnx", `decoder_model_merged${suffix[c.dtype]}.onnx`))
    : mb(join(c.baseUrl ? q8Model : modelDir, "model.safetensors"));

const server = await serve(dist);
const port = server.port;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--enable-unsafe-webgpu", "--enable-features=Vulkan", "--use-webgpu-adapter=swiftshader", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});

const reports = [];
const remote = [];
try {
  for (const device of opt.devices.split(",")) {
    const page = await browser.newPage();
    await page.route("**/*", (route) => {
      const url = new URL(route.request().url());
      if (url.hostname === "127.0.0.1" && url.port === String(port)) return route.continue();
      remote.push(url.href);
      return route.abort();
    });
    page.on("console", (m) => m.type() === "error" && console.error(`page: ${m.text()}`));
    await page.goto(`http://127.0.0.1:${port}/index.html`);
    await page.waitForFunction(() => document.getElementById("status")?.textContent === "ready", null, { timeout: 30_000 });
    const report = await page.evaluate(([d, e, c, o]) => window.freeBench.run("model/", d, e, c, o), [device, examples, contenders, onnx]);
    if (report.device !== device) throw new Error(`asked for ${device}, the model loaded on ${report.device} (${report.deviceNote})`);
    // Recorded for tools/bench_quality.py, which compares against the same row.
    report.transformersJsDefault = `${tjsName} ${tjsDefault[device]}`;
    reports.push(report);
    console.log(table(report));
    await page.close();
  }
} finally {
  await browser.close();
  server.stop();
}
if (remote.length) throw new Error(`the page asked for files off the local server (refused): ${[...new Set(remote)].join(", ")}`);

// Outputs of the same contender on two devices: the backends are meant to agree token for token.
if (reports.length > 1) {
  const [a, b] = reports;
  for (const ta of a.tallies) {
    const tb = b.tallies.find((t) => t.task === ta.task && t.name === ta.name);
    if (!tb) continue;
    const same = ta.outputs.filter((o, i) => JSON.stringify(o) === JSON.stringify(tb.outputs[i])).length;
    console.log(`${ta.task} ${ta.name}: ${a.device} and ${b.device} outputs identical for ${same}/${ta.outputs.length} inputs`);
  }
}
if (opt.json) {
  const sizes = Object.fromEntries(contenders.map((c) => [c.name, downloadMb(c)]));
  writeFileSync(opt.json, JSON.stringify({ examplesPerTask: limit, maxNewTokens, downloadMb: sizes, reports }, null, 2));
}

if (opt["assert-agree"]) {
  let differ = 0;
  for (const r of reports) {
    for (const t of r.tallies.filter((x) => x.name.startsWith(tjsName))) {
      const full = r.tallies.find((x) => x.task === t.task && x.name === "full");
      t.outputs.forEach((o, i) => {
        if (JSON.stringify(o) === JSON.stringify(full.outputs[i])) return;
        differ++;
        console.error(`${r.device} ${t.task} #${i}: ${t.name} ${JSON.stringify(o)}\n  free-wasm full  ${JSON.stringify(full.outputs[i])}`);
      });
    }
  }
  if (differ) {
    console.error(`transformers.js and free-wasm full differ on ${differ} outputs`);
    process.exit(1);
  }
  console.log("transformers.js and free-wasm full: identical outputs on every input and device");
}

function table(report) {
  const loads = report.loaded.map((l) => `${l.library} ${l.dtype} in ${l.loadSeconds.toFixed(1)} s`).join(", ");
  const lines = [`${report.device}${report.deviceNote ? ` (${report.deviceNote})` : ""}: loaded ${loads}`];
  for (const s of report.skipped) lines.push(`  not run here: ${s.library} ${s.dtype}: ${s.reason}`);
  const tjsRef = report.transformersJsDefault;
  for (const task of [...new Set(report.tallies.map((t) => t.task))]) {
    const full = report.tallies.find((t) => t.task === task && t.name === "full");
    lines.push(`  ${task}: ${full.outputs.length} examples`);
    const tjs = report.tallies.find((t) => t.task === task && t.name === tjsRef);
    const tjsHead = tjs ? `${`dec/${tjsDefault[report.device]}`.padStart(9)}${`e2e/${tjsDefault[report.device]}`.padStart(9)}` : "";
    lines.push(`  ${"contender".padEnd(24)}${"MB".padStart(6)}${"exit".padStart(7)}${"agree".padStart(7)}${"tok/s".padStart(8)}${"decode x".padStart(9)}${"e2e x".padStart(7)}`
      + `${"enc ms".padStart(8)}${"1st ms".padStart(8)}${tjsHead}`);
    for (const c of contenders) {
      const t = report.tallies.find((x) => x.task === task && x.name === c.name);
      if (!t) continue;
      const agree = t.outputs.filter((o, i) => JSON.stringify(o) === JSON.stringify(full.outputs[i])).length / t.outputs.length;
      const rate = t.tokens / t.decodeSeconds;
      lines.push(`  ${c.name.padEnd(24)}${downloadMb(c).toFixed(1).padStart(6)}${(t.early / t.tokens).toFixed(3).padStart(7)}${agree.toFixed(3).padStart(7)}`
        + `${rate.toFixed(1).padStart(8)}${(full.decodeSeconds / t.decodeSeconds).toFixed(2).padStart(9)}`
        + `${(full.seconds / t.seconds).toFixed(2).padStart(7)}${((1000 * t.encodeSeconds) / t.outputs.length).toFixed(1).padStart(8)}`
        + `${((1000 * t.firstTokenSeconds) / t.outputs.length).toFixed(1).padStart(8)}`
        + `${tjs ? `${(rate / (tjs.tokens / tjs.decodeSeconds)).toFixed(2).padStart(9)}${(tjs.seconds / t.seconds).toFixed(2).padStart(9)}` : ""}`);
    }
  }
  return lines.join("\n");
}

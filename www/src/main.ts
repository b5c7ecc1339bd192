// The demo page's app: wires the controls of index.html to the npm package free-wasm (run in
// its Web Worker), streams each generation's trace into the token view, the numbers and the
// charts, and runs the same input with `full` on request for the speedup and a diff.
// URL parameters: ?model=FOLDER/ (default "model/", beside the page), ?device=auto|cpu|webgpu,
// ?dtype=q8|f16|f32 (the weights' format; default as the checkpoint stores them).

import { STRATEGIES, type FreeWorkerModel } from "free-wasm/worker";
import type { AdaptiveState, Counters, Device, DeviceChange, Dtype, GenerateOptions, ModelInfo, Moments, Strategy, StrategyInfo, TraceEntry } from "free-wasm";
import examplesJson from "./examples.json";
import { describeError, loadModel, webgpuSupport } from "./model.js";
import { drawBeta, drawConfidence } from "./render/charts.js";
import { ProgressView } from "./render/progress.js";
import { TokenView } from "./render/tokens.js";
import { diffTokens } from "./view/diff.js";
import {
  blocksPerToken,
  decodeMsPerToken,
  decodeTokensPerSecond,
  deepPassSummary,
  estimateBlockRows,
  exitRate,
  msPerToken,
  speedup,
  standing,
  type Timing,
} from "./view/stats.js";
import { ui } from "./ui.js";
import { applyEvent, displayText, observations, type ModelShape } from "./view/trace.js";

interface Example {
  id: string;
  task: string;
  source: string;
  target: string;
}
const examples = examplesJson as Example[];

const params = new URLSearchParams(location.search);
const baseUrl = new URL(params.get("model") ?? "model/", location.href);
if (!baseUrl.pathname.endsWith("/")) baseUrl.pathname += "/";

const progress = new ProgressView(ui.progress, ui.filesSummary);
const tokens = new TokenView(ui.output, ui.tokenDetail);

let loaded: FreeWorkerModel | null = null;
let shape: ModelShape = { decoderBlocks: 0, shallowExit: null };
/** The device and weights the loaded model was asked for (the selects revert to them when a
 * switch fails). */
let deviceAsked: Device = "auto";
let weightsAsked = "";
let running: AbortController | null = null;
/** What the Stop button aborts with, to tell a stop from a failure. */
const STOPPED = new DOMException("stopped by you", "AbortError");
let adaptive: AdaptiveState | null = null;

/** The last generation the page showed, for "Compare with full". */
interface Run {
  text: string;
  options: GenerateOptions & { strategy: Strategy };
  trace: TraceEntry[];
  counters: Counters | null;
  timing: Timing;
  finished: boolean;
  /** What of the input the model did not see because it was longer than the model takes. */
  cut: { tokens: number; bytes: number };
  /** The GPU was lost during the run and the package finished it on the CPU. */
  moved: DeviceChange | null;
}
let last: Run | null = null;
/** The generation under way (its trace so far), also when it is stopped. */
let current: Run | null = null;

/** Generations finished (also stopped or failed), as `data-runs` on the body: a change says one ended. */
let runs = 0;

function setState(state: "loading" | "ready" | "generating" | "comparing" | "error"): void {
  if (document.body.dataset.state === "generating" || document.body.dataset.state === "comparing") {
    document.body.dataset.runs = String(++runs);
  }
  document.body.dataset.state = state;
  const idle = state === "ready" && loaded !== null;
  ui.run.disabled = !idle;
  ui.resetAdaptive.disabled = !idle;
  ui.compare.disabled = !idle || last === null || last.counters === null || last.options.strategy === "full";
  ui.stop.disabled = state !== "generating" && state !== "comparing";
  ui.device.disabled = state === "loading" || state === "generating" || state === "comparing";
  ui.weights.disabled = ui.device.disabled;
}

function showError(el: HTMLElement, message: string | null): void {
  el.hidden = message === null;
  el.textContent = message ?? "";
}

// ---- inputs -------------------------------------------------------------------------------

function fillTasks(tasks: string[]): void {
  const chosen = ui.task.value;
  const now = [...ui.task.options].map((o) => o.value);
  if (now.join("\n") === tasks.join("\n")) return; // same model tasks: keep the user's input
  ui.task.replaceChildren(...tasks.map((t) => new Option(t, t)));
  ui.task.value = tasks.includes(chosen) ? chosen : tasks[0];
  fillExamples();
}

function fillExamples(): void {
  // Text of the user's own stays when the task changes; an example gives way to the new task's first.
  const own = ui.example.value === "" && ui.text.value.trim() !== "";
  const list = examples.filter((e) => e.task === ui.task.value);
  const options = list.map((e, i) => new Option(`${i + 1}: ${e.source.slice(0, 60)}${e.source.length > 60 ? "…" : ""}`, e.id));
  ui.example.replaceChildren(...options, new Option("your own text", ""));
  ui.example.value = own ? "" : (list[0]?.id ?? "");
  pickExample();
}

function pickExample(): void {
  const example = examples.find((e) => e.id === ui.example.value);
  if (example) ui.text.value = example.source;
  ui.reference.textContent = example ? `Reference (Debian's ${example.task === "translate" ? "translation" : "synopsis"}): ${example.target}` : "";
}

/** The share of exiting tokens the "at most 5% of exits wrong" mode lets be wrong. */
const ERROR_BUDGET = 0.05;

/** The threshold mode the user last picked, restored when a strategy allows it again. */
let modeChosen: HTMLInputElement = ui.modeAdaptive;

/** The chosen strategy's row of the package's table. */
function chosenStrategy(): StrategyInfo {
  const info = STRATEGIES.find((s) => s.name === ui.strategy.value);
  if (info === undefined) throw new Error(`the menu offers a strategy the package does not know: ${ui.strategy.value}`);
  return info;
}

/** Which threshold controls apply to the chosen strategy. */
function syncThresholdControls(): void {
  const { threshold } = chosenStrategy();
  ui.thresholdSet.disabled = threshold === "none";
  const adaptiveAllowed = threshold === "fixedOrAdaptive";
  ui.modeAdaptive.disabled = !adaptiveAllowed;
  ui.modeBudget.disabled = !adaptiveAllowed;
  if (!adaptiveAllowed) ui.modeFixed.checked = true;
  else modeChosen.checked = true;
  ui.threshold.disabled = !ui.modeFixed.checked;
  ui.thresholdOut.textContent = Number(ui.threshold.value).toFixed(2);
}

function chosenOptions(): GenerateOptions & { strategy: Strategy } {
  const { name: strategy, threshold } = chosenStrategy();
  // The field is required (an empty one would mean 0 tokens); the form does not submit without it.
  const options: GenerateOptions & { strategy: Strategy } = { strategy, task: ui.task.value, maxNewTokens: Number(ui.maxTokens.value) };
  if (threshold !== "none") {
    options.threshold = ui.modeFixed.checked ? Number(ui.threshold.value) : "adaptive";
    if (ui.modeBudget.checked) options.maxDisagreement = ERROR_BUDGET;
  }
  return options;
}

// ---- output -------------------------------------------------------------------------------

function fmt(x: number | null, digits: number, unit = ""): string {
  return x === null ? "—" : `${x.toFixed(digits)}${unit}`;
}

function showNumbers(run: Run): void {
  const out = standing(run.trace);
  const rows = run.counters ? run.counters.blockRows : estimateBlockRows(run.trace, shape);
  const rate = exitRate(run.trace, shape);
  ui.numbers.tokens.textContent = String(out.length);
  ui.numbers.speed.textContent = fmt(decodeTokensPerSecond(out.length, run.timing), 0);
  ui.numbers.exit.textContent = rate === null ? "—" : `${(rate * 100).toFixed(1)}%`;
  ui.numbers.blocks.textContent = fmt(blocksPerToken(rows, run.trace), 2);
  ui.numbers.first.textContent = run.timing.first === null ? "—" : `${(run.timing.first - run.timing.start).toFixed(0)} ms`;
  ui.numbers.passes.textContent = run.counters
    ? `${deepPassSummary(run.counters)}${run.counters.rollbacks > 0 ? `, ${run.counters.rollbacks} rollback${run.counters.rollbacks === 1 ? "" : "s"}` : ""}`
    : String(new Set(run.trace.flatMap((e) => (e.sync === null ? [] : [e.sync]))).size);
  ui.numbers.blocks.title = run.counters ? "from the package's counters" : "estimated from the trace while generating";
}

function drawAll(run: Run): void {
  if (!loaded) return;
  // After a stop (no counters) the tokens left on the stack will never be checked either.
  tokens.render(run.trace, shape, run.counters !== null || running === null);
  showNumbers(run);
  drawConfidence(ui.confChart, run.trace, shape);
  drawBeta(ui.betaChart, adaptive, observations(run.trace));
}

/** "1 token", "2 tokens". */
function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

/** The estimator's data: the calibration free.json ships (if any), then this page's runs. */
function describePoints(state: AdaptiveState): string {
  const page = `${state.consistentPoints} consistent and ${state.inconsistentPoints} inconsistent points`;
  const calibration = state.calibration;
  if (!calibration) return `${page}, ${plural(state.fits, "fit")}`;
  // Whole numbers, unless free.json's window has begun to replace them with this page's.
  const count = (m: Moments) => Math.round(m.points).toLocaleString("en");
  return `calibrated on ${count(calibration.consistent)} consistent and ${count(calibration.inconsistent)} inconsistent points (free.json), then ${page} from this page, ${plural(state.fits, "refit")}`;
}

function describeAdaptive(state: AdaptiveState): string {
  const points = describePoints(state);
  if (!state.fit) return `Threshold ${state.threshold.toFixed(3)} (no fit yet); ${points}. Ticks: this run's checked tokens.`;
  const { consistent: c, inconsistent: i } = state.fit;
  const rule =
    state.rule.kind === "budget"
      ? `the lowest confidence above which at most ${(100 * state.rule.rate).toFixed(0)}% of exiting tokens are inconsistent`
      : `the lowest confidence from which up P(consistent) > ${state.zeta}`;
  return `Threshold ${state.threshold.toFixed(3)} (${rule}); consistent Beta(${c.alpha.toFixed(2)}, ${c.beta.toFixed(2)}), inconsistent Beta(${i.alpha.toFixed(2)}, ${i.beta.toFixed(2)}); ${points}. Ticks: this run's checked tokens.`;
}

async function refreshAdaptive(): Promise<void> {
  if (!loaded) return;
  adaptive = await loaded.adaptiveState();
  ui.betaNote.textContent = describeAdaptive(adaptive);
  // The threshold belongs to the rule the estimator last read its fit with; before any fit
  // the initial threshold holds for both.
  const now = `, now ${adaptive.threshold.toFixed(3)}`;
  const budget = adaptive.rule.kind === "budget";
  ui.adaptiveNow.textContent = adaptive.fit === null || !budget ? now : "";
  ui.budgetNow.textContent = adaptive.fit === null || budget ? now : "";
  drawBeta(ui.betaChart, adaptive, last ? observations(last.trace) : []);
}

/** Runs one generation, calling `draw` (at most once a frame) as tokens arrive. */
async function generate(text: string, options: GenerateOptions & { strategy: Strategy }, draw: (run: Run) => void): Promise<Run> {
  if (!loaded) throw new Error("no model is loaded");
  running = new AbortController();
  const run: Run = { text, options, trace: [], counters: null, timing: { start: performance.now(), first: null, last: null }, finished: false, cut: { tokens: 0, bytes: 0 }, moved: null };
  current = run;
  let frame = 0;
  try {
    const out = await loaded.generate(text, {
      ...options,
      signal: running.signal,
      onToken: (event) => {
        const now = performance.now();
        run.timing.first ??= now;
        run.timing.last = now;
        applyEvent(run.trace, event);
        frame ||= requestAnimationFrame(() => {
          frame = 0;
          draw(run);
        });
      },
      onDeviceChange: (change) => {
        // The package moved the model to the CPU and goes on there: show where it runs now.
        run.moved = change;
        deviceAsked = "cpu";
        ui.device.value = "cpu";
        if (loaded) showDevice(loaded.info);
        ui.status.textContent = `The GPU was lost after ${plural(change.afterTokens, "token")}; going on on the CPU…`;
      },
    });
    cancelAnimationFrame(frame);
    run.timing.last = performance.now();
    run.trace = out.trace;
    run.counters = out.counters;
    run.finished = out.finished;
    run.cut = { tokens: out.truncatedInputTokens, bytes: out.truncatedInputBytes };
    return run;
  } finally {
    cancelAnimationFrame(frame);
    running = null;
  }
}

/** A sentence on a GPU lost during the run, or nothing. */
function movedNote(moved: DeviceChange | null): string {
  if (!moved) return "";
  return ` The WebGPU device was lost after ${plural(moved.afterTokens, "token")} (${moved.reason}); the model moved to the CPU, which decided those tokens again the same way and finished the text.`;
}

/** A sentence on what of a long input the model did not read, or nothing. */
function cutNote(cut: Run["cut"]): string {
  const parts = [];
  if (cut.tokens > 0) parts.push(`its last ${cut.tokens} tokens`);
  if (cut.bytes > 0) parts.push(cut.tokens > 0 ? `${cut.bytes.toLocaleString("en")} bytes of text after them` : `its last ${cut.bytes.toLocaleString("en")} bytes`);
  return parts.length === 0 ? "" : ` The input was longer than the model takes: ${parts.join(" and ")} were left out.`;
}

async function onGenerate(): Promise<void> {
  showError(ui.error, null);
  const text = ui.text.value;
  if (text.trim() === "") {
    showError(ui.error, "Type a text or pick an example first.");
    return;
  }
  last = null;
  ui.comparison.hidden = true;
  tokens.clear();
  setState("generating");
  ui.status.textContent = `Generating with ${ui.strategy.value}…`;
  try {
    last = await generate(text, chosenOptions(), drawAll);
    ui.status.textContent = `Done: ${standing(last.trace).length} tokens${last.finished ? "" : " (stopped at the token limit)"}.`;
    ui.status.textContent += cutNote(last.cut) + movedNote(last.moved);
  } catch (e) {
    if (e === STOPPED && current) {
      // Keep what was decided before the stop (no counters: the numbers stay estimates).
      last = current;
      ui.status.textContent = `Stopped by you after ${standing(current.trace).length} tokens.`;
    } else if (e instanceof Error && e.name === "DeviceLostError") {
      // The package could not move the model to the CPU itself: load it there afresh.
      ui.status.textContent = "Generation stopped.";
      showError(ui.error, `${describeError(e)}. The page loads the model on the CPU.`);
      ui.device.value = "cpu";
      await load("cpu", weightsAsked);
      return;
    } else {
      ui.status.textContent = "Generation stopped.";
      showError(ui.error, `Generation failed: ${describeError(e)}`);
    }
  }
  await refreshAdaptive().catch((e: unknown) => showError(ui.error, `Could not read the adaptive state: ${describeError(e)}`));
  if (last) drawAll(last);
  setState("ready");
}

async function onCompare(): Promise<void> {
  if (!last) return;
  const run = last;
  showError(ui.error, null);
  setState("comparing");
  ui.status.textContent = "Running the same input with full…";
  try {
    const full = await generate(run.text, { ...run.options, strategy: "full", threshold: undefined, maxDisagreement: undefined }, () => {});
    const mine = standing(run.trace).map(displayText);
    const theirs = standing(full.trace).map(displayText);
    const decode = speedup(decodeMsPerToken(theirs.length, full.timing), decodeMsPerToken(mine.length, run.timing));
    const endToEnd = speedup(msPerToken(theirs.length, full.timing), msPerToken(mine.length, run.timing));
    const diff = diffTokens(mine, theirs);
    const same = diff.left.every((t) => !t.changed) && diff.right.every((t) => !t.changed);
    ui.speedup.textContent =
      `${run.options.strategy}: decoding ${fmt(decode, 2, "×")} as fast as full ` +
      `(${fmt(decodeMsPerToken(mine.length, run.timing), 2)} against ${fmt(decodeMsPerToken(theirs.length, full.timing), 2)} ms per token after the first); ` +
      `end to end, encoder included, ${fmt(endToEnd, 2, "×")}. One run each, measured here. ` +
      (same ? "The outputs are identical." : `${diff.same} tokens in common; ${diff.left.filter((t) => t.changed).length} only in this run, ${diff.right.filter((t) => t.changed).length} only in full (marked).`);
    ui.speedup.dataset.speedup = decode === null ? "" : String(decode);
    ui.leftH.textContent = run.options.strategy;
    for (const [el, side] of [[ui.left, diff.left], [ui.right, diff.right]] as const) {
      el.replaceChildren(...side.map((t) => (t.changed ? Object.assign(document.createElement("mark"), { textContent: t.text }) : document.createTextNode(t.text))));
    }
    ui.comparison.hidden = false;
    ui.status.textContent = "Compared with full.";
  } catch (e) {
    if (e === STOPPED) {
      ui.status.textContent = "Comparison stopped by you.";
    } else {
      ui.status.textContent = "Comparison stopped.";
      showError(ui.error, `The run with full failed: ${describeError(e)}`);
    }
  }
  setState("ready");
}

// ---- model and device -----------------------------------------------------------------------

function showDevice(info: ModelInfo): void {
  ui.deviceNow.textContent = info.device === "cpu" ? "CPU (WebAssembly)" : info.device === "webgpu" ? "WebGPU" : String(info.device);
  ui.deviceNow.dataset.device = info.device;
  // Packages that can run on WebGPU say why "auto" chose the CPU (ModelInfo.deviceNote);
  // read optionally, so the page works with packages from before and after that field.
  const why = (info as ModelInfo & { deviceNote?: string | null }).deviceNote ?? null;
  ui.deviceWhy.hidden = why === null;
  ui.deviceWhy.textContent = why === null ? "" : `Why not WebGPU: ${why}.`;
}

/** The weights' format as the page says it. */
const weightsLabel = (weights: string): string => (weights === "" ? "weights as stored" : `${weights} weights`);

async function load(device: Device, weights: string): Promise<void> {
  setState("loading");
  progress.reset();
  ui.files.open = true;
  ui.status.textContent = `Loading the model from ${baseUrl.pathname} (device: ${device}, ${weightsLabel(weights)})…`;
  try {
    const next = await loadModel(baseUrl, device, weights === "" ? undefined : (weights as Dtype), (p) => progress.update(p), (w) => progress.warn(w));
    const previous = loaded;
    loaded = next;
    deviceAsked = device;
    weightsAsked = weights;
    // The output shown stays, but a comparison with full must run on one device.
    last = null;
    ui.comparison.hidden = true;
    await previous?.dispose();
    const info = next.info;
    shape = { decoderBlocks: info.decoderBlocks, shallowExit: info.shallowExitLayer };
    showDevice(info);
    showError(ui.deviceError, null);
    ui.files.open = false;
    fillTasks(info.tasks.length > 0 ? info.tasks : [...new Set(examples.map((e) => e.task))]);
    ui.status.textContent = `Model ready: ${info.decoderBlocks} decoder blocks, shallow exit after ${info.shallowExitLayer ?? "none"}, on ${ui.deviceNow.textContent}, ${weightsLabel(weights)}.`;
    await refreshAdaptive();
    setState("ready");
  } catch (e) {
    const message = describeError(e);
    if (loaded) {
      // The switch failed: keep the model that works, say why, and show the device it uses.
      ui.device.value = deviceAsked;
      ui.weights.value = weightsAsked;
      showError(ui.deviceError, `Could not switch to device "${device}" with ${weightsLabel(weights)}: ${message}. The model keeps running on ${ui.deviceNow.textContent}, ${weightsLabel(weightsAsked)}.`);
      ui.status.textContent = "Model ready.";
      setState("ready");
    } else {
      showError(ui.deviceError, `Could not load the model: ${message}`);
      ui.status.textContent = "The model did not load.";
      setState("error");
    }
  }
}

// ---- start ----------------------------------------------------------------------------------

ui.task.addEventListener("change", fillExamples);
ui.example.addEventListener("change", pickExample);
ui.text.addEventListener("input", () => {
  ui.example.value = "";
  ui.reference.textContent = "";
});
// the menu is the package's table of strategies, in its order (free first)
for (const { name, summary } of STRATEGIES) ui.strategy.add(new Option(`${name} (${summary})`, name));
ui.strategy.addEventListener("change", syncThresholdControls);
for (const mode of [ui.modeAdaptive, ui.modeBudget, ui.modeFixed]) {
  mode.addEventListener("input", () => {
    modeChosen = mode;
    syncThresholdControls();
  });
}
ui.threshold.addEventListener("input", syncThresholdControls);
ui.form.addEventListener("submit", (e) => {
  e.preventDefault();
  void onGenerate();
});
ui.stop.addEventListener("click", () => running?.abort(STOPPED));
ui.compare.addEventListener("click", () => void onCompare());
ui.resetAdaptive.addEventListener("click", async () => {
  await loaded?.resetAdaptive();
  await refreshAdaptive().catch((e: unknown) => showError(ui.error, describeError(e)));
});
ui.device.addEventListener("change", () => void load(ui.device.value as Device, ui.weights.value));
ui.weights.addEventListener("change", () => void load(ui.device.value as Device, ui.weights.value));

// Anything that escapes the handlers above still reaches the user in words.
window.addEventListener("error", (e) => showError(ui.error, `Unexpected error: ${e.message}`));
window.addEventListener("unhandledrejection", (e) => showError(ui.error, `Unexpected error: ${describeError(e.reason)}`));
window.addEventListener("resize", () => {
  drawConfidence(ui.confChart, last?.trace ?? [], shape);
  drawBeta(ui.betaChart, adaptive, last ? observations(last.trace) : []);
});

fillTasks([...new Set(examples.map((e) => e.task))]);
syncThresholdControls();
drawConfidence(ui.confChart, [], shape);
drawBeta(ui.betaChart, null, []);
setState("loading");
const requested = params.get("device");
ui.device.value = requested === "cpu" || requested === "webgpu" ? requested : "auto";
// An unknown ?dtype= reaches the package, which refuses it by name (the page then says why).
const dtypeParam = params.get("dtype");
if (dtypeParam !== null && ![...ui.weights.options].some((o) => o.value === dtypeParam)) ui.weights.add(new Option(dtypeParam, dtypeParam));
ui.weights.value = dtypeParam ?? "";
void webgpuSupport().then(({ available, note }) => {
  ui.gpuNote.textContent = note;
  ui.gpuNote.hidden = false;
  ui.gpuNote.dataset.webgpu = String(available);
});
void load(ui.device.value as Device, ui.weights.value);

// free-wasm's JavaScript API: FREE early-exit decoding for T5 in the browser. A typed shell
// over the wasm-bindgen bindings (free_wasm.js, built from crate/src/wasm.rs) that adds what
// belongs to the page: fetching and caching the model files with progress, a promise per
// generation that yields to the event loop between decoder steps (so pages stay responsive,
// tokens stream and an AbortSignal cancels), and one generation at a time per model.

import init, { FreeModel as RawModel } from "./free_wasm.js";
import { untilAborted } from "./abort.js";
import { loadFiles, type LoadedFiles } from "./files.js";
import { ENGINE_OPTIONS, type EngineOptions } from "./options.js";
import { STRATEGIES } from "./strategies.js";
import { Turns } from "./turns.js";
import type {
  AdaptiveState,
  Device,
  DeviceChange,
  Dtype,
  GenerateOptions,
  Generation,
  LoadOptions,
  ModelInfo,
  ModelSource,
  TraceEntry,
} from "./types.js";

export type * from "./types.js";
/** Every decoding strategy and what it takes (see `StrategyInfo`), in the demo page's order. */
export { STRATEGIES };

let wasmReady: Promise<unknown> | undefined;

/** Instantiates the WebAssembly module once (free_wasm_bg.wasm beside this file). */
function initWasm(): Promise<unknown> {
  wasmReady ??= init().catch((e: unknown) => {
    wasmReady = undefined; // let a later load try again (e.g. after a network error)
    throw e;
  });
  return wasmReady;
}

const DEVICES: readonly Device[] = ["auto", "webgpu", "cpu"];

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * Builds the model on the device asked for. "webgpu" must get a WebGPU device (any adapter,
 * software renderers included) or fails with a NotSupportedError saying why; "auto" uses a
 * hardware WebGPU adapter when the browser has one and the CPU otherwise, and says why in
 * `info.deviceNote`. Either device holds the weights as `dtype` asks.
 */
async function build(files: LoadedFiles, device: Device | undefined, dtype: Dtype | undefined): Promise<[RawModel, string | null]> {
  const want = device ?? "auto";
  if (!DEVICES.includes(want)) {
    throw new TypeError(`unknown device ${JSON.stringify(device)}; use "auto", "webgpu" or "cpu"`);
  }
  const cpu = () => RawModel.load(files.config, files.weights, files.tokenizer, files.free, dtype);
  if (want === "cpu") return [cpu(), null];
  if (typeof navigator === "undefined" || !(navigator as { gpu?: unknown }).gpu) {
    const why = "this browser has no WebGPU (navigator.gpu is missing)";
    if (want === "webgpu") throw new DOMException(`device "webgpu": ${why}; use "auto" or "cpu"`, "NotSupportedError");
    return [cpu(), why];
  }
  try {
    return [await RawModel.loadGpu(files.config, files.weights, files.tokenizer, files.free, want === "webgpu", dtype), null];
  } catch (e) {
    // The wasm layer names the device's failures (no adapter, limits, a software adapter
    // refused) NotSupportedError; bad model files are the caller's to fix whatever the device.
    const device = e instanceof Error && e.name === "NotSupportedError";
    if (want === "webgpu") throw device ? new DOMException(`device "webgpu": ${errorText(e)}`, "NotSupportedError") : e;
    return [cpu(), errorText(e)];
  }
}

/** The options object the wasm layer reads. */
type WasmOptions = Partial<EngineOptions>;

const OPTION_NAMES: readonly string[] = [...ENGINE_OPTIONS, "onToken", "onDeviceChange", "signal"];

function wasmOptions(options: GenerateOptions): WasmOptions {
  // The wasm layer refuses unknown fields; the wrapper must too, or a typo such as
  // `maxTokens` would silently generate with the default.
  for (const name of Object.keys(options)) {
    if (!OPTION_NAMES.includes(name)) {
      throw new TypeError(`invalid generate options: unknown field "${name}"; the options are ${OPTION_NAMES.join(", ")}`);
    }
  }
  const { task, strategy, threshold, maxNewTokens, exitLayer, maxDisagreement, runAhead } = options;
  const out: WasmOptions = {};
  if (maxDisagreement !== undefined) {
    if (typeof threshold === "number") {
      throw new TypeError(`maxDisagreement applies to the adaptive threshold; drop it or the fixed threshold ${threshold}`);
    }
    out.maxDisagreement = maxDisagreement;
  }
  if (task !== undefined) out.task = task;
  if (strategy !== undefined) out.strategy = strategy;
  if (maxNewTokens !== undefined) out.maxNewTokens = maxNewTokens;
  if (exitLayer !== undefined) out.exitLayer = exitLayer;
  if (runAhead !== undefined) out.runAhead = runAhead;
  if (typeof threshold === "number") {
    out.threshold = threshold;
  } else if (threshold === "adaptive") {
    const s = strategy ?? "free";
    // an unknown strategy is the wasm layer's to name
    if (STRATEGIES.some((info) => info.name === s && info.threshold !== "fixedOrAdaptive")) {
      const adaptive = STRATEGIES.filter((info) => info.threshold === "fixedOrAdaptive").map((info) => info.name);
      throw new TypeError(`threshold "adaptive" applies to the ${adaptive.join(" and ")} strategies, not ${s}; give a number in [0, 1]`);
    }
  } else if (threshold !== undefined) {
    throw new TypeError(`threshold must be a number in [0, 1] or "adaptive", not ${JSON.stringify(threshold)}`);
  }
  return out;
}

// A macrotask boundary without setTimeout's 4 ms clamp for nested timers: one message
// through a MessageChannel. Between decoder steps the page can paint, handle input and
// deliver an abort.
const channel = new MessageChannel();
const waiting: Array<() => void> = [];
channel.port1.onmessage = () => waiting.shift()?.();
function nextTask(): Promise<void> {
  return new Promise((resolve) => {
    waiting.push(resolve);
    channel.port2.postMessage(null);
  });
}

/** The wasm layer's result: a Generation but for what this wrapper adds. */
type RawGeneration = Omit<Generation, "deviceChanges">;

/** The trace that a sequence of token events describes. */
function applyEvent(trace: TraceEntry[], from: number, entries: TraceEntry[]): void {
  trace.splice(from, trace.length - from, ...entries);
}

/** A loaded model. Load with `FreeModel.load`; free its memory with `dispose()`. */
export class FreeModel {
  #info: ModelInfo;
  #raw: RawModel;
  /** The files' bytes, kept while on WebGPU to rebuild the model on the CPU if the device is lost. */
  #carry: LoadedFiles | null;
  /** Generations, and the calls that read or reset what they learn, one after another. */
  #turns = new Turns();
  /** Aborted by dispose(), to stop the running generation and those queued behind it. */
  #disposing = new AbortController();
  /** Set once the wasm side has freed the model; later calls get its "disposed" error. */
  #disposed = false;

  private constructor(raw: RawModel, deviceNote: string | null, carry: LoadedFiles | null) {
    this.#raw = raw;
    this.#carry = raw.device() === "webgpu" ? carry : null;
    this.#info = {
      device: raw.device() === "webgpu" ? "webgpu" : "cpu",
      deviceNote,
      decoderBlocks: raw.decoderBlocks(),
      shallowExitLayer: raw.shallowExitLayer() ?? null,
      tasks: raw.tasks(),
    };
  }

  /** What the model is and where it runs now. */
  get info(): ModelInfo {
    return this.#info;
  }

  /**
   * Loads a Hugging Face T5 model (config.json, model.safetensors, tokenizer.json and,
   * for early exits, free.json) from a folder URL or from memory.
   */
  static async load(source: ModelSource, options: LoadOptions = {}): Promise<FreeModel> {
    if (options.device !== undefined && !DEVICES.includes(options.device)) {
      throw new TypeError(`unknown device ${JSON.stringify(options.device)}; use "auto", "webgpu" or "cpu"`);
    }
    const [files] = await Promise.all([loadFiles(source, options), initWasm()]);
    options.signal?.throwIfAborted();
    const [raw, note] = await build(files, options.device, options.dtype);
    return new FreeModel(raw, note, options.carryOver === false ? null : files);
  }

  /**
   * Generates from `text`. Resolves to the output and its per-token trace; `onToken`
   * hears about every decoder step as it happens. If `signal` aborts (or the model is
   * disposed) it rejects with the abort reason, a DOMException named "AbortError" unless
   * you gave another; what the adaptive threshold learned until then stays. Calls made
   * while another generation runs wait for it (an abort meanwhile rejects at once). If
   * the WebGPU device is lost (a driver reset, say), the model moves to the CPU and the
   * generation finishes there as if nothing had happened, but for `deviceChanges` and
   * `onDeviceChange`; later calls run on the CPU. With `carryOver: false` it rejects
   * with an Error named "DeviceLostError" instead, as does every later call: load the
   * model again (`device: "cpu"` always works).
   */
  generate(text: string, options: GenerateOptions = {}): Promise<Generation> {
    // Bad arguments are refused now, not when the generations queued before this one end.
    let raw: WasmOptions;
    try {
      if (typeof text !== "string") throw new TypeError(`the text to generate from must be a string, not ${typeof text}`);
      raw = wasmOptions(options);
    } catch (e) {
      return Promise.reject(e);
    }
    // An abort while queued rejects at once; the queued run then sees the aborted signal and skips.
    return untilAborted(this.#turns.run(() => this.#generate(text, raw, options)), options.signal);
  }

  async #generate(text: string, raw: WasmOptions, options: GenerateOptions): Promise<Generation> {
    const { onToken, signal } = options;
    const disposing = this.#disposing.signal;
    signal?.throwIfAborted();
    if (!this.#disposed) disposing.throwIfAborted();
    /** The trace as the caller was shown it. */
    const shown: TraceEntry[] = [];
    const onStep = async (from: number, entries: TraceEntry[]) => {
      applyEvent(shown, from, entries);
      onToken?.({ from, entries });
      await nextTask();
      signal?.throwIfAborted();
      disposing.throwIfAborted();
    };
    try {
      // The wasm layer resolves to a value shaped as Generation (crate/src/pipeline.rs
      // Report, also the CLI's --json) without deviceChanges; types.ts mirrors it field for field.
      const out = (await this.#raw.generateStreaming(text, raw, onStep)) as RawGeneration;
      return { ...out, deviceChanges: [] };
    } catch (e) {
      if (!(e instanceof Error && e.name === "DeviceLostError") || this.#carry === null) throw e;
      const change: DeviceChange = { from: "webgpu", to: "cpu", reason: e.message, afterTokens: shown.length };
      this.#moveToCpu(this.#carry, e);
      options.onDeviceChange?.(change);
      return { ...(await this.#replay(text, raw, options, shown)), deviceChanges: [change] };
    }
  }

  /** Rebuilds the model on the CPU from the kept bytes, with what the threshold had learned. */
  #moveToCpu(files: LoadedFiles, lost: Error): void {
    try {
      this.#raw.moveToCpu(files.config, files.weights, files.tokenizer, files.free);
    } catch (cpu) {
      const error = new Error(`${lost.message}; moving the model to the CPU failed too: ${errorText(cpu)}`);
      error.name = "DeviceLostError";
      throw error;
    }
    this.#carry = null;
    this.#info = { ...this.#info, device: "cpu", deviceNote: `the WebGPU device was lost (${lost.message}); the model moved to the CPU` };
  }

  /**
   * The generation again, on the CPU, from its start: the CPU decides what the GPU did, so
   * the steps the caller was already shown are replayed silently, the first step past them
   * carries the whole trace (`from` 0, replacing the GPU's entries with the CPU's own
   * confidences), and the steps after it stream as usual.
   */
  async #replay(text: string, raw: WasmOptions, options: GenerateOptions, shown: TraceEntry[]): Promise<RawGeneration> {
    const { onToken, signal } = options;
    const disposing = this.#disposing.signal;
    const trace: TraceEntry[] = [];
    let caughtUp = false;
    const onStep = async (from: number, entries: TraceEntry[]) => {
      applyEvent(trace, from, entries);
      if (caughtUp) {
        onToken?.({ from, entries });
      } else if (trace.length > shown.length) {
        caughtUp = true;
        onToken?.({ from: 0, entries: [...trace] });
      }
      await nextTask();
      signal?.throwIfAborted();
      disposing.throwIfAborted();
    };
    const out = (await this.#raw.generateStreaming(text, raw, onStep)) as RawGeneration;
    // A replay that never went past what the GPU had shown still leaves the caller the CPU's trace.
    if (!caughtUp) onToken?.({ from: 0, entries: [...trace] });
    return out;
  }

  /**
   * Destroys the model's WebGPU device now, as a driver reset would: the running
   * generation (and later ones) then move to the CPU, or reject with a "DeviceLostError"
   * under `carryOver: false`. For testing what your page does when the GPU goes away;
   * callable from `onToken`. Returns false (and does nothing) on the CPU.
   */
  loseDevice(): boolean {
    return !this.#disposed && this.#raw.loseDevice();
  }

  /**
   * The adaptive threshold's state (current threshold, fitted Beta mixture, data counts,
   * the calibration it started from) once the generations called before it are done: a
   * running generation holds it.
   */
  adaptiveState(): Promise<AdaptiveState> {
    return this.#turns.run(async () => this.#raw.adaptiveState() as AdaptiveState);
  }

  /**
   * Forgets what the adaptive threshold learned from this model's generations, after the
   * generations called before it: back to where it started, free.json's calibration (or,
   * without one, free.json's threshold).
   */
  resetAdaptive(): Promise<void> {
    return this.#turns.run(async () => this.#raw.resetAdaptive());
  }

  /**
   * Frees the model's memory. A running generation is aborted and queued ones reject;
   * the promise resolves once the memory is free. Using the model afterwards throws an
   * error saying it was disposed.
   */
  async dispose(): Promise<void> {
    this.#disposing.abort(new DOMException("the model was disposed during generate", "AbortError"));
    await this.#turns.settled();
    this.#raw.dispose();
    this.#carry = null;
    this.#disposed = true;
  }
}

// The browser bench's page (scripts/bench-browser.sh drives it through run.mjs): loads the
// model with the public API on one device, once per weight format the contenders ask for
// (`dtype`), and runs the contenders over the same inputs, interleaved as the native
// `free bench` does (the order rotates per example, so no strategy always runs first). With an
// ONNX export of the same checkpoint (tools/export_onnx.py) it also loads transformers.js on
// the same device, once per dtype asked for (fp32, fp16, q8: the files its users download),
// and runs its greedy generation as more contenders in the same rotation. It records; run.mjs
// turns the records into the table.

import {
  AutoModelForSeq2SeqLM,
  AutoTokenizer,
  BaseStreamer,
  env,
  Tensor,
  type PreTrainedModel,
  type PreTrainedTokenizer,
  type TextStreamer,
} from "@huggingface/transformers";
import { FreeModel, type Device, type Dtype, type GenerateOptions } from "free-wasm";

/** transformers.js's weight formats the bench runs (its `dtype` option; the ONNX files
 * `*.onnx`, `*_fp16.onnx`, `*_quantized.onnx`). */
export type TjsDtype = "fp32" | "fp16" | "q8";

export interface Example {
  task: string;
  source: string;
}

export interface Contender {
  name: string;
  /** free-wasm (the default) or transformers.js, which only has the full model (`maxNewTokens`). */
  library?: "free-wasm" | "transformers.js";
  /** The weight format: free-wasm's `LoadOptions.dtype` (none: as model.safetensors stores
   * them) or transformers.js's `dtype`. */
  dtype?: Dtype | TjsDtype;
  /** free-wasm's model folder as served, when not the bench's own (an 8-bit checkpoint). */
  baseUrl?: string;
  options: Pick<GenerateOptions, "strategy" | "threshold" | "maxDisagreement" | "maxNewTokens" | "runAhead">;
}

/** One loaded model: a library and a weight format. */
export interface Loaded {
  library: "free-wasm" | "transformers.js";
  dtype: string;
  loadSeconds: number;
}

/** The ONNX export of the same checkpoint, for transformers.js. */
export interface OnnxModel {
  /** The export's folder, as served (config.json, tokenizer.json, onnx/...). */
  baseUrl: string;
  /** onnxruntime-web's wasm files, as served (transformers.js would fetch them from a CDN). */
  ortUrl: string;
  /** Task -> prefix, as the engine applies them (free.json's `tasks`, or T5's own). */
  prefixes: Record<string, string>;
  /** The engine's input limit (config.json n_positions, else 512). */
  maxInputTokens: number;
}

export interface Tally {
  name: string;
  task: string;
  /** Tokens of the outputs (rolled-back trace entries excluded). */
  tokens: number;
  /** Of those, the ones that left at an exit before the last block. */
  early: number;
  /** Wall time of the generate calls: tokenization, encoder and decoder. */
  seconds: number;
  /** Of that, the decoder's: free-wasm's own `timings.decodeMs`; for transformers.js from
   * its streamer's first call (the decoder's start token, after the encoder) to its end. */
  decodeSeconds: number;
  /** Tokenizing and the encoder: free-wasm's `timings.encodeMs`; for transformers.js from the
   * call to its streamer's first call. On WebGPU free-wasm submits the encoder's work with the
   * first decoder step, so there it counts in `decodeSeconds`: compare first-token times. */
  encodeSeconds: number;
  /** From the call to the first generated token (free-wasm's first `onToken`, transformers.js's
   * second streamer call), summed over the inputs. */
  firstTokenSeconds: number;
  outputs: number[][];
}

export interface BenchReport {
  device: "cpu" | "webgpu";
  deviceNote: string | null;
  /** Each model the contenders needed, with its load time (transformers.js: the tokenizer
   * and both ONNX sessions). */
  loaded: Loaded[];
  /** The models that could not load on this device, with the reason: their contenders do
   * not run here. */
  skipped: (Omit<Loaded, "loadSeconds"> & { key: string; reason: string })[];
  /** One per (task, contender), tasks in order of first appearance. */
  tallies: Tally[];
}

/** One generation's outcome, the same for both libraries. */
interface Outcome {
  tokens: number[];
  /** Decoder steps that produced an output token (or the end of the text). */
  steps: number;
  early: number;
  encodeSeconds: number;
  decodeSeconds: number;
  firstTokenSeconds: number;
}

/** Times transformers.js's generate through its streamer: the first `put` carries the decoder's
 * start token (generate calls it after running the encoder), each later one a new token. */
class Clock extends BaseStreamer {
  puts: number[] = [];
  ended = 0;
  override put(): void {
    this.puts.push(performance.now());
  }
  override end(): void {
    this.ended = performance.now();
  }
}

class TransformersJs {
  private constructor(
    private model: PreTrainedModel,
    private tokenizer: PreTrainedTokenizer,
    private onnx: OnnxModel,
  ) {}

  static async load(onnx: OnnxModel, device: Device, dtype: TjsDtype): Promise<TransformersJs> {
    // Local files only: no Hub, no CDN for the runtime, no Cache API between runs.
    env.allowRemoteModels = false;
    env.allowLocalModels = true;
    env.localModelPath = "";
    env.useBrowserCache = false;
    env.useWasmCache = false;
    const wasm = env.backends.onnx.wasm!;
    // transformers.js's own choice of build (the asyncify one), from the page's server.
    wasm.wasmPaths = { mjs: `${onnx.ortUrl}ort-wasm-simd-threaded.asyncify.mjs`, wasm: `${onnx.ortUrl}ort-wasm-simd-threaded.asyncify.wasm` };
    // free-wasm runs on one thread; the bench compares one thread with one thread.
    wasm.numThreads = 1;
    const options = { device: device === "cpu" ? "wasm" : "webgpu", dtype } as const;
    const [model, tokenizer] = await Promise.all([
      AutoModelForSeq2SeqLM.from_pretrained(onnx.baseUrl, options),
      AutoTokenizer.from_pretrained(onnx.baseUrl),
    ]);
    // The device transformers.js created its ONNX Runtime sessions for (it throws rather
    // than fall back when the execution provider cannot start).
    const devices = new Set(Object.values(model.sessions).map((s: { config: { device: string } }) => s.config.device));
    if (devices.size !== 1 || !devices.has(options.device)) throw new Error(`transformers.js asked for ${options.device}, its sessions run on ${[...devices].join(", ")}`);
    return new TransformersJs(model, tokenizer, onnx);
  }

  /** The engine's input ids (crate/src/pipeline.rs, encode_input): prefix + text, cut to the
   * input limit keeping the final end-of-sequence token. */
  inputIds(source: string, task: string): number[] {
    const ids = this.tokenizer.encode(this.onnx.prefixes[task] + source);
    if (ids.length > this.onnx.maxInputTokens) {
      const last = ids[ids.length - 1];
      ids.length = this.onnx.maxInputTokens;
      if (last === this.eos) ids[ids.length - 1] = last;
    }
    return ids;
  }

  private get eos(): number {
    return Number(this.model.generation_config?.eos_token_id ?? 1);
  }

  async generate(source: string, task: string, maxNewTokens: number): Promise<Outcome> {
    const t0 = performance.now();
    const ids = this.inputIds(source, task);
    const clock = new Clock();
    const inputIds = new Tensor("int64", BigInt64Array.from(ids, BigInt), [1, ids.length]);
    const attentionMask = new Tensor("int64", new BigInt64Array(ids.length).fill(1n), [1, ids.length]);
    const out = (await this.model.generate({
      input_ids: inputIds,
      attention_mask: attentionMask,
      max_new_tokens: maxNewTokens,
      do_sample: false,
      num_beams: 1,
      // The .d.ts intersects generate's `streamer` (a BaseStreamer) with GenerationConfig's
      // (a TextStreamer); at run time any object with put/end is used.
      streamer: clock as unknown as TextStreamer,
    })) as Tensor;
    // [decoder start, generated..., end of text if it came]; free-wasm's tokens leave out both.
    const generated = (out.tolist() as bigint[][])[0].slice(1).map(Number);
    const steps = generated.length;
    if (generated[generated.length - 1] === this.eos) generated.pop();
    return {
      tokens: generated,
      steps,
      early: 0,
      encodeSeconds: (clock.puts[0] - t0) / 1000,
      decodeSeconds: (clock.ended - clock.puts[0]) / 1000,
      firstTokenSeconds: (clock.puts[1] - t0) / 1000,
    };
  }

  async dispose(): Promise<void> {
    await this.model.dispose();
  }
}

/** The key of a contender's model among the loaded ones. */
const modelKey = (c: Contender): string => `${c.library ?? "free-wasm"} ${c.dtype ?? "stored"} ${c.baseUrl ?? ""}`;

async function run(baseUrl: string, device: Device, examples: Example[], contenders: Contender[], onnx: OnnxModel | null): Promise<BenchReport> {
  const models = new Map<string, FreeModel>();
  const tjsModels = new Map<string, TransformersJs>();
  const loaded: Loaded[] = [];
  const skipped: BenchReport["skipped"] = [];
  const timed = async <T>(load: () => Promise<T>): Promise<[T, number]> => {
    const t0 = performance.now();
    const value = await load();
    return [value, (performance.now() - t0) / 1000];
  };
  try {
    for (const c of contenders) {
      const key = modelKey(c);
      if (models.has(key) || tjsModels.has(key) || skipped.some((s) => s.key === key)) continue;
      const library = c.library ?? "free-wasm";
      const dtype = c.dtype ?? "stored";
      try {
        if (library === "transformers.js") {
          if (!onnx) throw new Error("a transformers.js contender needs the ONNX export (run.mjs --onnx DIR)");
          const [tjs, seconds] = await timed(() => TransformersJs.load(onnx, device, c.dtype as TjsDtype));
          tjsModels.set(key, tjs);
          loaded.push({ library, dtype, loadSeconds: seconds });
        } else {
          const [model, seconds] = await timed(() => FreeModel.load({ baseUrl: c.baseUrl ?? baseUrl }, { device, cache: false, dtype: c.dtype as Dtype | undefined }));
          models.set(key, model);
          loaded.push({ library, dtype, loadSeconds: seconds });
        }
      } catch (e) {
        // Not every format runs on every device (transformers.js's fp16 on WebGPU needs
        // shader-f16): say so and go on. The model as stored must load.
        if (c.dtype === undefined) throw e;
        skipped.push({ library, dtype, key, reason: String(e) });
      }
    }
    const running = contenders.filter((c) => models.has(modelKey(c)) || tjsModels.has(modelKey(c)));
    // Not counted: the first generate compiles the GPU pipelines and warms the JIT.
    for (const model of models.values()) {
      await model.generate(examples[0].source, { task: examples[0].task, strategy: "full", maxNewTokens: 4 });
      await model.resetAdaptive();
    }
    for (const tjs of tjsModels.values()) await tjs.generate(examples[0].source, examples[0].task, 4);
    const first = models.get(modelKey({ name: "", options: {} }));
    if (!first) throw new Error("the contenders must include free-wasm with the weights as stored (the reference)");
    const tallies: Tally[] = [];
    const tallyOf = (task: string, name: string): Tally => {
      let t = tallies.find((x) => x.task === task && x.name === name);
      if (!t) tallies.push((t = { name, task, tokens: 0, early: 0, seconds: 0, encodeSeconds: 0, decodeSeconds: 0, firstTokenSeconds: 0, outputs: [] }));
      return t;
    };
    const blocks = first.info.decoderBlocks;
    const freeWasm = async (ex: Example, c: Contender): Promise<Outcome> => {
      const model = models.get(modelKey(c))!;
      const t0 = performance.now();
      let first = 0;
      const out = await model.generate(ex.source, { ...c.options, task: ex.task, onToken: () => void (first ||= performance.now()) });
      const live = out.trace.filter((t) => !t.rolledBack);
      return {
        tokens: out.tokens,
        steps: live.length,
        early: live.filter((t) => t.exit < blocks).length,
        encodeSeconds: out.timings.encodeMs / 1000,
        decodeSeconds: out.timings.decodeMs / 1000,
        firstTokenSeconds: (first - t0) / 1000,
      };
    };
    for (const [i, ex] of examples.entries()) {
      for (let k = 0; k < running.length; k++) {
        const c = running[(i + k) % running.length];
        const t0 = performance.now();
        const out = c.library === "transformers.js" ? await tjsModels.get(modelKey(c))!.generate(ex.source, ex.task, c.options.maxNewTokens!) : await freeWasm(ex, c);
        const tally = tallyOf(ex.task, c.name);
        tally.seconds += (performance.now() - t0) / 1000;
        tally.encodeSeconds += out.encodeSeconds;
        tally.decodeSeconds += out.decodeSeconds;
        tally.firstTokenSeconds += out.firstTokenSeconds;
        tally.tokens += out.steps;
        tally.early += out.early;
        tally.outputs.push(out.tokens);
      }
    }
    return { device: first.info.device, deviceNote: first.info.deviceNote, loaded, skipped, tallies };
  } finally {
    for (const model of models.values()) await model.dispose();
    for (const tjs of tjsModels.values()) await tjs.dispose();
  }
}

declare global {
  interface Window {
    freeBench: { run: typeof run };
  }
}
window.freeBench = { run };
document.getElementById("status")!.textContent = "ready";

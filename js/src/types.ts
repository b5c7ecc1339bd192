// The package's public types: what load and generate take and return. What the engine
// takes (options) and reports (traces, counters, timings, the adaptive threshold's state) and
// its table of strategies are generated from the Rust types into options.ts, report.ts and
// strategies.ts; this file adds what only JavaScript has (files, devices, callbacks).

import type { Dtype, EngineOptions } from "./options.js";
import type { AdaptiveState, BetaParams, Counters, Moments, Report, Timings, TokenTrace } from "./report.js";
import type { STRATEGIES } from "./strategies.js";

/**
 * One decoding strategy and what it takes (crate/src/pipeline.rs `StrategyInfo`; the table
 * is `STRATEGIES`): `threshold` "none", "fixed" or "fixedOrAdaptive" (without a fixed
 * threshold the adaptive one, which `maxDisagreement` may read instead of FREE's rule);
 * `exitsEarly`: it has an exit layer; `exact`: its output is token for token the full model's.
 */
export type StrategyInfo = (typeof STRATEGIES)[number];

/** The decoding strategies by name. */
export type Strategy = StrategyInfo["name"];

/**
 * Where the model runs: "webgpu" (the GPU, through WebGPU; fails with a NotSupportedError
 * saying why when the browser cannot), "cpu" (WebAssembly with SIMD), or "auto": WebGPU on
 * a hardware adapter, else the CPU (`ModelInfo.deviceNote` says why).
 */
export type Device = "auto" | "webgpu" | "cpu";

/** The files of a Hugging Face T5 folder, by the names they must have under `baseUrl`. */
export type ModelFileName = "config.json" | "model.safetensors" | "tokenizer.json" | "free.json";

/** File contents: an `ArrayBuffer` or a view on one (e.g. a `Uint8Array`). */
export type Bytes = ArrayBuffer | ArrayBufferView;

/** A model already in memory (e.g. from `<input type="file">` or IndexedDB). */
export interface ModelFiles {
  config: Bytes;
  weights: Bytes;
  tokenizer: Bytes;
  /** free.json; without it only the full model runs (early exits need `exitLayer`). */
  free?: Bytes;
}

/**
 * Where to load a model from: a folder URL (absolute, or relative to the page) that serves
 * config.json, model.safetensors, tokenizer.json and, optionally, free.json; or the files.
 */
export type ModelSource = { baseUrl: string | URL } | { files: ModelFiles };

/** Reported while a file downloads (or is read from the cache). */
export interface LoadProgress {
  file: ModelFileName;
  /** Bytes received so far. */
  loaded: number;
  /** The file's size, or null when the server did not say (or compressed it). */
  total: number | null;
  /** True when the bytes come from Cache Storage rather than the network. */
  fromCache: boolean;
}

export interface LoadOptions {
  onProgress?: (progress: LoadProgress) => void;
  /**
   * Keep the downloaded files in Cache Storage and use them from there next time, also
   * offline. Needs a secure context (https or localhost). Default false.
   */
  cache?: boolean;
  /**
   * Allow a `baseUrl` on another origin than the page's (a CDN, the Hugging Face hub). Off by
   * default, so a page that builds `baseUrl` from its own URL or its users' input cannot be
   * made to load files from anywhere: a model's files decide what the page shows.
   */
  allowCrossOrigin?: boolean;
  /** The Cache Storage bucket; default "free-wasm-models". */
  cacheName?: string;
  /** Default "auto". */
  device?: Device;
  /**
   * How the weight matrices are held: "f32", "f16", or "q8" (8-bit integers with a scale
   * per row, quantized as the model loads or read from a model.safetensors stored in 8 bits:
   * about half of f16's memory; on the wasm CPU `full` decodes 1.12-1.15x faster than f16,
   * measured in Chromium). Default: as model.safetensors stores them. On either device: "auto" picks WebGPU or the CPU as it
   * does without a dtype, and the model holds the same values on both (a model that moves to
   * the CPU after a lost device keeps its dtype).
   */
  dtype?: Dtype;
  /** Stops the downloads; `load` then rejects with the signal's reason. */
  signal?: AbortSignal;
  /**
   * Told of a problem that did not stop the load: a file that could not be kept in Cache
   * Storage (a full quota, say). Default: console.warn.
   */
  onWarning?: (message: string) => void;
  /**
   * On WebGPU: when the GPU device is lost (a driver reset, a crashed GPU process), move the
   * model to the CPU and finish the generation there, with the tokens, exits and trace an
   * uninterrupted run gives (see `Generation.deviceChanges`). This keeps the files' bytes
   * in memory beside the GPU's copy (about the size of model.safetensors). Default true;
   * false rejects with a "DeviceLostError" instead, and holds nothing.
   */
  carryOver?: boolean;
}

/**
 * The model moved to another device during a generation: the WebGPU device was lost and
 * the generation was replayed on the CPU (the input encoded again, the tokens before the
 * loss decoded again with the adaptive threshold as it was before the call), then went on.
 */
export interface DeviceChange {
  from: "webgpu";
  to: "cpu";
  /** Why: the lost device's message. */
  reason: string;
  /** Tokens the page had been shown from the GPU when the loss was noticed. */
  afterTokens: number;
}

/** How one output token was decided (crate/src/decode/trace.rs `TokenTrace`). */
export type TraceEntry = TokenTrace;

export type { AdaptiveState, BetaParams, Counters, Dtype, EngineOptions, Moments, Timings };

/** What `generate` resolves to: the engine's report (crate/src/pipeline.rs `Report`) and where the model ran. */
export interface Generation extends Report {
  /** Where the model moved during this generation; empty when it stayed where it was. */
  deviceChanges: DeviceChange[];
}

/**
 * One decoder step's news: `entries` replace the trace from index `from` on. Usually that
 * is one new token; a deep pass also rewrites the stacked tokens it checked (`sync`,
 * `deepToken`), and a rollback marks the dropped ones (`rolledBack`).
 */
export interface TokenEvent {
  from: number;
  entries: TraceEntry[];
}

/**
 * What `generate` takes: the engine's options (`EngineOptions`, each optional), a threshold
 * that may also be "adaptive", and the callbacks.
 */
export interface GenerateOptions extends Partial<Omit<EngineOptions, "threshold">> {
  /**
   * A fixed confidence threshold in [0, 1] for the strategies that take one, or "adaptive"
   * (the default where the strategy has an adaptive threshold: FREE's Beta-mixture threshold,
   * learning across generations). calm without a threshold uses free.json's.
   */
  threshold?: number | "adaptive";
  /** Called after every decoder step. */
  onToken?: (event: TokenEvent) => void;
  /**
   * Called when the model moves to another device during this generation (a lost GPU,
   * with `LoadOptions.carryOver`), before the generation goes on there.
   */
  onDeviceChange?: (change: DeviceChange) => void;
  /** Cancels between decoder steps; `generate` then rejects with the signal's reason. */
  signal?: AbortSignal;
}

/** What a loaded model is. */
export interface ModelInfo {
  /** Where the model runs now (a model moves to the CPU when its GPU is lost, see `carryOver`). */
  device: "cpu" | "webgpu";
  /** Why the model is on the CPU rather than WebGPU (device "auto", or a lost GPU), else null. */
  deviceNote: string | null;
  decoderBlocks: number;
  /** free.json's shallow exit, or null without free.json. */
  shallowExitLayer: number | null;
  /** The names `GenerateOptions.task` accepts. */
  tasks: string[];
}

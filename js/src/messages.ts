// The messages between FreeWorkerModel (the page) and worker.ts (the Web Worker). Every
// request carries an id; the worker answers it with any number of progress/warning/token messages
// and then exactly one "done" or "error".

import type { AdaptiveState, DeviceChange, GenerateOptions, Generation, LoadOptions, LoadProgress, ModelFiles, ModelInfo, TokenEvent } from "./types.js";

/** What each request resolves to. */
export interface Results {
  load: ModelInfo;
  generate: Generation;
  adaptiveState: AdaptiveState;
  resetAdaptive: null;
  loseDevice: boolean;
  dispose: null;
}

export type WorkerRequest =
  | {
      id: number;
      type: "load";
      /** A URL string already resolved against the page (the worker's base differs). */
      source: { baseUrl: string } | { files: ModelFiles };
      options: Pick<LoadOptions, "cache" | "cacheName" | "device" | "dtype" | "carryOver" | "allowCrossOrigin">;
    }
  | { id: number; type: "generate"; text: string; options: Omit<GenerateOptions, "onToken" | "onDeviceChange" | "signal"> }
  /** Aborts the generation that request `target` started. */
  | { id: number; type: "abort"; target: number }
  | { id: number; type: "adaptiveState" }
  | { id: number; type: "resetAdaptive" }
  /** Answered at once, also while a generation runs (which then sees the loss). */
  | { id: number; type: "loseDevice" }
  | { id: number; type: "dispose" };

/** An error as it crosses the thread boundary: enough to rebuild an Error or DOMException. */
export interface SentError {
  name: string;
  message: string;
}

export type WorkerResponse =
  | { id: number; type: "progress"; progress: LoadProgress }
  | { id: number; type: "warning"; message: string }
  | { id: number; type: "token"; event: TokenEvent }
  | { id: number; type: "deviceChange"; change: DeviceChange; info: ModelInfo }
  | { id: number; type: "done"; value: Results[keyof Results] }
  | { id: number; type: "error"; error: SentError };

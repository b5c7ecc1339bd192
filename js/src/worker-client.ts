// free-wasm/worker: the same API as FreeModel, with the model in a Web Worker, so long
// generations never block the page. Everything crosses as messages (messages.ts); token
// events, progress and aborts included.

import { untilAborted } from "./abort.js";
import { warn } from "./files.js";
import type { Results, SentError, WorkerRequest, WorkerResponse } from "./messages.js";
import type { AdaptiveState, GenerateOptions, Generation, LoadOptions, ModelInfo, ModelSource } from "./types.js";

export type * from "./types.js";
/** Every decoding strategy and what it takes (see `StrategyInfo`), as the main entry exports it. */
export { STRATEGIES } from "./strategies.js";

export interface WorkerLoadOptions extends LoadOptions {
  /**
   * A worker running free-wasm's worker script, if you create it yourself (e.g. with your
   * bundler's worker import of "free-wasm/worker-script"); by default one is started from
   * the script beside this module, and dispose() terminates it.
   */
  worker?: Worker;
}

function rebuild(error: SentError): Error {
  // Abort, "not supported" and security errors keep their DOMException names, as on the main thread.
  if (error.name === "AbortError" || error.name === "NotSupportedError" || error.name === "SecurityError") return new DOMException(error.message, error.name);
  if (error.name === "TypeError") return new TypeError(error.message);
  // Other names stay too (a lost GPU's "DeviceLostError", say): pages tell errors apart by them.
  const rebuilt = new Error(error.message);
  rebuilt.name = error.name;
  return rebuilt;
}

interface Pending {
  resolve: (value: Results[keyof Results]) => void;
  reject: (error: unknown) => void;
  onMessage: (message: WorkerResponse) => void;
}

/** Request ids, unique across connections: a caller's worker may serve one load after another. */
let nextId = 0;

/** Requests to the worker and their answers, matched by id. */
class Connection {
  readonly worker: Worker;
  #pending = new Map<number, Pending>();

  constructor(worker: Worker) {
    this.worker = worker;
    worker.addEventListener("message", this.#onMessage);
    worker.addEventListener("error", this.#onError);
  }

  /** Stops listening to the worker (which goes on, for a worker of the caller's). */
  close(): void {
    this.worker.removeEventListener("message", this.#onMessage);
    this.worker.removeEventListener("error", this.#onError);
  }

  #onMessage = (event: MessageEvent<WorkerResponse>) => {
    const message = event.data;
    const pending = this.#pending.get(message.id);
    if (!pending) return;
    if (message.type === "done") {
      this.#pending.delete(message.id);
      pending.resolve(message.value);
    } else if (message.type === "error") {
      this.#pending.delete(message.id);
      pending.reject(rebuild(message.error));
    } else {
      try {
        pending.onMessage(message);
      } catch (e) {
        // A throwing onToken or onProgress ends its call with that error, as on the main
        // thread: the request rejects and the worker is told to stop it.
        this.#pending.delete(message.id);
        pending.reject(e);
        this.#abort(message.id);
      }
    }
  };

  #onError = (event: ErrorEvent) => {
    const error = new Error(
      `the free-wasm worker failed: ${event.message}; check that worker.js and free_wasm_bg.wasm are served beside the module`,
    );
    for (const pending of this.#pending.values()) pending.reject(error);
    this.#pending.clear();
  };

  /** Tells the worker to stop what request `target` started. */
  #abort(target: number): void {
    this.worker.postMessage({ id: nextId++, type: "abort", target } satisfies WorkerRequest);
  }

  /** Sends a request; `signal` sends an abort for it. The answer's type follows worker.ts `handle`. */
  request<K extends keyof Results>(
    request: Omit<Extract<WorkerRequest, { type: K }>, "id">,
    onMessage: (message: WorkerResponse) => void = () => {},
    signal?: AbortSignal,
  ): Promise<Results[K]> {
    const id = nextId++;
    const abort = () => this.#abort(id);
    signal?.addEventListener("abort", abort, { once: true });
    return new Promise<Results[K]>((resolve, reject) => {
      this.#pending.set(id, { resolve: (v) => resolve(v as Results[K]), reject, onMessage });
      this.worker.postMessage({ ...request, id });
    }).finally(() => signal?.removeEventListener("abort", abort));
  }
}

/** A model loaded in a Web Worker; the API of FreeModel, asynchronous throughout. */
export class FreeWorkerModel {
  #info: ModelInfo;
  #connection: Connection;
  #ownsWorker: boolean;
  #disposed = false;

  private constructor(connection: Connection, ownsWorker: boolean, info: ModelInfo) {
    this.#connection = connection;
    this.#ownsWorker = ownsWorker;
    this.#info = info;
  }

  /** What the model is and where it runs now (as FreeModel.info; the worker tells of moves). */
  get info(): ModelInfo {
    return this.#info;
  }

  /** As FreeModel.load; the files are downloaded (and cached) by the worker. */
  static async load(source: ModelSource, options: WorkerLoadOptions = {}): Promise<FreeWorkerModel> {
    const { worker, onProgress, onWarning, signal, ...rest } = options;
    signal?.throwIfAborted();
    const owns = worker === undefined;
    const connection = new Connection(worker ?? new Worker(new URL("./worker.js", import.meta.url), { type: "module" }));
    // Relative URLs mean the page's folder, not the worker script's.
    const sent = "baseUrl" in source ? { baseUrl: new URL(String(source.baseUrl), globalThis.location?.href).href } : source;
    const loading = connection.request<"load">({ type: "load", source: sent, options: rest }, (m) => {
      if (m.type === "progress") onProgress?.(m.progress);
      else if (m.type === "warning") warn({ onWarning }, m.message);
    });
    try {
      return new FreeWorkerModel(connection, owns, await untilAborted(loading, signal));
    } catch (e) {
      // A load cannot be stopped halfway inside the worker. A worker started here is ended;
      // a worker of the caller's is told to free what it loads (the worker runs loads and
      // disposes in turn), so it can load again.
      if (owns) connection.worker.terminate();
      else
        connection
          .request<"dispose">({ type: "dispose" })
          .catch(() => undefined)
          .finally(() => connection.close());
      throw e;
    }
  }

  /** As FreeModel.generate; `onToken` and `onDeviceChange` run on the page's thread. */
  async generate(text: string, options: GenerateOptions = {}): Promise<Generation> {
    const { onToken, onDeviceChange, signal, ...rest } = options;
    signal?.throwIfAborted();
    const connection = this.#live();
    try {
      return await connection.request<"generate">(
        { type: "generate", text, options: rest },
        (m) => {
          // The worker may have decided more tokens before it heard of the abort; the
          // page sees none after it, as on the main thread.
          if (m.type === "token" && !signal?.aborted) onToken?.(m.event);
          if (m.type === "deviceChange") {
            this.#info = m.info;
            onDeviceChange?.(m.change);
          }
        },
        signal,
      );
    } catch (e) {
      // The worker reports its own AbortError; the caller expects the signal's reason.
      throw signal?.aborted ? signal.reason : e;
    }
  }

  adaptiveState(): Promise<AdaptiveState> {
    return this.#live().request<"adaptiveState">({ type: "adaptiveState" });
  }

  async resetAdaptive(): Promise<void> {
    await this.#live().request<"resetAdaptive">({ type: "resetAdaptive" });
  }

  /** As FreeModel.loseDevice, in the worker; resolves once the device is destroyed. */
  loseDevice(): Promise<boolean> {
    return this.#live().request<"loseDevice">({ type: "loseDevice" });
  }

  /**
   * Frees the model in the worker (aborting a running generation), and ends the worker if
   * this module started it. Disposing twice is harmless.
   */
  async dispose(): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    await this.#connection.request<"dispose">({ type: "dispose" });
    if (this.#ownsWorker) this.#connection.worker.terminate();
    else this.#connection.close();
  }

  // After dispose the worker may be gone, so the page answers for it.
  #live(): Connection {
    if (this.#disposed) {
      throw new Error("this FreeWorkerModel was disposed; load the model again with FreeWorkerModel.load to use it");
    }
    return this.#connection;
  }
}

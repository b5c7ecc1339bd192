// The Web Worker side of FreeWorkerModel: one model per worker, driven by the messages in
// messages.ts. Generation runs here, so the page's main thread never waits on the model.

import { FreeModel } from "./index.js";
import { Turns } from "./turns.js";
import type { Results, WorkerRequest, WorkerResponse } from "./messages.js";

// The DOM typings describe a window; these are the two worker-scope members used here.
interface WorkerScope {
  postMessage(message: WorkerResponse): void;
  addEventListener(type: "message", listener: (event: MessageEvent<WorkerRequest>) => void): void;
}
const scope = globalThis as unknown as WorkerScope;

let model: FreeModel | undefined;
const generations = new Map<number, AbortController>();

/**
 * Loads and disposes run one after another, so a dispose sent while a load runs (the page
 * stopped waiting for it) frees the model that load makes, and a load sent after it starts
 * from an empty worker.
 */
const lifecycle = new Turns();

function loaded(): FreeModel {
  if (!model) throw new Error("no model is loaded in this worker; call FreeWorkerModel.load first");
  return model;
}

async function handle(request: WorkerRequest): Promise<Results[keyof Results]> {
  const { id } = request;
  switch (request.type) {
    case "load":
      return lifecycle.run(async () => {
        if (model) throw new Error("this worker already holds a model; dispose it first or use another FreeWorkerModel");
        model = await FreeModel.load(request.source, {
          ...request.options,
          onProgress: (progress) => scope.postMessage({ id, type: "progress", progress }),
          onWarning: (message) => scope.postMessage({ id, type: "warning", message }),
        });
        return model.info;
      });
    case "generate": {
      const controller = new AbortController();
      generations.set(id, controller);
      try {
        const generating = loaded();
        return await generating.generate(request.text, {
          ...request.options,
          signal: controller.signal,
          onToken: (event) => scope.postMessage({ id, type: "token", event }),
          onDeviceChange: (change) => scope.postMessage({ id, type: "deviceChange", change, info: generating.info }),
        });
      } finally {
        generations.delete(id);
      }
    }
    case "abort":
      generations.get(request.target)?.abort(new DOMException("generate was aborted", "AbortError"));
      return null;
    case "adaptiveState":
      return loaded().adaptiveState();
    case "resetAdaptive":
      await loaded().resetAdaptive();
      return null;
    case "loseDevice":
      return loaded().loseDevice();
    case "dispose":
      return lifecycle.run(async () => {
        await model?.dispose();
        model = undefined;
        return null;
      });
  }
}

scope.addEventListener("message", (event) => {
  const { id } = event.data;
  handle(event.data).then(
    (value) => scope.postMessage({ id, type: "done", value }),
    (e: unknown) => {
      const error = e instanceof Error || e instanceof DOMException ? { name: e.name, message: e.message } : { name: "Error", message: String(e) };
      scope.postMessage({ id, type: "error", error });
    },
  );
});

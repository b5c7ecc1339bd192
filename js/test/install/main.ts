// The install test's page: uses free-wasm as an npm user would (imports by package name,
// bundled by Vite) and exposes one function per scenario for run.mjs to call and check.
// It records what happened; run.mjs asserts the values.

import { FreeModel, type Generation, type GenerateOptions, type LoadProgress, type Timings, type TokenEvent, type TraceEntry } from "free-wasm";
import { FreeWorkerModel } from "free-wasm/worker";

export interface Case {
  text: string;
  options: Pick<GenerateOptions, "task" | "strategy" | "threshold" | "maxNewTokens">;
}

export interface CaseResult {
  tokens: number[];
  text: string;
  finished: boolean;
  /** The trace rebuilt from onToken events equals the returned trace. */
  streamMatchesTrace: boolean;
  events: number;
  timings: Timings;
  /** Wall time of the whole generate call as the page measured it, in milliseconds. */
  wallMs: number;
}

export interface Report {
  /** The last progress report of each file. */
  progress: LoadProgress[];
  results: CaseResult[];
  /** How an abort after the second token event ended: the error's name and message. */
  aborted: string;
  /** The rejection was the very reason given to abort(). */
  rejectedWithReason: boolean;
  eventsBeforeAbort: number;
  threshold: number;
  decoderBlocks: number;
  shallowExitLayer: number | null;
  /** What a generate after dispose() rejected with. */
  afterDispose: string;
}

export interface Loaded {
  tokens: number[];
  warnings: string[];
  /** The last progress report of model.safetensors. */
  weights: LoadProgress | null;
  /** The files the cache held after the load. */
  cached: string[];
}

/** The part of FreeModel and FreeWorkerModel the scenarios use: both must offer it. */
interface Model {
  readonly info: FreeModel["info"];
  generate(text: string, options?: GenerateOptions): Promise<Generation>;
  dispose(): Promise<void>;
}

function rebuild(events: TokenEvent[]): TraceEntry[] {
  const trace: TraceEntry[] = [];
  for (const { from, entries } of events) trace.splice(from, trace.length - from, ...entries);
  return trace;
}

function describe(e: unknown): string {
  return e instanceof Error || e instanceof DOMException ? `${e.name}: ${e.message}` : `not an Error: ${String(e)}`;
}

async function scenario(model: Model, progress: LoadProgress[], cases: Case[], threshold: () => Promise<number>): Promise<Report> {
  const results: CaseResult[] = [];
  for (const c of cases) {
    const events: TokenEvent[] = [];
    const started = performance.now();
    const out = await model.generate(c.text, { ...c.options, onToken: (e) => events.push(e) });
    const wallMs = performance.now() - started;
    results.push({
      tokens: out.tokens,
      text: out.text,
      finished: out.finished,
      streamMatchesTrace: JSON.stringify(rebuild(events)) === JSON.stringify(out.trace),
      events: events.length,
      timings: out.timings,
      wallMs,
    });
  }
  const controller = new AbortController();
  const reason = new DOMException("stopped by the test", "AbortError");
  let eventsBeforeAbort = 0;
  let rejection: unknown;
  await model
    .generate(cases[0].text, {
      ...cases[0].options,
      signal: controller.signal,
      onToken: () => {
        if (++eventsBeforeAbort === 2) controller.abort(reason);
      },
    })
    .catch((e: unknown) => (rejection = e));
  const last = new Map<string, LoadProgress>();
  for (const p of progress) last.set(p.file, p);
  const report = {
    progress: [...last.values()],
    results,
    aborted: rejection === undefined ? "resolved" : describe(rejection),
    rejectedWithReason: rejection === reason,
    eventsBeforeAbort,
    threshold: await threshold(),
    decoderBlocks: model.info.decoderBlocks,
    shallowExitLayer: model.info.shallowExitLayer,
  };
  await model.dispose();
  const afterDispose = await model.generate(cases[0].text).then(() => "resolved", describe);
  return { ...report, afterDispose };
}

const api = {
  async mainThread(baseUrl: string, cases: Case[]): Promise<Report> {
    const progress: LoadProgress[] = [];
    const model = await FreeModel.load({ baseUrl }, { cache: true, onProgress: (p) => progress.push(p) });
    return scenario(model, progress, cases, async () => (await model.adaptiveState()).threshold);
  },
  async worker(baseUrl: string, cases: Case[]): Promise<Report> {
    const progress: LoadProgress[] = [];
    const model = await FreeWorkerModel.load({ baseUrl }, { cache: true, onProgress: (p) => progress.push(p) });
    return scenario(model, progress, cases, async () => (await model.adaptiveState()).threshold);
  },
  /** Loads on WebGPU and generates one case there; or says why it could not. */
  async webgpu(baseUrl: string, c: Case): Promise<{ device: string; tokens: number[] } | string> {
    try {
      const model = await FreeModel.load({ baseUrl }, { device: "webgpu" });
      const out = await model.generate(c.text, c.options);
      await model.dispose();
      return { device: model.info.device, tokens: out.tokens };
    } catch (e) {
      return describe(e);
    }
  },
  /**
   * Loads from `baseUrl` (on the main thread or in a worker) and generates one case; or
   * says why the load failed. Also returns the warnings, the weights' last progress report
   * and which files the cache `cacheName` (if any) holds afterwards.
   */
  async loadAndGenerate(baseUrl: string, where: "main" | "worker", cacheName: string | null, c: Case): Promise<Loaded | string> {
    const warnings: string[] = [];
    let weights: LoadProgress | null = null;
    const options = {
      cache: cacheName !== null,
      cacheName: cacheName ?? undefined,
      onWarning: (w: string) => warnings.push(w),
      onProgress: (p: LoadProgress) => void (p.file === "model.safetensors" && (weights = p)),
    };
    try {
      const model = where === "main" ? await FreeModel.load({ baseUrl }, options) : await FreeWorkerModel.load({ baseUrl }, options);
      const out = await model.generate(c.text, c.options);
      await model.dispose();
      const cached: string[] = [];
      if (cacheName !== null) {
        const cache = await caches.open(cacheName);
        for (const r of await cache.keys()) cached.push(new URL(r.url).pathname.split("/").pop()!);
      }
      return { tokens: out.tokens, warnings, weights, cached: cached.sort() };
    } catch (e) {
      return describe(e);
    }
  },
  /**
   * Calls made while a generation runs: bad options and an abort reject before it ends,
   * adaptiveState() asked for mid-generation answers after it (no "busy" error), and a
   * throwing onToken ends its generation with that error and leaves the model usable.
   */
  async whileGenerating(baseUrl: string, where: "main" | "worker", long: Case, short: Case): Promise<Record<string, unknown>> {
    const model = where === "main" ? await FreeModel.load({ baseUrl }) : await FreeWorkerModel.load({ baseUrl });
    let running = true;
    let state: Promise<number> | undefined;
    const first = model
      .generate(long.text, {
        ...long.options,
        onToken: () => void (state ??= model.adaptiveState().then((s) => s.threshold)),
      })
      .finally(() => (running = false));
    const badOption = await model.generate(short.text, { maxTokens: 4 } as GenerateOptions).then(() => "resolved", describe);
    const badOptionWhileRunning = running;
    const controller = new AbortController();
    const queued = model.generate(short.text, { ...short.options, signal: controller.signal });
    const reason = new DOMException("stopped while queued", "AbortError");
    controller.abort(reason);
    const queuedResult = await queued.then(() => "resolved", (e) => (e === reason || describe(e) === describe(reason) ? "the abort reason" : describe(e)));
    const abortedWhileRunning = running;
    const tokens = (await first).tokens;
    const threshold = state ? await state : null;
    const thrown = await model
      .generate(short.text, { ...short.options, onToken: () => { throw new Error("from onToken"); } })
      .then(() => "resolved", describe);
    const after = (await model.generate(short.text, short.options)).tokens;
    await model.dispose();
    return { badOption, badOptionWhileRunning, queuedResult, abortedWhileRunning, tokens, threshold, thrown, after };
  },
  /** A worker load aborted at its first progress report: what it rejected with. */
  async abortedWorkerLoad(baseUrl: string): Promise<string> {
    const controller = new AbortController();
    const reason = new DOMException("stopped during the load", "AbortError");
    const onProgress = () => controller.abort(reason);
    const load = FreeWorkerModel.load({ baseUrl }, { signal: controller.signal, onProgress }).then(
      (m) => m.dispose().then(() => "loaded"),
      (e) => (e === reason ? "the abort reason" : describe(e)),
    );
    // A promise that never settles would hang the test run; say so instead.
    const hang = new Promise<string>((resolve) => setTimeout(() => resolve("no answer 20 s after the abort"), 20_000));
    return Promise.race([load, hang]);
  },
  /** Loads with Cache Storage `cacheName`: where each file came from, and the model's initial threshold. */
  async cachedLoad(baseUrl: string, cacheName: string): Promise<{ fromCache: Record<string, boolean>; threshold: number }> {
    const fromCache: Record<string, boolean> = {};
    const model = await FreeModel.load({ baseUrl }, { cache: true, cacheName, onProgress: (p) => void (fromCache[p.file] = p.fromCache) });
    const { threshold } = await model.adaptiveState();
    await model.dispose();
    return { fromCache, threshold };
  },
  /** Where "auto" put the model, and why. */
  async auto(baseUrl: string): Promise<{ device: string; note: string | null }> {
    const model = await FreeModel.load({ baseUrl }, { device: "auto" });
    await model.dispose();
    return { device: model.info.device, note: model.info.deviceNote };
  },
};

declare global {
  interface Window {
    freeTest: typeof api;
  }
}
window.freeTest = api;
document.getElementById("status")!.textContent = "ready";

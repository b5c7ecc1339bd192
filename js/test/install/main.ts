// The install test's page: uses free-wasm as an npm user would (imports by package name,
// bundled by Vite) and exposes one function per scenario for run.mjs to call and check.
// It records what happened; run.mjs asserts the values.

import { FreeModel, STRATEGIES, type AdaptiveState, type DeviceChange, type Generation, type GenerateOptions, type LoadProgress, type Timings, type TokenEvent, type TraceEntry } from "free-wasm";
import { FreeWorkerModel, STRATEGIES as WORKER_STRATEGIES } from "free-wasm/worker";

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

/**
 * Where a carry-over check destroys the GPU device: before the generation; once a token
 * waits on the stack; just before the deep pass that synchronises a stack of two or more
 * (so that pass is in flight or next); once half the tokens are shown; once the last token
 * is shown; or after 3 tokens.
 */
export type LossPoint = "start" | "stack" | "sync" | "half" | "eos" | "mid";

/** What of a generation must not depend on the device or on a loss along the way. */
export interface Decided {
  tokens: number[];
  /** Per trace entry: token, exit, stacked, sync, deepToken, rolledBack. */
  steps: string[];
  /** The threshold in force per entry. */
  thresholds: (number | null)[];
}

export interface CarryReport {
  /** Uninterrupted on the CPU: the generation, and the same input again after it. */
  reference: Decided;
  referenceAgain: Decided;
  /** Loaded on WebGPU, the device lost at the point: the generation, and the same input again. */
  carried: Decided;
  carriedAgain: Decided;
  /** Tokens shown when the device was destroyed (null: the point never came). */
  lostAt: number | null;
  /**
   * The adaptive threshold's data counts after the generation: consistent and inconsistent
   * points and fits, on the CPU model and on the carried one (equal only if the points the
   * lost run gave were dropped before its replay).
   */
  referenceCounts: number[];
  carriedCounts: number[];
  deviceChanges: DeviceChange[];
  /** onDeviceChange calls, over both generations. */
  events: DeviceChange[];
  streamMatchesTrace: boolean;
  deviceBefore: string;
  deviceAfter: string;
}

function counts(s: AdaptiveState): number[] {
  return [s.consistentPoints, s.inconsistentPoints, s.fits];
}

function decided(g: Generation): Decided {
  return {
    tokens: g.tokens,
    steps: g.trace.map((t) => [t.token, t.exit, t.stacked, t.sync, t.deepToken, t.rolledBack].join(" ")),
    thresholds: g.trace.map((t) => t.threshold),
  };
}

/** The number of shown tokens at which to destroy the device, read off the CPU's trace. */
function lossTrigger(point: LossPoint, reference: TraceEntry[]): (shown: TraceEntry[]) => boolean {
  switch (point) {
    case "start":
      return () => false;
    case "mid":
      return (shown) => shown.length >= 3;
    case "stack":
      return (shown) => shown.some((t) => t.stacked);
    case "half":
      return (shown) => shown.length >= Math.ceil(reference.length / 2);
    case "eos":
      return (shown) => shown.length >= reference.length;
    case "sync": {
      // The first deep pass over two or more rows: the stacked tokens before the token it decided.
      const rows = new Map<number, number>();
      for (const t of reference) if (t.sync !== null) rows.set(t.sync, (rows.get(t.sync) ?? 0) + 1);
      const at = reference.findIndex((t) => !t.stacked && t.sync !== null && (rows.get(t.sync) ?? 0) >= 2);
      return at < 0 ? () => false : (shown) => shown.length >= at;
    }
  }
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
      allowCrossOrigin: true,
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
    const load = FreeWorkerModel.load({ baseUrl }, { signal: controller.signal, onProgress, allowCrossOrigin: true }).then(
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
    const model = await FreeModel.load({ baseUrl }, { cache: true, cacheName, allowCrossOrigin: true, onProgress: (p) => void (fromCache[p.file] = p.fromCache) });
    const { threshold } = await model.adaptiveState();
    await model.dispose();
    return { fromCache, threshold };
  },
  /**
   * The same generations on a CPU model and on a WebGPU model (after a first generation on
   * another input, so the adaptive threshold has learned something) whose device is
   * destroyed at `point`; then the same input again on both.
   */
  async carryOver(baseUrl: string, warm: Case, c: Case, point: LossPoint): Promise<CarryReport | string> {
    try {
      const cpu = await FreeModel.load({ baseUrl }, { device: "cpu" });
      await cpu.generate(warm.text, warm.options);
      const reference = await cpu.generate(c.text, c.options);
      const referenceCounts = counts(await cpu.adaptiveState());
      const referenceAgain = await cpu.generate(c.text, c.options);
      await cpu.dispose();

      const gpu = await FreeModel.load({ baseUrl }, { device: "webgpu" });
      const deviceBefore = gpu.info.device;
      await gpu.generate(warm.text, warm.options);
      const trigger = lossTrigger(point, reference.trace);
      const shown: TraceEntry[] = [];
      const events: DeviceChange[] = [];
      let lostAt: number | null = null;
      if (point === "start") lostAt = gpu.loseDevice() ? 0 : null;
      const carried = await gpu.generate(c.text, {
        ...c.options,
        onToken: ({ from, entries }) => {
          shown.splice(from, shown.length - from, ...entries);
          if (lostAt === null && trigger(shown) && gpu.loseDevice()) lostAt = shown.length;
        },
        onDeviceChange: (change) => events.push(change),
      });
      const streamMatchesTrace = JSON.stringify(shown) === JSON.stringify(carried.trace);
      const carriedCounts = counts(await gpu.adaptiveState());
      const carriedAgain = await gpu.generate(c.text, { ...c.options, onDeviceChange: (change) => events.push(change) });
      const deviceAfter = gpu.info.device;
      await gpu.dispose();
      return {
        reference: decided(reference),
        referenceAgain: decided(referenceAgain),
        carried: decided(carried),
        carriedAgain: decided(carriedAgain),
        lostAt,
        referenceCounts,
        carriedCounts,
        deviceChanges: [...carried.deviceChanges, ...carriedAgain.deviceChanges],
        events,
        streamMatchesTrace,
        deviceBefore,
        deviceAfter,
      };
    } catch (e) {
      return describe(e);
    }
  },
  /**
   * In a worker: a WebGPU model whose device is destroyed after the first token event (the
   * message lands between later steps) finishes on the CPU with the tokens a CPU model
   * gives; and with `carryOver: false` the loss rejects with a DeviceLostError.
   */
  async carryOverWorker(baseUrl: string, c: Case): Promise<Record<string, unknown>> {
    try {
      const cpu = await FreeModel.load({ baseUrl }, { device: "cpu" });
      const reference = decided(await cpu.generate(c.text, c.options));
      await cpu.dispose();
      const worker = await FreeWorkerModel.load({ baseUrl }, { device: "webgpu" });
      const deviceBefore = worker.info.device;
      let losing: Promise<boolean> | undefined;
      const events: DeviceChange[] = [];
      const out = await worker.generate(c.text, {
        ...c.options,
        onToken: () => void (losing ??= worker.loseDevice()),
        onDeviceChange: (change) => events.push(change),
      });
      const lost = await losing;
      const deviceAfter = worker.info.device;
      await worker.dispose();
      const strict = await FreeModel.load({ baseUrl }, { device: "webgpu", carryOver: false });
      strict.loseDevice();
      const refused = await strict.generate(c.text, c.options).then(() => "resolved", describe);
      const strictDevice = strict.info.device;
      await strict.dispose();
      return { reference, carried: decided(out), lost, deviceChanges: out.deviceChanges, events, deviceBefore, deviceAfter, refused, strictDevice };
    } catch (e) {
      return { failed: describe(e) };
    }
  },
  /** What a load from `baseUrl` without allowCrossOrigin rejects with, on the main thread and in a worker. */
  async crossOriginRefused(baseUrl: string): Promise<string[]> {
    return Promise.all([FreeModel.load({ baseUrl }), FreeWorkerModel.load({ baseUrl })].map((p) => p.then((m) => m.dispose().then(() => "loaded"), describe)));
  },
  /**
   * The table of strategies both entry points export, and what each strategy does with
   * threshold "adaptive" and with a fixed threshold: "ok", or the rejection.
   */
  async strategies(baseUrl: string): Promise<{ table: unknown; sameInWorker: boolean; adaptive: Record<string, string>; fixed: Record<string, string> }> {
    const model = await FreeModel.load({ baseUrl }, { device: "cpu" });
    const run = (options: GenerateOptions) => model.generate("a library for archives", { task: "summarize", maxNewTokens: 2, ...options }).then(() => "ok", describe);
    const adaptive: Record<string, string> = {};
    const fixed: Record<string, string> = {};
    for (const { name } of STRATEGIES) {
      adaptive[name] = await run({ strategy: name, threshold: "adaptive" });
      fixed[name] = await run({ strategy: name, threshold: 0.5 });
    }
    await model.dispose();
    return { table: STRATEGIES, sameInWorker: JSON.stringify(STRATEGIES) === JSON.stringify(WORKER_STRATEGIES), adaptive, fixed };
  },
  /** Where "auto" put the model, and why. */
  async auto(baseUrl: string): Promise<{ device: string; note: string | null }> {
    const model = await FreeModel.load({ baseUrl }, { device: "auto" });
    await model.dispose();
    return { device: model.info.device, note: model.info.deviceNote };
  },
  /**
   * 8-bit weights: where "auto" puts a q8 model, a q8 model's tokens on "webgpu" (or why it
   * did not load), and in a worker.
   */
  async eightBit(
    baseUrl: string,
    c: Case,
  ): Promise<{ auto: { device: string; note: string | null }; webgpu: { device: string; tokens: number[] } | string; tokens: number[] }> {
    const auto = await FreeModel.load({ baseUrl }, { device: "auto", dtype: "q8" });
    await auto.dispose();
    const webgpu = await FreeModel.load({ baseUrl }, { device: "webgpu", dtype: "q8" }).then(async (m) => {
      const out = await m.generate(c.text, c.options);
      await m.dispose();
      return { device: m.info.device, tokens: out.tokens };
    }, describe);
    const worker = await FreeWorkerModel.load({ baseUrl }, { device: "cpu", dtype: "q8" });
    const out = await worker.generate(c.text, c.options);
    await worker.dispose();
    return { auto: { device: auto.info.device, note: auto.info.deviceNote }, webgpu, tokens: out.tokens };
  },
};

declare global {
  interface Window {
    freeTest: typeof api;
  }
}
window.freeTest = api;
document.getElementById("status")!.textContent = "ready";

// Compiled with `tsc --strict --noEmit` against the installed package, never run: the
// public types must accept what docs/usage.md shows and refuse what the API refuses. An
// `any` anywhere in these signatures would make the @ts-expect-error lines fail.

import { FreeModel, STRATEGIES, type AdaptiveState, type Generation, type LoadProgress, type Strategy, type TraceEntry } from "free-wasm";
import { FreeWorkerModel, STRATEGIES as WORKER_STRATEGIES, type WorkerLoadOptions } from "free-wasm/worker";

export async function usesTheApi(weights: ArrayBuffer, config: Uint8Array, tokenizer: Uint8Array): Promise<void> {
  const fromUrl = await FreeModel.load(
    { baseUrl: new URL("/models/free-t5-mini/", location.href) },
    { cache: true, device: "auto", onProgress: (p: LoadProgress) => console.log(p.file, p.loaded, p.total ?? "?", p.fromCache) },
  );
  const fromMemory = await FreeModel.load({ files: { config, weights, tokenizer } }, { device: "cpu" });
  const controller = new AbortController();
  const out: Generation = await fromUrl.generate("a library for archives", {
    task: "summarize",
    strategy: "free-exact",
    threshold: 0.3,
    maxNewTokens: 32,
    signal: controller.signal,
    onToken: ({ from, entries }) => entries.forEach((e: TraceEntry, i) => console.log(from + i, e.text, e.exit, e.confidence?.toFixed(3))),
  });
  const deep: number = out.counters.deepPasses.reduce((a, b) => a + b, 0);
  const decodeMs: number = out.timings.decodeMs + out.timings.encodeMs;
  const state: AdaptiveState = await fromUrl.adaptiveState();
  const alpha: number | undefined = state.fit?.consistent.alpha;
  console.log(out.text, out.tokens.length, decodeMs, out.finished, out.truncatedInputTokens, deep, alpha, fromUrl.info.shallowExitLayer);
  await fromUrl.generate("x", { threshold: "adaptive" });
  await fromUrl.resetAdaptive();
  await fromMemory.dispose();

  const options: WorkerLoadOptions = { cache: false };
  const inWorker = await FreeWorkerModel.load({ baseUrl: "/models/free-t5-mini/" }, options);
  const w: Generation = await inWorker.generate("x", { strategy: "full" });
  const ws: AdaptiveState = await inWorker.adaptiveState();
  console.log(w.tokens, ws.threshold);
  await inWorker.dispose();

  // the table of strategies: its names are the Strategy type, its rows say what each takes
  for (const { name, threshold, exitsEarly, exact } of [...STRATEGIES, ...WORKER_STRATEGIES]) {
    const strategy: Strategy = name;
    const adaptive: boolean = threshold === "fixedOrAdaptive";
    await fromUrl.generate("x", adaptive ? { strategy, threshold: "adaptive" } : { strategy });
    console.log(exitsEarly, exact);
  }
  // @ts-expect-error: a strategy's threshold use is one of three
  const never: boolean = STRATEGIES[0].threshold === "sometimes";
  console.log(never);
  // @ts-expect-error: not a strategy
  await fromUrl.generate("x", { strategy: "fast" });
  // @ts-expect-error: a threshold is a number or "adaptive"
  await fromUrl.generate("x", { threshold: "auto" });
  // @ts-expect-error: unknown option
  await fromUrl.generate("x", { maxTokens: 3 });
  // @ts-expect-error: not a device
  await FreeModel.load({ baseUrl: "/m/" }, { device: "gpu" });
  // @ts-expect-error: not a dtype
  await FreeModel.load({ baseUrl: "/m/" }, { dtype: "int4" });
  const eightBit: FreeModel = await FreeModel.load({ baseUrl: "/m/" }, { device: "cpu", dtype: "q8" });
  console.log(eightBit.info.device);
  // @ts-expect-error: the weights are required
  await FreeModel.load({ files: { config, tokenizer } });
  // @ts-expect-error: tokens are numbers
  const s: string[] = out.tokens;
  // @ts-expect-error: the constructor is private; use FreeModel.load
  new FreeModel();
  console.log(s);
}

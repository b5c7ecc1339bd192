// The browser bench's page (scripts/bench-browser.sh drives it through run.mjs): loads the
// model with the public API on one device and runs the contenders over the same inputs,
// interleaved as the native `free bench` does (the order rotates per example, so no strategy
// always runs first). It records; run.mjs turns the records into the table.

import { FreeModel, type Device, type GenerateOptions } from "free-wasm";

export interface Example {
  task: string;
  source: string;
}

export interface Contender {
  name: string;
  options: Pick<GenerateOptions, "strategy" | "threshold" | "maxNewTokens">;
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
  /** Of that, the decoder's (the generation's own `timings.decodeMs`). */
  decodeSeconds: number;
  outputs: number[][];
}

export interface BenchReport {
  device: "cpu" | "webgpu";
  deviceNote: string | null;
  loadSeconds: number;
  /** One per (task, contender), tasks in order of first appearance. */
  tallies: Tally[];
}

async function run(baseUrl: string, device: Device, examples: Example[], contenders: Contender[]): Promise<BenchReport> {
  const started = performance.now();
  const model = await FreeModel.load({ baseUrl }, { device, cache: false });
  const loadSeconds = (performance.now() - started) / 1000;
  try {
    // Not counted: the first generate compiles the GPU pipelines and warms the JIT.
    await model.generate(examples[0].source, { task: examples[0].task, strategy: "full", maxNewTokens: 4 });
    model.resetAdaptive();
    const blocks = model.info.decoderBlocks;
    const tallies: Tally[] = [];
    const tallyOf = (task: string, name: string): Tally => {
      let t = tallies.find((x) => x.task === task && x.name === name);
      if (!t) tallies.push((t = { name, task, tokens: 0, early: 0, seconds: 0, decodeSeconds: 0, outputs: [] }));
      return t;
    };
    for (const [i, ex] of examples.entries()) {
      for (let k = 0; k < contenders.length; k++) {
        const c = contenders[(i + k) % contenders.length];
        const t0 = performance.now();
        const out = await model.generate(ex.source, { ...c.options, task: ex.task });
        const tally = tallyOf(ex.task, c.name);
        tally.seconds += (performance.now() - t0) / 1000;
        tally.decodeSeconds += out.timings.decodeMs / 1000;
        const live = out.trace.filter((t) => !t.rolledBack);
        tally.tokens += live.length;
        tally.early += live.filter((t) => t.exit < blocks).length;
        tally.outputs.push(out.tokens);
      }
    }
    return { device: model.info.device, deviceNote: model.info.deviceNote, loadSeconds, tallies };
  } finally {
    await model.dispose();
  }
}

declare global {
  interface Window {
    freeBench: { run: typeof run };
  }
}
window.freeBench = { run };
document.getElementById("status")!.textContent = "ready";

// The minimal demo page: loads the wasm package and a model folder, generates, and colours
// each token by the exit that emitted it. The full TypeScript demo replaces this.
import init, { FreeModel } from "../pkg/free_wasm.js";
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const model_dir = params.get("model") ?? "tests/fixtures/t5-v10";
async function bytes(name, optional = false) {
  const res = await fetch(`${model_dir}/${name}`);
  if (!res.ok) {
    if (optional) return undefined;
    throw new Error(`could not download ${model_dir}/${name}: HTTP ${res.status}`);
  }
  return new Uint8Array(await res.arrayBuffer());
}
try {
  await init();
  const [config, weights, tokenizer, free] = await Promise.all([
    bytes("config.json"), bytes("model.safetensors"), bytes("tokenizer.json"), bytes("free.json", true),
  ]);
  const model = FreeModel.load(config, weights, tokenizer, free);
  $("status").textContent = `Model ${model_dir}: ${model.decoderBlocks()} decoder blocks, shallow exit after ${model.shallowExitLayer() ?? "—"}.`;
  $("run").disabled = false;
  const blocks = model.decoderBlocks();
  $("run").onclick = () => {
    try {
      const t0 = performance.now();
      const out = model.generate($("input").value, {
        task: $("task").value, strategy: $("strategy").value, maxNewTokens: Number($("max").value),
      });
      const ms = performance.now() - t0;
      $("output").className = "";
      $("output").replaceChildren(...out.trace.map((t) => {
        const span = document.createElement("span");
        span.textContent = t.text;
        span.className = t.rolledBack ? "rolled" : t.exit === blocks ? "deep" : t.stacked ? "shallow" : "early";
        span.title = `exit ${t.exit}` + (t.confidence == null ? "" : `, confidence ${t.confidence.toFixed(3)}`) +
          (t.threshold == null ? "" : `, threshold ${t.threshold.toFixed(3)}`) +
          (t.deepToken == null ? "" : `, deep model: ${t.deepToken}`);
        return span;
      }));
      const early = out.trace.filter((t) => !t.rolledBack && t.exit < blocks).length;
      $("stats").textContent = `${out.tokens.length} tokens in ${ms.toFixed(0)} ms; ` +
        `early exits ${early}; deep passes ${out.counters.deepPasses.length}; rollbacks ${out.counters.rollbacks}` +
        (out.finished ? "" : " (stopped at the token limit)");
    } catch (e) {
      $("output").className = "error";
      $("output").textContent = String(e.message ?? e);
    }
  };
  if (params.has("autorun")) $("run").click();
} catch (e) {
  $("status").className = "error";
  $("status").textContent = `Could not start: ${e.message ?? e}`;
}

// Rewrites the package.json wasm-pack wrote into pkg/ for the npm package free-wasm: its
// entry points are the typed wrapper (index.js, worker-client.js), not the raw bindings,
// and `files` lists exactly what the wrapper needs at run time plus its declarations.
// Usage: node js/scripts/write-package-json.mjs pkg
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const dir = process.argv[2];
if (!dir) throw new Error("usage: node write-package-json.mjs <pkg dir>");
const path = join(dir, "package.json");
// name, version, license and repository come from Cargo.toml through wasm-pack.
const { name, version, license, repository } = JSON.parse(readFileSync(path, "utf8"));

const pkg = {
  name,
  version,
  description:
    "FREE early-exit decoding for T5 encoder-decoders in the browser: synchronized parallel decoding with an adaptive Beta-mixture threshold, in Rust compiled to WebAssembly, running on WebGPU or the CPU",
  license,
  repository,
  keywords: ["t5", "early-exit", "free", "speculative", "wasm", "webassembly", "transformers", "text-generation", "llm"],
  type: "module",
  main: "./index.js",
  module: "./index.js",
  types: "./index.d.ts",
  exports: {
    ".": { types: "./index.d.ts", default: "./index.js" },
    "./worker": { types: "./worker-client.d.ts", default: "./worker-client.js" },
    // For pages that start the worker themselves (e.g. a bundler's `?worker` import).
    "./worker-script": "./worker.js",
    // For pages that host the wasm binary elsewhere or preload it.
    "./free_wasm_bg.wasm": "./free_wasm_bg.wasm",
    "./package.json": "./package.json",
  },
  files: [
    "index.js",
    "index.d.ts",
    "types.d.ts",
    "files.js",
    "checksums.js",
    "abort.js",
    "turns.js",
    "strategies.js",
    "strategies.d.ts",
    "options.js",
    "options.d.ts",
    "report.d.ts",
    "worker-client.js",
    "worker-client.d.ts",
    "worker.js",
    "free_wasm.js",
    "free_wasm_bg.wasm",
    "README.md",
  ],
  // worker.js registers its message handler when loaded; everything else is pure.
  sideEffects: ["./worker.js"],
};
writeFileSync(path, JSON.stringify(pkg, null, 2) + "\n");

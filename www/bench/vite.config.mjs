// Builds the browser bench page (this folder) into ../../target/bench-page; free-wasm comes
// from www/node_modules (a link to ../pkg), as for the demo page.
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

export default defineConfig({
  root: fileURLToPath(new URL(".", import.meta.url)),
  build: {
    outDir: fileURLToPath(new URL("../../target/bench-page", import.meta.url)),
    emptyOutDir: true,
    // transformers.js alone is about 600 kB minified; a bench page, loaded once, need not split it.
    chunkSizeWarningLimit: 1500,
  },
  cacheDir: fileURLToPath(new URL("../node_modules/.vite-bench", import.meta.url)),
  worker: { format: "es" },
});

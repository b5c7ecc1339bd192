// Vite builds the demo page from ../index.html (the repository root is Vite's root) into
// www/dist; the package free-wasm comes from node_modules (a link to ../pkg), as for any user.
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

export default defineConfig({
  root: fileURLToPath(new URL("..", import.meta.url)),
  build: { outDir: fileURLToPath(new URL("dist", import.meta.url)), emptyOutDir: true },
  // The dev server's cache stays with www's packages, not at the repository root.
  cacheDir: fileURLToPath(new URL("node_modules/.vite", import.meta.url)),
  // The package starts its worker as a module worker (new Worker(url, { type: "module" })).
  worker: { format: "es" },
});

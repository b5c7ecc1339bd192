// Bundles the install test's page with webpack 5 (its Node API), as a webpack user would:
// no loader or plugin for free-wasm. webpack itself finds the package's wasm module and its
// worker through `new URL(…, import.meta.url)`.
// Usage: node webpack.mjs APP_DIR   (APP_DIR holds main.js, compiled from main.ts, and
// node_modules/free-wasm; writes APP_DIR/dist-webpack/)
import { copyFileSync } from "node:fs";
import { join, resolve } from "node:path";
import webpack from "webpack";

const app = resolve(process.argv[2] ?? ".");
const out = join(app, "dist-webpack");
const stats = await new Promise((done, fail) =>
  webpack({
    mode: "production",
    context: app,
    entry: "./main.js",
    output: { path: out, filename: "main.js", clean: true },
    resolve: { modules: [join(app, "node_modules")] },
    // A 25 MB model is not part of the bundle, but the wasm module (about 5 MB) is.
    performance: { hints: false },
  }).run((e, s) => (e ? fail(e) : done(s))),
);
if (stats.hasErrors()) {
  console.error(stats.toString("errors-only"));
  process.exit(1);
}
// The page: the Vite one, with the bundle as a classic script.
copyFileSync(join(app, "index.webpack.html"), join(out, "index.html"));
console.log(`webpack: ${stats.toJson({ assets: true }).assets.map((a) => `${a.name} ${(a.size / 1e3).toFixed(0)} kB`).join(", ")}`);

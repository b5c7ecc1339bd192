// A static file server for the demo and the browser tests, bound to 127.0.0.1 only. Serves a
// built page (www/dist: index.html, assets/, model/) with the MIME types browsers insist on
// (application/wasm for streaming compilation). No dependencies.
// It serves only what a page fetches, to this machine's browser: the file types below (so no
// training logs or notes from a model folder), never a dotfile or a path out of the folder,
// and only for a Host naming this server (a DNS-rebinding page names its own). Anything else
// gets a 4xx, and a request that fails never stops the server.
import { createServer } from "node:http";
import { createReadStream, statSync } from "node:fs";
import { extname, join, resolve } from "node:path";

const root = resolve(process.argv[2] ?? ".");
const port = Number(process.env.PORT ?? 8080);
// What the pages request: the page and its bundles, the package's wasm, the model's
// config.json, tokenizer.json, free.json and model.safetensors (js/src/files.ts), and for the
// bench's transformers.js its onnxruntime files and the ONNX export (www/bench/run.mjs).
const types = {
  ".html": "text/html; charset=utf-8", ".js": "text/javascript", ".mjs": "text/javascript",
  ".json": "application/json", ".wasm": "application/wasm", ".css": "text/css",
  ".safetensors": "application/octet-stream", ".onnx": "application/octet-stream",
};
// On every answer: a browser must not read a file as another type than the one sent.
const nosniff = { "x-content-type-options": "nosniff" };
let hosts; // the Host headers that name this server, once it listens

/** Ends `res` with `status` and a line saying why, dropping the headers of a file not sent. */
function refuse(res, status, why, headers = {}) {
  for (const name of res.getHeaderNames()) res.removeHeader(name);
  res.writeHead(status, { ...nosniff, ...headers, "content-type": "text/plain; charset=utf-8" }).end(`${why}\n`);
}

const server = createServer((req, res) => {
  if (!hosts.has(req.headers.host?.toLowerCase())) return refuse(res, 421, `this server answers only for http://127.0.0.1:${server.address().port}/`);
  if (req.method !== "GET" && req.method !== "HEAD") return refuse(res, 405, `${req.method} not allowed`, { allow: "GET, HEAD" });
  let path;
  try {
    path = decodeURIComponent(req.url.split("?")[0]);
  } catch {
    return refuse(res, 400, "malformed URL");
  }
  if (!path.startsWith("/") || path.includes("\0")) return refuse(res, 400, "malformed URL");
  // No segment may start with a dot: that refuses "..", "." and dotfiles (.git, .env) alike, so
  // the file is inside root. Backslashes count as separators too (%5C is one on Windows).
  const parts = path.split(/[/\\]/);
  const file = join(root, ...parts, path.endsWith("/") ? "index.html" : "");
  let st;
  try {
    if (parts.some((p) => p.startsWith(".")) || !types[extname(file)]) throw new Error("not served");
    st = statSync(file);
    if (!st.isFile()) throw new Error("not a file");
  } catch {
    return refuse(res, 404, `not found: ${path}`);
  }
  // Set, not written: until the first byte goes out, a read error can still become a 500.
  for (const [name, value] of Object.entries({
    ...nosniff,
    "content-type": types[extname(file)],
    "content-length": st.size,
    "cache-control": "no-cache",
    // What free-wasm compares to tell a cached model file from a changed one.
    "last-modified": st.mtime.toUTCString(),
  })) res.setHeader(name, value);
  if (req.method === "HEAD") return void res.end();
  const body = createReadStream(file);
  body.on("error", (e) => {
    console.error(`serve: ${path}: ${e.message}`);
    // Once bytes went out, only a cut connection tells the client the file is incomplete.
    if (res.headersSent) res.destroy();
    else refuse(res, 500, `cannot read ${path}`);
  });
  res.on("close", () => body.destroy()); // a client gone mid-file closes it
  body.pipe(res);
});
// PORT=0 lets the system pick a free port; the line below says which (scripts/serve-child.mjs reads it).
server.on("error", (e) => {
  console.error(`cannot serve on 127.0.0.1:${port}: ${e.message}${e.code === "EADDRINUSE" ? "; choose another with PORT=N" : ""}`);
  process.exit(1);
});
server.listen(port, "127.0.0.1", () => {
  const { port } = server.address();
  hosts = new Set(["127.0.0.1", "localhost", "[::1]"].flatMap((name) => (port === 80 ? [name, `${name}:80`] : [`${name}:${port}`])));
  console.log(`free-wasm demo: http://127.0.0.1:${port}/`);
});

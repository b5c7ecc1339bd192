// A static file server for the demo, bound to 127.0.0.1 only. Serves the repository root
// (index.html, pkg/, models/, tests/fixtures/) with the MIME types browsers insist on
// (application/wasm for streaming compilation). No dependencies.
import { createServer } from "node:http";
import { createReadStream, statSync } from "node:fs";
import { extname, join, normalize, resolve } from "node:path";

const root = resolve(process.argv[2] ?? ".");
const port = Number(process.env.PORT ?? 8080);
const types = {
  ".html": "text/html; charset=utf-8", ".js": "text/javascript", ".mjs": "text/javascript",
  ".json": "application/json", ".wasm": "application/wasm", ".css": "text/css",
  ".safetensors": "application/octet-stream", ".png": "image/png", ".svg": "image/svg+xml",
};

const server = createServer((req, res) => {
  const path = decodeURIComponent(new URL(req.url, "http://x").pathname);
  const file = join(root, normalize(path).replace(/^(\.\.[/\\])+/, ""), path.endsWith("/") ? "index.html" : "");
  let st;
  try {
    st = statSync(file);
    if (!st.isFile()) throw new Error("not a file");
  } catch {
    res.writeHead(404, { "content-type": "text/plain" }).end(`not found: ${path}\n`);
    return;
  }
  res.writeHead(200, {
    "content-type": types[extname(file)] ?? "application/octet-stream",
    "content-length": st.size,
    "cache-control": "no-cache",
    // What free-wasm compares to tell a cached model file from a changed one.
    "last-modified": st.mtime.toUTCString(),
  });
  if (req.method === "HEAD") res.end();
  else createReadStream(file).pipe(res);
});
// PORT=0 lets the system pick a free port; the line below says which (scripts/serve-child.mjs reads it).
server.on("error", (e) => {
  console.error(`cannot serve on 127.0.0.1:${port}: ${e.message}${e.code === "EADDRINUSE" ? "; choose another with PORT=N" : ""}`);
  process.exit(1);
});
server.listen(port, "127.0.0.1", () => {
  console.log(`free-wasm demo: http://127.0.0.1:${server.address().port}/`);
});

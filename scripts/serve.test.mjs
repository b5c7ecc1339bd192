// Tests of the demo's file server (scripts/serve.mjs), started as the browser tests start it
// (scripts/serve-child.mjs): each hostile or broken request gets its 4xx or 5xx with nosniff,
// and the server still serves the page afterwards. Usage: node --test scripts/serve.test.mjs
import assert from "node:assert/strict";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { serve } from "./serve-child.mjs";

// A built page in www/ with its model folder linked in from beside it (as scripts/demo.sh
// does), a file above the root that a path out of it would reach, and files never to serve.
const tmp = mkdtempSync(join(tmpdir(), "serve-test-"));
const page = "<!doctype html><title>free-wasm</title>\n";
const files = {
  "package.json": "{}",
  "www/index.html": page,
  "www/assets/app.js": "export {};\n",
  "www/.env": "SECRET=1\n",
  "www/.git/config": "[core]\n",
  "model/config.json": '{"d_model": 8}',
  "model/train-1.log": "step 1 loss 9.9\n",
  "model/README.md": "# notes\n",
  "model/locked.json": "{}",
};
for (const [name, text] of Object.entries(files)) {
  mkdirSync(join(tmp, name, ".."), { recursive: true });
  writeFileSync(join(tmp, name), text);
}
symlinkSync(join(tmp, "model"), join(tmp, "www/model"));
// Named like a model file, but a folder.
mkdirSync(join(tmp, "model/model.safetensors"));
// A regular file by stat whose every read fails (EIO): the read error after the open.
const procMem = process.platform === "linux" && existsSync("/proc/self/mem");
if (procMem) symlinkSync("/proc/self/mem", join(tmp, "model/mem.json"));
// Unreadable, unless we are root (who reads it anyway).
chmodSync(join(tmp, "model/locked.json"), 0);
const root = process.getuid?.() === 0;

let server;
before(async () => {
  server = await serve(join(tmp, "www"));
});
after(() => {
  server?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

/** One request, sent as written (node's client does not normalize the path), on a new connection. */
function send(path, { method = "GET", host = `127.0.0.1:${server.port}` } = {}) {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port: server.port, path, method, headers: { host }, agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk) => (body += chunk));
      res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, body }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end();
  });
}

async function expectStatus(status, path, options) {
  const res = await send(path, options);
  assert.equal(res.status, status, `${options?.method ?? "GET"} ${path} (Host ${options?.host ?? "127.0.0.1"}): ${res.body}`);
  assert.equal(res.headers["x-content-type-options"], "nosniff", `${path}: nosniff`);
  return res;
}

test("a malformed percent-encoding is a 400", async () => {
  await expectStatus(400, "/%E0%A4%A");
  await expectStatus(400, "/%");
  await expectStatus(400, "/index%00.html");
});

test("paths out of the root are not found, however they are written", async () => {
  for (const path of ["/../package.json", "/%2e%2e/package.json", "/..%2fpackage.json", "/%2E%2E%2Fpackage.json", "/assets/../../package.json", "/..%5cpackage.json", "/model/../../package.json"]) {
    await expectStatus(404, path);
  }
});

test("dotfiles are not served", async () => {
  await expectStatus(404, "/.env");
  await expectStatus(404, "/.git/config");
  await expectStatus(404, "/%2egit/config");
  await expectStatus(404, "/assets/./app.js");
});

test("only what the page fetches: no logs or notes from the model folder", async () => {
  await expectStatus(404, "/model/train-1.log");
  await expectStatus(404, "/model/README.md");
  await expectStatus(404, "/model/");
  await expectStatus(404, "/model/free.json");
  const config = await expectStatus(200, "/model/config.json");
  assert.equal(config.headers["content-type"], "application/json");
  assert.equal(config.body, files["model/config.json"]);
});

test("a Host that does not name this server is misdirected", async () => {
  await expectStatus(421, "/index.html", { host: `evil.example:${server.port}` });
  await expectStatus(421, "/index.html", { host: "127.0.0.1" });
  await expectStatus(421, "/index.html", { host: `127.0.0.1:${server.port + 1}` });
  await expectStatus(200, "/index.html", { host: `localhost:${server.port}` });
  await expectStatus(200, "/index.html", { host: `LocalHost:${server.port}` });
  await expectStatus(200, "/index.html", { host: `[::1]:${server.port}` });
});

test("methods other than GET and HEAD are not allowed", async () => {
  for (const method of ["POST", "PUT", "DELETE", "OPTIONS"]) {
    const res = await expectStatus(405, "/index.html", { method });
    assert.equal(res.headers.allow, "GET, HEAD");
  }
  const head = await expectStatus(200, "/index.html", { method: "HEAD" });
  assert.equal(head.headers["content-length"], String(Buffer.byteLength(page)));
  assert.equal(head.body, "");
});

test("a file that cannot be read is a 404 or a 500, not a crash", async () => {
  await expectStatus(404, "/model/model.safetensors");
  await expectStatus(404, "/model/missing.json");
});

test("a read error after the open is a 500", { skip: !procMem && "no /proc/self/mem" }, async () => {
  const res = await expectStatus(500, "/model/mem.json");
  assert.equal(res.body, "cannot read /model/mem.json\n");
});

test("an unreadable file is a 500", { skip: root && "root reads a chmod 000 file" }, async () => {
  await expectStatus(500, "/model/locked.json");
});

test("after all that, the page is still served", async () => {
  for (const path of ["/", "/index.html", "/index.html?model=model/"]) {
    const res = await expectStatus(200, path);
    assert.equal(res.headers["content-type"], "text/html; charset=utf-8");
    assert.equal(res.body, page);
  }
  const js = await expectStatus(200, "/assets/app.js");
  assert.equal(js.headers["content-type"], "text/javascript");
});

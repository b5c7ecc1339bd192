// Starts scripts/serve.mjs as a child process on a port the system picks, for the browser
// tests and benchmarks. Resolves once the server listens, so no page is opened before it can
// answer (a fixed delay raced with it: ERR_CONNECTION_REFUSED) and no two runs collide on a
// port chosen at random.
import { spawn } from "node:child_process";
import { resolve } from "node:path";

/** Serves `dir`; returns `{ port, url, stop }` once it listens. */
export function serve(dir) {
  const child = spawn(process.execPath, [resolve(import.meta.dirname, "serve.mjs"), dir], {
    env: { ...process.env, PORT: "0" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  return new Promise((ready, fail) => {
    let said = "";
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (chunk) => {
      said += chunk;
      const m = /http:\/\/127\.0\.0\.1:(\d+)\//.exec(said);
      if (m) ready({ port: Number(m[1]), url: m[0], stop: () => child.kill() });
    });
    child.on("error", fail);
    child.on("exit", (code) => fail(new Error(`the file server stopped before it listened (exit code ${code}): ${said}`)));
  });
}

// Runs the unit tests of the page's view logic: compiles src/view to test/unit/dist with
// tsc, then node's test runner on test/unit/*.test.mjs. Usage (from www/): npm run test:unit
import { execFileSync } from "node:child_process";
import { readdirSync } from "node:fs";

const here = new URL(".", import.meta.url);
execFileSync(new URL("../../node_modules/.bin/tsc", import.meta.url).pathname, ["-p", new URL("tsconfig.json", here).pathname], { stdio: "inherit" });
const files = readdirSync(here).filter((f) => f.endsWith(".test.mjs")).map((f) => new URL(f, here).pathname);
execFileSync(process.execPath, ["--test", ...files], { stdio: "inherit" });

// The e2e tests' handle on the demo page: drives its controls as a user would (selects,
// radio buttons, the slider, buttons) and reads back what it shows (tokens with their exit
// classes and data, numbers, charts, tooltips), plus the value checks several tests share.
import assert from "node:assert/strict";
import { join } from "node:path";

const S = 2; // the demo model's shallow exit
const L = 8; // its decoder blocks

export class Page {
  /** Uncaught errors and console errors seen on the page. */
  errors = [];

  constructor(page, shots) {
    this.page = page;
    this.shots = shots;
    page.on("pageerror", (e) => this.errors.push(e.message));
    page.on("console", (m) => m.type() === "error" && this.errors.push(`console: ${m.text()}`));
  }

  async open(url) {
    await this.page.goto(url);
  }

  async ready(timeout = 60_000) {
    await this.page.waitForFunction(() => ["ready", "error"].includes(document.body.dataset.state ?? ""), null, { timeout });
    if ((await this.page.evaluate(() => document.body.dataset.state)) === "error") throw new Error(`the page did not load: ${await this.text("#device-error")}`);
  }

  text(selector) {
    return this.page.locator(selector).innerText();
  }

  attr(selector, name) {
    return this.page.locator(selector).getAttribute(name);
  }

  options(selector) {
    return this.page.locator(`${selector} option`).evaluateAll((os) => os.map((o) => o.value));
  }

  async shot(name, options = {}) {
    await this.page.screenshot({ path: join(this.shots, `${name}.png`), fullPage: true, ...options });
  }

  /** Each file's last progress row: where it came from, whether it completed, its text. */
  progress() {
    return this.page.locator("#progress li").evaluateAll((lis) =>
      Object.fromEntries(lis.map((li) => [li.dataset.file, { source: li.dataset.source, done: li.dataset.done, text: li.querySelector(".bytes").textContent }])),
    );
  }

  /** Sets the form's controls; `threshold` picks the fixed mode, `adaptive: true` the adaptive one. */
  async configure({ task, example, strategy, threshold, adaptive, maxTokens }) {
    if (task !== undefined) await this.page.selectOption("#task", task);
    if (example !== undefined) {
      const values = await this.options("#example");
      await this.page.selectOption("#example", values[example]);
    }
    if (strategy !== undefined) await this.page.selectOption("#strategy", strategy);
    if (adaptive) await this.page.check("#mode-adaptive");
    if (threshold !== undefined) {
      await this.page.check("#mode-fixed");
      await this.page.locator("#threshold").evaluate((el, v) => {
        el.value = String(v);
        el.dispatchEvent(new Event("input", { bubbles: true }));
      }, threshold);
      assert.equal(await this.text("#threshold-out"), threshold.toFixed(2));
    }
    if (maxTokens !== undefined) await this.page.fill("#max-tokens", String(maxTokens));
  }

  /**
   * Clicks Generate and waits for the end. With `midShot`, also waits until 24 tokens are
   * drawn while still generating, times a round trip to the main thread, reads the live
   * numbers and takes the named screenshot; returns what it saw then.
   */
  async generate({ midShot } = {}) {
    const before = await this.runs();
    await this.page.click("#run");
    let seen = null;
    if (midShot) await this.page.evaluate(() => window.scrollTo(0, 0));
    if (midShot) {
      await this.page.waitForFunction(() => document.querySelectorAll("#output .tok").length >= 24 || document.body.dataset.state !== "generating", null, { polling: "raf" });
      // The fastest of five round trips to the main thread while tokens arrive: a thread that
      // the generation blocked would hold up every one of them, while a busy machine (other
      // processes on the same cores) delays some of them only.
      const pings = [];
      for (let i = 0; i < 5; i++) {
        const t0 = Date.now();
        seen = await this.page.evaluate(() => ({
          state: document.body.dataset.state,
          tokens: document.querySelectorAll("#output .tok").length,
          numbers: [...document.querySelectorAll("#numbers dd")].map((d) => d.textContent).join(" | "),
        }));
        pings.push(Date.now() - t0);
      }
      seen.pingMs = Math.min(...pings);
      assert.equal(seen.state, "generating", "the run ended before the mid-generation screenshot");
      await this.shot(midShot, { fullPage: false });
    }
    await this.ended(before);
    if (await this.page.locator("#error").isVisible()) throw new Error(`the page shows an error: ${await this.text("#error")}`);
    return seen;
  }

  /** How many generations the page has finished (its body's data-runs). */
  async runs() {
    return Number((await this.page.evaluate(() => document.body.dataset.runs)) ?? 0);
  }

  /** Waits until a generation after the `before`-th has ended and the page is ready again. */
  async ended(before) {
    await this.page.waitForFunction((n) => Number(document.body.dataset.runs ?? 0) > n && document.body.dataset.state === "ready", before, { timeout: 180_000 });
  }

  async compare() {
    const before = await this.runs();
    await this.page.click("#compare");
    await this.ended(before);
    if (await this.page.locator("#error").isVisible()) throw new Error(`the page shows an error: ${await this.text("#error")}`);
    assert.equal(await this.page.locator("#comparison").isVisible(), true);
  }

  /** The output tokens as drawn, in decision order. */
  tokens() {
    return this.page.locator("#output .tok").evaluateAll((spans) =>
      spans.map((s) => {
        const num = (v) => (v === undefined ? null : Number(v));
        const kind = ["shallow", "deep", "mid"].find((k) => s.classList.contains(`exit-${k}`));
        const group = s.parentElement?.classList.contains("group") ? s.parentElement : null;
        return {
          pos: Number(s.dataset.pos),
          index: Number(s.dataset.index),
          text: s.textContent,
          kind,
          exit: Number(s.dataset.exit),
          confidence: num(s.dataset.confidence),
          threshold: num(s.dataset.threshold),
          sync: num(s.dataset.sync),
          token: Number(s.dataset.token),
          deep: num(s.dataset.deep),
          disagreed: s.classList.contains("disagreed"),
          stacked: s.classList.contains("stacked"),
          rolledBack: s.classList.contains("rolled-back"),
          group: group ? `${group.classList.contains("waiting") ? "waiting" : "sync"}:${group.dataset.sync}` : null,
        };
      }),
    );
  }

  /** FREE's rule on every token that measured a confidence: exit iff confidence > threshold. */
  assertFreeRule(tokens, threshold) {
    assert.ok(tokens.length > 0, "no tokens");
    for (const t of tokens) {
      assert.ok(t.kind === "shallow" || t.kind === "deep", `token ${t.pos}: FREE has no exit ${t.exit}`);
      assert.equal(t.exit, t.kind === "shallow" ? S : L);
      if (t.confidence === null) continue; // exact mode's corrections
      const thr = threshold ?? t.threshold;
      if (threshold !== null) assert.equal(t.threshold, threshold, `token ${t.pos}: threshold in force`);
      if (t.kind === "shallow") assert.ok(t.confidence > thr, `token ${t.pos} exited at confidence ${t.confidence} <= ${thr}`);
      else assert.ok(t.confidence <= thr, `token ${t.pos} went deep at confidence ${t.confidence} > ${thr}`);
      assert.equal(t.stacked, t.kind === "shallow");
    }
  }

  /**
   * The numbers panel against the tokens drawn (FREE's block count,
   * docs/method.md#how-results-are-measured).
   */
  async assertNumbers(tokens) {
    const standing = tokens.filter((t) => !t.rolledBack);
    assert.equal(await this.text("#n-tokens"), String(standing.length));
    const rate = standing.filter((t) => t.kind !== "deep").length / standing.length;
    assert.equal(await this.text("#n-exit"), `${(rate * 100).toFixed(1)}%`);
    const rows = tokens.reduce((n, t) => n + S + (t.sync === null ? 0 : L - S), 0);
    assert.equal(await this.text("#n-blocks"), (rows / standing.length).toFixed(2));
    assert.ok(Number(await this.text("#n-speed")) > 0, "tokens/s");
    assert.match(await this.text("#n-first"), /^\d+ ms$/);
    const passes = new Set(tokens.filter((t) => t.sync !== null).map((t) => t.sync)).size;
    assert.match(await this.text("#n-passes"), new RegExp(`^${passes} deep pass(es)?, [\\d.]+ rows each`));
  }

  async assertConfidenceChart(tokens) {
    const measured = tokens.filter((t) => t.confidence !== null);
    assert.equal(await this.page.locator("#conf-chart circle").count(), measured.length);
    assert.equal(await this.page.locator("#conf-chart circle.exit-shallow").count(), measured.filter((t) => t.kind === "shallow").length);
    // Each dot's height is its confidence: cy = 12 + 178 (1 - c).
    const cys = await this.page.locator("#conf-chart circle").evaluateAll((cs) => cs.map((c) => Number(c.getAttribute("cy"))));
    cys.forEach((cy, i) => assert.ok(Math.abs(cy - (12 + 178 * (1 - measured[i].confidence))) < 0.06, `dot ${i} at ${cy}`));
    assert.equal(await this.page.locator("#conf-chart path.threshold-line").count(), 1);
  }

  /** Every deep-pass group holds stacked tokens and ends with the token the deep model decided. */
  async assertGroups(tokens) {
    const groups = new Map();
    for (const t of tokens) if (t.group) groups.set(t.group, [...(groups.get(t.group) ?? []), t]);
    assert.ok([...groups.keys()].some((g) => g.startsWith("sync:")), "at least one deep pass checked stacked tokens");
    for (const [name, members] of groups) {
      if (name.startsWith("waiting:")) {
        assert.ok(members.every((t) => t.stacked && t.sync === null), `${name}: only unchecked stacked tokens`);
        continue;
      }
      const sync = Number(name.slice(5));
      assert.ok(members.every((t) => t.sync === sync), `${name}: every token checked by deep pass ${sync}`);
      assert.ok(members.slice(0, -1).every((t) => t.stacked), `${name}: stacked tokens first`);
      assert.equal(members.at(-1).kind, "deep", `${name}: ends with the deep model's token`);
    }
    // FREE keeps a stacked token the deep model disagreed with, marked as such.
    for (const t of tokens) assert.equal(t.disagreed, t.deep !== null && t.deep !== t.token && !t.rolledBack, `token ${t.pos}: disagreement mark`);
  }

  async tooltip() {
    await this.page.locator("#token-detail").waitFor({ state: "visible" });
    return this.text("#token-detail");
  }

  betaState() {
    return this.page.evaluate(() => {
      const note = document.getElementById("beta-note").textContent;
      const line = document.querySelector("#beta-chart line.threshold-line");
      return {
        note,
        fit: !/no fit yet/.test(note),
        fits: Number(/(\d+) (?:re)?fits?\. Ticks/.exec(note)?.[1]),
        threshold: Number(/^Threshold ([\d.]+)/.exec(note)?.[1]),
        curves: document.querySelectorAll("#beta-chart path.density").length,
        consistentPath: document.querySelector("#beta-chart path.density.consistent")?.getAttribute("d") ?? null,
        lineX: line ? Number(line.getAttribute("x1")) : null,
        width: document.getElementById("beta-chart").viewBox.baseVal.width,
        ticks: document.querySelectorAll("#beta-chart line.seen").length,
      };
    });
  }
}

// Per-file loading progress: one row per model file with a <progress> bar, the bytes so far
// and where they come from (the network or Cache Storage), a one-line summary of all, and any
// warning the load gave.

import type { LoadProgress } from "free-wasm";

function megabytes(n: number): string {
  return n < 1e5 ? `${(n / 1e3).toFixed(1)} kB` : `${(n / 1e6).toFixed(1)} MB`;
}

export class ProgressView {
  #list: HTMLElement;
  #summary: HTMLElement;
  #rows = new Map<string, { bar: HTMLProgressElement; bytes: HTMLElement; progress: LoadProgress }>();

  constructor(list: HTMLElement, summary: HTMLElement) {
    this.#list = list;
    this.#summary = summary;
  }

  reset(): void {
    this.#rows.clear();
    this.#list.replaceChildren();
    this.#summary.textContent = "Model files";
  }

  update({ file, loaded, total, fromCache }: LoadProgress): void {
    let row = this.#rows.get(file);
    if (!row) {
      const li = document.createElement("li");
      li.dataset.file = file;
      const label = document.createElement("span");
      label.textContent = file;
      const bar = document.createElement("progress");
      bar.setAttribute("aria-label", `${file} download`);
      const bytes = document.createElement("span");
      bytes.className = "bytes";
      li.append(label, bar, bytes);
      this.#list.append(li);
      row = { bar, bytes, progress: { file, loaded, total, fromCache } };
      this.#rows.set(file, row);
    }
    row.progress = { file, loaded, total, fromCache };
    if (total !== null) {
      row.bar.max = total;
      row.bar.value = loaded;
    } else {
      row.bar.removeAttribute("value"); // indeterminate
    }
    const done = total !== null && loaded >= total;
    row.bytes.textContent = `${megabytes(loaded)}${total === null ? "" : ` of ${megabytes(total)}`} from ${fromCache ? "the cache" : "the network"}${done ? ", done" : ""}`;
    row.bytes.parentElement!.dataset.source = fromCache ? "cache" : "network";
    row.bytes.parentElement!.dataset.done = String(done);
    this.#summarise();
  }

  /** A problem that did not stop the load (a file Cache Storage could not keep), under the files. */
  warn(message: string): void {
    const li = document.createElement("li");
    li.className = "warning";
    li.setAttribute("role", "status");
    li.textContent = message;
    this.#list.append(li);
  }

  #summarise(): void {
    const all = [...this.#rows.values()].map((r) => r.progress);
    const loaded = all.reduce((n, p) => n + p.loaded, 0);
    const sources = new Set(all.map((p) => (p.fromCache ? "the cache" : "the network")));
    this.#summary.textContent = `Model files: ${all.length}, ${megabytes(loaded)} from ${[...sources].join(" and ")}`;
  }
}

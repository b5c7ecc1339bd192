// Per-file loading progress: one row per model file with a <progress> bar, the bytes so far
// and where they come from (the network or Cache Storage).

import type { LoadProgress } from "free-wasm";

function megabytes(n: number): string {
  return n < 1e5 ? `${(n / 1e3).toFixed(1)} kB` : `${(n / 1e6).toFixed(1)} MB`;
}

export class ProgressView {
  #list: HTMLElement;
  #rows = new Map<string, { bar: HTMLProgressElement; bytes: HTMLElement }>();

  constructor(list: HTMLElement) {
    this.#list = list;
  }

  reset(): void {
    this.#rows.clear();
    this.#list.replaceChildren();
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
      row = { bar, bytes };
      this.#rows.set(file, row);
    }
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
  }
}

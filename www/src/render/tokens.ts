// Draws the output tokens (view/trace.ts decides classes and groups): one span per token,
// a span per deep-pass group, a tooltip on hover or focus, and arrow-key navigation with a
// roving tabindex (the output is one tab stop; arrows, Home and End move between tokens).

import type { TraceEntry } from "free-wasm";
import { describeToken, displayText, groupLabel, groupTrace, tokenClasses, type ModelShape } from "../view/trace.js";

export class TokenView {
  #output: HTMLElement;
  #tooltip: HTMLElement;
  #trace: TraceEntry[] = [];
  #shape: ModelShape = { decoderBlocks: 0, shallowExit: null };
  /** Trace position of the token that takes the tab stop. */
  #current = 0;

  constructor(output: HTMLElement, tooltip: HTMLElement) {
    this.#output = output;
    this.#tooltip = tooltip;
    output.addEventListener("keydown", (e) => this.#key(e));
    output.addEventListener("focusin", (e) => this.#show(e.target));
    output.addEventListener("focusout", () => this.#hide());
    output.addEventListener("mouseover", (e) => this.#show(e.target));
    output.addEventListener("mouseleave", () => this.#hide());
  }

  render(trace: TraceEntry[], shape: ModelShape, finished: boolean): void {
    this.#trace = trace;
    this.#shape = shape;
    const hadFocus = this.#output.contains(document.activeElement);
    this.#current = Math.min(this.#current, Math.max(trace.length - 1, 0));
    const parts: Node[] = [];
    for (const group of groupTrace(trace)) {
      const spans = group.entries.map((entry, k) => this.#span(entry, group.start + k));
      if (group.kind === "single") {
        parts.push(...spans);
      } else {
        const box = document.createElement("span");
        box.className = `group ${group.kind}`;
        box.dataset.sync = group.sync === null ? "" : String(group.sync);
        box.title = groupLabel(group, finished);
        box.append(...spans);
        parts.push(box);
      }
    }
    this.#output.replaceChildren(...parts);
    if (hadFocus) this.#focus(this.#current);
  }

  clear(): void {
    this.#trace = [];
    this.#current = 0;
    this.#output.replaceChildren();
    this.#hide();
  }

  #span(entry: TraceEntry, position: number): HTMLSpanElement {
    const span = document.createElement("span");
    span.className = tokenClasses(entry, this.#shape).join(" ");
    span.textContent = displayText(entry);
    span.tabIndex = position === this.#current ? 0 : -1;
    span.dataset.pos = String(position);
    span.setAttribute("aria-describedby", "token-detail");
    span.dataset.exit = String(entry.exit);
    span.dataset.token = String(entry.token);
    span.dataset.index = String(entry.index);
    if (entry.sync !== null) span.dataset.sync = String(entry.sync);
    if (entry.deepToken !== null) span.dataset.deep = String(entry.deepToken);
    if (entry.confidence !== null) span.dataset.confidence = String(entry.confidence);
    if (entry.threshold !== null) span.dataset.threshold = String(entry.threshold);
    return span;
  }

  #focus(position: number): void {
    const spans = this.#output.querySelectorAll<HTMLElement>(".tok");
    if (spans.length === 0) return;
    this.#current = Math.min(Math.max(position, 0), spans.length - 1);
    spans.forEach((s) => (s.tabIndex = -1));
    spans[this.#current].tabIndex = 0;
    spans[this.#current].focus();
  }

  #key(e: KeyboardEvent): void {
    const moves: Record<string, number> = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1 };
    if (e.key in moves) this.#focus(this.#current + moves[e.key]);
    else if (e.key === "Home") this.#focus(0);
    else if (e.key === "End") this.#focus(this.#trace.length - 1);
    else return;
    e.preventDefault();
  }

  #show(target: EventTarget | null): void {
    if (!(target instanceof HTMLElement) || !target.classList.contains("tok") || target.dataset.pos === undefined) return;
    const position = Number(target.dataset.pos);
    const entry = this.#trace[position];
    if (!entry) return;
    if (document.activeElement === target) this.#current = position;
    const lines = describeToken(entry, this.#shape);
    this.#tooltip.replaceChildren(...lines.map((line) => Object.assign(document.createElement("p"), { textContent: line })));
    const box = target.getBoundingClientRect();
    this.#tooltip.hidden = false;
    const width = this.#tooltip.offsetWidth;
    const left = Math.min(Math.max(box.left + window.scrollX, 4), window.scrollX + document.documentElement.clientWidth - width - 4);
    this.#tooltip.style.left = `${left}px`;
    this.#tooltip.style.top = `${box.bottom + window.scrollY + 6}px`;
  }

  #hide(): void {
    this.#tooltip.hidden = true;
  }
}

// Trace-to-view logic for the output panel (pure, no DOM): rebuilds the trace from the
// package's token events, names each token's exit, and groups the tokens that waited on the
// stack with the deep pass that checked them. Unit-tested in test/unit/trace.test.mjs.

import type { TokenEvent, TraceEntry } from "free-wasm";

/** What the view needs to know about the loaded model. */
export interface ModelShape {
  /** Decoder blocks L. */
  decoderBlocks: number;
  /** The shallow exit S (free.json), or null for a model without one. */
  shallowExit: number | null;
}

/** An event's entries replace the trace from `from` on (types.ts `TokenEvent`). */
export function applyEvent(trace: TraceEntry[], event: TokenEvent): void {
  trace.splice(event.from, trace.length - event.from, ...event.entries);
}

export type ExitKind = "shallow" | "deep" | "mid";

/** Each kind of exit in words, as the page's legend names it. */
export const EXIT_WORDS: Record<ExitKind, string> = { shallow: "shallow exit", deep: "deep model", mid: "early exit (CALM)" };

/** The shallow exit, the deep model (all L blocks), or an exit between them (CALM). */
export function exitKind(entry: TraceEntry, shape: ModelShape): ExitKind {
  if (entry.exit >= shape.decoderBlocks) return "deep";
  if (shape.shallowExit !== null && entry.exit <= shape.shallowExit) return "shallow";
  return "mid";
}

/** The deep model checked this token and chose another (FREE without exact mode keeps it). */
export function disagreed(entry: TraceEntry): boolean {
  return entry.deepToken !== null && entry.deepToken !== entry.token;
}

/** CSS classes of a token: its exit, and whether it waited, was rolled back or disputed. */
export function tokenClasses(entry: TraceEntry, shape: ModelShape): string[] {
  const classes = ["tok", `exit-${exitKind(entry, shape)}`];
  if (entry.text !== "" && entry.text.trim() === "") classes.push("space");
  if (entry.stacked) classes.push("stacked");
  if (entry.stacked && entry.sync === null) classes.push("unchecked");
  if (entry.rolledBack) classes.push("rolled-back");
  else if (disagreed(entry)) classes.push("disagreed");
  return classes;
}

/**
 * "sync": the tokens one deep pass checked (the stacked ones, then the token the deep
 * model emitted or corrected); "waiting": stacked tokens no deep pass has checked yet (or,
 * once generation ended, never will: FREE drops them unchecked); "single": a token decided
 * on its own (full, static, CALM, or a deep pass with an empty stack; `sync` keeps its number).
 */
export interface TokenGroup {
  kind: "sync" | "waiting" | "single";
  /** The deep pass's number, when one decided or checked the group. */
  sync: number | null;
  /** Positions in the trace of the group's entries, in order. */
  start: number;
  entries: TraceEntry[];
}

/** Splits the trace (in decision order) into groups; every entry lands in exactly one. */
export function groupTrace(trace: TraceEntry[]): TokenGroup[] {
  const groups: TokenGroup[] = [];
  trace.forEach((entry, i) => {
    const last = groups.at(-1);
    if (entry.sync !== null) {
      if (last?.kind === "sync" && last.sync === entry.sync) last.entries.push(entry);
      else groups.push({ kind: "sync", sync: entry.sync, start: i, entries: [entry] });
    } else if (entry.stacked) {
      if (last?.kind === "waiting") last.entries.push(entry);
      else groups.push({ kind: "waiting", sync: null, start: i, entries: [entry] });
    } else {
      groups.push({ kind: "single", sync: null, start: i, entries: [entry] });
    }
  });
  // A deep pass with nothing on the stack decided one token alone: no group to draw.
  for (const g of groups) if (g.kind === "sync" && !g.entries.some((e) => e.stacked)) g.kind = "single";
  return groups;
}

/** A group's one-line caption (shown on the group and read by screen readers). */
export function groupLabel(group: TokenGroup, finished: boolean): string {
  if (group.kind === "single") return "";
  const stacked = group.entries.filter((e) => e.stacked).length;
  if (group.kind === "waiting") {
    const n = `${stacked} token${stacked === 1 ? "" : "s"}`;
    return finished ? `${n} never checked: generation ended with them on the stack` : `${n} waiting on the stack`;
  }
  const rolled = group.entries.filter((e) => e.rolledBack).length;
  let label = `deep pass ${group.sync}: ${stacked} stacked token${stacked === 1 ? "" : "s"} checked`;
  if (rolled > 0) label += `, ${rolled} rolled back`;
  return label;
}

/** A token's text for display: visible marks for what would otherwise be invisible. */
export function displayText(entry: TraceEntry): string {
  if (entry.text === "") return "⟨end⟩";
  if (entry.text.trim() === "") return entry.text.replace(/ /g, "␣").replace(/\n/g, "⏎"); // a bare space token
  return entry.text.replace(/\n/g, "⏎");
}

function fixed(x: number | null): string {
  return x === null ? "not measured" : x.toFixed(3);
}

/** The details a hover or focus shows: exit, confidence, threshold in force, the deep model's choice. */
export function describeToken(entry: TraceEntry, shape: ModelShape): string[] {
  const kind = exitKind(entry, shape);
  const where = EXIT_WORDS[kind];
  const lines = [
    `"${entry.text}" (token ${entry.token}) at position ${entry.index}`,
    `decided by the ${where} after ${entry.exit} of ${shape.decoderBlocks} decoder blocks`,
    `confidence ${fixed(entry.confidence)}, threshold in force ${entry.threshold === null ? "none" : entry.threshold.toFixed(3)}`,
  ];
  if (entry.deepToken === null) {
    lines.push(entry.stacked ? "deep model: not run here (no deep pass checked it)" : "deep model: not run here");
  } else if (entry.deepToken === entry.token) {
    lines.push(`deep model's choice: "${entry.deepText}" (agrees)`);
  } else {
    lines.push(`deep model's choice: "${entry.deepText}" (disagrees)`);
  }
  if (entry.stacked) lines.push(entry.sync === null ? "waited on the stack" : `waited on the stack until deep pass ${entry.sync}`);
  if (entry.rolledBack) {
    lines.push(disagreed(entry) ? "rolled back: the deep model chose another token here (exact mode)" : "rolled back: an earlier token was corrected (exact mode)");
  }
  return lines;
}

/** A shallow confidence and whether the deep model agreed with the token there. */
export interface Observation {
  confidence: number;
  agrees: boolean;
}

/**
 * What the trace shows of the adaptive estimator's data: stacked tokens a deep pass checked.
 * (The estimator also learns from the row a deep pass decided, but the trace keeps only the
 * deep token there, not the shallow one, so the page cannot tell agreement for it.)
 */
export function observations(trace: TraceEntry[]): Observation[] {
  return trace.flatMap((e) =>
    e.stacked && e.sync !== null && e.deepToken !== null && e.confidence !== null ? [{ confidence: e.confidence, agrees: e.deepToken === e.token }] : [],
  );
}

// What a model folder declares about its files in checksums.json (the exporter writes it
// for model.safetensors): their size, which caps the download, and their SHA-256, which a
// download must match and which tells a cached copy from a changed file when the server
// sends neither ETag nor Last-Modified.

import type { ModelFileName } from "./types.js";

export interface Declared {
  bytes: number;
  /** Lower-case hex. */
  sha256: string;
}

export type Checksums = Partial<Record<ModelFileName, Declared>>;

/** A file larger than it may be: not a broken download to resume, so it ends the load. */
export class TooLarge extends Error {}

/**
 * The most bytes `file` may have: what checksums.json declares, else a ceiling (JSON files
 * are small; weights cannot exceed what a 32-bit WebAssembly memory holds).
 */
export function byteCap(file: ModelFileName, declared: Checksums): number {
  return declared[file]?.bytes ?? (file === "model.safetensors" ? 4 * 2 ** 30 : 64 * 2 ** 20);
}

/** The error for `file` past its cap. */
export function tooLarge(file: ModelFileName, declared: Checksums, bytes: number): TooLarge {
  const cap = byteCap(file, declared);
  const why = declared[file] ? "the size checksums.json declares for it" : "what a model file may have";
  return new TooLarge(`${file} has more than ${cap} bytes (${bytes} or more), ${why}; the server sends another file than the folder declares`);
}

function malformed(why: string): Error {
  return new Error(`checksums.json is malformed: ${why}; fix it, or remove it (it is optional)`);
}

/** Checks the parsed JSON: each entry `{ bytes, sha256 }` for a model file. */
function validated(parsed: unknown): Checksums {
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw malformed("it is not an object");
  const out: Checksums = {};
  for (const [name, entry] of Object.entries(parsed)) {
    if (!["config.json", "model.safetensors", "tokenizer.json", "free.json"].includes(name)) continue; // room for other files
    const e = entry as Partial<Declared> | null;
    if (!e || !Number.isSafeInteger(e.bytes) || (e.bytes as number) < 0) throw malformed(`"${name}".bytes must be a whole number of bytes`);
    if (typeof e.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(e.sha256)) throw malformed(`"${name}".sha256 must be 64 lower-case hex digits`);
    out[name as ModelFileName] = { bytes: e.bytes as number, sha256: e.sha256 };
  }
  return out;
}

/**
 * checksums.json from the folder, asked for afresh each load (it is what tells a changed
 * file, so it is never taken from a cache); none when the folder has none or the server
 * cannot be reached (an offline load from Cache Storage).
 */
export async function readChecksums(base: URL, signal: AbortSignal | undefined): Promise<Checksums> {
  let response: Response;
  try {
    response = await fetch(new URL("checksums.json", base), { cache: "no-store", signal });
  } catch {
    signal?.throwIfAborted();
    return {};
  }
  if (!response.ok) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(await response.text());
  } catch (e) {
    throw malformed(e instanceof Error ? e.message : String(e));
  }
  return validated(parsed);
}

/** SHA-256 of `bytes` in lower-case hex; null where the browser offers no digest (outside a secure context). */
export async function sha256(bytes: Uint8Array<ArrayBuffer>): Promise<string | null> {
  if (!globalThis.crypto?.subtle) return null;
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Fails unless `bytes` are what checksums.json declares for `file`; returns their hash, to
 * keep with a cached copy. A file the folder declares nothing about is not hashed: the
 * hash would go unused.
 */
export async function verify(file: ModelFileName, url: URL, bytes: Uint8Array<ArrayBuffer>, declared: Checksums): Promise<string | null> {
  const want = declared[file];
  if (!want) return null;
  const got = await sha256(bytes);
  if (got !== null && got !== want.sha256) {
    throw new Error(`${url} does not match checksums.json (SHA-256 ${got.slice(0, 16)}…, declared ${want.sha256.slice(0, 16)}…): the download is corrupt or the folder holds files of two versions; load again`);
  }
  return got;
}

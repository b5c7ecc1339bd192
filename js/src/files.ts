// Getting a model's files: downloads with per-file progress (read from the body stream, so
// large weights report as they arrive), and an optional Cache Storage copy so a page can
// load the same model again offline.

import { following } from "./abort.js";
import { byteCap, readChecksums, TooLarge, tooLarge, verify, type Checksums } from "./checksums.js";
import type { Bytes, LoadOptions, ModelFileName, ModelFiles, ModelSource } from "./types.js";

/** The bytes `FreeModel.load` of the wasm layer takes. */
export interface LoadedFiles {
  config: Uint8Array;
  weights: Uint8Array;
  tokenizer: Uint8Array;
  free: Uint8Array | undefined;
}

const DEFAULT_CACHE = "free-wasm-models";

function bytes(b: Bytes): Uint8Array {
  return b instanceof ArrayBuffer ? new Uint8Array(b) : new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

function fromMemory(files: ModelFiles, options: LoadOptions): LoadedFiles {
  const loaded: LoadedFiles = {
    config: bytes(files.config),
    weights: bytes(files.weights),
    tokenizer: bytes(files.tokenizer),
    free: files.free === undefined ? undefined : bytes(files.free),
  };
  // One report per file, so a progress bar written for URLs also completes for files.
  const report = (file: ModelFileName, b: Uint8Array | undefined) => {
    if (b) options.onProgress?.({ file, loaded: b.byteLength, total: b.byteLength, fromCache: false });
  };
  report("config.json", loaded.config);
  report("model.safetensors", loaded.weights);
  report("tokenizer.json", loaded.tokenizer);
  report("free.json", loaded.free);
  return loaded;
}

/** The body's size when the response states it for the bytes we will read. */
function declaredSize(response: Response): number | null {
  const length = response.headers.get("content-length");
  const encoding = response.headers.get("content-encoding");
  // A compressed body's Content-Length counts compressed bytes; the stream gives us the
  // decompressed ones, so the two are not comparable.
  if (length === null || (encoding !== null && encoding !== "identity")) return null;
  const n = Number(length);
  return Number.isSafeInteger(n) && n >= 0 ? n : null;
}

/** How many times a download that breaks off is taken up again before the load gives up. */
const RESUMES = 3;

/** A file's bytes as they arrive: with a known size, straight into one buffer (no second copy of the weights). */
class Received {
  buffer: Uint8Array<ArrayBuffer>;
  loaded = 0;
  #tooLarge: (bytes: number) => TooLarge;
  #cap: number;

  /** `cap`: the most bytes the file may have, past which `append` throws `tooLarge`'s error. */
  constructor(size: number | null, cap: number, tooLarge: (bytes: number) => TooLarge) {
    if (size !== null && size > cap) throw tooLarge(size);
    this.buffer = new Uint8Array(size ?? Math.min(1 << 20, cap));
    this.#cap = cap;
    this.#tooLarge = tooLarge;
  }

  append(chunk: Uint8Array): void {
    if (this.loaded + chunk.byteLength > this.#cap) throw this.#tooLarge(this.loaded + chunk.byteLength);
    if (this.loaded + chunk.byteLength > this.buffer.byteLength) {
      const grown = new Uint8Array(Math.max(this.buffer.byteLength * 2, this.loaded + chunk.byteLength));
      grown.set(this.buffer.subarray(0, this.loaded));
      this.buffer = grown;
    }
    this.buffer.set(chunk, this.loaded);
    this.loaded += chunk.byteLength;
  }

  bytes(): Uint8Array<ArrayBuffer> {
    return this.loaded === this.buffer.byteLength ? this.buffer : this.buffer.slice(0, this.loaded);
  }
}

function megabytes(n: number): string {
  return `${(n / 1e6).toFixed(1)} MB`;
}

function reason(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Waits `ms`, or rejects with the signal's reason as soon as it aborts. */
function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    signal?.throwIfAborted();
    const done = () => {
      signal?.removeEventListener("abort", stop);
      resolve();
    };
    const timer = setTimeout(done, ms);
    const stop = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener("abort", stop, { once: true });
  });
}

/** What names this version of a file, if it can vouch for the bytes: a strong ETag, else Last-Modified. */
function version(response: Response): string | null {
  const etag = response.headers.get("etag");
  return etag !== null && !etag.startsWith("W/") ? etag : response.headers.get("last-modified");
}

/**
 * The rest of `url` from byte `from` on, if it is still the version `was` (`version` of
 * the first response). A server that honours the Range request answers 206 with a
 * Content-Range starting there and the same version; with any other answer the file is
 * fetched whole again (`from` becomes 0), so a file replaced on the server, even by one of
 * the same size, is never stitched from two versions. On this page's origin the request
 * says so itself (If-Range: the server sends the whole new file); another origin would
 * need a CORS preflight for If-Range, which many servers refuse, so there the 206's
 * version is compared, and it must expose Content-Range and ETag (or Last-Modified).
 * Without a version to compare, only a whole new download is safe.
 */
async function fetchRest(url: URL, from: number, total: number, was: string | null, signal: AbortSignal | undefined): Promise<{ response: Response; from: number }> {
  if (was === null) return { response: checkedWhole(await fetch(url, { cache: "no-store", signal }), total), from: 0 };
  const headers: Record<string, string> = { range: `bytes=${from}-` };
  if (url.origin === globalThis.location?.origin) headers["if-range"] = was;
  const partial = await fetch(url, { headers, cache: "no-store", signal });
  const range = /^bytes (\d+)-\d+\/(\d+)$/.exec(partial.headers.get("content-range") ?? "");
  const same = version(partial) === was;
  if (partial.status === 206 && same && range && Number(range[1]) === from && Number(range[2]) === total) return { response: partial, from };
  // A 200 is the whole file, to be read; any other answer is dropped and the file asked for again.
  if (partial.status === 200) return { response: checkedWhole(partial, total), from: 0 };
  await partial.body?.cancel();
  return { response: checkedWhole(await fetch(url, { cache: "no-store", signal }), total), from: 0 };
}

/** `whole`, a response with the entire file, if it is a success of the size first stated. */
function checkedWhole(whole: Response, total: number): Response {
  if (!whole.ok) throw new Error(`HTTP ${whole.status} ${whole.statusText}`);
  if (declaredSize(whole) !== total) throw new Error("the file changed on the server during the download");
  return whole;
}

/**
 * Reads the body of `first`, reporting progress. When a download from the network breaks
 * off (the connection drops, or the body ends short of its Content-Length), it is taken up
 * again where it stopped, with a pause of 0.5, 1 and then 2 s before each try.
 */
async function readBody(first: Response, url: URL, file: ModelFileName, options: LoadOptions, fromCache: boolean, declared: Checksums): Promise<Uint8Array<ArrayBuffer>> {
  const total = declaredSize(first);
  const was = version(first);
  const received = new Received(total, byteCap(file, declared), (bytes) => tooLarge(file, declared, bytes));
  const report = () => options.onProgress?.({ file, loaded: received.loaded, total, fromCache });
  report();
  let response = first;
  let failure = "";
  for (let resume = 0; ; resume++) {
    try {
      if (resume > 0) {
        await pause(500 * 2 ** (resume - 1), options.signal);
        // Without a trustworthy size (none stated, or a compressed body) only a whole new download will do.
        const next = total === null ? { response: await fetch(url, { cache: "no-store", signal: options.signal }), from: 0 } : await fetchRest(url, received.loaded, total, was, options.signal);
        response = next.response;
        if (!response.ok) throw new Error(`HTTP ${response.status} ${response.statusText}`);
        received.loaded = next.from;
        report();
      }
      if (response.body === null) {
        received.append(new Uint8Array(await response.arrayBuffer()));
        report();
      } else {
        const reader = response.body.getReader();
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          received.append(value);
          report();
        }
      }
      if (total === null || received.loaded === total) return received.bytes();
      failure = `the body ended after ${megabytes(received.loaded)} of ${megabytes(total)}`;
    } catch (e) {
      if (options.signal?.aborted) throw options.signal.reason;
      if (e instanceof TooLarge) throw e;
      failure = reason(e);
    }
    if (fromCache) {
      throw new Error(`could not read ${file} from Cache Storage (${failure}); delete the cache "${options.cacheName ?? DEFAULT_CACHE}" or load with cache: false`);
    }
    if (resume === RESUMES) {
      const where = total === null ? megabytes(received.loaded) : `${megabytes(received.loaded)} of ${megabytes(total)}`;
      throw new Error(`the download of ${url} broke off at ${where} (${failure}) and ${RESUMES} attempts to resume it failed; check the connection and load again`);
    }
  }
}

/** Passes a warning to `onWarning`, or to the console without one. */
export function warn(options: Pick<LoadOptions, "onWarning">, message: string): void {
  if (options.onWarning) options.onWarning(message);
  else console.warn(`free-wasm: ${message}`);
}

/** The cache to keep the files in; without Cache Storage the load goes on without one and says so. */
async function openCache(name: string, options: LoadOptions): Promise<Cache | null> {
  if (typeof caches === "undefined") {
    warn(
      options,
      "cache: true needs the Cache Storage API, which browsers offer only in secure contexts (https:// or http://localhost), " +
        "so the files were downloaded without keeping a copy; serve the page that way for offline loads, or load with cache: false",
    );
    return null;
  }
  return caches.open(name);
}

/** The headers that tell one version of a file from another, strongest first. */
const VALIDATORS = ["etag", "last-modified"] as const;

/** The SHA-256 of a cached copy, as verified when it was downloaded. */
const HASH_HEADER = "x-free-wasm-sha256";

/** How long a load waits to hear whether a cached file changed before it uses the copy as it is. */
const REVALIDATE_MS = 3000;

/**
 * Whether the cached copy of `url` is still the server's file, so a model updated on the
 * server replaces the copy: a HEAD request's ETag, else its Last-Modified, else its size,
 * against the copy's. When the server cannot be reached (offline) or does not answer
 * within REVALIDATE_MS, or answers with an error, the copy is used as it is.
 */
async function stillCurrent(url: URL, cached: Response, signal: AbortSignal | undefined, declared: Checksums, file: ModelFileName): Promise<boolean> {
  const asking = following(signal);
  const timer = setTimeout(() => asking.controller.abort(), REVALIDATE_MS);
  let head: Response;
  try {
    head = await fetch(url, { method: "HEAD", cache: "no-store", signal: asking.controller.signal });
  } catch {
    signal?.throwIfAborted();
    return true;
  } finally {
    clearTimeout(timer);
    asking.release();
  }
  // free.json's recorded absence holds while the server still has none.
  if (cached.status === 404) return head.status === 404;
  if (!head.ok) return true;
  for (const name of VALIDATORS) {
    const now = head.headers.get(name);
    const then = cached.headers.get(name);
    if (now !== null && then !== null) return now === then;
  }
  // Sizes can stay when contents change: the folder's declared hash is the better test.
  const hash = declared[file]?.sha256;
  const kept = cached.headers.get(HASH_HEADER);
  if (hash !== undefined && kept !== null) return hash === kept;
  const size = declaredSize(head);
  return size === null || size === declaredSize(cached);
}

// Only free.json may be missing (HTTP 404): the overloads tell the caller which files come back for sure.
async function download(url: URL, file: "free.json", options: LoadOptions, cache: Cache | null, declared: Checksums): Promise<Uint8Array | undefined>;
async function download(url: URL, file: Exclude<ModelFileName, "free.json">, options: LoadOptions, cache: Cache | null, declared: Checksums): Promise<Uint8Array>;
async function download(url: URL, file: ModelFileName, options: LoadOptions, cache: Cache | null, declared: Checksums): Promise<Uint8Array | undefined> {
  const optional = file === "free.json";
  const request = new Request(url);
  let cached = cache ? await cache.match(request) : undefined;
  if (cached && !(await stillCurrent(url, cached, options.signal, declared, file))) cached = undefined;
  let response: Response;
  if (cached) {
    response = cached;
  } else {
    try {
      response = await fetch(request, { signal: options.signal });
    } catch (e) {
      if (options.signal?.aborted) throw options.signal.reason;
      throw new Error(`could not download ${url}: ${e instanceof Error ? e.message : String(e)}; check that the server is up and, for another origin, that it sends CORS headers`);
    }
  }
  if (response.status === 404 && optional) {
    // Remember that the folder has no free.json, so an offline load does not need to ask.
    if (cache && !cached) await cache.put(request, new Response(null, { status: 404 }));
    return undefined;
  }
  if (!response.ok) {
    throw new Error(`could not download ${url}: HTTP ${response.status} ${response.statusText}; the model folder must serve ${file}`);
  }
  const body = await readBody(response, url, file, options, cached !== undefined, declared);
  if (!cached) {
    const hash = await verify(file, url, body, declared);
    if (cache) await keep(cache, request, response, body, hash, file, options);
  }
  return body;
}

/** Puts a downloaded file into Cache Storage with what tells its version later; a failure only warns. */
async function keep(cache: Cache, request: Request, response: Response, body: Uint8Array<ArrayBuffer>, hash: string | null, file: ModelFileName, options: LoadOptions): Promise<void> {
  const headers: Record<string, string> = { "content-type": response.headers.get("content-type") ?? "application/octet-stream", "content-length": String(body.byteLength) };
  if (hash !== null) headers[HASH_HEADER] = hash;
  // Kept for stillCurrent's comparison on the next load.
  for (const name of VALIDATORS) {
    const value = response.headers.get(name);
    if (value !== null) headers[name] = value;
  }
  try {
    await cache.put(request, new Response(body, { headers }));
  } catch (e) {
    // The bytes are here: the load goes on, only the offline copy is missing.
    const name = e instanceof DOMException || e instanceof Error ? `${e.name}: ` : "";
    warn(options, `${file} could not be kept in Cache Storage (${name}${reason(e)}), so the next load downloads it again; free some of this site's storage (a full quota is the usual cause) or load with cache: false`);
  }
}

/** The model's files, from memory or downloaded (and cached) from `baseUrl`. */
export async function loadFiles(source: ModelSource, options: LoadOptions): Promise<LoadedFiles> {
  if ("files" in source) return fromMemory(source.files, options);
  // Relative URLs are relative to the page (or the worker script); a trailing slash makes
  // the folder the base for the file names.
  const base = new URL(String(source.baseUrl), globalThis.location?.href);
  if (!base.pathname.endsWith("/")) base.pathname += "/";
  const here = globalThis.location?.origin;
  if (here !== undefined && here !== "null" && base.origin !== here && !options.allowCrossOrigin) {
    throw new DOMException(
      `the model folder ${base.href} is on another origin than this page (${here}); load with allowCrossOrigin: true to allow it, from servers you trust`,
      "SecurityError",
    );
  }
  const cache = options.cache ? await openCache(options.cacheName ?? DEFAULT_CACHE, options) : null;
  const url = (file: ModelFileName) => new URL(file, base);
  // The first file that fails stops the others: no download goes on (or lands in the cache)
  // for a load that has already rejected.
  const downloads = following(options.signal);
  const inner: LoadOptions = { ...options, signal: downloads.controller.signal };
  const failFast = <T>(p: Promise<T>) =>
    p.catch((e: unknown) => {
      downloads.controller.abort(e);
      throw e;
    });
  try {
    const declared = await readChecksums(base, inner.signal);
    const [config, weights, tokenizer, free] = await Promise.all([
      failFast(download(url("config.json"), "config.json", inner, cache, declared)),
      failFast(download(url("model.safetensors"), "model.safetensors", inner, cache, declared)),
      failFast(download(url("tokenizer.json"), "tokenizer.json", inner, cache, declared)),
      failFast(download(url("free.json"), "free.json", inner, cache, declared)),
    ]);
    return { config, weights, tokenizer, free };
  } finally {
    downloads.release();
  }
}

// Getting a model's files: downloads with per-file progress (read from the body stream, so
// large weights report as they arrive), and an optional Cache Storage copy so a page can
// load the same model again offline.

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

async function readBody(response: Response, report: (loaded: number, total: number | null) => void): Promise<Uint8Array<ArrayBuffer>> {
  const total = declaredSize(response);
  if (response.body === null) {
    const all = new Uint8Array(await response.arrayBuffer());
    report(all.byteLength, total ?? all.byteLength);
    return all;
  }
  const reader = response.body.getReader();
  // With a known size the chunks go straight into one buffer: no second copy of the weights.
  let buffer = new Uint8Array(total ?? 1 << 20);
  let loaded = 0;
  report(0, total);
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (loaded + value.byteLength > buffer.byteLength) {
      const grown = new Uint8Array(Math.max(buffer.byteLength * 2, loaded + value.byteLength));
      grown.set(buffer.subarray(0, loaded));
      buffer = grown;
    }
    buffer.set(value, loaded);
    loaded += value.byteLength;
    report(loaded, total);
  }
  return loaded === buffer.byteLength ? buffer : buffer.slice(0, loaded);
}

async function openCache(name: string): Promise<Cache> {
  if (typeof caches === "undefined") {
    throw new Error(
      "cache: true needs the Cache Storage API, which browsers offer only in secure contexts " +
        "(https:// or http://localhost); serve the page that way or load with cache: false",
    );
  }
  return caches.open(name);
}

// Only free.json may be missing (HTTP 404): the overloads tell the caller which files come back for sure.
async function download(url: URL, file: "free.json", options: LoadOptions, cache: Cache | null): Promise<Uint8Array | undefined>;
async function download(url: URL, file: Exclude<ModelFileName, "free.json">, options: LoadOptions, cache: Cache | null): Promise<Uint8Array>;
async function download(url: URL, file: ModelFileName, options: LoadOptions, cache: Cache | null): Promise<Uint8Array | undefined> {
  const optional = file === "free.json";
  const request = new Request(url);
  const cached = cache ? await cache.match(request) : undefined;
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
  const fromCache = cached !== undefined;
  const body = await readBody(response, (loaded, total) => options.onProgress?.({ file, loaded, total, fromCache }));
  if (cache && !cached) {
    const headers = { "content-type": response.headers.get("content-type") ?? "application/octet-stream", "content-length": String(body.byteLength) };
    await cache.put(request, new Response(body, { headers }));
  }
  return body;
}

/** The model's files, from memory or downloaded (and cached) from `baseUrl`. */
export async function loadFiles(source: ModelSource, options: LoadOptions): Promise<LoadedFiles> {
  if ("files" in source) return fromMemory(source.files, options);
  // Relative URLs are relative to the page (or the worker script); a trailing slash makes
  // the folder the base for the file names.
  const base = new URL(String(source.baseUrl), globalThis.location?.href);
  if (!base.pathname.endsWith("/")) base.pathname += "/";
  const cache = options.cache ? await openCache(options.cacheName ?? DEFAULT_CACHE) : null;
  const url = (file: ModelFileName) => new URL(file, base);
  const [config, weights, tokenizer, free] = await Promise.all([
    download(url("config.json"), "config.json", options, cache),
    download(url("model.safetensors"), "model.safetensors", options, cache),
    download(url("tokenizer.json"), "tokenizer.json", options, cache),
    download(url("free.json"), "free.json", options, cache),
  ]);
  return { config, weights, tokenizer, free };
}

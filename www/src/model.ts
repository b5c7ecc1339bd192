// The page's side of the package: loads a model into the package's Web Worker (so the page
// stays responsive while it generates), with per-file progress and Cache Storage, and finds
// out what the browser offers for WebGPU. The device and the weights' format are passed to
// the package as chosen: the package decides whether it can honour them, and the page shows
// its answer.

import { FreeWorkerModel, type Device, type Dtype, type LoadProgress } from "free-wasm/worker";

/** The model in the package's worker, with per-file progress, kept in Cache Storage; `dtype`
 * undefined: the weights as model.safetensors stores them. */
export function loadModel(baseUrl: URL, device: Device, dtype: Dtype | undefined, onProgress: (p: LoadProgress) => void, onWarning: (message: string) => void): Promise<FreeWorkerModel> {
  return FreeWorkerModel.load({ baseUrl }, { cache: true, device, dtype, onProgress, onWarning });
}

/** The parts of WebGPU the page looks at (kept local: the DOM typings may lack WebGPU). */
interface GpuLike {
  requestAdapter(): Promise<{ info?: { vendor?: string; architecture?: string; description?: string } } | null>;
}

export interface GpuSupport {
  available: boolean;
  /** What the page tells the user. */
  note: string;
}

export async function webgpuSupport(): Promise<GpuSupport> {
  const gpu = (navigator as Navigator & { gpu?: GpuLike }).gpu;
  if (!gpu) {
    return { available: false, note: "This browser offers no WebGPU (navigator.gpu is missing), so the model runs on the CPU (WebAssembly with SIMD)." };
  }
  try {
    const adapter = await gpu.requestAdapter();
    if (!adapter) return { available: false, note: "WebGPU is present but found no GPU adapter, so the model runs on the CPU (WebAssembly with SIMD)." };
    const info = adapter.info;
    const name = [info?.vendor, info?.architecture, info?.description].filter((s) => s).join(" ") || "unnamed";
    return { available: true, note: `WebGPU adapter found: ${name}.` };
  } catch (e) {
    return { available: false, note: `WebGPU failed to give an adapter (${e instanceof Error ? e.message : String(e)}), so the model runs on the CPU.` };
  }
}

/** An error in words, with its name when that says something (NotSupportedError, AbortError). */
export function describeError(e: unknown): string {
  if (e instanceof Error || e instanceof DOMException) return e.name && e.name !== "Error" ? `${e.name}: ${e.message}` : e.message;
  return String(e);
}

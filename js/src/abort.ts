// Waiting that an AbortSignal can cut short, and work that stops when another signal does.

/**
 * Settles as `promise` does, or rejects with the signal's reason as soon as it aborts,
 * whichever comes first. The work behind `promise` goes on; only the waiting stops (a
 * generation queued behind another, a load inside a worker).
 */
export function untilAborted<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  return new Promise<T>((resolve, reject) => {
    const stop = () => reject(signal.reason);
    if (signal.aborted) return stop();
    signal.addEventListener("abort", stop, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", stop));
  });
}

/**
 * A controller that also aborts, with the same reason, when `outer` does; `release()`
 * stops following `outer` (once the work is over, so a long-lived signal keeps no listener).
 */
export function following(outer: AbortSignal | undefined): { controller: AbortController; release: () => void } {
  const controller = new AbortController();
  const forward = () => controller.abort(outer?.reason);
  if (outer?.aborted) forward();
  else outer?.addEventListener("abort", forward, { once: true });
  return { controller, release: () => outer?.removeEventListener("abort", forward) };
}

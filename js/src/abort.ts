// Waiting that an AbortSignal can cut short.

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

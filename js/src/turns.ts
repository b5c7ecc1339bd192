// Work that must not overlap, run in the order it was asked for.

/** Runs tasks one after another: each starts once every task given before it has settled. */
export class Turns {
  #last: Promise<unknown> = Promise.resolve();

  run<T>(task: () => Promise<T>): Promise<T> {
    const result = this.#last.then(task, task);
    this.#last = result.catch(() => undefined);
    return result;
  }

  /** Resolves (never rejects) once every task given so far has settled. */
  settled(): Promise<unknown> {
    return this.#last;
  }
}

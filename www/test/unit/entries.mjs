// Trace entries for the unit tests, shaped as the package's TraceEntry (types.ts), for a
// model with 8 decoder blocks and the shallow exit after block 2.
export const SHAPE = { decoderBlocks: 8, shallowExit: 2 };

let nextIndex = 0;
/** A trace entry with defaults (a deep token decided alone); `over` sets any field. */
export function entry(over = {}) {
  return {
    index: nextIndex++,
    token: 100,
    text: " tok",
    exit: 8,
    confidence: 0.5,
    threshold: 0.3,
    stacked: false,
    sync: null,
    deepToken: null,
    deepText: null,
    rolledBack: false,
    ...over,
  };
}

/** A stacked shallow token. */
export const shallow = (over = {}) => entry({ exit: 2, confidence: 0.9, stacked: true, ...over });

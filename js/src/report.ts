// Generated from crate/src/decode/trace.rs (TokenTrace, Counters) and crate/src/pipeline.rs
// (Timings, Report) by the test `report_mirror_is_current` (`FREE_UPDATE_MIRRORS=1 cargo test
// --lib mirror` rewrites it): do not edit.

/**
 * How one output token was decided.
 */
export type TokenTrace = { 
/**
 * Position in the output (0 = the first generated token).
 */
index: number, token: number, 
/**
 * The token's text as it appears in running text (a leading space for a new word);
 * filled in by the pipeline (the decoder has no tokenizer).
 */
text: string, 
/**
 * How many decoder blocks produced it: S for the shallow exit, L for the deep model,
 * anything between for CALM.
 */
exit: number, 
/**
 * Confidence of the exit that decided (for FREE: the shallow exit's, also when it
 * fell below the threshold and the deep model decided).
 */
confidence: number | null, 
/**
 * The threshold in force when it was decided.
 */
threshold: number | null, 
/**
 * It was emitted by the shallow model and its state waited on the stack.
 */
stacked: boolean, 
/**
 * The synchronisation (deep pass, numbered from 0) that checked it, if any.
 */
sync: number | null, 
/**
 * The deep model's choice at this position, when it ran there.
 */
deepToken: number | null, 
/**
 * Exact mode: dropped because an earlier token was corrected.
 */
rolledBack: boolean, };

/**
 * What a generation cost.
 */
export type Counters = { 
/**
 * Decoder blocks run, counting each row of a multi-row pass
 * (docs/method.md#how-results-are-measured).
 */
blockRows: number, 
/**
 * Rows pushed through the LM head (one per exit checked).
 */
headRows: number, 
/**
 * Rows in each deep pass, in order.
 */
deepPasses: Array<number>, 
/**
 * Exact mode: synchronisations that found a wrong token and rolled back.
 */
rollbacks: number, 
/**
 * Steps recorded before the token they start from was read back (on WebGPU, full,
 * static and free keep the device busy with the next step while a result travels
 * back) ...
 */
aheadSteps: number, 
/**
 * ... and those thrown away, because the token turned out otherwise (a FREE deep pass
 * disagreed with the shallow exit) or the generation ended. Their blocks count in the
 * block rows: the device ran them.
 */
aheadDiscarded: number, };

/**
 * Wall-clock time of a generation's two phases, in milliseconds (measured by the caller:
 * std has no clock on wasm32).
 */
export type Timings = { 
/**
 * Tokenizing the input and running the encoder. On WebGPU the encoder's work is
 * submitted with the first decoder step, so there it counts in `decodeMs`.
 */
encodeMs: number, 
/**
 * The decoder steps, with whatever the caller did between them (in the browser,
 * `onToken` and the event loop's turns).
 */
decodeMs: number, };

/**
 * A finished generation as it is reported: the CLI's `--json` and the wasm API's
 * `generate` (the npm package's `Generation`) are this one shape.
 */
export type Report = { text: string, 
/**
 * Generated token ids, without the final end-of-sequence token.
 */
tokens: Array<number>, 
/**
 * True when the model ended the text itself (EOS), false when `maxNewTokens` ran out.
 */
finished: boolean, 
/**
 * Input tokens dropped because the input was longer than the model accepts.
 */
truncatedInputTokens: number, 
/**
 * Bytes of input text past 64 per input token the model takes (32768 for 512
 * positions), not tokenized at all (their tokens are not in `truncatedInputTokens`).
 */
truncatedInputBytes: number, 
/**
 * Every decided token in order, rolled-back ones included.
 */
trace: Array<TokenTrace>, 
/**
 * What the run that produced the result cost (after a device change, the CPU's replay).
 */
counters: Counters, 
/**
 * Of the run that produced the result (after a device change, the CPU's replay).
 */
timings: Timings, };

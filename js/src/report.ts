// Generated from crate/src/decode/trace.rs (TokenTrace, Counters), crate/src/pipeline.rs
// (Timings, Report) and crate/src/threshold (AdaptiveState and its parts) by the test
// `report_mirror_is_current` (`FREE_UPDATE_MIRRORS=1 cargo test --lib mirror` rewrites it):
// do not edit.

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
 * The deep model's choice as text, as `text` is the token's (filled in by the pipeline too).
 */
deepText: string | null, 
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

/**
 * The adaptive threshold's state (the wasm API's `adaptiveState`, the demo's charts).
 */
export type AdaptiveState = { threshold: number, 
/**
 * How the threshold is read off the fit: FREE's zeta rule (`fine`: the lowest
 * confidence from which up P(consistent | c) > zeta; `reference`: the reference code's
 * 10-point grid) or the error budget (`budget`: at most `rate` of exiting tokens
 * inconsistent).
 */
rule: ThresholdRule, zeta: number, 
/**
 * The last fit of the two-component Beta mixture, once there were enough points: from
 * the start with a model whose free.json ships a calibration.
 */
fit: Fit | null, 
/**
 * Shallow confidences this model's generations gave that the deep model agreed with,
 * in the estimator's window.
 */
consistentPoints: number, 
/**
 * ... and those it disagreed with.
 */
inconsistentPoints: number, 
/**
 * The data free.json's calibration ships (confidences on a validation split), as the
 * fit counts it now; the online points above add to it. None (null) for a model
 * without one. (With free.json's `bmm.window`, online points take its place as they
 * fill the window.)
 */
calibration: ClassMoments | null, 
/**
 * How many times the mixture was fitted since the estimator started or was reset
 * (`resetAdaptive`), the calibration's own fit not counted.
 */
fits: number, };

/**
 * How the threshold is read off the fitted mixture.
 */
export type ThresholdRule = { "kind": "reference" } | { "kind": "fine", min: number, max: number, priors_from_counts: boolean, } | { "kind": "budget", rate: number, min: number, max: number, };

/**
 * The last successful fit.
 */
export type Fit = { consistent: BetaParams, inconsistent: BetaParams, 
/**
 * Prior probability of the consistent class used in the posterior.
 */
priorConsistent: number, };

/**
 * A fitted Beta distribution (a serializable copy of `BetaParams`).
 */
export type BetaParams = { alpha: number, beta: number, };

/**
 * The data of both classes, summarised.
 */
export type ClassMoments = { consistent: Moments, inconsistent: Moments, };

/**
 * Count, mean and population variance of clipped confidences: all the method of moments
 * needs, so a class's data can be summarised (the calibration free.json ships) and later
 * data still combines with it as if every point had been kept (to rounding).
 */
export type Moments = { 
/**
 * How many points; a real number because a sliding window may keep a share of a
 * summarised class (`AdaptiveThreshold`).
 */
points: number, mean: number, variance: number, };

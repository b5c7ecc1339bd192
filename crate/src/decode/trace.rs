//! The per-token trace: one format for the CLI's JSON, the wasm API and the demo page.

use serde::Serialize;

/// How one output token was decided.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(all(test, not(target_arch = "wasm32")), derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct TokenTrace {
    /// Position in the output (0 = the first generated token).
    pub index: usize,
    pub token: u32,
    /// The token's text as it appears in running text (a leading space for a new word);
    /// filled in by the pipeline (the decoder has no tokenizer).
    pub text: String,
    /// How many decoder blocks produced it: S for the shallow exit, L for the deep model,
    /// anything between for CALM.
    pub exit: usize,
    /// Confidence of the exit that decided (for FREE: the shallow exit's, also when it
    /// fell below the threshold and the deep model decided).
    pub confidence: Option<f64>,
    /// The threshold in force when it was decided.
    pub threshold: Option<f64>,
    /// It was emitted by the shallow model and its state waited on the stack.
    pub stacked: bool,
    /// The synchronisation (deep pass, numbered from 0) that checked it, if any.
    pub sync: Option<usize>,
    /// The deep model's choice at this position, when it ran there.
    pub deep_token: Option<u32>,
    /// The deep model's choice as text, as `text` is the token's (filled in by the pipeline too).
    pub deep_text: Option<String>,
    /// Exact mode: dropped because an earlier token was corrected.
    pub rolled_back: bool,
}

/// What a generation cost.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[cfg_attr(all(test, not(target_arch = "wasm32")), derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct Counters {
    /// Decoder blocks run, counting each row of a multi-row pass
    /// (docs/method.md#how-results-are-measured).
    pub block_rows: usize,
    /// Rows pushed through the LM head (one per exit checked).
    pub head_rows: usize,
    /// Rows in each deep pass, in order.
    pub deep_passes: Vec<usize>,
    /// Exact mode: synchronisations that found a wrong token and rolled back.
    pub rollbacks: usize,
    /// Steps recorded before the token they start from was read back (on WebGPU, full,
    /// static and free keep the device busy with the next step while a result travels
    /// back) ...
    pub ahead_steps: usize,
    /// ... and those thrown away, because the token turned out otherwise (a FREE deep pass
    /// disagreed with the shallow exit) or the generation ended. Their blocks count in the
    /// block rows: the device ran them.
    pub ahead_discarded: usize,
}

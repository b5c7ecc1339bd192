//! The JavaScript API (wasm-bindgen): converts JS values to library calls and back, nothing
//! else. Errors become `Error` objects whose message is the library's own.

use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::decode::{Counters, TokenTrace};
use crate::pipeline::{GenerateOptions, ModelFiles, Pipeline};

#[wasm_bindgen(start)]
fn start() {
    // A last net: library code returns errors, but a panic should still say where it was.
    console_error_panic_hook::set_once();
}

/// A loaded model: T5 weights, tokenizer and early-exit settings.
#[wasm_bindgen]
pub struct FreeModel {
    pipeline: Pipeline,
}

/// What `generate` returns to JavaScript.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GenerateOutput {
    text: String,
    tokens: Vec<u32>,
    /// True when the model ended the text itself (EOS), false when `maxNewTokens` ran out.
    finished: bool,
    truncated_input_tokens: usize,
    trace: Vec<TokenTrace>,
    counters: Counters,
}

fn to_js<T: Serialize>(value: &T) -> Result<JsValue, JsError> {
    // Maps, not plain objects, are serde-wasm-bindgen's default; pages want objects.
    let serializer = serde_wasm_bindgen::Serializer::json_compatible();
    Ok(value.serialize(&serializer)?)
}

#[wasm_bindgen]
impl FreeModel {
    /// Loads a model from the bytes of its files; `free` (free.json) may be omitted.
    pub fn load(
        config: &[u8],
        weights: &[u8],
        tokenizer: &[u8],
        free: Option<Vec<u8>>,
    ) -> Result<FreeModel, JsError> {
        let files = ModelFiles { config, weights, tokenizer, free: free.as_deref() };
        Ok(FreeModel { pipeline: Pipeline::from_files(&files)? })
    }

    /// Generates from `text`. `options`: `{ strategy: "full" | "static" | "calm" | "free" |
    /// "free-exact", threshold?: number, maxNewTokens?: number, exitLayer?: number }`;
    /// without a threshold FREE uses its adaptive one. Returns `{ text, tokens, finished,
    /// truncatedInputTokens, trace, counters }`.
    pub fn generate(&mut self, text: &str, options: JsValue) -> Result<JsValue, JsError> {
        let options: GenerateOptions = if options.is_undefined() || options.is_null() {
            GenerateOptions::default()
        } else {
            serde_wasm_bindgen::from_value(options).map_err(|e| JsError::new(&format!("invalid generate options: {e}")))?
        };
        let out = self.pipeline.generate(text, &options)?;
        to_js(&GenerateOutput {
            text: out.text,
            tokens: out.generation.tokens,
            finished: out.generation.finished,
            truncated_input_tokens: out.truncated_input_tokens,
            trace: out.generation.trace,
            counters: out.generation.counters,
        })
    }

    /// The adaptive threshold's state: `{ threshold, fit, consistentPoints, ... }`.
    #[wasm_bindgen(js_name = adaptiveState)]
    pub fn adaptive_state(&self) -> Result<JsValue, JsError> {
        to_js(&self.pipeline.adaptive.state())
    }

    /// Forgets what the adaptive threshold learned.
    #[wasm_bindgen(js_name = resetAdaptive)]
    pub fn reset_adaptive(&mut self) {
        self.pipeline.adaptive.reset();
    }

    /// The number of decoder blocks.
    #[wasm_bindgen(js_name = decoderBlocks)]
    pub fn decoder_blocks(&self) -> usize {
        self.pipeline.model.num_decoder_blocks()
    }

    /// The shallow exit from free.json, if the model has one.
    #[wasm_bindgen(js_name = shallowExitLayer)]
    pub fn shallow_exit_layer(&self) -> Option<usize> {
        self.pipeline.free.as_ref().map(|f| f.shallow_exit_layer)
    }
}

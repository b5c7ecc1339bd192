//! The JavaScript API (wasm-bindgen): converts JS values to library calls and back, nothing
//! else. Errors become `Error` objects whose message is the library's own.

use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::pipeline::{ModelFiles, Pipeline};

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

    /// Greedy generation with the full model:
    /// `{ text, tokens, finished, truncatedInputTokens }`.
    pub fn generate(&self, text: &str, max_new_tokens: u32) -> Result<JsValue, JsError> {
        let out = self.pipeline.generate(text, max_new_tokens as usize)?;
        let js = GenerateOutput {
            text: out.text,
            tokens: out.generation.tokens,
            finished: out.generation.finished,
            truncated_input_tokens: out.truncated_input_tokens,
        };
        Ok(serde_wasm_bindgen::to_value(&js)?)
    }

    /// The number of decoder blocks, and the shallow exit from free.json (if any).
    #[wasm_bindgen(js_name = decoderBlocks)]
    pub fn decoder_blocks(&self) -> usize {
        self.pipeline.model.num_decoder_blocks()
    }

    #[wasm_bindgen(js_name = shallowExitLayer)]
    pub fn shallow_exit_layer(&self) -> Option<usize> {
        self.pipeline.free.as_ref().map(|f| f.shallow_exit_layer)
    }
}

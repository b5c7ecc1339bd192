// Each target replaces one of these files with its input, so each leaves one unused.
#![allow(dead_code)]

// The v1.1 fixture's files (gated GELU, untied head, f16): the valid parts a target keeps
// while it mutates one file, so inputs reach past the first parser into the model.
pub const CONFIG: &[u8] = include_bytes!("../../tests/fixtures/t5-v11/config.json");
pub const WEIGHTS: &[u8] = include_bytes!("../../tests/fixtures/t5-v11/model.safetensors");
pub const TOKENIZER: &[u8] = include_bytes!("../../tests/fixtures/t5-v11/tokenizer.json");
pub const FREE: &[u8] = include_bytes!("../../tests/fixtures/t5-v11/free.json");

use free_wasm::{GenerateOptions, ModelFiles, Pipeline, StrategyName};

/// Loads the files and, if they load, generates a few tokens with every decoding path:
/// whatever loads must also run without a panic.
pub fn load_and_generate(files: &ModelFiles<'_>) {
    let Ok(mut p) = Pipeline::from_files(files) else { return };
    for strategy in [StrategyName::Full, StrategyName::Free, StrategyName::FreeExact, StrategyName::Calm] {
        let options = GenerateOptions { strategy, threshold: Some(0.1), max_new_tokens: 3, exit_layer: Some(1), ..GenerateOptions::default() };
        let _ = p.generate("a library for compressed archives", &options);
    }
}

//! model.safetensors: any bytes, with a valid config, tokenizer and free.json.
#![no_main]
#[path = "common.rs"]
mod common;

use free_wasm::ModelFiles;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    common::load_and_generate(&ModelFiles { config: common::CONFIG, weights: data, tokenizer: common::TOKENIZER, free: Some(common::FREE) });
});

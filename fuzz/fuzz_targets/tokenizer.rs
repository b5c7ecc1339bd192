//! tokenizer.json: any bytes; a tokenizer that loads must encode and decode text.
#![no_main]
#[path = "common.rs"]
mod common;

use free_wasm::ModelFiles;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    common::load_and_generate(&ModelFiles { config: common::CONFIG, weights: common::WEIGHTS, tokenizer: data, free: Some(common::FREE) });
});

//! config.json: any bytes, with the fixture's weights, tokenizer and free.json, so a config
//! that parses is checked against real tensors and, if it matches them, run.
#![no_main]
#[path = "common.rs"]
mod common;

use free_wasm::ModelFiles;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    common::load_and_generate(&ModelFiles { config: data, weights: common::WEIGHTS, tokenizer: common::TOKENIZER, free: Some(common::FREE) });
});

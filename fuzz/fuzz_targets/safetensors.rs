//! model.safetensors: any bytes, read and taken by a tiny T5's config.json
//! (fuzz/seeds/tiny, written by tools/make_fuzz_seeds.py with the corpus's `seed-tiny-*`
//! checkpoints, valid in f32, f16 and bf16, so mutations start from weights that load);
//! weights that load must also run (greedy decoding). The tokenizer is left out: loading it
//! would cost most of each run.
#![no_main]

use std::sync::OnceLock;

use candle_core::Device;
use free_wasm::config::T5Config;
use free_wasm::decode::greedy;
use free_wasm::model::T5Model;
use free_wasm::weights::Weights;
use libfuzzer_sys::fuzz_target;

fn config() -> &'static T5Config {
    static CONFIG: OnceLock<T5Config> = OnceLock::new();
    CONFIG.get_or_init(|| T5Config::from_json(include_bytes!("../seeds/tiny/config.json")).expect("the seeds' config.json loads"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(weights) = Weights::from_bytes(data, &Device::Cpu) else { return };
    let Ok(model) = T5Model::load(config().clone(), weights, &Device::Cpu) else { return };
    let _ = greedy(&model, &[5, 6, 7, 1], 3);
});

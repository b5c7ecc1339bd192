//! free-wasm: a T5 encoder-decoder with FREE's shallow-deep early exit, decoding on the CPU
//! (candle) natively and in WebAssembly, and on WebGPU (wgpu). See docs/architecture.md for the layout.

pub mod backend;
pub mod checkpoint;
pub mod config;
pub mod confidence;
pub mod decode;
pub mod error;
pub mod matrix;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod position;
pub mod threshold;
pub mod tokenizer;
pub mod weights;

#[cfg(target_arch = "wasm32")]
pub mod wasm;
#[cfg(all(target_arch = "wasm32", not(feature = "gpu")))]
compile_error!("the wasm API needs the `gpu` feature (on by default)");

// Every unit test module imports `wasm_bindgen_test as test` on wasm32, so `wasm-pack test`
// runs all of them in the browser, not only natively.
#[cfg(all(test, target_arch = "wasm32"))]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

pub use error::{Error, Result};
pub use pipeline::{GenerateOptions, ModelFiles, Pipeline, StrategyName, TextGeneration};

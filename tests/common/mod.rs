//! Fixtures shared by the native and the browser tests: compiled in, so both read the same
//! bytes with no file system. Made by tools/make_fixtures.py with Hugging Face transformers.

#![allow(dead_code)] // each test binary uses its own subset

use free_wasm::{ModelFiles, Pipeline};
use serde::Deserialize;

pub struct Fixture {
    pub name: &'static str,
    pub config: &'static [u8],
    pub weights: &'static [u8],
    pub tokenizer: &'static [u8],
    pub free: &'static [u8],
    expected_json: &'static [u8],
    expected_tensors: &'static [u8],
}

macro_rules! fixture {
    ($name:literal) => {
        Fixture {
            name: $name,
            config: include_bytes!(concat!("../fixtures/", $name, "/config.json")),
            weights: include_bytes!(concat!("../fixtures/", $name, "/model.safetensors")),
            tokenizer: include_bytes!(concat!("../fixtures/", $name, "/tokenizer.json")),
            free: include_bytes!(concat!("../fixtures/", $name, "/free.json")),
            expected_json: include_bytes!(concat!("../fixtures/", $name, "/expected.json")),
            expected_tensors: include_bytes!(concat!("../fixtures/", $name, "/expected.safetensors")),
        }
    };
}

/// v1.0 style (ReLU, tied and scaled head, f32) and v1.1 style (gated GELU, own head,
/// unequal depths, f16).
pub fn fixtures() -> [Fixture; 2] {
    [fixture!("t5-v10"), fixture!("t5-v11")]
}

pub const BUCKETS_JSON: &[u8] = include_bytes!("../fixtures/buckets.json");

#[derive(Deserialize)]
pub struct Expected {
    pub max_new_tokens: usize,
    pub cases: Vec<Case>,
}

#[derive(Deserialize)]
pub struct Case {
    pub text: String,
    pub input_ids: Vec<u32>,
    pub decoder_input_ids: Vec<u32>,
    /// HF's greedy output after the start token, EOS included if it was reached.
    pub generated: Vec<u32>,
}

#[derive(Deserialize)]
pub struct BucketCase {
    pub num_buckets: usize,
    pub max_distance: usize,
    pub bidirectional: bool,
    pub relative_from: i64,
    pub buckets: Vec<usize>,
}

impl Fixture {
    pub fn files(&self) -> ModelFiles<'static> {
        ModelFiles { config: self.config, weights: self.weights, tokenizer: self.tokenizer, free: Some(self.free) }
    }

    pub fn load(&self) -> Pipeline {
        Pipeline::from_files(&self.files()).unwrap_or_else(|e| panic!("{}: {e}", self.name))
    }

    /// This fixture's config.json edited by `edit`.
    pub fn config_edited(&self, edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
        let mut config: serde_json::Value = serde_json::from_slice(self.config).unwrap();
        edit(&mut config);
        serde_json::to_vec(&config).unwrap()
    }

    pub fn expected(&self) -> Expected {
        serde_json::from_slice(self.expected_json).unwrap()
    }

    /// An expected tensor, flattened, with its shape.
    pub fn tensor(&self, name: &str) -> (Vec<f32>, Vec<usize>) {
        let st = safetensors::SafeTensors::deserialize(self.expected_tensors).unwrap();
        let view = st.tensor(name).unwrap_or_else(|_| panic!("{}: no expected tensor {name}", self.name));
        let values = view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        (values, view.shape().to_vec())
    }
}

/// The largest absolute difference between two equally long slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "compared tensors differ in size");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

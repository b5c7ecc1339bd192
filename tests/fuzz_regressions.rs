//! Inputs the fuzzers (fuzz/, scripts/fuzz.sh) once crashed on, kept under
//! fuzz/regressions/TARGET/: each must now load as a typed error naming the file it came in
//! (safetensors: be taken as the target takes it, without a panic). And the safetensors
//! target's seeds must load and run, or its fuzzing never reaches the model.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::path::Path;

use candle_core::Device;
use common::fixtures;
use free_wasm::config::T5Config;
use free_wasm::decode::greedy;
use free_wasm::error::{Error, ModelFile};
use free_wasm::matrix::Dtype;
use free_wasm::model::T5Model;
use free_wasm::weights::Weights;
use free_wasm::{ModelFiles, Pipeline};

/// What the safetensors target does with an input: load it with the seeds' config and, if
/// it loads, generate three tokens.
fn take_weights(data: &[u8]) -> free_wasm::Result<Vec<u32>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/tiny/config.json");
    let config = T5Config::from_json(&std::fs::read(dir).unwrap())?;
    let model = T5Model::load(config, Weights::from_bytes(data, &Device::Cpu)?, &Device::Cpu)?;
    Ok(greedy(&model, &[5, 6, 7, 1], 3)?.tokens)
}

#[test]
fn the_safetensors_seeds_load_and_generate() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/safetensors");
    for dtype in ["f32", "f16", "bf16", "q8"] {
        let path = corpus.join(format!("seed-tiny-{dtype}"));
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (tools/make_fuzz_seeds.py writes it)", path.display()));
        assert!(data.len() <= 16384, "{}: {} bytes, over scripts/fuzz.sh's input cap", path.display(), data.len());
        let tokens = take_weights(&data).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(tokens.iter().all(|&t| t < 16), "{dtype}: ids outside the vocabulary: {tokens:?}");
    }
}

/// The seeds' tiny model from `seed-tiny-{name}`, its matrices held as `dtype` asks.
fn tiny_model(name: &str, dtype: Option<Dtype>) -> T5Model {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = T5Config::from_json(&std::fs::read(root.join("fuzz/seeds/tiny/config.json")).unwrap()).unwrap();
    let data = std::fs::read(root.join(format!("fuzz/corpus/safetensors/seed-tiny-{name}"))).unwrap();
    T5Model::load_as(config, Weights::from_bytes(&data, &Device::Cpu).unwrap(), &Device::Cpu, dtype).unwrap()
}

/// seed-tiny-q8 is seed-tiny-f32 stored in 8 bits by the Python exporter: it must compute bit
/// for bit what the f32 weights quantized at load compute (the exporter quantizes exactly as
/// `Matrix::quantize_q8`).
#[test]
fn weights_stored_in_8_bits_run_as_weights_quantized_at_load() {
    let (at_load, stored) = (tiny_model("f32", Some(Dtype::Q8)), tiny_model("q8", None));
    let ids = [5, 6, 7, 1];
    let run = |m: &T5Model| {
        let enc = m.encode(&ids).unwrap();
        let mut state = m.start_decoder(enc.clone());
        let h = m.decode_blocks(&mut state, 0..2, m.embed(&[0, 9, 3]).unwrap()).unwrap();
        let logits = m.logits(&h).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
        (bits(enc.flatten_all().unwrap().to_vec1().unwrap()), bits(logits), greedy(m, &ids, 6).unwrap().tokens)
    };
    let (a, b) = (run(&at_load), run(&stored));
    assert_eq!(a.0, b.0, "encoder outputs differ");
    assert_eq!(a.1, b.1, "logits differ");
    assert_eq!(a.2, b.2, "tokens differ");
    // And the 8-bit weights are not the f32 ones: the comparison is not vacuous.
    assert_ne!(a.1, run(&tiny_model("f32", None)).1);
}

#[test]
fn every_saved_crash_is_now_a_typed_error() {
    let fx = &fixtures()[1]; // the fixture the fuzz targets start from
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let mut replayed = 0;
    for target in std::fs::read_dir(&dir).unwrap() {
        let target = target.unwrap().path();
        let name = target.file_name().unwrap().to_str().unwrap().to_string();
        for input in std::fs::read_dir(&target).unwrap() {
            let path = input.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let (files, file) = match name.as_str() {
                "safetensors" => {
                    // Any outcome but a panic: the target loads with the seeds' config.
                    let _ = take_weights(&data);
                    replayed += 1;
                    continue;
                }
                "config" => (ModelFiles { config: &data, ..fx.files() }, ModelFile::Config),
                "free_json" => (ModelFiles { free: Some(&data), ..fx.files() }, ModelFile::FreeSettings),
                "tokenizer" => (ModelFiles { tokenizer: &data, ..fx.files() }, ModelFile::Tokenizer),
                other => panic!("fuzz/regressions/{other}: not a fuzz target"),
            };
            let err = Pipeline::from_files(&files).err().unwrap_or_else(|| panic!("{} loaded", path.display()));
            assert!(matches!(&err, Error::Malformed { file: f, .. } if *f == file), "{}: {err}", path.display());
            replayed += 1;
        }
    }
    assert!(replayed >= 1, "no regression inputs found under {}", dir.display());
}

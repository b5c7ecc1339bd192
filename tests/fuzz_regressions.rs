//! Inputs the fuzzers (fuzz/, scripts/fuzz.sh) once crashed on, kept under
//! fuzz/regressions/TARGET/: each must now load as a typed error naming the file it came in.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::path::Path;

use common::fixtures;
use free_wasm::error::{Error, ModelFile};
use free_wasm::{ModelFiles, Pipeline};

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
                "safetensors" => (ModelFiles { weights: &data, ..fx.files() }, ModelFile::Weights),
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

//! Model folders that do not fit together fail at load with a typed error naming the file
//! and the problem, never a panic.

mod common;

use common::fixtures;
use free_wasm::error::{Error, ModelFile};
use free_wasm::{GenerateOptions, ModelFiles, Pipeline, StrategyName};
use free_wasm::threshold::ThresholdRule;

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;
#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

/// The v1.0 fixture with its config.json edited by `edit`.
fn load_with_config(edit: impl FnOnce(&mut serde_json::Value)) -> Result<Pipeline, Error> {
    let fx = &fixtures()[0];
    let config = fx.config_edited(edit);
    Pipeline::from_files(&ModelFiles { config: &config, ..fx.files() })
}

#[test]
fn config_and_weights_that_disagree_name_the_tensor() {
    let err = load_with_config(|c| c["num_decoder_layers"] = 5.into()).err().unwrap();
    assert!(matches!(&err, Error::MissingTensor { name } if name.starts_with("decoder.block.4.")), "{err}");

    let err = load_with_config(|c| c["num_decoder_layers"] = 3.into()).err().unwrap();
    assert!(matches!(&err, Error::UnexpectedTensors { example, .. } if example.starts_with("decoder.block.3.")), "{err}");

    let err = load_with_config(|c| c["d_ff"] = 100.into()).err().unwrap();
    assert!(matches!(&err, Error::TensorShape { found, expected, .. } if found[0] == 128 && expected[0] == 100), "{err}");

    let err = load_with_config(|c| c["feed_forward_proj"] = "gated-gelu".into()).err().unwrap();
    assert!(matches!(&err, Error::MissingTensor { name } if name.ends_with("DenseReluDense.wi_0.weight")), "{err}");
}

#[test]
fn a_tokenizer_bigger_than_the_vocabulary_is_refused() {
    let err = load_with_config(|c| c["vocab_size"] = 100.into()).err().unwrap();
    assert!(matches!(err, Error::Malformed { file: ModelFile::Tokenizer, .. }), "{err}");
    assert!(err.to_string().contains("vocab_size) is 100"), "{err}");
}

/// The v1.0 fixture's tokenizer.json with its vocabulary cut to its first `keep` pieces.
fn tokenizer_cut(keep: usize) -> Vec<u8> {
    let mut t: serde_json::Value = serde_json::from_slice(fixtures()[0].tokenizer).unwrap();
    t["model"]["vocab"].as_array_mut().unwrap().truncate(keep);
    serde_json::to_vec(&t).unwrap()
}

/// The fixture's model has 512 ids. A tokenizer of fewer leaves ids the model can emit
/// without a text; fewer than 128 are padding (HF's T5 has 32100 tokens for 32128 rows).
/// The largest id counts, not the number of tokens: a vocabulary with explicit ids may have
/// gaps.
#[test]
fn a_tokenizer_that_does_not_cover_the_vocabulary_is_refused() {
    let load = |tokenizer: &[u8]| Pipeline::from_files(&ModelFiles { tokenizer, ..fixtures()[0].files() });
    let err = load(&tokenizer_cut(300)).err().unwrap();
    assert!(matches!(err, Error::Malformed { file: ModelFile::Tokenizer, .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "tokenizer.json is malformed: it has 300 ids but the model's vocabulary (config.json vocab_size) is 512: the model can emit 212 ids it cannot decode (at most 127 unused rows are padding); the tokenizer belongs to another model"
    );
    assert_eq!(load(&tokenizer_cut(400)).unwrap().tokenizer().vocab_size(), 400);
    let word_level = br#"{"model": {"type": "WordLevel", "vocab": {"<pad>": 0, "</s>": 1, "<unk>": 2, "hello": 600}, "unk_token": "<unk>"}}"#;
    let err = load(word_level).err().unwrap();
    assert_eq!(
        err.to_string(),
        "tokenizer.json is malformed: it has 601 ids but the model's vocabulary (config.json vocab_size) is 512: the model cannot read its ids 512 and up; the tokenizer belongs to another model"
    );
}

#[test]
fn free_json_with_the_exit_outside_the_decoder_is_refused() {
    let fx = &fixtures()[0];
    let free = br#"{"shallow_exit_layer": 4}"#;
    let err = Pipeline::from_files(&ModelFiles { free: Some(free), ..fx.files() }).err().unwrap();
    assert!(matches!(err, Error::Malformed { file: ModelFile::FreeSettings, .. }), "{err}");
}

#[test]
fn free_json_with_an_error_budget_outside_zero_one_is_refused() {
    let fx = &fixtures()[0];
    for rate in ["0", "1", "1.5", "-0.05"] {
        let free = format!(r#"{{"shallow_exit_layer": 1, "bmm": {{"max_disagreement": {rate}}}}}"#);
        let err = Pipeline::from_files(&ModelFiles { free: Some(free.as_bytes()), ..fx.files() }).err().unwrap();
        assert!(matches!(err, Error::Malformed { file: ModelFile::FreeSettings, .. }), "{rate}: {err}");
        assert!(err.to_string().contains("bmm.max_disagreement"), "{err}");
    }
    let free = br#"{"shallow_exit_layer": 1, "bmm": {"max_disagreement": 0.05}}"#;
    let p = Pipeline::from_files(&ModelFiles { free: Some(free), ..fx.files() }).unwrap();
    assert_eq!(p.adaptive().settings().rule, ThresholdRule::budget(0.05));
}

#[test]
fn free_json_with_an_unknown_field_names_it() {
    let fx = &fixtures()[0];
    let free = br#"{"shallow_exit_layer": 1, "treshold": 0.5}"#;
    let err = Pipeline::from_files(&ModelFiles { free: Some(free), ..fx.files() }).err().unwrap();
    assert!(matches!(err, Error::Malformed { file: ModelFile::FreeSettings, .. }), "{err}");
    assert!(err.to_string().contains("treshold"), "{err}");
}

#[test]
fn safetensors_whose_header_lies_are_malformed() {
    let fx = &fixtures()[0];
    let header_len = u64::from_le_bytes(fx.weights[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&fx.weights[8..8 + header_len]).unwrap();
    // A header claiming more data than the file holds, and one whose length field points
    // past the end of the file.
    let first_end = header.find("\"data_offsets\":[").map(|i| i + "\"data_offsets\":[".len()).unwrap();
    let comma = first_end + header[first_end..].find(',').unwrap();
    let close = comma + header[comma..].find(']').unwrap();
    let lying = format!("{}{}{}", &header[..comma + 1], u32::MAX, &header[close..]);
    let mut bytes = (lying.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(lying.as_bytes());
    bytes.extend_from_slice(&fx.weights[8 + header_len..]);
    let mut too_long = fx.weights.to_vec();
    too_long[..8].copy_from_slice(&(fx.weights.len() as u64 * 2).to_le_bytes());
    for (what, weights) in [("offsets", bytes), ("header length", too_long)] {
        let err = Pipeline::from_files(&ModelFiles { weights: &weights, ..fx.files() }).err().unwrap();
        assert!(matches!(err, Error::Malformed { file: ModelFile::Weights, .. }), "{what}: {err}");
    }
}

/// The v1.0 fixture's weights with tensor `name` stored in 8 bits (all zeros, scales of 1).
fn weights_with_int8(name: &str) -> Vec<u8> {
    use safetensors::{tensor::TensorView, Dtype};
    let st = safetensors::SafeTensors::deserialize(fixtures()[0].weights).unwrap();
    let shape = st.tensor(name).unwrap().shape().to_vec();
    let (zeros, ones) = (vec![0u8; shape.iter().product()], [1f32].repeat(shape[0]).iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>());
    let mut views: Vec<(String, TensorView)> = st.tensors().into_iter().filter(|(n, _)| n != name).collect();
    views.push((name.to_string(), TensorView::new(Dtype::I8, shape.clone(), &zeros).unwrap()));
    views.push((format!("{name}_scale"), TensorView::new(Dtype::F32, vec![shape[0]], &ones).unwrap()));
    safetensors::serialize(views, None).unwrap()
}

#[test]
fn int8_is_read_for_weight_matrices_only() {
    let fx = &fixtures()[0];
    let load = |weights: &[u8]| Pipeline::from_files(&ModelFiles { weights, ..fx.files() });
    assert!(load(&weights_with_int8("encoder.block.0.layer.0.SelfAttention.q.weight")).is_ok());
    let bias = "decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight";
    let err = load(&weights_with_int8(bias)).err().unwrap();
    assert!(matches!(&err, Error::Q8Tensor { name, .. } if name == bias), "{err}");
    assert_eq!(
        err.to_string(),
        format!("tensor `{bias}` in model.safetensors is not a valid 8-bit weight: it is I8 but the model reads it as float (only weight matrices may be stored in 8 bits; norms and position bias tables stay f32 or f16); export the checkpoint again (`python -m free_train.export ... --dtype q8`, docs/usage.md#8-bit-checkpoints)")
    );
    let norm = "encoder.final_layer_norm.weight";
    let err = load(&weights_with_int8(norm)).err().unwrap();
    assert!(matches!(&err, Error::Q8Tensor { name, reason } if name == norm && reason.starts_with("it is I8 of shape [64]")), "{err}");
}

#[test]
fn a_stock_hf_folder_without_free_json_loads() {
    let fx = &fixtures()[1];
    let p = Pipeline::from_files(&ModelFiles { free: None, ..fx.files() }).unwrap();
    assert!(p.free_config().is_none());
    assert_eq!(p.model().num_decoder_blocks(), 5);
}

#[test]
fn empty_input_is_an_error_and_long_input_is_cut_to_the_limit() {
    let mut p = load_with_config(|c| c["n_positions"] = 16.into()).unwrap();
    let options = |max_new_tokens| GenerateOptions { strategy: StrategyName::Full, max_new_tokens, ..GenerateOptions::default() };
    for text in ["", "  \n\t "] {
        let err = p.generate(text, &options(4)).unwrap_err();
        assert!(matches!(err, Error::InvalidInput(_)), "{err}");
    }
    let long = "a library for reading and writing compressed archives ".repeat(20);
    let out = p.generate(&long, &options(3)).unwrap();
    assert!(out.input_cut.tokens > 0);
    let (ids, cut) = p.encode_input(&long, None).unwrap();
    assert_eq!((ids.len(), cut), (16, out.input_cut));
    assert_eq!(ids.last(), Some(&1), "the cut input still ends with </s>");
    // Only the first 16 x 64 bytes are tokenized; a cut inside a character moves back to it.
    assert_eq!(p.max_input_bytes(), 1024);
    assert_eq!(cut.bytes, long.len() - 1024);
    let odd = format!("a{}", "é".repeat(600)); // 1201 bytes, characters at odd offsets
    assert_eq!(p.encode_input(&odd, None).unwrap().1.bytes, 1201 - 1023);
    let (with_prefix, _) = p.encode_input("a library", Some("summarize")).unwrap();
    assert_eq!(with_prefix, p.tokenizer().encode("summarize: a library").unwrap());
    let err = p.encode_input("a library", Some("poetry")).unwrap_err();
    assert!(err.to_string().contains("\"summarize\", \"translate\""), "{err}");
}

#[cfg(not(target_arch = "wasm32"))]
#[test]
fn a_missing_folder_names_the_file() {
    let err = Pipeline::from_dir("/nonexistent/model").err().unwrap();
    assert!(matches!(err, Error::Io { file: ModelFile::Config, .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/model/config.json"), "{err}");
}

/// Sizes that would ask for terabytes (or overflow a 32-bit product on wasm32) are refused
/// by comparing them with the weights' shapes, before anything of that size is allocated.
#[test]
fn a_config_with_absurd_sizes_is_an_error_not_an_allocation() {
    let huge = 1u64 << 30;
    let shape_of = |field: &str, value: u64| match load_with_config(|c| c[field] = value.into()).err() {
        Some(Error::TensorShape { name, expected, found }) => (name, expected, found),
        other => panic!("{field} = {value}: {other:?}"),
    };
    let (name, expected, found) = shape_of("d_model", huge);
    assert_eq!((name.as_str(), expected, found), ("shared.weight", vec![512, 1 << 30], vec![512, 64]));
    let (name, expected, _) = shape_of("vocab_size", huge);
    assert_eq!((name.as_str(), expected), ("shared.weight", vec![1 << 30, 64]));
    let (name, expected, _) = shape_of("d_ff", huge);
    assert_eq!((name.as_str(), expected), ("encoder.block.0.layer.1.DenseReluDense.wi.weight", vec![1 << 30, 64]));
    // 2^20, so that heads x d_kv still fits 32 bits.
    let (name, _, _) = shape_of("num_heads", 1 << 20);
    assert!(name.ends_with("relative_attention_bias.weight"), "{name}");
    let (name, _, _) = shape_of("d_kv", 1 << 20);
    assert_eq!(name, "encoder.block.0.layer.0.SelfAttention.q.weight");

    // heads x d_kv overflows a usize (the address width: 32 bits on wasm32).
    let err = load_with_config(|c| {
        c["num_heads"] = ((usize::MAX / 2 + 1) as u64).into();
        c["d_kv"] = 2.into();
    })
    .err();
    assert!(matches!(&err, Some(Error::Malformed { file: ModelFile::Config, reason }) if reason.contains("num_heads")), "{err:?}");

    for field in ["num_layers", "num_decoder_layers"] {
        let err = load_with_config(|c| c[field] = huge.into()).err();
        assert!(matches!(&err, Some(Error::MissingTensor { name }) if name.ends_with("layer.0.layer_norm.weight")), "{field}: {err:?}");
    }
    let err = load_with_config(|c| c["relative_attention_num_buckets"] = huge.into()).err();
    assert!(matches!(&err, Some(Error::Malformed { file: ModelFile::Config, reason }) if reason.contains("relative_attention_num_buckets 1073741824")), "{err:?}");
}

//! The JavaScript API in headless Chromium: load from bytes, generate, get JS values back,
//! and errors as JS `Error`s with the library's message.
#![cfg(target_arch = "wasm32")]

mod common;

use common::fixtures;
use free_wasm::wasm::FreeModel;
use wasm_bindgen::JsValue;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn field(obj: &JsValue, name: &str) -> JsValue {
    js_sys::Reflect::get(obj, &JsValue::from_str(name)).unwrap()
}

#[wasm_bindgen_test]
fn generate_returns_text_and_the_hf_tokens() {
    for fx in fixtures() {
        let model = FreeModel::load(fx.config, fx.weights, fx.tokenizer, Some(fx.free.to_vec()))
            .unwrap_or_else(|_| panic!("{} did not load", fx.name));
        let expected = fx.expected();
        let case = &expected.cases[1];
        let out = model.generate(&case.text, expected.max_new_tokens as u32).unwrap();
        let tokens: Vec<u32> = serde_wasm_bindgen::from_value(field(&out, "tokens")).unwrap();
        let eos = case.generated.last() == Some(&1);
        assert_eq!(tokens, &case.generated[..case.generated.len() - eos as usize]);
        assert_eq!(field(&out, "finished").as_bool(), Some(eos));
        assert!(field(&out, "text").as_string().is_some());
        assert_eq!(model.shallow_exit_layer(), Some(if fx.name == "t5-v10" { 1 } else { 2 }));
    }
}

#[wasm_bindgen_test]
fn a_bad_file_is_a_js_error_naming_it() {
    let fx = &fixtures()[0];
    let err = FreeModel::load(fx.config, &fx.weights[..100], fx.tokenizer, None).err().unwrap();
    let message = js_sys::Error::from(JsValue::from(err)).message().as_string().unwrap();
    assert!(message.contains("model.safetensors is malformed"), "{message}");
}

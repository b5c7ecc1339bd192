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
        let mut model = FreeModel::load(fx.config, fx.weights, fx.tokenizer, Some(fx.free.to_vec()))
            .unwrap_or_else(|_| panic!("{} did not load", fx.name));
        let expected = fx.expected();
        let case = &expected.cases[1];
        let options = format!(r#"{{"strategy": "full", "maxNewTokens": {}}}"#, expected.max_new_tokens);
        let out = model.generate(&case.text, js_sys::JSON::parse(&options).unwrap()).unwrap();
        let tokens: Vec<u32> = serde_wasm_bindgen::from_value(field(&out, "tokens")).unwrap();
        let eos = case.generated.last() == Some(&1);
        assert_eq!(tokens, &case.generated[..case.generated.len() - eos as usize]);
        assert_eq!(field(&out, "finished").as_bool(), Some(eos));
        assert!(field(&out, "text").as_string().is_some());
        assert_eq!(model.shallow_exit_layer(), Some(if fx.name == "t5-v10" { 1 } else { 2 }));
    }
}

#[wasm_bindgen_test]
fn free_exact_trace_and_adaptive_state_reach_js_as_plain_objects() {
    let fx = &fixtures()[1];
    let mut model = FreeModel::load(fx.config, fx.weights, fx.tokenizer, Some(fx.free.to_vec())).unwrap();
    let text = &fx.expected().cases[1].text;
    let full = model.generate(text, js_sys::JSON::parse(r#"{"strategy": "full", "maxNewTokens": 16}"#).unwrap()).unwrap();
    let exact = model.generate(text, js_sys::JSON::parse(r#"{"strategy": "free-exact", "threshold": 0.1, "maxNewTokens": 16}"#).unwrap()).unwrap();
    let tokens = |v: &JsValue| -> Vec<u32> { serde_wasm_bindgen::from_value(field(v, "tokens")).unwrap() };
    assert_eq!(tokens(&exact), tokens(&full));
    let trace = js_sys::Array::from(&field(&exact, "trace"));
    assert!(trace.length() >= tokens(&exact).len() as u32);
    let first = trace.get(0);
    assert!(first.is_object() && field(&first, "exit").as_f64().is_some() && field(&first, "deepToken").as_f64().is_some());
    let state = model.adaptive_state().unwrap();
    assert_eq!(field(&state, "threshold").as_f64(), Some(0.9));
    let err = model.generate(text, js_sys::JSON::parse(r#"{"strategy": "fast"}"#).unwrap()).err().unwrap();
    let message = js_sys::Error::from(JsValue::from(err)).message().as_string().unwrap();
    assert!(message.contains("invalid generate options") && message.contains("fast"), "{message}");
}

#[wasm_bindgen_test]
fn a_bad_file_is_a_js_error_naming_it() {
    let fx = &fixtures()[0];
    let err = FreeModel::load(fx.config, &fx.weights[..100], fx.tokenizer, None).err().unwrap();
    let message = js_sys::Error::from(JsValue::from(err)).message().as_string().unwrap();
    assert!(message.contains("model.safetensors is malformed"), "{message}");
}

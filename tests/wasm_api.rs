//! The JavaScript API in headless Chromium: load from bytes, generate, get JS values back,
//! errors as JS `Error`s with the library's message; streaming generation (entries as each
//! step decides them, cancelled by a rejected promise), and dispose (clear errors after it,
//! memory reused by the next model).
#![cfg(target_arch = "wasm32")]

mod common;

use common::fixtures;
use free_wasm::wasm::FreeModel;
use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn field(obj: &JsValue, name: &str) -> JsValue {
    js_sys::Reflect::get(obj, &JsValue::from_str(name)).unwrap()
}

#[wasm_bindgen_test]
fn generate_returns_text_and_the_hf_tokens() {
    for fx in fixtures() {
        let mut model = FreeModel::load(fx.config, fx.weights, fx.tokenizer, Some(fx.free.to_vec()), None)
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
        assert_eq!(model.shallow_exit_layer().unwrap(), Some(if fx.name == "t5-v10" { 1 } else { 2 }));
    }
}

#[wasm_bindgen_test]
fn free_exact_trace_and_adaptive_state_reach_js_as_plain_objects() {
    let fx = &fixtures()[1];
    let mut model = FreeModel::load(fx.config, fx.weights, fx.tokenizer, Some(fx.free.to_vec()), None).unwrap();
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
    let err = FreeModel::load(fx.config, &fx.weights[..100], fx.tokenizer, None, None).err().unwrap();
    let message = js_sys::Error::from(JsValue::from(err)).message().as_string().unwrap();
    assert!(message.contains("model.safetensors is malformed"), "{message}");
}

/// `dtype` reaches the CPU model: f32 (how the fixtures are stored) decodes as the default,
/// q8 decodes too (its tokens are the demo model's test), an unknown one is refused by name.
#[wasm_bindgen_test]
fn a_dtype_is_applied_or_refused() {
    let fx = &fixtures()[0];
    let load = |dtype: Option<&str>| FreeModel::load(fx.config, fx.weights, fx.tokenizer, Some(fx.free.to_vec()), dtype.map(String::from));
    let tokens = |dtype| {
        let out = load(dtype).unwrap().generate(&fx.expected().cases[0].text, options(r#"{"strategy": "full", "maxNewTokens": 6}"#)).unwrap();
        json(&field(&out, "tokens"))
    };
    assert_eq!(tokens(Some("f32")), tokens(None));
    assert!(serde_json::from_str::<Vec<u32>>(&tokens(Some("q8"))).unwrap().len() <= 6);
    let err = message(JsValue::from(load(Some("int4")).err().unwrap()));
    assert!(err.contains("dtype") && err.contains("use f32, f16 or q8"), "{err}");
}

/// `dtype` reaches the WebGPU model too: q8 there decodes the CPU q8 model's tokens, and an
/// unknown dtype is refused by name, as a mistake rather than a device failure
/// (NotSupportedError), before any device is asked for.
#[wasm_bindgen_test]
async fn on_webgpu_a_dtype_is_applied_or_refused() {
    let fx = &fixtures()[0];
    let load = |dtype: &str| FreeModel::load_gpu(fx.config.to_vec(), fx.weights.to_vec(), fx.tokenizer.to_vec(), Some(fx.free.to_vec()), true, Some(dtype.into()));
    let err = js_sys::Error::from(load("int4").await.err().unwrap());
    let text = err.message().as_string().unwrap();
    assert!(String::from(err.name()) != "NotSupportedError" && text.contains("use f32, f16 or q8"), "{text}");
    let gpu = match load("q8").await {
        Ok(m) => m,
        Err(e) if option_env!("FREE_REQUIRE_GPU").is_none() => {
            console_log!("no WebGPU test: {}", message(e));
            return;
        }
        Err(e) => panic!("FREE_REQUIRE_GPU is set but WebGPU did not load: {}", message(e)),
    };
    let cpu = FreeModel::load(fx.config, fx.weights, fx.tokenizer, Some(fx.free.to_vec()), Some("q8".into())).unwrap();
    let (text, opts) = (&fx.expected().cases[0].text, r#"{"strategy": "full", "maxNewTokens": 6}"#);
    let (on_step, _, _keep) = recorder(|_| JsValue::UNDEFINED);
    let on_cpu = JsFuture::from(cpu.generate_streaming(text.clone(), options(opts), on_step.clone())).await.unwrap();
    let on_gpu = JsFuture::from(gpu.generate_streaming(text.clone(), options(opts), on_step)).await.unwrap();
    assert_eq!(json(&field(&on_gpu, "tokens")), json(&field(&on_cpu, "tokens")));
    assert!(!serde_json::from_str::<Vec<u32>>(&json(&field(&on_gpu, "tokens"))).unwrap().is_empty());
}

fn message(err: JsValue) -> String {
    js_sys::Error::from(err).message().as_string().unwrap()
}

fn options(json: &str) -> JsValue {
    js_sys::JSON::parse(json).unwrap()
}

fn json(v: &JsValue) -> String {
    js_sys::JSON::stringify(v).unwrap().as_string().unwrap()
}

/// An `onStep` callback that records its calls and returns what `reply(call number)` says.
fn recorder(
    reply: impl Fn(usize) -> JsValue + 'static,
) -> (js_sys::Function, Rc<RefCell<Vec<(u32, Vec<JsValue>)>>>, Closure<dyn FnMut(u32, JsValue) -> JsValue>) {
    let calls: Rc<RefCell<Vec<(u32, Vec<JsValue>)>>> = Rc::default();
    let record = Rc::clone(&calls);
    let closure = Closure::wrap(Box::new(move |from: u32, entries: JsValue| {
        let mut calls = record.borrow_mut();
        calls.push((from, js_sys::Array::from(&entries).to_vec()));
        reply(calls.len())
    }) as Box<dyn FnMut(u32, JsValue) -> JsValue>);
    (closure.as_ref().unchecked_ref::<js_sys::Function>().clone(), calls, closure)
}

async fn tick() {
    JsFuture::from(js_sys::Promise::resolve(&JsValue::NULL)).await.unwrap();
}

#[wasm_bindgen_test]
async fn streamed_entries_rebuild_the_final_trace_and_the_tokens_match_generate() {
    let fx = &fixtures()[1];
    let mut model = FreeModel::load(fx.config, fx.weights, fx.tokenizer, Some(fx.free.to_vec()), None).unwrap();
    let text = &fx.expected().cases[1].text;
    // Threshold 0: every token leaves at the shallow exit, so deep passes annotate stacked
    // entries and exact mode rolls back: steps change earlier entries, not just add one.
    let opts = r#"{"strategy": "free-exact", "threshold": 0, "maxNewTokens": 16}"#;
    let whole = model.generate(text, options(opts)).unwrap();
    let (on_step, calls, _keep) = recorder(|_| js_sys::Promise::resolve(&JsValue::UNDEFINED).into());
    let streamed = JsFuture::from(model.generate_streaming(text.clone(), options(opts), on_step)).await.unwrap();

    assert_eq!(json(&field(&streamed, "tokens")), json(&field(&whole, "tokens")));
    assert_eq!(json(&field(&streamed, "trace")), json(&field(&whole, "trace")));
    assert_eq!(json(&field(&streamed, "counters")), json(&field(&whole, "counters")));
    let rollbacks = field(&field(&whole, "counters"), "rollbacks").as_f64().unwrap();
    assert!(rollbacks > 0.0, "the input should make exact mode roll back");

    let mut rebuilt: Vec<JsValue> = Vec::new();
    let mut changed_earlier = false;
    for (from, entries) in calls.borrow().iter() {
        let from = *from as usize;
        assert!(from <= rebuilt.len(), "a step replaced entries from {from} but only {} were sent", rebuilt.len());
        changed_earlier |= from < rebuilt.len();
        rebuilt.truncate(from);
        rebuilt.extend(entries.iter().cloned());
    }
    assert!(changed_earlier, "some step should have revised an earlier entry");
    let rebuilt: js_sys::Array = rebuilt.into_iter().collect();
    assert_eq!(json(&rebuilt), json(&field(&whole, "trace")));
}

#[wasm_bindgen_test]
async fn a_rejected_step_promise_cancels_with_its_own_value_and_frees_the_model() {
    let fx = &fixtures()[1];
    let mut model = FreeModel::load(fx.config, fx.weights, fx.tokenizer, Some(fx.free.to_vec()), None).unwrap();
    let text = &fx.expected().cases[1].text;
    let opts = r#"{"strategy": "full", "maxNewTokens": 16}"#;
    let abort = js_sys::Error::new("stopped by the test");
    abort.set_name("AbortError");
    let reason = JsValue::from(abort.clone());
    let (on_step, calls, _keep) =
        recorder(move |n| if n == 3 { js_sys::Promise::reject(&reason).into() } else { JsValue::UNDEFINED });
    let err = JsFuture::from(model.generate_streaming(text.clone(), options(opts), on_step)).await.unwrap_err();
    assert!(js_sys::Object::is(&err, &abort), "the rejection should be the step's own value, got {err:?}");
    assert_eq!(calls.borrow().len(), 3, "no step after the cancelling one");
    // The model is usable again and decodes as if nothing had happened.
    let again = model.generate(text, options(opts)).unwrap();
    let tokens: Vec<u32> = serde_wasm_bindgen::from_value(field(&again, "tokens")).unwrap();
    // Hugging Face's greedy output runs 24 tokens without EOS for this case.
    assert_eq!(tokens, &fx.expected().cases[1].generated[..16]);
}

#[wasm_bindgen_test]
async fn busy_and_disposed_models_say_what_to_do() {
    let fx = &fixtures()[0];
    let mut model = FreeModel::load(fx.config, fx.weights, fx.tokenizer, Some(fx.free.to_vec()), None).unwrap();
    let text = fx.expected().cases[0].text.clone();
    // The first step's promise stays pending until the test resolves it, so the generation
    // holds the model meanwhile.
    let release: Rc<RefCell<Option<js_sys::Function>>> = Rc::default();
    let release_in = Rc::clone(&release);
    let (on_step, calls, _keep) = recorder(move |n| {
        if n > 1 {
            return JsValue::UNDEFINED;
        }
        let mut keep = |resolve: js_sys::Function, _reject: js_sys::Function| *release_in.borrow_mut() = Some(resolve);
        js_sys::Promise::new(&mut keep).into()
    });
    let running = model.generate_streaming(text.clone(), options(r#"{"strategy": "free", "maxNewTokens": 8}"#), on_step);
    for _ in 0..100 {
        if !calls.borrow().is_empty() {
            break;
        }
        tick().await;
    }
    assert_eq!(calls.borrow().len(), 1);
    let busy = "this FreeModel is generating; await the running generate (or abort it with its AbortSignal) first";
    assert_eq!(message(model.dispose().unwrap_err().into()), busy);
    assert_eq!(message(model.generate(&text, JsValue::UNDEFINED).unwrap_err().into()), busy);
    release.borrow().as_ref().unwrap().call0(&JsValue::NULL).unwrap();
    JsFuture::from(running).await.unwrap();

    model.dispose().unwrap();
    model.dispose().unwrap();
    let disposed = "this FreeModel was disposed; load the model again with FreeModel.load to use it";
    assert_eq!(message(model.generate(&text, JsValue::UNDEFINED).unwrap_err().into()), disposed);
    assert_eq!(message(model.adaptive_state().unwrap_err().into()), disposed);
    assert_eq!(message(model.decoder_blocks().unwrap_err().into()), disposed);
    let (on_step, _, _keep) = recorder(|_| JsValue::UNDEFINED);
    let err = JsFuture::from(model.generate_streaming(text, JsValue::UNDEFINED, on_step)).await.unwrap_err();
    assert_eq!(message(err), disposed);
}

/// The wasm instance's memory, in bytes (it grows and never shrinks: flat means reused).
fn memory_bytes() -> u32 {
    js_sys::WebAssembly::Memory::from(wasm_bindgen::memory()).buffer().unchecked_into::<js_sys::ArrayBuffer>().byte_length()
}

/// Runs `cycle` 3 times to settle the allocator, then `n` times: the memory may grow by less
/// than one model's weights in all (the allocator rounds a little), where a cycle that kept
/// its model would add the weights every time.
async fn flat_over<F: std::future::Future<Output = ()>>(n: usize, weights: usize, mut cycle: impl FnMut() -> F) {
    for _ in 0..3 {
        cycle().await;
    }
    let settled = memory_bytes();
    for _ in 0..n {
        cycle().await;
    }
    let grown = memory_bytes() - settled;
    assert!((grown as usize) < weights, "memory grew by {grown} bytes over {n} load/generate/dispose cycles");
}

#[wasm_bindgen_test]
async fn a_hundred_load_generate_dispose_cycles_leave_the_memory_flat() {
    let fx = &fixtures()[0];
    let text = fx.expected().cases[1].text.clone();
    // The disposed objects stay referenced, as a page's variables may keep them: only
    // dispose, not the JS garbage collector, gives their memory back.
    let kept = Rc::new(RefCell::new(Vec::new()));
    flat_over(100, fx.weights.len(), || {
        let (kept, text) = (kept.clone(), text.clone());
        async move {
            let mut model = FreeModel::load(fx.config, fx.weights, fx.tokenizer, Some(fx.free.to_vec()), None).unwrap();
            let out = model.generate(&text, options(r#"{"strategy": "free", "maxNewTokens": 8}"#)).unwrap();
            assert!(js_sys::Array::from(&field(&out, "trace")).length() > 0);
            model.dispose().unwrap();
            kept.borrow_mut().push(model);
        }
    })
    .await;
}

/// Load/generate/dispose cycles on WebGPU: 20 in scripts/test.sh, because every load makes a
/// device and compiles the kernels it runs (23 cycles took 29 s on SwiftShader, 2026-12-04);
/// scripts/memory-test.sh builds with FREE_GPU_CYCLES=100 (minutes).
fn gpu_cycles() -> usize {
    option_env!("FREE_GPU_CYCLES").and_then(|n| n.parse().ok()).unwrap_or(20)
}

/// The same on WebGPU (SwiftShader): each cycle makes a device, and disposing the model must
/// destroy it (the count of live devices falls back to zero) and free the wasm side.
#[wasm_bindgen_test]
async fn webgpu_cycles_leave_no_device_alive_and_the_memory_flat() {
    let fx = &fixtures()[0];
    let text = fx.expected().cases[1].text.clone();
    let load = || FreeModel::load_gpu(fx.config.to_vec(), fx.weights.to_vec(), fx.tokenizer.to_vec(), Some(fx.free.to_vec()), true, None);
    if let Err(e) = load().await {
        assert!(option_env!("FREE_REQUIRE_GPU").is_none(), "FREE_REQUIRE_GPU is set but WebGPU did not load: {}", message(e));
        console_log!("no WebGPU test: {}", message(e));
        return;
    }
    let before = free_wasm::backend::gpu::live_devices();
    let kept = Rc::new(RefCell::new(Vec::new()));
    let started = js_sys::Date::now();
    flat_over(gpu_cycles(), fx.weights.len(), || {
        let (kept, text) = (kept.clone(), text.clone());
        async move {
            let model = load().await.unwrap_or_else(|e| panic!("{}", message(e)));
            let (on_step, _, _keep) = recorder(|_| JsValue::UNDEFINED);
            let out = JsFuture::from(model.generate_streaming(text, options(r#"{"strategy": "free", "maxNewTokens": 8}"#), on_step)).await.unwrap();
            assert!(js_sys::Array::from(&field(&out, "trace")).length() > 0);
            assert_eq!(free_wasm::backend::gpu::live_devices(), before + 1);
            model.dispose().unwrap();
            assert_eq!(free_wasm::backend::gpu::live_devices(), before, "dispose left the device alive");
            kept.borrow_mut().push(model);
        }
    })
    .await;
    console_log!("{} WebGPU cycles in {:.1} s", gpu_cycles() + 3, (js_sys::Date::now() - started) / 1e3);
}

/// The API on WebGPU (SwiftShader in this browser): the CPU's tokens and counters for a
/// generation that exits, stacks and rolls back, its timings, the synchronous `generate`
/// refused with what to use instead, and dispose. Without an adapter the test says so and
/// stops, unless the build sets FREE_REQUIRE_GPU (scripts/test.sh does).
#[wasm_bindgen_test]
async fn on_webgpu_the_api_streams_the_cpu_tokens_and_disposes() {
    let fx = &fixtures()[1];
    let free = Some(fx.free.to_vec());
    let cpu = FreeModel::load(fx.config, fx.weights, fx.tokenizer, free.clone(), None).unwrap();
    let mut gpu = match FreeModel::load_gpu(fx.config.to_vec(), fx.weights.to_vec(), fx.tokenizer.to_vec(), free, true, None).await {
        Ok(m) => m,
        Err(e) if option_env!("FREE_REQUIRE_GPU").is_none() => {
            console_log!("no WebGPU test: {}", message(e.into()));
            return;
        }
        Err(e) => panic!("FREE_REQUIRE_GPU is set but WebGPU did not load: {}", message(e.into())),
    };
    assert_eq!(gpu.device().unwrap(), "webgpu");
    let text = &fx.expected().cases[1].text;
    let opts = r#"{"strategy": "free-exact", "threshold": 0, "maxNewTokens": 12}"#;
    let (on_step, calls, _keep) = recorder(|_| JsValue::UNDEFINED);
    let on_cpu = JsFuture::from(cpu.generate_streaming(text.clone(), options(opts), on_step.clone())).await.unwrap();
    let cpu_steps = calls.borrow().len();
    let on_gpu = JsFuture::from(gpu.generate_streaming(text.clone(), options(opts), on_step.clone())).await.unwrap();
    assert_eq!(json(&field(&on_gpu, "tokens")), json(&field(&on_cpu, "tokens")));
    let (gpu_counters, cpu_counters) = (field(&on_gpu, "counters"), field(&on_cpu, "counters"));
    for name in ["deepPasses", "rollbacks"] {
        assert_eq!(json(&field(&gpu_counters, name)), json(&field(&cpu_counters, name)), "{name}");
    }
    assert!(field(&gpu_counters, "rollbacks").as_f64().unwrap() > 0.0, "the input should make exact mode roll back");
    // WebGPU records each step before the last token is back; the CPU does not.
    assert!(field(&gpu_counters, "aheadSteps").as_f64().unwrap() > 0.0, "counters {}", json(&gpu_counters));
    assert_eq!(field(&cpu_counters, "aheadSteps").as_f64(), Some(0.0));
    assert_eq!(calls.borrow().len(), 2 * cpu_steps, "the GPU generation should take as many steps as the CPU's");
    // Told to wait for every token, the GPU does exactly the CPU's work.
    let waiting = r#"{"strategy": "free-exact", "threshold": 0, "maxNewTokens": 12, "runAhead": false}"#;
    let on_gpu = JsFuture::from(gpu.generate_streaming(text.clone(), options(waiting), on_step)).await.unwrap();
    assert_eq!(json(&field(&on_gpu, "tokens")), json(&field(&on_cpu, "tokens")));
    assert_eq!(json(&field(&on_gpu, "counters")), json(&cpu_counters));
    // The encoder's launches go to the GPU with the first decoder step's, so encodeMs may
    // round to 0 here (performance.now() is coarse); the decoder's time may not.
    let timings = field(&on_gpu, "timings");
    let (encode, decode) = (field(&timings, "encodeMs").as_f64().unwrap(), field(&timings, "decodeMs").as_f64().unwrap());
    assert!(encode >= 0.0 && decode > 0.0 && decode.is_finite(), "timings {}", json(&timings));

    let err = gpu.generate(text, options(opts)).err().expect("generate on WebGPU should be refused");
    assert!(message(err.into()).contains("use generateStreaming"));
    gpu.dispose().unwrap();
    let (on_step, _, _keep) = recorder(|_| JsValue::UNDEFINED);
    let after = JsFuture::from(gpu.generate_streaming(text.clone(), options(opts), on_step)).await.unwrap_err();
    assert!(message(after).contains("was disposed"));
}

//! The JavaScript API (wasm-bindgen): converts JS values to library calls and back, nothing
//! else. Errors become `Error` objects whose message is the library's own.
//!
//! The npm package wraps this in a typed API (js/src/index.ts); this layer adds what the
//! wrapper cannot do from outside: a generation that hands each decided trace entry to a
//! callback and awaits the callback's promise between steps (so the page's event loop runs
//! and an `AbortSignal` can stop it), and `dispose`, which frees the model's memory while
//! the JS object may still be referenced.

use std::cell::RefCell;
use std::rc::Rc;

use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::backend::gpu::{DeviceHandle, Gpu, GpuModel};
use crate::backend::Backend;
use crate::error::Error;
use crate::matrix::Dtype;
use crate::pipeline::{GenerateOptions, Generating, ModelFiles, Pipeline, Report, Timings};

#[wasm_bindgen(start)]
fn start() {
    // A last net: library code returns errors, but a panic should still say where it was.
    console_error_panic_hook::set_once();
}

const DISPOSED: &str = "this FreeModel was disposed; load the model again with FreeModel.load to use it";
const BUSY: &str = "this FreeModel is generating; await the running generate (or abort it with its AbortSignal) first";

/// A pipeline on either backend.
enum Engine {
    Cpu(Pipeline),
    Gpu(Pipeline<GpuModel>),
}

/// Evaluates `$body` with `$p` bound to the engine's pipeline, whatever its backend.
macro_rules! on_engine {
    ($engine:expr, $p:ident => $body:expr) => {
        match $engine {
            Engine::Cpu($p) => $body,
            Engine::Gpu($p) => $body,
        }
    };
}

/// A loaded model: T5 weights, tokenizer and early-exit settings, on the CPU or on WebGPU.
///
/// The pipeline sits behind `Rc<RefCell<…>>` because a streaming generation is a promise
/// that outlives the call which started it and holds the model mutably (the adaptive
/// threshold learns) across its awaits; `None` once disposed.
#[wasm_bindgen]
pub struct FreeModel {
    pipeline: Rc<RefCell<Option<Engine>>>,
    /// The WebGPU device, reachable while a generation holds the pipeline (`loseDevice`).
    device: Option<DeviceHandle>,
    /// How the weight matrices were asked to be held (None: as stored); `moveToCpu` keeps it.
    dtype: Option<Dtype>,
}

/// `performance.now()` of the page or worker (both have one; std has no clock on wasm32).
fn now_ms() -> f64 {
    js_sys::Reflect::get(&js_sys::global(), &JsValue::from_str("performance"))
        .map_or(0.0, |p| p.unchecked_into::<web_sys::Performance>().now())
}

/// When a generation started and when its encoder was done (`performance.now()`).
struct Clock {
    started: f64,
    encoded: f64,
}

impl Clock {
    /// The generation's phases, with the decoder done now.
    fn timings(&self) -> Timings {
        Timings { encode_ms: self.encoded - self.started, decode_ms: now_ms() - self.encoded }
    }
}

/// `Pipeline::start` (tokenizer and encoder), timed.
fn start_timed<'p, B: Backend>(
    p: &'p mut Pipeline<B>,
    text: &str,
    options: &GenerateOptions,
) -> crate::error::Result<(Generating<'p, B>, Clock)> {
    let started = now_ms();
    let generating = p.start(text, options)?;
    Ok((generating, Clock { started, encoded: now_ms() }))
}

/// A library error as a JS `Error` with the library's message. A lost GPU device is named
/// "DeviceLostError", so a page can tell it from other failures and load the model again
/// (on the CPU, say): this model's GPU buffers are gone.
fn js_error(e: Error) -> JsValue {
    let err = js_sys::Error::new(&e.to_string());
    if matches!(e, Error::DeviceLost(_)) {
        err.set_name("DeviceLostError");
    }
    err.into()
}

fn to_js<T: Serialize>(value: &T) -> Result<JsValue, JsError> {
    // Maps, not plain objects, are serde-wasm-bindgen's default; pages want objects.
    let serializer = serde_wasm_bindgen::Serializer::json_compatible();
    Ok(value.serialize(&serializer)?)
}

fn parse_options(options: JsValue) -> Result<GenerateOptions, JsError> {
    if options.is_undefined() || options.is_null() {
        return Ok(GenerateOptions::default());
    }
    serde_wasm_bindgen::from_value(options).map_err(|e| JsError::new(&format!("invalid generate options: {e}")))
}

/// Runs `f` on the loaded pipeline, or says why there is none to use.
fn with_pipeline<T>(
    cell: &RefCell<Option<Engine>>,
    f: impl FnOnce(&mut Engine) -> Result<T, JsError>,
) -> Result<T, JsError> {
    let mut guard = cell.try_borrow_mut().map_err(|_| JsError::new(BUSY))?;
    f(guard.as_mut().ok_or_else(|| JsError::new(DISPOSED))?)
}

#[wasm_bindgen]
impl FreeModel {
    /// Loads a model from the bytes of its files onto the CPU; `free` (free.json) may be
    /// omitted; `dtype` ("f32", "f16" or "q8") says how the weight matrices are held, by
    /// default as stored.
    pub fn load(
        config: &[u8],
        weights: &[u8],
        tokenizer: &[u8],
        free: Option<Vec<u8>>,
        dtype: Option<String>,
    ) -> Result<FreeModel, JsError> {
        let dtype = dtype.map(|d| d.parse::<Dtype>()).transpose()?;
        let files = ModelFiles { config, weights, tokenizer, free: free.as_deref() };
        Ok(FreeModel::new(Engine::Cpu(Pipeline::from_files_as(&files, dtype)?), dtype))
    }

    /// Loads a model onto a WebGPU device, `dtype` as in `load`; rejects when the browser
    /// has no adapter, when the adapter is a software renderer and `allowSoftware` is false
    /// (it would be slower than the CPU backend), or when the model does not fit the
    /// adapter's limits. Those failures of the device are named "NotSupportedError", so the
    /// package can tell them from bad model files or a bad dtype (which fail on any device).
    #[wasm_bindgen(js_name = loadGpu)]
    pub async fn load_gpu(
        config: Vec<u8>,
        weights: Vec<u8>,
        tokenizer: Vec<u8>,
        free: Option<Vec<u8>>,
        allow_software: bool,
        dtype: Option<String>,
    ) -> Result<FreeModel, JsValue> {
        let dtype = dtype.map(|d| d.parse::<Dtype>()).transpose().map_err(js_error)?;
        let unsupported = |message: &str| {
            let err = js_sys::Error::new(message);
            err.set_name("NotSupportedError");
            JsValue::from(err)
        };
        let device_error = |e: Error| match e {
            Error::Gpu(_) => unsupported(&e.to_string()),
            e => js_error(e),
        };
        let gpu = Gpu::new().await.map_err(device_error)?;
        if gpu.is_software() && !allow_software {
            // Browsers may hide the adapter's name (SwiftShader's is empty in Chromium).
            let name = gpu.adapter_name();
            let which = if name.is_empty() { String::new() } else { format!(" ({name})") };
            return Err(unsupported(&format!(
                "the only WebGPU adapter is a software renderer{which}, slower than the CPU backend"
            )));
        }
        let files = ModelFiles { config: &config, weights: &weights, tokenizer: &tokenizer, free: free.as_deref() };
        let pipeline = Pipeline::from_files_gpu_as(&files, gpu, dtype).map_err(device_error)?;
        let device = pipeline.model().gpu().handle();
        Ok(FreeModel { device: Some(device), ..FreeModel::new(Engine::Gpu(pipeline), dtype) })
    }

    /// Moves a model whose WebGPU device was lost (or any WebGPU model) to the CPU, built
    /// from the same files' bytes in the same dtype, with what its adaptive threshold had
    /// learned: as it was before the generation the loss ended (see `generateStreaming`).
    /// Later calls run on the CPU. Fails while a generation runs, and on a model already on
    /// the CPU.
    #[wasm_bindgen(js_name = moveToCpu)]
    pub fn move_to_cpu(&mut self, config: &[u8], weights: &[u8], tokenizer: &[u8], free: Option<Vec<u8>>) -> Result<(), JsError> {
        let dtype = self.dtype;
        with_pipeline(&self.pipeline, |e| {
            let Engine::Gpu(gpu) = e else { return Err(JsError::new("this FreeModel is already on the CPU")) };
            let files = ModelFiles { config, weights, tokenizer, free: free.as_deref() };
            let mut cpu = Pipeline::from_files_as(&files, dtype)?;
            std::mem::swap(cpu.adaptive_mut(), gpu.adaptive_mut());
            *e = Engine::Cpu(cpu);
            Ok(())
        })?;
        self.device = None;
        Ok(())
    }

    /// Destroys the model's WebGPU device now, as a driver reset would: the generation
    /// running (if any) and later ones see a lost device. For testing what a page does
    /// then, and for giving the GPU's memory back at once. False on the CPU.
    #[wasm_bindgen(js_name = loseDevice)]
    pub fn lose_device(&self) -> bool {
        self.device.as_ref().inspect(|d| d.destroy()).is_some()
    }

    /// Where the model runs: "cpu" or "webgpu".
    pub fn device(&self) -> Result<String, JsError> {
        with_pipeline(&self.pipeline, |e| Ok(match e { Engine::Cpu(_) => "cpu".into(), Engine::Gpu(_) => "webgpu".into() }))
    }

    /// Generates from `text` in one call (the page waits until it is done). `options`: a
    /// `GenerateOptions` (strategy one of `STRATEGIES`; without a threshold FREE uses its
    /// adaptive one). Returns a `Report`.
    pub fn generate(&mut self, text: &str, options: JsValue) -> Result<JsValue, JsError> {
        let options = parse_options(options)?;
        with_pipeline(&self.pipeline, |e| match e {
            Engine::Cpu(p) => {
                let (mut generating, clock) = start_timed(p, text, &options)?;
                generating.run()?;
                let timings = clock.timings();
                to_js(&Report::new(generating.finish()?, timings))
            }
            Engine::Gpu(_) => Err(JsError::new("a model on WebGPU generates asynchronously; use generateStreaming")),
        })
    }

    /// Generates like `generate`, one decoder step at a time: after each step it calls
    /// `onStep(from, entries)`, where `entries` replace the trace from index `from` on (new
    /// tokens, and earlier ones a deep pass annotated or a rollback dropped), and awaits
    /// what `onStep` returns when that is a promise. If that promise rejects, generation
    /// stops and the returned promise rejects with the same value (an `AbortError`, say);
    /// the adaptive threshold keeps what it learned until then. A generation that ends
    /// because the WebGPU device was lost ("DeviceLostError") leaves the adaptive threshold
    /// as it was before it, so that a replay on the CPU (`moveToCpu`) decides as an
    /// uninterrupted run would. Resolves to what `generate` returns.
    #[wasm_bindgen(js_name = generateStreaming)]
    pub fn generate_streaming(&self, text: String, options: JsValue, on_step: js_sys::Function) -> js_sys::Promise {
        let cell = Rc::clone(&self.pipeline);
        wasm_bindgen_futures::future_to_promise(async move {
            let options = parse_options(options)?;
            // Held across the awaits below: a second generate or a dispose meanwhile gets
            // the BUSY error instead of a model changing under this generation.
            let mut guard = cell.try_borrow_mut().map_err(|_| JsError::new(BUSY))?;
            let engine = guard.as_mut().ok_or_else(|| JsError::new(DISPOSED))?;
            let output = match engine {
                Engine::Cpu(p) => stream(p, &text, &options, &on_step).await,
                Engine::Gpu(p) => {
                    let before = p.adaptive().clone();
                    let output = stream(p, &text, &options, &on_step).await;
                    if let Err(Failure::Library(Error::DeviceLost(_))) = output {
                        *p.adaptive_mut() = before;
                    }
                    output
                }
            };
            Ok(to_js(&output?)?)
        })
    }

    /// The adaptive threshold's state: `{ threshold, fit, consistentPoints, calibration, ... }`
    /// (`calibration`: the data free.json ships, which the fit starts from; null without).
    #[wasm_bindgen(js_name = adaptiveState)]
    pub fn adaptive_state(&self) -> Result<JsValue, JsError> {
        with_pipeline(&self.pipeline, |e| on_engine!(e, p => to_js(&p.adaptive().state())))
    }

    /// Forgets what the adaptive threshold learned from this model's generations: back to
    /// its start, free.json's calibration (or, without one, free.json's threshold).
    #[wasm_bindgen(js_name = resetAdaptive)]
    pub fn reset_adaptive(&mut self) -> Result<(), JsError> {
        with_pipeline(&self.pipeline, |e| {
            on_engine!(e, p => p.adaptive_mut().reset());
            Ok(())
        })
    }

    /// The number of decoder blocks.
    #[wasm_bindgen(js_name = decoderBlocks)]
    pub fn decoder_blocks(&self) -> Result<usize, JsError> {
        with_pipeline(&self.pipeline, |e| Ok(on_engine!(e, p => p.model().num_decoder_blocks())))
    }

    /// The shallow exit from free.json, if the model has one.
    #[wasm_bindgen(js_name = shallowExitLayer)]
    pub fn shallow_exit_layer(&self) -> Result<Option<usize>, JsError> {
        with_pipeline(&self.pipeline, |e| Ok(on_engine!(e, p => p.free_config().map(|f| f.shallow_exit_layer))))
    }

    /// The task names `generate`'s `task` accepts (free.json's, or T5's own).
    pub fn tasks(&self) -> Result<Vec<String>, JsError> {
        with_pipeline(&self.pipeline, |e| Ok(on_engine!(e, p => p.task_names().map(String::from).collect())))
    }

    /// Frees the model's weights, caches and tokenizer now, rather than whenever the JS
    /// object is collected; every later call fails with an error saying so. Disposing
    /// twice is harmless.
    pub fn dispose(&self) -> Result<(), JsError> {
        let mut guard = self.pipeline.try_borrow_mut().map_err(|_| JsError::new(BUSY))?;
        *guard = None;
        Ok(())
    }
}

impl FreeModel {
    fn new(engine: Engine, dtype: Option<Dtype>) -> Self {
        FreeModel { pipeline: Rc::new(RefCell::new(Some(engine))), device: None, dtype }
    }
}

/// Why a streaming generation stopped: the library failed, or JavaScript (an `onStep` that
/// threw or rejected, a value that would not convert).
enum Failure {
    Library(Error),
    Js(JsValue),
}

impl From<JsValue> for Failure {
    fn from(e: JsValue) -> Self {
        Failure::Js(e)
    }
}

impl From<JsError> for Failure {
    fn from(e: JsError) -> Self {
        Failure::Js(e.into())
    }
}

impl From<Failure> for JsValue {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Library(e) => js_error(e),
            Failure::Js(e) => e,
        }
    }
}

/// One generation, step by step: each step's trace entries go to `on_step`, whose promise
/// is awaited before the next step.
async fn stream<B: Backend>(
    p: &mut Pipeline<B>,
    text: &str,
    options: &GenerateOptions,
    on_step: &js_sys::Function,
) -> Result<Report, Failure> {
    let (mut generating, clock) = start_timed(p, text, options).map_err(Failure::Library)?;
    while !generating.is_done() {
        let from = generating.advance().await.map_err(Failure::Library)?;
        let entries = to_js(&generating.entries_from(from))?;
        let returned = on_step.call2(&JsValue::NULL, &JsValue::from(from as u32), &entries)?;
        JsFuture::from(js_sys::Promise::resolve(&returned)).await?;
    }
    let timings = clock.timings();
    Ok(Report::new(generating.finish().map_err(Failure::Library)?, timings))
}

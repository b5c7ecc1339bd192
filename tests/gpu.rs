//! The WebGPU backend against the CPU backend on the same weights and inputs: logits within
//! 1e-3 (f32 arithmetic on both), and the same tokens, exits and synchronisations for every
//! strategy. Natively on Vulkan (lavapipe when there is no GPU), in headless Chromium on
//! SwiftShader. Without an adapter the tests say so and stop, unless the build sets
//! FREE_REQUIRE_GPU (scripts/test.sh does), which turns a missing adapter into a failure.
#![cfg(feature = "gpu")]

mod common;

use common::{fixtures, max_abs_diff};
use free_wasm::backend::gpu::{Format, Gpu, GpuModel};
use free_wasm::backend::Backend;
use free_wasm::config::ConfidenceMeasure;
use free_wasm::decode::{DecodeSettings, Generation, Session, Strategy, Threshold};
use free_wasm::matrix::Dtype;
use free_wasm::threshold::{AdaptiveThreshold, BmmSettings};
use free_wasm::{ModelFiles, Pipeline};

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

const LOGIT_TOLERANCE: f32 = 1e-3;

/// An async test body, run by wasm-bindgen-test in the browser and to completion natively.
macro_rules! gpu_test {
    ($name:ident, $body:ident) => {
        #[cfg(not(target_arch = "wasm32"))]
        #[test]
        fn $name() {
            free_wasm::backend::block_on($body()).unwrap();
        }
        #[cfg(target_arch = "wasm32")]
        #[wasm_bindgen_test::wasm_bindgen_test]
        async fn $name() {
            $body().await;
        }
    };
}

async fn adapter() -> Option<Gpu> {
    match Gpu::new().await {
        Ok(gpu) => Some(gpu),
        Err(e) if option_env!("FREE_REQUIRE_GPU").is_none() => {
            eprintln!("no GPU test: {e}");
            None
        }
        Err(e) => panic!("FREE_REQUIRE_GPU is set but {e}"),
    }
}

async fn gpu_pipeline(files: &ModelFiles<'_>) -> Option<Pipeline<GpuModel>> {
    gpu_pipeline_as(files, None).await
}

async fn gpu_pipeline_as(files: &ModelFiles<'_>, dtype: Option<Dtype>) -> Option<Pipeline<GpuModel>> {
    Some(Pipeline::from_files_gpu_as(files, adapter().await?, dtype).unwrap())
}

gpu_test!(logits_match_the_cpu_backend, logits_match);
async fn logits_match() {
    for fx in fixtures() {
        let cpu = fx.load();
        let Some(gpu) = gpu_pipeline(&fx.files()).await else { return };
        for case in fx.expected().cases.into_iter().take(CASES_PER_FIXTURE) {
            logits_agree(fx.name, &cpu, &gpu, &case.input_ids, &case.decoder_input_ids).await;
        }
    }
}

/// Logits at the shallow exit for every position, one at a time, then at the deep exit
/// for all positions in one multi-row pass (as FREE's synchronisation runs them).
async fn logits_agree(name: &str, cpu: &Pipeline, gpu: &Pipeline<GpuModel>, input_ids: &[u32], ids: &[u32]) {
    let (c, g) = (cpu.model(), gpu.model());
    let exit = cpu.free_config().unwrap().shallow_exit_layer;
    let blocks = c.num_decoder_blocks();
    let (mut cs, mut gs) = (Backend::start(c, input_ids).unwrap(), g.start(input_ids).unwrap());
    let (mut c_rows, mut g_rows) = (Vec::new(), Vec::new());
    for &id in ids {
        let (ce, ge) = (Backend::embed(c, &mut cs, id).unwrap(), g.embed(&mut gs, id).unwrap());
        let ch = c.decode_blocks(&mut cs, 0..exit, ce).unwrap();
        let gh = g.decode_blocks(&mut gs, 0..exit, ge).unwrap();
        let want = c.logits(&ch).unwrap().to_vec2::<f32>().unwrap();
        let got = g.logits(&gs, gh).await.unwrap();
        let diff = max_abs_diff(&want[0], &got[0]);
        assert!(diff < LOGIT_TOLERANCE, "{name}: shallow logits differ by {diff}");
        c_rows.push(ch);
        g_rows.push(gh);
    }
    let ch = c.decode_blocks(&mut cs, exit..blocks, c.join(&c_rows.iter().collect::<Vec<_>>()).unwrap()).unwrap();
    let gh = g.decode_blocks(&mut gs, exit..blocks, g.join(&g_rows.iter().collect::<Vec<_>>()).unwrap()).unwrap();
    let want = c.logits(&ch).unwrap().to_vec2::<f32>().unwrap();
    let got = g.logits(&gs, gh).await.unwrap();
    assert_eq!(got.len(), ids.len());
    for (w, g) in want.iter().zip(&got) {
        let diff = max_abs_diff(w, g);
        assert!(diff < LOGIT_TOLERANCE, "{name}: deep logits differ by {diff}");
    }
}

/// SwiftShader in the browser runs the kernels far slower than lavapipe natively, so the
/// browser checks fewer inputs and shorter outputs (within wasm-bindgen-test's time limit).
#[cfg(not(target_arch = "wasm32"))]
const CASES_PER_FIXTURE: usize = usize::MAX;
#[cfg(target_arch = "wasm32")]
const CASES_PER_FIXTURE: usize = 1;
const MAX_NEW_TOKENS: usize = if cfg!(target_arch = "wasm32") { 12 } else { 24 };

fn settings(strategy: Strategy) -> DecodeSettings {
    DecodeSettings { strategy, measure: ConfidenceMeasure::Top2Gap, max_new_tokens: MAX_NEW_TOKENS }
}

async fn run<B: Backend>(m: &B, ids: &[u32], strategy: Strategy, threshold: Threshold<'_>) -> Generation {
    let mut s = Session::new(m, m.start(ids).unwrap(), settings(strategy), threshold).unwrap();
    s.run_async().await.unwrap();
    let (tokens, finished) = (s.tokens().to_vec(), s.finished() == Some(true));
    let (trace, counters) = s.into_parts();
    Generation { tokens, finished, trace, counters }
}

/// Same tokens, and every trace entry decided the same way (confidences within 1e-4).
fn assert_same(name: &str, want: &Generation, got: &Generation) {
    assert_eq!(got.tokens, want.tokens, "{name}: tokens");
    assert_eq!(got.counters.deep_passes, want.counters.deep_passes, "{name}: deep passes");
    assert_eq!(got.trace.len(), want.trace.len(), "{name}: trace length");
    for (w, g) in want.trace.iter().zip(&got.trace) {
        assert_eq!((g.token, g.exit, g.stacked, g.sync, g.deep_token, g.rolled_back), (w.token, w.exit, w.stacked, w.sync, w.deep_token, w.rolled_back), "{name}: entry {}", w.index);
        if let (Some(a), Some(b)) = (w.confidence, g.confidence) {
            assert!((a - b).abs() < 1e-4, "{name}: confidence {a} vs {b}");
        }
    }
}

/// Every strategy, on the CPU and the GPU, over the inputs of a model.
async fn strategies_agree(name: &str, cpu: &Pipeline, gpu: &Pipeline<GpuModel>, inputs: &[Vec<u32>]) {
    let exit = cpu.free_config().unwrap().shallow_exit_layer;
    let strategies = [
        ("full", Strategy::Full, 1.0),
        ("static", Strategy::Static { exit }, 1.0),
        ("calm", Strategy::Calm { min_exit: exit, threshold: 0.2 }, 0.2),
        ("free", Strategy::Free { exit, exact: false }, 0.2),
        ("free-exact", Strategy::Free { exit, exact: true }, 0.05),
    ];
    let (mut c_adaptive, mut g_adaptive) = (AdaptiveThreshold::new(BmmSettings::default()), AdaptiveThreshold::new(BmmSettings::default()));
    for ids in inputs {
        for (label, strategy, t) in strategies {
            let want = run(cpu.model(), ids, strategy, Threshold::Fixed(t)).await;
            let got = run(gpu.model(), ids, strategy, Threshold::Fixed(t)).await;
            assert_same(&format!("{name} {label}"), &want, &got);
        }
        let free = Strategy::Free { exit, exact: false };
        let want = run(cpu.model(), ids, free, Threshold::Adaptive(&mut c_adaptive)).await;
        let got = run(gpu.model(), ids, free, Threshold::Adaptive(&mut g_adaptive)).await;
        assert_same(&format!("{name} free-adaptive"), &want, &got);
        assert!((c_adaptive.threshold() - g_adaptive.threshold()).abs() < 1e-3);
    }
}

/// The first cases of `fx` on both devices: the logits, then every strategy's decisions.
async fn cases_agree(name: &str, cpu: &Pipeline, gpu: &Pipeline<GpuModel>, fx: &common::Fixture) {
    let mut inputs = Vec::new();
    for case in fx.expected().cases.into_iter().take(CASES_PER_FIXTURE) {
        logits_agree(name, cpu, gpu, &case.input_ids, &case.decoder_input_ids).await;
        inputs.push(case.input_ids);
    }
    strategies_agree(name, cpu, gpu, &inputs).await;
}

gpu_test!(every_strategy_decides_as_on_the_cpu, fixtures_agree);
async fn fixtures_agree() {
    for fx in fixtures() {
        let cpu = fx.load();
        let Some(gpu) = gpu_pipeline(&fx.files()).await else { return };
        let inputs: Vec<Vec<u32>> = fx.expected().cases.into_iter().take(CASES_PER_FIXTURE).map(|c| c.input_ids).collect();
        strategies_agree(fx.name, &cpu, &gpu, &inputs).await;
    }
}

/// Matrix products have a cooperative kernel for hardware GPUs and a register-tiled one for
/// software adapters; the adapter picks one, and this runs the other (on the machines
/// without a GPU that run CI, the one real GPUs use), on f32, f16 and q8 weights. Native only,
/// on two inputs per fixture: the cooperative kernel's barriers are slow on software
/// adapters (this takes under a minute on lavapipe).
#[cfg(not(target_arch = "wasm32"))]
#[test]
fn the_other_matrix_kernel_decides_as_on_the_cpu_too() {
    free_wasm::backend::block_on(other_kernel_agrees()).unwrap();
}

#[cfg(not(target_arch = "wasm32"))]
async fn other_kernel_agrees() {
    for fx in fixtures() {
        let halves = in_f16(fx.weights);
        for (weights, dtype) in [(fx.weights, None), (&halves[..], None), (fx.weights, Some(Dtype::Q8))] {
            let files = ModelFiles { weights, ..fx.files() };
            let Some(mut gpu) = adapter().await else { return };
            gpu.set_cooperative_kernels(!gpu.cooperative_kernels());
            let name = format!("{} {dtype:?} (cooperative kernel: {})", fx.name, gpu.cooperative_kernels());
            let gpu = Pipeline::from_files_gpu_as(&files, gpu, dtype).unwrap();
            let cpu = Pipeline::from_files_as(&files, dtype).unwrap();
            let cases = fx.expected().cases.into_iter().take(2);
            let mut inputs = Vec::new();
            for case in cases {
                logits_agree(&name, &cpu, &gpu, &case.input_ids, &case.decoder_input_ids).await;
                inputs.push(case.input_ids);
            }
            strategies_agree(&name, &cpu, &gpu, &inputs).await;
        }
    }
}

/// A tensor of a checkpoint: dtype, bytes, shape.
type Stored = (safetensors::Dtype, Vec<u8>, Vec<usize>);

/// The checkpoint `weights` with every tensor passed through `f` (given its name and view).
fn rewritten(weights: &[u8], f: impl Fn(&str, &safetensors::tensor::TensorView) -> Stored) -> Vec<u8> {
    let st = safetensors::SafeTensors::deserialize(weights).unwrap();
    let tensors: Vec<(String, Stored)> = st.tensors().into_iter().map(|(name, view)| { let t = f(&name, &view); (name, t) }).collect();
    let views = tensors.iter().map(|(name, (dtype, data, shape))| (name.clone(), safetensors::tensor::TensorView::new(*dtype, shape.clone(), data).unwrap()));
    safetensors::serialize(views, None).unwrap()
}

/// A fixture's weights stored as f16, as real checkpoints (the demo model) are.
fn in_f16(weights: &[u8]) -> Vec<u8> {
    use safetensors::Dtype;
    rewritten(weights, |name, view| match view.dtype() {
        Dtype::F32 => {
            let halves = view.data().chunks_exact(4).flat_map(|b| half::f16::from_f32(f32::from_le_bytes([b[0], b[1], b[2], b[3]])).to_le_bytes());
            (Dtype::F16, halves.collect(), view.shape().to_vec())
        }
        // Some tensors of the fixtures are f16 already.
        dtype => {
            assert_eq!(dtype, Dtype::F16, "{name}");
            (dtype, view.data().to_vec(), view.shape().to_vec())
        }
    })
}

gpu_test!(f16_weights_stay_f16_on_the_gpu_and_decide_as_on_the_cpu, f16_fixtures_agree);
/// f16 checkpoints are kept packed on the GPU (half the memory and traffic); the kernels
/// widen them to the stored values, so the GPU still matches the CPU on the same weights.
async fn f16_fixtures_agree() {
    for fx in fixtures() {
        let weights = in_f16(fx.weights);
        let files = ModelFiles { weights: &weights, ..fx.files() };
        let cpu = Pipeline::from_files(&files).unwrap();
        let Some(gpu) = gpu_pipeline(&files).await else { return };
        assert_eq!(gpu.model().weight_format(), Some(Format::F16), "{}: the f16 matrices should stay packed", fx.name);
        cases_agree(&format!("{} in f16", fx.name), &cpu, &gpu, &fx).await;
    }
    // A checkpoint with f32 matrices keeps them f32.
    let fx = &fixtures()[0];
    let Some(gpu) = gpu_pipeline(&fx.files()).await else { return };
    assert_eq!(gpu.model().weight_format(), Some(Format::F32));
}

gpu_test!(q8_weights_decide_as_the_cpu_in_q8, q8_fixtures_agree);
/// With dtype q8 every matrix (the embedding and tied head too) is quantized as the CPU
/// quantizes it (`matrix::quantize_q8`) and kept packed, four integers to a word, with its
/// row scales; the kernels sum the integers in f32 and scale the sums, so the GPU computes
/// the CPU q8 model's values up to summation order: logits within the same 1e-3 as f32, and
/// the same tokens, exits and synchronisations. Natively also dtype f16 of an f32
/// checkpoint (rounded to f16 at load on both devices).
async fn q8_fixtures_agree() {
    let dtypes: &[Dtype] = if cfg!(target_arch = "wasm32") { &[Dtype::Q8] } else { &[Dtype::Q8, Dtype::F16] };
    for &dtype in dtypes {
        for fx in fixtures() {
            let cpu = Pipeline::from_files_as(&fx.files(), Some(dtype)).unwrap();
            let Some(gpu) = gpu_pipeline_as(&fx.files(), Some(dtype)).await else { return };
            let format = if dtype == Dtype::Q8 { Format::Q8 } else { Format::F16 };
            assert_eq!(gpu.model().weight_format(), Some(format), "{}: every matrix in {dtype:?}", fx.name);
            cases_agree(&format!("{} in {dtype:?}", fx.name), &cpu, &gpu, &fx).await;
        }
    }
}

gpu_test!(a_vocabulary_not_a_multiple_of_four_gives_the_same_logits, odd_vocabulary_agrees);
/// The software adapters' matrix kernel computes four output features per invocation; a
/// head whose vocabulary is not a multiple of four ends in a partial group of features.
async fn odd_vocabulary_agrees() {
    const VOCAB: usize = 515;
    let fx = &fixtures()[0];
    let (config, weights) = (fx.config_edited(|c| c["vocab_size"] = VOCAB.into()), with_vocab_rows(fx.weights, VOCAB));
    let files = ModelFiles { config: &config, weights: &weights, ..fx.files() };
    let cpu = Pipeline::from_files(&files).unwrap();
    let Some(gpu) = gpu_pipeline(&files).await else { return };
    for case in fx.expected().cases.into_iter().take(CASES_PER_FIXTURE) {
        logits_agree("t5-v10 with 515 tokens", &cpu, &gpu, &case.input_ids, &case.decoder_input_ids).await;
    }
}

/// The checkpoint with its embedding (and head, if separate) grown to `vocab` rows by
/// repeating its first rows.
fn with_vocab_rows(weights: &[u8], vocab: usize) -> Vec<u8> {
    rewritten(weights, |name, view| {
        let (mut data, mut shape) = (view.data().to_vec(), view.shape().to_vec());
        if ["shared.weight", "lm_head.weight", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight"].contains(&name) {
            let extra = data.len() / shape[0] * (vocab - shape[0]);
            data.extend_from_within(..extra);
            shape[0] = vocab;
        }
        (view.dtype(), data, shape)
    })
}

/// The demo model on real test inputs (native only: it is read from models/).
#[cfg(not(target_arch = "wasm32"))]
#[test]
fn demo_model_decides_as_on_the_cpu() {
    // Sources of many lengths, across the 64 rows of a workgroup (a per-invocation
    // matrix kernel once went wrong from 64 source rows on).
    demo_model_agrees(None, Format::F16, &[63, 64, 200]);
}

/// The demo model in q8 on both devices, on a source of 64 tokens and real test inputs.
#[cfg(not(target_arch = "wasm32"))]
#[test]
fn demo_model_in_q8_decides_as_on_the_cpu_in_q8() {
    demo_model_agrees(Some(Dtype::Q8), Format::Q8, &[64]);
}

/// The demo model held as `dtype` on both devices (the GPU in `format`): logits over sources
/// of `lengths` tokens, and every strategy on the first test input of each task.
#[cfg(not(target_arch = "wasm32"))]
fn demo_model_agrees(dtype: Option<Dtype>, format: Format, lengths: &[usize]) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/models/free-t5-mini");
    let files = free_wasm::pipeline::ModelDir::read(dir).unwrap();
    let cpu = Pipeline::from_files_as(&files.files(), dtype).unwrap();
    let Some(gpu) = free_wasm::backend::block_on(gpu_pipeline_as(&files.files(), dtype)).unwrap() else { return };
    assert_eq!(gpu.model().weight_format(), Some(format), "the demo model (stored in f16) held as {dtype:?}");
    let data = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/data/test.jsonl")).unwrap_or_default();
    let examples: Vec<serde_json::Value> = data.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let inputs: Vec<Vec<u32>> = ["summarize", "translate"]
        .iter()
        .flat_map(|task| examples.iter().filter(move |v| v["task"] == *task).take(1))
        .map(|v| cpu.encode_input(v["source"].as_str().unwrap(), v["task"].as_str()).unwrap().0)
        .collect();
    assert!(!inputs.is_empty(), "no test inputs in data/test.jsonl");
    let name = format!("free-t5-mini as {dtype:?}");
    for &n in lengths {
        let ids: Vec<u32> = inputs[0].iter().copied().cycle().take(n).collect();
        free_wasm::backend::block_on(logits_agree(&name, &cpu, &gpu, &ids, &[0, 250])).unwrap();
    }
    free_wasm::backend::block_on(strategies_agree(&name, &cpu, &gpu, &inputs)).unwrap();
}

/// A checkpoint stored in 8 bits (fuzz/corpus/safetensors/seed-tiny-q8, which the Python
/// exporter wrote) stays in 8 bits on the GPU without a dtype, uploaded as stored: the CPU,
/// which holds the same integers and scales, decides the same tokens the same way.
#[cfg(not(target_arch = "wasm32"))]
#[test]
fn weights_stored_in_8_bits_stay_8_bit_on_the_gpu() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = free_wasm::config::T5Config::from_json(&std::fs::read(root.join("fuzz/seeds/tiny/config.json")).unwrap()).unwrap();
    let data = std::fs::read(root.join("fuzz/corpus/safetensors/seed-tiny-q8")).unwrap();
    let weights = || free_wasm::weights::Weights::from_bytes(&data, &candle_core::Device::Cpu).unwrap();
    let Some(gpu) = free_wasm::backend::block_on(adapter()).unwrap() else { return };
    let on_gpu = GpuModel::load(config.clone(), weights(), gpu, None).unwrap();
    assert_eq!(on_gpu.weight_format(), Some(Format::Q8));
    let on_cpu = free_wasm::model::T5Model::load(config, weights(), &candle_core::Device::Cpu).unwrap();
    // Both hold a byte per weight, a 4-byte scale per row and the f32 norms (the GPU pads
    // each buffer to whole 32-bit words, a few bytes at most).
    let (gpu_bytes, cpu_bytes) = (Backend::weight_bytes(&on_gpu).unwrap(), on_cpu.weight_bytes());
    assert!(gpu_bytes >= cpu_bytes && gpu_bytes < cpu_bytes + 4 * 64, "GPU {gpu_bytes} bytes, CPU {cpu_bytes}");
    for (label, strategy, t) in [("full", Strategy::Full, 1.0), ("free-exact", Strategy::Free { exit: 1, exact: true }, 0.05)] {
        let want = free_wasm::backend::block_on(run(&on_cpu, &[5, 6, 7, 1], strategy, Threshold::Fixed(t))).unwrap();
        let got = free_wasm::backend::block_on(run(&on_gpu, &[5, 6, 7, 1], strategy, Threshold::Fixed(t))).unwrap();
        assert_same(&format!("seed-tiny-q8 {label}"), &want, &got);
    }
}

gpu_test!(submissions_readbacks_and_launches_per_token_are_pinned, counts_pinned);
/// What a token costs on the device, pinned so a regression fails: one submission for the
/// shallow part (or the whole model), recorded one token ahead on the id the device
/// decided, so it uploads no id (unless that step was thrown away and is run again), one
/// more submission per deep pass; one 16-byte-per-row readback for each; 13 launches per
/// decoder block plus the embedding and the head's three; one 256-byte parameter slot per
/// launch.
async fn counts_pinned() {
    let fx = &fixtures()[0];
    let Some(gpu) = gpu_pipeline(&fx.files()).await else { return };
    let (m, exit) = (gpu.model(), gpu.free_config().unwrap().shallow_exit_layer);
    let blocks = m.num_decoder_blocks() as u64;
    let ids = &fx.expected().cases[0].input_ids;
    let (mut syncs_seen, mut used_seen, mut rerun_seen) = (0, 0, 0);
    for (strategy, t) in [(Strategy::Full, 1.0), (Strategy::Free { exit, exact: false }, 0.05), (Strategy::Free { exit, exact: true }, 0.05)] {
        let mut s = Session::new(m, m.start(ids).unwrap(), settings(strategy), Threshold::Fixed(t)).unwrap();
        let first_part = match strategy {
            Strategy::Full => 4 + 13 * blocks,
            _ => 4 + 13 * exit as u64,
        };
        let (mut first, mut had_ahead) = (true, false);
        while s.finished().is_none() {
            let (before, counters) = (m.gpu().counts(), s.counters().clone());
            s.advance().await.unwrap();
            let (after, now) = (m.gpu().counts(), s.counters());
            let new_passes = &now.deep_passes[counters.deep_passes.len()..];
            let syncs = new_passes.len() as u64;
            let started = (now.ahead_steps - counters.ahead_steps) as u64;
            // A step run ahead is thrown away when its token changed, or past the end.
            let at_end = (s.finished().is_some() && started == 1) as u64;
            let thrown = (now.ahead_discarded - counters.ahead_discarded) as u64 - at_end;
            let fresh = !had_ahead as u64 + thrown;
            syncs_seen += syncs;
            used_seen += 1 - fresh;
            rerun_seen += thrown;
            let launches = first_part * (fresh + started) + syncs * (13 * (blocks - exit as u64) + 3);
            let rows = 1 + new_passes.iter().sum::<usize>() as u64;
            assert_eq!(after.submissions - before.submissions, fresh + started + syncs, "{strategy:?}: submissions");
            assert_eq!(after.readbacks - before.readbacks, 1 + syncs, "{strategy:?}: readbacks");
            assert_eq!(after.bytes_read - before.bytes_read, 16 * rows, "{strategy:?}: bytes read");
            if !first {
                // The first step also carries the encoder's launches.
                assert_eq!(after.launches - before.launches, launches, "{strategy:?}: launches");
                assert_eq!(after.bytes_uploaded - before.bytes_uploaded, 4 * fresh + 256 * launches, "{strategy:?}: bytes uploaded");
            }
            (first, had_ahead) = (false, started == 1 && s.finished().is_none());
        }
    }
    assert!(syncs_seen > 0, "no deep pass happened: the test checked nothing of FREE");
    assert!(used_seen > 10 && rerun_seen > 0, "steps run ahead: {used_seen} used, {rerun_seen} run again");
}

gpu_test!(a_lost_device_is_a_clear_error_not_a_hang, device_loss);
/// The device goes away mid-generation: the next step, and every one after it, fails with
/// an error that says the device was lost and what to do, and nothing waits forever.
async fn device_loss() {
    let fx = &fixtures()[0];
    let Some(gpu) = gpu_pipeline(&fx.files()).await else { return };
    let m = gpu.model();
    let ids = &fx.expected().cases[0].input_ids;
    let mut s = Session::new(m, m.start(ids).unwrap(), settings(Strategy::Full), Threshold::Fixed(1.0)).unwrap();
    s.advance().await.unwrap();
    m.gpu().destroy();
    for _ in 0..2 {
        match s.advance().await {
            Err(e @ free_wasm::Error::DeviceLost(_)) => {
                let msg = e.to_string();
                assert!(msg.contains("load the model again, or use the CPU backend"), "the error should say what to do: {msg}");
            }
            other => panic!("a step on a destroyed device should fail with Error::DeviceLost, got {other:?}"),
        }
    }
}

gpu_test!(a_model_beyond_the_adapters_limits_is_refused_at_load, beyond_limits);
/// A model the adapter cannot hold is refused at load, before anything is uploaded, with an
/// error that names the limit and the way out (the CPU backend).
async fn beyond_limits() {
    let fx = &fixtures()[0];
    // Longer inputs than the attention kernel holds keys for.
    let config = fx.config_edited(|c| c["n_positions"] = 2048.into());
    let Some(gpu) = adapter().await else { return };
    let err = Pipeline::from_files_gpu(&ModelFiles { config: &config, ..fx.files() }, gpu).err();
    assert!(
        matches!(&err, Some(free_wasm::Error::Gpu(m)) if m.contains("n_positions (2048) exceeds the 1023 positions") && m.ends_with("use the CPU backend")),
        "{err:?}"
    );
    // An embedding of 2^30 x d_model f32, beyond any adapter's binding size (and beyond a
    // 32-bit usize: the check must not overflow on wasm32).
    let config = fx.config_edited(|c| c["vocab_size"] = (1u64 << 30).into());
    let Some(gpu) = adapter().await else { return };
    let err = Pipeline::from_files_gpu(&ModelFiles { config: &config, ..fx.files() }, gpu).err();
    assert!(
        matches!(&err, Some(free_wasm::Error::Gpu(m)) if m.starts_with("the model needs GPU buffers of 274877906944 bytes but this adapter binds at most ")),
        "{err:?}"
    );
    // An embedding stored in f16 stays packed on the device: half the bytes of f32; in q8 a
    // quarter, and a scale per row (here 2^20 x 2^20 values, far beyond the logits buffer and
    // every other).
    let config = fx.config_edited(|c| {
        c["vocab_size"] = (1u64 << 20).into();
        c["d_model"] = (1u64 << 20).into();
    });
    let cases = [(fx.weights.to_vec(), None, 1u64 << 42), (in_f16(fx.weights), None, 1 << 41), (fx.weights.to_vec(), Some(Dtype::Q8), (1 << 40) + (1 << 22))];
    for (weights, dtype, bytes) in cases {
        let Some(gpu) = adapter().await else { return };
        let err = Pipeline::from_files_gpu_as(&ModelFiles { config: &config, weights: &weights, ..fx.files() }, gpu, dtype).err();
        let want = format!("the model needs GPU buffers of {bytes} bytes but this adapter binds at most ");
        assert!(matches!(&err, Some(free_wasm::Error::Gpu(m)) if m.starts_with(&want)), "{err:?}");
    }
}

//! The `free` binary end to end on the fixture checkpoints and the committed test split.

use std::process::Command;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/t5-v11");
const DEMO_MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/free-t5-mini");
const TEST_SPLIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/test.jsonl");

fn free(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_free")).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn generate_json_gives_the_hf_greedy_tokens() {
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURE}/expected.json")).unwrap()).unwrap();
    let case = &expected["cases"][1];
    let (ok, stdout, stderr) = free(&["generate", "--model", FIXTURE, "--strategy", "full", "--max-new-tokens", "24", "--json", case["text"].as_str().unwrap()]);
    assert!(ok, "{stderr}");
    let out: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let mut want: Vec<u64> = case["generated"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    if want.last() == Some(&1) {
        want.pop();
    }
    let got: Vec<u64> = out["tokens"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert_eq!(got, want);
    assert_eq!(out["trace"].as_array().unwrap().len(), got.len() + out["finished"].as_bool().unwrap() as usize);
    // the wasm API's report, field for field (the npm package's Generation, less deviceChanges)
    let mut keys: Vec<&str> = out.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["counters", "finished", "text", "timings", "tokens", "trace", "truncatedInputBytes", "truncatedInputTokens"]);
    let (encode, decode) = (out["timings"]["encodeMs"].as_f64().unwrap(), out["timings"]["decodeMs"].as_f64().unwrap());
    assert!(encode > 0.0 && decode > 0.0, "{}", out["timings"]);
}

#[test]
fn bench_smoke_run_on_the_demo_model_reports_every_strategy_for_both_tasks() {
    let dir = scratch("bench");
    let json = dir.join("bench.json");
    // A symlink at the output path is replaced, not written through.
    let elsewhere = dir.join("elsewhere.txt");
    std::fs::write(&elsewhere, "kept").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(&elsewhere, &json).unwrap();
    let (ok, stdout, stderr) = free(&["bench", "--model", DEMO_MODEL, "--data", TEST_SPLIT, "--limit", "2", "--max-new-tokens", "8", "--threshold", "0.1", "--json", json.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("free-exact"), "{stdout}");
    assert!(!std::fs::symlink_metadata(&json).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "kept");
    let reports: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let tasks: Vec<&str> = reports.as_array().unwrap().iter().map(|r| r["task"].as_str().unwrap()).collect();
    assert_eq!(tasks, ["summarize", "translate"]);
    for report in reports.as_array().unwrap() {
        assert_eq!(report["examples"], 2);
        assert_eq!(report["truncated_inputs"], 0);
        let rows = report["strategies"].as_array().unwrap();
        let names: Vec<&str> = rows.iter().map(|r| r["strategy"].as_str().unwrap()).collect();
        assert_eq!(names, ["full", "free-fixed", "free-adaptive", "free-adaptive-ref", "free-budget", "free-exact", "static", "calm"]);
        let row = |n: &str| rows.iter().find(|r| r["strategy"] == n).unwrap();
        assert_eq!(row("full")["agreement"], 1.0);
        assert_eq!(row("full")["blocks_per_token"], 8.0);
        assert_eq!(row("static")["blocks_per_token"], 2.0);
        assert_eq!(row("static")["exit_rate"], 1.0);
        assert_eq!(row("free-exact")["agreement"], 1.0, "exact mode must reproduce full");
        assert_eq!(row("free-exact")["retention"], 1.0);
        for r in rows {
            assert!(r["decode_tokens_per_s"].as_f64().unwrap() > 0.0);
            assert!(r["quality"].is_object());
        }
    }
}

/// `bench --dtype f32,q8` runs every kept strategy with both weight formats in one rotation:
/// the rows of each format, the MB each holds (q8: a byte per weight and a 4-byte scale per
/// row, so between a quarter and a third of f32's for this fixture's small matrices), and the
/// ratios against the first format's full.
#[test]
fn bench_runs_each_strategy_with_each_dtype() {
    let (ok, stdout, stderr) = free(&["bench", "--model", FIXTURE, "--data", TEST_SPLIT, "--limit", "1", "--max-new-tokens", "4", "--dtype", "f32,q8", "--only", "free-exact", "--threshold", "0.5"]);
    assert!(ok, "{stderr}");
    let rows: Vec<(&str, &str)> = stdout.lines().filter_map(|l| {
        let mut words = l.split_whitespace();
        Some((words.next()?, words.next()?)).filter(|(s, _)| *s == "full" || *s == "free-exact")
    }).collect();
    // Two tasks, four rows each: full and free-exact in f32, then in q8.
    let per_task = [("full", "f32"), ("free-exact", "f32"), ("full", "q8"), ("free-exact", "q8")];
    assert_eq!(rows, [per_task, per_task].concat(), "{stdout}");
    let dir = scratch("bench-dtypes");
    let json = dir.join("bench.json");
    let (ok, _, stderr) = free(&["bench", "--model", FIXTURE, "--data", TEST_SPLIT, "--task", "summarize", "--limit", "1", "--max-new-tokens", "4", "--dtype", "f32,q8", "--only", "free-exact", "--threshold", "0.5", "--json", json.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    let reports: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let rows = reports[0]["strategies"].as_array().unwrap();
    let mb = |i: usize| rows[i]["weights_mb"].as_f64().unwrap();
    assert_eq!((mb(0), mb(1)), (mb(0), mb(0)), "the same model's rows hold the same weights");
    assert!(mb(2) > 0.25 * mb(0) && mb(2) < 0.34 * mb(0), "q8 {} MB against f32 {} MB", mb(2), mb(0));
    assert_eq!(rows[0]["decode_speedup"], 1.0, "the reference is f32's full");
    let (ok, _, stderr) = free(&["bench", "--model", FIXTURE, "--data", TEST_SPLIT, "--dtype", "f32,int4"]);
    assert!(!ok && stderr.contains("use f32, f16 or q8"), "{stderr}");
}

/// `--dtype` reaches the model on both devices: f32 (how the fixture is stored) decodes as
/// the default does, f16 and q8 decode too (whether q8 picks f16's tokens is the demo
/// model's test: this random fixture's top logits are close), and the GPU, given the same
/// dtype, picks the CPU's tokens (where the machine has a WebGPU adapter; lavapipe will do).
#[test]
fn generate_with_each_dtype_on_each_device() {
    let run = |device: &str, dtype: Option<&'static str>| {
        let mut args = vec!["generate", "--model", FIXTURE, "--device", device, "--strategy", "full", "--max-new-tokens", "8", "--json", "hello world"];
        if let Some(d) = dtype {
            args.extend(["--dtype", d]);
        }
        let (ok, out, stderr) = free(&args);
        if !ok && device == "gpu" && stderr.contains("no WebGPU adapter") {
            eprintln!("no GPU run: {stderr}");
            return None;
        }
        assert!(ok, "{device} {dtype:?}: {stderr}");
        Some(serde_json::from_str::<serde_json::Value>(&out).unwrap()["tokens"].as_array().unwrap().clone())
    };
    let default = run("cpu", None).unwrap();
    assert_eq!(run("cpu", Some("f32")).unwrap(), default);
    for dtype in [None, Some("f32"), Some("f16"), Some("q8")] {
        let cpu = run("cpu", dtype).unwrap();
        assert_eq!(cpu.len(), 8, "{dtype:?}");
        if let Some(gpu) = run("gpu", dtype) {
            assert_eq!(gpu, cpu, "{dtype:?}: the GPU's tokens");
        }
    }
}

#[test]
fn mistakes_are_reported_with_exit_status_1() {
    let (ok, _, stderr) = free(&["generate", "--model", "/nonexistent", "hello"]);
    assert!(!ok && stderr.contains("/nonexistent/config.json"), "{stderr}");
    let (ok, _, stderr) = free(&["generate", "--model", FIXTURE, "--strategy", "fastest", "hello"]);
    assert!(!ok && stderr.contains("use free, free-exact, full, static or calm"), "{stderr}");
    let (ok, _, stderr) = free(&["generate", "--model", FIXTURE, "--threshold", "2", "hello"]);
    assert!(!ok && stderr.contains("within [0, 1]"), "{stderr}");
    let (ok, _, stderr) = free(&["bench", "--model", FIXTURE, "--data", TEST_SPLIT, "--limits", "2"]);
    assert!(!ok && stderr.contains("unknown option --limits"), "{stderr}");
    let (ok, _, stderr) = free(&["generate", "--model", FIXTURE, "--max-disagreement", "5", "hello"]);
    assert!(!ok && stderr.contains("max_disagreement") && stderr.contains("(0, 1)"), "{stderr}");
    // The same budget in bench is refused before anything runs.
    let (ok, _, stderr) = free(&["bench", "--model", FIXTURE, "--data", TEST_SPLIT, "--limit", "1", "--max-disagreement", "5"]);
    assert!(!ok && stderr.contains("max_disagreement") && stderr.contains("(0, 1)"), "{stderr}");
    // Settings the strategy has no use for are refused, not ignored.
    let (ok, _, stderr) = free(&["generate", "--model", FIXTURE, "--strategy", "full", "--threshold", "0.5", "hello"]);
    assert!(!ok && stderr.contains("full runs every block for every token and has no threshold"), "{stderr}");
    let (ok, _, stderr) = free(&["eval", "--model", FIXTURE, "--data", TEST_SPLIT, "--strategy", "calm", "--adaptive"]);
    assert!(!ok && stderr.contains("--adaptive applies to free and free-exact, not calm"), "{stderr}");
    let (ok, _, stderr) = free(&["bench", "--model", FIXTURE, "--data", TEST_SPLIT, "--strategy", "calm"]);
    assert!(!ok && stderr.contains("bench runs every strategy"), "{stderr}");
    let (ok, _, stderr) = free(&["generate", "--model", FIXTURE, "--dtype", "int4", "hello"]);
    assert!(!ok && stderr.contains("dtype") && stderr.contains("use f32, f16 or q8"), "{stderr}");
    let (ok, _, stderr) = free(&["eval", "--model", FIXTURE, "--data", TEST_SPLIT, "--limit", "0"]);
    assert!(!ok && stderr.contains("--limit 0 leaves nothing to score"), "{stderr}");
    let (ok, _, stderr) = free(&["eval", "--model", FIXTURE, "--data", TEST_SPLIT, "--limit", "1", "--limit", "2"]);
    assert!(!ok && stderr.contains("--limit given twice"), "{stderr}");
    let (ok, _, stderr) = free(&["--version"]);
    assert!(!ok && stderr.contains("unknown option --version; give a command first"), "{stderr}");
    let bad_json = std::env::temp_dir().join("no-such-dir-free-wasm/out.json");
    let (ok, stdout, stderr) = free(&["bench", "--model", FIXTURE, "--data", TEST_SPLIT, "--limit", "1", "--json", bad_json.to_str().unwrap()]);
    assert!(!ok && stderr.contains("cannot write") && stdout.is_empty(), "the path is checked before the run: {stderr}");
}

#[test]
fn help_anywhere_prints_the_usage() {
    let (ok, stdout, _) = free(&["eval", "--help"]);
    assert!(ok && stdout.starts_with("usage:"), "{stdout}");
}

/// `--adaptive` alone is FREE with the adaptive threshold (it used to run `full`, the default).
#[test]
fn eval_adaptive_runs_free() {
    let (ok, stdout, stderr) = free(&["eval", "--model", DEMO_MODEL, "--data", TEST_SPLIT, "--task", "summarize", "--limit", "2", "--max-new-tokens", "8", "--adaptive", "--json"]);
    assert!(ok, "{stderr}");
    let row: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(row["strategy"], "free");
    assert!(row["threshold"].is_number(), "{row}");
}

/// Output to a pipe is the text without escape codes; a terminal gets the colours.
#[test]
fn piped_generate_output_is_plain_text() {
    let (ok, stdout, stderr) = free(&["generate", "--model", FIXTURE, "--strategy", "free-exact", "--threshold", "0", "--max-new-tokens", "12", "hello"]);
    assert!(ok, "{stderr}");
    assert!(!stdout.contains('\x1b'), "{stdout:?}");
    let (_, json, _) = free(&["generate", "--model", FIXTURE, "--strategy", "free-exact", "--threshold", "0", "--max-new-tokens", "12", "--json", "hello"]);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(stdout.lines().next().unwrap(), json["text"].as_str().unwrap());
}

/// `free generate ... | head -c 10`: the reader leaves early; the writer stops quietly.
#[test]
fn a_closed_stdout_ends_the_command_without_a_panic() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_free"))
        .args(["generate", "--model", FIXTURE, "--strategy", "full", "--json", "hello"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Closed before the model has loaded, so the first write finds no reader.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !stderr.contains("panicked"), "{:?}: {stderr}", out.status);
}

#[test]
fn baselines_score_lead_n_and_the_copied_source() {
    let data = std::env::temp_dir().join(format!("free-baselines-{}.jsonl", std::process::id()));
    let rows = [
        r#"{"task": "summarize", "source": "a b c d e f g h i j k", "target": "a b c"}"#,
        r#"{"task": "translate", "source": "the cat", "target": "the cat"}"#,
    ];
    std::fs::write(&data, rows.join("\n")).unwrap();
    let (ok, stdout, stderr) = free(&["baselines", "--data", data.to_str().unwrap(), "--json"]);
    std::fs::remove_file(&data).unwrap();
    assert!(ok, "{stderr}");
    let reports: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let lead5 = &reports[0]["baselines"][0];
    assert_eq!(lead5["name"], "lead-5");
    // "a b c d e" against "a b c": precision 3/5, recall 1, F1 0.75.
    assert!((lead5["quality"]["rouge1"].as_f64().unwrap() - 75.0).abs() < 1e-9, "{lead5}");
    let lead30 = &reports[0]["baselines"][5];
    assert_eq!(lead30["name"], "lead-30");
    // All 11 words: precision 3/11, F1 2 * 3/11 / (1 + 3/11) = 6/14.
    assert!((lead30["quality"]["rouge1"].as_f64().unwrap() - 600.0 / 14.0).abs() < 1e-9, "{lead30}");
    let copy = &reports[1]["baselines"][0];
    assert_eq!(copy["name"], "copy-source");
    assert!((copy["quality"]["chrf"].as_f64().unwrap() - 100.0).abs() < 1e-9, "{copy}");
}

fn sha256_of(path: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(std::fs::read(path).unwrap()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The first `n` inputs of each task of a JSONL file, in the file's order: (task, source).
fn first_inputs(path: &str, n: usize) -> Vec<(String, String)> {
    let mut taken: Vec<(String, String)> = Vec::new();
    for line in std::fs::read_to_string(path).unwrap().lines().filter(|l| !l.trim().is_empty()) {
        let ex: serde_json::Value = serde_json::from_str(line).unwrap();
        let task = ex["task"].as_str().unwrap().to_string();
        if taken.iter().filter(|(t, _)| *t == task).count() < n {
            taken.push((task, ex["source"].as_str().unwrap().to_string()));
        }
    }
    taken
}

/// `free calibrate` on a copy of the v1.1 fixture whose adaptive threshold is held within
/// [0.999, 1], which no confidence of its random weights reaches: every token synchronises
/// with nothing stacked and gives one point, so the points are the shallow confidences that
/// `free generate --threshold 1` traces on the same inputs, and the calibration's pooled
/// count, mean and variance must be theirs.
#[test]
fn calibrate_fits_the_points_free_decoding_sees_and_writes_them_into_free_json() {
    let mut settings: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURE}/free.json")).unwrap()).unwrap();
    settings["threshold"] = serde_json::json!(1.0);
    settings["bmm"] = serde_json::json!({"min_points": 5, "min_threshold": 0.999, "max_threshold": 1.0});
    let dir = std::env::temp_dir().join(format!("free-calibrate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for file in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(format!("{FIXTURE}/{file}"), dir.join(file)).unwrap();
    }
    let free_json = dir.join("free.json");
    let original = serde_json::to_string_pretty(&settings).unwrap();
    std::fs::write(&free_json, &original).unwrap();
    let model = dir.to_str().unwrap();
    let calibrate = |extra: &[&str]| free(&[&["calibrate", "--model", model, "--data", TEST_SPLIT][..], extra].concat());

    let (ok, _, stderr) = calibrate(&["--limit", "1", "--max-new-tokens", "1"]);
    assert!(!ok && stderr.contains("the points gathered give no fit") && stderr.contains("--limit"), "{stderr}");

    let (ok, stdout, stderr) = calibrate(&["--limit", "4", "--max-new-tokens", "10"]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("calibrate: 8/8 inputs"), "progress: {stderr}");
    assert_eq!(std::fs::read_to_string(&free_json).unwrap(), original, "without --write free.json stays as it was");
    let entry = stdout.split_once("\"calibration\": ").unwrap().1.split_once("\n(--write").unwrap().0;
    let printed: serde_json::Value = serde_json::from_str(entry).unwrap();

    let mut confidences = Vec::new();
    for (task, source) in first_inputs(TEST_SPLIT, 4) {
        let (ok, out, err) = free(&["generate", "--model", model, "--task", &task, "--threshold", "1", "--max-new-tokens", "10", "--json", &source]);
        assert!(ok, "{err}");
        let out: serde_json::Value = serde_json::from_str(&out).unwrap();
        confidences.extend(out["trace"].as_array().unwrap().iter().map(|e| e["confidence"].as_f64().unwrap().clamp(1e-4, 1.0 - 1e-4)));
    }
    let n = confidences.len() as f64;
    let mean = confidences.iter().sum::<f64>() / n;
    let variance = confidences.iter().map(|c| (c - mean) * (c - mean)).sum::<f64>() / n;
    let class = |name: &str| ["points", "mean", "variance"].map(|k| printed[name][k].as_f64().unwrap());
    let ([nc, mc, vc], [ni, mi, vi]) = (class("consistent"), class("inconsistent"));
    assert_eq!(nc + ni, n, "one point per generated token");
    assert!(nc >= 5.0 && ni >= 5.0, "{printed}");
    assert!(((nc * mc + ni * mi) / n - mean).abs() < 1e-12, "{printed} vs mean {mean}");
    let pooled = (nc * (vc + (mc - mean).powi(2)) + ni * (vi + (mi - mean).powi(2))) / n;
    assert!((pooled - variance).abs() < 1e-12, "{printed} vs variance {variance}");
    let threshold = printed["threshold"].as_f64().unwrap();
    assert!((0.999..=1.0).contains(&threshold), "{printed}");
    let source = &printed["source"];
    assert_eq!(source["data"], TEST_SPLIT);
    assert_eq!(source["data_sha256"], sha256_of(TEST_SPLIT));
    assert_eq!(source["weights_sha256"], sha256_of(&format!("{FIXTURE}/model.safetensors")));
    assert_eq!(source["inputs_per_task"], serde_json::json!({"summarize": 4, "translate": 4}));
    assert_eq!((source["strategy"].as_str(), source["max_new_tokens"].as_u64()), (Some("free-adaptive"), Some(10)));

    // --write: the same entry beside the other settings, keys in order, one trailing newline.
    let (ok, stdout, stderr) = calibrate(&["--limit", "4", "--max-new-tokens", "10", "--write"]);
    assert!(ok && stdout.contains(&format!("wrote {}", free_json.display())), "{stdout}{stderr}");
    let written = std::fs::read_to_string(&free_json).unwrap();
    assert!(written.ends_with("}\n"), "{written:?}");
    let mut with_entry = settings.clone();
    with_entry["calibration"] = printed.clone();
    assert_eq!(serde_json::from_str::<serde_json::Value>(&written).unwrap(), with_entry);
    let at = |key: &str| written.find(&format!("\n  \"{key}\"")).unwrap();
    assert!(at("bmm") < at("calibration") && at("calibration") < at("shallow_exit_layer") && at("shallow_exit_layer") < at("threshold"), "{written}");
    // A rerun starts empty again (the written calibration is not used to gather points):
    // the same bytes.
    let (ok, _, stderr) = calibrate(&["--limit", "4", "--max-new-tokens", "10", "--write"]);
    assert!(ok, "{stderr}");
    assert_eq!(std::fs::read_to_string(&free_json).unwrap(), written);
    // The calibrated model's first generation runs at the calibration's threshold.
    let (ok, out, err) = free(&["generate", "--model", model, "--task", "summarize", "--max-new-tokens", "3", "--json", "a tool to resize images"]);
    assert!(ok, "{err}");
    let out: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(out["trace"][0]["threshold"].as_f64(), Some(threshold));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The demo model ships a calibration made on its own weights, and starts there. The
/// exporter writes free.json afresh, without one: after exporting a new snapshot, run
/// `free calibrate --model models/free-t5-mini --data data/validation.jsonl --write`.
#[test]
fn the_demo_model_ships_a_calibration_of_its_own_weights() {
    let settings: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(format!("{DEMO_MODEL}/free.json")).unwrap()).unwrap();
    let again = "run `free calibrate --model models/free-t5-mini --data data/validation.jsonl --write`";
    let calibration = &settings["calibration"];
    assert!(calibration.is_object(), "models/free-t5-mini/free.json has no calibration: {again}");
    assert_eq!(calibration["source"]["weights_sha256"], sha256_of(&format!("{DEMO_MODEL}/model.safetensors")), "the calibration was made on other weights: {again}");
    let (ok, out, err) = free(&["generate", "--model", DEMO_MODEL, "--task", "summarize", "--max-new-tokens", "2", "--json", "a tool to resize images"]);
    assert!(ok, "{err}");
    let out: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(out["trace"][0]["threshold"], calibration["threshold"], "the model starts at another threshold than its calibration records: bmm changed since? {again}");
}

/// `free` with arguments that may be any bytes: (exit code, stdout, stderr).
fn free_os(args: &[&std::ffi::OsStr]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_free")).args(args).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// A folder of its own under the temporary directory, empty.
fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("free-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An argument that is not UTF-8 is named by its position (it used to panic, exit 101); a
/// path may be any bytes the OS allows.
#[cfg(unix)]
#[test]
fn arguments_that_are_not_utf8_are_named_and_paths_may_be() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let latin1 = OsStr::from_bytes(b"caf\xe9");
    let (code, _, stderr) = free_os(&["generate".as_ref(), "--model".as_ref(), FIXTURE.as_ref(), latin1]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(stderr, "error: argument 4 (TEXT) is not valid UTF-8: \"caf\\xE9\"; pass it as UTF-8 (convert text with iconv -t UTF-8)\n");
    let (code, _, stderr) = free_os(&["generate".as_ref(), "--model".as_ref(), FIXTURE.as_ref(), "--task".as_ref(), latin1, "hello".as_ref()]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.starts_with("error: argument 5 (the value of --task) is not valid UTF-8: \"caf\\xE9\""), "{stderr}");
    let (code, _, stderr) = free_os(&[latin1]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.starts_with("error: argument 1 (the command) is not valid UTF-8"), "{stderr}");

    let dir = scratch("latin1-path");
    let data = dir.join(OsStr::from_bytes(b"donn\xe9es.jsonl"));
    std::fs::write(&data, r#"{"task": "translate", "source": "the cat", "target": "the cat"}"#).unwrap();
    let (code, stdout, stderr) = free_os(&["baselines".as_ref(), "--data".as_ref(), data.as_os_str()]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("copy-source"), "{stdout}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A source of 2 MB is read up to the model's 512 tokens (64 bytes of text each): the eval
/// completes (tokenizing it whole took 260 MB) and says how many inputs it cut.
#[test]
fn eval_cuts_long_sources_and_says_how_many() {
    let dir = scratch("long-source");
    let data = dir.join("long.jsonl");
    let long = "a library for reading and writing compressed archives ".repeat(40_000);
    let rows = [
        serde_json::json!({"task": "summarize", "source": long, "target": "a library"}),
        serde_json::json!({"task": "summarize", "source": "a tool to resize images", "target": "a tool"}),
    ];
    std::fs::write(&data, rows.map(|r| r.to_string()).join("\n")).unwrap();
    let (ok, stdout, stderr) = free(&["eval", "--model", FIXTURE, "--data", data.to_str().unwrap(), "--max-new-tokens", "4", "--json"]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(ok, "{stderr}");
    let warning = "warning: 1 of 2 summarize inputs were longer than the model takes, and cut to its first 512 tokens (text past 32768 bytes is not read)\n";
    assert!(stderr.contains(warning), "{stderr}");
    let row: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!((row["examples"].as_u64(), row["truncated_inputs"].as_u64()), (Some(2), Some(1)), "{row}");
}

/// A model folder whose tokenizer.json has fewer ids than the model's vocabulary: the ids
/// it lacks would decode to nothing, so the model is refused at load.
#[test]
fn a_tokenizer_smaller_than_the_model_is_refused() {
    let dir = scratch("small-tokenizer");
    for file in ["config.json", "model.safetensors", "free.json"] {
        std::fs::copy(format!("{FIXTURE}/{file}"), dir.join(file)).unwrap();
    }
    let mut tokenizer: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURE}/tokenizer.json")).unwrap()).unwrap();
    tokenizer["model"]["vocab"].as_array_mut().unwrap().truncate(300);
    std::fs::write(dir.join("tokenizer.json"), tokenizer.to_string()).unwrap();
    let (code, _, stderr) = free_os(&["generate".as_ref(), "--model".as_ref(), dir.as_os_str(), "hello".as_ref()]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(
        stderr,
        "error: tokenizer.json is malformed: it has 300 ids but the model's vocabulary (config.json vocab_size) is 512: the model can emit 212 ids it cannot decode (at most 127 unused rows are padding); the tokenizer belongs to another model\n"
    );
}

/// Output files are replaced only by a complete one: a run that fails leaves the earlier
/// report as it was, and an output that is one of the run's inputs is refused before any
/// work, after symlinks (it used to be emptied: the data set, the weights).
#[test]
fn outputs_never_destroy_what_was_there() {
    let dir = scratch("outputs");
    let report = dir.join("report.json");
    std::fs::write(&report, "earlier report").unwrap();
    let (ok, _, stderr) = free(&["bench", "--model", "/nonexistent", "--data", TEST_SPLIT, "--json", report.to_str().unwrap()]);
    assert!(!ok && stderr.contains("/nonexistent/config.json"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&report).unwrap(), "earlier report");
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, ["report.json"], "no temporary file is left behind");

    let data = dir.join("d.jsonl");
    std::fs::copy(TEST_SPLIT, &data).unwrap();
    let data = data.to_str().unwrap();
    let (code, stdout, stderr) = free_os(&["bench", "--model", FIXTURE, "--data", data, "--json", data].map(std::ffi::OsStr::new));
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(stderr, format!("error: --json {data} is --data, which this run reads: writing it would replace it; give another path\n"));
    assert!(stdout.is_empty());
    assert_eq!(sha256_of(data), sha256_of(TEST_SPLIT));

    #[cfg(unix)]
    {
        let link = dir.join("weights-link.json");
        std::os::unix::fs::symlink(format!("{FIXTURE}/model.safetensors"), &link).unwrap();
        let (ok, _, stderr) = free(&["bench", "--model", FIXTURE, "--data", TEST_SPLIT, "--json", link.to_str().unwrap()]);
        assert!(!ok && stderr.contains("is the model's model.safetensors, which this run reads"), "{stderr}");
    }
    let (ok, _, stderr) = free(&["calibrate", "--model", FIXTURE, "--data", &format!("{FIXTURE}/free.json"), "--write"]);
    assert!(!ok && stderr.contains(&format!("--write {FIXTURE}/free.json is --data")), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

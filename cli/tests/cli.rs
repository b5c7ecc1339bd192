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
}

#[test]
fn bench_smoke_run_on_the_demo_model_reports_every_strategy_for_both_tasks() {
    let json = std::env::temp_dir().join(format!("free-bench-{}.json", std::process::id()));
    let (ok, stdout, stderr) = free(&["bench", "--model", DEMO_MODEL, "--data", TEST_SPLIT, "--limit", "2", "--max-new-tokens", "8", "--threshold", "0.1", "--json", json.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("free-exact"), "{stdout}");
    let reports: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    std::fs::remove_file(&json).unwrap();
    let tasks: Vec<&str> = reports.as_array().unwrap().iter().map(|r| r["task"].as_str().unwrap()).collect();
    assert_eq!(tasks, ["summarize", "translate"]);
    for report in reports.as_array().unwrap() {
        assert_eq!(report["examples"], 2);
        let rows = report["strategies"].as_array().unwrap();
        let names: Vec<&str> = rows.iter().map(|r| r["strategy"].as_str().unwrap()).collect();
        assert_eq!(names, ["full", "static", "calm", "free-fixed", "free-adaptive", "free-adaptive-ref", "free-budget", "free-exact"]);
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

#[test]
fn mistakes_are_reported_with_exit_status_1() {
    let (ok, _, stderr) = free(&["generate", "--model", "/nonexistent", "hello"]);
    assert!(!ok && stderr.contains("/nonexistent/config.json"), "{stderr}");
    let (ok, _, stderr) = free(&["generate", "--model", FIXTURE, "--strategy", "fastest", "hello"]);
    assert!(!ok && stderr.contains("use full, static, calm, free or free-exact"), "{stderr}");
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

//! FREE's exact mode on the shipped demo model and real inputs from the test split: its
//! output is token-for-token the full model's, with exits and rollbacks both exercised.
//! CI checks FREE_EXACT_PER_TASK inputs per task (default 20); the closing proof runs 100
//! per task (`FREE_EXACT_PER_TASK=100 cargo test --release --test demo_model`).
#![cfg(not(target_arch = "wasm32"))]

use std::path::Path;

use free_wasm::config::ConfidenceMeasure;
use free_wasm::decode::{generate, DecodeSettings, Strategy, Threshold};
use free_wasm::Pipeline;
use serde::Deserialize;

const MAX_NEW: usize = 48;

#[derive(Clone, Deserialize)]
struct Example {
    task: String,
    source: String,
}

fn examples(per_task: usize) -> Vec<Example> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/test.jsonl");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let all: Vec<Example> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let mut picked = Vec::new();
    for task in ["summarize", "translate"] {
        let before = picked.len();
        picked.extend(all.iter().filter(|e| e.task == task).take(per_task).cloned());
        assert_eq!(picked.len() - before, per_task, "data/test.jsonl has too few {task} examples");
    }
    picked
}

#[test]
fn free_exact_equals_full_on_the_demo_model() {
    let per_task = std::env::var("FREE_EXACT_PER_TASK").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let p = Pipeline::from_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("models/free-t5-mini")).unwrap();
    let exit = p.free_config().expect("the demo model has free.json").shallow_exit_layer;
    let settings = |strategy| DecodeSettings { strategy, measure: ConfidenceMeasure::Top2Gap, max_new_tokens: MAX_NEW };
    let (mut exits, mut rollbacks, mut tokens) = (0, 0, 0);
    for ex in examples(per_task) {
        let (ids, _) = p.encode_input(&ex.source, Some(&ex.task)).unwrap();
        let full = generate(p.model(), &ids, settings(Strategy::Full), Threshold::Fixed(1.0)).unwrap();
        // At 0 every token exits (the gap is 0 only on exact ties), so the deep model
        // checks the shallow model everywhere and rolls back wherever they differ.
        for threshold in [0.0, 0.3] {
            let exact = generate(p.model(), &ids, settings(Strategy::Free { exit, exact: true }), Threshold::Fixed(threshold)).unwrap();
            assert_eq!(exact.tokens, full.tokens, "{} threshold {threshold}: {:?}", ex.task, ex.source);
            assert_eq!(exact.finished, full.finished);
            exits += exact.trace.iter().filter(|t| t.stacked && !t.rolled_back).count();
            rollbacks += exact.counters.rollbacks;
            tokens += exact.tokens.len();
        }
    }
    assert!(exits * 10 > tokens && rollbacks > 10, "exits {exits}, rollbacks {rollbacks} of {tokens} tokens: the check did not exercise both paths");
}

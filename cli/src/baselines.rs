//! `free baselines`: the scores a model must beat on a test set, without a model. For
//! summarize, the first N words of the description (lead-N) for several N; for translate,
//! the English source copied unchanged. Scored by the same metrics as `free eval`.

use std::path::Path;

use serde_json::{json, Value};

use crate::bench::{load_examples, quality};

/// The lead-N lengths tried; the synopses of the demo data are about 5-10 words long.
const LEADS: [usize; 6] = [5, 8, 10, 15, 20, 30];

fn lead(source: &str, n: usize) -> String {
    source.split_whitespace().take(n).collect::<Vec<_>>().join(" ")
}

/// One JSON object per task: `{"task", "examples", "baselines": [{"name", "quality"}, ...]}`.
pub fn run(data: &Path, task: Option<&str>, limit: usize) -> Result<Vec<Value>, String> {
    let mut reports = Vec::new();
    for (task, examples) in load_examples(data, task, limit)? {
        let refs: Vec<&str> = examples.iter().map(|e| e.target.as_str()).collect();
        let candidates: Vec<(String, Vec<String>)> = if task == "summarize" {
            LEADS.iter().map(|&n| (format!("lead-{n}"), examples.iter().map(|e| lead(&e.source, n)).collect())).collect()
        } else {
            vec![("copy-source".to_string(), examples.iter().map(|e| e.source.clone()).collect())]
        };
        let baselines: Vec<Value> =
            candidates.iter().map(|(name, texts)| json!({"name": name, "quality": quality(&task, texts, &refs).0})).collect();
        reports.push(json!({"task": task, "examples": examples.len(), "baselines": baselines}));
    }
    Ok(reports)
}

pub fn table(report: &Value) -> String {
    let mut out = format!("task {} — {} examples\n", report["task"].as_str().unwrap_or("?"), report["examples"]);
    for b in report["baselines"].as_array().into_iter().flatten() {
        let q = &b["quality"];
        let f = |k: &str| q[k].as_f64().unwrap_or(0.0);
        let scores = if q.get("rougeL").is_some() {
            format!("R1 {:.1} R2 {:.1} RL {:.1}", f("rouge1"), f("rouge2"), f("rougeL"))
        } else {
            format!("BLEU {:.1} chrF {:.1}", f("bleu"), f("chrf"))
        };
        out.push_str(&format!("{:<12} {scores}\n", b["name"].as_str().unwrap_or("?")));
    }
    out
}

//! `free eval` and `free bench`: decode a JSONL test set with one strategy, or with every
//! strategy (and every weight format asked for) on the same examples, interleaved in one
//! process (docs/method.md#how-results-are-measured), and report quality, agreement with the
//! full model, exit rate, blocks per token, speed and the bytes the weights take.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use free_wasm::backend::Backend;
use free_wasm::metrics;
use free_wasm::pipeline::{InputCut, ThresholdUse, STRATEGIES};
use free_wasm::threshold::{AdaptiveThreshold, BmmSettings, ThresholdRule};
use free_wasm::{GenerateOptions, Pipeline, StrategyName, TextGeneration};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
pub struct Example {
    pub task: String,
    pub source: String,
    pub target: String,
}

/// Examples of `task` (all tasks when None) from a JSONL file, in the file's order, the
/// first `limit` of each task.
pub fn read_examples(path: &Path, task: Option<&str>, limit: usize) -> Result<Vec<Example>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut kept: HashMap<String, usize> = HashMap::new();
    let mut examples = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let ex: Example = serde_json::from_str(line).map_err(|e| format!("{} line {}: {e}", path.display(), i + 1))?;
        if task.is_some_and(|t| t != ex.task) {
            continue;
        }
        let count = kept.entry(ex.task.clone()).or_default();
        if *count < limit {
            *count += 1;
            examples.push(ex);
        }
    }
    if examples.is_empty() {
        return Err(format!("{} has no examples{}", path.display(), task.map(|t| format!(" of task {t}")).unwrap_or_default()));
    }
    Ok(examples)
}

/// `read_examples` grouped by task, the tasks in the order they first appear.
pub fn load_examples(path: &Path, task: Option<&str>, limit: usize) -> Result<Vec<(String, Vec<Example>)>, String> {
    let mut by_task: Vec<(String, Vec<Example>)> = Vec::new();
    for ex in read_examples(path, task, limit)? {
        match by_task.iter_mut().find(|(t, _)| *t == ex.task) {
            Some((_, examples)) => examples.push(ex),
            None => by_task.push((ex.task.clone(), vec![ex])),
        }
    }
    Ok(by_task)
}

/// One strategy's results over a task's examples.
#[derive(Default)]
struct Tally {
    outputs: Vec<Vec<u32>>,
    texts: Vec<String>,
    tokens: usize,
    early: usize,
    block_rows: usize,
    encode_s: f64,
    decode_s: f64,
}

/// A loaded model the contenders run on: the pipeline and how its weights are held.
pub struct Model<'a, B: Backend> {
    pub pipeline: &'a Pipeline<B>,
    /// The weight format as the table names it (`--dtype`, or "stored").
    pub weights: String,
}

/// A named strategy as the bench runs it.
pub struct Contender {
    pub name: &'static str,
    /// The index of its model among those `run_task` is given.
    pub model: usize,
    /// What it is besides its strategy, for the help text ("" when the name says it).
    pub note: &'static str,
    pub options: GenerateOptions,
    /// free-adaptive keeps its own estimator, fresh at the start of the bench.
    pub adaptive: Option<AdaptiveThreshold>,
}

/// free-budget's share of exited tokens the deep model may disagree with, unless
/// `--max-disagreement` says otherwise.
pub const DEFAULT_BUDGET: f64 = 0.05;

/// The bench's rows: full (the ratios are against it), then each other strategy of
/// `STRATEGIES` at the fixed threshold where it takes one, FREE also with three adaptive
/// thresholds. The adaptive ones start from free.json's calibration, except
/// free-adaptive-ref: the reference ships none, and the row is there to show what its
/// rules alone do.
pub fn contenders(base: &GenerateOptions, fixed_threshold: f64, bmm: &BmmSettings, budget: f64) -> Vec<Contender> {
    let with = |strategy: StrategyName, threshold| GenerateOptions { strategy, threshold, ..base.clone() };
    let plain = |strategy: StrategyName| {
        let threshold = (strategy.info().threshold != ThresholdUse::None).then_some(fixed_threshold);
        Contender { name: strategy.as_str(), model: 0, note: "", options: with(strategy, threshold), adaptive: None }
    };
    let adaptive =
        |name, note, settings| Contender { name, model: 0, note, options: with(StrategyName::Free, None), adaptive: Some(AdaptiveThreshold::new(settings)) };
    let reference = BmmSettings { rule: ThresholdRule::Reference, learn_without_stack: false, calibration: None, ..bmm.clone() };
    let budgeted = BmmSettings { rule: ThresholdRule::budget(budget), ..bmm.clone() };
    let mut rows = vec![plain(StrategyName::Full)];
    for info in STRATEGIES.iter().filter(|s| s.name != StrategyName::Full) {
        if info.name != StrategyName::Free {
            rows.push(plain(info.name));
            continue;
        }
        rows.extend([
            Contender { name: "free-fixed", ..plain(StrategyName::Free) },
            adaptive("free-adaptive", "FREE's zeta rule, refined", bmm.clone()),
            adaptive("free-adaptive-ref", "the reference's rule, uncalibrated", reference.clone()),
            adaptive("free-budget", "the error-budget rule at R, default 0.05", budgeted.clone()),
        ]);
    }
    rows
}

/// The bench's rows as the help text lists them.
pub fn contender_list() -> String {
    let rows = contenders(&GenerateOptions::default(), 0.0, &BmmSettings::default(), DEFAULT_BUDGET);
    let names: Vec<String> =
        rows.iter().map(|c| if c.note.is_empty() { c.name.to_string() } else { format!("{} ({})", c.name, c.note) }).collect();
    let (last, rest) = names.split_last().expect("the bench has rows");
    format!("{} and {last}", rest.join(", "))
}

/// Decodes `ex` with `c` into `tally`; returns what of the input the model did not see.
/// The encoder's time is `start_with`'s (tokenizing the input, microseconds, included).
fn decode_one<B: Backend>(models: &[Model<B>], c: &mut Contender, ex: &Example, tally: &mut Tally) -> Result<InputCut, String> {
    let p = models[c.model].pipeline;
    let err = |e: free_wasm::Error| e.to_string();
    let options = GenerateOptions { task: Some(ex.task.clone()), ..c.options.clone() };
    let t0 = Instant::now();
    let mut generating = p.start_with(&ex.source, &options, c.adaptive.as_mut()).map_err(err)?;
    let t1 = Instant::now();
    generating.run().map_err(err)?;
    let t2 = Instant::now();
    let TextGeneration { text, generation, input_cut } = generating.finish().map_err(err)?;
    let blocks = p.model().num_decoder_blocks();
    let live: Vec<_> = generation.trace.iter().filter(|t| !t.rolled_back).collect();
    tally.early += live.iter().filter(|t| t.exit < blocks).count();
    tally.tokens += live.len();
    tally.block_rows += generation.counters.block_rows;
    tally.encode_s += (t1 - t0).as_secs_f64();
    tally.decode_s += (t2 - t1).as_secs_f64();
    tally.texts.push(text);
    tally.outputs.push(generation.tokens);
    Ok(input_cut)
}

/// Quality of `texts` against the references: ROUGE for summarize, BLEU/chrF otherwise.
/// Returns the scores and the one retention is computed from.
pub fn quality(task: &str, texts: &[String], refs: &[&str]) -> (Value, f64) {
    let hyps: Vec<&str> = texts.iter().map(String::as_str).collect();
    if task == "summarize" {
        let pairs: Vec<(&str, &str)> = hyps.iter().copied().zip(refs.iter().copied()).collect();
        let r = metrics::rouge(&pairs);
        (json!({"rouge1": r.rouge1, "rouge2": r.rouge2, "rougeL": r.rouge_l}), r.rouge_l)
    } else {
        let bleu = metrics::corpus_bleu(&hyps, refs);
        (json!({"bleu": bleu, "chrf": metrics::corpus_chrf(&hyps, refs)}), bleu)
    }
}

/// Runs `contenders` over `examples`, interleaved (the order rotates per example so no
/// strategy always runs first), and returns the JSON report of the task, with the number of
/// inputs cut to the model's limit (and a warning if there are any). The reference of the
/// ratios is `full` on the first model.
pub fn run_task<B: Backend>(models: &[Model<B>], task: &str, examples: &[Example], contenders: &mut [Contender], progress: bool) -> Result<Value, String> {
    let mut tallies: Vec<Tally> = contenders.iter().map(|_| Tally::default()).collect();
    let n = contenders.len();
    let mut cut = 0;
    for (i, ex) in examples.iter().enumerate() {
        for k in 0..n {
            let j = (i + k) % n;
            // Every contender reads the same input: it is counted once.
            if decode_one(models, &mut contenders[j], ex, &mut tallies[j])?.is_cut() && k == 0 {
                cut += 1;
            }
        }
        if progress {
            eprint!("\r{task}: {}/{} examples", i + 1, examples.len());
        }
    }
    if progress {
        eprintln!();
    }
    if cut > 0 {
        crate::warn_cut(models[0].pipeline, &format!("{cut} of {} {task} inputs were", examples.len()));
    }
    let refs: Vec<&str> = examples.iter().map(|e| e.target.as_str()).collect();
    let full = contenders.iter().position(|c| c.options.strategy == StrategyName::Full && c.model == 0);
    let reference = full.map(|f| (quality(task, &tallies[f].texts, &refs).1, &tallies[f]));
    let rows = contenders.iter().zip(&tallies).map(|(c, t)| {
        let (scores, primary) = quality(task, &t.texts, &refs);
        let tokens = t.tokens.max(1) as f64;
        let model = &models[c.model];
        let held: Option<usize> = model.pipeline.model().weight_bytes();
        let mut row = json!({
            "strategy": c.name,
            "weights": model.weights,
            "weights_mb": held.map(|b| b as f64 / 1e6),
            "quality": scores,
            "exit_rate": t.early as f64 / tokens,
            "blocks_per_token": t.block_rows as f64 / tokens,
            "decode_tokens_per_s": t.tokens as f64 / t.decode_s.max(1e-12),
            "decode_seconds": t.decode_s,
            "encode_seconds": t.encode_s,
            "tokens": t.tokens,
        });
        if let Some((full_primary, f)) = reference {
            let agree = t.outputs.iter().zip(&f.outputs).filter(|(a, b)| a == b).count();
            row["retention"] = json!(if full_primary > 0.0 { primary / full_primary } else { 1.0 });
            row["agreement"] = json!(agree as f64 / examples.len().max(1) as f64);
            row["decode_speedup"] = json!(f.decode_s / t.decode_s.max(1e-12));
            row["e2e_speedup"] = json!((f.decode_s + f.encode_s) / (t.decode_s + t.encode_s).max(1e-12));
        }
        if let Some(est) = &c.adaptive {
            row["threshold"] = json!(est.threshold());
        } else if let Some(t) = c.options.threshold {
            row["threshold"] = json!(t);
        }
        row
    });
    Ok(json!({"task": task, "examples": examples.len(), "truncated_inputs": cut, "strategies": rows.collect::<Vec<_>>()}))
}

/// The report as a terminal table.
pub fn table(report: &Value) -> String {
    let mut s = format!("task {} — {} examples\n", report["task"].as_str().unwrap_or("?"), report["examples"]);
    s.push_str(&format!(
        "{:<18} {:>7} {:>6} {:>22} {:>7} {:>6} {:>6} {:>10} {:>6} {:>8} {:>6} {:>6}\n",
        "strategy", "weights", "MB", "quality", "retain", "agree", "exit", "blocks/tok", "tok/s", "decode x", "e2e x", "thresh"
    ));
    let num = |v: &Value, k: &str| v.get(k).and_then(Value::as_f64);
    let fmt = |x: Option<f64>, d: usize| x.map_or("-".to_string(), |x| format!("{x:.d$}"));
    for row in report["strategies"].as_array().into_iter().flatten() {
        let q = &row["quality"];
        let quality = match num(q, "rougeL") {
            Some(rl) => format!("R1 {:.1} R2 {:.1} RL {rl:.1}", num(q, "rouge1").unwrap_or(0.0), num(q, "rouge2").unwrap_or(0.0)),
            None => format!("BLEU {:.1} chrF {:.1}", num(q, "bleu").unwrap_or(0.0), num(q, "chrf").unwrap_or(0.0)),
        };
        s.push_str(&format!(
            "{:<18} {:>7} {:>6} {:>22} {:>7} {:>6} {:>6} {:>10} {:>6} {:>8} {:>6} {:>6}\n",
            row["strategy"].as_str().unwrap_or("?"),
            row["weights"].as_str().unwrap_or("?"),
            fmt(num(row, "weights_mb"), 1),
            quality,
            fmt(num(row, "retention"), 3),
            fmt(num(row, "agreement"), 3),
            fmt(num(row, "exit_rate"), 3),
            fmt(num(row, "blocks_per_token"), 2),
            fmt(num(row, "decode_tokens_per_s"), 0),
            fmt(num(row, "decode_speedup"), 2),
            fmt(num(row, "e2e_speedup"), 2),
            fmt(num(row, "threshold"), 3),
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use free_wasm::threshold::{ClassMoments, Moments, DEFAULT_THRESHOLD};

    /// The adaptive contenders start from free.json's calibration, consistent Beta(3, 2)
    /// from 400 points and inconsistent Beta(1.4, 5.6) from 300, whose thresholds scipy puts
    /// at 0.333 (zeta rule) and 0.474 (a 5% budget) with tools/make_bmm_vectors.py's rules;
    /// free-adaptive-ref, as the reference, starts empty at the initial threshold.
    #[test]
    fn adaptive_contenders_start_from_the_calibration() {
        let calibration = ClassMoments {
            consistent: Moments { points: 400.0, mean: 0.6, variance: 0.04 },
            inconsistent: Moments { points: 300.0, mean: 0.2, variance: 0.02 },
        };
        let bmm = BmmSettings { calibration: Some(calibration), ..BmmSettings::default() };
        let started: Vec<(&str, f64)> =
            contenders(&GenerateOptions::default(), DEFAULT_THRESHOLD, &bmm, 0.05).iter().filter_map(|c| Some((c.name, c.adaptive.as_ref()?.threshold()))).collect();
        let names: Vec<&str> = started.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["free-adaptive", "free-adaptive-ref", "free-budget"]);
        for ((name, got), want) in started.into_iter().zip([0.333, 0.9, 0.474]) {
            assert!((got - want).abs() < 1e-12, "{name}: {got} vs {want}");
        }
    }
}

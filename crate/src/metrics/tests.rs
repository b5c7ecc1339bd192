//! The metrics against the vectors `tools/make_metric_vectors.py` computed with rouge-score and
//! sacreBLEU. ROUGE and chrF use only +, *, / on exactly representable counts, so they must
//! match bit for bit; BLEU goes through ln/exp, whose last bit depends on the platform's libm,
//! so it is held to 1e-9 (on a 0-100 scale).

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;
use super::tokenize::{rouge_tokens, tokenize_13a};
use super::*;
use serde_json::Value;

const VECTORS: &str = include_str!("../../../tests/fixtures/metric_vectors.json");
const BLEU_TOLERANCE: f64 = 1e-9;

fn vectors() -> Value {
    serde_json::from_str(VECTORS).expect("metric_vectors.json is valid JSON")
}

/// The fixture stores floats as Python reprs (shortest round-trip strings); Rust's parser is
/// correctly rounded, so this recovers Python's value exactly.
fn float(v: &Value, key: &str) -> f64 {
    v[key].as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("bad float {key} in {v}"))
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("bad string {key} in {v}"))
}

/// Records a mismatch instead of stopping, so one run lists them all.
struct Check(Vec<String>);

impl Check {
    fn exact(&mut self, what: &str, ours: f64, python: f64) {
        if ours.to_bits() != python.to_bits() {
            self.0.push(format!("{what}: ours {ours:?}, python {python:?}"));
        }
    }

    fn close(&mut self, what: &str, ours: f64, python: f64) {
        let within = (ours - python).abs() <= BLEU_TOLERANCE; // false for NaN
        if !within {
            self.0.push(format!("{what}: ours {ours:?}, python {python:?}"));
        }
    }

    fn finish(self, n: usize) {
        assert!(
            self.0.is_empty(),
            "{} of {n} vectors differ:\n{}",
            self.0.len(),
            self.0.join("\n")
        );
    }
}

#[test]
fn per_example_scores_match_python() {
    let v = vectors();
    let pairs = v["pairs"].as_array().expect("pairs");
    assert!(pairs.len() >= 300, "too few pairs: {}", pairs.len());
    let mut check = Check(Vec::new());
    for (i, p) in pairs.iter().enumerate() {
        let (hyp, reference) = (text(p, "hyp"), text(p, "ref"));
        let what =
            |m: &str| format!("pair {i} ({}) {m}: {hyp:?} vs {reference:?}", text(p, "kind"));
        let r = rouge_pair(hyp, reference);
        check.exact(&what("rouge1"), r.rouge1, 100.0 * float(p, "rouge1"));
        check.exact(&what("rouge2"), r.rouge2, 100.0 * float(p, "rouge2"));
        check.exact(&what("rougeL"), r.rouge_l, 100.0 * float(p, "rougeL"));
        check.exact(&what("chrF"), corpus_chrf(&[hyp], &[reference]), float(p, "chrf"));
        check.close(&what("BLEU"), corpus_bleu(&[hyp], &[reference]), float(p, "bleu"));
    }
    check.finish(pairs.len());
}

#[test]
fn corpus_scores_match_python() {
    let v = vectors();
    let pairs = v["pairs"].as_array().expect("pairs");
    let corpora = v["corpora"].as_array().expect("corpora");
    let side = |c: &Value, key: &str, field: &str| -> Vec<String> {
        let indices = c[key].as_array().expect("index list");
        indices
            .iter()
            .map(|i| text(&pairs[i.as_u64().unwrap() as usize], field).to_owned())
            .collect()
    };
    let mut check = Check(Vec::new());
    for c in corpora {
        let name = text(c, "name");
        let hyps = side(c, "hyps", "hyp");
        let refs = side(c, "refs", "ref");
        let hyps: Vec<&str> = hyps.iter().map(String::as_str).collect();
        let refs: Vec<&str> = refs.iter().map(String::as_str).collect();
        let zipped: Vec<(&str, &str)> = hyps.iter().copied().zip(refs.iter().copied()).collect();

        let r = rouge(&zipped);
        check.exact(&format!("{name} rouge1"), r.rouge1, float(c, "rouge1"));
        check.exact(&format!("{name} rouge2"), r.rouge2, float(c, "rouge2"));
        check.exact(&format!("{name} rougeL"), r.rouge_l, float(c, "rougeL"));
        check.exact(&format!("{name} chrF"), corpus_chrf(&hyps, &refs), float(c, "chrf"));
        check.close(&format!("{name} BLEU"), corpus_bleu(&hyps, &refs), float(c, "bleu"));
    }
    check.finish(corpora.len());
}

#[test]
fn tokenizers_match_python() {
    let v = vectors();
    let cases = v["tokenize"].as_array().expect("tokenize");
    let strings = |t: &Value| -> Vec<String> {
        t.as_array().expect("token list").iter().map(|s| s.as_str().unwrap().to_owned()).collect()
    };
    for case in cases {
        let input = text(case, "text");
        assert_eq!(rouge_tokens(input), strings(&case["rouge"]), "rouge tokens of {input:?}");
        assert_eq!(tokenize_13a(input), strings(&case["13a"]), "13a tokens of {input:?}");
    }
}

#[test]
fn scores_are_finite_and_in_range() {
    let v = vectors();
    for p in v["pairs"].as_array().expect("pairs") {
        let (hyp, reference) = (text(p, "hyp"), text(p, "ref"));
        let r = rouge_pair(hyp, reference);
        let bleu = corpus_bleu(&[hyp], &[reference]);
        let chrf = corpus_chrf(&[hyp], &[reference]);
        for s in [r.rouge1, r.rouge2, r.rouge_l, bleu, chrf] {
            // 100.00000000000004 is BLEU's own rounding of exp(ln 100).
            assert!(s.is_finite() && (0.0..=100.0 + 1e-9).contains(&s), "{s} for {hyp:?}");
        }
    }
}

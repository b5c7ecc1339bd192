//! Evaluation metrics for generated text, in pure Rust so they run natively and in wasm32:
//! ROUGE-1/2/L F1 exactly as Google's `rouge-score` package computes them (no stemmer), and
//! corpus BLEU and chrF exactly as sacreBLEU computes them with its defaults. All scores are on
//! a 0-100 scale; degenerate input (an empty corpus, empty strings) scores 0 and never NaN.
//!
//! The definitions were reimplemented from the packages' documented behaviour (rouge-score
//! 0.1.2, sacreBLEU 2.6.0); `tests/fixtures/metric_vectors.json`, written by
//! `tools/make_metric_vectors.py` with those packages, pins the results bit for bit.

mod bleu;
mod chrf;
mod rouge;
mod tokenize;

#[cfg(test)]
mod tests;

pub use bleu::{corpus_bleu, corpus_bleu_stats, BleuScore};
pub use chrf::corpus_chrf;
pub use rouge::{rouge, rouge_pair, Rouge};

//! ROUGE-1, ROUGE-2 and ROUGE-L F1 (Lin, 2004) as Google's `rouge-score` package computes them
//! with `RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)`: its default tokenizer
//! (see `tokenize::rouge_tokens`), clipped n-gram overlap for ROUGE-N, longest common
//! subsequence for ROUGE-L, F1 = 2PR / (P + R). The corpus score is the mean of the
//! per-example F1 values, x 100: what papers report from that package.

use super::tokenize::{clipped_matches, ngram_counts, ngram_total, rouge_tokens};

/// ROUGE F1 scores on a 0-100 scale.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct Rouge {
    pub rouge1: f64,
    pub rouge2: f64,
    pub rouge_l: f64,
}

impl Rouge {
    fn scaled(f1: [f64; 3]) -> Self {
        Rouge { rouge1: 100.0 * f1[0], rouge2: 100.0 * f1[1], rouge_l: 100.0 * f1[2] }
    }
}

/// Mean per-example ROUGE F1 x 100 over `(hypothesis, reference)` pairs; all zeros for no pairs
/// (the mean of nothing is undefined in Python).
pub fn rouge(pairs: &[(&str, &str)]) -> Rouge {
    if pairs.is_empty() {
        return Rouge::default();
    }
    let mut sums = [0.0f64; 3];
    for &(hypothesis, reference) in pairs {
        let f1 = pair_f1(hypothesis, reference);
        for (sum, f) in sums.iter_mut().zip(f1) {
            *sum += f;
        }
    }
    let n = pairs.len() as f64;
    Rouge::scaled(sums.map(|s| s / n))
}

/// ROUGE F1 x 100 of one hypothesis against its reference.
pub fn rouge_pair(hypothesis: &str, reference: &str) -> Rouge {
    Rouge::scaled(pair_f1(hypothesis, reference))
}

/// rouge-score's `fmeasure`, evaluated in the same order so the result is bit-identical.
fn fmeasure(precision: f64, recall: f64) -> f64 {
    if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    }
}

/// `[rouge1, rouge2, rougeL]` F1 on a 0-1 scale.
fn pair_f1(hypothesis: &str, reference: &str) -> [f64; 3] {
    let hyp = rouge_tokens(hypothesis);
    let reference = rouge_tokens(reference);
    [rouge_n(&hyp, &reference, 1), rouge_n(&hyp, &reference, 2), rouge_l(&hyp, &reference)]
}

fn rouge_n(hyp: &[String], reference: &[String], n: usize) -> f64 {
    let matches = clipped_matches(&ngram_counts(hyp, n), &ngram_counts(reference, n));
    // Empty n-gram sets divide by 1, so they score 0 rather than NaN: a one-word hypothesis
    // identical to a one-word reference has ROUGE-2 = 0.
    let precision = matches as f64 / ngram_total(hyp.len(), n).max(1) as f64;
    let recall = matches as f64 / ngram_total(reference.len(), n).max(1) as f64;
    fmeasure(precision, recall)
}

fn rouge_l(hyp: &[String], reference: &[String]) -> f64 {
    if hyp.is_empty() || reference.is_empty() {
        return 0.0;
    }
    let lcs = lcs_len(reference, hyp);
    fmeasure(lcs as f64 / hyp.len() as f64, lcs as f64 / reference.len() as f64)
}

/// Length of the longest common subsequence, by the usual dynamic programme kept to two rows.
fn lcs_len<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    let mut prev = vec![0usize; b.len() + 1];
    let mut cur = vec![0usize; b.len() + 1];
    for x in a {
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = if x == y { prev[j] + 1 } else { prev[j + 1].max(cur[j]) };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;
    use super::*;

    #[test]
    fn hand_computed_scores() {
        // hyp "the cat sat", ref "the cat sat on the mat": unigrams 3/3 and 3/6, bigrams 2/2
        // and 2/5, LCS 3 of 3 and of 6.
        let r = rouge_pair("the cat sat", "the cat sat on the mat");
        assert_eq!(r.rouge1, 100.0 * fmeasure(1.0, 0.5));
        assert_eq!(r.rouge2, 100.0 * fmeasure(1.0, 0.4));
        assert_eq!(r.rouge_l, 100.0 * fmeasure(1.0, 0.5));
        assert_eq!(lcs_len(&[1, 2, 3, 4, 1], &[3, 4, 1, 2, 1]), 3);
    }

    #[test]
    fn empty_inputs_score_zero() {
        assert_eq!(rouge(&[]), Rouge::default());
        assert_eq!(rouge_pair("", ""), Rouge::default());
        assert_eq!(rouge_pair("words here", ""), Rouge::default());
        assert_eq!(rouge_pair("", "words here"), Rouge::default());
        let one = rouge_pair("a", "a");
        assert_eq!((one.rouge1, one.rouge2, one.rouge_l), (100.0, 0.0, 100.0));
    }
}

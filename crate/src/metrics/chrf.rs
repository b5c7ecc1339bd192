//! Corpus chrF (Popović, 2015) as sacreBLEU computes it with its defaults,
//! `sacrebleu.corpus_chrf(hyps, [refs])`: character n-grams of orders 1..=6 over the text with
//! all whitespace removed, no word n-grams, beta = 2, case kept, and sacreBLEU's "effective
//! order" averaging (no epsilon smoothing). Counts are summed over the corpus, then the
//! precisions and recalls of the orders that have both hypothesis and reference n-grams are
//! averaged, and the F-beta of those averages is the score.

use super::tokenize::{clipped_matches, is_py_space, ngram_counts, ngram_total};

/// The maximum character n-gram order.
pub const CHAR_ORDER: usize = 6;
/// Recall weighs beta^2 = 4 times as much as precision.
pub const BETA: usize = 2;

/// Per-order `[hypothesis n-grams, reference n-grams, matches]`.
type Stats = [[usize; 3]; CHAR_ORDER];

/// sacreBLEU's default corpus chrF, 0-100. Pairs hypotheses with references in order; if the
/// lists differ in length the extra items are ignored (Python's `zip`). An empty corpus scores
/// 0 (sacreBLEU raises IndexError there).
pub fn corpus_chrf(hyps: &[&str], refs: &[&str]) -> f64 {
    let mut stats: Stats = [[0; 3]; CHAR_ORDER];
    for (hyp, reference) in hyps.iter().zip(refs) {
        for (total, segment) in stats.iter_mut().zip(segment_stats(hyp, reference)) {
            for (t, s) in total.iter_mut().zip(segment) {
                *t += s;
            }
        }
    }
    f_score(&stats)
}

/// Python's `''.join(s.split())`, as code points.
fn without_whitespace(s: &str) -> Vec<char> {
    s.chars().filter(|&c| !is_py_space(c)).collect()
}

fn segment_stats(hyp: &str, reference: &str) -> Stats {
    let hyp = without_whitespace(hyp);
    let reference = without_whitespace(reference);
    let mut stats: Stats = [[0; 3]; CHAR_ORDER];
    for (i, order) in stats.iter_mut().enumerate() {
        let n = i + 1;
        let ref_total = ngram_total(reference.len(), n);
        let matches = clipped_matches(&ngram_counts(&hyp, n), &ngram_counts(&reference, n));
        // A segment whose reference is too short for this order contributes none of its
        // hypothesis n-grams to the corpus precision of this order.
        let hyp_total = if ref_total > 0 { ngram_total(hyp.len(), n) } else { 0 };
        *order = [hyp_total, ref_total, matches];
    }
    stats
}

fn f_score(stats: &Stats) -> f64 {
    let factor = (BETA * BETA) as f64;
    let (mut avg_prec, mut avg_rec, mut effective_order) = (0.0f64, 0.0f64, 0usize);
    for &[n_hyp, n_ref, n_match] in stats {
        if n_hyp > 0 && n_ref > 0 {
            avg_prec += n_match as f64 / n_hyp as f64;
            avg_rec += n_match as f64 / n_ref as f64;
            effective_order += 1;
        }
    }
    if effective_order == 0 {
        return 0.0;
    }
    avg_prec /= effective_order as f64;
    avg_rec /= effective_order as f64;
    if avg_prec + avg_rec == 0.0 {
        return 0.0;
    }
    // Same operation order as sacreBLEU, for bit-identical results.
    let score = (1.0 + factor) * avg_prec * avg_rec / (factor * avg_prec + avg_rec);
    100.0 * score
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;
    use super::*;

    #[test]
    fn short_identical_segments_use_the_orders_they_have() {
        // "abc" has n-grams only up to order 3; those orders all match, so chrF is 100
        // (BLEU of the same pair is 0).
        assert_eq!(corpus_chrf(&["a b c"], &["a b c"]), 100.0);
        assert_eq!(corpus_chrf(&["a", "b"], &["a"]), 100.0);
    }

    #[test]
    fn degenerate_corpora_score_zero() {
        assert_eq!(corpus_chrf(&[], &[]), 0.0);
        assert_eq!(corpus_chrf(&[""], &[""]), 0.0);
        assert_eq!(corpus_chrf(&["a"], &[""]), 0.0);
        assert_eq!(corpus_chrf(&[""], &["a"]), 0.0);
        assert_eq!(corpus_chrf(&["\u{1c}"], &["x"]), 0.0);
        assert_eq!(corpus_chrf(&["xyz"], &["abc"]), 0.0);
    }

    #[test]
    fn hand_computed_partial_match() {
        // "ab" vs "abc": order 1 P = 1, R = 2/3; order 2 P = 1, R = 1/2; order 3 has no
        // hypothesis n-gram and is left out.
        let (p, r) = ((1.0 + 1.0) / 2.0, (2.0 / 3.0 + 0.5) / 2.0);
        let expected = 100.0 * ((1.0 + 4.0) * p * r / (4.0 * p + r));
        assert_eq!(corpus_chrf(&["ab"], &["abc"]), expected);
    }
}

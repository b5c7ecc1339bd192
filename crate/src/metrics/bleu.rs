//! Corpus BLEU (Papineni et al., 2002) as sacreBLEU computes it with its defaults,
//! `sacrebleu.corpus_bleu(hyps, [refs])`: one reference per hypothesis, tokenizer 13a, case
//! kept, n-grams up to 4, exponential ("exp", the mteval-v13a NIST) smoothing, no effective
//! order. Statistics are summed over the corpus before any ratio is taken.

use super::tokenize::{clipped_matches, ngram_counts, ngram_total, tokenize_13a};

/// The maximum n-gram order.
pub const MAX_ORDER: usize = 4;

/// A corpus BLEU score with the statistics it came from, as sacreBLEU reports them.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BleuScore {
    /// BLEU on a 0-100 scale.
    pub score: f64,
    /// Clipped n-gram matches for n = 1..=4, summed over the corpus.
    pub counts: [usize; MAX_ORDER],
    /// Hypothesis n-grams for n = 1..=4, summed over the corpus.
    pub totals: [usize; MAX_ORDER],
    /// Smoothed n-gram precisions, 0-100 (all zero when nothing matched).
    pub precisions: [f64; MAX_ORDER],
    /// Brevity penalty.
    pub bp: f64,
    /// Hypothesis and reference lengths in 13a tokens.
    pub sys_len: usize,
    pub ref_len: usize,
}

/// sacreBLEU's default corpus BLEU, 0-100. Pairs hypotheses with references in order; if the
/// lists differ in length the extra items are ignored (Python's `zip`). An empty corpus scores
/// 0 (sacreBLEU raises IndexError there).
pub fn corpus_bleu(hyps: &[&str], refs: &[&str]) -> f64 {
    corpus_bleu_stats(hyps, refs).score
}

/// [`corpus_bleu`] with its sufficient statistics.
pub fn corpus_bleu_stats(hyps: &[&str], refs: &[&str]) -> BleuScore {
    let mut counts = [0usize; MAX_ORDER];
    let mut totals = [0usize; MAX_ORDER];
    let (mut sys_len, mut ref_len) = (0usize, 0usize);
    for (hyp, reference) in hyps.iter().zip(refs) {
        let hyp = tokenize_13a(hyp);
        let reference = tokenize_13a(reference);
        sys_len += hyp.len();
        ref_len += reference.len();
        for n in 1..=MAX_ORDER {
            let hyp_grams = ngram_counts(&hyp, n);
            counts[n - 1] += clipped_matches(&hyp_grams, &ngram_counts(&reference, n));
            totals[n - 1] += ngram_total(hyp.len(), n);
        }
    }
    score_from_stats(counts, totals, sys_len, ref_len)
}

/// sacreBLEU's natural log, floored: log(0) is taken as -9999999999 so that a zero precision
/// drives the geometric mean to 0 instead of producing NaN.
fn floored_ln(x: f64) -> f64 {
    if x == 0.0 {
        -9_999_999_999.0
    } else {
        x.ln()
    }
}

fn score_from_stats(
    counts: [usize; MAX_ORDER],
    totals: [usize; MAX_ORDER],
    sys_len: usize,
    ref_len: usize,
) -> BleuScore {
    let bp = if sys_len >= ref_len {
        1.0
    } else if sys_len > 0 {
        (1.0 - ref_len as f64 / sys_len as f64).exp()
    } else {
        0.0
    };
    let mut precisions = [0.0f64; MAX_ORDER];
    let mut result = BleuScore { score: 0.0, counts, totals, precisions, bp, sys_len, ref_len };
    if counts.iter().all(|&c| c == 0) {
        return result;
    }

    // Each order with no match gets 1 / (2^k * total), k counting the zero orders so far.
    // An order with no hypothesis n-gram at all stops the loop, leaving it and the higher
    // orders at precision 0, hence BLEU 0 (a corpus of hypotheses shorter than 4 tokens).
    let mut smooth = 1.0f64;
    for n in 0..MAX_ORDER {
        if totals[n] == 0 {
            break;
        }
        precisions[n] = if counts[n] == 0 {
            smooth *= 2.0;
            100.0 / (smooth * totals[n] as f64)
        } else {
            100.0 * counts[n] as f64 / totals[n] as f64
        };
    }
    // Summed left to right as Python 3.11's `sum` does, for bit-identical results.
    let log_sum = precisions.iter().fold(0.0f64, |acc, &p| acc + floored_ln(p));
    result.score = bp * (log_sum / MAX_ORDER as f64).exp();
    result.precisions = precisions;
    result
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;
    use super::*;

    #[test]
    fn identical_long_segment_is_100_up_to_rounding() {
        // exp(ln(100)) is 100.00000000000004 in binary64, in sacreBLEU too.
        let s = corpus_bleu_stats(&["a b c d"], &["a b c d"]);
        assert_eq!(s.score, 100.00000000000004);
        assert_eq!((s.counts, s.totals, s.bp), ([4, 3, 2, 1], [4, 3, 2, 1], 1.0));
    }

    #[test]
    fn degenerate_corpora_score_zero() {
        assert_eq!(corpus_bleu(&[], &[]), 0.0);
        assert_eq!(corpus_bleu(&[""], &[""]), 0.0);
        assert_eq!(corpus_bleu(&["a"], &[""]), 0.0);
        assert_eq!(corpus_bleu(&[""], &["a"]), 0.0);
        // Three tokens: no 4-gram, so precision 4 is 0 and so is BLEU.
        assert_eq!(corpus_bleu(&["a b c"], &["a b c"]), 0.0);
        // Extra hypotheses are ignored, like Python's zip.
        assert_eq!(
            corpus_bleu(&["a b c d", "x"], &["a b c d"]),
            corpus_bleu(&["a b c d"], &["a b c d"])
        );
    }

    #[test]
    fn exp_smoothing_and_brevity_penalty() {
        // 5 hyp tokens vs 6 ref tokens; 4 unigram and 1 bigram match, no 3- or 4-gram match.
        let s = corpus_bleu_stats(&["the cat on a mat"], &["the cat sat on the mat"]);
        assert_eq!(s.counts, [4, 1, 0, 0]);
        assert_eq!(s.totals, [5, 4, 3, 2]);
        assert_eq!(s.precisions, [80.0, 25.0, 100.0 / 6.0, 100.0 / 8.0]);
        assert_eq!(s.bp, (1.0f64 - 6.0 / 5.0).exp());
    }
}

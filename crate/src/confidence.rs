//! Confidence of an exit's prediction from its logits (docs/method.md#confidence), and the
//! argmax.

use crate::config::ConfidenceMeasure;

/// The argmax of one row of logits (the first index on ties, as PyTorch) and its
/// confidence: p(1) - p(2) or p(1) of the softmax.
pub fn argmax_confidence(logits: &[f32], measure: ConfidenceMeasure) -> (u32, f64) {
    let (mut best, mut second) = ((0usize, f32::NEG_INFINITY), f32::NEG_INFINITY);
    for (i, &v) in logits.iter().enumerate() {
        if v > best.1 {
            second = best.1;
            best = (i, v);
        } else if v > second {
            second = v;
        }
    }
    let z: f64 = logits.iter().map(|&v| ((v - best.1) as f64).exp()).sum();
    (best.0 as u32, confidence_of(best.1, second, z, measure))
}

/// The confidence from the largest and second-largest logit and the softmax normaliser
/// relative to the largest, Z = sum(exp(l - l1)): p(1) = 1/Z, p(2) = exp(l2 - l1)/Z. The
/// GPU backend reads back exactly these three numbers per row.
pub fn confidence_of(best: f32, second: f32, z: f64, measure: ConfidenceMeasure) -> f64 {
    let p1 = 1.0 / z;
    match measure {
        ConfidenceMeasure::MaxProb => p1,
        ConfidenceMeasure::Top2Gap => p1 - ((second - best) as f64).exp() / z,
    }
}

/// The argmax of one row (first index on ties), without the softmax.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = (0, f32::NEG_INFINITY);
    for (i, &v) in logits.iter().enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best.0 as u32
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;
    use super::*;

    #[test]
    fn top2_gap_and_max_prob_match_a_hand_softmax() {
        let logits = [1.0f32, 3.0, 2.0, 3.0f32.ln()];
        let e: Vec<f64> = logits.iter().map(|&v| (v as f64).exp()).collect();
        let z: f64 = e.iter().sum();
        let (id, gap) = argmax_confidence(&logits, ConfidenceMeasure::Top2Gap);
        assert_eq!(id, 1);
        assert!((gap - (e[1] - e[2]) / z).abs() < 1e-12);
        let (_, p1) = argmax_confidence(&logits, ConfidenceMeasure::MaxProb);
        assert!((p1 - e[1] / z).abs() < 1e-12);
    }

    #[test]
    fn ties_pick_the_first_index_with_zero_gap() {
        let (id, gap) = argmax_confidence(&[0.5, 2.0, 2.0], ConfidenceMeasure::Top2Gap);
        assert_eq!((id, gap), (1, 0.0));
        assert_eq!(argmax(&[0.5, 2.0, 2.0]), 1);
        assert_eq!(argmax(&[-3.0, -1.0, -2.0]), 1);
    }
}

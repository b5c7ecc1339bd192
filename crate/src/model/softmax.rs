//! Softmax over the last dimension in one pass per row, with an exp that vectorises.
//!
//! Attention's softmax runs over heads x queries x keys scores: for a 150-token input that
//! is 90,000 exps per encoder block. Built from candle ops it was five passes with four
//! temporaries, and on wasm32 every exp was a scalar call into libm's `expf`, a fifth of
//! the encoder's time in the browser. `exp_nonpositive` is straight-line arithmetic that
//! LLVM turns into simd128 (or SSE) lanes.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};

use crate::error::Result;

/// softmax(x) over the last dimension of a contiguous f32 tensor. Rows that are entirely
/// -inf cannot occur (every query sees at least itself).
pub fn softmax_last(x: &Tensor) -> Result<Tensor> {
    Ok(x.contiguous()?.apply_op1_no_bwd(&SoftmaxLast)?)
}

/// 1.5 * 2^23: adding it to a float below 2^22 in magnitude rounds that float to an integer
/// (to nearest, ties to even) and leaves the integer in the low mantissa bits.
const ROUNDER: f32 = 12_582_912.0;
/// Below this e^x is not a normal f32; it is flushed to 0 (libm gives a subnormal, at most
/// 1.2e-38, beside a row sum of at least 1).
const SMALLEST: f32 = -87.336_54;

/// e^x for x <= 0, within 2 ulp of the exact value (Cephes' `expf`: x = n ln 2 + r with
/// |r| <= ln 2 / 2, a degree-7 polynomial for e^r, then 2^n in the exponent bits); 0 for
/// x below `SMALLEST`, -inf included. Branch-free so that loops over it vectorise.
#[inline(always)]
fn exp_nonpositive(x: f32) -> f32 {
    // A compare, not f32::max, which wasm32 can only do with a libm call (see softmax_row).
    let xc = if x > SMALLEST { x } else { SMALLEST };
    let t = xc * std::f32::consts::LOG2_E + ROUNDER;
    let n = t - ROUNDER;
    // ln 2 in two parts, so n * LN2_HI is exact and r keeps its low bits.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5; // Cephes: 5.0000001201e-1, which is 0.5 in f32
    let er = p * (r * r) + r + 1.0;
    // n is in [-126, 0]: 2^n is the normal float with biased exponent n + 127.
    let k = t.to_bits() as i32 - ROUNDER.to_bits() as i32;
    let scale = f32::from_bits(((k + 127) << 23) as u32);
    if x < SMALLEST { 0.0 } else { er * scale }
}

struct SoftmaxLast;

impl CustomOp1 for SoftmaxLast {
    fn name(&self) -> &'static str {
        "softmax-last"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(all) = storage else { candle_core::bail!("softmax: input must be f32") };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("softmax: input must be contiguous")
        };
        let width = layout.shape().dims().last().copied().unwrap_or(1);
        let mut out = all[start..end].to_vec();
        if width > 0 {
            for row in out.chunks_exact_mut(width) {
                softmax_row(row);
            }
        }
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

fn softmax_row(row: &mut [f32]) {
    // A compare, not f32::max: wasm32 has no instruction with max's NaN rule, so max is a
    // libm call per element; scores are never NaN.
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    let mut sum = 0.0;
    for v in row.iter_mut() {
        *v = exp_nonpositive(*v - max);
        sum += *v;
    }
    for v in row.iter_mut() {
        *v /= sum;
    }
}

/// These run natively and, through wasm-pack, in the browser.
#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// The distance between two floats of the same sign, in units in the last place.
    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    #[test]
    fn exp_is_within_2_ulp_of_the_exact_value_down_to_the_smallest_normal() {
        let mut worst = (0, 0.0);
        // Every 97th float from -0 down to SMALLEST, and SMALLEST itself.
        let xs = (0..).map(|k| f32::from_bits((-0f32).to_bits() + 97 * k)).take_while(|x| *x >= SMALLEST).chain([SMALLEST]);
        for x in xs {
            let want = (x as f64).exp() as f32;
            let u = ulps(exp_nonpositive(x), want);
            if u > worst.0 {
                worst = (u, x);
            }
        }
        assert!(worst.0 <= 2, "{} ulp at x = {}", worst.0, worst.1);
    }

    #[test]
    fn exp_flushes_below_the_normal_range_and_at_minus_infinity() {
        for x in [-87.34, -100.0, -1e30, f32::NEG_INFINITY] {
            assert_eq!(exp_nonpositive(x), 0.0, "x = {x}");
        }
        assert_eq!(exp_nonpositive(0.0), 1.0);
    }

    #[test]
    fn softmax_matches_a_float64_reference_and_zeroes_masked_keys() {
        let dev = candle_core::Device::Cpu;
        let neg = f32::NEG_INFINITY;
        let rows: [[f32; 5]; 3] = [[1.5, -2.0, 0.25, 30.0, -60.0], [0.0, 0.0, 0.0, neg, neg], [-3.0, 7.5, neg, 2.0, -0.5]];
        let x = Tensor::new(&rows, &dev).unwrap();
        // A transposed view: the op makes it contiguous first.
        let got: Vec<Vec<f32>> = softmax_last(&x.t().unwrap().t().unwrap()).unwrap().to_vec2().unwrap();
        for (row, got) in rows.iter().zip(&got) {
            let max = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
            let e: Vec<f64> = row.iter().map(|&v| (v as f64 - max).exp()).collect();
            let sum: f64 = e.iter().sum();
            for (g, e) in got.iter().zip(&e) {
                let want = (e / sum) as f32;
                // Relative error of a few ulp, or a flushed subnormal.
                assert!((g - want).abs() <= 4.0 * f32::EPSILON * want + f32::MIN_POSITIVE, "{g} vs {want} in {row:?}");
            }
        }
        assert_eq!(got[1], [1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0, 0.0, 0.0]);
    }
}

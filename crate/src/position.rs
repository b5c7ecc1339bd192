//! T5's relative position bias: positions differences fall into log-spaced buckets, each
//! bucket has a learned bias per head, owned by block 0 of a stack and shared by all blocks.
//! Bidirectional buckets in the encoder, causal in decoder self-attention.

use candle_core::{Device, Tensor};

use crate::error::Result;

/// HF's `_relative_position_bucket` for `relative = key_position - query_position`.
/// The logarithmic branch is computed in f32 like PyTorch's, so bucket edges agree.
pub fn bucket(relative: i64, bidirectional: bool, num_buckets: usize, max_distance: usize) -> usize {
    let mut buckets = num_buckets;
    let mut offset = 0;
    let distance = if bidirectional {
        buckets /= 2;
        if relative > 0 {
            offset = buckets;
        }
        relative.unsigned_abs() as usize
    } else {
        (-relative).max(0) as usize
    };
    let max_exact = buckets / 2;
    if distance < max_exact {
        return offset + distance;
    }
    let log_ratio = (distance as f32 / max_exact as f32).ln()
        / ((max_distance as f64 / max_exact as f64).ln() as f32);
    let large = max_exact + (log_ratio * (buckets - max_exact) as f32) as usize;
    offset + large.min(buckets - 1)
}

pub struct PositionBias {
    /// `relative_attention_bias.weight`: (num_buckets, num_heads), row-major.
    table: Vec<f32>,
    heads: usize,
    num_buckets: usize,
    max_distance: usize,
    bidirectional: bool,
}

impl PositionBias {
    pub fn new(table: &Tensor, bidirectional: bool, max_distance: usize) -> Result<Self> {
        let (num_buckets, heads) = table.dims2()?;
        Ok(PositionBias {
            table: table.flatten_all()?.to_vec1()?,
            heads,
            num_buckets,
            max_distance,
            bidirectional,
        })
    }

    /// The bias of every head for every relative position `key - query` in
    /// `-(max_len - 1)..max_len`, as [head][relative + max_len - 1]: the table the GPU's
    /// attention kernel reads (bucket edges computed here, once, exactly as on the CPU).
    pub fn by_relative(&self, max_len: usize) -> Vec<f32> {
        let len = 2 * max_len - 1;
        let mut out = vec![0f32; self.heads * len];
        for i in 0..len {
            let b = bucket(i as i64 - (max_len as i64 - 1), self.bidirectional, self.num_buckets, self.max_distance);
            for h in 0..self.heads {
                out[h * len + i] = self.table[b * self.heads + h];
            }
        }
        out
    }

    /// The bias added to attention logits, (heads, queries, keys), for queries at
    /// positions `query_start..query_start + queries` over keys `0..keys`. With `causal`,
    /// keys after a query are masked with -inf.
    pub fn bias(
        &self,
        query_start: usize,
        queries: usize,
        keys: usize,
        causal: bool,
        device: &Device,
    ) -> Result<Tensor> {
        let mut out = vec![0f32; self.heads * queries * keys];
        for qi in 0..queries {
            let q = query_start + qi;
            for k in 0..keys {
                let idx = |h: usize| (h * queries + qi) * keys + k;
                if causal && k > q {
                    for h in 0..self.heads {
                        out[idx(h)] = f32::NEG_INFINITY;
                    }
                    continue;
                }
                let b = bucket(k as i64 - q as i64, self.bidirectional, self.num_buckets, self.max_distance);
                let row = &self.table[b * self.heads..(b + 1) * self.heads];
                for (h, v) in row.iter().enumerate() {
                    out[idx(h)] = *v;
                }
            }
        }
        Ok(Tensor::from_vec(out, (self.heads, queries, keys), device)?)
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;
    use super::*;

    #[test]
    fn buckets_match_hand_computed_t5_values() {
        // num_buckets 32, max_distance 128 (T5's defaults). Bidirectional: 16 per side,
        // exact below 8, then log-spaced up to bucket 15.
        assert_eq!(bucket(0, true, 32, 128), 0);
        assert_eq!(bucket(-3, true, 32, 128), 3);
        assert_eq!(bucket(3, true, 32, 128), 19);
        // 8 + trunc(ln(16/8) / ln(128/8) * 8) = 8 + 2
        assert_eq!(bucket(-16, true, 32, 128), 10);
        assert_eq!(bucket(-1000, true, 32, 128), 15);
        assert_eq!(bucket(1000, true, 32, 128), 31);
        // Causal: future keys share bucket 0; past ones use all 32.
        assert_eq!(bucket(5, false, 32, 128), 0);
        assert_eq!(bucket(-15, false, 32, 128), 15);
        // 16 + trunc(ln(32/16) / ln(128/16) * 16) = 16 + 5
        assert_eq!(bucket(-32, false, 32, 128), 21);
        assert_eq!(bucket(-500, false, 32, 128), 31);
    }

    #[test]
    fn causal_bias_masks_future_keys_and_reads_the_table() {
        // 4 buckets x 2 heads; head h of bucket b holds 10*b + h.
        let table = Tensor::from_vec(vec![0f32, 1., 10., 11., 20., 21., 30., 31.], (4, 2), &Device::Cpu).unwrap();
        let pb = PositionBias::new(&table, false, 8).unwrap();
        // Two queries at positions 1 and 2 over keys 0..3.
        let b = pb.bias(1, 2, 3, true, &Device::Cpu).unwrap().to_vec3::<f32>().unwrap();
        assert_eq!(b[0][0], vec![10., 0., f32::NEG_INFINITY]);
        assert_eq!(b[1][1], vec![21., 11., 1.]);
    }
}

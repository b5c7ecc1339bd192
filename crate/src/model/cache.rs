//! Decoder state: per-block self-attention K/V that grow one row per token, and
//! cross-attention K/V computed once from the encoder output. The state is owned by the
//! caller, not hidden inside attention modules, so a decoding strategy can let blocks fall
//! behind (FREE's deep blocks), create them late, and truncate them (exact mode).

use candle_core::Tensor;

use crate::error::Result;

#[derive(Default)]
pub struct BlockCache {
    /// Self-attention keys and values, each (heads, capacity, d_kv), of which the first `len`
    /// positions are filled. Rows are written in place and the capacity doubles when full, so
    /// a token costs a copy of its own row, not of the whole cache (a concatenation per token
    /// copied every earlier row: quadratic in the output length). Not `Clone`: a clone would
    /// share the storage these writes go to.
    self_kv: Option<(Tensor, Tensor)>,
    len: usize,
    /// Cross-attention keys and values over the encoder output, (heads, source_len, d_kv).
    pub cross_kv: Option<(Tensor, Tensor)>,
}

/// Positions a cache holds before its first doubling: a generation within the default cap of
/// 64 new tokens (the start token and the 63 fed back) never grows it.
const FIRST_CAPACITY: usize = 64;

impl BlockCache {
    /// How many target positions this block has seen.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends new rows (each (heads, rows, d_kv), contiguous) and returns the whole keys and
    /// values: views of the cache, valid until the next append or truncation.
    pub fn append(&mut self, k: Tensor, v: Tensor) -> Result<(Tensor, Tensor)> {
        let end = self.len + k.dim(1)?;
        let capacity = self.self_kv.as_ref().map_or(0, |(ck, _)| ck.dims()[1]);
        if end > capacity {
            let (heads, _, d_kv) = k.dims3()?;
            let grown = end.max(2 * capacity).max(FIRST_CAPACITY);
            let fresh = || Tensor::zeros((heads, grown, d_kv), k.dtype(), k.device());
            let (nk, nv) = (fresh()?, fresh()?);
            if let Some((ck, cv)) = &self.self_kv {
                if self.len > 0 {
                    nk.slice_set(&ck.narrow(1, 0, self.len)?.contiguous()?, 1, 0)?;
                    nv.slice_set(&cv.narrow(1, 0, self.len)?.contiguous()?, 1, 0)?;
                }
            }
            self.self_kv = Some((nk, nv));
        }
        let (ck, cv) = self.self_kv.as_ref().expect("the cache was just made large enough");
        ck.slice_set(&k, 1, self.len)?;
        cv.slice_set(&v, 1, self.len)?;
        self.len = end;
        Ok((ck.narrow(1, 0, end)?, cv.narrow(1, 0, end)?))
    }

    /// Forgets every position from `len` on (they are overwritten by later appends).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// The self-attention keys and values of the positions seen, for tests that compare caches.
    pub fn self_kv(&self) -> Result<Option<(Tensor, Tensor)>> {
        match &self.self_kv {
            Some((k, v)) if self.len > 0 => Ok(Some((k.narrow(1, 0, self.len)?, v.narrow(1, 0, self.len)?))),
            _ => Ok(None),
        }
    }
}

/// Everything a decoder needs between steps for one generation.
pub struct DecoderState {
    /// The encoder's final output, (source_len, d_model).
    pub encoder_output: Tensor,
    pub blocks: Vec<BlockCache>,
}

impl DecoderState {
    pub fn new(encoder_output: Tensor, blocks: usize) -> Self {
        DecoderState { encoder_output, blocks: (0..blocks).map(|_| BlockCache::default()).collect() }
    }

    pub fn truncate(&mut self, len: usize) {
        self.blocks.iter_mut().for_each(|b| b.truncate(len))
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;
    use candle_core::{Device, Tensor};

    use super::BlockCache;

    /// Rows of (heads 2, n, d_kv 3) whose values say which append and position they are.
    fn rows(tag: f32, n: usize) -> Tensor {
        let data: Vec<f32> = (0..2 * n * 3).map(|i| tag * 1000.0 + i as f32).collect();
        Tensor::from_vec(data, (2, n, 3), &Device::Cpu).unwrap()
    }

    /// Appends across two doublings, truncates (as exact mode's rollbacks do) and appends
    /// again over the forgotten positions: the cache always holds exactly the rows a
    /// concatenation of the surviving appends would.
    #[test]
    fn appends_and_truncations_keep_exactly_the_surviving_rows() {
        let mut cache = BlockCache::default();
        let mut expected: Option<Tensor> = None;
        let steps: [(usize, Option<usize>); 9] =
            [(1, None), (40, None), (30, Some(50)), (1, None), (70, Some(120)), (5, Some(3)), (1, None), (200, None), (2, Some(0))];
        for (tag, (n, cut)) in steps.into_iter().enumerate() {
            let new = rows(tag as f32, n);
            let (k, v) = cache.append(new.clone(), (new.clone() * 2.0).unwrap()).unwrap();
            let whole = match expected.take() {
                None => new,
                Some(e) => Tensor::cat(&[&e, &new], 1).unwrap(),
            };
            assert_eq!(k.to_vec3::<f32>().unwrap(), whole.to_vec3::<f32>().unwrap(), "keys after append {tag}");
            assert_eq!(v.to_vec3::<f32>().unwrap(), (&whole * 2.0).unwrap().to_vec3::<f32>().unwrap(), "values after append {tag}");
            expected = Some(whole);
            if let Some(len) = cut {
                cache.truncate(len);
                expected = expected.map(|e| e.narrow(1, 0, len).unwrap()).filter(|_| len > 0);
            }
            let want = expected.as_ref().map_or(0, |e| e.dims()[1]);
            assert_eq!(cache.len(), want);
            let held = cache.self_kv().unwrap().map(|(k, _)| k.to_vec3::<f32>().unwrap());
            assert_eq!(held, expected.as_ref().map(|e| e.to_vec3::<f32>().unwrap()), "held after step {tag}");
        }
    }
}

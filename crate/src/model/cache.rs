//! Decoder state: per-block self-attention K/V that grow one row per token, and
//! cross-attention K/V computed once from the encoder output. The state is owned by the
//! caller, not hidden inside attention modules, so a decoding strategy can let blocks fall
//! behind (FREE's deep blocks), create them late, and truncate them (exact mode).

use candle_core::Tensor;

use crate::error::Result;

#[derive(Default, Clone)]
pub struct BlockCache {
    /// Self-attention keys and values, each (heads, len, d_kv); None before the first row.
    self_kv: Option<(Tensor, Tensor)>,
    /// Cross-attention keys and values over the encoder output, (heads, source_len, d_kv).
    pub cross_kv: Option<(Tensor, Tensor)>,
}

impl BlockCache {
    /// How many target positions this block has seen.
    pub fn len(&self) -> usize {
        self.self_kv.as_ref().map_or(0, |(k, _)| k.dims()[1])
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends new rows and returns the whole keys and values.
    pub fn append(&mut self, k: Tensor, v: Tensor) -> Result<(Tensor, Tensor)> {
        let kv = match self.self_kv.take() {
            None => (k, v),
            Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 1)?, Tensor::cat(&[&pv, &v], 1)?),
        };
        self.self_kv = Some(kv.clone());
        Ok(kv)
    }

    /// Forgets every position from `len` on.
    pub fn truncate(&mut self, len: usize) -> Result<()> {
        if len >= self.len() {
            return Ok(());
        }
        self.self_kv = match self.self_kv.take() {
            Some((k, v)) if len > 0 => Some((k.narrow(1, 0, len)?, v.narrow(1, 0, len)?)),
            _ => None,
        };
        Ok(())
    }

    /// The self-attention keys and values, for tests that compare caches.
    pub fn self_kv(&self) -> Option<&(Tensor, Tensor)> {
        self.self_kv.as_ref()
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
        DecoderState { encoder_output, blocks: vec![BlockCache::default(); blocks] }
    }

    pub fn truncate(&mut self, len: usize) -> Result<()> {
        self.blocks.iter_mut().try_for_each(|b| b.truncate(len))
    }
}

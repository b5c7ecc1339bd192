//! T5 encoder-decoder (Hugging Face's `T5ForConditionalGeneration`, batch size 1) with the
//! shallow-deep split of FREE: any range of decoder blocks can be run on its own, and the
//! logits of any exit go through the same final norm and LM head
//! (docs/method.md#the-shallow-deep-module).

mod cache;
mod layers;
mod softmax;

use std::cell::Cell;
use std::ops::Range;
use std::sync::Arc;

use candle_core::{Device, Tensor};

pub use cache::{BlockCache, DecoderState};
use layers::{Attention, FeedForward, RmsNorm};

use crate::checkpoint::{self, Checkpoint, Take};
use crate::config::T5Config;
use crate::error::{Error, Result};
use crate::matrix::{Dtype, Matrix};
use crate::position::PositionBias;
use crate::weights::Weights;

/// The CPU takes matrices as `Matrix` (as `dtype` asks; without it f16 kept where the CPU
/// widens it in hardware) and vectors as candle tensors, and counts the bytes they hold.
struct CpuTake {
    dtype: Option<Dtype>,
    held: Cell<usize>,
}

impl Take for CpuTake {
    type Matrix = Arc<Matrix>;
    type Vector = Tensor;

    fn matrix(&self, w: &Weights, name: &str, [rows, cols]: [usize; 2]) -> Result<Arc<Matrix>> {
        let m = w.matrix(name, rows, cols, self.dtype)?;
        self.held.set(self.held.get() + m.bytes());
        Ok(Arc::new(m))
    }

    fn vector(&self, w: &Weights, name: &str, len: usize) -> Result<Tensor> {
        self.held.set(self.held.get() + len * std::mem::size_of::<f32>());
        w.get(name, &[len])
    }

    fn tied(&self, embedding: &Arc<Matrix>) -> Arc<Matrix> {
        Arc::clone(embedding)
    }
}

struct EncoderBlock {
    attn_norm: RmsNorm,
    attn: Attention,
    ff_norm: RmsNorm,
    ff: FeedForward,
}

impl EncoderBlock {
    fn new(b: checkpoint::EncoderBlock<Arc<Matrix>, Tensor>, cfg: &T5Config) -> Self {
        EncoderBlock {
            attn_norm: RmsNorm::new(b.attn_norm, cfg),
            attn: Attention::new(b.attn, cfg),
            ff_norm: RmsNorm::new(b.ff_norm, cfg),
            ff: FeedForward::new(b.ff, cfg),
        }
    }

    fn forward(&self, h: &Tensor, bias: &Tensor) -> Result<Tensor> {
        let x = self.attn_norm.forward(h)?;
        let (k, v) = self.attn.keys_values(&x)?;
        let h = (h + self.attn.attend(&self.attn.query(&x)?, &k, &v, Some(bias))?)?;
        Ok((&h + self.ff.forward(&self.ff_norm.forward(&h)?)?)?)
    }
}

struct DecoderBlock {
    self_norm: RmsNorm,
    self_attn: Attention,
    cross_norm: RmsNorm,
    cross_attn: Attention,
    ff_norm: RmsNorm,
    ff: FeedForward,
}

impl DecoderBlock {
    fn new(b: checkpoint::DecoderBlock<Arc<Matrix>, Tensor>, cfg: &T5Config) -> Self {
        DecoderBlock {
            self_norm: RmsNorm::new(b.self_norm, cfg),
            self_attn: Attention::new(b.self_attn, cfg),
            cross_norm: RmsNorm::new(b.cross_norm, cfg),
            cross_attn: Attention::new(b.cross_attn, cfg),
            ff_norm: RmsNorm::new(b.ff_norm, cfg),
            ff: FeedForward::new(b.ff, cfg),
        }
    }

    /// Runs new rows through the block, appending their keys and values to `cache`.
    /// `bias` is the causal position bias of these rows over the cache after appending.
    fn forward(&self, h: &Tensor, cache: &mut BlockCache, encoder_output: &Tensor, bias: &Tensor) -> Result<Tensor> {
        let x = self.self_norm.forward(h)?;
        let (k, v) = self.self_attn.keys_values(&x)?;
        let (k, v) = cache.append(k, v)?;
        let h = (h + self.self_attn.attend(&self.self_attn.query(&x)?, &k, &v, Some(bias))?)?;

        if cache.cross_kv.is_none() {
            cache.cross_kv = Some(self.cross_attn.keys_values(encoder_output)?);
        }
        let (ck, cv) = cache.cross_kv.as_ref().expect("cross K/V were just filled");
        let x = self.cross_norm.forward(&h)?;
        let h = (&h + self.cross_attn.attend(&self.cross_attn.query(&x)?, ck, cv, None)?)?;

        Ok((&h + self.ff.forward(&self.ff_norm.forward(&h)?)?)?)
    }

    /// CALM's state propagation: a skipped block still caches keys and values, computed
    /// from the hidden state the token exited with.
    fn append_copied_state(&self, h: &Tensor, cache: &mut BlockCache) -> Result<()> {
        let (k, v) = self.self_attn.keys_values(&self.self_norm.forward(h)?)?;
        cache.append(k, v)?;
        Ok(())
    }
}

pub struct T5Model {
    config: T5Config,
    device: Device,
    /// (vocab, d_model)
    embedding: Arc<Matrix>,
    encoder: Vec<EncoderBlock>,
    encoder_bias: PositionBias,
    encoder_norm: RmsNorm,
    decoder: Vec<DecoderBlock>,
    decoder_bias: PositionBias,
    decoder_norm: RmsNorm,
    /// (vocab, d_model); the shared embedding when tied.
    lm_head: Arc<Matrix>,
    /// d_model^-0.5 for T5 v1.0 (`scale_decoder_outputs`), else 1.
    head_scale: f64,
    /// Bytes of the weight matrices and vectors (a tied head counted once).
    weight_bytes: usize,
}

impl T5Model {
    pub fn load(config: T5Config, weights: Weights, device: &Device) -> Result<Self> {
        T5Model::load_as(config, weights, device, None)
    }

    /// `load` with the weight matrices held as `dtype` (None: as stored).
    pub fn load_as(config: T5Config, weights: Weights, device: &Device, dtype: Option<Dtype>) -> Result<Self> {
        let take = CpuTake { dtype, held: Cell::new(0) };
        let c = Checkpoint::take(&config, weights, &take)?;
        let cfg = &config;
        Ok(T5Model {
            embedding: c.embedding,
            encoder: c.encoder.into_iter().map(|b| EncoderBlock::new(b, cfg)).collect(),
            encoder_bias: c.encoder_bias,
            encoder_norm: RmsNorm::new(c.encoder_norm, cfg),
            decoder: c.decoder.into_iter().map(|b| DecoderBlock::new(b, cfg)).collect(),
            decoder_bias: c.decoder_bias,
            decoder_norm: RmsNorm::new(c.decoder_norm, cfg),
            lm_head: c.lm_head,
            head_scale: c.head_scale,
            weight_bytes: take.held.get(),
            device: device.clone(),
            config,
        })
    }

    pub fn config(&self) -> &T5Config {
        &self.config
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn num_decoder_blocks(&self) -> usize {
        self.decoder.len()
    }

    /// Bytes of the weights as held (matrices, scales and vectors; not the position bias
    /// tables, a few kilobytes).
    pub fn weight_bytes(&self) -> usize {
        self.weight_bytes
    }

    /// Token embeddings, (ids, d_model). Ids must be inside the vocabulary.
    pub fn embed(&self, ids: &[u32]) -> Result<Tensor> {
        self.config.check_ids(ids)?;
        let rows: Vec<f32> = ids.iter().flat_map(|&id| self.embedding.row(id as usize)).collect();
        Ok(Tensor::from_vec(rows, (ids.len(), self.config.d_model), &self.device)?)
    }

    /// The encoder's final output for one input, (ids, d_model).
    pub fn encode(&self, ids: &[u32]) -> Result<Tensor> {
        if ids.is_empty() {
            return Err(Error::InvalidInput("the input has no tokens".into()));
        }
        let mut h = self.embed(ids)?;
        let bias = self.encoder_bias.bias(0, ids.len(), ids.len(), false, &self.device)?;
        for block in &self.encoder {
            h = block.forward(&h, &bias)?;
        }
        self.encoder_norm.forward(&h)
    }

    pub fn start_decoder(&self, encoder_output: Tensor) -> DecoderState {
        DecoderState::new(encoder_output, self.decoder.len())
    }

    /// Runs decoder blocks `blocks` over new rows `h` (rows, d_model), which take the next
    /// positions after what those blocks have cached, and appends them to their caches.
    /// Returns the residual stream after the last block of the range.
    pub fn decode_blocks(&self, state: &mut DecoderState, blocks: Range<usize>, h: Tensor) -> Result<Tensor> {
        self.config.check_blocks(&blocks)?;
        let start = state.blocks[blocks.start].len();
        if let Some(i) = blocks.clone().find(|&i| state.blocks[i].len() != start) {
            return Err(Error::InvalidInput(format!(
                "decoder block {i} has cached {} positions but block {} has {start}; run blocks in order",
                state.blocks[i].len(),
                blocks.start
            )));
        }
        let rows = h.dim(0)?;
        let bias = self.decoder_bias.bias(start, rows, start + rows, true, &self.device)?;
        let mut h = h;
        for i in blocks {
            h = self.decoder[i].forward(&h, &mut state.blocks[i], &state.encoder_output, &bias)?;
        }
        Ok(h)
    }

    /// Fills the caches of `blocks`, which a token skipped, from its exited state `h`.
    pub fn copy_state(&self, state: &mut DecoderState, blocks: Range<usize>, h: &Tensor) -> Result<()> {
        for i in blocks {
            self.decoder[i].append_copied_state(h, &mut state.blocks[i])?;
        }
        Ok(())
    }

    /// Logits of any exit: lm_head(scale * final_norm(h)), (rows, vocab).
    pub fn logits(&self, h: &Tensor) -> Result<Tensor> {
        let x = (self.decoder_norm.forward(h)? * self.head_scale)?;
        self.lm_head.apply(&x)
    }
}

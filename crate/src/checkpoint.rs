//! The T5 checkpoint as Hugging Face's `T5ForConditionalGeneration` stores it, written once
//! for every device: each tensor's name and shape, the tied head and its scale, the position
//! bias tables, and the check that nothing is left over. A backend says how it takes a
//! matrix and a vector (`Take`: the CPU keeps candle tensors and `Matrix`, the GPU uploads
//! buffers) and builds its model from the `Checkpoint` it gets.

use crate::config::T5Config;
use crate::error::Result;
use crate::position::PositionBias;
use crate::weights::Weights;

/// How a backend takes a checkpoint's tensors into its own types.
pub trait Take {
    /// A weight matrix, (out, in) as Hugging Face stores it.
    type Matrix;
    /// A norm's weight vector.
    type Vector;
    fn matrix(&self, w: &Weights, name: &str, shape: [usize; 2]) -> Result<Self::Matrix>;
    /// A gated feed-forward's two input matrices (a backend that reads both in one launch
    /// may need them stored alike).
    fn gated_pair(&self, w: &Weights, wi: &str, gate: &str, shape: [usize; 2]) -> Result<(Self::Matrix, Self::Matrix)> {
        Ok((self.matrix(w, wi, shape)?, self.matrix(w, gate, shape)?))
    }
    fn vector(&self, w: &Weights, name: &str, len: usize) -> Result<Self::Vector>;
    /// The head when it is tied to the embedding: the embedding again, not a copy.
    fn tied(&self, embedding: &Self::Matrix) -> Self::Matrix;
}

/// `T5Attention`'s projections (its position bias is the stack's).
pub struct Attention<M> {
    pub q: M,
    pub k: M,
    pub v: M,
    pub o: M,
}

/// `T5DenseActDense`, or with `gate` `T5DenseGatedActDense` (T5 v1.1).
pub struct FeedForward<M> {
    pub wi: M,
    pub gate: Option<M>,
    pub wo: M,
}

pub struct EncoderBlock<M, V> {
    pub attn_norm: V,
    pub attn: Attention<M>,
    pub ff_norm: V,
    pub ff: FeedForward<M>,
}

pub struct DecoderBlock<M, V> {
    pub self_norm: V,
    pub self_attn: Attention<M>,
    pub cross_norm: V,
    pub cross_attn: Attention<M>,
    pub ff_norm: V,
    pub ff: FeedForward<M>,
}

pub struct Checkpoint<M, V> {
    /// (vocab, d_model), shared by the encoder, the decoder and (tied) the head.
    pub embedding: M,
    /// (vocab, d_model): the embedding again when tied (T5 v1.0); stored apart in T5 v1.1.
    pub lm_head: M,
    /// What the last hidden state is multiplied by before the head: d_model^-0.5 for T5 v1.0
    /// (`scale_decoder_outputs`), else 1.
    pub head_scale: f64,
    pub encoder: Vec<EncoderBlock<M, V>>,
    pub encoder_norm: V,
    /// Block 0's table, shared by every block of the stack (bidirectional buckets).
    pub encoder_bias: PositionBias,
    pub decoder: Vec<DecoderBlock<M, V>>,
    pub decoder_norm: V,
    /// Block 0's table, shared by every block of the stack (causal buckets).
    pub decoder_bias: PositionBias,
}

impl<M, V> Checkpoint<M, V> {
    /// Takes every tensor `cfg` asks for from `weights`, then checks that the checkpoint holds
    /// nothing else (`Weights::finish`: a checkpoint of another shape fails here, named).
    pub fn take<T: Take<Matrix = M, Vector = V>>(cfg: &T5Config, weights: Weights, t: &T) -> Result<Self> {
        let w = &weights;
        let (d, inner, ff) = (cfg.d_model, cfg.inner_dim(), cfg.d_ff);
        let attention = |p: &str| -> Result<Attention<M>> {
            Ok(Attention {
                q: t.matrix(w, &format!("{p}.q.weight"), [inner, d])?,
                k: t.matrix(w, &format!("{p}.k.weight"), [inner, d])?,
                v: t.matrix(w, &format!("{p}.v.weight"), [inner, d])?,
                o: t.matrix(w, &format!("{p}.o.weight"), [d, inner])?,
            })
        };
        let feed_forward = |p: &str| -> Result<FeedForward<M>> {
            let (wi, gate) = if cfg.feed_forward.gated {
                let (wi, gate) = t.gated_pair(w, &format!("{p}.wi_0.weight"), &format!("{p}.wi_1.weight"), [ff, d])?;
                (wi, Some(gate))
            } else {
                (t.matrix(w, &format!("{p}.wi.weight"), [ff, d])?, None)
            };
            Ok(FeedForward { wi, gate, wo: t.matrix(w, &format!("{p}.wo.weight"), [d, ff])? })
        };
        let norm = |p: &str| t.vector(w, &format!("{p}.weight"), d);
        let bias = |stack: &str, bidirectional: bool| -> Result<PositionBias> {
            let name = format!("{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight");
            PositionBias::new(&w.get_float(&name, &[cfg.num_buckets, cfg.num_heads])?, bidirectional, cfg.max_distance)
        };
        // In the order the CPU backend always read them: a config of absurd sizes fails on the
        // first tensor whose shape it gets wrong, before anything of that size is allocated.
        let embedding = t.matrix(w, "shared.weight", [cfg.vocab_size, d])?;
        let (encoder_bias, decoder_bias) = (bias("encoder", true)?, bias("decoder", false)?);
        let encoder = (0..cfg.num_encoder_layers)
            .map(|i| {
                let p = format!("encoder.block.{i}.layer");
                Ok(EncoderBlock {
                    attn_norm: norm(&format!("{p}.0.layer_norm"))?,
                    attn: attention(&format!("{p}.0.SelfAttention"))?,
                    ff_norm: norm(&format!("{p}.1.layer_norm"))?,
                    ff: feed_forward(&format!("{p}.1.DenseReluDense"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let decoder = (0..cfg.num_decoder_layers)
            .map(|i| {
                let p = format!("decoder.block.{i}.layer");
                Ok(DecoderBlock {
                    self_norm: norm(&format!("{p}.0.layer_norm"))?,
                    self_attn: attention(&format!("{p}.0.SelfAttention"))?,
                    cross_norm: norm(&format!("{p}.1.layer_norm"))?,
                    cross_attn: attention(&format!("{p}.1.EncDecAttention"))?,
                    ff_norm: norm(&format!("{p}.2.layer_norm"))?,
                    ff: feed_forward(&format!("{p}.2.DenseReluDense"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        // An untied head (T5 v1.1) is stored; a tied one usually is not, or is a copy.
        let lm_head =
            if w.contains("lm_head.weight") { t.matrix(w, "lm_head.weight", [cfg.vocab_size, d])? } else { t.tied(&embedding) };
        let checkpoint = Checkpoint {
            head_scale: if cfg.scale_decoder_outputs { (d as f64).powf(-0.5) } else { 1.0 },
            encoder_norm: norm("encoder.final_layer_norm")?,
            decoder_norm: norm("decoder.final_layer_norm")?,
            encoder_bias,
            decoder_bias,
            embedding,
            lm_head,
            encoder,
            decoder,
        };
        // Copies of the shared embedding HF may also store.
        weights.finish(&["encoder.embed_tokens.weight", "decoder.embed_tokens.weight"])?;
        Ok(checkpoint)
    }
}

//! The pieces of a T5 block, as Hugging Face's `modeling_t5` defines them: RMS norm without
//! mean or bias, attention whose logits are NOT scaled by 1/sqrt(d_kv), and the (gated) FFN.
//! Hidden states are (rows, d_model): batch size is always 1 here.

use std::sync::Arc;

use candle_core::{Tensor, D};

use crate::checkpoint;
use crate::config::{Activation, T5Config};
use super::softmax::softmax_last;
use crate::matrix::Matrix;
use crate::error::Result;

/// `T5LayerNorm`: x * rsqrt(mean(x^2) + eps) * weight.
pub struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    pub fn new(weight: Tensor, cfg: &T5Config) -> Self {
        RmsNorm { weight, eps: cfg.eps }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let variance = x.sqr()?.mean_keepdim(D::Minus1)?;
        let inv = (variance + self.eps)?.sqrt()?.recip()?;
        Ok(x.broadcast_mul(&inv)?.broadcast_mul(&self.weight)?)
    }
}

/// A bias-free linear layer with HF's (out, in) weight layout.
pub struct Linear {
    weight: Arc<Matrix>,
}

impl Linear {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.weight.apply(&x.contiguous()?)
    }
}

/// `T5Attention` without its position bias (the stack owns that and passes it in).
pub struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    heads: usize,
    d_kv: usize,
}

impl Attention {
    pub fn new(a: checkpoint::Attention<Arc<Matrix>>, cfg: &T5Config) -> Self {
        let linear = |weight| Linear { weight };
        Attention { q: linear(a.q), k: linear(a.k), v: linear(a.v), o: linear(a.o), heads: cfg.num_heads, d_kv: cfg.d_kv }
    }

    /// (rows, inner) -> (heads, rows, d_kv)
    fn split_heads(&self, x: &Tensor) -> Result<Tensor> {
        let rows = x.dim(0)?;
        Ok(x.reshape((rows, self.heads, self.d_kv))?.transpose(0, 1)?.contiguous()?)
    }

    pub fn query(&self, x: &Tensor) -> Result<Tensor> {
        self.split_heads(&self.q.forward(x)?)
    }

    /// Keys and values of `x`, each (heads, rows, d_kv).
    pub fn keys_values(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok((self.split_heads(&self.k.forward(x)?)?, self.split_heads(&self.v.forward(x)?)?))
    }

    /// softmax(q k^T + bias) v, projected back to d_model: (rows, d_model).
    pub fn attend(&self, q: &Tensor, k: &Tensor, v: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        let mut scores = q.matmul(&k.t()?)?;
        if let Some(bias) = bias {
            scores = (scores + bias)?;
        }
        let weights = softmax_last(&scores)?;
        let ctx = weights.matmul(v)?; // (heads, rows, d_kv)
        let rows = ctx.dim(1)?;
        let ctx = ctx.transpose(0, 1)?.reshape((rows, self.heads * self.d_kv))?;
        self.o.forward(&ctx)
    }
}

/// `T5DenseActDense` / `T5DenseGatedActDense`.
pub struct FeedForward {
    wi: Linear,
    wi_gate: Option<Linear>,
    wo: Linear,
    activation: Activation,
}

impl FeedForward {
    pub fn new(f: checkpoint::FeedForward<Arc<Matrix>>, cfg: &T5Config) -> Self {
        FeedForward {
            wi: Linear { weight: f.wi },
            wi_gate: f.gate.map(|weight| Linear { weight }),
            wo: Linear { weight: f.wo },
            activation: cfg.feed_forward.activation,
        }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.wi.forward(x)?;
        let mut h = match self.activation {
            Activation::Relu => h.relu()?,
            Activation::GeluErf => h.gelu_erf()?,
            Activation::GeluTanh => h.gelu()?,
            Activation::Silu => h.silu()?,
        };
        if let Some(gate) = &self.wi_gate {
            h = (h * gate.forward(x)?)?;
        }
        self.wo.forward(&h)
    }
}

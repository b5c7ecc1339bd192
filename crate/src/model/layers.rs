//! The pieces of a T5 block, as Hugging Face's `modeling_t5` defines them: RMS norm without
//! mean or bias, attention whose logits are NOT scaled by 1/sqrt(d_kv), and the (gated) FFN.
//! Hidden states are (rows, d_model): batch size is always 1 here.

use candle_core::{Tensor, D};

use crate::config::{Activation, FeedForward as FfSpec, T5Config};
use super::softmax::softmax_last;
use crate::matrix::Matrix;
use crate::error::Result;
use crate::weights::Weights;

/// `T5LayerNorm`: x * rsqrt(mean(x^2) + eps) * weight.
pub struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    pub fn load(w: &Weights, name: &str, cfg: &T5Config) -> Result<Self> {
        Ok(RmsNorm { weight: w.get(&format!("{name}.weight"), &[cfg.d_model])?, eps: cfg.eps })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let variance = x.sqr()?.mean_keepdim(D::Minus1)?;
        let inv = (variance + self.eps)?.sqrt()?.recip()?;
        Ok(x.broadcast_mul(&inv)?.broadcast_mul(&self.weight)?)
    }
}

/// A bias-free linear layer with HF's (out, in) weight layout.
pub struct Linear {
    weight: Matrix,
}

impl Linear {
    pub fn load(w: &Weights, name: &str, out_dim: usize, in_dim: usize) -> Result<Self> {
        Ok(Linear { weight: w.matrix(&format!("{name}.weight"), out_dim, in_dim)? })
    }

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
    pub fn load(w: &Weights, name: &str, cfg: &T5Config) -> Result<Self> {
        let (d, inner) = (cfg.d_model, cfg.inner_dim());
        Ok(Attention {
            q: Linear::load(w, &format!("{name}.q"), inner, d)?,
            k: Linear::load(w, &format!("{name}.k"), inner, d)?,
            v: Linear::load(w, &format!("{name}.v"), inner, d)?,
            o: Linear::load(w, &format!("{name}.o"), d, inner)?,
            heads: cfg.num_heads,
            d_kv: cfg.d_kv,
        })
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
    pub fn load(w: &Weights, name: &str, cfg: &T5Config) -> Result<Self> {
        let FfSpec { activation, gated } = cfg.feed_forward;
        let (d, ff) = (cfg.d_model, cfg.d_ff);
        let (wi, wi_gate) = if gated {
            (
                Linear::load(w, &format!("{name}.wi_0"), ff, d)?,
                Some(Linear::load(w, &format!("{name}.wi_1"), ff, d)?),
            )
        } else {
            (Linear::load(w, &format!("{name}.wi"), ff, d)?, None)
        };
        Ok(FeedForward { wi, wi_gate, wo: Linear::load(w, &format!("{name}.wo"), d, ff)?, activation })
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

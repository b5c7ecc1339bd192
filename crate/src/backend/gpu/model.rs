//! The T5 model of `crate::model`, on the GPU: the same weights, the same blocks, written as
//! launches of the WGSL kernels. Weights, caches and activations stay on the device; a
//! step's launches are recorded into one submission, and only the few bytes the CPU must
//! decide on (argmax, top-2 logits, softmax normaliser per row) are read back.
//!
//! Hidden states live in a per-generation "stash" indexed by decoder position: a range of
//! blocks reads its rows from there and writes the result back. Stacked tokens of FREE are
//! always consecutive positions, so a deep pass over them reads one contiguous range.

use std::ops::Range;

use wgpu::Buffer;

use super::context::{Format, Gpu, Kernel, Readback};
use super::params::{act_code, AttentionParams, GatherParams, LinearParams, RmsNormParams, Top2Params, TOP2_BYTES, TOP2_TOKEN_OFFSET};
use crate::checkpoint::{self, Checkpoint, Take};
use crate::config::{ConfidenceMeasure, T5Config};
use crate::confidence::confidence_of;
use crate::error::{Error, Result};
use crate::matrix::{quantize_q8, Dtype};
use crate::position::PositionBias;
use crate::weights::Weights;

/// Positions (source or target) the attention kernel can hold (MAX_KEYS in attention.wgsl).
const MAX_KEYS: usize = 1024;
/// Rows pushed through the LM head per launch (bounds the logits buffer).
const HEAD_ROWS: usize = 64;
/// Input rows per tile and output features per invocation of linear_rows.wgsl.
const TILE_ROWS: u32 = 8;
const TILE_FEATURES: usize = 4;

/// A weight matrix on the device: f32; f16 packed two to a word (half the memory and the
/// bytes each product streams; the kernels widen it to exactly the stored values and
/// accumulate in f32); or q8, the CPU's 8-bit integers and row scales (`quantize_q8`)
/// packed four to a word (a quarter; the kernels sum the integers in f32 and scale the sum).
struct Weight {
    buf: Buffer,
    format: Format,
    /// q8: the word of `buf` where the rows' scales begin; else 0 (unread).
    scales: u32,
    /// (out, in), as Hugging Face stores a linear layer's weight.
    shape: [usize; 2],
}

type Attn = checkpoint::Attention<Weight>;
type Ffn = checkpoint::FeedForward<Weight>;
type EncoderBlock = checkpoint::EncoderBlock<Weight, Buffer>;
type DecoderBlock = checkpoint::DecoderBlock<Weight, Buffer>;

/// The GPU takes matrices as `dtype` asks (`format_of`), and vectors as f32 buffers, and
/// counts the bytes they hold.
struct GpuTake<'g> {
    gpu: &'g Gpu,
    dtype: Option<Dtype>,
    held: std::cell::Cell<u64>,
}

/// How the GPU holds matrix `name` of `cols` columns: q8 when asked or, without a dtype,
/// when stored so; f16 when asked or, without a dtype, when stored so, unless a row would end
/// inside a 32-bit word (an odd row length: then f32, of the same f16 values); else f32.
fn format_of(w: &Weights, name: &str, cols: usize, dtype: Option<Dtype>) -> Format {
    let f16 = match dtype {
        Some(Dtype::Q8) => return Format::Q8,
        Some(Dtype::F16) => true,
        Some(Dtype::F32) => false,
        None if w.is_q8(name) => return Format::Q8,
        None => w.is_f16(name),
    };
    if f16 && cols % 2 == 0 { Format::F16 } else { Format::F32 }
}

impl GpuTake<'_> {
    /// `name` uploaded in `format`, its values rounded to f16 first when the dtype asks for
    /// f16 (so an odd row length held as f32 holds the CPU's f16 values too).
    fn upload(&self, w: &Weights, name: &str, shape: [usize; 2], format: Format) -> Result<Weight> {
        let [rows, cols] = shape;
        let (buf, scales) = match format {
            Format::Q8 => {
                // A checkpoint stored in 8 bits is uploaded as stored (the CPU holds the same).
                let (q, scales) = match w.q8s(name, &shape)? {
                    Some(stored) => stored,
                    None => quantize_q8(rows, cols, &f32s(w, name, &shape)?),
                };
                self.gpu.upload_q8(name, &q, &scales)
            }
            Format::F16 => {
                let halves = match w.f16s(name, &shape)? {
                    Some(halves) => halves,
                    None => f32s(w, name, &shape)?.into_iter().map(half::f16::from_f32).collect(),
                };
                (self.gpu.upload_f16(name, &halves), 0)
            }
            Format::F32 if self.dtype == Some(Dtype::F16) => {
                let rounded: Vec<f32> = f32s(w, name, &shape)?.into_iter().map(|v| half::f16::from_f32(v).to_f32()).collect();
                (self.gpu.upload(name, &rounded), 0)
            }
            Format::F32 => (self.gpu.upload(name, &f32s(w, name, &shape)?), 0),
        };
        self.held.set(self.held.get() + buf.size());
        Ok(Weight { buf, format, scales, shape })
    }
}

impl Take for GpuTake<'_> {
    type Matrix = Weight;
    type Vector = Buffer;

    fn matrix(&self, w: &Weights, name: &str, shape: [usize; 2]) -> Result<Weight> {
        self.upload(w, name, shape, format_of(w, name, shape[1], self.dtype))
    }

    fn gated_pair(&self, w: &Weights, wi: &str, gate: &str, shape: [usize; 2]) -> Result<(Weight, Weight)> {
        let (wi_w, gate_w) = (self.matrix(w, wi, shape)?, self.matrix(w, gate, shape)?);
        if wi_w.format == gate_w.format {
            return Ok((wi_w, gate_w));
        }
        // One launch reads both: they must be stored alike (only a checkpoint that stores
        // them differently, loaded without a dtype, gets here).
        Ok((self.upload(w, wi, shape, Format::F32)?, self.upload(w, gate, shape, Format::F32)?))
    }

    fn vector(&self, w: &Weights, name: &str, len: usize) -> Result<Buffer> {
        let buf = self.gpu.upload(name, &f32s(w, name, &[len])?);
        self.held.set(self.held.get() + buf.size());
        Ok(buf)
    }

    fn tied(&self, embedding: &Weight) -> Weight {
        Weight { buf: embedding.buf.clone(), ..*embedding }
    }
}

/// Activations reused by every launch (they hold nothing between submissions).
struct Scratch {
    src_ids: Buffer,
    h: Buffer,
    x: Buffer,
    q: Buffer,
    ctx: Buffer,
    ff: Buffer,
    enc_k: Buffer,
    enc_v: Buffer,
    enc_out: Buffer,
    logits: Buffer,
    top2: Buffer,
}

pub struct GpuModel {
    gpu: Gpu,
    config: T5Config,
    embedding: Weight,
    lm_head: Weight,
    encoder: Vec<EncoderBlock>,
    encoder_norm: Buffer,
    encoder_bias: Buffer,
    decoder: Vec<DecoderBlock>,
    decoder_norm: Buffer,
    decoder_bias: Buffer,
    head_scale: f32,
    /// Bytes of the weight buffers (a tied head counted once; not the position bias tables).
    weight_bytes: u64,
    /// Longest source and target the buffers hold.
    max_len: usize,
    act: u32,
    scratch: Scratch,
}

/// One generation's device state: per-block caches and the stash of hidden rows.
pub struct GpuState {
    source_len: usize,
    /// Per decoder block: self-attention K and V (max_len, inner), cross K and V.
    caches: Vec<[Buffer; 4]>,
    /// How many positions each block has cached.
    lens: Vec<usize>,
    /// Decoder input ids by position.
    ids: Buffer,
    /// Per position, which `top2_later` (numbered from 1) last wrote its input id into
    /// `ids` on the device: the argmax of the row before it.
    decided_by: Vec<u64>,
    /// `top2_later`s so far.
    decisions: u64,
    /// The latest hidden row of every position, (max_len + 1, d_model).
    stash: Buffer,
}

/// Hidden rows of positions `start..start + count`, in the generation's stash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GpuRows {
    pub start: usize,
    pub count: usize,
}

/// A `top2_later` on its way back, and the input id it left on the device, if any.
pub struct Top2Readback {
    buffer: Readback,
    next_id: Option<LeftId>,
}

/// An input id a `top2_later` copied into the next position on the device.
#[derive(Clone, Copy)]
struct LeftId {
    position: usize,
    /// Which `top2_later` of the generation it was (`GpuState::decisions`): a later one may
    /// have replaced the id at that position.
    decision: u64,
}

/// What a row's logits decide: argmax and the numbers its confidence needs.
pub struct Top2 {
    pub token: u32,
    pub best: f32,
    pub second: f32,
    pub z: f32,
}

impl Top2 {
    pub fn confidence(&self, measure: ConfidenceMeasure) -> f64 {
        confidence_of(self.best, self.second, self.z as f64, measure)
    }
}

fn f32s(w: &Weights, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
    Ok(w.get(name, shape)?.flatten_all()?.to_vec1()?)
}

/// Records `params`' product of `x` and `w` (and `gate`, stored alike) into `out`, by the
/// linear kernel that suits the adapter (see linear_rows.wgsl), the input width
/// (linear_rows.wgsl reads pairs) and the weights' format.
fn launch_linear(gpu: &Gpu, params: LinearParams, x: &Buffer, w: &Weight, gate: &Weight, out: &Buffer) {
    let params = LinearParams { scales: w.scales, ..params };
    let (rows, in_dim, out_dim) = (params.rows, params.in_dim, params.out_dim as usize);
    let buffers = [x, &w.buf, &gate.buf, out];
    if !gpu.cooperative_kernels() && in_dim % 2 == 0 {
        gpu.launch(Kernel::LinearRows(w.format), &params, &buffers, (out_dim.div_ceil(64 * TILE_FEATURES) as u32, rows.div_ceil(TILE_ROWS)));
    } else {
        gpu.launch(Kernel::Linear(w.format), &params, &buffers, groups(out_dim));
    }
}

fn groups(n: usize) -> (u32, u32) {
    // Dispatches may not exceed 65535 workgroups per dimension.
    let n = n.max(1) as u32;
    if n <= 65535 { (n, 1) } else { (65535, n.div_ceil(65535)) }
}

impl GpuModel {
    /// Uploads the model with its weight matrices held as `dtype` asks (None: as stored,
    /// f16 kept packed).
    pub fn load(config: T5Config, owned: Weights, gpu: Gpu, dtype: Option<Dtype>) -> Result<Self> {
        let (cfg, weights) = (&config, &owned);
        let (d, inner, ff) = (cfg.d_model, cfg.inner_dim(), cfg.d_ff);
        let max_len = cfg.max_input_tokens + 1;
        if max_len > MAX_KEYS {
            return Err(Error::Gpu(format!(
                "the model's n_positions ({}) exceeds the {} positions the GPU attention kernel holds; use the CPU backend",
                cfg.max_input_tokens,
                MAX_KEYS - 1
            )));
        }
        // In u64: a corrupt config's sizes may not multiply within wasm32's usize.
        let (vocab, d64, ff64) = (cfg.vocab_size as u64, d as u64, ff as u64);
        // The embedding's (or a separate head's) bytes in the format it will be held in.
        let table = ["shared.weight", "lm_head.weight"]
            .iter()
            .filter(|n| weights.contains(n))
            .map(|n| match format_of(weights, n, d, dtype) {
                Format::F32 => vocab.saturating_mul(d64).saturating_mul(4),
                Format::F16 => vocab.saturating_mul(d64).saturating_mul(2),
                Format::Q8 => vocab.saturating_mul(d64).saturating_add(vocab.saturating_mul(4)),
            })
            .max()
            .unwrap_or(0);
        let largest = table.max((HEAD_ROWS as u64 * vocab).max(max_len as u64 * ff64).saturating_mul(4));
        let limit = gpu.limits().max_storage_buffer_binding_size.min(gpu.limits().max_buffer_size);
        if largest > limit {
            return Err(Error::Gpu(format!(
                "the model needs GPU buffers of {largest} bytes but this adapter binds at most {limit}; use the CPU backend"
            )));
        }
        let take = GpuTake { gpu: &gpu, dtype, held: std::cell::Cell::new(0) };
        let c = Checkpoint::take(cfg, owned, &take)?;
        let bias = |what: &str, table: &PositionBias| gpu.upload(what, &table.by_relative(max_len));
        let f = |n: usize| n as u64 * 4;
        let scratch = Scratch {
            src_ids: gpu.buffer("source ids", f(max_len)),
            h: gpu.buffer("h", f(max_len * d)),
            x: gpu.buffer("x", f(max_len * d)),
            q: gpu.buffer("q", f(max_len * inner)),
            ctx: gpu.buffer("ctx", f(max_len * inner)),
            ff: gpu.buffer("ff", f(max_len * ff)),
            enc_k: gpu.buffer("encoder k", f(max_len * inner)),
            enc_v: gpu.buffer("encoder v", f(max_len * inner)),
            enc_out: gpu.buffer("encoder output", f(max_len * d)),
            logits: gpu.buffer("logits", f(HEAD_ROWS * cfg.vocab_size)),
            top2: gpu.buffer("top2", (max_len * TOP2_BYTES) as u64),
        };
        let act = act_code(cfg.feed_forward.activation);
        let model = GpuModel {
            head_scale: c.head_scale as f32,
            weight_bytes: take.held.get(),
            encoder_norm: c.encoder_norm,
            decoder_norm: c.decoder_norm,
            encoder_bias: bias("encoder relative position bias", &c.encoder_bias),
            decoder_bias: bias("decoder relative position bias", &c.decoder_bias),
            embedding: c.embedding,
            lm_head: c.lm_head,
            encoder: c.encoder,
            decoder: c.decoder,
            max_len,
            act,
            scratch,
            gpu,
            config,
        };
        model.gpu.check()?;
        Ok(model)
    }

    pub fn config(&self) -> &T5Config {
        &self.config
    }

    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    pub fn num_decoder_blocks(&self) -> usize {
        self.decoder.len()
    }

    /// Bytes of the weights on the device (matrices, scales and vectors).
    pub fn weight_bytes(&self) -> u64 {
        self.weight_bytes
    }

    /// The format every weight matrix is held in, or None when they differ.
    pub fn weight_format(&self) -> Option<Format> {
        let attn = |a: &'_ Attn| [&a.q, &a.k, &a.v, &a.o].map(|w| w.format);
        let ffn = |f: &'_ Ffn| [Some(f.wi.format), Some(f.wo.format), f.gate.as_ref().map(|g| g.format)];
        let mut formats = vec![self.embedding.format, self.lm_head.format];
        for b in &self.encoder {
            formats.extend(attn(&b.attn).into_iter().chain(ffn(&b.ff).into_iter().flatten()));
        }
        for b in &self.decoder {
            formats.extend(attn(&b.self_attn).into_iter().chain(attn(&b.cross_attn)).chain(ffn(&b.ff).into_iter().flatten()));
        }
        formats.iter().all(|&f| f == formats[0]).then_some(formats[0])
    }

    fn rms_norm(&self, x: &Buffer, x_row: usize, weight: &Buffer, out: &Buffer, rows: usize, scale: f32) {
        let d = self.config.d_model;
        let params = RmsNormParams {
            rows: rows as u32,
            d: d as u32,
            x_off: (x_row * d) as u32,
            eps: self.config.eps as f32,
            scale,
            ..Default::default()
        };
        self.gpu.launch(Kernel::RmsNorm, &params, &[x, weight, out], (rows as u32, 1));
    }

    /// out[out_row + r] (=|+=) act(x[r] . w) for `rows` rows.
    #[allow(clippy::too_many_arguments)]
    fn linear(&self, x: &Buffer, w: &Weight, gate: Option<&Weight>, out: &Buffer, out_row: usize, rows: usize, act: u32, add: bool) {
        let [out_dim, in_dim] = w.shape;
        let params = LinearParams {
            rows: rows as u32,
            in_dim: in_dim as u32,
            out_dim: out_dim as u32,
            x_off: 0,
            out_off: (out_row * out_dim) as u32,
            act,
            gated: gate.is_some() as u32,
            accumulate: add as u32,
            ..Default::default()
        };
        launch_linear(&self.gpu, params, x, w, gate.unwrap_or(w), out);
    }

    #[allow(clippy::too_many_arguments)]
    fn attention(&self, q_start: usize, rows: usize, k: &Buffer, v: &Buffer, kv_len: usize, bias: Option<&Buffer>, causal: bool) {
        let c = &self.config;
        let params = AttentionParams {
            q_start: q_start as u32,
            kv_len: kv_len as u32,
            heads: c.num_heads as u32,
            d_kv: c.d_kv as u32,
            causal: causal as u32,
            use_bias: bias.is_some() as u32,
            bias_center: (self.max_len - 1) as u32,
            bias_len: (2 * self.max_len - 1) as u32,
        };
        let s = &self.scratch;
        let bias = bias.unwrap_or(&self.decoder_bias);
        self.gpu.launch(Kernel::Attention, &params, &[&s.q, k, v, bias, &s.ctx], (rows as u32, c.num_heads as u32));
    }

    fn feed_forward(&self, ff: &Ffn, norm: &Buffer, rows: usize) {
        let s = &self.scratch;
        self.rms_norm(&s.h, 0, norm, &s.x, rows, 1.0);
        self.linear(&s.x, &ff.wi, ff.gate.as_ref(), &s.ff, 0, rows, self.act, false);
        self.linear(&s.ff, &ff.wo, None, &s.h, 0, rows, 0, true);
    }

    /// Runs the encoder over `ids` and starts a generation: caches sized for the model's
    /// longest output, cross-attention keys and values of every decoder block filled.
    pub fn start(&self, ids: &[u32]) -> Result<GpuState> {
        if ids.is_empty() {
            return Err(Error::InvalidInput("the input has no tokens".into()));
        }
        if ids.len() >= self.max_len {
            return Err(Error::InvalidInput(format!(
                "the input has {} tokens; this model reads at most {}",
                ids.len(),
                self.max_len - 1
            )));
        }
        self.config.check_ids(ids)?;
        // The last generation's buffers go; so do the bind groups that hold them.
        self.gpu.forget_bind_groups();
        let (c, s, n) = (&self.config, &self.scratch, ids.len());
        let (d, inner) = (c.d_model, c.inner_dim());
        self.gpu.write(&s.src_ids, 0, &ids.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>());
        let gather = Kernel::Gather(self.embedding.format);
        let params = GatherParams { rows: n as u32, d: d as u32, scales: self.embedding.scales, ..Default::default() };
        self.gpu.launch(gather, &params, &[&s.src_ids, &self.embedding.buf, &s.h], groups((n * d).div_ceil(64)));
        for b in &self.encoder {
            self.rms_norm(&s.h, 0, &b.attn_norm, &s.x, n, 1.0);
            self.linear(&s.x, &b.attn.q, None, &s.q, 0, n, 0, false);
            self.linear(&s.x, &b.attn.k, None, &s.enc_k, 0, n, 0, false);
            self.linear(&s.x, &b.attn.v, None, &s.enc_v, 0, n, 0, false);
            self.attention(0, n, &s.enc_k, &s.enc_v, n, Some(&self.encoder_bias), false);
            self.linear(&s.ctx, &b.attn.o, None, &s.h, 0, n, 0, true);
            self.feed_forward(&b.ff, &b.ff_norm, n);
        }
        self.rms_norm(&s.h, 0, &self.encoder_norm, &s.enc_out, n, 1.0);
        let f = |rows: usize| (rows * inner * 4) as u64;
        let caches: Vec<[Buffer; 4]> = self
            .decoder
            .iter()
            .map(|b| {
                let kv = [
                    self.gpu.buffer("self k", f(self.max_len)),
                    self.gpu.buffer("self v", f(self.max_len)),
                    self.gpu.buffer("cross k", f(n)),
                    self.gpu.buffer("cross v", f(n)),
                ];
                self.linear(&s.enc_out, &b.cross_attn.k, None, &kv[2], 0, n, 0, false);
                self.linear(&s.enc_out, &b.cross_attn.v, None, &kv[3], 0, n, 0, false);
                kv
            })
            .collect();
        Ok(GpuState {
            source_len: n,
            lens: vec![0; caches.len()],
            caches,
            ids: self.gpu.buffer("decoder ids", (self.max_len * 4) as u64),
            decided_by: vec![0; self.max_len],
            decisions: 0,
            stash: self.gpu.buffer("stash", (self.max_len * d * 4) as u64),
        })
    }

    /// The embedding of the decoder input at the next position of block 0.
    pub fn embed(&self, state: &mut GpuState, id: u32) -> Result<GpuRows> {
        self.config.check_ids(&[id])?;
        let pos = self.next_position(state)?;
        self.gpu.write(&state.ids, (pos * 4) as u64, &id.to_le_bytes());
        // The id there is the CPU's now, whatever a decision left before.
        state.decided_by[pos] = 0;
        Ok(self.gather(state, pos))
    }

    /// The embedding at the next position of the token `readback` chose for the row before
    /// it, without the CPU knowing it yet.
    pub fn embed_decided(&self, state: &mut GpuState, readback: &Top2Readback) -> Result<GpuRows> {
        let pos = self.next_position(state)?;
        match readback.next_id {
            Some(left) if left.position == pos && state.decided_by[pos] == left.decision => Ok(self.gather(state, pos)),
            _ => Err(Error::Compute(format!(
                "that decision left no input id for position {pos} on the device (it was for another row, or a later one replaced it); embed a known token instead"
            ))),
        }
    }

    fn next_position(&self, state: &GpuState) -> Result<usize> {
        let pos = state.lens[0];
        if pos >= self.max_len {
            return Err(Error::InvalidInput(format!("the output reached the model's {} positions", self.max_len - 1)));
        }
        Ok(pos)
    }

    /// Records the gather of the input id at `pos` into the stash.
    fn gather(&self, state: &GpuState, pos: usize) -> GpuRows {
        let d = self.config.d_model;
        let params = GatherParams { rows: 1, d: d as u32, out_off: (pos * d) as u32, id_off: pos as u32, scales: self.embedding.scales, ..Default::default() };
        let gather = Kernel::Gather(self.embedding.format);
        self.gpu.launch(gather, &params, &[&state.ids, &self.embedding.buf, &state.stash], groups(d.div_ceil(64)));
        GpuRows { start: pos, count: 1 }
    }

    fn check_range(&self, state: &GpuState, blocks: &Range<usize>, rows: GpuRows) -> Result<()> {
        self.config.check_blocks(blocks)?;
        if let Some(i) = blocks.clone().find(|&i| state.lens[i] != rows.start) {
            return Err(Error::InvalidInput(format!(
                "decoder block {i} has cached {} positions but the rows start at position {}; run blocks in order",
                state.lens[i], rows.start
            )));
        }
        Ok(())
    }

    /// Runs decoder `blocks` over `rows`, appending them to those blocks' caches; the
    /// result replaces the rows in the stash.
    pub fn decode_blocks(&self, state: &mut GpuState, blocks: Range<usize>, rows: GpuRows) -> Result<GpuRows> {
        self.check_range(state, &blocks, rows)?;
        let (c, s) = (&self.config, &self.scratch);
        let (d, n, start) = (c.d_model, rows.count, rows.start);
        let row_bytes = (d * 4) as u64;
        self.gpu.copy(&state.stash, start as u64 * row_bytes, &s.h, 0, n as u64 * row_bytes);
        for i in blocks.clone() {
            let (b, kv) = (&self.decoder[i], &state.caches[i]);
            self.rms_norm(&s.h, 0, &b.self_norm, &s.x, n, 1.0);
            self.linear(&s.x, &b.self_attn.q, None, &s.q, 0, n, 0, false);
            self.linear(&s.x, &b.self_attn.k, None, &kv[0], start, n, 0, false);
            self.linear(&s.x, &b.self_attn.v, None, &kv[1], start, n, 0, false);
            self.attention(start, n, &kv[0], &kv[1], start + n, Some(&self.decoder_bias), true);
            self.linear(&s.ctx, &b.self_attn.o, None, &s.h, 0, n, 0, true);

            self.rms_norm(&s.h, 0, &b.cross_norm, &s.x, n, 1.0);
            self.linear(&s.x, &b.cross_attn.q, None, &s.q, 0, n, 0, false);
            self.attention(start, n, &kv[2], &kv[3], state.source_len, None, false);
            self.linear(&s.ctx, &b.cross_attn.o, None, &s.h, 0, n, 0, true);

            self.feed_forward(&b.ff, &b.ff_norm, n);
            state.lens[i] = start + n;
        }
        self.gpu.copy(&s.h, 0, &state.stash, start as u64 * row_bytes, n as u64 * row_bytes);
        Ok(rows)
    }

    /// CALM's state propagation: `blocks`, which the rows skipped, cache keys and values
    /// computed from the rows' exited state.
    pub fn copy_state(&self, state: &mut GpuState, blocks: Range<usize>, rows: GpuRows) -> Result<()> {
        self.check_range(state, &blocks, rows)?;
        let s = &self.scratch;
        for i in blocks {
            let (b, kv) = (&self.decoder[i], &state.caches[i]);
            self.rms_norm(&state.stash, rows.start, &b.self_norm, &s.x, rows.count, 1.0);
            self.linear(&s.x, &b.self_attn.k, None, &kv[0], rows.start, rows.count, 0, false);
            self.linear(&s.x, &b.self_attn.v, None, &kv[1], rows.start, rows.count, 0, false);
            state.lens[i] = rows.start + rows.count;
        }
        Ok(())
    }

    /// The LM head over `rows` (final norm, scale, head, softmax statistics), submitted
    /// with everything recorded before it, its readback started but not waited for
    /// (`collect`). The last row's argmax also stays on the device as the next position's
    /// input id, so the next step can be recorded (`embed_decided`) before the CPU sees it.
    pub fn top2_later(&self, state: &mut GpuState, rows: GpuRows) -> Top2Readback {
        let s = &self.scratch;
        let vocab = self.config.vocab_size;
        self.rms_norm(&state.stash, rows.start, &self.decoder_norm, &s.x, rows.count, self.head_scale);
        for first in (0..rows.count).step_by(HEAD_ROWS) {
            let n = HEAD_ROWS.min(rows.count - first);
            self.head(first, n);
            let params = Top2Params { rows: n as u32, vocab: vocab as u32, out_row: first as u32, _pad: 0 };
            self.gpu.launch(Kernel::Top2, &params, &[&s.logits, &s.top2], (n as u32, 1));
        }
        let next = rows.start + rows.count;
        let mut next_id = None;
        if rows.count > 0 && next < self.max_len {
            // The last row's argmax, into the next step's input.
            let at = (rows.count - 1) * TOP2_BYTES + TOP2_TOKEN_OFFSET;
            self.gpu.copy(&s.top2, at as u64, &state.ids, (next * 4) as u64, 4);
            state.decisions += 1;
            state.decided_by[next] = state.decisions;
            next_id = Some(LeftId { position: next, decision: state.decisions });
        }
        Top2Readback { buffer: self.gpu.read_later(&s.top2, (rows.count * TOP2_BYTES) as u64), next_id }
    }

    /// What a `top2_later` decided, row by row.
    pub async fn collect(&self, readback: Top2Readback) -> Result<Vec<Top2>> {
        let bytes = self.gpu.wait(readback.buffer).await?;
        Ok(bytes
            .chunks_exact(TOP2_BYTES)
            .map(|b| {
                let word = |i: usize| u32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]);
                Top2 { best: f32::from_bits(word(0)), token: word(1), second: f32::from_bits(word(2)), z: f32::from_bits(word(3)) }
            })
            .collect())
    }

    /// Logits of normalised rows `first..first + n` of the scratch `x` into the logits buffer.
    fn head(&self, first: usize, n: usize) {
        let (s, d, vocab) = (&self.scratch, self.config.d_model, self.config.vocab_size);
        let params = LinearParams { rows: n as u32, in_dim: d as u32, out_dim: vocab as u32, x_off: (first * d) as u32, ..Default::default() };
        launch_linear(&self.gpu, params, &s.x, &self.lm_head, &self.lm_head, &s.logits);
    }

    /// The full logits of up to 64 rows (for parity tests; decoding reads only `top2`).
    pub async fn logits(&self, state: &GpuState, rows: GpuRows) -> Result<Vec<Vec<f32>>> {
        if rows.count > HEAD_ROWS {
            return Err(Error::InvalidInput(format!("logits of at most {HEAD_ROWS} rows at once")));
        }
        let vocab = self.config.vocab_size;
        self.rms_norm(&state.stash, rows.start, &self.decoder_norm, &self.scratch.x, rows.count, self.head_scale);
        self.head(0, rows.count);
        let bytes = self.gpu.read(&self.scratch.logits, (rows.count * vocab * 4) as u64).await?;
        let values: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        Ok(values.chunks(vocab).map(<[f32]>::to_vec).collect())
    }

    /// Exact mode's rollback: forget positions from `len` on.
    pub fn truncate(&self, state: &mut GpuState, len: usize) {
        state.lens.iter_mut().for_each(|l| *l = (*l).min(len));
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::backend::block_on;

    /// Values in [-1, 1) from a seed (xorshift; the test needs variety, not quality).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    /// A q8 matrix on the device and the values its integers and scales stand for.
    fn q8_weight(gpu: &Gpu, [rows, cols]: [usize; 2], seed: u64) -> (Weight, Vec<f32>) {
        let mut w = values(rows * cols, seed);
        w[..cols].fill(0.0); // a row of zeros keeps scale 0
        let (q, scales) = quantize_q8(rows, cols, &w);
        let dequantized = q.iter().enumerate().map(|(k, &v)| v as f32 * scales[k / cols]).collect();
        let (buf, scales) = gpu.upload_q8("w", &q, &scales);
        (Weight { buf, format: Format::Q8, scales, shape: [rows, cols] }, dequantized)
    }

    /// x (rows, cols) . w (out, cols)^T, and beside each sum the sum of its terms'
    /// magnitudes (what f32 rounding error scales with).
    fn reference(x: &[f32], w: &[f32], cols: usize) -> Vec<(f32, f32)> {
        x.chunks(cols).flat_map(|xr| w.chunks(cols).map(move |wr| xr.iter().zip(wr).fold((0.0, 0.0), |(s, m), (a, b)| (s + a * b, m + (a * b).abs())))).collect()
    }

    /// Both linear kernels on q8 weights against plain f32 sums of the dequantized values,
    /// on the row counts the model multiplies (a decoding step's one row, FREE's few stacked
    /// rows, a source's many, across the tile of eight and the workgroup of 64), feature
    /// counts not a multiple of four, input widths not a multiple of four (pairs of
    /// integers then straddle words) and odd (the cooperative kernel), plain and gated
    /// (ReLU). Within 1e-5 of each sum's magnitude: the kernels and the reference add the
    /// same products in different orders, and the scale is applied after the sum rather
    /// than to each weight.
    #[test]
    fn q8_linear_kernels_match_the_dequantized_weights() {
        let mut gpu = match block_on(Gpu::new()).unwrap() {
            Ok(gpu) => gpu,
            Err(e) if option_env!("FREE_REQUIRE_GPU").is_none() => return eprintln!("no GPU test: {e}"),
            Err(e) => panic!("FREE_REQUIRE_GPU is set but {e}"),
        };
        let shapes = [(1, 37, 64), (2, 40, 30), (3, 64, 66), (8, 12, 64), (13, 37, 30), (70, 9, 64), (5, 12, 33)];
        for cooperative in [false, true] {
            gpu.set_cooperative_kernels(cooperative);
            for (seed, &(rows, out_dim, in_dim)) in shapes.iter().enumerate() {
                for gated in [false, true] {
                    let seed = seed as u64 * 4 + gated as u64;
                    let (w, w_values) = q8_weight(&gpu, [out_dim, in_dim], seed);
                    let (g, g_values) = q8_weight(&gpu, [out_dim, in_dim], seed + 100);
                    let x = values(rows * in_dim, seed + 200);
                    let (xb, out) = (gpu.upload("x", &x), gpu.buffer("out", (rows * out_dim * 4) as u64));
                    let params = LinearParams {
                        rows: rows as u32,
                        in_dim: in_dim as u32,
                        out_dim: out_dim as u32,
                        act: if gated { act_code(crate::config::Activation::Relu) } else { 0 },
                        gated: gated as u32,
                        ..Default::default()
                    };
                    launch_linear(&gpu, params, &xb, &w, &g, &out);
                    let bytes = block_on(gpu.read(&out, (rows * out_dim * 4) as u64)).unwrap().unwrap();
                    let got = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                    let (a, b) = (reference(&x, &w_values, in_dim), reference(&x, &g_values, in_dim));
                    for (k, (got, (&(a, a_mag), &(b, b_mag)))) in got.zip(a.iter().zip(&b)).enumerate() {
                        let (want, bound) = if gated {
                            (a.max(0.0) * b, 1e-5 * (a_mag * b.abs() + a.abs() * b_mag) + 1e-6)
                        } else {
                            (a, 1e-5 * a_mag + 1e-6)
                        };
                        let what = format!("cooperative {cooperative}, {rows}x{out_dim}x{in_dim}, gated {gated}, element {k}");
                        assert!((got - want).abs() <= bound, "{what}: {got} vs {want}");
                    }
                }
            }
        }
        gpu.check().unwrap();
    }
}

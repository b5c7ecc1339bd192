//! Weight matrices in the precision they are stored in, and the products of batch-1
//! decoding with them.
//!
//! Decoding one token multiplies a single row by every weight matrix, so its time is the
//! time to stream the weights from memory (docs/method.md#where-the-time-goes). A general
//! GEMM packs the weight operand before multiplying, which for one row reads the weights
//! twice; here each weight row is read once and dotted with every input row while it is
//! hot. Where the CPU can widen f16 in hardware (x86-64 with F16C, AVX2 and FMA), f16
//! checkpoints stay f16 in memory: half the bytes to stream, and the widened values are
//! exactly those an f32 copy holds. 8-bit weights (`Matrix::quantize_q8`: symmetric, one f32
//! scale per row) stream a quarter of f32's bytes and are multiplied in integers, as
//! llama.cpp's Q8_0 products are: each input row is quantized to 8 bits as it arrives, one f32
//! scale per block of 32 values (the block's largest magnitude over 127); every block's dot
//! product with the weight row is summed exactly in i32 (AVX-512 VNNI `dpbusd`, AVX2
//! `maddubs`, simd128 `extmul`, or plain Rust); and the blocks' sums are scaled and added in
//! f32 in one order shared by every path, so all of them compute the same bits. The weight
//! row's scale is applied to the result. The activations' rounding (at most half a step of
//! their block's scale) is the price: docs/benchmarks.md#8-bit-weights-q8-native-cpu has what
//! it costs in agreement and what the integers gain in speed.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use half::f16;

use crate::error::Result;

enum Data {
    F32(Vec<f32>),
    /// Only where `wide_f16` holds.
    F16(Vec<f16>),
    /// Row j holds `q[j * cols..]` times `scales[j]`.
    Q8 { q: Vec<i8>, scales: Vec<f32> },
}

/// How a loaded model holds its weight matrices (`dtype`); none: as the checkpoint stores
/// them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[cfg_attr(all(test, not(target_arch = "wasm32")), derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    F32,
    /// Widened to f32 where the CPU cannot widen f16 in hardware (as an f16 checkpoint is).
    F16,
    /// Symmetric 8-bit integers with one f32 scale per row (`Matrix::quantize_q8`).
    Q8,
}

impl std::str::FromStr for Dtype {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self> {
        serde_json::from_value(serde_json::Value::String(s.into())).map_err(|_| crate::Error::InvalidSetting {
            setting: "dtype",
            value: s.into(),
            reason: "use f32, f16 or q8 (8-bit weights), or leave it out for the checkpoint's own".into(),
        })
    }
}

/// A (rows, cols) row-major matrix: HF's (out, in) layout of a linear layer's weight.
pub struct Matrix {
    rows: usize,
    cols: usize,
    data: Data,
}

impl Matrix {
    pub fn from_f32(rows: usize, cols: usize, data: Vec<f32>) -> Self {
        debug_assert_eq!(data.len(), rows * cols);
        Matrix { rows, cols, data: Data::F32(data) }
    }

    /// Keeps f16 values as f16 where the CPU widens them fast, else widens them now.
    pub fn from_f16(rows: usize, cols: usize, data: Vec<f16>) -> Self {
        debug_assert_eq!(data.len(), rows * cols);
        if wide_f16() {
            Matrix { rows, cols, data: Data::F16(data) }
        } else {
            Matrix::from_f32(rows, cols, data.iter().map(|v| v.to_f32()).collect())
        }
    }

    /// Each row as symmetric 8-bit integers and one scale, the row's largest magnitude over
    /// 127 (a row of zeros keeps scale 0): every value within half a step of `data`'s.
    /// train/free_train/export.py's `quantize_q8` computes the same integers and scales for
    /// checkpoints stored in 8 bits (there a row of zeros gets scale 1: a stored scale must
    /// be positive).
    pub fn quantize_q8(rows: usize, cols: usize, data: &[f32]) -> Self {
        debug_assert_eq!(data.len(), rows * cols);
        let mut q = Vec::with_capacity(rows * cols);
        let mut scales = Vec::with_capacity(rows);
        for row in data.chunks_exact(cols.max(1)).take(rows) {
            let scale = row.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
            let inverse = if scale > 0.0 { 1.0 / scale } else { 0.0 };
            q.extend(row.iter().map(|v| (v * inverse).round().clamp(-127.0, 127.0) as i8));
            scales.push(scale);
        }
        Matrix::from_q8(rows, cols, q, scales)
    }

    /// Row j is `q[j * cols..(j + 1) * cols]` times `scales[j]` (a checkpoint stored in 8
    /// bits: `crate::weights`).
    pub fn from_q8(rows: usize, cols: usize, q: Vec<i8>, scales: Vec<f32>) -> Self {
        debug_assert_eq!((q.len(), scales.len()), (rows * cols, rows));
        Matrix { rows, cols, data: Data::Q8 { q, scales } }
    }

    /// Row `i` widened to f32.
    pub fn row(&self, i: usize) -> Vec<f32> {
        let range = i * self.cols..(i + 1) * self.cols;
        match &self.data {
            Data::F32(d) => d[range].to_vec(),
            Data::F16(d) => d[range].iter().map(|v| v.to_f32()).collect(),
            Data::Q8 { q, scales } => q[range].iter().map(|&v| v as f32 * scales[i]).collect(),
        }
    }

    /// x (n, cols) times this matrix transposed: (n, rows). `out` has n * rows elements.
    fn mul_t(&self, x: &[f32], out: &mut [f32]) {
        let (rows, cols) = (self.rows, self.cols);
        if let Data::Q8 { q, scales } = &self.data {
            mul_t_q8(q, rows, cols, x, out);
            // The row's scale, once per product rather than once per weight.
            for out_row in out.chunks_exact_mut(rows) {
                for (o, s) in out_row.iter_mut().zip(scales) {
                    *o *= s;
                }
            }
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if avx2_fma() {
            // SAFETY: the CPU has the features these functions are compiled for (f16
            // storage exists only where wide_f16() found F16C as well).
            return unsafe {
                match &self.data {
                    Data::F32(w) => x86::mul_t_f32(w, rows, cols, x, out),
                    Data::F16(w) => x86::mul_t_f16(w, rows, cols, x, out),
                    Data::Q8 { .. } => unreachable!("multiplied above"),
                }
            };
        }
        match &self.data {
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            Data::F32(w) => mul_t_rows::<_, wasm::Simd128>(w.as_slice(), rows, cols, x, out),
            #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
            Data::F32(w) => mul_t_rows::<_, Portable>(w.as_slice(), rows, cols, x, out),
            Data::F16(_) => unreachable!("f16 matrices exist only where wide_f16() holds"),
            Data::Q8 { .. } => unreachable!("multiplied above"),
        }
    }

    /// `x @ self^T` for a tensor x of shape (n, cols).
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.apply_op1_no_bwd(&MulT(self))?)
    }
}

/// Where `mul_t_rows` gets weight row j from: a slice of f32 storage, or f16 storage widened
/// into `buf` (grown to the row's length on first use, so f32 storage allocates nothing).
trait Rows {
    fn row<'b>(&'b self, j: usize, cols: usize, buf: &'b mut Vec<f32>) -> &'b [f32];
}

impl Rows for [f32] {
    #[inline(always)]
    fn row<'b>(&'b self, j: usize, cols: usize, _buf: &'b mut Vec<f32>) -> &'b [f32] {
        &self[j * cols..(j + 1) * cols]
    }
}

/// x times the 8-bit integers of a q8 matrix, transposed, before the rows' scales, in
/// integer dot products (the module header). Every input row is computed alike, whatever
/// their number, so stacked rows give bit for bit what one row gives.
fn mul_t_q8(q: &[i8], rows: usize, cols: usize, x: &[f32], out: &mut [f32]) {
    if cols == 0 {
        return out.fill(0.0);
    }
    #[cfg(target_arch = "x86_64")]
    {
        if x86::vnni() {
            // SAFETY: the CPU has AVX2, AVX512-VNNI and AVX512-VL.
            return unsafe { x86::mul_t_q8_vnni(q, rows, cols, x, out) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            return unsafe { x86::mul_t_q8_avx2(q, rows, cols, x, out) };
        }
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return q8_products::<wasm::Simd128>(q, rows, cols, x, out);
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    q8_products::<Portable>(q, rows, cols, x, out)
}

/// Input values per activation scale. 32 as llama.cpp's Q8_0: a block's scale follows its
/// largest value closely (T5's activations have a few large channels, which a scale per row
/// would let drown the rest), and 32 products summed stay far inside i32.
const BLOCK: usize = 32;
/// Blocks whose integer sums a `BlockSums` kernel returns at once; also the number of f32
/// accumulators per input row (block b adds into accumulator b % GROUP).
const GROUP: usize = 8;

/// Exact integer dot products of 8-bit activations with 8-bit weights, a block at a time.
trait BlockSums {
    /// For each of `R` input rows `x[r]`, the `GROUP` sums of `BLOCK` products
    /// `x[r][k] * w[k]` over `GROUP * BLOCK` consecutive values. Unsafe: reads that many
    /// values from each pointer, and uses the implementor's instruction set (only called
    /// inlined into code compiled for it). Every value is in [-127, 127].
    unsafe fn sums<const R: usize>(x: [*const i8; R], w: *const i8) -> [[i32; GROUP]; R];

    /// `acc[r][b] += scales[r][b] * sums[r][b]` (the sums as f32; a multiply, then an add),
    /// in the instruction set's vectors where it has them: every lane's arithmetic is this
    /// one, so the bits are the same on every path. Unsafe as `sums`, and reads `GROUP`
    /// scales from each `scales[r]`.
    #[inline(always)]
    unsafe fn accumulate<const R: usize>(acc: &mut [[f32; GROUP]; R], x: [*const i8; R], w: *const i8, scales: [*const f32; R]) {
        // SAFETY: the caller's contract.
        let sums = unsafe { Self::sums::<R>(x, w) };
        for ((a, s), d) in acc.iter_mut().zip(sums).zip(scales) {
            // SAFETY: the caller's contract.
            let d = unsafe { std::slice::from_raw_parts(d, GROUP) };
            for ((a, s), d) in a.iter_mut().zip(s).zip(d) {
                *a += d * s as f32;
            }
        }
    }
}

/// Plain Rust: the reference every other kernel must equal, and the kernel of CPUs without
/// one.
#[cfg(any(test, not(all(target_arch = "wasm32", target_feature = "simd128"))))]
impl BlockSums for Portable {
    #[inline(always)]
    unsafe fn sums<const R: usize>(x: [*const i8; R], w: *const i8) -> [[i32; GROUP]; R] {
        // SAFETY: the caller's contract (GROUP * BLOCK values behind every pointer).
        let w = unsafe { std::slice::from_raw_parts(w, GROUP * BLOCK) };
        x.map(|x| {
            let x = unsafe { std::slice::from_raw_parts(x, GROUP * BLOCK) };
            std::array::from_fn(|b| (b * BLOCK..(b + 1) * BLOCK).map(|k| i32::from(x[k]) * i32::from(w[k])).sum())
        })
    }
}

/// Each row of x (n rows of `cols`) in 8 bits, per block of `BLOCK` values (the last one may
/// be shorter): the integers, row after row, and each block's scale (its largest magnitude
/// over 127; a block of zeros keeps 0), row after row. Ties round to even, which every
/// instruction set does in one instruction.
#[inline(always)]
fn quantize_blocks(x: &[f32], cols: usize) -> (Vec<i8>, Vec<f32>) {
    let mut q = vec![0i8; x.len()];
    let mut scales = Vec::with_capacity(x.len().div_ceil(BLOCK));
    for (xr, qr) in x.chunks_exact(cols).zip(q.chunks_exact_mut(cols)) {
        for (xb, qb) in xr.chunks(BLOCK).zip(qr.chunks_mut(BLOCK)) {
            // Not f32::max, whose NaN rule keeps it from vectorizing; NaN is skipped all the same.
            let scale = xb.iter().fold(0f32, |m, v| if v.abs() > m { v.abs() } else { m }) / 127.0;
            let inverse = if scale > 0.0 { 1.0 / scale } else { 0.0 };
            for (q, v) in qb.iter_mut().zip(xb) {
                // Within [-127, 127] (the kernels rely on it); NaN becomes 0.
                *q = (v * inverse).round_ties_even().clamp(-127.0, 127.0) as i8;
            }
            scales.push(scale);
        }
    }
    (q, scales)
}

/// The body of every q8 product: x quantized once, then each weight row dotted with up to 3
/// input rows at a time while it is hot. Inlined into each caller so it is compiled for the
/// caller's target features.
#[inline(always)]
fn q8_products<K: BlockSums>(w: &[i8], rows: usize, cols: usize, x: &[f32], out: &mut [f32]) {
    let (n, blocks) = (x.len() / cols, cols.div_ceil(BLOCK));
    let (xq, xs) = quantize_blocks(x, cols);
    for j in 0..rows {
        let wj = &w[j * cols..(j + 1) * cols];
        let mut i = 0;
        while i < n {
            let (xq, xs) = (&xq[i * cols..], &xs[i * blocks..]);
            let mut put = |d: &[f32]| {
                for (r, &v) in d.iter().enumerate() {
                    out[(i + r) * rows + j] = v;
                }
                d.len()
            };
            i += match n - i {
                1 => put(&q8_dots::<K, 1>(xq, xs, wj)),
                2 => put(&q8_dots::<K, 2>(xq, xs, wj)),
                _ => put(&q8_dots::<K, 3>(xq, xs, wj)),
            };
        }
    }
}

/// The dots of `R` quantized input rows (`xq`, `xs` as `quantize_blocks` makes them) with
/// weight row `w`: per block, the activation scale times the exact integer sum (below 2^24
/// in magnitude, so exact in f32 too: 32 x 127 x 127), added into accumulator b % GROUP, the
/// accumulators summed in a fixed tree. Multiply then add, never fused, as every instruction
/// set can: the f32 arithmetic is the same on every path.
#[inline(always)]
fn q8_dots<K: BlockSums, const R: usize>(xq: &[i8], xs: &[f32], w: &[i8]) -> [f32; R] {
    let cols = w.len();
    let blocks = cols.div_ceil(BLOCK);
    assert!(xq.len() >= R * cols && xs.len() >= R * blocks);
    let groups = cols / (GROUP * BLOCK);
    let mut acc = [[0f32; GROUP]; R];
    for g in 0..groups {
        let (c, b) = (g * GROUP * BLOCK, g * GROUP);
        // SAFETY: r * cols + c + GROUP * BLOCK <= (r + 1) * cols <= xq.len(),
        // c + GROUP * BLOCK <= cols and r * blocks + b + GROUP <= (r + 1) * blocks <= xs.len()
        // (checked above); the callers have K's instruction set.
        unsafe {
            let x = std::array::from_fn(|r| xq.as_ptr().add(r * cols + c));
            let d = std::array::from_fn(|r| xs.as_ptr().add(r * blocks + b));
            K::accumulate::<R>(&mut acc, x, w.as_ptr().add(c), d);
        }
    }
    // The blocks past the last whole group (none in the demo model, whose widths are
    // multiples of 256), the last possibly short.
    for b in groups * GROUP..blocks {
        let span = b * BLOCK..((b + 1) * BLOCK).min(cols);
        for (r, a) in acc.iter_mut().enumerate() {
            let s: i32 = span.clone().map(|k| i32::from(xq[r * cols + k]) * i32::from(w[k])).sum();
            a[b % GROUP] += xs[r * blocks + b] * s as f32;
        }
    }
    acc.map(|a| ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7])))
}

/// Dot products of weight rows with input rows: portable code, or a `simd::Simd` kernel.
trait Dots {
    /// The dots of 4 consecutive rows of `x` (each `w0.len()` long) with `w0` and with `w1`.
    fn dot4x2(x: &[f32], w0: &[f32], w1: &[f32]) -> [[f32; 4]; 2];
    /// The dots of `R` (at most 3) consecutive rows of `x` with `w`, sharing each load of
    /// `w`. Every row is summed in the same lanes and order whatever `R` is, so a deep pass
    /// over stacked rows computes bit for bit what one-row steps would.
    fn dots<const R: usize>(x: &[f32], w: &[f32]) -> [f32; R];
}

/// The body of every product. One input row (decoding) or up to three (a deep pass) stream
/// each weight row once from memory and dot it with all input rows at once. Many input rows
/// (the encoder) are computed in tiles of 2 weight rows x 4 input rows, so each value loaded
/// serves several multiply-adds. Inlined into each caller so it is compiled for the caller's
/// target features.
#[inline(always)]
fn mul_t_rows<W: Rows + ?Sized, D: Dots>(w: &W, rows: usize, cols: usize, x: &[f32], out: &mut [f32]) {
    let n = x.len() / cols;
    let mut buf0 = Vec::new();
    match n {
        1 => return few_rows::<1, _, D>(w, rows, cols, x, out, &mut buf0),
        2 => return few_rows::<2, _, D>(w, rows, cols, x, out, &mut buf0),
        3 => return few_rows::<3, _, D>(w, rows, cols, x, out, &mut buf0),
        _ => {}
    }
    let mut buf1 = Vec::new();
    let mut j = 0;
    while j + 2 <= rows {
        let (w0, w1) = (w.row(j, cols, &mut buf0), w.row(j + 1, cols, &mut buf1));
        let mut i = 0;
        while i + 4 <= n {
            let d = D::dot4x2(&x[i * cols..(i + 4) * cols], w0, w1);
            for g in 0..4 {
                out[(i + g) * rows + j] = d[0][g];
                out[(i + g) * rows + j + 1] = d[1][g];
            }
            i += 4;
        }
        for i in i..n {
            let xi = &x[i * cols..(i + 1) * cols];
            out[i * rows + j] = D::dots::<1>(xi, w0)[0];
            out[i * rows + j + 1] = D::dots::<1>(xi, w1)[0];
        }
        j += 2;
    }
    for j in j..rows {
        let wj = w.row(j, cols, &mut buf0);
        for i in 0..n {
            out[i * rows + j] = D::dots::<1>(&x[i * cols..(i + 1) * cols], wj)[0];
        }
    }
}

/// `R` input rows against every weight row, each weight row loaded once for all of them.
#[inline(always)]
fn few_rows<const R: usize, W: Rows + ?Sized, D: Dots>(w: &W, rows: usize, cols: usize, x: &[f32], out: &mut [f32], buf: &mut Vec<f32>) {
    for j in 0..rows {
        let d = D::dots::<R>(x, w.row(j, cols, buf));
        for (r, v) in d.into_iter().enumerate() {
            out[r * rows + j] = v;
        }
    }
}

/// Plain Rust, 8 lanes per row so the compiler can vectorise it (f32 addition is not
/// associative: the compiler keeps the order it is given). Not used on wasm32 with simd128,
/// whose tests check it all the same.
#[cfg(any(test, not(all(target_arch = "wasm32", target_feature = "simd128"))))]
struct Portable;

#[cfg(any(test, not(all(target_arch = "wasm32", target_feature = "simd128"))))]
impl Dots for Portable {
    #[inline(always)]
    fn dot4x2(x: &[f32], w0: &[f32], w1: &[f32]) -> [[f32; 4]; 2] {
        [Portable::dots::<4>(x, w0), Portable::dots::<4>(x, w1)]
    }

    #[inline(always)]
    fn dots<const R: usize>(x: &[f32], w: &[f32]) -> [f32; R] {
        const LANES: usize = 8;
        let cols = w.len();
        let body = cols / LANES * LANES;
        let mut acc = [[0f32; LANES]; R];
        for c in (0..body).step_by(LANES) {
            let wc = &w[c..c + LANES];
            for (r, a) in acc.iter_mut().enumerate() {
                let xc = &x[r * cols + c..r * cols + c + LANES];
                for l in 0..LANES {
                    a[l] += xc[l] * wc[l];
                }
            }
        }
        let mut sums = [0f32; R];
        for (r, s) in sums.iter_mut().enumerate() {
            let a = &acc[r];
            *s = ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
            for k in body..cols {
                *s += x[r * cols + k] * w[k];
            }
        }
        sums
    }
}

#[cfg(target_arch = "x86_64")]
fn avx2_fma() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// Whether f16 weights can stay f16 (widened on the fly by the CPU).
fn wide_f16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        avx2_fma() && std::arch::is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use half::f16;

    use super::simd::{Simd, Weight};
    use super::{mul_t_rows, q8_products, BlockSums, Rows, BLOCK, GROUP};

    #[target_feature(enable = "avx2,fma")]
    pub fn mul_t_f32(w: &[f32], rows: usize, cols: usize, x: &[f32], out: &mut [f32]) {
        mul_t_rows::<_, Avx2>(w, rows, cols, x, out);
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub fn mul_t_f16(w: &[f16], rows: usize, cols: usize, x: &[f32], out: &mut [f32]) {
        match x.len() / cols {
            // One to three input rows (a decoding step, most FREE deep passes): each weight
            // is widened once, in a register, on its way to the multiplies of every row,
            // instead of through `F16Rows`'s buffer (a store and a reload per weight). More
            // rows (4+ gained nothing measurable this way) amortise the buffer over tiles.
            1 => few_rows_of::<1>(w, rows, cols, x, out),
            2 => few_rows_of::<2>(w, rows, cols, x, out),
            3 => few_rows_of::<3>(w, rows, cols, x, out),
            _ => mul_t_rows::<_, Avx2>(&F16Rows(w), rows, cols, x, out),
        }
    }

    /// `R` input rows against every weight row of f16s, each widened as it is loaded.
    #[inline(always)]
    fn few_rows_of<const R: usize>(w: &[f16], rows: usize, cols: usize, x: &[f32], out: &mut [f32]) {
        for j in 0..rows {
            let d = super::simd::dots::<Avx2, f16, R>(x, &w[j * cols..(j + 1) * cols]);
            for (r, v) in d.into_iter().enumerate() {
                out[r * rows + j] = v;
            }
        }
    }

    /// Whether the CPU has 256-bit VNNI (`vpdpbusd` on ymm registers). AVX-VNNI (the same
    /// instruction without AVX-512, on some Intel CPUs) is not used: no machine here has it
    /// to test it on.
    pub fn vnni() -> bool {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512vl")
    }

    #[target_feature(enable = "avx2")]
    pub fn mul_t_q8_avx2(w: &[i8], rows: usize, cols: usize, x: &[f32], out: &mut [f32]) {
        q8_products::<Maddubs>(w, rows, cols, x, out);
    }

    #[target_feature(enable = "avx2,avx512vnni,avx512vl")]
    pub fn mul_t_q8_vnni(w: &[i8], rows: usize, cols: usize, x: &[f32], out: &mut [f32]) {
        q8_products::<Dpbusd>(w, rows, cols, x, out);
    }

    /// The sums of each 4 adjacent products of unsigned bytes `u` and signed bytes `s`, in
    /// eight i32 lanes. Unsafe: uses the implementor's instruction set.
    pub trait Quads {
        unsafe fn quads(u: __m256i, s: __m256i) -> __m256i;
    }

    /// AVX2: `maddubs` adds the two products of each byte pair into i16, saturating; here
    /// |u| <= 127 and |s| <= 127, so a pair is at most 2 x 127 x 127 = 32,258 < 32,767 and
    /// never saturates. `madd` with ones adds the i16 pairs into i32.
    pub struct Maddubs;

    impl Quads for Maddubs {
        #[inline(always)]
        unsafe fn quads(u: __m256i, s: __m256i) -> __m256i {
            _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
        }
    }

    /// AVX-512 VNNI on ymm registers: the four products added into i32 in one instruction.
    pub struct Dpbusd;

    impl Quads for Dpbusd {
        #[inline(always)]
        unsafe fn quads(u: __m256i, s: __m256i) -> __m256i {
            _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s)
        }
    }

    // One ymm register per block, 8 blocks folded by 3 levels of horizontal adds.
    const _: () = assert!(BLOCK == 32 && GROUP == 8);

    /// Both instructions take one operand unsigned, so the weight's sign moves onto the
    /// activation (`sign`: x * sign(w)) and the weight's magnitude is the unsigned operand;
    /// the product is unchanged. Each 32-value block gives 8 lanes of partial sums; 8 blocks'
    /// vectors are folded by horizontal adds into one vector whose lane b is block b's sum.
    impl<Q: Quads> BlockSums for Q {
        #[inline(always)]
        unsafe fn sums<const R: usize>(x: [*const i8; R], w: *const i8) -> [[i32; GROUP]; R] {
            let v = group_sums::<Q, R>(x, w);
            let mut out = [[0i32; GROUP]; R];
            for r in 0..R {
                _mm256_storeu_si256(out[r].as_mut_ptr() as *mut __m256i, v[r]);
            }
            out
        }

        #[inline(always)]
        unsafe fn accumulate<const R: usize>(acc: &mut [[f32; GROUP]; R], x: [*const i8; R], w: *const i8, scales: [*const f32; R]) {
            let v = group_sums::<Q, R>(x, w);
            for r in 0..R {
                let product = _mm256_mul_ps(_mm256_loadu_ps(scales[r]), _mm256_cvtepi32_ps(v[r]));
                _mm256_storeu_ps(acc[r].as_mut_ptr(), _mm256_add_ps(_mm256_loadu_ps(acc[r].as_ptr()), product));
            }
        }
    }

    /// `BlockSums::sums` in a register per input row (lane b: block b's sum). Loops, not
    /// closures: a closure is not compiled for the caller's instruction set, and the
    /// intrinsics would be called rather than inlined.
    #[inline(always)]
    unsafe fn group_sums<Q: Quads, const R: usize>(x: [*const i8; R], w: *const i8) -> [__m256i; R] {
        let mut pairs = [[_mm256_setzero_si256(); 4]; R];
        for p in 0..4 {
            let mut two = [[_mm256_setzero_si256(); 2]; R];
            for (h, b) in [2 * p, 2 * p + 1].into_iter().enumerate() {
                let wv = _mm256_loadu_si256(w.add(BLOCK * b) as *const __m256i);
                let magnitude = _mm256_sign_epi8(wv, wv);
                for r in 0..R {
                    let xv = _mm256_loadu_si256(x[r].add(BLOCK * b) as *const __m256i);
                    two[r][h] = Q::quads(magnitude, _mm256_sign_epi8(xv, wv));
                }
            }
            for r in 0..R {
                pairs[r][p] = _mm256_hadd_epi32(two[r][0], two[r][1]);
            }
        }
        let mut out = [_mm256_setzero_si256(); R];
        for r in 0..R {
            let [p01, p23, p45, p67] = pairs[r];
            // Lanes: [0 low, 1 low, 2 low, 3 low, 0 high, 1 high, 2 high, 3 high] (and 4-7),
            // where low and high are each block's two 128-bit halves.
            let (lo, hi) = (_mm256_hadd_epi32(p01, p23), _mm256_hadd_epi32(p45, p67));
            out[r] = _mm256_add_epi32(_mm256_permute2x128_si256::<0x20>(lo, hi), _mm256_permute2x128_si256::<0x31>(lo, hi));
        }
        out
    }

    /// f16 weights widened as they are loaded (F16C).
    impl Weight<Avx2> for f16 {
        #[inline(always)]
        unsafe fn load(p: *const f16) -> __m256 {
            _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
        }
        fn widen(self) -> f32 {
            self.to_f32()
        }
    }

    /// Eight f32 lanes. Only used inlined into the functions above, which have AVX2, FMA and
    /// F16C: with 16 vector registers, `simd::dots`' 4R accumulators (R <= 3) and `dot4x2`'s
    /// 8 fit beside their operands.
    struct Avx2;

    impl Simd for Avx2 {
        type V = __m256;
        const LANES: usize = 8;

        #[inline(always)]
        unsafe fn zero() -> __m256 {
            _mm256_setzero_ps()
        }

        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m256 {
            _mm256_loadu_ps(p)
        }

        #[inline(always)]
        unsafe fn mul_add(a: __m256, b: __m256, acc: __m256) -> __m256 {
            _mm256_fmadd_ps(a, b, acc)
        }

        #[inline(always)]
        unsafe fn add(a: __m256, b: __m256) -> __m256 {
            _mm256_add_ps(a, b)
        }

        #[inline(always)]
        unsafe fn hsum(v: __m256) -> f32 {
            let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps::<1>(s, s)))
        }
    }

    struct F16Rows<'a>(&'a [f16]);

    impl Rows for F16Rows<'_> {
        /// Only called inlined into `mul_t_f16`, which has F16C.
        #[inline(always)]
        fn row<'b>(&'b self, j: usize, cols: usize, buf: &'b mut Vec<f32>) -> &'b [f32] {
            buf.resize(cols, 0.0);
            let src = &self.0[j * cols..(j + 1) * cols];
            let body = cols / 8 * 8;
            for c in (0..body).step_by(8) {
                // SAFETY: c + 8 <= cols for both slices (unaligned loads and stores).
                unsafe {
                    let h = _mm_loadu_si128(src.as_ptr().add(c) as *const __m128i);
                    _mm256_storeu_ps(buf.as_mut_ptr().add(c), _mm256_cvtph_ps(h));
                }
            }
            for c in body..cols {
                buf[c] = src[c].to_f32();
            }
            &buf[..cols]
        }
    }
}

/// simd128, which every browser with WebAssembly SIMD has (the package is built with it:
/// .cargo/config.toml). Written out because LLVM does not turn `Portable`'s 4x2 tile into
/// one: it computes the two weight rows' dots separately, loading each input row twice.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm {
    use std::arch::wasm32::*;

    use super::simd::Simd;
    use super::{BlockSums, BLOCK, GROUP};

    /// Integer sums in baseline simd128: `extmul` gives the 16 products of a 16-byte half
    /// block in i16 (at most 127 x 127), a low and a high product added stay below
    /// 2 x 127 x 127 = 32,258 < 32,767, and `extadd_pairwise` widens those to i32. Relaxed
    /// SIMD's `i32x4.relaxed_dot_i8x16_i7x16_add_s` would do it in one instruction, but needs
    /// a second build of the package for browsers without it.
    impl BlockSums for Simd128 {
        #[inline(always)]
        unsafe fn sums<const R: usize>(x: [*const i8; R], w: *const i8) -> [[i32; GROUP]; R] {
            let mut v = [[i32x4_splat(0); GROUP]; R];
            for b in 0..GROUP {
                for half in [0, 16] {
                    let wv = v128_load(w.add(BLOCK * b + half) as *const v128);
                    for r in 0..R {
                        let xv = v128_load(x[r].add(BLOCK * b + half) as *const v128);
                        let pairs = i16x8_add(i16x8_extmul_low_i8x16(xv, wv), i16x8_extmul_high_i8x16(xv, wv));
                        v[r][b] = i32x4_add(v[r][b], i32x4_extadd_pairwise_i16x8(pairs));
                    }
                }
            }
            let mut out = [[0i32; GROUP]; R];
            for (o, v) in out.iter_mut().zip(&v) {
                for (o, four) in o.chunks_exact_mut(4).zip(v.chunks_exact(4)) {
                    let sums = transposed_sum(four[0], four[1], four[2], four[3]);
                    v128_store(o.as_mut_ptr() as *mut v128, sums);
                }
            }
            out
        }
    }

    /// [sum of a's lanes, of b's, of c's, of d's].
    #[inline(always)]
    fn transposed_sum(a: v128, b: v128, c: v128, d: v128) -> v128 {
        let ab = i32x4_add(i32x4_shuffle::<0, 4, 1, 5>(a, b), i32x4_shuffle::<2, 6, 3, 7>(a, b));
        let cd = i32x4_add(i32x4_shuffle::<0, 4, 1, 5>(c, d), i32x4_shuffle::<2, 6, 3, 7>(c, d));
        i32x4_add(i32x4_shuffle::<0, 1, 4, 5>(ab, cd), i32x4_shuffle::<2, 3, 6, 7>(ab, cd))
    }

    /// Four f32 lanes; engines map simd128 onto the 16 vector registers of x86-64 and arm64,
    /// which hold `simd::dots`' 4R accumulators (R <= 3) and `dot4x2`'s 8 beside their
    /// operands. No fused multiply-add (that is relaxed SIMD's).
    pub struct Simd128;

    impl Simd for Simd128 {
        type V = v128;
        const LANES: usize = 4;

        #[inline(always)]
        unsafe fn zero() -> v128 {
            f32x4_splat(0.0)
        }

        /// v128_load needs no alignment.
        #[inline(always)]
        unsafe fn load(p: *const f32) -> v128 {
            v128_load(p as *const v128)
        }

        #[inline(always)]
        unsafe fn mul_add(a: v128, b: v128, acc: v128) -> v128 {
            f32x4_add(acc, f32x4_mul(a, b))
        }

        #[inline(always)]
        unsafe fn add(a: v128, b: v128) -> v128 {
            f32x4_add(a, b)
        }

        #[inline(always)]
        unsafe fn hsum(v: v128) -> f32 {
            (f32x4_extract_lane::<0>(v) + f32x4_extract_lane::<1>(v)) + (f32x4_extract_lane::<2>(v) + f32x4_extract_lane::<3>(v))
        }
    }
}

/// The dot products written once for every instruction set with a kernel of its own
/// (`x86::Avx2`, `wasm::Simd128`), from a vector type and five operations.
#[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
mod simd {
    use super::Dots;

    /// A vector of `LANES` f32 and the operations the products are made of. The functions
    /// are unsafe because they use the instruction set: they are only called inlined into
    /// code compiled for it, and `load` reads `LANES` values from `p`.
    pub trait Simd {
        type V: Copy;
        const LANES: usize;
        unsafe fn zero() -> Self::V;
        unsafe fn load(p: *const f32) -> Self::V;
        /// acc + a * b, fused where the instruction set can.
        unsafe fn mul_add(a: Self::V, b: Self::V, acc: Self::V) -> Self::V;
        unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
        /// The sum of the lanes.
        unsafe fn hsum(v: Self::V) -> f32;
    }

    /// What a weight row holds, loaded as a vector: f32, or (x86) f16 widened on the way.
    pub trait Weight<S: Simd>: Copy {
        /// `S::LANES` values from `p`, as f32.
        unsafe fn load(p: *const Self) -> S::V;
        fn widen(self) -> f32;
    }

    impl<S: Simd> Weight<S> for f32 {
        #[inline(always)]
        unsafe fn load(p: *const f32) -> S::V {
            S::load(p)
        }
        fn widen(self) -> f32 {
            self
        }
    }

    impl<S: Simd> Dots for S {
        #[inline(always)]
        fn dot4x2(x: &[f32], w0: &[f32], w1: &[f32]) -> [[f32; 4]; 2] {
            let cols = w0.len();
            assert!(x.len() >= 4 * cols && w1.len() == cols);
            let body = cols / S::LANES * S::LANES;
            // SAFETY: c + LANES <= body <= cols, so every load is within w0, w1 or
            // x[..4 * cols] (checked above); the callers have the instruction set.
            unsafe {
                let (xp, p0, p1) = (x.as_ptr(), w0.as_ptr(), w1.as_ptr());
                let mut acc = [[S::zero(); 4]; 2];
                for c in (0..body).step_by(S::LANES) {
                    let (v0, v1) = (S::load(p0.add(c)), S::load(p1.add(c)));
                    let [a0, a1] = &mut acc;
                    for (r, (s0, s1)) in a0.iter_mut().zip(a1.iter_mut()).enumerate() {
                        let xv = S::load(xp.add(r * cols + c));
                        *s0 = S::mul_add(xv, v0, *s0);
                        *s1 = S::mul_add(xv, v1, *s1);
                    }
                }
                let mut out = [[0f32; 4]; 2];
                for (k, wk) in [w0, w1].into_iter().enumerate() {
                    for r in 0..4 {
                        out[k][r] = S::hsum(acc[k][r]) + (body..cols).map(|c| x[r * cols + c] * wk[c]).sum::<f32>();
                    }
                }
                out
            }
        }

        #[inline(always)]
        fn dots<const R: usize>(x: &[f32], w: &[f32]) -> [f32; R] {
            dots::<S, f32, R>(x, w)
        }
    }

    /// `Dots::dots` for either kind of weight row: four accumulators per input row hide the
    /// latency of the multiply-adds.
    #[inline(always)]
    pub fn dots<S: Simd, T: Weight<S>, const R: usize>(x: &[f32], w: &[T]) -> [f32; R] {
        let cols = w.len();
        assert!(x.len() >= R * cols);
        let step = 4 * S::LANES;
        let body = cols / step * step;
        // SAFETY: r * cols + k + LANES <= (r + 1) * cols <= x.len() and k + LANES <= body <=
        // cols (checked above); the callers have the instruction set.
        unsafe {
            let (xp, wp) = (x.as_ptr(), w.as_ptr());
            let mut acc = [[S::zero(); 4]; R];
            for c in (0..body).step_by(step) {
                for u in 0..4 {
                    let k = c + S::LANES * u;
                    let wv = T::load(wp.add(k));
                    for (r, a) in acc.iter_mut().enumerate() {
                        a[u] = S::mul_add(S::load(xp.add(r * cols + k)), wv, a[u]);
                    }
                }
            }
            let mut out = [0f32; R];
            for (r, (o, a)) in out.iter_mut().zip(&acc).enumerate() {
                let v = S::add(S::add(a[0], a[1]), S::add(a[2], a[3]));
                *o = S::hsum(v) + (body..cols).map(|k| x[r * cols + k] * w[k].widen()).sum::<f32>();
            }
            out
        }
    }
}

/// The product as a candle op, so it takes the input's storage without a copy.
struct MulT<'a>(&'a Matrix);

impl CustomOp1 for MulT<'_> {
    fn name(&self) -> &'static str {
        "matrix-mul-t"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let m = self.0;
        let (n, cols) = layout.shape().dims2()?;
        if cols != m.cols {
            candle_core::bail!("matrix product: input has {cols} columns, the weight {}", m.cols);
        }
        let CpuStorage::F32(all) = storage else { candle_core::bail!("matrix product: input must be f32") };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("matrix product: input must be contiguous")
        };
        let mut out = vec![0f32; n * m.rows];
        m.mul_t(&all[start..end], &mut out);
        Ok((CpuStorage::F32(out), Shape::from((n, m.rows))))
    }
}

/// These run natively and, through wasm-pack, in the browser, where `mul_t` takes the
/// simd128 kernel.
#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// Deterministic values in [-1, 1).
    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n).map(|i| ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) as f32 / (1u32 << 23) as f32 - 1.0).collect()
    }

    fn reference(w: &[f32], rows: usize, cols: usize, x: &[f32]) -> Vec<f32> {
        let n = x.len() / cols;
        let mut out = vec![0f32; n * rows];
        for i in 0..n {
            for j in 0..rows {
                out[i * rows + j] = (0..cols).map(|c| x[i * cols + c] as f64 * w[j * cols + c] as f64).sum::<f64>() as f32;
            }
        }
        out
    }

    fn assert_close(got: &[f32], want: &[f32], what: &str) {
        assert_eq!(got.len(), want.len());
        for (k, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() <= 1e-5 * (1.0 + w.abs()), "{what}: element {k}: {g} vs {w}");
        }
    }

    /// Shapes that hit every path: 1-3 input rows (decoding), tiles of 4 with a remainder,
    /// an odd number of weight rows, and widths that are not multiples of 8 or 32.
    const SHAPES: [(usize, usize, usize); 7] = [(1, 5, 64), (2, 3, 70), (3, 7, 37), (4, 2, 8), (9, 5, 33), (6, 3, 100), (13, 17, 256)];

    #[test]
    fn products_match_a_float64_reference_in_f32_and_f16() {
        for (n, rows, cols) in SHAPES {
            let x = values(n * cols, 1);
            let w = values(rows * cols, 2);
            let m = Matrix::from_f32(rows, cols, w.clone());
            let mut out = vec![0f32; n * rows];
            m.mul_t(&x, &mut out);
            assert_close(&out, &reference(&w, rows, cols, &x), &format!("f32 {n}x{rows}x{cols}"));

            // f16 storage multiplies exactly the values an f32 copy of it holds.
            let halves: Vec<f16> = w.iter().map(|&v| f16::from_f32(v)).collect();
            let widened: Vec<f32> = halves.iter().map(|v| v.to_f32()).collect();
            let m = Matrix::from_f16(rows, cols, halves);
            m.mul_t(&x, &mut out);
            assert_close(&out, &reference(&widened, rows, cols, &x), &format!("f16 {n}x{rows}x{cols}"));
            assert_eq!(m.row(rows - 1), widened[(rows - 1) * cols..]);
        }
    }

    /// A FREE deep pass multiplies the stacked rows together; up to 3 rows it must compute
    /// exactly what one-row steps do, so that its tokens are the full model's (every format).
    #[test]
    fn up_to_three_rows_at_once_equal_one_row_at_a_time_bit_for_bit() {
        let (rows, cols) = (9, 300);
        let w = values(rows * cols, 5);
        let halves: Vec<f16> = w.iter().map(|&v| f16::from_f32(v)).collect();
        let q8 = Matrix::quantize_q8(rows, cols, &w);
        for m in [Matrix::from_f32(rows, cols, w.clone()), Matrix::from_f16(rows, cols, halves), q8] {
            for n in 1..=3 {
                let x = values(n * cols, 6);
                let mut together = vec![0f32; n * rows];
                m.mul_t(&x, &mut together);
                for i in 0..n {
                    let mut alone = vec![0f32; rows];
                    m.mul_t(&x[i * cols..(i + 1) * cols], &mut alone);
                    assert_eq!(together[i * rows..(i + 1) * rows], alone, "row {i} of {n}");
                }
            }
        }
        for n in 2..=3 {
            let x = values(n * cols, 7);
            let mut together = vec![0f32; n * rows];
            mul_t_rows::<_, Portable>(w.as_slice(), rows, cols, &x, &mut together);
            for i in 0..n {
                let mut alone = vec![0f32; rows];
                mul_t_rows::<_, Portable>(w.as_slice(), rows, cols, &x[i * cols..(i + 1) * cols], &mut alone);
                assert_eq!(together[i * rows..(i + 1) * rows], alone, "portable: row {i} of {n}");
            }
        }
    }

    #[test]
    fn the_portable_kernel_matches_too() {
        for (n, rows, cols) in SHAPES {
            let (x, w) = (values(n * cols, 3), values(rows * cols, 4));
            let mut out = vec![0f32; n * rows];
            mul_t_rows::<_, Portable>(w.as_slice(), rows, cols, &x, &mut out);
            assert_close(&out, &reference(&w, rows, cols, &x), &format!("portable {n}x{rows}x{cols}"));
        }
    }

    /// 8-bit weights: every value within half a step of the original; the products within
    /// the activations' rounding of those of the values the integers stand for; every row
    /// of a product, however many, bit for bit what it gives alone; and the kernel `mul_t`
    /// takes bit for bit the portable one.
    #[test]
    fn q8_products_match_the_values_the_integers_stand_for() {
        for (n, rows, cols) in SHAPES.into_iter().chain([(5, 3, 512), (2, 4, 800)]) {
            let (x, mut w) = (values(n * cols, 8), values(rows * cols, 9));
            w[..cols].fill(0.0); // a row of zeros keeps scale 0
            let m = Matrix::quantize_q8(rows, cols, &w);
            let Data::Q8 { q, scales } = &m.data else { panic!("not q8") };
            assert_eq!(scales[0], 0.0);
            let dequantized: Vec<f32> = (0..rows).flat_map(|j| m.row(j)).collect();
            for (k, (a, b)) in w.iter().zip(&dequantized).enumerate() {
                assert!((a - b).abs() <= scales[k / cols] * 0.5 + 1e-7, "{n}x{rows}x{cols} value {k}: {a} vs {b}");
            }
            let want = reference(&dequantized, rows, cols, &x);
            let mut out = vec![0f32; n * rows];
            m.mul_t(&x, &mut out);
            // Each activation moves by at most half its block's step (max |x| / 254), so a
            // product moves by at most the sum of |w| times those half steps, plus f32's
            // rounding of the sums.
            for i in 0..n {
                let xi = &x[i * cols..(i + 1) * cols];
                for j in 0..rows {
                    let half_steps: f64 = xi
                        .chunks(BLOCK)
                        .zip(dequantized[j * cols..(j + 1) * cols].chunks(BLOCK))
                        .map(|(xb, wb)| xb.iter().fold(0f32, |a, v| a.max(v.abs())) as f64 / 254.0 * wb.iter().map(|v| v.abs() as f64).sum::<f64>())
                        .sum();
                    let (g, r) = (out[i * rows + j], want[i * rows + j]);
                    assert!(((g - r).abs() as f64) <= half_steps + 1e-5 * (1.0 + r.abs() as f64), "q8 {n}x{rows}x{cols} [{i}, {j}]: {g} vs {r} (bound {half_steps})");
                }
                let mut alone = vec![0f32; rows];
                m.mul_t(xi, &mut alone);
                assert_eq!(alone, out[i * rows..(i + 1) * rows], "q8 {n}x{rows}x{cols}: row {i} alone");
            }
            let mut portable = vec![0f32; n * rows];
            q8_products::<Portable>(q, rows, cols, &x, &mut portable);
            for (o, s) in portable.chunks_exact_mut(rows).flat_map(|r| r.iter_mut().zip(scales)) {
                *o *= s;
            }
            assert_eq!(out, portable, "q8 {n}x{rows}x{cols}: the kernel against the portable one");
        }
    }

    /// Every integer kernel this CPU has gives the exact sums of a plain i64 reference, for
    /// 1 to 3 input rows, on random bytes and on blocks of +-127 only (where AVX2's `maddubs`
    /// would saturate if the bound on its pairs were wrong).
    #[test]
    fn every_integer_kernel_sums_blocks_exactly() {
        const LEN: usize = GROUP * BLOCK;
        let bytes = |seed: u32| -> Vec<i8> { values(3 * LEN, seed).iter().map(|v| (v * 127.0).round() as i8).collect() };
        let extremes: Vec<i8> = (0..3 * LEN).map(|k| if (k / 7) % 3 == 0 { -127 } else { 127 }).collect();
        let cases = [(bytes(10), bytes(11)), (extremes.clone(), extremes[..LEN].iter().map(|v| -v).collect()), (extremes.clone(), extremes.clone())];
        for (x, w) in &cases {
            let want: Vec<[i32; GROUP]> = (0..3)
                .map(|r| std::array::from_fn(|b| (b * BLOCK..(b + 1) * BLOCK).map(|k| x[r * LEN + k] as i64 * w[k] as i64).sum::<i64>() as i32))
                .collect();
            let p: [*const i8; 3] = std::array::from_fn(|r| x[r * LEN..].as_ptr());
            // SAFETY: LEN values behind every pointer; Portable uses no special instructions.
            assert_eq!(unsafe { Portable::sums::<3>(p, w.as_ptr()) }.to_vec(), want, "portable");
            for (name, got) in kernel_sums(p, w) {
                assert_eq!(got, want[..got.len()], "{name}");
            }
        }
    }

    /// The SIMD kernels' sums of the first 1, 2 and 3 rows of `p` (each with `LEN` values)
    /// with `w`, each beside its kernel's name and row count; the kernels this CPU lacks are
    /// named on stderr.
    #[cfg(target_arch = "x86_64")]
    fn kernel_sums(p: [*const i8; 3], w: &[i8]) -> Vec<(String, Vec<[i32; GROUP]>)> {
        #[target_feature(enable = "avx2")]
        fn avx2<const R: usize>(p: [*const i8; 3], w: &[i8]) -> Vec<[i32; GROUP]> {
            // SAFETY: as `kernel_sums`' caller promises, and the CPU has AVX2.
            unsafe { x86::Maddubs::sums::<R>(std::array::from_fn(|r| p[r]), w.as_ptr()) }.to_vec()
        }
        #[target_feature(enable = "avx2,avx512vnni,avx512vl")]
        fn vnni<const R: usize>(p: [*const i8; 3], w: &[i8]) -> Vec<[i32; GROUP]> {
            // SAFETY: as `kernel_sums`' caller promises, and the CPU has VNNI.
            unsafe { x86::Dpbusd::sums::<R>(std::array::from_fn(|r| p[r]), w.as_ptr()) }.to_vec()
        }
        let mut got = Vec::new();
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            got.extend(unsafe { [avx2::<1>(p, w), avx2::<2>(p, w), avx2::<3>(p, w)] }.map(|s| (format!("avx2, {} rows", s.len()), s)));
        } else {
            eprintln!("no AVX2 on this CPU: its kernel is not tested here");
        }
        if x86::vnni() {
            // SAFETY: the CPU has AVX2, AVX512-VNNI and AVX512-VL.
            got.extend(unsafe { [vnni::<1>(p, w), vnni::<2>(p, w), vnni::<3>(p, w)] }.map(|s| (format!("vnni, {} rows", s.len()), s)));
        } else {
            eprintln!("no AVX-512 VNNI on this CPU: its kernel is not tested here");
        }
        got
    }

    #[cfg(target_arch = "wasm32")]
    fn kernel_sums(p: [*const i8; 3], w: &[i8]) -> Vec<(String, Vec<[i32; GROUP]>)> {
        fn simd128<const R: usize>(p: [*const i8; 3], w: &[i8]) -> (String, Vec<[i32; GROUP]>) {
            // SAFETY: as `kernel_sums`' caller promises; the package is built with simd128.
            let s = unsafe { wasm::Simd128::sums::<R>(std::array::from_fn(|r| p[r]), w.as_ptr()) };
            (format!("simd128, {R} rows"), s.to_vec())
        }
        vec![simd128::<1>(p, w), simd128::<2>(p, w), simd128::<3>(p, w)]
    }

    #[test]
    fn dtypes_parse_by_name_and_refuse_others() {
        assert_eq!("q8".parse::<Dtype>().unwrap(), Dtype::Q8);
        assert_eq!("f16".parse::<Dtype>().unwrap(), Dtype::F16);
        let err = "int4".parse::<Dtype>().unwrap_err().to_string();
        assert!(err.contains("dtype") && err.contains("use f32, f16 or q8"), "{err}");
    }

    #[test]
    fn a_tensor_of_the_wrong_width_is_an_error() {
        let m = Matrix::from_f32(2, 3, vec![0.0; 6]);
        let x = Tensor::zeros((1, 4), candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
        assert!(m.apply(&x).is_err());
    }
}

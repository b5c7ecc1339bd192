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
//! scale per row) stream a quarter of f32's bytes: each is widened to f32 as it is loaded,
//! the row's dot product taken in f32 as for the other formats, and the scale applied to the
//! result. Integer dot products (the input rows quantized to 8 bits as well, llama.cpp's Q8_0
//! scheme) were measured and not adopted: natively no faster, and below the demo model's
//! agreement bar (docs/benchmarks.md#8-bit-weights-q8-native-cpu).

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

/// x times the 8-bit integers of a q8 matrix, transposed, before the rows' scales: each
/// integer widened to f32 as it is loaded (in a register for one to three input rows, as f16
/// is; through `I8Rows`' buffer for more).
fn mul_t_q8(q: &[i8], rows: usize, cols: usize, x: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA.
        return unsafe { x86::mul_t_i8(q, rows, cols, x, out) };
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return match x.len() / cols.max(1) {
        1 => few_rows_of::<1, _, wasm::Simd128>(q, rows, cols, x, out),
        2 => few_rows_of::<2, _, wasm::Simd128>(q, rows, cols, x, out),
        3 => few_rows_of::<3, _, wasm::Simd128>(q, rows, cols, x, out),
        _ => mul_t_rows::<_, wasm::Simd128>(&I8Rows(q), rows, cols, x, out),
    };
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    mul_t_rows::<_, Portable>(&I8Rows(q), rows, cols, x, out)
}

/// `R` input rows against every weight row of `T`s, each widened as it is loaded. Only used
/// inlined into code compiled for `S`'s instruction set.
#[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline(always)]
fn few_rows_of<const R: usize, T: simd::Weight<S>, S: simd::Simd>(w: &[T], rows: usize, cols: usize, x: &[f32], out: &mut [f32]) {
    for j in 0..rows {
        let d = simd::dots::<S, T, R>(x, &w[j * cols..(j + 1) * cols]);
        for (r, v) in d.into_iter().enumerate() {
            out[r * rows + j] = v;
        }
    }
}

/// 8-bit weight rows widened into a buffer (the integers' values, before the row's scale).
struct I8Rows<'a>(&'a [i8]);

impl Rows for I8Rows<'_> {
    #[inline(always)]
    fn row<'b>(&'b self, j: usize, cols: usize, buf: &'b mut Vec<f32>) -> &'b [f32] {
        buf.clear();
        buf.extend(self.0[j * cols..(j + 1) * cols].iter().map(|&v| v as f32));
        buf
    }
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
    use super::{few_rows_of, mul_t_rows, I8Rows, Rows};

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
            1 => few_rows_of::<1, _, Avx2>(w, rows, cols, x, out),
            2 => few_rows_of::<2, _, Avx2>(w, rows, cols, x, out),
            3 => few_rows_of::<3, _, Avx2>(w, rows, cols, x, out),
            _ => mul_t_rows::<_, Avx2>(&F16Rows(w), rows, cols, x, out),
        }
    }

    /// 8-bit weights, before their rows' scales: as `mul_t_f16`, each integer widened in a
    /// register for one to three input rows.
    #[target_feature(enable = "avx2,fma")]
    pub fn mul_t_i8(w: &[i8], rows: usize, cols: usize, x: &[f32], out: &mut [f32]) {
        match x.len() / cols.max(1) {
            1 => few_rows_of::<1, _, Avx2>(w, rows, cols, x, out),
            2 => few_rows_of::<2, _, Avx2>(w, rows, cols, x, out),
            3 => few_rows_of::<3, _, Avx2>(w, rows, cols, x, out),
            _ => mul_t_rows::<_, Avx2>(&I8Rows(w), rows, cols, x, out),
        }
    }

    /// 8-bit weights widened as they are loaded: 8 bytes, sign-extended to 32 bits, converted.
    impl Weight<Avx2> for i8 {
        #[inline(always)]
        unsafe fn load(p: *const i8) -> __m256 {
            _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(p as *const __m128i)))
        }
        fn widen(self) -> f32 {
            self as f32
        }
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

    use super::simd::{Simd, Weight};

    /// 8-bit weights widened as they are loaded: 4 bytes, sign-extended twice, converted.
    impl Weight<Simd128> for i8 {
        #[inline(always)]
        unsafe fn load(p: *const i8) -> v128 {
            let bytes = v128_load32_zero(p as *const u32);
            f32x4_convert_i32x4(i32x4_extend_low_i16x8(i16x8_extend_low_i8x16(bytes)))
        }
        fn widen(self) -> f32 {
            self as f32
        }
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

    /// 8-bit weights: every value within half a step of the original, and the products
    /// those of the values the integers and scales stand for, on every path.
    #[test]
    fn q8_products_match_the_values_the_integers_stand_for() {
        for (n, rows, cols) in SHAPES {
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
            assert_close(&out, &want, &format!("q8 {n}x{rows}x{cols}"));
            mul_t_rows::<_, Portable>(&I8Rows(q), rows, cols, &x, &mut out);
            for (o, s) in out.chunks_exact_mut(rows).flat_map(|r| r.iter_mut().zip(scales)) {
                *o *= s;
            }
            assert_close(&out, &want, &format!("portable q8 {n}x{rows}x{cols}"));
        }
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

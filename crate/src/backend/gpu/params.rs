//! What the kernels read and write besides their data, each written once: the uniform
//! parameters of every kernel as a Rust struct whose field list also makes the WGSL `struct
//! Params` the kernel declares (context.rs prepends it to the kernel's source), the
//! activation codes of the linear kernels, and the top-2 record the head writes and the CPU
//! reads back. A field added or moved on one side is on the other.

use crate::config::Activation;

/// A kernel's uniform parameters: 32-bit fields, in WGSL order.
pub trait Uniform {
    /// The kernel's `struct Params` declaration.
    const WGSL: &'static str;
    /// Appends the fields as the uniform buffer holds them (little-endian words) to `out`:
    /// straight into the launch's slot, with no allocation per launch.
    fn write_to(&self, out: &mut Vec<u8>);
}

trait Word {
    fn bits(self) -> u32;
}

impl Word for u32 {
    fn bits(self) -> u32 {
        self
    }
}

impl Word for f32 {
    fn bits(self) -> u32 {
        self.to_bits()
    }
}

/// A uniform struct and its WGSL declaration from one field list. WGSL sizes a uniform
/// struct to a multiple of 16 bytes: the lists below are padded to a multiple of four
/// fields (a test checks it).
macro_rules! uniform {
    ($(#[$meta:meta])* $name:ident { $($(#[$field_meta:meta])* $field:ident: $ty:ident),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, Default, PartialEq)]
        pub struct $name {
            $($(#[$field_meta])* pub $field: $ty,)*
        }

        impl Uniform for $name {
            const WGSL: &'static str = concat!("struct Params {\n", $("    ", stringify!($field), ": ", stringify!($ty), ",\n",)* "}\n");

            fn write_to(&self, out: &mut Vec<u8>) {
                $(out.extend_from_slice(&Word::bits(self.$field).to_le_bytes());)*
            }
        }
    };
}

uniform! {
    /// gather.wgsl: `rows` embedding rows of width `d` into `out` from `out_off` on.
    GatherParams {
        rows: u32,
        d: u32,
        out_off: u32,
        /// Index of the first id in `ids`.
        id_off: u32,
        /// q8 tables: the word where the rows' scales begin (`Gpu::upload_q8`); else unused.
        scales: u32,
        _pad0: u32,
        _pad1: u32,
        _pad2: u32,
    }
}

uniform! {
    /// rms_norm.wgsl: T5's norm of `rows` rows, times `scale` (the head's scale, else 1).
    RmsNormParams {
        rows: u32,
        d: u32,
        x_off: u32,
        out_off: u32,
        eps: f32,
        scale: f32,
        _pad0: u32,
        _pad1: u32,
    }
}

uniform! {
    /// linear.wgsl and linear_rows.wgsl: out (=|+=) act(x . w) (times x . w_gate when gated).
    LinearParams {
        rows: u32,
        in_dim: u32,
        out_dim: u32,
        x_off: u32,
        out_off: u32,
        /// `act_code`: 0 none, else the activation's.
        act: u32,
        gated: u32,
        accumulate: u32,
        /// q8 weights: the word where the rows' scales begin (`Gpu::upload_q8`; the gate
        /// has the same shape, so the same layout); else unused.
        scales: u32,
        _pad0: u32,
        _pad1: u32,
        _pad2: u32,
    }
}

uniform! {
    /// attention.wgsl: softmax(q k^T + bias) v for rows from `q_start` over `kv_len` keys.
    AttentionParams {
        q_start: u32,
        kv_len: u32,
        heads: u32,
        d_kv: u32,
        causal: u32,
        use_bias: u32,
        bias_center: u32,
        bias_len: u32,
    }
}

uniform! {
    /// top2.wgsl: the best two logits of `rows` rows of `vocab`, into `out` from `out_row`.
    Top2Params {
        rows: u32,
        vocab: u32,
        /// Where this chunk's first row goes in `out`.
        out_row: u32,
        _pad: u32,
    }
}

/// The activations by the code the linear kernels switch on (`LinearParams::act`; 0 is
/// none), and the WGSL constants they switch on, from this one table.
const ACTIVATIONS: [(Activation, u32, &str); 4] = [
    (Activation::Relu, 1, "ACT_RELU"),
    (Activation::GeluTanh, 2, "ACT_GELU_TANH"),
    (Activation::GeluErf, 3, "ACT_GELU_ERF"),
    (Activation::Silu, 4, "ACT_SILU"),
];

pub fn act_code(activation: Activation) -> u32 {
    ACTIVATIONS.iter().find(|(a, ..)| *a == activation).map(|&(_, code, _)| code).expect("every activation has a code")
}

/// `const ACT_RELU: u32 = 1u;` and so on, for the linear kernels' `activate`.
pub fn activation_constants() -> String {
    ACTIVATIONS.iter().map(|(_, code, name)| format!("const {name}: u32 = {code}u;\n")).collect()
}

/// What top2.wgsl writes per row and the CPU reads back: the best logit, its token, the
/// second logit and the softmax denominator, as WGSL's `struct Top2` (16 bytes).
pub const TOP2_WGSL: &str = "struct Top2 {\n    best: f32,\n    index: u32,\n    second: f32,\n    z: f32,\n}\n";
/// Bytes per row of the top-2 record.
pub const TOP2_BYTES: usize = 16;
/// Where a row's token id sits in it (copied on the device into the next step's input).
pub const TOP2_TOKEN_OFFSET: usize = 4;

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;
    use super::*;

    #[test]
    fn uniforms_are_sized_as_wgsl_sizes_them_and_declare_every_field() {
        fn words(p: &impl Uniform) -> Vec<u32> {
            let mut bytes = Vec::new();
            p.write_to(&mut bytes);
            assert_eq!(bytes.len() % 4, 0);
            bytes.chunks_exact(4).map(|w| u32::from_le_bytes(w.try_into().unwrap())).collect()
        }
        fn check<U: Uniform + Default>() {
            let (wgsl, words) = (U::WGSL, words(&U::default()).len());
            assert_eq!(words % 4, 0, "a uniform struct is a multiple of 16 bytes: {wgsl}");
            assert_eq!(wgsl.lines().filter(|l| l.ends_with(',')).count(), words, "{wgsl}");
        }
        check::<GatherParams>();
        check::<RmsNormParams>();
        check::<LinearParams>();
        check::<AttentionParams>();
        check::<Top2Params>();
        let p = RmsNormParams { rows: 3, eps: 1e-6, scale: 0.5, ..Default::default() };
        assert_eq!(words(&p), [3, 0, 0, 0, 1e-6f32.to_bits(), 0.5f32.to_bits(), 0, 0]);
        assert!(RmsNormParams::WGSL.contains("    eps: f32,\n") && RmsNormParams::WGSL.starts_with("struct Params {\n"));
        assert_eq!(TOP2_WGSL.lines().filter(|l| l.ends_with(',')).count() * 4, TOP2_BYTES);
        assert!(TOP2_WGSL.contains("\n    index: u32,") && TOP2_TOKEN_OFFSET == 4);
    }

    #[test]
    fn each_activation_has_its_own_code_and_constant() {
        let codes: Vec<u32> = ACTIVATIONS.iter().map(|&(a, ..)| act_code(a)).collect();
        assert_eq!(codes, [1, 2, 3, 4]);
        assert!(activation_constants().contains("const ACT_GELU_ERF: u32 = 3u;\n"));
    }
}

// What both linear kernels (linear.wgsl, linear_rows.wgsl) share, prepended to their
// sources: bindings and the activations of T5's feed-forward layers (their codes, ACT_*, and
// the parameters are prepended from params.rs). The
// weights (bindings 2 and 3, read through weight() and weight_gate(), each product times
// weight_scale() / weight_gate_scale() of its row once summed) are declared before this by
// context.rs, as f32, packed f16 or packed 8-bit integers with a scale per row.

// `struct Params` is prepended from params.rs (one field list for Rust and WGSL).

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

// Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7): WGSL has no erf.
fn erf(v: f32) -> f32 {
    let s = sign(v);
    let a = abs(v);
    let t = 1.0 / (1.0 + 0.3275911 * a);
    let y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * exp(-a * a);
    return s * y;
}

fn activate(v: f32, act: u32) -> f32 {
    switch act {
        case ACT_RELU: { return max(v, 0.0); }
        case ACT_GELU_TANH: {
            let inner = 0.7978845608028654 * (v + 0.044715 * v * v * v);
            return 0.5 * v * (1.0 + tanh(clamp(inner, -15.0, 15.0)));
        }
        case ACT_GELU_ERF: { return 0.5 * v * (1.0 + erf(v * 0.7071067811865476)); }
        case ACT_SILU: { return v / (1.0 + exp(-v)); }
        default: { return v; }
    }
}


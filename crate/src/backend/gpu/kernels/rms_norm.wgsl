// T5LayerNorm: out = x * rsqrt(mean(x^2) + eps) * weight * scale, one workgroup per row.
// `scale` carries T5 v1.0's d_model^-0.5 before a tied LM head (1 elsewhere).

// `struct Params` is prepended from params.rs (one field list for Rust and WGSL).

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

var<workgroup> partial: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let row = wg.x;
    if row >= p.rows {
        return;
    }
    let base = p.x_off + row * p.d;
    var acc = 0.0;
    for (var i = t; i < p.d; i += 64u) {
        let v = x[base + i];
        acc += v * v;
    }
    partial[t] = acc;
    workgroupBarrier();
    for (var s = 32u; s > 0u; s = s >> 1u) {
        if t < s {
            partial[t] += partial[t + s];
        }
        workgroupBarrier();
    }
    let inv = inverseSqrt(partial[0] / f32(p.d) + p.eps) * p.scale;
    for (var i = t; i < p.d; i += 64u) {
        out[p.out_off + row * p.d + i] = x[base + i] * inv * weight[i];
    }
}

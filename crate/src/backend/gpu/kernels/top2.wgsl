// What the CPU must decide from a row of logits, in 16 bytes: the argmax (first index on
// ties), the largest and second-largest logit, and Z = sum(exp(l - max)), from which
// p(1) = 1/Z and p(2) = exp(l2 - l1)/Z. One workgroup per row.

// `struct Params` is prepended from params.rs (one field list for Rust and WGSL).

// `struct Top2`, the record the CPU reads back, is prepended from params.rs too.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<vec4<f32>>;

var<workgroup> part: array<Top2, 256>;

// Merges two partial results; a side that saw no values has z = 0.
fn merge(a: Top2, b: Top2) -> Top2 {
    if b.z == 0.0 {
        return a;
    }
    if a.z == 0.0 {
        return b;
    }
    var r: Top2;
    if b.best > a.best || (b.best == a.best && b.index < a.index) {
        r.best = b.best;
        r.index = b.index;
        r.second = max(b.second, a.best);
    } else {
        r.best = a.best;
        r.index = a.index;
        r.second = max(a.second, b.best);
    }
    r.z = a.z * exp(a.best - r.best) + b.z * exp(b.best - r.best);
    return r;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let row = wg.x;
    let base = row * p.vocab;
    var acc = Top2(-3.4e38, 0u, -3.4e38, 0.0);
    for (var i = t; i < p.vocab; i += 256u) {
        let v = logits[base + i];
        if acc.z == 0.0 {
            acc = Top2(v, i, -3.4e38, 1.0);
        } else if v > acc.best {
            acc.second = acc.best;
            acc.z = acc.z * exp(acc.best - v) + 1.0;
            acc.best = v;
            acc.index = i;
        } else {
            acc.second = max(acc.second, v);
            acc.z += exp(v - acc.best);
        }
    }
    part[t] = acc;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s >> 1u) {
        if t < s {
            part[t] = merge(part[t], part[t + s]);
        }
        workgroupBarrier();
    }
    if t == 0u {
        let r = part[0];
        out[p.out_row + row] = vec4<f32>(r.best, bitcast<f32>(r.index), r.second, r.z);
    }
}

// softmax(q k^T + bias) v for one query row and one head per workgroup; T5 does not scale
// the logits by 1/sqrt(d_kv). Keys and values are cached row-major as (position, heads*d_kv).
// The relative position bias comes precomputed per head and relative offset
// (key - query + center); causal attention masks keys after the query.

// `struct Params` is prepended from params.rs (one field list for Rust and WGSL).

const MAX_KEYS: u32 = 1024u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

var<workgroup> scores: array<f32, MAX_KEYS>;
var<workgroup> partial: array<f32, 64>;

fn reduce_max(t: u32) -> f32 {
    workgroupBarrier();
    for (var s = 32u; s > 0u; s = s >> 1u) {
        if t < s {
            partial[t] = max(partial[t], partial[t + s]);
        }
        workgroupBarrier();
    }
    let r = partial[0];
    workgroupBarrier();
    return r;
}

fn reduce_sum(t: u32) -> f32 {
    workgroupBarrier();
    for (var s = 32u; s > 0u; s = s >> 1u) {
        if t < s {
            partial[t] += partial[t + s];
        }
        workgroupBarrier();
    }
    let r = partial[0];
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let row = wg.x;
    let head = wg.y;
    let inner = p.heads * p.d_kv;
    let qpos = p.q_start + row;
    let q_base = row * inner + head * p.d_kv;
    let keys = min(p.kv_len, MAX_KEYS);

    var local_max = -3.4e38;
    for (var j = t; j < keys; j += 64u) {
        var s = -3.4e38;
        if p.causal == 0u || j <= qpos {
            s = 0.0;
            let k_base = j * inner + head * p.d_kv;
            for (var c = 0u; c < p.d_kv; c++) {
                s += q[q_base + c] * k[k_base + c];
            }
            if p.use_bias != 0u {
                s += bias[head * p.bias_len + j + p.bias_center - qpos];
            }
        }
        scores[j] = s;
        local_max = max(local_max, s);
    }
    partial[t] = local_max;
    let m = reduce_max(t);

    var local_sum = 0.0;
    for (var j = t; j < keys; j += 64u) {
        var e = 0.0;
        if p.causal == 0u || j <= qpos {
            e = exp(scores[j] - m);
        }
        scores[j] = e;
        local_sum += e;
    }
    partial[t] = local_sum;
    let total = reduce_sum(t);

    for (var c = t; c < p.d_kv; c += 64u) {
        var acc = 0.0;
        for (var j = 0u; j < keys; j++) {
            acc += scores[j] * v[j * inner + head * p.d_kv + c];
        }
        out[q_base + c] = acc / total;
    }
}

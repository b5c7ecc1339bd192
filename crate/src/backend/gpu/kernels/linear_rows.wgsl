// The same product as linear.wgsl (same parameters and bindings) for software adapters
// (lavapipe, SwiftShader), which run invocations as CPU SIMD lanes and pay dearly for
// barriers; linear.wgsl's cooperative, coalesced reads suit real GPUs. No workgroup memory,
// no barriers: one invocation per four output features and a tile of up to eight input
// rows, blocked in registers as a CPU kernel would be, so each weight is loaded once per
// tile and each input once per four features; one or two rows (a decoding step, a short
// deep pass of FREE) go row by row instead. Weights are read in pairs (in_dim even, as in
// every T5; model.rs uses linear.wgsl otherwise): one packed f16 word, one widening, two
// products. On lavapipe (training on the same cores, builds alternated) the tiles took the
// demo model's encoder over 200 tokens from 3.1 to 0.85 s against one (row, feature) per
// invocation, the pairs to 0.7 s, and a decoding step from 38 to 16-18 ms; 4 x 4 tiles gave
// 0.95 s, and the 8 x 4 tile written with arrays and inner loops 1.5 s (hence the unrolled
// accumulators).
// Rows are a grid dimension rather than a loop: with a rows x in_dim loop nest, lavapipe
// gave wrong sums from exactly 64 rows of 1024 inputs (64 x 1024 = 65536), as if the inner
// loop's iterations were capped at 65535 in all (llvmpipe does cap loop iterations).

const TILE: u32 = 8u;

// Weights i and i + 1 (i even) of the four rows starting at `w`, as two columns: pairs are
// what one packed f16 word holds, so each load and widening serves two products.
fn weights4(w: vec4<u32>, i: u32) -> mat2x4<f32> {
    let a = weight2(w.x + i);
    let b = weight2(w.y + i);
    let c = weight2(w.z + i);
    let d = weight2(w.w + i);
    return mat2x4<f32>(vec4<f32>(a.x, b.x, c.x, d.x), vec4<f32>(a.y, b.y, c.y, d.y));
}

fn gates4(w: vec4<u32>, i: u32) -> mat2x4<f32> {
    let a = weight_gate2(w.x + i);
    let b = weight_gate2(w.y + i);
    let c = weight_gate2(w.z + i);
    let d = weight_gate2(w.w + i);
    return mat2x4<f32>(vec4<f32>(a.x, b.x, c.x, d.x), vec4<f32>(a.y, b.y, c.y, d.y));
}

// acc + x[xi] * w[0] + x[xi + 1] * w[1], in that order (the order of one product at a time).
fn madd(acc: vec4<f32>, xi: u32, w: mat2x4<f32>) -> vec4<f32> {
    return acc + x[xi] * w[0] + x[xi + 1u] * w[1];
}

// Stores row r's results for the first `outs` of features o0..o0+3.
fn finish(acc: vec4<f32>, gate: vec4<f32>, r: u32, o0: u32, outs: u32) {
    if r >= p.rows {
        return;
    }
    for (var k = 0u; k < outs; k++) {
        var y = activate(acc[k], p.act);
        if p.gated != 0u {
            y *= gate[k];
        }
        let idx = p.out_off + r * p.out_dim + o0 + k;
        if p.accumulate != 0u {
            out[idx] += y;
        } else {
            out[idx] = y;
        }
    }
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wg: vec3<u32>) {
    let o0 = gid.x * 4u;
    let r0 = wg.y * TILE;
    if o0 >= p.out_dim || r0 >= p.rows {
        return;
    }
    // Past the last feature (out_dim not a multiple of four) the last weight row stands in;
    // its results are not stored.
    let outs = min(4u, p.out_dim - o0);
    let last = p.out_dim - 1u;
    let w = vec4<u32>(o0, min(o0 + 1u, last), min(o0 + 2u, last), min(o0 + 3u, last)) * p.in_dim;
    let n = p.in_dim;
    let count = min(TILE, p.rows - r0);
    if count > 2u {
        // In a last, partial tile the last row stands in for the missing ones (not stored).
        let x0 = p.x_off + r0 * n;
        let s1 = min(1u, count - 1u) * n;
        let s2 = min(2u, count - 1u) * n;
        let s3 = min(3u, count - 1u) * n;
        let s4 = min(4u, count - 1u) * n;
        let s5 = min(5u, count - 1u) * n;
        let s6 = min(6u, count - 1u) * n;
        let s7 = min(7u, count - 1u) * n;
        var a0 = vec4<f32>(0.0);
        var a1 = vec4<f32>(0.0);
        var a2 = vec4<f32>(0.0);
        var a3 = vec4<f32>(0.0);
        var a4 = vec4<f32>(0.0);
        var a5 = vec4<f32>(0.0);
        var a6 = vec4<f32>(0.0);
        var a7 = vec4<f32>(0.0);
        var g0 = vec4<f32>(0.0);
        var g1 = vec4<f32>(0.0);
        var g2 = vec4<f32>(0.0);
        var g3 = vec4<f32>(0.0);
        var g4 = vec4<f32>(0.0);
        var g5 = vec4<f32>(0.0);
        var g6 = vec4<f32>(0.0);
        var g7 = vec4<f32>(0.0);
        for (var i = 0u; i < n; i += 2u) {
            let wv = weights4(w, i);
            let xi = x0 + i;
            a0 = madd(a0, xi, wv);
            a1 = madd(a1, xi + s1, wv);
            a2 = madd(a2, xi + s2, wv);
            a3 = madd(a3, xi + s3, wv);
            a4 = madd(a4, xi + s4, wv);
            a5 = madd(a5, xi + s5, wv);
            a6 = madd(a6, xi + s6, wv);
            a7 = madd(a7, xi + s7, wv);
            if p.gated != 0u {
                let gv = gates4(w, i);
                g0 = madd(g0, xi, gv);
                g1 = madd(g1, xi + s1, gv);
                g2 = madd(g2, xi + s2, gv);
                g3 = madd(g3, xi + s3, gv);
                g4 = madd(g4, xi + s4, gv);
                g5 = madd(g5, xi + s5, gv);
                g6 = madd(g6, xi + s6, gv);
                g7 = madd(g7, xi + s7, gv);
            }
        }
        finish(a0, g0, r0, o0, outs);
        finish(a1, g1, r0 + 1u, o0, outs);
        finish(a2, g2, r0 + 2u, o0, outs);
        finish(a3, g3, r0 + 3u, o0, outs);
        finish(a4, g4, r0 + 4u, o0, outs);
        finish(a5, g5, r0 + 5u, o0, outs);
        finish(a6, g6, r0 + 6u, o0, outs);
        finish(a7, g7, r0 + 7u, o0, outs);
        return;
    }
    // One or two rows (a decoding step; a short deep pass): the tile's arithmetic on rows
    // that are not there would cost more than reading the weights twice.
    for (var r = r0; r < r0 + count; r++) {
        let xr = p.x_off + r * n;
        var a = vec4<f32>(0.0);
        var g = vec4<f32>(0.0);
        for (var i = 0u; i < n; i += 2u) {
            a = madd(a, xr + i, weights4(w, i));
            if p.gated != 0u {
                g = madd(g, xr + i, gates4(w, i));
            }
        }
        finish(a, g, r, o0, outs);
    }
}

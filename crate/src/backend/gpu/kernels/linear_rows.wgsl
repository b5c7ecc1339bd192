// The same product as linear.wgsl (same parameters and bindings) for software adapters
// (lavapipe, SwiftShader), which run invocations as CPU SIMD lanes and pay dearly for
// barriers; linear.wgsl's cooperative, coalesced reads suit real GPUs. No workgroup memory,
// no barriers: one invocation per four output features and a tile of up to eight input
// rows, blocked in registers as a CPU kernel would be, so each weight is loaded once per
// tile and each input once per four features; one or two rows (a decoding step, a short
// deep pass of FREE) go row by row instead. Weights are read in pairs (in_dim even, as in
// every T5; model.rs uses linear.wgsl otherwise; weight4() of context.rs reads them for four
// features): one packed f16 word, one widening, two products. On lavapipe (training on the same cores; old and new builds measured one after
// the other, not alternated) the tiles took the demo model's encoder over 200 tokens from 3.1
// to 0.85 s against one (row, feature) per invocation, the pairs to 0.7 s, and a decoding
// step from 38 to 16-18 ms; 4 x 4 tiles gave 0.95 s, and the 8 x 4 tile written with an array
// and inner loops 1.5 s (hence `Tile`'s named rows; they measured as fast as eight separate
// accumulators, alternated three times with examples/gpu_costs).
// Rows are a grid dimension rather than a loop: with a rows x in_dim loop nest, lavapipe
// gave wrong sums from exactly 64 rows of 1024 inputs (64 x 1024 = 65536), as if the inner
// loop's iterations were capped at 65535 in all (llvmpipe does cap loop iterations).

const TILE: u32 = 8u;

// acc + x[xi] * w[0] + x[xi + 1] * w[1], in that order (the order of one product at a time).
fn madd(acc: vec4<f32>, xi: u32, w: mat2x4<f32>) -> vec4<f32> {
    return acc + x[xi] * w[0] + x[xi + 1u] * w[1];
}

// A tile's sums, one vector of four features per row (named fields, not an array: see above).
struct Tile {
    r0: vec4<f32>,
    r1: vec4<f32>,
    r2: vec4<f32>,
    r3: vec4<f32>,
    r4: vec4<f32>,
    r5: vec4<f32>,
    r6: vec4<f32>,
    r7: vec4<f32>,
}

// The tile's rows begin at x[xi + s0[k]] and x[xi + s1[k]] (k = 0..3).
fn madd_tile(t: Tile, xi: u32, s0: vec4<u32>, s1: vec4<u32>, w: mat2x4<f32>) -> Tile {
    return Tile(
        madd(t.r0, xi + s0.x, w), madd(t.r1, xi + s0.y, w), madd(t.r2, xi + s0.z, w), madd(t.r3, xi + s0.w, w),
        madd(t.r4, xi + s1.x, w), madd(t.r5, xi + s1.y, w), madd(t.r6, xi + s1.z, w), madd(t.r7, xi + s1.w, w),
    );
}

// Stores row r's results for the first `outs` of features o0..o0+3.
fn finish(acc: vec4<f32>, gate: vec4<f32>, r: u32, o0: u32, outs: u32) {
    if r >= p.rows {
        return;
    }
    for (var k = 0u; k < outs; k++) {
        var y = activate(acc[k] * weight_scale(o0 + k), p.act);
        if p.gated != 0u {
            y *= gate[k] * weight_gate_scale(o0 + k);
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
        let last_row = vec4<u32>(count - 1u);
        let s0 = min(vec4<u32>(0u, 1u, 2u, 3u), last_row) * n;
        let s1 = min(vec4<u32>(4u, 5u, 6u, 7u), last_row) * n;
        var a = Tile();
        var g = Tile();
        for (var i = 0u; i < n; i += 2u) {
            a = madd_tile(a, x0 + i, s0, s1, weight4(w, i));
            if p.gated != 0u {
                g = madd_tile(g, x0 + i, s0, s1, weight_gate4(w, i));
            }
        }
        finish(a.r0, g.r0, r0, o0, outs);
        finish(a.r1, g.r1, r0 + 1u, o0, outs);
        finish(a.r2, g.r2, r0 + 2u, o0, outs);
        finish(a.r3, g.r3, r0 + 3u, o0, outs);
        finish(a.r4, g.r4, r0 + 4u, o0, outs);
        finish(a.r5, g.r5, r0 + 5u, o0, outs);
        finish(a.r6, g.r6, r0 + 6u, o0, outs);
        finish(a.r7, g.r7, r0 + 7u, o0, outs);
        return;
    }
    // One or two rows (a decoding step; a short deep pass): the tile's arithmetic on rows
    // that are not there would cost more than reading the weights twice.
    for (var r = r0; r < r0 + count; r++) {
        let xr = p.x_off + r * n;
        var a = vec4<f32>(0.0);
        var g = vec4<f32>(0.0);
        for (var i = 0u; i < n; i += 2u) {
            a = madd(a, xr + i, weight4(w, i));
            if p.gated != 0u {
                g = madd(g, xr + i, weight_gate4(w, i));
            }
        }
        finish(a, g, r, o0, outs);
    }
}

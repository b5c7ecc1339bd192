// The same product as linear.wgsl (same parameters and bindings), one invocation per
// (input row, output feature): no workgroup memory and no barriers. Chosen on software
// adapters (lavapipe, SwiftShader), which run invocations as CPU SIMD lanes and pay
// dearly for barriers; linear.wgsl's cooperative, coalesced reads suit real GPUs.
// Rows are a grid dimension rather than a loop: with a rows x in_dim loop nest, lavapipe
// gave wrong sums from exactly 64 rows of 1024 inputs (64 x 1024 = 65536), as if the inner
// loop's iterations were capped at 65535 in all (llvmpipe does cap loop iterations).

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let o = gid.x;
    let r = gid.y;
    if o >= p.out_dim || r >= p.rows {
        return;
    }
    let w_row = o * p.in_dim;
    let x_row = p.x_off + r * p.in_dim;
    var acc = 0.0;
    var acc_gate = 0.0;
    for (var i = 0u; i < p.in_dim; i++) {
        let xv = x[x_row + i];
        acc += xv * weight(w_row + i);
        if p.gated != 0u {
            acc_gate += xv * weight_gate(w_row + i);
        }
    }
    var v = activate(acc, p.act);
    if p.gated != 0u {
        v *= acc_gate;
    }
    let idx = p.out_off + r * p.out_dim + o;
    if p.accumulate != 0u {
        out[idx] += v;
    } else {
        out[idx] = v;
    }
}

// out[r, o] = act(x[r] . w[o]) (or act(x[r] . w[o]) * (x[r] . w_gate[o]) for gated FFNs),
// stored or added to out (residual connections). HF's (out, in) weight layout, row-major.
// One workgroup per output feature: its 64 threads split the input dimension, so each
// weight row is read once, coalesced, for four input rows at a time.

var<workgroup> partial: array<vec4<f32>, 64>;
var<workgroup> partial_gate: array<vec4<f32>, 64>;

fn reduce(t: u32) {
    for (var s = 32u; s > 0u; s = s >> 1u) {
        if t < s {
            partial[t] += partial[t + s];
            partial_gate[t] += partial_gate[t + s];
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) t: u32) {
    let o = wg.x + wg.y * groups.x;
    if o >= p.out_dim {
        return;
    }
    let w_row = o * p.in_dim;
    for (var r0 = 0u; r0 < p.rows; r0 += 4u) {
        var acc = vec4<f32>(0.0);
        var acc_gate = vec4<f32>(0.0);
        for (var i = t; i < p.in_dim; i += 64u) {
            let wv = weight(w_row + i);
            var xv = vec4<f32>(0.0);
            for (var j = 0u; j < 4u; j++) {
                if r0 + j < p.rows {
                    xv[j] = x[p.x_off + (r0 + j) * p.in_dim + i];
                }
            }
            acc += xv * wv;
            if p.gated != 0u {
                acc_gate += xv * weight_gate(w_row + i);
            }
        }
        partial[t] = acc;
        partial_gate[t] = acc_gate;
        workgroupBarrier();
        reduce(t);
        if t == 0u {
            for (var j = 0u; j < 4u; j++) {
                if r0 + j < p.rows {
                    var v = activate(partial[0][j] * weight_scale(o), p.act);
                    if p.gated != 0u {
                        v *= partial_gate[0][j] * weight_gate_scale(o);
                    }
                    let idx = p.out_off + (r0 + j) * p.out_dim + o;
                    if p.accumulate != 0u {
                        out[idx] += v;
                    } else {
                        out[idx] = v;
                    }
                }
            }
        }
        workgroupBarrier();
    }
}

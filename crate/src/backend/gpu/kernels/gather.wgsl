// Embedding lookup: out[r] = table[ids[r]] for `rows` ids. The table (binding 2, read
// through weight(), times weight_scale() of the row) is declared before this by context.rs,
// as f32, packed f16 or packed 8-bit integers with a scale per row.

// `struct Params` is prepended from params.rs (one field list for Rust and WGSL).

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.x + gid.y * groups.x * 64u;
    if i >= p.rows * p.d {
        return;
    }
    let row = i / p.d;
    let col = i % p.d;
    let id = ids[p.id_off + row];
    out[p.out_off + i] = weight(id * p.d + col) * weight_scale(id);
}

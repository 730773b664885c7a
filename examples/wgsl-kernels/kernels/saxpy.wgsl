// saxpy: out[i] = a * x[i] + y[i] over float32 arrays.
// Out-of-range reads of y (a shorter y) are clamped by WebGPU's robust buffer access.

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> a: f32;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= arrayLength(&out)) {
        return;
    }
    out[i] = a * x[i] + y[i];
}

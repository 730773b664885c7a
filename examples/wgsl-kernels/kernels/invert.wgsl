// invert: each RGBA pixel's colour becomes top - colour; alpha is kept.
// Pixels arrive as vec4<f32> in the image's own units (0-255 for an 8-bit image), so
// the result is already whole numbers in range.

@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;
@group(0) @binding(2) var<uniform> top: f32;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= arrayLength(&dst)) {
        return;
    }
    let p = src[i];
    dst[i] = vec4<f32>(vec3<f32>(top) - p.rgb, p.a);
}

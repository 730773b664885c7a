/* reflow/bytes: byte-level actors; the same source builds to WebAssembly and native libs. */
#include "reflow.h"

static int payload(reflow_ctx *ctx, reflow_msg *m) {
    return reflow_input(ctx, "in", m) && (m->kind == REFLOW_STRING || m->kind == REFLOW_BYTES);
}

static int length_tick(reflow_ctx *ctx) {
    reflow_msg m;
    if (!payload(ctx, &m)) return reflow_fail(ctx, "bytes/length: expected String or Bytes");
    reflow_output(ctx, "out", reflow_integer((int64_t)m.len));
    return reflow_done(ctx);
}

static int fnv_tick(reflow_ctx *ctx) {
    reflow_msg m;
    if (!payload(ctx, &m)) return reflow_fail(ctx, "bytes/fnv1a: expected String or Bytes");
    uint64_t h = 1469598103934665603ULL;
    for (uint32_t i = 0; i < m.len; i++) { h ^= m.ptr[i]; h *= 1099511628211ULL; }
    reflow_output(ctx, "out", reflow_integer((int64_t)(h & 0x7fffffffffffffffULL)));
    return reflow_done(ctx);
}

static int reverse_tick(reflow_ctx *ctx) {
    reflow_msg m;
    if (!payload(ctx, &m)) return reflow_fail(ctx, "bytes/reverse: expected String or Bytes");
    uint8_t *out = (uint8_t *)reflow_alloc_tick(ctx, m.len ? m.len : 1);
    if (!out) return reflow_fail(ctx, "bytes/reverse: out of memory");
    for (uint32_t i = 0; i < m.len; i++) out[i] = m.ptr[m.len - 1 - i];
    reflow_output(ctx, "out", reflow_bytes(out, m.len));
    return reflow_done(ctx);
}

REFLOW_TEMPLATES(
    {.id = "reflow/bytes/length", .description = "Length in bytes of a String or Bytes.",
     .inports = "in", .outports = "out", .tick = length_tick},
    {.id = "reflow/bytes/fnv1a", .description = "63-bit FNV-1a hash of a String or Bytes.",
     .inports = "in", .outports = "out", .tick = fnv_tick},
    {.id = "reflow/bytes/reverse", .description = "The bytes in reverse order, as Bytes.",
     .inports = "in", .outports = "out", .tick = reverse_tick},
)

/*
 * reflow.c — the runtime of the C guest SDK (guest ABI 1.1, abi/ABI.md).
 *
 * Compiled together with an actor's source. On wasm32 it exports the ABI entry points and
 * imports the host functions from module "reflow"; built natively it exports the native
 * binding (ABI.md §7) and calls the host through the table given to reflow_native_bind().
 *
 * Memory: a per-call bump arena (reset at the start of every describe/open/tick) holds
 * decoded inputs and the result frame; persistent blocks (input buffer, node config, node
 * state) come from a separate region on wasm and from calloc natively.
 */
#include "reflow.h"

#if defined(__wasm__)
#if !defined(__wasm_bulk_memory__)
#error "build wasm guests with -mbulk-memory (reflow.tools._guest_build does)"
#endif
#define REFLOW_WASM 1
#define TLS
#define EXPORT(name) __attribute__((export_name(name)))
#define IMPORT(name) __attribute__((import_module("reflow"), import_name(name)))

IMPORT("log") void rh_log(int32_t level, const uint8_t *p, uint32_t n);
IMPORT("emit") int32_t rh_emit(const uint8_t *p, uint32_t n);
IMPORT("pool_upsert") int32_t rh_pool_upsert(const uint8_t *pool, uint32_t pool_len,
                                             const uint8_t *id, uint32_t id_len,
                                             const uint8_t *msg, uint32_t msg_len);
IMPORT("pool_get") int32_t rh_pool_get(const uint8_t *pool, uint32_t pool_len,
                                       const uint8_t *id, uint32_t id_len);
IMPORT("pool_remove") int32_t rh_pool_remove(const uint8_t *pool, uint32_t pool_len,
                                             const uint8_t *id, uint32_t id_len);
IMPORT("pool_count") int32_t rh_pool_count(const uint8_t *pool, uint32_t pool_len);
IMPORT("pool_clear") int32_t rh_pool_clear(const uint8_t *pool, uint32_t pool_len);
IMPORT("http_request") int32_t rh_http_request(const uint8_t *req, uint32_t len);
IMPORT("result_read") int32_t rh_result_read(uint8_t *buf, uint32_t cap);

#if defined(__wasi__)
/* wasm32-wasi (libc from wasi-libc): the allocator below uses malloc, like native. */
#include <stdlib.h>
#include <string.h>
#else
/* Freestanding: the compiler may emit calls to these. Built with -mbulk-memory, the
 * builtins below lower to the memory.copy / memory.fill instructions (no recursion). */
void *memcpy(void *dst, const void *src, size_t n) {
    __builtin_memcpy(dst, src, n);
    return dst;
}
void *memmove(void *dst, const void *src, size_t n) {
    __builtin_memmove(dst, src, n);
    return dst;
}
void *memset(void *dst, int c, size_t n) {
    __builtin_memset(dst, c, n);
    return dst;
}
int memcmp(const void *a, const void *b, size_t n) {
    const unsigned char *x = a, *y = b;
    for (; n; n--, x++, y++)
        if (*x != *y) return *x - *y;
    return 0;
}
size_t strlen(const char *s) {
    const char *p = s;
    while (*p) p++;
    return (size_t)(p - s);
}

extern unsigned char __heap_base;
static uintptr_t heap_top;   /* end of persistent blocks */
static uintptr_t arena_top;  /* end of the current call's arena */
static uint32_t arena_used;  /* bytes handed out since the last reset (batch budget) */

static int wasm_ensure(uintptr_t end) {
    uintptr_t have = (uintptr_t)__builtin_wasm_memory_size(0) * 65536u;
    if (end <= have) return 1;
    uintptr_t pages = (end - have + 65535u) / 65536u;
    return __builtin_wasm_memory_grow(0, pages) != (size_t)-1;
}
static void heap_init(void) {
    if (!heap_top) heap_top = arena_top = ((uintptr_t)&__heap_base + 7u) & ~(uintptr_t)7u;
}
static void arena_reset(void) {
    heap_init();
    arena_top = heap_top;
    arena_used = 0;
}
static void *arena_alloc(uint32_t size) {
    heap_init();
    uintptr_t p = (arena_top + 7u) & ~(uintptr_t)7u;
    if (p + size < p || !wasm_ensure(p + size)) return 0;
    arena_top = p + size;
    arena_used += size;
    return (void *)p;
}
/* Persistent block: placed after anything live in the arena, so a mid-tick call is safe. */
static void *persist_alloc(uint32_t size) {
    heap_init();
    uintptr_t base = heap_top > arena_top ? heap_top : arena_top;
    uintptr_t p = (base + 7u) & ~(uintptr_t)7u;
    if (p + size < p || !wasm_ensure(p + size)) return 0;
    memset((void *)p, 0, size);
    heap_top = arena_top = p + size;
    return (void *)p;
}

#endif /* __wasi__ */

#else /* native */
#include <stdlib.h>
#include <string.h>
#define REFLOW_WASM 0
#if defined(_WIN32)
#define EXPORT(name) __declspec(dllexport)
#else
#define EXPORT(name) __attribute__((visibility("default")))
#endif
#define TLS _Thread_local

static const reflow_host_api *host;

static void rh_log(int32_t level, const uint8_t *p, uint32_t n) { host->log(level, p, n); }
static int32_t rh_emit(const uint8_t *p, uint32_t n) { return host->emit(p, n); }
static int32_t rh_pool_upsert(const uint8_t *pool, uint32_t pool_len, const uint8_t *id,
                              uint32_t id_len, const uint8_t *msg, uint32_t msg_len) {
    return host->pool_upsert(pool, pool_len, id, id_len, msg, msg_len);
}
static int32_t rh_pool_get(const uint8_t *pool, uint32_t pool_len, const uint8_t *id,
                           uint32_t id_len) {
    return host->pool_get(pool, pool_len, id, id_len);
}
static int32_t rh_pool_remove(const uint8_t *pool, uint32_t pool_len, const uint8_t *id,
                              uint32_t id_len) {
    return host->pool_remove(pool, pool_len, id, id_len);
}
static int32_t rh_pool_count(const uint8_t *pool, uint32_t pool_len) {
    return host->pool_count(pool, pool_len);
}
static int32_t rh_pool_clear(const uint8_t *pool, uint32_t pool_len) {
    return host->pool_clear(pool, pool_len);
}
static int32_t rh_http_request(const uint8_t *req, uint32_t len) {
    return host->http_request(req, len);
}
static int32_t rh_result_read(uint8_t *buf, uint32_t cap) { return host->result_read(buf, cap); }

#endif

#if !REFLOW_WASM || defined(__wasi__)
/* Per-thread arena: a list of chunks; reset keeps the oldest one. */
typedef struct chunk {
    struct chunk *next;
    size_t cap, top;
    unsigned char data[];
} chunk;
static TLS chunk *arena_head;
static TLS uint32_t arena_used; /* bytes handed out since the last reset (batch budget) */

static void arena_reset(void) {
    arena_used = 0;
    while (arena_head && arena_head->next) {
        chunk *next = arena_head->next;
        free(arena_head);
        arena_head = next;
    }
    if (arena_head) arena_head->top = 0;
}
static void *arena_alloc(uint32_t size) {
    size_t need = ((size_t)size + 7u) & ~(size_t)7u;
    if (!arena_head || arena_head->top + need > arena_head->cap) {
        size_t cap = need > 65536u ? need : 65536u;
        chunk *c = (chunk *)malloc(sizeof(chunk) + cap);
        if (!c) return 0;
        c->next = arena_head;
        c->cap = cap;
        c->top = 0;
        arena_head = c;
    }
    void *p = arena_head->data + arena_head->top;
    arena_head->top += need;
    arena_used += (uint32_t)need;
    return p;
}
static void *persist_alloc(uint32_t size) { return calloc(1, size ? size : 1); }
#endif

/* -- per-node data and the tick context ---------------------------------------------------- */

typedef struct reflow_node {
    const reflow_template *t;
    uint8_t *config;
    uint32_t config_len;
    char id[256];
    uint32_t id_len;
    void *state;
    uint32_t state_size;
} reflow_node;

typedef struct in_entry {
    const uint8_t *port;
    uint32_t port_len;
    reflow_msg msg;
} in_entry;

typedef struct obuf {
    uint8_t *p;
    uint32_t len, cap;
    int failed;
} obuf;

struct reflow_ctx {
    reflow_node *node;
    uint32_t n_inputs;
    in_entry *inputs;
    obuf out;        /* result frame from out_start: status, u16 count, entries */
    uint32_t out_start;
    uint32_t out_count;
    int ended;       /* 0 running, 1 done, 2 failed */
    const char *fail_msg;
};

static int obuf_reserve(obuf *b, uint32_t extra) {
    if (b->failed) return 0;
    if (b->len + extra < b->len) return b->failed = 1, 0;
    if (b->len + extra <= b->cap) return 1;
    uint32_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra) {
        if (cap > 0x7fffffffu) return b->failed = 1, 0;
        cap *= 2;
    }
    uint8_t *p = (uint8_t *)arena_alloc(cap);
    if (!p) return b->failed = 1, 0;
    if (b->len) memcpy(p, b->p, b->len);
    b->p = p;
    b->cap = cap;
    return 1;
}
static void obuf_put(obuf *b, const void *data, uint32_t n) {
    if (!obuf_reserve(b, n)) return;
    if (n) memcpy(b->p + b->len, data, n);
    b->len += n;
}
static void obuf_u8(obuf *b, uint8_t v) { obuf_put(b, &v, 1); }
static void obuf_u32(obuf *b, uint32_t v) {
    uint8_t t[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    obuf_put(b, t, 4);
}
static void obuf_u64(obuf *b, uint64_t v) {
    uint8_t t[8];
    for (int i = 0; i < 8; i++) t[i] = (uint8_t)(v >> (8 * i));
    obuf_put(b, t, 8);
}

static uint32_t rd_u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}
static uint64_t rd_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* Encode one message. */
static void put_msg(obuf *b, const reflow_msg *m) {
    obuf_u8(b, (uint8_t)m->kind);
    switch (m->kind) {
    case REFLOW_NULL:
    case REFLOW_FLOW:
        break;
    case REFLOW_BOOLEAN:
        obuf_u8(b, m->i ? 1 : 0);
        break;
    case REFLOW_INTEGER:
        obuf_u64(b, (uint64_t)m->i);
        break;
    case REFLOW_FLOAT: {
        union { double d; uint64_t u; } cv;
        cv.d = m->f;
        obuf_u64(b, cv.u);
        break;
    }
    default:
        obuf_u32(b, m->len);
        obuf_put(b, m->ptr, m->len);
        break;
    }
}

/* Decode one message at p[0..end); returns bytes consumed, 0 on malformed input. */
static uint32_t get_msg(const uint8_t *p, uint32_t avail, reflow_msg *m) {
    if (avail < 1) return 0;
    m->kind = (reflow_kind)p[0];
    m->i = 0;
    m->f = 0;
    m->ptr = 0;
    m->len = 0;
    switch (p[0]) {
    case REFLOW_NULL:
    case REFLOW_FLOW:
        return 1;
    case REFLOW_BOOLEAN:
        if (avail < 2 || p[1] > 1) return 0;
        m->i = p[1];
        return 2;
    case REFLOW_INTEGER:
        if (avail < 9) return 0;
        m->i = (int64_t)rd_u64(p + 1);
        return 9;
    case REFLOW_FLOAT: {
        if (avail < 9) return 0;
        union { double d; uint64_t u; } cv;
        cv.u = rd_u64(p + 1);
        m->f = cv.d;
        return 9;
    }
    default: {
        if (p[0] > REFLOW_ANY || avail < 5) return 0;
        uint32_t n = rd_u32(p + 1);
        if (n > avail - 5) return 0;
        m->ptr = p + 5;
        m->len = n;
        return 5 + n;
    }
    }
}

/* -- message constructors ---------------------------------------------------------------- */
static reflow_msg mk(reflow_kind k) {
    reflow_msg m;
    m.kind = k;
    m.i = 0;
    m.f = 0;
    m.ptr = 0;
    m.len = 0;
    return m;
}
reflow_msg reflow_null(void) { return mk(REFLOW_NULL); }
reflow_msg reflow_flow(void) { return mk(REFLOW_FLOW); }
reflow_msg reflow_boolean(int v) {
    reflow_msg m = mk(REFLOW_BOOLEAN);
    m.i = v ? 1 : 0;
    return m;
}
reflow_msg reflow_integer(int64_t v) {
    reflow_msg m = mk(REFLOW_INTEGER);
    m.i = v;
    return m;
}
reflow_msg reflow_float(double v) {
    reflow_msg m = mk(REFLOW_FLOAT);
    m.f = v;
    return m;
}
reflow_msg reflow_string_n(const void *text, uint32_t len) {
    reflow_msg m = mk(REFLOW_STRING);
    m.ptr = (const uint8_t *)text;
    m.len = len;
    return m;
}
reflow_msg reflow_string(const char *text) {
    return reflow_string_n(text, (uint32_t)strlen(text));
}
reflow_msg reflow_bytes(const void *data, uint32_t len) {
    reflow_msg m = mk(REFLOW_BYTES);
    m.ptr = (const uint8_t *)data;
    m.len = len;
    return m;
}
reflow_msg reflow_error(const char *text) {
    reflow_msg m = reflow_string(text);
    m.kind = REFLOW_ERROR;
    return m;
}
reflow_msg reflow_json(reflow_kind kind, const void *json, uint32_t len) {
    reflow_msg m = mk(kind);
    m.ptr = (const uint8_t *)json;
    m.len = len;
    return m;
}

/* -- inputs, config, identity -------------------------------------------------------------- */
static int name_eq(const uint8_t *a, uint32_t alen, const char *b) {
    uint32_t blen = (uint32_t)strlen(b);
    return alen == blen && memcmp(a, b, alen) == 0;
}

int reflow_input(reflow_ctx *ctx, const char *port, reflow_msg *out) {
    for (uint32_t i = 0; i < ctx->n_inputs; i++) {
        if (name_eq(ctx->inputs[i].port, ctx->inputs[i].port_len, port)) {
            if (out) *out = ctx->inputs[i].msg;
            return 1;
        }
    }
    return 0;
}
uint32_t reflow_input_count(reflow_ctx *ctx) { return ctx->n_inputs; }
int reflow_input_at(reflow_ctx *ctx, uint32_t index, const char **port, uint32_t *port_len,
                    reflow_msg *out) {
    if (index >= ctx->n_inputs) return 0;
    if (port) *port = (const char *)ctx->inputs[index].port;
    if (port_len) *port_len = ctx->inputs[index].port_len;
    if (out) *out = ctx->inputs[index].msg;
    return 1;
}
const char *reflow_config_json(reflow_ctx *ctx, uint32_t *len) {
    if (len) *len = ctx->node->config_len;
    return (const char *)ctx->node->config;
}
const char *reflow_node_id(reflow_ctx *ctx, uint32_t *len) {
    if (len) *len = ctx->node->id_len;
    return ctx->node->id;
}
const char *reflow_template_id(reflow_ctx *ctx) { return ctx->node->t->id; }

static const uint8_t *skip_ws(const uint8_t *p, const uint8_t *end) {
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
    return p;
}
/* Skip one JSON value (string, number, literal, object, array); NULL if malformed. */
static const uint8_t *skip_value(const uint8_t *p, const uint8_t *end) {
    p = skip_ws(p, end);
    if (p >= end) return 0;
    if (*p == '"') {
        for (p++; p < end; p++) {
            if (*p == '\\') p++;
            else if (*p == '"') return p + 1;
        }
        return 0;
    }
    if (*p == '{' || *p == '[') {
        int depth = 0;
        for (; p < end; p++) {
            if (*p == '"') {
                p = skip_value(p, end);
                if (!p) return 0;
                p--;
            } else if (*p == '{' || *p == '[') {
                depth++;
            } else if (*p == '}' || *p == ']') {
                if (--depth == 0) return p + 1;
            }
        }
        return 0;
    }
    while (p < end && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\n' &&
           *p != '\r' && *p != '\t')
        p++;
    return p;
}

int reflow_json_find(const uint8_t *json, uint32_t len, const char *key, const uint8_t **value,
                     uint32_t *value_len) {
    const uint8_t *p = json, *end = json + len;
    uint32_t klen = (uint32_t)strlen(key);
    p = skip_ws(p, end);
    if (p >= end || *p != '{') return 0;
    p++;
    for (;;) {
        p = skip_ws(p, end);
        if (p >= end || *p != '"') return 0;
        const uint8_t *kstart = p + 1;
        const uint8_t *kend = skip_value(p, end);
        if (!kend) return 0;
        int match = (uint32_t)(kend - 1 - kstart) == klen && memcmp(kstart, key, klen) == 0;
        p = skip_ws(kend, end);
        if (p >= end || *p != ':') return 0;
        const uint8_t *vstart = skip_ws(p + 1, end);
        const uint8_t *vend = skip_value(vstart, end);
        if (!vend) return 0;
        if (match) {
            *value = vstart;
            *value_len = (uint32_t)(vend - vstart);
            return 1;
        }
        p = skip_ws(vend, end);
        if (p < end && *p == ',') {
            p++;
            continue;
        }
        return 0;
    }
}

int reflow_json_int(const uint8_t *value, uint32_t len, int64_t *out) {
    uint32_t i = 0;
    int neg = 0;
    uint64_t v = 0;
    if (i < len && value[i] == '-') neg = 1, i++;
    if (i >= len) return 0;
    for (; i < len; i++) {
        if (value[i] < '0' || value[i] > '9') return 0;
        v = v * 10 + (uint64_t)(value[i] - '0');
    }
    *out = neg ? -(int64_t)v : (int64_t)v;
    return 1;
}

int64_t reflow_config_int(reflow_ctx *ctx, const char *key, int64_t fallback) {
    const uint8_t *v;
    uint32_t n;
    int64_t out;
    if (reflow_json_find(ctx->node->config, ctx->node->config_len, key, &v, &n) &&
        reflow_json_int(v, n, &out))
        return out;
    return fallback;
}

/* -- ending the tick, outputs ---------------------------------------------------------------- */
int reflow_done(reflow_ctx *ctx) {
    if (!ctx->ended) ctx->ended = 1;
    return 0;
}
int reflow_fail(reflow_ctx *ctx, const char *message) {
    if (!ctx->ended) {
        ctx->ended = 2;
        ctx->fail_msg = message ? message : "failed";
    }
    return 1;
}

int reflow_output(reflow_ctx *ctx, const char *port, reflow_msg msg) {
    uint32_t plen = (uint32_t)strlen(port);
    if (plen == 0 || plen > 255 || ctx->out_count >= 0xffffu) return -1;
    obuf_u8(&ctx->out, (uint8_t)plen);
    obuf_put(&ctx->out, port, plen);
    put_msg(&ctx->out, &msg);
    if (ctx->out.failed) return -1;
    ctx->out_count++;
    return 0;
}

int reflow_emit(reflow_ctx *ctx, const char *port, reflow_msg msg) {
    (void)ctx;
    uint32_t plen = (uint32_t)strlen(port);
    if (plen == 0 || plen > 255) return -1;
    obuf b = {0, 0, 0, 0};
    obuf_u8(&b, 1);
    obuf_u8(&b, 0);
    obuf_u8(&b, (uint8_t)plen);
    obuf_put(&b, port, plen);
    put_msg(&b, &msg);
    if (b.failed) return -1;
    return rh_emit(b.p, b.len);
}

/* -- pools, state, log, http ---------------------------------------------------------------- */
int reflow_pool_upsert(reflow_ctx *ctx, const char *pool, const char *id, reflow_msg msg) {
    (void)ctx;
    obuf b = {0, 0, 0, 0};
    put_msg(&b, &msg);
    if (b.failed) return -1;
    return rh_pool_upsert((const uint8_t *)pool, (uint32_t)strlen(pool), (const uint8_t *)id,
                          (uint32_t)strlen(id), b.p, b.len);
}
int reflow_pool_get(reflow_ctx *ctx, const char *pool, const char *id, reflow_msg *out) {
    int32_t n = rh_pool_get((const uint8_t *)pool, (uint32_t)strlen(pool), (const uint8_t *)id,
                            (uint32_t)strlen(id));
    if (n < 0) return 0;
    uint8_t *buf = (uint8_t *)reflow_alloc_tick(ctx, (uint32_t)n + 1);
    if (!buf) return 0;
    int32_t got = rh_result_read(buf, (uint32_t)n);
    if (got != n) return 0;
    return get_msg(buf, (uint32_t)n, out) == (uint32_t)n;
}
int reflow_pool_remove(reflow_ctx *ctx, const char *pool, const char *id) {
    (void)ctx;
    return rh_pool_remove((const uint8_t *)pool, (uint32_t)strlen(pool), (const uint8_t *)id,
                          (uint32_t)strlen(id));
}
int32_t reflow_pool_count(reflow_ctx *ctx, const char *pool) {
    (void)ctx;
    return rh_pool_count((const uint8_t *)pool, (uint32_t)strlen(pool));
}
int reflow_pool_clear(reflow_ctx *ctx, const char *pool) {
    (void)ctx;
    return rh_pool_clear((const uint8_t *)pool, (uint32_t)strlen(pool));
}

void *reflow_node_state(reflow_ctx *ctx, uint32_t size) {
    reflow_node *node = ctx->node;
    if (!node->state) {
        node->state = persist_alloc(size);
        node->state_size = node->state ? size : 0;
    }
    return node->state_size >= size ? node->state : 0;
}

void reflow_log(reflow_ctx *ctx, int level, const char *text) {
    (void)ctx;
    rh_log(level, (const uint8_t *)text, (uint32_t)strlen(text));
}

int reflow_http_request(reflow_ctx *ctx, const char *request_json, uint32_t len,
                        const uint8_t **response, uint32_t *response_len) {
    int32_t n = rh_http_request((const uint8_t *)request_json, len);
    if (n < 0) return -1;
    uint8_t *buf = (uint8_t *)reflow_alloc_tick(ctx, (uint32_t)n + 1);
    if (!buf) return -1;
    if (rh_result_read(buf, (uint32_t)n) != n) return -1;
    buf[n] = 0;
    *response = buf;
    *response_len = (uint32_t)n;
    return 0;
}

void *reflow_alloc_tick(reflow_ctx *ctx, uint32_t size) {
    (void)ctx;
    return arena_alloc(size);
}

void reflow_sb_init(reflow_sb *sb, reflow_ctx *ctx) {
    sb->ctx = ctx;
    sb->data = 0;
    sb->len = sb->cap = 0;
    sb->failed = 0;
}
void reflow_sb_append_n(reflow_sb *sb, const void *data, uint32_t len) {
    obuf b = {(uint8_t *)sb->data, sb->len, sb->cap, sb->failed};
    if (!obuf_reserve(&b, len + 1)) {
        sb->failed = 1;
        return;
    }
    memcpy(b.p + b.len, data, len);
    b.len += len;
    b.p[b.len] = 0;
    sb->data = (char *)b.p;
    sb->len = b.len;
    sb->cap = b.cap;
}
void reflow_sb_append(reflow_sb *sb, const char *text) {
    reflow_sb_append_n(sb, text, (uint32_t)strlen(text));
}
void reflow_sb_append_int(reflow_sb *sb, int64_t v) {
    char tmp[24];
    int i = 23;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    tmp[i] = 0;
    do {
        tmp[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) tmp[--i] = '-';
    reflow_sb_append(sb, tmp + i);
}

/* -- describe document ---------------------------------------------------------------------- */
static void json_str(obuf *b, const char *s) {
    obuf_u8(b, '"');
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            obuf_u8(b, '\\');
            obuf_u8(b, c);
        } else if (c < 0x20) {
            static const char hex[] = "0123456789abcdef";
            uint8_t esc[6] = {'\\', 'u', '0', '0', (uint8_t)hex[c >> 4], (uint8_t)hex[c & 15]};
            obuf_put(b, esc, 6);
        } else {
            obuf_u8(b, c);
        }
    }
    obuf_u8(b, '"');
}
static void json_list(obuf *b, const char *csv) {
    obuf_u8(b, '[');
    int first = 1;
    const char *p = csv;
    while (p && *p) {
        while (*p == ' ' || *p == ',') p++;
        const char *start = p;
        while (*p && *p != ',') p++;
        const char *stop = p;
        while (stop > start && stop[-1] == ' ') stop--;
        if (stop > start) {
            if (!first) obuf_u8(b, ',');
            first = 0;
            obuf_u8(b, '"');
            obuf_put(b, start, (uint32_t)(stop - start));
            obuf_u8(b, '"');
        }
    }
    obuf_u8(b, ']');
}
static void obuf_str(obuf *b, const char *s) { obuf_put(b, s, (uint32_t)strlen(s)); }

static void obuf_uint(obuf *b, uint32_t v) {
    char tmp[11];
    int i = 10;
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    obuf_put(b, tmp + i, (uint32_t)(10 - i));
}

static obuf build_describe(void) {
    obuf b = {0, 0, 0, 0};
    obuf_str(&b, "{\"abi\":\"");
    obuf_uint(&b, REFLOW_ABI_MAJOR);
    obuf_u8(&b, '.');
    obuf_uint(&b, REFLOW_ABI_MINOR);
    obuf_str(&b, "\",\"templates\":[");
    for (uint32_t i = 0; i < reflow_user_template_count; i++) {
        const reflow_template *t = &reflow_user_templates[i];
        if (i) obuf_u8(&b, ',');
        obuf_str(&b, "{\"id\":");
        json_str(&b, t->id);
        obuf_str(&b, ",\"description\":");
        json_str(&b, t->description ? t->description : "");
        obuf_str(&b, ",\"inports\":");
        json_list(&b, t->inports);
        obuf_str(&b, ",\"outports\":");
        json_list(&b, t->outports);
        obuf_str(&b, t->await_all_inports ? ",\"await_all_inports\":true"
                                          : ",\"await_all_inports\":false");
        obuf_str(&b, ",\"config_schema\":");
        obuf_str(&b, t->config_schema ? t->config_schema : "{\"type\":\"object\"}");
        obuf_str(&b, ",\"capabilities\":");
        json_list(&b, t->capabilities);
        obuf_u8(&b, '}');
    }
    obuf_str(&b, "]}");
    return b;
}

/* -- open / tick ------------------------------------------------------------------------------ */
static obuf fail_frame(const char *message) {
    obuf b = {0, 0, 0, 0};
    uint32_t n = (uint32_t)strlen(message);
    obuf_u8(&b, 1);
    obuf_u32(&b, n);
    obuf_put(&b, message, n);
    return b;
}

/* The buffer the tick's result frame was appended to (from ctx->out_start): its outputs, or a
 * fail frame in their place. out.failed only if not even a fail frame fit. */
static obuf finish(reflow_ctx *ctx, int rc) {
    obuf *o = &ctx->out;
    uint32_t s = ctx->out_start;
    const char *err = 0;
    if (ctx->ended == 2 || (rc != 0 && ctx->ended != 1))
        err = ctx->fail_msg ? ctx->fail_msg : "tick failed";
    else if (o->failed)
        err = "reflow sdk: out of memory building outputs";
    if (err) {
        uint32_t n = (uint32_t)strlen(err);
        o->len = s;
        o->failed = 0;
        obuf_u8(o, 1);
        obuf_u32(o, n);
        obuf_put(o, err, n);
        return *o;
    }
    o->p[s + 1] = (uint8_t)(ctx->out_count & 0xff);
    o->p[s + 2] = (uint8_t)(ctx->out_count >> 8);
    return *o;
}

/* The result frame is appended to `out` (empty for a single tick; the batch's results). */
static void ctx_init(reflow_ctx *ctx, reflow_node *node, obuf out) {
    ctx->node = node;
    ctx->n_inputs = 0;
    ctx->inputs = 0;
    ctx->out = out;
    ctx->out_start = out.len;
    ctx->out_count = 0;
    ctx->ended = 0;
    ctx->fail_msg = 0;
    obuf_u8(&ctx->out, 0);
    obuf_u8(&ctx->out, 0);
    obuf_u8(&ctx->out, 0);
}

/* Parse an open frame into node; returns NULL or an error text. */
static const char *open_node(reflow_node *node, const uint8_t *p, uint32_t len) {
    if (len < 1 || p[0] == 0 || 1u + p[0] > len) return "reflow sdk: malformed open frame";
    uint32_t tlen = p[0];
    const uint8_t *tid = p + 1;
    uint32_t pos = 1 + tlen;
    if (pos >= len || pos + 1 + p[pos] > len) return "reflow sdk: malformed open frame";
    uint32_t nlen = p[pos];
    memcpy(node->id, p + pos + 1, nlen);
    node->id[nlen] = 0;
    node->id_len = nlen;
    pos += 1 + nlen;
    if (pos + 4 > len) return "reflow sdk: malformed open frame";
    uint32_t clen = rd_u32(p + pos);
    pos += 4;
    if (clen > len - pos) return "reflow sdk: malformed open frame";
    node->t = 0;
    for (uint32_t i = 0; i < reflow_user_template_count; i++) {
        if (name_eq(tid, tlen, reflow_user_templates[i].id)) node->t = &reflow_user_templates[i];
    }
    if (!node->t) return "reflow sdk: this module has no template with that id";
    node->config = (uint8_t *)persist_alloc(clen + 1);
    if (!node->config) return "reflow sdk: out of memory storing the node config";
    memcpy(node->config, p + pos, clen);
    node->config_len = clen;
    return 0;
}

static obuf run_open(reflow_node *node, const uint8_t *p, uint32_t len) {
    const char *err = open_node(node, p, len);
    if (err) return fail_frame(err);
    reflow_ctx ctx;
    obuf empty = {0, 0, 0, 0};
    ctx_init(&ctx, node, empty);
    int rc = node->t->open ? node->t->open(&ctx) : reflow_done(&ctx);
    return finish(&ctx, rc);
}

static obuf run_tick(reflow_node *node, const uint8_t *p, uint32_t len, obuf out) {
    reflow_ctx ctx;
    ctx_init(&ctx, node, out);
    if (!node || !node->t) return finish(&ctx, reflow_fail(&ctx, "reflow sdk: tick before open"));
    if (len < 2) return finish(&ctx, reflow_fail(&ctx, "reflow sdk: malformed input frame"));
    uint32_t count = (uint32_t)p[0] | ((uint32_t)p[1] << 8);
    ctx.inputs = (in_entry *)arena_alloc(count * (uint32_t)sizeof(in_entry) + 1);
    if (!ctx.inputs)
        return finish(&ctx, reflow_fail(&ctx, "reflow sdk: out of memory decoding inputs"));
    uint32_t pos = 2;
    for (uint32_t i = 0; i < count; i++) {
        if (pos >= len || p[pos] == 0 || pos + 1 + p[pos] > len)
            return finish(&ctx, reflow_fail(&ctx, "reflow sdk: malformed input frame"));
        ctx.inputs[i].port_len = p[pos];
        ctx.inputs[i].port = p + pos + 1;
        pos += 1 + p[pos];
        uint32_t used = get_msg(p + pos, len - pos, &ctx.inputs[i].msg);
        if (!used) return finish(&ctx, reflow_fail(&ctx, "reflow sdk: malformed input frame"));
        pos += used;
    }
    ctx.n_inputs = count;
    int rc = node->t->tick(&ctx);
    return finish(&ctx, rc);
}

/* -- batches (ABI 1.1, abi/ABI.md "Batched ticks") ------------------------------------------
 * The batch frame starts with a 24-byte header the guest updates after every tick, so that the
 * host finds the results of the completed ticks even if a later tick traps:
 *   0 u32 count (host)  4 u32 done (guest)  8 u64 results ptr (guest)  16 u32 results len
 *   (guest)  20 u32 reserved
 * then count x (u32 n + input frame). The results are count' x (u32 n + result frame), count'
 * = done <= count: the runtime stops early once the ticks of this call have used
 * REFLOW_BATCH_ARENA_BUDGET bytes of arena, and the host sends the rest again. */
#if REFLOW_ABI_MINOR >= 1
#ifndef REFLOW_BATCH_ARENA_BUDGET
#define REFLOW_BATCH_ARENA_BUDGET (1u << 20)
#endif
#define BATCH_HEAD 24u

static void wr_u32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}
static void wr_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static obuf run_batch(reflow_node *node, uint8_t *p, uint32_t len) {
    obuf res = {0, 0, 0, 0};
    if (len < BATCH_HEAD) {
        res.failed = 1;
        return res;
    }
    uint32_t count = rd_u32(p), pos = BATCH_HEAD;
    wr_u32(p + 4, 0);
    for (uint32_t i = 0; i < count; i++) {
        if (pos + 4 > len || rd_u32(p + pos) > len - pos - 4) break; /* host bug: stop */
        uint32_t n = rd_u32(p + pos);
        /* Room for the result's length first: a tick whose result could not be recorded
         * must not run (the host would send it again). The tick then writes its result
         * frame straight after it, into the results. */
        if (!obuf_reserve(&res, 4)) break;
        uint32_t at = res.len;
        res.len += 4;
        res = run_tick(node, p + pos + 4, n, res);
        pos += 4 + n;
        if (res.failed) { /* not even a fail frame fit: an empty frame fails the tick alone */
            res.failed = 0;
            res.len = at + 4;
        }
        wr_u32(res.p + at, res.len - at - 4);
        wr_u64(p + 8, (uint64_t)(uintptr_t)res.p);
        wr_u32(p + 16, res.len);
        wr_u32(p + 4, i + 1);
        if (arena_used > REFLOW_BATCH_ARENA_BUDGET) break;
    }
    return res;
}

#endif /* REFLOW_ABI_MINOR >= 1 */

#if REFLOW_WASM
static reflow_node the_node;
static uint8_t *in_buf;
static uint32_t in_cap;

static uint64_t slice(obuf b) {
    if (b.failed || !b.p) return 0;
    return ((uint64_t)b.len << 32) | (uint32_t)(uintptr_t)b.p;
}

EXPORT("reflow_abi_version") uint32_t reflow_abi_version(void) {
    return ((uint32_t)REFLOW_ABI_MAJOR << 16) | REFLOW_ABI_MINOR;
}
EXPORT("reflow_alloc") uint8_t *reflow_alloc(uint32_t size) {
    if (size <= in_cap && in_buf) return in_buf;
    uint32_t cap = in_cap ? in_cap : 1024;
    while (cap < size) {
        if (cap > 0x3fffffffu) return 0;
        cap *= 2;
    }
    uint8_t *p = (uint8_t *)persist_alloc(cap);
    if (!p) return 0;
    in_buf = p;
    in_cap = cap;
    return p;
}
EXPORT("reflow_describe") uint64_t reflow_describe(void) {
    arena_reset();
    return slice(build_describe());
}
EXPORT("reflow_open") uint64_t reflow_open(const uint8_t *p, uint32_t len) {
    arena_reset();
    return slice(run_open(&the_node, p, len));
}
EXPORT("reflow_tick") uint64_t reflow_tick(const uint8_t *p, uint32_t len) {
    arena_reset();
    obuf empty = {0, 0, 0, 0};
    return slice(run_tick(&the_node, p, len, empty));
}
#if REFLOW_ABI_MINOR >= 1
EXPORT("reflow_tick_batch") uint64_t reflow_tick_batch(uint8_t *p, uint32_t len) {
    arena_reset();
    obuf r = run_batch(&the_node, p, len);
    if (r.failed && len >= BATCH_HEAD) /* out of memory: hand back what was published */
        return ((uint64_t)rd_u32(p + 16) << 32) | (uint32_t)rd_u64(p + 8);
    return slice(r);
}
#endif

#else /* native binding */

static const uint8_t *give(obuf b, uint32_t *out_len) {
    *out_len = b.failed ? 0 : b.len;
    return b.failed ? 0 : b.p;
}

EXPORT("reflow_abi_version") uint32_t reflow_abi_version(void) {
    return ((uint32_t)REFLOW_ABI_MAJOR << 16) | REFLOW_ABI_MINOR;
}
EXPORT("reflow_native_bind") void reflow_native_bind(const reflow_host_api *api) { host = api; }
EXPORT("reflow_describe") const uint8_t *reflow_describe(uint32_t *out_len) {
    arena_reset();
    return give(build_describe(), out_len);
}
EXPORT("reflow_open")
const uint8_t *reflow_open(const uint8_t *frame, uint32_t len, void **node_out,
                           uint32_t *out_len) {
    arena_reset();
    reflow_node *node = (reflow_node *)calloc(1, sizeof(reflow_node));
    *node_out = node;
    if (!node) return give(fail_frame("reflow sdk: out of memory"), out_len);
    return give(run_open(node, frame, len), out_len);
}
EXPORT("reflow_tick")
const uint8_t *reflow_tick(void *node, const uint8_t *frame, uint32_t len, uint32_t *out_len) {
    arena_reset();
    obuf empty = {0, 0, 0, 0};
    return give(run_tick((reflow_node *)node, frame, len, empty), out_len);
}
#if REFLOW_ABI_MINOR >= 1
EXPORT("reflow_tick_batch")
const uint8_t *reflow_tick_batch(void *node, uint8_t *frame, uint32_t len, uint32_t *out_len) {
    arena_reset();
    obuf r = run_batch((reflow_node *)node, frame, len);
    if (r.failed && len >= BATCH_HEAD) { /* out of memory: hand back what was published */
        *out_len = rd_u32(frame + 16);
        return (const uint8_t *)(uintptr_t)rd_u64(frame + 8);
    }
    return give(r, out_len);
}
#endif
EXPORT("reflow_close") void reflow_close(void *node) {
    reflow_node *n = (reflow_node *)node;
    if (!n) return;
    free(n->config);
    free(n->state);
    free(n);
}
#endif

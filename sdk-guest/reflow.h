/*
 * reflow.h — the C guest SDK for reflow guest ABI 1.1 (see abi/ABI.md).
 *
 * Write an actor as a tick function, list it in a template table, and build the same source
 * to WebAssembly (sandboxed) or to a native shared library (not sandboxed) with
 * reflow.tools._guest_build.build_guest(). Minimal example:
 *
 *   #include "reflow.h"
 *
 *   static int doubler(reflow_ctx *ctx) {
 *       reflow_msg in;
 *       if (!reflow_input(ctx, "in", &in) || in.kind != REFLOW_INTEGER)
 *           return reflow_fail(ctx, "doubler: expected an Integer on 'in'");
 *       reflow_output(ctx, "out", reflow_integer(in.i * 2));
 *       return reflow_done(ctx);
 *   }
 *
 *   REFLOW_TEMPLATES(
 *       {.id = "example/doubler", .inports = "in", .outports = "out", .tick = doubler},
 *   )
 *
 * Memory: everything the SDK hands you (input messages, pool values, HTTP responses) and
 * everything reflow_alloc_tick() returns lives in a per-call arena, valid until the tick
 * returns. State that must outlive a tick goes in pools (reflow_pool_*) or in the per-node
 * block from reflow_node_state(). Do not rely on globals for per-node state: a native library
 * shares its globals between all of its nodes (a WebAssembly module gets one instance per node).
 *
 * Freestanding: no libc is needed on wasm32 (memcpy/memset/memcmp/strlen are provided).
 */
#ifndef REFLOW_H
#define REFLOW_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define REFLOW_ABI_MAJOR 1
#if defined(REFLOW_ABI_1_0)
/* -DREFLOW_ABI_1_0: a guest for hosts that speak only ABI 1.0 (no reflow_tick_batch). */
#define REFLOW_ABI_MINOR 0
#else
#define REFLOW_ABI_MINOR 1
#endif

/* Message kinds: the kind byte of the wire format. */
typedef enum reflow_kind {
    REFLOW_NULL = 0,
    REFLOW_FLOW = 1,
    REFLOW_BOOLEAN = 2,
    REFLOW_INTEGER = 3,
    REFLOW_FLOAT = 4,
    REFLOW_STRING = 5,
    REFLOW_BYTES = 6,
    REFLOW_ERROR = 7,
    REFLOW_OBJECT = 8,   /* ptr/len: JSON text of an object */
    REFLOW_ARRAY = 9,    /* ptr/len: JSON text of an array */
    REFLOW_EVENT = 10,   /* ptr/len: JSON text of an object */
    REFLOW_OPTIONAL = 11,/* ptr/len: JSON text ("null" when absent) */
    REFLOW_ANY = 12      /* ptr/len: JSON text */
} reflow_kind;

/* A message. Scalars in i/f; String, Bytes, Error and the JSON kinds in ptr/len (not
 * NUL-terminated). Boolean: i is 0 or 1. */
typedef struct reflow_msg {
    reflow_kind kind;
    int64_t i;
    double f;
    const uint8_t *ptr;
    uint32_t len;
} reflow_msg;

/* Log levels for reflow_log. */
enum { REFLOW_DEBUG = 0, REFLOW_INFO = 1, REFLOW_WARNING = 2, REFLOW_ERROR_LEVEL = 3 };

typedef struct reflow_ctx reflow_ctx;
typedef int (*reflow_fn)(reflow_ctx *ctx);

/* One actor template. Port and capability lists are comma-separated ("a,b"). */
typedef struct reflow_template {
    const char *id;
    const char *description;     /* optional */
    const char *inports;
    const char *outports;
    int await_all_inports;
    const char *config_schema;   /* optional JSON Schema text */
    const char *capabilities;    /* optional, e.g. "http" */
    reflow_fn open;              /* optional: once per node, before its first tick */
    reflow_fn tick;
} reflow_template;

extern const reflow_template reflow_user_templates[];
extern const uint32_t reflow_user_template_count;

/* Declare the module's templates: REFLOW_TEMPLATES({...}, {...}) */
#define REFLOW_TEMPLATES(...)                                                             \
    const reflow_template reflow_user_templates[] = {__VA_ARGS__};                        \
    const uint32_t reflow_user_template_count =                                           \
        sizeof(reflow_user_templates) / sizeof(reflow_user_templates[0]);

/* -- message constructors ---------------------------------------------------------------- */
reflow_msg reflow_null(void);
reflow_msg reflow_flow(void);
reflow_msg reflow_boolean(int v);
reflow_msg reflow_integer(int64_t v);
reflow_msg reflow_float(double v);
reflow_msg reflow_string(const char *text);                 /* NUL-terminated */
reflow_msg reflow_string_n(const void *text, uint32_t len);
reflow_msg reflow_bytes(const void *data, uint32_t len);
reflow_msg reflow_error(const char *text);
reflow_msg reflow_json(reflow_kind kind, const void *json, uint32_t len); /* Object..Any */

/* -- inputs, config, identity ------------------------------------------------------------- */
int reflow_input(reflow_ctx *ctx, const char *port, reflow_msg *out);   /* 1 if present */
uint32_t reflow_input_count(reflow_ctx *ctx);
int reflow_input_at(reflow_ctx *ctx, uint32_t index, const char **port, uint32_t *port_len,
                    reflow_msg *out);
const char *reflow_config_json(reflow_ctx *ctx, uint32_t *len);   /* the node config object */
/* Top-level integer in the config object ({"factor": 3}); returns fallback when absent. */
int64_t reflow_config_int(reflow_ctx *ctx, const char *key, int64_t fallback);
const char *reflow_node_id(reflow_ctx *ctx, uint32_t *len);
const char *reflow_template_id(reflow_ctx *ctx);

/* -- ending the tick: return one of these from the tick function -------------------------- */
int reflow_done(reflow_ctx *ctx);
int reflow_fail(reflow_ctx *ctx, const char *message);

/* -- outputs ------------------------------------------------------------------------------- */
/* Queue a message on an out-port; delivered when the tick returns done. 0 = ok. */
int reflow_output(reflow_ctx *ctx, const char *port, reflow_msg msg);
/* Deliver a message now, mid-tick (streaming). May block while downstream is full. 0 = ok. */
int reflow_emit(reflow_ctx *ctx, const char *port, reflow_msg msg);

/* -- pools: per-node maps that outlive ticks (held by the host) --------------------------- */
int reflow_pool_upsert(reflow_ctx *ctx, const char *pool, const char *id, reflow_msg msg);
int reflow_pool_get(reflow_ctx *ctx, const char *pool, const char *id, reflow_msg *out);
int reflow_pool_remove(reflow_ctx *ctx, const char *pool, const char *id);
int32_t reflow_pool_count(reflow_ctx *ctx, const char *pool);
int reflow_pool_clear(reflow_ctx *ctx, const char *pool);

/* -- per-node state block (zeroed, allocated on first call, lives as long as the node) ---- */
void *reflow_node_state(reflow_ctx *ctx, uint32_t size);

/* -- logging, HTTP (capability "http") ------------------------------------------------------ */
void reflow_log(reflow_ctx *ctx, int level, const char *text);
/* request: JSON {"method","url","headers"?,"body"?}; *response: JSON {"status","headers",
 * "body"} or {"status":0,"error":...}. Returns 0, or -1 if the response could not be read. */
int reflow_http_request(reflow_ctx *ctx, const char *request_json, uint32_t len,
                        const uint8_t **response, uint32_t *response_len);

/* -- memory and text helpers ----------------------------------------------------------------- */
void *reflow_alloc_tick(reflow_ctx *ctx, uint32_t size);     /* per-call arena; NULL if full */
/* Growable text buffer in the arena, for building JSON or messages. */
typedef struct reflow_sb {
    reflow_ctx *ctx;
    char *data;
    uint32_t len, cap;
    int failed;
} reflow_sb;
void reflow_sb_init(reflow_sb *sb, reflow_ctx *ctx);
void reflow_sb_append(reflow_sb *sb, const char *text);
void reflow_sb_append_n(reflow_sb *sb, const void *data, uint32_t len);
void reflow_sb_append_int(reflow_sb *sb, int64_t v);
/* Find a top-level key in a JSON object text; on success (*value, *value_len) span its raw
 * JSON value (a string value includes its quotes). Returns 1 if found. */
int reflow_json_find(const uint8_t *json, uint32_t len, const char *key, const uint8_t **value,
                     uint32_t *value_len);
int reflow_json_int(const uint8_t *value, uint32_t len, int64_t *out);

/* -- native binding: the host's function table (filled by the host; see ABI.md §7) -------- */
typedef struct reflow_host_api {
    uint32_t abi;   /* host ABI word: major << 16 | minor */
    uint32_t size;  /* sizeof(reflow_host_api) as the host built it */
    void (*log)(int32_t level, const uint8_t *text, uint32_t len);
    int32_t (*emit)(const uint8_t *frame, uint32_t len);
    int32_t (*pool_upsert)(const uint8_t *pool, uint32_t pool_len, const uint8_t *id,
                           uint32_t id_len, const uint8_t *msg, uint32_t msg_len);
    int32_t (*pool_get)(const uint8_t *pool, uint32_t pool_len, const uint8_t *id,
                        uint32_t id_len);
    int32_t (*pool_remove)(const uint8_t *pool, uint32_t pool_len, const uint8_t *id,
                           uint32_t id_len);
    int32_t (*pool_count)(const uint8_t *pool, uint32_t pool_len);
    int32_t (*pool_clear)(const uint8_t *pool, uint32_t pool_len);
    int32_t (*http_request)(const uint8_t *req, uint32_t len);
    int32_t (*result_read)(uint8_t *buf, uint32_t cap);
} reflow_host_api;

#ifdef __cplusplus
}
#endif
#endif /* REFLOW_H */

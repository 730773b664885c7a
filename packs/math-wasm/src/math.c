/* reflow/math: integer arithmetic actors, built to WebAssembly (sandboxed). */
#include "reflow.h"

static int need_int(reflow_ctx *ctx, const char *port, int64_t *out) {
    reflow_msg m;
    if (!reflow_input(ctx, port, &m) || m.kind != REFLOW_INTEGER) return 0;
    *out = m.i;
    return 1;
}

static int add_tick(reflow_ctx *ctx) {
    int64_t v;
    if (!need_int(ctx, "in", &v)) return reflow_fail(ctx, "math/add: expected an Integer");
    reflow_output(ctx, "out", reflow_integer(v + reflow_config_int(ctx, "add", 1)));
    return reflow_done(ctx);
}

static int mul_tick(reflow_ctx *ctx) {
    int64_t a, b;
    if (!need_int(ctx, "a", &a) || !need_int(ctx, "b", &b))
        return reflow_fail(ctx, "math/multiply: expected Integers on 'a' and 'b'");
    reflow_output(ctx, "out", reflow_integer(a * b));
    return reflow_done(ctx);
}

static int clamp_tick(reflow_ctx *ctx) {
    int64_t v;
    if (!need_int(ctx, "in", &v)) return reflow_fail(ctx, "math/clamp: expected an Integer");
    int64_t lo = reflow_config_int(ctx, "min", 0), hi = reflow_config_int(ctx, "max", 100);
    reflow_output(ctx, "out", reflow_integer(v < lo ? lo : v > hi ? hi : v));
    return reflow_done(ctx);
}

static int sum_tick(reflow_ctx *ctx) {
    int64_t v;
    if (!need_int(ctx, "in", &v)) return reflow_fail(ctx, "math/sum: expected an Integer");
    int64_t *total = (int64_t *)reflow_node_state(ctx, sizeof(int64_t));
    if (!total) return reflow_fail(ctx, "math/sum: no memory for state");
    *total += v;
    reflow_output(ctx, "out", reflow_integer(*total));
    return reflow_done(ctx);
}

REFLOW_TEMPLATES(
    {.id = "reflow/math/add", .description = "Integer + config.add (default 1).",
     .inports = "in", .outports = "out",
     .config_schema = "{\"type\":\"object\",\"properties\":{\"add\":{\"type\":\"integer\"}}}",
     .tick = add_tick},
    {.id = "reflow/math/multiply", .description = "a * b, once both arrived.",
     .inports = "a,b", .outports = "out", .await_all_inports = 1, .tick = mul_tick},
    {.id = "reflow/math/clamp", .description = "Clamp to [config.min, config.max].",
     .inports = "in", .outports = "out", .tick = clamp_tick},
    {.id = "reflow/math/sum", .description = "Running sum of the Integers seen by this node.",
     .inports = "in", .outports = "out", .tick = sum_tick},
)

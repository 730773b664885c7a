/* doubler: a stateless transform. Integer in -> Integer * factor out (config "factor",
 * default 2); Float is doubled too; anything else fails the tick. */
#include "reflow.h"

static int doubler_tick(reflow_ctx *ctx) {
    reflow_msg in;
    if (!reflow_input(ctx, "in", &in)) return reflow_fail(ctx, "doubler: no packet on 'in'");
    int64_t factor = reflow_config_int(ctx, "factor", 2);
    if (in.kind == REFLOW_INTEGER) {
        reflow_output(ctx, "out", reflow_integer(in.i * factor));
    } else if (in.kind == REFLOW_FLOAT) {
        reflow_output(ctx, "out", reflow_float(in.f * (double)factor));
    } else {
        return reflow_fail(ctx, "doubler: expected an Integer or Float on 'in'");
    }
    return reflow_done(ctx);
}

REFLOW_TEMPLATES(
    {.id = "example/doubler",
     .description = "Multiplies an Integer or Float by config.factor (default 2).",
     .inports = "in",
     .outports = "out",
     .config_schema = "{\"type\":\"object\",\"properties\":{\"factor\":{\"type\":\"integer\"}}}",
     .tick = doubler_tick},
)

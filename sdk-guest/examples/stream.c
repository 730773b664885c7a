/* stream: a streaming emitter. For an Integer n on 'in' it emits n packets 0..n-1 on 'out'
 * mid-tick (each delivered at once, subject to backpressure), then sends the total on 'done'. */
#include "reflow.h"

static int stream_tick(reflow_ctx *ctx) {
    reflow_msg in;
    if (!reflow_input(ctx, "in", &in) || in.kind != REFLOW_INTEGER || in.i < 0)
        return reflow_fail(ctx, "stream: expected a non-negative Integer on 'in'");
    for (int64_t i = 0; i < in.i; i++) {
        if (reflow_emit(ctx, "out", reflow_integer(i)) != 0)
            return reflow_fail(ctx, "stream: emit failed");
    }
    reflow_output(ctx, "done", reflow_integer(in.i));
    return reflow_done(ctx);
}

REFLOW_TEMPLATES(
    {.id = "example/stream",
     .description = "Emits 0..n-1 on 'out' for an Integer n, then n on 'done'.",
     .inports = "in",
     .outports = "out,done",
     .tick = stream_tick},
)

/* await_all: waits for a packet on both 'a' and 'b' (await_all_inports) and sends a + b. */
#include "reflow.h"

static int add_tick(reflow_ctx *ctx) {
    reflow_msg a, b;
    if (!reflow_input(ctx, "a", &a) || !reflow_input(ctx, "b", &b))
        return reflow_fail(ctx, "add: needs a packet on both 'a' and 'b'");
    if (a.kind == REFLOW_INTEGER && b.kind == REFLOW_INTEGER) {
        reflow_output(ctx, "sum", reflow_integer(a.i + b.i));
    } else {
        double x = a.kind == REFLOW_INTEGER ? (double)a.i : a.f;
        double y = b.kind == REFLOW_INTEGER ? (double)b.i : b.f;
        if ((a.kind != REFLOW_INTEGER && a.kind != REFLOW_FLOAT) ||
            (b.kind != REFLOW_INTEGER && b.kind != REFLOW_FLOAT))
            return reflow_fail(ctx, "add: 'a' and 'b' must be numbers");
        reflow_output(ctx, "sum", reflow_float(x + y));
    }
    return reflow_done(ctx);
}

REFLOW_TEMPLATES(
    {.id = "example/add",
     .description = "Adds the numbers on 'a' and 'b' once both have arrived.",
     .inports = "a,b",
     .outports = "sum",
     .await_all_inports = 1,
     .tick = add_tick},
)

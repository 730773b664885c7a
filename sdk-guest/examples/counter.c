/* counter: a stateful actor. Counts packets on 'in' in the node's pool "state" (host-held,
 * per node) and sends the running count; a packet on 'reset' sets it back to 0. It also
 * keeps a per-node state block counting ticks, sent on 'ticks'. */
#include "reflow.h"

typedef struct { int64_t ticks; } counter_state;

static int counter_tick(reflow_ctx *ctx) {
    counter_state *st = (counter_state *)reflow_node_state(ctx, sizeof(counter_state));
    if (!st) return reflow_fail(ctx, "counter: no memory for node state");
    st->ticks++;
    if (reflow_input(ctx, "reset", 0)) {
        reflow_pool_remove(ctx, "state", "count");
        reflow_output(ctx, "count", reflow_integer(0));
        return reflow_done(ctx);
    }
    reflow_msg prev;
    int64_t count = 0;
    if (reflow_pool_get(ctx, "state", "count", &prev) && prev.kind == REFLOW_INTEGER)
        count = prev.i;
    count++;
    if (reflow_pool_upsert(ctx, "state", "count", reflow_integer(count)) != 0)
        return reflow_fail(ctx, "counter: could not store the count");
    reflow_output(ctx, "count", reflow_integer(count));
    reflow_output(ctx, "ticks", reflow_integer(st->ticks));
    return reflow_done(ctx);
}

REFLOW_TEMPLATES(
    {.id = "example/counter",
     .description = "Counts packets (pool \"state\"); 'reset' sets the count to 0.",
     .inports = "in,reset",
     .outports = "count,ticks",
     .tick = counter_tick},
)

/* echo: sends every input back on the out-port of the same name, decoded and re-encoded by
 * the SDK (used by the ABI vector tests and the 1 KiB passthrough benchmark). A String
 * "fail:<text>" fails the tick with <text>. */
#include "reflow.h"

static int echo_tick(reflow_ctx *ctx) {
    uint32_t n = reflow_input_count(ctx);
    for (uint32_t i = 0; i < n; i++) {
        const char *port;
        uint32_t port_len;
        reflow_msg m;
        reflow_input_at(ctx, i, &port, &port_len, &m);
        if (m.kind == REFLOW_STRING && m.len >= 5 && m.ptr[0] == 'f' && m.ptr[1] == 'a' &&
            m.ptr[2] == 'i' && m.ptr[3] == 'l' && m.ptr[4] == ':') {
            char *text = (char *)reflow_alloc_tick(ctx, m.len - 4);
            if (!text) return reflow_fail(ctx, "echo: out of memory");
            for (uint32_t k = 5; k < m.len; k++) text[k - 5] = (char)m.ptr[k];
            text[m.len - 5] = 0;
            return reflow_fail(ctx, text);
        }
        char *name = (char *)reflow_alloc_tick(ctx, port_len + 1);
        if (!name) return reflow_fail(ctx, "echo: out of memory");
        for (uint32_t k = 0; k < port_len; k++) name[k] = port[k];
        name[port_len] = 0;
        if (reflow_output(ctx, name, m) != 0) return reflow_fail(ctx, "echo: output failed");
    }
    return reflow_done(ctx);
}

REFLOW_TEMPLATES(
    {.id = "example/echo",
     .description = "Sends each input back on the out-port of the same name.",
     .inports = "in,a,b",
     .outports = "in,a,b",
     .tick = echo_tick},
)

/* http: uses the "http" capability. A String URL on 'url' is fetched with GET; the status
 * goes to 'status' (Integer) and the body to 'body' (String). Needs the node to be granted
 * "http" for the URL's host. */
#include "reflow.h"

static int http_tick(reflow_ctx *ctx) {
    reflow_msg url;
    if (!reflow_input(ctx, "url", &url) || url.kind != REFLOW_STRING)
        return reflow_fail(ctx, "http: expected a String URL on 'url'");
    reflow_sb req;
    reflow_sb_init(&req, ctx);
    reflow_sb_append(&req, "{\"method\":\"GET\",\"url\":\"");
    for (uint32_t i = 0; i < url.len; i++) {  /* escape for JSON */
        char c = (char)url.ptr[i];
        if (c == '"' || c == '\\') reflow_sb_append_n(&req, "\\", 1);
        if ((unsigned char)c >= 0x20) reflow_sb_append_n(&req, &c, 1);
    }
    reflow_sb_append(&req, "\"}");
    if (req.failed) return reflow_fail(ctx, "http: out of memory");
    const uint8_t *resp;
    uint32_t resp_len;
    if (reflow_http_request(ctx, req.data, req.len, &resp, &resp_len) != 0)
        return reflow_fail(ctx, "http: no response");
    const uint8_t *v;
    uint32_t vlen;
    int64_t status = 0;
    if (!reflow_json_find(resp, resp_len, "status", &v, &vlen) || !reflow_json_int(v, vlen, &status))
        return reflow_fail(ctx, "http: response has no status");
    if (status == 0) return reflow_fail(ctx, "http: request failed (transport error)");
    reflow_output(ctx, "status", reflow_integer(status));
    if (reflow_json_find(resp, resp_len, "body", &v, &vlen)) {
        /* the body is a JSON string value: hand it over as JSON text */
        reflow_output(ctx, "body", reflow_json(REFLOW_ANY, v, vlen));
    }
    return reflow_done(ctx);
}

REFLOW_TEMPLATES(
    {.id = "example/http_get",
     .description = "GETs the URL on 'url'; sends the status and the body.",
     .inports = "url",
     .outports = "status,body",
     .capabilities = "http",
     .tick = http_tick},
)

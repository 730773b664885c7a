"""The OpenAPI 3.1 description of the execution server's API, written as data (served at
``/openapi.json``; the tests validate the server's own answers against these schemas)."""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["openapi_document"]

_NUM = {"type": "number"}
_INT = {"type": "integer", "minimum": 0}
_STR = {"type": "string"}
_NSTR = {"type": ["string", "null"]}
_NNUM = {"type": ["number", "null"]}


def _obj(props: dict[str, Any], required: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": props}
    out["required"] = list(props) if required is None else required
    out.update(extra)
    return out


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_SCHEMAS: dict[str, Any] = {
    "Error": _obj(
        {
            "error": _obj(
                {
                    "type": {**_STR, "description": "the error class, e.g. GraphFormatError"},
                    "message": _STR,
                    "path": {
                        **_NSTR,
                        "description": "JSON path at fault: into the graph for graph errors "
                        "($.processes.x.component), else into the request ($.initial[0].port, "
                        "$.query.limit, $.headers.authorization)",
                    },
                },
                additionalProperties=False,
            )
        },
        additionalProperties=False,
    ),
    "ExecutionRequest": _obj(
        {
            "graph": {"type": "object", "description": "an FBP JSON graph"},
            "initial": {
                "type": "array",
                "items": _obj({"node": _STR, "port": _STR, "data": {}}, ["node", "port"]),
            },
            "packs": {"type": "array", "items": _STR, "description": "names to load first"},
            "timeout": {**_NUM, "exclusiveMinimum": 0},
            "trace": {
                "enum": ["off", "nodes", "ticks"],
                "description": "when the server exports traces (--otlp): a span per node "
                "(default), per node and per tick, or none for this execution",
            },
            "await_watcher": {
                **_NUM,
                "minimum": 0,
                "maximum": 60,
                "description": "seconds the run waits for its first WebSocket client before "
                "it starts, so that client sees every event (default 0: start at once)",
            },
        },
        ["graph"],
        additionalProperties=False,
    ),
    "Failure": _obj({"node": _STR, "component": _STR, "error": _STR}),
    "Summary": _obj(
        {
            "ok": {"type": "boolean"},
            "ticks": _INT,
            "node_ticks": {"type": "object", "additionalProperties": _INT},
            "failure_count": _INT,
            "failures": {"type": "array", "items": _ref("Failure")},
            "overflowed": _INT,
            "dropped": _INT,
            "elapsed": _NUM,
            "pending": {"type": "object", "additionalProperties": _INT},
        }
    ),
    "Counts": _obj(
        {
            "events": _INT,
            "lost": _INT,
            "nodes": {
                "type": "object",
                "additionalProperties": _obj({"ticks": _INT, "failures": _INT, "error": _NSTR}),
            },
            "edges": {
                "type": "object",
                "description": "packets sent per edge 'src.port>tgt.port'",
                "additionalProperties": _INT,
            },
        }
    ),
    "Execution": _obj(
        {
            "id": _STR,
            "state": {"enum": ["queued", "running", "completed", "failed", "cancelled"]},
            "reason": _NSTR,
            "created": _NUM,
            "started": _NNUM,
            "finished": _NNUM,
            "timeout": _NUM,
            "nodes": {"type": "array", "items": _STR},
            "summary": {"oneOf": [{"type": "null"}, _ref("Summary")]},
            "counts": _ref("Counts"),
            "trace_id": {
                **_NSTR,
                "description": "the execution's OpenTelemetry trace id (32 hex digits), "
                "null when it is not traced",
            },
        },
        additionalProperties=False,
    ),
    "ExecutionPage": _obj(
        {"items": {"type": "array", "items": _ref("Execution")}, "next_cursor": _NSTR}
    ),
    "TemplateList": _obj(
        {"templates": {"type": "array", "items": _obj({"id": _STR, "owner": _NSTR})}}
    ),
    "Template": _obj(
        {
            "id": _STR,
            "owner": _NSTR,
            "component": _STR,
            "inports": {"type": "array", "items": _STR},
            "outports": {"type": "array", "items": _STR},
            "inport_types": {"type": "object"},
            "outport_types": {"type": "object"},
            "await_all_inports": {"type": "boolean"},
            "config": {"type": "object"},
            "doc": _STR,
        }
    ),
    "Pack": _obj(
        {
            "name": _STR,
            "version": _STR,
            "signer": _NSTR,
            "templates": {"type": "array", "items": _STR},
        }
    ),
    "Event": {
        "type": "object",
        "description": "one WebSocket text frame",
        "required": ["_type"],
        "properties": {
            "_type": {
                "enum": [
                    "NetworkStarted",
                    "ActorStarted",
                    "ActorCompleted",
                    "ActorFailed",
                    "MessageSent",
                    "NetworkIdle",
                    "NetworkShutdown",
                    "EventsDropped",
                    "Completed",
                    "Failed",
                    "Cancelled",
                ]
            },
            "timestamp": {"type": "integer", "description": "ms since the epoch"},
            "actorId": _STR,
            "component": _STR,
            "duration": {**_NUM, "description": "seconds"},
            "outputSize": {**_INT, "description": "packets the tick sent"},
            "error": _STR,
            "fromActor": _STR,
            "fromPort": _STR,
            "toActor": _STR,
            "toPort": _STR,
            "size": {**_INT, "description": "payload bytes (estimated for objects)"},
            "message": {"description": "the payload, when at most 256 bytes"},
            "truncated": {"type": "boolean"},
            "count": {**_INT, "description": "EventsDropped: events this client lost here"},
            "ticks": _INT,
            "failures": _INT,
            "events": {**_INT, "description": "terminal events: events published before it"},
            "state": _STR,
            "reason": _NSTR,
            "elapsed": _NUM,
        },
    },
}


def _json(schema: str) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": _ref(schema)}}}


def _answer(code: str, schema: str, what: str) -> dict[str, Any]:
    return {code: {"description": what, **_json(schema)}}


_ERR = {
    **_answer("401", "Error", "missing or wrong bearer token"),
}
_ID = [{"name": "id", "in": "path", "required": True, "schema": _STR}]

_PATHS: dict[str, Any] = {
    "/api/v1/executions": {
        "post": {
            "summary": "Run a graph",
            "requestBody": {"required": True, **_json("ExecutionRequest")},
            "responses": {
                **_answer("201", "Execution", "created; it runs (or is queued)"),
                **_answer("400", "Error", "the body is not JSON"),
                **_ERR,
                **_answer("413", "Error", "the body is over the server's limit"),
                **_answer("422", "Error", "a graph, initial packet or pack that cannot run"),
                **_answer("429", "Error", "the server runs and queues all it may"),
            },
        },
        "get": {
            "summary": "List executions, newest first",
            "parameters": [
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
                },
                {
                    "name": "cursor",
                    "in": "query",
                    "schema": _STR,
                    "description": "next_cursor of the previous page",
                },
            ],
            "responses": {
                **_answer("200", "ExecutionPage", "one page"),
                **_answer("400", "Error", "a bad limit or cursor"),
                **_ERR,
            },
        },
    },
    "/api/v1/executions/{id}": {
        "parameters": _ID,
        "get": {
            "summary": "An execution's state, summary and counts",
            "responses": {
                **_answer("200", "Execution", "the execution"),
                **_ERR,
                **_answer("404", "Error", "no such execution"),
            },
        },
        "delete": {
            "summary": "Cancel an execution (it stops within a poll and the running tick)",
            "responses": {
                **_answer("200", "Execution", "the execution, cancelled unless it had ended"),
                **_ERR,
                **_answer("404", "Error", "no such execution"),
            },
        },
    },
    "/api/v1/executions/{id}/events": {
        "parameters": [
            *_ID,
            {
                "name": "batch",
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 1},
            },
        ],
        "get": {
            "summary": "WebSocket: the execution's events, one JSON object (Event) per frame",
            "description": "Upgrade to a WebSocket. Token: the Authorization header or "
            "?access_token=. Frames: the first events kept, EventsDropped where this client "
            "lost some, then live events and a terminal Completed/Failed/Cancelled; then the "
            "server closes with 1000. ?batch=N (1 to 1000, default 1): each frame is a JSON "
            "array of up to N events instead, for clients that read busy graphs. Unknown "
            "execution: close 4404; bad token: close 4401; bad batch: close 4400.",
            "responses": {"101": {"description": "switching protocols", **_json("Event")}},
        },
    },
    "/api/v1/templates": {
        "get": {
            "summary": "Every template id and who provides it",
            "responses": {**_answer("200", "TemplateList", "the catalog"), **_ERR},
        }
    },
    "/api/v1/templates/{id}": {
        "parameters": _ID,
        "get": {
            "summary": "One template: ports, port types, config, documentation",
            "responses": {
                **_answer("200", "Template", "the template"),
                **_ERR,
                **_answer("404", "Error", "no such template"),
            },
        },
    },
    "/api/v1/packs": {
        "post": {
            "summary": "Load a pack: upload a .rflpack, or name one to fetch from the registry",
            "requestBody": {
                "required": True,
                "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                    "application/json": {
                        "schema": {
                            "oneOf": [
                                _obj(
                                    {"registry": _STR, "pack": _STR},
                                    ["pack"],
                                    additionalProperties=False,
                                    description="a pack from a registry: 'namespace/name@range'"
                                    " from 'registry' (default: the server's --registry)",
                                ),
                                _obj(
                                    {"name": _STR},
                                    additionalProperties=False,
                                    description="a pack from the server's --registry",
                                ),
                            ]
                        }
                    },
                },
            },
            "responses": {
                **_answer("201", "Pack", "verified against the trust store and loaded"),
                **_ERR,
                **_answer("413", "Error", "the upload is over the server's limit"),
                **_answer("404", "Error", "the registry has no such pack or version"),
                **_answer("422", "Error", "unsigned, untrusted, tampered or malformed"),
                **_answer("502", "Error", "the registry could not be reached or refused us"),
            },
        }
    },
}


def openapi_document() -> dict[str, Any]:
    """A fresh copy of the API description."""
    return copy.deepcopy(
        {
            "openapi": "3.1.0",
            "info": {
                "title": "Reflow execution server",
                "version": "1",
                "description": "Run FBP graphs as executions; watch their events over "
                "WebSocket. Every /api/ route takes 'Authorization: Bearer <token>'.",
            },
            "paths": _PATHS,
            "components": {
                "schemas": _SCHEMAS,
                "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            },
            "security": [{"bearer": []}],
        }
    )

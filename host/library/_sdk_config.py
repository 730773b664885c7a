"""Config keys, types and defaults of the offbit-reflow catalog templates, by template id:
what :func:`reflow.library.describe_template` shows under ``config`` (each template's
docstring says what the keys mean). Keys beyond the catalog's are this library's own."""

from __future__ import annotations

from typing import Any

__all__ = ["SDK_CONFIG", "with_sdk_config"]

SDK_CONFIG: dict[str, dict[str, dict[str, Any]]] = {
    "tpl_bytes_to_stream": {
        "chunkSize": {"type": "integer", "default": 65536},
        "contentType": {"type": "string", "default": None},
    },
    "tpl_collect": {
        "count": {"type": "integer", "default": 10},
    },
    "tpl_data_emit": {
        "oneshot": {"type": "boolean", "default": True},
        "data": {"type": None, "default": None},
        "port": {"type": None, "default": None},
    },
    "tpl_data_operations": {
        "dataOperations": {"type": "array", "default": None},
    },
    "tpl_data_transformer": {
        "transform_type": {"type": "string", "default": "passthrough"},
        "operation": {"type": "string", "default": "passthrough"},
        "field_name": {"type": "string", "default": None},
        "field": {"type": "string", "default": None},
        "field_value": {"type": None, "default": None},
        "value": {"type": None, "default": None},
        "template": {"type": "string", "default": "${value}"},
    },
    "tpl_file_load": {
        "path": {"type": "string", "default": None},
    },
    "tpl_file_save": {
        "path": {"type": "string", "default": None},
        "createDirs": {"type": "boolean", "default": True},
    },
    "tpl_filter": {
        "condition": {"type": "string", "default": "truthy"},
        "field": {"type": "string", "default": ""},
        "value": {"type": "string", "default": None},
    },
    "tpl_fsm": {
        "states": {"type": None, "default": {}},
        "guards": {"type": None, "default": {}},
        "initial": {"type": "string", "default": "initial"},
        "context": {"type": None, "default": None},
        "dt": {"type": "number", "default": 0.03333333333333333},
    },
    "tpl_gate": {
        "invert": {"type": "boolean", "default": False},
    },
    "tpl_generator": {
        "type": {"type": "string", "default": "range"},
        "start": {"type": "number", "default": 0.0},
        "end": {"type": "number", "default": None},
        "step": {"type": "number", "default": 1.0},
        "count": {"type": "integer", "default": None},
        "value": {"type": None, "default": None},
        "template": {"type": None, "default": {"index": 0}},
        "width": {"type": "integer", "default": 4},
        "height": {"type": "integer", "default": 4},
        "depth": {"type": "integer", "default": 1},
        "spacing": {"type": "number", "default": 1.0},
        "center": {"type": "boolean", "default": True},
    },
    "tpl_hit_test": {
        "source": {"type": "string", "default": "s2"},
        "target": {"type": "string", "default": "s0"},
        "target_width": {"type": "number", "default": 100.0},
        "target_height": {"type": "number", "default": 100.0},
        "padding": {"type": "number", "default": 8.0},
    },
    "tpl_http_request": {
        "url": {"type": "string", "default": None},
        "method": {"type": "string", "default": "GET"},
        "timeout": {"type": "integer", "default": 30000},
        "headers": {"type": "object", "default": None},
        "body": {"type": None, "default": None},
    },
    "tpl_if_branch": {
        "decisionRules": {"type": "object", "default": None},
        "condition_type": {"type": "string", "default": "equals"},
        "condition_value": {"type": None, "default": None},
        "value": {"type": None, "default": None},
        "condition_field": {"type": "string", "default": None},
        "field": {"type": "string", "default": None},
    },
    "tpl_json_parser": {
        "path": {"type": "string", "default": None},
    },
    "tpl_loop": {},
    "tpl_map": {
        "operation": {"type": "string", "default": "identity"},
        "field": {"type": "string", "default": ""},
    },
    "tpl_math_absolute": {
        "precision": {"type": "integer", "default": 10},
    },
    "tpl_math_add": {
        "precision": {"type": "integer", "default": 10},
    },
    "tpl_math_average": {
        "precision": {"type": "integer", "default": 10},
    },
    "tpl_math_clamp": {
        "min": {"type": "number", "default": 0.0},
        "max": {"type": "number", "default": 1.0},
        "precision": {"type": "integer", "default": 10},
    },
    "tpl_math_divide": {
        "precision": {"type": "integer", "default": 10},
    },
    "tpl_math_expression": {
        "expression": {"type": "string", "default": "0"},
        "precision": {"type": "integer", "default": 10},
    },
    "tpl_math_min_max": {
        "precision": {"type": "integer", "default": 10},
    },
    "tpl_math_modulo": {
        "precision": {"type": "integer", "default": 10},
    },
    "tpl_math_multiply": {
        "precision": {"type": "integer", "default": 10},
    },
    "tpl_math_power": {
        "precision": {"type": "integer", "default": 10},
    },
    "tpl_math_random": {
        "min": {"type": "number", "default": 0.0},
        "max": {"type": "number", "default": 1.0},
        "precision": {"type": "integer", "default": 10},
    },
    "tpl_math_round": {
        "mode": {"type": "string", "default": "round"},
        "precision": {"type": "integer", "default": 10},
    },
    "tpl_math_sqrt": {
        "precision": {"type": "integer", "default": 10},
    },
    "tpl_math_statistics": {
        "precision": {"type": "integer", "default": 10},
    },
    "tpl_math_subtract": {
        "precision": {"type": "integer", "default": 10},
    },
    "tpl_math_sum": {
        "precision": {"type": "integer", "default": 10},
    },
    "tpl_merge": {
        "mode": {"type": "string", "default": "object"},
    },
    "tpl_passthrough": {},
    "tpl_reduce": {
        "operation": {"type": "string", "default": "sum"},
    },
    "tpl_regex_matcher": {
        "pattern": {"type": "string", "default": ".*"},
        "global": {"type": "boolean", "default": False},
    },
    "tpl_rules_engine": {
        "rules": {"type": "object", "default": None},
        "propertyRules": {"type": "object", "default": None},
    },
    "tpl_server_request": {
        "body": {"type": None, "default": None},
        "headers": {"type": None, "default": None},
        "query": {"type": None, "default": None},
        "params": {"type": None, "default": None},
        "method": {"type": "string", "default": "POST"},
        "path": {"type": "string", "default": "/webhook"},
    },
    "tpl_server_response": {
        "statusCode": {"type": "integer", "default": 200},
        "contentType": {"type": "string", "default": "application/json"},
    },
    "tpl_signal": {
        "event": {"type": "string", "default": "signal"},
        "data": {"type": None, "default": {}},
    },
    "tpl_split": {},
    "tpl_stream_buffer": {
        "bufferBytes": {"type": "integer", "default": 65536},
    },
    "tpl_stream_stats": {},
    "tpl_stream_tee": {
        "bufferSize": {"type": "integer", "default": 64},
    },
    "tpl_stream_throttle": {
        "delayMs": {"type": "integer", "default": 10},
        "bytesPerSecond": {"type": "integer", "default": None},
    },
    "tpl_stream_to_bytes": {},
    "tpl_subscriber": {
        "event": {"type": "string", "default": "*"},
    },
    "tpl_switch": {
        "switch_field": {"type": "string", "default": None},
        "field": {"type": "string", "default": None},
        "case1_value": {"type": None, "default": None},
        "case2_value": {"type": None, "default": None},
        "case3_value": {"type": None, "default": None},
        "case4_value": {"type": None, "default": None},
    },
}


def with_sdk_config(table: dict[str, Any]) -> dict[str, Any]:
    """``table`` ({id: template class}) with each class's ``config_schema`` set from the
    catalog (for the ids it has)."""
    for tid, cls in table.items():
        if tid in SDK_CONFIG:
            cls.config_schema = SDK_CONFIG[tid]
    return table

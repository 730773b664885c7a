"""The built-in native actor library: flow control, math, data, time, HTTP, streams, image
and audio templates, available as ``reflow.template_actor("tpl_…")`` with no setup.

The host registers :class:`BuiltinLibraryPlugin` with its plugin manager, so the library
reaches the catalog through the same ``reflow_templates`` hook as any third-party plugin.
Importing this package is cheap: numpy and httpx are imported when the templates are first
built (the first time the catalog is asked), not before.

Every template class documents its ports and config in its docstring;
:func:`describe_template` returns that with the declared ports and types.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..hookspecs import hookimpl

if TYPE_CHECKING:
    from .._core._actor import Actor
    from ._base import LibraryActor

__all__ = [
    "BuiltinLibraryPlugin",
    "Expression",
    "ExpressionError",
    "builtin_templates",
    "decode_audio",
    "decode_image",
    "describe_template",
    "encode_audio",
    "encode_image",
]

log = logging.getLogger("reflow.library")

#: Families and the modules that implement them, in catalog order.
_FAMILIES = (
    ("_flow", "FLOW_TEMPLATES"),
    ("_math", "MATH_TEMPLATES"),
    ("_data", "DATA_TEMPLATES"),
    ("_text", "TEXT_TEMPLATES"),
    ("_time", "TIME_TEMPLATES"),
    ("_http", "HTTP_TEMPLATES"),
    ("_stream_ops", "STREAM_TEMPLATES"),
    ("_image", "IMAGE_TEMPLATES"),
    ("_audio", "AUDIO_TEMPLATES"),
    ("_sdk_flow", "SDK_FLOW_TEMPLATES"),
    ("_sdk_data", "SDK_DATA_TEMPLATES"),
    ("_sdk_data", "SDK_TEXT_TEMPLATES"),
    ("_sdk_stream", "SDK_STREAM_TEMPLATES"),
    ("_sdk_io", "SDK_IO_TEMPLATES"),
    ("_vector", "VECTOR_TEMPLATES"),
    ("_image_streams", "IMAGE_STREAM_TEMPLATES"),
    ("_audio_streams", "AUDIO_STREAM_TEMPLATES"),
    ("_canvas", "CANVAS_TEMPLATES"),
    ("_procedural", "PROCEDURAL_TEMPLATES"),
    ("_video", "VIDEO_TEMPLATES"),
    ("_gpu_image", "GPU_IMAGE_TEMPLATES"),
    ("_gpu_stats", "GPU_STATS_TEMPLATES"),
    ("_gpu_twins", "GPU_TWIN_TEMPLATES"),
    ("_gpu_filters", "GPU_FILTER_TEMPLATES"),
    ("_gpu_audio", "GPU_AUDIO_TEMPLATES"),
    ("_gpu_array", "GPU_ARRAY_TEMPLATES"),
)

_classes: dict[str, type[LibraryActor]] | None = None


def _template_classes() -> dict[str, type[LibraryActor]]:
    global _classes
    if _classes is None:
        import importlib

        classes: dict[str, type[LibraryActor]] = {}
        for module_name, table in _FAMILIES:
            try:
                module = importlib.import_module(f"{__name__}.{module_name}")
            except ImportError as exc:  # e.g. numpy missing: the rest of the library works
                log.warning("built-in templates of %s unavailable: %s", module_name, exc)
                continue
            classes.update(getattr(module, table))
        _classes = classes
    return _classes


def builtin_templates() -> dict[str, Actor]:
    """A fresh ``{template_id: Actor}`` of every built-in template (one instance each; the
    templates keep per-node state in pools, so an instance serves any number of nodes)."""
    return {tid: cls() for tid, cls in _template_classes().items()}


def describe_template(template_id: str) -> dict[str, Any]:
    """Ports, port types and documentation of a built-in template, or of any catalog template
    (an API-service operation describes itself; another actor by its declared ports);
    :class:`~reflow.UnknownComponentError` (a ``KeyError``) naming an unknown id."""
    classes = _template_classes()
    if template_id in classes:
        return classes[template_id].describe()
    from .._core._catalog import lookup_template, template_list
    from .._errors import UnknownComponentError

    actor = lookup_template(template_id) if isinstance(template_id, str) else None
    if actor is None:
        raise UnknownComponentError(str(template_id), template_list())
    describe = getattr(actor, "describe", None)
    if callable(describe):
        return dict(describe())
    # A guest's template (wasm, native, extism) carries its pack's description and schema.
    spec = getattr(actor, "template", None)
    schema = getattr(spec, "config_schema", None)
    properties = schema.get("properties") if isinstance(schema, dict) else None
    return {
        "component": actor.component,
        "inports": list(actor.inports),
        "outports": list(actor.outports),
        "inport_types": dict(getattr(actor, "inport_types", None) or {}),
        "outport_types": dict(getattr(actor, "outport_types", None) or {}),
        "await_all_inports": bool(actor.await_all_inports),
        "config": dict(properties) if isinstance(properties, dict) else {},
        "doc": getattr(spec, "description", None) or inspect.cleandoc(type(actor).__doc__ or ""),
    }


class BuiltinLibraryPlugin:
    """Contributes the built-in library to the catalog through ``reflow_templates``."""

    @hookimpl
    def reflow_templates(self) -> Mapping[str, Actor]:
        return builtin_templates()


_LAZY = {
    "Expression": "._expr",
    "ExpressionError": "._expr",
    "decode_audio": "._media",
    "decode_image": "._media",
    "encode_audio": "._media",
    "encode_image": "._media",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value

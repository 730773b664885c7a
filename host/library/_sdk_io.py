"""File and webhook templates of the offbit-reflow standard catalog: ``tpl_file_load``,
``tpl_file_save``, ``tpl_server_request``, ``tpl_server_response``.

File access is bounded: a load refuses anything but a regular file and anything larger than
``maxBytes`` before it reads a byte (so ``/dev/zero`` or a FIFO cannot hang or fill memory);
every failure names the path. OS errors are translated here into failed ticks.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from .._core._actor import ActorContext
from .._core._messages import Message
from .._errors import ActorError
from ._base import LibraryActor, config_bool, config_int
from ._sdk_config import with_sdk_config
from ._sdk_support import payload, reject

__all__ = ["SDK_IO_TEMPLATES"]

_MIME = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".wav": "audio/wav",
    ".mp3": "audio/mpeg",
    ".json": "application/json",
    ".txt": "text/plain",
}


def _path(ctx: ActorContext) -> str:
    path = ctx.config.get("path")
    if path is None:
        raise reject(ctx, "config 'path' is required (the file to use)")
    if not isinstance(path, str) or not path or "\x00" in path:
        raise reject(ctx, f"config 'path' must be a file path, got {path!r}")
    return path


def _os_error(ctx: ActorContext, what: str, path: str, exc: OSError) -> ActorError:
    return reject(
        ctx, f"cannot {what} {path!r} (config 'path'): {exc.strerror or type(exc).__name__}"
    )


class FileLoad(LibraryActor):
    """Reads a file into Bytes when triggered.

    Ports: in ``trigger`` (any) → out ``output`` (Bytes), ``metadata`` (Object ``{path,
    size, mimeType}``, the type by extension), ``error`` (Error, when the file cannot be
    read; the tick fails too, naming the path). Config: ``path`` (string, required),
    ``maxBytes`` (int, default 64 MiB: a larger file is refused before it is read).
    """

    component = "tpl_file_load"
    inports = ["trigger"]
    outports = ["output", "metadata", "error"]
    outport_types = {"output": "Bytes", "metadata": "Object", "error": "Error"}
    execution = "worker"  # file reads release the GIL; a slow disk holds no scheduler

    def run(self, ctx: ActorContext) -> None:
        path = _path(ctx)
        limit = config_int(ctx, "maxBytes", 64 << 20, minimum=0)
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
        try:
            fd = os.open(path, flags)
        except OSError as exc:
            raise _os_error(ctx, "open", path, exc) from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise reject(ctx, f"config 'path' {path!r} is not a regular file")
            if info.st_size > limit:
                raise reject(
                    ctx,
                    f"file {path!r} is {info.st_size} bytes, larger than config "
                    f"'maxBytes' ({limit})",
                )
            with os.fdopen(fd, "rb", closefd=False) as f:
                data = f.read(limit + 1)
        except OSError as exc:
            raise _os_error(ctx, "read", path, exc) from None
        finally:
            os.close(fd)
        if len(data) > limit:  # grew while being read
            raise reject(ctx, f"file {path!r} is larger than config 'maxBytes' ({limit})")
        mime = _MIME.get(Path(path).suffix.lower(), "application/octet-stream")
        ctx.done(
            {
                "output": Message.bytes(data),
                "metadata": Message.object({"path": path, "size": len(data), "mimeType": mime}),
            }
        )


class FileSave(LibraryActor):
    """Writes each packet to a file (replacing it).

    Ports: in ``input`` (Bytes as they are; a String as UTF-8; anything else as indented
    JSON of its payload) → out ``path`` (String, the path written), ``metadata`` (Object
    ``{path, size, written}``), ``error`` (Error, when the file cannot be written; the tick
    fails too, naming the path). Config: ``path`` (string, required), ``createDirs`` (bool,
    default true: create missing parent folders).
    """

    component = "tpl_file_save"
    inports = ["input"]
    outports = ["path", "metadata", "error"]
    outport_types = {"path": "String", "metadata": "Object", "error": "Error"}
    execution = "worker"

    def run(self, ctx: ActorContext) -> None:
        path = _path(ctx)
        create = config_bool(ctx, "createDirs", True)
        msg = ctx.inputs["input"]
        if msg["type"] == "Bytes":
            data = bytes(msg["data"])
        elif msg["type"] == "String":
            data = msg["data"].encode()
        else:
            data = json.dumps(payload(msg), indent=2, ensure_ascii=False).encode()
        target = Path(path)
        try:
            if create:
                target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_dir():
                raise reject(ctx, f"config 'path' {path!r} is a folder, not a file")
            with open(target, "wb") as f:
                f.write(data)
        except OSError as exc:
            raise _os_error(ctx, "write", path, exc) from None
        ctx.done(
            {
                "path": Message.string(path),
                "metadata": Message.object({"path": path, "size": len(data), "written": True}),
            }
        )


def _object_config(ctx: ActorContext, key: str) -> Any:
    value = ctx.config.get(key)
    if value is not None and not isinstance(value, dict):
        raise ActorError(f"config {key!r} must be an object, got {value!r}")
    return value


class ServerRequest(LibraryActor):
    """The entry of a webhook-triggered graph: sends the request the server put in its
    config.

    Ports: in ``trigger`` (any; without a connection the node runs once when the graph
    starts) → out ``body`` (the request body: an Object, or a message of its kind; ``{}``
    when absent), ``headers``, ``params`` (Objects, when configured; ``params`` from
    ``query`` or else ``params``), ``method`` (String), ``url`` (String, config ``path``).
    Config: ``body``, ``headers``, ``query``, ``params``, ``method`` (default ``"POST"``),
    ``path`` (default ``"/webhook"``).
    """

    component = "tpl_server_request"
    inports: list[str] = []
    outports = ["body", "headers", "params", "method", "url"]
    outport_types = {"headers": "Object", "params": "Object", "method": "String", "url": "String"}

    def run(self, ctx: ActorContext) -> None:
        body = ctx.config.get("body")
        headers = _object_config(ctx, "headers")
        params = _object_config(ctx, "query")
        if params is None:
            params = _object_config(ctx, "params")
        method, path = ctx.config.get("method", "POST"), ctx.config.get("path", "/webhook")
        for key, value in (("method", method), ("path", path)):
            if not isinstance(value, str):
                raise ActorError(f"config {key!r} must be a string, got {value!r}")
        out: dict[str, Message] = {
            "body": Message.object(body)
            if isinstance(body, dict)
            else Message.object({})
            if body is None
            else Message.from_value(body)
        }
        if headers is not None:
            out["headers"] = Message.object(headers)
        if params is not None:
            out["params"] = Message.object(params)
        out["method"] = Message.string(method)
        out["url"] = Message.string(path)
        ctx.done(out)


class ServerResponse(LibraryActor):
    """Builds the HTTP response for the webhook caller.

    Ports: in ``body`` (any: a String, number, Boolean or Object as it is; other kinds as
    null; ``{}`` when absent), ``status`` (Integer 100-599: overrides config
    ``statusCode``), ``headers`` (Object of header strings, added as ``headers``) → out
    ``response`` (Object ``{statusCode, contentType, body[, headers]}``). Config:
    ``statusCode`` (int 100-599, default 200), ``contentType`` (string, default
    ``"application/json"``).
    """

    component = "tpl_server_response"
    inports = ["body", "status", "headers"]
    outports = ["response"]
    outport_types = {"response": "Object"}

    def run(self, ctx: ActorContext) -> None:
        status = config_int(ctx, "statusCode", 200, minimum=100, maximum=599)
        content_type = ctx.config.get("contentType", "application/json")
        if not isinstance(content_type, str):
            raise ActorError(f"config 'contentType' must be a string, got {content_type!r}")
        given = ctx.inputs.get("status")
        if given is not None:
            if given["type"] != "Integer" or not 100 <= given["data"] <= 599:
                raise ActorError(
                    f"in-port 'status': expected an Integer HTTP status "
                    f"100-599, got {given['type']} {given.get('data')!r}"
                )
            status = given["data"]
        msg = ctx.inputs.get("body")
        if msg is None:
            body: Any = {}
        elif msg["type"] in ("String", "Object", "Integer", "Float", "Boolean"):
            body = msg["data"]
        else:
            body = None
        response: dict[str, Any] = {"statusCode": status, "contentType": content_type, "body": body}
        headers = ctx.inputs.get("headers")
        if headers is not None:
            if headers["type"] != "Object" or not all(
                isinstance(v, str) for v in headers["data"].values()
            ):
                raise ActorError("in-port 'headers': expected an Object of header strings")
            response["headers"] = dict(headers["data"])
        ctx.done({"response": Message.object(response)})


SDK_IO_TEMPLATES: dict[str, type[LibraryActor]] = with_sdk_config(
    {cls.component: cls for cls in (FileLoad, FileSave, ServerRequest, ServerResponse)}
)

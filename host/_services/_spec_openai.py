"""A plausible OpenAI chat-completions answer for the local spec server (tests).

``server.answers["create_chat_completion"] = ChatAnswer()`` makes a
:func:`~._spec_server.spec_server` of the OpenAI description answer chat completions the way
the service does: with ``stream: true`` a ``text/event-stream`` of ``chat.completion.chunk``
events, one token of content each (``delay`` seconds apart), then ``data: [DONE]``; without
it one ``chat.completion`` object. The text is made from the request (the system prompt's
first words and the user message), so each caller can tell its answer apart.
:attr:`ChatAnswer.streams` records each stream's first and last token times
(``time.monotonic()``), for tests that measure whether callers overlapped.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.responses import JSONResponse, Response, StreamingResponse

__all__ = ["ChatAnswer", "StreamRecord"]


@dataclass
class StreamRecord:
    """One streamed answer: who asked (the system prompt's first words), its tokens, and
    when the first and the last token left the server."""

    caller: str
    tokens: list[str]
    first: float = 0.0
    last: float = 0.0


@dataclass
class ChatAnswer:
    """The ``answers`` entry for ``create_chat_completion``."""

    delay: float = 0.02
    words: int = 12
    streams: list[StreamRecord] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=itertools.count)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def tokens(self, body: dict[str, Any]) -> tuple[str, list[str]]:
        messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
        system = next((str(m.get("content", "")) for m in messages if m["role"] == "system"), "")
        user = next((str(m.get("content", "")) for m in messages if m["role"] == "user"), "")
        caller = " ".join(system.split()[:4]) or "assistant"
        subject = " ".join(user.split()[:6]) or "nothing"
        words = [f"({caller})", "on", *subject.split()]
        while len(words) < self.words:
            words += ["point", str(len(words))]
        words = words[: self.words]
        return caller, [w if i == 0 else " " + w for i, w in enumerate(words)]

    def __call__(self, values: dict[str, Any]) -> Response:
        body = values.get("body") if isinstance(values.get("body"), dict) else {}
        assert isinstance(body, dict)
        model = str(body.get("model", "model"))
        caller, tokens = self.tokens(body)
        with self._lock:
            n = next(self._ids)
        ident, created = f"chatcmpl-{n}", int(time.time())
        if not body.get("stream"):
            return JSONResponse(
                {
                    "id": ident,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "".join(tokens)},
                            "finish_reason": "stop",
                            "logprobs": None,
                        }
                    ],
                }
            )
        record = StreamRecord(caller, tokens)
        with self._lock:
            self.streams.append(record)

        def chunk(delta: dict[str, Any], finish: str | None) -> bytes:
            event = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            return f"data: {json.dumps(event)}\n\n".encode()

        async def events() -> Any:
            yield chunk({"role": "assistant", "content": ""}, None)
            for i, tok in enumerate(tokens):
                if i:
                    await asyncio.sleep(self.delay)
                now = time.monotonic()
                record.first = record.first or now
                record.last = now
                yield chunk({"content": tok}, None)
            yield chunk({}, "stop")
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), 200, media_type="text/event-stream")

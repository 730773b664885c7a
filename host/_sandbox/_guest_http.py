"""The HTTP a guest's ``http_request`` does once its grant is checked: one request through
httpx, bounded in time in all (not only per read) and in response size; transport errors come
back to the guest as ``{"status": 0, "error": ...}``, never as an exception.
"""

from __future__ import annotations

import json
import time
from typing import Any

from ._guest_limits import GuestGrants


def http_fetch(
    method: str, url: str, headers: dict[str, str], body: Any, grants: GuestGrants
) -> bytes:
    """Do one request through httpx; transport errors become ``{"status": 0, "error": ...}``."""
    import httpx

    content = body.encode("utf-8") if isinstance(body, str) else None
    try:
        with (
            httpx.Client(timeout=grants.http_timeout, follow_redirects=False) as client,
            client.stream(method, url, headers=headers, content=content) as resp,
        ):
            chunks: list[bytes] = []
            size = 0
            # httpx's timeout bounds each read; a server dripping bytes must not hold the
            # guest past http_timeout in all
            deadline = time.monotonic() + grants.http_timeout
            for chunk in resp.iter_bytes():
                if time.monotonic() > deadline:
                    raise httpx.TimeoutException(
                        f"response not complete within {grants.http_timeout} s"
                    )
                size += len(chunk)
                if size > grants.http_max_response:
                    raise httpx.HTTPError(f"response larger than {grants.http_max_response} bytes")
                chunks.append(chunk)
            data = b"".join(chunks)
            out = {
                "status": resp.status_code,
                "headers": dict(resp.headers),
                "body": data.decode("utf-8", "replace"),
            }
    except httpx.HTTPError as exc:
        out = {"status": 0, "error": f"{type(exc).__name__}: {exc}"}
    return json.dumps(out, ensure_ascii=False).encode("utf-8")

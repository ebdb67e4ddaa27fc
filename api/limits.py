"""Request size limit as pure ASGI middleware: 413 when the body is too big, however it is sent.

A declared ``Content-Length`` over the limit is refused before anything is read. A body without one
(chunked transfer) is read here, up to the limit, before the app sees it: past the limit the answer is
413 at once (not a 400 from a body parser that failed half-way), and within it the app gets the
buffered body. Bodies are small (``service.max_request_bytes``, 2 MB by default), so buffering is cheap.
"""

from __future__ import annotations

import json
from typing import Any

from api.errors import RequestTooLarge, error_body


class BodySizeLimit:
    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    def _error(self) -> RequestTooLarge:
        return RequestTooLarge(
            f"the request body is larger than {self.max_bytes} bytes",
            hint="send fewer questions per batch, or raise service.max_request_bytes",
        )

    async def _reject(self, send: Any) -> None:
        body = json.dumps(error_body(self._error())).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = None
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = None
        if declared is not None:
            if declared > self.max_bytes:
                await self._reject(send)
                return
            await self.app(scope, receive, send)  # the server never passes more than it declared
            return
        # No declared length (chunked): buffer up to the limit.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._reject(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = [False]

        async def replay() -> dict[str, Any]:
            if not sent[0]:
                sent[0] = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

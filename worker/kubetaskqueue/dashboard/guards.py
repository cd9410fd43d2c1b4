"""ASGI guards in front of every route: the Host check and the request body cap.

- ``TrustedHostMiddleware`` (Starlette's) answers a Host header that is not allowed with
  400 "Invalid host header" and nothing else, on every path: a page on another site that
  reaches the dashboard through DNS rebinding sends its own name as Host.
- ``BodyLimit`` refuses a body above the cap with 413 before reading it when
  Content-Length says so, and stops reading a chunked one at the cap: nothing ever
  buffers more than the cap.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(Exception):
    """Raised from ``receive`` once a body passes the cap; ``BodyLimit`` answers 413."""


class BodyLimit:
    """Caps request bodies at ``max_bytes``: 413 without reading more than that."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> JSONResponse:
        # Connection: close, as the rest of the body is left unread on the socket.
        return JSONResponse({"error": f"the request body is larger than {self.max_bytes} bytes"},
                            413, headers={"Connection": "close"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # (A malformed Content-Length never gets here: the server refuses it. Whatever it
        # says, capped_receive still counts what actually arrives.)
        declared = Headers(scope=scope).get("content-length", "").strip()
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large()(scope, receive, send)
            return

        received = 0
        response_started = False

        async def capped_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def watched_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, capped_receive, watched_send)
        except BodyTooLarge:
            if response_started:
                raise
            await self._too_large()(scope, receive, send)

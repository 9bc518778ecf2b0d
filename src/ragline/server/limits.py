"""Request bodies, bounded before they are read: an upload to the upload limit (plus its
multipart framing), any other body to JSON_LIMIT. A body over its limit gets the API's own JSON
413, whether it says its length (refused before a byte is read) or streams without one (cut
off where it passes the limit). Once a body is read, the middleware listens for the client
going away and sets `scope[GONE]`, so that a plain (not streamed) route can cancel its work:
Starlette's `request.is_disconnected()` never sees it behind BaseHTTPMiddleware.

    app = BodyLimit(app, upload_bytes=32 * 2**20)
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ragline.server.errors import error_body
from ragline.server.uploads import too_large

GONE = "ragline.client_gone"  # the scope key of an asyncio.Event set when the client leaves
JSON_LIMIT = 8 * 2**20       # /v1/translate's 100 segments of 4,000 characters fit many times
FRAMING = 1 << 20            # multipart boundaries and headers around an uploaded file
UPLOAD_PATH = "/v1/documents"


class BodyLimit:
    def __init__(self, app: ASGIApp, upload_bytes: int) -> None:
        self.app = app
        self.upload_bytes = upload_bytes

    def limit(self, scope: Scope) -> tuple[int, str]:
        """The byte limit of a request's body and what to say when it is passed."""
        if scope["path"] == UPLOAD_PATH:
            return self.upload_bytes + FRAMING, too_large(self.upload_bytes)
        return JSON_LIMIT, (f"the request body is larger than {JSON_LIMIT / 2**20:g} MB; send "
                            "fewer or shorter texts per request")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, message = self.limit(scope)
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > limit:
            await _too_large(send, message)
            return
        received = 0
        refused = False
        # set when the client goes away: once the body is read, this alone listens for it
        gone = scope[GONE] = asyncio.Event()
        watcher: asyncio.Task[None] | None = None

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        async def counted() -> Message:
            nonlocal received, refused, watcher
            if refused:
                return {"type": "http.disconnect"}
            if watcher is not None:  # the body is read: the next message is the disconnect
                await gone.wait()
                return {"type": "http.disconnect"}
            msg = await receive()
            if msg["type"] == "http.disconnect":
                gone.set()
            elif msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > limit:
                    refused = True
                    await _too_large(send, message)
                    return {"type": "http.disconnect"}  # the route stops reading
                if not msg.get("more_body", False):
                    watcher = asyncio.ensure_future(watch())
            return msg

        async def guarded(msg: Message) -> None:
            if not refused:  # the 413 is the response; what the route still sends is dropped
                await send(msg)

        try:
            await self.app(scope, counted, guarded)
        finally:
            if watcher is not None:
                watcher.cancel()


async def _too_large(send: Send, message: str) -> None:
    body = json.dumps(error_body(message, "payload_too_large_error", 413)).encode()
    headers: list[Any] = [(b"content-type", b"application/json"),
                          (b"content-length", str(len(body)).encode()),
                          (b"connection", b"close")]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})

"""An ASGI guard in front of the page's server: request size, and which files are served.

Two things Gradio does not do for us:

* A request body is parsed whole on the server's event loop before any handler
  runs, so a 20 MB request stalls every page. The guard refuses a POST whose
  body is larger than ``MAX_REQUEST_KB`` allows (with room for the JSON
  envelope) from its ``Content-Length``, before it is read; uploads (Gradio's
  ``/upload`` route, limited by ``max_file_size``) are not concerned.
* Gradio serves any file whose *name* lies in ``allowed_paths``. A hard link
  placed in ``UPLOADS_DIR`` is such a name for a file anywhere, and a rotated
  log (``app.log.1``) inside ``OUTPUT_DIR`` is served with the outputs. The guard
  serves from OUTPUT_DIR, UPLOADS_DIR and the log only regular files whose real
  location is inside them, with a link count of 1, and not rotated logs; and it
  adds ``X-Content-Type-Options: nosniff`` to every file response, so a browser
  never runs an upload as a type it guessed.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["GuardPolicy", "PageGuard", "file_route_path"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_ENVELOPE = 64 * 1024  # room for the JSON around a request's text (event data, ids)


@dataclass(frozen=True)
class GuardPolicy:
    """What the guard enforces for one page."""

    max_request_bytes: int
    output_dir: Path
    uploads_dir: Path
    log_file: Path

    @property
    def max_body_bytes(self) -> int:
        # A request's text travels as a JSON string: quotes and backslashes are escaped
        # (twice the bytes at worst) and UTF-8 takes up to four bytes a character.
        return 4 * self.max_request_bytes + _ENVELOPE

    def refusal(self, path: str) -> str | None:
        """Why the file at ``path`` may not be served, or None (Gradio then decides)."""
        given = Path(os.path.abspath(path))
        roots = [self.output_dir, self.uploads_dir]
        named_inside = given == self.log_file or any(given.is_relative_to(r) for r in roots)
        if not named_inside:
            return None  # Gradio's cache or a path it refuses itself
        try:
            real = given.resolve(strict=True)
            st = real.stat()
        except (OSError, RuntimeError):
            return "no such file"
        if real != self.log_file and not any(real.is_relative_to(r) for r in roots):
            return "a link to a file outside the served folders"
        if not stat.S_ISREG(st.st_mode):
            return "not a regular file"
        if st.st_nlink > 1:
            return "a hard link (the page never makes one): its other names may lie anywhere"
        log = self.log_file
        if real.parent == log.parent and re.fullmatch(re.escape(log.name) + r"\.\d+", real.name):
            return "a rotated log: only the current log is served"
        return None


def file_route_path(path: str) -> str | None:
    """The file a Gradio file route asks for (``/gradio_api/file=/abs/x.mp4``), else None."""
    for marker in ("/file=", "/gradio_api/file/"):
        head, sep, tail = path.partition(marker)
        if sep and (marker != "/file=" or head.endswith("gradio_api") or head == ""):
            return tail  # ASGI paths arrive decoded
    return None


async def _drain(receive: Receive) -> None:
    """Read and drop a request body (so the client gets our answer, not a reset)."""
    while True:
        message = await receive()
        if message.get("type") != "http.request" or not message.get("more_body"):
            return


async def _answer(send: Send, status: int, text: str) -> None:
    body = json.dumps({"detail": text, "error": text}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"x-content-type-options", b"nosniff"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class PageGuard:
    """ASGI middleware; given to Gradio's FastAPI app through ``launch(app_kwargs=...)``."""

    def __init__(self, app: ASGIApp, policy: GuardPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        method = str(scope.get("method", "GET"))
        if method == "POST" and not path.rstrip("/").endswith("/upload"):
            length = _content_length(scope)
            if length is not None and length > self.policy.max_body_bytes:
                await _drain(receive)
                kb = self.policy.max_request_bytes / 1024
                await _answer(
                    send,
                    413,
                    f"the request is {length / 1024:,.0f} KB, over the {kb:g} KB limit "
                    "(MAX_REQUEST_KB): send a smaller request, or upload large inputs as files",
                )
                return
        target = file_route_path(path) if method in ("GET", "HEAD") else None
        if target is None:
            await self.app(scope, receive, send)
            return
        why = self.policy.refusal(target)
        if why is not None:
            await _answer(send, 403, f"not served: {why}")
            return

        async def send_nosniff(message: Message) -> None:
            if message.get("type") == "http.response.start":
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.lower() != b"x-content-type-options"
                ]
                headers.append((b"x-content-type-options", b"nosniff"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_nosniff)


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None

"""Small ASGI helpers for what the page's guard answers itself (no framework in between).

Types of the ASGI interface, a JSON or bytes answer, a file streamed from disk
(watching for the client going away: the server silently drops what is sent after
that), and a ``send`` wrapper adding ``X-Content-Type-Options: nosniff``.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

__all__ = [
    "ASGIApp",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "answer_bytes",
    "answer_json",
    "content_length",
    "header",
    "nosniff",
    "send_file",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_CHUNK = 1024 * 1024
_NOSNIFF = (b"x-content-type-options", b"nosniff")


def header(scope: Scope, name: bytes) -> bytes | None:
    """A request header's value (``name`` in lower case), or None."""
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value)
    return None


def content_length(scope: Scope) -> int | None:
    """The declared ``Content-Length``, or None (absent or not a number)."""
    value = header(scope, b"content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


async def answer_json(send: Send, status: int, text: str, *, close: bool = False) -> None:
    """A one-line JSON answer (``detail`` as FastAPI words it, ``error`` as Gradio does)."""
    body = json.dumps({"detail": text, "error": text}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        _NOSNIFF,
    ]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def answer_bytes(send: Send, body: bytes, kind: str, *, head: bool) -> None:
    """``body`` as content of type ``kind`` (headers only for HEAD)."""
    headers = [(b"content-type", kind.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": [*headers, _NOSNIFF]})
    await send({"type": "http.response.body", "body": b"" if head else body})


async def send_file(
    path: Path, receive: Receive, send: Send, *, head: bool, headers: list[tuple[bytes, bytes]]
) -> bool | None:
    """Stream ``path`` from disk in 1 MB reads off the event loop.

    Returns True when every byte was handed to the server, False when the client
    went away first, None when the file could not be opened (nothing was sent).
    """
    try:
        handle = path.open("rb")
        size = os.fstat(handle.fileno()).st_size
    except OSError:
        return None
    gone = asyncio.Event()

    async def watch() -> None:
        while (await receive()).get("type") != "http.disconnect":
            pass
        gone.set()

    watcher = asyncio.ensure_future(watch())
    last = False
    try:
        with handle:
            all_headers = [*headers, (b"content-length", str(size).encode()), _NOSNIFF]
            await send({"type": "http.response.start", "status": 200, "headers": all_headers})
            if head:
                await send({"type": "http.response.body", "body": b""})
                return False
            while not last and not gone.is_set():
                chunk = await asyncio.to_thread(handle.read, _CHUNK)
                last = len(chunk) < _CHUNK
                await send({"type": "http.response.body", "body": chunk, "more_body": not last})
    finally:
        watcher.cancel()
    return last and not gone.is_set()


def nosniff(send: Send) -> Send:
    """``send``, with ``X-Content-Type-Options: nosniff`` on the response (replacing any)."""

    async def send_nosniff(message: Message) -> None:
        if message.get("type") == "http.response.start":
            headers = [
                (k, v)
                for k, v in message.get("headers", [])
                if k.lower() != b"x-content-type-options"
            ]
            message = {**message, "headers": [*headers, _NOSNIFF]}
        await send(message)

    return send_nosniff

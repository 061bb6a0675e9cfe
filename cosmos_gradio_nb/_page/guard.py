"""An ASGI guard in front of the page's server: request bodies, and which files are served.

What Gradio does not do for us:

* A request body is read whole on the server's event loop before any handler
  runs, so a 200 MB body stalls every page and grows the server by its size
  several times over. The guard reads every body itself, counting the bytes as
  they arrive, whether the client announced a ``Content-Length`` or sent
  ``Transfer-Encoding: chunked`` (which announces nothing), and answers 413 as
  soon as the count passes ``MAX_REQUEST_KB`` (with room for the JSON envelope).
  A body under the limit is then handed to Gradio unchanged, so at most the limit
  is ever held per request. A declared ``Content-Length`` over the limit is
  refused before anything is read. Uploads (Gradio's ``/upload`` route) have
  their own limits: ``MAX_UPLOAD_MB`` a file (Gradio's ``max_file_size``) and
  ``UPLOAD_CACHE_MAX_MB`` a request, counted the same way while the body streams
  through to Gradio; after each upload :class:`~.cache.UploadCache` trims the cache.
* Gradio serves any file whose *name* lies in ``allowed_paths``. A hard link
  placed in ``UPLOADS_DIR`` is such a name for a file anywhere, and a rotated
  log (``app.log.1``) inside ``OUTPUT_DIR`` is served with the outputs. The guard
  serves from OUTPUT_DIR, UPLOADS_DIR and the log only regular files whose real
  location is inside them, with a link count of 1, and not rotated logs; and it
  adds ``X-Content-Type-Options: nosniff`` to every file response, so a browser
  never runs an upload as a type it guessed.
* A URL with a NUL byte (``%00``) makes path functions raise: it is answered 404
  here in one line, never a traceback in the server's terminal.

A refused body is answered once the client has finished sending it, if that comes
within :data:`DRAIN_LIMIT` bytes and :data:`DRAIN_SECONDS` (so an ordinary client reads
our 413, not a reset); past either the answer carries ``Connection: close`` and the
server drops the rest.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import stat
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .asgi import (
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
    answer_bytes,
    answer_json,
    content_length,
    header,
    nosniff,
)

__all__ = ["DRAIN_LIMIT", "GuardPolicy", "PageGuard", "file_route_path", "guarded_app_kwargs"]

log = logging.getLogger("cosmos_gradio_nb.ui")

_ENVELOPE = 64 * 1024  # room for the JSON around a request's text (event data, ids)
_ZIP_ROUTE = "/cosmos_zip/"  # zips.ROUTE (the guard imports no page module that does)
DRAIN_LIMIT = 64 * 1024 * 1024
"""Bytes of a refused body read (and dropped) before the connection is closed instead."""
DRAIN_SECONDS = 2.0
"""Seconds the rest of a refused body is waited for before the connection is closed instead."""


class BodyWatcher(Protocol):
    """Shown every request body the guard lets through (a whole one, at most the limit)."""

    def note_body(self, body: bytes) -> None:
        """A request body arrived (before Gradio reads it)."""


class CacheKeeper(Protocol):
    """What the guard tells the upload cache (:class:`~.cache.UploadCache`)."""

    async def after_upload(self) -> None:
        """An upload request ended: bring the cache back under its quota."""


class ZipSource(Protocol):
    """The zips the guard serves (:class:`~.zips.ZipStore`)."""

    async def serve(self, token: str, receive: Receive, send: Send, *, head: bool) -> None:
        """Answer a request for the zip of ``token``."""


@dataclass(frozen=True)
class GuardPolicy:
    """What the guard enforces for one page."""

    max_request_bytes: int
    output_dir: Path
    uploads_dir: Path
    log_file: Path
    max_upload_request_bytes: int | None = None  # UPLOAD_CACHE_MAX_MB; None: no bound

    @property
    def max_body_bytes(self) -> int:
        # A request's text travels as a JSON string: quotes and backslashes are escaped
        # (twice the bytes at worst) and UTF-8 takes up to four bytes a character.
        return 4 * self.max_request_bytes + _ENVELOPE

    def too_big(self, size: int, *, upload: bool, counted: bool = False) -> str | None:
        """The 413 message for a body of ``size`` bytes, or None when it may pass.

        ``counted``: ``size`` is what has arrived so far (the body may be longer).
        """
        if upload:
            limit = self.max_upload_request_bytes
            if limit is None or size <= limit:
                return None
            return (
                f"the upload is over {limit / 1024 / 1024:g} MB, the upload cache's size "
                "(UPLOAD_CACHE_MAX_MB): upload fewer or smaller files at once"
            )
        if size <= self.max_body_bytes:
            return None
        kb = self.max_request_bytes / 1024
        size_kb = f"{'more than ' if counted else ''}{size / 1024:,.0f} KB"
        return (
            f"the request is {size_kb}, over the {kb:g} KB limit "
            "(MAX_REQUEST_KB): send a smaller request, or upload large inputs as files"
        )

    def refusal(self, path: str) -> str | None:
        """Why the file at ``path`` may not be served, or None (Gradio then decides)."""
        if "\x00" in path:
            return "no such file"
        given = Path(os.path.abspath(path))
        roots = [self.output_dir, self.uploads_dir]
        named_inside = given == self.log_file or any(given.is_relative_to(r) for r in roots)
        if not named_inside:
            return None  # Gradio's cache or a path it refuses itself
        try:
            real = given.resolve(strict=True)
            st = real.stat()
        except (OSError, RuntimeError, ValueError):
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


def _has_body(scope: Scope) -> bool:
    """Whether the request announces a body (a length above 0, or a transfer coding)."""
    length = content_length(scope)
    return bool(length) or header(scope, b"transfer-encoding") is not None


def _is_upload(method: str, path: str) -> bool:
    return method == "POST" and path.rstrip("/").endswith("/upload")


async def _refuse_body(send: Send, receive: Receive, why: str, path: str, ended: bool) -> None:
    """Answer 413: after dropping the rest of the body if it ends soon, else closing."""
    drained = 0
    deadline = asyncio.get_running_loop().time() + DRAIN_SECONDS
    while not ended and drained <= DRAIN_LIMIT:
        left = deadline - asyncio.get_running_loop().time()
        try:
            message = await asyncio.wait_for(receive(), timeout=max(left, 0.0))
        except asyncio.TimeoutError:
            break  # a slow drip: answer now and close
        if message.get("type") != "http.request":
            return  # the client is gone: nobody to answer
        drained += len(message.get("body", b""))
        ended = not message.get("more_body", False)
    log.warning("refused %s: %s", path, why)
    await answer_json(send, 413, why, close=not ended)


class PageGuard:
    """ASGI middleware; given to Gradio's FastAPI app through ``launch(app_kwargs=...)``."""

    def __init__(
        self,
        app: ASGIApp,
        policy: GuardPolicy,
        cache: CacheKeeper | None = None,
        zips: ZipSource | None = None,
        static: dict[str, tuple[bytes, str]] | None = None,
        watchers: Sequence[BodyWatcher] = (),
    ) -> None:
        self.app = app
        self.policy = policy
        self.cache = cache
        self.zips = zips
        self.static = dict(static or {})  # route -> (body, content type), served from memory
        self.watchers = list(watchers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        method = str(scope.get("method", "GET"))
        if "\x00" in path:  # %00: path functions would raise on it
            await answer_json(send, 404, "not found: the URL holds a NUL byte")
            return
        if _is_upload(method, path):
            await self._upload(scope, receive, send)
            return
        if _has_body(scope):
            body = await self._read_body(scope, receive, send, path)
            if body is None:
                return  # refused, answered
            receive = body
        target = file_route_path(path) if method in ("GET", "HEAD") else None
        if target is None and method in ("GET", "HEAD"):
            head = method == "HEAD"
            for route, (content, kind) in self.static.items():
                if path.endswith(route):  # the page's root may be mounted under a prefix
                    await answer_bytes(send, content, kind, head=head)
                    return
            if self.zips is not None and _ZIP_ROUTE in path:
                token = path.partition(_ZIP_ROUTE)[2].split("/", 1)[0]
                await self.zips.serve(token, receive, send, head=head)
                return
        if target is None:
            await self.app(scope, receive, send)
            return
        why = self.policy.refusal(target)
        if why is not None:
            await answer_json(send, 403, f"not served: {why}")
            return
        await self.app(scope, receive, nosniff(send))

    async def _read_body(
        self, scope: Scope, receive: Receive, send: Send, path: str
    ) -> Receive | None:
        """Read the whole body, counting; return a ``receive`` replaying it, or None if refused."""
        declared = content_length(scope)
        why = None if declared is None else self.policy.too_big(declared, upload=False)
        if why is not None:  # refused from its header, before anything is read
            await _refuse_body(send, receive, why, path, ended=False)
            return None
        messages: deque[Message] = deque()
        parts: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message.get("type") != "http.request":
                break  # disconnected: Gradio sees it as it would have
            chunk = bytes(message.get("body", b""))
            size += len(chunk)
            parts.append(chunk)
            why = self.policy.too_big(size, upload=False, counted=True)
            if why is None and declared is not None and size > declared:
                why = f"the body is longer than its Content-Length ({declared} bytes)"
            if why is not None:
                ended = not message.get("more_body", False)
                await _refuse_body(send, receive, why, path, ended=ended)
                return None
            if not message.get("more_body", False):
                break
        if self.watchers:
            whole = b"".join(parts)
            for watcher in self.watchers:
                watcher.note_body(whole)

        async def replay() -> Message:
            return messages.popleft() if messages else await receive()

        return replay

    async def _upload(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass an upload through to Gradio, counting its bytes; then trim the cache."""
        declared = content_length(scope)
        path = str(scope.get("path", ""))
        why = None if declared is None else self.policy.too_big(declared, upload=True)
        if why is not None:
            await _refuse_body(send, receive, why, path, ended=False)
            return
        size = 0
        cut: str | None = None
        started = False

        async def counted() -> Message:
            nonlocal size, cut
            if cut is not None:
                return {"type": "http.disconnect"}
            message = await receive()
            size += len(message.get("body", b""))
            cut = self.policy.too_big(size, upload=True)
            return {"type": "http.disconnect"} if cut is not None else message

        async def watched(message: Message) -> None:
            nonlocal started
            if message.get("type") == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except Exception:
            if cut is None or started:
                raise
        finally:
            if self.cache is not None:
                await self.cache.after_upload()
        if cut is not None and not started:
            log.warning("refused %s: %s", path, cut)
            await answer_json(send, 413, cut, close=True)


def guarded_app_kwargs(demo: Any, app_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """``launch``'s ``app_kwargs`` for a page: plus its guard (a middleware, with the upload
    cache's quota, the zips and the API example), and the quota's timer (a lifespan)."""
    from starlette.middleware import Middleware

    from .cache import UploadCache
    from .examples import EXAMPLE_ROUTE, ExampleFile, example_png

    app_kwargs = dict(app_kwargs or {})
    policy: GuardPolicy = demo._cosmos_guard
    max_age = float(demo.cosmos_backend.env.upload_cache_max_age)
    cache = UploadCache.of_blocks(demo, policy.max_upload_request_bytes or 0, max_age)
    watchers: list[BodyWatcher] = [cache, ExampleFile(cache.root)]
    guard = Middleware(
        PageGuard,
        policy=policy,
        cache=cache,
        zips=demo.cosmos_files.zips,
        static={EXAMPLE_ROUTE: (example_png(), "image/png")},  # /upload_file's example
        watchers=watchers,
    )
    every = (demo.delete_cache or (3600, 0))[0]
    return {
        **app_kwargs,
        "middleware": [*(app_kwargs.get("middleware") or []), guard],
        "lifespan": cache.lifespan(every, app_kwargs.get("lifespan")),
    }

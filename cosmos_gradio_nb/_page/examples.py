"""The samples "Use via API" shows, made to run as shown against the page's own server.

Gradio writes each endpoint's sample from its input components' example values:
a remote ``sample_file.pdf`` for a file (a type the page refuses, and unreachable
offline), ``"Hello!!"`` for a text. So the page sets them:

* ``/generate``, ``/generate_stream``: the default request (``layout.request_textbox``).
* ``/upload_file``: the URL of :data:`EXAMPLE_ROUTE` on this server, a small PNG
  the page's guard serves from memory (:func:`example_png`). The JavaScript
  client fetches it and uploads it. The Python client (and the CLI) pass a URL on
  to the server, whose download refuses loopback addresses (Gradio's protection
  against server-side request forgery) but first looks for the URL's file in its
  cache: :class:`ExampleFile` puts the image there whenever a request names it.
* ``/request_status``: ``"latest"``, the newest request.
"""

from __future__ import annotations

import os
import re
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "EXAMPLE_NAME",
    "EXAMPLE_ROUTE",
    "ExampleFile",
    "example_png",
    "set_file_example",
    "set_text_example",
]

EXAMPLE_NAME = "cosmos_example.png"
EXAMPLE_ROUTE = f"/{EXAMPLE_NAME}"


def example_png(width: int = 48, height: int = 32) -> bytes:
    """A small RGB gradient as PNG bytes (no imaging library needed)."""
    rows = b"".join(
        b"\x00" + bytes(v for x in range(width) for v in (x * 5 % 256, y * 8 % 256, 160))
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def set_file_example(component: Any, base_url: Callable[[], str]) -> None:
    """Make ``component``'s API example :data:`EXAMPLE_ROUTE` on the server at ``base_url()``.

    Set on the instance (as ``layout.request_textbox`` does), read when Gradio first
    builds its API description, once the server runs and knows its URL.
    """

    def payload() -> dict[str, Any]:
        url = base_url().rstrip("/") + EXAMPLE_ROUTE
        return {
            "path": url,
            "url": url,
            "orig_name": EXAMPLE_NAME,
            "meta": {"_type": "gradio.FileData"},
        }

    component.example_payload = payload
    component.example_value = payload


def set_text_example(component: Any, text: str) -> None:
    """Make ``component``'s API example ``text`` (a plain word: Gradio quotes it unescaped)."""
    component.example_payload = lambda: text
    component.example_value = lambda: text


class ExampleFile:
    """Puts the example image where Gradio looks for a downloaded URL's file.

    Gradio downloads a file given by URL into ``<cache>/<hash of the URL>/<name>``
    and reuses that file when it is there (``processing_utils``'s download). The
    guard shows each request body to :meth:`note_body`; every URL of
    :data:`EXAMPLE_ROUTE` in it gets the image there before Gradio reads the request,
    so the sample runs from any client, offline too. Any host in such a URL gets our
    image, never a download.
    """

    _URL = re.compile(rb"https?://[^\"'\s\\]{1,512}?" + re.escape(EXAMPLE_ROUTE.encode()))

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = cache_dir
        self._png = example_png()

    def note_body(self, body: bytes) -> None:
        if EXAMPLE_ROUTE.encode() not in body:
            return
        for url in set(self._URL.findall(body)):
            self._place(url.decode("utf-8", "replace"))

    def _place(self, url: str) -> None:
        from gradio.processing_utils import hash_url

        path = self.cache_dir / hash_url(url) / EXAMPLE_NAME
        if path.is_file():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{EXAMPLE_NAME}.{os.getpid()}")
        tmp.write_bytes(self._png)
        tmp.replace(path)

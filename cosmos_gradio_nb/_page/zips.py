"""The file browser's temporary zips: at most one per page session, deleted once served.

Given to a ``gr.DownloadButton`` (or any file component), a zip would be copied
into Gradio's cache before the browser could fetch it: two copies of what may be
gigabytes, the cache's kept for a day. So a zip is never a component value. It
is built in a private temporary folder, and the page's guard serves it itself
under ``cosmos_zip/<token>/<name>.zip`` (a link in the page, relative like the
log's, so it works behind jupyter-server-proxy too), streaming it from disk and
deleting it once the last byte is sent. The token is a random 128-bit secret
handed only to the page session that asked for the zip: it, not the page's login
(``--auth``, which the guard's own routes do not see), is what guards the link.

:class:`ZipStore` keeps at most one zip per page session (a new one replaces
it; the session's end, when its tab closes, deletes it), and at most
:data:`MAX_ZIPS` in all (the oldest unserved ones go first).
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .asgi import Receive, Send, answer_json, send_file

__all__ = ["MAX_ZIPS", "ROUTE", "ZipStore"]

ROUTE = "/cosmos_zip/"
"""The guard serves ``<page>/cosmos_zip/<token>/<name>`` from the store."""
MAX_ZIPS = 8
"""Zips on disk at once, over every page session."""


@dataclass
class _Zip:
    path: Path
    session: str
    made: float


class ZipStore:
    """Where the zips of one page are built, found by token, and deleted."""

    def __init__(self, max_zips: int = MAX_ZIPS) -> None:
        self.max_zips = max_zips
        self._dir: Path | None = None
        self._zips: dict[str, _Zip] = {}
        self._lock = threading.Lock()

    def slot(self, session: str, name: str) -> Path:
        """A fresh path for ``session``'s new zip; its previous zip is deleted first."""
        with self._lock:
            doomed = {t for t, z in self._zips.items() if z.session == session}
            for token in sorted(self._zips, key=lambda t: self._zips[t].made):
                if len(self._zips) - len(doomed) < self.max_zips:
                    break
                doomed.add(token)  # the oldest, to keep room for this one
            gone = [self._zips.pop(t) for t in doomed]
            if self._dir is None or not self._dir.is_dir():
                self._dir = Path(tempfile.mkdtemp(prefix="cosmos-gradio-zip-"))
            folder = Path(tempfile.mkdtemp(dir=self._dir))
        for old in gone:
            _remove(old.path)
        return folder / name

    def publish(self, session: str, path: Path) -> str:
        """Register a built zip; returns the page-relative link that serves it once."""
        token = secrets.token_urlsafe(16)
        with self._lock:
            self._zips[token] = _Zip(path, session, time.monotonic())
        return f"{ROUTE.lstrip('/')}{token}/{path.name}"

    def find(self, token: str) -> Path | None:
        """The zip of ``token``, if it is still there."""
        with self._lock:
            entry = self._zips.get(token)
        return entry.path if entry is not None and entry.path.is_file() else None

    async def serve(self, token: str, receive: Receive, send: Send, *, head: bool) -> None:
        """Answer the guard's request for the zip of ``token``; delete it once sent whole."""
        found = self.find(token) if token else None
        name = found.name.replace('"', "") if found is not None else ""
        headers = [
            (b"content-type", b"application/zip"),
            (b"content-disposition", f'attachment; filename="{name}"'.encode()),
            (b"cache-control", b"no-store"),
        ]
        sent = (
            None
            if found is None
            else await send_file(found, receive, send, head=head, headers=headers)
        )
        if sent is None:
            await answer_json(send, 404, "no such zip (each is served once): zip the folder again")
        elif sent:
            self.served(token)  # only after the last byte: an interrupted download stays

    def served(self, token: str) -> None:
        """The zip was sent whole: delete it."""
        with self._lock:
            entry = self._zips.pop(token, None)
        if entry is not None:
            _remove(entry.path)

    def forget_session(self, session: str) -> None:
        """A page session ended (its tab closed): delete its zip."""
        with self._lock:
            tokens = [t for t, z in self._zips.items() if z.session == session]
            gone = [self._zips.pop(t) for t in tokens]
        for entry in gone:
            _remove(entry.path)

    def files(self) -> list[Path]:
        """The zips on disk now (for tests and the benchmark)."""
        with self._lock:
            root = self._dir
        return sorted(root.rglob("*.zip")) if root is not None and root.is_dir() else []

    def close(self) -> None:
        """Delete every zip and the store's folder."""
        with self._lock:
            root, self._dir = self._dir, None
            self._zips.clear()
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)


def _remove(path: Path) -> None:
    """Delete a zip and its own folder (each zip has one)."""
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        path.parent.rmdir()

"""Gradio's upload cache (``GRADIO_TEMP_DIR``) kept under a size quota, ``UPLOAD_CACHE_MAX_MB``.

Gradio writes every upload (``/gradio_api/upload``, open to anyone who can reach
the page) and every output it serves into its cache, and deletes them only by
age (``UPLOAD_CACHE_MAX_AGE``, a day): 200 uploads a second fill a disk long
before that. :class:`UploadCache` bounds it:

* After every upload request (the guard calls :meth:`UploadCache.after_upload`;
  one trim at a time, off the event loop, a second one queued behind it), the
  files this page put in the cache (Gradio's own lists of them) are summed and,
  past the quota, deleted oldest first until the rest fit.
* A file that a request still names is never deleted: the guard shows every
  request body to :meth:`UploadCache.note_body`, which remembers the cache folders
  it names (``<cache>/<sha>/name``) for :data:`PIN_SECONDS`, or until the file is
  gone. Files Gradio keeps for examples (``keep_in_cache``) are never deleted.
* An upload that is cut off (a client gone, or refused mid-body) leaves Gradio's
  partial temporary file (``<cache>/tmpXXXX``) behind, on no list: such files,
  untouched for :data:`IDLE_SECONDS`, count towards the quota and go first; past
  ``UPLOAD_CACHE_MAX_AGE`` they are deleted anyway.
* Empty folders left behind, by this quota or by Gradio's deletion by age, are
  removed (each trim, and on a timer while the server runs: :meth:`lifespan`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import stat
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["IDLE_SECONDS", "PIN_SECONDS", "TrimReport", "UploadCache"]

log = logging.getLogger("cosmos_gradio_nb.ui")

PIN_SECONDS = 600.0
"""How long a cache folder named by a request body is kept out of the quota's reach."""
IDLE_SECONDS = 60.0
"""A partial upload file untouched this long belongs to an upload that was cut off."""
_FOLDER = rb"[0-9a-f]{16,128}"  # Gradio names its cache folders by a hex digest
_HEX = re.compile(_FOLDER.decode())


@dataclass
class TrimReport:
    """What one trim found and did (the benchmark and the tests read it)."""

    total_bytes: int = 0
    kept_bytes: int = 0
    deleted: list[Path] = field(default_factory=list)
    folders_removed: int = 0


@dataclass
class _Entry:
    path: Path
    size: int
    mtime: float


class UploadCache:
    """The quota of one page's files in Gradio's cache.

    Parameters
    ----------
    root:
        Gradio's cache folder (``GRADIO_TEMP_DIR``, else its default).
    max_bytes:
        ``UPLOAD_CACHE_MAX_MB`` in bytes.
    max_age:
        ``UPLOAD_CACHE_MAX_AGE`` in seconds (for partial upload files).
    tracked:
        Returns the files this page put in the cache (Gradio's sets), and the
        files it must keep; set by the page once its Blocks exist.
    """

    def __init__(
        self,
        root: Path,
        max_bytes: int,
        max_age: float,
        tracked: Callable[[], tuple[Iterable[str], Iterable[str]]] | None = None,
    ) -> None:
        self.root = Path(os.path.abspath(root))
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.tracked = tracked
        self._pins: dict[str, float] = {}
        self._pin_pattern = re.compile(
            re.escape(str(self.root).encode()) + rb"/(" + _FOLDER + rb")"
        )
        self._lock = threading.Lock()
        self._running: asyncio.Task[None] | None = None
        self._again = False

    @classmethod
    def of_blocks(cls, demo: Any, max_bytes: int, max_age: float) -> UploadCache:
        """The quota of a Gradio Blocks' files in Gradio's cache (one per launch)."""
        from gradio.utils import get_upload_folder

        def tracked() -> tuple[list[str], list[str]]:
            files = [f for s in list(demo.temp_file_sets) for f in s.copy()]
            keep = [f for b in list(demo.blocks.values()) for f in getattr(b, "keep_in_cache", ())]
            return files, keep

        return cls(Path(get_upload_folder()), max_bytes, max_age, tracked)

    # ------------------------------------------------------------------ pins
    def note_body(self, body: bytes) -> None:
        """Remember the cache folders a request body names: they are in use."""
        if not body:
            return
        now = time.monotonic()
        for match in self._pin_pattern.finditer(body):
            self._pins[match.group(1).decode()] = now

    def _pinned(self) -> set[str]:
        cutoff = time.monotonic() - PIN_SECONDS
        for name, when in list(self._pins.items()):
            if when < cutoff or not (self.root / name).is_dir():
                self._pins.pop(name, None)
        return set(self._pins)

    # ------------------------------------------------------------------ trimming
    async def after_upload(self) -> None:
        """Trim in a thread; a trim asked for while one runs runs once more after it."""
        if self._running is not None and not self._running.done():
            self._again = True
            return
        self._running = asyncio.ensure_future(self._trim_loop())

    async def _trim_loop(self) -> None:
        while True:
            self._again = False
            try:
                await asyncio.to_thread(self.trim)
            except Exception as exc:  # never the upload's failure
                log.warning("the upload cache could not be trimmed: %s", exc)
            if not self._again:
                return

    def trim(self) -> TrimReport:
        """Delete this page's oldest cached files until they fit the quota; drop empty folders."""
        with self._lock:
            report = TrimReport()
            ours, keep = self._tracked()
            entries = [e for e in (_stat(p) for p in ours) if e is not None]
            now = time.time()
            partial = self._partial_uploads(now)
            report.total_bytes = sum(e.size for e in entries) + sum(e.size for e in partial)
            expired = [e for e in partial if now - e.mtime > self.max_age]
            over = self._over_quota(
                report.total_bytes - sum(e.size for e in expired),
                [e for e in partial if now - e.mtime <= self.max_age],
                [e for e in entries if str(e.path) not in keep],
            )
            doomed = expired + over
            for entry in doomed:
                with contextlib.suppress(OSError):
                    entry.path.unlink()
                    report.deleted.append(entry.path)
            report.kept_bytes = report.total_bytes - sum(e.size for e in doomed)
            report.folders_removed = self._remove_empty_folders({e.path.parent for e in doomed})
            if over:
                log.warning(
                    "upload cache over UPLOAD_CACHE_MAX_MB (%g MB): deleted its %d oldest file(s)",
                    self.max_bytes / 1024 / 1024,
                    len(over),
                )
            return report

    def _over_quota(self, total: int, partial: list[_Entry], ours: list[_Entry]) -> list[_Entry]:
        """What goes so that ``total`` fits: partial uploads first, then the oldest files
        that no request names."""
        over = total - self.max_bytes
        if over <= 0:
            return []
        pinned = self._pinned()
        free = sorted((e for e in ours if e.path.parent.name not in pinned), key=lambda e: e.mtime)
        doomed = []
        for entry in [*partial, *free]:
            if over <= 0:
                break
            doomed.append(entry)
            over -= entry.size
        return doomed

    def _tracked(self) -> tuple[list[Path], set[str]]:
        if self.tracked is None:
            return [], set()
        files, keep = self.tracked()
        inside = []
        for name in set(files):
            path = Path(os.path.abspath(name))
            if path.parent.parent == self.root:  # <cache>/<sha>/<name>: what Gradio makes
                inside.append(path)
        return inside, {os.path.abspath(k) for k in keep}

    def _partial_uploads(self, now: float) -> list[_Entry]:
        """Gradio's temporary upload files at the cache's top, untouched for a while."""
        found = []
        try:
            with os.scandir(self.root) as it:
                names = [e.name for e in it if e.name.startswith("tmp") and e.is_file()]
        except OSError:
            return []
        for name in names:
            entry = _stat(self.root / name)
            if entry is not None and now - entry.mtime > IDLE_SECONDS:
                found.append(entry)
        return found

    def _remove_empty_folders(self, emptied: set[Path]) -> int:
        """Remove ``<cache>/<sha>`` folders left empty: those whose files were just deleted
        here, and any other of the cache's untouched for :data:`IDLE_SECONDS` (Gradio's
        deletion by age leaves them; a newer empty one may be about to receive its file)."""
        idle: set[Path] = set()
        cutoff = time.time() - IDLE_SECONDS
        try:
            with os.scandir(self.root) as it:
                for e in it:
                    if e.is_dir(follow_symlinks=False) and e.stat().st_mtime < cutoff:
                        idle.add(Path(e.path))
        except OSError:
            pass
        pinned = set(self._pins)
        removed = 0
        for folder in emptied | idle:
            if folder.parent != self.root or folder.name in pinned:
                continue
            if not _HEX.fullmatch(folder.name):
                continue  # not one of Gradio's <sha> folders (vibe_edit_history...)
            try:
                folder.rmdir()  # only an empty folder goes
                removed += 1
            except OSError:
                continue
        return removed

    # ------------------------------------------------------------------ while serving
    def lifespan(self, every: float, inner: Any = None) -> Callable[[Any], Any]:
        """A FastAPI lifespan that trims every ``every`` s (empty folders left by Gradio's
        deletion by age, partial uploads past the age), around ``inner`` (the user's)."""

        @contextlib.asynccontextmanager
        async def run(app: Any) -> AsyncIterator[Any]:
            async def tick() -> None:
                while True:
                    await asyncio.sleep(every)
                    await self.after_upload()

            task = asyncio.ensure_future(tick())
            try:
                if inner is None:
                    yield None
                else:
                    async with inner(app) as state:
                        yield state
            finally:
                task.cancel()

        return run


def _stat(path: Path) -> _Entry | None:
    """A regular file's size and age (a link or a folder: None)."""
    try:
        st = os.lstat(path)
    except (OSError, ValueError):
        return None
    return _Entry(path, st.st_size, st.st_mtime) if stat.S_ISREG(st.st_mode) else None

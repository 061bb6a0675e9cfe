"""LOG_FILE: every worker line and every app event, rotated at a bounded size.

A chatty model can write hundreds of megabytes in one request, and the file
lives for weeks next to the outputs, so it is rotated when it reaches
``LOG_MAX_MB``: ``LOG_FILE`` becomes ``LOG_FILE.1`` (``.1`` becomes ``.2``...), and
``LOG_BACKUPS`` old files are kept. The page's log viewer reads the tail of the
current file, so it keeps working across a rotation.

Two apps may share one log file (a notebook with two models, say). Each writer
checks before writing that its descriptor is still the file at ``LOG_FILE``
and reopens it when another writer rotated it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from pathlib import Path

__all__ = ["LogFile", "rotated_paths"]


def rotated_paths(path: Path, backups: int) -> list[Path]:
    """``[LOG_FILE.1, LOG_FILE.2, ...]``: where rotated logs go, newest first."""
    return [path.with_name(f"{path.name}.{i}") for i in range(1, backups + 1)]


class LogFile:
    """Appends lines to ``path``; rotates it past ``max_bytes``; optionally echoes to stderr."""

    def __init__(self, path: Path, max_bytes: int, backups: int, *, echo: bool = False) -> None:
        self.path = path
        self.max_bytes = max(1, int(max_bytes))
        self.backups = max(0, int(backups))
        self.echo = echo
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._size = 0
        self._closed = False

    def write(self, lines: list[str]) -> None:
        """Append ``lines``, rotating between them as needed (never raises: a full disk
        must not stop the engine)."""
        if not lines:
            return
        blocks = [(line + "\n").encode("utf-8", "replace") for line in lines]
        with self._lock:
            if self._closed:
                return
            with contextlib.suppress(OSError):
                fd = self._current_fd()
                chunk: list[bytes] = []
                size = self._size
                for block in blocks:
                    if size and size + len(block) > self.max_bytes:
                        if chunk:
                            os.write(fd, b"".join(chunk))
                            chunk = []
                        fd = self._rotate()
                        size = 0
                    chunk.append(block)
                    size += len(block)
                if chunk:
                    os.write(fd, b"".join(chunk))
                self._size = size
        if self.echo:
            with contextlib.suppress(Exception):
                sys.__stderr__.write(b"".join(blocks).decode())  # type: ignore[union-attr]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    os.close(self._fd)
                self._fd = None

    def _open(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._size = os.fstat(fd).st_size
        return fd

    def _current_fd(self) -> int:
        """Our descriptor, reopened if another writer rotated (or someone removed) the file."""
        if self._fd is not None:
            try:
                same = os.path.samestat(os.fstat(self._fd), os.stat(self.path))
            except OSError:
                same = False
            if same:
                return self._fd
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd = self._open()
        return self._fd

    def _rotate(self) -> int:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        if self.backups:
            olds = rotated_paths(self.path, self.backups)
            for older, newer in zip(reversed(olds[1:]), reversed(olds[:-1]), strict=True):
                with contextlib.suppress(OSError):
                    os.replace(newer, older)
            with contextlib.suppress(OSError):
                os.replace(self.path, olds[0])
        else:
            with contextlib.suppress(OSError):
                os.truncate(self.path, 0)
        self._fd = self._open()
        return self._fd

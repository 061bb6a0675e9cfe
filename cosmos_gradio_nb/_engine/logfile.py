"""LOG_FILE: every worker line and every app event, rotated at a bounded size.

A chatty model can write hundreds of megabytes in one request, and the file
lives for weeks next to the outputs, so it is rotated when it reaches
``LOG_MAX_MB``: ``LOG_FILE`` becomes ``LOG_FILE.1`` (``.1`` becomes ``.2``...), and
``LOG_BACKUPS`` old files are kept. The page's log viewer reads the tail of the
current file, so it keeps working across a rotation.

Many writers, one file
----------------------
The default ``LOG_FILE`` is shared by every app started in a folder: two
models in one notebook, a notebook and a ``serve``, each with its own
:class:`LogFile`, in one process or several. Counting only one's own bytes, each
writer let the shared file grow to N times the limit, and two rotations at once
renamed a just-rotated file over another, losing thousands of lines.

So every write happens under an exclusive ``flock`` of the file *currently at*
``LOG_FILE`` (its inode, not its name), and the rotation is decided by that
file's real size (``fstat``), whoever wrote it:

1. lock our descriptor; if the file at ``LOG_FILE`` is no longer the one we
   hold (another writer rotated it, or someone removed it), unlock, reopen the
   path and try again: we end up holding the lock of the current file;
2. append, and when a line would take the file past the limit, rotate first:
   rename the backups up by one and ``LOG_FILE`` to ``LOG_FILE.1`` while still
   holding the old inode's lock, let it go, and lock the current file again as
   in 1 (another writer may have created the new file, or even rotated it, by
   then); its size is read again under that lock.

Only the holder of the current file's lock can rename it, so rotations are one
at a time and every writer checks, once it holds a lock, that it holds the
current file's; a file exceeds the limit only by a single line longer than the
limit itself. ``flock`` works
between descriptors of one process as between processes, so two writers in
one process and two processes are the same case. No extra lock file is
needed, so nothing new appears next to the outputs.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import threading
from pathlib import Path

__all__ = ["LogFile", "rotated_paths"]

LOCK_TRIES = 1000  # reopen-and-lock rounds before giving up a write (each needs a rotation)


def rotated_paths(path: Path, backups: int) -> list[Path]:
    """``[LOG_FILE.1, LOG_FILE.2, ...]``: where rotated logs go, newest first."""
    return [path.with_name(f"{path.name}.{i}") for i in range(1, backups + 1)]


class LogFile:
    """Appends lines to ``path``; rotates it past ``max_bytes``; optionally echoes to stderr.

    Safe with other writers of the same path, in this process or others (see the
    module docstring).
    """

    def __init__(self, path: Path, max_bytes: int, backups: int, *, echo: bool = False) -> None:
        self.path = path
        self.max_bytes = max(1, int(max_bytes))
        self.backups = max(0, int(backups))
        self.echo = echo
        self._lock = threading.Lock()  # our descriptor, between this writer's threads
        self._fd: int | None = None
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
                self._append(blocks)
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

    def _append(self, blocks: list[bytes]) -> None:
        fd = self._lock_current()
        try:
            size = os.fstat(fd).st_size  # everyone's bytes, not only ours
            chunk: list[bytes] = []
            for block in blocks:
                # (while: another writer may have filled the new file before we had its lock)
                while size and size + len(block) > self.max_bytes:
                    if chunk:
                        _write_all(fd, b"".join(chunk))
                        chunk = []
                    fd = self._rotate(fd)
                    size = os.fstat(fd).st_size
                chunk.append(block)
                size += len(block)
            if chunk:
                _write_all(fd, b"".join(chunk))
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _open(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def _lock_current(self) -> int:
        """Our descriptor of the file now at ``path``, exclusively locked."""
        for _ in range(LOCK_TRIES):
            fd = self._fd if self._fd is not None else self._open()
            self._fd = fd
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if os.path.samestat(os.fstat(fd), os.stat(self.path)):
                    return fd
            except FileNotFoundError:
                pass  # removed: reopen creates it
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)  # rotated away (or removed) while we waited: follow the path
            self._fd = None
        raise OSError(f"could not lock {self.path}: it kept being replaced")

    def _rotate(self, fd: int) -> int:
        """Rotate the file ``fd`` is (locked, at ``path``); the new file's descriptor, locked."""
        if not self.backups:
            os.ftruncate(fd, 0)  # in place: every writer's descriptor stays right
            return fd
        olds = rotated_paths(self.path, self.backups)
        # Backups .1 ... .top exist: shift them up by one (past LOG_BACKUPS, the oldest goes).
        top = 0
        while top < self.backups and olds[top].exists():
            top += 1
        for i in range(min(top, self.backups - 1), 0, -1):
            os.replace(olds[i - 1], olds[i])
        os.replace(self.path, olds[0])
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        self._fd = None
        # Whoever gets there first creates the new file (another writer may, and may even
        # rotate it before we have its lock): lock whatever is current when we get there.
        return self._lock_current()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]

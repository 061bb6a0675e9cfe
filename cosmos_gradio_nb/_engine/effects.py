"""What the pool does after deciding, outside its lock: complete futures, write records, log.

The pool decides under its lock, and must never hold it while a future's
waiters wake, a status.json is written or the log file is appended to: those
touch other threads and the disk. So every decision queues its effects here, in
order, and whichever thread made it runs them (:meth:`Effects.flush`) once it
has released the lock. Effects decided together run together, in the order
they were decided: a request's status.json is on disk before its future
completes.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from .._core.outputs import base_status, finish_status, write_status
from .logfile import LogFile
from .request import Request, err_dict, failer

__all__ = ["Effects"]

logger = logging.getLogger("cosmos_gradio_nb")


class Effects:
    """The pool's queue of effects; every method but :meth:`flush` is called under ``lock``."""

    def __init__(self, lock: threading.Lock, log: LogFile, model_name: str) -> None:
        self._lock = lock
        self.log_file = log
        self._model_name = model_name
        self._calls: list[Callable[[], None]] = []
        self._lines: list[str] = []

    @property
    def pending(self) -> bool:
        return bool(self._calls or self._lines)

    def call(self, fn: Callable[[], None]) -> None:
        """Run ``fn()`` after the lock is released (completing a future, say)."""
        self._calls.append(fn)

    def lines(self, lines: list[str]) -> None:
        """Append ``lines`` (already stamped and prefixed) to LOG_FILE."""
        self._lines.extend(lines)

    def app_line(self, text: str) -> None:
        """One ``[app]`` line in LOG_FILE (and the ``cosmos_gradio_nb`` logger)."""
        self._lines.append(f"{time.strftime('%H:%M:%S')} [app] {text}")
        logger.info(text)

    def record(self, request: Request, state: str, error: dict[str, Any] | None) -> None:
        """Write the status.json of a request that did not finish on a worker."""
        status = base_status(
            request_id=request.id,
            model_name=self._model_name,
            params=request.params,
            output_dir=request.output_dir,
            queued_at=request.queued_at,
            started_at=request.started_at,
            group=request.group,
        )

        def write() -> None:
            with contextlib.suppress(OSError):
                write_status(request.output_dir, finish_status(status, state, error=error))

        self._calls.append(write)

    def fail(self, request: Request, error: BaseException) -> None:
        """Write ``request``'s status.json as failed with ``error``, then fail its future."""
        self.record(request, "failed", err_dict(error))
        self.call(failer(request.future, error))

    def flush(self) -> None:
        """Run what is queued, in order (call without the lock)."""
        if not self._calls and not self._lines:
            return  # nothing queued (by this thread, whose effects another may have run): no lock
        while True:
            with self._lock:
                if not self._calls and not self._lines:
                    return
                todo, self._calls = self._calls, []
                lines, self._lines = self._lines, []
            self.log_file.write(lines)
            for fn in todo:
                try:
                    fn()
                except Exception:
                    logger.exception("error while completing a request")

"""What the pool does after deciding, outside its lock: records, futures, progress, log lines.

The pool decides under its lock, and must never hold it while a future's
waiters wake, a status.json is written or the log file is appended to: those
touch other threads and the disk. So every decision queues its effects:

- a request's *outcome*: its final status.json is written (``records.py``) and
  only then its future completed; the first outcome decided for a request is
  the only one (:meth:`Effects.finish`);
- progress reports and log lines.

They are queued here, in order, and whichever thread made the decision runs
them (:meth:`Effects.flush`) once it has released the lock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from .._core.exceptions import InferenceError
from .logfile import LogFile
from .records import Final, StatusWriter
from .request import Request, build_result, err_dict, failer, resolver

__all__ = ["Effects"]

logger = logging.getLogger("cosmos_gradio_nb")


class Effects:
    """The pool's queue of effects; every method but :meth:`flush` is called under ``lock``."""

    def __init__(self, lock: Any, log: LogFile, writer: StatusWriter) -> None:
        self._lock = lock
        self.log_file = log
        self.writer = writer
        self._calls: list[Callable[[], None]] = []
        self._lines: list[str] = []

    @property
    def pending(self) -> bool:
        return bool(self._calls or self._lines)

    def call(self, fn: Callable[[], None]) -> None:
        """Run ``fn()`` after the lock is released (a progress report, say)."""
        self._calls.append(fn)

    def lines(self, lines: list[str]) -> None:
        """Append ``lines`` (already stamped and prefixed) to LOG_FILE."""
        self._lines.extend(lines)

    def app_line(self, text: str) -> None:
        """One ``[app]`` line in LOG_FILE (and the ``cosmos_gradio_nb`` logger)."""
        self._lines.append(f"{time.strftime('%H:%M:%S')} [app] {text}")
        logger.info(text)

    # -- outcomes -----------------------------------------------------------------------------
    def finish(
        self,
        request: Request,
        state: str,
        *,
        error: dict[str, Any] | None = None,
        exc: BaseException | None = None,
        reply: dict[str, Any] | None = None,
        how: str | None = None,
        complete: bool = True,
    ) -> bool:
        """Decide ``request``'s outcome, unless one was decided already; True if this one won.

        Its status.json is written, then its future completed (``complete``): with
        the result built from rank 0's ``reply``, with ``exc``, or cancelled. Once
        the request was asked to stop, whatever ends it ends it as ``cancelled``.
        """
        if request.outcome is not None:
            return False
        stop = None
        if request.stopping:
            if state != "cancelled":
                why = error.get("message") if error else state
                self.app_line(f"request {request.id} ended while stopping ({why}): cancelled")
            state, error, exc = "cancelled", None, None
            how = how or "restarted"
        if state == "cancelled":
            stop = {"how": how or "dequeued", "requested_at": request.stop_requested_at}
        request.outcome = state
        then = self._completion(request, state, exc) if complete else None
        final = Final(state, error, reply, stop, then)
        self.writer.finish(request)
        # Written by whichever thread flushes these effects, then the future completes.
        self._calls.append(lambda: self.writer.write_final(request, final))
        return True

    def record(self, request: Request, state: str, error: dict[str, Any] | None) -> None:
        """Decide an outcome whose future is already settled (or settled elsewhere)."""
        self.finish(request, state, error=error, complete=False)

    def fail(self, request: Request, error: BaseException) -> None:
        """Fail ``request`` with ``error``: its status.json says so, then its future raises it."""
        self.finish(request, "failed", error=err_dict(error), exc=error)

    @staticmethod
    def _completion(
        request: Request, state: str, exc: BaseException | None
    ) -> Callable[[dict[str, Any]], None]:
        future = request.future
        if state == "succeeded":
            return lambda status: resolver(future, build_result(request, status))()
        if state == "failed":
            return failer(future, exc or InferenceError(f"request {request.id} failed"))
        return lambda _status: future._force_cancel()

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

"""The caller's side of a request: ``InferenceFuture``, a ``concurrent.futures.Future``."""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures._base import (
    CANCELLED,
    CANCELLED_AND_NOTIFIED,
    PENDING,
    RUNNING,
)
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .._core import rich
from .._core.public import public
from .callbacks import ProgressCallbacks, run_callback

if TYPE_CHECKING:
    from .request import Request

__all__ = ["InferenceFuture", "RequestState", "attach_progress_bar"]

logger = logging.getLogger("cosmos_gradio_nb")

RequestState = Literal["queued", "running", "succeeded", "failed", "cancelled"]


@public
class InferenceFuture(concurrent.futures.Future):  # type: ignore[type-arg]
    """A ``concurrent.futures.Future`` for one request, with queue and progress state.

    It works with ``concurrent.futures.wait``, ``as_completed``,
    ``asyncio.wrap_future`` and ``add_done_callback``. ``result()`` returns an
    :class:`InferenceResult` or raises a :class:`CosmosGradioError` subclass.

    ``cancel()`` keeps its standard meaning: it removes a queued request and
    returns True, and returns False once the request runs. ``terminate()``
    also stops a running request: it asks the model to stop first (the worker
    stays loaded) and restarts only its worker group if the model has not
    stopped within ``STOP_GRACE`` seconds.
    """

    def __init__(self, request: Request) -> None:
        super().__init__()
        self._request = request
        self.progress: float | None = None
        """Fraction done (0..1) as reported by the model, or None before any report."""
        self.progress_message: str = ""
        """The model's last progress message (a tqdm bar's description, say)."""
        self.preview: str | None = None
        """Path of the latest live preview (the request folder's ``preview.jpg``), or None
        before the model sent one (``report_progress(..., preview=image)``)."""
        self._progress_callbacks: ProgressCallbacks | None = None

    # -- identity and state -------------------------------------------------------------
    @property
    def request_id(self) -> str:
        return self._request.id

    @property
    def params(self) -> dict[str, Any]:
        """The validated parameters sent to the workers (``output_dir`` included)."""
        return self._request.params

    @property
    def output_dir(self) -> Path:
        return Path(self._request.output_dir)

    @property
    def state(self) -> RequestState:
        """One of ``queued``, ``running``, ``succeeded``, ``failed``, ``cancelled``."""
        with self._condition:
            st = self._state
            if st == PENDING:
                return "queued"
            if st == RUNNING:
                return "running"
            if st in (CANCELLED, CANCELLED_AND_NOTIFIED):
                return "cancelled"
            return "failed" if self._exception is not None else "succeeded"

    @property
    def queue_position(self) -> int | None:
        """0 for the next request to run, 1 for the one after... None unless queued."""
        if self.state != "queued":
            return None
        return self._request.pool.queue_position(self._request)

    @property
    def log(self) -> list[str]:
        """Worker lines printed so far while this request ran."""
        return list(self._request.log)

    # -- control ------------------------------------------------------------------------
    def cancel(self) -> bool:
        """Remove the request from the queue; False if it already runs or ran."""
        if not super().cancel():
            return False
        # Tell wait()/as_completed() now rather than when the pool would have reached it.
        with self._condition:
            if self._state == CANCELLED:
                self._state = CANCELLED_AND_NOTIFIED
                for waiter in self._waiters:
                    waiter.add_cancelled(self)
        self._request.pool.forget(self._request)
        return True

    def terminate(self) -> bool:
        """Stop the request whether queued or running; True once it is stopped (cancelled).

        A queued request is removed at once. A running one is asked to stop: in the
        workers ``stop_requested()`` becomes True and the model's next
        ``report_progress`` raises ``StopRequested``; a model that stops so ends the
        request with its worker still loaded, its files kept as partial. One that
        has not stopped within ``STOP_GRACE`` seconds has its worker group killed and
        restarted (other groups keep serving). This call returns when the request
        has ended either way; the future then reads as cancelled, and its
        status.json says how it was stopped (``status["stop"]["how"]``:
        ``cooperative`` or ``restarted``).
        """
        if self.cancel():
            return True
        if self.done():
            return False
        if not self._request.pool.terminate(self._request):
            return self.cancelled()
        concurrent.futures.wait([self])
        return self.cancelled()

    def add_progress_callback(self, fn: Callable[[InferenceFuture], None]) -> None:
        """Call ``fn(future)`` after progress reports, then read ``progress``.

        Callbacks run on the library's callback threads, never on the thread that
        watches the workers, and in order with this future's done-callbacks. Reports
        that arrive while a callback still runs are folded into one call.
        """
        if self._progress_callbacks is None:
            self._progress_callbacks = ProgressCallbacks()
        self._progress_callbacks.add(fn)

    # -- used by the pool ---------------------------------------------------------------
    def _start(self) -> bool:
        """Mark running; False if the caller cancelled it first."""
        with self._condition:
            if self._state != PENDING:
                return False
            self._state = RUNNING
            return True

    def _unstart(self) -> None:
        """Back to queued: the request was never delivered to a worker."""
        with self._condition:
            if self._state == RUNNING:
                self._state = PENDING

    def _set_progress(
        self, fraction: float | None, message: str, preview: str | None = None
    ) -> None:
        self.progress = fraction
        self.progress_message = message
        if preview is not None:
            self.preview = preview
        if self._progress_callbacks is not None:
            self._progress_callbacks.notify(self)

    def add_done_callback(self, fn: Callable[[concurrent.futures.Future[Any]], object]) -> None:
        """Call ``fn(future)`` once the request ends, on the library's callback threads.

        Not on the thread that completed the future (the engine's): a callback that
        blocks, waits for another request or closes the app must not stall it. Done
        callbacks of one future run in order, after its progress callbacks. On a
        future already done, ``fn`` runs at once in the calling thread, as the
        standard ``Future`` does.
        """
        if self.done():
            super().add_done_callback(fn)
            return

        def hand_off(future: concurrent.futures.Future[Any]) -> None:
            run_callback(self, lambda: fn(future), of=fn)

        super().add_done_callback(hand_off)

    def _force_cancel(self) -> None:
        """Cancel a running future (after terminate): wake result(), wait() and callbacks."""
        with self._condition:
            if self._state != RUNNING:
                return
            self._state = PENDING
        self.cancel()

    def __repr__(self) -> str:
        extra = ""
        state = self.state
        if state == "queued":
            extra = f" position={self.queue_position}"
        elif state == "running" and self.progress is not None:
            extra = f" progress={self.progress:.0%}"
        return f"<InferenceFuture {self.request_id} {state}{extra}>"

    def _repr_html_(self) -> str:
        return rich.future_html(self)

    def _ipython_display_(self) -> None:
        # A live progress bar while it runs, then the result's rich display.
        rich.display_future(self)


def attach_progress_bar(futures: Sequence[InferenceFuture], label: str) -> None:
    """One tqdm.auto bar over a batch (``map``'s), advanced by done-callbacks (no thread of
    its own); the local and the connected app both use it."""
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return
    bar = tqdm(total=len(futures), desc=label, unit="req")
    lock = threading.Lock()
    remaining = [len(futures)]

    def advance(_: concurrent.futures.Future[Any]) -> None:
        with lock:
            bar.update(1)
            remaining[0] -= 1
            if remaining[0] == 0:
                bar.close()

    for future in futures:
        future.add_done_callback(advance)

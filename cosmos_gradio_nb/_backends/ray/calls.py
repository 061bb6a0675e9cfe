"""One thread for every Ray call the backend waits on, and for its deadlines.

The Ray backend has many calls out at once: per rank a long poll for its events
and the call carrying the current request (whose answer is the reply). Rather
than one blocked thread per call, each call's result is turned into a future by
Ray itself (``ObjectRef.future()``: no thread of ours waits), whose completion
puts it on one queue; one thread, :class:`CallWaiter`'s, takes the results off
that queue in the order they completed and runs their handlers. The same thread
runs the backend's deadlines (a forced stop's last resort) and work handed back
to it (a reply whose outputs were copied on another thread).

Why not one ``ray.wait`` over every outstanding call: ``ray.wait`` cannot be told
of a call made after it started waiting, and the call carrying a request is made
by whoever sends it, at any moment; its answer would wait for the next wake-up.
The futures' callbacks are Ray's ``ray.wait`` machinery without that gap
(measured on this machine: the same round trip as a ``ray.wait`` on that one ref).

Handlers run one at a time, in completion order, on that one thread, so what they
share needs no lock between them; they must not block (a copy of outputs back
from a node goes to the file mover's threads).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["CallWaiter", "Handler"]

logger = logging.getLogger("cosmos_gradio_nb")

Handler = Callable[[Any, BaseException | None], None]
"""Called with a call's value and None, or None and the exception it raised."""


class CallWaiter:
    """Waits on Ray calls and deadlines with one thread (see the module docstring)."""

    def __init__(self, name: str = "cosmos-ray-calls") -> None:
        self._queue: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._pending: dict[int, Any] = {}  # id -> the ref, held until its handler ran
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def watch(self, ref: Any, handler: Handler) -> None:
        """Run ``handler`` on this thread once the call ``ref`` answered (or failed)."""
        key = next(self._order)
        with self._lock:
            if self._closed:
                return
            self._pending[key] = ref

        def done(future: Any) -> None:
            self._queue.put(lambda: self._finish(key, future, handler))

        ref.future().add_done_callback(done)

    def post(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on this thread, after what is already queued."""
        self._queue.put(fn)

    def after(self, seconds: float, fn: Callable[[], None]) -> None:
        """Run ``fn`` on this thread ``seconds`` from now (unless closed first)."""
        with self._lock:
            heapq.heappush(self._timers, (time.monotonic() + seconds, next(self._order), fn))
        self._queue.put(None)  # wake up: the next deadline may be sooner

    @property
    def pending(self) -> int:
        """Calls whose handler has not run yet."""
        with self._lock:
            return len(self._pending)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread; handlers and deadlines not run by then never run."""
        with self._lock:
            self._closed = True
            self._pending.clear()
            self._timers.clear()
        self._queue.put(None)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _finish(self, key: int, future: Any, handler: Handler) -> None:
        with self._lock:
            if self._pending.pop(key, None) is None:
                return  # closed meanwhile
        exc = future.exception()
        handler(None if exc is not None else future.result(), exc)

    def _due(self) -> tuple[list[Callable[[], None]], float | None]:
        """Deadlines passed now, and seconds until the next one (None: none left)."""
        now = time.monotonic()
        due = []
        with self._lock:
            while self._timers and self._timers[0][0] <= now:
                due.append(heapq.heappop(self._timers)[2])
            wait = self._timers[0][0] - now if self._timers else None
        return due, wait

    def _run(self) -> None:
        while True:
            due, wait = self._due()
            for fn in due:
                self._call(fn)
            if due:
                continue
            try:
                item = self._queue.get(timeout=wait)
            except queue.Empty:
                continue
            with self._lock:
                if self._closed:
                    return
            if item is not None:
                self._call(item)

    @staticmethod
    def _call(fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:  # a bug in one handler must not end every rank's events
            logger.exception("cosmos_gradio_nb: error in a Ray call handler")

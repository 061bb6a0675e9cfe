"""Which future a call of ``infer_func`` created, so the page can follow it.

``create_gradio_UI(infer_func=f)`` calls ``f`` itself, whatever ``f`` is: an
app's ``infer``, a wrapper around it, a lambda, the blocking ``GradioApp.infer``.
To still show progress and the queue position, and to stop the request on
Cancel, the page runs ``f`` inside :func:`tracking` with a :class:`Tracker`;
``_BaseApp.submit`` hands every future it creates to :func:`register`, which
gives it to the tracker of the calling context (if any). The page then follows
that future while ``f`` runs, and shows what ``f`` returns when it returns.

The same context says who asked: :data:`request_source` is ``"python"`` unless the
page set it (``"page"`` for Generate, ``"api"`` for its endpoints) around the call,
so ``submit`` records where a request came from even through a wrapper of ``infer``
that does not pass it on.

Standard library only: ``_app`` imports this on every ``submit``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

__all__ = ["Tracker", "register", "request_source", "tracking"]


class Tracker:
    """The futures created during one call of ``infer_func``; ``changed`` is set on each."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._futures: list[Future[Any]] = []
        self._listeners: list[Callable[[Future[Any]], None]] = []
        self.changed = threading.Event()

    def add(self, future: Future[Any]) -> None:
        with self._lock:
            self._futures.append(future)
            listeners = list(self._listeners)
        self.changed.set()
        for fn in listeners:
            fn(future)

    def add_listener(self, fn: Callable[[Future[Any]], None]) -> None:
        """Call ``fn(future)`` for each future registered from now on (in the caller's thread)."""
        with self._lock:
            self._listeners.append(fn)

    @property
    def futures(self) -> list[Future[Any]]:
        with self._lock:
            return list(self._futures)

    @property
    def latest(self) -> Future[Any] | None:
        """The most recent future: the one whose progress the page shows."""
        with self._lock:
            return self._futures[-1] if self._futures else None


_current: ContextVar[Tracker | None] = ContextVar("cosmos_gradio_tracker", default=None)

request_source: ContextVar[str] = ContextVar("cosmos_gradio_request_source", default="python")
"""Who submits from the current context: ``"python"`` (the default), ``"page"`` or ``"api"``.

The page sets it around each call of ``infer_func``; ``submit`` reads it when it is
not given a ``source``. Set it with ``token = request_source.set(...)`` and reset it
with ``request_source.reset(token)``.
"""


def register(future: Future[Any]) -> None:
    """Give ``future`` to the tracker of the calling context; nothing outside :func:`tracking`."""
    tracker = _current.get()
    if tracker is not None:
        tracker.add(future)


@contextmanager
def tracking(tracker: Tracker) -> Iterator[Tracker]:
    """Within this block (this thread or context), futures made by ``submit`` go to ``tracker``."""
    token = _current.set(tracker)
    try:
        yield tracker
    finally:
        _current.reset(token)

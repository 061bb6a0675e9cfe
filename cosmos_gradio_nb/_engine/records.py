"""The one writer of ``status.json``: every record of every request, in order, from the app.

Why one writer
--------------
``status.json`` used to be written by rank 0 when it finished and by the app
when a request ended otherwise; in a group of two ranks a rank could die while
rank 0 finished, and whichever wrote last won (``succeeded`` over ``failed``).
Now the worker never writes it. The app decides every state under the pool's
lock and this module writes the records, with two rules that make a wrong
record impossible:

- *the first outcome wins*: a request's outcome (succeeded, failed, cancelled)
  is decided once, under the pool's lock (:meth:`Effects.finish
  <cosmos_gradio_nb._engine.effects.Effects.finish>`); any later decision is
  ignored, and once a stop was asked for, every outcome is ``cancelled``;
- *one thread writes*, always the newest state it knows of a request. A record
  still waiting to be written is replaced by a newer one, and a final record is
  never followed by another.

When it writes
--------------
- ``queued`` as the request is accepted (``submit``), with its parameters, its
  source and the app's static keys (``EngineConfig.status_extra``: ``provenance``);
- ``running`` when it is dispatched, with its group and start time;
- its outcome, *before* its future completes: the writer completes the future
  right after writing (a ``succeeded`` with rank 0's files and returned keys, a
  ``failed`` with the error and the remote traceback, a ``cancelled`` with the
  files found so far listed as ``partial``), at once whatever ended it.

Final records are written first and at once (a future waits on them). A
``queued`` or ``running`` record is written :data:`WRITE_BEHIND` seconds after
it was noted (50 ms), unless the request has ended by then: a request that
runs for a few milliseconds gets its final record only, and one queued behind
others or running for seconds shows as such in History within 50 ms. Writing
every intermediate record at once cost a quarter of the engine's throughput on
short requests (``benchmarks/bench_engine.py``); the window keeps it.
:meth:`StatusWriter.close` writes everything still waiting.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._core.outputs import RESERVED_KEYS, base_status, finish_status, iso_time, write_status

if TYPE_CHECKING:
    from .request import Request

__all__ = ["WRITE_BEHIND", "Final", "StatusWriter"]

logger = logging.getLogger("cosmos_gradio_nb")

WRITE_BEHIND = 0.05  # seconds a queued or running record waits, in case the request ends first


@dataclass(frozen=True)
class Final:
    """A request's outcome as its record says it, and what completes its future."""

    state: str
    error: dict[str, Any] | None = None
    reply: dict[str, Any] | None = None  # rank 0's ``done``: returned keys, files, finish time
    stop: dict[str, Any] | None = None  # how a cancelled request was stopped
    complete: Callable[[dict[str, Any]], None] | None = None  # given the status written


@dataclass(slots=True)
class _Pending:
    """The newest record of one request not written yet (its group and start time are read
    from the request when it is written: the pool sets them before it says ``running``)."""

    state: str
    due: float = 0.0  # time.monotonic() from which it may be written
    final: Final | None = None


class StatusWriter:
    """One thread writing the records of every request (see the module docstring).

    Every method but :meth:`close` may be called with the pool's lock held: each
    only notes what to write and wakes the thread.
    """

    def __init__(self, model_name: str, extra: dict[str, Any], name: str) -> None:
        self._model_name = model_name
        self._extra = dict(extra)
        self._reserved = RESERVED_KEYS | frozenset(extra)
        self._cond = threading.Condition(threading.Lock())
        self._finals: collections.deque[tuple[Request, _Pending]] = collections.deque()
        # Queued and running records, oldest first (so also by due time); an OrderedDict
        # gives its first item in O(1) (a dict rescans the holes its pops leave).
        self._waiting: collections.OrderedDict[Request, _Pending] = collections.OrderedDict()
        self._closing = False
        self._idle = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # -- what the pool tells it (any thread) -------------------------------------------------
    def accepted(self, request: Request) -> None:
        self._note(request, "queued")

    def started(self, request: Request) -> None:
        self._note(request, "running")

    def finish(self, request: Request, final: Final) -> None:
        """Write ``final`` next, then call its ``complete``; nothing is written for it after."""
        with self._cond:
            if request.final_recorded:
                return
            request.final_recorded = True
            self._waiting.pop(request, None)
            self._finals.append((request, _Pending(final.state, final=final)))
            if self._idle:
                self._cond.notify()

    def _note(self, request: Request, state: str) -> None:
        with self._cond:
            if request.final_recorded:
                return
            pending = self._waiting.get(request)
            if pending is not None:
                pending.state = state
                return
            self._waiting[request] = _Pending(state, time.monotonic() + WRITE_BEHIND)
            if self._idle and len(self._waiting) == 1:  # it waits for nothing: wake it
                self._cond.notify()

    def close(self, timeout: float = 30.0) -> None:
        """Write everything still waiting, then end the thread."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    # -- the thread --------------------------------------------------------------------------
    def _next(self) -> tuple[Request, _Pending] | None:
        """The next record to write: a final one, else the oldest one that is due."""
        with self._cond:
            while True:
                if self._finals:
                    return self._finals.popleft()
                wait: float | None = None
                if self._waiting:
                    oldest = next(iter(self._waiting.values()))
                    wait = oldest.due - time.monotonic()
                    if wait <= 0 or self._closing:
                        return self._waiting.popitem(last=False)
                elif self._closing:
                    return None
                self._idle = True
                self._cond.wait(wait)
                self._idle = False

    def _run(self) -> None:
        while (item := self._next()) is not None:
            request, pending = item
            try:
                status = self._record(request, pending)
            except Exception:  # a bug here must not leave a future waiting forever
                logger.exception("cosmos_gradio_nb: the record of %s could not be made", request.id)
                status = {"id": request.id, "state": pending.final and pending.final.state}
            else:
                try:
                    write_status(request.output_dir, status)
                except OSError as exc:
                    logger.warning(
                        "cosmos_gradio_nb: status.json of request %s not written: %s",
                        request.id,
                        exc,
                    )
            final = pending.final
            if final is not None and final.complete is not None:
                try:
                    final.complete(status)
                except Exception:
                    logger.exception("cosmos_gradio_nb: error while completing %s", request.id)

    def _record(self, request: Request, pending: _Pending) -> dict[str, Any]:
        final = pending.final
        queued = pending.state == "queued"
        status = base_status(
            request_id=request.id,
            model_name=self._model_name,
            params=request.params,
            output_dir=request.output_dir,
            queued_at=request.queued_at,
            started_at=None if queued else request.started_at,
            group=None if queued else request.group,
            state=pending.state,
            source=request.source,
            extra=self._extra,
        )
        if final is None:
            return status
        reply = final.reply or {}
        succeeded = final.state == "succeeded"
        finish_status(
            status,
            final.state,
            returned=reply.get("returned") if succeeded else None,
            error=final.error,
            files=reply.get("files") if succeeded else None,
            finished_at=reply.get("finished_at") if succeeded else None,
            collect=os.path.isdir(request.output_dir),
            reserved=self._reserved,
        )
        if request.preview is not None:
            status["preview"] = request.preview
        if final.stop is not None:
            stop = dict(final.stop)
            with contextlib.suppress(TypeError, ValueError, OverflowError):
                stop["requested_at_iso"] = iso_time(stop.get("requested_at"))
            status["stop"] = stop
        return status

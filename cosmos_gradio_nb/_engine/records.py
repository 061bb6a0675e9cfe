"""The writer of ``status.json``: every record of every request, in order, from the app.

Why the app writes every record
-------------------------------
``status.json`` used to be written by rank 0 when it finished and by the app
when a request ended otherwise; in a group of two ranks a rank could die while
rank 0 finished, and whichever wrote last won (``succeeded`` over ``failed``).
Now the worker never writes it. The app decides every state under the pool's
lock, and two rules make a wrong record impossible:

- *the first outcome wins*: a request's outcome (succeeded, failed, cancelled)
  is decided once, under the pool's lock (:meth:`Effects.finish
  <cosmos_gradio_nb._engine.effects.Effects.finish>`); any later decision is
  ignored, and once a stop was asked for, every outcome is ``cancelled``;
- *records only move forward*: ``queued`` < ``running`` < the outcome. Each
  request's records are written under that request's own lock, and a record is
  written only if it is further along than the one on disk, so whichever
  thread gets there last, an earlier state never replaces a later one.

When and where it writes
------------------------
- The outcome is written *before* the future completes: a succeeded record
  with rank 0's files and returned keys, a failed one with the error and the
  remote traceback, a cancelled one with the files found so far as
  ``partial`` and how it was stopped. While no model group is busy, the thread
  that decided it (the one reading the workers' replies, the timer's, a
  caller's) writes it right after releasing the pool's lock and completes the
  future: the result of a lone request waits for one file write, no hand-over.
  While groups are busy, the outcome is handed to the writer's thread, ahead of
  any queued or running record, so the thread reading the workers goes on
  reading (and dispatching) while the disk is written.
- ``queued`` (as a request is accepted, with its parameters, its source and the
  app's static keys: ``EngineConfig.status_extra``, ``provenance``) and
  ``running`` (when it is dispatched, with its group) are written by that
  thread, :data:`WRITE_BEHIND` seconds (50 ms) after they were noted, unless
  the request has ended by then, and at most :data:`INTERMEDIATE_RATE` a second:
  a request that runs for a few milliseconds gets its final record only; one
  queued behind others or running for seconds shows as such in History within
  50 ms; a burst of thousands of requests has its queued records written
  progressively, oldest first (each its final record before its future
  completes, whatever happens). A file written costs this app's machine about
  150 us of CPU (create, write, rename); writing every intermediate record at
  once cost a third of the engine's throughput on short requests
  (``benchmarks/bench_engine.py``). :meth:`StatusWriter.close` writes what
  still waits.
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

__all__ = ["INTERMEDIATE_RATE", "WRITE_BEHIND", "Final", "StatusWriter"]

logger = logging.getLogger("cosmos_gradio_nb")

WRITE_BEHIND = 0.05  # seconds a queued or running record waits, in case the request ends first
IDLE_SLEEP = 1.0  # seconds with nothing to write after which the thread sleeps until woken
INTERMEDIATE_RATE = 200.0  # queued/running records written a second, at most


@dataclass(frozen=True)
class Final:
    """A request's outcome as its record says it, and what completes its future."""

    state: str
    error: dict[str, Any] | None = None
    reply: dict[str, Any] | None = None  # rank 0's ``done``: returned keys, files, finish time
    stop: dict[str, Any] | None = None  # how a cancelled request was stopped
    complete: Callable[[dict[str, Any]], None] | None = None  # given the status written


# How far along each record is: one is written only over a record further behind.
_RANK = {"queued": 1, "running": 2}
_FINAL_RANK = 3


@dataclass(slots=True)
class _Pending:
    """A queued or running record not written yet (its group and start time are read from
    the request when it is written: the pool sets them before it says ``running``)."""

    state: str
    due: float  # time.monotonic() from which it may be written


class StatusWriter:
    """Writes every request's records (see the module docstring).

    :meth:`accepted`, :meth:`started` and :meth:`finish` may be called with the
    pool's lock held (each only takes note); :meth:`write_final` is called after
    the lock is released, by the thread that decided the outcome.
    """

    def __init__(
        self,
        model_name: str,
        extra: dict[str, Any],
        name: str,
        *,
        contended: Callable[[], bool] = lambda: False,
    ) -> None:
        self._model_name = model_name
        self._contended = contended  # groups are busy: hand outcomes to the thread
        self._extra = dict(extra)
        self._reserved = RESERVED_KEYS | frozenset(extra)
        self._cond = threading.Condition(threading.Lock())
        self._finals: collections.deque[tuple[Request, Final]] = collections.deque()
        self._busy = False  # the thread is writing
        self._next_intermediate = 0.0  # time.monotonic() from which another may be written
        # Queued and running records, oldest first (so also by due time); an OrderedDict
        # gives its first item in O(1) (a dict rescans the holes its pops leave).
        self._waiting: collections.OrderedDict[Request, _Pending] = collections.OrderedDict()
        self._closing = False
        self._idle = False
        self._asleep = False  # waiting with no deadline: a new record must wake it
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # -- what the pool tells it ----------------------------------------------------------------
    def accepted(self, request: Request) -> None:
        self._note(request, "queued")

    def started(self, request: Request) -> None:
        self._note(request, "running")

    def finish(self, request: Request) -> None:
        """``request`` has its outcome: what of it still waits to be written never will be."""
        with self._cond:
            request.final_recorded = True
            self._waiting.pop(request, None)

    def write_final(self, request: Request, final: Final) -> None:
        """Write ``request``'s final record, then call ``final.complete``: here if the writer's
        thread is idle, else on it, next (call after the pool's lock is released)."""
        with self._cond:
            if self._busy or self._finals or self._contended():
                self._finals.append((request, final))
                if self._idle:
                    self._cond.notify()
                return
        self._complete(request, final)

    def _complete(self, request: Request, final: Final) -> None:
        status = self._write(request, final.state, final)
        if final.complete is not None:
            try:
                final.complete(status)
            except Exception:
                logger.exception("cosmos_gradio_nb: error while completing %s", request.id)

    def _note(self, request: Request, state: str) -> None:
        with self._cond:
            if request.final_recorded:
                return
            pending = self._waiting.get(request)
            if pending is not None:
                pending.state = state
                return
            self._waiting[request] = _Pending(state, time.monotonic() + WRITE_BEHIND)
            if self._asleep:  # else it wakes by itself within WRITE_BEHIND: no thread switch
                self._asleep = False
                self._cond.notify()

    def close(self, timeout: float = 30.0) -> None:
        """Write what still waits, then end the thread."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    # -- writing -------------------------------------------------------------------------------
    def _write(self, request: Request, state: str, final: Final | None) -> dict[str, Any]:
        """Write one record, unless one further along is on disk already; return it."""
        rank = _FINAL_RANK if final is not None else _RANK[state]
        try:
            status = self._record(request, state, final)
        except Exception:  # a bug here must not leave a future waiting forever
            logger.exception("cosmos_gradio_nb: the record of %s could not be made", request.id)
            return {"id": request.id, "state": state}
        with request.record_lock:
            if request.recorded >= rank:
                return status
            try:
                write_status(request.output_dir, status)
            except OSError as exc:
                logger.warning(
                    "cosmos_gradio_nb: status.json of request %s not written: %s", request.id, exc
                )
            request.recorded = rank
        return status

    def _next(self) -> tuple[Request, Final | _Pending] | None:
        """A final record handed over, else the oldest queued or running one once it is due;
        None once closed and drained.

        With nothing waiting it wakes every WRITE_BEHIND seconds to look (a record noted
        meanwhile costs its caller no wake-up), and sleeps until woken only after a second
        with nothing to do.
        """
        with self._cond:
            self._busy = False
            quiet_since = time.monotonic()
            while True:
                if self._finals:
                    self._busy = True
                    return self._finals.popleft()
                now = time.monotonic()
                wait: float | None = WRITE_BEHIND
                if self._waiting:
                    oldest = next(iter(self._waiting.values()))
                    wait = max(oldest.due, self._next_intermediate) - now
                    if wait <= 0 or self._closing:
                        self._busy = True
                        self._next_intermediate = now + 1.0 / INTERMEDIATE_RATE
                        return self._waiting.popitem(last=False)
                elif self._closing:
                    return None
                elif now - quiet_since > IDLE_SLEEP:
                    wait = None
                    self._asleep = True
                self._idle = True
                self._cond.wait(wait)
                self._idle = self._asleep = False

    def _run(self) -> None:
        while (item := self._next()) is not None:
            request, record = item
            if isinstance(record, Final):
                self._complete(request, record)
            else:
                self._write(request, record.state, None)

    def _record(self, request: Request, state: str, final: Final | None) -> dict[str, Any]:
        queued = state == "queued"
        status = base_status(
            request_id=request.id,
            model_name=self._model_name,
            params=request.params,
            output_dir=request.output_dir,
            queued_at=request.queued_at,
            started_at=None if queued else request.started_at,
            group=None if queued else request.group,
            state=state,
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
            collect=not succeeded and os.path.isdir(request.output_dir),
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

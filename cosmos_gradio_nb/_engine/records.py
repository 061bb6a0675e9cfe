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
  still waiting to be written is replaced by a newer one (a burst of requests
  that finish before their ``queued`` record was written gets only its final
  record), and a final record is never followed by another.

When it writes
--------------
- ``queued`` as the request is accepted (``submit``), with its parameters, its
  source and the app's static keys (``EngineConfig.status_extra``: ``provenance``);
- ``running`` when it is dispatched, with its group and start time;
- its outcome, *before* its future completes: the writer completes the future
  right after writing (a ``succeeded`` with rank 0's files and returned keys, a
  ``failed`` with the error and the remote traceback, a ``cancelled`` with the
  files found so far listed as ``partial``), at once whatever ended it.

Final records are written before waiting ones (a future waits on them); the
``queued`` and ``running`` records follow within milliseconds when the writer
is not busy. :meth:`StatusWriter.close` writes everything still waiting.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._core.outputs import RESERVED_KEYS, base_status, finish_status, iso_time, write_status

if TYPE_CHECKING:
    from .request import Request

__all__ = ["Final", "StatusWriter"]

logger = logging.getLogger("cosmos_gradio_nb")


@dataclass(frozen=True)
class Final:
    """A request's outcome as its record says it, and what completes its future."""

    state: str
    error: dict[str, Any] | None = None
    reply: dict[str, Any] | None = None  # rank 0's ``done``: returned keys, files, finish time
    stop: dict[str, Any] | None = None  # how a cancelled request was stopped
    complete: Callable[[dict[str, Any]], None] | None = None  # given the status written


@dataclass
class _Pending:
    """The newest record of one request not written yet."""

    fields: dict[str, Any] = field(default_factory=dict)  # state, group, started_at
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
        self._finals: collections.deque[Request] = collections.deque()
        # oldest first; an OrderedDict pops its first item in O(1) (a dict rescans its holes)
        self._waiting: collections.OrderedDict[Request, _Pending] = collections.OrderedDict()
        self._closing = False
        self._idle = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # -- what the pool tells it (any thread) -------------------------------------------------
    def accepted(self, request: Request) -> None:
        self._note(request, {"state": "queued"})

    def started(self, request: Request) -> None:
        self._note(
            request,
            {"state": "running", "group": request.group, "started_at": request.started_at},
        )

    def finish(self, request: Request, final: Final) -> None:
        """Write ``final`` next, then call its ``complete``; nothing is written for it after."""
        with self._cond:
            if request.final_recorded:
                return
            request.final_recorded = True
            pending = self._waiting.pop(request, None) or _Pending()
            pending.final = final
            pending.fields.update(group=request.group, started_at=request.started_at)
            self._waiting[request] = pending
            self._finals.append(request)
            if self._idle:
                self._cond.notify()

    def _note(self, request: Request, fields: dict[str, Any]) -> None:
        with self._cond:
            if request.final_recorded:
                return
            pending = self._waiting.get(request)
            if pending is None:
                self._waiting[request] = _Pending(dict(fields))
            else:
                pending.fields.update(fields)
            if self._idle:
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
        with self._cond:
            while not self._waiting:
                if self._closing:
                    return None
                self._idle = True
                self._cond.wait()
                self._idle = False
            if self._finals:
                request = self._finals.popleft()
                return request, self._waiting.pop(request)
            return self._waiting.popitem(last=False)

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
        fields = pending.fields
        final = pending.final
        status = base_status(
            request_id=request.id,
            model_name=self._model_name,
            params=request.params,
            output_dir=request.output_dir,
            queued_at=request.queued_at,
            started_at=fields.get("started_at"),
            group=fields.get("group"),
            state=str(fields.get("state", "queued")),
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

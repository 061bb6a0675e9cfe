"""A running request's own ending: its ranks' replies, a peer's held error, a stop.

Design
------
Every rank of a group gets each request and answers ``done``, ``error`` or
(after a stop) ``stopped``. The request ends when every rank has answered, or
earlier when one fails; the first outcome decided is the only one
(``effects.py``), so nothing that arrives later can turn a failure or a stop
into a success.

- *An error fails the request at once*, and the other ranks get
  ``PEER_GRACE`` to answer before the group is restarted (a rank 0 stuck in
  a collective with a failed peer never will). The record is written then, not
  after the grace.
- *A lost peer is held*: when a rank dies, its peers' collectives fail too,
  and a peer's "connection closed by peer" can reach the pool before the
  death does. The death is the cause and must be what the request fails with,
  so an error that looks like a lost peer (``failures.lost_peer``) is held for
  up to ``deadlines.HOLD_S``: a death reported meanwhile fails the request as a
  crash; otherwise (or once every rank has answered) the held error fails it.
- *A stop is asked for first*: :meth:`Replies.stop` sends the ranks ``stop``
  (the model sees ``stop_requested()``, its next ``report_progress`` raises
  ``StopRequested``); once they all answered, the request is cancelled and the
  group serves the next one, still loaded. A group still busy ``STOP_GRACE``
  seconds later is killed and restarted (:meth:`Replies.stop_overdue`). Once a
  stop was asked for, whatever ends the request ends it as cancelled.

Every method is called with the pool's lock held, like the supervisor's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from . import deadlines, failures
from .backend import SendError, WorkerBackend
from .effects import Effects
from .groups import AfterStop, Group, GroupState, move
from .request import Request, err_dict_from_reply
from .timer import Timer

__all__ = ["Replies"]

S = GroupState


class Replies:
    """Ends running requests (see the module docstring); the pool routes replies here."""

    def __init__(
        self,
        *,
        stop_grace: float,
        effects: Effects,
        timer: Timer,
        backend: Callable[[], WorkerBackend],
        stop_group: Callable[[Group, AfterStop], None],
        freed: Callable[[Group], None],
    ) -> None:
        self.stop_grace = stop_grace
        self._effects = effects
        self._timer = timer
        self._backend = backend  # the pool makes its backend after this object
        self._stop_group = stop_group
        self._freed = freed  # a group went back to IDLE: check its health, dispatch

    def reply(self, group: Group, rank: int, msg: dict[str, Any]) -> None:
        """``rank`` of ``group`` answered its running request."""
        request = group.request
        if request is None or msg.get("id") != request.id:
            return  # a late reply for a request already failed or terminated
        request.replies[rank] = msg
        if msg.get("type") == "error" and request.outcome is None and not request.stopping:
            unanswered = len(request.replies) < group.size
            if unanswered and request.held is None and failures.lost_peer(msg):
                # Maybe the echo of a peer's death: let the death, if it comes, be the cause.
                request.held = (rank, msg)
                self._timer.set_deadline(group, "hold_deadline", deadlines.HOLD_S)
            else:
                self._fail(group, request, rank, msg)
        if len(request.replies) == group.size:
            self._all_answered(group, request)

    def held_due(self, group: Group) -> None:
        """No death followed a held error: it fails the request now."""
        request = group.request
        group.hold_deadline = None
        if request is not None and request.held is not None and request.outcome is None:
            self._fail(group, request, *request.held)

    def stop(self, group: Group, request: Request) -> None:
        """Ask ``request``, running on ``group``, to stop; kill the group if it cannot be asked."""
        if request.stopping:
            return
        request.stop_requested_at = time.time()
        self._effects.app_line(
            f"request {request.id}: asking the model to stop (group {group.index} is "
            f"restarted if it still runs in {self.stop_grace:g} s)"
        )
        try:
            self._backend().send(group.index, {"type": "stop", "id": request.id})
        except SendError:  # its processes are going: stop it the hard way now
            self.stop_overdue(group)
        else:
            self._timer.set_deadline(group, "stop_deadline", self.stop_grace)

    def stop_overdue(self, group: Group) -> None:
        """A request asked to stop did not: cancel it and restart its group."""
        request = group.request
        if request is not None:
            self._effects.app_line(
                f"request {request.id} did not stop within {self.stop_grace:g} s (STOP_GRACE): "
                f"restarting group {group.index}"
            )
            self._effects.finish(request, "cancelled", how="restarted")
        self._stop_group(group, AfterStop.RESTART)

    def _fail(self, group: Group, request: Request, rank: int, msg: dict[str, Any]) -> None:
        """``rank``'s error reply fails ``request`` now; the other ranks get PEER_GRACE."""
        group.hold_deadline = None
        error = failures.inference_failed(group, rank, request, msg)
        self._effects.finish(request, "failed", error=err_dict_from_reply(msg), exc=error)
        if group.request is request and len(request.replies) < group.size:
            self._timer.set_deadline(group, "peer_deadline", deadlines.PEER_GRACE)

    def _all_answered(self, group: Group, request: Request) -> None:
        """Every rank answered: the request ends, and the group is free."""
        group.request = None
        group.peer_deadline = group.hold_deadline = group.stop_deadline = None
        move(group, S.IDLE)
        if request.stopping:
            self._effects.finish(request, "cancelled", how="cooperative")
        elif request.outcome is None and request.held is not None:
            self._fail(group, request, *request.held)  # all answered: nobody died
        elif request.outcome is None:
            self._effects.finish(request, "succeeded", reply=request.replies.get(0))
        self._freed(group)

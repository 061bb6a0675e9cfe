"""The life of the pool's model groups: start, fail, restart, stop, give up, retry, close.

Design
------
:class:`~.pool.WorkerPool` is one state machine behind one lock. The pool keeps
the public calls, the routing of the backend's events and the dispatch of
queued requests; what happens to a *group* is decided here:

- launching a new incarnation through the backend (a backend that cannot even
  start it counts as a failed start);
- a rank that dies: while starting, a failed start; while serving (or idle),
  a crash that fails the running request and restarts the group at once (only
  failed starts back off, ``_backoff``: a restart that reached ready proved
  the group loads, so the next crash starts from nothing again);
- a deadline the timer found passed (``deadlines.py`` says which): the running
  request's timeout (the request fails, the group restarts), the other ranks
  still busy after one failed (the group restarts), a start-up too slow (a
  failed start), a backoff or retry time come (the group starts again);
- counting failed starts: a group that never served is given up at its first
  (a broken factory fails fast), one that served only after
  ``MAX_START_FAILURES`` in a row; a given-up group is retried after
  ``retry_after`` seconds, doubling up to ten times that, or at once on request;
- stopping a group (killed, or asked to close for a graceful stop) and, once
  its last rank is gone, doing what was decided when it was stopped
  (:class:`~.groups.AfterStop`): restart it, give it up, or leave it stopped
  because the app is closing;
- the pool-wide outcomes: ``ready`` once every group started or was given up,
  ``startup_error`` while every group is given up, ``closed`` once every group
  stopped.

These were methods of the pool, interleaved with the request queue; apart,
each side reads in one sitting, and the pool's class stays the size of its
public calls, its events and its dispatch.

Under the lock
--------------
The supervisor is no thread and has no lock of its own: the pool calls each of
its methods with the pool's lock held, from a caller's thread (start,
terminate, restart, close), a backend's thread (events) or the timer thread
(deadlines). So the groups still change under one lock, and every state change
goes through :func:`~.groups.move`, the one transition table. The supervisor
works on the pool's data: the groups' list, the :class:`~.effects.Effects`
queue (futures are completed, status.json written and lines logged once the
lock is released), the backend, and the pool's :class:`~.timer.Timer` (to set a
group's deadlines and wake it). Failing the queued requests when every group
is given up stays with the queue: the pool hands the supervisor that function.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable

from .._core.exceptions import WorkerStartupError
from . import deadlines, failures
from .backend import Died, GroupSpec, WorkerBackend
from .config import EngineConfig
from .deadlines import Due
from .effects import Effects
from .groups import AfterStop, Group, GroupState, move
from .request import err_dict_from_reply
from .timer import Timer

__all__ = ["MAX_START_FAILURES", "Supervisor"]

logger = logging.getLogger("cosmos_gradio_nb")

MAX_START_FAILURES = 5  # consecutive failed starts of a group that once served before giving up
S = GroupState


def _backoff(n: int) -> float:
    """Seconds before the ``n``-th consecutive restart: at once, then 1, 2, 4... up to 30."""
    return 0.0 if n <= 1 else min(30.0, 0.5 * 2 ** (n - 1))


class Supervisor:
    """Starts, stops, restarts and gives up the pool's groups (see the module docstring).

    Every method is called with the pool's lock held; none blocks.
    """

    backend: WorkerBackend
    """Set by the pool once it made it (the backend needs the pool's event handler first)."""

    def __init__(
        self,
        config: EngineConfig,
        groups: list[Group],
        effects: Effects,
        timer: Timer,
        *,
        fail_pending: Callable[[BaseException], None],
    ) -> None:
        self.config = config
        self.groups = groups
        self._effects = effects
        self._timer = timer
        self._fail_pending = fail_pending  # fail every queued request with this error
        self.closing = False
        """The pool is closing (or broken): a group that stops stays stopped."""
        self.ready = threading.Event()
        """Set once every group started or was given up (and while closing)."""
        self.closed = threading.Event()
        """Set once every group is stopped."""
        self.startup_error: WorkerStartupError | None = None
        """Why no group can serve, while every group is given up (see :meth:`raise_if_given_up`)."""

    def raise_if_given_up(self) -> None:
        """Raise a new exception saying why no group can serve, while every group is given up.

        Each refused call raises its own copy: the stored one, raised again and
        again, would keep every raise's frames in its traceback. (No local holds
        it either: a frame of its traceback holding it would make a cycle.)
        """
        if self.startup_error is not None:
            raise failures.fresh(self.startup_error)

    # ------------------------------------------------------------------ starting
    def start_all(self) -> None:
        """Launch the first incarnation of every group."""
        for group in self.groups:
            self.launch(group)

    def launch(self, group: Group) -> None:
        """Ask the backend for a new incarnation of ``group`` (already STARTING)."""
        group.incarnation += 1
        group.ready_ranks.clear()
        group.peer_deadline = group.restart_at = None
        group.tails.clear()
        self._timer.set_deadline(group, "start_deadline", self.config.startup_timeout)
        self._effects.app_line(
            f"starting group {group.index} ({group.size} rank(s), {self.backend.name})"
        )
        spec = GroupSpec(
            index=group.index,
            size=group.size,
            incarnation=group.incarnation,
            factory=self.config.factory,
            env=dict(self.config.worker_env, COSMOS_GRADIO_GROUP=str(group.index)),
            sys_path=self.config.sys_path,
            cwd=self.config.cwd,
        )
        try:
            self.backend.start(spec)
        except Exception as exc:  # nothing started, so no Gone will come: act as if it had
            logger.exception("cosmos_gradio_nb: the backend could not start group %d", group.index)
            summary = f"{type(exc).__name__}: {exc}"
            self.start_failed(group, 0, summary, traceback.format_exc())
            if group.state is S.STOPPING:
                self.gone(group)

    def group_ready(self, group: Group) -> None:
        """Every rank of the STARTING ``group`` is ready: it may serve (the pool dispatches)."""
        move(group, S.IDLE)
        group.start_deadline = None
        group.start_failures = 0
        group.error = None
        if group.ever_ready:
            group.restarts += 1
        group.ever_ready = True
        self.startup_error = None
        ranks = self.backend.ranks(group.index)
        where = ", ".join(
            f"r{r.rank} pid {r.pid} on {(r.device and 'GPU ' + r.device) or 'CPU'}"
            + (f" @ {r.node}" if self.backend.name != "local" else "")
            for r in ranks
        )
        self._effects.app_line(f"group {group.index} ready ({where})")
        self._update_ready()

    def restart(self, group: Group) -> None:
        """Start a RESTARTING or FAILED ``group`` again (its backoff or retry time came)."""
        if group.ever_ready or group.give_ups:
            self._effects.app_line(f"restarting group {group.index}")
        if group.state is S.FAILED:  # a retry: requests may queue for it again
            self.startup_error = None
            if not group.ever_ready:
                self.ready.clear()
        move(group, S.STARTING)
        self.launch(group)

    def restart_failed(self) -> int:
        """Start every given-up or backing-off group now; returns how many."""
        todo = [g for g in self.groups if g.state in (S.FAILED, S.RESTARTING)]
        for group in todo:
            self.restart(group)
        return len(todo)

    # ------------------------------------------------------------------ failing and stopping
    def start_failed(self, group: Group, rank: int, summary: str, details: str) -> None:
        """``rank`` of the STARTING ``group`` could not start: restart it, or give it up."""
        group.start_failures += 1
        error = failures.start_failed(group, rank, summary, details)
        self._effects.app_line(f"group {group.index} rank {rank} failed to start: {summary}")
        give_up = not group.ever_ready or group.start_failures >= MAX_START_FAILURES
        if not give_up:
            self.stop(group, AfterStop.RESTART, delay=_backoff(group.start_failures))
            return
        self.stop(group, AfterStop.GIVE_UP)
        group.error = error
        self._effects.app_line(
            f"group {group.index} given up after {group.start_failures} failed start(s); "
            "it is tried again later, or at once with app.restart_workers()"
        )
        if all(g.given_up for g in self.groups):
            self.startup_error = next(g.error for g in self.groups if g.error is not None)
            self._fail_pending(self.startup_error)
        self._update_ready()

    def start_timed_out(self, group: Group) -> None:
        """The STARTING ``group`` is not ready in time: a failed start of its first laggard."""
        rank = next((r for r in range(group.size) if r not in group.ready_ranks), 0)
        limit = self.config.startup_timeout
        tail = "\n".join(list(group.tail(rank))[-20:])
        summary = f"not ready after {limit:g} s (STARTUP_TIMEOUT); its last lines:"
        self.start_failed(group, rank, summary, tail or "(it printed nothing)")

    def died(self, group: Group, event: Died) -> None:
        """A rank of ``group`` died: a failed start, or a crash that fails its request.

        A crashed group restarts at once. It backs off only if its restarts keep
        failing (``start_failed``): a restart that reached ready proved the group
        loads, so an idle group killed again and again is back each time within
        one start-up, never after a growing wait.
        """
        tail = list(group.tail(event.rank))
        if group.state is S.STARTING:
            details = "\n".join(tail[-20:])
            self.start_failed(group, event.rank, f"process died ({event.how})", details)
            return
        if group.state not in (S.IDLE, S.BUSY):
            return  # we are stopping it already
        request = group.request
        self._effects.app_line(
            f"group {group.index} rank {event.rank} died ({event.how}); restarting the group"
        )
        if request is not None:
            self._effects.fail(request, failures.crashed(group, event, request, tail))
        self.stop(group, AfterStop.RESTART)

    def deadline_passed(self, group: Group, what: Due) -> None:
        """The timer found ``what`` due for ``group`` (see ``deadlines.py``): act on it."""
        if what is Due.REQUEST_TIMEOUT and group.request is not None:
            request = group.request
            error = failures.timed_out(group, request)
            self._effects.app_line(str(error))
            self._effects.fail(request, error)
            self.stop(group, AfterStop.RESTART)
        elif what is Due.PEER_GRACE:
            self._peers_stuck(group)
        elif what is Due.STARTUP:
            self.start_timed_out(group)
        elif what is Due.RESTART:
            self.restart(group)

    def _peers_stuck(self, group: Group) -> None:
        grace = deadlines.PEER_GRACE
        self._effects.app_line(
            f"group {group.index}: ranks still busy {grace:g} s after a peer failed; restarting"
        )
        request = group.request
        if request is not None:
            reply = next((r for r in request.replies.values() if r["type"] == "error"), None)
            self._effects.record(request, "failed", err_dict_from_reply(reply) if reply else None)
        self.stop(group, AfterStop.RESTART)

    def stop(
        self, group: Group, then: AfterStop, *, delay: float = 0.0, graceful: bool = False
    ) -> None:
        """Stop ``group``; once its ranks are gone, do ``then``; a restart waits ``delay`` s."""
        group.request = None
        group.peer_deadline = group.start_deadline = None
        group.after_stop = then
        group.restart_at = time.monotonic() + delay
        move(group, S.STOPPING)
        self.backend.stop(group.index, graceful=graceful)

    def gone(self, group: Group) -> None:
        """Every rank of ``group`` is gone: do what was decided when it was stopped."""
        if group.state is not S.STOPPING:  # every rank ended at once, unasked
            self.died(group, Died(group.index, group.incarnation, 0, "the group's processes ended"))
            if group.state is not S.STOPPING:
                return
        if self.closing or group.after_stop is AfterStop.STOP:
            move(group, S.STOPPED)
            self._note_stopped()
        elif group.after_stop is AfterStop.GIVE_UP:
            move(group, S.FAILED)
            group.give_ups += 1
            delay = min(
                self.config.retry_after * 2 ** (group.give_ups - 1), 10 * self.config.retry_after
            )
            self._timer.set_deadline(group, "restart_at", delay)
        elif group.restart_at is not None and group.restart_at > time.monotonic():
            move(group, S.RESTARTING)
            self._timer.wake()
        else:
            self.restart(group)

    # ------------------------------------------------------------------ closing
    def close(self) -> None:
        """The pool is closing: stop every group for good (an idle one gracefully)."""
        self.closing = True
        for group in self.groups:
            self._close_group(group)
        self.ready.set()

    def kill_stopping(self) -> None:
        """Closing took too long: kill the groups still stopping (a graceful stop lingers)."""
        for group in self.groups:
            if group.state is S.STOPPING:
                self.backend.stop(group.index)

    def backend_closed(self) -> None:
        """The backend is closed: nothing is left to wait for."""
        for group in self.groups:
            group.state = S.STOPPED
        self.closed.set()

    def broken(self) -> None:
        """The backend broke: nothing will answer, so every group is stopped as it is."""
        self.closing = True
        for group in self.groups:
            group.state = S.STOPPED  # no transition to wait for
        self.ready.set()
        self.closed.set()

    def _close_group(self, group: Group) -> None:
        if group.incarnation == 0:  # never started (the app failed before start())
            group.state = S.STOPPED
        elif group.state is S.IDLE:
            self.stop(group, AfterStop.STOP, graceful=True)  # the model's close() runs
        elif group.state in (S.STARTING, S.BUSY):
            self.stop(group, AfterStop.STOP)
        elif group.state in (S.RESTARTING, S.FAILED):
            move(group, S.STOPPED)
        elif group.state is S.STOPPING:
            group.after_stop = AfterStop.STOP
        self._note_stopped()

    # ------------------------------------------------------------------ pool-wide outcomes
    def _update_ready(self) -> None:
        if all(g.ever_ready or g.given_up for g in self.groups):
            self.ready.set()

    def _note_stopped(self) -> None:
        """Once every group is stopped, close() may go on."""
        if all(g.state is S.STOPPED for g in self.groups):
            self.closed.set()

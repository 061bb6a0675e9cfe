"""The shared request queue and the fault policy, over any worker-group backend.

Design
------
Callers (Python futures, UI events) append to one FIFO deque under the pool's
lock and, when a group is idle, send the request themselves: the round trip
costs one write, the worker, and one wake-up of the backend's thread.

The pool meets model groups only through a :class:`~.backend.WorkerBackend`:
it asks for a group to be started, sent a request or stopped, and handles the
events that come back (``_handle_locked`` below) on the backend's threads. One
timer thread enforces every deadline: a request's timeout, a group's start-up
timeout, the grace given to peer ranks after one failed, the backoff before a
restart and the retry of a group given up.

A *group* is ``GPUS_PER_MODEL`` ranks forming one torch.distributed job. Every
rank receives each request; rank 0's reply is the result, any rank's failure
fails it at once. A group whose process dies, hangs past its timeout or misses
a health check is stopped whole and restarted with backoff; its request fails
with a reason, queued requests wait for the next free group. Only consecutive
failed *starts* count toward giving a group up, and a given-up group is retried
later, so a transient fault never needs a new app.

Every accepted request has a status.json from the moment it is accepted
(``queued``), updated when it starts (``running``) and when it ends, written by
the app alone (``records.py``): the first outcome decided for a request is the
only one, and its record is on disk before its future completes.

Stopping a running request (:meth:`WorkerPool.terminate`) asks the model first
and restarts its group only if it has not stopped within ``STOP_GRACE``.

The engine is one state machine behind this pool's one lock, written in parts
that each read on their own:

- ``pool.py`` (here): the public calls, the queue, the backend's events and
  the dispatch of queued requests to idle groups;
- ``replies.py``: a running request's own ending (its ranks' replies, a peer's
  error held while a death may be on its way, a stop asked for);
- ``supervisor.py``: each group's lifecycle (launch, crash, restart with
  backoff, give up and retry, stop, close) and what a passed deadline does;
- ``health.py``: pings of idle groups, and the restart of one that is silent;
- ``deadlines.py``: which deadline is due and when the timer wakes next, as
  pure functions of the deadlines and a given time, tested without threads;
- ``timer.py``: the one thread that sleeps until the next deadline and hands
  what is due to the supervisor.

Every one of them runs under the lock (the supervisor and the timer's checks
are called with it held); what must happen outside it is queued in
``effects.py`` (records go to the status writer). User callbacks never run on
these threads (see ``callbacks.py``).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable

from .._core.exceptions import (
    AppClosedError,
    CosmosGradioError,
    QueueFullError,
)
from . import failures
from .backend import (
    BackendBroken,
    Died,
    Emit,
    Event,
    Gone,
    Output,
    Pong,
    Progress,
    Ready,
    Reply,
    SendError,
    StartFailed,
    WorkerBackend,
)
from .config import EngineConfig
from .deadlines import Due
from .effects import Effects
from .groups import AfterStop, Group, GroupState, IdleFirst, move
from .health import Health
from .logfile import LogFile
from .records import StatusWriter
from .replies import Replies
from .request import Request, RequestInfo, WorkerInfo, request_info
from .supervisor import Supervisor
from .timer import Timer

__all__ = ["BackendFactory", "WorkerPool"]

logger = logging.getLogger("cosmos_gradio_nb")

BackendFactory = Callable[[Emit], WorkerBackend]
S = GroupState


class WorkerPool:
    """Runs requests on model groups through a backend (see the module docstring)."""

    def __init__(self, config: EngineConfig, backend: BackendFactory) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._close_called = False
        self._pending: collections.deque[Request] = collections.deque()
        self._router = IdleFirst()
        self._groups = [Group(g, config.group_size) for g in range(config.num_groups)]
        log = LogFile(
            config.log_file, config.log_max_bytes, config.log_backups, echo=config.echo_logs
        )
        self._writer = StatusWriter(
            config.model_name,
            config.status_extra,
            name=f"cosmos-gradio-status-{id(self):x}",
            # read without the lock: a hint of whether replies are coming in
            contended=lambda: any(g.state is S.BUSY for g in self._groups),
        )
        self._effects = Effects(self._lock, log, self._writer)
        # The timer asks the supervisor, which is made next (it needs the timer) ...
        self._timer = Timer(
            self._lock,
            self._groups,
            self._effects,
            closing=lambda: self._supervisor.closing,
            on_due=self._deadline_passed,
            on_close_overdue=lambda: self._supervisor.kill_stopping(),
            name=f"cosmos-gradio-timer-{id(self):x}",
        )
        self._supervisor = Supervisor(
            config, self._groups, self._effects, self._timer, fail_pending=self._fail_pending_locked
        )
        self._health = Health(
            interval=config.health_interval,
            timeout=config.health_timeout,
            timer=self._timer,
            effects=self._effects,
            backend=lambda: self.backend,
            stop=lambda group, then: self._supervisor.stop(group, then),
        )
        self._replies = Replies(
            stop_grace=config.stop_grace,
            effects=self._effects,
            timer=self._timer,
            backend=lambda: self.backend,
            stop_group=lambda group, then: self._supervisor.stop(group, then),
            freed=self._freed,
        )
        # ... and the backend needs the pool's event handler before the supervisor can have it.
        try:
            self.backend = backend(self._emit)  # connects (to Ray, say) but starts no worker yet
        except BaseException:
            self._writer.close()
            raise
        self._supervisor.backend = self.backend

    def start(self) -> None:
        """Start every group (once): the constructor only connected the backend."""
        with self._lock:
            self._supervisor.start_all()
        self._timer.start()
        self._effects.flush()

    # ------------------------------------------------------------------ public API
    def submit(self, request: Request) -> None:
        """Queue ``request`` (its future is already attached) and start it if a group is free."""
        with self._lock:
            self._admit_locked(1)
            self._pending.append(request)
            self._writer.accepted(request)
            self._dispatch_locked()
        self._effects.flush()

    def submit_many(self, requests: list[Request]) -> None:
        """Queue all of ``requests``, in order, or none of them (the same checks as
        :meth:`submit`, made once for all under the lock: room for every one)."""
        with self._lock:
            self._admit_locked(len(requests))
            self._pending.extend(requests)
            for request in requests:
                self._writer.accepted(request)
            self._dispatch_locked()
        self._effects.flush()

    def _admit_locked(self, count: int) -> None:
        """Raise unless ``count`` more requests may be queued now."""
        if self._supervisor.closing:
            raise AppClosedError("the app is closed; create a new one to run more requests")
        self._supervisor.raise_if_given_up()
        limit = self.config.max_queue_size
        queued = len(self._pending)
        if limit is not None and queued + count > limit:
            more = "" if count == 1 else f"; {count} more do not fit"
            raise QueueFullError(
                f"{queued} requests are already queued (max_queue_size={limit}){more}; "
                "wait for some to finish or raise max_queue_size"
            )

    def requests(self) -> list[RequestInfo]:
        """Every running request (oldest first), then every queued one in queue order."""
        with self._lock:
            # (a request already failed may keep its group busy while its peers finish: not listed)
            running = [g.request for g in self._groups if g.request and g.request.outcome is None]
            running.sort(key=lambda r: r.started_at or 0.0)
            out = [request_info(r, None) for r in running]
            position = 0
            for queued in self._pending:
                if not queued.future.cancelled():
                    out.append(request_info(queued, position))
                    position += 1
        return out

    def queue_position(self, request: Request) -> int | None:
        with self._lock:
            position = 0
            for queued in self._pending:
                if queued is request:
                    return position
                if not queued.future.cancelled():
                    position += 1
        return None

    @property
    def queue_length(self) -> int:
        with self._lock:
            return sum(1 for r in self._pending if not r.future.cancelled())

    def forget(self, request: Request) -> None:
        """Drop a request cancelled while queued; its status.json says so."""
        with self._lock:
            with contextlib.suppress(ValueError):
                self._pending.remove(request)
            self._effects.record(request, "cancelled", None)
        self._effects.flush()

    def terminate(self, request: Request) -> bool:
        """Ask a running request to stop (returns at once; its future is cancelled when it ends).

        The ranks get a ``stop``; a group still running it ``STOP_GRACE`` seconds
        later is killed and restarted. False if the request is not running.
        """
        with self._lock:
            group = next((g for g in self._groups if g.request is request), None)
            if group is None:
                return False
            self._replies.stop(group, request)
        self._effects.flush()
        return True

    def restart_failed(self) -> int:
        """Start every given-up or backing-off group now; returns how many."""
        with self._lock:
            if self._supervisor.closing:
                return 0
            count = self._supervisor.restart_failed()
        self._effects.flush()
        return count

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until every group started (or was given up); raise if none could start."""
        if not self._supervisor.ready.wait(timeout):
            raise TimeoutError(f"workers not ready after {timeout} s")
        with self._lock:
            self._supervisor.raise_if_given_up()

    @property
    def closed(self) -> bool:
        """True once close() was called: new requests are refused."""
        return self._supervisor.closing

    @property
    def ready(self) -> bool:
        return self._supervisor.ready.is_set() and self._supervisor.startup_error is None

    def workers(self) -> list[WorkerInfo]:
        with self._lock:
            snapshot = [(g.index, _shown_state(g), g.request, g.restarts) for g in self._groups]
        return [
            WorkerInfo.of(index, state, request, restarts, rank)
            for index, state, request, restarts in snapshot
            for rank in self.backend.ranks(index)
        ]

    def close(self, timeout: float = 5.0) -> None:
        """Fail what is pending, stop every group (killed after ``timeout`` s), free everything."""
        with self._lock:
            first, self._close_called = not self._close_called, True
            if first and not self._supervisor.closing:  # (a broken backend stopped them all)
                self._timer.close_by(time.monotonic() + max(0.0, timeout))
                error = AppClosedError("the app was closed before this request finished")
                self._fail_all_locked(error)
                self._supervisor.close()
                self._timer.wake()
        self._effects.flush()
        if not first:
            self._supervisor.closed.wait(timeout + 5.0)
            return
        if not self._supervisor.closed.wait(timeout + 5.0):
            logger.warning("cosmos_gradio_nb: worker groups did not stop in time; killing them")
        self.backend.close()
        with self._lock:
            self._supervisor.backend_closed()
            self._timer.shut_down()
        self._timer.join(5.0)
        self._effects.flush()
        self._writer.close()
        self._effects.log_file.close()

    # ------------------------------------------------------------------ events (backend threads)
    def _emit(self, event: Event) -> None:
        with self._lock:
            try:
                self._handle_locked(event)
            except Exception:  # a bug here must not kill the backend's thread
                logger.exception("cosmos_gradio_nb: error while handling %r", event)
        self._effects.flush()

    def _handle_locked(self, event: Event) -> None:
        if isinstance(event, BackendBroken):
            self._broken_locked(event.message)
            return
        group = self._groups[event.group]
        if event.incarnation != group.incarnation:
            return  # about processes that were already replaced
        if isinstance(event, Output):
            self._on_output(group, event)
        elif isinstance(event, Progress):
            self._on_progress(group, event)
        elif isinstance(event, Pong):
            self._health.pong(group, event)
        elif isinstance(event, Reply):
            self._replies.reply(group, event.rank, event.msg)
        elif isinstance(event, Ready):
            self._on_ready(group, event.rank)
        elif isinstance(event, StartFailed):
            if group.state is S.STARTING:
                self._supervisor.start_failed(group, event.rank, event.summary, event.details)
        elif isinstance(event, Died):
            self._supervisor.died(group, event)
        elif isinstance(event, Gone):
            self._supervisor.gone(group)

    def _on_output(self, group: Group, event: Output) -> None:
        prefix = f"[g{group.index} r{event.rank}]"
        tagged = [f"{prefix} {line}" for line in event.lines]
        group.tail(event.rank).extend(tagged)
        if group.request is not None:
            group.request.add_log(tagged)
        stamp = time.strftime("%H:%M:%S")
        self._effects.lines([f"{stamp} {line}" for line in tagged])

    def _on_progress(self, group: Group, event: Progress) -> None:
        request = group.request
        if request is not None and request.id == event.request_id:
            fut, fraction, message, preview = (
                request.future,
                event.fraction,
                event.message,
                event.preview,
            )
            request.progress, request.message = fraction, message
            if preview is not None:
                request.preview = preview
            self._effects.call(lambda: fut._set_progress(fraction, message, preview))

    def _on_ready(self, group: Group, rank: int) -> None:
        group.ready_ranks.add(rank)
        if group.state is not S.STARTING or len(group.ready_ranks) < group.size:
            return
        self._supervisor.group_ready(group)
        self._freed(group)

    def _freed(self, group: Group) -> None:
        """``group`` is IDLE again (ready, or its request ended): watch it, give it work."""
        self._health.idle(group)
        self._dispatch_locked()

    # ------------------------------------------------------------------ deadlines (timer thread)
    def _deadline_passed(self, group: Group, what: Due) -> None:
        if what is Due.STOP_GRACE:
            self._replies.stop_overdue(group)
        elif what is Due.HELD_ERROR:
            self._replies.held_due(group)
        elif what is Due.HEALTH_PING:
            self._health.ping(group)
        elif what is Due.HEALTH_MISSED:
            self._health.missed(group)
        else:
            self._supervisor.deadline_passed(group, what)

    def _broken_locked(self, message: str) -> None:
        logger.error("cosmos_gradio_nb: %s", message)
        error = CosmosGradioError(f"internal error: {message}")
        self._fail_all_locked(error)
        self._supervisor.broken()

    def _dispatch_locked(self) -> None:
        while self._pending:
            group = self._router.choose(self._groups)
            if group is None:
                return
            request = self._pending.popleft()
            if not request.future._start():
                continue  # cancelled while queued
            request.started_at = time.time()
            request.group = group.index
            move(group, S.BUSY)
            group.request = request
            msg = {
                "type": "infer",
                "id": request.id,
                "params": request.params,
                "output_dir": request.output_dir,
                "queued_at": request.queued_at,
                "started_at": request.started_at,
            }
            try:
                self.backend.send(group.index, msg)
            except SendError:
                # The group died under us and its Died event is on its way: the request
                # never ran, so it goes back to the head of the queue.
                request.future._unstart()
                request.started_at = request.group = None
                self._pending.appendleft(request)
                self._supervisor.stop(group, AfterStop.RESTART)
                continue
            self._writer.started(request)
            if request.timeout is not None:
                request.deadline = time.monotonic() + request.timeout
                self._timer.wake_for(request.deadline)

    def _fail_pending_locked(self, error: BaseException) -> None:
        """Fail every queued request with ``error``; each gets its status.json."""
        for request in self._pending:
            if not request.future.cancelled():
                self._effects.fail(request, failures.fresh(error))  # a traceback of its own
        self._pending.clear()

    def _fail_all_locked(self, error: BaseException) -> None:
        """Fail every queued and every running request with ``error``."""
        self._fail_pending_locked(error)
        for group in self._groups:
            if group.request is not None:
                self._effects.fail(group.request, error)
                group.request = None


def _shown_state(group: Group) -> str:
    """A group's state for displays: ``unresponsive`` while restarting after a missed ping."""
    if group.unresponsive and group.state in (S.STOPPING, S.RESTARTING, S.STARTING):
        return "unresponsive"
    return group.state.value

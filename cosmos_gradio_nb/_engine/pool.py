"""The shared request queue and the fault policy, over any worker-group backend.

Design
------
Callers (Python futures, UI events) append to one FIFO deque under the pool's
lock and, when a group is idle, send the request themselves: the round trip
costs one write, the worker, and one wake-up of the backend's thread.

The pool meets model groups only through a :class:`~.backend.WorkerBackend`:
it asks for a group to be started, sent a request or stopped, and handles the
events that come back (``_on_*`` below) on the backend's threads. One timer
thread enforces every deadline: a request's timeout, a group's start-up
timeout, the grace given to peer ranks after one failed, the backoff before a
restart and the retry of a group given up. Which of them is due, and when the
timer wakes next, are pure functions of the deadlines and the time
(``deadlines.py``); the timer thread (``timer.py``) calls them under the lock
and hands what is due to ``_on_due`` below.

A *group* is ``GPUS_PER_MODEL`` ranks forming one torch.distributed job. Every
rank receives each request; rank 0's reply is the result, any rank's failure
fails it. A group whose process dies, hangs past its timeout or is terminated is
stopped whole and restarted with backoff; its request fails with a reason,
queued requests wait for the next free group. Only consecutive failed *starts*
count toward giving a group up, and a given-up group is retried later, so a
transient fault never needs a new app. Every accepted request ends with a
status.json in its folder, whichever way it ended.

User callbacks never run on these threads (see ``callbacks.py``).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from .._core.exceptions import (
    AppClosedError,
    CosmosGradioError,
    QueueFullError,
    WorkerStartupError,
)
from . import failures
from .backend import (
    BackendBroken,
    Died,
    Emit,
    Event,
    Gone,
    GroupSpec,
    Output,
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
from .logfile import LogFile
from .request import (
    Request,
    WorkerInfo,
    build_result,
    err_dict_from_reply,
    failer,
    resolver,
)
from .timer import Timer

__all__ = ["BackendFactory", "WorkerPool"]

logger = logging.getLogger("cosmos_gradio_nb")

BackendFactory = Callable[[Emit], WorkerBackend]
PEER_GRACE = 10.0  # seconds the other ranks get to finish after one rank failed
MAX_START_FAILURES = 5  # consecutive failed starts of a group that once served before giving up
S = GroupState


def _backoff(n: int) -> float:
    """Seconds before the ``n``-th consecutive restart: at once, then 1, 2, 4... up to 30."""
    return 0.0 if n <= 1 else min(30.0, 0.5 * 2 ** (n - 1))


class WorkerPool:
    """Runs requests on model groups through a backend (see the module docstring)."""

    def __init__(self, config: EngineConfig, backend: BackendFactory) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._pending: collections.deque[Request] = collections.deque()
        self._closing = False
        self._closed = threading.Event()
        self._ready = threading.Event()
        self._startup_error: WorkerStartupError | None = None
        self._router = IdleFirst()
        self._groups = [Group(g, config.group_size) for g in range(config.num_groups)]
        log = LogFile(
            config.log_file, config.log_max_bytes, config.log_backups, echo=config.echo_logs
        )
        self._effects = Effects(self._lock, log, config.model_name)
        self._timer = Timer(
            self._lock,
            self._groups,
            self._effects,
            closing=lambda: self._closing,
            on_due=self._on_due,
            on_close_overdue=self._kill_stopping_locked,
            name=f"cosmos-gradio-timer-{id(self):x}",
        )
        self.backend = backend(self._emit)  # connects (to Ray, say) but starts no worker yet

    def start(self) -> None:
        """Start every group (once): the constructor only connected the backend."""
        with self._lock:
            for group in self._groups:
                self._launch_locked(group)
        self._timer.start()
        self._effects.flush()

    # ------------------------------------------------------------------ public API
    def submit(self, request: Request) -> None:
        """Queue ``request`` (its future is already attached) and start it if a group is free."""
        with self._lock:
            if self._closing:
                raise AppClosedError("the app is closed; create a new one to run more requests")
            if self._startup_error is not None:
                raise self._startup_error
            limit = self.config.max_queue_size
            if limit is not None and len(self._pending) >= limit:
                raise QueueFullError(
                    f"{len(self._pending)} requests are already queued (max_queue_size={limit}); "
                    "wait for some to finish or raise max_queue_size"
                )
            self._pending.append(request)
            self._dispatch_locked()
        self._effects.flush()

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
        """Stop a running request by stopping its group, which then restarts."""
        with self._lock:
            group = next((g for g in self._groups if g.request is request), None)
            if group is None:
                return False
            self._effects.record(request, "cancelled", None)
            self._effects.app_line(
                f"request {request.id} terminated: restarting group {group.index}"
            )
            self._stop_locked(group, AfterStop.RESTART)
            self._effects.call(request.future._force_cancel)
        self._effects.flush()
        return True

    def restart_failed(self) -> int:
        """Start every given-up or backing-off group now; returns how many."""
        with self._lock:
            todo = [g for g in self._groups if g.state in (S.FAILED, S.RESTARTING)]
            if self._closing:
                return 0
            for group in todo:
                self._restart_locked(group)
        self._effects.flush()
        return len(todo)

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until every group started (or was given up); raise if none could start."""
        if not self._ready.wait(timeout):
            raise TimeoutError(f"workers not ready after {timeout} s")
        with self._lock:
            if self._startup_error is not None:
                raise self._startup_error

    @property
    def closed(self) -> bool:
        """True once close() was called: new requests are refused."""
        return self._closing

    @property
    def ready(self) -> bool:
        return self._ready.is_set() and self._startup_error is None

    def workers(self) -> list[WorkerInfo]:
        with self._lock:
            snapshot = [(g.index, g.state.value, g.request, g.restarts) for g in self._groups]
        return [
            WorkerInfo.of(index, state, request, restarts, rank)
            for index, state, request, restarts in snapshot
            for rank in self.backend.ranks(index)
        ]

    def close(self, timeout: float = 5.0) -> None:
        """Fail what is pending, stop every group (killed after ``timeout`` s), free everything."""
        with self._lock:
            first = not self._closing
            if first:
                self._closing = True
                self._timer.close_by(time.monotonic() + max(0.0, timeout))
                error = AppClosedError("the app was closed before this request finished")
                self._fail_all_locked(error)
                for group in self._groups:
                    self._close_group_locked(group)
                self._ready.set()
                self._timer.wake()
        self._effects.flush()
        if not first:
            self._closed.wait(timeout + 5.0)
            return
        if not self._closed.wait(timeout + 5.0):
            logger.warning("cosmos_gradio_nb: worker groups did not stop in time; killing them")
        self.backend.close()
        with self._lock:
            for group in self._groups:
                group.state = S.STOPPED  # the backend is closed: nothing is left to wait for
            self._closed.set()
            self._timer.shut_down()
        self._timer.join(5.0)
        self._effects.flush()
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
        elif isinstance(event, Reply):
            self._on_reply(group, event.rank, event.msg)
        elif isinstance(event, Ready):
            self._on_ready(group, event.rank)
        elif isinstance(event, StartFailed):
            if group.state is S.STARTING:
                self._start_failed_locked(group, event.rank, event.summary, event.details)
        elif isinstance(event, Died):
            self._on_died(group, event)
        elif isinstance(event, Gone):
            self._on_gone(group)

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
            fut, fraction, message = request.future, event.fraction, event.message
            self._effects.call(lambda: fut._set_progress(fraction, message))

    def _on_ready(self, group: Group, rank: int) -> None:
        group.ready_ranks.add(rank)
        if group.state is not S.STARTING or len(group.ready_ranks) < group.size:
            return
        move(group, S.IDLE)
        group.start_deadline = None
        group.start_failures = 0
        group.error = None
        if group.ever_ready:
            group.restarts += 1
        group.ever_ready = True
        self._startup_error = None
        ranks = self.backend.ranks(group.index)
        where = ", ".join(
            f"r{r.rank} pid {r.pid} on {(r.device and 'GPU ' + r.device) or 'CPU'}"
            + (f" @ {r.node}" if self.backend.name != "local" else "")
            for r in ranks
        )
        self._effects.app_line(f"group {group.index} ready ({where})")
        self._update_ready_locked()
        self._dispatch_locked()

    def _on_reply(self, group: Group, rank: int, msg: dict[str, Any]) -> None:
        request = group.request
        if request is None or msg.get("id") != request.id:
            return  # a late reply for a request already failed or terminated
        request.replies[rank] = msg
        if msg.get("type") == "error" and not request.failed:
            request.failed = True
            error = failures.inference_failed(group, rank, request, msg)
            self._effects.call(failer(request.future, error))
            if len(request.replies) < group.size:
                self._timer.set_deadline(group, "peer_deadline", PEER_GRACE)
        if len(request.replies) == group.size:
            self._finish_locked(group)

    def _finish_locked(self, group: Group) -> None:
        """Every rank replied: complete the request and free the group."""
        request = group.request
        assert request is not None
        group.request = None
        group.peer_deadline = None
        move(group, S.IDLE)
        if not request.failed:
            group.crashes = 0
            status = request.replies[0].get("status") or {}
            self._effects.call(resolver(request.future, build_result(request, status)))
        elif group.size > 1:
            # A peer failed: rank 0 may have written "succeeded"; the failure wins.
            error = next(r for r in request.replies.values() if r["type"] == "error")
            self._effects.record(request, "failed", err_dict_from_reply(error))
        self._dispatch_locked()

    def _on_died(self, group: Group, event: Died) -> None:
        tail = list(group.tail(event.rank))
        if group.state is S.STARTING:
            details = "\n".join(tail[-20:])
            self._start_failed_locked(group, event.rank, f"process died ({event.how})", details)
            return
        if group.state not in (S.IDLE, S.BUSY):
            return  # we are stopping it already
        request = group.request
        self._effects.app_line(
            f"group {group.index} rank {event.rank} died ({event.how}); restarting the group"
        )
        if request is not None:
            self._effects.fail(request, failures.crashed(group, event, request, tail))
        group.crashes += 1
        self._stop_locked(group, AfterStop.RESTART, delay=_backoff(group.crashes))

    def _on_gone(self, group: Group) -> None:
        if group.state is not S.STOPPING:  # every rank ended at once, unasked
            self._on_died(
                group, Died(group.index, group.incarnation, 0, "the group's processes ended")
            )
            if group.state is not S.STOPPING:
                return
        if self._closing or group.after_stop is AfterStop.STOP:
            move(group, S.STOPPED)
            self._note_stopped_locked()
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
            self._restart_locked(group)

    def _broken_locked(self, message: str) -> None:
        logger.error("cosmos_gradio_nb: %s", message)
        error = CosmosGradioError(f"internal error: {message}")
        self._closing = True
        self._fail_all_locked(error)
        for group in self._groups:
            group.state = S.STOPPED  # nothing will answer: no transition to wait for
        self._ready.set()
        self._closed.set()

    # ------------------------------------------------------------------ policy
    def _launch_locked(self, group: Group) -> None:
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
            self._start_failed_locked(group, 0, summary, traceback.format_exc())
            if group.state is S.STOPPING:
                self._on_gone(group)

    def _restart_locked(self, group: Group) -> None:
        if group.ever_ready or group.give_ups:
            self._effects.app_line(f"restarting group {group.index}")
        if group.state is S.FAILED:  # a retry: requests may queue for it again
            self._startup_error = None
            if not group.ever_ready:
                self._ready.clear()
        move(group, S.STARTING)
        self._launch_locked(group)

    def _stop_locked(
        self, group: Group, then: AfterStop, *, delay: float = 0.0, graceful: bool = False
    ) -> None:
        """Stop every rank of ``group``; once they are gone, do ``then``."""
        group.request = None
        group.peer_deadline = group.start_deadline = None
        group.after_stop = then
        group.restart_at = time.monotonic() + delay
        move(group, S.STOPPING)
        self.backend.stop(group.index, graceful=graceful)

    def _start_failed_locked(self, group: Group, rank: int, summary: str, details: str) -> None:
        group.start_failures += 1
        error = failures.start_failed(group, rank, summary, details)
        self._effects.app_line(f"group {group.index} rank {rank} failed to start: {summary}")
        give_up = not group.ever_ready or group.start_failures >= MAX_START_FAILURES
        if not give_up:
            self._stop_locked(group, AfterStop.RESTART, delay=_backoff(group.start_failures))
            return
        self._stop_locked(group, AfterStop.GIVE_UP)
        group.error = error
        self._effects.app_line(
            f"group {group.index} given up after {group.start_failures} failed start(s); "
            "it is tried again later, or at once with app.restart_workers()"
        )
        if all(g.given_up for g in self._groups):
            self._startup_error = next(g.error for g in self._groups if g.error is not None)
            self._fail_pending_locked(self._startup_error)
        self._update_ready_locked()

    def _update_ready_locked(self) -> None:
        if all(g.ever_ready or g.given_up for g in self._groups):
            self._ready.set()

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
                self._stop_locked(group, AfterStop.RESTART)
                continue
            if request.timeout is not None:
                request.deadline = time.monotonic() + request.timeout
                self._timer.wake_for(request.deadline)

    def _fail_pending_locked(self, error: BaseException) -> None:
        """Fail every queued request with ``error``; each gets its status.json."""
        for request in self._pending:
            if not request.future.cancelled():
                self._effects.fail(request, error)
        self._pending.clear()

    def _fail_all_locked(self, error: BaseException) -> None:
        """Fail every queued and every running request with ``error``."""
        self._fail_pending_locked(error)
        for group in self._groups:
            if group.request is not None:
                self._effects.fail(group.request, error)
                group.request = None

    def _close_group_locked(self, group: Group) -> None:
        if group.incarnation == 0:  # never started (the app failed before start())
            group.state = S.STOPPED
        elif group.state is S.IDLE:
            self._stop_locked(group, AfterStop.STOP, graceful=True)  # the model's close() runs
        elif group.state in (S.STARTING, S.BUSY):
            self._stop_locked(group, AfterStop.STOP)
        elif group.state in (S.RESTARTING, S.FAILED):
            move(group, S.STOPPED)
        elif group.state is S.STOPPING:
            group.after_stop = AfterStop.STOP
        self._note_stopped_locked()

    def _note_stopped_locked(self) -> None:
        """Once every group is stopped, close() may go on."""
        if all(g.state is S.STOPPED for g in self._groups):
            self._closed.set()

    # ------------------------------------------------------------------ deadlines (timer thread)
    def _on_due(self, group: Group, what: Due) -> None:
        """A deadline of ``group`` passed (``deadlines.due`` said which)."""
        if what is Due.REQUEST_TIMEOUT and group.request is not None:
            self._timed_out_locked(group, group.request)
        elif what is Due.PEER_GRACE:
            self._peers_stuck_locked(group)
        elif what is Due.STARTUP:
            self._start_timed_out_locked(group)
        elif what is Due.RESTART:
            self._restart_locked(group)

    def _kill_stopping_locked(self) -> None:
        """Closing took too long: kill the groups still stopping (a graceful stop lingers)."""
        for g in self._groups:
            if g.state is S.STOPPING:
                self.backend.stop(g.index)

    def _timed_out_locked(self, group: Group, request: Request) -> None:
        error = failures.timed_out(group, request)
        self._effects.app_line(str(error))
        self._effects.fail(request, error)
        self._stop_locked(group, AfterStop.RESTART)

    def _peers_stuck_locked(self, group: Group) -> None:
        self._effects.app_line(
            f"group {group.index}: ranks still busy {PEER_GRACE:g} s after a peer failed; restarting"
        )
        request = group.request
        if request is not None:
            reply = next((r for r in request.replies.values() if r["type"] == "error"), None)
            self._effects.record(request, "failed", err_dict_from_reply(reply) if reply else None)
        self._stop_locked(group, AfterStop.RESTART)

    def _start_timed_out_locked(self, group: Group) -> None:
        rank = next((r for r in range(group.size) if r not in group.ready_ranks), 0)
        limit = self.config.startup_timeout
        tail = "\n".join(list(group.tail(rank))[-20:])
        summary = f"not ready after {limit:g} s (STARTUP_TIMEOUT); its last lines:"
        self._start_failed_locked(group, rank, summary, tail or "(it printed nothing)")

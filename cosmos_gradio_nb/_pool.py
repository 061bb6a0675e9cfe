"""Worker processes, the shared request queue, and everything that can go wrong between them.

Design
------
One *dispatcher thread* owns every worker's file descriptors and waits on all of
them at once in one epoll set: the control sockets (replies, progress), the
stdout/stderr pipes (log lines) and a pidfd per process, which becomes readable
the instant the process dies. So a crash is noticed in milliseconds, not after a
timeout. How a worker process is started and read lives in ``_process.py``.

Callers (Python futures, UI events) append to one FIFO deque under a lock and,
when a group is idle, send the request themselves: the round trip costs one
socket write, the worker, and one wake-up of the dispatcher.

A *group* is ``GPUS_PER_MODEL`` ranks forming one torch.distributed job. Every
rank of a group receives each request; rank 0's reply is the result, any rank's
failure fails it. A group whose process dies, hangs past its timeout or is
terminated is killed whole and restarted (with backoff); its request fails with
a reason, queued requests wait for the next free group. Nothing is lost.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import selectors
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from ._exceptions import (
    AppClosedError,
    CosmosGradioError,
    InferenceError,
    InferenceTimeoutError,
    QueueFullError,
    WorkerCrashedError,
    WorkerStartupError,
)
from ._future import InferenceResult
from ._outputs import base_status, finish_status, write_status
from ._process import WorkerProcess, free_port, gpu_assignment, group_environment, signal_name
from ._request import (
    PoolConfig,
    Request,
    WorkerInfo,
    err_dict,
    err_dict_from_reply,
    failer,
    resolver,
)

__all__ = ["WorkerPool"]

logger = logging.getLogger("cosmos_gradio_nb")

MAX_REQUEST_LOG = 10_000  # lines kept per request
PEER_GRACE = 10.0  # seconds the other ranks get to finish after one rank failed
MAX_START_FAILURES = 5  # consecutive failed (re)starts before a group is given up
MAX_SLEEP = 1.0  # the dispatcher re-plans its timers at least this often (seconds)


class _Group:
    def __init__(self, index: int, ranks: list[WorkerProcess]) -> None:
        self.index = index
        self.ranks = ranks
        # starting -> idle <-> busy; -> restarting -> starting; failed/stopped are final
        self.state = "starting"
        self.request: Request | None = None
        self.restarts = 0
        self.start_failures = 0
        self.ever_ready = False
        self.restart_at: float | None = None
        self.peer_deadline: float | None = None
        self.expect_exit = False  # we killed it on purpose: no crash report
        self.error: WorkerStartupError | None = None  # why it was given up


class WorkerPool:
    """Starts the worker groups and runs requests on them (see the module docstring)."""

    def __init__(self, config: PoolConfig) -> None:
        self.config = config
        env = config.env
        self._lock = threading.Lock()
        self._pending: collections.deque[Request] = collections.deque()
        self._completions: list[Callable[[], None]] = []
        self._closing = False
        self._close_deadline = 0.0
        self._closed = threading.Event()
        self._ready = threading.Event()
        self._startup_error: WorkerStartupError | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        # One epoll set for the pool's life; only the dispatcher thread changes it.
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wake_r, selectors.EVENT_READ, ("wake", None, None))
        self._sleep_until = float("inf")  # when the dispatcher's current wait ends
        gpus = gpu_assignment(env.num_gpus)
        size = env.group_size
        self._groups = [
            _Group(
                g,
                [WorkerProcess(g, r, gpus[g * size + r], self._unregister) for r in range(size)],
            )
            for g in range(env.num_groups)
        ]
        env.log_file.parent.mkdir(parents=True, exist_ok=True)
        self._log: TextIO = open(env.log_file, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
        self._thread = threading.Thread(
            target=self._run, name=f"cosmos-gradio-dispatch-{id(self):x}", daemon=True
        )
        self._thread.start()

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
        self._run_completions()

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
        """Drop a cancelled request from the queue."""
        with self._lock, contextlib.suppress(ValueError):
            self._pending.remove(request)

    def terminate(self, request: Request) -> bool:
        """Stop a running request by killing its group, which then restarts."""
        with self._lock:
            group = next((g for g in self._groups if g.request is request), None)
            if group is None:
                return False
            self._write_parent_status(request, "cancelled", None)
            self._log_app(f"request {request.id} terminated: restarting group {group.index}")
            self._kill_group_locked(group, restart_delay=0.0)
            self._completions.append(request.future._force_cancel)
        self._wake()
        self._run_completions()
        return True

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until every group started (or failed); raise if none could start."""
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
            infos = []
            for g in self._groups:
                for rank in g.ranks:
                    infos.append(
                        WorkerInfo(
                            group=g.index,
                            rank=rank.rank,
                            gpu=rank.gpu,
                            pid=rank.proc.pid if rank.proc else None,
                            state=g.state,
                            request_id=g.request.id if g.request else None,
                            restarts=g.restarts,
                        )
                    )
            return infos

    def close(self, timeout: float = 5.0) -> None:
        """Fail what is pending, stop every worker (SIGKILL after ``timeout`` s), free everything."""
        with self._lock:
            if self._closing:
                already = True
            else:
                already = False
                self._closing = True
                self._close_deadline = time.monotonic() + max(0.0, timeout)
                error = AppClosedError("the app was closed before this request finished")
                for request in self._pending:
                    self._completions.append(failer(request.future, error))
                self._pending.clear()
                for g in self._groups:
                    if g.request is not None:
                        self._write_parent_status(g.request, "failed", err_dict(error))
                        self._completions.append(failer(g.request.future, error))
                        g.request = None
                    for rank in g.ranks:
                        if rank.conn is not None:
                            with contextlib.suppress(OSError):
                                rank.conn.send({"type": "shutdown"})
                self._ready.set()
        self._run_completions()
        self._wake()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout + 5.0)
        if not already:
            self._closed.wait(timeout + 5.0)

    # ------------------------------------------------------------------ helpers
    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def _run_completions(self) -> None:
        # Futures are completed outside the lock: their callbacks may call submit().
        while True:
            with self._lock:
                if not self._completions:
                    return
                todo, self._completions = self._completions, []
            for fn in todo:
                try:
                    fn()
                except Exception:
                    logger.exception("error while completing a request")

    def _log_app(self, text: str) -> None:
        self._write_lines([f"{time.strftime('%H:%M:%S')} [app] {text}"])
        logger.info(text)

    def _write_lines(self, lines: list[str]) -> None:
        if not lines:
            return
        block = "\n".join(lines) + "\n"
        with contextlib.suppress(ValueError, OSError):
            self._log.write(block)
        if self.config.echo_logs:
            with contextlib.suppress(Exception):
                sys.__stderr__.write(block)  # type: ignore[union-attr]

    def _write_parent_status(
        self, request: Request, state: str, error: dict[str, Any] | None
    ) -> None:
        status = base_status(
            request_id=request.id,
            model_name=self.config.env.model_name,
            params=request.params,
            output_dir=request.output_dir,
            queued_at=request.queued_at,
            started_at=request.started_at,
            group=request.group,
        )
        with contextlib.suppress(OSError):
            write_status(request.output_dir, finish_status(status, state, error=error))

    # ------------------------------------------------------------------ spawning
    def _spawn_group_locked(self, group: _Group) -> None:
        group.state = "starting"
        group.restart_at = None
        group.peer_deadline = None
        group.expect_exit = False
        size = len(group.ranks)
        env = group_environment(
            self.config.env, group.index, size, free_port(), self.config.worker_env
        )
        for rank in group.ranks:
            rank_env = dict(env, RANK=str(rank.rank), LOCAL_RANK=str(rank.rank))
            rank_env["CUDA_VISIBLE_DEVICES"] = rank.gpu
            init = {
                "type": "init",
                "factory": self.config.factory,
                "sys_path": self.config.sys_path,
                "group": group.index,
                "rank": rank.rank,
                "world_size": size,
            }
            rank.spawn(rank_env, init, self.config.cwd)
            # Each registration remembers its process: an event for a rank that was
            # respawned meanwhile is recognised as stale.
            for fd, kind in rank.handles():
                self._selector.register(fd, selectors.EVENT_READ, (kind, rank, rank.proc))
        self._log_app(
            f"starting group {group.index}: {size} rank(s) on GPU(s) "
            f"{','.join(r.gpu for r in group.ranks) or 'none (CPU)'}, "
            f"pids {', '.join(str(r.proc.pid) for r in group.ranks if r.proc)}"
        )

    # ------------------------------------------------------------------ dispatch
    def _dispatch_locked(self) -> None:
        while self._pending:
            group = next((g for g in self._groups if g.state == "idle"), None)
            if group is None:
                return
            request = self._pending.popleft()
            if not request.future._start():
                continue  # cancelled while queued
            request.started_at = time.time()
            request.group = group.index
            request.deadline = (
                time.monotonic() + request.timeout if request.timeout is not None else None
            )
            group.state = "busy"
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
                for rank in group.ranks:
                    assert rank.conn is not None
                    rank.conn.send(msg)
            except (OSError, AssertionError):
                # The group died under us and the dispatcher has not seen it yet:
                # the request never ran, so it goes back to the head of the queue.
                request.future._unstart()
                request.started_at = request.group = request.deadline = None
                group.request = None
                self._pending.appendleft(request)
                self._kill_group_locked(group, restart_delay=0.0)
                return
            if request.deadline is not None and request.deadline < self._sleep_until:
                self._wake()  # the dispatcher's wait must now end by this deadline

    def _complete_locked(self, group: _Group) -> None:
        """Every rank replied: finish the request and free the group."""
        request = group.request
        assert request is not None
        group.request = None
        group.peer_deadline = None
        group.state = "idle"
        if not request.failed:
            status = request.replies[0].get("status") or {}
            files = status.get("files") or {}
            videos = [Path(p) for p in files.get("videos", [])]
            images = [Path(p) for p in files.get("images", [])]
            other = [Path(p) for p in files.get("other", [])]
            result = InferenceResult(
                request_id=request.id,
                output_dir=Path(request.output_dir),
                files=videos + images + other,
                videos=videos,
                images=images,
                status=status,
                log=list(request.log),
                duration=float(status.get("duration") or 0.0),
            )
            group.start_failures = 0
            self._completions.append(resolver(request.future, result))
        elif len(group.ranks) > 1:
            # A peer failed: rank 0 may have written "succeeded"; the failure wins.
            error = next(r for r in request.replies.values() if r["type"] == "error")
            self._write_parent_status(request, "failed", err_dict_from_reply(error))
        self._dispatch_locked()

    def _on_reply(self, rank: WorkerProcess, msg: dict[str, Any]) -> None:
        group = self._groups[rank.group]
        kind = msg.get("type")
        if kind == "ready":
            self._drain_output(rank)  # the factory's own lines come first in the log
            rank.ready = True
            if group.state == "starting" and all(r.ready for r in group.ranks):
                group.state = "idle"
                if group.ever_ready:
                    group.restarts += 1
                group.ever_ready = True
                self._log_app(f"group {group.index} ready")
                self._update_ready_locked()
                self._dispatch_locked()
            return
        if kind == "startup_error":
            text = msg.get("traceback") or msg.get("message", "")
            self._startup_failed_locked(
                group, rank, f"{msg.get('error_type')}: {msg.get('message')}", text
            )
            return
        request = group.request
        if request is None or msg.get("id") != request.id:
            return  # a late reply for a request already failed or terminated
        if kind == "progress":
            fut = request.future
            fraction, message = msg.get("fraction"), msg.get("message", "")
            self._completions.append(lambda: fut._set_progress(fraction, message))
            return
        if kind not in ("done", "error"):
            return
        self._drain_output(rank)  # lines printed before the reply belong to this request
        request.replies[rank.rank] = msg
        if kind == "error" and not request.failed:
            request.failed = True
            error = InferenceError(
                f"{msg.get('error_type')}: {msg.get('message')}"
                + (f" (group {group.index}, rank {rank.rank})" if len(group.ranks) > 1 else ""),
                request_id=request.id,
                rank=rank.rank,
                error_type=msg.get("error_type", ""),
                remote_traceback=msg.get("traceback", ""),
            )
            self._completions.append(failer(request.future, error))
            if len(request.replies) < len(group.ranks):
                group.peer_deadline = time.monotonic() + PEER_GRACE
        if len(request.replies) == len(group.ranks):
            self._complete_locked(group)

    def _update_ready_locked(self) -> None:
        if all(g.ever_ready or g.state in ("failed", "stopped") for g in self._groups):
            if not any(g.state in ("idle", "busy", "starting", "restarting") for g in self._groups):
                first = next((g.error for g in self._groups if g.error is not None), None)
                self._startup_error = first or WorkerStartupError("no worker group could start")
                error = self._startup_error
                for request in self._pending:
                    self._completions.append(failer(request.future, error))
                self._pending.clear()
            self._ready.set()

    def _startup_failed_locked(
        self, group: _Group, rank: WorkerProcess, summary: str, details: str
    ) -> None:
        group.start_failures += 1
        error = WorkerStartupError(
            f"worker group {group.index} rank {rank.rank} failed to start: {summary}\n{details}".rstrip(),
            group=group.index,
            rank=rank.rank,
            remote_traceback=details,
        )
        self._log_app(f"group {group.index} rank {rank.rank} failed to start: {summary}")
        give_up = not group.ever_ready or group.start_failures >= MAX_START_FAILURES
        self._kill_group_locked(group, restart_delay=None if give_up else self._backoff(group))
        if give_up:  # _kill_group_locked marked it failed (stopped, if closing)
            group.error = error
            self._log_app(
                f"group {group.index} given up after {group.start_failures} failed start(s)"
            )
            self._update_ready_locked()

    def _backoff(self, group: _Group) -> float:
        n = group.start_failures
        return 0.0 if n <= 1 else min(30.0, 0.5 * 2 ** (n - 1))

    def _kill_group_locked(self, group: _Group, restart_delay: float | None) -> None:
        """SIGKILL every rank's process group; the dispatcher reaps them and restarts."""
        group.expect_exit = True
        group.request = None
        group.peer_deadline = None
        for rank in group.ranks:
            rank.kill()
        if restart_delay is None:
            group.state = "failed" if not self._closing else "stopped"
        else:
            group.state = "restarting"
            group.restart_at = time.monotonic() + restart_delay

    # ------------------------------------------------------------------ the dispatcher thread
    def _run(self) -> None:
        try:
            with self._lock:
                for group in self._groups:
                    self._spawn_group_locked(group)
            self._loop()
        except BaseException as exc:  # never die silently: fail what we hold
            logger.exception("cosmos_gradio_nb dispatcher crashed")
            error = CosmosGradioError(f"internal error in the dispatcher: {exc!r}")
            with self._lock:
                self._closing = True
                for request in self._pending:
                    self._completions.append(failer(request.future, error))
                self._pending.clear()
                for g in self._groups:
                    if g.request is not None:
                        self._completions.append(failer(g.request.future, error))
                        g.request = None
            self._ready.set()
            self._run_completions()
        finally:
            self._shutdown_processes()

    def _loop(self) -> None:
        while True:
            with self._lock:
                if self._closing and not any(r.alive for g in self._groups for r in g.ranks):
                    return
                timeout = self._next_timeout_locked()
                self._sleep_until = time.monotonic() + timeout
            events = self._selector.select(timeout)
            with self._lock:
                self._sleep_until = 0.0  # awake: submitters need not wake us
                for key, _ in events:
                    kind, owner, proc = key.data
                    if kind == "wake":
                        with contextlib.suppress(BlockingIOError):
                            os.read(self._wake_r, 4096)
                    elif owner is None or owner.proc is not proc or proc is None:
                        continue  # the rank was released or respawned in this batch
                    elif kind == "out":
                        self._drain_output(owner)
                    elif kind == "conn":
                        self._read_conn(owner)
                    elif kind == "pid":
                        self._on_exit(owner)
                self._check_timers_locked()
            self._run_completions()

    def _next_timeout_locked(self) -> float:
        now = time.monotonic()
        deadlines = []
        for g in self._groups:
            if g.request is not None and g.request.deadline is not None:
                deadlines.append(g.request.deadline)
            if g.peer_deadline is not None:
                deadlines.append(g.peer_deadline)
            if g.state == "restarting" and g.restart_at is not None:
                deadlines.append(g.restart_at)
        if self._closing:
            deadlines.append(self._close_deadline)
            deadlines.append(now + 0.05)  # poll for exits of processes without a pidfd
        # Waking at least once a second lets a submit with a far deadline (the
        # default WORKER_TIMEOUT is an hour) skip waking us: one syscall and one
        # thread switch less on every request.
        deadlines.append(now + MAX_SLEEP)
        return max(0.0, min(deadlines) - now)

    def _read_conn(self, rank: WorkerProcess) -> None:
        assert rank.conn is not None
        try:
            while rank.conn.poll():
                self._on_reply(rank, rank.conn.recv())
                if rank.conn is None:
                    return
        except (EOFError, OSError):
            self._on_exit(rank)

    def _drain_output(self, rank: WorkerProcess) -> None:
        lines = rank.read_lines()
        if not lines:
            return
        request = self._groups[rank.group].request
        stamp = time.strftime("%H:%M:%S")
        if request is not None and len(request.log) < MAX_REQUEST_LOG:
            request.log.extend(f"{rank.prefix} {line}" for line in lines)
        self._write_lines([f"{stamp} {rank.prefix} {line}" for line in lines])

    def _on_exit(self, rank: WorkerProcess) -> None:
        """A worker process ended (pidfd readable or control socket closed)."""
        proc = rank.proc
        if proc is None:
            return
        code = rank.reap(timeout=1.0)
        self._drain_output(rank)
        rank.release()
        group = self._groups[rank.group]
        if self._closing:
            return
        if group.expect_exit:
            # We killed the whole group (terminate, timeout, peer failure, failed start) and
            # set its state then: restart once its last rank is reaped.
            self._maybe_respawn_locked(group)
            return
        how = signal_name(code) or f"exit code {code}"
        tail = list(rank.tail)
        if group.state == "starting":
            details = "\n".join(tail[-20:])
            self._startup_failed_locked(group, rank, f"process died ({how})", details)
            self._maybe_respawn_locked(group)
            return
        request = group.request
        self._log_app(f"group {group.index} rank {rank.rank} died ({how}); restarting the group")
        if request is not None:
            error = WorkerCrashedError(
                f"worker group {group.index} rank {rank.rank} (pid {proc.pid}) died ({how}) while "
                f"running request {request.id}; the group is being restarted and queued "
                "requests will run after it. Last lines:\n" + "\n".join(tail[-10:]),
                request_id=request.id,
                group=group.index,
                rank=rank.rank,
                exitcode=code,
                signal_name=signal_name(code),
                last_log_lines=tail,
            )
            self._write_parent_status(request, "failed", err_dict(error))
            self._completions.append(failer(request.future, error))
        group.start_failures += 1
        self._kill_group_locked(group, restart_delay=self._backoff(group))
        self._maybe_respawn_locked(group)

    def _maybe_respawn_locked(self, group: _Group) -> None:
        if any(r.alive for r in group.ranks) or group.state != "restarting":
            return
        if group.restart_at is not None and group.restart_at <= time.monotonic():
            self._log_app(f"restarting group {group.index}")
            self._spawn_group_locked(group)

    def _unregister(self, fd: int) -> None:
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._selector.unregister(fd)

    def _check_timers_locked(self) -> None:
        now = time.monotonic()
        if self._closing:
            if now >= self._close_deadline:
                for g in self._groups:
                    self._kill_group_locked(g, restart_delay=None)
            for g in self._groups:
                for rank in g.ranks:
                    if rank.proc is not None and rank.proc.poll() is not None:
                        self._on_exit(rank)
            return
        for g in self._groups:
            request = g.request
            if request is not None and request.deadline is not None and now >= request.deadline:
                error = InferenceTimeoutError(
                    f"request {request.id} ran longer than its timeout of {request.timeout:g} s; "
                    f"worker group {g.index} was restarted",
                    request_id=request.id,
                    timeout=request.timeout,
                )
                self._log_app(str(error))
                self._write_parent_status(request, "failed", err_dict(error))
                self._completions.append(failer(request.future, error))
                self._kill_group_locked(g, restart_delay=0.0)
            elif g.peer_deadline is not None and now >= g.peer_deadline:
                self._log_app(
                    f"group {g.index}: ranks still busy {PEER_GRACE:g} s after a peer failed; restarting"
                )
                if g.request is not None:
                    error_reply = next(
                        (r for r in g.request.replies.values() if r["type"] == "error"), None
                    )
                    self._write_parent_status(
                        g.request,
                        "failed",
                        err_dict_from_reply(error_reply) if error_reply else None,
                    )
                self._kill_group_locked(g, restart_delay=0.0)
            if g.state == "restarting":
                self._maybe_respawn_locked(g)

    def _shutdown_processes(self) -> None:
        with self._lock:
            for g in self._groups:
                for rank in g.ranks:
                    if rank.proc is not None:
                        rank.kill()
                        with contextlib.suppress(Exception):
                            rank.reap(timeout=5)
                        self._drain_output(rank)
                        rank.release()
                    g.state = "stopped"
            self._selector.close()
            for fd in (self._wake_r, self._wake_w):
                with contextlib.suppress(OSError):
                    os.close(fd)
            with contextlib.suppress(Exception):
                self._log.close()
        self._closed.set()

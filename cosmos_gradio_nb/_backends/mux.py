"""One thread watching many worker processes: the local backend's, and each Ray node's.

:class:`ProcessMux` is one thread waiting on one epoll set that holds every
worker's control socket, output pipe and pidfd, so a death is seen the moment
it happens and a request's reply costs one wake-up. It starts and kills the
processes itself: a child's parent-death signal is tied to the thread that
forked it, so that thread must be one that lives as long as the processes.
The local backend and the Ray backend's rank actors both use it.

The thread never blocks on one process: messages are framed and read without
blocking, a bounded number of bytes per wake-up (``process.py``), so a worker
stopped in the middle of a message delays no other; a message to a worker whose
socket is full waits in that process's outbox, written when the socket is
writable again. A worker that sends bytes that are not a frame is stopped.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import selectors
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from .._engine.backend import SendError
from .process import WireError, WorkerProcess

__all__ = ["MuxEvent", "ProcessMux"]

logger = logging.getLogger("cosmos_gradio_nb")

DRAIN_BYTES = 16 * 1024 * 1024  # read at most this much of a dead process's last output


@dataclass(frozen=True, slots=True)
class MuxEvent:
    """What the mux saw of one process: ``started`` (the model's pid), ``message`` (a dict),
    ``lines``, ``died`` (the worker ended: its keeper says so, then cleans up), ``exit`` (the
    keeper ended too: everything is gone); or ``broken`` (the mux itself failed)."""

    kind: str
    key: Hashable
    message: dict[str, Any] | None = None
    lines: list[str] | None = None
    exitcode: int | None = None
    pid: int | None = None


class ProcessMux:
    """Owns worker processes by key; reports what they send, print and how they end.

    ``handler`` is called on the mux thread, one event at a time, never with a
    lock of the mux held. Lines a process printed are reported before any message
    it sent after them.
    """

    def __init__(
        self, handler: Callable[[MuxEvent], None], name: str = "cosmos-gradio-mux"
    ) -> None:
        self._handler = handler
        self._procs: dict[Hashable, WorkerProcess] = {}
        self._lock = threading.Lock()  # guards _commands and _procs for readers elsewhere
        self._commands: collections.deque[Callable[[], None]] = collections.deque()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._closing = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # -- called from any thread ------------------------------------------------------------
    def spawn(
        self, key: Hashable, prefix: str, env: dict[str, str], init: dict[str, Any], cwd: str
    ) -> None:
        """Start a worker process under ``key`` (on the mux thread, soon)."""
        self._post(lambda: self._spawn(key, prefix, env, init, cwd))

    def send(self, key: Hashable, msg: dict[str, Any]) -> None:
        """Send ``msg`` to the process now; :class:`SendError` if it is gone."""
        with self._lock:
            proc = self._procs.get(key)
        if proc is None:
            raise SendError(f"no worker process {key!r}")
        try:
            waiting = proc.send(msg)
        except OSError as exc:
            raise SendError(str(exc)) from exc
        if waiting:  # the socket is full: the mux thread writes the rest when it can
            self._post(lambda: self._watch_writable(key, proc))

    def stop(self, key: Hashable) -> None:
        """Stop the process and everything it started; ``exit`` follows.

        Its keeper is asked first (SIGTERM): it kills the worker and every
        descendant, even those that left the process group. If the keeper is not
        gone within its bound, the whole process group is SIGKILLed.
        """
        self._post(lambda: self._terminate(key))

    def pid(self, key: Hashable) -> int | None:
        """The model's pid once the worker said it, else its keeper's."""
        with self._lock:
            proc = self._procs.get(key)
        if proc is None:
            return None
        return proc.worker_pid or proc.pid

    def close(self, timeout: float = 10.0) -> None:
        """Kill every process, reap it, stop the thread (no event after this returns)."""
        self._post(self._begin_close)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    # -- the mux thread --------------------------------------------------------------------
    def _post(self, command: Callable[[], None]) -> None:
        with self._lock:
            self._commands.append(command)
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def _spawn(
        self, key: Hashable, prefix: str, env: dict[str, str], init: dict[str, Any], cwd: str
    ) -> None:
        proc = WorkerProcess(prefix, self._unregister)
        try:
            proc.spawn(env, init, cwd)
        except OSError as exc:  # cannot fork or exec (no memory, no descriptors left)
            proc.release()
            error = {"type": "startup_error", "error_type": type(exc).__name__}
            self._handler(MuxEvent("message", key, message={**error, "message": str(exc)}))
            self._handler(MuxEvent("exit", key))
            return
        with self._lock:
            self._procs[key] = proc
        for fd, kind in proc.handles():
            self._selector.register(fd, selectors.EVENT_READ, (kind, key, proc))

    def _watch_writable(self, key: Hashable, proc: WorkerProcess, on: bool = True) -> None:
        if self._procs.get(key) is not proc or proc.conn is None:
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if on else 0)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._selector.modify(proc.conn.fileno(), events, ("conn", key, proc))

    def _terminate(self, key: Hashable) -> None:
        proc = self._procs.get(key)
        if proc is not None:
            proc.terminate()

    def _begin_close(self) -> None:
        self._closing = True
        for proc in list(self._procs.values()):
            proc.terminate()

    def _kill_overdue(self) -> float:
        """SIGKILL processes past their stop bound; seconds until the next bound (or 1)."""
        now = time.monotonic()
        wait = 1.0
        for proc in list(self._procs.values()):
            if proc.kill_at is None:
                continue
            if now >= proc.kill_at:
                proc.kill()
                proc.kill_at = now + 1.0  # and again, until it is reaped
            wait = min(wait, max(0.0, proc.kill_at - now))
        return wait

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # never die silently: whoever waits on us must hear
            logger.exception("cosmos_gradio_nb: the worker-process thread failed")
            with contextlib.suppress(Exception):
                self._handler(MuxEvent("broken", None, lines=[repr(exc)]))
        finally:
            for key, proc in list(self._procs.items()):
                proc.terminate()  # the keeper stops what the model started; SIGKILL after 5 s
                with contextlib.suppress(Exception):
                    proc.reap(timeout=5)
                proc.release()
                self._procs.pop(key, None)
            self._selector.close()
            for fd in (self._wake_r, self._wake_w):
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _loop(self) -> None:
        while True:
            while True:
                with self._lock:
                    if not self._commands:
                        break
                    command = self._commands.popleft()
                command()
            if self._closing:
                for key, proc in list(self._procs.items()):
                    if proc.poll() is not None:
                        self._on_exit(key, proc, report=False)
                if not self._procs:
                    return
            wait = self._kill_overdue()
            events = self._selector.select(min(wait, 0.05) if self._closing else wait)
            for sel_key, mask in events:
                if sel_key.data is None:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 4096)
                    continue
                kind, key, proc = sel_key.data
                if self._procs.get(key) is not proc or not proc.alive:
                    continue  # released or replaced earlier in this batch
                if kind == "out":
                    self._report_lines(key, proc)
                elif kind == "report":
                    self._on_report(key, proc)
                elif kind == "conn":
                    if mask & selectors.EVENT_WRITE and not proc.flush():
                        self._watch_writable(key, proc, on=False)
                    if mask & selectors.EVENT_READ:
                        self._read_conn(key, proc)
                else:
                    self._on_exit(key, proc)

    def _report_lines(
        self, key: Hashable, proc: WorkerProcess, max_bytes: int | None = None
    ) -> None:
        lines = proc.read_lines() if max_bytes is None else proc.read_lines(max_bytes)
        if lines:
            self._handler(MuxEvent("lines", key, lines=lines))

    def _read_conn(self, key: Hashable, proc: WorkerProcess) -> None:
        if proc.conn is None:
            return
        try:
            messages, eof = proc.read_messages()
        except WireError as exc:  # not our protocol: the worker is broken, stop it
            self._handler(MuxEvent("lines", key, lines=[f"[protocol error: {exc}; stopping]"]))
            proc.close_conn()
            proc.terminate()
            return
        if messages:
            self._report_lines(key, proc)  # what it printed before sending these
        for msg in messages:
            if msg.get("type") == "started":
                pid = msg.get("pid")
                proc.worker_pid = pid if isinstance(pid, int) else None
                self._handler(MuxEvent("started", key, pid=proc.worker_pid))
                continue
            self._handler(MuxEvent("message", key, message=msg))
        if eof:
            if proc.pidfd is None:  # no pidfd (old kernel): the socket's end is all we get
                self._on_exit(key, proc)
            else:  # the worker is gone; its keeper is cleaning up, and its pidfd will tell
                proc.close_conn()

    def _on_report(self, key: Hashable, proc: WorkerProcess) -> None:
        """The keeper says the worker ended: tell now; the keeper's own exit follows."""
        code = proc.read_report()
        if code is not None:
            self._report_lines(key, proc)  # its last words first
            self._handler(MuxEvent("died", key, exitcode=code, pid=proc.worker_pid or proc.pid))

    def _on_exit(self, key: Hashable, proc: WorkerProcess, *, report: bool = True) -> None:
        pid = proc.worker_pid or proc.pid
        code = proc.reap(timeout=1.0)
        drained = 0
        while proc.out_fd is not None and drained < DRAIN_BYTES:  # its last words
            lines = proc.read_lines()
            drained += sum(len(line) for line in lines) + 1
            if lines and report:
                self._handler(MuxEvent("lines", key, lines=lines))
            if not lines:
                break
        proc.release()
        with self._lock:
            self._procs.pop(key, None)
        if report or not self._closing:
            self._handler(MuxEvent("exit", key, exitcode=code, pid=pid))

    def _unregister(self, fd: int) -> None:
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._selector.unregister(fd)

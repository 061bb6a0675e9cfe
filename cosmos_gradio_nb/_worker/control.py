"""The worker's control thread: it reads the connection while ``infer`` runs on the main thread.

The model's code stays on the main thread (CUDA contexts, signal handlers and
many libraries expect it there). A second thread reads every message the app
sends and acts on it at once:

- ``infer`` and ``shutdown`` are handed to the main thread, in order;
- ``stop {id}`` sets the stop flag of that request (``stop_requested()`` becomes
  True, the next ``report_progress`` raises ``StopRequested``); a stop for a
  request that is not running or waiting here is ignored, so a late stop never
  leaks into the next request;
- ``ping {n}`` is answered at once with ``pong {n}``: the app's health check
  learns that the process runs and reads its socket, whatever ``infer`` does.

The end of the connection (EOF, an error) ends the main thread's loop too.
"""

from __future__ import annotations

import queue
import sys
import threading
from typing import Any, Protocol

__all__ = ["Connection", "Control"]


class Connection(Protocol):
    """What the worker needs of its connection (a :class:`~.channel.Channel`, or a fake)."""

    def send(self, msg: dict[str, Any]) -> None: ...

    def recv(self) -> dict[str, Any]: ...


class Control:
    """The control thread and the state it shares with the main thread (see the module doc)."""

    def __init__(self, conn: Connection, rank: int) -> None:
        self._conn = conn
        self._rank = rank
        self._lock = threading.Lock()
        self._inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._waiting: set[str] = set()  # requests handed over, not started yet
        self._stops: set[str] = set()  # of those, the ones already asked to stop
        self._current: str | None = None
        self._flag: threading.Event | None = None
        self._thread = threading.Thread(target=self._run, name="cosmos-worker-control", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def next_message(self) -> dict[str, Any] | None:
        """The next ``infer`` or ``shutdown`` for the main thread; None once the app is gone."""
        return self._inbox.get()

    def begin(self, request_id: str) -> threading.Event:
        """The main thread starts ``request_id``: its stop flag (set already if a stop came)."""
        flag = threading.Event()
        with self._lock:
            self._waiting.discard(request_id)
            if request_id in self._stops:
                self._stops.discard(request_id)
                flag.set()
            self._current, self._flag = request_id, flag
        return flag

    def end(self) -> None:
        """The main thread is done with its request: later stops for it are ignored."""
        with self._lock:
            self._current = self._flag = None

    def _run(self) -> None:
        while True:
            try:
                msg = self._conn.recv()
            except BaseException:  # EOF, a closed or broken socket: the app is gone
                self._inbox.put(None)
                return
            kind = msg.get("type")
            if kind == "infer":
                with self._lock:
                    self._waiting.add(str(msg.get("id")))
                self._inbox.put(msg)
            elif kind == "stop":
                self._stop(str(msg.get("id")))
            elif kind == "ping":
                try:
                    self._conn.send({"type": "pong", "n": msg.get("n"), "rank": self._rank})
                except Exception:  # the app is gone: the next recv says so
                    pass
            elif kind == "shutdown":
                self._inbox.put(msg)
            else:
                print(
                    f"cosmos_gradio_nb worker: ignoring unknown message {kind!r}", file=sys.stderr
                )

    def _stop(self, request_id: str) -> None:
        with self._lock:
            if request_id == self._current and self._flag is not None:
                self._flag.set()
            elif request_id in self._waiting:
                self._stops.add(request_id)

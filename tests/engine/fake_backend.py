"""An in-process worker-group backend: the pool's policy tested without any process.

It honours the backend contract of ``cosmos_gradio_nb._engine.backend``: events come
from its own thread, never from inside ``start``/``send``/``stop``, and one
``Gone`` ends every incarnation. Tests script it: by default every rank becomes
ready at once and every request succeeds at once; ``hold_start``/``hold_replies``
turn that off so a test can emit ready, replies, output, progress, deaths and
failed starts itself, at the moment it chooses.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from cosmos_gradio_nb._engine.backend import (
    Died,
    Emit,
    Event,
    Gone,
    GroupSpec,
    Output,
    Pong,
    Progress,
    RankInfo,
    Ready,
    Reply,
    SendError,
    StartFailed,
)


@dataclass
class FakeGroup:
    spec: GroupSpec
    alive: bool = True
    stopping: bool = False
    graceful: bool = False
    sent: list[dict[str, Any]] = field(default_factory=list)


class FakeBackend:
    name = "fake"

    def __init__(self, emit: Emit, *, size: int) -> None:
        self._emit = emit
        self.size = size
        self.hold_start = False  # do not become ready by itself
        self.fail_start: dict[int, str] = {}  # group -> summary of a failed start
        self.hold_replies = False  # do not answer requests by itself
        self.ignore_graceful = False  # a graceful stop is not obeyed (close must kill)
        self.honour_stop = False  # answer a stop with ``stopped`` from every rank at once
        self.answer_pings = True  # answer a ping with a pong from every rank at once
        self.groups: dict[int, FakeGroup] = {}
        self.starts: list[GroupSpec] = []
        self.stops: list[tuple[int, bool]] = []
        self.messages: list[tuple[int, dict[str, Any]]] = []  # (group, msg) of every send
        self.closed = False
        self._lock = threading.Lock()
        self._queue: queue.Queue[Event | None] = queue.Queue()
        self._idle = threading.Condition()
        self._busy = 0
        self._thread = threading.Thread(target=self._run, name="fake-backend", daemon=True)
        self._thread.start()

    # -- the backend interface (called by the pool, under its lock) ----------------------------
    def start(self, spec: GroupSpec) -> None:
        with self._lock:
            self.groups[spec.index] = FakeGroup(spec)
            self.starts.append(spec)
        if spec.index in self.fail_start:
            self._post(StartFailed(spec.index, spec.incarnation, 0, self.fail_start[spec.index]))
        elif not self.hold_start:
            for rank in range(spec.size):
                self._post(Ready(spec.index, spec.incarnation, rank))

    def send(self, group: int, msg: dict[str, Any]) -> None:
        with self._lock:
            g = self.groups.get(group)
            if g is None or not g.alive or g.stopping:
                raise SendError(f"group {group} is gone")
            g.sent.append(msg)
            self.messages.append((group, msg))
        kind = msg.get("type")
        if kind == "infer" and not self.hold_replies:
            self.answer(group, msg["id"])
        elif kind == "stop" and self.honour_stop:
            self.stopped(group, msg["id"])
        elif kind == "ping" and self.answer_pings:
            self.pong(group, msg["n"])

    def stop(self, group: int, *, graceful: bool = False) -> None:
        with self._lock:
            self.stops.append((group, graceful))
            g = self.groups.get(group)
            if g is None or not g.alive or (g.stopping and not graceful and not g.graceful):
                return
            g.stopping = True
            g.graceful = graceful
            if graceful and self.ignore_graceful:
                return
            g.alive = False
            inc = g.spec.incarnation
        self._post(Gone(group, inc))

    def ranks(self, group: int) -> list[RankInfo]:
        return [RankInfo(r, 1000 + group * 10 + r, "fakehost", str(r)) for r in range(self.size)]

    def close(self) -> None:
        self.closed = True
        self._queue.put(None)
        self._thread.join(5)

    # -- what a test makes happen ---------------------------------------------------------------
    def incarnation(self, group: int) -> int:
        return self.groups[group].spec.incarnation

    def ready(self, group: int, rank: int | None = None) -> None:
        inc = self.incarnation(group)
        for r in range(self.size) if rank is None else [rank]:
            self._post(Ready(group, inc, r))

    def answer(
        self,
        group: int,
        request_id: str,
        *,
        rank: int | None = None,
        files: dict[str, list[str]] | None = None,
        **returned: Any,
    ) -> None:
        """Every rank (or one) replies ``done``; rank 0 with what infer returned and its files."""
        inc = self.incarnation(group)
        for r in range(self.size) if rank is None else [rank]:
            msg: dict[str, Any] = {"type": "done", "id": request_id, "rank": r}
            if r == 0:
                msg["returned"] = dict(returned)
                msg["files"] = files or {"videos": [], "images": [], "other": []}
                msg["finished_at"] = time.time()
            self._post(Reply(group, inc, r, msg))

    def stopped(self, group: int, request_id: str, *, rank: int | None = None) -> None:
        """Every rank (or one) replies ``stopped``: the model honoured a stop."""
        inc = self.incarnation(group)
        for r in range(self.size) if rank is None else [rank]:
            msg = {"type": "stopped", "id": request_id, "rank": r, "how": "returned"}
            self._post(Reply(group, inc, r, msg))

    def pong(self, group: int, n: int, rank: int | None = None) -> None:
        inc = self.incarnation(group)
        for r in range(self.size) if rank is None else [rank]:
            self._post(Pong(group, inc, r, n))

    def raise_error(
        self, group: int, request_id: str, rank: int = 0, message: str = "boom"
    ) -> None:
        msg = {"type": "error", "id": request_id, "error_type": "RuntimeError"}
        msg.update(message=message, traceback="Traceback: boom")
        self._post(Reply(group, self.incarnation(group), rank, msg))

    def output(self, group: int, lines: list[str], rank: int = 0) -> None:
        self._post(Output(group, self.incarnation(group), rank, lines))

    def progress(self, group: int, request_id: str, fraction: float, message: str = "") -> None:
        self._post(Progress(group, self.incarnation(group), request_id, fraction, message))

    def fail(self, group: int, summary: str = "ValueError: no weights", rank: int = 0) -> None:
        self._post(
            StartFailed(group, self.incarnation(group), rank, summary, "Traceback: no weights")
        )

    def die(self, group: int, rank: int = 0, how: str = "SIGKILL") -> None:
        """A rank dies on its own: Died, then (all ranks gone) Gone."""
        with self._lock:
            g = self.groups[group]
            g.alive = False
            inc = g.spec.incarnation
        self._post(Died(group, inc, rank, how, pid=4242, exitcode=-9, signal_name="SIGKILL"))
        self._post(Gone(group, inc))

    def emit_raw(self, event: Event) -> None:
        self._post(event)

    def sync(self, timeout: float = 5.0) -> None:
        """Wait until every event posted so far has been handled by the pool."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._busy or not self._queue.empty():
                if not self._idle.wait(max(0.0, deadline - time.monotonic())):
                    raise AssertionError("the fake backend's events were not handled in time")

    def sent(self, group: int) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.groups[group].sent)

    # -- its thread ---------------------------------------------------------------------------
    def _post(self, event: Event) -> None:
        with self._idle:
            self._busy += 1
        self._queue.put(event)

    def _run(self) -> None:
        while True:
            event = self._queue.get()
            if event is None:
                return
            try:
                self._emit(event)
            finally:
                with self._idle:
                    self._busy -= 1
                    self._idle.notify_all()

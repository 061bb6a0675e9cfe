"""One client's link to one server: calls, the followed requests, and the server's state.

:class:`ServerLink` is what a connected app stands on: the HTTP client, the
mirror of the server's requests (``follow.py``), the event stream that keeps it
current (``stream.py``) and the last state the server sent (ready, startup error,
queue length). It also knows what to say when the server goes: a call that finds
no server, or a stream that cannot reconnect, asks whether the server's process
still runs (its pid, for a server on this machine) and words the error for what
happened: *exited*, *not answering*, *restarted*, or *this connection was closed*.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from .._core.apicodec import decode_error
from .._core.exceptions import AppClosedError, CosmosGradioError, WorkerCrashedError
from .._core.runtime import RuntimeRecord, process_alive
from .follow import Follower
from .http import ApiClient, ServerUnreachable
from .stream import EventStream

__all__ = ["ServerLink"]

CONNECT_WAIT_S = 10.0  # how long a new link waits for its event stream before going on
RESYNC_BATCH = 500  # request records asked for in one body


def _tail(path: str | None, lines: int = 20) -> list[str]:
    """The last lines of a server's own output file, the best clue to why it exited."""
    if not path:
        return []
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    return text.splitlines()[-lines:]


class ServerLink:
    """A connection to one server (see the module docstring)."""

    def __init__(
        self,
        client: ApiClient,
        info: dict[str, Any],
        *,
        record: RuntimeRecord | None,
        history_size: int,
        process: Any = None,
    ) -> None:
        self.client = client
        self.info = info
        self.record = record
        self.process = process  # the Popen of a server this process started (reaped here)
        self.name: str = str(info.get("name") or client.url)
        self.url = client.url
        self.state: dict[str, Any] = dict(info.get("state") or {})
        self.cond = threading.Condition()
        self.closed = False
        self.lost: str | None = None
        self.follower = Follower(client, history_size=history_size)
        for record_ in client.get("history", limit=history_size).get("records", []):
            self.follower.adopt(record_)
        self.stream = EventStream(
            client,
            on_event=self._on_event,
            on_lost=self._on_lost,
            gone=self.gone,
            boot=str(info.get("boot") or "") or None,
            since=info.get("seq"),
            name=self.name,
        )
        self.stream.start()
        # Following from the first moment: what happens from now on is not missed even if
        # the server stops before the thread would have connected (bounded: it retries).
        self.stream.connected.wait(CONNECT_WAIT_S)

    # -- words --------------------------------------------------------------------------
    @property
    def server_pid(self) -> int | None:
        pid = self.info.get("pid")
        return int(pid) if isinstance(pid, int) else None

    def where(self) -> str:
        pid = self.server_pid
        return f"{self.name!r} ({self.url}, pid {pid})" if pid else f"{self.name!r} ({self.url})"

    def closed_words(self) -> str:
        if self.lost:
            return f"the server {self.where()} {self.lost}; connect again once it runs"
        return "this connection was closed; cosmos_gradio_nb.connect() opens a new one"

    def gone(self) -> str | None:
        """Why the server will not answer again (its process exited), or None if unknown."""
        if self.process is not None and self.process.poll() is not None:
            return f"exited (pid {self.process.pid}, exit code {self.process.returncode})"
        record = self.record
        if record is not None and not process_alive(record.pid, record.pid_started):
            return f"exited (pid {record.pid})"
        return None

    # -- calls ----------------------------------------------------------------------------
    def call(self, method: str, path: str, body: dict[str, Any] | None = None, **q: Any) -> Any:
        """One API call; a server that is gone is an ``AppClosedError`` that says so."""
        if self.closed or self.lost:
            raise AppClosedError(self.closed_words())
        try:
            if method == "GET":
                return self.client.get(path, **q)
            return self.client.post(path, body)
        except ServerUnreachable as exc:
            gone = self.gone()
            if gone is not None:
                raise AppClosedError(f"the server {self.where()} {gone}") from None
            raise CosmosGradioError(f"cannot reach the server {self.where()}: {exc}") from None

    # -- the server's state ---------------------------------------------------------------
    def fresh_state(self) -> dict[str, Any]:
        """The server's state: as streamed, or asked for while the stream is down."""
        if not self.stream.connected.is_set():
            self._take_state(self.call("GET", "state"))
        with self.cond:
            return dict(self.state)

    def _take_state(self, state: dict[str, Any]) -> None:
        with self.cond:
            self.state.update(
                {k: v for k, v in state.items() if k not in ("kind", "seq", "workers")}
            )
            if "queue_order" in state:
                self.follower.set_order([str(r) for r in state["queue_order"] or []])
            self.cond.notify_all()

    def wait_ready(self, timeout: float | None) -> None:
        """Until the server's workers are ready; its startup error, or TimeoutError."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self.fresh_state()
        with self.cond:
            while True:
                if self.state.get("startup_error"):
                    raise decode_error(self.state["startup_error"])
                if self.state.get("ready"):
                    return
                if self.closed or self.lost:
                    raise AppClosedError(self.closed_words())
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"workers not ready after {timeout} s")
                self.cond.wait(1.0 if left is None else min(left, 1.0))

    # -- events ---------------------------------------------------------------------------
    def _on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("kind")
        if kind in ("added", "request"):
            self.follower.adopt(event)
        elif kind == "queue":
            self.follower.set_order([str(r) for r in event.get("order") or []])
        elif kind == "server":
            self._take_state(event)
        elif kind == "hello":
            if self.stream.boot and event.get("boot") != self.stream.boot:
                self.follower.fail_pending(
                    lambda f: WorkerCrashedError(
                        f"the server {self.where()} was restarted: request {f.request_id} "
                        "was lost with the server it was sent to",
                        request_id=f.request_id,
                    )
                )
            self._resync()
        elif kind == "reset":
            self._resync()

    def _resync(self) -> None:
        """Re-read the records of the requests still followed (after a gap in the events)."""
        ids = [f.request_id for f in self.follower.pending()]
        for start in range(0, len(ids), RESYNC_BATCH):
            chunk = ids[start : start + RESYNC_BATCH]
            records = self.client.post("records", {"ids": chunk}).get("records") or {}
            for rid, record in records.items():
                fut = self.follower.get(rid)
                if fut is not None and record:
                    self.follower.apply(fut, record)
        self._take_state(self.client.get("state"))

    def _on_lost(self, reason: str) -> None:
        self.lost = reason
        log = self.info.get("server_log") or (self.record.log if self.record else None)
        tail = _tail(log)
        where = f"; its output: {log}" if log else ""
        self.follower.fail_pending(
            lambda f: WorkerCrashedError(
                f"the server {self.where()} {reason} before request {f.request_id} finished{where}",
                request_id=f.request_id,
                last_log_lines=tail,
            )
        )
        with self.cond:
            self.cond.notify_all()

    # -- ending ---------------------------------------------------------------------------
    def close(self) -> None:
        """Disconnect: futures still waiting here fail, saying their requests go on there."""
        if self.closed:
            return
        self.closed = True
        self.stream.close()
        self.follower.fail_pending(
            lambda f: AppClosedError(
                f"disconnected from the server {self.where()}; request {f.request_id} goes "
                "on there (connect() again and attach() it to follow it)",
                request_id=f.request_id,
            )
        )
        self.follower.close()
        self.client.close()
        with self.cond:
            self.cond.notify_all()

    def shutdown(self, timeout: float) -> None:
        """Ask the server to stop, wait until its process is gone, then disconnect."""
        if not self.closed and not self.lost:
            try:
                self.client.post("shutdown")
            except ServerUnreachable:
                pass
        pid = self.server_pid
        deadline = time.monotonic() + timeout
        # Not psutil's wait: a server started by a kernel that was restarted is nobody's
        # child, and where no init reaps, it stays a zombie (which is gone, for us).
        while pid is not None and self.gone() is None and process_alive(pid):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the server {self.where()} did not stop within {timeout} s")
            time.sleep(0.05)
        if self.process is not None:
            self.process.poll()  # reap it
        self.stream.join(5.0)  # its last events (why each pending request ended) applied
        self.close()

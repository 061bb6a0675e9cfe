"""The server's event hub: what happens to its requests, as one numbered stream of events.

Connected clients follow requests through one Server-Sent Events stream each
(``routes.py``); this hub is what they read. It follows every future of the
server's app, whoever made it (the API, the page, a script in the server), and
turns what changes into events:

``added``    a request the hub had not seen, with its parameters (a full record);
``request``  a request's state, progress, message, preview, and when it ended its
             final record (result or error);
``queue``    the ids of the queued requests in order (a client's queue positions);
``server``   ready, startup error, queue length, closed.

Progress and completion arrive through the futures' own callbacks, so they reach
clients at once. What has no callback (a request starting, a page's new request,
the queue's order, the workers becoming ready) is read by one thread of this
server every ``TICK`` s while a client follows or a request waits or runs (every
``IDLE_TICK`` s otherwise), in process, from the app's public state; only changes
are sent. Nothing here polls over the network.

Events are numbered; the last ``BUFFER`` are kept, so a client that lost its
connection asks for everything after the last number it saw and misses nothing.
One that fell further behind is told to re-read (``reset``), and re-reads the
records of the requests it follows. ``boot`` (random per server process) tells a
client that the server it reconnected to is not the one it was following.
"""

from __future__ import annotations

import asyncio
import collections
import json
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .._core.apicodec import encode_error, result_record

__all__ = ["EventHub", "Subscriber", "final_record", "live_record"]

TICK = 0.1  # seconds between two reads of what has no callback, while someone follows
IDLE_TICK = 1.0  # the same while no client follows and nothing is queued or running
BUFFER = 8192  # events kept for clients that reconnect
MAX_BACKLOG = 20_000  # events queued for one slow client before it is dropped (it reconnects)


def final_record(fut: Any) -> dict[str, Any]:
    """A done future's outcome: ``{"result": ...}``, ``{"error": ...}`` or ``{"cancelled": True}``."""
    if fut.cancelled():
        return {"cancelled": True}
    error = fut.exception()
    if error is not None:
        return {"error": encode_error(error)}
    return {"result": result_record(fut.result())}


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def live_record(fut: Any, *, params: bool = False, final: bool = True) -> dict[str, Any]:
    """A request as clients see it now: state, place, progress, and its outcome once done."""
    state = fut.state
    record: dict[str, Any] = {
        "id": fut.request_id,
        "state": state,
        "progress": fut.progress,
        "message": fut.progress_message,
        "preview": _text(getattr(fut, "preview", None)),
        "output_dir": str(fut.output_dir),
    }
    if params:
        record["params"] = fut.params
    if final and fut.done():
        record["final"] = final_record(fut)
    return record


@dataclass(eq=False)
class Subscriber:
    """One client's stream: events are put on its asyncio queue from any thread."""

    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)
    dropped: bool = False

    def put(self, text: str | None) -> None:
        """Called on the loop's thread."""
        if self.dropped:
            return
        if text is not None and self.queue.qsize() > MAX_BACKLOG:
            self.dropped = True
            text = None  # ends the stream: the client reconnects and resumes from its number
        self.queue.put_nowait(text)


class EventHub:
    """Numbered events about the app's requests (see the module docstring)."""

    def __init__(self, app: Any, *, tick: float = TICK, buffer: int = BUFFER) -> None:
        self.app = app
        self.boot = secrets.token_hex(8)
        self.tick = tick
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._seq = 0
        self._buffer: collections.deque[tuple[int, str]] = collections.deque(maxlen=buffer)
        self._subscribers: set[Subscriber] = set()
        self._futures: dict[str, Any] = {}  # every request seen, oldest first (bounded)
        self._pending: dict[str, Any] = {}  # those not done, with their last state
        self._states: dict[str, str] = {}
        self._order: list[str] = []
        self._server: dict[str, Any] = {}
        self._scanning = threading.Lock()  # one scan at a time (the tick, or a lookup)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._closed = False
        self.last_activity = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="cosmos-gradio-hub", daemon=True)

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self._scan()
        self._thread.start()

    def close(self) -> None:
        """Tell every stream that the server stops, and end them."""
        self._stop.set()
        self._wake.set()
        with self._lock:
            self._closed = True
        self._emit({"kind": "bye"})
        with self._lock:
            subs = list(self._subscribers)
        for sub in subs:
            self._deliver(sub, None)
        if self._thread.is_alive():
            self._thread.join(2.0)

    # -- what clients read ----------------------------------------------------------------
    @property
    def seq(self) -> int:
        with self._lock:
            return self._seq

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subscribers)

    def subscribe(self, since: int | None) -> tuple[Subscriber, list[str]]:
        """A new stream, and what it missed since event ``since`` (or a ``reset`` event)."""
        sub = Subscriber(asyncio.get_running_loop())
        with self._lock:
            self._subscribers.add(sub)
            hello = json.dumps({"kind": "hello", "boot": self.boot, "seq": self._seq})
            backlog = [f"data: {hello}\n\n"]  # no number: the events after it carry them
            if since is not None and since < self._seq:
                oldest = self._buffer[0][0] if self._buffer else self._seq + 1
                if since + 1 < oldest:
                    backlog.append(f"data: {json.dumps({'kind': 'reset'})}\n\n")
                else:
                    backlog.extend(text for seq, text in self._buffer if seq > since)
            closed = self._closed
        if closed:
            backlog.append(f"data: {json.dumps({'kind': 'bye'})}\n\n")
        self.touch()
        self._wake.set()  # followed from now on: read at the fast pace
        return sub, backlog

    def unsubscribe(self, sub: Subscriber) -> None:
        with self._lock:
            self._subscribers.discard(sub)
        self.touch()

    def touch(self) -> None:
        """Something used the server now (an API call, a page request): not idle."""
        self.last_activity = time.monotonic()

    def future(self, request_id: str) -> Any:
        """The app's future of ``request_id``, if the hub has seen it."""
        with self._lock:
            fut = self._futures.get(request_id)
        if fut is None:
            self._scan()
            with self._lock:
                fut = self._futures.get(request_id)
        return fut

    def futures(self) -> list[Any]:
        with self._lock:
            return list(self._futures.values())

    def busy(self) -> bool:
        """A request is queued or running."""
        with self._lock:
            return bool(self._pending)

    # -- following requests ---------------------------------------------------------------
    def track(self, futures: Iterable[Any]) -> None:
        """Follow these futures (the API's, at once; the page's, from the next tick)."""
        for fut in futures:
            rid = fut.request_id
            with self._lock:
                if rid in self._futures:
                    continue
                self._futures[rid] = fut
                limit = max(1000, len(self._pending) + 1000)
                while len(self._futures) > limit:
                    oldest = next(iter(self._futures))
                    if oldest in self._pending:
                        break
                    del self._futures[oldest]
                if not fut.done():
                    self._pending[rid] = fut
                    self._states[rid] = fut.state
            self._wake.set()
            self._emit({"kind": "added", **live_record(fut, params=True)})
            fut.add_progress_callback(self._on_progress)
            fut.add_done_callback(self._on_done)

    def _on_progress(self, fut: Any) -> None:
        if not fut.done():
            self._emit({"kind": "request", **live_record(fut, final=False)})

    def _on_done(self, fut: Any) -> None:
        self._emit({"kind": "request", **live_record(fut)})
        with self._lock:
            self._pending.pop(fut.request_id, None)
            self._states.pop(fut.request_id, None)
            if not self._pending:
                self._idle.notify_all()

    def drain(self, timeout: float) -> bool:
        """Wait until every followed request's end was sent (the app was closed); True if so."""
        with self._lock:
            return self._idle.wait_for(lambda: not self._pending, timeout)

    # -- the tick -------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                watched = bool(self._subscribers or self._pending)
            # Read often only while someone follows or something runs; a new stream wakes it.
            self._wake.wait(self.tick if watched else IDLE_TICK)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self._scan()
            except Exception:  # a bad read must not end the stream of events
                import logging

                logging.getLogger("cosmos_gradio_nb").exception("the event hub's scan failed")

    def _new_futures(self) -> list[Any]:
        """Futures of the app's history the hub has not seen (newest at the end)."""
        history = self.app.history
        fresh = []
        for fut in reversed(history):
            with self._lock:
                known = fut.request_id in self._futures
            if known:
                break
            fresh.append(fut)
        fresh.reverse()
        return fresh

    def _scan(self) -> None:
        """Follow new requests; send what changed without a callback."""
        with self._scanning:
            self._scan_once()

    def _scan_once(self) -> None:
        fresh = self._new_futures()
        if fresh:
            self.track(fresh)
        with self._lock:
            pending = list(self._pending.items())
        changed = bool(fresh)
        for rid, fut in pending:
            if fut.done():
                continue  # its done callback sends it
            state = fut.state
            with self._lock:
                before = self._states.get(rid)
                if rid in self._pending:
                    self._states[rid] = state
            if before is not None and before != state:
                changed = True
                self._emit({"kind": "request", **live_record(fut, final=False)})
        server = self._server_state()
        if server != self._server:
            changed = changed or server.get("queue_length") != self._server.get("queue_length")
            self._server = server
            self._emit({"kind": "server", **server})
        if changed:
            self._send_order(pending)

    def _send_order(self, pending: list[tuple[str, Any]]) -> None:
        places = []
        for rid, fut in pending:
            position = fut.queue_position
            if position is not None:
                places.append((position, rid))
        order = [rid for _, rid in sorted(places)]
        if order != self._order:
            self._order = order
            self._emit({"kind": "queue", "order": order})

    def _server_state(self) -> dict[str, Any]:
        return server_state(self.app)

    # -- delivery -------------------------------------------------------------------------
    def _emit(self, event: dict[str, Any]) -> None:
        """Number the event and hand it to every stream, in the order of the numbers.

        Handed over under the lock: events come from several threads (callbacks, the
        tick), and a client must read them in order, or a replay after a lost link
        would repeat some and miss others.
        """
        with self._lock:
            self._seq += 1
            seq = self._seq
            event["seq"] = seq
            text = f"id: {seq}\ndata: {json.dumps(event, default=str)}\n\n"
            self._buffer.append((seq, text))
            gone = [sub for sub in self._subscribers if not self._deliver_locked(sub, text)]
            self._subscribers.difference_update(gone)

    def _deliver(self, sub: Subscriber, text: str | None) -> None:
        with self._lock:
            if not self._deliver_locked(sub, text):
                self._subscribers.discard(sub)

    @staticmethod
    def _deliver_locked(sub: Subscriber, text: str | None) -> bool:
        try:
            sub.loop.call_soon_threadsafe(sub.put, text)
        except RuntimeError:  # its loop is closed: the server is stopping
            return False
        return True

    def order(self) -> list[str]:
        with self._lock:
            return list(self._order)


def server_state(app: Any) -> dict[str, Any]:
    """The app's state as clients see it: ready, startup error, queue length, closed."""
    error = None
    ready = bool(app.ready)
    if not ready and not app.closed:
        try:
            app.wait_ready(0)
            ready = True
        except TimeoutError:
            pass
        except Exception as exc:  # the workers could not start: clients raise the same
            error = encode_error(exc, with_traceback=False)  # re-raised: its traceback grows
    return {
        "ready": ready,
        "startup_error": error,
        "queue_length": app.queue_length,
        "closed": bool(app.closed),
    }

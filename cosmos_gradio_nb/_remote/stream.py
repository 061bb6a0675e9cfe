"""One thread per connected app reads the server's event stream, and survives a lost link.

The stream is Server-Sent Events (``GET /events``): one JSON event per message,
numbered. :class:`EventStream` hands each event to the app and remembers the
last number; when the connection drops it reconnects (after 50 ms, doubling to
at most 1 s) asking for everything after that number, so nothing is missed and
the futures resume where they were.

While it cannot reconnect it asks why: a server whose process is gone (its pid,
for a server on this machine) has *exited*, and every future still waiting
fails at once with that in words; a server that does not answer for
``GIVE_UP_S`` has been lost, and the same happens. A future never waits for a
server that will not answer.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from .http import ApiClient, ServerUnreachable

__all__ = ["GIVE_UP_S", "EventStream"]

logger = logging.getLogger("cosmos_gradio_nb")

GIVE_UP_S = 60.0  # seconds without a connection before pending requests are failed
FIRST_RETRY_S = 0.05
MAX_RETRY_S = 1.0


def parse_sse(lines: Iterator[str]) -> Iterator[tuple[int | None, dict[str, Any]]]:
    """``(number, event)`` for each message of a Server-Sent Events stream."""
    number: int | None = None
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                try:
                    event = json.loads("\n".join(data))
                except ValueError:
                    event = None
                if isinstance(event, dict):
                    yield number, event
            number, data = None, []
        elif line.startswith(":"):
            continue  # a keep-alive comment
        elif line.startswith("id:"):
            try:
                number = int(line[3:].strip())
            except ValueError:
                number = None
        elif line.startswith("data:"):
            data.append(line[5:].lstrip(" "))


class EventStream:
    """Reads the events of one server on a daemon thread (see the module docstring).

    Parameters
    ----------
    client:
        The server's API client.
    on_event:
        Called with each event (on this thread).
    on_lost:
        Called once, with the reason, when the server is gone for good.
    gone:
        Returns a reason if the server's process is known to have exited, else None.
    since:
        The number of the last event already accounted for.
    """

    def __init__(
        self,
        client: ApiClient,
        *,
        on_event: Callable[[dict[str, Any]], None],
        on_lost: Callable[[str], None],
        gone: Callable[[], str | None],
        boot: str | None,
        since: int | None,
        name: str,
    ) -> None:
        self.client = client
        self.on_event = on_event
        self.on_lost = on_lost
        self.gone = gone
        self.boot = boot
        self.since = since
        self.connected = threading.Event()
        self._hello_seq = 0
        self._closed = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"cosmos-gradio-events-{name}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._closed.set()

    def join(self, timeout: float) -> None:
        """Wait (bounded) until the thread ended: the server's last events were applied."""
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def _run(self) -> None:
        delay = FIRST_RETRY_S
        lost_since: float | None = None
        while not self._closed.is_set():
            try:
                with self.client.stream_events(self.since, self.boot) as lines:
                    for number, event in parse_sse(lines):
                        if self._closed.is_set():
                            return
                        if number is not None and self.since is not None and number <= self.since:
                            continue  # already applied (never expected: the server orders them)
                        if event.get("kind") == "hello":
                            self.connected.set()
                            lost_since, delay = None, FIRST_RETRY_S
                        self._handle(number, event)
            except (ServerUnreachable, OSError) as exc:
                logger.debug("event stream of %s lost: %s", self.client.url, exc)
            except Exception:  # a bug in handling must not end the following for good
                logger.exception("cosmos_gradio_nb: the event stream of %s failed", self.client.url)
            self.connected.clear()
            if self._closed.is_set():
                return
            lost_since = lost_since or time.monotonic()
            reason = self.gone()
            if reason is None and time.monotonic() - lost_since > GIVE_UP_S:
                reason = f"has not answered for {GIVE_UP_S:.0f} s"
            if reason is not None:
                self._closed.set()
                self.on_lost(reason)
                return
            self._closed.wait(delay)
            delay = min(delay * 2, MAX_RETRY_S)

    def _handle(self, number: int | None, event: dict[str, Any]) -> None:
        kind = event.get("kind")
        self.on_event(event)
        if number is not None:
            self.since = number
        elif kind == "hello":
            boot = str(event.get("boot") or "")
            if self.since is None or (self.boot and boot != self.boot):
                self.since = int(event.get("seq") or 0)  # a first (or another) server
            self._hello_seq = int(event.get("seq") or 0)
            self.boot = boot or self.boot
        elif kind == "reset":  # fell too far behind: the app re-read its records
            self.since = self._hello_seq

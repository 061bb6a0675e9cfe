"""Following a call while it waits and runs: one loop, one snapshot, two renderings.

The page's status panel (Generate) and the ``/generate_stream`` endpoint show the
same thing: where a call of ``infer_func`` is, as its live future says. So that
this is read once, :func:`_follow` is the one loop that wakes up when something
may have changed, :func:`snapshot` the one function that reads a future into a
:class:`LiveSnapshot`, and the snapshot renders itself for each reader:
:meth:`LiveSnapshot.panel_html` for the page, :meth:`LiveSnapshot.stream_info`
for the API. :func:`follow` puts the loop and the snapshot together.

A snapshot's ``elapsed`` is not part of its equality: the API sends a new state
only when something other than the clock changed, the page whenever its text does.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from .backend import Call
from .render import status_html

__all__ = ["LiveSnapshot", "follow", "live_state", "snapshot"]

_NO_FUTURE_MESSAGE = "running (no progress reported)"


def live_state(fut: concurrent.futures.Future[Any]) -> str:
    """``queued``/``running``/``succeeded``/``failed``/``cancelled`` of any future."""
    state = getattr(fut, "state", None)
    if isinstance(state, str):
        return state
    if fut.done():
        if fut.cancelled():
            return "cancelled"
        return "failed" if fut.exception() is not None else "succeeded"
    return "running" if fut.running() else "queued"


@dataclass(frozen=True)
class LiveSnapshot:
    """What a call's live future says now, while the call is not over.

    ``tracked`` is False while no future is known (a plain function still running,
    or none registered yet): then only ``state`` (``running``) means anything. A
    future that is done but whose call is not (the function has not returned yet)
    reads as ``running``: the outcome is shown once, when the call ends.
    """

    state: str
    request_id: Any = None  # as the future has it (a str for the app's futures)
    queue_position: int | None = None
    progress: float | None = None
    message: str = ""
    preview: str | None = None  # the latest live preview's path (the request folder's preview.jpg)
    elapsed: float = field(default=0.0, compare=False)
    tracked: bool = True

    def panel_html(self) -> str:
        """The page's status panel."""
        if not self.tracked:
            return status_html("running", elapsed=self.elapsed, message=_NO_FUTURE_MESSAGE)
        return status_html(
            self.state,
            request_id="" if self.request_id is None else str(self.request_id),
            queue_position=self.queue_position,
            progress=self.progress,
            message=self.message,
            elapsed=self.elapsed,
        )

    def stream_info(self) -> dict[str, Any]:
        """One yield of ``/generate_stream`` before the result (its keys are documented)."""
        info: dict[str, Any] = {"state": self.state, "request_id": self.request_id}
        if self.tracked:
            info["queue_position"] = self.queue_position
            info["progress"] = self.progress
            info["message"] = self.message
            info["preview"] = self.preview
        info["elapsed"] = round(self.elapsed, 3)
        return info


def snapshot(fut: concurrent.futures.Future[Any] | None, elapsed: float = 0.0) -> LiveSnapshot:
    """Read ``fut`` (a call's live future, None while there is none) into a snapshot."""
    if fut is None:
        return LiveSnapshot("running", elapsed=elapsed, tracked=False)
    return LiveSnapshot(
        live_state(fut) if not fut.done() else "running",
        request_id=getattr(fut, "request_id", None),
        queue_position=getattr(fut, "queue_position", None),
        progress=getattr(fut, "progress", None),
        message=getattr(fut, "progress_message", ""),
        preview=getattr(fut, "preview", None),
        elapsed=elapsed,
    )


async def _follow(call: Call) -> AsyncIterator[concurrent.futures.Future[Any] | None]:
    """Yield the call's live future whenever something may have changed, until it is done.

    Woken by the future's progress and done callbacks, by a newly registered
    future and by the function returning; at least every 0.5 s as well, since a
    place in the queue changes without a callback.
    """
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()

    def notify(*_: Any) -> None:
        loop.call_soon_threadsafe(wake.set)

    watched: set[int] = set()
    call.tracker.add_listener(notify)
    call.returned.add_done_callback(notify)
    # A refused request answers within milliseconds: no "running" flash before it.
    try:
        await asyncio.wait_for(wake.wait(), timeout=0.1)
    except asyncio.TimeoutError:
        pass
    while not call.done():
        wake.clear()
        fut = call.live
        if fut is not None and id(fut) not in watched:
            watched.add(id(fut))
            fut.add_done_callback(notify)
            if hasattr(fut, "add_progress_callback"):
                fut.add_progress_callback(notify)
        yield fut
        if call.done():
            break
        try:
            await asyncio.wait_for(wake.wait(), timeout=0.5)
        except asyncio.TimeoutError:
            pass


async def follow(call: Call, t0: float) -> AsyncIterator[LiveSnapshot]:
    """A snapshot of ``call`` whenever it may have changed, ``elapsed`` counted from ``t0``
    (a ``time.monotonic()``), until the call is done; its outcome is the reader's to show."""
    async for fut in _follow(call):
        yield snapshot(fut, time.monotonic() - t0)

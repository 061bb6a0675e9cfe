"""The queue as the panels show it: one row per running or queued request, in order.

The app lists its requests (``app.requests()``: running first, then queued in
queue order, each a plain dict); :func:`queue_rows` turns that list into
:class:`QueueRow` records that the page's Queue tab, the notebook's app panel and
the ``/queue`` endpoint all render, so the three never disagree on what a row
says: its short id, the parameters that differ from the default request, who
submitted it, its place or progress, its latest preview, and since when it waits
or runs.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypedDict

from .history import params_summary

__all__ = [
    "QueueRow",
    "QueueSource",
    "RequestEntry",
    "duration_words",
    "queue_rows",
    "short_id",
]


class RequestEntry(TypedDict, total=False):
    """One request as ``app.requests()`` lists it."""

    id: str
    state: str
    source: str
    params: dict[str, Any]
    position: int | None
    progress: float | None
    message: str
    preview: str | None
    queued_at: float | None
    started_at: float | None
    group: int | None
    stopping: bool


class QueueSource(Protocol):
    """An app whose queue can be shown (``NotebookApp``, or a test's stand-in)."""

    def requests(self) -> list[RequestEntry]: ...


def short_id(request_id: str) -> str:
    """The first 8 characters: enough to tell requests apart on a screen."""
    return request_id[:8]


def duration_words(seconds: float | None) -> str:
    """``"12 s"``, ``"3 min 04 s"``, ``"2 h 05 min"``; ``""`` for None."""
    if seconds is None:
        return ""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


@dataclass(frozen=True)
class QueueRow:
    """One running or queued request, ready to show."""

    request_id: str
    state: str
    source: str
    position: int | None
    progress: float | None
    message: str
    preview: str | None
    summary: str
    since: float | None
    """When it started running (running) or was queued (queued), epoch seconds."""
    group: int | None
    params: dict[str, Any]
    stopping: bool = False
    """A stop was asked for and the request has not ended yet."""

    @property
    def short_id(self) -> str:
        return short_id(self.request_id)

    @property
    def running(self) -> bool:
        return self.state == "running"

    def elapsed(self, now: float | None = None) -> float | None:
        """Seconds waiting (queued) or running (running) at ``now``."""
        if self.since is None:
            return None
        return max(0.0, (time.time() if now is None else now) - self.since)

    def action(self) -> str:
        """The row's button: ``Stop`` a running request, ``Cancel`` a queued one."""
        return "Stop" if self.running else "Cancel"

    def to_dict(self, now: float | None = None) -> dict[str, Any]:
        """As ``/queue`` lists it (plain JSON)."""
        elapsed = self.elapsed(now)
        return {
            "id": self.request_id,
            "state": self.state,
            "source": self.source,
            "position": self.position,
            "progress": self.progress,
            "message": self.message,
            "preview": self.preview,
            "group": self.group,
            "stopping": self.stopping,
            "params": self.params,
            "summary": self.summary,
            "since": self.since,
            "waiting_s" if not self.running else "running_s": (
                None if elapsed is None else round(elapsed, 1)
            ),
        }


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def queue_rows(
    entries: Iterable[Mapping[str, Any]], defaults: dict[str, Any] | None = None
) -> list[QueueRow]:
    """Rows for ``app.requests()``'s entries, in their order (running first, then the queue)."""
    rows = []
    for e in entries:
        params = e.get("params") if isinstance(e.get("params"), dict) else {}
        params = {k: v for k, v in (params or {}).items() if k != "output_dir"}
        state = str(e.get("state") or "queued")
        since = _number(e.get("started_at")) if state == "running" else None
        position = e.get("position")
        rows.append(
            QueueRow(
                request_id=str(e.get("id") or ""),
                state=state,
                source=str(e.get("source") or "?"),
                position=position if isinstance(position, int) else None,
                progress=_number(e.get("progress")),
                message=str(e.get("message") or ""),
                preview=str(e["preview"]) if e.get("preview") else None,
                summary=params_summary(params, defaults=defaults),
                since=since if since is not None else _number(e.get("queued_at")),
                group=e.get("group") if isinstance(e.get("group"), int) else None,
                params=params,
                stopping=bool(e.get("stopping")),
            )
        )
    return rows

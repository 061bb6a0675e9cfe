"""The Generate panel's handlers: run the editor's request, show it live, show how it ended.

:class:`GeneratePanel` parses the editor's text (``Backend.parse``), calls
``infer_func`` (``Backend.start``) and streams the call's state to the status
panel from :func:`~.live.follow`, the loop the API's stream shares; then one last
update with the outcome: outputs, a titled error, or that the request was
cancelled (and whether it had started). Cancel stops the request of the same
browser session. Like the other panels it knows nothing of the layout, so a
test drives it without a server; ``page`` wires it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from .backend import Backend, Call, Outputs, collect_outputs
from .live import follow, live_state
from .render import error_html, failure_html, files_html, status_html

__all__ = ["GeneratePanel"]

_NO_CANCEL = "Nothing to cancel: no request of this page is waiting or running."


@dataclass
class _Active:
    """The call a browser session is waiting on (for Cancel)."""

    call: Call
    stop_requested_while: str | None = None  # the state when Cancel was pressed


def _read_status_json(fut: Any) -> dict[str, Any]:
    out_dir = getattr(fut, "output_dir", None)
    if out_dir is None:
        return {}
    try:
        data = json.loads((Path(out_dir) / "status.json").read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _partial_of(status: dict[str, Any]) -> list[str]:
    files = status.get("files")
    files = files if isinstance(files, dict) else {}
    return [p for p in (files.get("partial") or []) if isinstance(p, str) and Path(p).is_file()]


def _how_stopped(status: dict[str, Any], state_when_asked: str | None) -> str:
    """How a cancelled request ended, from its status.json (``stop.how``) when there is one."""
    stop = status.get("stop")
    how = stop.get("how") if isinstance(stop, dict) else None
    if how == "cooperative":
        return "stopped while running; the model stopped on request and its worker stayed loaded"
    if how == "restarted":
        return (
            "stopped while running; the model did not stop in time (STOP_GRACE), so its "
            "worker group was restarted"
        )
    if how == "dequeued" or state_when_asked != "running":
        return "removed from the queue before it ran"
    return "stopped while running"


def _session(request: gr.Request | None) -> str:
    return (request.session_hash if request is not None else None) or ""


class GeneratePanel:
    """Generate, Cancel and Reset of one page.

    Parameters
    ----------
    backend:
        What requests go to (``infer_func``).
    default_text:
        The editor's default request (Reset).
    """

    def __init__(self, backend: Backend, default_text: str) -> None:
        self.backend = backend
        self.default_text = default_text
        self.active: dict[str, _Active] = {}

    def reset(self) -> str:
        """The default request, back in the editor."""
        return self.default_text

    # ------------------------------------------------------------------ Generate
    async def run_request(self, text: str, request: gr.Request) -> AsyncIterator[tuple[Any, ...]]:
        """Call ``infer_func`` and stream its state to the status panel until it ends.

        Yields ``(status panel, video, gallery, file links, status JSON)``.
        """
        skip = gr.skip
        t0 = time.monotonic()
        sid = _session(request)
        try:
            params = await self.backend.parse(text)
        except ValueError as exc:
            yield error_html("Not a request", str(exc)), skip(), skip(), skip(), skip()
            return
        call = self.backend.start(params)
        entry = _Active(call)
        if sid:
            self.active[sid] = entry
        last = ""
        try:
            async for snap in follow(call, t0):
                html = snap.panel_html()
                if html != last:
                    last = html
                    yield html, skip(), skip(), skip(), skip()
        finally:
            if sid and self.active.get(sid) is entry:
                del self.active[sid]
        yield self._final(entry, time.monotonic() - t0)

    def _final(self, entry: _Active, elapsed: float) -> tuple[Any, ...]:
        """The last update of a call: its result, its error, or that it was cancelled."""
        live = entry.call.live
        rid = str(getattr(live, "request_id", "") or "")
        value, error = entry.call.outcome()
        if isinstance(error, concurrent.futures.CancelledError):
            return self._cancelled(entry, live, rid, elapsed)
        if error is not None:
            status = _read_status_json(live) if live is not None else {}
            status = status or {
                "state": "failed" if live is not None else "refused",
                "error": {"type": type(error).__name__, "message": str(error)},
            }
            partial = _partial_of(status)
            panel = failure_html(error, rid, elapsed, ran=live is not None)
            return panel, None, [], files_html([], partial) if partial else "", status
        return self._succeeded(collect_outputs(value), rid, elapsed)

    @staticmethod
    def _cancelled(entry: _Active, live: Any, rid: str, elapsed: float) -> tuple[Any, ...]:
        status = _read_status_json(live) if live is not None else {}
        how = _how_stopped(status, entry.stop_requested_while)
        partial = _partial_of(status)
        return (
            status_html("cancelled", request_id=rid, elapsed=elapsed, note=f"Request {how}."),
            None,
            [],
            files_html([], partial),
            status or gr.skip(),
        )

    @staticmethod
    def _succeeded(out: Outputs, rid: str, elapsed: float) -> tuple[Any, ...]:
        where = out.status.get("output_dir", "")
        n_v, n_i = len(out.videos), len(out.images)
        note = f"{n_v} video{'s' * (n_v != 1)}, {n_i} image{'s' * (n_i != 1)}"
        if where:
            note += f" in {where}"
        return (
            status_html("succeeded", request_id=out.request_id or rid, elapsed=elapsed, note=note),
            out.videos[0] if out.videos else None,
            out.images + out.videos[1:],
            files_html(out.files, out.partial),
            out.status,
        )

    # ------------------------------------------------------------------ Cancel
    async def cancel(self, request: gr.Request) -> str:
        """Stop this page's request; the answer is shown beside the button, in the page."""
        entry = self.active.get(_session(request))
        if entry is None or entry.call.done():
            return _NO_CANCEL
        fut = entry.call.live
        if fut is None:
            return (
                "This request cannot be stopped: its infer function did not go through an "
                "app's queue, so there is no worker to stop."
            )
        entry.stop_requested_while = live_state(fut)
        if hasattr(fut, "terminate"):
            stopped = await asyncio.to_thread(fut.terminate)
        else:
            stopped = fut.cancel()
        if not stopped and not fut.done():
            return "This request cannot be stopped once it runs (its future has no terminate)."
        return "Stopping the request ..." if stopped else _NO_CANCEL

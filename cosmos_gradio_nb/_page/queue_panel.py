"""The Queue tab's handlers: every running and queued request of the app, and Stop/Cancel per row.

The rows come from the app (``app.requests()``: running first, then the queue in
order, whoever submitted them: this page, another tab, an API client, Python), so
a page opened or reloaded later shows everything, stoppable. A row's Stop or
Cancel goes through the request's own future (``terminate()``: a queued request
is cancelled, a running one stopped, cooperatively first where the model listens),
the same path as the Generate tab's Cancel. Anyone who can open the page may stop
any request, as anyone who can open it may submit one (``--auth`` guards both).

The table is re-sent only when a row changed (state, place, progress, preview);
between renders the browser keeps each row's time ticking (``QUEUE_JS``), and the
tab's timer runs only while the tab is shown.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

import gradio as gr

from .._core.queue_view import QueueRow, queue_rows
from .._notebook.ops_html import queue_html
from .backend import Backend
from .live import live_state
from .render import file_url

__all__ = ["QueuePanel"]


def _valid_id(request_id: Any) -> str | None:
    rid = str(request_id or "").strip()
    return rid if rid.isalnum() and len(rid) <= 64 else None


def _preview_src(path: str) -> str | None:
    try:
        stamp = os.stat(path).st_mtime_ns
    except OSError:
        return None
    return f"{file_url(path)}?v={stamp}"  # a new preview is a new URL: no stale cached image


class QueuePanel:
    """Handlers of the Queue tab and the queue's API (``page`` wires them).

    Parameters
    ----------
    backend:
        The page's view of the app.
    defaults:
        The default request: a row shows the parameters that differ from it.
    """

    def __init__(self, backend: Backend, defaults: dict[str, Any] | None = None) -> None:
        self.backend = backend
        # The page's default request over the validator's: a key the page leaves out is
        # then not "different" just because the validator fills it in (image=None...).
        self.defaults = {**(backend.default_request() or {}), **(defaults or {})}

    @property
    def available(self) -> bool:
        """Whether the page's app lists its queue (a plain ``infer_func`` has none)."""
        return callable(getattr(self.backend.app, "requests", None))

    def entries(self) -> list[dict[str, Any]]:
        """``app.requests()``: running then queued, in order (empty without an app)."""
        if not self.available:
            return []
        try:
            return list(self.backend.app.requests())
        except Exception:  # a closed app: an empty queue rather than a broken timer
            return []

    def rows(self) -> list[QueueRow]:
        """Running then queued requests, in order, ready to show."""
        return queue_rows(self.entries(), self.defaults)

    @staticmethod
    def _signature(entries: list[dict[str, Any]]) -> str:
        """What a render shows, except the clock (the browser keeps times ticking).

        Read from the app's entries as they are (a request's parameters never change),
        so an unchanged queue of 500 costs no summary of anything.
        """
        parts = []
        for e in entries:
            stamp = 0
            if e.get("preview"):
                try:
                    stamp = os.stat(e["preview"]).st_mtime_ns
                except OSError:
                    stamp = -1
            progress = e.get("progress")
            progress = round(progress, 3) if isinstance(progress, float) else progress
            state = (e.get("id"), e.get("state"), e.get("position"), progress, e.get("message"))
            parts.append((*state, stamp, bool(e.get("stopping"))))
        return json.dumps(parts)

    def html(self, entries: list[dict[str, Any]] | None = None) -> str:
        rows = queue_rows(self.entries() if entries is None else entries, self.defaults)
        note = "" if self.available else "(this page's infer_func is not an app's: no queue)"
        return queue_html(rows, now=time.time(), image_src=_preview_src, actions=True, note=note)

    def render(self) -> tuple[str, str]:
        """``(table, signature)``: the whole panel (tab opened, page loaded)."""
        entries = self.entries()
        return self.html(entries), self._signature(entries)

    def refresh(self, sig: str) -> tuple[Any, Any]:
        """The timer's tick: the table only if a row changed, else nothing is sent."""
        entries = self.entries()
        new = self._signature(entries)
        if new == sig:
            return gr.skip(), gr.skip()
        return self.html(entries), new

    # ------------------------------------------------------------------ Stop / Cancel
    async def stop(self, request_id: str) -> dict[str, Any]:
        """Cancel a queued request or stop a running one, by id; says what happened.

        Never raises for an unknown id (the API's sample calls it with one): the
        answer's ``stopped`` is False and ``message`` says why.
        """
        rid = _valid_id(request_id)
        if rid is None:
            return {"id": str(request_id), "stopped": False, "message": "not a request id"}
        fut = self.backend.live_future(rid)
        if fut is None or fut.done():
            state = live_state(fut) if fut is not None else "unknown"
            return {
                "id": rid,
                "stopped": False,
                "state": state,
                "message": f"request {rid} is not queued or running in this app",
            }
        was = live_state(fut)
        if hasattr(fut, "terminate"):
            stopped = bool(await asyncio.to_thread(fut.terminate))
        else:
            stopped = bool(fut.cancel())
        if not stopped:
            message = f"request {rid} could not be stopped (it had just ended)"
        elif was == "running":
            message = f"stopping request {rid}, which was running"
        else:
            message = f"cancelled request {rid}, which was queued"
        return {"id": rid, "stopped": stopped, "state": was, "message": message}

    async def on_click(self, evt: gr.EventData) -> tuple[str, str, str]:
        """A row's button: ``(note, table, signature)``."""
        data = getattr(evt, "_data", None) or {}
        answer = await self.stop(str(data.get("request_id", "")))
        html, sig = self.render()
        return answer["message"].capitalize() + ".", html, sig

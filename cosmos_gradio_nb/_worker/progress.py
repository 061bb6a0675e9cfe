"""What a model calls from inside ``infer``: ``report_progress``, ``stop_requested``, tqdm forwarding.

All run in the worker process. Outside a worker (a model tried in a plain
script) ``report_progress`` does nothing and ``stop_requested()`` is False, so a
model can call them unconditionally.

The worker loop opens a :class:`_Running` context per request
(:func:`begin_request`): its id, its stop flag (set by the control thread when
the app asks the request to stop), and on rank 0 the request folder and the
function that sends a progress message. Other ranks report nothing, but see
the stop flag too, so every rank of a group can stop at the same step.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .._core.exceptions import StopRequested
from .._core.public import public
from .._core.wire import plain_str

__all__ = [
    "begin_request",
    "end_request",
    "install_tqdm_hook",
    "report_progress",
    "set_reporter",
    "stop_requested",
]

_MIN_INTERVAL = 0.05  # seconds between forwarded reports; the first and last always go
PREVIEW_INTERVAL = 1.0  # seconds between previews written; the first always goes

Send = Callable[[dict[str, Any]], None]


@dataclass
class _Running:
    """The request this process runs now."""

    request_id: str
    stop: threading.Event
    folder: str | None = None  # rank 0: where preview.jpg goes
    send: Send | None = None  # rank 0: sends one progress message
    last_sent: float = 0.0
    last_fraction: float | None = None
    last_preview: float | None = None
    model_reports: bool = False  # the model called report_progress: tqdm bars are not forwarded
    lock: threading.Lock = field(default_factory=threading.Lock)


_running: _Running | None = None


def begin_request(
    request_id: str,
    stop: threading.Event,
    *,
    folder: str | None = None,
    send: Send | None = None,
) -> None:
    """The worker loop starts a request (``send`` and ``folder`` on rank 0 only)."""
    global _running
    _running = _Running(request_id, stop, folder, send)


def end_request() -> None:
    """The request is over: reports and stops no longer reach anyone."""
    global _running
    _running = None


def set_reporter(fn: Callable[[float | None, str], None] | None) -> None:
    """Route reports to ``fn(fraction, message)`` (a harness running a model without a worker)."""
    if fn is None:
        end_request()
        return

    def send(msg: dict[str, Any]) -> None:
        fn(msg["fraction"], msg["message"])

    begin_request("", threading.Event(), send=send)


@public
def stop_requested() -> bool:
    """True once the running request was asked to stop (``fut.terminate()``, Cancel, Stop).

    A model whose loop does not call :func:`report_progress` can poll this and
    return early (or raise :class:`StopRequested`): the request then ends as
    cancelled and the worker stays loaded. False outside a worker.
    """
    running = _running
    return running is not None and running.stop.is_set()


@public
def report_progress(fraction: float | None, message: str = "", *, preview: Any = None) -> None:
    """Tell the caller how far the current request has got, optionally with a live preview.

    Parameters
    ----------
    fraction:
        Done so far, from 0 to 1 (clamped), or None when unknown.
    message:
        A short phrase shown next to the bar ("denoising step 12/50").
    preview:
        An image of the result so far: a PIL image, an ``HxWx3`` ``uint8`` array or an
        image file's path. At most about one a second is kept (the first always is):
        it is shrunk to at most 512 pixels on its long side and written as the request
        folder's ``preview.jpg``, which the caller sees as ``fut.preview``. PIL and
        numpy are imported only when a preview is given.

    Raises
    ------
    StopRequested
        The request was asked to stop: let it propagate out of ``infer`` (the request
        ends as cancelled; the worker stays loaded).

    Reports are throttled to one every 50 ms (a report reaching 1.0, or one bringing
    a new preview, always goes), so calling this in a tight loop costs next to nothing.
    """
    running = _running
    if running is None:
        return
    running.model_reports = True
    _report(running, fraction, message, preview)


def _report(running: _Running, fraction: float | None, message: str, preview: Any) -> None:
    """Send one progress report of ``running`` (throttled), or raise if it was asked to stop."""
    if running.stop.is_set():
        raise StopRequested(
            f"request {running.request_id} was asked to stop", request_id=running.request_id
        )
    if running.send is None:
        return  # not rank 0: only the lead reports
    if fraction is not None:
        fraction = min(1.0, max(0.0, float(fraction)))
    now = time.monotonic()
    with running.lock:
        shown = _preview(running, preview, now) if preview is not None else None
        final = fraction is not None and fraction >= 1.0 and running.last_fraction != fraction
        if shown is None and not final and now - running.last_sent < _MIN_INTERVAL:
            return
        running.last_sent = now
        running.last_fraction = fraction
    msg: dict[str, Any] = {"type": "progress", "id": running.request_id}
    msg.update(fraction=fraction, message=plain_str(message))
    if shown is not None:
        msg["preview"] = shown
    running.send(msg)


def _preview(running: _Running, image: Any, now: float) -> str | None:
    """Write ``image`` as the request's preview.jpg if one is due; its path, or None."""
    if running.folder is None:
        return None
    if running.last_preview is not None and now - running.last_preview < PREVIEW_INTERVAL:
        return None
    from .preview import write_preview

    running.last_preview = now
    try:
        return write_preview(image, running.folder)
    except OSError as exc:  # a full disk must not fail the request over a preview
        print(f"cosmos_gradio_nb: the preview could not be written: {exc}", file=sys.stderr)
        return None


def install_tqdm_hook() -> bool:
    """Forward every tqdm bar's position to :func:`report_progress`.

    Diffusers and most training loops drive ``tqdm``; patching the base class's
    ``update`` covers ``tqdm.auto`` and ``tqdm.asyncio`` too. Returns False when
    tqdm is not installed. A stopped request's next bar update raises
    :class:`StopRequested`, so a loop driven by tqdm stops without further code.
    """
    try:
        from tqdm import std
    except ImportError:
        return False
    if getattr(std.tqdm, "_cosmos_hooked", False):
        return True
    original_update = std.tqdm.update
    original_close = std.tqdm.close

    def forward(bar: Any) -> None:
        running = _running
        if running is None:
            return
        total = getattr(bar, "total", None)
        if running.model_reports or getattr(bar, "disable", False) or not total:
            # The model reports its own progress (its bars would fight it), a hidden bar
            # is not the user's progress: only a stop is seen through them.
            if running.stop.is_set():
                _report(running, None, "", None)  # raises StopRequested
            return
        desc = (getattr(bar, "desc", "") or "").rstrip(": ")
        _report(running, bar.n / total, f"{desc} {int(bar.n)}/{int(total)}".strip(), None)

    def update(self: Any, n: float | None = 1) -> Any:
        out = original_update(self, n)
        forward(self)
        return out

    def close(self: Any) -> Any:
        # Iterating a bar calls update() only every mininterval: report where it ended.
        try:
            if not getattr(self, "disable", False) and not stop_requested():
                forward(self)
        finally:
            out = original_close(self)
        return out

    std.tqdm.update = update  # type: ignore[method-assign]
    std.tqdm.close = close  # type: ignore[method-assign]
    std.tqdm._cosmos_hooked = True  # type: ignore[attr-defined]
    return True

"""Progress reports from inside a model: ``report_progress`` and tqdm forwarding.

Both run in the worker process. Outside a worker (a model tried in a plain
script) ``report_progress`` does nothing, so models can call it unconditionally.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .._core.public import public

__all__ = ["install_tqdm_hook", "report_progress", "set_reporter"]

# Set by the worker loop while a request runs on rank 0; None elsewhere.
_reporter: Callable[[float | None, str], None] | None = None
_MIN_INTERVAL = 0.05  # seconds between forwarded reports; the first and last always go
_last_sent = 0.0
_last_fraction: float | None = None


def set_reporter(fn: Callable[[float | None, str], None] | None) -> None:
    """Route progress reports to ``fn`` (the worker loop sets and clears this)."""
    global _reporter, _last_sent, _last_fraction
    _reporter = fn
    _last_sent = 0.0
    _last_fraction = None


@public
def report_progress(fraction: float | None, message: str = "") -> None:
    """Tell the caller how far the current request has got.

    Parameters
    ----------
    fraction:
        Done so far, from 0 to 1 (clamped), or None when unknown.
    message:
        A short phrase shown next to the bar ("denoising step 12/50").

    Reports are throttled to one every 50 ms (a report reaching 1.0 always goes),
    so calling this in a tight loop costs next to nothing.
    """
    global _last_sent, _last_fraction
    fn = _reporter
    if fn is None:
        return
    if fraction is not None:
        fraction = min(1.0, max(0.0, float(fraction)))
    now = time.monotonic()
    final = fraction is not None and fraction >= 1.0 and _last_fraction != fraction
    if not final and now - _last_sent < _MIN_INTERVAL:
        return
    _last_sent = now
    _last_fraction = fraction
    fn(fraction, str(message))


def install_tqdm_hook() -> bool:
    """Forward every tqdm bar's position to :func:`report_progress`.

    Diffusers and most training loops drive ``tqdm``; patching the base class's
    ``update`` covers ``tqdm.auto`` and ``tqdm.asyncio`` too. Returns False when
    tqdm is not installed.
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
        total = getattr(bar, "total", None)
        if total:
            desc = (getattr(bar, "desc", "") or "").rstrip(": ")
            report_progress(bar.n / total, f"{desc} {int(bar.n)}/{int(total)}".strip())

    def update(self: Any, n: float | None = 1) -> Any:
        out = original_update(self, n)
        forward(self)
        return out

    def close(self: Any) -> Any:
        # Iterating a bar calls update() only every mininterval: report where it ended.
        if not getattr(self, "disable", False):
            forward(self)
        return original_close(self)

    std.tqdm.update = update  # type: ignore[method-assign]
    std.tqdm.close = close  # type: ignore[method-assign]
    std.tqdm._cosmos_hooked = True  # type: ignore[attr-defined]
    return True

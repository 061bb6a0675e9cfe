"""One denoising step at a time: progress, previews and cooperative stop, from ``callback_on_step_end``.

Diffusers calls the callback after every step of the outer loop; it is the one
source of progress ("step 12/35"): the pipeline's own tqdm bar is replaced by a
silent one for the call (:func:`silent_progress_bar`), so the worker's tqdm
forwarding cannot overwrite the step count with it.

A stop asked for by ``fut.terminate()`` (``cosmos_gradio_nb.stop_requested()``, or
``StopRequested`` raised by ``report_progress``) becomes diffusers' own interrupt,
``pipe._interrupt = True``, as diffusers' examples do: the remaining steps are
skipped and the pipeline decodes what it has, which the adapter writes as the
request's partial output. A pipeline without an ``interrupt`` flag is stopped by
raising ``StopRequested`` from the callback instead.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from cosmos_gradio_nb import StopRequested, report_progress, stop_requested

from .preview import LatentPreviewer

__all__ = ["PREVIEW_INTERVAL", "StepCallback", "silent_progress_bar"]

PREVIEW_INTERVAL = 1.0  # seconds between previews: the worker keeps at most one a second


class StepCallback:
    """``callback_on_step_end`` for one request.

    Parameters
    ----------
    total:
        The steps asked for; the pipeline's ``num_timesteps`` wins once known
        (img2img with ``strength`` runs fewer).
    previewer:
        Makes the preview images, or None for none.
    """

    def __init__(self, total: int, previewer: LatentPreviewer | None) -> None:
        self.total = max(1, int(total))
        self.previewer = previewer
        self.done = 0
        self.stopped_at: int | None = None
        self.latents: Any = None  # the latest latents, to learn preview colours from
        self.last_step_at: float | None = None
        self.preview_seconds = 0.0
        self.previews = 0
        self._last_preview: float | None = None

    def __call__(
        self, pipe: Any, step: int, timestep: Any, callback_kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        self.last_step_at = time.perf_counter()
        self.done = step + 1
        total = getattr(pipe, "num_timesteps", None)
        if isinstance(total, int) and total > 0:
            self.total = total
        latents = callback_kwargs.get("latents")
        if latents is not None:
            self.latents = latents
        if self.stopped_at is not None:  # interrupted: the pipeline is finishing up
            return callback_kwargs
        if stop_requested():
            self._stop(pipe)
            return callback_kwargs
        message = f"step {self.done}/{self.total}"
        if self.done >= self.total:
            message += " · decoding"
        try:
            report_progress(self.done / self.total, message, preview=self._preview(latents))
        except StopRequested:
            self._stop(pipe)
        return callback_kwargs

    def _preview(self, latents: Any) -> Any:
        """A preview when one is due (the first step, then at most one a second), else None."""
        if self.previewer is None or latents is None:
            return None
        now = time.monotonic()
        if self._last_preview is not None and now - self._last_preview < PREVIEW_INTERVAL:
            return None
        self._last_preview = now
        started = time.perf_counter()
        image = self.previewer.image(latents)
        self.preview_seconds += time.perf_counter() - started
        self.previews += image is not None
        return image

    def _stop(self, pipe: Any) -> None:
        self.stopped_at = self.done
        print(f"diffusers: stop requested at step {self.done}/{self.total}", flush=True)
        if not hasattr(type(pipe), "interrupt"):
            raise StopRequested(
                f"stopped at step {self.done}/{self.total} ({type(pipe).__name__} has no "
                "interrupt flag: nothing was decoded)"
            )
        pipe._interrupt = True


class _SilentBar:
    """Stands in for the pipeline's tqdm bar: counts, iterates, shows and reports nothing."""

    def __init__(self, iterable: Any = None, total: int | None = None) -> None:
        self.iterable = iterable
        self.total = total
        self.n = 0

    def __iter__(self) -> Iterator[Any]:
        return iter(self.iterable if self.iterable is not None else ())

    def __enter__(self) -> _SilentBar:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: int = 1) -> None:
        self.n += n

    def __getattr__(self, name: str) -> Any:  # set_postfix, set_description, close...
        return lambda *args, **kwargs: None


@contextmanager
def silent_progress_bar(pipe: Any) -> Iterator[None]:
    """Within this block ``pipe.progress_bar(...)`` is a silent bar (not a tqdm at all)."""
    had = "progress_bar" in vars(pipe)
    previous = vars(pipe).get("progress_bar")
    object.__setattr__(pipe, "progress_bar", _SilentBar)
    try:
        yield
    finally:
        if had:
            object.__setattr__(pipe, "progress_bar", previous)
        else:
            object.__delattr__(pipe, "progress_bar")

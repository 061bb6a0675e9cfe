"""Live notebook panels: the app panel and a future's progress bar, refreshed in place.

Everything here needs only ipywidgets. The widgets are refreshed from one
background "ticker" thread shared by all of them (the widget UI of ``form``
uses it too) and from the engine's progress callbacks; each refresh sends a
message only when what is shown has changed, so an idle panel costs nothing on
the wire.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from . import display as _display
from .views import AppView, FutureView

__all__ = ["app_panel", "display_app_panel", "display_future", "future_widget", "ticker"]


# -- one background thread refreshes every live widget ----------------------------------------
class _Ticker:
    """Call registered refresh functions every ``interval`` s until each returns False."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self._jobs: list[Callable[[], bool]] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()

    def add(self, job: Callable[[], bool]) -> None:
        with self._lock:
            self._jobs.append(job)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="cosmos-gradio-widgets", daemon=True
                )
                self._thread.start()

    def active(self) -> int:
        with self._lock:
            return len(self._jobs)

    def _run(self) -> None:
        while True:
            with self._lock:
                jobs = list(self._jobs)
            if not jobs:
                with self._lock:
                    if not self._jobs:
                        self._thread = None
                        return
                continue
            done = []
            for job in jobs:
                try:
                    keep = job()
                except Exception:  # a broken widget must not stop the others
                    keep = False
                if not keep:
                    done.append(job)
            if done:
                with self._lock:
                    self._jobs = [j for j in self._jobs if j not in done]
            self._wake.wait(self.interval)


ticker = _Ticker()


def alive(widget: widgets.Widget) -> bool:
    """False once the widget was closed (its comm is gone)."""
    return getattr(widget, "comm", None) is not None


def set_html(widget: widgets.HTML, text: str) -> None:
    if widget.value != text:
        widget.value = text


# -- live panels the apps and futures display ---------------------------------------------------
def app_panel(app: AppView, interval: float = 0.5) -> widgets.HTML:
    """An HTML widget showing ``app_html(app)``, refreshed while the app lives and it is shown."""
    panel = widgets.HTML(_display.app_html(app))
    app_ref = weakref.ref(app)
    last = [0.0]

    def refresh() -> bool:
        target = app_ref()
        if target is None or not alive(panel):
            return False
        now = time.monotonic()
        if now - last[0] < interval:
            return True
        last[0] = now
        set_html(panel, _display.app_html(target))
        return not getattr(target, "closed", False)

    ticker.add(refresh)
    return panel


def _display_live(widget: widgets.Widget, html_text: str, plain: str) -> None:
    """Display a widget with a static HTML fallback in the same output.

    Front ends with a widget manager (JupyterLab, VS Code) render the live
    widget; a saved notebook viewed elsewhere (nbviewer, GitHub) shows the
    HTML snapshot instead of ``VBox(children=...)``.
    """
    from IPython.display import display

    bundle = widget._repr_mimebundle_() or {}
    data = dict(bundle[0] if isinstance(bundle, tuple) else bundle)
    data["text/html"] = html_text
    data["text/plain"] = plain
    display(data, raw=True)


def display_app_panel(app: AppView) -> None:
    """Display the live app panel in the current cell (``NotebookApp._ipython_display_``)."""
    panel = app_panel(app)
    _display_live(panel, panel.value, repr(app))


def future_widget(fut: FutureView) -> widgets.Widget:
    """A live progress bar for a pending future, replaced by its result's display when done."""
    if fut.done():
        return widgets.HTML(_display.future_html(fut))
    bar = widgets.FloatProgress(value=float(fut.progress or 0.0), min=0.0, max=1.0)
    label = widgets.HTML(_display.future_html(fut))
    box = widgets.VBox([widgets.HBox([bar, label])])

    def update(f: Any) -> None:
        if f.progress is not None:
            bar.value = float(f.progress)
        set_html(label, _display.future_html(f))

    def finished(f: Any) -> None:
        box.children = (widgets.HTML(_display.future_html(f)),)

    def poll() -> bool:  # queue position changes without a progress report
        if fut.done() or not alive(box):
            return False
        if fut.state == "queued":
            set_html(label, _display.future_html(fut))
        return True

    fut.add_progress_callback(update)
    fut.add_done_callback(finished)
    ticker.add(poll)
    return box


def display_future(fut: FutureView) -> None:
    """Display a future live in the current cell (``InferenceFuture._ipython_display_``)."""
    if fut.done():  # nothing will change: plain HTML, no widget to keep alive
        from IPython.display import display

        display({"text/html": _display.future_html(fut), "text/plain": repr(fut)}, raw=True)
        return
    _display_live(future_widget(fut), _display.future_html(fut), repr(fut))

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

from .._core.queue_view import QueueRow, queue_rows
from . import display as _display
from .views import AppView, FutureView

__all__ = [
    "QueueRows",
    "app_panel",
    "display_app_panel",
    "display_future",
    "future_widget",
    "queue_line_html",
    "ticker",
]


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
QUEUE_ROWS = 20  # queue rows with a button in the live panel; the rest are counted


class QueueRows:
    """The live panel's queue: one line per request with its Stop/Cancel button.

    Rows are kept by request id and updated in place (a message goes out only for a
    line that changed); the buttons call the request's own ``terminate()`` (a queued
    request is cancelled, a running one stopped) in a thread of their own, so a stop
    that takes a moment never blocks the kernel.
    """

    def __init__(self, app: AppView) -> None:
        self._app = weakref.ref(app)
        self.box = widgets.VBox([])
        self._rows: dict[str, tuple[widgets.HBox, widgets.Button, widgets.HTML]] = {}
        self._more = widgets.HTML("")

    def _future(self, request_id: str) -> Any:
        app = self._app()
        for fut in reversed(list(getattr(app, "history", []) or [])):
            if getattr(fut, "request_id", None) == request_id:
                return fut
        return None

    def stop(self, request_id: str) -> threading.Thread | None:
        """Cancel or stop ``request_id`` (a row's button); the thread doing it, or None."""
        fut = self._future(request_id)
        if fut is None or fut.done():
            return None
        worker = threading.Thread(target=fut.terminate, name="cosmos-gradio-stop", daemon=True)
        worker.start()
        return worker

    def _row(self, request_id: str) -> tuple[widgets.HBox, widgets.Button, widgets.HTML]:
        found = self._rows.get(request_id)
        if found is None:
            button = widgets.Button(layout=widgets.Layout(width="80px"))
            text = widgets.HTML("")

            def clicked(_: Any, rid: str = request_id, b: widgets.Button = button) -> None:
                b.disabled = True
                b.description = "Stopping" if b.description == "Stop" else "Cancelling"
                self.stop(rid)

            button.on_click(clicked)
            found = (widgets.HBox([button, text]), button, text)
            self._rows[request_id] = found
        return found

    def update(self, rows: list[QueueRow]) -> None:
        """Show ``rows`` (running first, then the queue), the first ``QUEUE_ROWS`` with buttons."""
        shown = rows[:QUEUE_ROWS]
        children: list[widgets.Widget] = []
        src = _display.preview_src(_display.embed_budget())  # this refresh's own budget
        now = time.time()
        for row in shown:
            box, button, text = self._row(row.request_id)
            if not button.disabled:
                button.description = row.action()
                button.button_style = "danger" if row.running else ""
            set_html(text, queue_line_html(row, now, src))
            children.append(box)
        more = len(rows) - len(shown)
        set_html(self._more, f"<i>and {more} more queued</i>" if more > 0 else "")
        if more > 0:
            children.append(self._more)
        if tuple(children) != tuple(self.box.children):
            self.box.children = tuple(children)
        for rid in set(self._rows) - {r.request_id for r in shown}:
            for widget in self._rows.pop(rid):  # gone from the box: close its comms too
                widget.close()


def app_panel(app: AppView, interval: float = 0.5) -> widgets.VBox:
    """The app's live panel: ``app_html(app)`` and its queue with a button per request,
    refreshed while the app lives and the panel is shown (``panel.children[0]`` is the HTML)."""
    html = widgets.HTML(_display.app_html(app, queue=False))
    queue = QueueRows(app)
    panel = widgets.VBox([html, queue.box])
    panel.cosmos_queue = queue  # for tests: the queue rows and their stop
    app_ref = weakref.ref(app)
    last = [0.0]

    def refresh() -> bool:
        target = app_ref()
        if target is None or not alive(html):
            return False
        now = time.monotonic()
        if now - last[0] < interval:
            return True
        last[0] = now
        set_html(html, _display.app_html(target, queue=False))
        queue.update(_queue_rows(target))
        return not getattr(target, "closed", False)

    refresh()
    ticker.add(refresh)
    return panel


def _queue_rows(app: AppView) -> list[QueueRow]:
    listing = getattr(app, "requests", None)
    if not callable(listing) or getattr(app, "closed", False):
        return []
    try:
        return queue_rows(listing(), getattr(app, "default_request", None))
    except Exception:  # closing under us
        return []


def queue_line_html(row: QueueRow, now: float, image_src: Callable[[str], str | None]) -> str:
    """One request of the live panel's queue on one line: state, id, source, progress, time."""
    from .._core.presentation import esc, queue_wording
    from .._core.queue_view import duration_words

    if row.running:
        where = f"group {row.group} · " if row.group is not None else ""
        pct = f"{row.progress:.0%} " if row.progress is not None else ""
        what = f"{where}{pct}{row.message}".strip(" ·")
    else:
        what = queue_wording(row.position)
    preview = ""
    if row.preview:
        src = image_src(row.preview)
        if src:
            preview = f'<img src="{esc(src)}" style="max-height:48px;vertical-align:middle"/> '
    return (
        f"{preview}{_display.badge(row.state)} <code>{esc(row.short_id)}</code> "
        f"{esc(row.source)} · {esc(what)} · {esc(duration_words(row.elapsed(now)))} · "
        f'<span style="font-size:12px">{esc(row.summary)}</span>'
    )


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
    _display_live(panel, _display.app_html(app), repr(app))


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

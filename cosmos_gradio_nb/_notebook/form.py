"""The widget UI: the default page's editor, uploads, Generate and viewers as ipywidgets.

It needs only ipywidgets, so it works where no iframe to a kernel port can load
(VS Code, strict Content-Security-Policy, some remote set-ups). It parses and
titles errors exactly as the page does (``_core``), and is refreshed by the
panels' shared ticker thread (``panels``).
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from .._core.exceptions import CosmosGradioError, ValidationError
from .._core.filetypes import FileKind, kind_of
from .._core.logtail import read_tail
from .._core.presentation import classify_error, esc, queue_wording
from .._core.public import public
from .._core.request_text import parse_request_json
from .._core.uploads import ALLOWED_EXTENSIONS, UploadRejected, json_key_for, store_upload
from . import display as _display
from .panels import alive, set_html, ticker
from .views import AppView, FutureView

__all__ = ["WidgetUI", "create_widget_UI", "json_error", "tail_lines"]

UPLOAD_LIMIT_MB = 8.0
"""Largest upload through the widget (ipywidgets messages from the browser are capped ~10 MB)."""
SHOW_LIMIT_MB = 64.0
"""Largest video or image sent to the browser as widget bytes; larger ones are named by path."""


# -- small helpers, also used by tests ----------------------------------------------------------
def json_error(text: str) -> tuple[dict[str, Any] | None, str | None]:
    """Parse the editor's text: ``(params, None)`` or ``(None, message)``.

    The page's parser, so both UIs give the same message (line, column, caret).
    """
    try:
        return parse_request_json(text), None
    except ValueError as exc:
        return None, str(exc)


def tail_lines(path: Path, n: int = 40) -> list[str]:
    """The last ``n`` lines of ``path``, reading only its end (a log can be gigabytes)."""
    return read_tail(path, max_lines=n).splitlines()


def _media_widget(path: Path) -> widgets.Widget:
    """A Video or Image widget holding the file's bytes, or a note naming a too-large file."""
    try:
        size = path.stat().st_size
    except OSError:
        return widgets.HTML(f"<i>missing: {esc(path)}</i>")
    if size > SHOW_LIMIT_MB * 1024 * 1024:
        return widgets.HTML(f"<i>{esc(path)} ({size / 2**20:.0f} MB) is too large to show here</i>")
    suffix = path.suffix.lower()
    data = path.read_bytes()
    if kind_of(path) is FileKind.VIDEO:
        return widgets.Video(
            value=data,
            format=suffix.lstrip("."),
            autoplay=True,
            loop=True,
            controls=True,
            # A fixed width: tiny test renders stay visible, large ones fit the cell.
            layout=widgets.Layout(width="384px"),
        )
    fmt = "jpeg" if suffix in (".jpg", ".jpeg") else suffix.lstrip(".")
    return widgets.Image(value=data, format=fmt, layout=widgets.Layout(width="256px"))


# -- the widget UI ------------------------------------------------------------------------------
class WidgetUI:
    """The default UI made of ipywidgets; ``create_widget_UI`` builds one and returns ``.root``.

    Parameters
    ----------
    app:
        A ``NotebookApp`` (uses ``validate``, ``submit``, ``default_request``, ``env``, ``closed``).
    header:
        Title shown at the top.
    upload_limit_mb:
        Uploads larger than this are refused with a message (the widget channel's cap).
    """

    def __init__(
        self, app: AppView, header: str | None = None, upload_limit_mb: float = UPLOAD_LIMIT_MB
    ) -> None:
        self.app = app
        self.upload_limit = int(upload_limit_mb * 1024 * 1024)
        self.future: FutureView | None = None
        env = getattr(app, "env", None)
        self.uploads_dir = Path(getattr(env, "uploads_dir", "uploads"))
        self.log_file = Path(getattr(env, "log_file", "")) if env is not None else None
        title = header or getattr(app, "name", None) or getattr(env, "model_name", None) or "Model"
        default = getattr(app, "default_request", None) or {}
        box = widgets.Layout(width="100%")

        self.title = widgets.HTML(f"<h3 style='margin:4px 0'>{esc(title)}</h3>")
        self.editor = widgets.Textarea(
            value=json.dumps(default, indent=2),
            layout=widgets.Layout(width="100%", height="220px"),
            description="",
        )
        self.feedback = widgets.HTML()
        self.upload = widgets.FileUpload(
            accept=",".join(sorted(ALLOWED_EXTENSIONS)), multiple=False, description="Upload"
        )
        self.upload_key = widgets.Text(
            value="",
            placeholder="auto (image/video)",
            description="as key",
            layout=widgets.Layout(width="240px"),
        )
        self.upload_note = widgets.HTML()
        self.generate = widgets.Button(description="Generate", button_style="primary", icon="play")
        self.cancel = widgets.Button(description="Cancel", button_style="warning", icon="stop")
        self.cancel.disabled = True
        self.progress = widgets.FloatProgress(value=0.0, min=0.0, max=1.0, layout=box)
        self.state = widgets.HTML()
        self.outputs = widgets.HBox(layout=widgets.Layout(flex_flow="row wrap"))
        self.status = widgets.HTML()
        self.log = widgets.HTML()
        self.root = widgets.VBox(
            [
                self.title,
                self.editor,
                self.feedback,
                widgets.HBox([self.upload, self.upload_key, self.upload_note]),
                widgets.HBox([self.generate, self.cancel]),
                self.progress,
                self.state,
                self.outputs,
                self.status,
                widgets.Accordion(children=[self.log], titles=("Log",)),
            ],
            layout=box,
        )
        self.editor.observe(self._on_edit, names="value")
        self.upload.observe(self._on_upload, names="value")
        self.generate.on_click(self._on_generate)
        self.cancel.on_click(self._on_cancel)
        self._on_edit(None)
        self._log_shown: list[str] = []
        self._last_log_read = 0.0
        ref = weakref.ref(self)
        ticker.add(lambda: WidgetUI._tick_ref(ref))

    # the ticker holds only a weak reference: a forgotten UI can be collected
    @staticmethod
    def _tick_ref(ref: weakref.ref[WidgetUI]) -> bool:
        ui = ref()
        return ui.tick() if ui is not None else False

    # -- validation --------------------------------------------------------------------------
    def check(self) -> dict[str, Any] | None:
        """Validate the editor's JSON with the app's validator; show and return the outcome."""
        params, problem = json_error(self.editor.value)
        if problem is None and params is not None:
            try:
                params = self.app.validate(params)
            except Exception as exc:  # titled as the page titles it
                view = classify_error(exc)
                problem = f"{view.title}: {view.message}"
        if problem is not None:
            set_html(
                self.feedback,
                f"<span style='color:#b91c1c;white-space:pre-wrap'>&#10007; {esc(problem)}</span>",
            )
            return None
        set_html(self.feedback, "<span style='color:#15803d'>&#10003; valid request</span>")
        return params

    def _on_edit(self, _change: Any) -> None:
        self.check()

    # -- uploads -----------------------------------------------------------------------------
    def save_upload(self, name: str, content: bytes) -> Path:
        """Store an uploaded file in its own folder under UPLOADS_DIR and insert its path.

        Raises
        ------
        ValidationError
            The file is larger than the upload limit.
        """
        if len(content) > self.upload_limit:
            raise ValidationError(
                f"{name} is {len(content) / 2**20:.1f} MB, more than the widget upload limit of "
                f"{self.upload_limit / 2**20:.0f} MB (browser-to-kernel widget messages are "
                f"capped): copy it into {self.uploads_dir} on the kernel's machine, or use the "
                "Gradio UI",
                key="upload",
            )
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "upload.bin"
            src.write_bytes(content)
            try:
                path = store_upload(
                    src, self.uploads_dir, original_name=name, max_mb=self.upload_limit / 2**20
                )
            except UploadRejected as exc:
                raise ValidationError(str(exc), key="upload") from None
        key = self.upload_key.value.strip() or json_key_for(path)
        params = json_error(self.editor.value)[0] or {}
        params[key] = str(path)
        self.editor.value = json.dumps(params, indent=2)
        return path

    def _on_upload(self, change: Any) -> None:
        files = change["new"] if change else self.upload.value
        for item in files:
            try:
                path = self.save_upload(item["name"], bytes(item["content"]))
            except CosmosGradioError as exc:
                set_html(self.upload_note, f"<span style='color:#b91c1c'>{esc(exc)}</span>")
            else:
                set_html(self.upload_note, f"saved <code>{esc(path)}</code>")
        if files:
            self.upload.value = ()  # drop the bytes from the widget's state

    # -- running -----------------------------------------------------------------------------
    def _on_generate(self, _button: Any) -> None:
        self.submit()

    def submit(self) -> FutureView | None:
        """Validate and queue the editor's request; returns its future (or None if refused)."""
        params = self.check()
        if params is None:
            return None
        try:
            fut = self.app.submit(params)
        except CosmosGradioError as exc:
            view = classify_error(exc)
            set_html(
                self.state,
                f"<span style='color:#b91c1c;white-space:pre-wrap'>{esc(view.title)}: "
                f"{esc(view.message)}</span>",
            )
            return None
        self.future = fut
        self.outputs.children = ()
        self.status.value = ""
        self.progress.value = 0.0
        self.progress.bar_style = ""
        self.cancel.disabled = False
        self._show_state(fut)
        fut.add_progress_callback(self._on_progress)
        fut.add_done_callback(self._on_done)
        return fut

    def _on_cancel(self, _button: Any) -> None:
        fut = self.future
        if fut is not None and not fut.done():
            # terminate() returns once the request ended: the model stopped, or its group was
            # killed after STOP_GRACE; the kernel's thread must not wait that long
            threading.Thread(target=fut.terminate, name="cosmos-gradio-stop", daemon=True).start()

    def _show_state(self, fut: FutureView) -> None:
        state = fut.state
        if state == "queued":
            text = queue_wording(fut.queue_position)
        elif state == "running":
            pct = "" if fut.progress is None else f"{fut.progress:.0%} "
            text = f"running {pct}{fut.progress_message or ''}"
        else:
            text = ""
        set_html(
            self.state,
            f"{_display.badge(state)} <code>{esc(fut.request_id)}</code> {esc(text)}",
        )

    def _on_progress(self, fut: FutureView) -> None:
        if fut is not self.future:
            return
        if fut.progress is not None:
            self.progress.value = float(fut.progress)
        self._show_state(fut)

    def _on_done(self, fut: FutureView) -> None:
        if fut is not self.future:
            return
        self.cancel.disabled = True
        self._show_state(fut)
        if fut.cancelled():
            self.progress.bar_style = "warning"
            self.status.value = _partial_files_html(fut)
            return
        exc = fut.exception()
        if exc is not None:
            self.progress.bar_style = "danger"
            self.status.value = _display.error_html(exc) + _partial_files_html(fut)
            return
        res = fut.result()
        self.progress.value = 1.0
        self.progress.bar_style = "success"
        self.outputs.children = tuple(_media_widget(Path(p)) for p in [*res.videos, *res.images])
        others = [p for p in res.files if p not in set(res.videos) | set(res.images)]
        note = "".join(f"<div><code>{esc(p)}</code></div>" for p in others)
        self.status.value = (
            f"<div>{res.duration:.2f} s &middot; <code>{esc(res.output_dir)}</code></div>{note}"
            f"<details><summary>status.json</summary><pre style='font-size:11px'>"
            f"{esc(json.dumps(res.status, indent=2, default=str))}</pre></details>"
        )

    def tick(self) -> bool:
        """Refresh the queue position and the log tail; False once the UI or the app is gone."""
        if not alive(self.root) or getattr(self.app, "closed", False):
            return False
        fut = self.future
        if fut is not None and fut.state == "queued":
            self._show_state(fut)
        now = time.monotonic()
        if self.log_file is not None and now - self._last_log_read >= 1.0:
            self._last_log_read = now
            lines = tail_lines(self.log_file)
            if lines != self._log_shown:
                self._log_shown = lines
                text = esc("\n".join(lines))
                self.log.value = (
                    f"<pre style='font-size:11px;max-height:240px;overflow:auto'>{text}</pre>"
                )
        return True


def _partial_files_html(fut: FutureView) -> str:
    """The files a stopped or failed request left (status.json lists them as partial)."""
    try:
        status = json.loads((Path(fut.output_dir) / "status.json").read_text())
        partial = list((status.get("files") or {}).get("partial") or [])
    except (OSError, ValueError, AttributeError):
        return ""
    if not partial:
        return ""
    items = "".join(f"<div><code>{esc(p)}</code></div>" for p in partial)
    return f"<div>Partial files (the run was stopped; not playable):{items}</div>"


@public
def create_widget_UI(
    app: AppView, header: str | None = None, upload_limit_mb: float = UPLOAD_LIMIT_MB
) -> widgets.VBox:
    """The default UI as ipywidgets, on ``app``'s queue: for front ends without iframes.

    Parameters
    ----------
    app:
        A ``NotebookApp``.
    header:
        Title; default the model name.
    upload_limit_mb:
        Refuse larger uploads (ipywidgets caps browser messages at about 10 MB).

    Returns
    -------
    ipywidgets.VBox
        Display it (last expression of a cell). Its ``.cosmos_ui`` attribute is the
        :class:`WidgetUI` behind it (for scripting and tests).
    """
    ui = WidgetUI(app, header=header, upload_limit_mb=upload_limit_mb)
    ui.root.cosmos_ui = ui  # type: ignore[attr-defined]
    return ui.root

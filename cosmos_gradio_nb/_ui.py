"""The default Gradio page: JSON request editor, video and image viewer, uploads, log.

:func:`create_gradio_UI` builds a ``gr.Blocks`` on top of an app's single queue.
Browser tabs, ``gradio_client`` calls and Python futures all go through
``app.submit``, so they interleave fairly and N model groups run N requests at
once: the Generate event has no Gradio concurrency limit, the engine's queue
does the scheduling.

The returned Blocks fills in safe ``launch()`` defaults: only ``OUTPUT_DIR``,
``UPLOADS_DIR`` and ``LOG_FILE`` are servable (``allowed_paths``), uploads are
capped (``max_file_size``), errors reach the page (``show_error``), and binding a
non-loopback address without ``auth`` prints a warning.
"""

import asyncio
import concurrent.futures
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._logtail import read_tail
from ._ui_backend import Backend, collect_outputs
from ._ui_render import (
    CSS,
    error_html,
    failure_html,
    parse_request_json,
    schema_markdown,
    status_html,
)
from ._uploads import (
    ALLOWED_EXTENSIONS,
    UploadRejected,
    insert_path,
    list_uploads,
    store_upload,
)
from ._uploads import (
    max_upload_mb as resolve_upload_mb,
)

__all__ = ["create_gradio_UI"]

log = logging.getLogger("cosmos_gradio_nb.ui")

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_blocks_cls: Any = None


def _cosmos_blocks() -> Any:
    """A ``gr.Blocks`` subclass whose ``launch`` adds this UI's safe defaults.

    A subclass rather than a patched instance attribute, so that a later
    wrapper of ``demo.launch`` (the notebook's) still ends up here.
    """
    global _blocks_cls
    if _blocks_cls is not None:
        return _blocks_cls
    import gradio as gr

    class CosmosBlocks(gr.Blocks):  # type: ignore[misc]
        _cosmos_allowed: list[str]
        _cosmos_max_bytes: int

        def launch(self, *args: Any, **kwargs: Any) -> Any:
            allowed = list(kwargs.pop("allowed_paths", None) or [])
            kwargs["allowed_paths"] = allowed + list(self._cosmos_allowed)
            kwargs.setdefault("max_file_size", self._cosmos_max_bytes)
            kwargs.setdefault("show_error", True)
            css = kwargs.get("css")
            kwargs["css"] = CSS if not css else f"{CSS}\n{css}"
            host = kwargs.get("server_name") or "127.0.0.1"
            if host not in _LOOPBACK and not kwargs.get("auth"):
                print(
                    f"WARNING: serving on {host} without authentication: anyone who can reach "
                    "this address can run the model and read its outputs. Pass auth=(user, "
                    "password) (CLI: --auth user:password or COSMOS_GRADIO_AUTH).",
                    file=sys.stderr,
                    flush=True,
                )
            return super().launch(*args, **kwargs)

    _blocks_cls = CosmosBlocks
    return CosmosBlocks


@dataclass
class _Active:
    """The request a browser session is waiting on (for Cancel)."""

    future: concurrent.futures.Future[Any]
    stop_requested_while: str | None = None  # the state when Cancel was pressed


def _live_state(fut: concurrent.futures.Future[Any]) -> str:
    state = getattr(fut, "state", None)
    if isinstance(state, str):
        return state
    if fut.done():
        return "cancelled" if fut.cancelled() else "succeeded"
    return "running" if fut.running() else "queued"


def _read_status_json(fut: Any) -> dict[str, Any]:
    out_dir = getattr(fut, "output_dir", None)
    if out_dir is None:
        return {}
    try:
        data = json.loads((Path(out_dir) / "status.json").read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def create_gradio_UI(
    infer_func: Any,
    header: str = "Cosmos generative model",
    default_request: dict[str, Any] | None = None,
    help_text: str | None = None,
    *,
    max_upload_mb: float | None = None,
) -> Any:
    """Build the default page for a model served by ``infer_func``.

    Parameters
    ----------
    infer_func:
        ``app.infer`` of a :class:`NotebookApp` or :class:`GradioApp` (the page
        then uses the app's queue: progress, queue position, cancel, validation),
        or any callable ``dict -> result``, run in a thread (a returned
        ``concurrent.futures.Future`` is awaited).
    header:
        Title shown at the top of the page and in the browser tab.
    default_request:
        The JSON the editor starts with; default: the validator's pydantic
        defaults (``app.default_request``), else ``{}``.
    help_text:
        Markdown shown above the parameter table in the "Parameters" panel.
    max_upload_mb:
        Upload size limit in MB; default env ``MAX_UPLOAD_MB``, else 500.

    Returns
    -------
    gradio.Blocks
        Call ``.launch(server_name=..., server_port=...)`` on it. It adds
        ``allowed_paths`` (outputs, uploads, log file), ``max_file_size`` and
        ``show_error=True`` to whatever you pass.
    """
    import gradio as gr

    backend = Backend(infer_func)
    limit_mb = resolve_upload_mb(max_upload_mb)
    if default_request is None:
        default_request = backend.default_request() or {}
    default_text = json.dumps(default_request, indent=2)
    schema_md = schema_markdown(backend.params_schema(), default_request)
    active: dict[str, _Active] = {}
    backend.output_dir.mkdir(parents=True, exist_ok=True)
    backend.uploads_dir.mkdir(parents=True, exist_ok=True)
    log_file = backend.log_file
    skip = gr.skip

    def upload_choices() -> list[tuple[str, str]]:
        return [(f"{p.parent.name}/{p.name}", str(p)) for p in list_uploads(backend.uploads_dir)]

    # ---------------------------------------------------------------- event handlers
    async def run_request(text: str, request: gr.Request) -> Any:
        """Queue one request and stream its state to the status panel until it ends."""
        t0 = time.monotonic()
        sid = (request.session_hash if request is not None else None) or ""
        try:
            params = parse_request_json(text)
        except ValueError as exc:
            yield error_html("", str(exc)), skip(), skip(), skip(), skip()
            return
        try:
            fut = backend.submit(params)
        except Exception as exc:
            yield failure_html(exc, ran=False), skip(), skip(), skip(), skip()
            return
        entry = _Active(fut)
        if sid:
            active[sid] = entry
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()

        def notify(*_: Any) -> None:
            loop.call_soon_threadsafe(wake.set)

        fut.add_done_callback(notify)
        if hasattr(fut, "add_progress_callback"):
            fut.add_progress_callback(notify)
        rid = str(getattr(fut, "request_id", ""))
        last = ""
        try:
            while not fut.done():
                wake.clear()
                html = status_html(
                    _live_state(fut),
                    request_id=rid,
                    queue_position=getattr(fut, "queue_position", None),
                    progress=getattr(fut, "progress", None),
                    message=getattr(fut, "progress_message", ""),
                    elapsed=time.monotonic() - t0,
                )
                if html != last:
                    last = html
                    yield html, skip(), skip(), skip(), skip()
                if fut.done():
                    break
                try:
                    await asyncio.wait_for(wake.wait(), timeout=0.5)
                except asyncio.TimeoutError:
                    pass
        finally:
            if sid and active.get(sid) is entry:
                del active[sid]
        elapsed = time.monotonic() - t0
        if fut.cancelled():
            how = (
                "stopped while running; its worker group was restarted"
                if entry.stop_requested_while == "running"
                else "removed from the queue before it ran"
            )
            yield (
                status_html("cancelled", request_id=rid, elapsed=elapsed, note=f"Request {how}."),
                skip(),
                skip(),
                skip(),
                _read_status_json(fut) or skip(),
            )
            return
        error = fut.exception()
        if error is not None:
            yield (
                failure_html(error, rid, elapsed),
                None,
                [],
                [],
                _read_status_json(fut)
                or {
                    "state": "failed",
                    "error": {"type": type(error).__name__, "message": str(error)},
                },
            )
            return
        out = collect_outputs(fut.result())
        where = out.status.get("output_dir", "")
        n_v, n_i = len(out.videos), len(out.images)
        note = f"{n_v} video{'s' * (n_v != 1)}, {n_i} image{'s' * (n_i != 1)}"
        if where:
            note += f" in {where}"
        yield (
            status_html("succeeded", request_id=out.request_id or rid, elapsed=elapsed, note=note),
            out.videos[0] if out.videos else None,
            out.images + out.videos[1:],
            out.files,
            out.status,
        )

    async def cancel(request: gr.Request) -> None:
        sid = (request.session_hash if request is not None else None) or ""
        entry = active.get(sid)
        if entry is None or entry.future.done():
            gr.Info("Nothing to cancel: no request of this page is waiting or running.")
            return
        fut = entry.future
        entry.stop_requested_while = _live_state(fut)
        if hasattr(fut, "terminate"):
            stopped = await asyncio.to_thread(fut.terminate)
        else:
            stopped = fut.cancel()
        if not stopped and not fut.done():
            gr.Warning("This request cannot be stopped once it runs (plain infer function).")

    async def api_generate(text: str) -> tuple[dict[str, Any], list[str]]:
        """The ``/generate`` API: request JSON in, (status JSON, output files) out."""
        try:
            params = parse_request_json(text)
            fut = backend.submit(params)
        except Exception as exc:
            raise gr.Error(f"{type(exc).__name__}: {exc}") from None
        try:
            result = await asyncio.wrap_future(fut)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise gr.Error(f"{type(exc).__name__}: {exc}") from None
        out = collect_outputs(result)
        return out.status, out.files

    def on_upload(file: Any) -> tuple[Any, Any, str]:
        if file is None:
            return skip(), skip(), ""
        src = getattr(file, "name", None) or str(file)
        original = Path(src).name
        try:
            stored = store_upload(src, backend.uploads_dir, original_name=original, max_mb=limit_mb)
        except (UploadRejected, OSError) as exc:
            return skip(), skip(), f"**Upload refused**: {exc}"
        choices = upload_choices()
        return (
            gr.update(choices=choices, value=str(stored)),
            str(stored),
            f"Stored as `{stored}`. Press **Insert into request** to use it.",
        )

    def on_select_upload(path: str | None) -> str:
        return path or ""

    def on_insert(text: str, path: str | None) -> tuple[Any, str]:
        if not path:
            return skip(), "Upload a file or pick an earlier upload first."
        try:
            return insert_path(text, path), f"Inserted `{path}`."
        except ValueError as exc:
            return skip(), f"**Cannot insert**: fix the request first. {exc}"

    def refresh(sig: Any) -> tuple[Any, str, Any]:
        try:
            st = log_file.stat()
            new_sig = [st.st_size, st.st_mtime_ns]
        except OSError:
            new_sig = None
        text = skip() if new_sig == sig else read_tail(log_file)
        return text, backend.workers_line(), new_sig

    def on_load() -> tuple[Any, str, str, Any]:
        return (
            gr.update(choices=upload_choices()),
            read_tail(log_file),
            backend.workers_line(),
            None,
        )

    # ---------------------------------------------------------------- layout
    blocks_cls = _cosmos_blocks()
    with blocks_cls(title=header, analytics_enabled=False, fill_width=True) as demo:
        with gr.Row(equal_height=True):
            gr.Markdown(f"## {header}", elem_id="cg-header")
            workers_md = gr.Markdown("", elem_id="cg-workers")
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=380):
                editor = gr.Code(
                    value=default_text,
                    language="json",
                    lines=14,
                    max_lines=30,
                    label="Request (JSON)",
                    interactive=True,
                    elem_id="cg-editor",
                )
                with gr.Row():
                    gen_btn = gr.Button(
                        "Generate", variant="primary", scale=3, min_width=120, elem_id="cg-generate"
                    )
                    cancel_btn = gr.Button(
                        "Cancel", variant="stop", scale=1, min_width=70, elem_id="cg-cancel"
                    )
                    reset_btn = gr.Button(
                        "Reset", variant="secondary", scale=1, min_width=70, elem_id="cg-reset"
                    )
                status = gr.HTML(status_html("idle"), elem_id="cg-status")
                with gr.Accordion("Assets: upload and reuse", open=True):
                    upload = gr.UploadButton(
                        f"Upload an image, video, .json, .txt or .md (max {limit_mb:g} MB)",
                        file_types=sorted(ALLOWED_EXTENSIONS),
                        file_count="single",
                        size="sm",
                        elem_id="cg-upload",
                    )
                    upload_msg = gr.Markdown("", elem_id="cg-upload-msg")
                    earlier = gr.Dropdown(
                        label="Uploaded files (newest first)",
                        choices=[],
                        value=None,
                        interactive=True,
                        elem_id="cg-earlier",
                    )
                    upload_path = gr.Textbox(
                        label="Server path",
                        interactive=False,
                        buttons=["copy"],
                        elem_id="cg-upload-path",
                    )
                    insert_btn = gr.Button("Insert into request", size="sm", elem_id="cg-insert")
                if schema_md or help_text:
                    with gr.Accordion("Parameters", open=False):
                        gr.Markdown(
                            "\n\n".join(p for p in (help_text, schema_md) if p),
                            elem_id="cg-help",
                        )
            with gr.Column(scale=3, min_width=420):
                video = gr.Video(
                    label="Video",
                    autoplay=True,
                    loop=True,
                    interactive=False,
                    height=460,
                    elem_id="cg-video",
                )
                gallery = gr.Gallery(
                    label="Images",
                    columns=6,
                    height=170,
                    object_fit="contain",
                    preview=False,
                    fit_columns=False,
                    elem_id="cg-gallery",
                )
                files = gr.File(
                    label="Output files",
                    file_count="multiple",
                    interactive=False,
                    height=150,
                    elem_id="cg-files",
                )
                with gr.Accordion("Status JSON", open=False):
                    status_json = gr.JSON(elem_id="cg-status-json")
        with gr.Accordion("Log", open=True):
            log_box = gr.Textbox(
                value="",
                lines=10,
                max_lines=10,
                autoscroll=True,
                interactive=False,
                show_label=False,
                elem_id="cg-log",
            )
            gr.HTML(
                f'<a href="gradio_api/file={log_file}" download="{log_file.name}" '
                f'id="cg-log-download">Download the whole log</a> '
                f'<span style="opacity:.6">({log_file})</span>',
            )
        log_sig = gr.State(None)
        timer = gr.Timer(1.0)
        with gr.Row(visible=False):
            api_in = gr.Textbox(label="request JSON")
            api_status = gr.JSON(label="status")
            api_files = gr.File(label="files", file_count="multiple")
            api_btn = gr.Button("generate")

        # ------------------------------------------------------------ events
        gen_btn.click(
            run_request,
            inputs=[editor],
            outputs=[status, video, gallery, files, status_json],
            concurrency_limit=None,
            show_progress="hidden",
            api_visibility="private",
        )
        cancel_btn.click(cancel, inputs=None, outputs=None, queue=False, api_visibility="private")
        reset_btn.click(
            lambda: default_text, outputs=[editor], queue=False, api_visibility="private"
        )
        upload.upload(
            on_upload,
            inputs=[upload],
            outputs=[earlier, upload_path, upload_msg],
            api_name="upload_asset",
            api_visibility="undocumented",  # callable, so the server-side checks can be tested
        )
        earlier.input(
            on_select_upload, inputs=[earlier], outputs=[upload_path], api_visibility="private"
        )
        insert_btn.click(
            on_insert,
            inputs=[editor, earlier],
            outputs=[editor, upload_msg],
            queue=False,
            api_visibility="private",
        )
        timer.tick(
            refresh,
            inputs=[log_sig],
            outputs=[log_box, workers_md, log_sig],
            queue=False,
            show_progress="hidden",
            api_visibility="private",
        )
        demo.load(
            on_load,
            outputs=[earlier, log_box, workers_md, log_sig],
            queue=False,
            api_visibility="private",
        )
        api_btn.click(
            api_generate,
            inputs=[api_in],
            outputs=[api_status, api_files],
            api_name="generate",
            concurrency_limit=None,
        )

    allowed = [str(backend.output_dir), str(backend.uploads_dir), str(log_file)]
    demo._cosmos_allowed = allowed
    demo._cosmos_max_bytes = int(limit_mb * 1024 * 1024)
    demo.cosmos_backend = backend  # for tests and the notebook helper

    from ._notebook import install_launch

    install_launch(demo)
    return demo

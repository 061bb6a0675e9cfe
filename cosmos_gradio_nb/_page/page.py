"""The default Gradio page: request editor, viewer, uploads, queue, history, compare, files, machine, log.

:func:`create_gradio_UI` puts three things together: a :class:`Backend` around
the given ``infer_func`` (which the page calls, whatever it is), one handler
object per panel (``generate``, ``uploads_panel``, ``statusbar``,
``history_panel``, ``files``, ``queue_panel``, ``compare_panel``, ``system_panel``,
and ``api``/``ops_api`` for the endpoints; each testable without a page), and the
layout (``layout``, ``ops_layout``); this module wires them (``ops_wiring`` the
operations tabs).

Browser tabs, ``gradio_client`` calls and Python futures share the app's one
queue, so they interleave fairly and N model groups run N requests at once:
Generate has no Gradio concurrency limit, the engine's queue does the scheduling.

The returned Blocks fills in safe ``launch()`` defaults: only ``OUTPUT_DIR``,
``UPLOADS_DIR`` and ``LOG_FILE`` are servable (``allowed_paths``), uploads are
capped (``max_file_size``), errors reach the page (``show_error``), and binding a
non-loopback address without ``auth`` prints a warning. Every launch puts the
page's guard in front of Gradio (``guard.guarded_app_kwargs``: request bodies,
served files, the upload cache's quota, the file browser's zips, the API
example), and an input Gradio itself refuses is logged in one line.
"""

import json
import logging
import sys
from typing import Any

from .._core.provenance import git_info
from .._core.public import public
from .._core.settings import parse_auth
from .._core.uploads import max_upload_mb as resolve_upload_mb
from .api import LATEST, ApiEndpoints, input_refusal
from .backend import Backend
from .compare_panel import ComparePanel
from .examples import set_file_example, set_text_example
from .files import FileBrowser
from .generate import GeneratePanel
from .guard import GuardPolicy, guarded_app_kwargs
from .history_panel import HistoryPanel
from .layout import build_page
from .ops_api import OpsEndpoints
from .ops_wiring import OpsPanels, wire_ops
from .queue_panel import QueuePanel
from .render import CSS, header_info_html, schema_markdown
from .statusbar import FOLLOW_LOG_JS, StatusBar
from .system_panel import SystemPanel
from .uploads_panel import UploadsPanel
from .wiring import wire_api, wire_files, wire_generate, wire_history, wire_statusbar, wire_uploads

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
        _cosmos_guard: GuardPolicy
        cosmos_backend: Backend
        cosmos_files: FileBrowser

        def launch(self, *args: Any, **kwargs: Any) -> Any:
            kwargs["app_kwargs"] = guarded_app_kwargs(self, kwargs.pop("app_kwargs", None))
            allowed = list(kwargs.pop("allowed_paths", None) or [])
            kwargs["allowed_paths"] = allowed + list(self._cosmos_allowed)
            kwargs.setdefault("max_file_size", self._cosmos_max_bytes)
            kwargs.setdefault("show_error", True)
            css = kwargs.get("css")
            kwargs["css"] = CSS if not css else f"{CSS}\n{css}"
            if not kwargs.get("js"):
                kwargs["js"] = FOLLOW_LOG_JS
            if "auth" not in kwargs:  # COSMOS_GRADIO_AUTH guards every launch of the page
                kwargs["auth"] = parse_auth(self.cosmos_backend.env.auth)
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

        async def preprocess_data(self, block_fn: Any, *args: Any, **kwargs: Any) -> Any:
            try:  # Gradio refusing an input (a file it may not read...): one line, no traceback
                return await super().preprocess_data(block_fn, *args, **kwargs)
            except Exception as exc:
                raise input_refusal(getattr(block_fn, "api_name", None), exc) from None

        def close(self, *args: Any, **kwargs: Any) -> Any:
            try:
                return super().close(*args, **kwargs)
            finally:  # the zips this page built; a later launch makes new ones
                browser = getattr(self, "cosmos_files", None)
                if browser is not None:
                    browser.close()

    _blocks_cls = CosmosBlocks
    return CosmosBlocks


@public
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
        Called with each request's parameters (a dict), in a thread. Usually
        ``app.infer`` of a :class:`NotebookApp` or :class:`GradioApp`; a wrapper or
        a lambda around it works the same, progress, queue position and Cancel
        included, because the page follows the future the app's ``submit``
        creates during the call. A returned future is followed to its end; a
        plain result (an ``InferenceResult``, a dict with ``videos``/``images``/
        ``files``, anything else) is shown when the function returns.
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
    backend = Backend(infer_func)
    limit_mb = resolve_upload_mb(
        backend.env.max_upload_mb if max_upload_mb is None else max_upload_mb
    )
    if default_request is None:
        default_request = backend.default_request() or {}
    backend.output_dir.mkdir(parents=True, exist_ok=True)
    backend.uploads_dir.mkdir(parents=True, exist_ok=True)
    schema_md = schema_markdown(backend.params_schema(), default_request)
    demo = _build(
        backend,
        header=header,
        default_request=default_request,
        help_md="\n\n".join(p for p in (help_text, schema_md) if p),
        limit_mb=limit_mb,
    )
    demo._cosmos_allowed = [
        str(backend.output_dir),
        str(backend.uploads_dir),
        str(backend.log_file),
    ]
    demo._cosmos_max_bytes = int(limit_mb * 1024 * 1024)
    cache_mb = float(backend.env.upload_cache_max_mb)
    if cache_mb < limit_mb:
        raise ValueError(
            f"max_upload_mb={limit_mb:g} is over UPLOAD_CACHE_MAX_MB={cache_mb:g}: one upload "
            "would not fit in the upload cache; raise UPLOAD_CACHE_MAX_MB"
        )
    demo._cosmos_guard = GuardPolicy(
        max_request_bytes=backend.max_request_bytes,
        output_dir=backend.output_dir,
        uploads_dir=backend.uploads_dir,
        log_file=backend.log_file,
        max_upload_request_bytes=int(cache_mb * 1024 * 1024),
    )
    demo.cosmos_backend = backend  # for tests and the notebook helper

    from .._notebook.launch import install_launch

    install_launch(demo)
    return demo


def _build(
    backend: Backend,
    *,
    header: str,
    default_request: dict[str, Any],
    help_md: str,
    limit_mb: float,
) -> Any:
    """The Blocks: handler objects, the layout, and the wiring between them."""
    default_text = json.dumps(default_request, indent=2)
    generate = GeneratePanel(backend, default_text)
    uploads = UploadsPanel(backend, limit_mb)
    status = StatusBar(backend)
    api = ApiEndpoints(backend, default_text, uploads)
    history = HistoryPanel(backend, defaults=default_request)
    browser = FileBrowser(backend)
    ops = _ops_panels(backend, default_request, history)
    info = header_info_html(
        model_name=backend.model_name,
        app_name=backend.app_name,
        started_at=backend.started_at,
        git=git_info(),
        device=backend.devices_label(),
    )
    # Gradio's cache (GRADIO_TEMP_DIR) keeps every upload and every output it served:
    # files older than UPLOAD_CACHE_MAX_AGE are deleted, checked twice per that age.
    age = max(1, int(float(getattr(backend.env, "upload_cache_max_age", 86400))))
    cache = (max(1, min(age, 3600) // 2), age)
    blocks_cls = _cosmos_blocks()
    with blocks_cls(
        title=header, analytics_enabled=False, fill_width=True, delete_cache=cache
    ) as demo:
        page = build_page(
            header=header,
            header_info_html=info,
            default_text=default_text,
            limit_mb=limit_mb,
            help_md=help_md,
            log_file=backend.log_file,
        )
        wire_generate(page, generate)
        wire_uploads(page, uploads)
        wire_statusbar(page, status)
        wire_history(page, history)
        wire_files(page, browser)
        demo.unload(browser.forget_session)  # a closed tab's zip is deleted
        wire_api(page, api)
        set_file_example(page.api_upload_in, lambda: getattr(demo, "local_url", None) or "")
        set_text_example(page.api_id_in, LATEST)
        wire_ops(page, ops)
        listing = [page.hist_table, page.hist_label, page.hist_offset, page.hist_ids, page.hist_sig]
        private: dict[str, Any] = {"queue": False, "api_visibility": "private"}
        demo.load(  # one request when a page opens: the uploads list, the log, the workers
            lambda: (uploads.on_load(), *status.on_load()),
            outputs=[page.earlier, page.log, page.workers, page.log_sig],
            **private,
        )
        where = [page.hist_offset, page.hist_search, page.hist_state, page.hist_checked]
        demo.load(history.render, inputs=where, outputs=listing, **private)
    demo.cosmos_generate = generate
    demo.cosmos_uploads = uploads
    demo.cosmos_statusbar = status
    demo.cosmos_api = api
    demo.cosmos_history = history
    demo.cosmos_files = browser
    demo.cosmos_ops = ops
    return demo


def _ops_panels(
    backend: Backend, default_request: dict[str, Any], history: HistoryPanel
) -> OpsPanels:
    """The handler objects of the Queue, Compare and System tabs and their endpoints."""
    queue = QueuePanel(backend, defaults=default_request)
    system = SystemPanel(backend)
    return OpsPanels(
        queue=queue,
        system=system,
        compare=ComparePanel(backend),
        history=history,
        api=OpsEndpoints(queue, system, history.ops),
    )

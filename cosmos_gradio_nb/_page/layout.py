"""The page's layout: every component, built inside an open ``gr.Blocks``, and nothing wired.

:func:`build_page` returns a :class:`Page` naming each component, so ``page``
can wire handlers to them and tests can find them by ``elem_id``. Six tabs
(Generate, Queue, History, Compare, Files, System; the operations tabs' parts are
built by ``ops_layout``) under a header that says what is served, and the log
below them.
"""

import json
from dataclasses import dataclass
from typing import Any

import gradio as gr

from .._core.presentation import esc
from .._core.uploads import ALLOWED_EXTENSIONS
from .history_panel import HISTORY_COLUMNS, STATE_FILTERS
from .ops_layout import (
    OpsPage,
    build_api,
    build_compare_tab,
    build_history_selection,
    build_queue_tab,
    build_system_tab,
)
from .render import status_html

__all__ = ["Page", "build_page", "request_textbox"]


def api_example(request_text: str) -> str:
    """The default request as "Use via API" must show it to run as shown.

    Gradio writes a string example between double quotes without escaping it
    (``text="` + value + `"``, in its Python, JavaScript and curl snippets alike), so a
    JSON request shown as is breaks all three. The example is the request on one
    line with its quotes and backslashes already escaped: between those quotes it is
    a valid Python and JavaScript string, and a valid JSON string in the curl body.
    """
    compact = json.dumps(json.loads(request_text), separators=(", ", ": "))
    return json.dumps(compact)[1:-1]


def request_textbox(example: str, **kwargs: Any) -> Any:
    """A Textbox whose API example is a real request, so "Use via API" runs as shown.

    Set on the instance, not by subclassing: Gradio takes a Textbox subclass from
    outside its package for a custom component and asks the browser to load one.
    """
    box = gr.Textbox(**kwargs)
    box.example_payload = lambda: example  # type: ignore[method-assign]
    box.example_value = lambda: example  # type: ignore[method-assign]
    return box


@dataclass
class Page:
    """The components of the page, by role."""

    tabs: Any
    workers: Any
    editor: Any
    generate: Any
    cancel: Any
    cancel_note: Any
    reset: Any
    status: Any
    upload: Any
    upload_msg: Any
    earlier: Any
    upload_path: Any
    insert: Any
    video: Any
    gallery: Any
    file_links: Any
    status_json: Any
    log: Any
    log_sig: Any
    timer: Any
    # history
    hist_tab: Any
    hist_search: Any
    hist_newer: Any
    hist_older: Any
    hist_refresh: Any
    hist_label: Any
    hist_table: Any
    hist_offset: Any
    hist_ids: Any
    hist_sig: Any
    hist_selected: Any
    hist_panel: Any
    hist_load: Any
    hist_note: Any
    hist_video: Any
    hist_gallery: Any
    hist_files: Any
    hist_params: Any
    hist_status: Any
    hist_timer: Any
    hist_state: Any
    hist_checked: Any
    hist_pick_note: Any
    hist_compare: Any
    hist_delete: Any
    hist_confirm_row: Any
    hist_confirm_text: Any
    hist_confirm_yes: Any
    hist_confirm_no: Any
    hist_pending: Any
    hist_ops_note: Any
    hist_undo: Any
    hist_batch: Any
    # file browser
    fb_tab: Any
    fb_root: Any
    fb_filter: Any
    fb_folder: Any
    fb_folder_note: Any
    fb_file: Any
    fb_zip: Any
    fb_zip_download: Any
    fb_zip_note: Any
    fb_info: Any
    fb_video: Any
    fb_image: Any
    fb_json: Any
    fb_text: Any
    fb_download: Any
    # API-only components (hidden)
    api_in: Any
    api_status: Any
    api_files: Any
    api_generate: Any
    api_stream: Any
    api_default: Any
    api_default_out: Any
    api_upload_in: Any
    api_upload_out: Any
    api_upload: Any
    api_list_out: Any
    api_list: Any
    api_id_in: Any
    api_id_out: Any
    api_status_btn: Any
    # the operations tabs (Queue, Compare, System) and their API
    ops: OpsPage


def _header(header: str, info_html: str) -> Any:
    with gr.Row(equal_height=True):
        with gr.Column(scale=3, min_width=300):
            gr.Markdown(f"## {header}", elem_id="cg-header")
            gr.HTML(info_html, elem_id="cg-header-info")
        with gr.Column(scale=2, min_width=300):
            workers = gr.Markdown("", elem_id="cg-workers")
    return workers


def _generate_tab(default_text: str, limit_mb: float, help_md: str) -> dict[str, Any]:
    c: dict[str, Any] = {}
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=380):
            c["editor"] = gr.Code(
                value=default_text,
                language="json",
                lines=14,
                max_lines=30,
                label="Request (JSON)",
                interactive=True,
                elem_id="cg-editor",
            )
            with gr.Row():
                c["generate"] = gr.Button(
                    "Generate", variant="primary", scale=3, min_width=120, elem_id="cg-generate"
                )
                c["cancel"] = gr.Button(
                    "Cancel", variant="stop", scale=1, min_width=70, elem_id="cg-cancel"
                )
                c["reset"] = gr.Button(
                    "Reset", variant="secondary", scale=1, min_width=70, elem_id="cg-reset"
                )
            c["cancel_note"] = gr.Markdown("", elem_id="cg-cancel-msg", elem_classes=["cg-note"])
            c["status"] = gr.HTML(status_html("idle"), elem_id="cg-status")
            with gr.Accordion("Assets: upload and reuse", open=True):
                c["upload"] = gr.UploadButton(
                    f"Upload images, videos, .json, .txt or .md (several at once; max "
                    f"{limit_mb:g} MB each)",
                    file_types=sorted(ALLOWED_EXTENSIONS),
                    file_count="multiple",
                    size="sm",
                    elem_id="cg-upload",
                )
                c["upload_msg"] = gr.Markdown("", elem_id="cg-upload-msg")
                c["earlier"] = gr.Dropdown(
                    label="Uploaded files (newest first)",
                    choices=[],
                    value=None,
                    interactive=True,
                    elem_id="cg-earlier",
                )
                c["upload_path"] = gr.Textbox(
                    label="Server path",
                    interactive=False,
                    buttons=["copy"],
                    elem_id="cg-upload-path",
                )
                c["insert"] = gr.Button("Insert into request", size="sm", elem_id="cg-insert")
        with gr.Column(scale=3, min_width=420):
            c["video"] = gr.Video(
                label="Video",
                autoplay=True,
                loop=True,
                interactive=False,
                height=460,
                elem_id="cg-video",
            )
            c["gallery"] = gr.Gallery(
                label="Images",
                columns=6,
                height=170,
                object_fit="contain",
                preview=False,
                fit_columns=False,
                elem_id="cg-gallery",
            )
            c["file_links"] = gr.HTML("", elem_id="cg-files")
            with gr.Accordion("Status JSON", open=False):
                c["status_json"] = gr.JSON(elem_id="cg-status-json")
    if help_md:  # full width: a pipeline's table has long types and descriptions
        with gr.Accordion("Parameters", open=False):
            gr.Markdown(help_md, elem_id="cg-help")
    return c


def _history_tab() -> dict[str, Any]:
    c: dict[str, Any] = {}
    with gr.Row():
        c["hist_search"] = gr.Textbox(
            placeholder="request id or date (20261202)",
            show_label=False,
            scale=3,
            elem_id="cg-hist-search",
        )
        c["hist_state"] = gr.Dropdown(
            STATE_FILTERS,
            value="all",
            show_label=False,
            scale=1,
            min_width=130,
            elem_id="cg-hist-state",
        )
        c["hist_newer"] = gr.Button("◀ Newer", size="sm", scale=1, elem_id="cg-hist-newer")
        c["hist_older"] = gr.Button("Older ▶", size="sm", scale=1, elem_id="cg-hist-older")
        c["hist_refresh"] = gr.Button("Refresh", size="sm", scale=1, elem_id="cg-hist-refresh")
    c["hist_label"] = gr.Markdown("", elem_id="cg-hist-label")
    c["hist_table"] = gr.Dataframe(
        headers=HISTORY_COLUMNS,
        datatype=["bool", "html", "str", "str", "str", "str", "str"],
        type="array",
        interactive=True,  # only the first column's boxes: every other column is static
        static_columns=list(range(1, len(HISTORY_COLUMNS))),
        wrap=True,
        max_height=520,
        column_widths=["48px", "76px", "160px", "110px", "100px", "130px", "auto"],
        elem_id="cg-hist-table",
    )
    c.update(build_history_selection())
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=380):
            c["hist_panel"] = gr.HTML(
                '<div class="cg-note">Select a run in the list.</div>', elem_id="cg-hist-panel"
            )
            c["hist_load"] = gr.Button(
                "Load into editor", variant="primary", size="sm", elem_id="cg-hist-load"
            )
            c["hist_note"] = gr.Markdown("", elem_id="cg-hist-note", elem_classes=["cg-note"])
            c["hist_params"] = gr.Code(
                language="json", label="Parameters", interactive=False, elem_id="cg-hist-params"
            )
            c["hist_files"] = gr.HTML("", elem_id="cg-hist-files")
            with gr.Accordion("Status JSON", open=False):
                c["hist_status"] = gr.JSON(elem_id="cg-hist-status")
        with gr.Column(scale=3, min_width=420):
            c["hist_video"] = gr.Video(
                label="Video", interactive=False, height=320, elem_id="cg-hist-video"
            )
            c["hist_gallery"] = gr.Gallery(
                label="Images",
                columns=6,
                height=140,
                preview=False,
                object_fit="contain",
                fit_columns=False,
                elem_id="cg-hist-gallery",
            )
    c["hist_offset"] = gr.State(0)
    c["hist_checked"] = gr.State([])
    c["hist_pending"] = gr.State([])
    c["hist_batch"] = gr.State("")
    c["hist_ids"] = gr.State([])
    c["hist_sig"] = gr.State("")
    c["hist_selected"] = gr.State("")
    c["hist_timer"] = gr.Timer(3.0)
    return c


def _files_tab() -> dict[str, Any]:
    c: dict[str, Any] = {}
    with gr.Row():
        c["fb_root"] = gr.Radio(
            [("Outputs", "outputs"), ("Uploads", "uploads")],
            value="outputs",
            label="Folder",
            scale=1,
            elem_id="cg-fb-root",
        )
        c["fb_filter"] = gr.Textbox(
            label="Filter folders", placeholder="part of a name", scale=2, elem_id="cg-fb-filter"
        )
        c["fb_folder"] = gr.Dropdown(
            label="Request or upload folder", choices=[], scale=3, elem_id="cg-fb-folder"
        )
    c["fb_folder_note"] = gr.Markdown("", elem_id="cg-fb-folder-note", elem_classes=["cg-note"])
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=320):
            c["fb_file"] = gr.Radio(label="Files", choices=[], elem_id="cg-fb-file")
            with gr.Row():
                c["fb_zip"] = gr.Button("Zip this folder", size="sm", elem_id="cg-fb-zip")
                # A link the guard serves (zips.py), not a DownloadButton: Gradio would copy
                # the zip into its cache first.
                c["fb_zip_download"] = gr.HTML("", elem_id="cg-fb-zip-link")
            c["fb_zip_note"] = gr.Markdown("", elem_id="cg-fb-zip-note", elem_classes=["cg-note"])
        with gr.Column(scale=3, min_width=420):
            c["fb_info"] = gr.Markdown("", elem_id="cg-fb-info")
            c["fb_download"] = gr.DownloadButton(
                "Download", visible=False, size="sm", elem_id="cg-fb-download"
            )
            c["fb_video"] = gr.Video(
                visible=False, interactive=False, height=360, label="Preview", elem_id="cg-fb-video"
            )
            c["fb_image"] = gr.Image(
                visible=False, interactive=False, height=360, label="Preview", elem_id="cg-fb-image"
            )
            c["fb_json"] = gr.JSON(visible=False, label="Preview", elem_id="cg-fb-json")
            c["fb_text"] = gr.Code(
                visible=False, interactive=False, label="Preview", elem_id="cg-fb-text"
            )
    return c


def _log_area(log_file: Any) -> dict[str, Any]:
    c: dict[str, Any] = {}
    with gr.Accordion("Log", open=True):
        c["log"] = gr.Textbox(
            value="",
            lines=10,
            max_lines=10,
            autoscroll=True,
            interactive=False,
            show_label=False,
            elem_id="cg-log",
        )
        name = esc(log_file.name)
        where = esc(log_file)
        gr.HTML(
            f'<a href="gradio_api/file={esc(log_file)}" download="{name}" '
            f'id="cg-log-download">Download the whole log</a> '
            f'<span style="opacity:.6">({where})</span>',
        )
    c["log_sig"] = gr.State(None)
    c["timer"] = gr.Timer(1.0)
    return c


def _api_components(default_text: str) -> dict[str, Any]:
    c: dict[str, Any] = {}
    with gr.Row(visible=False):
        c["api_in"] = request_textbox(api_example(default_text), label="request JSON")
        c["api_status"] = gr.JSON(label="status")
        c["api_files"] = gr.File(label="files", file_count="multiple")
        c["api_generate"] = gr.Button("generate")
        c["api_stream"] = gr.Button("generate_stream")
        c["api_default"] = gr.Button("generate_default_request")
        c["api_default_out"] = gr.Textbox(label="default request JSON")
        c["api_upload_in"] = gr.File(label="file to upload")
        c["api_upload_out"] = gr.Textbox(label="stored path")
        c["api_upload"] = gr.Button("upload_file")
        c["api_list_out"] = gr.JSON(label="uploaded files")
        c["api_list"] = gr.Button("upload_file_list")
        c["api_id_in"] = gr.Textbox(label="request id")
        c["api_id_out"] = gr.JSON(label="request status")
        c["api_status_btn"] = gr.Button("request_status")
    return c


def build_page(
    *,
    header: str,
    header_info_html: str,
    default_text: str,
    limit_mb: float,
    help_md: str,
    log_file: Any,
) -> Page:
    """Build every component inside the current ``gr.Blocks`` and return them by role."""
    workers = _header(header, header_info_html)
    ops = OpsPage()
    parts: dict[str, Any] = {"workers": workers, "ops": ops}
    with gr.Tabs(selected="generate", elem_id="cg-tabs") as tabs:
        with gr.Tab("Generate", id="generate", elem_id="cg-tab-generate"):
            parts.update(_generate_tab(default_text, limit_mb, help_md))
        with gr.Tab("Queue", id="queue", elem_id="cg-tab-queue") as ops.queue_tab:
            build_queue_tab(ops)
        with gr.Tab("History", id="history", elem_id="cg-tab-history") as hist_tab:
            parts.update(_history_tab())
        with gr.Tab("Compare", id="compare", elem_id="cg-tab-compare") as ops.compare_tab:
            build_compare_tab(ops)
        with gr.Tab("Files", id="files", elem_id="cg-tab-files") as fb_tab:
            parts.update(_files_tab())
        with gr.Tab("System", id="system", elem_id="cg-tab-system") as ops.system_tab:
            build_system_tab(ops)
    parts.update(hist_tab=hist_tab, fb_tab=fb_tab)
    parts.update(_log_area(log_file))
    parts.update(_api_components(default_text))
    build_api(ops, request_textbox)
    return Page(tabs=tabs, **parts)

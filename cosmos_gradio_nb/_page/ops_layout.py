"""The operations tabs' components: Queue, Compare and System, and their API components.

Built inside the page's ``gr.Tabs`` by ``layout.build_page``, wired by ``page``;
like ``layout``, nothing here is wired. The Queue and System tabs each have a
timer that runs only while the tab is shown (``page`` turns it on and off as
tabs are selected), so a page on another tab costs the server nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from .._notebook.compare import COMPARE_JS
from .._notebook.ops_html import QUEUE_JS
from .compare_panel import EMPTY_COMPARE

__all__ = [
    "OpsPage",
    "build_api",
    "build_compare_tab",
    "build_history_selection",
    "build_queue_tab",
    "build_system_tab",
]

# A request id shaped example, so "Use via API" samples run as shown (nothing matches it).
EXAMPLE_ID = "0123456789ab"
EXAMPLE_BATCH = "20260101-000000_0123abcd"


@dataclass
class OpsPage:
    """The components of the operations tabs and their API, by role."""

    queue_tab: Any = None
    queue_html: Any = None
    queue_note: Any = None
    queue_sig: Any = None
    queue_timer: Any = None
    compare_tab: Any = None
    compare_html: Any = None
    compare_note: Any = None
    system_tab: Any = None
    system_html: Any = None
    system_timer: Any = None
    api_queue: Any = None
    api_queue_out: Any = None
    api_stop_in: Any = None
    api_stop: Any = None
    api_stop_out: Any = None
    api_stats: Any = None
    api_stats_out: Any = None
    api_delete_in: Any = None
    api_delete: Any = None
    api_delete_out: Any = None
    api_restore_in: Any = None
    api_restore: Any = None
    api_restore_out: Any = None


def build_queue_tab(ops: OpsPage) -> None:
    """Inside an open ``gr.Tab``: every running and queued request, Stop/Cancel per row."""
    ops.queue_note = gr.Markdown("", elem_id="cg-queue-note", elem_classes=["cg-note"])
    ops.queue_html = gr.HTML(
        '<div class="cg-note">Loading the queue ...</div>',
        js_on_load=QUEUE_JS,
        elem_id="cg-queue",
    )
    ops.queue_sig = gr.State("")
    ops.queue_timer = gr.Timer(1.0, active=False)


def build_compare_tab(ops: OpsPage) -> None:
    """Inside an open ``gr.Tab``: the runs History sent, side by side."""
    ops.compare_note = gr.Markdown("", elem_id="cg-compare-note", elem_classes=["cg-note"])
    ops.compare_html = gr.HTML(EMPTY_COMPARE, js_on_load=COMPARE_JS, elem_id="cg-compare")


def build_system_tab(ops: OpsPage) -> None:
    """Inside an open ``gr.Tab``: GPUs (or CPU and memory) per node and per worker rank."""
    ops.system_html = gr.HTML(
        '<div class="cg-note">Reading the machine ...</div>', elem_id="cg-system"
    )
    ops.system_timer = gr.Timer(1.0, active=False)


def build_history_selection() -> dict[str, Any]:
    """Under the history list: what is ticked, Compare and Delete, the confirmation, Undo."""
    c: dict[str, Any] = {}
    with gr.Row(equal_height=True):
        c["hist_pick_note"] = gr.Markdown("", elem_id="cg-hist-pick-note", elem_classes=["cg-note"])
        c["hist_compare"] = gr.Button(
            "Compare", size="sm", scale=0, min_width=110, elem_id="cg-hist-compare"
        )
        c["hist_delete"] = gr.Button(
            "Delete", size="sm", variant="stop", scale=0, min_width=110, elem_id="cg-hist-delete"
        )
    with gr.Row(visible=False, elem_id="cg-hist-confirm") as row:
        c["hist_confirm_text"] = gr.Markdown("", elem_id="cg-hist-confirm-text")
        c["hist_confirm_yes"] = gr.Button(
            "Yes, delete",
            variant="stop",
            size="sm",
            scale=0,
            min_width=120,
            elem_id="cg-hist-confirm-yes",
        )
        c["hist_confirm_no"] = gr.Button(
            "Keep them", size="sm", scale=0, min_width=120, elem_id="cg-hist-confirm-no"
        )
    c["hist_confirm_row"] = row
    with gr.Row(equal_height=True):
        c["hist_ops_note"] = gr.Markdown("", elem_id="cg-hist-ops-note", elem_classes=["cg-note"])
        c["hist_undo"] = gr.Button(
            "Undo", size="sm", visible=False, scale=0, min_width=90, elem_id="cg-hist-undo"
        )
    return c


def build_api(ops: OpsPage, example_box: Callable[..., Any]) -> None:
    """The hidden components behind ``/queue``, ``/stop_request``, ``/system_stats``,
    ``/delete_runs`` and ``/restore_runs``.

    ``example_box(example, **kwargs)`` makes a Textbox whose "Use via API" example is
    ``example`` (``layout.request_textbox``), so every sample runs as shown.
    """
    _example_box = example_box
    with gr.Row(visible=False):
        ops.api_queue = gr.Button("queue")
        ops.api_queue_out = gr.JSON(label="queue")
        ops.api_stop_in = _example_box(EXAMPLE_ID, label="request id")
        ops.api_stop = gr.Button("stop_request")
        ops.api_stop_out = gr.JSON(label="stop")
        ops.api_stats = gr.Button("system_stats")
        ops.api_stats_out = gr.JSON(label="system stats")
        ops.api_delete_in = _example_box(EXAMPLE_ID, label="request ids")
        ops.api_delete = gr.Button("delete_runs")
        ops.api_delete_out = gr.JSON(label="deleted")
        ops.api_restore_in = _example_box(EXAMPLE_BATCH, label="trash batch")
        ops.api_restore = gr.Button("restore_runs")
        ops.api_restore_out = gr.JSON(label="restored")

"""Wiring of the operations tabs (Queue, History's selection, Compare, System) and their API.

``page`` builds the handler objects and calls :func:`wire_ops` once, inside the
page's ``gr.Blocks``. The Queue and System timers run only while their tab is
shown: selecting a tab turns its timer on and the other's off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from .compare_panel import ComparePanel
from .history_panel import HistoryPanel
from .layout import Page
from .ops_api import OpsEndpoints
from .queue_panel import QueuePanel
from .system_panel import SystemPanel

__all__ = ["OpsPanels", "wire_ops"]

_PRIVATE: dict[str, Any] = {"api_visibility": "private", "show_progress": "hidden"}
_FAST: dict[str, Any] = {**_PRIVATE, "queue": False}


@dataclass
class OpsPanels:
    """The handler objects of the operations tabs."""

    queue: QueuePanel
    system: SystemPanel
    compare: ComparePanel
    history: HistoryPanel
    api: OpsEndpoints


def _timers(page: Page) -> None:
    """Each tab's timer runs while that tab is shown, and only then."""
    ops = page.ops

    def shown(evt: gr.SelectData) -> tuple[Any, Any]:
        tab = (getattr(evt, "_data", None) or {}).get("id")
        return gr.Timer(active=tab == "queue"), gr.Timer(active=tab == "system")

    page.tabs.select(shown, outputs=[ops.queue_timer, ops.system_timer], **_FAST)


def _wire_queue(page: Page, queue: QueuePanel) -> None:
    ops = page.ops
    ops.queue_tab.select(queue.render, outputs=[ops.queue_html, ops.queue_sig], **_FAST)
    ops.queue_timer.tick(
        queue.refresh, inputs=[ops.queue_sig], outputs=[ops.queue_html, ops.queue_sig], **_FAST
    )
    ops.queue_html.click(
        queue.on_click, outputs=[ops.queue_note, ops.queue_html, ops.queue_sig], **_PRIVATE
    )


def _wire_history_ops(page: Page, hist: HistoryPanel, compare: ComparePanel) -> None:
    """The state filter, the boxes, Compare, Delete with its confirmation, and Undo."""
    listing = [page.hist_table, page.hist_label, page.hist_offset, page.hist_ids, page.hist_sig]
    search = [page.hist_search, page.hist_state, page.hist_checked]
    page.hist_state.input(hist.search, inputs=search, outputs=listing, **_PRIVATE)
    page.hist_table.select(
        hist.on_tick,
        inputs=[page.hist_ids, page.hist_checked],
        outputs=[page.hist_checked, page.hist_pick_note],
        **_FAST,
    )
    page.hist_table.input(
        hist.on_check,
        inputs=[page.hist_table, page.hist_ids, page.hist_checked],
        outputs=[page.hist_checked, page.hist_pick_note],
        **_FAST,
    )
    ops = page.ops
    page.hist_compare.click(
        compare.show,
        inputs=[page.hist_checked],
        outputs=[ops.compare_html, ops.compare_note, page.hist_pick_note, page.tabs],
        **_PRIVATE,
    )
    confirm = [page.hist_confirm_row, page.hist_confirm_text, page.hist_pending]
    page.hist_delete.click(
        hist.ask_delete, inputs=[page.hist_checked, page.hist_selected], outputs=confirm, **_FAST
    )
    page.hist_confirm_no.click(
        hist.keep, outputs=[page.hist_confirm_row, page.hist_ops_note, page.hist_pending], **_FAST
    )
    where = [page.hist_offset, page.hist_search, page.hist_state, page.hist_checked]
    page.hist_confirm_yes.click(
        hist.delete,
        inputs=[page.hist_pending],
        outputs=[
            page.hist_confirm_row,
            page.hist_ops_note,
            page.hist_batch,
            page.hist_undo,
            page.hist_checked,
        ],
        **_PRIVATE,
    ).then(hist.render, inputs=where, outputs=listing, **_PRIVATE).then(
        lambda: "", outputs=[page.hist_pick_note], **_FAST
    )
    page.hist_undo.click(
        hist.undo,
        inputs=[page.hist_batch],
        outputs=[page.hist_ops_note, page.hist_batch, page.hist_undo],
        **_PRIVATE,
    ).then(hist.render, inputs=where, outputs=listing, **_PRIVATE)


def _wire_system(page: Page, system: SystemPanel) -> None:
    ops = page.ops
    ops.system_tab.select(system.render, outputs=[ops.system_html], **_FAST)
    ops.system_timer.tick(system.render, outputs=[ops.system_html], **_FAST)


def _wire_api(page: Page, api: OpsEndpoints) -> None:
    ops = page.ops
    ops.api_queue.click(
        api.api_queue,
        outputs=[ops.api_queue_out],
        api_name="queue",
        api_description="Every running and queued request of the app, in order: id, state, "
        "source (page, api, python), position, progress, message, preview, params.",
        queue=False,
    )
    ops.api_stop.click(
        api.api_stop_request,
        inputs=[ops.api_stop_in],
        outputs=[ops.api_stop_out],
        api_name="stop_request",
        api_description="Cancel a queued request or stop a running one, by id; answers "
        "{id, stopped, state, message}.",
        queue=False,
    )
    ops.api_stats.click(
        api.api_system_stats,
        outputs=[ops.api_stats_out],
        api_name="system_stats",
        api_description="GPUs (memory, utilisation) or CPU and memory per node, and each "
        "worker rank's device and request, as JSON (sampled at most once a second).",
        queue=False,
    )
    ops.api_delete.click(
        api.api_delete_runs,
        inputs=[ops.api_delete_in],
        outputs=[ops.api_delete_out],
        api_name="delete_runs",
        api_description="Move past runs to OUTPUT_DIR/.trash by request id (space-separated "
        "or a JSON list); a queued or running one is refused. Returns the trash batch.",
    )
    ops.api_restore.click(
        api.api_restore_runs,
        inputs=[ops.api_restore_in],
        outputs=[ops.api_restore_out],
        api_name="restore_runs",
        api_description="Put back the runs of one /delete_runs call (its trash_batch).",
    )


def wire_ops(page: Page, panels: OpsPanels) -> None:
    """Wire every operations tab and endpoint (inside the page's open ``gr.Blocks``)."""
    _timers(page)
    _wire_queue(page, panels.queue)
    _wire_history_ops(page, panels.history, panels.compare)
    _wire_system(page, panels.system)
    _wire_api(page, panels.api)

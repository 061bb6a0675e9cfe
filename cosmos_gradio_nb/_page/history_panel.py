"""The page's history panel: past runs of OUTPUT_DIR, newest first, a page at a time.

Runs are read by ``_core.history`` from their folders' status.json files, so the
panel shows runs made from Python, from other pages and before a restart. A
refresh costs one ``stat`` of OUTPUT_DIR (the sorted listing is cached until it
changes) plus one ``stat`` per shown run, and re-renders only when one changed.
"""

import json
import os
from typing import Any

import gradio as gr

from .._core.history import HistoryPage, RunRecord, page_of_runs, params_summary
from .._core.outputs import STATUS_FILE, iso_time
from .._core.presentation import classify_error_record, esc, state_style
from .backend import Backend
from .live import live_state
from .render import error_html, file_url, files_html, status_html

__all__ = ["HISTORY_COLUMNS", "PAGE_SIZE", "HistoryPanel"]

PAGE_SIZE = 20
HISTORY_COLUMNS = ["", "queued (UTC)", "state", "duration", "request", "parameters"]


class HistoryPanel:
    """Handlers of the history panel (no layout: ``layout`` builds it, ``page`` wires it)."""

    def __init__(
        self,
        backend: Backend,
        page_size: int = PAGE_SIZE,
        defaults: dict[str, Any] | None = None,
    ) -> None:
        self.backend = backend
        self.page_size = page_size
        self.defaults = defaults or {}

    # ------------------------------------------------------------------ the list
    def _page(self, offset: int, contains: str) -> HistoryPage:
        return page_of_runs(
            self.backend.output_dir, offset, self.page_size, contains=(contains or "").strip()
        )

    def _signature(self, page: HistoryPage) -> tuple[Any, ...]:
        pending = self.backend.pending_futures()
        stamps: list[Any] = []
        for rec in page.records:
            try:
                stamps.append(os.stat(rec.folder / STATUS_FILE).st_mtime_ns)
            except OSError:
                stamps.append(0)
            live = pending.get(rec.request_id)
            if live is not None:
                stamps.append(live_state(live))
        return (page.total, page.offset, tuple(r.name for r in page.records), tuple(stamps))

    @staticmethod
    def _state_of(rec: RunRecord, pending: dict[str, Any]) -> str:
        """A run still going in this session reads as its future's state (its folder has no
        status.json until it ends); every other run as its status.json says."""
        live = pending.get(rec.request_id)
        return live_state(live) if live is not None and not live.done() else rec.state

    def _row(self, rec: RunRecord, pending: dict[str, Any]) -> list[str]:
        thumb = rec.thumbnail
        img = (
            f'<img src="{esc(file_url(thumb))}" alt="thumbnail" class="cg-thumb"/>'
            if thumb is not None
            else ""
        )
        state = self._state_of(rec, pending)
        when = (iso_time(rec.queued_at) or "")[:19].replace("T", " ")
        duration = f"{rec.duration:.1f} s" if rec.duration is not None else ""
        summary = (
            params_summary(rec.params, defaults=self.defaults)
            if not rec.broken
            else f"broken: {rec.broken}"
        )
        return [img, when, state_style(state).word, duration, rec.request_id, summary]

    def render(self, offset: int, contains: str) -> tuple[Any, str, int, list[str], Any]:
        """``(table, page label, offset, ids of the rows, signature)`` for one page."""
        page = self._page(int(offset or 0), contains)
        pending = self.backend.pending_futures()
        rows = [self._row(r, pending) for r in page.records]
        if page.total == 0:
            label = f"No past runs in `{self.backend.output_dir}` yet."
        else:
            first, last = page.offset + 1, page.offset + len(page.records)
            label = (
                f"Runs {first}-{last} of {page.total} in `{self.backend.output_dir}` "
                f"(page {page.page_number} of {page.page_count}), newest first"
            )
        table = gr.update(value=rows or [["", "", "", "", "", ""]])
        sig = list(self._signature(page))
        return table, label, page.offset, [r.request_id for r in page.records], json.dumps(sig)

    def refresh(self, offset: int, contains: str, sig: Any) -> tuple[Any, ...]:
        """Re-render only if a run was added, removed or changed state (for the timer)."""
        page = self._page(int(offset or 0), contains)
        if json.dumps(list(self._signature(page))) == sig:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        return self.render(offset, contains)

    def older(self, offset: int, contains: str) -> tuple[Any, ...]:
        return self.render(int(offset or 0) + self.page_size, contains)

    def newer(self, offset: int, contains: str) -> tuple[Any, ...]:
        return self.render(max(0, int(offset or 0) - self.page_size), contains)

    def search(self, contains: str) -> tuple[Any, ...]:
        return self.render(0, contains)

    # ------------------------------------------------------------------ one run
    def _find(self, request_id: str) -> RunRecord | None:
        page = page_of_runs(self.backend.output_dir, 0, 1, contains=f"_{request_id}")
        return page.records[0] if page.records else None

    def select(self, ids: list[str], evt: gr.SelectData) -> tuple[Any, ...]:
        """Show the run of the clicked row: outputs, parameters, status."""
        index = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        if not isinstance(index, int) or not 0 <= index < len(ids or []):
            return self.show("")
        return self.show(ids[index])

    def show(self, request_id: str) -> tuple[Any, ...]:
        """``(summary panel, video, images, file links, params JSON, status JSON, id)``."""
        rec = self._find(request_id) if request_id else None
        if rec is None:
            note = "Select a run in the list." if not request_id else f"No run {request_id}."
            return (
                f'<div class="cg-note">{esc(note)}</div>',
                None,
                [],
                "",
                "",
                None,
                "",
            )
        state = self._state_of(rec, self.backend.pending_futures())
        if rec.broken and state == "broken":
            panel = error_html("This run cannot be read", rec.broken, state="broken")
        elif state == "failed":
            view = classify_error_record(rec.error)
            panel = error_html(view.title, view.message, view.detail, state="failed")
        else:
            n_v, n_i = len(rec.videos), len(rec.images)
            note = f"{n_v} video{'s' * (n_v != 1)}, {n_i} image{'s' * (n_i != 1)} in {rec.folder}"
            panel = status_html(state, request_id=rec.request_id, elapsed=rec.duration, note=note)
        files = [str(p) for p in [*rec.videos, *rec.images, *rec.other]]
        return (
            panel,
            str(rec.videos[0]) if rec.videos else None,
            [str(p) for p in rec.images],
            files_html(files, [str(p) for p in rec.partial]),
            json.dumps(rec.params, indent=2),
            rec.status or {"state": rec.state, "broken": rec.broken},
            rec.request_id,
        )

    def load_into_editor(self, request_id: str) -> tuple[Any, Any, str]:
        """Put the selected run's parameters into the editor and go back to it."""
        rec = self._find(request_id) if request_id else None
        if rec is None or rec.broken:
            why = "Select a run first." if rec is None else "This run's parameters cannot be read."
            return gr.skip(), gr.skip(), why
        text = json.dumps(rec.params, indent=2)
        return text, gr.Tabs(selected="generate"), f"Loaded the parameters of {rec.request_id}."

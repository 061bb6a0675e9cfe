"""The page's history panel: past runs of OUTPUT_DIR, newest first, a page at a time.

Runs are read by ``_core.history`` from their folders' status.json files, so the
panel shows runs made from Python, from other pages and before a restart. A
refresh costs one ``stat`` of OUTPUT_DIR (the sorted listing is cached until it
changes) plus one ``stat`` per shown run, and re-renders only when one changed.

The list can be narrowed to one state (succeeded, failed, cancelled) beside the
search. The first column's boxes select runs (kept across pages and refreshes in
the page's state): Delete moves them to the trash after a confirmation, and Undo
puts them back (``run_ops``); Compare shows two to four side by side
(``compare_panel``). With nothing ticked, Delete acts on the run shown below.
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
from .run_ops import RunOps

__all__ = ["HISTORY_COLUMNS", "PAGE_SIZE", "STATE_FILTERS", "HistoryPanel"]

PAGE_SIZE = 20
HISTORY_COLUMNS = ["✓", "", "queued (UTC)", "state", "duration", "request", "parameters"]
# (label, value) of the state filter beside the search; "all" keeps every run.
STATE_FILTERS = [
    ("All states", "all"),
    ("Succeeded", "succeeded"),
    ("Failed", "failed"),
    ("Cancelled", "cancelled"),
]
_EMPTY_ROW = [False, "", "", "", "", "", ""]


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
        self.ops = RunOps(backend)
        self.ops.empty_expired()

    # ------------------------------------------------------------------ the list
    def _page(self, offset: int, contains: str, state: str = "all") -> HistoryPage:
        states = None if not state or state == "all" else {state}
        return page_of_runs(
            self.backend.output_dir,
            offset,
            self.page_size,
            contains=(contains or "").strip(),
            states=states,
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

    def _row(self, rec: RunRecord, pending: dict[str, Any], checked: bool = False) -> list[Any]:
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
        return [checked, img, when, state_style(state).word, duration, rec.request_id, summary]

    def render(
        self,
        offset: int,
        contains: str,
        state: str = "all",
        checked: list[str] | None = None,
    ) -> tuple[Any, str, int, list[str], Any]:
        """``(table, page label, offset, ids of the rows, signature)`` for one page."""
        page = self._page(int(offset or 0), contains, state)
        pending = self.backend.pending_futures()
        ticked = set(checked or [])
        rows = [self._row(r, pending, r.request_id in ticked) for r in page.records]
        which = f" {state}" if state and state != "all" else ""
        if page.total == 0:
            label = f"No{which} past runs in `{self.backend.output_dir}` yet."
        else:
            first, last = page.offset + 1, page.offset + len(page.records)
            label = (
                f"{which.strip().capitalize() or 'Runs'} {first}-{last} of {page.total} in "
                f"`{self.backend.output_dir}` (page {page.page_number} of {page.page_count}), "
                "newest first"
            )
            if ticked:
                label += f" · {len(ticked)} selected"
        table = gr.update(value=rows or [list(_EMPTY_ROW)])
        sig = list(self._signature(page))
        return table, label, page.offset, [r.request_id for r in page.records], json.dumps(sig)

    def refresh(
        self,
        offset: int,
        contains: str,
        sig: Any,
        state: str = "all",
        checked: list[str] | None = None,
    ) -> tuple[Any, ...]:
        """Re-render only if a run was added, removed or changed state (for the timer)."""
        page = self._page(int(offset or 0), contains, state)
        if json.dumps(list(self._signature(page))) == sig:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        return self.render(offset, contains, state, checked)

    def older(
        self, offset: int, contains: str, state: str = "all", checked: list[str] | None = None
    ) -> tuple[Any, ...]:
        return self.render(int(offset or 0) + self.page_size, contains, state, checked)

    def newer(
        self, offset: int, contains: str, state: str = "all", checked: list[str] | None = None
    ) -> tuple[Any, ...]:
        return self.render(max(0, int(offset or 0) - self.page_size), contains, state, checked)

    def search(
        self, contains: str, state: str = "all", checked: list[str] | None = None
    ) -> tuple[Any, ...]:
        return self.render(0, contains, state, checked)

    # ------------------------------------------------------------------ selection
    @staticmethod
    def on_tick(ids: list[str], checked: list[str] | None, evt: gr.SelectData) -> tuple[Any, Any]:
        """A click on a row's box: ``(selected ids, a line saying what can be done)``.

        The table reports a box's new value only once the cell loses focus; the click's
        select event comes at once, with the value before the click, so it decides.
        """
        index = evt.index if isinstance(evt.index, (list, tuple)) else [evt.index, None]
        row, column = index[0], index[1]
        if column != 0 or not isinstance(row, int) or not 0 <= row < len(ids or []):
            return gr.skip(), gr.skip()
        rid = ids[row]
        keep = [r for r in (checked or []) if r != rid]
        if not evt.value:  # it was not ticked: now it is
            keep.append(rid)
        return keep, _selection_words(keep)

    @staticmethod
    def on_check(table: Any, ids: list[str], checked: list[str] | None) -> tuple[Any, Any]:
        """The header's box (every row at once): ``(selected ids, what can be done)``.

        The table also reports a row's box when its cell loses focus, which can be after
        the next click's own event: a table with some rows ticked and others not says
        nothing new (each row's click decided already, ``on_tick``), so only all-ticked
        or none-ticked counts. Runs ticked on other pages stay selected.
        """
        rows = table.values.tolist() if hasattr(table, "values") else list(table or [])
        flags = [bool(row[0]) is True for row in rows[: len(ids or [])] if row]
        if not flags or (any(flags) and not all(flags)):
            return gr.skip(), gr.skip()
        shown = set(ids or [])
        keep = [rid for rid in (checked or []) if rid not in shown]
        if all(flags):
            keep += list(ids)
        keep = list(dict.fromkeys(keep))
        return keep, _selection_words(keep)

    # ------------------------------------------------------------------ one run
    def _find(self, request_id: str) -> RunRecord | None:
        page = page_of_runs(self.backend.output_dir, 0, 1, contains=f"_{request_id}")
        return page.records[0] if page.records else None

    def select(self, ids: list[str], evt: gr.SelectData) -> tuple[Any, ...]:
        """Show the run of the clicked row: outputs, parameters, status.

        A click on a row's box ticks it (``on_check``) and leaves the details as they are.
        """
        index, column = (
            (evt.index[0], evt.index[1]) if isinstance(evt.index, (list, tuple)) else (evt.index, 1)
        )
        if column == 0:
            return tuple(gr.skip() for _ in range(7))
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

    # ------------------------------------------------------------------ delete, undo
    def ask_delete(self, checked: list[str] | None, selected: str) -> tuple[Any, str, list[str]]:
        """Delete pressed: ``(confirmation row, its question, the ids it is about)``."""
        ids = list(checked or []) or ([selected] if selected else [])
        if not ids:
            return gr.update(visible=False), "", []
        days = self.ops.retention_days
        what = f"run {ids[0]}" if len(ids) == 1 else f"these {len(ids)} runs ({', '.join(ids)})"
        question = (
            f"**Delete {what}?** Their folders go to `{self.backend.output_dir / '.trash'}`, "
            f"where Undo can bring them back for {days:g} day{'s' * (days != 1)}."
        )
        return gr.update(visible=True), question, ids

    def delete(self, ids: list[str]) -> tuple[Any, str, str, Any, list[str]]:
        """Confirmed: ``(confirmation row, note, trash batch, Undo button, selection)``."""
        outcome = self.ops.delete(list(ids or []))
        undo = gr.update(visible=bool(outcome.batch))
        return gr.update(visible=False), outcome.words(), outcome.batch, undo, []

    @staticmethod
    def keep() -> tuple[Any, str, list[str]]:
        """Not confirmed: the confirmation goes away, nothing changed."""
        return gr.update(visible=False), "Nothing was deleted.", []

    def undo(self, batch: str) -> tuple[str, str, Any]:
        """Put the last deleted runs back: ``(note, trash batch, Undo button)``."""
        if not batch:
            return "Nothing to undo.", "", gr.update(visible=False)
        done = self.ops.restore(batch)
        n = len(done["restored"])
        note = f"Restored {n} run{'s' * (n != 1)}."
        if done["kept"]:
            note += f" Still in the trash (their names are taken again): {', '.join(done['kept'])}."
        return note, "", gr.update(visible=False)


def _selection_words(ids: list[str]) -> str:
    if not ids:
        return ""
    n = len(ids)
    can = "Compare or Delete" if 2 <= n <= 4 else "Delete"
    return f"{n} run{'s' * (n != 1)} selected: {can}."

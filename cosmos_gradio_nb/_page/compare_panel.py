"""The Compare tab's handler: two to four runs side by side, their videos in sync.

History's "Compare" sends the selected runs here; the tab shows
:func:`~.._notebook.compare.compare_html` with the page's file URLs (what
``cosmos_gradio_nb.compare`` shows in a notebook), and the component's script
(``COMPARE_JS``) keeps the videos playing together.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from .._core.history import page_of_runs
from .._notebook.compare import MAX_RUNS, MIN_RUNS, compare_html, compare_runs
from .backend import Backend
from .render import file_url

__all__ = ["EMPTY_COMPARE", "ComparePanel"]

EMPTY_COMPARE = (
    '<div class="cg-note">Select 2 to 4 runs in the History tab (the boxes in the first '
    "column) and press Compare.</div>"
)


class ComparePanel:
    """Handlers of the Compare tab (``page`` wires them)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def _results(self, ids: list[str]) -> tuple[list[Any], list[str]]:
        found, missing = [], []
        for rid in ids:
            page = page_of_runs(self.backend.output_dir, 0, 1, contains=f"_{rid}")
            if page.records:
                found.append(page.records[0].to_result())
            else:
                missing.append(rid)
        return found, missing

    def html(self, ids: list[str]) -> tuple[str, str]:
        """``(comparison, note)`` for these request ids; the note says what is wrong."""
        ids = list(dict.fromkeys(ids or []))
        if not MIN_RUNS <= len(ids) <= MAX_RUNS:
            note = f"Select {MIN_RUNS} to {MAX_RUNS} runs to compare ({len(ids)} selected)."
            return EMPTY_COMPARE, note
        results, missing = self._results(ids)
        if missing:
            return EMPTY_COMPARE, f"No run {', '.join(missing)} in {self.backend.output_dir}."
        runs = compare_runs(results)
        note = f"Comparing {len(runs)} runs."
        return compare_html(runs, lambda p: file_url(Path(p))), note

    def show(self, ids: list[str]) -> tuple[Any, Any, str, Any]:
        """History's Compare: ``(comparison, its note, History's note, tabs)``.

        It goes to the Compare tab when the selection can be compared, else it stays on
        History and says why there.
        """
        html, note = self.html(ids)
        if html is EMPTY_COMPARE:
            return gr.skip(), gr.skip(), note, gr.skip()
        return html, note, "", gr.Tabs(selected="compare")

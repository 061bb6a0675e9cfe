"""``load_results``: the past runs of an ``OUTPUT_DIR`` as results, and their list.

Read through :func:`._core.history.page_of_runs`, as the page's History is.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import overload

from . import rich
from .history import page_of_runs
from .public import public
from .result import InferenceResult

__all__ = ["ResultList", "load_results"]


class ResultList(Sequence["InferenceResult"]):
    """Past runs as a list of :class:`InferenceResult`, newest first; a table in a notebook.

    ``total`` is how many runs the folder holds (the list has at most ``limit``).
    """

    def __init__(self, results: Iterable[InferenceResult], total: int, output_dir: Path) -> None:
        self._results = list(results)
        self.total = total
        self.output_dir = output_dir

    @overload
    def __getitem__(self, index: int) -> InferenceResult: ...
    @overload
    def __getitem__(self, index: slice) -> list[InferenceResult]: ...
    def __getitem__(self, index: int | slice) -> InferenceResult | list[InferenceResult]:
        return self._results[index]

    def __len__(self) -> int:
        return len(self._results)

    def __iter__(self) -> Iterator[InferenceResult]:
        return iter(self._results)

    def __repr__(self) -> str:
        states: dict[str, int] = {}
        for res in self._results:
            state = str(res.status.get("state", "?"))
            states[state] = states.get(state, 0) + 1
        counts = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
        return f"<ResultList {len(self)} of {self.total} runs in {self.output_dir}: {counts}>"

    def _repr_html_(self) -> str:
        return rich.results_html(self)


@public
def load_results(
    output_dir: str | os.PathLike[str] | None = None,
    *,
    limit: int = 50,
    offset: int = 0,
    contains: str = "",
) -> ResultList:
    """The past runs of ``output_dir`` (default ``OUTPUT_DIR``) as results, newest first.

    Reads the ``status.json`` of each request folder, whoever made it (this
    session, another process, a server before its restart). A folder whose
    status.json is missing or broken is listed with ``status["state"] ==
    "broken"`` and the reason in ``status["broken"]``; nothing raises.

    Parameters
    ----------
    output_dir:
        The folder holding the request folders; default the ``OUTPUT_DIR`` setting.
    limit, offset:
        Which runs, counted from the newest (only those folders are read).
    contains:
        Keep folders whose name contains this (a request id, a date ``20261202``).

    Returns
    -------
    ResultList
        A sequence of :class:`InferenceResult`; displayed in a notebook it is a
        table with thumbnails.
    """
    if output_dir is None:
        from .settings import DeploymentEnv

        output_dir = DeploymentEnv().output_dir
    root = Path(output_dir).expanduser().resolve()
    page = page_of_runs(root, offset, limit, contains=contains)
    return ResultList((r.to_result() for r in page.records), page.total, root)

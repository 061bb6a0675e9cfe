"""Pure functions that turn requests, futures and errors into what the page shows.

Kept apart from the Gradio wiring in ``page.py`` so they can be unit-tested
without a server, and so that every error the page can show is written in one
place: invalid JSON with line and column, a validator's message, a worker's
error with its remote traceback, a crash or a timeout with what happened next.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .._core.exceptions import WorkerCrashedError
from .._core.presentation import (
    STATES,
    ErrorCategory,
    classify_error,
    esc,
    queue_wording,
    state_style,
)

__all__ = [
    "CSS",
    "error_html",
    "failure_html",
    "file_url",
    "files_html",
    "schema_markdown",
    "status_html",
]

# Styles for the status panel and the page layout (passed to launch by _ui). The badge
# colours come from _core.presentation's one table of states.
_BADGE_CSS = "\n".join(
    f".cg-{state} .cg-badge {{ background: {style.color}; }}" for state, style in STATES.items()
)
CSS = (
    """
#cg-status { min-height: 2.6em; }
.cg-status { border: 1px solid var(--border-color-primary); border-radius: 8px;
             padding: 8px 12px; font-size: 14px; background: var(--block-background-fill); }
.cg-line { display: flex; gap: 10px; align-items: baseline; flex-wrap: wrap; }
.cg-badge { font-weight: 600; padding: 1px 8px; border-radius: 10px; color: white;
            background: #6b7280; font-size: 12px; text-transform: uppercase; letter-spacing: .03em; }
.cg-meta { color: var(--body-text-color-subdued); font-size: 12px; margin-left: auto; }
.cg-bar { height: 6px; background: var(--border-color-primary); border-radius: 3px;
          margin-top: 6px; overflow: hidden; }
.cg-bar > div { height: 100%; background: #2563eb; transition: width .2s; }
.cg-refused .cg-text, .cg-failed .cg-text { color: #b91c1c; white-space: pre-wrap; }
.cg-status pre, .cg-problems { max-height: 260px; overflow: auto; font-size: 12px; margin: 6px 0 0;
                 background: var(--code-background-fill, #f6f6f6); padding: 6px;
                 white-space: pre-wrap; overflow-wrap: anywhere; }
.cg-problems { list-style: none; font-family: ui-monospace, monospace; }
.cg-problems li { margin: 1px 0; }
#cg-log textarea { font-family: ui-monospace, monospace; font-size: 12px; }
#cg-workers { font-size: 13px; color: var(--body-text-color-subdued); }
#cg-video video { max-height: 62vh; }
.cg-files { font-size: 13px; }
.cg-files ul { margin: 4px 0; padding-left: 18px; }
.cg-partial { color: #92400e; }
#cg-header-info { font-size: 12px; color: var(--body-text-color-subdued); }
#cg-header-info code { font-size: 12px; }
.cg-note { font-size: 13px; color: var(--body-text-color-subdued); min-height: 1.2em; }
.cg-thumb { max-width: 64px; max-height: 48px; display: block; }
#cg-help table { display: block; overflow-x: auto; font-size: 12px; max-width: 100%; }
#cg-help th, #cg-help td { word-break: normal; overflow-wrap: normal; padding: 4px 6px;
                           vertical-align: top; }
#cg-help td:nth-child(1), #cg-help td:nth-child(2) { white-space: nowrap; }
#cg-help td:nth-child(3) { max-width: 16em; overflow-wrap: anywhere; }
#cg-help td:nth-child(4) { min-width: 20em; }
.cg-zip-link { display: inline-block; padding: 4px 12px; border-radius: 6px; font-size: 13px;
               border: 1px solid var(--border-color-primary); text-decoration: none; }
.cg-dirty { color: #b45309; }
/* The history list is a table of static columns and one column of boxes: no lock icons, and
   none of the editing affordances (cell menus, row and column selectors) over the boxes. */
#cg-hist-table [aria-label="Static column"], #cg-hist-table .cell-menu-button,
#cg-hist-table .selection-button { display: none !important; }
"""
    + _BADGE_CSS
)


def _panel(state: str, text: str, meta: str = "", extra: str = "") -> str:
    return (
        f'<div class="cg-status cg-{state}" data-state="{state}">'
        f'<div class="cg-line"><span class="cg-badge">{esc(state_style(state).word)}</span>'
        f'<span class="cg-text">{text}</span><span class="cg-meta">{meta}</span></div>'
        f"{extra}</div>"
    )


def _meta(request_id: str = "", elapsed: float | None = None) -> str:
    parts = []
    if request_id:
        parts.append(f"request {esc(request_id)}")
    if elapsed is not None:
        parts.append(f"{elapsed:.1f} s")
    return " · ".join(parts)


def error_html(
    title: str,
    message: str,
    detail: str = "",
    *,
    state: str = "refused",
    request_id: str = "",
    elapsed: float | None = None,
    detail_label: str = "Remote traceback",
) -> str:
    """An error in the status panel: the title, then the message (one line per problem).

    A one-line message follows the title; a message of several lines (a validator's
    problems, or a JSON error's offending line and caret) is listed below it, each
    line wrapping rather than running off the edge.
    """
    first, _, rest = message.partition("\n")
    extra = ""
    if rest.strip():
        if "^" in rest and message.startswith("Invalid JSON"):  # line and caret: keep columns
            extra += f"<pre>{esc(rest)}</pre>"
        else:
            items = "".join(f"<li>{esc(line)}</li>" for line in message.splitlines() if line)
            extra += f'<ul class="cg-problems">{items}</ul>'
            first = ""
    if detail.strip():
        extra += (
            f"<details open><summary>{esc(detail_label)}</summary>"
            f"<pre>{esc(detail.rstrip())}</pre></details>"
        )
    text = f"<b>{esc(title)}</b>" + (f": {esc(first)}" if first else "") if title else esc(first)
    return _panel(state, text, _meta(request_id, elapsed), extra)


def failure_html(
    exc: BaseException, request_id: str = "", elapsed: float | None = None, *, ran: bool = True
) -> str:
    """The status panel for a request that failed on the workers, or was refused before it ran.

    Titled by :func:`~cosmos_gradio_nb._core.presentation.classify_error` (by exception
    class); ``ran=False`` (nothing was queued) shows it as refused whatever it is.
    """
    view = classify_error(exc)
    refused = view.category is ErrorCategory.REFUSED or not ran
    label = "Last log lines" if isinstance(exc, WorkerCrashedError) else "Remote traceback"
    return error_html(
        view.title,
        view.message,
        view.detail,
        state="refused" if refused else "failed",
        request_id=request_id,
        elapsed=elapsed,
        detail_label=label,
    )


def status_html(
    state: str,
    *,
    request_id: str = "",
    queue_position: int | None = None,
    progress: float | None = None,
    message: str = "",
    elapsed: float | None = None,
    note: str = "",
) -> str:
    """The status panel for a request that is queued, running or finished.

    Parameters
    ----------
    state:
        ``queued``, ``running``, ``succeeded``, ``failed`` or ``cancelled``
        (``idle`` for the empty panel).
    queue_position:
        Requests ahead of this one (0: next in line), worded by ``queue_wording``.
    progress, message:
        The model's last report (fraction 0..1 and text).
    note:
        Extra text after the state, already readable (e.g. where outputs are).
    """
    bar = ""
    if state == "queued":
        text = f"waiting for a free worker: {queue_wording(queue_position)}"
    elif state == "running":
        pct = None if progress is None else max(0.0, min(1.0, progress))
        text = esc(message) if message else "running on a worker"
        if pct is not None:
            text = f"{pct:.0%}" + (f" · {esc(message)}" if message else "")
            bar = f'<div class="cg-bar"><div style="width:{pct * 100:.1f}%"></div></div>'
        else:
            bar = '<div class="cg-bar"><div style="width:3%"></div></div>'
    elif state == "idle":
        text = "Edit the request and press Generate."
    else:
        text = esc(note)
        note = ""
    if note:
        text += f" · {esc(note)}"
    return _panel(state, text, _meta(request_id, elapsed), bar)


def file_url(path: str | Path) -> str:
    """The page-relative URL Gradio serves an allowed file at (works behind a proxy prefix)."""
    return "gradio_api/file=" + quote(str(path), safe="/")


def _links(paths: Iterable[str], css: str = "") -> str:
    items = "".join(
        f'<li class="{css}"><a href="{esc(file_url(p))}" download="{esc(Path(p).name)}">'
        f"{esc(Path(p).name)}</a></li>"
        for p in paths
    )
    return f"<ul>{items}</ul>" if items else ""


def files_html(files: list[str], partial: Iterable[str] = ()) -> str:
    """Download links for a request's files; a stopped run's files are marked partial."""
    partial = list(partial)
    if not files and not partial:
        return '<div class="cg-files cg-note">No output files yet.</div>'
    out = '<div class="cg-files" id="cg-file-links">'
    if files:
        out += f"<b>Output files</b> ({len(files)}){_links(files)}"
    if partial:
        out += (
            f'<b class="cg-partial">Partial files (the run was stopped)</b> ({len(partial)})'
            f"{_links(partial, 'cg-partial')}"
        )
    return out + "</div>"


def schema_markdown(schema: dict[str, Any] | None, default: dict[str, Any] | None) -> str:
    """A table of the request's keys from the validator's JSON schema (types, defaults, help)."""
    if not schema or not isinstance(schema.get("properties"), dict):
        return ""
    required = set(schema.get("required", []))
    rows = ["| key | type | default | description |", "|---|---|---|---|"]
    for key, prop in schema["properties"].items():
        typ = prop.get("type")
        if typ is None and "anyOf" in prop:
            typ = " \\| ".join(str(p.get("type", "?")) for p in prop["anyOf"])
        bounds = []
        for b, sym in (
            ("minimum", ">="),
            ("exclusiveMinimum", ">"),
            ("maximum", "<="),
            ("exclusiveMaximum", "<"),
        ):
            if b in prop:
                bounds.append(f"{sym}{prop[b]}")
        if bounds:
            typ = f"{typ} ({', '.join(bounds)})"
        if key in required:
            dflt = "**required**"
        else:
            value = (default or {}).get(key, prop.get("default"))
            dflt = f"`{json.dumps(value)}`"
        desc = str(prop.get("description", "")).replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `{key}` | {typ or ''} | {dflt} | {desc} |")
    return "\n".join(rows)


def _dirty_html(dirty: bool | None) -> str:
    """The checkout's state beside its commit: local changes mean the commit is not the code."""
    if dirty:
        return (
            ' <b class="cg-dirty" title="tracked files differ from this commit">'
            "+ local changes (dirty)</b>"
        )
    return ' <span class="cg-clean">(clean)</span>' if dirty is False else ""


def header_info_html(
    *, model_name: str, app_name: str, started_at: float, git: Any, device: str
) -> str:
    """What is served: model, factory, since when, on what, and the git checkout if any."""
    from .._core.outputs import iso_time

    since = (iso_time(started_at) or "")[:19].replace("T", " ")
    parts = [f"model <b>{esc(model_name or '?')}</b>"]
    if app_name:
        parts.append(f"<code>{esc(app_name)}</code>")
    parts.append(f"on {esc(device)}")
    parts.append(f"serving since {esc(since)} UTC")
    if git is not None:
        parts.append(
            f"git <b>{esc(git.name)}</b> <code>{esc(git.branch)}</code> @ "
            f"<code>{esc(git.commit)}</code>"
            + _dirty_html(getattr(git, "dirty", None))
            + (f' <span title="{esc(git.remote)}">({esc(git.remote)})</span>' if git.remote else "")
        )
    return '<div class="cg-header-info">' + " · ".join(parts) + "</div>"

"""Static HTML for results, futures and apps in a notebook.

A notebook page cannot read the kernel's disk, so a result's videos and images
are embedded as ``data:`` URIs while they are small; a larger file is linked
through the Jupyter server's ``files/`` handler when it lies under the server's
root folder, and otherwise only its path is shown. Everything here is plain
HTML (no ipywidgets), so it survives in a saved notebook and renders in any
front end; the live versions are in ``_notebook.form``.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._core.filetypes import mime_of
from .._core.presentation import (
    classify_error,
    classify_error_record,
    device_label,
    esc,
    group_state_style,
    queue_wording,
    state_style,
)
from .views import AppView, FutureView, ResultsView, ResultView, WorkerView

__all__ = [
    "EmbedBudget",
    "app_html",
    "badge",
    "embed_budget",
    "error_html",
    "file_src",
    "future_html",
    "preview_src",
    "result_html",
    "results_table_html",
]


@dataclass
class EmbedBudget:
    """What one notebook output may still embed: a cap per file and bytes left in all."""

    per_file: int
    left: int


def embed_budget() -> EmbedBudget:
    """The budget of one output, read once from the settings (bytes).

    Why a cap: every embedded byte is stored (base64, +33 %) in the notebook file
    and sent over the kernel's websocket. ``COSMOS_GRADIO_EMBED_MAX_MB`` sets the
    per-file cap (default 4 MB); the total is three times that.
    """
    from .._core.settings import DeploymentEnv

    per_file = max(0, int(DeploymentEnv().embed_max_mb * 1024 * 1024))
    return EmbedBudget(per_file=per_file, left=3 * per_file)


def _files_url(path: Path) -> str | None:
    """A same-origin URL for ``path`` through Jupyter's ``files/`` handler, if it can serve it."""
    from .frontend import jupyter_server_info

    info = jupyter_server_info()
    if not info or not info.get("root_dir"):
        return None
    try:
        rel = path.resolve().relative_to(Path(info["root_dir"]).resolve())
    except (ValueError, OSError):
        return None
    from urllib.parse import quote

    base = str(info.get("base_url") or "/")
    return f"{base.rstrip('/')}/files/{quote(rel.as_posix())}"


def file_src(path: Path, mime: str, budget: EmbedBudget) -> tuple[str | None, str]:
    """The ``src`` for an embedded file, and a note for the reader.

    Parameters
    ----------
    path:
        The file on the kernel's disk.
    mime:
        Its MIME type for the ``data:`` URI.
    budget:
        This output's :class:`EmbedBudget`; what is embedded is taken from it.

    Returns
    -------
    (src, note):
        ``src`` is a data URI, a ``files/`` URL or None (show the path only).
    """
    try:
        size = path.stat().st_size
    except OSError:
        return None, f"{path} (missing)"
    if size <= budget.per_file and size <= budget.left:
        try:
            data = path.read_bytes()
        except OSError:
            return None, f"{path} (unreadable)"
        budget.left -= size
        return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}", str(path)
    url = _files_url(path)
    mb = size / 1024 / 1024
    if url is not None:
        return url, f"{path} ({mb:.1f} MB, served by Jupyter)"
    return None, f"{path} ({mb:.1f} MB, too large to embed: open it from the kernel's disk)"


def _figure(media: str, note: str) -> str:
    """One captioned inline block (a video player or an image)."""
    return (
        '<figure style="margin:4px 8px 4px 0;display:inline-block;vertical-align:top">'
        f'{media}<figcaption style="font-size:11px;color:#6b7280">{esc(note)}</figcaption></figure>'
    )


def _media_html(videos: Iterable[Path], images: Iterable[Path], budget: EmbedBudget) -> str:
    parts: list[str] = []
    for video in videos:
        src, note = file_src(video, mime_of(video), budget)
        if src is None:
            parts.append(f'<div class="cg-note">video: {esc(note)}</div>')
            continue
        parts.append(
            _figure(
                '<video controls loop muted autoplay playsinline style="max-width:480px;'
                f'max-height:360px" src="{esc(src)}"></video>',
                note,
            )
        )
    for image in images:
        src, note = file_src(image, mime_of(image), budget)
        if src is None:
            parts.append(f'<div class="cg-note">image: {esc(note)}</div>')
            continue
        parts.append(
            _figure(
                f'<img style="max-width:320px;max-height:360px" src="{esc(src)}" '
                f'alt="{esc(image.name)}"/>',
                note,
            )
        )
    return "".join(parts)


def badge(state: str) -> str:
    """A request state as a coloured badge: the words and colours of ``_core.presentation``."""
    style = state_style(state)
    return _badge_html(style.word, style.color)


def _worker_badge(state: str) -> str:
    style = group_state_style(state)
    return _badge_html(style.word, style.color)


def _badge_html(word: str, color: str) -> str:
    return (
        f'<span style="background:{color};color:white;border-radius:4px;padding:1px 6px;'
        f'font-size:12px">{esc(word)}</span>'
    )


def error_html(error: Any) -> str:
    """An error from status.json (dict) or an exception: title, message, traceback folded.

    Titled as the page titles it (``_core.presentation``), so the two never disagree.
    """
    if isinstance(error, BaseException):
        view = classify_error(error)
    else:
        view = classify_error_record(error if isinstance(error, dict) else None)
    out = (
        f'<div style="color:#b91c1c;white-space:pre-wrap"><b>{esc(view.title)}</b>: '
        f"{esc(view.message)}</div>"
    )
    if view.detail:
        out += (
            '<details><summary>traceback</summary><pre style="font-size:11px;white-space:pre-wrap">'
            f"{esc(view.detail)}</pre></details>"
        )
    return out


def _partial_html(paths: list[Path]) -> str:
    """Files of a stopped or failed run: named, never played (a half-written video breaks)."""
    if not paths:
        return ""
    items = "".join(f"<li><code>{esc(p)}</code></li>" for p in paths)
    return (
        f"<details><summary>{len(paths)} partial file(s) (the run was stopped)</summary>"
        f'<ul style="margin:0">{items}</ul></details>'
    )


def result_html(res: ResultView) -> str:
    """Rich HTML for an ``InferenceResult``: header, inline videos and images, other files.

    Parameters
    ----------
    res:
        An ``InferenceResult`` (anything with ``request_id``, ``output_dir``, ``files``,
        ``videos``, ``images``, ``status`` and ``duration``).
    """
    budget = embed_budget()
    status = getattr(res, "status", {}) or {}
    state = str(status.get("state", "succeeded"))
    duration = float(getattr(res, "duration", 0.0) or 0.0)
    videos = [Path(p) for p in getattr(res, "videos", [])]
    images = [Path(p) for p in getattr(res, "images", [])]
    media = set(videos) | set(images)
    others = [Path(p) for p in getattr(res, "files", []) if Path(p) not in media]
    head = (
        f'<div style="font-family:sans-serif;font-size:13px"><div>{badge(state)} '
        f"request <code>{esc(res.request_id)}</code> in {duration:.2f} s &middot; "
        f"<code>{esc(res.output_dir)}</code></div>"
    )
    body = _media_html(videos, images, budget)
    if status.get("error"):
        body += error_html(status["error"])
    partial = [Path(p) for p in (status.get("files") or {}).get("partial", []) or []]
    others = [p for p in others if p not in set(partial)]
    if others:
        items = "".join(f"<li><code>{esc(p)}</code></li>" for p in others)
        body += f'<details><summary>{len(others)} other file(s)</summary><ul style="margin:0">{items}</ul></details>'
    body += _partial_html(partial)
    if status.get("broken"):
        body += f'<div style="color:#7c2d12">{esc(status["broken"])}</div>'
    return head + f"<div>{body}</div></div>"


def _progress_bar(fraction: float | None) -> str:
    if fraction is None:
        return '<progress style="width:240px"></progress>'
    pct = max(0.0, min(1.0, float(fraction)))
    return f'<progress style="width:240px" value="{pct:.3f}" max="1"></progress> {pct:.0%}'


def future_html(fut: FutureView) -> str:
    """HTML for an ``InferenceFuture`` as it is now: state and progress, or its outcome.

    A finished future shows its result (``result_html``) or its error; the live,
    updating version is ``_widgets.display_future``.
    """
    state = fut.state
    head = f'<div style="font-family:sans-serif;font-size:13px">{badge(state)} request <code>{esc(fut.request_id)}</code> '
    if state == "queued":
        return head + f"{esc(queue_wording(fut.queue_position))}</div>"
    if state == "running":
        msg = esc(fut.progress_message or "")
        return head + f"{_progress_bar(fut.progress)} {msg}</div>"
    if state == "cancelled":
        return head + "cancelled</div>"
    exc = fut.exception(timeout=0)
    if exc is not None:
        return head + "</div>" + error_html(exc)
    return result_html(fut.result(timeout=0))


def _worker_rows(workers: Iterable[WorkerView], figures: dict[tuple[int, int], str]) -> str:
    rows = []
    for w in workers:
        rows.append(
            "<tr>"
            f"<td>{esc(w.group)}</td><td>{esc(w.rank)}</td><td>{esc(device_label(w.gpu))}</td>"
            f"<td>{esc(getattr(w, 'node', '') or '-')}</td>"
            f"<td>{esc(w.pid if w.pid is not None else '-')}</td><td>{_worker_badge(str(w.state))}</td>"
            f"<td><code>{esc(w.request_id or '')}</code></td><td>{esc(getattr(w, 'restarts', 0))}</td>"
            f"<td>{figures.get((w.group, w.rank), '')}</td>"
            "</tr>"
        )
    return "".join(rows)


def _machine(app: AppView) -> tuple[str, dict[tuple[int, int], str]]:
    """The app's machines (GPUs, or CPU and memory) and each rank's figures, from its sampler.

    An app may give its own figures (``system_stats()``, say a connected app asking its
    server); otherwise this process samples (``_app.system``, at most about once a second).
    """
    from .._app.system import sampler_for
    from .ops_html import rank_figures_html, stats_html

    try:
        own = getattr(app, "system_stats", None)
        stats = own() if callable(own) else sampler_for(app).stats()  # type: ignore[arg-type]
    except Exception:  # figures are a bonus: never break the panel for them
        return "", {}
    figures = {(r.group, r.rank): rank_figures_html(r) for r in stats.ranks}
    return stats_html(stats, ranks=False), figures


def _queue(app: AppView, image_src: Any) -> str:
    """The app's running and queued requests (``app.requests()``), when it lists them."""
    from .._core.queue_view import queue_rows
    from .ops_html import queue_html

    listing = getattr(app, "requests", None)
    if not callable(listing):
        return ""
    try:
        rows = queue_rows(listing(), getattr(app, "default_request", None))
    except Exception:
        return ""
    return queue_html(rows, now=time.time(), image_src=image_src, limit=50)


def preview_src(budget: EmbedBudget) -> Any:
    """A queue row's preview image as a ``data:`` URI (within ``budget``), or None."""

    def src(path: str) -> str | None:
        found, _note = file_src(Path(path), mime_of(path), budget)
        return found

    return src


def _job_rows(history: list[FutureView], limit: int) -> str:
    rows = []
    for fut in list(reversed(history))[:limit]:
        state = fut.state
        if state == "running":
            detail = _progress_bar(fut.progress) + " " + esc(fut.progress_message or "")
        elif state == "queued":
            detail = esc(queue_wording(fut.queue_position))
        else:
            detail = ""
        rows.append(
            f"<tr><td><code>{esc(fut.request_id)}</code></td><td>{badge(state)}</td><td>{detail}</td></tr>"
        )
    return "".join(rows)


def app_html(app: AppView, *, jobs: int = 8, queue: bool = True) -> str:
    """A snapshot of an app: its workers and their figures, its machines, queue and recent jobs.

    Parameters
    ----------
    app:
        A ``NotebookApp`` (or anything with ``workers()``, ``queue_length``, ``history``,
        ``closed`` and ``env``; ``requests()`` adds the queue).
    jobs:
        How many of the most recent requests to list.
    queue:
        Include the queue's table (the live panel shows it as rows with buttons instead).
    """
    closed = bool(getattr(app, "closed", False))
    name = getattr(app, "name", None) or getattr(getattr(app, "env", None), "model_name", "app")
    style = "font-family:sans-serif;font-size:13px;border-collapse:collapse"
    td = "th,td{padding:1px 8px;text-align:left}"
    if closed:
        return f'<div style="{style}"><b>{esc(name)}</b>: closed</div>'
    try:
        workers = list(app.workers())
    except Exception as exc:  # an app closing under us: show why rather than break the panel
        return f'<div style="{style}"><b>{esc(name)}</b>: {esc(exc)}</div>'
    history = list(getattr(app, "history", []) or [])
    waiting = getattr(app, "queue_length", 0)
    machine, figures = _machine(app)
    out = [
        f'<div style="{style}"><style>{td}</style>',
        f"<div><b>{esc(name)}</b> &middot; {len(workers)} worker(s) &middot; queue: {esc(waiting)}"
        f" &middot; {len(history)} request(s)</div>",
        f'<table style="{style}"><tr><th>group</th><th>rank</th><th>device</th><th>node</th><th>pid</th>'
        f"<th>state</th><th>request</th><th>restarts</th><th>load</th></tr>"
        f"{_worker_rows(workers, figures)}</table>",
        machine,
    ]
    if queue:
        out.append(_queue(app, preview_src(embed_budget())))
    if history:
        out.append(
            f'<table style="{style};margin-top:4px"><tr><th>recent request</th><th>state</th>'
            f"<th>progress</th></tr>{_job_rows(history, jobs)}</table>"
        )
    out.append("</div>")
    return "".join(out)


def results_table_html(results: ResultsView) -> str:
    """A table of past runs (``load_results``): thumbnail, time, state, duration, parameters.

    Thumbnails are the run's poster (or first image), embedded within the same
    budget as a result's media; past it, or for runs without images, a dash.
    """
    from .._core.history import params_summary
    from .._core.outputs import iso_time

    budget = embed_budget()
    style = "font-family:sans-serif;font-size:12px;border-collapse:collapse"
    rows = []
    for res in results:
        status = res.status or {}
        state = str(status.get("state", "?"))
        thumb = "&ndash;"
        if res.images:
            src, _note = file_src(Path(res.images[0]), mime_of(res.images[0]), budget)
            if src is not None:
                thumb = f'<img src="{esc(src)}" style="max-width:64px;max-height:48px" alt="thumbnail"/>'
        when = status.get("queued_at_iso") or iso_time(status.get("queued_at")) or ""
        dur = status.get("duration")
        dur_text = f"{float(dur):.2f} s" if isinstance(dur, (int, float)) else ""
        params = status.get("params")
        params = params if isinstance(params, dict) else {}
        extra = esc(status.get("broken", "")) if state == "broken" else ""
        if state == "failed" and isinstance(status.get("error"), dict):
            view = classify_error_record(status["error"])
            extra = esc(f"{view.title}: {view.message}"[:160])
        rows.append(
            f"<tr><td>{thumb}</td><td>{esc(str(when)[:19].replace('T', ' '))}</td>"
            f"<td>{badge(state)}</td><td>{dur_text}</td>"
            f"<td><code>{esc(res.request_id)}</code></td>"
            f"<td>{esc(params_summary(params))}{'<br>' + extra if extra else ''}</td></tr>"
        )
    head = (
        f"<div><b>{len(results)}</b> of {getattr(results, 'total', len(results))} runs in "
        f"<code>{esc(getattr(results, 'output_dir', ''))}</code>, newest first</div>"
    )
    return (
        f'<div style="{style}">{head}<style>.cg-runs td,.cg-runs th{{padding:2px 8px;'
        "text-align:left;vertical-align:middle}</style>"
        f'<table class="cg-runs" style="{style}"><tr><th></th><th>queued (UTC)</th><th>state</th>'
        f"<th>duration</th><th>request</th><th>parameters</th></tr>{''.join(rows)}</table></div>"
    )

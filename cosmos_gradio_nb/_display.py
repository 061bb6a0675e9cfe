"""Static HTML for results, futures and apps in a notebook.

A notebook page cannot read the kernel's disk, so a result's videos and images
are embedded as ``data:`` URIs while they are small; a larger file is linked
through the Jupyter server's ``files/`` handler when it lies under the server's
root folder, and otherwise only its path is shown. Everything here is plain
HTML (no ipywidgets), so it survives in a saved notebook and renders in any
front end; the live versions are in ``_widgets``.
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["app_html", "embed_budget", "file_src", "future_html", "result_html"]

_VIDEO_MIME = {".mp4": "video/mp4", ".webm": "video/webm", ".mov": "video/quicktime"}
_IMAGE_MIME = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".bmp": "image/bmp",
}
_STATE_COLOR = {
    "queued": "#6b7280",
    "running": "#2563eb",
    "succeeded": "#15803d",
    "failed": "#b91c1c",
    "cancelled": "#a16207",
    "starting": "#6b7280",
    "idle": "#15803d",
    "busy": "#2563eb",
    "restarting": "#a16207",
    "stopped": "#6b7280",
}


def embed_budget() -> tuple[int, int]:
    """Largest file, and largest total, embedded in one output (bytes).

    Why a cap: every embedded byte is stored (base64, +33 %) in the notebook file
    and sent over the kernel's websocket. ``COSMOS_GRADIO_EMBED_MAX_MB`` sets the
    per-file cap (default 4 MB); the total is three times that.
    """
    try:
        per_file = float(os.environ.get("COSMOS_GRADIO_EMBED_MAX_MB", "4"))
    except ValueError:
        per_file = 4.0
    per_file_bytes = max(0, int(per_file * 1024 * 1024))
    return per_file_bytes, 3 * per_file_bytes


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _files_url(path: Path) -> str | None:
    """A same-origin URL for ``path`` through Jupyter's ``files/`` handler, if it can serve it."""
    from ._notebook import jupyter_server_info

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


def file_src(path: Path, mime: str, budget: list[int]) -> tuple[str | None, str]:
    """The ``src`` for an embedded file, and a note for the reader.

    Parameters
    ----------
    path:
        The file on the kernel's disk.
    mime:
        Its MIME type for the ``data:`` URI.
    budget:
        A one-element list with the bytes still allowed in this output; decreased in place.

    Returns
    -------
    (src, note):
        ``src`` is a data URI, a ``files/`` URL or None (show the path only).
    """
    per_file, _total = embed_budget()
    try:
        size = path.stat().st_size
    except OSError:
        return None, f"{path} (missing)"
    if size <= per_file and size <= budget[0]:
        try:
            data = path.read_bytes()
        except OSError:
            return None, f"{path} (unreadable)"
        budget[0] -= size
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
        f'{media}<figcaption style="font-size:11px;color:#6b7280">{_esc(note)}</figcaption></figure>'
    )


def _media_html(videos: Iterable[Path], images: Iterable[Path], budget: list[int]) -> str:
    parts: list[str] = []
    for video in videos:
        mime = _VIDEO_MIME.get(video.suffix.lower(), "video/mp4")
        src, note = file_src(video, mime, budget)
        if src is None:
            parts.append(f'<div class="cg-note">video: {_esc(note)}</div>')
            continue
        parts.append(
            _figure(
                '<video controls loop muted autoplay playsinline style="max-width:480px;'
                f'max-height:360px" src="{_esc(src)}"></video>',
                note,
            )
        )
    for image in images:
        mime = _IMAGE_MIME.get(image.suffix.lower(), "image/png")
        src, note = file_src(image, mime, budget)
        if src is None:
            parts.append(f'<div class="cg-note">image: {_esc(note)}</div>')
            continue
        parts.append(
            _figure(
                f'<img style="max-width:320px;max-height:360px" src="{_esc(src)}" '
                f'alt="{_esc(image.name)}"/>',
                note,
            )
        )
    return "".join(parts)


def _badge(state: str) -> str:
    color = _STATE_COLOR.get(state, "#374151")
    return (
        f'<span style="background:{color};color:white;border-radius:4px;padding:1px 6px;'
        f'font-size:12px">{_esc(state)}</span>'
    )


def _error_html(error: Any) -> str:
    """An error from status.json (dict) or an exception, message first, traceback folded."""
    if isinstance(error, BaseException):
        etype = type(error).__name__
        message = str(error)
        tb = getattr(error, "remote_traceback", "") or ""
        last = getattr(error, "last_log_lines", None)
        if not tb and last:
            tb = "\n".join(last)
    else:
        error = error or {}
        etype = error.get("type", "Error")
        message = error.get("message", "")
        tb = error.get("traceback", "") or ""
    out = f'<div style="color:#b91c1c;white-space:pre-wrap"><b>{_esc(etype)}</b>: {_esc(message)}</div>'
    if tb:
        out += f'<details><summary>traceback</summary><pre style="font-size:11px">{_esc(tb)}</pre></details>'
    return out


def result_html(res: Any) -> str:
    """Rich HTML for an ``InferenceResult``: header, inline videos and images, other files.

    Parameters
    ----------
    res:
        An ``InferenceResult`` (anything with ``request_id``, ``output_dir``, ``files``,
        ``videos``, ``images``, ``status`` and ``duration``).
    """
    _per_file, total = embed_budget()
    budget = [total]
    status = getattr(res, "status", {}) or {}
    state = str(status.get("state", "succeeded"))
    duration = float(getattr(res, "duration", 0.0) or 0.0)
    videos = [Path(p) for p in getattr(res, "videos", [])]
    images = [Path(p) for p in getattr(res, "images", [])]
    media = set(videos) | set(images)
    others = [Path(p) for p in getattr(res, "files", []) if Path(p) not in media]
    head = (
        f'<div style="font-family:sans-serif;font-size:13px"><div>{_badge(state)} '
        f"request <code>{_esc(res.request_id)}</code> in {duration:.2f} s &middot; "
        f"<code>{_esc(res.output_dir)}</code></div>"
    )
    body = _media_html(videos, images, budget)
    if status.get("error"):
        body += _error_html(status["error"])
    if others:
        items = "".join(f"<li><code>{_esc(p)}</code></li>" for p in others)
        body += f'<details><summary>{len(others)} other file(s)</summary><ul style="margin:0">{items}</ul></details>'
    return head + f"<div>{body}</div></div>"


def _progress_bar(fraction: float | None) -> str:
    if fraction is None:
        return '<progress style="width:240px"></progress>'
    pct = max(0.0, min(1.0, float(fraction)))
    return f'<progress style="width:240px" value="{pct:.3f}" max="1"></progress> {pct:.0%}'


def future_html(fut: Any) -> str:
    """HTML for an ``InferenceFuture`` as it is now: state and progress, or its outcome.

    A finished future shows its result (``result_html``) or its error; the live,
    updating version is ``_widgets.display_future``.
    """
    state = fut.state
    head = f'<div style="font-family:sans-serif;font-size:13px">{_badge(state)} request <code>{_esc(fut.request_id)}</code> '
    if state == "queued":
        pos = fut.queue_position
        where = "next in the queue" if pos == 0 else f"{pos} ahead in the queue"
        return head + f"{_esc(where) if pos is not None else 'queued'}</div>"
    if state == "running":
        msg = _esc(fut.progress_message or "")
        return head + f"{_progress_bar(fut.progress)} {msg}</div>"
    if state == "cancelled":
        return head + "cancelled</div>"
    exc = fut.exception(timeout=0)
    if exc is not None:
        return head + "</div>" + _error_html(exc)
    return result_html(fut.result(timeout=0))


def _worker_rows(workers: Iterable[Any]) -> str:
    rows = []
    for w in workers:
        rows.append(
            "<tr>"
            f"<td>{_esc(w.group)}</td><td>{_esc(w.rank)}</td><td>{_esc(w.gpu)}</td>"
            f"<td>{_esc(w.pid if w.pid is not None else '-')}</td><td>{_badge(str(w.state))}</td>"
            f"<td><code>{_esc(w.request_id or '')}</code></td><td>{_esc(getattr(w, 'restarts', 0))}</td>"
            "</tr>"
        )
    return "".join(rows)


def _job_rows(history: list[Any], limit: int) -> str:
    rows = []
    for fut in list(reversed(history))[:limit]:
        state = fut.state
        if state == "running":
            detail = _progress_bar(fut.progress) + " " + _esc(fut.progress_message or "")
        elif state == "queued":
            pos = fut.queue_position
            detail = f"position {pos}" if pos is not None else ""
        else:
            detail = ""
        rows.append(
            f"<tr><td><code>{_esc(fut.request_id)}</code></td><td>{_badge(state)}</td><td>{detail}</td></tr>"
        )
    return "".join(rows)


def app_html(app: Any, *, jobs: int = 8) -> str:
    """A snapshot of an app: its workers, queue length and most recent jobs.

    Parameters
    ----------
    app:
        A ``NotebookApp`` (or anything with ``workers()``, ``queue_length``, ``history``,
        ``closed`` and ``env``).
    jobs:
        How many of the most recent requests to list.
    """
    closed = bool(getattr(app, "closed", False))
    name = getattr(app, "name", None) or getattr(getattr(app, "env", None), "model_name", "app")
    style = "font-family:sans-serif;font-size:13px;border-collapse:collapse"
    td = "th,td{padding:1px 8px;text-align:left}"
    if closed:
        return f'<div style="{style}"><b>{_esc(name)}</b>: closed</div>'
    try:
        workers = list(app.workers())
    except Exception as exc:  # an app closing under us: show why rather than break the panel
        return f'<div style="{style}"><b>{_esc(name)}</b>: {_esc(exc)}</div>'
    history = list(getattr(app, "history", []) or [])
    queue = getattr(app, "queue_length", 0)
    out = [
        f'<div style="{style}"><style>{td}</style>',
        f"<div><b>{_esc(name)}</b> &middot; {len(workers)} worker(s) &middot; queue: {_esc(queue)}"
        f" &middot; {len(history)} request(s)</div>",
        f'<table style="{style}"><tr><th>group</th><th>rank</th><th>GPU</th><th>pid</th>'
        f"<th>state</th><th>request</th><th>restarts</th></tr>{_worker_rows(workers)}</table>",
    ]
    if history:
        out.append(
            f'<table style="{style};margin-top:4px"><tr><th>recent request</th><th>state</th>'
            f"<th>progress</th></tr>{_job_rows(history, jobs)}</table>"
        )
    out.append("</div>")
    return "".join(out)

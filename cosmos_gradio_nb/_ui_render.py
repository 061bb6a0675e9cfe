"""Pure functions that turn requests, futures and errors into what the page shows.

Kept apart from the Gradio wiring in ``_ui.py`` so they can be unit-tested
without a server, and so that every error the page can show is written in one
place: invalid JSON with line and column, a validator's message, a worker's
error with its remote traceback, a crash or a timeout with what happened next.
"""

from __future__ import annotations

import html
import json
from typing import Any

__all__ = [
    "CSS",
    "error_html",
    "parse_request_json",
    "schema_markdown",
    "status_html",
]

# Styles for the status panel and the page layout (passed to launch by _ui).
CSS = """
#cg-status { min-height: 2.6em; }
.cg-status { border: 1px solid var(--border-color-primary); border-radius: 8px;
             padding: 8px 12px; font-size: 14px; background: var(--block-background-fill); }
.cg-line { display: flex; gap: 10px; align-items: baseline; flex-wrap: wrap; }
.cg-badge { font-weight: 600; padding: 1px 8px; border-radius: 10px; color: white;
            background: #6b7280; font-size: 12px; text-transform: uppercase; letter-spacing: .03em; }
.cg-queued .cg-badge { background: #a16207; }
.cg-running .cg-badge { background: #2563eb; }
.cg-succeeded .cg-badge { background: #15803d; }
.cg-failed .cg-badge, .cg-error .cg-badge { background: #b91c1c; }
.cg-cancelled .cg-badge { background: #6b7280; }
.cg-meta { color: var(--body-text-color-subdued); font-size: 12px; margin-left: auto; }
.cg-bar { height: 6px; background: var(--border-color-primary); border-radius: 3px;
          margin-top: 6px; overflow: hidden; }
.cg-bar > div { height: 100%; background: #2563eb; transition: width .2s; }
.cg-error .cg-text, .cg-failed .cg-text { color: #b91c1c; white-space: pre-wrap; }
.cg-status pre { max-height: 260px; overflow: auto; font-size: 12px; margin: 6px 0 0;
                 background: var(--code-background-fill, #f6f6f6); padding: 6px; }
#cg-log textarea { font-family: ui-monospace, monospace; font-size: 12px; }
#cg-workers { font-size: 13px; color: var(--body-text-color-subdued); }
#cg-video video { max-height: 62vh; }
"""

_BADGE = {
    "queued": "Queued",
    "running": "Running",
    "succeeded": "Done",
    "failed": "Failed",
    "cancelled": "Cancelled",
    "error": "Error",
    "idle": "Ready",
}


def parse_request_json(text: str | None) -> dict[str, Any]:
    """Parse the editor's text into a request dict.

    Raises
    ------
    ValueError
        Not JSON (the message gives line, column and the offending line with a
        caret), or JSON that is not an object.
    """
    text = text or ""
    if not text.strip():
        raise ValueError(
            'the request is empty: write a JSON object such as {"prompt": "a red car"}'
        )
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        lines = text.splitlines() or [""]
        line = lines[min(exc.lineno, len(lines)) - 1]
        caret = " " * (exc.colno - 1) + "^"
        raise ValueError(
            f"Invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}\n  {line}\n  {caret}"
        ) from None
    if not isinstance(value, dict):
        raise ValueError(
            f"the request must be a JSON object {{...}}, got {type(value).__name__} "
            f"({json.dumps(value)[:60]})"
        )
    return value


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _panel(state: str, text: str, meta: str = "", extra: str = "") -> str:
    return (
        f'<div class="cg-status cg-{state}" data-state="{state}">'
        f'<div class="cg-line"><span class="cg-badge">{_BADGE.get(state, state)}</span>'
        f'<span class="cg-text">{text}</span><span class="cg-meta">{meta}</span></div>'
        f"{extra}</div>"
    )


def error_html(title: str, message: str, traceback: str = "") -> str:
    """An error shown in the status panel (nothing ran, or a run failed)."""
    extra = ""
    message, _, snippet = message.partition("\n")
    if snippet.strip():
        extra += f"<pre>{_esc(snippet)}</pre>"
    if traceback.strip():
        extra += (
            "<details open><summary>Remote traceback</summary>"
            f"<pre>{_esc(traceback.rstrip())}</pre></details>"
        )
    text = f"<b>{_esc(title)}</b>: {_esc(message)}" if title else _esc(message)
    return _panel("error", text, extra=extra)


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
        0 for next in line; shown as a 1-based place.
    progress, message:
        The model's last report (fraction 0..1 and text).
    note:
        Extra text after the state, already readable (e.g. where outputs are).
    """
    meta_parts = []
    if request_id:
        meta_parts.append(f"request {_esc(request_id)}")
    if elapsed is not None:
        meta_parts.append(f"{elapsed:.1f} s")
    meta = " · ".join(meta_parts)
    bar = ""
    if state == "queued":
        place = "next in line" if not queue_position else f"{queue_position + 1}th in line"
        if queue_position == 1:
            place = "2nd in line"
        elif queue_position == 2:
            place = "3rd in line"
        text = f"waiting for a free worker, {place}"
    elif state == "running":
        pct = None if progress is None else max(0.0, min(1.0, progress))
        text = _esc(message) if message else "running on a worker"
        if pct is not None:
            text = f"{pct:.0%}" + (f" · {_esc(message)}" if message else "")
            bar = f'<div class="cg-bar"><div style="width:{pct * 100:.1f}%"></div></div>'
        else:
            bar = '<div class="cg-bar"><div style="width:3%"></div></div>'
    elif state == "idle":
        text = "Edit the request and press Generate."
    else:
        text = _esc(note)
        note = ""
    if note:
        text += f" · {_esc(note)}"
    return _panel(state, text, meta, bar)


def failure_html(
    exc: BaseException, request_id: str = "", elapsed: float | None = None, *, ran: bool = True
) -> str:
    """The status panel for a request that failed on the workers, or (``ran=False``) was refused."""
    name = type(exc).__name__
    message = str(exc) or name
    tb = ""
    if name == "InferenceError":
        etype = getattr(exc, "error_type", "") or "error"
        title = f"The model raised {etype}"
        if message.startswith(f"{etype}: "):
            message = message[len(etype) + 2 :]
        tb = getattr(exc, "remote_traceback", "") or ""
    elif name == "WorkerCrashedError":
        sig = getattr(exc, "signal_name", None)
        code = getattr(exc, "exitcode", None)
        how = f"killed by {sig}" if sig else f"exited with code {code}"
        title = f"Worker rank {getattr(exc, 'rank', '?')} crashed ({how})"
        message = f"{message}. The worker group was restarted; other requests keep their place."
        tb = "\n".join(getattr(exc, "last_log_lines", []) or [])
    elif name == "InferenceTimeoutError":
        title = "Timed out"
        message = f"{message}. The worker group was restarted."
    elif name == "ValidationError":
        title = "Invalid parameters"
    elif name == "QueueFullError":
        title = "Queue full"
    elif name == "AppClosedError":
        title = "Server shutting down"
    elif name == "WorkerStartupError":
        title = "The model failed to start"
        tb = getattr(exc, "remote_traceback", "") or ""
    else:
        title = name
    panel = error_html(title, message, tb)
    if request_id or elapsed is not None:
        meta = " · ".join(
            p
            for p in (
                f"request {_esc(request_id)}" if request_id else "",
                f"{elapsed:.1f} s" if elapsed is not None else "",
            )
            if p
        )
        panel = panel.replace(
            '<span class="cg-meta"></span>', f'<span class="cg-meta">{meta}</span>'
        )
    if not ran:
        return panel
    return (
        panel.replace('data-state="error"', 'data-state="failed"')
        .replace("cg-status cg-error", "cg-status cg-failed")
        .replace(">Error<", ">Failed<")
    )


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

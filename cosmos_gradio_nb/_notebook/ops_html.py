"""HTML of the queue and of the machine figures, shared by the page and the notebook.

The page's Queue and System tabs and the notebook's app panel show the same
tables, built here from :class:`~.._core.queue_view.QueueRow` and
:class:`~.._core.stats.SystemStats`. Styles are inline, so the HTML reads the
same in the page, in JupyterLab and in a saved notebook. How a file becomes an
``<img src>`` is the caller's (a page URL, or a ``data:`` URI in a notebook).

A queue row's time (waiting or running) is written as of the render and carries
``data-since``; the page's script (:data:`QUEUE_JS`) keeps it ticking in the
browser, so the server re-sends the table only when a row really changed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .._core.presentation import (
    StateStyle,
    device_label,
    esc,
    group_state_style,
    queue_wording,
    state_style,
)
from .._core.queue_view import QueueRow, duration_words
from .._core.stats import GpuSample, NodeStats, RankStats, SystemStats

__all__ = ["QUEUE_JS", "gib", "queue_html", "rank_figures_html", "stats_html"]

_TABLE = "border-collapse:collapse;font-size:13px;width:100%"
_CELL = "padding:3px 8px;text-align:left;vertical-align:middle;border-bottom:1px solid #e5e7eb"
_MUTED = "color:#6b7280;font-size:12px"

# Keeps each row's time ticking between renders, and turns a click on a row's
# button into the component's click event ({request_id, action}). For gr.HTML's
# js_on_load: ``element`` is the component, ``trigger`` sends an event to Python.
QUEUE_JS = """
const fmt = (s) => {
  s = Math.max(0, Math.floor(s));
  if (s < 60) return s + ' s';
  if (s < 3600) return Math.floor(s / 60) + ' min ' + String(s % 60).padStart(2, '0') + ' s';
  return Math.floor(s / 3600) + ' h ' + String(Math.floor(s % 3600 / 60)).padStart(2, '0') + ' min';
};
const tick = () => {
  const box = element.querySelector('[data-now]');
  if (!box) return;
  if (!box.dataset.seen) box.dataset.seen = String(Date.now() / 1000);
  const now = Number(box.dataset.now) + Date.now() / 1000 - Number(box.dataset.seen);
  box.querySelectorAll('[data-since]').forEach((td) => {
    td.textContent = fmt(now - Number(td.dataset.since));
  });
};
setInterval(tick, 1000);
element.addEventListener('click', (event) => {
  const button = event.target.closest('button[data-action]');
  const row = button && button.closest('tr[data-request]');
  if (!row) return;
  button.disabled = true;
  button.textContent = button.dataset.action === 'stop' ? 'Stopping...' : 'Cancelling...';
  trigger('click', {request_id: row.dataset.request, action: button.dataset.action});
});
"""


def gib(n: int | None) -> str:
    """Bytes as ``12.3 GiB`` (or ``512 MiB`` below a GiB)."""
    if n is None:
        return ""
    if n >= 2**30:
        return f"{n / 2**30:.1f} GiB"
    return f"{n / 2**20:.0f} MiB"


def _bar(fraction: float | None, width: int = 90, color: str = "#2563eb") -> str:
    if fraction is None:
        return ""
    pct = max(0.0, min(1.0, fraction)) * 100
    return (
        f'<span style="display:inline-block;width:{width}px;height:6px;background:#e5e7eb;'
        f'border-radius:3px;vertical-align:middle;overflow:hidden">'
        f'<span style="display:block;height:100%;width:{pct:.1f}%;background:{color}"></span>'
        "</span>"
    )


def _badge(style: StateStyle) -> str:
    """A state as the coloured badge of every display (``display.badge``'s look)."""
    return (
        f'<span style="background:{style.color};color:white;border-radius:4px;padding:1px 6px;'
        f'font-size:12px">{esc(style.word)}</span>'
    )


def badge(state: str) -> str:
    return _badge(state_style(state))


def _th(*names: str) -> str:
    return "<tr>" + "".join(f'<th style="{_CELL}">{esc(n)}</th>' for n in names) + "</tr>"


def _td(html: str, extra: str = "") -> str:
    return f'<td style="{_CELL}{extra}">{html}</td>'


# -- the queue ------------------------------------------------------------------------------------
# One style block per table instead of styles on every cell: a queue of 500 requests is one
# table of 500 rows, sent again whenever a row changes.
_QUEUE_CSS = (
    "<style>.cg-queue table{border-collapse:collapse;font-size:13px;width:100%}"
    ".cg-queue td,.cg-queue th{padding:3px 8px;text-align:left;vertical-align:middle;"
    "border-bottom:1px solid #e5e7eb}.cg-queue .m{color:#6b7280;font-size:12px}"
    ".cg-queue td.p{font-size:12px}.cg-queue td.t{white-space:nowrap}"
    ".cg-queue .b{color:white;border-radius:4px;padding:1px 6px;font-size:12px}"
    ".cg-queue .bar{display:inline-block;width:90px;height:6px;background:#e5e7eb;"
    "border-radius:3px;vertical-align:middle;overflow:hidden}"
    ".cg-queue .bar>span{display:block;height:100%;background:#2563eb}"
    ".cg-queue img{max-width:96px;max-height:64px;display:block}"
    ".cg-queue button{padding:1px 10px;border:1px solid #b91c1c;color:#b91c1c;"
    "border-radius:6px;background:transparent;cursor:pointer}"
    + "".join(
        f".cg-queue .b-{state}{{background:{state_style(state).color}}}"
        for state in ("queued", "running")
    )
    + "</style>"
)


def _place(row: QueueRow) -> str:
    if row.running:
        where = f" group {row.group}" if row.group is not None else ""
        return f'<span class="b b-running">running</span><span class="m">{esc(where)}</span>'
    return f'<span class="b b-queued">queued</span> <span class="m">{esc(queue_wording(row.position))}</span>'


def _progress(row: QueueRow) -> str:
    if not row.running:
        return ""
    if row.stopping:
        return '<span class="m">stopping: asked the model to stop</span>'
    text = f"{row.progress:.0%}" if row.progress is not None else ""
    if row.message:
        text = f"{text} · {row.message}" if text else row.message
    bar = ""
    if row.progress is not None:
        bar = f'<span class="bar"><span style="width:{max(0.0, min(1.0, row.progress)):.1%}"></span></span> '
    return f'{bar}<span class="m">{esc(text)}</span>'


def _queue_row(
    row: QueueRow, now: float, image_src: Callable[[str], str | None], actions: bool
) -> str:
    preview = ""
    if row.preview:
        src = image_src(row.preview)
        if src:
            preview = f'<img src="{esc(src)}" alt="preview" class="cg-q-preview"/>'
    since = f' data-since="{row.since:.3f}"' if row.since is not None else ""
    rid = esc(row.request_id)
    out = (
        f'<tr data-request="{rid}" data-state="{esc(row.state)}"><td>{_place(row)}</td>'
        f'<td><code title="{rid}">{esc(row.short_id)}</code></td><td>{esc(row.source)}</td>'
        f'<td class="p">{esc(row.summary)}</td><td>{_progress(row)}</td><td>{preview}</td>'
        f'<td class="t"{since}>{esc(duration_words(row.elapsed(now)))}</td>'
    )
    if actions and row.stopping:
        out += '<td><span class="m">stopping...</span></td>'
    elif actions:
        action = row.action()
        out += f'<td><button data-action="{action.lower()}">{action}</button></td>'
    return out + "</tr>"


def queue_html(
    rows: Sequence[QueueRow],
    *,
    now: float,
    image_src: Callable[[str], str | None] = lambda _path: None,
    actions: bool = False,
    limit: int | None = None,
    note: str = "",
) -> str:
    """The queue as a table: running first, then queued in order.

    Parameters
    ----------
    rows:
        From :func:`~.._core.queue_view.queue_rows`.
    now:
        The time the rows' waiting and running times are counted to (epoch seconds).
    image_src:
        A preview's file path -> the ``src`` to show it with (None: not shown).
    actions:
        Add a Stop (running) or Cancel (queued) button per row (the page's).
    limit:
        Show at most this many rows, then say how many more there are.
    """
    running = sum(1 for r in rows if r.running)
    queued = len(rows) - running
    head = f"<b>{running}</b> running · <b>{queued}</b> queued"
    if note:
        head += f' <span class="m">{esc(note)}</span>'
    start = f'<div class="cg-queue" data-now="{now:.3f}">{_QUEUE_CSS}<div>{head}</div>'
    if not rows:
        return f'{start}<div class="m">Nothing is running or waiting.</div></div>'
    shown = rows if limit is None else rows[:limit]
    body = "".join(_queue_row(r, now, image_src, actions) for r in shown)
    more = ""
    if len(shown) < len(rows):
        more = f'<div class="m">and {len(rows) - len(shown)} more queued</div>'
    names = ["", "request", "from", "parameters", "progress", "preview", "time"]
    if actions:
        names.append("")
    head_row = "<tr>" + "".join(f"<th>{esc(n)}</th>" for n in names) + "</tr>"
    return f"{start}<table>{head_row}{body}</table>{more}</div>"


# -- the machines ---------------------------------------------------------------------------------
def _gpu_rows(node: NodeStats, requests: dict[str, str]) -> str:
    rows = []
    for gpu in node.gpus:
        users = node.users.get(gpu.index, [])
        used_by = ", ".join(
            f"{u}" + (f" · <code>{esc(requests[u][:8])}</code>" if requests.get(u) else "")
            for u in users
        )
        rows.append(
            "<tr>"
            + _td(f"GPU {gpu.index}")
            + _td(esc(gpu.name))
            + _td(_memory(gpu.memory_used, gpu.memory_total))
            + _td(_util(gpu))
            + _td(used_by or f'<span style="{_MUTED}">not ours</span>')
            + "</tr>"
        )
    return "".join(rows)


def _memory(used: int, total: int) -> str:
    fraction = used / total if total else None
    color = "#b91c1c" if fraction is not None and fraction > 0.9 else "#2563eb"
    return f"{_bar(fraction, color=color)} {gib(used)} / {gib(total)}"


def _util(gpu: GpuSample) -> str:
    if gpu.utilization is None:
        return f'<span style="{_MUTED}">n/a</span>'
    return f"{_bar(gpu.utilization / 100)} {gpu.utilization}%"


def _node_line(node: NodeStats) -> str:
    if node.error:
        return f'<div><b>{esc(node.node)}</b>: <span style="color:#b91c1c">{esc(node.error)}</span></div>'
    cpu = "CPU -" if node.cpu_percent is None else f"CPU {node.cpu_percent:.0f}%"
    line = (
        f"<b>{esc(node.node)}</b> · {cpu} of {node.cpu_count} cores · memory "
        f"{_memory(node.memory_used, node.memory_total)}"
    )
    if not node.gpus:
        line += (
            f'<br><span style="{_MUTED}">No GPU figures ({esc(node.gpu_note or "no GPU")}): '
            "showing CPU and memory use instead.</span>"
        )
    return f'<div style="margin:4px 0">{line}</div>'


def rank_figures_html(r: RankStats) -> str:
    """A rank's device figures: its GPU's memory and utilisation, else its CPU and memory."""
    if r.gpu is not None:
        figures = _memory(r.gpu.memory_used, r.gpu.memory_total) + " · " + _util(r.gpu)
        if r.gpu_memory:
            figures += f'<br><span style="{_MUTED}">this rank holds {gib(r.gpu_memory)}</span>'
        return figures
    cpu = "-" if r.cpu_percent is None else f"{r.cpu_percent:.0f}%"
    return f"CPU {cpu} · memory {gib(r.rss) or '-'}"


def _rank_row(r: RankStats) -> str:
    state_html = _badge(group_state_style(r.state))
    if r.gpu is not None:
        device = f"GPU {r.gpu.index} · {esc(r.gpu.name)}"
    else:
        device = esc(device_label(r.device))
    figures = rank_figures_html(r)
    request = f"<code>{esc(r.request_id)}</code>" if r.request_id else ""
    return (
        "<tr>"
        + _td(f"group {r.group} · rank {r.rank}")
        + _td(esc(r.node))
        + _td(device)
        + _td(esc(r.pid if r.pid is not None else "-"))
        + _td(state_html)
        + _td(figures)
        + _td(request)
        + "</tr>"
    )


def stats_html(stats: SystemStats, *, title: bool = True, ranks: bool = True) -> str:
    """Every node's CPU, memory and GPUs, then (``ranks``) every worker rank with its figures."""
    requests = {f"g{r.group} r{r.rank}": r.request_id or "" for r in stats.ranks}
    parts = []
    if title:
        import time

        when = time.strftime("%H:%M:%S", time.localtime(stats.sampled_at))
        kind = "GPUs" if stats.has_gpus else "CPU only: no NVIDIA GPU figures"
        parts.append(f'<div style="{_MUTED}">{kind} · sampled at {when}</div>')
    for node in stats.nodes:
        parts.append(_node_line(node))
        if node.gpus:
            parts.append(
                f'<table style="{_TABLE}">{_th("GPU", "device", "memory", "utilisation", "used by")}'
                f"{_gpu_rows(node, requests)}</table>"
            )
    if not ranks:
        pass
    elif stats.ranks:
        label = "GPU memory · utilisation" if stats.has_gpus else "process CPU · memory"
        parts.append(
            f'<table style="{_TABLE};margin-top:6px">'
            f"{_th('worker', 'node', 'device', 'pid', 'state', label, 'request')}"
            f"{''.join(_rank_row(r) for r in stats.ranks)}</table>"
        )
    else:
        parts.append(f'<div style="{_MUTED}">No worker is running.</div>')
    return f'<div class="cg-stats" style="font-family:sans-serif;font-size:13px">{"".join(parts)}</div>'

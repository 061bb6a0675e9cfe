"""Runs side by side: their videos playing in sync, their images, and only the parameters that differ.

:func:`compare` is the notebook's (``cosmos_gradio_nb.compare``); the page's
Compare tab renders the same :func:`compare_html` with page URLs for the media.
Videos are kept in step by :data:`COMPARE_JS` (played, paused and seeked together,
re-aligned every second); in a notebook it runs as the output's script.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._core.filetypes import mime_of
from .._core.history import differing_params, read_run
from .._core.outputs import iso_time
from .._core.presentation import esc
from .._core.public import public
from .display import badge, embed_budget, file_src

__all__ = ["COMPARE_JS", "CompareRun", "Comparison", "compare", "compare_html", "compare_runs"]

MIN_RUNS, MAX_RUNS = 2, 4

# For gr.HTML's js_on_load (``element`` is the component) and the notebook's script.
COMPARE_JS = """
const videos = () => Array.from(element.querySelectorAll('video.cg-cmp-video'));
// An event we caused on a follower is not the user's: each is expected for a second.
const mark = (v, kind) => { (v.cgExp = v.cgExp || {})[kind] = Date.now() + 1000; };
const ours = (v, kind) => {
  const e = v.cgExp || {};
  if ((e[kind] || 0) > Date.now()) { e[kind] = 0; return true; }
  return false;
};
const seek = (v, t) => { if (Math.abs(v.currentTime - t) > 0.05) { mark(v, 'seeked'); v.currentTime = t; } };
const play = (v) => { if (v.paused) { mark(v, 'play'); v.play().catch(() => {}); } };
const others = (src, fn) => videos().forEach((v) => { if (v !== src) fn(v); });
const isVideo = (e) => e.target.tagName === 'VIDEO' && e.target.classList.contains('cg-cmp-video');
element.addEventListener('play', (e) => {
  if (!isVideo(e) || ours(e.target, 'play')) return;
  others(e.target, (v) => { seek(v, e.target.currentTime); play(v); });
}, true);
element.addEventListener('pause', (e) => {
  if (!isVideo(e) || ours(e.target, 'pause') || e.target.ended) return;
  others(e.target, (v) => { if (!v.paused) { mark(v, 'pause'); v.pause(); } });
}, true);
element.addEventListener('seeked', (e) => {
  const src = e.target;
  if (!isVideo(e) || ours(src, 'seeked')) return;
  if (!src.paused && src.currentTime < 0.1) return;  // a loop starting over, not a seek
  others(src, (v) => seek(v, src.currentTime));
}, true);
element.addEventListener('click', (e) => {
  if (!e.target.closest('.cg-cmp-play')) return;
  videos().forEach((v) => { seek(v, 0); play(v); });
});
setInterval(() => {  // the first video leads: the others follow its clock
  const vs = videos();
  if (vs.length < 2 || vs[0].paused) return;
  vs.slice(1).forEach((v) => {
    if (Math.abs(v.currentTime - vs[0].currentTime) > 0.15) seek(v, vs[0].currentTime);
    play(v);
  });
}, 1000);
"""


@dataclass
class CompareRun:
    """One run as compared: who it is, how it ended, its media and parameters."""

    request_id: str
    state: str
    queued_at: float | None
    duration: float | None
    params: dict[str, Any]
    videos: list[Path] = field(default_factory=list)
    images: list[Path] = field(default_factory=list)


def _run_of(item: Any) -> CompareRun:
    """A result (``InferenceResult``), a done future, a run folder or a record, as a run."""
    if isinstance(item, (str, Path)):
        item = read_run(item).to_result()
    elif hasattr(item, "to_result"):
        item = item.to_result()
    elif hasattr(item, "result") and hasattr(item, "done") and not hasattr(item, "status"):
        if not item.done():
            raise ValueError(f"request {getattr(item, 'request_id', '?')} has not finished yet")
        item = item.result()
    if not hasattr(item, "status"):
        raise TypeError(
            f"compare takes results (InferenceResult, load_results' items), finished futures "
            f"or run folders, not {type(item).__name__}"
        )
    status = dict(item.status or {})
    params = status.get("params") if isinstance(status.get("params"), dict) else {}
    queued = status.get("queued_at")
    return CompareRun(
        request_id=str(item.request_id),
        state=str(status.get("state") or "succeeded"),
        queued_at=float(queued) if isinstance(queued, (int, float)) else None,
        duration=float(item.duration) if getattr(item, "duration", None) else None,
        params={k: v for k, v in (params or {}).items() if k != "output_dir"},
        videos=[Path(p) for p in getattr(item, "videos", []) or []],
        images=[Path(p) for p in getattr(item, "images", []) or []],
    )


def compare_runs(items: Iterable[Any]) -> list[CompareRun]:
    """2 to 4 runs from results, futures or folders; a clear error otherwise."""
    runs = [_run_of(item) for item in items]
    if not MIN_RUNS <= len(runs) <= MAX_RUNS:
        raise ValueError(
            f"compare takes {MIN_RUNS} to {MAX_RUNS} runs, got {len(runs)}"
            + (": pick some, e.g. compare(results[:3])" if len(runs) > MAX_RUNS else "")
        )
    return runs


def _cell_value(params: dict[str, Any], key: str) -> str:
    if key not in params:
        return '<span style="color:#9ca3af">(not set)</span>'
    text = json.dumps(params[key], ensure_ascii=False)
    return esc(text if len(text) <= 200 else text[:197] + "...")


def _column(run: CompareRun, src_of: Callable[[Path], str | None]) -> str:
    when = (iso_time(run.queued_at) or "")[:19].replace("T", " ")
    duration = f" · {run.duration:.1f} s" if run.duration else ""
    head = (
        f'<div style="margin-bottom:4px">{badge(run.state)} <code>{esc(run.request_id)}</code>'
        f'<br><span style="color:#6b7280;font-size:12px">{esc(when)}{duration}</span></div>'
    )
    media = ""
    for video in run.videos[:1]:
        src = src_of(video)
        media += (
            f'<video class="cg-cmp-video" src="{esc(src)}" muted loop autoplay playsinline controls '
            'style="width:100%;max-height:420px;background:#000"></video>'
            if src
            else f'<div style="color:#6b7280">{esc(video)}</div>'
        )
    images = run.images if not run.videos else run.images[1:]
    for image in images[:4]:
        src = src_of(image)
        if src:
            media += (
                f'<img src="{esc(src)}" alt="{esc(image.name)}" class="cg-cmp-image" '
                'style="max-width:100%;max-height:320px;display:block;margin-top:4px"/>'
            )
    if not media:
        media = '<div style="color:#6b7280">no video or image</div>'
    return f'<div class="cg-cmp-run" data-request="{esc(run.request_id)}">{head}{media}</div>'


def compare_html(
    runs: Sequence[CompareRun], src_of: Callable[[Path], str | None], *, script: bool = False
) -> str:
    """The runs side by side, then a table of the parameters that differ between them.

    ``script`` adds :data:`COMPARE_JS` as an inline script (a notebook output); the
    page runs it as its component's ``js_on_load`` instead.
    """
    box = f"cg-cmp-{uuid.uuid4().hex[:10]}"
    cols = "".join(_column(r, src_of) for r in runs)
    keys = differing_params([r.params for r in runs])
    same = len({k for r in runs for k in r.params}) - len(keys)
    if keys:
        cell = "padding:3px 8px;border-bottom:1px solid #e5e7eb;text-align:left;vertical-align:top"
        head = "".join(
            f'<th style="{cell}"><code>{esc(r.request_id[:8])}</code></th>' for r in runs
        )
        body = "".join(
            f'<tr><th style="{cell}"><code>{esc(k)}</code></th>'
            + "".join(f'<td style="{cell}">{_cell_value(r.params, k)}</td>' for r in runs)
            + "</tr>"
            for k in keys
        )
        table = (
            f'<table class="cg-cmp-params" style="border-collapse:collapse;font-size:13px;'
            f'margin-top:8px"><tr><th style="{cell}">parameter</th>{head}</tr>{body}</table>'
        )
    else:
        table = '<div class="cg-cmp-params">The runs have the same parameters.</div>'
    note = f"{len(keys)} parameter(s) differ; {same} are the same in every run."
    play = (
        '<button class="cg-cmp-play" style="padding:2px 10px;border:1px solid #9ca3af;'
        'border-radius:6px;background:transparent;cursor:pointer">Play all from the start</button>'
        if any(r.videos for r in runs)
        else ""
    )
    html = (
        f'<div id="{box}" class="cg-compare" style="font-family:sans-serif;font-size:13px">'
        f'<div style="display:flex;gap:10px;align-items:center;margin-bottom:6px">{play}'
        f'<span style="color:#6b7280">{esc(note)}</span></div>'
        f'<div style="display:grid;grid-template-columns:repeat({len(runs)},minmax(0,1fr));gap:10px">'
        f"{cols}</div>{table}</div>"
    )
    if script:
        html += (
            f"<script>(function(element){{if(!element)return;{COMPARE_JS}}})"
            f'(document.getElementById("{box}"));</script>'
        )
    return html


class Comparison:
    """What :func:`compare` returns: the runs and the differing keys; HTML in a notebook."""

    def __init__(self, runs: list[CompareRun]) -> None:
        self.runs = runs
        self.differing = differing_params([r.params for r in runs])
        """The parameters whose value is not the same in every run."""

    def _repr_html_(self) -> str:
        budget = embed_budget()

        def src_of(path: Path) -> str | None:
            src, _note = file_src(path, mime_of(path), budget)
            return src

        return compare_html(self.runs, src_of, script=True)

    def __repr__(self) -> str:
        ids = ", ".join(r.request_id for r in self.runs)
        return f"<Comparison of {ids}; differing: {', '.join(self.differing) or 'nothing'}>"


@public
def compare(results: Iterable[Any]) -> Comparison:
    """Show 2 to 4 runs side by side: videos playing in sync, images, the parameters that differ.

    Parameters
    ----------
    results:
        ``InferenceResult`` objects (``fut.result()``, items of ``load_results()``),
        finished futures, or run folders (paths under ``OUTPUT_DIR``).

    Returns
    -------
    Comparison
        Displays as HTML in a notebook; ``.runs`` and ``.differing`` (the parameter
        names whose values differ) for scripts.

    Raises
    ------
    ValueError
        Fewer than 2 or more than 4 runs, or a future that has not finished.
    """
    return Comparison(compare_runs(results))

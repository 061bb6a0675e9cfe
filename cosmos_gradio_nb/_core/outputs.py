"""Request folders, output file collection and ``status.json``.

The worker (rank 0) collects the files a request made (:func:`collect_files`)
and sends them in its reply; the app alone writes ``status.json``
(``_engine/records.py``): ``queued`` when a request is accepted, ``running``
when it starts, and its outcome before its future completes. These functions
build and write those records.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from pathlib import Path
from typing import Any

from .filetypes import FileKind, kind_of

__all__ = [
    "PREVIEW_FILE",
    "RESERVED_KEYS",
    "STATUS_FILE",
    "base_status",
    "collect_files",
    "finish_status",
    "folder_name",
    "iso_time",
    "new_request_id",
    "request_folder",
    "write_status",
]

STATUS_FILE = "status.json"
PREVIEW_FILE = "preview.jpg"  # the latest live preview of a running request (not an output)
_TEMP_PREFIXES = (f".{STATUS_FILE}.", ".preview.")  # our atomic writes' temporary files
# Keys of status.json that infer()'s returned dict may not overwrite.
RESERVED_KEYS = frozenset(
    {
        "id",
        "model_name",
        "state",
        "params",
        "output_dir",
        "group",
        "queued_at",
        "started_at",
        "finished_at",
        "queued_at_iso",
        "started_at_iso",
        "finished_at_iso",
        "duration",
        "files",
        "error",
        "source",
        "preview",
        "stop",
    }
)


_ID_BATCH = 256  # ids drawn from os.urandom at once
_ids: list[str] = []
_ids_lock = threading.Lock()
os.register_at_fork(after_in_child=_ids.clear)  # a forked child never reuses its parent's


def new_request_id() -> str:
    """12 hex digits: unique enough for a lifetime of requests, short enough to read.

    48 bits of ``os.urandom``, as ``uuid4().hex[:12]`` gave, drawn 256 ids at a
    time: a uuid4 per request was a tenth of what submitting one costs.
    """
    while True:
        try:
            return _ids.pop()
        except IndexError:
            with _ids_lock:
                if not _ids:
                    raw = os.urandom(6 * _ID_BATCH).hex()
                    _ids.extend(raw[i : i + 12] for i in range(0, len(raw), 12))


_stamp_cache = (-1, "")  # (second, its stamp): one strftime a second, not one a request


def folder_name(request_id: str, now: float | None = None) -> str:
    """``<YYYYmmdd-HHMMSS>_<id>``, the name of a request's folder (``now``: default the time)."""
    global _stamp_cache
    if now is not None:
        return f"{time.strftime('%Y%m%d-%H%M%S', time.localtime(now))}_{request_id}"
    second = int(time.time())
    cached = _stamp_cache
    if cached[0] != second:
        cached = _stamp_cache = (second, time.strftime("%Y%m%d-%H%M%S", time.localtime(second)))
    return f"{cached[1]}_{request_id}"


def request_folder(output_dir: Path, request_id: str, now: float | None = None) -> Path:
    """``OUTPUT_DIR/<YYYYmmdd-HHMMSS>_<id>``: sorts by time, and the id makes it unique.

    The seed named folders to the second only, so two requests could collide.
    """
    return output_dir / folder_name(request_id, now)


def _named_files(returned: dict[str, Any], output_dir: str) -> list[str]:
    named: list[str] = []
    for key in ("videos", "images", "files"):
        value = returned.get(key)
        items = [value] if isinstance(value, str) else value if isinstance(value, list) else []
        for item in items:
            if isinstance(item, str):
                path = item if os.path.isabs(item) else os.path.join(output_dir, item)
                if os.path.isfile(path):
                    named.append(os.path.abspath(path))
    return named


def collect_files(output_dir: str, returned: dict[str, Any] | None = None) -> dict[str, list[str]]:
    """Files named in ``infer``'s return plus files found under ``output_dir``.

    Returns ``{"videos": [...], "images": [...], "other": [...]}`` of absolute
    paths: named files first in their order, then the folder's in sorted order,
    each once; ``status.json``, the live ``preview.jpg`` and the temporary files
    of their atomic writes are left out.
    """
    seen: set[str] = set()
    ordered: list[str] = []
    for path in _named_files(returned or {}, output_dir):
        if path not in seen:
            seen.add(path)
            ordered.append(path)
    found: list[str] = []
    for root, _dirs, names in os.walk(output_dir):
        for name in names:
            if root == output_dir and (
                name in (STATUS_FILE, PREVIEW_FILE) or name.startswith(_TEMP_PREFIXES)
            ):
                continue
            found.append(os.path.abspath(os.path.join(root, name)))
    for path in sorted(found):
        if path not in seen:
            seen.add(path)
            ordered.append(path)
    files: dict[str, list[str]] = {"videos": [], "images": [], "other": []}
    for path in ordered:
        kind = kind_of(path)
        key = (
            "videos" if kind is FileKind.VIDEO else "images" if kind is FileKind.IMAGE else "other"
        )
        files[key].append(path)
    return files


def iso_time(epoch: float | None) -> str | None:
    """``2026-12-02T06:14:03.120+00:00``: an epoch time as ISO 8601 in UTC, for people and tools.

    As ``datetime.isoformat(timespec="milliseconds")`` writes it (microseconds rounded, then
    cut to milliseconds), without ``datetime``: the app writes several per request, and the
    strings ``isoformat`` returned were seen to outlive their records (each pinned a megabyte
    arena of the allocator: ``benchmarks/bench_engine.py``'s memory figure).
    """
    if epoch is None:
        return None
    frac, whole = math.modf(epoch)  # as datetime.fromtimestamp rounds
    micro = round(frac * 1e6)
    seconds = int(whole) + (micro >= 1_000_000) - (micro < 0)
    micro %= 1_000_000
    global _iso_cache
    cached = _iso_cache  # one strftime a second: the app writes three of these per request
    if cached[0] != seconds:
        cached = _iso_cache = (seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)))
    return f"{cached[1]}.{micro // 1000:03d}+00:00"


_iso_cache = (-1, "")  # (second, its ISO stamp)


# One encoder, made once: json.dumps(..., allow_nan=False) builds a new one per call.
_STRICT_JSON = json.JSONEncoder(allow_nan=False)


def write_status(output_dir: str, status: dict[str, Any]) -> None:
    """Write ``status.json`` atomically (a reader never sees half a file).

    Strict JSON (no NaN or Infinity, which browsers' JSON.parse refuses); the worker
    has already refused a returned value strict JSON cannot hold (``wire.find_bad``).
    """
    path = os.path.join(output_dir, STATUS_FILE)
    tmp = os.path.join(output_dir, f".{STATUS_FILE}.{os.getpid()}.{threading.get_ident()}.tmp")
    # Compact JSON through the C encoder and one write: this runs for every request.
    data = _STRICT_JSON.encode(status).encode()
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    try:
        fd = os.open(tmp, flags, 0o644)
    except FileNotFoundError:  # the folder is made on first use
        os.makedirs(output_dir, exist_ok=True)
        fd = os.open(tmp, flags, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def base_status(
    *,
    request_id: str,
    model_name: str,
    params: dict[str, Any],
    output_dir: str,
    queued_at: float,
    started_at: float | None,
    group: int | None,
    state: str = "running",
    source: str = "python",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The fields every status.json has, before the outcome is known.

    ``source`` says who submitted it (``python``, ``page``, ``api``); ``extra`` are
    the app's static keys (``provenance``), added after the standard ones.
    """
    status: dict[str, Any] = {
        "id": request_id,
        "model_name": model_name,
        "state": state,
        "params": params,
        "output_dir": output_dir,
        "group": group,
        "queued_at": queued_at,
        "started_at": started_at,
        "finished_at": None,
        "queued_at_iso": iso_time(queued_at),
        "started_at_iso": iso_time(started_at),
        "finished_at_iso": None,
        "duration": None,
        "files": {"videos": [], "images": [], "other": []},
        "error": None,
        "source": source,
    }
    for key, value in (extra or {}).items():
        status.setdefault(key, value)
    return status


def finish_status(
    status: dict[str, Any],
    state: str,
    *,
    returned: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    collect: bool = True,
    files: dict[str, list[str]] | None = None,
    finished_at: float | None = None,
    reserved: frozenset[str] = RESERVED_KEYS,
) -> dict[str, Any]:
    """Fill in the outcome: state, finish time, files, error and ``infer``'s returned keys.

    Only a request that ``succeeded`` lists videos and images. The files of a stopped
    or failed one go under ``files["partial"]``: a run killed mid-write leaves a
    ``video.mp4`` no decoder opens, and nothing may offer that as playable.
    ``files`` are the files the worker found (else they are collected here, when
    ``collect``); ``returned`` keys in ``reserved`` are not merged.
    """
    now = time.time() if finished_at is None else finished_at
    status["state"] = state
    status["finished_at"] = now
    status["finished_at_iso"] = iso_time(now)
    if "queued_at_iso" not in status:
        status["queued_at_iso"] = iso_time(status.get("queued_at"))
    if not status.get("started_at_iso"):
        status["started_at_iso"] = iso_time(status.get("started_at"))
    if status.get("started_at"):
        status["duration"] = now - status["started_at"]
    found = files
    if found is None and collect and os.path.isdir(status["output_dir"]):
        found = collect_files(status["output_dir"], returned)
    if found is not None:
        found = {k: list(found.get(k) or []) for k in ("videos", "images", "other")}
        if state == "succeeded":
            status["files"] = found
        else:
            partial = found["videos"] + found["images"] + found["other"]
            status["files"] = {"videos": [], "images": [], "other": [], "partial": partial}
    status["error"] = error
    for key, value in (returned or {}).items():
        if key not in reserved:
            status[key] = value
    return status

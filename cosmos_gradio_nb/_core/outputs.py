"""Request folders, output file collection and ``status.json``.

Used on both sides: the worker (rank 0) collects files and writes the final
status of a request it ran; the parent writes it for requests that never
finished on a worker (crash, timeout, cancel, close).
"""

from __future__ import annotations

import datetime
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from .filetypes import FileKind, kind_of

__all__ = [
    "STATUS_FILE",
    "collect_files",
    "folder_name",
    "iso_time",
    "new_request_id",
    "request_folder",
    "write_status",
]

STATUS_FILE = "status.json"
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
    each once; ``status.json`` itself is left out.
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
            if root == output_dir and name == STATUS_FILE:
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
    """``2026-12-02T06:14:03.120+00:00``: an epoch time as ISO 8601 in UTC, for people and tools."""
    if epoch is None:
        return None
    stamp = datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc)
    return stamp.isoformat(timespec="milliseconds")


def write_status(output_dir: str, status: dict[str, Any]) -> None:
    """Write ``status.json`` atomically (a reader never sees half a file)."""
    path = os.path.join(output_dir, STATUS_FILE)
    tmp = f"{path}.{os.getpid()}.tmp"
    # Compact JSON through the C encoder and one write: this runs once per request
    # on the path back to the caller.
    # Strict JSON (no NaN or Infinity, which browsers' JSON.parse refuses); the worker
    # has already refused a returned value JSON cannot hold, so this cannot fail there.
    data = json.dumps(status, allow_nan=False).encode()
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    try:
        fd = os.open(tmp, flags, 0o644)
    except FileNotFoundError:  # no folder yet (the request never reached a worker): make it
        os.makedirs(output_dir, exist_ok=True)  # (not first: a failing mkdir a request)
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
) -> dict[str, Any]:
    """The fields every status.json has, before the outcome is known."""
    return {
        "id": request_id,
        "model_name": model_name,
        "state": "running",
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
    }


def finish_status(
    status: dict[str, Any],
    state: str,
    *,
    returned: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    collect: bool = True,
) -> dict[str, Any]:
    """Fill in the outcome: state, finish time, files, error and ``infer``'s returned keys.

    Only a request that ``succeeded`` lists videos and images. The files of a stopped
    or failed one go under ``files["partial"]``: a run killed mid-write leaves a
    ``video.mp4`` no decoder opens, and nothing may offer that as playable.
    """
    now = time.time()
    status["state"] = state
    status["finished_at"] = now
    status["finished_at_iso"] = iso_time(now)
    status.setdefault("queued_at_iso", iso_time(status.get("queued_at")))
    status["started_at_iso"] = iso_time(status.get("started_at"))
    if status.get("started_at"):
        status["duration"] = now - status["started_at"]
    if collect and os.path.isdir(status["output_dir"]):
        found = collect_files(status["output_dir"], returned)
        if state == "succeeded":
            status["files"] = found
        else:
            partial = found["videos"] + found["images"] + found["other"]
            status["files"] = {"videos": [], "images": [], "other": [], "partial": partial}
    status["error"] = error
    for key, value in (returned or {}).items():
        if key not in RESERVED_KEYS:
            status[key] = value
    return status

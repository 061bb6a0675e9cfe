"""Deleting past runs without losing them at once: a trash folder inside ``OUTPUT_DIR``.

Deleting runs (from the page's History tab or ``/delete_runs``) moves their folders
into ``OUTPUT_DIR/.trash/<YYYYmmdd-HHMMSS>_<batch>/``, one folder per delete, with
a ``trash.json`` naming what was moved and when. A move within one file system is a
rename: instant whatever the folder holds, and undone by renaming back
(:func:`restore`). Batches older than ``TRASH_RETENTION_DAYS`` are removed for good
by :func:`empty_expired`, which the page runs when it is built and on each delete.

The trash's name starts with a dot and does not look like a run, so the history,
``load_results`` and the file browser never list it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["TRASH_DIR", "TrashBatch", "empty_expired", "move_to_trash", "restore", "trash_root"]

TRASH_DIR = ".trash"
MANIFEST = "trash.json"
_RUN = re.compile(r"^\d{8}-\d{6}_[0-9A-Za-z]{4,64}$")
_BATCH = re.compile(r"^\d{8}-\d{6}_[0-9a-f]{8}$")


@dataclass
class TrashBatch:
    """One delete: where its folders went, which moved, and which could not."""

    batch: str
    folder: Path
    moved: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    deleted_at: float = 0.0


def trash_root(output_dir: str | os.PathLike[str]) -> Path:
    return Path(output_dir) / TRASH_DIR


def move_to_trash(output_dir: str | os.PathLike[str], names: list[str]) -> TrashBatch:
    """Move the run folders ``names`` (folder names in ``output_dir``) into a new trash batch.

    A name that is not a run folder of ``output_dir`` (or no longer exists) is
    reported in ``missing``; nothing outside ``output_dir`` is ever touched.
    """
    root = Path(output_dir).resolve()
    now = time.time()
    batch = f"{time.strftime('%Y%m%d-%H%M%S', time.localtime(now))}_{uuid.uuid4().hex[:8]}"
    folder = trash_root(root) / batch
    out = TrashBatch(batch=batch, folder=folder, deleted_at=now)
    valid = []
    for name in dict.fromkeys(names):
        path = root / name
        if _RUN.match(name) and path.is_dir() and not path.is_symlink():
            valid.append(name)
        else:
            out.missing.append(name)
    if not valid:
        return out
    folder.mkdir(parents=True)
    _write_manifest(folder, now, valid)
    for name in valid:
        try:
            os.rename(root / name, folder / name)
            out.moved.append(name)
        except OSError:
            out.missing.append(name)
    if out.moved != valid:
        _write_manifest(folder, now, out.moved)
    return out


def _write_manifest(folder: Path, now: float, names: list[str]) -> None:
    data = {"deleted_at": now, "runs": names}
    (folder / MANIFEST).write_text(json.dumps(data))


def restore(output_dir: str | os.PathLike[str], batch: str) -> tuple[list[str], list[str]]:
    """Put a batch's folders back: ``(restored, not restored)``.

    A folder whose name is taken again in ``output_dir`` stays in the trash (listed
    in the second list); the batch folder is removed once empty.
    """
    if not _BATCH.match(batch or ""):
        return [], []
    root = Path(output_dir).resolve()
    folder = trash_root(root) / batch
    if not folder.is_dir():
        return [], []
    restored, kept = [], []
    for entry in sorted(folder.iterdir()):
        if not (entry.is_dir() and _RUN.match(entry.name)):
            continue
        target = root / entry.name
        if target.exists():
            kept.append(entry.name)
            continue
        try:
            os.rename(entry, target)
            restored.append(entry.name)
        except OSError:
            kept.append(entry.name)
    if not kept:
        shutil.rmtree(folder, ignore_errors=True)
    else:
        _write_manifest(folder, _deleted_at(folder), kept)
    return restored, kept


def _deleted_at(folder: Path) -> float:
    try:
        return float(json.loads((folder / MANIFEST).read_text())["deleted_at"])
    except (OSError, ValueError, KeyError, TypeError):
        try:
            return folder.stat().st_mtime
        except OSError:
            return time.time()


def empty_expired(
    output_dir: str | os.PathLike[str], retention_days: float, now: float | None = None
) -> int:
    """Remove trash batches deleted more than ``retention_days`` ago; how many were removed."""
    root = trash_root(Path(output_dir).resolve())
    if not root.is_dir():
        return 0
    limit = (time.time() if now is None else now) - retention_days * 86400.0
    removed = 0
    for entry in root.iterdir():
        if entry.is_dir() and _BATCH.match(entry.name) and _deleted_at(entry) < limit:
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
    return removed

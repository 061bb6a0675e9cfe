"""Deleting past runs from the page and the API: to the trash, refused while they run, undone.

One place for the History tab's Delete and ``/delete_runs``: request ids are
turned into their folders, a run still queued or running in this app is refused
(stop it first: its worker is writing there), the rest are moved into a trash
batch (``_core/trash.py``) that :meth:`RunOps.restore` puts back. Batches older
than ``TRASH_RETENTION_DAYS`` are removed on each delete and when the page is built.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from .._core.history import list_run_names
from .._core.trash import empty_expired, move_to_trash, restore
from .backend import Backend

__all__ = ["DeleteOutcome", "RunOps", "parse_ids"]

_ID = re.compile(r"^[0-9A-Za-z]{4,64}$")


def parse_ids(text: Any) -> list[str]:
    """Request ids from a JSON list, or from text separated by spaces, commas or new lines."""
    if isinstance(text, (list, tuple)):
        items = [str(t) for t in text]
    else:
        raw = str(text or "").strip()
        items = []
        if raw.startswith("["):
            try:
                loaded = json.loads(raw)
                items = [str(t) for t in loaded] if isinstance(loaded, list) else []
            except ValueError:
                items = []
        if not items:
            items = [t for t in re.split(r"[\s,;]+", raw.strip("[]")) if t]
    return list(dict.fromkeys(t.strip().strip("\"'") for t in items if t.strip()))


@dataclass
class DeleteOutcome:
    """What a delete did: moved to which trash batch, refused, not found."""

    deleted: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    not_found: list[str] = field(default_factory=list)
    batch: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "deleted": self.deleted,
            "refused": self.refused,
            "not_found": self.not_found,
            "trash_batch": self.batch,
        }

    def words(self) -> str:
        """One line for the page."""
        parts = []
        if self.deleted:
            n = len(self.deleted)
            parts.append(f"Moved {n} run{'s' * (n != 1)} to the trash")
        for rid, why in self.refused.items():
            parts.append(f"{rid} kept: {why}")
        if self.not_found:
            parts.append(f"not found: {', '.join(self.not_found)}")
        return "; ".join(parts) + "." if parts else "Nothing to delete."


class RunOps:
    """Delete and restore runs of the page's OUTPUT_DIR."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    @property
    def retention_days(self) -> float:
        return float(getattr(self.backend.env, "trash_retention_days", 7.0))

    def empty_expired(self) -> int:
        return empty_expired(self.backend.output_dir, self.retention_days)

    def _live_ids(self) -> set[str]:
        """Requests of this app still queued or running (its futures, and its queue)."""
        live = set(self.backend.pending_futures())
        listing = getattr(self.backend.app, "requests", None)
        if callable(listing):
            try:
                live |= {str(e.get("id")) for e in listing()}
            except Exception:  # a closed app has nothing running
                pass
        return live

    def delete(self, ids: list[str]) -> DeleteOutcome:
        """Move the runs ``ids`` to a new trash batch; those still queued or running stay."""
        out = DeleteOutcome()
        pending = self._live_ids()
        by_id: dict[str, str] = {}
        wanted = set(ids)
        for name in list_run_names(self.backend.output_dir):
            rid = name.rsplit("_", 1)[-1]
            if rid in wanted and rid not in by_id:
                by_id[rid] = name
        names = []
        for rid in ids:
            if not _ID.match(rid):
                out.not_found.append(rid)
            elif rid in pending:
                out.refused[rid] = "it is still queued or running; stop it first"
            elif rid not in by_id:
                out.not_found.append(rid)
            else:
                names.append(by_id[rid])
        if names:
            batch = move_to_trash(self.backend.output_dir, names)
            out.batch = batch.batch if batch.moved else ""
            out.deleted = [n.rsplit("_", 1)[-1] for n in batch.moved]
            out.not_found += [n.rsplit("_", 1)[-1] for n in batch.missing]
        self.empty_expired()
        return out

    def restore(self, batch: str) -> dict[str, Any]:
        """Put a trash batch back: ``{"restored": ids, "kept": ids, "batch": batch}``."""
        restored, kept = restore(self.backend.output_dir, str(batch or "").strip())
        return {
            "batch": batch,
            "restored": [n.rsplit("_", 1)[-1] for n in restored],
            "kept": [n.rsplit("_", 1)[-1] for n in kept],
        }

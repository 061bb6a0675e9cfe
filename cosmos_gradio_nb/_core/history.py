"""Past requests of an ``OUTPUT_DIR``, read from their folders' ``status.json`` files.

Both the page's history panel and :func:`load_results` read runs through here,
so a run made from Python, from another page or before a server restart shows
up the same way everywhere.

It must stay fast with 10,000 past requests: folder names start with
``YYYYmmdd-HHMMSS_<id>``, so sorting the *names* sorts by time, and only the
folders of the page being shown have their ``status.json`` parsed. The sorted
listing is cached until the folder's modification time changes (adding or
removing a request folder changes it). A folder whose ``status.json`` is
missing, half-written or not an object is listed as ``broken`` with the reason;
it never breaks the list.

The app writes a request's ``status.json`` from the moment it is accepted
(``queued``, then ``running``, then its outcome), but a queued or running
record may follow the request folder by a few milliseconds (the app writes them
behind, ``_engine/records.py``): a folder named less than :data:`RECORD_GRACE`
seconds ago (its name starts with the time it was accepted) without its
``status.json`` is a request that has just started, listed as ``running``, not
as broken.

Filtering by state (``page_of_runs(..., states=...)``) has to know every run's
state: each is read once and kept, a finished run's for good (it never changes
again), any other's until its ``status.json`` changes; so the first filtered
listing of 10,000 runs reads them all, and later ones cost a dictionary lookup
per finished run. Deleted runs sit in ``OUTPUT_DIR/.trash`` (``_core/trash.py``),
which is not a run folder and is never listed.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .outputs import STATUS_FILE
from .params_text import differing_params, params_summary
from .result import InferenceResult

__all__ = [
    "FINISHED_STATES",
    "HistoryPage",
    "RunRecord",
    "differing_params",
    "list_run_names",
    "page_of_runs",
    "params_summary",
    "read_run",
    "run_state",
]

# <YYYYmmdd-HHMMSS>_<id>: what request_folder() makes (the id is 12 hex digits today).
_RUN_NAME = re.compile(r"^(\d{8}-\d{6})_([0-9A-Za-z]{4,64})$")
_MAX_STATUS_BYTES = 16 * 1024 * 1024  # a status.json larger than this is not parsed
RECORD_GRACE = 60.0  # seconds a new request folder may wait for its status.json
_MISSING = "no status.json (the app stopped before it was written)"


@dataclass
class RunRecord:
    """One past request, as read from its folder.

    Attributes
    ----------
    name, folder:
        The folder's name (``20261202-061403_ab12cd34ef56``) and absolute path.
    request_id:
        From status.json, else the folder name's suffix.
    state:
        ``succeeded``, ``failed``, ``cancelled``... or ``broken`` when status.json
        cannot be read (``broken`` then says why).
    queued_at, finished_at, duration:
        Epoch seconds and seconds, when known (``queued_at`` falls back to the
        folder name's time stamp).
    params:
        The request's parameters without ``output_dir``.
    videos, images, other, partial:
        Output files that exist; ``partial`` are those of a stopped or failed run.
    status:
        The parsed status.json (``{}`` when broken).
    """

    name: str
    folder: Path
    request_id: str
    state: str
    queued_at: float | None = None
    finished_at: float | None = None
    duration: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    videos: list[Path] = field(default_factory=list)
    images: list[Path] = field(default_factory=list)
    other: list[Path] = field(default_factory=list)
    partial: list[Path] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    broken: str | None = None
    status_mtime_ns: int = 0

    @property
    def thumbnail(self) -> Path | None:
        """The poster, or the first image; None for a run without images."""
        return self.images[0] if self.images else None

    @property
    def files(self) -> list[Path]:
        return [*self.videos, *self.images, *self.other, *self.partial]

    def to_result(self) -> InferenceResult:
        """This run as an :class:`InferenceResult` (what ``load_results`` returns)."""
        status = dict(self.status) if self.status else {"state": self.state}
        if self.broken:
            status.update(state="broken", broken=self.broken)
        return InferenceResult(
            request_id=self.request_id,
            output_dir=self.folder,
            files=self.files,
            videos=list(self.videos),
            images=list(self.images),
            status=status,
            duration=float(self.duration or 0.0),
        )


def _stamp_time(stamp: str) -> float | None:
    try:
        return time.mktime(time.strptime(stamp, "%Y%m%d-%H%M%S"))
    except (ValueError, OverflowError):
        return None


def _existing(paths: Any) -> list[Path]:
    if not isinstance(paths, list):
        return []
    return [Path(p) for p in paths if isinstance(p, str) and os.path.isfile(p)]


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _read_status(path: Path) -> tuple[dict[str, Any] | None, str | None, int]:
    """``(status, None, mtime)`` or ``(None, why it is broken, mtime)``."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None, _MISSING, 0
    except OSError as exc:
        return None, f"status.json cannot be read ({exc.strerror or exc})", 0
    if st.st_size > _MAX_STATUS_BYTES:
        return (
            None,
            f"status.json is {st.st_size / 2**20:.0f} MB, too large to read",
            st.st_mtime_ns,
        )
    try:
        data = json.loads(path.read_bytes())
    except OSError as exc:
        return None, f"status.json cannot be read ({exc.strerror or exc})", st.st_mtime_ns
    except (ValueError, RecursionError) as exc:
        return None, f"status.json is not valid JSON ({str(exc)[:120]})", st.st_mtime_ns
    if not isinstance(data, dict):
        return None, f"status.json holds {type(data).__name__}, not an object", st.st_mtime_ns
    return data, None, st.st_mtime_ns


def read_run(folder: str | os.PathLike[str]) -> RunRecord:
    """Read one request folder; never raises for a broken or half-written status.json."""
    folder = Path(folder)
    match = _RUN_NAME.match(folder.name)
    stamp_time = _stamp_time(match.group(1)) if match else None
    fallback_id = match.group(2) if match else folder.name
    status, broken, mtime = _read_status(folder / STATUS_FILE)
    just_made = stamp_time is not None and time.time() - stamp_time < RECORD_GRACE
    if status is None and broken is _MISSING and just_made:
        return RunRecord(  # just started: its record is on its way
            name=folder.name,
            folder=folder,
            request_id=fallback_id,
            state="running",
            queued_at=stamp_time,
            status={"state": "running", "note": "just started: its status.json is on its way"},
        )
    if status is None:
        found = sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
        return RunRecord(
            name=folder.name,
            folder=folder,
            request_id=fallback_id,
            state="broken",
            queued_at=stamp_time,
            partial=found,
            broken=broken,
            status_mtime_ns=mtime,
        )
    files = _dict(status.get("files"))
    params = _dict(status.get("params"))
    error = status.get("error") if isinstance(status.get("error"), dict) else None
    state = status.get("state")
    return RunRecord(
        name=folder.name,
        folder=folder,
        request_id=str(status.get("id") or fallback_id),
        state=state if isinstance(state, str) and state else "broken",
        queued_at=_number(status.get("queued_at")) or stamp_time,
        finished_at=_number(status.get("finished_at")),
        duration=_number(status.get("duration")),
        params={k: v for k, v in params.items() if k != "output_dir"},
        videos=_existing(files.get("videos")),
        images=_existing(files.get("images")),
        other=_existing(files.get("other")),
        partial=_existing(files.get("partial")),
        status=status,
        error=error,
        broken=None if isinstance(state, str) and state else "status.json has no state",
        status_mtime_ns=mtime,
    )


class _ListingCache:
    """Sorted run-folder names per OUTPUT_DIR, kept until the folder's mtime changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[tuple[int, int], list[str]]] = {}

    def names(self, output_dir: Path) -> list[str]:
        try:
            st = output_dir.stat()
        except OSError:
            return []
        key = str(output_dir)
        sig = (st.st_mtime_ns, st.st_ino)
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None and hit[0] == sig:
                return hit[1]
        try:
            with os.scandir(output_dir) as it:
                names = [e.name for e in it if _RUN_NAME.match(e.name) and e.is_dir()]
        except OSError:
            return []
        names.sort(reverse=True)  # the name starts with the time stamp: newest first
        with self._lock:
            self._entries[key] = (sig, names)
        return names


_listing = _ListingCache()


FINISHED_STATES = frozenset({"succeeded", "failed", "cancelled"})


class _StateCache:
    """Each run folder's state, read once; a finished state kept for good (see module doc)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, tuple[int, str]] = {}

    def keep(self, root: Path, names: list[str], wanted: frozenset[str]) -> list[str]:
        """The ``names`` (run folders of ``root``) whose state is in ``wanted``, in order.

        A finished run costs one dictionary lookup (no ``Path``, no lock per run); the
        others are read through :meth:`state`.
        """
        base = str(root)
        with self._lock:
            known = dict(self._states)
        out = []
        for name in names:
            hit = known.get(f"{base}/{name}")
            state = hit[1] if hit is not None and hit[1] in FINISHED_STATES else None
            if state is None:
                state = self.state(root / name)
            if state in wanted:
                out.append(name)
        return out

    def state(self, folder: Path) -> str:
        key = str(folder)
        with self._lock:
            hit = self._states.get(key)
        if hit is not None and hit[1] in FINISHED_STATES:
            return hit[1]
        try:
            mtime = os.stat(folder / STATUS_FILE).st_mtime_ns
        except OSError:
            mtime = 0
        if hit is not None and hit[0] == mtime:
            return hit[1]
        status, _broken, mtime = _read_status(folder / STATUS_FILE)
        state = status.get("state") if status is not None else None
        found = state if isinstance(state, str) and state else "broken"
        with self._lock:
            self._states[key] = (mtime, found)
        return found


_states = _StateCache()


def run_state(folder: str | os.PathLike[str]) -> str:
    """The state a run folder's status.json gives (``broken`` when it cannot be read); cached."""
    return _states.state(Path(folder))


def list_run_names(output_dir: str | os.PathLike[str]) -> list[str]:
    """Names of the request folders in ``output_dir``, newest first (cached, see module doc)."""
    return _listing.names(Path(output_dir).resolve())


@dataclass
class HistoryPage:
    """One page of past runs, newest first."""

    records: list[RunRecord]
    total: int
    offset: int
    limit: int

    @property
    def page_number(self) -> int:
        return self.offset // self.limit + 1 if self.limit else 1

    @property
    def page_count(self) -> int:
        return max(1, -(-self.total // self.limit)) if self.limit else 1


def page_of_runs(
    output_dir: str | os.PathLike[str],
    offset: int = 0,
    limit: int = 20,
    *,
    contains: str = "",
    states: Iterable[str] | None = None,
) -> HistoryPage:
    """Runs ``offset .. offset+limit`` (newest first); only those folders are read.

    ``contains`` keeps the folders whose name contains it (a request id, or a date
    such as ``20261202``); ``states`` (``{"failed"}``, say) keeps the runs in one of
    those states (see the module doc for what that reads).
    """
    root = Path(output_dir).resolve()
    names = list_run_names(root)
    if contains:
        names = [n for n in names if contains in n]
    wanted = frozenset(states or ())
    if wanted:
        names = _states.keep(root, names, wanted)
    total = len(names)
    offset = max(0, min(offset, max(0, total - 1)))
    end = min(total, offset + max(0, limit))
    if end <= offset:
        return HistoryPage(records=[], total=total, offset=offset, limit=limit)
    # Requests queued within the same second share the name's time stamp and then sort
    # by their random id: the whole same-second groups at the page's edges are ordered
    # by queue time (each run's read once, ever: 500 queued at once cost no 500 reads
    # per refresh), and only the page's own folders are read.
    start, stop = offset, end
    while start > 0 and names[start - 1][:15] == names[offset][:15]:
        start -= 1
    while stop < total and names[stop][:15] == names[end - 1][:15]:
        stop += 1
    read: dict[str, RunRecord] = {}
    ordered = _by_queue_time(root, names[start:stop], read)[offset - start : end - start]
    records = [read.get(n) or read_run(root / n) for n in ordered]
    return HistoryPage(records=records, total=total, offset=offset, limit=limit)


_queued_times: dict[str, float] = {}  # a run folder's path -> its queued_at (never changes)


def _by_queue_time(root: Path, names: list[str], read: dict[str, RunRecord]) -> list[str]:
    """``names`` newest first by (time stamp, queue time); runs read here are left in ``read``.

    A run's queue time is written once, when it is accepted, so it is kept for good;
    one not known yet (no ``status.json`` so far) counts as 0 and is asked again.
    """
    base = str(root)

    def when(name: str) -> float:
        key = f"{base}/{name}"
        known = _queued_times.get(key)
        if known is not None:
            return known
        record = read[name] = read_run(root / name)
        if record.queued_at is None:
            return 0.0
        _queued_times[key] = record.queued_at
        return record.queued_at

    return sorted(names, key=lambda n: (n[:15], when(n)), reverse=True)

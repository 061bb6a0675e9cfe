"""The seam between the request queue and the places model groups run.

The queue and fault policy (``_engine/pool.py`` and ``_engine/supervisor.py``)
decide *what* happens: which group takes the next request, when a request has
run too long, when a group is restarted or given up. A *worker-group backend*
knows only *how*: start a group's ranks somewhere, send them a message, stop
them, and report back what happened as :data:`Event` objects. Two backends exist, local subprocesses
(``_backends/local.py``) and Ray actors (``_backends/ray/``); the tests add an
in-process fake, so the policy is tested without any process at all.

Contract for a backend
----------------------
- ``start``, ``send`` and ``stop`` are called with the pool's lock held:
  they must return quickly and must never call the ``emit`` function themselves
  (that would re-enter the pool). Events come from the backend's own threads.
- Every event names the group *and* its incarnation (a number the pool bumps on
  each start), so an event about a process that was already replaced is
  recognised as stale and dropped.
- Per incarnation: any number of ``Output``/``Progress``/``Reply``/``Pong`` events, one
  ``Ready`` per rank or a ``StartFailed``/``Died``, and finally exactly one
  ``Gone`` once every rank is released (stopped, or dead on its own). Only
  after ``Gone`` may the pool start the group again, so a GPU is never held by
  two incarnations at once.
- ``Output`` lines of a rank are emitted before any message that rank sent after
  printing them, so a request's log is complete when its reply arrives.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .._core.protocol import FactorySpec

__all__ = [
    "BackendBroken",
    "Died",
    "Emit",
    "Event",
    "Gone",
    "GroupSpec",
    "Output",
    "Pong",
    "Progress",
    "RankInfo",
    "Ready",
    "Reply",
    "SendError",
    "StartFailed",
    "WorkerBackend",
    "message_event",
]


@dataclass(frozen=True)
class GroupSpec:
    """What a backend needs to start one model group."""

    index: int
    size: int
    incarnation: int
    factory: FactorySpec
    env: dict[str, str]
    """Our settings and the user's ``worker_env``: the backend adds the rest of the
    environment (its node's own, torchrun's variables, ``CUDA_VISIBLE_DEVICES``)."""
    sys_path: list[str] = field(default_factory=list)
    cwd: str = "."


@dataclass(frozen=True)
class RankInfo:
    """Where one rank runs, for displays: its process, node and device."""

    rank: int
    pid: int | None
    node: str
    device: str
    """``CUDA_VISIBLE_DEVICES`` of the rank; ``""`` means CPU."""


@dataclass(frozen=True, slots=True)
class Ready:
    """One rank built its model."""

    group: int
    incarnation: int
    rank: int


@dataclass(frozen=True, slots=True)
class StartFailed:
    """A rank could not start: the factory raised, or the group could not be placed."""

    group: int
    incarnation: int
    rank: int
    summary: str
    details: str = ""


@dataclass(frozen=True, slots=True)
class Progress:
    """Rank 0 reported progress for a request."""

    group: int
    incarnation: int
    request_id: str
    fraction: float | None
    message: str
    preview: str | None = None
    """The path of the request's new ``preview.jpg``, when this report brought one."""


@dataclass(frozen=True, slots=True)
class Pong:
    """A rank answered the health check ``n`` (its control thread reads its socket)."""

    group: int
    incarnation: int
    rank: int
    n: int


@dataclass(frozen=True, slots=True)
class Output:
    """Lines a rank printed (stdout and stderr), each at most a bounded length."""

    group: int
    incarnation: int
    rank: int
    lines: list[str]


@dataclass(frozen=True, slots=True)
class Reply:
    """A rank finished a request: ``msg`` is its ``done``, ``error`` or ``stopped`` message."""

    group: int
    incarnation: int
    rank: int
    msg: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Died:
    """A rank's process ended without being asked to (a crash, a kill, a lost node)."""

    group: int
    incarnation: int
    rank: int
    how: str
    """Readable cause: ``"SIGKILL"``, ``"exit code 3"``, ``"node 10.0.0.2 lost"``."""
    pid: int | None = None
    exitcode: int | None = None
    signal_name: str | None = None


@dataclass(frozen=True, slots=True)
class Gone:
    """Every rank of this incarnation is released: the group may be started again."""

    group: int
    incarnation: int


@dataclass(frozen=True, slots=True)
class BackendBroken:
    """The backend itself failed (a bug, a lost Ray connection): nothing it holds will answer."""

    message: str


Event = Ready | StartFailed | Progress | Pong | Output | Reply | Died | Gone | BackendBroken
Emit = Callable[[Event], None]


def message_event(group: int, incarnation: int, rank: int, msg: dict[str, Any]) -> Event | None:
    """The event for a message a worker sent (``_core/protocol.py``); None for one the pool needs not."""
    kind = msg.get("type")
    if kind == "ready":
        return Ready(group, incarnation, rank)
    if kind == "startup_error":
        summary = f"{msg.get('error_type')}: {msg.get('message')}"
        return StartFailed(group, incarnation, rank, summary, str(msg.get("traceback", "")))
    if kind == "progress":
        fraction, text = msg.get("fraction"), str(msg.get("message", ""))
        preview = msg.get("preview")
        preview = preview if isinstance(preview, str) else None
        return Progress(group, incarnation, str(msg.get("id")), fraction, text, preview)
    if kind in ("done", "error", "stopped"):
        return Reply(group, incarnation, rank, msg)
    if kind == "pong":
        n = msg.get("n")
        return Pong(group, incarnation, rank, n) if isinstance(n, int) else None
    return None


class SendError(OSError):
    """A message could not be delivered: the group's processes are gone or going."""


class WorkerBackend(Protocol):
    """Where model groups run. See the module docstring for the contract."""

    name: str
    """``"local"``, ``"ray"``... shown in displays."""

    def start(self, spec: GroupSpec) -> None:
        """Start every rank of a group; ``Ready`` or ``StartFailed``/``Died`` follow."""

    def send(self, group: int, msg: dict[str, Any]) -> None:
        """Deliver ``msg`` to every rank of the group, in order; raise :class:`SendError`."""

    def stop(self, group: int, *, graceful: bool = False) -> None:
        """Stop the group's ranks (``graceful``: ask them to exit); ``Gone`` follows."""

    def ranks(self, group: int) -> list[RankInfo]:
        """Where the group's ranks run now (empty before the first start)."""

    def close(self) -> None:
        """Stop everything at once and release every resource; no event follows."""

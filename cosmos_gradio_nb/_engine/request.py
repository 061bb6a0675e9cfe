"""What the pool tracks per request, the small records it hands out, and the result's assembly."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import InvalidStateError
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypedDict

from .._core.exceptions import ValidationError
from .._core.outputs import folder_name, new_request_id
from .._core.public import public
from .._core.result import InferenceResult
from .backend import RankInfo
from .future import InferenceFuture

__all__ = [
    "Request",
    "RequestInfo",
    "RequestOwner",
    "WorkerInfo",
    "build_result",
    "new_request",
]

_STRICT_JSON = json.JSONEncoder(allow_nan=False)  # made once (json.dumps(allow_nan=) is not)
MAX_LOG_LINES = 10_000  # a request's ``log`` keeps at most this many lines...
MAX_LOG_BYTES = 4 * 1024 * 1024  # ...and this many bytes; LOG_FILE has everything


class RequestOwner(Protocol):
    """What a request's future asks of the queue that holds the request (the pool)."""

    def queue_position(self, request: Request) -> int | None:
        """Requests ahead of ``request`` in the queue; None once it left the queue."""
        ...

    def forget(self, request: Request) -> None:
        """Drop ``request``, cancelled while queued."""
        ...

    def terminate(self, request: Request) -> bool:
        """Ask ``request`` to stop while it runs (cooperatively first); False if it is not running."""
        ...


@dataclass(eq=False, slots=True)  # thousands may wait: no __dict__ each
class Request:
    """One request as the pool tracks it. The future holds it; so does the group running it."""

    id: str
    params: dict[str, Any]
    output_dir: str
    timeout: float | None
    pool: RequestOwner
    queued_at: float = field(default_factory=time.time)
    future: InferenceFuture = field(init=False)
    started_at: float | None = None
    group: int | None = None
    deadline: float | None = None
    source: str = "python"
    """Who submitted it: ``python``, ``page``, ``api`` (recorded in status.json)."""
    log: list[str] = field(default_factory=list)
    log_bytes: int = 0
    replies: dict[int, dict[str, Any]] = field(default_factory=dict)
    # Set under the pool's lock:
    progress: float | None = None
    message: str = ""
    preview: str | None = None
    """The latest ``preview.jpg`` the model sent (None before the first)."""
    outcome: str | None = None
    """``succeeded``, ``failed`` or ``cancelled`` once decided: the first decision wins."""
    stop_requested_at: float | None = None
    """When ``terminate()`` asked the running request to stop (epoch seconds)."""
    held: tuple[int, dict[str, Any]] | None = None
    """A peer's error reply held back while a rank's death may be on its way (``pool``)."""
    # The status writer's (``records.py``), under its own locks:
    final_recorded: bool = False  # the outcome is decided: no queued/running record after it
    recorded: int = 0  # how far along the record on disk is (queued 1, running 2, final 3)
    record_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def stopping(self) -> bool:
        return self.stop_requested_at is not None

    def add_log(self, lines: list[str]) -> None:
        """Keep ``lines`` in the request's log, up to its bounds (then one line says so)."""
        room = MAX_LOG_LINES - len(self.log)
        if room <= 0 or self.log_bytes >= MAX_LOG_BYTES:
            return
        for line in lines[:room]:
            self.log_bytes += len(line) + 1
            if self.log_bytes > MAX_LOG_BYTES or len(self.log) == MAX_LOG_LINES - 1:
                self.log.append("[log cut: this request printed more; LOG_FILE has every line]")
                self.log_bytes = MAX_LOG_BYTES
                return
            self.log.append(line)


class RequestInfo(TypedDict):
    """One running or queued request, as ``app.requests()`` lists it."""

    id: str
    state: str  # "running" or "queued"
    source: str
    params: dict[str, Any]
    position: int | None  # requests ahead of it in the queue (0: next); None while running
    progress: float | None
    message: str
    preview: str | None
    queued_at: float
    started_at: float | None
    group: int | None
    stopping: bool  # asked to stop, not ended yet


def request_info(request: Request, position: int | None) -> RequestInfo:
    """The :class:`RequestInfo` of ``request`` (call under the pool's lock)."""
    return {
        "id": request.id,
        "state": "queued" if position is not None else "running",
        "source": request.source,
        "params": dict(request.params),
        "position": position,
        "progress": request.progress,
        "message": request.message,
        "preview": request.preview,
        "queued_at": request.queued_at,
        "started_at": request.started_at,
        "group": request.group,
        "stopping": request.stopping,
    }


@public
@dataclass
class WorkerInfo:
    """A snapshot of one worker process, for displays."""

    group: int
    rank: int
    gpu: str
    """``CUDA_VISIBLE_DEVICES`` of the rank; ``""`` means it runs on the CPU."""
    pid: int | None
    state: str
    request_id: str | None
    restarts: int
    node: str = ""
    """The machine it runs on (host name, or the Ray node's address)."""

    @classmethod
    def of(
        cls, group: int, state: str, request: Request | None, restarts: int, rank: RankInfo
    ) -> WorkerInfo:
        """The snapshot of ``rank`` of a group in ``state``, running ``request`` (or None)."""
        return cls(
            group=group,
            rank=rank.rank,
            gpu=rank.device,
            pid=rank.pid,
            state=state,
            request_id=request.id if request else None,
            restarts=restarts,
            node=rank.node,
        )


def check_sendable(params: dict[str, Any]) -> None:
    """Raise ValidationError for parameters strict JSON cannot carry (NaN, nested too deep...):
    a request that could not be sent to the workers is refused here, never at dispatch."""
    try:
        _STRICT_JSON.encode(params)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValidationError(f"the parameters cannot be sent as JSON: {exc}") from None


def new_request(
    pool: RequestOwner,
    params: dict[str, Any],
    output_root: Path,
    timeout: float | None,
    *,
    source: str = "python",
) -> Request:
    """A request with its own id, folder (also set as ``params["output_dir"]``) and future."""
    request_id = new_request_id()
    folder = os.path.join(output_root, folder_name(request_id))  # = str(request_folder(...))
    check_sendable(params)
    params["output_dir"] = folder
    request = Request(
        id=request_id, params=params, output_dir=folder, timeout=timeout, pool=pool, source=source
    )
    request.future = InferenceFuture(request)
    return request


def build_result(request: Request, status: dict[str, Any]) -> InferenceResult:
    """The one place a finished request's :class:`InferenceResult` is assembled."""
    files = status.get("files") or {}
    videos = [Path(p) for p in files.get("videos", [])]
    images = [Path(p) for p in files.get("images", [])]
    other = [Path(p) for p in files.get("other", [])]
    return InferenceResult(
        request_id=request.id,
        output_dir=Path(request.output_dir),
        files=videos + images + other,
        videos=videos,
        images=images,
        status=status,
        log=list(request.log),
        duration=float(status.get("duration") or 0.0),
    )


def failer(future: InferenceFuture, error: BaseException) -> Callable[..., None]:
    def fail(*_: Any) -> None:
        # A caller may have cancelled it a moment ago: that outcome stands.
        with contextlib.suppress(InvalidStateError):
            future.set_exception(error)

    return fail


def resolver(future: InferenceFuture, result: InferenceResult) -> Callable[[], None]:
    def resolve() -> None:
        with contextlib.suppress(InvalidStateError):
            future.set_result(result)

    return resolve


def err_dict(error: BaseException) -> dict[str, Any]:
    return {"type": type(error).__name__, "message": str(error), "traceback": ""}


def err_dict_from_reply(reply: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": reply.get("error_type", ""),
        "message": reply.get("message", ""),
        "traceback": reply.get("traceback", ""),
    }

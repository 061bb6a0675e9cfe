"""What the pool tracks per request, the small records it hands out, and the result's assembly."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from concurrent.futures import InvalidStateError
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .._core.outputs import folder_name, new_request_id
from .._core.public import public
from .._core.result import InferenceResult
from .backend import RankInfo
from .future import InferenceFuture

__all__ = ["Request", "RequestOwner", "WorkerInfo", "build_result", "new_request"]

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
        """Stop ``request`` while it runs; False if it is not running."""
        ...


@dataclass(eq=False)
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
    log: list[str] = field(default_factory=list)
    log_bytes: int = 0
    replies: dict[int, dict[str, Any]] = field(default_factory=dict)
    failed: bool = False

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


def new_request(
    pool: RequestOwner, params: dict[str, Any], output_root: Path, timeout: float | None
) -> Request:
    """A request with its own id, folder (also set as ``params["output_dir"]``) and future."""
    request_id = new_request_id()
    folder = os.path.join(output_root, folder_name(request_id))  # = str(request_folder(...))
    params["output_dir"] = folder
    request = Request(id=request_id, params=params, output_dir=folder, timeout=timeout, pool=pool)
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


def failer(future: InferenceFuture, error: BaseException) -> Callable[[], None]:
    def fail() -> None:
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

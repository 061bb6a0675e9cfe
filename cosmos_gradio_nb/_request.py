"""What the pool tracks per request, and the small records it hands out."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import InvalidStateError
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._env import DeploymentEnv
from ._future import InferenceFuture, InferenceResult
from ._protocol import FactorySpec

if TYPE_CHECKING:
    from ._pool import WorkerPool

__all__ = ["PoolConfig", "Request", "WorkerInfo"]


@dataclass
class PoolConfig:
    """What the pool needs to start workers."""

    factory: FactorySpec
    env: DeploymentEnv
    worker_env: dict[str, str] = field(default_factory=dict)
    max_queue_size: int | None = None
    echo_logs: bool = False
    cwd: str = field(default_factory=os.getcwd)
    sys_path: list[str] = field(default_factory=lambda: list(sys.path))


@dataclass(eq=False)
class Request:
    """One request as the pool tracks it. The future holds it; so does the group running it."""

    id: str
    params: dict[str, Any]
    output_dir: str
    timeout: float | None
    pool: WorkerPool
    queued_at: float = field(default_factory=time.time)
    future: InferenceFuture = field(init=False)
    started_at: float | None = None
    group: int | None = None
    deadline: float | None = None
    log: list[str] = field(default_factory=list)
    replies: dict[int, dict[str, Any]] = field(default_factory=dict)
    failed: bool = False


@dataclass
class WorkerInfo:
    """A snapshot of one worker process, for displays."""

    group: int
    rank: int
    gpu: str
    pid: int | None
    state: str
    request_id: str | None
    restarts: int


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
